//! The credits API's routes (SPEC §8), for the merchant's application: Bearer API keys,
//! JSON only, spends under a required Idempotency-Key with the same semantics as orders.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;

use crate::credits;
use crate::error::AppError;
use crate::idempotency::{self, IdempotencyKey};
use crate::state::AppState;

/// The request's API key, within its rate (RATE_LIMIT_CREDITS_API, 429 over it).
async fn key(state: &AppState, req: &HttpRequest) -> Result<uuid::Uuid, AppError> {
    let header = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let id = credits::authenticate(state, header).await?;
    state.credits_per_key.admit(&id).map_err(|wait| {
        metrics::counter!("rate_limited_total", "limit" => "credits_api").increment(1);
        AppError::RateLimited {
            code: "rate_limited",
            message: "too many requests with this API key; wait and try again".into(),
            retry_after_secs: wait.as_secs() + 1,
        }
    })?;
    Ok(id)
}

pub async fn get_account(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    key(&state, &req).await?;
    Ok(HttpResponse::Ok().json(credits::summary(&state, &path).await?))
}

#[derive(Deserialize)]
pub struct PageQuery {
    limit: Option<String>,
    starting_after: Option<String>,
}

pub async fn get_ledger(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    query: web::Query<PageQuery>,
) -> Result<HttpResponse, AppError> {
    key(&state, &req).await?;
    let limit = match query.limit.as_deref() {
        None | Some("") => 10,
        Some(text) => text
            .parse::<i64>()
            .ok()
            .filter(|n| (1..=100).contains(n))
            .ok_or_else(|| AppError::bad_request("invalid_limit", "limit must be 1 to 100"))?,
    };
    let starting_after = match query.starting_after.as_deref() {
        None | Some("") => None,
        Some(text) => Some(text.parse::<i64>().map_err(|_| {
            AppError::bad_request(
                "invalid_cursor",
                "starting_after must be a ledger entry's id",
            )
        })?),
    };
    Ok(HttpResponse::Ok().json(credits::ledger_page(&state, &path, limit, starting_after).await?))
}

pub async fn post_spend(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    body: Result<web::Bytes, actix_web::Error>,
) -> Result<HttpResponse, AppError> {
    let key_id = key(&state, &req).await?;
    crate::web::require_json(&req)?;
    let body = body.map_err(crate::web::payload_error)?;
    let idem = match req.headers().get("idempotency-key") {
        Some(v) => IdempotencyKey::parse(v.as_bytes())?,
        None => {
            return Err(AppError::bad_request(
                "missing_idempotency_key",
                "a spend needs an Idempotency-Key header (the same value for every retry of it)",
            ));
        }
    };
    let request_path = format!("/api/v1/accounts/{}/spends", path.to_lowercase());
    let fingerprint = idempotency::fingerprint("POST", &request_path, &body);
    let stored = idempotency::run(&state, Some(&idem), &fingerprint, async |resume| {
        let parsed: serde_json::Value = serde_json::from_slice(&body).map_err(|e| {
            AppError::bad_request(
                "malformed_json",
                format!("request body is not valid JSON: {e}"),
            )
        })?;
        let (credits, reference) = credits::validate_spend(
            parsed.get("credits").unwrap_or(&serde_json::Value::Null),
            parsed.get("reference").unwrap_or(&serde_json::Value::Null),
        )?;
        let spent = credits::spend(
            &state,
            key_id,
            &path,
            credits,
            &reference,
            idem.as_str(),
            resume,
        )
        .await?;
        Ok((
            StatusCode::CREATED,
            serde_json::to_value(spent).map_err(anyhow::Error::from)?,
        ))
    })
    .await?;
    let mut res = HttpResponse::build(stored.status);
    if stored.replayed {
        res.insert_header(("Idempotent-Replayed", "true"));
    }
    Ok(res.json(stored.body))
}

pub async fn post_reverse(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    key(&state, &req).await?;
    Ok(HttpResponse::Ok().json(credits::reverse(&state, &path).await?))
}
