//! The HTTP API: the state every handler shares, the route table, and the
//! session and service endpoints. Who may call what is in
//! [`crate::auth`]; lab endpoints are in [`crate::lab_api`], the remote
//! bed's in [`crate::remote`], the operator's in [`crate::operator`].
//! Status codes follow the lab API alpy's remote client was written
//! against: 201 for a new session, 423 for a call that needs the active
//! session, 409 for a conflict, 413 for a body over the limit.

use crate::openapi::{ApiDoc, SessionHeader};
use alpy::lab::wire::ErrorBody;
use alpy::lab::wire::SessionStatus;
use std::sync::Arc;
use utoipa::OpenApi;
use utoipa_axum::{router::OpenApiRouter, routes};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};

use crate::auth::{own_session, Caller, OwnSession};
use crate::config::{Config, Role};
use crate::db::{handle, session_key, Db, DbError};
pub use crate::error::{ApiError, ApiResult};
use alpy::lab::wire::{FileEntry, Files, NewSession, Queue, Session};

/// What every handler shares.
pub struct App {
    /// The configuration.
    pub cfg: Config,
    /// The state (call it through [`App::db`]).
    pub db: Arc<Db>,
    /// Wakes housekeeping (a session was created or ended).
    pub wake: tokio::sync::Notify,
    /// The OpenAPI document (set when the router is built).
    pub openapi: std::sync::OnceLock<serde_json::Value>,
    /// The store's files with their SHA-256 (computed at start).
    pub store_hashes: Vec<FileEntry>,
    /// Turns true when the server stops: long streams (`/events`) end.
    pub closing: tokio::sync::watch::Sender<bool>,
    /// Long-lived streams open per token.
    pub streams: Arc<crate::events::Streams>,
    /// Boards' open console and SSH streams, by board.
    pub board_streams: std::sync::Mutex<std::collections::HashMap<String, usize>>,
    /// Boards one of whose scripts runs now.
    pub board_scripts: std::sync::Mutex<std::collections::BTreeSet<String>>,
}

impl App {
    /// A place for one more long-lived stream of `caller`'s token, or 429
    /// naming the limit.
    pub fn stream_slot(
        &self,
        caller: &crate::auth::Caller,
    ) -> ApiResult<crate::events::StreamSlot> {
        let l = &self.cfg.limits;
        let (max, total) = (l.max_streams_per_token, l.streams());
        self.streams.open(&caller.name, max, total).map_err(|full| {
            let why = match full {
                crate::events::Full::Token => format!(
                    "token {:?} has {max} streams open (/events, consoles), the most \
                         limits.max_streams_per_token allows: close one first",
                    caller.name
                ),
                crate::events::Full::Server => format!(
                    "the server has {total} streams open (/events, consoles), the most \
                         limits.max_streams allows: try again later"
                ),
            };
            ApiError(StatusCode::TOO_MANY_REQUESTS, why)
        })
    }
}

/// The store's entries: name, SHA-256 and size of each file that exists.
/// An entry whose file cannot be read is left out, with a warning that
/// names it (topologies that use it are refused until it is there).
pub fn hash_store(cfg: &Config) -> Vec<FileEntry> {
    cfg.store
        .iter()
        .filter_map(|(name, path)| {
            let hashed = std::fs::metadata(path).and_then(|m| {
                alpy::internal::warm::file_hash(path)
                    .map(|sha256| (m.len(), sha256))
                    .map_err(|e| std::io::Error::other(e.to_string()))
            });
            match hashed {
                Ok((size, sha256)) => Some(FileEntry {
                    name: name.clone(),
                    size,
                    sha256: Some(sha256),
                }),
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

impl App {
    /// `msg` without host paths: store files by their store name, the
    /// state directory as `<state>` (for answers to clients).
    pub fn redact(&self, msg: &str) -> String {
        let mut m = msg.to_string();
        for (name, path) in &self.cfg.store {
            m = m.replace(&*path.to_string_lossy(), &format!("store:{name}"));
        }
        m.replace(&*self.cfg.state_dir.to_string_lossy(), "<state>")
    }

    /// Runs `f` on the database off the async workers (a lock held by
    /// another process must not stall the server): a lock held past the
    /// busy timeout is 503 with Retry-After.
    pub async fn db<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Db) -> Result<T, DbError> + Send + 'static,
    ) -> ApiResult<T> {
        let db = Arc::clone(&self.db);
        tokio::task::spawn_blocking(move || f(&db))
            .await
            .map_err(|e| ApiError::internal(format!("a database call failed: {e}")))?
            .map_err(ApiError::from)
    }
}

/// Every route with its OpenAPI description, and the document they make.
pub fn routes() -> (Router<Shared>, utoipa::openapi::OpenApi) {
    let (routes, mut doc) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(create_session))
        .routes(routes!(heartbeat))
        .routes(routes!(get_session, delete_session))
        .routes(routes!(get_active_session))
        .routes(routes!(queue))
        .routes(routes!(store))
        .routes(routes!(healthz))
        .routes(routes!(metrics))
        .routes(routes!(openapi_json))
        .merge(crate::lab_api::routes())
        .merge(crate::remote::routes())
        .merge(crate::operator::routes())
        .merge(crate::boards_api::routes())
        .merge(crate::board_remote::routes())
        .merge(crate::events_api::routes())
        .merge(crate::watch::routes())
        .merge(crate::dashboard::routes())
        .split_for_parts();
    crate::openapi::add_auth_answers(&mut doc);
    (routes, doc)
}

/// All routes, with the limits and the JSON errors.
pub fn router(app: Shared) -> Router {
    let limit = app.cfg.limits.max_body_bytes;
    let body_timeout = std::time::Duration::from_secs_f64(app.cfg.timeouts.body_s);
    let (routes, doc) = routes();
    // Set once, here; a second router over the same state keeps the first.
    let _ = app
        .openapi
        .set(serde_json::to_value(&doc).unwrap_or_default());
    routes
        // The extractors' own limit covers bodies of unknown length; the
        // layer refuses a declared Content-Length over the limit before
        // reading any of it, so the client gets its 413 instead of a reset.
        .layer(axum::extract::DefaultBodyLimit::max(limit))
        .layer(tower_http::limit::RequestBodyLimitLayer::new(limit))
        .layer(tower_http::timeout::RequestBodyTimeoutLayer::new(
            body_timeout,
        ))
        .layer(axum::middleware::map_response(crate::error::json_errors))
        .with_state(app)
}

/// 256 random bits, hex.
pub fn new_id() -> ApiResult<String> {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).map_err(|e| ApiError::internal(format!("no randomness: {e}")))?;
    Ok(hex::encode(b))
}

/// `POST /session`, with no body (a session for labs) or
/// `{"board": {"class": .., "tags": [..]}}` (a session that reserves a
/// board: it waits until one that fits is free and online).
#[utoipa::path(post, path = "/session", tag = "sessions", request_body(content = Option<NewSession>, description = "what to reserve: nothing (labs) or a board"), responses((status = 201, description = "the new session, with its id", body = Session), (status = 403, description = "a viewer token", body = ErrorBody), (status = 422, description = "a board request no board of the lab fits", body = ErrorBody), (status = 429, description = "the token has limits.max_sessions_per_token live sessions", body = ErrorBody)))]
async fn create_session(
    State(app): State<Shared>,
    caller: Caller,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    caller.at_least(Role::User)?;
    let want = board_request(&app, &body)?;
    let id = new_id()?;
    let key = session_key(&id);
    let (owner, capacity, per_token) = (
        caller.name.clone(),
        app.cfg.limits.max_labs,
        app.cfg.limits.max_sessions_per_token,
    );
    let s = app
        .db(move |db| db.create_session(&key, &owner, want.as_deref(), capacity, per_token))
        .await?;
    tracing::info!(session = %handle(&s.key), owner = %caller.name, status = %s.status, position = s.position, "session created");
    app.wake.notify_one();
    Ok((
        StatusCode::CREATED,
        Json(crate::wire::session(&s, Some(&id))),
    )
        .into_response())
}

/// The board a new session's `body` asks for, as stored (JSON); 422 if
/// the body is not a [`NewSession`] or no board of the lab fits it.
fn board_request(app: &Shared, body: &[u8]) -> ApiResult<Option<String>> {
    let unprocessable = |m: String| ApiError(StatusCode::UNPROCESSABLE_ENTITY, m);
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let new: Option<NewSession> = serde_json::from_slice(body).map_err(|e| {
        unprocessable(format!(
            "the body of POST /session is {{\"board\": {{\"class\": \"..\", \"tags\": [..]}}}} or nothing: {e}"
        ))
    })?;
    let Some(want) = new.and_then(|n| n.board) else {
        return Ok(None);
    };
    if !app.cfg.boards.iter().any(|b| want.fits(&b.class, &b.tags)) {
        return Err(unprocessable(format!(
            "no board of this lab fits {want} (GET /boards lists them)"
        )));
    }
    serde_json::to_string(&want)
        .map(Some)
        .map_err(|e| ApiError::internal(e.to_string()))
}

#[utoipa::path(get, path = "/session/{id}", tag = "sessions", params(("id" = String, Path, description = "the session's id")), responses((status = 200, description = "the session", body = Session), (status = 404, description = "no such session for this token", body = ErrorBody)))]
async fn get_session(
    State(app): State<Shared>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Session>> {
    let s = own_session(&app, &caller, &id).await?;
    Ok(Json(crate::wire::session(&s, Some(&id))))
}

/// The active session, by its handle (an id is a credential: its owner
/// has it already).
#[utoipa::path(get, path = "/active-session", tag = "sessions", responses((status = 200, description = "the active session, by handle (no id)", body = Session), (status = 404, description = "none is active", body = ErrorBody)))]
async fn get_active_session(State(app): State<Shared>, _: Caller) -> ApiResult<Json<Session>> {
    let q = app.db(|db| db.queue()).await?;
    let s = q
        .into_iter()
        .find(|s| s.status == SessionStatus::Active)
        .ok_or_else(|| ApiError::not_found("no session is active"))?;
    Ok(Json(crate::wire::session(&s, None)))
}

#[utoipa::path(delete, path = "/session/{id}", tag = "sessions", params(("id" = String, Path, description = "the session's id")), responses((status = 204, description = "ended"), (status = 404, description = "no such session for this token", body = ErrorBody), (status = 409, description = "ended already", body = ErrorBody)))]
async fn delete_session(
    State(app): State<Shared>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let s = own_session(&app, &caller, &id).await?;
    end_session(&app, &s.key, &format!("its client ({})", caller.name)).await
}

/// Ends live session `key` (409 if it has ended already); `by` says who.
pub async fn end_session(app: &Shared, key: &str, by: &str) -> ApiResult<StatusCode> {
    let k = key.to_string();
    let s = app
        .db(move |db| db.session(&k))
        .await?
        .ok_or_else(|| ApiError::not_found("no such session"))?;
    if !s.status.is_live() {
        return Err(ApiError::conflict(format!(
            "session {} is {} already",
            handle(key),
            s.status
        )));
    }
    let capacity = app.cfg.limits.max_labs;
    let (k, note, actor) = (key.to_string(), format!("ended by {by}"), by.to_string());
    let released = app
        .db(move |db| db.end_session(&k, SessionStatus::Ended, Some(&note), capacity, &actor))
        .await?;
    tracing::info!(session = %handle(key), lab = ?released, by = %by, "session ended");
    app.wake.notify_one();
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/session/heartbeat", tag = "sessions", params(SessionHeader), responses((status = 204, description = "noted"), (status = 404, description = "no such live session for this token", body = ErrorBody)))]
async fn heartbeat(State(app): State<Shared>, own: OwnSession) -> ApiResult<StatusCode> {
    let key = own.session.key.clone();
    if app.db(move |db| db.heartbeat(&key)).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!(
            "session {} is {}",
            own.handle(),
            own.session.status
        )))
    }
}

/// Sessions (handles, no ids) and labs, as the caller may see them.
#[utoipa::path(get, path = "/queue", tag = "service", responses((status = 200, description = "live sessions (handles, no ids) and labs (host paths for operators only)", body = Queue)))]
async fn queue(State(app): State<Shared>, caller: Caller) -> ApiResult<Json<Queue>> {
    let (sessions, labs) = app.db(|db| Ok((db.queue()?, db.labs()?))).await?;
    Ok(Json(Queue {
        sessions: sessions
            .iter()
            .map(|s| crate::wire::session(s, None))
            .collect(),
        labs: labs.iter().map(|l| crate::wire::lab(l, &caller)).collect(),
    }))
}

#[utoipa::path(get, path = "/store", tag = "service", responses((status = 200, description = "the image store's files", body = Files)))]
async fn store(State(app): State<Shared>, _: Caller) -> ApiResult<Json<Files>> {
    Ok(Json(Files {
        files: app.store_hashes.clone(),
    }))
}

/// Liveness: no token needed.
#[utoipa::path(get, path = "/healthz", tag = "service", security(()), responses((status = 204, description = "alive")))]
async fn healthz() -> StatusCode {
    StatusCode::NO_CONTENT
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "service", responses((status = 200, description = "the OpenAPI document", body = Object)))]
async fn openapi_json(State(app): State<Shared>, _: Caller) -> Json<serde_json::Value> {
    Json(app.openapi.get().cloned().unwrap_or_default())
}

#[utoipa::path(get, path = "/metrics", tag = "service", responses((status = 200, description = "Prometheus metrics", content_type = "text/plain", body = String)))]
async fn metrics(State(app): State<Shared>, _: Caller) -> ApiResult<Response> {
    let (sessions, labs, expiries) = app
        .db(|db| Ok((db.queue()?, db.labs()?, db.counter("heartbeat_expiries")?)))
        .await?;
    let now = crate::db::now();
    let waiting = sessions
        .iter()
        .filter(|s| s.status == SessionStatus::Waiting)
        .count();
    let active = sessions
        .iter()
        .filter(|s| s.status == SessionStatus::Active)
        .count();
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
    let up = labs.iter().filter(|l| l.status.is_standing()).count();
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
        vec![format!(" {expiries}")],
    );
    Ok(([("content-type", "text/plain; version=0.0.4")], out).into_response())
}
