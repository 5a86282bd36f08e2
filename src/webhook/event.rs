//! A minimal Stripe event envelope: what we store and what settlement needs, nothing
//! more, so unknown fields, unknown types and newer API versions pass through. Only
//! runs after the signature verified.

use serde_json::Value;

use crate::domain::order::{FactKind, PaymentFact};
use crate::orders::settle::OrderRef;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    #[error("body is not valid JSON")]
    MalformedJson,
    #[error("body is not a Stripe event: {0}")]
    NotAnEvent(String),
    #[error("data.object of a {event_type} event has the wrong shape: {reason}")]
    WrongShape { event_type: String, reason: String },
}

impl EventError {
    pub fn code(&self) -> &'static str {
        match self {
            EventError::MalformedJson => "malformed_json",
            EventError::NotAnEvent(_) => "not_a_stripe_event",
            EventError::WrongShape { .. } => "invalid_event_object",
        }
    }
}

crate::text_enum! {
    /// The event types paidonce acts on (SPEC §5); every other type is stored and ignored.
    pub enum EventKind {
        PaymentIntentProcessing => "payment_intent.processing",
        PaymentIntentSucceeded => "payment_intent.succeeded",
        PaymentIntentPaymentFailed => "payment_intent.payment_failed",
        PaymentIntentCanceled => "payment_intent.canceled",
        ChargeRefunded => "charge.refunded",
        ChargeDisputeCreated => "charge.dispute.created",
        ChargeDisputeClosed => "charge.dispute.closed",
        ChargeRefundUpdated => "charge.refund.updated",
        RefundUpdated => "refund.updated",
        RefundFailed => "refund.failed",
    }
}

impl EventKind {
    /// The `object` of the Stripe object such an event carries in `data.object`.
    pub fn object_type(self) -> &'static str {
        use EventKind::*;
        match self {
            PaymentIntentProcessing
            | PaymentIntentSucceeded
            | PaymentIntentPaymentFailed
            | PaymentIntentCanceled => "payment_intent",
            ChargeRefunded => "charge",
            ChargeDisputeCreated | ChargeDisputeClosed => "dispute",
            ChargeRefundUpdated | RefundUpdated | RefundFailed => "refund",
        }
    }

    /// What the event says, in an operator's words.
    pub fn describe(self) -> &'static str {
        match self {
            EventKind::PaymentIntentProcessing => "payment processing",
            EventKind::PaymentIntentSucceeded => "payment succeeded",
            EventKind::PaymentIntentPaymentFailed => "payment failed",
            EventKind::PaymentIntentCanceled => "payment canceled",
            EventKind::ChargeRefunded => "refund (charge's refund total)",
            EventKind::ChargeDisputeCreated => "dispute opened",
            EventKind::ChargeDisputeClosed => "dispute closed",
            EventKind::ChargeRefundUpdated | EventKind::RefundUpdated => "refund updated",
            EventKind::RefundFailed => "refund failed",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Event {
    pub id: String,
    pub event_type: String,
    /// `None` for a type paidonce does not handle.
    pub kind: Option<EventKind>,
    pub api_version: Option<String>,
    pub livemode: bool,
    /// Stripe's `created` (unix seconds), when the envelope carries it.
    pub created: Option<i64>,
    /// Set for events from a connected account.
    pub account: Option<String>,
    pub raw: Value,
}

/// What an event means for settlement.
#[derive(Debug, Clone, PartialEq)]
pub enum Meaning {
    /// Stored, but nothing to apply (unhandled type, thin event, Connect account).
    Ignored(&'static str),
    Fact {
        reference: OrderRef,
        fact: PaymentFact,
    },
    /// A refund failed or was canceled: what it means depends on the charge's refund
    /// total now, which only the provider knows (asked before the transaction opens).
    RefundFailed {
        reference: OrderRef,
        charge_id: String,
        /// The failure event's time: refund events made before it are stale.
        as_of: i64,
    },
}

impl Meaning {
    pub fn reference(&self) -> Option<&OrderRef> {
        match self {
            Meaning::Ignored(_) => None,
            Meaning::Fact { reference, .. } | Meaning::RefundFailed { reference, .. } => {
                Some(reference)
            }
        }
    }

    pub fn reference_mut(&mut self) -> Option<&mut OrderRef> {
        match self {
            Meaning::Ignored(_) => None,
            Meaning::Fact { reference, .. } | Meaning::RefundFailed { reference, .. } => {
                Some(reference)
            }
        }
    }
}

impl PartialEq for OrderRef {
    fn eq(&self, other: &Self) -> bool {
        self.metadata_order_id == other.metadata_order_id
            && self.payment_intent_id == other.payment_intent_id
            && self.charge_id == other.charge_id
    }
}

/// serde_json caps nesting at 128 levels, so the recursion is bounded.
fn has_nul(value: &Value) -> bool {
    match value {
        Value::String(s) => s.contains('\0'),
        Value::Array(items) => items.iter().any(has_nul),
        Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || has_nul(v)),
        Value::Null | Value::Bool(_) | Value::Number(_) => false,
    }
}

impl Event {
    pub fn parse(body: &[u8]) -> Result<Event, EventError> {
        let raw: Value = serde_json::from_slice(body).map_err(|_| EventError::MalformedJson)?;
        let not_event = |why: &str| EventError::NotAnEvent(why.to_owned());
        if has_nul(&raw) {
            // Postgres keeps no NUL in text or jsonb: the event could never be stored.
            return Err(not_event("a string or key holds a NUL character (\\u0000)"));
        }
        let obj = raw
            .as_object()
            .ok_or_else(|| not_event("not a JSON object"))?;
        if let Some(kind) = obj.get("object") {
            // v1 envelopes say "event"; Stripe's v2 (thin) events "v2.core.event".
            let is_event = kind
                .as_str()
                .is_some_and(|k| k == "event" || (k.starts_with("v2.") && k.ends_with(".event")));
            if !is_event {
                return Err(not_event("object is not an event"));
            }
        }
        let id = obj
            .get("id")
            .and_then(Value::as_str)
            .ok_or_else(|| not_event("no string id"))?;
        if id.is_empty() || id.len() > 255 || !id.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(not_event("id is empty, too long or not printable ASCII"));
        }
        let event_type = obj
            .get("type")
            .and_then(Value::as_str)
            .ok_or_else(|| not_event("no string type"))?;
        if event_type.is_empty() || event_type.len() > 255 {
            return Err(not_event("type is empty or too long"));
        }
        let livemode = match obj.get("livemode") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err(not_event("livemode is not a boolean")),
        };
        let optional_str = |name: &str| match obj.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(EventError::NotAnEvent(format!("{name} is not a string"))),
        };
        let api_version = optional_str("api_version")?;
        let account = optional_str("account")?;
        // v1 events say unix seconds; v2 (thin) events a timestamp string, never used.
        let created = obj.get("created").and_then(Value::as_i64);
        match obj.get("data") {
            None | Some(Value::Null) | Some(Value::Object(_)) => {}
            Some(_) => return Err(not_event("data is not an object")),
        }
        Ok(Event {
            id: id.to_owned(),
            event_type: event_type.to_owned(),
            kind: event_type.parse().ok(),
            api_version,
            created,
            livemode,
            account,
            raw,
        })
    }

    /// `data.object`, or `None` for a thin event.
    fn object(&self) -> Option<&Value> {
        self.raw
            .get("data")
            .and_then(|d| d.get("object"))
            .filter(|o| !o.is_null())
    }

    /// What this event means for its order. A handled type with a malformed object is an
    /// error (answered 400 before anything is stored); an object that is well formed but
    /// contradicts itself or the order becomes a fact that sends the order to review.
    pub fn meaning(&self) -> Result<Meaning, EventError> {
        if self.account.is_some() {
            return Ok(Meaning::Ignored("event from a connected account"));
        }
        let Some(kind) = self.kind else {
            return Ok(Meaning::Ignored("event type not handled"));
        };
        let Some(object) = self.object() else {
            return Ok(Meaning::Ignored("thin event without data.object"));
        };
        let shape = |reason: String| EventError::WrongShape {
            event_type: self.event_type.clone(),
            reason,
        };
        self.meaning_of(kind, object).map_err(shape)
    }

    fn meaning_of(&self, kind: EventKind, object: &Value) -> Result<Meaning, String> {
        use EventKind::*;
        let expected = kind.object_type();
        let fields = ObjectFields::new(object, expected)?;
        let metadata_order_id = fields.metadata_order_id()?;
        let fact = |reference: OrderRef, kind: FactKind| Meaning::Fact {
            fact: PaymentFact {
                payment_intent_id: reference.payment_intent_id.clone(),
                kind,
            },
            reference,
        };
        if expected == "payment_intent" {
            // Only what settlement needs is required: the id always; amount and currency
            // for a success (amount_received, else amount).
            let id = fields.string("id")?;
            let fact_kind = match kind {
                PaymentIntentCanceled => FactKind::Canceled,
                PaymentIntentProcessing => FactKind::Processing,
                PaymentIntentSucceeded => FactKind::Succeeded {
                    amount_received: match fields.optional_int("amount_received")? {
                        Some(received) => received,
                        None => fields.int("amount")?,
                    },
                    currency: fields.string("currency")?,
                },
                PaymentIntentPaymentFailed => FactKind::Failed {
                    error: fields
                        .0
                        .get("last_payment_error")
                        .and_then(crate::payments::payment_error_words),
                },
                ChargeRefunded | ChargeDisputeCreated | ChargeDisputeClosed
                | ChargeRefundUpdated | RefundUpdated | RefundFailed => {
                    return Err(format!("{kind} carries no payment_intent"));
                }
            };
            let reference = OrderRef {
                metadata_order_id,
                payment_intent_id: Some(id),
                charge_id: fields.id_or_object("latest_charge")?,
            };
            return Ok(fact(reference, fact_kind));
        }
        let reference = OrderRef {
            metadata_order_id,
            payment_intent_id: fields.id_or_object("payment_intent")?,
            charge_id: if kind == ChargeRefunded {
                Some(fields.string("id")?)
            } else {
                fields.id_or_object("charge")?
            },
        };
        let fact_kind = match kind {
            ChargeRefunded => FactKind::Refunded {
                charge_amount: fields.int("amount")?,
                amount_refunded: fields.int("amount_refunded")?,
                currency: fields.string("currency")?,
                as_of: self.created,
            },
            ChargeDisputeCreated | ChargeDisputeClosed => {
                let status = fields.optional_string("status")?;
                let known = status.as_deref().map(|s| DISPUTE_STATUSES.contains(&s));
                if reference.charge_id.is_none() {
                    FactKind::Contradiction("the dispute names no charge")
                } else if known == Some(false) {
                    FactKind::Contradiction("the dispute has a status nobody knows")
                } else if kind == ChargeDisputeCreated {
                    FactKind::DisputeOpened {
                        amount: fields.optional_int("amount")?,
                        currency: fields.optional_string("currency")?,
                    }
                } else {
                    match status.as_deref() {
                        Some("lost") | Some("won") | Some("warning_closed") | Some("prevented") => {
                            FactKind::DisputeClosed {
                                lost: status.as_deref() == Some("lost"),
                                amount: fields.optional_int("amount")?,
                                currency: fields.optional_string("currency")?,
                            }
                        }
                        _ => FactKind::Contradiction("a dispute closed without an outcome"),
                    }
                }
            }
            _ => {
                // A refund: only a failure or cancellation changes anything.
                let status = fields.optional_string("status")?;
                let status = status
                    .as_deref()
                    .or((kind == RefundFailed).then_some("failed"));
                match (status, &reference.charge_id) {
                    (Some("failed" | "canceled"), Some(charge)) => {
                        return Ok(Meaning::RefundFailed {
                            charge_id: charge.clone(),
                            as_of: self
                                .created
                                .unwrap_or_else(|| chrono::Utc::now().timestamp()),
                            reference,
                        });
                    }
                    (Some("failed" | "canceled"), None) => {
                        FactKind::Contradiction("the failed refund names no charge")
                    }
                    (Some("pending" | "requires_action" | "succeeded"), _) => {
                        FactKind::RefundInFlight
                    }
                    _ => FactKind::Contradiction("the refund has a status nobody knows"),
                }
            }
        };
        Ok(fact(reference, fact_kind))
    }
}

/// Every status Stripe gives a dispute (newer API versions add `prevented`).
const DISPUTE_STATUSES: [&str; 8] = [
    "warning_needs_response",
    "warning_under_review",
    "warning_closed",
    "needs_response",
    "under_review",
    "won",
    "lost",
    "prevented",
];

/// Typed reads from a charge or dispute object.
struct ObjectFields<'a>(&'a serde_json::Map<String, Value>);

impl<'a> ObjectFields<'a> {
    fn new(object: &'a Value, expected: &str) -> Result<Self, String> {
        let map = object.as_object().ok_or("data.object is not an object")?;
        if let Some(kind) = map.get("object")
            && kind.as_str() != Some(expected)
        {
            return Err(format!("object is {kind}, expected {expected}"));
        }
        if !map.get("id").is_some_and(Value::is_string) {
            return Err("missing string id".into());
        }
        Ok(ObjectFields(map))
    }

    fn int(&self, name: &str) -> Result<i64, String> {
        self.0
            .get(name)
            .and_then(Value::as_i64)
            .ok_or_else(|| format!("missing or invalid {name}"))
    }

    /// Absent or null is `None`; present but not an integer is an error.
    fn optional_int(&self, name: &str) -> Result<Option<i64>, String> {
        match self.0.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_i64()
                .map(Some)
                .ok_or_else(|| format!("invalid {name}")),
        }
    }

    fn string(&self, name: &str) -> Result<String, String> {
        self.0
            .get(name)
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| format!("missing or invalid {name}"))
    }

    /// Absent or null is `None`; present but not a string is an error.
    fn optional_string(&self, name: &str) -> Result<Option<String>, String> {
        match self.0.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(format!("invalid {name}")),
        }
    }

    /// A reference such as `payment_intent` or `charge`: an id or an expanded object;
    /// absent or null is allowed. Ids that could not be Stripe's are refused.
    fn id_or_object(&self, name: &str) -> Result<Option<String>, String> {
        let id = match self.0.get(name) {
            None | Some(Value::Null) => return Ok(None),
            Some(Value::String(s)) => s.as_str(),
            Some(Value::Object(o)) => o
                .get("id")
                .and_then(Value::as_str)
                .ok_or(format!("{name} object without id"))?,
            Some(_) => return Err(format!("{name} is neither an id nor an object")),
        };
        if id.is_empty()
            || id.len() > 255
            || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            return Err(format!("{name} is not a Stripe id"));
        }
        Ok(Some(id.to_owned()))
    }

    fn metadata_order_id(&self) -> Result<Option<String>, String> {
        match self.0.get("metadata") {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Object(m)) => {
                Ok(m.get("order_id").and_then(Value::as_str).map(str::to_owned))
            }
            Some(_) => Err("metadata is not an object".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(v: Value) -> Result<Meaning, EventError> {
        Event::parse(v.to_string().as_bytes())?.meaning()
    }

    #[test]
    fn non_events_are_refused() {
        for bad in [
            json!([]),
            json!({"type": "x"}),
            json!({"id": "evt_1"}),
            json!({"id": 5, "type": "x"}),
            json!({"id": "evt_1", "type": "x", "object": "charge"}),
            json!({"id": "evt_1", "type": "x", "data": []}),
            json!({"id": "evt_1", "type": "x", "livemode": "yes"}),
            json!({"id": "", "type": "x"}),
            json!({"id": "evt_1", "type": "x", "data": {"object": {"d": ["a\u{0}"]}}}),
            json!({"id": "evt_1", "type": "x", "data": {"object": {"\u{0}": 1}}}),
        ] {
            assert!(
                matches!(
                    Event::parse(bad.to_string().as_bytes()),
                    Err(EventError::NotAnEvent(_))
                ),
                "{bad}"
            );
        }
        assert_eq!(
            Event::parse(b"{nope").unwrap_err(),
            EventError::MalformedJson
        );
        // An escaped backslash before u0000 is six characters of text, not a NUL.
        assert!(
            Event::parse(br#"{"id":"evt_1","type":"x","data":{"object":{"d":"\\u0000"}}}"#).is_ok()
        );
    }

    #[test]
    fn unknown_types_thin_events_and_connect_events_are_ignored() {
        assert!(matches!(
            event(json!({"id": "evt_1", "type": "brand_new.thing", "data": {"object": 5}})),
            Ok(Meaning::Ignored(_))
        ));
        assert!(matches!(
            event(json!({"id": "evt_1", "type": "payment_intent.succeeded"})),
            Ok(Meaning::Ignored(_))
        ));
        assert!(matches!(
            event(
                json!({"id": "evt_1", "type": "payment_intent.succeeded", "data": {"object": null}})
            ),
            Ok(Meaning::Ignored(_))
        ));
        assert!(matches!(
            event(
                json!({"id": "evt_1", "type": "payment_intent.succeeded", "account": "acct_1",
            "data": {"object": {"id": "pi_1"}}})
            ),
            Ok(Meaning::Ignored(_))
        ));
    }

    #[test]
    fn handled_types_with_a_wrong_shape_are_errors() {
        for obj in [
            json!("pi_1"),
            json!({"id": "pi_1"}),
            json!({"id": 7, "amount": 1, "currency": "usd"}),
            json!({"id": "pi_1", "amount_received": "1", "amount": 1, "currency": "usd"}),
            json!({"id": "pi_1", "object": "charge", "amount": 1, "currency": "usd", "status": "succeeded"}),
        ] {
            let got = event(
                json!({"id": "evt_1", "type": "payment_intent.succeeded", "data": {"object": obj}}),
            );
            assert!(matches!(got, Err(EventError::WrongShape { .. })), "{obj}");
        }
        let got = event(
            json!({"id": "evt_1", "type": "charge.refunded", "data": {"object": {"id": "ch_1", "amount": 5}}}),
        );
        assert!(matches!(got, Err(EventError::WrongShape { .. })));
    }

    #[test]
    fn lean_objects_carry_only_what_their_type_needs() {
        let failed = event(
            json!({"id": "evt_1", "type": "payment_intent.payment_failed",
            "data": {"object": {"id": "pi_1"}}}),
        );
        assert!(matches!(
            failed,
            Ok(Meaning::Fact {
                fact: PaymentFact {
                    kind: FactKind::Failed { .. },
                    ..
                },
                ..
            })
        ));
        let ok = event(
            json!({"id": "evt_1", "type": "payment_intent.succeeded", "data": {"object":
            {"id": "pi_1", "amount": 500, "currency": "usd", "metadata": {"order_id": "o1"}}}}),
        );
        let Ok(Meaning::Fact { fact, .. }) = ok else {
            panic!("{ok:?}")
        };
        assert_eq!(
            fact.kind,
            FactKind::Succeeded {
                amount_received: 500,
                currency: "usd".into()
            }
        );
    }

    #[test]
    fn success_uses_amount_received_else_amount() {
        let pi = |extra: Value| {
            let mut o = json!({"id": "pi_1", "object": "payment_intent", "amount": 500, "currency": "usd", "status": "succeeded",
                "metadata": {"order_id": "o1"}, "brand_new_field": {"x": 1}});
            o.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            json!({"id": "evt_1", "type": "payment_intent.succeeded", "api_version": "2099-01-01.future", "data": {"object": o}})
        };
        let Ok(Meaning::Fact { reference, fact }) = event(pi(json!({"amount_received": 400})))
        else {
            panic!()
        };
        assert_eq!(
            fact.kind,
            FactKind::Succeeded {
                amount_received: 400,
                currency: "usd".into()
            }
        );
        assert_eq!(reference.metadata_order_id.as_deref(), Some("o1"));
        let Ok(Meaning::Fact { fact, .. }) = event(pi(json!({}))) else {
            panic!()
        };
        assert_eq!(
            fact.kind,
            FactKind::Succeeded {
                amount_received: 500,
                currency: "usd".into()
            }
        );
    }

    #[test]
    fn refunds_and_disputes_point_at_their_payment_intent() {
        let Ok(Meaning::Fact { reference, fact }) = event(
            json!({"id": "evt_1", "type": "charge.refunded", "data": {"object":
            {"id": "ch_1", "object": "charge", "amount": 500, "amount_refunded": 200, "currency": "usd", "payment_intent": "pi_9"}}}),
        ) else {
            panic!()
        };
        assert_eq!(reference.payment_intent_id.as_deref(), Some("pi_9"));
        assert_eq!(
            fact.kind,
            FactKind::Refunded {
                charge_amount: 500,
                amount_refunded: 200,
                currency: "usd".into(),
                as_of: None
            }
        );
        let Ok(Meaning::Fact { reference, fact }) = event(
            json!({"id": "evt_2", "type": "charge.dispute.created", "data": {"object":
            {"id": "dp_1", "object": "dispute", "payment_intent": {"id": "pi_9"}, "charge": "ch_1"}}}),
        ) else {
            panic!()
        };
        assert_eq!(reference.payment_intent_id.as_deref(), Some("pi_9"));
        assert_eq!(
            fact.kind,
            FactKind::DisputeOpened {
                amount: None,
                currency: None
            }
        );
        assert_eq!(reference.charge_id.as_deref(), Some("ch_1"));
    }

    /// Fuzzing by property (issue 18): cargo-fuzz needs the whole dependency tree rebuilt
    /// on nightly with sanitizers, longer than all of CI; proptest runs in `cargo test`
    /// with a bounded number of cases and shrinks what it finds.
    mod fuzz {
        use super::*;
        use proptest::prelude::*;

        /// Any JSON value, nested a few levels, strings including control characters.
        fn any_json() -> impl Strategy<Value = Value> {
            let leaf = prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::Bool),
                any::<i64>().prop_map(|n| json!(n)),
                any::<f64>().prop_map(|f| json!(f)),
                any::<u64>().prop_map(|n| json!(n)),
                ".{0,40}".prop_map(Value::String),
                prop_oneof![
                    Just("payment_intent.succeeded"),
                    Just("charge.refunded"),
                    Just("charge.dispute.closed"),
                    Just("refund.failed"),
                    Just("pi_1"),
                    Just("ch_1"),
                    Just("failed"),
                    Just("succeeded"),
                ]
                .prop_map(|s| json!(s)),
            ];
            leaf.prop_recursive(3, 24, 6, |inner| {
                prop_oneof![
                    proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                    proptest::collection::btree_map(".{0,12}", inner, 0..6)
                        .prop_map(|m| Value::Object(m.into_iter().collect())),
                ]
            })
        }

        /// The fields settlement reads, in a well-formed envelope.
        const FIELDS: [&str; 16] = [
            "id",
            "type",
            "created",
            "livemode",
            "account",
            "amount",
            "amount_received",
            "amount_refunded",
            "currency",
            "status",
            "payment_intent",
            "charge",
            "metadata",
            "last_payment_error",
            "latest_charge",
            "refunds",
        ];

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(512))]

            #[test]
            fn arbitrary_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..600)) {
                if let Ok(e) = Event::parse(&body) {
                    let _ = e.meaning();
                }
            }

            #[test]
            fn arbitrary_json_never_panics(v in any_json()) {
                if let Ok(e) = Event::parse(v.to_string().as_bytes()) {
                    let _ = e.meaning();
                }
            }

            /// A real event's fields replaced by hostile values, at the top and in the
            /// object: a clean answer (a meaning or an error), never a panic.
            #[test]
            fn real_events_with_hostile_fields_never_panic(
                kind in prop_oneof![
                    Just("payment_intent.succeeded"), Just("payment_intent.payment_failed"),
                    Just("payment_intent.canceled"), Just("charge.refunded"),
                    Just("charge.dispute.created"), Just("charge.dispute.closed"),
                    Just("refund.failed"), Just("charge.refund.updated"),
                ],
                replacements in proptest::collection::vec((0..FIELDS.len(), any_json(), any::<bool>()), 1..5),
            ) {
                let mut v = json!({
                    "id": "evt_1", "object": "event", "type": kind, "created": 1_700_000_000,
                    "livemode": false, "api_version": "2026-09-30.endive",
                    "data": {"object": {
                        "id": "pi_1", "object": "payment_intent", "amount": 500,
                        "amount_received": 500, "amount_refunded": 0, "currency": "usd",
                        "status": "succeeded", "payment_intent": "pi_1", "charge": "ch_1",
                        "latest_charge": "ch_1", "metadata": {"order_id": "ord_1"},
                    }},
                });
                for (field, value, top) in replacements {
                    let target = if top { &mut v } else { &mut v["data"]["object"] };
                    target[FIELDS[field]] = value;
                }
                if let Ok(e) = Event::parse(v.to_string().as_bytes()) {
                    let _ = e.meaning();
                }
            }
        }
    }
}
