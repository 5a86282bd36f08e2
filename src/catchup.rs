//! Event catch-up (SPEC §6): heals webhooks that never arrived — a refund, a dispute, a
//! failure — by listing the provider's events since a stored cursor and applying each
//! one through the webhook's own transaction (`webhook::process`), so an event already
//! received is a `duplicate` and a lost one is applied once. The cursor moves only past
//! events that were applied or recorded; a lease keeps two instances from paging the
//! same window at once, with no connection held while the provider answers.

use std::time::Duration;

use chrono::Utc;
use uuid::Uuid;

use crate::db::{self, catchup::PassCounts};
use crate::domain::order::OrderStatus;
use crate::error::AppError;
use crate::payments::EventQuery;
use crate::state::AppState;
use crate::webhook::{self, Outcome, event::EventKind};

/// Each pass lists from the cursor less this, for events Stripe made visible late.
pub const OVERLAP_SECS: i64 = 300;
/// The first pass looks this far back.
pub const FIRST_LOOKBACK_SECS: i64 = 3 * 24 * 3600;
/// A crashed pass's lease runs out after this.
const LEASE: Duration = Duration::from_secs(600);
const PAGE: u32 = 100;

#[derive(Debug, Default, Clone)]
pub struct CatchupReport {
    /// Another instance held the lease: this pass listed nothing.
    pub skipped: bool,
    pub counts: PassCounts,
    pub changed: Vec<(Uuid, OrderStatus, OrderStatus)>,
}

impl CatchupReport {
    /// The line `paidonce reconcile` prints (SPEC §6).
    pub fn line(&self) -> String {
        let c = &self.counts;
        format!(
            "events: listed {}, applied {}, duplicate {}, errors {}",
            c.listed, c.applied, c.duplicate, c.errors
        )
    }
}

/// One catch-up pass. Provider and per-event failures are counted, never fatal.
#[tracing::instrument(skip_all)]
pub async fn catch_up(state: &AppState) -> anyhow::Result<CatchupReport> {
    let now = Utc::now();
    let mut conn = state.db.get().await?;
    let lease_until = now + chrono::Duration::from_std(LEASE)?;
    let Some(cursor) = db::catchup::claim(&mut conn, lease_until).await? else {
        tracing::info!("event catch-up skipped: another instance is catching up");
        return Ok(CatchupReport {
            skipped: true,
            ..CatchupReport::default()
        });
    };
    drop(conn);

    let since = cursor.unwrap_or(now.timestamp() - FIRST_LOOKBACK_SECS);
    let mut report = CatchupReport::default();
    let mut last_error = None;
    let (events, listed_all) = match list_since(state, since - OVERLAP_SECS).await {
        Ok(events) => (events, true),
        Err((partial, e)) => {
            report.counts.errors += 1;
            tracing::warn!(error = %e, "listing the provider's events failed");
            last_error = Some(format!("listing events: {e}"));
            (partial, false)
        }
    };
    report.counts.listed = count(events.len());

    // Oldest first, as they happened; the outcome does not depend on it.
    let mut newest = since;
    let mut hold: Option<i64> = None;
    for event in events.iter().rev() {
        let created = event.get("created").and_then(serde_json::Value::as_i64);
        let body = serde_json::to_vec(event)?;
        match webhook::process(state, &body).await {
            Ok(processed) => {
                match processed.receipt.outcome {
                    Outcome::Duplicate => report.counts.duplicate += 1,
                    _ => report.counts.applied += 1,
                }
                report.changed.extend(processed.change);
                if let Some(created) = created {
                    newest = newest.max(created);
                }
            }
            Err(e) => {
                report.counts.errors += 1;
                let id = event
                    .get("id")
                    .and_then(serde_json::Value::as_str)
                    .unwrap_or("?");
                tracing::warn!(event_id = id, error = %e, "catch-up could not apply an event");
                last_error = Some(format!("event {id}: {e}"));
                // An event that can never be stored is skipped for good; one that failed
                // for a passing reason keeps the cursor before it, for the next pass.
                if e.status_code_is_server_error() {
                    if let Some(created) = created {
                        hold = Some(hold.map_or(created, |h| h.min(created)));
                    }
                } else if let Some(created) = created {
                    newest = newest.max(created);
                }
            }
        }
    }
    let new_cursor = match (listed_all, hold) {
        (false, _) => cursor,
        (true, Some(held)) => Some(held.min(newest)),
        (true, None) => Some(newest),
    };
    let mut conn = state.db.get().await?;
    db::catchup::finish(&mut conn, new_cursor, &report.counts, last_error.as_deref()).await?;
    metrics::counter!("catchup_events_total", "result" => "applied")
        .increment(u64::try_from(report.counts.applied).unwrap_or(0));
    metrics::counter!("catchup_events_total", "result" => "duplicate")
        .increment(u64::try_from(report.counts.duplicate).unwrap_or(0));
    metrics::counter!("catchup_events_total", "result" => "error")
        .increment(u64::try_from(report.counts.errors).unwrap_or(0));
    tracing::info!(
        listed = report.counts.listed,
        applied = report.counts.applied,
        duplicate = report.counts.duplicate,
        errors = report.counts.errors,
        "event catch-up done"
    );
    Ok(report)
}

/// Every handled event created at or after `created_gte`, newest first, page by page.
/// On failure, what was listed so far comes back with the error.
async fn list_since(
    state: &AppState,
    created_gte: i64,
) -> Result<Vec<serde_json::Value>, (Vec<serde_json::Value>, AppError)> {
    let mut events = Vec::new();
    let mut query = EventQuery {
        types: EventKind::ALL.iter().map(|k| k.as_str()).collect(),
        created_gte,
        starting_after: None,
        limit: PAGE,
    };
    loop {
        let page = match state.provider.list_events(&query).await {
            Ok(page) => page,
            Err(e) => return Err((events, AppError::Provider(e.into()))),
        };
        let last_id = page
            .data
            .last()
            .and_then(|e| e.get("id"))
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned);
        events.extend(page.data);
        match last_id {
            Some(id) if page.has_more => query.starting_after = Some(id),
            _ => return Ok(events),
        }
    }
}

fn count(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}
