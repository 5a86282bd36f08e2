//! The sandbox pay page (no STRIPE_SECRET_KEY): stands in for the provider's checkout.
//! The shopper picks succeed / fail / cancel and a delivery chaos; `crate::sandbox::act`
//! moves the intent and enqueues the webhooks, and the shopper is sent to the return URL.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use askama::Template;
use serde_json::Value;
use uuid::Uuid;

use crate::db;
use crate::error::{AppError, PageError};
use crate::sandbox::{self, Action, Chaos};
use crate::state::AppState;
use crate::web::{csrf, html};

#[derive(Template)]
#[template(path = "sandbox_pay.html")]
struct SandboxPayPage {
    shop: crate::config::Shop,
    pi: String,
    amount: String,
    credits: Option<i64>,
    order_id: Option<Uuid>,
    intent_status: crate::payments::IntentStatus,
    open: bool,
    csrf_token: String,
}

pub async fn get_sandbox_pay(
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, PageError> {
    if !state.config.is_sandbox() {
        return Err(AppError::NotFound("page").into());
    }
    let intent = sandbox::find_intent(&state, &path).await?;
    let order_id = intent
        .metadata
        .get("order_id")
        .and_then(Value::as_str)
        .and_then(|s| Uuid::parse_str(s).ok());
    let order = match order_id {
        Some(id) => {
            state
                .db
                .read(async |c| db::orders::find(c, id).await)
                .await?
        }
        None => None,
    };
    let page = SandboxPayPage {
        shop: state.config.shop.clone(),
        amount: html::money(intent.amount, &intent.currency),
        credits: order.as_ref().map(|o| o.credits),
        order_id: order.as_ref().map(|o| o.id),
        open: intent.status.is_open(),
        intent_status: intent.status,
        pi: intent.id,
        csrf_token: csrf::issue(&state.csrf_key, html::now_secs()),
    };
    html::render(StatusCode::OK, &page)
}

pub async fn post_sandbox_pay(
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: Result<web::Bytes, actix_web::Error>,
) -> Result<HttpResponse, PageError> {
    if !state.config.is_sandbox() {
        return Err(AppError::NotFound("page").into());
    }
    let form = html::verified_form(&state, body)?;
    let action = Action::parse(form.get("action").map_or("", String::as_str))?;
    let chaos = Chaos::parse(form.get("chaos").map_or("", String::as_str))?;
    let acted = sandbox::act(&state, &path, action, chaos).await?;
    Ok(html::see_other(&acted.return_url))
}
