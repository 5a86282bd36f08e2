//! Incoming Stripe events. Verification happens on the raw bytes before any parsing;
//! everything after verification runs in ONE transaction, so that the dedup row, the
//! order transition, the ledger rows and the recorded outcome commit together or not at all.

pub mod event;
pub mod resolve;
pub mod signature;

use std::time::Instant;

use actix_web::http::header::HeaderMap;
use diesel_async::AsyncPgConnection;
use serde::Serialize;

use crate::config::KeyMode;
use crate::db;
use crate::domain::order::{Decision, OrderStatus};
use crate::error::AppError;
use crate::orders::settle::{self, Settled};
use crate::state::AppState;
use event::{Event, EventKind, Meaning};
use signature::SignatureError;
use uuid::Uuid;

crate::text_enum! {
    /// How applying one delivery ended (SPEC §5); stored on the event row.
    pub enum Outcome {
        Applied => "applied",
        Duplicate => "duplicate",
        Noop => "noop",
        Ignored => "ignored",
        UnknownOrder => "unknown_order",
        Mismatch => "mismatch",
    }
}

#[derive(Debug, Serialize)]
pub struct Receipt {
    pub received: bool,
    pub event_id: String,
    pub outcome: Outcome,
}

/// Verifies, parses and applies one delivery.
pub async fn handle(
    state: &AppState,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Receipt, AppError> {
    let started = Instant::now();
    let result = handle_inner(state, headers, body).await;
    let outcome = match &result {
        Ok(r) => r.outcome.as_str(),
        Err(e) => e.code(),
    };
    metrics::histogram!("webhook_handling_seconds").record(started.elapsed().as_secs_f64());
    metrics::counter!("webhook_requests_total", "result" => outcome).increment(1);
    result
}

async fn handle_inner(
    state: &AppState,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Receipt, AppError> {
    verify(state, headers, body)?;
    let receipt = process(state, body).await?.receipt;
    if receipt.outcome == Outcome::Duplicate {
        state.duplicates.add(&receipt.event_id);
    }
    Ok(receipt)
}

/// Duplicate deliveries counted in memory and added to their events in batches
/// (`flush`, every few seconds and at shutdown). Counting each inside its delivery's
/// transaction made every copy of an event wait for the previous copy's row lock: the
/// duplicate storm lost a third of its throughput. A crash loses the last few seconds
/// of counts, never an event or a credit.
#[derive(Debug, Default)]
pub struct DuplicateTally(std::sync::Mutex<std::collections::HashMap<String, i32>>);

/// Distinct events held before a flush is due anyway (bounds the memory).
const TALLY_LIMIT: usize = 50_000;

impl DuplicateTally {
    fn add(&self, event_id: &str) {
        if let Ok(mut counts) = self.0.lock()
            && (counts.len() < TALLY_LIMIT || counts.contains_key(event_id))
        {
            *counts.entry(event_id.to_owned()).or_default() += 1;
        }
    }

    /// Writes the counts so far; kept for the next flush if the database fails.
    pub async fn flush(&self, db: &db::Db) {
        let taken: Vec<(String, i32)> = match self.0.lock() {
            Ok(mut counts) => counts.drain().collect(),
            Err(_) => return,
        };
        if taken.is_empty() {
            return;
        }
        let (ids, counts): (Vec<String>, Vec<i32>) = taken.iter().cloned().unzip();
        let written = match db.get().await {
            Ok(mut conn) => db::events::add_duplicates(&mut conn, &ids, &counts)
                .await
                .map_err(anyhow::Error::from),
            Err(e) => Err(e.into()),
        };
        if let Err(e) = written {
            tracing::warn!(error = %e, events = ids.len(), "could not record duplicate deliveries; retrying later");
            if let Ok(mut counts) = self.0.lock() {
                for (id, n) in taken {
                    *counts.entry(id).or_default() += n;
                }
            }
        }
    }
}

/// One event's effect: the receipt, and the order status it changed, if any.
#[derive(Debug)]
pub struct Processed {
    pub receipt: Receipt,
    pub change: Option<(Uuid, OrderStatus, OrderStatus)>,
}

/// Parses and applies one authentic event: a webhook delivery after its signature
/// verified, or an event the catch-up listed from the provider. Both go through the
/// same dedup row and the same transaction, so either may come first.
pub async fn process(state: &AppState, body: &[u8]) -> Result<Processed, AppError> {
    let event = Event::parse(body).map_err(|e| AppError::bad_request(e.code(), e.to_string()))?;
    let meaning = event
        .meaning()
        .map_err(|e| AppError::bad_request(e.code(), e.to_string()))?;
    let livemode_ok = match state.config.stripe.as_ref().and_then(|s| s.key_mode()) {
        Some(KeyMode::Live) => event.livemode,
        Some(KeyMode::Test) => !event.livemode,
        None => true,
    };
    let meaning = if livemode_ok {
        resolve::prepare(state, &event.id, meaning).await?
    } else {
        meaning
    };

    // Run once more on a fresh connection if the first was found dead at BEGIN (the
    // database restarted or ended it while it sat in the pool): nothing of this event
    // ran on it, and the Stripe CLI never redelivers what got a 503.
    let (outcome, change) = state
        .db
        .transaction(async |c| {
            apply(
                c,
                &event,
                body,
                &meaning,
                livemode_ok,
                state.config.outbox(),
            )
            .await
            .map_err(AppError::from)
        })
        .await?;
    metrics::counter!("webhook_events_total", "type" => metric_type(event.kind), "outcome" => outcome.as_str())
        .increment(1);
    // The routine outcomes are the hot path and are recorded anyway (the event row, the
    // order's transitions, /metrics): at info, their line cost 12-15 % of webhook
    // throughput in the load harness. The unusual ones stay visible by default
    // (a mismatch also warns where it is decided).
    match outcome {
        Outcome::UnknownOrder | Outcome::Mismatch => {
            tracing::info!(event_id = %event.id, event_type = %event.event_type, outcome = outcome.as_str(), "webhook event");
        }
        Outcome::Applied | Outcome::Duplicate | Outcome::Noop | Outcome::Ignored => {
            tracing::debug!(event_id = %event.id, event_type = %event.event_type, outcome = outcome.as_str(), "webhook event");
        }
    }
    Ok(Processed {
        receipt: Receipt {
            received: true,
            event_id: event.id,
            outcome,
        },
        change,
    })
}

fn verify(state: &AppState, headers: &HeaderMap, body: &[u8]) -> Result<(), AppError> {
    let mut values = headers.get_all("stripe-signature");
    let result = match (values.next(), values.next()) {
        (None, _) => Err(SignatureError::Missing),
        (Some(_), Some(_)) => Err(SignatureError::Multiple),
        (Some(value), None) => match value.to_str() {
            Ok(header) => {
                let now = chrono::Utc::now().timestamp();
                let tolerance =
                    i64::try_from(state.config.webhook_tolerance.as_secs()).unwrap_or(i64::MAX);
                signature::verify(header, body, &state.webhook_secrets, now, tolerance).map(|_| ())
            }
            Err(_) => Err(SignatureError::Malformed("header is not visible ASCII")),
        },
    };
    result.map_err(|e| {
        state
            .signature_failures
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        metrics::counter!("webhook_signature_failures_total", "reason" => e.code()).increment(1);
        tracing::warn!(reason = e.code(), "webhook signature rejected");
        AppError::bad_request(e.code(), e.to_string())
    })
}

/// The transaction body: dedup, settle, record the outcome. Two round trips besides
/// BEGIN and COMMIT (one more when the order is found only by its PaymentIntent): the
/// dedup insert goes out with the order lookup behind it (Postgres
/// runs them in order, so a concurrent twin still stops at the event's primary key
/// first; a duplicate merely takes the order lock until its empty commit), and the
/// settlement's writes go out with the outcome update.
async fn apply(
    conn: &AsyncPgConnection,
    event: &Event,
    body: &[u8],
    meaning: &Meaning,
    livemode_ok: bool,
    outbox: crate::notify::Outbox,
) -> diesel::QueryResult<(Outcome, Option<(Uuid, OrderStatus, OrderStatus)>)> {
    let new = db::events::NewEvent {
        event_id: &event.id,
        event_type: &event.event_type,
        livemode: event.livemode,
        api_version: event.api_version.as_deref(),
        payload: db::events::RawJson(body),
    };
    let lookup = async {
        match meaning.reference() {
            Some(reference) => settle::lock(conn, reference).await,
            None => Ok(None),
        }
    };
    let (is_new, locked) = futures_util::try_join!(db::events::insert_if_new(conn, &new), lookup)?;
    if !is_new {
        return Ok((Outcome::Duplicate, None));
    }
    let Some(locked) = locked else {
        let outcome = match meaning {
            Meaning::Ignored(_) => Outcome::Ignored,
            // A contradiction of our key is reported as such, found or not.
            _ if !livemode_ok => Outcome::Mismatch,
            _ => Outcome::UnknownOrder,
        };
        db::events::set_outcome(conn, &event.id, outcome.as_str(), None).await?;
        return Ok((outcome, None));
    };
    let decision = match meaning {
        _ if !livemode_ok => Decision::Mismatch(format!(
            "livemode: the configured key expects livemode={}, the event has livemode={}",
            !event.livemode, event.livemode
        )),
        Meaning::Fact { fact, .. } => locked.decide(fact),
        // Only reached with the livemode contradiction: prepare turns every refund
        // failure into a fact, and an ignored event finds no order.
        Meaning::RefundFailed { .. } | Meaning::Ignored(_) => Decision::Noop,
    };
    let settled = locked.settled(&decision);
    let outcome = outcome_of(&settled);
    futures_util::try_join!(
        settle::write(conn, &locked, &decision, &event.id, outbox),
        db::events::set_outcome(conn, &event.id, outcome.as_str(), Some(locked.order.id)),
    )?;
    let change = match settled {
        Settled::Applied { order_id, from, to } if from != to => Some((order_id, from, to)),
        Settled::Mismatch { order_id, .. } if locked.order.status != OrderStatus::NeedsReview => {
            Some((order_id, locked.order.status, OrderStatus::NeedsReview))
        }
        _ => None,
    };
    Ok((outcome, change))
}

pub fn outcome_of(settled: &Settled) -> Outcome {
    match settled {
        Settled::UnknownOrder => Outcome::UnknownOrder,
        Settled::Noop { .. } => Outcome::Noop,
        Settled::Mismatch { .. } => Outcome::Mismatch,
        Settled::Applied { .. } => Outcome::Applied,
    }
}

/// Metric label for an event type: handled types by name, the rest as "other", so a
/// sender cannot grow the label set without bound.
fn metric_type(kind: Option<EventKind>) -> &'static str {
    kind.map_or("other", EventKind::as_str)
}
