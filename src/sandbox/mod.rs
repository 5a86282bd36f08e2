//! The sandbox's pay page actions (no STRIPE_SECRET_KEY): a shopper's succeed / fail /
//! cancel moves the sandbox PaymentIntent and enqueues the Stripe-shaped events Stripe
//! would send, with optional delivery chaos; `delivery` posts them, signed, to our own
//! webhook endpoint. The sandbox touches only its own tables.

pub mod delivery;

use chrono::{DateTime, Utc};
use diesel_async::AsyncConnection;
use serde_json::Value;

use crate::db::{self, sandbox::Intent};
use crate::error::AppError;
use crate::payments::{IntentStatus, wire};
use crate::state::AppState;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Succeed,
    Fail,
    Cancel,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chaos {
    None,
    /// The same event delivered twice, concurrently.
    Duplicate,
    /// Delivered after a few seconds.
    Delay,
    /// A stale, earlier failure delivered after the real event.
    OutOfOrder,
    /// Never delivered, as a webhook lost on the way: still listed among the sandbox's
    /// events (as Stripe's `GET /v1/events` lists an event whatever became of its
    /// delivery), so the status page's check, the catch-up or the reconciler must heal it.
    Drop,
}

/// How far off a dropped event's delivery is: never, for any run of the sandbox.
const DROPPED: chrono::Duration = chrono::Duration::days(365 * 100);

/// How long `Chaos::Delay` holds an event back.
pub const DELAY: chrono::Duration = chrono::Duration::seconds(3);

impl Action {
    pub fn parse(s: &str) -> Result<Self, AppError> {
        match s {
            "succeed" => Ok(Action::Succeed),
            "fail" => Ok(Action::Fail),
            "cancel" => Ok(Action::Cancel),
            _ => Err(AppError::unprocessable(
                "invalid_action",
                "action must be succeed, fail or cancel",
            )),
        }
    }
}

impl Chaos {
    pub fn parse(s: &str) -> Result<Self, AppError> {
        match s {
            "" | "none" => Ok(Chaos::None),
            "duplicate" => Ok(Chaos::Duplicate),
            "delay" => Ok(Chaos::Delay),
            "out_of_order" => Ok(Chaos::OutOfOrder),
            "drop" => Ok(Chaos::Drop),
            _ => Err(AppError::unprocessable(
                "invalid_chaos",
                "chaos must be none, duplicate, delay, out_of_order or drop",
            )),
        }
    }
}

/// Where the shopper goes after acting: the order's status page, with the query
/// parameters Stripe appends on its redirect.
pub struct Acted {
    pub return_url: String,
}

pub async fn find_intent(state: &AppState, pi: &str) -> Result<Intent, AppError> {
    if !crate::payments::is_valid_intent_id(pi) {
        return Err(AppError::NotFound("payment intent"));
    }
    let mut conn = state.db.get().await?;
    db::sandbox::find(&mut conn, pi)
        .await?
        .ok_or(AppError::NotFound("payment intent"))
}

/// Applies the shopper's action to the sandbox intent and enqueues its events.
pub async fn act(
    state: &AppState,
    pi: &str,
    action: Action,
    chaos: Chaos,
) -> Result<Acted, AppError> {
    if !state.config.is_sandbox() {
        return Err(AppError::NotFound("sandbox"));
    }
    find_intent(state, pi).await?;
    let open = [
        IntentStatus::RequiresPaymentMethod,
        IntentStatus::Processing,
    ];
    let (to, error, event_type, redirect_status): (IntentStatus, Option<&str>, &str, &str) =
        match action {
            Action::Succeed => (
                IntentStatus::Succeeded,
                None,
                "payment_intent.succeeded",
                "succeeded",
            ),
            Action::Fail => (
                IntentStatus::RequiresPaymentMethod,
                Some("Your card was declined (sandbox)."),
                "payment_intent.payment_failed",
                "failed",
            ),
            Action::Cancel => (
                IntentStatus::Canceled,
                None,
                "payment_intent.canceled",
                "canceled",
            ),
        };
    let now = Utc::now();
    let mut conn = state.db.get().await?;
    let pi_owned = pi.to_owned();
    let intent = conn
        .transaction::<_, AppError, _>(async |c| {
            let Some(intent) = db::sandbox::transition(c, &pi_owned, &open, to, error).await?
            else {
                return Err(AppError::Client {
                    status: actix_web::http::StatusCode::CONFLICT,
                    code: "payment_intent_settled",
                    message: "this payment was already completed or canceled".into(),
                });
            };
            let main = event(event_type, &intent, now);
            match chaos {
                Chaos::None => enqueue(c, &main, now).await?,
                Chaos::Duplicate => {
                    enqueue(c, &main, now).await?;
                    enqueue(c, &main, now).await?;
                }
                Chaos::Delay => enqueue(c, &main, now + DELAY).await?,
                Chaos::Drop => enqueue(c, &main, now + DROPPED).await?,
                Chaos::OutOfOrder => {
                    // A stale earlier failure arriving after the real event. Not a stale
                    // `processing` after a failure: SPEC lets `failed` go back to
                    // `processing` on a new attempt, so that would be a real change.
                    let (stale_type, stale_status) = (
                        "payment_intent.payment_failed",
                        IntentStatus::RequiresPaymentMethod,
                    );
                    let stale_intent = Intent {
                        status: stale_status,
                        ..intent.clone()
                    };
                    let stale = event(
                        stale_type,
                        &stale_intent,
                        now - chrono::Duration::seconds(5),
                    );
                    enqueue(c, &main, now).await?;
                    enqueue(c, &stale, now + chrono::Duration::seconds(1)).await?;
                }
            }
            Ok(intent)
        })
        .await?;
    state.sandbox_wakeup.notify_waiters();
    let order_id = intent
        .metadata
        .get("order_id")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let return_url = format!(
        "{}?payment_intent={}&payment_intent_client_secret={}&redirect_status={redirect_status}",
        crate::orders::view::page_url(
            &state.public_base_url,
            uuid::Uuid::parse_str(order_id).unwrap_or_default(),
            "status"
        ),
        intent.id,
        intent.client_secret,
    );
    Ok(Acted { return_url })
}

pub async fn enqueue(
    conn: &mut diesel_async::AsyncPgConnection,
    event: &Value,
    at: DateTime<Utc>,
) -> diesel::QueryResult<()> {
    let id = event["id"].as_str().unwrap_or_default();
    db::sandbox::enqueue(conn, id, &event.to_string(), at).await
}

/// A Stripe-shaped event envelope around the intent as Stripe would send it.
pub fn event(event_type: &str, intent: &Intent, created: DateTime<Utc>) -> Value {
    envelope(event_type, intent_json(intent), created)
}

/// The event envelope around any object.
pub fn envelope(event_type: &str, object: Value, created: DateTime<Utc>) -> Value {
    let id = format!("evt_sandbox_{}", crate::random::token(24));
    wire::Event::new(&id, event_type, &object, created.timestamp()).to_json()
}

/// A succeeded intent's one charge, as Stripe would show it (`pi_sandbox_x` → `ch_sandbox_x`).
pub fn charge_json(intent: &Intent) -> Value {
    let id = crate::payments::sandbox::charge_of_intent(&intent.id).unwrap_or_default();
    let charge = wire::Charge::paying(&id, &intent_wire(intent), intent.amount_refunded);
    serde_json::to_value(charge).unwrap_or(Value::Null)
}

pub fn intent_json(intent: &Intent) -> Value {
    serde_json::to_value(intent_wire(intent)).unwrap_or(Value::Null)
}

/// The sandbox's intent as Stripe would show it.
fn intent_wire(intent: &Intent) -> wire::PaymentIntent {
    let mut pi = wire::PaymentIntent::new(
        &intent.id,
        intent.amount,
        &intent.currency,
        wire::metadata_from(&intent.metadata),
        intent.created_at.timestamp(),
    );
    pi.client_secret = Some(intent.client_secret.clone());
    pi.status = intent.status.as_str().to_owned();
    if intent.status == IntentStatus::Succeeded
        && let Some(charge) = crate::payments::sandbox::charge_of_intent(&intent.id)
    {
        pi = pi.succeeded(&charge);
    }
    if let Some(message) = &intent.last_payment_error {
        pi.last_payment_error = Some(wire::PaymentError::card_declined(message));
    }
    pi
}
