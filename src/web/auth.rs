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

fn check(req: &HttpRequest) -> Result<AdminUser, AppError> {
    let state = req
        .app_data::<web::Data<AppState>>()
        .ok_or(AppError::Unauthorized)?;
    let header = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .ok_or(AppError::Unauthorized)?;
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
