//! Stripe's objects as they travel, defined once: the JSON the sandbox answers and sends
//! in its events, and what the test kit's Stripe double and event builders and the load
//! lab write, are these types. Each keeps the fields paidonce reads or Stripe always
//! fills, and `more` for the rest of a real object (the load lab fills it so its events
//! are the size Stripe's are).
//!
//! Reading stays lenient on purpose (`IntentSnapshot::from_json`, `ChargeSnapshot`,
//! `webhook::event`): async-stripe pins the API version of the calls paidonce makes, but
//! webhook events arrive in the account's version, which may be newer, and a Stripe
//! answer without a field paidonce does not need must not fail an order (see the test
//! `stripe_provider::a_lean_or_newer_payment_intent_shape_is_accepted`). A strict
//! deserialisation of these types would refuse exactly those.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Map, Value};

/// The API version the sandbox and the doubles write into their events.
pub const API_VERSION: &str = "2026-09-30.endive";

pub type Metadata = BTreeMap<String, String>;

/// The string entries of a JSON `metadata` object (anything else is not metadata).
pub fn metadata_from(value: &Value) -> Metadata {
    value
        .as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                .collect()
        })
        .unwrap_or_default()
}

/// `metadata` naming the order, as paidonce sets it on everything it creates.
pub fn order_metadata(order_id: &str) -> Metadata {
    BTreeMap::from([("order_id".to_owned(), order_id.to_owned())])
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PaymentIntent {
    pub id: String,
    pub object: &'static str,
    pub amount: i64,
    pub amount_capturable: i64,
    pub amount_received: i64,
    pub capture_method: String,
    pub client_secret: Option<String>,
    pub confirmation_method: String,
    pub created: i64,
    pub currency: String,
    pub last_payment_error: Option<PaymentError>,
    pub latest_charge: Option<String>,
    pub livemode: bool,
    pub metadata: Metadata,
    pub payment_method_types: Vec<String>,
    pub status: String,
    #[serde(flatten)]
    pub more: Map<String, Value>,
}

impl PaymentIntent {
    /// A new card PaymentIntent, as `POST /v1/payment_intents` answers it.
    pub fn new(id: &str, amount: i64, currency: &str, metadata: Metadata, created: i64) -> Self {
        PaymentIntent {
            id: id.to_owned(),
            object: "payment_intent",
            amount,
            amount_capturable: 0,
            amount_received: 0,
            capture_method: "automatic".into(),
            client_secret: None,
            confirmation_method: "automatic".into(),
            created,
            currency: currency.to_owned(),
            last_payment_error: None,
            latest_charge: None,
            livemode: false,
            metadata,
            payment_method_types: vec!["card".into()],
            status: super::IntentStatus::RequiresPaymentMethod.as_str().into(),
            more: Map::new(),
        }
    }

    /// Paid in full: `amount_received` and the charge that paid it.
    pub fn succeeded(mut self, charge_id: &str) -> Self {
        self.status = super::IntentStatus::Succeeded.as_str().into();
        self.amount_received = self.amount;
        self.latest_charge = Some(charge_id.to_owned());
        self.last_payment_error = None;
        self
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PaymentError {
    #[serde(rename = "type")]
    pub kind: String,
    pub code: Option<String>,
    pub message: String,
}

impl PaymentError {
    pub fn card_declined(message: &str) -> Self {
        PaymentError {
            kind: "card_error".into(),
            code: Some("card_declined".into()),
            message: message.to_owned(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Charge {
    pub id: String,
    pub object: &'static str,
    pub amount: i64,
    pub amount_captured: i64,
    pub amount_refunded: i64,
    pub captured: bool,
    pub created: i64,
    pub currency: String,
    pub livemode: bool,
    pub metadata: Metadata,
    pub paid: bool,
    pub payment_intent: Option<String>,
    pub refunded: bool,
    pub status: String,
    #[serde(flatten)]
    pub more: Map<String, Value>,
}

impl Charge {
    /// The charge that paid `intent` in full, with `amount_refunded` refunded since.
    pub fn paying(id: &str, intent: &PaymentIntent, amount_refunded: i64) -> Self {
        Charge {
            id: id.to_owned(),
            object: "charge",
            amount: intent.amount,
            amount_captured: intent.amount,
            amount_refunded,
            captured: true,
            created: intent.created,
            currency: intent.currency.clone(),
            livemode: intent.livemode,
            metadata: intent.metadata.clone(),
            paid: true,
            payment_intent: Some(intent.id.clone()),
            refunded: amount_refunded >= intent.amount,
            status: "succeeded".into(),
            more: Map::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Refund {
    pub id: String,
    pub object: &'static str,
    pub amount: i64,
    pub charge: String,
    pub created: i64,
    pub currency: String,
    pub failure_reason: Option<String>,
    pub metadata: Metadata,
    pub payment_intent: Option<String>,
    pub status: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Dispute {
    pub id: String,
    pub object: &'static str,
    pub amount: i64,
    pub charge: String,
    pub created: i64,
    pub currency: String,
    pub is_charge_refundable: bool,
    pub livemode: bool,
    pub metadata: Metadata,
    pub payment_intent: Option<String>,
    pub reason: String,
    pub status: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event {
    pub id: String,
    pub object: &'static str,
    pub api_version: Option<String>,
    pub created: i64,
    pub data: EventData,
    pub livemode: bool,
    pub pending_webhooks: i64,
    pub request: EventRequest,
    #[serde(rename = "type")]
    pub kind: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EventData {
    pub object: Value,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct EventRequest {
    pub id: Option<String>,
    pub idempotency_key: Option<String>,
}

impl Event {
    /// `kind` (e.g. `payment_intent.succeeded`) about `object`, made at `created`.
    pub fn new(id: &str, kind: &str, object: &impl Serialize, created: i64) -> Self {
        Event {
            id: id.to_owned(),
            object: "event",
            api_version: Some(API_VERSION.to_owned()),
            created,
            data: EventData {
                object: serde_json::to_value(object).unwrap_or(Value::Null),
            },
            livemode: false,
            pending_webhooks: 1,
            request: EventRequest::default(),
            kind: kind.to_owned(),
        }
    }

    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payments::IntentSnapshot;

    #[test]
    fn what_is_written_reads_back_through_the_lenient_readers() {
        let pi = PaymentIntent::new("pi_1", 500, "usd", order_metadata("o-1"), 1).succeeded("ch_1");
        let json = serde_json::to_value(&pi).unwrap();
        assert_eq!(json["object"], "payment_intent");
        assert_eq!(json["metadata"]["order_id"], "o-1");
        let read = IntentSnapshot::from_json(&json).unwrap();
        assert_eq!(
            (
                read.status.as_str(),
                read.amount_received,
                read.latest_charge.as_deref()
            ),
            ("succeeded", Some(500), Some("ch_1"))
        );
        let mut declined = PaymentIntent::new("pi_2", 500, "usd", Metadata::new(), 1);
        declined.last_payment_error = Some(PaymentError::card_declined("no"));
        let read = IntentSnapshot::from_json(&serde_json::to_value(&declined).unwrap()).unwrap();
        assert!(read.has_payment_error);
        let event = Event::new("evt_1", "payment_intent.succeeded", &pi, 2).to_json();
        assert_eq!(event["type"], "payment_intent.succeeded");
        assert_eq!(event["data"]["object"]["id"], "pi_1");
    }
}
