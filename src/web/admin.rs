//! The operator pages (HTTP Basic through `AdminUser`): the dashboard, one order's
//! timeline and the reconcile-now action; the event list is `admin_events`. Everything
//! shown comes from outside (e-mails, event ids and types) and relies on askama's escaping.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use askama::Template;
use chrono::Utc;
use uuid::Uuid;

use crate::db;
use crate::domain::order::OrderStatus;
use crate::error::{AppError, PageError};
use crate::state::AppState;
use crate::web::admin_views::{
    CatchupView, Count, EventRow, OrderRow, RunView, TimelineRow, dispute_words, timeline,
};
use crate::web::auth::AdminUser;
use crate::web::{csrf, html};

#[derive(Template)]
#[template(path = "admin_dashboard.html")]
struct Dashboard {
    provider: &'static str,
    generated_at: String,
    counts: Vec<Count>,
    total_orders: i64,
    granted: i64,
    revoked: i64,
    outcomes: Vec<Count>,
    signature_failures: u64,
    duplicates_absorbed: i64,
    mismatched_events: i64,
    needs_review: i64,
    last_run: Option<RunView>,
    catchup: Option<CatchupView>,
    stuck: Vec<OrderRow>,
    stuck_after: String,
    /// Whether the background reconciler runs here, and how often.
    loop_on: bool,
    loop_every: String,
    recent: Vec<OrderRow>,
    events: Vec<EventRow>,
    csrf_token: String,
    /// Credits API keys, never the key itself.
    api_keys: Vec<String>,
    deficits: Vec<(String, i64)>,
    /// The outbox (SPEC §9): `None` when notifications are off.
    outbox: Option<db::notifications::Counts>,
    /// Set when the oldest pending notification waited over a minute.
    outbox_stuck_for: String,
}

pub async fn get_dashboard(
    _: AdminUser,
    state: web::Data<AppState>,
) -> Result<HttpResponse, PageError> {
    let now = Utc::now();
    let stuck_after =
        chrono::Duration::from_std(state.config.reconcile_after).map_err(anyhow::Error::from)?;
    let every =
        chrono::Duration::from_std(state.config.reconcile_interval).map_err(anyhow::Error::from)?;
    let o = crate::overview::load(&state, now - stuck_after).await?;
    let outbox_stuck_for = o
        .outbox
        .as_ref()
        .and_then(|o| o.oldest_pending)
        .filter(|t| now - *t > chrono::Duration::minutes(1))
        .map_or_else(String::new, |t| html::age(t, now));
    let page = Dashboard {
        provider: state.provider.name(),
        generated_at: html::timestamp(now),
        counts: OrderStatus::ALL
            .iter()
            .map(|s| Count {
                label: s.as_str().to_owned(),
                n: o.count(*s),
            })
            .collect(),
        total_orders: o.counts.iter().map(|(_, n)| n).sum(),
        granted: o.granted,
        revoked: o.revoked,
        mismatched_events: o.outcome_count(crate::webhook::Outcome::Mismatch),
        outcomes: o
            .outcomes
            .iter()
            .map(|(outcome, n)| Count {
                label: outcome.clone().unwrap_or_else(|| "unfinished".to_owned()),
                n: *n,
            })
            .collect(),
        signature_failures: state
            .signature_failures
            .load(std::sync::atomic::Ordering::Relaxed),
        needs_review: o.count(OrderStatus::NeedsReview),
        duplicates_absorbed: o.duplicates_absorbed,
        last_run: o.last_run.map(RunView::from),
        catchup: o.catchup.map(CatchupView::from),
        stuck: o
            .stuck
            .iter()
            .map(|(order, email)| OrderRow::new(order, email, now))
            .collect(),
        stuck_after: html::age(now - stuck_after, now),
        loop_on: !state.config.reconcile_interval.is_zero(),
        loop_every: html::age(now - every, now),
        recent: o
            .recent
            .iter()
            .map(|(order, email)| OrderRow::new(order, email, now))
            .collect(),
        events: o.events.into_iter().map(EventRow::from).collect(),
        csrf_token: csrf::issue(&state.csrf_key, now.timestamp()),
        api_keys: o.api_keys.iter().map(crate::credits::key_line).collect(),
        deficits: o.deficits,
        outbox: o.outbox,
        outbox_stuck_for,
    };
    html::render(StatusCode::OK, &page)
}

#[derive(Template)]
#[template(path = "admin_order.html")]
struct OrderDetail {
    id: Uuid,
    email: String,
    status: &'static str,
    pack_id: String,
    credits: i64,
    amount: String,
    refunded: String,
    dispute: &'static str,
    charges: Vec<String>,
    payment_intent_id: Option<String>,
    created: String,
    paid: Option<String>,
    order_net: i64,
    balance: i64,
    timeline: Vec<TimelineRow>,
    reason: Option<String>,
    actions: Vec<ActionRow>,
    /// The action just performed (after the redirect), shown first.
    just_done: Option<ActionRow>,
    can_refund: bool,
    refund_left: String,
    refund_left_minor: i64,
    can_resolve: bool,
    can_sync: bool,
    can_cancel: bool,
    csrf_token: String,
    /// One-time key for each form: a double submit acts once.
    action_key: String,
}

pub struct ActionRow {
    pub id: i64,
    pub at: String,
    pub action: String,
    pub note: String,
    pub state: crate::db::actions::ActionState,
    pub result: String,
}

#[derive(serde::Deserialize)]
pub struct OrderQuery {
    action: Option<i64>,
}

pub async fn get_order(
    _: AdminUser,
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<OrderQuery>,
) -> Result<HttpResponse, PageError> {
    let id = Uuid::parse_str(&path).map_err(|_| AppError::NotFound("order"))?;
    let t = crate::orders::view::timeline(&state, id).await?;
    let order = &t.order;
    let actions: Vec<ActionRow> = t
        .actions
        .iter()
        .rev()
        .map(|a| ActionRow {
            id: a.id,
            at: html::timestamp(a.created_at),
            action: a.action.clone(),
            note: a.note.clone(),
            state: a.state,
            result: a.result.clone().unwrap_or_else(|| "still running".into()),
        })
        .collect();
    let (just_done, actions): (Vec<ActionRow>, Vec<ActionRow>) = actions
        .into_iter()
        .partition(|a| Some(a.id) == query.action);
    use OrderStatus as S;
    let left = order.amount - order.amount_refunded;
    let has_pi = order.payment_intent_id.is_some();
    let page = OrderDetail {
        id,
        email: t.email.clone(),
        status: order.status.as_str(),
        pack_id: order.pack_id.clone(),
        credits: order.credits,
        amount: html::money(order.amount, &order.currency),
        refunded: html::money(order.amount_refunded, &order.currency),
        dispute: dispute_words(order.dispute),
        charges: t.charges.clone(),
        payment_intent_id: order.payment_intent_id.clone(),
        created: html::timestamp(order.created_at),
        paid: order.paid_at.map(html::timestamp),
        order_net: t.ledger.iter().map(|e| e.delta).sum(),
        balance: t.balance,
        timeline: timeline(&t.transitions, &t.events, &t.ledger),
        reason: order.reason.clone(),
        actions,
        just_done: just_done.into_iter().next(),
        can_refund: has_pi
            && left > 0
            && matches!(order.status, S::Paid | S::PartiallyRefunded | S::Disputed),
        refund_left: html::money(left, &order.currency),
        refund_left_minor: left,
        can_resolve: order.status == S::NeedsReview,
        can_sync: has_pi,
        can_cancel: order.status.is_unsettled(),
        csrf_token: csrf::issue(&state.csrf_key, Utc::now().timestamp()),
        action_key: crate::random::token(32),
    };
    html::render(StatusCode::OK, &page)
}

pub async fn post_reconcile(
    _: AdminUser,
    state: web::Data<AppState>,
    body: Result<web::Bytes, actix_web::Error>,
) -> Result<HttpResponse, PageError> {
    html::verified_form(&state, body)?;
    crate::reconcile::reconcile_once(&state, "admin").await?;
    Ok(html::see_other("/admin"))
}
