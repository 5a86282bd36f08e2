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
use crate::error::{AppError, PageError};
use crate::orders::return_sync;
use crate::state::AppState;
use crate::web::html;

#[derive(Template)]
#[template(path = "status.html")]
struct StatusPage {
    shop: crate::config::Shop,
    /// The receipt: what was bought, by whom (masked), when it was paid.
    pack_name: String,
    email: String,
    paid_at: Option<String>,
    /// Credits the order still holds after refunds and disputes.
    credits_left: i64,
    /// Why a payment failed, in the shopper's words.
    failure: Option<&'static str>,
    id: Uuid,
    status: &'static str,
    credits: i64,
    amount: String,
    refunded: Option<String>,
    created_at: String,
    polling: bool,
    /// A failed order the shopper just paid again: polled until the new answer is in.
    retrying: bool,
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
) -> Result<HttpResponse, PageError> {
    let claims_success = url::form_urlencoded::parse(req.query_string().as_bytes())
        .any(|(k, v)| k == "redirect_status" && v == "succeeded");
    let id = Uuid::parse_str(&path).map_err(|_| AppError::NotFound("order"))?;
    let order = return_sync::order_for_status_page(&state, id, claims_success).await?;
    let mut conn = state.db.get().await?;
    let email = crate::db::accounts::email_of(&mut conn, order.account_id).await?;
    let pack_name = crate::db::packs::name_of(&mut conn, &order.pack_id)
        .await?
        .unwrap_or_else(|| order.pack_id.clone());
    drop(conn);
    let mut page = status_view(&order, claims_success);
    page.shop = state.config.shop.clone();
    page.email = mask_email(&email);
    page.pack_name = pack_name;
    html::render(StatusCode::OK, &page)
}

/// "a•••@example.com": enough for the shopper to recognise, little for anyone else.
fn mask_email(email: &str) -> String {
    match email.split_once('@') {
        Some((local, domain)) => {
            let first: String = local.chars().take(1).collect();
            format!("{first}•••@{domain}")
        }
        None => "•••".to_owned(),
    }
}

/// A decline as the shopper should hear it. Fraud-related declines read as a plain
/// decline (telling a card tester which check failed helps the tester).
fn failure_words(reason: Option<&str>) -> &'static str {
    let reason = reason.unwrap_or_default();
    let has = |code: &str| reason.contains(code);
    if has("insufficient_funds") {
        "The card has insufficient funds."
    } else if has("expired_card") {
        "The card has expired."
    } else if has("incorrect_cvc") || has("invalid_cvc") {
        "The card's security code was not right."
    } else if has("incorrect_number") || has("invalid_number") {
        "The card number was not right."
    } else if has("processing_error") {
        "The card could not be processed. Trying again in a moment usually works."
    } else if has("authentication") {
        "Your bank's verification step did not complete."
    } else {
        "Your bank declined the payment."
    }
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
        // Back from paying a failed order again: the new attempt's answer is on its way.
        S::Failed if claims_success => (
            "info",
            "Confirming your payment…".to_owned(),
            "Waiting for the payment provider to confirm your new attempt. This usually takes a few seconds.",
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
        shop: crate::config::Shop::default(),
        pack_name: order.pack_id.clone(),
        email: String::new(),
        paid_at: order.paid_at.map(html::timestamp),
        credits_left: (order.credits - order.revoked).max(0),
        failure: (order.status == S::Failed && !claims_success)
            .then(|| failure_words(order.reason.as_deref())),
        id: order.id,
        status: order.status.as_str(),
        credits: order.credits,
        amount: html::money(order.amount, &order.currency),
        refunded: (order.amount_refunded > 0)
            .then(|| html::money(order.amount_refunded, &order.currency)),
        created_at: html::timestamp(order.created_at),
        polling: matches!(order.status, S::Pending | S::Processing)
            || (order.status == S::Failed && claims_success),
        retrying: order.status == S::Failed && claims_success,
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
