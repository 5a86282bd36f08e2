//! The operator's webhook event list, filterable by outcome and type (HTTP Basic through
//! `AdminUser`). Event ids and types come from outside and rely on askama's escaping.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;

use crate::db;
use crate::error::PageError;
use crate::state::AppState;
use crate::web::admin_views::EventRow;
use crate::web::auth::AdminUser;
use crate::web::html;
use crate::webhook::Outcome;
use crate::webhook::event::EventKind;

struct OutcomeOption {
    value: &'static str,
    selected: bool,
}

#[derive(Template)]
#[template(path = "admin_events.html")]
struct EventsPage {
    events: Vec<EventRow>,
    outcome_options: Vec<OutcomeOption>,
    event_type: String,
    known_types: Vec<&'static str>,
    limit: i64,
}

/// The query is read by hand: a malformed one filters nothing instead of failing.
pub async fn get_events(
    _: AdminUser,
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, PageError> {
    let mut outcome = String::new();
    let mut event_type = String::new();
    for (k, v) in url::form_urlencoded::parse(req.query_string().as_bytes()) {
        match &*k {
            "outcome" => outcome = v.trim().to_owned(),
            "type" => event_type = v.trim().to_owned(),
            _ => {}
        }
    }
    const LIMIT: i64 = 200;
    let mut conn = state.db.get().await?;
    let filter = |s: &str| (!s.is_empty()).then(|| s.to_owned());
    let events = db::events::recent(
        &mut conn,
        filter(&outcome).as_deref(),
        filter(&event_type).as_deref(),
        LIMIT,
    )
    .await?;
    drop(conn);
    let page = EventsPage {
        events: events.into_iter().map(EventRow::from).collect(),
        outcome_options: Outcome::ALL
            .iter()
            .map(|o| OutcomeOption {
                value: o.as_str(),
                selected: o.as_str() == outcome,
            })
            .collect(),
        event_type,
        known_types: EventKind::ALL.iter().map(|k| k.as_str()).collect(),
        limit: LIMIT,
    };
    html::render(StatusCode::OK, &page)
}
