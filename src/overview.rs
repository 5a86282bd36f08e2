//! The operator's dashboard as data: every figure the dashboard shows, read in one
//! place (the page only formats it).

use chrono::{DateTime, Utc};

use crate::db;
use crate::db::api_keys::ApiKey;
use crate::db::catchup::LastPass;
use crate::db::events::EventSummary;
use crate::db::orders::Order;
use crate::db::reconcile_runs::Run;
use crate::domain::order::OrderStatus;
use crate::error::AppError;
use crate::state::AppState;

pub struct Overview {
    pub counts: Vec<(OrderStatus, i64)>,
    /// Credits granted, and taken back, over all accounts.
    pub granted: i64,
    pub revoked: i64,
    /// Events by outcome (`None`: not finished).
    pub outcomes: Vec<(Option<String>, i64)>,
    pub duplicates_absorbed: i64,
    pub last_run: Option<Run>,
    pub catchup: Option<LastPass>,
    /// Unsettled orders older than `stuck_before`, with their e-mails.
    pub stuck: Vec<(Order, String)>,
    pub recent: Vec<(Order, String)>,
    pub events: Vec<EventSummary>,
    pub api_keys: Vec<ApiKey>,
    /// Accounts whose balance is below zero (refunded after spending), most negative first.
    pub deficits: Vec<(String, i64)>,
    /// The outbox, when notifications are on.
    pub outbox: Option<db::notifications::Counts>,
}

impl Overview {
    pub fn count(&self, status: OrderStatus) -> i64 {
        self.counts
            .iter()
            .find(|(s, _)| *s == status)
            .map_or(0, |(_, n)| *n)
    }

    pub fn outcome_count(&self, outcome: crate::webhook::Outcome) -> i64 {
        self.outcomes
            .iter()
            .find(|(o, _)| o.as_deref() == Some(outcome.as_str()))
            .map_or(0, |(_, n)| *n)
    }
}

pub async fn load(state: &AppState, stuck_before: DateTime<Utc>) -> Result<Overview, AppError> {
    let mut conn = state.db.get().await?;
    let (granted, revoked) = db::stats::credit_totals(&mut conn).await?;
    Ok(Overview {
        counts: db::orders::counts_by_status(&mut conn).await?,
        granted,
        revoked,
        outcomes: db::events::count_by_outcome(&mut conn).await?,
        duplicates_absorbed: db::events::duplicates_absorbed(&mut conn).await?,
        last_run: db::reconcile_runs::last(&mut conn).await?,
        catchup: db::catchup::last(&mut conn).await?,
        stuck: db::orders::stuck_with_email(&mut conn, stuck_before, 50).await?,
        recent: db::orders::recent_with_email(&mut conn, 20).await?,
        events: db::events::recent(&mut conn, None, None, 20).await?,
        api_keys: db::api_keys::all(&mut conn).await?,
        deficits: db::stats::accounts_in_deficit(&mut conn, 20).await?,
        outbox: match state.config.merchant_webhook {
            Some(_) => Some(db::notifications::counts(&mut conn).await?),
            None => None,
        },
    })
}
