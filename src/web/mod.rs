//! The one route table. Handlers extract, call one function, and map the result.

pub mod admin;
pub mod admin_actions;
pub mod admin_api;
pub mod admin_events;
pub mod admin_notifications;
pub mod admin_views;
pub mod api;
pub mod auth;
pub mod client;
pub mod compression;
pub mod credits_api;
pub mod csrf;
pub mod drain;
pub mod error_pages;
pub mod health;
pub mod html;
pub mod pages;
pub mod sandbox;
pub mod span;
pub mod status_page;
pub mod webhook;

use actix_web::{HttpRequest, HttpResponse, web};

use crate::error::{self, AppError};

/// The webhook body limit (SPEC §5): 524,288 bytes is still accepted.
pub const WEBHOOK_BODY_LIMIT: usize = 512 * 1024;
/// API and form bodies are small; anything bigger is refused with 413.
pub const API_BODY_LIMIT: usize = 16 * 1024;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.app_data(
        web::JsonConfig::default()
            .limit(API_BODY_LIMIT)
            .error_handler(error::json_error_handler),
    )
    .app_data(
        web::FormConfig::default()
            .limit(API_BODY_LIMIT)
            .error_handler(error::form_error_handler),
    )
    .app_data(web::QueryConfig::default().error_handler(error::query_error_handler))
    .app_data(web::PathConfig::default().error_handler(error::path_error_handler))
    .app_data(web::PayloadConfig::new(API_BODY_LIMIT))
    .service(resource("/healthz").route(web::get().to(health::healthz)))
    .service(resource("/readyz").route(web::get().to(health::readyz)))
    .service(resource("/metrics").route(web::get().to(health::metrics)))
    .service(resource("/api/packs").route(web::get().to(api::get_packs)))
    .service(resource("/api/orders").route(web::post().to(api::post_order)))
    .service(resource("/api/orders/{id}").route(web::get().to(api::get_order)))
    .service(resource("/api/v1/accounts/{email}").route(web::get().to(credits_api::get_account)))
    .service(
        resource("/api/v1/accounts/{email}/ledger").route(web::get().to(credits_api::get_ledger)),
    )
    .service(
        resource("/api/v1/accounts/{email}/spends").route(web::post().to(credits_api::post_spend)),
    )
    .service(
        resource("/api/v1/spends/{id}/reverse").route(web::post().to(credits_api::post_reverse)),
    )
    .service(
        resource("/webhooks/stripe")
            .app_data(web::PayloadConfig::new(WEBHOOK_BODY_LIMIT))
            .route(web::post().to(webhook::post_stripe_webhook)),
    )
    .service(
        web::scope("/admin/api")
            .service(resource("/orders/{id}").route(web::get().to(admin_api::get_order)))
            .service(
                resource("/orders/{id}/{action}")
                    .route(web::post().to(admin_actions::post_action_json)),
            )
            .service(resource("/accounts/{email}").route(web::get().to(admin_api::get_account)))
            .service(resource("/events").route(web::get().to(admin_api::get_events)))
            .service(
                resource("/notifications/{id}/redeliver")
                    .route(web::post().to(admin_notifications::post_redeliver_json)),
            ),
    )
    // Pages. Exact resources, so `/admin` and `/admin/...` never shadow `/admin/api/...`.
    .service(resource("/").route(web::get().to(pages::get_checkout)))
    .service(
        resource("/checkout")
            .route(web::post().to(pages::post_checkout))
            // Enter in the address bar after a form error: back to the checkout.
            .route(web::get().to(|| async { html::see_other("/") })),
    )
    .service(resource("/favicon.ico").route(web::get().to(favicon)))
    .service(resource("/orders/{id}/pay").route(web::get().to(pages::get_pay_page)))
    .service(resource("/orders/{id}/status").route(web::get().to(status_page::get_status_page)))
    .service(
        resource("/sandbox/pay/{pi}")
            .route(web::get().to(sandbox::get_sandbox_pay))
            .route(web::post().to(sandbox::post_sandbox_pay)),
    )
    .service(resource("/admin").route(web::get().to(admin::get_dashboard)))
    .service(resource("/admin/orders/{id}").route(web::get().to(admin::get_order)))
    .service(
        resource("/admin/orders/{id}/{action}")
            .route(web::post().to(admin_actions::post_action_form)),
    )
    .service(resource("/admin/events").route(web::get().to(admin_events::get_events)))
    .service(
        resource("/admin/notifications")
            .route(web::get().to(admin_notifications::get_notifications)),
    )
    .service(
        resource("/admin/notifications/{id}/redeliver")
            .route(web::post().to(admin_notifications::post_redeliver_form)),
    )
    .service(resource("/admin/reconcile").route(web::post().to(admin::post_reconcile)))
    .default_service(web::to(not_found));
}

/// The shop's mark (the check in a square from the page header), so browsers stop
/// asking for a file that is not there.
async fn favicon() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("image/svg+xml")
        .insert_header(("Cache-Control", "public, max-age=86400"))
        .body(
            r##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32"><rect width="32" height="32" rx="7" fill="#4338ca"/><path d="M9 16.5l4.5 4.5L23 11.5" stroke="#fff" stroke-width="3.2" fill="none" stroke-linecap="round" stroke-linejoin="round"/></svg>"##,
        )
}

/// A resource whose wrong methods answer 405 in our error shape.
fn resource(path: &str) -> actix_web::Resource {
    web::resource(path).default_service(web::to(method_not_allowed))
}

async fn not_found(req: HttpRequest) -> HttpResponse {
    actix_web::ResponseError::error_response(&AppError::Client {
        status: actix_web::http::StatusCode::NOT_FOUND,
        code: "not_found",
        message: format!("no route for {} {}", req.method(), req.path()),
    })
}

async fn method_not_allowed(req: HttpRequest) -> HttpResponse {
    actix_web::ResponseError::error_response(&AppError::Client {
        status: actix_web::http::StatusCode::METHOD_NOT_ALLOWED,
        code: "method_not_allowed",
        message: format!("{} is not allowed on {}", req.method(), req.path()),
    })
}

/// A JSON object body, from a request that says it is JSON: `application/json`, with
/// parameters allowed (415 `unsupported_media_type` otherwise, before anything else:
/// a cross-site page can send text/plain or a form without asking, never JSON).
pub fn json_body(
    req: &HttpRequest,
    body: Result<web::Bytes, actix_web::Error>,
) -> Result<serde_json::Map<String, serde_json::Value>, AppError> {
    require_json(req)?;
    let body = body.map_err(payload_error)?;
    match serde_json::from_slice(&body) {
        Ok(serde_json::Value::Object(map)) => Ok(map),
        Ok(_) => Err(AppError::bad_request(
            "malformed_json",
            "the body must be a JSON object",
        )),
        Err(e) => Err(AppError::bad_request(
            "malformed_json",
            format!("the body is not valid JSON: {e}"),
        )),
    }
}

/// 415 `unsupported_media_type` unless the request says its body is JSON.
pub fn require_json(req: &HttpRequest) -> Result<(), AppError> {
    let is_json = req
        .headers()
        .get(actix_web::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("application/json"));
    if !is_json {
        return Err(AppError::Client {
            status: actix_web::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
            code: "unsupported_media_type",
            message: "the body must be application/json".into(),
        });
    }
    Ok(())
}

/// Maps a body-extractor failure (oversize, broken stream) to our error shape.
pub fn payload_error(err: actix_web::Error) -> AppError {
    let status = err.as_response_error().status_code();
    if status == actix_web::http::StatusCode::PAYLOAD_TOO_LARGE {
        AppError::Client {
            status,
            code: "payload_too_large",
            message: "request body is too large".into(),
        }
    } else {
        AppError::bad_request("unreadable_body", "could not read the request body")
    }
}
