//! Operator JSON (SPEC §7), for scripts and for checking the money invariant from outside.

use actix_web::{HttpResponse, web};
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;

use crate::db;
use crate::domain::email::Email;
use crate::error::AppError;
use crate::state::AppState;
use crate::web::auth::AdminUser;

pub async fn get_order(
    _: AdminUser,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let id = Uuid::parse_str(&path).map_err(|_| AppError::NotFound("order"))?;
    let t = crate::orders::view::timeline(&state, id).await?;
    let order = t.order;
    Ok(HttpResponse::Ok().json(json!({
        "id": order.id,
        "status": order.status.as_str(),
        "email": t.email,
        "pack_id": order.pack_id,
        "credits": order.credits,
        "amount": order.amount,
        "currency": order.currency,
        "payment_intent_id": order.payment_intent_id,
        "amount_refunded": order.amount_refunded,
        "dispute": order.dispute.as_str(),
        "reason": order.reason,
        "actions": t.actions,
        "created_at": order.created_at,
        "paid_at": order.paid_at,
        "transitions": t.transitions,
        "events": t.events,
        "ledger": t.ledger,
    })))
}

pub async fn get_account(
    _: AdminUser,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let email = Email::parse(&path).map_err(|_| AppError::NotFound("account"))?;
    let mut conn = state.db.get().await?;
    let account_id = db::accounts::find_id(&mut conn, &email)
        .await?
        .ok_or(AppError::NotFound("account"))?;
    let ledger = db::ledger::for_account(&mut conn, account_id).await?;
    let balance = db::accounts::balance(&mut conn, account_id).await?;
    Ok(HttpResponse::Ok()
        .json(json!({ "email": email.as_str(), "balance": balance, "ledger": ledger })))
}

#[derive(Deserialize)]
pub struct EventFilter {
    outcome: Option<String>,
    #[serde(rename = "type")]
    event_type: Option<String>,
    limit: Option<i64>,
}

pub async fn get_events(
    _: AdminUser,
    state: web::Data<AppState>,
    query: web::Query<EventFilter>,
) -> Result<HttpResponse, AppError> {
    let filter = query.into_inner();
    let limit = filter.limit.unwrap_or(100).clamp(1, 1000);
    let outcome = filter.outcome.as_deref().filter(|s| !s.is_empty());
    let event_type = filter.event_type.as_deref().filter(|s| !s.is_empty());
    // Postgres refuses a NUL in text: that would be a 500, not an answer.
    if [outcome, event_type]
        .iter()
        .flatten()
        .any(|s| s.contains('\0'))
    {
        return Err(AppError::bad_request(
            "invalid_filter",
            "outcome and type must not hold a NUL character",
        ));
    }
    let mut conn = state.db.get().await?;
    let events = db::events::recent(&mut conn, outcome, event_type, limit).await?;
    Ok(HttpResponse::Ok().json(events))
}
