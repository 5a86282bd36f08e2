//! The operator's actions as forms (with `csrf_token`, a required `note` and a one-time
//! `action_key`, so a double submit acts once) and as JSON twins under
//! `/admin/api/orders/{id}/…`, which take only `application/json` bodies: a cross-site
//! form cannot ride on cached Basic credentials. Both call `orders::actions::perform`.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use uuid::Uuid;

use crate::error::{AppError, PageError};
use crate::orders::actions::{self, ActionKind};
use crate::state::AppState;
use crate::web::auth::AdminUser;
use crate::web::html;

/// The action a path names, with its parameters taken from `field`.
fn kind(
    name: &str,
    field: impl Fn(&str) -> Result<Option<String>, AppError>,
) -> Result<ActionKind, AppError> {
    match name {
        "refund" => Ok(ActionKind::Refund(parse_amount(field("amount")?)?)),
        "resolve" => match field("decision")?.as_deref() {
            Some("grant") => Ok(ActionKind::ResolveGrant),
            Some("refund") => Ok(ActionKind::ResolveRefund),
            _ => Err(AppError::unprocessable(
                "invalid_decision",
                "decision must be grant or refund",
            )),
        },
        "sync" => Ok(ActionKind::Sync),
        "cancel" => Ok(ActionKind::Cancel),
        _ => Err(AppError::NotFound("action")),
    }
}

/// Minor units; blank means all that is left.
fn parse_amount(raw: Option<String>) -> Result<Option<i64>, AppError> {
    match raw.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(text) => text.parse::<i64>().map(Some).map_err(|_| {
            AppError::unprocessable(
                "invalid_amount",
                format!("amount must be a whole number of minor units, not {text:?}"),
            )
        }),
    }
}

fn order_id(raw: &str) -> Result<Uuid, AppError> {
    Uuid::parse_str(raw).map_err(|_| AppError::NotFound("order"))
}

pub async fn post_action_form(
    _: AdminUser,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    body: Result<web::Bytes, actix_web::Error>,
) -> Result<HttpResponse, PageError> {
    let (id, action) = (&path.0, &path.1);
    let state: &AppState = &state;
    let form = html::verified_form(state, body)?;
    let id = order_id(id)?;
    let field = |name: &str| Ok(form.get(name).cloned());
    let kind = kind(action, field)?;
    // The page renders a fresh key into every form; a form without one acts once per post.
    let key = match form.get("action_key").map(|k| k.trim()) {
        Some(k) if (16..=64).contains(&k.len()) && k.bytes().all(|b| b.is_ascii_alphanumeric()) => {
            format!("form-{k}")
        }
        _ => format!("form-{}", crate::random::token(32)),
    };
    let note = form.get("note").map(String::as_str).unwrap_or_default();
    let done = actions::perform(state, id, kind, note, &key).await?;
    Ok(html::see_other(&format!(
        "/admin/orders/{id}?action={}#actions",
        done.id
    )))
}

pub async fn post_action_json(
    _: AdminUser,
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<(String, String)>,
    body: Result<web::Bytes, actix_web::Error>,
) -> Result<HttpResponse, AppError> {
    let body = crate::web::json_body(&req, body)?;
    let id = order_id(&path.0)?;
    let field = |name: &str| match body.get(name) {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(s)) => Ok(Some(s.clone())),
        Some(serde_json::Value::Number(n)) => Ok(Some(n.to_string())),
        Some(other) => Err(AppError::unprocessable(
            "invalid_field",
            format!("{name} must be a string or a number, not {other}"),
        )),
    };
    let kind = kind(&path.1, field)?;
    let key = match req.headers().get("idempotency-key") {
        Some(raw) => format!(
            "api-{}",
            crate::idempotency::IdempotencyKey::parse(raw.as_bytes())?.as_str()
        ),
        None => format!("api-{}", crate::random::token(32)),
    };
    let note = match body.get("note") {
        Some(serde_json::Value::String(s)) => s.as_str(),
        _ => "",
    };
    let done = actions::perform(&state, id, kind, note, &key).await?;
    let mut res = HttpResponse::Ok();
    if done.replayed {
        res.insert_header(("Idempotent-Replayed", "true"));
    }
    res.insert_header((header::CACHE_CONTROL, "no-store"));
    Ok(res.json(done))
}
