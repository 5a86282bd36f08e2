//! Signed Stripe deliveries, built before the clock starts.

use std::sync::Arc;

use paidonce::payments::wire::{self, Event, EventRequest, PaymentIntent};
use paidonce::webhook::signature;
use serde_json::{Value, json};

use crate::driver::MakeRequest;
use crate::stack::{self, Pack, Seeded};

/// A `payment_intent.succeeded` event as Stripe sends it: every field Stripe fills on
/// a card PaymentIntent (API 2026-09-30), so the body is the size paidonce really gets
/// (about 2.4 KB; the size is printed in the run's output), not a trimmed one that flatters.
/// The fields paidonce reads are the app's wire type; the rest ride in its `more`.
pub fn succeeded(event_id: &str, order: &Seeded, pack: &Pack) -> Value {
    let pi = &order.payment_intent_id;
    let charge = format!("ch_{}", &pi[pi.len().saturating_sub(24)..]);
    let mut intent = PaymentIntent::new(
        pi,
        pack.amount,
        &pack.currency,
        wire::order_metadata(&order.id.to_string()),
        1_700_000_000,
    )
    .succeeded(&charge);
    intent.capture_method = "automatic_async".into();
    intent.client_secret = Some(format!("{pi}_secret_bench0123456789abcdefghij"));
    intent.payment_method_types = [
        "card",
        "link",
        "cashapp",
        "amazon_pay",
        "klarna",
        "us_bank_account",
    ]
    .map(str::to_owned)
    .to_vec();
    let more = json!({
        "amount_details": {"tip": {}},
        "application": null,
        "application_fee_amount": null,
        "automatic_payment_methods": {"allow_redirects": "always", "enabled": true},
        "canceled_at": null,
        "cancellation_reason": null,
        "customer": null,
        "description": format!("{} credits (starter)", pack.credits),
        "excluded_payment_method_types": null,
        "invoice": null,
        "presentment_details": null,
        "next_action": null,
        "on_behalf_of": null,
        "payment_method": "pm_1QbenchPaymentMethod0123456",
        "payment_method_configuration_details": {"id": "pmc_1QbenchConfiguration0123", "parent": null},
        // With automatic payment methods Stripe lists every method the account has
        // on, each with its options: most of a real event's size.
        "payment_method_options": {
            "amazon_pay": {"express_checkout_element_session_id": null},
            "card": {"installments": null, "mandate_options": null, "network": null, "request_three_d_secure": "automatic"},
            "cashapp": {},
            "klarna": {"preferred_locale": null},
            "link": {"persistent_token": null},
            "us_bank_account": {
                "financial_connections": {"permissions": ["payment_method"], "prefetch": []},
                "mandate_options": {},
                "verification_method": "automatic"
            }
        },
        "processing": null,
        "receipt_email": "shopper@bench.example",
        "review": null,
        "setup_future_usage": null,
        "shipping": null,
        "source": null,
        "statement_descriptor": null,
        "statement_descriptor_suffix": null,
        "transfer_data": null,
        "transfer_group": null
    });
    intent.more = more.as_object().cloned().unwrap_or_default();
    let mut event = Event::new(
        event_id,
        "payment_intent.succeeded",
        &intent,
        chrono::Utc::now().timestamp(),
    );
    event.pending_webhooks = 2;
    event.request = EventRequest {
        id: Some("req_benchRequest012345".into()),
        idempotency_key: Some(format!("stripe-node-retry-{}", order.id)),
    };
    event.to_json()
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
