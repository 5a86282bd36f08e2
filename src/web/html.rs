//! Shared plumbing for the HTML pages: rendering with the security headers, the HTML
//! error page, form parsing and display helpers. Page handlers answer
//! `Result<HttpResponse, PageError>`; `web::error_pages` renders their errors as pages.
//! (The request span records the path only, never the query, so an error logged with it
//! cannot carry the status page's client secret: see `web::span`.)

use std::collections::HashMap;

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, HttpResponseBuilder};
use askama::Template;
use chrono::{DateTime, Utc};

use crate::config::Shop;
use crate::error::AppError;

/// One policy for every page; only the live pay page needs Stripe, but a single policy
/// keeps the pages predictable and Stripe.js needs all three Stripe sources anyway.
pub const CSP: &str = "default-src 'self'; script-src 'self' 'unsafe-inline' https://js.stripe.com; \
frame-src https://js.stripe.com; connect-src 'self' https://api.stripe.com; \
style-src 'self' 'unsafe-inline'; img-src 'self' data:";

/// Renders `page` with `status`. Pages carry CSRF tokens, client secrets or live order
/// state, so nothing is cached and no URL leaks through the Referer header.
/// The page rendered, or an internal error (in the caller's error type: pages answer
/// `PageError`, helpers `AppError`).
pub fn render<E: From<AppError>>(
    status: StatusCode,
    page: &impl Template,
) -> Result<HttpResponse, E> {
    let body = page
        .render()
        .map_err(|e| AppError::Internal(anyhow::anyhow!("rendering a page: {e}")))?;
    Ok(builder(status).body(body))
}

fn builder(status: StatusCode) -> HttpResponseBuilder {
    let mut res = HttpResponse::build(status);
    res.insert_header((
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    ))
    .insert_header((
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    ))
    .insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")))
    .insert_header((
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    ))
    .insert_header((
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    ))
    .insert_header((header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")));
    res
}

pub fn see_other(location: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, location))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .finish()
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    status: u16,
    title: &'a str,
    message: String,
    shop: &'a Shop,
}

/// The small HTML page for an error `status` with a message the shopper may read.
pub fn plain_error_page(shop: &Shop, status: StatusCode, message: String) -> HttpResponse {
    let title = match status {
        StatusCode::NOT_FOUND => "Not found",
        StatusCode::FORBIDDEN => "Form expired",
        StatusCode::CONFLICT => "Already done",
        StatusCode::UNAUTHORIZED => "Sign in required",
        StatusCode::METHOD_NOT_ALLOWED => "Not allowed here",
        StatusCode::TOO_MANY_REQUESTS => "Too many tries",
        s if s.is_server_error() => "Something went wrong",
        _ => "That did not work",
    };
    let page = ErrorPage {
        status: status.as_u16(),
        title,
        message,
        shop,
    };
    let mut res = builder(status);
    match page.render() {
        Ok(body) => res.body(body),
        Err(_) => res
            .content_type("text/plain; charset=utf-8")
            .body(page.message),
    }
}

/// An urlencoded form body, whatever its Content-Type claims, so that a POST missing
/// its token is refused with 403 by the CSRF check rather than 400 by the extractor.
/// The first value of a repeated field wins.
pub fn parse_form(body: &[u8]) -> HashMap<String, String> {
    let mut fields = HashMap::new();
    for (k, v) in url::form_urlencoded::parse(body) {
        fields
            .entry(k.into_owned())
            .or_insert_with(|| v.into_owned());
    }
    fields
}

/// The form fields of a state-changing POST, after its `csrf_token` checked out
/// (403 otherwise, before anything else happens).
pub fn verified_form(
    state: &crate::state::AppState,
    body: Result<actix_web::web::Bytes, actix_web::Error>,
) -> Result<HashMap<String, String>, AppError> {
    let form = parse_form(&body.map_err(crate::web::payload_error)?);
    crate::web::csrf::verify(
        &state.csrf_key,
        form.get("csrf_token").map(String::as_str),
        now_secs(),
    )?;
    Ok(form)
}

pub fn now_secs() -> i64 {
    Utc::now().timestamp()
}

/// "$5.00" for 500 usd, "¥500" for 500 jpy, "5.00 CHF" for currencies without a symbol.
pub fn money(amount: i64, currency: &str) -> String {
    let currency = currency.to_ascii_lowercase();
    // Stripe's zero-decimal currencies: the amount is already in whole units.
    const ZERO_DECIMAL: [&str; 16] = [
        "bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf", "ugx", "vnd", "vuv",
        "xaf", "xof", "xpf",
    ];
    let sign = if amount < 0 { "-" } else { "" };
    let abs = amount.unsigned_abs();
    let number = if ZERO_DECIMAL.contains(&currency.as_str()) {
        group(abs)
    } else {
        format!("{}.{:02}", group(abs / 100), abs % 100)
    };
    match currency.as_str() {
        "usd" => format!("{sign}${number}"),
        "eur" => format!("{sign}€{number}"),
        "gbp" => format!("{sign}£{number}"),
        "jpy" => format!("{sign}¥{number}"),
        other => format!("{sign}{number} {}", other.to_ascii_uppercase()),
    }
}

fn group(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

pub fn timestamp(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// "42 s", "7 min", "3 h", "2 d": how long ago, for the operator's eyes.
pub fn age(at: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let secs = (now - at).num_seconds().max(0);
    match secs {
        0..60 => format!("{secs} s"),
        60..3600 => format!("{} min", secs / 60),
        3600..86_400 => format!("{} h", secs / 3600),
        _ => format!("{} d", secs / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_is_formatted_per_currency() {
        assert_eq!(money(500, "usd"), "$5.00");
        assert_eq!(money(123_456_789, "USD"), "$1,234,567.89");
        assert_eq!(money(5, "eur"), "€0.05");
        assert_eq!(money(500, "jpy"), "¥500");
        assert_eq!(money(1999, "chf"), "19.99 CHF");
        assert_eq!(money(-250, "gbp"), "-£2.50");
    }

    #[test]
    fn forms_parse_without_content_type_and_first_value_wins() {
        let f = parse_form(b"email=a%40b.co&pack_id=starter&pack_id=pro&x=1+2");
        assert_eq!(f.get("email").map(String::as_str), Some("a@b.co"));
        assert_eq!(f.get("pack_id").map(String::as_str), Some("starter"));
        assert_eq!(f.get("x").map(String::as_str), Some("1 2"));
        assert!(parse_form(b"").is_empty());
    }
}
