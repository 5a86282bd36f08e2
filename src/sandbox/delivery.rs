//! Posts the sandbox outbox to PUBLIC_BASE_URL/webhooks/stripe, signed exactly as Stripe
//! signs, retrying non-2xx answers with exponential backoff and full jitter. Rows are
//! leased with FOR UPDATE SKIP LOCKED and posted with no lock or connection held, so
//! several instances can run the worker at once.

use std::time::Duration;

use actix_web::web::Data;
use chrono::Utc;
use futures_util::future::join_all;
use rand::Rng;
use secrecy::ExposeSecret;

use crate::db::{self, sandbox::Delivery};
use crate::state::AppState;
use crate::webhook::signature;

const POLL: Duration = Duration::from_millis(500);
const LEASE: chrono::Duration = chrono::Duration::seconds(30);
const BATCH: i64 = 32;
/// After this many attempts a delivery is parked (its error stays on the row).
pub const MAX_ATTEMPTS: i32 = 15;

pub async fn run_worker(state: Data<AppState>, mut stop: tokio::sync::watch::Receiver<bool>) {
    loop {
        match deliver_due(&state).await {
            Ok(n) if n > 0 => continue, // more may be due right away
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "sandbox delivery pass failed"),
        }
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            _ = state.sandbox_wakeup.notified() => {}
            _ = stop.changed() => return,
        }
    }
}

/// One pass: lease what is due and post it all concurrently. Returns how many were posted.
pub async fn deliver_due(state: &AppState) -> anyhow::Result<usize> {
    let due = {
        let mut conn = state.db.get().await?;
        db::sandbox::claim_due(&mut conn, BATCH, Utc::now() + LEASE).await?
    };
    let count = due.len();
    join_all(due.into_iter().map(|d| deliver_one(state, d))).await;
    Ok(count)
}

async fn deliver_one(state: &AppState, delivery: Delivery) {
    let result = post(state, &delivery).await;
    let Ok(mut conn) = state.db.get().await else {
        return; // the lease runs out and the row is retried
    };
    let written = match result {
        Ok(()) => db::sandbox::mark_delivered(&mut conn, delivery.id).await,
        Err(error) => {
            let attempts = delivery.attempts;
            let next = if attempts >= MAX_ATTEMPTS {
                Utc::now() + chrono::Duration::days(3650)
            } else {
                Utc::now() + backoff(attempts)
            };
            tracing::warn!(event_id = %delivery.event_id, attempts, error = %error, "sandbox webhook delivery failed");
            db::sandbox::reschedule(&mut conn, delivery.id, next, &error).await
        }
    };
    if let Err(e) = written {
        tracing::warn!(error = %e, "recording a sandbox delivery failed");
    }
}

async fn post(state: &AppState, delivery: &Delivery) -> Result<(), String> {
    let secret = state
        .webhook_secrets
        .first()
        .ok_or("no webhook secret to sign with")?;
    let header = signature::header(
        secret.expose_secret(),
        Utc::now().timestamp(),
        delivery.payload.as_bytes(),
    );
    let url = format!(
        "{}/webhooks/stripe",
        state.public_base_url.as_str().trim_end_matches('/')
    );
    let response = state
        .http
        .post(url)
        .header("Content-Type", "application/json; charset=utf-8")
        .header(
            "User-Agent",
            "Stripe/1.0 (+https://stripe.com/docs/webhooks) paidonce-sandbox",
        )
        .header("Stripe-Signature", header)
        .body(delivery.payload.clone())
        .send()
        .await
        .map_err(|e| format!("request failed: {e}"))?;
    if response.status().is_success() {
        Ok(())
    } else {
        Err(format!("endpoint answered {}", response.status()))
    }
}

/// Full jitter over min(2^attempts s, 5 min).
fn backoff(attempts: i32) -> chrono::Duration {
    let ceiling = 2i64.saturating_pow(attempts.clamp(0, 16) as u32).min(300) * 1000;
    chrono::Duration::milliseconds(rand::rng().random_range(250..=ceiling.max(250)))
}
