//! A Stripe API double on wiremock: creates PaymentIntents from the form body the way
//! Stripe does (the same Idempotency-Key returns the same intent), answers retrieves
//! with whatever status the test set, keeps each succeeded intent's charge (refunds
//! move its `amount_refunded`) and lists the events the test says Stripe made, as
//! `GET /v1/events` does: newest first, by `types[]`, `created[gte]`, `starting_after`
//! and `limit`.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex, OnceLock, Weak};
use std::time::Duration;

use paidonce::payments::wire::{self, Charge, PaymentIntent, Refund};
use serde_json::{Value, json};
use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

#[derive(Default)]
pub struct Intents {
    by_key: HashMap<String, String>,
    pub objects: HashMap<String, Value>,
    /// Charges by id, as `GET /v1/charges/{id}` answers them.
    pub charges: HashMap<String, Value>,
    /// Every event Stripe "made", oldest first.
    pub events: Vec<Value>,
    /// Refunds by the Idempotency-Key they were made with.
    pub refunds: HashMap<String, Value>,
}

pub struct StripeDouble {
    pub server: MockServer,
    pub intents: Arc<Mutex<Intents>>,
    /// How long a retrieve's answer takes to arrive (its content is read on arrival).
    retrieve_delay: Arc<Mutex<Duration>>,
}

/// A POST's form body, and its Idempotency-Key ("" without one).
fn form_and_key(req: &Request) -> (HashMap<String, String>, String) {
    let form = url::form_urlencoded::parse(&req.body)
        .into_owned()
        .collect();
    let key = req
        .headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    (form, key)
}

struct CreateResponder {
    intents: Arc<Mutex<Intents>>,
    delay: Duration,
}

impl Respond for CreateResponder {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let (form, key) = form_and_key(req);
        let mut intents = self.intents.lock().unwrap();
        let id = match intents.by_key.get(&key) {
            Some(id) if !key.is_empty() => id.clone(),
            _ => {
                let id = format!("pi_double_{}", uuid::Uuid::new_v4().simple());
                let amount: i64 = form.get("amount").and_then(|a| a.parse().ok()).unwrap_or(0);
                let order_id = form.get("metadata[order_id]").cloned().unwrap_or_default();
                let mut intent = PaymentIntent::new(
                    &id,
                    amount,
                    form.get("currency").map_or("", String::as_str),
                    wire::order_metadata(&order_id),
                    1_700_000_000,
                );
                intent.client_secret = Some(format!("{id}_secret_double"));
                let object = serde_json::to_value(intent).unwrap();
                intents.objects.insert(id.clone(), object);
                intents.by_key.insert(key, id.clone());
                id
            }
        };
        ResponseTemplate::new(200)
            .set_body_json(intents.objects[&id].clone())
            .set_delay(self.delay)
    }
}

/// `GET /v1/<things>/{id}`: the stored object, or Stripe's 404.
struct RetrieveResponder {
    intents: Arc<Mutex<Intents>>,
    delay: Arc<Mutex<Duration>>,
    /// "payment_intent" or "charge".
    kind: &'static str,
}

impl Respond for RetrieveResponder {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let id = req.url.path().rsplit('/').next().unwrap_or_default();
        let intents = self.intents.lock().unwrap();
        let store = if self.kind == "charge" {
            &intents.charges
        } else {
            &intents.objects
        };
        let delay = *self.delay.lock().unwrap();
        match store.get(id) {
            Some(o) => ResponseTemplate::new(200)
                .set_body_json(o.clone())
                .set_delay(delay),
            None => ResponseTemplate::new(404).set_body_json(json!({"error": {
                "type": "invalid_request_error", "code": "resource_missing",
                "message": format!("No such {}", self.kind)}})),
        }
    }
}

struct RefundResponder {
    intents: Arc<Mutex<Intents>>,
}

fn invalid_request(message: &str) -> ResponseTemplate {
    ResponseTemplate::new(400)
        .set_body_json(json!({"error": {"type": "invalid_request_error", "message": message}}))
}

impl Respond for RefundResponder {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let (form, key) = form_and_key(req);
        let mut guard = self.intents.lock().unwrap();
        let intents = &mut *guard;
        if let Some(done) = intents.refunds.get(&key) {
            return ResponseTemplate::new(200).set_body_json(done.clone());
        }
        let pi = form.get("payment_intent").cloned().unwrap_or_default();
        let Some(charge_id) = intents
            .objects
            .get(&pi)
            .and_then(|o| o["latest_charge"].as_str())
            .map(str::to_owned)
        else {
            return invalid_request("This PaymentIntent has no successful charge to refund.");
        };
        let charge = intents.charges.get_mut(&charge_id).unwrap();
        let left = charge["amount"].as_i64().unwrap() - charge["amount_refunded"].as_i64().unwrap();
        let amount: i64 = form
            .get("amount")
            .and_then(|a| a.parse().ok())
            .unwrap_or(left);
        if amount < 1 || amount > left {
            return invalid_request(
                "Refund amount is greater than the charge's unrefunded amount.",
            );
        }
        let refunded = charge["amount_refunded"].as_i64().unwrap() + amount;
        charge["amount_refunded"] = json!(refunded);
        charge["refunded"] = json!(refunded == charge["amount"].as_i64().unwrap());
        let refund = serde_json::to_value(Refund {
            id: format!("re_double_{}", uuid::Uuid::new_v4().simple()),
            object: "refund",
            amount,
            charge: charge_id,
            created: 1_700_000_000,
            currency: charge["currency"].as_str().unwrap_or_default().to_owned(),
            failure_reason: None,
            metadata: wire::order_metadata(
                form.get("metadata[order_id]").map_or("", String::as_str),
            ),
            payment_intent: Some(pi),
            status: "succeeded".into(),
        })
        .unwrap();
        if !key.is_empty() {
            intents.refunds.insert(key, refund.clone());
        }
        ResponseTemplate::new(200).set_body_json(refund)
    }
}

struct CancelResponder {
    intents: Arc<Mutex<Intents>>,
}

impl Respond for CancelResponder {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let id = req
            .url
            .path()
            .split('/')
            .nth(3)
            .unwrap_or_default()
            .to_owned();
        let mut intents = self.intents.lock().unwrap();
        let Some(o) = intents.objects.get_mut(&id) else {
            return ResponseTemplate::new(404).set_body_json(
                json!({"error": {"type": "invalid_request_error", "code": "resource_missing", "message": "No such payment_intent"}}),
            );
        };
        match o["status"].as_str() {
            Some("requires_payment_method" | "requires_action" | "processing" | "canceled") => {
                o["status"] = json!("canceled");
                ResponseTemplate::new(200).set_body_json(o.clone())
            }
            _ => invalid_request(
                "You cannot cancel this PaymentIntent because it has a status of succeeded.",
            ),
        }
    }
}

struct EventsResponder {
    intents: Arc<Mutex<Intents>>,
    delay: Duration,
}

impl Respond for EventsResponder {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let mut types = Vec::new();
        let (mut gte, mut after, mut limit) = (i64::MIN, None, 10usize);
        for (k, v) in req.url.query_pairs() {
            match k.as_ref() {
                "types[]" => types.push(v.into_owned()),
                "created[gte]" => gte = v.parse().unwrap(),
                "starting_after" => after = Some(v.into_owned()),
                "limit" => limit = v.parse().unwrap(),
                other => panic!("GET /v1/events with an unexpected parameter {other}"),
            }
        }
        assert!((1..=100).contains(&limit), "limit {limit}");
        let intents = self.intents.lock().unwrap();
        let newest_first = intents.events.iter().rev().filter(|e| {
            (types.is_empty() || types.iter().any(|t| e["type"] == t.as_str()))
                && e["created"].as_i64().unwrap() >= gte
        });
        let page: Vec<Value> = match &after {
            None => newest_first.take(limit + 1).cloned().collect(),
            Some(id) => newest_first
                .skip_while(|e| e["id"] != id.as_str())
                .skip(1)
                .take(limit + 1)
                .cloned()
                .collect(),
        };
        let has_more = page.len() > limit;
        let data: Vec<Value> = page.into_iter().take(limit).collect();
        ResponseTemplate::new(200)
            .set_body_json(
                json!({"object": "list", "url": "/v1/events", "has_more": has_more, "data": data}),
            )
            .set_delay(self.delay)
    }
}

pub fn stripe_error(status: u16) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_json(
        json!({"error": {"type": "api_error", "message": format!("double says {status}")}}),
    )
}

impl StripeDouble {
    pub async fn start() -> StripeDouble {
        Self::start_with_delay(Duration::ZERO).await
    }

    /// Mount failure mocks (with `up_to_n_times`) BEFORE calling this: wiremock matches in
    /// mount order, so they answer first and this one takes over when they are used up.
    pub async fn start_with_delay(delay: Duration) -> StripeDouble {
        let server = MockServer::start().await;
        Self::on(server, delay).await
    }

    /// The double for a load run: answers as above, but keeps no record of the
    /// requests it served (thousands of them would only cost memory).
    pub async fn quiet(delay: Duration) -> StripeDouble {
        let server = MockServer::builder()
            .disable_request_recording()
            .start()
            .await;
        Self::on(server, delay).await
    }

    pub async fn on(server: MockServer, delay: Duration) -> StripeDouble {
        let intents = Arc::new(Mutex::new(Intents::default()));
        register(&intents);
        let retrieve_delay = Arc::new(Mutex::new(Duration::ZERO));
        Mock::given(method("POST"))
            .and(path("/v1/payment_intents"))
            .respond_with(CreateResponder {
                intents: intents.clone(),
                delay,
            })
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path_regex(r"^/v1/payment_intents/[A-Za-z0-9_]+$"))
            .respond_with(RetrieveResponder {
                intents: intents.clone(),
                delay: retrieve_delay.clone(),
                kind: "payment_intent",
            })
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path_regex(r"^/v1/charges/[A-Za-z0-9_]+$"))
            .respond_with(RetrieveResponder {
                intents: intents.clone(),
                delay: retrieve_delay.clone(),
                kind: "charge",
            })
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .and(path("/v1/refunds"))
            .respond_with(RefundResponder {
                intents: intents.clone(),
            })
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .and(path_regex(r"^/v1/payment_intents/[A-Za-z0-9_]+/cancel$"))
            .respond_with(CancelResponder {
                intents: intents.clone(),
            })
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path("/v1/events"))
            .respond_with(EventsResponder {
                intents: intents.clone(),
                delay,
            })
            .mount(&server)
            .await;
        StripeDouble {
            server,
            intents,
            retrieve_delay,
        }
    }

    /// Env overrides pointing the app at this double.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("STRIPE_SECRET_KEY", "sk_test_double".into()),
            ("STRIPE_API_BASE", self.server.uri()),
        ]
    }

    /// Makes every later retrieve answer `delay` after it arrived, with what was true on
    /// arrival: a sync that asked is then still on its way while the test acts.
    pub fn slow_retrieves(&self, delay: Duration) {
        *self.retrieve_delay.lock().unwrap() = delay;
    }

    /// Sets what a retrieve of `pi` answers (status, and amount_received for success).
    pub fn set_status(&self, pi: &str, status: &str) {
        let mut guard = self.intents.lock().unwrap();
        let intents = &mut *guard;
        if let Some(o) = intents.objects.get_mut(pi) {
            o["status"] = json!(status);
            if status == "succeeded" {
                o["amount_received"] = o["amount"].clone();
                let charge_id = pi.replacen("pi_", "ch_", 1);
                o["latest_charge"] = json!(charge_id);
                let paid = PaymentIntent::new(
                    pi,
                    o["amount"].as_i64().unwrap_or_default(),
                    o["currency"].as_str().unwrap_or_default(),
                    wire::metadata_from(&o["metadata"]),
                    1_700_000_000,
                );
                let charge = serde_json::to_value(Charge::paying(&charge_id, &paid, 0)).unwrap();
                intents.charges.insert(charge_id, charge);
            }
            if status == "requires_payment_method" {
                o["last_payment_error"] = json!({"type": "card_error", "message": "declined"});
            }
        }
    }

    /// The charge a succeeded intent got.
    pub fn charge_of(&self, pi: &str) -> Value {
        let intents = self.intents.lock().unwrap();
        let id = intents.objects[pi]["latest_charge"]
            .as_str()
            .unwrap()
            .to_owned();
        intents.charges[&id].clone()
    }

    /// Sets the charge's refund total as Stripe would after refunds succeed or fail.
    pub fn set_amount_refunded(&self, charge_id: &str, amount_refunded: i64) {
        let mut intents = self.intents.lock().unwrap();
        let c = intents.charges.get_mut(charge_id).unwrap();
        c["amount_refunded"] = json!(amount_refunded);
        c["refunded"] = json!(amount_refunded >= c["amount"].as_i64().unwrap());
    }

    /// Records an event as made by Stripe (listed by `GET /v1/events`, not delivered),
    /// and tells the observer (see `observe_events`).
    pub fn record_event(&self, event: &Value) {
        if let Some(observe) = EVENT_OBSERVER.get() {
            observe(event);
        }
        self.intents.lock().unwrap().events.push(event.clone());
    }

    pub async fn requests(&self, http_method: &str, path_prefix: &str) -> Vec<Request> {
        self.server
            .received_requests()
            .await
            .unwrap_or_default()
            .into_iter()
            .filter(|r| r.method.as_str() == http_method && r.url.path().starts_with(path_prefix))
            .collect()
    }
}

/// The overrides as the `&[(&str, &str)]` spawn_app takes.
pub fn as_pairs<'a>(v: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    v.iter().map(|(k, val)| (*k, val.as_str())).collect()
}

/// Called with every event a double records as made by Stripe: the tests' money
/// checker counts such events among the facts the app may act on. Set once.
pub fn observe_events(observer: fn(&Value)) {
    let _ = EVENT_OBSERVER.set(observer);
}

static EVENT_OBSERVER: OnceLock<fn(&Value)> = OnceLock::new();

/// Every double's record, while the double lives: what Stripe holds, for a checker
/// that must not take the app's word for it.
static DOUBLES: LazyLock<Mutex<Vec<Weak<Mutex<Intents>>>>> = LazyLock::new(Default::default);

fn register(intents: &Arc<Mutex<Intents>>) {
    let mut doubles = DOUBLES.lock().unwrap();
    doubles.retain(|d| d.strong_count() > 0);
    doubles.push(Arc::downgrade(intents));
}

fn live_doubles() -> Vec<Arc<Mutex<Intents>>> {
    DOUBLES
        .lock()
        .unwrap()
        .iter()
        .filter_map(Weak::upgrade)
        .collect()
}

/// The PaymentIntent as a live double holds it.
pub fn live_intent(pi: &str) -> Option<Value> {
    live_doubles()
        .into_iter()
        .find_map(|d| d.lock().unwrap().objects.get(pi).cloned())
}

/// The refund total of the PaymentIntent's charge as a live double holds it.
pub fn live_amount_refunded(pi: &str) -> Option<i64> {
    live_doubles().into_iter().find_map(|d| {
        let intents = d.lock().unwrap();
        let charge = intents.objects.get(pi)?["latest_charge"]
            .as_str()?
            .to_owned();
        intents.charges.get(&charge)?["amount_refunded"].as_i64()
    })
}
