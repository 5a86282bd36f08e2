//! Display-ready rows for the operator templates, so the templates hold no logic beyond
//! `if`/`for`. An order's timeline merges its transitions, webhook events and ledger rows.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::db::catchup::LastPass;
use crate::db::events::EventSummary;
use crate::db::ledger::Entry;
use crate::db::orders::{Order, Transition};
use crate::db::reconcile_runs::Run;
use crate::domain::ledger::LedgerKind;
use crate::domain::order::DisputeState;
use crate::web::html;
use crate::webhook::event::EventKind;

pub struct Count {
    pub label: String,
    pub n: i64,
}

pub struct OrderRow {
    pub id: Uuid,
    pub short_id: String,
    pub email: String,
    pub status: &'static str,
    pub pack_id: String,
    pub credits: i64,
    pub amount: String,
    pub created: String,
    pub age: String,
}

impl OrderRow {
    pub fn new(order: &Order, email: &str, now: DateTime<Utc>) -> Self {
        let id = order.id.to_string();
        OrderRow {
            id: order.id,
            short_id: id.chars().take(8).collect(),
            email: email.to_owned(),
            status: order.status.as_str(),
            pack_id: order.pack_id.clone(),
            credits: order.credits,
            amount: html::money(order.amount, &order.currency),
            created: html::timestamp(order.created_at),
            age: html::age(order.created_at, now),
        }
    }
}

pub struct EventRow {
    pub event_id: String,
    pub event_type: String,
    pub outcome: String,
    pub received: String,
    pub order_id: Option<Uuid>,
}

impl From<EventSummary> for EventRow {
    fn from(e: EventSummary) -> Self {
        EventRow {
            event_id: e.event_id,
            event_type: e.event_type,
            // Stored but not yet decided: its transaction has not committed an outcome.
            outcome: e.outcome.unwrap_or_else(|| "unfinished".to_owned()),
            received: html::timestamp(e.received_at),
            order_id: e.order_id,
        }
    }
}

pub struct RunView {
    pub trigger: String,
    pub started: String,
    pub finished: String,
    pub checked: i32,
    pub changed: i32,
    pub errors: i32,
}

impl From<Run> for RunView {
    fn from(r: Run) -> Self {
        RunView {
            trigger: r.trigger,
            started: html::timestamp(r.started_at),
            finished: r.finished_at.map_or_else(
                || "still running (or interrupted)".to_owned(),
                html::timestamp,
            ),
            checked: r.checked,
            changed: r.changed,
            errors: r.errors,
        }
    }
}

pub struct TimelineRow {
    pub at: String,
    pub kind: &'static str,
    pub what: String,
    pub cause: String,
}

/// Oldest first. Rows written in one transaction share its timestamp; among them the
/// webhook event comes first, then the transition and the ledger row it caused.
pub fn timeline(
    transitions: &[Transition],
    events: &[EventSummary],
    ledger: &[Entry],
) -> Vec<TimelineRow> {
    let mut rows: Vec<(DateTime<Utc>, u8, TimelineRow)> = Vec::new();
    for t in transitions {
        let mut what = match &t.from_status {
            Some(from) => format!("{from} → {}", t.to_status),
            None => format!("created as {}", t.to_status),
        };
        if let Some(detail) = &t.detail {
            what.push_str(": ");
            what.push_str(detail);
        }
        rows.push((
            t.at,
            1,
            TimelineRow {
                at: html::timestamp(t.at),
                kind: "transition",
                what,
                cause: t.cause.clone(),
            },
        ));
    }
    for e in events {
        let outcome = e.outcome.as_deref().unwrap_or("unfinished");
        let mut what = match e.event_type.parse::<EventKind>() {
            Ok(kind) => format!("{}: {} ({outcome})", kind.describe(), e.event_type),
            Err(_) => format!("{} ({outcome})", e.event_type),
        };
        match e.duplicates {
            0 => {}
            1 => what.push_str("; 1 duplicate delivery absorbed"),
            n => what.push_str(&format!("; {n} duplicate deliveries absorbed")),
        }
        rows.push((
            e.received_at,
            0,
            TimelineRow {
                at: html::timestamp(e.received_at),
                kind: "webhook",
                what,
                cause: e.event_id.clone(),
            },
        ));
    }
    for l in ledger {
        rows.push((
            l.created_at,
            2,
            TimelineRow {
                at: html::timestamp(l.created_at),
                kind: "ledger",
                what: ledger_words(l),
                cause: l.cause.clone(),
            },
        ));
    }
    rows.sort_by_key(|(at, rank, _)| (*at, *rank));
    rows.into_iter().map(|(_, _, row)| row).collect()
}

/// A ledger row in an operator's words.
fn ledger_words(entry: &Entry) -> String {
    let why = match (entry.kind, entry.delta > 0) {
        (LedgerKind::Grant, _) => "granted for the payment",
        (LedgerKind::Refund, false) => "taken back for a refund",
        (LedgerKind::Refund, true) => "given back: a refund failed or was canceled",
        (LedgerKind::Dispute, _) => "taken back: the dispute was lost",
        (LedgerKind::Spend, _) => "spent through the credits API",
        (LedgerKind::SpendReversal, _) => "given back: a spend was reversed",
    };
    format!("{:+} credits, {why} ({})", entry.delta, entry.kind)
}

/// The order's dispute in an operator's words.
pub fn dispute_words(dispute: DisputeState) -> &'static str {
    match dispute {
        DisputeState::None => "none",
        DisputeState::Open => "open: waiting for the bank's decision",
        DisputeState::Won => "won (or closed with a warning): credits kept",
        DisputeState::Lost => "lost: every remaining credit taken back",
    }
}

pub struct CatchupView {
    pub started: String,
    pub finished: String,
    pub cursor: String,
    pub listed: i32,
    pub applied: i32,
    pub duplicate: i32,
    pub errors: i32,
    pub last_error: Option<String>,
}

impl From<LastPass> for CatchupView {
    fn from(p: LastPass) -> Self {
        CatchupView {
            started: p
                .last_started_at
                .map_or_else(|| "never".to_owned(), html::timestamp),
            finished: p
                .last_finished_at
                .map_or_else(|| "—".to_owned(), html::timestamp),
            cursor: p
                .cursor_created
                .and_then(|t| DateTime::<Utc>::from_timestamp(t, 0))
                .map_or_else(
                    || "not set (the first pass looks back 3 days)".to_owned(),
                    html::timestamp,
                ),
            listed: p.last_listed,
            applied: p.last_applied,
            duplicate: p.last_duplicate,
            errors: p.last_errors,
            last_error: p.last_error,
        }
    }
}
