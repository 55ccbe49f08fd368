//! The server's errors: [`Error`] for what fails outside a request (its
//! configuration, its start, a lab's bed), and [`ApiError`], how the API
//! answers: one JSON shape, `{"detail": "..."}`, for every error, the
//! handlers' own and axum's (a bad JSON body, an unknown route, a body
//! over the limit), and every 5xx logged with its cause.

use axum::body::Body;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::db::DbError;

/// What goes wrong outside a request.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration file is wrong (`at` is `:line:column` when
    /// known), or a change asked of it is.
    #[error("{}{at}: {detail}", path.display())]
    Config {
        /// The file.
        path: std::path::PathBuf,
        /// Where in it, if known.
        at: String,
        /// What is wrong, and what to do.
        detail: String,
    },
    /// A file or directory could not be used.
    #[error("cannot {what}: {source}")]
    Io {
        /// What was being done, naming the path.
        what: String,
        /// The system's reason.
        #[source]
        source: std::io::Error,
    },
    /// The TLS certificate or key.
    #[error("tls: {0}")]
    Tls(String),
    /// A check at start refused to serve (plain HTTP off loopback, the
    /// database not in WAL mode, no randomness).
    #[error("{0}")]
    Refused(String),
    /// A lab's bed: `alpy up` or `alpy down` failed (the text says how).
    #[error("{0}")]
    Bed(String),
    /// The database.
    #[error("{0}")]
    Db(#[from] DbError),
}

impl Error {
    /// An I/O error while doing `what`.
    pub fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
        let what = what.into();
        move |source| Error::Io { what, source }
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        match e {
            Error::Db(d) => d.into(),
            other => ApiError::internal(other.to_string()),
        }
    }
}

/// An error answer: a status and a reason.
#[derive(Debug)]
pub struct ApiError(pub StatusCode, pub String);

impl ApiError {
    /// 400 with a reason.
    pub fn bad(msg: impl Into<String>) -> Self {
        ApiError(StatusCode::BAD_REQUEST, msg.into())
    }
    /// 403 with a reason.
    pub fn forbidden(msg: impl Into<String>) -> Self {
        ApiError(StatusCode::FORBIDDEN, msg.into())
    }
    /// 404 with a reason.
    pub fn not_found(msg: impl Into<String>) -> Self {
        ApiError(StatusCode::NOT_FOUND, msg.into())
    }
    /// 409 with a reason.
    pub fn conflict(msg: impl Into<String>) -> Self {
        ApiError(StatusCode::CONFLICT, msg.into())
    }
    /// 502 with a reason: what the lab reaches for the caller (a console
    /// server, a board's port) did not answer.
    pub fn bad_gateway(msg: impl Into<String>) -> Self {
        ApiError(StatusCode::BAD_GATEWAY, msg.into())
    }
    /// 500 with a reason.
    pub fn internal(msg: impl Into<String>) -> Self {
        ApiError(StatusCode::INTERNAL_SERVER_ERROR, msg.into())
    }
}

impl From<DbError> for ApiError {
    fn from(e: DbError) -> Self {
        match e {
            DbError::Busy => ApiError(
                StatusCode::SERVICE_UNAVAILABLE,
                "the lab's database is busy: try again shortly".into(),
            ),
            DbError::Limit(m) => ApiError(StatusCode::TOO_MANY_REQUESTS, m),
            DbError::Other(m) => ApiError::internal(m),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (self.0, Json(json!({ "detail": self.1 }))).into_response();
        if self.0 == StatusCode::SERVICE_UNAVAILABLE {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        r
    }
}

/// A handler's result.
pub type ApiResult<T> = Result<T, ApiError>;

/// Middleware: an error answer that is not JSON (axum's extractors, the
/// router's 404 and 405, the body limit's 413) becomes `{"detail"}` with
/// the same status; every 5xx is logged with its detail.
pub async fn json_errors(r: Response) -> Response {
    let status = r.status();
    if !status.is_client_error() && !status.is_server_error() {
        return r;
    }
    let is_json = r
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if is_json && !status.is_server_error() {
        return r;
    }
    let (mut parts, body) = r.into_parts();
    let bytes = axum::body::to_bytes(body, 64 << 10)
        .await
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&bytes).trim().to_string();
    let detail = if is_json {
        serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v["detail"].as_str().map(str::to_string))
            .unwrap_or(text)
    } else if text.is_empty() {
        status.canonical_reason().unwrap_or("error").to_string()
    } else {
        text
    };
    if status.is_server_error() {
        tracing::error!(
            status = status.as_u16(),
            "answered {status}: {}",
            detail.escape_debug()
        );
    }
    let body = json!({ "detail": detail }).to_string();
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_errors_answer_with_their_status() {
        let busy: ApiError = Error::Db(DbError::Busy).into();
        assert_eq!(busy.0, StatusCode::SERVICE_UNAVAILABLE);
        let limit: ApiError = Error::Db(DbError::Limit("3 sessions".into())).into();
        assert_eq!(
            (limit.0, limit.1.as_str()),
            (StatusCode::TOO_MANY_REQUESTS, "3 sessions")
        );
        let bed: ApiError = Error::Bed("the lab did not come up".into()).into();
        assert_eq!(bed.0, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(bed.1, "the lab did not come up");
    }
}
