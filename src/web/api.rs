//! The JSON API: packs and orders (SPEC §4).

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use uuid::Uuid;

use crate::db;
use crate::error::AppError;
use crate::idempotency::{self, IdempotencyKey};
use crate::orders::{create, view};
use crate::state::AppState;
use crate::web::payload_error;

pub async fn get_packs(state: web::Data<AppState>) -> Result<HttpResponse, AppError> {
    let mut conn = state.db.get().await?;
    Ok(HttpResponse::Ok().json(db::packs::all(&mut conn).await?))
}

#[derive(Deserialize)]
struct OrderBody {
    email: String,
    pack_id: String,
}

pub async fn post_order(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: Result<web::Bytes, actix_web::Error>,
) -> Result<HttpResponse, AppError> {
    crate::web::require_json(&req)?;
    let body = body.map_err(payload_error)?;
    crate::web::client::admit_order(&state, &req)?;
    let mut keys = req.headers().get_all("idempotency-key");
    let key = match (keys.next(), keys.next()) {
        (None, _) => None,
        (Some(v), None) => Some(IdempotencyKey::parse(v.as_bytes())?),
        (Some(_), Some(_)) => {
            return Err(AppError::bad_request(
                "invalid_idempotency_key",
                "send one Idempotency-Key header, not several",
            ));
        }
    };
    let fingerprint = idempotency::fingerprint("POST", "/api/orders", &body);
    let stored = idempotency::run(&state, key.as_ref(), &fingerprint, async |resume| {
        let parsed: OrderBody = parse_json(&body)?;
        let request = create::validate(&parsed.email, &parsed.pack_id)?;
        let (order, email) =
            create::create_order(&state, &request, key.as_ref().map(|k| k.as_str()), resume)
                .await?;
        let created = view::CreatedOrder::new(&order, &email, &state.public_base_url);
        Ok((
            StatusCode::CREATED,
            serde_json::to_value(created).map_err(anyhow::Error::from)?,
        ))
    })
    .await?;
    let mut res = HttpResponse::build(stored.status);
    if stored.replayed {
        res.insert_header(("Idempotent-Replayed", "true"));
    }
    Ok(res.json(stored.body))
}

fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, AppError> {
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| {
        AppError::bad_request(
            "malformed_json",
            format!("request body is not valid JSON: {e}"),
        )
    })?;
    serde_json::from_value(value)
        .map_err(|e| AppError::unprocessable("invalid_body", format!("invalid request body: {e}")))
}

pub async fn get_order(
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let id = Uuid::parse_str(&path).map_err(|_| AppError::NotFound("order"))?;
    // The poll: a single read, on the worker's shared connection.
    let order = crate::orders::lookup(&state, id).await?;
    Ok(HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .json(view::PublicOrder::from(&order)))
}
