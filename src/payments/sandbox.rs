//! The built-in sandbox provider (no STRIPE_SECRET_KEY): PaymentIntents live in the
//! database so every instance sees them. Its pay page actions and signed webhook
//! delivery are in `crate::sandbox`.

use rand::Rng;
use serde_json::json;

use super::{ChargeSnapshot, CreateIntent, EventPage, EventQuery, IntentSnapshot, ProviderError};
use crate::db::{self, Db};

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
        let id = format!("pi_sandbox_{}", random_hex(12));
        let client_secret = format!("{id}_secret_{}", random_hex(16));
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
                status: "requires_payment_method",
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
        if intent.status != "succeeded" {
            return Err(ProviderError::NotFound);
        }
        Ok(ChargeSnapshot {
            id: id.to_owned(),
            payment_intent_id: Some(intent.id),
            metadata_order_id: intent.metadata_order_id,
            amount: intent.amount,
            amount_refunded: 0,
            currency: intent.currency,
        })
    }

    /// The events the sandbox generated, delivered or not, as Stripe lists its own.
    pub async fn list_events(&self, query: &EventQuery) -> Result<EventPage, ProviderError> {
        let database = |e: diesel::result::Error| ProviderError::Database(e.to_string());
        let mut conn = self
            .pool
            .get()
            .await
            .map_err(|e| ProviderError::Database(e.to_string()))?;
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
        status: intent.status.clone(),
        amount: intent.amount,
        amount_received: Some(if intent.status == "succeeded" {
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
        payment_error: intent
            .last_payment_error
            .as_ref()
            .map(|m| format!("card_declined: {m}")),
    }
}

pub fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rng().fill(&mut buf[..]);
    hex::encode(buf)
}
