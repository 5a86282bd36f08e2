//! Sync on return: when the shopper is on the status page and the webhook has not settled
//! the order a few seconds after it was made, ask the provider once (per order per
//! MIN_INTERVAL), whatever `redirect_status` says, so a lost success, failure or cancel
//! does not leave the shopper waiting for the reconciler. The redirect itself is never
//! proof of anything: only the provider's own answer is applied, via `settle::apply`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::Utc;
use tracing::Instrument;
use uuid::Uuid;

use crate::db::orders::Order;
use crate::error::AppError;
use crate::orders::sync;
use crate::state::AppState;

/// Younger orders are left to the webhook, which usually lands within a second.
pub const MIN_AGE: Duration = Duration::from_secs(3);
/// One provider call per order per this interval, however often the page is reloaded.
pub const MIN_INTERVAL: Duration = Duration::from_secs(10);

/// The order as the status page should show it, asking the provider first when it is
/// still unsettled a few seconds after it was made (rate-limited per order).
/// `retrying`: the shopper comes back from paying a failed order again, so a failure
/// is worth checking too (the new attempt's success may be the event that was lost).
pub async fn order_for_status_page(
    state: &AppState,
    id: Uuid,
    retrying: bool,
) -> Result<Order, AppError> {
    let order = crate::orders::lookup(state, id).await?;
    if order.payment_intent_id.is_none() {
        return Ok(order);
    }
    let checkable = order.status.is_unsettled()
        || (retrying && order.status == crate::domain::order::OrderStatus::Failed);
    if !checkable || !old_enough(&order) || !state.return_sync_turns.take(id, Instant::now()) {
        return Ok(order);
    }
    // A root span of its own: the request's span carries the URL, and with it the client secret.
    let span = tracing::info_span!(parent: None, "return_sync", order_id = %id);
    match sync::with_provider(state, &order, "return_sync")
        .instrument(span.clone())
        .await
    {
        Ok(synced) => span.in_scope(|| tracing::info!(outcome = ?synced, "synced on return")),
        Err(e) => span.in_scope(|| tracing::warn!(error = %e, "sync on return failed; the webhook or the reconciler will settle it")),
    }
    crate::orders::lookup(state, id).await
}

fn old_enough(order: &Order) -> bool {
    (Utc::now() - order.created_at)
        .to_std()
        .is_ok_and(|age| age >= MIN_AGE)
}

/// When this instance last asked the provider about each order on a shopper's return.
/// In memory on purpose: it only bounds load; exactly-once is `settle::apply`'s job,
/// whatever instance asks.
#[derive(Debug, Default)]
pub struct Turns(Mutex<HashMap<Uuid, Instant>>);

impl Turns {
    /// True at most once per `MIN_INTERVAL` per order.
    fn take(&self, id: Uuid, now: Instant) -> bool {
        let mut tries = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if tries.len() > 10_000 {
            tries.retain(|_, at| now.duration_since(*at) < MIN_INTERVAL);
        }
        match tries.get(&id) {
            Some(at) if now.duration_since(*at) < MIN_INTERVAL => false,
            _ => {
                tries.insert(id, now);
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_order_gets_one_turn_per_interval() {
        let turns = Turns::default();
        let id = Uuid::new_v4();
        let t0 = Instant::now();
        assert!(turns.take(id, t0));
        assert!(!turns.take(id, t0 + Duration::from_secs(1)));
        assert!(
            turns.take(Uuid::new_v4(), t0),
            "other orders are not held back"
        );
        assert!(turns.take(id, t0 + MIN_INTERVAL));
    }
}
