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
use crate::error::AppError;
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

pub async fn get_dashboard(_: AdminUser, state: web::Data<AppState>) -> HttpResponse {
    html::respond(&state.config.shop, dashboard(&state).await)
}

async fn dashboard(state: &AppState) -> Result<HttpResponse, AppError> {
    let now = Utc::now();
    let stuck_after =
        chrono::Duration::from_std(state.config.reconcile_after).map_err(anyhow::Error::from)?;
    let mut conn = state.db.get().await?;
    let counts = db::orders::counts_by_status(&mut conn).await?;
    let (granted, revoked) = db::stats::credit_totals(&mut conn).await?;
    let outcomes = db::events::count_by_outcome(&mut conn).await?;
    let duplicates_absorbed = db::events::duplicates_absorbed(&mut conn).await?;
    let last_run = db::reconcile_runs::last(&mut conn).await?;
    let catchup = db::catchup::last(&mut conn).await?;
    let stuck = db::orders::stuck_with_email(&mut conn, now - stuck_after, 50).await?;
    let recent = db::orders::recent_with_email(&mut conn, 20).await?;
    let events = db::events::recent(&mut conn, None, None, 20).await?;
    let api_keys = db::api_keys::all(&mut conn).await?;
    let deficits = db::stats::accounts_in_deficit(&mut conn, 20).await?;
    let outbox = match state.config.merchant_webhook {
        Some(_) => Some(db::notifications::counts(&mut conn).await?),
        None => None,
    };
    drop(conn);
    let outbox_stuck_for = outbox
        .as_ref()
        .and_then(|o| o.oldest_pending)
        .filter(|t| now - *t > chrono::Duration::minutes(1))
        .map_or_else(String::new, |t| html::age(t, now));

    let count_of = |status: OrderStatus| {
        counts
            .iter()
            .find(|(s, _)| *s == status)
            .map_or(0, |(_, n)| *n)
    };
    let page = Dashboard {
        provider: state.provider.name(),
        generated_at: html::timestamp(now),
        counts: OrderStatus::ALL
            .iter()
            .map(|s| Count {
                label: s.as_str().to_owned(),
                n: count_of(*s),
            })
            .collect(),
        total_orders: counts.iter().map(|(_, n)| n).sum(),
        granted,
        revoked,
        mismatched_events: outcomes
            .iter()
            .find(|(o, _)| o.as_deref() == Some("mismatch"))
            .map_or(0, |(_, n)| *n),
        outcomes: outcomes
            .into_iter()
            .map(|(o, n)| Count {
                label: o.unwrap_or_else(|| "unfinished".to_owned()),
                n,
            })
            .collect(),
        signature_failures: state
            .signature_failures
            .load(std::sync::atomic::Ordering::Relaxed),
        needs_review: count_of(OrderStatus::NeedsReview),
        duplicates_absorbed,
        last_run: last_run.map(RunView::from),
        catchup: catchup.map(CatchupView::from),
        stuck: stuck
            .iter()
            .map(|(o, email)| OrderRow::new(o, email, now))
            .collect(),
        stuck_after: html::age(now - stuck_after, now),
        loop_on: !state.config.reconcile_interval.is_zero(),
        loop_every: html::age(
            now - chrono::Duration::from_std(state.config.reconcile_interval)
                .map_err(anyhow::Error::from)?,
            now,
        ),
        recent: recent
            .iter()
            .map(|(o, email)| OrderRow::new(o, email, now))
            .collect(),
        events: events.into_iter().map(EventRow::from).collect(),
        csrf_token: csrf::issue(&state.csrf_key, now.timestamp()),
        api_keys: api_keys.iter().map(crate::credits::key_line).collect(),
        deficits,
        outbox,
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
) -> HttpResponse {
    html::respond(
        &state.config.shop,
        order_detail(&state, &path, query.action).await,
    )
}

async fn order_detail(
    state: &AppState,
    id: &str,
    just_done: Option<i64>,
) -> Result<HttpResponse, AppError> {
    let id = Uuid::parse_str(id).map_err(|_| AppError::NotFound("order"))?;
    let mut conn = state.db.get().await?;
    let order = db::orders::find(&conn, id)
        .await?
        .ok_or(AppError::NotFound("order"))?;
    let email = db::accounts::email_of(&mut conn, order.account_id).await?;
    let transitions = db::orders::transitions(&mut conn, id).await?;
    let events = db::events::for_order(&mut conn, id).await?;
    let ledger = db::ledger::for_order(&mut conn, id).await?;
    let balance = db::accounts::balance(&mut conn, order.account_id).await?;
    let charges = db::charges::for_order(&mut conn, id).await?;
    let actions = db::actions::for_order(&mut conn, id).await?;
    drop(conn);
    let actions: Vec<ActionRow> = actions
        .into_iter()
        .rev()
        .map(|a| ActionRow {
            id: a.id,
            at: html::timestamp(a.created_at),
            action: a.action,
            note: a.note,
            state: a.state,
            result: a.result.unwrap_or_else(|| "still running".into()),
        })
        .collect();
    let (just_done, actions): (Vec<ActionRow>, Vec<ActionRow>) =
        actions.into_iter().partition(|a| Some(a.id) == just_done);
    use OrderStatus as S;
    let left = order.amount - order.amount_refunded;
    let has_pi = order.payment_intent_id.is_some();
    let page = OrderDetail {
        id,
        email,
        status: order.status.as_str(),
        pack_id: order.pack_id.clone(),
        credits: order.credits,
        amount: html::money(order.amount, &order.currency),
        refunded: html::money(order.amount_refunded, &order.currency),
        dispute: dispute_words(order.dispute),
        charges,
        payment_intent_id: order.payment_intent_id.clone(),
        created: html::timestamp(order.created_at),
        paid: order.paid_at.map(html::timestamp),
        order_net: ledger.iter().map(|e| e.delta).sum(),
        balance,
        timeline: timeline(&transitions, &events, &ledger),
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
) -> HttpResponse {
    html::respond(&state.config.shop, reconcile(&state, body).await)
}

async fn reconcile(
    state: &AppState,
    body: Result<web::Bytes, actix_web::Error>,
) -> Result<HttpResponse, AppError> {
    html::verified_form(state, body)?;
    crate::reconcile::reconcile_once(state, "admin").await?;
    Ok(html::see_other("/admin"))
}
