//! The HTTP API: the state every handler shares, errors as
//! `{"detail": "..."}` with the reference's status codes, and the session
//! and service endpoints. Lab endpoints are in [`crate::lab_api`], the
//! remote bed's in [`crate::remote`].

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde_json::json;

use crate::config::Config;
use crate::db::{Db, SessionView};

/// What every handler shares.
pub struct App {
    /// The configuration.
    pub cfg: Config,
    /// The state.
    pub db: Db,
    /// Wakes housekeeping (a session was created or ended).
    pub wake: tokio::sync::Notify,
    /// The store's files with their SHA-256 (computed at start).
    pub store_hashes: Vec<serde_json::Value>,
}

/// The store's entries: name, SHA-256 and size of each file that exists.
/// An entry whose file cannot be read is left out, with a warning that
/// names it (topologies that use it are refused until it is there).
pub fn hash_store(cfg: &Config) -> Vec<serde_json::Value> {
    cfg.store
        .iter()
        .filter_map(|(name, path)| {
            let hashed = std::fs::metadata(path).and_then(|m| {
                alpy::bed::warm::file_hash(path)
                    .map(|sha256| (m.len(), sha256))
                    .map_err(|e| std::io::Error::other(e.to_string()))
            });
            match hashed {
                Ok((size, sha256)) => Some(json!({ "name": name, "sha256": sha256, "size": size })),
                Err(e) => {
                    tracing::warn!(
                        store = %name,
                        path = %path.display(),
                        "store entry left out: {e}; fix [store] in the configuration and restart"
                    );
                    None
                }
            }
        })
        .collect()
}

/// Shared app state.
pub type Shared = Arc<App>;

/// An error answer: a status and a reason.
#[derive(Debug)]
pub struct ApiError(pub StatusCode, pub String);

impl ApiError {
    /// 400 with a reason.
    pub fn bad(msg: impl Into<String>) -> Self {
        ApiError(StatusCode::BAD_REQUEST, msg.into())
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

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "detail": self.1 }))).into_response()
    }
}

/// A handler's result.
pub type ApiResult<T> = Result<T, ApiError>;

/// The token's name, or 401.
pub fn bearer(app: &App, headers: &HeaderMap) -> ApiResult<String> {
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| {
            ApiError(
                StatusCode::UNAUTHORIZED,
                "send Authorization: Bearer <token> (alpy-lab token create NAME makes one)".into(),
            )
        })?;
    app.cfg
        .token_name(token.trim())
        .map(str::to_string)
        .ok_or_else(|| ApiError(StatusCode::UNAUTHORIZED, "unknown API token".into()))
}

/// The `X-Session-ID` header, or 400.
pub fn session_header(headers: &HeaderMap) -> ApiResult<String> {
    headers
        .get("x-session-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .ok_or_else(|| ApiError::bad("send the session's id in X-Session-ID"))
}

/// The session in `X-Session-ID`, which must exist (404) and be active (423).
pub fn active_session(app: &App, headers: &HeaderMap) -> ApiResult<SessionView> {
    let id = session_header(headers)?;
    let s = app
        .db
        .session(&id)?
        .ok_or_else(|| ApiError::not_found(format!("no session {id}")))?;
    if s.status != "active" {
        return Err(ApiError(
            StatusCode::LOCKED,
            format!(
                "session {id} is {} (position {}): /lab calls need the active session",
                s.status, s.position
            ),
        ));
    }
    Ok(s)
}

/// All routes.
pub fn router(app: Shared) -> Router {
    let limit = app.cfg.limits.max_body_bytes;
    Router::new()
        .route("/session", post(create_session))
        .route("/session/heartbeat", post(heartbeat))
        .route("/session/{id}", get(get_session).delete(delete_session))
        .route("/active-session", get(get_active_session))
        .route("/queue", get(queue))
        .route("/store", get(store))
        .route("/healthz", get(|| async { StatusCode::NO_CONTENT }))
        .route("/metrics", get(metrics))
        .route(
            "/openapi.json",
            get(|| async { Json(crate::openapi::document()) }),
        )
        .merge(crate::lab_api::routes())
        .merge(crate::remote::routes())
        .route("/labs/{id}", delete(crate::lab_api::destroy_any))
        // The extractors' own limit covers bodies of unknown length; the
        // layer refuses a declared Content-Length over the limit before
        // reading any of it, so the client gets its 413 instead of a reset.
        .layer(axum::extract::DefaultBodyLimit::max(limit))
        .layer(tower_http::limit::RequestBodyLimitLayer::new(limit))
        .with_state(app)
}

/// 256 random bits, hex.
pub fn new_id() -> ApiResult<String> {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).map_err(|e| ApiError::internal(format!("no randomness: {e}")))?;
    Ok(hex::encode(b))
}

async fn create_session(State(app): State<Shared>, headers: HeaderMap) -> ApiResult<Response> {
    let owner = bearer(&app, &headers)?;
    let id = new_id()?;
    let s = app
        .db
        .create_session(&id, &owner, app.cfg.limits.max_labs)?;
    tracing::info!(session = %id, owner = %owner, status = %s.status, position = s.position, "session created");
    app.wake.notify_one();
    Ok((StatusCode::CREATED, Json(s)).into_response())
}

async fn get_session(
    State(app): State<Shared>,
    Path(id): Path<String>,
) -> ApiResult<Json<SessionView>> {
    app.db
        .session(&id)?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("no session {id}")))
}

async fn get_active_session(State(app): State<Shared>) -> ApiResult<Json<SessionView>> {
    app.db
        .queue()?
        .into_iter()
        .find(|s| s.status == "active")
        .map(Json)
        .ok_or_else(|| ApiError::not_found("no session is active"))
}

async fn delete_session(
    State(app): State<Shared>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let s = app
        .db
        .session(&id)?
        .ok_or_else(|| ApiError::not_found(format!("no session {id}")))?;
    if s.status != "active" && s.status != "waiting" {
        return Err(ApiError::conflict(format!(
            "session {id} is {} already",
            s.status
        )));
    }
    let released = app
        .db
        .end_session(&id, "ended", None, app.cfg.limits.max_labs)?;
    tracing::info!(session = %id, lab = ?released, "session ended by its client");
    app.wake.notify_one();
    Ok(StatusCode::NO_CONTENT)
}

async fn heartbeat(State(app): State<Shared>, headers: HeaderMap) -> ApiResult<StatusCode> {
    let id = session_header(&headers)?;
    if app.db.heartbeat(&id)? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        let why = match app.db.session(&id)? {
            Some(s) => format!("session {id} is {}", s.status),
            None => format!("no session {id}"),
        };
        Err(ApiError::not_found(why))
    }
}

async fn queue(
    State(app): State<Shared>,
    headers: HeaderMap,
) -> ApiResult<Json<serde_json::Value>> {
    bearer(&app, &headers)?;
    let sessions = app.db.queue()?;
    let labs = app.db.labs()?;
    Ok(Json(json!({ "sessions": sessions, "labs": labs })))
}

async fn store(
    State(app): State<Shared>,
    headers: HeaderMap,
) -> ApiResult<Json<serde_json::Value>> {
    bearer(&app, &headers)?;
    Ok(Json(json!({ "files": app.store_hashes })))
}

async fn metrics(State(app): State<Shared>) -> ApiResult<Response> {
    let sessions = app.db.queue()?;
    let labs = app.db.labs()?;
    let now = crate::db::now();
    let waiting = sessions.iter().filter(|s| s.status == "waiting").count();
    let active = sessions.iter().filter(|s| s.status == "active").count();
    let mut out = String::new();
    let mut metric = |name: &str, help: &str, kind: &str, lines: Vec<String>| {
        out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
        for l in lines {
            out.push_str(&format!("{name}{l}\n"));
        }
    };
    metric(
        "alpy_lab_queue_length",
        "Sessions waiting for a lab.",
        "gauge",
        vec![format!(" {waiting}")],
    );
    metric(
        "alpy_lab_active_sessions",
        "Sessions holding the lab host.",
        "gauge",
        vec![format!(" {active}")],
    );
    let up = labs
        .iter()
        .filter(|l| l.status == "up" || l.status == "idle")
        .count();
    metric(
        "alpy_lab_active_labs",
        "Labs standing (up or idle).",
        "gauge",
        vec![format!(" {up}")],
    );
    metric(
        "alpy_lab_session_age_seconds",
        "Age of each waiting or active session.",
        "gauge",
        sessions
            .iter()
            .map(|s| {
                format!(
                    "{{status=\"{}\",position=\"{}\"}} {:.1}",
                    s.status,
                    s.position,
                    now - s.created
                )
            })
            .collect(),
    );
    metric(
        "alpy_lab_heartbeat_expiries_total",
        "Sessions ended because their heartbeats stopped.",
        "counter",
        vec![format!(" {}", app.db.counter("heartbeat_expiries")?)],
    );
    Ok(([("content-type", "text/plain; version=0.0.4")], out).into_response())
}
