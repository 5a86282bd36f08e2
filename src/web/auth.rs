//! HTTP Basic for the operator pages: user `admin`, ADMIN_PASSWORD (or the generated one).

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpRequest, web};
use base64::Engine;
use secrecy::ExposeSecret;
use subtle::ConstantTimeEq;

use crate::error::AppError;
use crate::state::AppState;

/// Present in a handler's arguments: the request carried the admin's credentials.
pub struct AdminUser;

impl FromRequest for AdminUser {
    type Error = AppError;
    type Future = std::future::Ready<Result<Self, AppError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        std::future::ready(check(req))
    }
}

/// A client address that failed to log in too often is refused even with the right
/// password until its window passes: guessing costs the guesser, not the operator.
/// Only presented credentials count as failures (a browser's first, bare request is
/// merely asked for them).
fn check(req: &HttpRequest) -> Result<AdminUser, AppError> {
    let state = req
        .app_data::<web::Data<AppState>>()
        .ok_or(AppError::Unauthorized)?;
    let client = crate::web::client::address(req, &state.config.trusted_proxies);
    let now = std::time::Instant::now();
    if let Some(ip) = client {
        let wait = state
            .admin_failures
            .lock()
            .map_or(None, |mut window| window.over(&ip, now));
        if let Some(wait) = wait {
            metrics::counter!("rate_limited_total", "limit" => "admin_failures").increment(1);
            return Err(AppError::RateLimited {
                code: "rate_limited",
                message: "too many failed logins from this address; wait and try again".into(),
                retry_after_secs: wait.as_secs() + 1,
            });
        }
    }
    let Some(header) = req.headers().get("authorization") else {
        return Err(AppError::Unauthorized);
    };
    let verdict = verify(state, header);
    if verdict.is_err() {
        metrics::counter!("admin_login_failures_total").increment(1);
        tracing::warn!(client = ?client, "operator login failed");
        if let (Some(ip), Ok(mut window)) = (client, state.admin_failures.lock()) {
            window.record(&ip, now);
        }
    }
    verdict
}

/// Basic credentials for user `admin`, the password compared in constant time. The
/// attempted password goes nowhere else.
fn verify(
    state: &AppState,
    header: &actix_web::http::header::HeaderValue,
) -> Result<AdminUser, AppError> {
    let header = header.to_str().map_err(|_| AppError::Unauthorized)?;
    let (scheme, encoded) = header
        .trim()
        .split_once(' ')
        .ok_or(AppError::Unauthorized)?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(AppError::Unauthorized);
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .map_err(|_| AppError::Unauthorized)?;
    let decoded = String::from_utf8(decoded).map_err(|_| AppError::Unauthorized)?;
    let (user, password) = decoded.split_once(':').ok_or(AppError::Unauthorized)?;
    let expected = state.admin_password.expose_secret().as_bytes();
    let password_ok: bool = password.as_bytes().ct_eq(expected).into();
    if user == "admin" && password_ok {
        Ok(AdminUser)
    } else {
        Err(AppError::Unauthorized)
    }
}
