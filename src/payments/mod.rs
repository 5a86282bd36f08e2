//! The only code that talks to a payment provider: Stripe through async-stripe, or the
//! built-in sandbox. Callers see our own `IntentSnapshot`, never SDK types, and must not
//! hold a database transaction across these calls.

pub mod retry;
pub mod sandbox;
pub mod stripe;
pub mod wire;

use serde_json::Value;

use crate::domain::order::{FactKind, PaymentFact};

/// Two providers known at compile time: an enum keeps dispatch simple and async-friendly
/// without boxing futures behind a trait object.
pub enum Provider {
    /// Boxed: the Stripe client is large and the enum lives once per app.
    Stripe(Box<stripe::StripeProvider>),
    Sandbox(sandbox::SandboxProvider),
}

#[derive(Debug, Clone)]
pub struct CreateIntent<'a> {
    pub order_id: uuid::Uuid,
    pub amount: i64,
    pub currency: &'a str,
    pub description: String,
    /// The same for every attempt at this order, so the provider makes one intent.
    pub idempotency_key: &'a str,
    /// Stripe e-mails its own receipt here once paid (STRIPE_RECEIPT_EMAIL).
    pub receipt_email: Option<&'a str>,
}

/// A refund of part or all of an order's payment, asked for by an operator.
#[derive(Debug, Clone)]
pub struct CreateRefund<'a> {
    pub order_id: uuid::Uuid,
    pub payment_intent_id: &'a str,
    pub amount: i64,
    /// The operator action's own key: a retried action makes no second refund.
    pub idempotency_key: &'a str,
}

/// What the provider answered for a refund.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundSnapshot {
    pub id: String,
    pub amount: i64,
    /// `pending`, `succeeded`, `failed`, `canceled`, `requires_action`.
    pub status: String,
    pub charge_id: Option<String>,
}

impl RefundSnapshot {
    pub fn from_json(v: &Value) -> Result<Self, String> {
        let obj = v.as_object().ok_or("refund is not an object")?;
        if let Some(kind) = obj.get("object")
            && kind.as_str() != Some("refund")
        {
            return Err(format!("object is {kind}, expected refund"));
        }
        let id = obj
            .get("id")
            .and_then(Value::as_str)
            .filter(|s| is_valid_id("re_", s) || is_valid_id("pyr_", s))
            .ok_or("missing or invalid id")?;
        let charge_id = match obj.get("charge") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Object(o)) => o.get("id").and_then(Value::as_str).map(str::to_owned),
            Some(_) => return Err("charge is neither an id nor an object".into()),
        }
        .filter(|c| is_valid_id("ch_", c) || is_valid_id("py_", c));
        Ok(RefundSnapshot {
            id: id.to_owned(),
            amount: obj
                .get("amount")
                .and_then(Value::as_i64)
                .ok_or("missing or invalid amount")?,
            status: obj
                .get("status")
                .and_then(Value::as_str)
                .ok_or("missing or invalid status")?
                .to_owned(),
            charge_id,
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    #[error("provider unavailable after {attempts} attempt(s): {detail}")]
    Unavailable { attempts: u32, detail: String },
    #[error("provider refused the request ({status}): {message}")]
    Rejected { status: u16, message: String },
    #[error("payment intent not found")]
    NotFound,
    #[error("provider answered with something unusable: {0}")]
    InvalidResponse(String),
    #[error("sandbox database error: {0}")]
    Database(String),
}

impl Provider {
    pub fn name(&self) -> &'static str {
        match self {
            Provider::Stripe(_) => "stripe",
            Provider::Sandbox(_) => "sandbox",
        }
    }

    pub async fn create_intent(
        &self,
        req: &CreateIntent<'_>,
    ) -> Result<IntentSnapshot, ProviderError> {
        let result = match self {
            Provider::Stripe(p) => p.create_intent(req).await,
            Provider::Sandbox(p) => p.create_intent(req).await,
        };
        count("create", &result);
        result
    }

    pub async fn retrieve_charge(&self, id: &str) -> Result<ChargeSnapshot, ProviderError> {
        if !is_valid_id("ch_", id) && !is_valid_id("py_", id) {
            return Err(ProviderError::InvalidResponse(format!(
                "not a charge id: {id:?}"
            )));
        }
        let result = match self {
            Provider::Stripe(p) => p.retrieve_charge(id).await,
            Provider::Sandbox(p) => p.retrieve_charge(id).await,
        };
        count("retrieve_charge", &result);
        result
    }

    pub async fn create_refund(
        &self,
        req: &CreateRefund<'_>,
    ) -> Result<RefundSnapshot, ProviderError> {
        let result = match self {
            Provider::Stripe(p) => p.create_refund(req).await,
            Provider::Sandbox(p) => p.create_refund(req).await,
        };
        count("create_refund", &result);
        result
    }

    /// Cancels an intent that can still be canceled; `idempotency_key` is the action's.
    pub async fn cancel_intent(
        &self,
        id: &str,
        idempotency_key: &str,
    ) -> Result<IntentSnapshot, ProviderError> {
        if !is_valid_intent_id(id) {
            return Err(ProviderError::InvalidResponse(format!(
                "not a PaymentIntent id: {id:?}"
            )));
        }
        let result = match self {
            Provider::Stripe(p) => p.cancel_intent(id, idempotency_key).await,
            Provider::Sandbox(p) => p.cancel_intent(id).await,
        };
        count("cancel", &result);
        result
    }

    /// One page of the provider's events, newest first (SPEC §6, event catch-up).
    pub async fn list_events(&self, query: &EventQuery) -> Result<EventPage, ProviderError> {
        let result = match self {
            Provider::Stripe(p) => p.list_events(query).await,
            Provider::Sandbox(p) => p.list_events(query).await,
        };
        count("list_events", &result);
        result
    }

    pub async fn retrieve_intent(&self, id: &str) -> Result<IntentSnapshot, ProviderError> {
        if !is_valid_intent_id(id) {
            return Err(ProviderError::InvalidResponse(format!(
                "not a PaymentIntent id: {id:?}"
            )));
        }
        let result = match self {
            Provider::Stripe(p) => p.retrieve_intent(id).await,
            Provider::Sandbox(p) => p.retrieve_intent(id).await,
        };
        count("retrieve", &result);
        result
    }
}

fn count<T>(op: &'static str, result: &Result<T, ProviderError>) {
    let outcome = match result {
        Ok(_) => "ok",
        Err(ProviderError::Unavailable { .. }) => "unavailable",
        Err(ProviderError::Rejected { .. }) => "rejected",
        Err(ProviderError::NotFound) => "not_found",
        Err(ProviderError::InvalidResponse(_)) => "invalid_response",
        Err(ProviderError::Database(_)) => "database_error",
    };
    metrics::counter!("provider_requests_total", "operation" => op, "result" => outcome)
        .increment(1);
}

/// Stripe ids are short ASCII words; anything else never reaches a URL path or our tables.
pub fn is_valid_intent_id(id: &str) -> bool {
    is_valid_id("pi_", id)
}

pub fn is_valid_id(prefix: &str, id: &str) -> bool {
    id.starts_with(prefix)
        && id.len() <= 255
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// What settlement needs of a charge: which PaymentIntent it belongs to and how much of
/// it has been refunded now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChargeSnapshot {
    pub id: String,
    pub payment_intent_id: Option<String>,
    pub metadata_order_id: Option<String>,
    pub amount: i64,
    pub amount_refunded: i64,
    pub currency: String,
}

impl ChargeSnapshot {
    /// Reads a Charge JSON object leniently, like `IntentSnapshot::from_json`.
    pub fn from_json(v: &Value) -> Result<Self, String> {
        let obj = v.as_object().ok_or("charge is not an object")?;
        if let Some(kind) = obj.get("object")
            && kind.as_str() != Some("charge")
        {
            return Err(format!("object is {kind}, expected charge"));
        }
        let id = obj
            .get("id")
            .and_then(Value::as_str)
            .filter(|s| is_valid_id("ch_", s) || is_valid_id("py_", s))
            .ok_or("missing or invalid id")?;
        let int = |name: &str| {
            obj.get(name)
                .and_then(Value::as_i64)
                .filter(|n| *n >= 0)
                .ok_or(format!("missing or invalid {name}"))
        };
        let payment_intent_id = match obj.get("payment_intent") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Object(o)) => o.get("id").and_then(Value::as_str).map(str::to_owned),
            Some(_) => return Err("payment_intent is neither an id nor an object".into()),
        }
        .filter(|pi| is_valid_intent_id(pi));
        Ok(ChargeSnapshot {
            id: id.to_owned(),
            payment_intent_id,
            metadata_order_id: metadata_order_id(obj)?,
            amount: int("amount")?,
            amount_refunded: int("amount_refunded")?,
            currency: obj
                .get("currency")
                .and_then(Value::as_str)
                .ok_or("missing or invalid currency")?
                .to_owned(),
        })
    }
}

/// A PaymentIntent's `last_payment_error` as an operator reads it: "code (decline code):
/// message". Stripe's words, bounded and without control characters.
pub fn payment_error_words(error: &Value) -> Option<String> {
    let field = |name: &str| {
        error
            .get(name)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    };
    let mut words = match (field("code"), field("decline_code")) {
        (Some(code), Some(decline)) => format!("{code} ({decline})"),
        (Some(code), None) => code.to_owned(),
        (None, Some(decline)) => format!("({decline})"),
        (None, None) => String::new(),
    };
    if let Some(message) = field("message") {
        if !words.is_empty() {
            words.push_str(": ");
        }
        words.push_str(message);
    }
    let words: String = words
        .chars()
        .filter(|c| !c.is_control())
        .take(300)
        .collect();
    (!words.is_empty()).then_some(words)
}

fn metadata_order_id(obj: &serde_json::Map<String, Value>) -> Result<Option<String>, String> {
    match obj.get("metadata") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(m)) => Ok(m.get("order_id").and_then(Value::as_str).map(str::to_owned)),
        Some(_) => Err("metadata is not an object".into()),
    }
}

/// A page request for the provider's event list: newest first, only `types`, created at
/// or after `created_gte`, after the event `starting_after`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventQuery {
    pub types: Vec<&'static str>,
    pub created_gte: i64,
    pub starting_after: Option<String>,
    pub limit: u32,
}

impl EventQuery {
    pub fn to_query_string(&self) -> String {
        let mut qs = url::form_urlencoded::Serializer::new(String::new());
        for t in &self.types {
            qs.append_pair("types[]", t);
        }
        qs.append_pair("created[gte]", &self.created_gte.to_string());
        qs.append_pair("limit", &self.limit.to_string());
        if let Some(after) = &self.starting_after {
            qs.append_pair("starting_after", after);
        }
        qs.finish()
    }
}

/// One page of events, each kept as the JSON Stripe sent: they are parsed exactly as a
/// webhook delivery is, because each is rendered in the API version of its creation.
#[derive(Debug, Clone, Default)]
pub struct EventPage {
    pub data: Vec<Value>,
    pub has_more: bool,
}

impl EventPage {
    pub fn from_json(v: Value) -> Result<Self, String> {
        let Value::Object(mut obj) = v else {
            return Err("event list is not an object".into());
        };
        let has_more = obj
            .get("has_more")
            .and_then(Value::as_bool)
            .ok_or("event list without has_more")?;
        let Some(Value::Array(data)) = obj.remove("data") else {
            return Err("event list without data".into());
        };
        if data
            .iter()
            .any(|e| !e.get("id").is_some_and(Value::is_string))
        {
            return Err("event list holds an event without an id".into());
        }
        Ok(EventPage { data, has_more })
    }
}

crate::text_enum! {
    /// Stripe's PaymentIntent statuses. The sandbox stores its intents' in these words;
    /// a Stripe answer keeps its status as text (`IntentSnapshot::status`), since a newer
    /// API version may add one, and is read through this where it matters.
    pub enum IntentStatus {
        RequiresPaymentMethod => "requires_payment_method",
        RequiresConfirmation => "requires_confirmation",
        RequiresAction => "requires_action",
        Processing => "processing",
        RequiresCapture => "requires_capture",
        Canceled => "canceled",
        Succeeded => "succeeded",
    }
}

impl IntentStatus {
    /// Statuses a payment can still move on from (the sandbox's actions act only in these).
    pub fn is_open(self) -> bool {
        matches!(
            self,
            IntentStatus::RequiresPaymentMethod | IntentStatus::Processing
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IntentSnapshot {
    pub id: String,
    /// Stripe's status string (`succeeded`, `processing`, `requires_payment_method`, …).
    pub status: String,
    pub amount: i64,
    pub amount_received: Option<i64>,
    pub currency: String,
    pub client_secret: Option<String>,
    pub metadata_order_id: Option<String>,
    pub has_payment_error: bool,
    /// `last_payment_error` in words, when there is one.
    pub payment_error: Option<String>,
    /// The charge of a succeeded intent.
    pub latest_charge: Option<String>,
}

impl IntentSnapshot {
    /// Reads a PaymentIntent JSON object leniently: only what settlement needs must be
    /// there and well-typed; unknown fields and statuses are fine.
    pub fn from_json(v: &Value) -> Result<Self, String> {
        let obj = v.as_object().ok_or("payment intent is not an object")?;
        if let Some(kind) = obj.get("object")
            && kind.as_str() != Some("payment_intent")
        {
            return Err(format!("object is {kind}, expected payment_intent"));
        }
        let id = obj
            .get("id")
            .and_then(Value::as_str)
            .filter(|s| is_valid_intent_id(s))
            .ok_or("missing or invalid id")?;
        let amount = obj
            .get("amount")
            .and_then(Value::as_i64)
            .ok_or("missing or invalid amount")?;
        let currency = obj
            .get("currency")
            .and_then(Value::as_str)
            .ok_or("missing or invalid currency")?;
        let status = obj
            .get("status")
            .and_then(Value::as_str)
            .ok_or("missing or invalid status")?;
        let amount_received = match obj.get("amount_received") {
            None | Some(Value::Null) => None,
            Some(v) => Some(v.as_i64().ok_or("invalid amount_received")?),
        };
        let metadata_order_id = metadata_order_id(obj)?;
        Ok(IntentSnapshot {
            id: id.to_owned(),
            status: status.to_owned(),
            amount,
            amount_received,
            currency: currency.to_owned(),
            client_secret: obj
                .get("client_secret")
                .and_then(Value::as_str)
                .map(str::to_owned),
            metadata_order_id,
            has_payment_error: obj.get("last_payment_error").is_some_and(|e| !e.is_null()),
            payment_error: obj.get("last_payment_error").and_then(payment_error_words),
            latest_charge: match obj.get("latest_charge") {
                Some(Value::String(s)) => Some(s.clone()),
                Some(Value::Object(o)) => o.get("id").and_then(Value::as_str).map(str::to_owned),
                _ => None,
            }
            .filter(|c| is_valid_id("ch_", c) || is_valid_id("py_", c)),
        })
    }

    /// What the intent's current status says about the order (SPEC §6); `None` when it
    /// says nothing that would change an order.
    pub fn fact(&self) -> Option<PaymentFact> {
        let kind = match self.status.parse::<IntentStatus>().ok()? {
            IntentStatus::Succeeded => FactKind::Succeeded {
                amount_received: self.amount_received.unwrap_or(self.amount),
                currency: self.currency.clone(),
            },
            IntentStatus::Processing => FactKind::Processing,
            IntentStatus::Canceled => FactKind::Canceled,
            IntentStatus::RequiresPaymentMethod if self.has_payment_error => FactKind::Failed {
                error: self.payment_error.clone(),
            },
            _ => return None,
        };
        Some(PaymentFact {
            payment_intent_id: Some(self.id.clone()),
            kind,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn minimal_and_extended_intents_parse() {
        let min = json!({"id": "pi_1", "amount": 500, "currency": "usd", "status": "succeeded"});
        let s = IntentSnapshot::from_json(&min).unwrap();
        assert_eq!(s.amount_received, None);
        let full = json!({"id": "pi_1", "object": "payment_intent", "amount": 500, "amount_received": 500,
            "currency": "usd", "status": "some_future_status", "metadata": {"order_id": "x"}, "new_field": [1]});
        let s = IntentSnapshot::from_json(&full).unwrap();
        assert_eq!(s.metadata_order_id.as_deref(), Some("x"));
        assert_eq!(s.fact(), None);
    }

    #[test]
    fn hostile_intents_are_refused() {
        for bad in [
            json!([]),
            json!({"id": "pi_1", "amount": "500", "currency": "usd", "status": "succeeded"}),
            json!({"id": "../x", "amount": 500, "currency": "usd", "status": "succeeded"}),
            json!({"id": "pi_1", "object": "charge", "amount": 500, "currency": "usd", "status": "succeeded"}),
            json!({"id": "pi_1", "amount": 500, "currency": "usd", "status": "succeeded", "metadata": "x"}),
            json!({"id": "pi_1", "amount": 500, "currency": 3, "status": "succeeded"}),
        ] {
            assert!(IntentSnapshot::from_json(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn statuses_map_to_facts_as_the_spec_says() {
        let snap = |status: &str, err: bool| IntentSnapshot {
            id: "pi_1".into(),
            status: status.into(),
            amount: 500,
            amount_received: None,
            currency: "usd".into(),
            client_secret: None,
            metadata_order_id: None,
            has_payment_error: err,
            payment_error: None,
            latest_charge: None,
        };
        assert!(matches!(
            snap("succeeded", false).fact().unwrap().kind,
            FactKind::Succeeded {
                amount_received: 500,
                ..
            }
        ));
        assert_eq!(
            snap("processing", false).fact().unwrap().kind,
            FactKind::Processing
        );
        assert_eq!(
            snap("canceled", false).fact().unwrap().kind,
            FactKind::Canceled
        );
        assert_eq!(
            snap("requires_payment_method", true).fact().unwrap().kind,
            FactKind::Failed { error: None }
        );
        assert_eq!(snap("requires_payment_method", false).fact(), None);
        assert_eq!(snap("requires_action", false).fact(), None);
    }
}
