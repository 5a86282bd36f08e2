//! Stripe through async-stripe's client. Requests are built with its `RequestBuilder`
//! and answers parsed by us (`IntentSnapshot::from_json`), so a newer or leaner
//! PaymentIntent shape never fails an order. Our own retry loop sends the order's
//! key on every attempt: async-stripe's retrying strategies would invent random keys.

use std::time::{Duration, Instant};

use secrecy::ExposeSecret;
use serde::Serialize;
use stripe::{Client, ClientBuilder, IdempotencyKey, RequestStrategy, StripeError};
use stripe_client_core::{RequestBuilder, StripeMethod};

use super::retry::RetryPolicy;
use super::{
    ChargeSnapshot, CreateIntent, CreateRefund, EventPage, EventQuery, IntentSnapshot,
    ProviderError, RefundSnapshot,
};
use crate::config::StripeConfig;

/// Per attempt; the client's own default is to wait forever.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

pub struct StripeProvider {
    client: Client,
    policy: RetryPolicy,
}

#[derive(Serialize)]
struct CreateForm<'a> {
    amount: i64,
    currency: &'a str,
    description: &'a str,
    metadata: Metadata,
    automatic_payment_methods: AutomaticPaymentMethods,
    #[serde(skip_serializing_if = "Option::is_none")]
    receipt_email: Option<&'a str>,
}

#[derive(Serialize)]
struct Metadata {
    order_id: String,
}

#[derive(Serialize)]
struct RefundForm<'a> {
    payment_intent: &'a str,
    amount: i64,
    metadata: Metadata,
}

#[derive(Serialize)]
struct AutomaticPaymentMethods {
    enabled: bool,
}

impl StripeProvider {
    pub fn new(config: &StripeConfig, policy: RetryPolicy) -> anyhow::Result<Self> {
        let mut builder =
            ClientBuilder::new(config.secret_key.expose_secret()).timeout(ATTEMPT_TIMEOUT);
        if let Some(base) = &config.api_base {
            // async-stripe appends "v1/…" to the base as written: a path prefix needs its slash.
            let mut base = base.to_string();
            if !base.ends_with('/') {
                base.push('/');
            }
            builder = builder.url(base);
        }
        let client = builder
            .build()
            .map_err(|e| anyhow::anyhow!("building the Stripe client: {e}"))?;
        Ok(StripeProvider { client, policy })
    }

    pub async fn create_intent(
        &self,
        req: &CreateIntent<'_>,
    ) -> Result<IntentSnapshot, ProviderError> {
        let form = CreateForm {
            amount: req.amount,
            currency: req.currency,
            description: &req.description,
            metadata: Metadata {
                order_id: req.order_id.to_string(),
            },
            automatic_payment_methods: AutomaticPaymentMethods { enabled: true },
            receipt_email: req.receipt_email,
        };
        let key = IdempotencyKey::new(req.idempotency_key)
            .map_err(|e| ProviderError::InvalidResponse(format!("idempotency key: {e}")))?;
        let json = self
            .send(
                || RequestBuilder::new(StripeMethod::Post, "/payment_intents").form(&form),
                Some(key),
            )
            .await?;
        IntentSnapshot::from_json(&json).map_err(ProviderError::InvalidResponse)
    }

    pub async fn retrieve_intent(&self, id: &str) -> Result<IntentSnapshot, ProviderError> {
        let path = format!("/payment_intents/{id}");
        let json = self
            .send(
                || RequestBuilder::new(StripeMethod::Get, path.clone()),
                None,
            )
            .await?;
        IntentSnapshot::from_json(&json).map_err(ProviderError::InvalidResponse)
    }

    pub async fn create_refund(
        &self,
        req: &CreateRefund<'_>,
    ) -> Result<RefundSnapshot, ProviderError> {
        let form = RefundForm {
            payment_intent: req.payment_intent_id,
            amount: req.amount,
            metadata: Metadata {
                order_id: req.order_id.to_string(),
            },
        };
        let key = IdempotencyKey::new(req.idempotency_key)
            .map_err(|e| ProviderError::InvalidResponse(format!("idempotency key: {e}")))?;
        let json = self
            .send(
                || RequestBuilder::new(StripeMethod::Post, "/refunds").form(&form),
                Some(key),
            )
            .await?;
        RefundSnapshot::from_json(&json).map_err(ProviderError::InvalidResponse)
    }

    pub async fn cancel_intent(
        &self,
        id: &str,
        idempotency_key: &str,
    ) -> Result<IntentSnapshot, ProviderError> {
        let path = format!("/payment_intents/{id}/cancel");
        let key = IdempotencyKey::new(idempotency_key)
            .map_err(|e| ProviderError::InvalidResponse(format!("idempotency key: {e}")))?;
        let json = self
            .send(
                || RequestBuilder::new(StripeMethod::Post, path.clone()),
                Some(key),
            )
            .await?;
        IntentSnapshot::from_json(&json).map_err(ProviderError::InvalidResponse)
    }

    pub async fn retrieve_charge(&self, id: &str) -> Result<ChargeSnapshot, ProviderError> {
        let path = format!("/charges/{id}");
        let json = self
            .send(
                || RequestBuilder::new(StripeMethod::Get, path.clone()),
                None,
            )
            .await?;
        ChargeSnapshot::from_json(&json).map_err(ProviderError::InvalidResponse)
    }

    /// One page of `GET /v1/events`. The query is written by hand: Stripe documents
    /// `types[]=…` and `created[gte]=…`, which serde_qs would spell with indices.
    pub async fn list_events(&self, query: &EventQuery) -> Result<EventPage, ProviderError> {
        let qs = query.to_query_string();
        let json = self
            .send(
                || {
                    let mut builder = RequestBuilder::new(StripeMethod::Get, "/events");
                    builder.query = Some(qs.clone());
                    builder
                },
                None,
            )
            .await?;
        EventPage::from_json(json).map_err(ProviderError::InvalidResponse)
    }

    /// Sends with our retry loop and returns the answer as JSON, read leniently by the
    /// caller: a newer or leaner Stripe object never fails an order.
    async fn send(
        &self,
        build: impl Fn() -> RequestBuilder,
        key: Option<IdempotencyKey>,
    ) -> Result<serde_json::Value, ProviderError> {
        let started = Instant::now();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let strategy = match &key {
                Some(k) => RequestStrategy::Idempotent(k.clone()),
                None => RequestStrategy::Once,
            };
            let result = build()
                .customize::<miniserde::json::Value>()
                .request_strategy(strategy)
                .send(&self.client)
                .await;
            let error = match result {
                Ok(value) => {
                    // async-stripe hands an untyped answer over only as miniserde's Value
                    // (its typed ones would refuse a leaner or newer shape, see the module
                    // comment); one re-serialisation makes it the serde_json the readers
                    // take. Four calls per order at most: not a hot path.
                    return serde_json::from_str(&miniserde::json::to_string(&value))
                        .map_err(|e| ProviderError::InvalidResponse(e.to_string()));
                }
                Err(e) => e,
            };
            let retryable = match &error {
                StripeError::Stripe(_, status) => {
                    *status == 429 || *status == 409 || *status >= 500
                }
                // A failed connection, a timeout, or an error body we could not read (a proxy's 502 page).
                StripeError::ClientError(_)
                | StripeError::Timeout
                | StripeError::JSONDeserialize(_) => true,
                _ => false,
            };
            if !retryable {
                return Err(match error {
                    StripeError::Stripe(e, 404) => {
                        tracing::info!(message = ?e.message, "stripe: not found");
                        ProviderError::NotFound
                    }
                    StripeError::Stripe(e, status) => ProviderError::Rejected {
                        status,
                        message: e.message.clone().unwrap_or_else(|| "no message".into()),
                    },
                    other => ProviderError::InvalidResponse(other.to_string()),
                });
            }
            let pause = self.policy.backoff(attempt);
            if attempt >= self.policy.max_attempts || started.elapsed() + pause > self.policy.total
            {
                return Err(ProviderError::Unavailable {
                    attempts: attempt,
                    detail: describe(&error),
                });
            }
            tracing::warn!(attempt, error = %describe(&error), pause_ms = pause.as_millis() as u64, "stripe request failed; retrying");
            metrics::counter!("provider_retries_total").increment(1);
            tokio::time::sleep(pause).await;
        }
    }
}

/// Error text safe for logs: Stripe's message, never request data.
fn describe(e: &StripeError) -> String {
    match e {
        StripeError::Stripe(err, status) => {
            format!("HTTP {status}: {}", err.message.as_deref().unwrap_or(""))
        }
        other => other.to_string(),
    }
}
