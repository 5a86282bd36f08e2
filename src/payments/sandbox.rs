//! The built-in sandbox provider (no STRIPE_SECRET_KEY): PaymentIntents live in the
//! database so every instance sees them. Its pay page actions and signed webhook
//! delivery are in `crate::sandbox`.

use serde_json::json;

use diesel_async::AsyncConnection;

use super::{
    ChargeSnapshot, CreateIntent, CreateRefund, EventPage, EventQuery, IntentSnapshot,
    ProviderError, RefundSnapshot,
};
use crate::db::{self, Db};
use crate::payments::IntentStatus;

pub struct SandboxProvider {
    pool: Db,
}

impl SandboxProvider {
    pub fn new(pool: Db) -> Self {
        SandboxProvider { pool }
    }

    pub async fn create_intent(
        &self,
        req: &CreateIntent<'_>,
    ) -> Result<IntentSnapshot, ProviderError> {
        let id = format!("pi_sandbox_{}", crate::random::token(24));
        let client_secret = format!("{id}_secret_{}", crate::random::token(32));
        let metadata = json!({ "order_id": req.order_id.to_string() });
        let mut conn = self
            .pool
            .get()
            .await
            .map_err(|e| ProviderError::Database(e.to_string()))?;
        let intent = db::sandbox::insert_or_get(
            &mut conn,
            &db::sandbox::NewIntent {
                id: &id,
                client_secret: &client_secret,
                idempotency_key: req.idempotency_key,
                amount: req.amount,
                currency: req.currency,
                status: IntentStatus::RequiresPaymentMethod,
                metadata: &metadata,
            },
        )
        .await
        .map_err(|e| ProviderError::Database(e.to_string()))?;
        Ok(snapshot(&intent))
    }

    pub async fn retrieve_intent(&self, id: &str) -> Result<IntentSnapshot, ProviderError> {
        let mut conn = self
            .pool
            .get()
            .await
            .map_err(|e| ProviderError::Database(e.to_string()))?;
        match db::sandbox::find(&mut conn, id).await {
            Ok(Some(intent)) => Ok(snapshot(&intent)),
            Ok(None) => Err(ProviderError::NotFound),
            Err(e) => Err(ProviderError::Database(e.to_string())),
        }
    }
}

impl SandboxProvider {
    /// A sandbox PaymentIntent that succeeded has one charge, named after it
    /// (`pi_sandbox_x` → `ch_sandbox_x`); the sandbox makes no refunds yet.
    pub async fn retrieve_charge(&self, id: &str) -> Result<ChargeSnapshot, ProviderError> {
        let Some(pi) = intent_of_charge(id) else {
            return Err(ProviderError::NotFound);
        };
        let intent = self.retrieve_intent(&pi).await?;
        if intent.status != IntentStatus::Succeeded.as_str() {
            return Err(ProviderError::NotFound);
        }
        let mut conn = self.pool.get().await.map_err(database)?;
        let refunded = db::sandbox::find(&mut conn, &pi)
            .await
            .map_err(database)?
            .map_or(0, |i| i.amount_refunded);
        Ok(ChargeSnapshot {
            id: id.to_owned(),
            payment_intent_id: Some(intent.id),
            metadata_order_id: intent.metadata_order_id,
            amount: intent.amount,
            amount_refunded: refunded,
            currency: intent.currency,
        })
    }

    /// Refunds part of a succeeded intent's charge and enqueues the `charge.refunded`
    /// Stripe would send; the same key gives the same refund back.
    pub async fn create_refund(
        &self,
        req: &CreateRefund<'_>,
    ) -> Result<RefundSnapshot, ProviderError> {
        let charge_id = charge_of_intent(req.payment_intent_id);
        let mut conn = self.pool.get().await.map_err(database)?;
        let key = req.idempotency_key.to_owned();
        let pi = req.payment_intent_id.to_owned();
        let amount = req.amount;
        let id = format!("re_sandbox_{}", crate::random::token(24));
        let made = conn
            .transaction::<_, diesel::result::Error, _>(async |c| {
                if let Some(done) = db::sandbox::find_refund(c, &key).await? {
                    return Ok(Some((done.id, done.amount)));
                }
                let Some(intent) = db::sandbox::refund(c, &id, &pi, amount, &key).await? else {
                    return Ok(None);
                };
                let event = crate::sandbox::envelope(
                    "charge.refunded",
                    crate::sandbox::charge_json(&intent),
                    chrono::Utc::now(),
                );
                crate::sandbox::enqueue(c, &event, chrono::Utc::now()).await?;
                Ok(Some((id.clone(), amount)))
            })
            .await
            .map_err(database)?;
        match made {
            Some((id, amount)) => Ok(RefundSnapshot {
                id,
                amount,
                status: "succeeded".into(),
                charge_id,
            }),
            None => Err(ProviderError::Rejected {
                status: 400,
                message: "the sandbox charge is not paid or has less than that left to refund"
                    .into(),
            }),
        }
    }

    /// Cancels an intent not yet paid and enqueues `payment_intent.canceled`.
    pub async fn cancel_intent(&self, id: &str) -> Result<IntentSnapshot, ProviderError> {
        let mut conn = self.pool.get().await.map_err(database)?;
        let pi = id.to_owned();
        let canceled = conn
            .transaction::<_, diesel::result::Error, _>(async |c| {
                let from = [
                    IntentStatus::RequiresPaymentMethod,
                    IntentStatus::RequiresAction,
                    IntentStatus::Processing,
                ];
                let Some(intent) =
                    db::sandbox::transition(c, &pi, &from, IntentStatus::Canceled, None).await?
                else {
                    return Ok(None);
                };
                let event =
                    crate::sandbox::event("payment_intent.canceled", &intent, chrono::Utc::now());
                crate::sandbox::enqueue(c, &event, chrono::Utc::now()).await?;
                Ok(Some(intent))
            })
            .await
            .map_err(database)?;
        match canceled {
            Some(intent) => Ok(snapshot(&intent)),
            None => Err(ProviderError::Rejected {
                status: 400,
                message: "the sandbox PaymentIntent cannot be canceled in its status".into(),
            }),
        }
    }

    /// The events the sandbox generated, delivered or not, as Stripe lists its own.
    pub async fn list_events(&self, query: &EventQuery) -> Result<EventPage, ProviderError> {
        let mut conn = self.pool.get().await.map_err(database)?;
        let limit = i64::from(query.limit.clamp(1, 100));
        let mut payloads = db::sandbox::list_events(
            &mut conn,
            &query.types,
            query.created_gte,
            query.starting_after.as_deref(),
            limit + 1,
        )
        .await
        .map_err(database)?;
        let has_more = payloads.len() > query.limit as usize;
        payloads.truncate(query.limit as usize);
        let data = payloads
            .iter()
            .map(|p| serde_json::from_str(p))
            .collect::<Result<Vec<serde_json::Value>, _>>()
            .map_err(|e| ProviderError::InvalidResponse(e.to_string()))?;
        Ok(EventPage { data, has_more })
    }
}

fn database(e: impl std::fmt::Display) -> ProviderError {
    ProviderError::Database(e.to_string())
}

pub fn charge_of_intent(pi: &str) -> Option<String> {
    pi.strip_prefix("pi_sandbox_")
        .map(|rest| format!("ch_sandbox_{rest}"))
}

fn intent_of_charge(charge: &str) -> Option<String> {
    charge
        .strip_prefix("ch_sandbox_")
        .map(|rest| format!("pi_sandbox_{rest}"))
}

pub fn snapshot(intent: &db::sandbox::Intent) -> IntentSnapshot {
    IntentSnapshot {
        id: intent.id.clone(),
        status: intent.status.to_string(),
        amount: intent.amount,
        amount_received: Some(if intent.status == IntentStatus::Succeeded {
            intent.amount
        } else {
            0
        }),
        currency: intent.currency.clone(),
        client_secret: Some(intent.client_secret.clone()),
        metadata_order_id: intent
            .metadata
            .get("order_id")
            .and_then(|v| v.as_str())
            .map(str::to_owned),
        has_payment_error: intent.last_payment_error.is_some(),
        latest_charge: (intent.status == IntentStatus::Succeeded)
            .then(|| charge_of_intent(&intent.id))
            .flatten(),
        payment_error: intent
            .last_payment_error
            .as_ref()
            .map(|m| format!("card_declined: {m}")),
    }
}
