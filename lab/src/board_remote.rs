//! A reserved board, for the active session that holds it: its serial
//! console over a WebSocket (both ways, through the console server) and
//! a tunnel to its SSH port (what `alpy lab ssh-proxy BOARD` speaks), so
//! that the lab's one HTTP endpoint is all a client reaches. Both are cut
//! within a second of the lease ending or moving, with a close frame
//! that says so.

use std::time::Duration;

use alpy::board::console::ConsoleLink;
use alpy::lab::wire::{ErrorBody, SessionStatus};
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{Path, State};
use axum::response::Response;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::api::{ApiError, ApiResult, Shared};
use crate::auth::ActiveSession;
use crate::openapi::SessionHeader;
use crate::remote::{bridge, Typing};

/// How often a stream checks that its session still holds the board.
const HOLD_CHECK: Duration = Duration::from_millis(250);

/// How long the console server and the SSH port have to answer.
const CONNECT: Duration = Duration::from_secs(10);

/// The routes.
pub fn routes() -> OpenApiRouter<Shared> {
    OpenApiRouter::new()
        .routes(routes!(console))
        .routes(routes!(ssh))
}

type Upgrade = Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>;

/// Board `name`'s settings, if the caller's active session holds it: 404
/// for no such board, 403 for a board the session does not hold.
fn held(app: &Shared, s: &ActiveSession, name: &str) -> ApiResult<alpy::board::BoardSpec> {
    let spec = app
        .cfg
        .boards
        .iter()
        .find(|b| b.name == name)
        .cloned()
        .ok_or_else(|| {
            ApiError::not_found(format!("no board {name:?} (GET /boards lists them)"))
        })?;
    if s.session.board.as_deref() != Some(name) {
        return Err(ApiError::forbidden(format!(
            "session {} does not hold board {name}: reserve it first (POST /session with \
             {{\"board\": {{\"class\": \"{}\"}}}})",
            s.handle(),
            spec.class
        )));
    }
    Ok(spec)
}

/// What both streams check first, in this order: the session holds
/// board `name`, the request is a WebSocket, the caller has a stream slot.
fn opening(
    app: &Shared,
    s: &ActiveSession,
    name: &str,
    ws: Upgrade,
) -> ApiResult<(
    alpy::board::BoardSpec,
    WebSocketUpgrade,
    crate::events::StreamSlot,
)> {
    let spec = held(app, s, name)?;
    let ws = ws.map_err(|e| ApiError::bad(format!("connect with a WebSocket: {e}")))?;
    let slot = app.stream_slot(&s.caller)?;
    Ok((spec, ws, slot))
}

/// Resolves once session `key` no longer holds board `board` as an active
/// session (ended, expired, moved, the board taken back).
async fn hold_ends(app: Shared, key: String, board: String) {
    // Checked at once too: connecting may have taken seconds.
    loop {
        let k = key.clone();
        match app.db(move |db| db.session(&k)).await {
            Ok(Some(s))
                if s.status == SessionStatus::Active && s.board.as_ref() == Some(&board) => {}
            // A busy database says nothing of it.
            Err(e) if e.0 == axum::http::StatusCode::SERVICE_UNAVAILABLE => {}
            _ => return,
        }
        tokio::time::sleep(HOLD_CHECK).await;
    }
}

#[utoipa::path(get, path = "/boards/{name}/console", tag = "boards", params(SessionHeader, ("name" = String, Path, description = "the board")), responses((status = 101, description = "switching protocols: the board's serial console, both ways"), (status = 400, description = "bad input", body = ErrorBody), (status = 403, description = "the session does not hold this board", body = ErrorBody), (status = 404, description = "no such session or board", body = ErrorBody), (status = 423, description = "the session is not active", body = ErrorBody), (status = 502, description = "the console server did not serve the port", body = ErrorBody)))]
async fn console(
    State(app): State<Shared>,
    s: ActiveSession,
    Path(name): Path<String>,
    ws: Upgrade,
) -> ApiResult<Response> {
    let (spec, ws, slot) = opening(&app, &s, &name, ws)?;
    let port = spec.console.port();
    let board = spec.name.clone();
    let opened = tokio::task::spawn_blocking(move || ConsoleLink::open(&board, &port, CONNECT))
        .await
        .map_err(|e| ApiError::internal(format!("the console's task failed: {e}")))?;
    let (link, sock) = opened.map_err(|e| {
        tracing::warn!(board = %name, "its console: {e}");
        ApiError::bad_gateway(e.to_string())
    })?;
    let sock = sock
        .set_nonblocking(true)
        .and_then(|()| tokio::net::UnixStream::from_std(sock))
        .map_err(|e| ApiError::internal(format!("register the console socket: {e}")))?;
    stream(app, s, name, ws, slot, sock, "console", move || {
        link.close()
    })
}

#[utoipa::path(get, path = "/boards/{name}/ssh", tag = "boards", params(SessionHeader, ("name" = String, Path, description = "the board")), responses((status = 101, description = "switching protocols: a TCP stream to the board's SSH port, both ways"), (status = 400, description = "bad input", body = ErrorBody), (status = 403, description = "the session does not hold this board", body = ErrorBody), (status = 404, description = "no such session or board", body = ErrorBody), (status = 409, description = "the board has no ssh address", body = ErrorBody), (status = 423, description = "the session is not active", body = ErrorBody), (status = 502, description = "the board's SSH port did not answer", body = ErrorBody)))]
async fn ssh(
    State(app): State<Shared>,
    s: ActiveSession,
    Path(name): Path<String>,
    ws: Upgrade,
) -> ApiResult<Response> {
    let (spec, ws, slot) = opening(&app, &s, &name, ws)?;
    let addr = spec.ssh.clone().ok_or_else(|| {
        ApiError::conflict(format!(
            "board {name} has no ssh address: add ssh = \"HOST:PORT\" to its [[board]] entry"
        ))
    })?;
    let tcp = tokio::time::timeout(CONNECT, tokio::net::TcpStream::connect(&addr))
        .await
        .map_err(|_| format!("no answer within {} s", CONNECT.as_secs()))
        .and_then(|r| r.map_err(|e| e.to_string()))
        .map_err(|e| {
            tracing::warn!(board = %name, "its SSH port {addr}: {e}");
            ApiError::bad_gateway(format!("board {name}'s SSH port {addr}: {e}"))
        })?;
    let _ = tcp.set_nodelay(true);
    stream(app, s, name, ws, slot, tcp, "ssh", || {})
}

/// Upgrades to a WebSocket that carries `sock` both ways until either
/// ends or the session stops holding the board (`slot`, the caller's
/// stream slot, held meanwhile); `done` runs after.
#[allow(clippy::too_many_arguments)]
fn stream(
    app: Shared,
    s: ActiveSession,
    board: String,
    ws: WebSocketUpgrade,
    slot: crate::events::StreamSlot,
    sock: impl tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + 'static,
    what: &'static str,
    done: impl FnOnce() + Send + 'static,
) -> ApiResult<Response> {
    let sid = s.handle().to_string();
    tracing::info!(session = %sid, board = %board, "{what} attached");
    // Counted until it is closed: the board's scripts wait for it.
    let open = OpenStream::new(&app, &board);
    let ends = hold_ends(app, s.session.key.clone(), board.clone());
    Ok(ws.on_upgrade(move |socket| async move {
        let cut = "the session no longer holds this board";
        if bridge(socket, sock, Vec::new(), (ends, cut), Typing::Allowed).await {
            tracing::info!(session = %sid, board = %board, "{what} cut: the session no longer holds the board");
        }
        // Joining the console's pumps blocks.
        let _ = tokio::task::spawn_blocking(done).await;
        drop((slot, open));
    }))
}

/// A board's stream, counted in [`crate::api::App::board_streams`] while
/// it is open: a script that would use the board (its teardown after a
/// lease ends) waits until the old holder's streams are closed.
struct OpenStream {
    app: Shared,
    board: String,
}

impl OpenStream {
    fn new(app: &Shared, board: &str) -> OpenStream {
        *app.board_streams
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(board.to_string())
            .or_default() += 1;
        OpenStream {
            app: app.clone(),
            board: board.to_string(),
        }
    }
}

impl Drop for OpenStream {
    fn drop(&mut self) {
        let mut open = self
            .app
            .board_streams
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(n) = open.get_mut(&self.board) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.board);
            }
        }
    }
}

/// Whether board `name` has a stream open.
pub fn has_open_streams(app: &Shared, name: &str) -> bool {
    app.board_streams
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .contains_key(name)
}
