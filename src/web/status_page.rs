//! The return page Stripe (or the sandbox) sends the shopper to: shows the order and
//! keeps checking until it is settled, with a polling script and, without JavaScript, a
//! meta refresh. It trusts only our own order row; Stripe's redirect parameters are
//! neither logged nor taken as proof of payment (see `orders::return_sync`).

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use uuid::Uuid;

use crate::db::orders::Order;
use crate::domain::order::OrderStatus;
use crate::error::AppError;
use crate::orders::return_sync;
use crate::state::AppState;
use crate::web::html;

#[derive(Template)]
#[template(path = "status.html")]
struct StatusPage {
    id: Uuid,
    status: &'static str,
    credits: i64,
    amount: String,
    refunded: Option<String>,
    created_at: String,
    polling: bool,
    tone: &'static str,
    headline: String,
    detail: &'static str,
    /// Where "Try again" leads: the same order for a failure (its PaymentIntent can be
    /// paid again), a new checkout after a cancel.
    retry_url: Option<String>,
}

/// Stripe appends `payment_intent`, `payment_intent_client_secret` and `redirect_status`.
/// Only `redirect_status` is read, and only as a hint; the URL is never logged.
pub async fn get_status_page(
    state: web::Data<AppState>,
    path: web::Path<String>,
    req: HttpRequest,
) -> HttpResponse {
    let claims_success = url::form_urlencoded::parse(req.query_string().as_bytes())
        .any(|(k, v)| k == "redirect_status" && v == "succeeded");
    html::respond(status_page(&state, &path, claims_success).await)
}

async fn status_page(
    state: &AppState,
    id: &str,
    claims_success: bool,
) -> Result<HttpResponse, AppError> {
    let id = Uuid::parse_str(id).map_err(|_| AppError::NotFound("order"))?;
    let order = return_sync::order_for_status_page(state, id).await?;
    html::render(StatusCode::OK, &status_view(&order, claims_success))
}

fn status_view(order: &Order, claims_success: bool) -> StatusPage {
    use OrderStatus as S;
    let (tone, headline, detail) = match order.status {
        S::Pending if claims_success => (
            "info",
            "Confirming your payment…".to_owned(),
            "Waiting for the payment provider to confirm it. This usually takes a few seconds.",
        ),
        S::Pending => (
            "info",
            "Waiting for your payment…".to_owned(),
            "As soon as the payment provider confirms your payment, your credits are added.",
        ),
        S::Processing => (
            "info",
            "Your payment is processing…".to_owned(),
            "Some payment methods take a little longer. Your credits are added once it is confirmed.",
        ),
        S::Paid => (
            "ok",
            format!("paid — {} credits added", order.credits),
            "Thank you! The credits are in your account.",
        ),
        S::Failed => (
            "bad",
            "Your payment failed.".to_owned(),
            "The payment did not go through and no credits were added. You can try again with the same order.",
        ),
        S::Canceled => (
            "warn",
            "This order was canceled.".to_owned(),
            "The payment was canceled and no credits were added.",
        ),
        S::NeedsReview => (
            "warn",
            "Your order is under review, contact support.".to_owned(),
            "Something about this payment needs a person to look at it. Please contact support and mention the order id below.",
        ),
        S::Refunded => (
            "warn",
            "This order was refunded.".to_owned(),
            "The payment was refunded and its credits were taken back.",
        ),
        S::PartiallyRefunded => (
            "warn",
            "This order was partially refunded.".to_owned(),
            "Part of the payment was refunded and the matching share of credits was taken back.",
        ),
        S::Disputed => (
            "warn",
            "This payment is disputed.".to_owned(),
            "The payment is under dispute with your bank. Your credits are unchanged for now.",
        ),
        S::DisputeLost => (
            "bad",
            "The dispute on this payment was lost.".to_owned(),
            "Your bank decided the dispute in your favour and the money went back to you, so this order's credits were taken back. Contact support if this is a surprise.",
        ),
    };
    StatusPage {
        id: order.id,
        status: order.status.as_str(),
        credits: order.credits,
        amount: html::money(order.amount, &order.currency),
        refunded: (order.amount_refunded > 0)
            .then(|| html::money(order.amount_refunded, &order.currency)),
        created_at: html::timestamp(order.created_at),
        polling: matches!(order.status, S::Pending | S::Processing),
        tone,
        headline,
        detail,
        retry_url: match order.status {
            S::Failed => Some(format!("/orders/{}/pay", order.id)),
            S::Canceled => Some("/".to_owned()),
            _ => None,
        },
    }
}
