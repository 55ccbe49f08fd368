//! Errors as the API answers them: one JSON shape, `{"detail": "..."}`,
//! for every error, the handlers' own and axum's (a bad JSON body, an
//! unknown route, a body over the limit), and every 5xx logged with its
//! cause.

use axum::body::Body;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::db::DbError;

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
    /// 500 with a reason.
    pub fn internal(msg: impl Into<String>) -> Self {
        ApiError(StatusCode::INTERNAL_SERVER_ERROR, msg.into())
    }
}

impl From<String> for ApiError {
    fn from(s: String) -> Self {
        ApiError::internal(s)
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
