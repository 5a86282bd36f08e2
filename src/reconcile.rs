//! Heals lost webhooks in two sweeps: asks the provider about orders still unsettled
//! after RECONCILE_AFTER_SECS and applies the PaymentIntent's real status through the
//! same exactly-once `settle::apply` (resuming creations interrupted between the database
//! and the provider), then catches up on the provider's event list (`crate::catchup`). A pass leases its orders (FOR UPDATE SKIP LOCKED, then a lease
//! column) and keeps them until it ends, so concurrent passes on several instances never
//! ask about the same order; no connection is held while the provider is called.

use std::time::Duration;

use chrono::Utc;
use uuid::Uuid;

use crate::catchup::CatchupReport;
use crate::db;
use crate::domain::order::OrderStatus;
use crate::orders::sync::{self, Synced};
use crate::state::AppState;

/// Orders older than this are left to an operator: Stripe's own PaymentIntents expire,
/// and a week-old pending order is a business question, not a lost webhook.
pub const MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);
/// At most this many orders per pass; the next pass takes the rest.
pub const BATCH: i64 = 500;
/// A crashed pass's leases run out after this.
const LEASE: Duration = Duration::from_secs(300);

#[derive(Debug, Default, Clone)]
pub struct ReconcileReport {
    pub checked: u32,
    /// Orders whose status changed, by either sweep.
    pub changed: Vec<(Uuid, OrderStatus, OrderStatus)>,
    pub resumed: u32,
    /// Orders the provider could not be asked about.
    pub errors: u32,
    pub events: CatchupReport,
}

impl ReconcileReport {
    /// Records a status change; several changes to one order in a pass (the catch-up may
    /// apply its success and then its refund) are one line, from the first to the last.
    pub fn record_change(&mut self, change: (Uuid, OrderStatus, OrderStatus)) {
        let (id, _, to) = change;
        match self.changed.iter().position(|c| c.0 == id) {
            // Back where the pass found it: no change after all.
            Some(i) if self.changed[i].1 == to => {
                self.changed.remove(i);
            }
            Some(i) => self.changed[i].2 = to,
            None => self.changed.push(change),
        }
    }

    /// The lines `paidonce reconcile` prints (SPEC §6).
    pub fn lines(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .changed
            .iter()
            .map(|(id, from, to)| format!("order {id}: {from} -> {to}"))
            .collect();
        out.push(self.events.line());
        out.push(format!(
            "reconciled: checked {}, changed {}, errors {}",
            self.checked,
            self.changed.len(),
            self.errors
        ));
        out
    }
}

/// One pass. Provider failures are counted in the report, never fatal.
#[tracing::instrument(skip_all, fields(trigger))]
pub async fn reconcile_once(state: &AppState, trigger: &str) -> anyhow::Result<ReconcileReport> {
    let now = Utc::now();
    let after = chrono::Duration::from_std(state.config.reconcile_after)?;
    let mut conn = state.db.get().await?;
    let run_id = db::reconcile_runs::start(&mut conn, trigger).await?;
    let claimed = db::orders::claim_for_reconcile(
        &mut conn,
        now - after,
        now - chrono::Duration::from_std(MAX_AGE)?,
        now + chrono::Duration::from_std(LEASE)?,
        BATCH,
    )
    .await?;
    drop(conn);

    let mut report = ReconcileReport::default();
    for order in &claimed {
        report.checked += 1;
        match check(state, order).await {
            Ok(Checked::Synced(Synced::Changed { from, to })) => {
                report.record_change((order.id, from, to));
            }
            Ok(Checked::Synced(Synced::Unchanged)) => {}
            Ok(Checked::Resumed) => report.resumed += 1,
            Err(e) => {
                report.errors += 1;
                metrics::counter!("reconcile_errors_total").increment(1);
                tracing::warn!(order_id = %order.id, error = %e, "reconciling an order failed");
            }
        }
    }

    let mut conn = state.db.get().await?;
    let ids: Vec<Uuid> = claimed.iter().map(|o| o.id).collect();
    db::orders::release_leases(&mut conn, &ids).await?;
    drop(conn);

    // Second sweep: the events that never arrived (refunds, disputes, failures).
    match crate::catchup::catch_up(state).await {
        Ok(events) => {
            for change in &events.changed {
                report.record_change(*change);
            }
            report.events = events;
        }
        Err(e) => {
            report.events.counts.errors += 1;
            tracing::warn!(error = %e, "event catch-up failed");
        }
    }

    let mut conn = state.db.get().await?;
    let count = |n: usize| i32::try_from(n).unwrap_or(i32::MAX);
    db::reconcile_runs::finish(
        &mut conn,
        run_id,
        count(claimed.len()),
        count(report.changed.len()),
        count(report.errors as usize),
    )
    .await?;
    metrics::counter!("reconcile_runs_total").increment(1);
    metrics::counter!("reconcile_changes_total").increment(report.changed.len() as u64);
    tracing::info!(
        checked = report.checked,
        changed = report.changed.len(),
        resumed = report.resumed,
        errors = report.errors,
        "reconcile pass done"
    );
    Ok(report)
}

/// What checking one claimed order came to.
enum Checked {
    /// Its creation had been interrupted before the provider was asked: now finished.
    Resumed,
    Synced(Synced),
}

async fn check(state: &AppState, order: &db::orders::Order) -> anyhow::Result<Checked> {
    if order.payment_intent_id.is_none() {
        // Creation was interrupted after the order was stored: finish it with the same key.
        crate::orders::create::attach_intent(state, order.clone(), None).await?;
        tracing::info!(order_id = %order.id, "resumed an interrupted order creation");
        return Ok(Checked::Resumed);
    }
    Ok(Checked::Synced(
        sync::with_provider(state, order, "reconciler").await?,
    ))
}

/// The background loop: a pass every `interval`, plus a sweep of expired idempotency keys.
pub async fn run_loop(
    state: actix_web::web::Data<AppState>,
    interval: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stop.changed() => return,
        }
        if let Err(e) = reconcile_once(&state, "loop").await {
            tracing::warn!(error = %e, "reconcile pass failed");
        }
        if let Ok(mut conn) = state.db.get().await
            && let Err(e) = db::idempotency::delete_expired(&mut conn, 5_000).await
        {
            tracing::warn!(error = %e, "sweeping expired idempotency keys failed");
        }
    }
}
