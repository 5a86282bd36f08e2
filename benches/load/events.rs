//! Signed Stripe deliveries, built before the clock starts.

use std::sync::Arc;

use paidonce::webhook::signature;
use serde_json::{Value, json};

use crate::driver::MakeRequest;
use crate::stack::{self, Pack, Seeded};

/// A `payment_intent.succeeded` event as Stripe sends it (tests/api/helpers.rs' shape).
pub fn succeeded(event_id: &str, order: &Seeded, pack: &Pack) -> Value {
    json!({
        "id": event_id,
        "object": "event",
        "api_version": "2026-09-30.endive",
        "created": chrono::Utc::now().timestamp(),
        "livemode": false,
        "pending_webhooks": 1,
        "request": {"id": null, "idempotency_key": null},
        "type": "payment_intent.succeeded",
        "data": {"object": {
            "id": order.payment_intent_id,
            "object": "payment_intent",
            "amount": pack.amount,
            "amount_capturable": 0,
            "amount_received": pack.amount,
            "capture_method": "automatic",
            "confirmation_method": "automatic",
            "created": 1_700_000_000,
            "currency": pack.currency,
            "livemode": false,
            "metadata": {"order_id": order.id.to_string()},
            "payment_method_types": ["card"],
            "status": "succeeded",
        }},
    })
}

pub struct Delivery {
    url: String,
    body: Vec<u8>,
    signature: String,
}

/// `event` to `base`/webhooks/stripe, signed now as Stripe signs.
pub fn delivery(base: &str, event: &Value) -> Delivery {
    let body = serde_json::to_vec(event).expect("event bytes");
    let signature = signature::header(stack::WEBHOOK_SECRET, chrono::Utc::now().timestamp(), &body);
    Delivery {
        url: format!("{base}/webhooks/stripe"),
        body,
        signature,
    }
}

/// One event per order, all to `base`.
pub fn unique(base: &str, tag: &str, set: &str, orders: &[Seeded], pack: &Pack) -> Vec<Delivery> {
    orders
        .iter()
        .enumerate()
        .map(|(k, o)| {
            delivery(
                base,
                &succeeded(&format!("evt_bench_{tag}_{set}_{k}"), o, pack),
            )
        })
        .collect()
}

/// Request `i` posts delivery `i`.
pub fn post(client: &reqwest::Client, deliveries: Vec<Delivery>) -> MakeRequest {
    let client = client.clone();
    let deliveries = Arc::new(deliveries);
    Arc::new(move |i: usize| {
        let d = &deliveries[i];
        client
            .post(&d.url)
            .header("Content-Type", "application/json")
            .header("Stripe-Signature", &d.signature)
            .body(d.body.clone())
    })
}
