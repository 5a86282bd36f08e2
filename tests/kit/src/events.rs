//! Stripe events as the tests and the load lab send them, built from the app's own wire
//! types (`paidonce::payments::wire`), so the double, the sandbox and these agree on
//! every object's shape. Sign them with `paidonce::webhook::signature`, as the Stripe
//! CLI does.

use paidonce::payments::wire::{self, Charge, Dispute, Event, PaymentIntent, Refund};
use serde_json::Value;
use uuid::Uuid;

pub fn new_event_id() -> String {
    format!("evt_test_{}", Uuid::new_v4().simple())
}

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// The order's PaymentIntent as Stripe holds it, from the order's API answer (`id`,
/// `payment_intent_id`, `amount`, `currency`).
pub fn intent_of(order: &Value, status: &str, amount_received: i64) -> PaymentIntent {
    let mut pi = PaymentIntent::new(
        order["payment_intent_id"].as_str().unwrap_or_default(),
        order["amount"].as_i64().unwrap_or_default(),
        order["currency"].as_str().unwrap_or_default(),
        wire::order_metadata(order["id"].as_str().unwrap_or_default()),
        1_700_000_000,
    );
    pi.status = status.to_owned();
    pi.amount_received = amount_received;
    pi
}

/// An event envelope as Stripe makes it, `created` now.
pub fn stripe_event(event_type: &str, object: Value) -> Value {
    Event::new(&new_event_id(), event_type, &object, now()).to_json()
}

/// A `payment_intent.*` event as Stripe sends it (API version, extra fields and all).
pub fn pi_event(
    event_id: &str,
    event_type: &str,
    order: &Value,
    status: &str,
    amount_received: i64,
) -> Value {
    let pi = intent_of(order, status, amount_received);
    Event::new(event_id, event_type, &pi, now()).to_json()
}

pub fn succeeded(event_id: &str, order: &Value) -> Value {
    pi_event(
        event_id,
        "payment_intent.succeeded",
        order,
        "succeeded",
        order["amount"].as_i64().unwrap_or_default(),
    )
}

pub fn failed(event_id: &str, order: &Value) -> Value {
    pi_event(
        event_id,
        "payment_intent.payment_failed",
        order,
        "requires_payment_method",
        0,
    )
}

/// `charge.refunded` for the order's charge `ch_test`, its refund total `amount_refunded`.
pub fn refunded(event_id: &str, order: &Value, amount_refunded: i64) -> Value {
    let pi = intent_of(
        order,
        "succeeded",
        order["amount"].as_i64().unwrap_or_default(),
    );
    let mut charge = Charge::paying("ch_test", &pi, amount_refunded);
    charge.metadata = wire::Metadata::new();
    Event::new(event_id, "charge.refunded", &charge, 1_700_000_000).to_json()
}

/// `charge.dispute.created` on the order's charge `ch_test`, for its whole amount.
pub fn disputed(event_id: &str, order: &Value) -> Value {
    let mut dispute = dispute(
        "ch_test",
        order["payment_intent_id"].as_str(),
        order["amount"].as_i64().unwrap_or_default(),
        "needs_response",
    );
    dispute.id = "dp_test".into();
    dispute.currency = order["currency"].as_str().unwrap_or("usd").to_owned();
    Event::new(event_id, "charge.dispute.created", &dispute, 1_700_000_000).to_json()
}

/// A dispute on `charge` as Stripe's own example has it (`payment_intent` may be null).
pub fn dispute(charge: &str, payment_intent: Option<&str>, amount: i64, status: &str) -> Dispute {
    Dispute {
        id: format!("du_{}", Uuid::new_v4().simple()),
        object: "dispute",
        amount,
        charge: charge.to_owned(),
        created: now(),
        currency: "usd".into(),
        is_charge_refundable: false,
        livemode: false,
        metadata: wire::Metadata::new(),
        payment_intent: payment_intent.map(str::to_owned),
        reason: "fraudulent".into(),
        status: status.to_owned(),
    }
}

pub fn dispute_object(
    charge: &str,
    payment_intent: Option<&str>,
    amount: i64,
    status: &str,
) -> Value {
    serde_json::to_value(dispute(charge, payment_intent, amount, status)).unwrap_or(Value::Null)
}

/// A refund of `charge` in `status`, as `charge.refund.updated` / `refund.*` carry it.
pub fn refund_object(charge: &str, payment_intent: &str, amount: i64, status: &str) -> Value {
    let refund = Refund {
        id: format!("re_{}", Uuid::new_v4().simple()),
        object: "refund",
        amount,
        charge: charge.to_owned(),
        created: now(),
        currency: "usd".into(),
        failure_reason: (status == "failed").then(|| "expired_or_canceled_card".to_owned()),
        metadata: wire::Metadata::new(),
        payment_intent: Some(payment_intent.to_owned()),
        status: status.to_owned(),
    };
    serde_json::to_value(refund).unwrap_or(Value::Null)
}
