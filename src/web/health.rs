//! Liveness, readiness and Prometheus metrics.

use actix_web::{HttpResponse, web};
use diesel_async::SimpleAsyncConnection;
use serde_json::json;

use crate::state::AppState;

pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let ready = match state.db.get().await {
        Ok(mut conn) => conn.batch_execute("SELECT 1").await.is_ok(),
        Err(_) => false,
    };
    if ready {
        HttpResponse::Ok().json(json!({ "status": "ready" }))
    } else {
        HttpResponse::ServiceUnavailable()
            .json(json!({ "error": { "code": "database_unavailable", "message": "the database is unavailable" } }))
    }
}

pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    let pool = state.db.status();
    metrics::gauge!("db_pool_max_size").set(pool.max_size as f64);
    metrics::gauge!("db_pool_connections").set(pool.size as f64);
    metrics::gauge!("db_pool_available").set(pool.available as f64);
    metrics::gauge!("db_pool_waiting").set(pool.waiting as f64);
    metrics::gauge!("webhook_signature_failures_since_start").set(
        state
            .signature_failures
            .load(std::sync::atomic::Ordering::Relaxed) as f64,
    );
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(crate::telemetry::metrics().render())
}
