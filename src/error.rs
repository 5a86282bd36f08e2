//! One error type for HTTP. `Display` is the client-safe message; internal detail is
//! kept as the source and reaches only the logs. Every failure, actix's own included,
//! answers with SPEC §4's body: `{"error": {"code", "message"}}`.

use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, ResponseError};
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use serde_json::json;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// A client error with its own status and stable code (400, 403, 413, 415, 422…).
    #[error("{message}")]
    Client {
        status: StatusCode,
        code: &'static str,
        message: String,
    },
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("authentication required")]
    Unauthorized,
    #[error("Idempotency-Key is in use by a request still in progress; retry later")]
    KeyInUse,
    #[error("Idempotency-Key was already used with a different request body")]
    KeyMismatch,
    #[error("the payment provider could not be reached; nothing was charged, retry later")]
    Provider(#[source] anyhow::Error),
    /// A 4xx from the provider: retrying the same request cannot help.
    #[error("the payment provider refused the request; nothing was charged")]
    ProviderRefused(#[source] anyhow::Error),
    #[error("the database is unavailable; retry later")]
    DbUnavailable(#[source] anyhow::Error),
    /// Over a rate limit (SPEC §2): 429 with Retry-After, nothing done.
    #[error("{message}")]
    RateLimited {
        code: &'static str,
        message: String,
        retry_after_secs: u64,
    },
    #[error("internal error")]
    Internal(#[from] anyhow::Error),
}

impl AppError {
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        AppError::Client {
            status: StatusCode::BAD_REQUEST,
            code,
            message: message.into(),
        }
    }

    pub fn unprocessable(code: &'static str, message: impl Into<String>) -> Self {
        AppError::Client {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            code,
            message: message.into(),
        }
    }

    pub fn forbidden(code: &'static str, message: impl Into<String>) -> Self {
        AppError::Client {
            status: StatusCode::FORBIDDEN,
            code,
            message: message.into(),
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            AppError::Client { code, .. } => code,
            AppError::NotFound(_) => "not_found",
            AppError::Unauthorized => "unauthorized",
            AppError::KeyInUse => "idempotency_key_in_use",
            AppError::KeyMismatch => "idempotency_key_mismatch",
            AppError::Provider(_) => "provider_unavailable",
            AppError::ProviderRefused(_) => "provider_refused",
            AppError::DbUnavailable(_) => "database_unavailable",
            AppError::RateLimited { code, .. } => code,
            AppError::Internal(_) => "internal_error",
        }
    }

    pub fn status_code_is_server_error(&self) -> bool {
        ResponseError::status_code(self).is_server_error()
    }

    pub fn body(&self) -> serde_json::Value {
        json!({ "error": { "code": self.code(), "message": self.to_string() } })
    }
}

impl ResponseError for AppError {
    fn status_code(&self) -> StatusCode {
        match self {
            AppError::Client { status, .. } => *status,
            AppError::NotFound(_) => StatusCode::NOT_FOUND,
            AppError::Unauthorized => StatusCode::UNAUTHORIZED,
            AppError::KeyInUse => StatusCode::CONFLICT,
            AppError::KeyMismatch => StatusCode::UNPROCESSABLE_ENTITY,
            AppError::Provider(_) | AppError::ProviderRefused(_) => StatusCode::BAD_GATEWAY,
            AppError::DbUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            AppError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            AppError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        if status.is_server_error() {
            tracing::error!(code = self.code(), error = %self.chain(), "request failed");
        }
        let mut res = HttpResponse::build(status);
        match self {
            AppError::Unauthorized => {
                res.insert_header((
                    header::WWW_AUTHENTICATE,
                    r#"Basic realm="paidonce admin", charset="UTF-8""#,
                ));
            }
            AppError::DbUnavailable(_) | AppError::KeyInUse => {
                res.insert_header((header::RETRY_AFTER, "1"));
            }
            AppError::RateLimited {
                retry_after_secs, ..
            } => {
                res.insert_header((header::RETRY_AFTER, retry_after_secs.max(&1).to_string()));
            }
            _ => {}
        }
        res.json(self.body())
    }
}

/// A provider failure as the client hears it: the database behind the sandbox is a
/// 503 like ours; a refusal (a 4xx, or no such object) is final; anything else is worth
/// retrying later. (Order creation answers a refusal itself: it also cancels the order.)
impl From<crate::payments::ProviderError> for AppError {
    fn from(e: crate::payments::ProviderError) -> Self {
        use crate::payments::ProviderError;
        match e {
            ProviderError::Database(_) => AppError::DbUnavailable(e.into()),
            ProviderError::Rejected { .. } | ProviderError::NotFound => {
                AppError::ProviderRefused(e.into())
            }
            other => AppError::Provider(other.into()),
        }
    }
}

/// The error of an HTML page's handler: the same error and status, answered as the
/// small HTML error page whoever asked (a page's errors are pages; `web::error_pages`
/// renders it, with the shop's name, from the JSON body this leaves marked).
#[derive(Debug)]
pub struct PageError(pub AppError);

/// On a response: an error a page handler answered (see `PageError`).
#[derive(Debug, Clone, Copy)]
pub struct PageErrorMark;

impl std::fmt::Display for PageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl ResponseError for PageError {
    fn status_code(&self) -> StatusCode {
        self.0.status_code()
    }

    fn error_response(&self) -> HttpResponse {
        let mut res = self.0.error_response();
        res.extensions_mut().insert(PageErrorMark);
        res
    }
}

/// `?` in a page handler takes whatever `?` takes in an API handler.
macro_rules! page_error_from {
    ($($ty:ty),+) => {$(
        impl From<$ty> for PageError {
            fn from(e: $ty) -> Self {
                PageError(AppError::from(e))
            }
        }
    )+};
}

page_error_from!(
    AppError,
    DieselError,
    anyhow::Error,
    crate::db::PoolError,
    crate::db::pool::ReadError
);

impl AppError {
    /// The full cause chain, for logs only.
    pub fn chain(&self) -> String {
        let mut out = self.to_string();
        let mut source = std::error::Error::source(self);
        while let Some(s) = source {
            out.push_str(": ");
            out.push_str(&s.to_string());
            source = s.source();
        }
        out
    }
}

impl From<DieselError> for AppError {
    fn from(err: DieselError) -> Self {
        // Whatever the request, a connection found dead puts its pool-mates under suspicion.
        crate::db::pool::note_if_lost(&err);
        if is_unavailable(&err) {
            AppError::DbUnavailable(err.into())
        } else {
            AppError::Internal(err.into())
        }
    }
}

impl From<crate::db::PoolError> for AppError {
    fn from(err: crate::db::PoolError) -> Self {
        AppError::DbUnavailable(anyhow::anyhow!("database pool: {err}"))
    }
}

impl From<crate::db::pool::ReadError> for AppError {
    fn from(err: crate::db::pool::ReadError) -> Self {
        match err {
            crate::db::pool::ReadError::Pool(e) => e.into(),
            crate::db::pool::ReadError::Query(e) => e.into(),
        }
    }
}

/// Connection-level failures: the database is away, not the query wrong.
pub fn is_unavailable(err: &DieselError) -> bool {
    match err {
        // What diesel reports once the connection died inside a transaction and the
        // rollback could not be sent: the database went away, the request was fine.
        // (A webhook retried after this is safe either way: the event id dedups.)
        DieselError::BrokenTransactionManager => true,
        // The commit failed and so did the rollback: the commit error says why.
        DieselError::RollbackErrorOnCommit { commit_error, .. } => is_unavailable(commit_error),
        DieselError::DatabaseError(
            DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand,
            _,
        ) => true,
        DieselError::DatabaseError(DatabaseErrorKind::Unknown, info) => {
            let m = info.message();
            m.contains("connection closed")
                || m.contains("terminating connection")
                || m.contains("error connecting")
                || m.contains("statement timeout")
                || m.contains("canceling statement")
                || m.contains("the database system is")
        }
        _ => false,
    }
}

/// Turns actix's own extractor errors (bad JSON, oversize body, bad form) into our body.
pub fn json_error_handler(
    err: actix_web::error::JsonPayloadError,
    _req: &HttpRequest,
) -> actix_web::Error {
    use actix_web::error::JsonPayloadError as E;
    let app = match &err {
        E::OverflowKnownLength { .. } | E::Overflow { .. } => AppError::Client {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            code: "payload_too_large",
            message: "request body is too large".into(),
        },
        E::ContentType => AppError::Client {
            status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
            code: "unsupported_media_type",
            message: "expected Content-Type: application/json".into(),
        },
        E::Deserialize(e) if e.is_data() => {
            AppError::unprocessable("invalid_body", format!("invalid request body: {e}"))
        }
        E::Deserialize(e) => AppError::bad_request(
            "malformed_json",
            format!("request body is not valid JSON: {e}"),
        ),
        other => AppError::bad_request(
            "invalid_body",
            format!("could not read the request body: {other}"),
        ),
    };
    actix_web::error::InternalError::from_response(err, app.error_response()).into()
}

pub fn form_error_handler(
    err: actix_web::error::UrlencodedError,
    _req: &HttpRequest,
) -> actix_web::Error {
    let app = AppError::bad_request("invalid_form", format!("could not read the form: {err}"));
    actix_web::error::InternalError::from_response(err, app.error_response()).into()
}

pub fn query_error_handler(
    err: actix_web::error::QueryPayloadError,
    _req: &HttpRequest,
) -> actix_web::Error {
    let app = AppError::bad_request("invalid_query", format!("invalid query string: {err}"));
    actix_web::error::InternalError::from_response(err, app.error_response()).into()
}

pub fn path_error_handler(
    err: actix_web::error::PathError,
    _req: &HttpRequest,
) -> actix_web::Error {
    let app = AppError::NotFound("resource");
    actix_web::error::InternalError::from_response(err, app.error_response()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_lost_inside_a_transaction_is_unavailable_not_internal() {
        assert!(is_unavailable(&DieselError::BrokenTransactionManager));
        let closed = || {
            DieselError::DatabaseError(
                DatabaseErrorKind::ClosedConnection,
                Box::new("connection closed".to_owned()),
            )
        };
        assert!(is_unavailable(&DieselError::RollbackErrorOnCommit {
            rollback_error: Box::new(closed()),
            commit_error: Box::new(closed()),
        }));
        // A commit refused for a reason of its own stays an internal error.
        assert!(!is_unavailable(&DieselError::RollbackErrorOnCommit {
            rollback_error: Box::new(closed()),
            commit_error: Box::new(DieselError::DatabaseError(
                DatabaseErrorKind::SerializationFailure,
                Box::new("could not serialize access".to_owned()),
            )),
        }));
        assert!(!is_unavailable(&DieselError::NotFound));
        assert!(matches!(
            AppError::from(DieselError::BrokenTransactionManager),
            AppError::DbUnavailable(_)
        ));
    }
}
