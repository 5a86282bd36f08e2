//! Errors as pages for browsers (SPEC §7). Every error in the app is built once, as
//! SPEC §4's JSON body; this middleware turns that body into the small HTML error page
//! when a browser asked for a page route, so the 401 of an extractor, the 404 of an
//! unknown path, the 405 of a wrong method and a 429 read the same as a page's own
//! errors. A page handler's own errors (`error::PageError`) are pages whoever asked.
//! API routes, the webhook and the probes always answer JSON, as does anyone else who
//! does not say it accepts `text/html`.

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderMap};
use actix_web::middleware::Next;

/// Our own error bodies are a few hundred bytes; anything bigger is left as it is.
const ERROR_BODY_LIMIT: usize = 16 * 1024;

/// Routes whose callers are programs: their errors stay JSON whatever `Accept` says.
const MACHINE_PREFIXES: [&str; 6] = [
    "/api/",
    "/webhooks/",
    "/admin/api/",
    "/metrics",
    "/healthz",
    "/readyz",
];

pub async fn html_for_browsers(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let wants_page = wants_html(req.path(), req.headers());
    let res = next.call(req).await?;
    let status = res.status();
    let page_error = res
        .response()
        .extensions()
        .contains::<crate::error::PageErrorMark>();
    if !(wants_page || page_error)
        || !(status.is_client_error() || status.is_server_error())
        || !is_json(&res)
    {
        return Ok(res.map_into_left_body());
    }
    let (req, res) = res.into_parts();
    // Looked up only for an error page itself, off every other request's path.
    let shop = req
        .app_data::<actix_web::web::Data<crate::state::AppState>>()
        .map_or_else(crate::config::Shop::default, |s| s.config.shop.clone());
    let (head, body) = res.into_parts();
    let Ok(bytes) = actix_web::body::to_bytes_limited(body, ERROR_BODY_LIMIT).await else {
        let fallback = super::html::plain_error_page(&shop, status, default_message(status));
        return Ok(ServiceResponse::new(req, fallback).map_into_right_body());
    };
    let message = bytes
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| v["error"]["message"].as_str().map(str::to_owned))
        .unwrap_or_else(|| default_message(status));
    let mut page = super::html::plain_error_page(&shop, status, message);
    keep_protocol_headers(head.headers(), page.headers_mut());
    Ok(ServiceResponse::new(req, page).map_into_right_body())
}

/// A page route asked for by a client that takes HTML (every browser's navigation).
fn wants_html(path: &str, headers: &HeaderMap) -> bool {
    if MACHINE_PREFIXES.iter().any(|p| path.starts_with(p)) || path == "/api" {
        return false;
    }
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| {
            accept
                .split(',')
                .any(|t| t.split(';').next().is_some_and(|m| m.trim() == "text/html"))
        })
}

fn is_json<B>(res: &ServiceResponse<B>) -> bool {
    res.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"))
}

/// The headers that tell the client what to do next survive the change of body.
fn keep_protocol_headers(from: &HeaderMap, to: &mut HeaderMap) {
    for name in [header::RETRY_AFTER, header::WWW_AUTHENTICATE, header::ALLOW] {
        if let Some(v) = from.get(&name) {
            to.insert(name, v.clone());
        }
    }
    if from
        .get(header::CONNECTION)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close"))
    {
        to.insert(
            header::CONNECTION,
            header::HeaderValue::from_static("close"),
        );
    }
}

fn default_message(status: actix_web::http::StatusCode) -> String {
    status
        .canonical_reason()
        .unwrap_or("the request failed")
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::HeaderValue;

    fn accept(v: &'static str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT, HeaderValue::from_static(v));
        h
    }

    #[test]
    fn browsers_on_page_routes_get_pages_and_programs_get_json() {
        let browser = accept("text/html,application/xhtml+xml,*/*;q=0.8");
        assert!(wants_html("/nope", &browser));
        assert!(wants_html("/admin", &browser));
        assert!(wants_html("/orders/x/status", &browser));
        assert!(!wants_html("/api/orders", &browser));
        assert!(!wants_html("/admin/api/events", &browser));
        assert!(!wants_html("/webhooks/stripe", &browser));
        assert!(!wants_html("/metrics", &browser));
        assert!(!wants_html("/nope", &accept("application/json")));
        assert!(!wants_html("/nope", &accept("*/*")));
        assert!(!wants_html("/nope", &HeaderMap::new()));
    }
}
