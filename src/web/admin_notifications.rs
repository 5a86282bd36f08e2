//! The operator's view of the outbox (SPEC §9): counts, the recent notifications with
//! their attempts and last answer, and "redeliver" (a form with `csrf_token` and a
//! required note, and its JSON twin under `/admin/api`), audited like the other actions.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use chrono::Utc;
use serde_json::json;

use crate::db;
use crate::db::notifications::Redelivery;
use crate::error::{AppError, PageError};
use crate::notify::{NotificationKind, NotificationState};
use crate::state::AppState;
use crate::web::auth::AdminUser;
use crate::web::html;

const LIMIT: i64 = 200;

struct RowView {
    id: String,
    kind: NotificationKind,
    email: String,
    sequence: i64,
    state: NotificationState,
    attempts: i32,
    created: String,
    last_try: String,
    next_try: String,
    answer: String,
}

#[derive(Template)]
#[template(path = "admin_notifications.html")]
struct NotificationsPage {
    enabled: bool,
    target: String,
    counts: db::notifications::Counts,
    oldest_pending: String,
    rows: Vec<RowView>,
    filter: Option<NotificationState>,
    states: &'static [NotificationState],
    csrf_token: String,
    done: String,
    limit: i64,
}

impl NotificationsPage {
    fn filter_is(&self, state: &NotificationState) -> bool {
        self.filter == Some(*state)
    }
}

pub async fn get_notifications(
    _: AdminUser,
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, PageError> {
    let mut filter = None;
    let mut done = String::new();
    for (k, v) in url::form_urlencoded::parse(req.query_string().as_bytes()) {
        match &*k {
            "state" => filter = v.trim().parse::<NotificationState>().ok(),
            "redelivered" => {
                done = v
                    .chars()
                    .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .take(40)
                    .collect()
            }
            _ => {}
        }
    }
    let now = Utc::now();
    let mut conn = state.db.get().await?;
    let counts = db::notifications::counts(&mut conn).await?;
    let rows = db::notifications::recent(&mut conn, filter, LIMIT).await?;
    drop(conn);
    let target = state
        .config
        .merchant_webhook
        .as_ref()
        .map_or_else(String::new, |m| {
            format!(
                "{}://{}{}",
                m.url.scheme(),
                m.url.host_str().unwrap_or_default(),
                m.url.path()
            )
        });
    let page = NotificationsPage {
        enabled: state.config.merchant_webhook.is_some(),
        target,
        oldest_pending: counts
            .oldest_pending
            .map_or_else(String::new, |t| html::age(t, now)),
        counts,
        rows: rows
            .into_iter()
            .map(|r| RowView {
                id: r.id,
                kind: r.kind,
                email: r.email,
                sequence: r.account_seq,
                attempts: r.attempts,
                created: html::timestamp(r.created_at),
                last_try: r
                    .last_attempt_at
                    .map_or_else(|| "never".to_owned(), html::timestamp),
                next_try: match r.state {
                    NotificationState::Pending => html::timestamp(r.next_attempt_at),
                    NotificationState::Delivered | NotificationState::Failed => String::new(),
                },
                answer: match (r.last_status, r.last_answer) {
                    (Some(s), Some(a)) if !a.is_empty() => format!("{s}: {a}"),
                    (Some(s), _) => s.to_string(),
                    (None, Some(a)) => a,
                    (None, None) => String::new(),
                },
                state: r.state,
            })
            .collect(),
        filter,
        states: NotificationState::ALL,
        csrf_token: crate::web::csrf::issue(&state.csrf_key, html::now_secs()),
        done,
        limit: LIMIT,
    };
    html::render(StatusCode::OK, &page)
}

/// Queues `id` again; 404 for an unknown id, 409 `invalid_action` while it is being sent.
async fn redeliver(state: &AppState, id: &str, note: &str) -> Result<String, AppError> {
    let note = crate::orders::actions::validate_note(note)?;
    // An operator's click can afford a round trip, so it never meets a dead connection.
    let mut conn = state.db.get_verified().await?;
    match db::notifications::redeliver(&mut conn, id, note).await? {
        Redelivery::Queued { was } => {
            tracing::info!(notification = %id, was = %was, "operator queued a notification again");
            Ok(format!("queued again (was {was})"))
        }
        Redelivery::InFlight => Err(AppError::Client {
            status: StatusCode::CONFLICT,
            code: "invalid_action",
            message: "this notification is being sent right now; try again once it has an answer"
                .into(),
        }),
        Redelivery::NotFound => Err(AppError::NotFound("notification")),
    }
}

pub async fn post_redeliver_form(
    _: AdminUser,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: Result<web::Bytes, actix_web::Error>,
) -> Result<HttpResponse, PageError> {
    let form = html::verified_form(&state, body)?;
    let note = form.get("note").map(String::as_str).unwrap_or_default();
    redeliver(&state, &path, note).await?;
    Ok(html::see_other(&format!(
        "/admin/notifications?redelivered={}",
        path.as_str()
    )))
}

pub async fn post_redeliver_json(
    _: AdminUser,
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    body: Result<web::Bytes, actix_web::Error>,
) -> Result<HttpResponse, AppError> {
    let body = crate::web::json_body(&req, body)?;
    let note = body
        .get("note")
        .and_then(|n| n.as_str())
        .unwrap_or_default();
    let result = redeliver(&state, &path, note).await?;
    Ok(HttpResponse::Ok()
        .insert_header((actix_web::http::header::CACHE_CONTROL, "no-store"))
        .json(json!({"id": path.as_str(), "action": "redeliver", "result": result})))
}
