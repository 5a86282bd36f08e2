//! POST /webhooks/stripe: raw bytes in, receipt out (SPEC §5).

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};

use crate::error::AppError;
use crate::state::AppState;
use crate::web::payload_error;

pub async fn post_stripe_webhook(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: Result<web::Bytes, actix_web::Error>,
) -> Result<HttpResponse, AppError> {
    // Stripe never compresses webhooks; refusing encodings means no decompression bomb
    // can get past the size limit.
    if let Some(encoding) = req.headers().get("content-encoding")
        && !encoding.as_bytes().eq_ignore_ascii_case(b"identity")
    {
        return Err(AppError::Client {
            status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
            code: "unsupported_content_encoding",
            message: "compressed webhook bodies are not accepted".into(),
        });
    }
    let body = body.map_err(payload_error)?;
    let receipt = crate::webhook::handle(&state, req.headers(), &body).await?;
    Ok(HttpResponse::Ok().json(receipt))
}
