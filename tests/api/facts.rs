//! What the outside world told the app, kept on the test side so the money checker can
//! say what must be true without asking the app: every event the app accepted (signed
//! by a test and answered 200, or listed by a Stripe double for the catch-up), and every
//! Stripe double's own record of its PaymentIntents and charges. The sandbox provider's
//! tables play Stripe's part for sandbox orders and are read by the checker itself.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};

use serde_json::Value;

/// One fact about a PaymentIntent, as an event stated it.
#[derive(Clone, Debug, PartialEq)]
pub enum Fact {
    /// `payment_intent.succeeded`: what was received, and whose order it names.
    Succeeded {
        amount: i64,
        currency: String,
        order_id: Option<String>,
        payment_intent: String,
    },
    /// `charge.refunded`: the charge's cumulative refund total when the event was made.
    Refunded {
        charge_amount: i64,
        amount_refunded: i64,
        currency: String,
        created: i64,
    },
    /// A refund that failed or was canceled: from then on the provider's total governs.
    RefundFailed { created: i64 },
    /// `charge.dispute.closed`, lost or not.
    DisputeClosed { lost: bool },
}

/// Facts by the PaymentIntent id, the order id (metadata) or `charge:<id>` they name.
static FACTS: LazyLock<Mutex<HashMap<String, Vec<Fact>>>> = LazyLock::new(Default::default);

/// Records an event Stripe made and the app accepted. Events for another mode or a
/// Connect account, and shapes that are no Stripe object, state nothing.
pub fn record(event: &Value) {
    if event["livemode"].as_bool() != Some(false) || !event["account"].is_null() {
        return;
    }
    let object = &event["data"]["object"];
    let created = event["created"].as_i64().unwrap_or_default();
    let text = |v: &Value| v.as_str().map(str::to_owned);
    let fact = match event["type"].as_str().unwrap_or_default() {
        "payment_intent.succeeded" if object["status"] == "succeeded" => Fact::Succeeded {
            amount: object["amount_received"]
                .as_i64()
                .or_else(|| object["amount"].as_i64())
                .unwrap_or(-1),
            currency: text(&object["currency"]).unwrap_or_default(),
            order_id: text(&object["metadata"]["order_id"]),
            payment_intent: text(&object["id"]).unwrap_or_default(),
        },
        "charge.refunded" => Fact::Refunded {
            charge_amount: object["amount"].as_i64().unwrap_or(-1),
            amount_refunded: object["amount_refunded"].as_i64().unwrap_or(-1),
            currency: text(&object["currency"]).unwrap_or_default(),
            created,
        },
        "charge.refund.updated" | "refund.updated" | "refund.failed"
            if matches!(object["status"].as_str(), Some("failed" | "canceled")) =>
        {
            Fact::RefundFailed { created }
        }
        "charge.dispute.closed" => Fact::DisputeClosed {
            lost: object["status"] == "lost",
        },
        _ => return,
    };
    let mut keys = Vec::new();
    let pi_key = if object["object"] == "payment_intent" {
        &object["id"]
    } else {
        &object["payment_intent"]
    };
    keys.extend(text(pi_key));
    keys.extend(text(&object["metadata"]["order_id"]));
    if keys.is_empty() {
        let charge = if object["object"] == "charge" {
            &object["id"]
        } else {
            &object["charge"]
        };
        keys.extend(text(charge).map(|c| format!("charge:{c}")));
    }
    let mut facts = FACTS.lock().unwrap();
    for key in keys {
        facts.entry(key).or_default().push(fact.clone());
    }
}

/// Every fact naming the order, its PaymentIntent or one of the PaymentIntent's charges
/// (as the provider knows them), once each.
pub fn about(order_id: &str, payment_intent: Option<&str>) -> Vec<Fact> {
    let mut keys = vec![order_id.to_owned()];
    if let Some(pi) = payment_intent {
        keys.push(pi.to_owned());
        if let Some(charge) =
            double_intent(pi).and_then(|i| i["latest_charge"].as_str().map(str::to_owned))
        {
            keys.push(format!("charge:{charge}"));
        }
    }
    let facts = FACTS.lock().unwrap();
    let mut seen = Vec::new();
    for key in &keys {
        for fact in facts.get(key).into_iter().flatten() {
            // An event naming both the PaymentIntent and the order is stored twice.
            if !seen.contains(fact) {
                seen.push(fact.clone());
            }
        }
    }
    seen
}

/// The PaymentIntent as a live Stripe double holds it.
pub fn double_intent(pi: &str) -> Option<Value> {
    paidonce_testkit::stripe_double::live_intent(pi)
}

/// The refund total of the PaymentIntent's charge as a live Stripe double holds it.
pub fn double_amount_refunded(pi: &str) -> Option<i64> {
    paidonce_testkit::stripe_double::live_amount_refunded(pi)
}
