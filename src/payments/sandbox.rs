//! The built-in sandbox provider (no STRIPE_SECRET_KEY): PaymentIntents live in the
//! database so every instance sees them. Its pay page actions and signed webhook
//! delivery are in `crate::sandbox`.

use rand::Rng;
use serde_json::json;

use super::{CreateIntent, IntentSnapshot, ProviderError};
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
    }
}

pub fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rng().fill(&mut buf[..]);
    hex::encode(buf)
}
