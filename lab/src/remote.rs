//! The remote bed, for the active session that holds a lab: its serial
//! console over a WebSocket (both ways), a command in a node (output
//! streamed as JSON lines, then the exit code), a link's capture (live
//! while the bed runs), QMP, and power; the console, QMP and power of any
//! machine of the bed (`?machine=NAME`, or `"machine"` in a QMP body).

use crate::openapi::SessionHeader;
use alpy::internal::supervisor::protocol::{PowerAction, Request};
use alpy::lab::wire::ErrorBody;
use alpy::lab::wire::SessionStatus;
use std::time::Duration;
use utoipa_axum::{router::OpenApiRouter, routes};

use axum::body::Body;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::api::{ApiError, ApiResult, Shared};
use crate::auth::ActiveSession;

/// How long a stream waits for a client that stopped reading.
const SEND_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a close frame may take to send.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// The QMP commands a session may send through the lab: what tests need
/// (status, run control, power, link state), nothing that reads or writes
/// host files or runs host commands (`migrate`, `human-monitor-command`,
/// `blockdev-*`, `dump-guest-memory`, ... are never on it).
pub const QMP_ALLOWED: &[&str] = &[
    "query-status",
    "query-name",
    "query-uuid",
    "query-version",
    "query-kvm",
    "query-cpus-fast",
    "query-rx-filter",
    "stop",
    "cont",
    "system_reset",
    "system_powerdown",
    "set_link",
];

/// The remote bed's routes.
pub fn routes() -> OpenApiRouter<Shared> {
    OpenApiRouter::new()
        .routes(routes!(console))
        .routes(routes!(exec))
        .routes(routes!(pcap))
        .routes(routes!(qmp))
        .routes(routes!(power))
        .merge(crate::remote_apps::routes())
        .merge(crate::lab_logs::routes())
}

/// The bed of the lab the caller's active session holds: (the session's
/// handle, the bed).
pub(crate) async fn held_bed(
    app: &Shared,
    s: &ActiveSession,
) -> ApiResult<(String, alpy::internal::supervisor::registry::BedInfo)> {
    held_lab_bed(app, s).await.map(|(sid, info, _)| (sid, info))
}

/// [`held_bed`], with the lab's id.
async fn held_lab_bed(
    app: &Shared,
    s: &ActiveSession,
) -> ApiResult<(
    String,
    alpy::internal::supervisor::registry::BedInfo,
    String,
)> {
    let key = s.session.key.clone();
    let lab = app
        .db(move |db| db.held_lab(&key))
        .await?
        .ok_or_else(|| ApiError::not_found("this session holds no lab: POST /lab first"))?;
    let bed = lab
        .bed_id
        .ok_or_else(|| ApiError::conflict(format!("lab {} is {}", lab.lab_id, lab.status)))?;
    let info = alpy::internal::supervisor::registry::find(&bed).map_err(|e| {
        tracing::warn!(lab = %lab.lab_id, "its bed is gone: {e}");
        ApiError::conflict(format!("lab {}'s bed is gone", lab.lab_id))
    })?;
    Ok((s.handle().to_string(), info, lab.lab_id))
}

/// Resolves once session `key` no longer holds lab `lab` as the active
/// session (ended, expired, released, destroyed, moved): a console or a
/// followed capture then ends, within half a second.
async fn hold_ends(app: Shared, key: String, lab: String) {
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        if !still_holds(&app, &key, &lab).await {
            return;
        }
    }
}

/// Whether session `key` is active and holds lab `lab` (a busy database
/// says nothing of it: yes).
async fn still_holds(app: &Shared, key: &str, lab: &str) -> bool {
    let k = key.to_string();
    let now = app
        .db(move |db| Ok((db.session(&k)?, db.held_lab(&k)?)))
        .await;
    match now {
        Ok((Some(s), Some(l))) => s.status == SessionStatus::Active && l.lab_id == lab,
        Err(e) => e.0 == axum::http::StatusCode::SERVICE_UNAVAILABLE,
        _ => false,
    }
}

/// Which machine of the held lab a call is for (`?machine=r2`; none: the
/// first, the DUT).
#[derive(Deserialize, Default, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct OnMachine {
    /// The machine's name (none: the first, the DUT); a 404 names them.
    #[serde(default)]
    machine: Option<String>,
}

/// The index of `machine` in the held lab's bed, or 404 naming its
/// machines.
fn machine_of(
    info: &alpy::internal::supervisor::registry::BedInfo,
    machine: Option<&str>,
) -> ApiResult<usize> {
    info.machine_index(machine)
        .map_err(|e| ApiError::not_found(e.to_string()))
}

#[utoipa::path(get, path = "/lab/console", tag = "lab", params(SessionHeader, OnMachine), responses((status = 101, description = "switching protocols: the serial console, both ways"), (status = 400, description = "bad input", body = ErrorBody), (status = 404, description = "no such session, or it holds no lab", body = ErrorBody), (status = 423, description = "the session is not the active one", body = ErrorBody)))]
async fn console(
    State(app): State<Shared>,
    s: ActiveSession,
    axum::extract::Query(on): axum::extract::Query<OnMachine>,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> ApiResult<Response> {
    // The session first: a waiting session gets its 423 whatever it sent.
    let (sid, info, lab) = held_lab_bed(&app, &s).await?;
    let index = machine_of(&info, on.machine.as_deref())?;
    let ws = ws.map_err(|e| ApiError::bad(format!("connect with a WebSocket: {e}")))?;
    let shared = match info.machines.get(index) {
        Some(m) => m.console.clone(),
        None => info.console.clone(),
    };
    let path = shared.ok_or_else(|| ApiError::conflict("the bed does not share its console"))?;
    let (sock, first) = attach_console(path, &info.id).await?;
    tracing::info!(session = %sid, bed = %info.id, topology = ?info.name, machine = ?on.machine, "console attached");
    let ends = hold_ends(app.clone(), s.session.key.clone(), lab);
    Ok(ws.on_upgrade(move |socket| async move {
        let cut = "the session no longer holds this lab";
        if bridge(socket, sock, first, (ends, cut), Typing::Allowed).await {
            tracing::info!(session = %sid, "console cut: the session no longer holds the lab");
        }
    }))
}

/// Attaches to the console share at `path` (of bed `bed_id`): the socket
/// and the console output read with the attach line. Attached (the share
/// taps the console before it says so) before the client is upgraded:
/// what the client provokes afterwards reaches it.
pub(crate) async fn attach_console(
    path: std::path::PathBuf,
    bed_id: &str,
) -> ApiResult<(tokio::net::UnixStream, Vec<u8>)> {
    let bed_id = bed_id.to_string();
    tokio::task::spawn_blocking(move || {
        let mut sock = std::os::unix::net::UnixStream::connect(&path)
            .map_err(|e| alpy::Error::io(format!("connect to {}", path.display()), e))?;
        let first =
            alpy::internal::console_share::await_attached(&mut sock, Duration::from_secs(10))?;
        sock.set_nonblocking(true)
            .map_err(|e| alpy::Error::io("configure the console socket", e))?;
        Ok::<_, alpy::Error>((sock, first))
    })
    .await
    .map_err(|e| ApiError::internal(format!("the console's attach task failed: {e}")))?
    .and_then(|(s, first)| {
        tokio::net::UnixStream::from_std(s)
            .map(|s| (s, first))
            .map_err(|e| alpy::Error::io("register the console socket", e))
    })
    .map_err(|e| {
        tracing::error!(bed = %bed_id, "attach to the console: {e}");
        ApiError::internal("the lab's console does not answer")
    })
}

/// Whether a console's client may type into it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Typing {
    /// Its input reaches the console.
    Allowed,
    /// Its input is dropped; it is told why (a text message).
    Refused(String),
}

/// Copies between the WebSocket and the console socket (`first`: output
/// already read from it) until either side ends or `ends` does (then the
/// client gets a close frame with its reason); true if `ends` did.
/// Console output goes as binary messages; what the server says to the
/// client (a refusal) as text.
pub(crate) async fn bridge(
    ws: WebSocket,
    sock: impl tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + 'static,
    first: Vec<u8>,
    (ends, cut_reason): (impl std::future::Future<Output = ()>, &str),
    typing: Typing,
) -> bool {
    let (ws_tx, mut ws_rx) = ws.split();
    let ws_tx = tokio::sync::Mutex::new(ws_tx);
    // Console output read with the share's first line (an older share).
    if !first.is_empty()
        && ws_tx
            .lock()
            .await
            .send(Message::Binary(first.into()))
            .await
            .is_err()
    {
        return false;
    }
    let (mut rd, mut wr) = tokio::io::split(sock);
    let to_client = async {
        let mut buf = vec![0u8; 8192];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let out = Message::Binary(buf[..n].to_vec().into());
                    if ws_tx.lock().await.send(out).await.is_err() {
                        break;
                    }
                }
            }
        }
    };
    let to_bed = async {
        while let Some(Ok(m)) = ws_rx.next().await {
            let data = match m {
                Message::Binary(b) => b.to_vec(),
                Message::Text(t) => t.as_bytes().to_vec(),
                Message::Close(_) => break,
                _ => continue,
            };
            if let Typing::Refused(why) = &typing {
                let said = Message::Text(why.clone().into());
                if ws_tx.lock().await.send(said).await.is_err() {
                    break;
                }
                continue;
            }
            if wr.write_all(&data).await.is_err() {
                break;
            }
        }
    };
    let cut = tokio::select! {
        _ = to_client => false,
        _ = to_bed => false,
        _ = ends => true,
    };
    let reason = if cut { cut_reason } else { "the stream ended" };
    // A client that stopped reading does not hold the console (or the
    // board's port) past this.
    let close = async {
        ws_tx
            .lock()
            .await
            .send(Message::Close(Some(axum::extract::ws::CloseFrame {
                code: if cut { 1008 } else { 1000 },
                reason: reason.into(),
            })))
            .await
    };
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, close).await;
    cut
}

#[derive(Deserialize, utoipa::ToSchema)]
struct ExecBody {
    /// The command and its arguments.
    cmd: Vec<String>,
    /// How long to wait for it (default 120 s, at most an hour); past it
    /// the stream ends with `{"timed_out": true}`.
    #[serde(default)]
    timeout_s: Option<f64>,
}

#[utoipa::path(post, path = "/lab/nodes/{name}/exec", tag = "lab", params(SessionHeader, ("name" = String, Path, description = "the node")), request_body = ExecBody, responses((status = 200, description = "JSON lines of {stdout} and {stderr}, then {exit_code} or {timed_out}", content_type = "application/x-ndjson", body = String), (status = 400, description = "bad input", body = ErrorBody), (status = 404, description = "no such session, or it holds no lab", body = ErrorBody), (status = 423, description = "the session is not the active one", body = ErrorBody)))]
async fn exec(
    State(app): State<Shared>,
    s: ActiveSession,
    Path(name): Path<String>,
    Json(body): Json<ExecBody>,
) -> ApiResult<Response> {
    let (sid, info) = held_bed(&app, &s).await?;
    info.index_of(&name, "node", false)
        .map_err(|e| ApiError::not_found(e.to_string()))?;
    if body.cmd.is_empty() {
        return Err(ApiError::bad("cmd is empty"));
    }
    tracing::info!(session = %sid, bed = %info.id, topology = ?info.name, node = ?name, cmd = ?body.cmd, "exec");
    let wait = Duration::from_secs_f64(body.timeout_s.unwrap_or(120.0).clamp(0.0, 3600.0));
    let mut child = tokio::process::Command::new(app.cfg.alpy_command())
        .arg("exec")
        .arg(&info.id)
        .arg(&name)
        .arg("--")
        .args(&body.cmd)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| ApiError::internal(format!("run alpy exec: {e}")))?;
    let (tx, rx) = tokio::sync::mpsc::channel::<String>(64);
    let mut out = child.stdout.take();
    let mut err = child.stderr.take();
    tokio::spawn(async move {
        let pump = |stream: &'static str,
                    tx: tokio::sync::mpsc::Sender<String>,
                    mut r: Box<dyn tokio::io::AsyncRead + Send + Unpin>| async move {
            let mut buf = vec![0u8; 8192];
            loop {
                match r.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        let line = json!({ stream: String::from_utf8_lossy(&buf[..n]) })
                            .to_string()
                            + "\n";
                        // A client that stops reading is let go of.
                        let sent = tokio::time::timeout(SEND_TIMEOUT, tx.send(line)).await;
                        if !matches!(sent, Ok(Ok(()))) {
                            break;
                        }
                    }
                }
            }
        };
        let a = out
            .take()
            .map(|o| tokio::spawn(pump("stdout", tx.clone(), Box::new(o))));
        let b = err
            .take()
            .map(|e| tokio::spawn(pump("stderr", tx.clone(), Box::new(e))));
        let pumps: Vec<_> = [a, b].into_iter().flatten().collect();
        let aborts: Vec<_> = pumps.iter().map(|p| p.abort_handle()).collect();
        let finished = async {
            for h in pumps {
                let _ = h.await;
            }
            child.wait().await
        };
        let end = match tokio::time::timeout(wait, finished).await {
            Ok(Ok(s)) => json!({ "exit_code": s.code().unwrap_or(-1) }),
            Ok(Err(_)) => json!({ "exit_code": -1 }),
            Err(_) => json!({ "timed_out": true }),
        };
        // Past its time (or done): nothing of it keeps running here.
        let _ = child.start_kill();
        for a in aborts {
            a.abort();
        }
        let _ = tokio::time::timeout(SEND_TIMEOUT, tx.send(end.to_string() + "\n")).await;
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|l| (Ok::<_, std::io::Error>(l), rx))
    });
    Ok((
        [("content-type", "application/x-ndjson")],
        Body::from_stream(stream),
    )
        .into_response())
}

/// `?follow=false`: the capture as it is now, not followed.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct Follow {
    /// Keep sending as the capture grows (default), or send it as it is
    /// now and end.
    #[serde(default = "yes")]
    follow: bool,
}

fn yes() -> bool {
    true
}

#[utoipa::path(get, path = "/lab/links/{name}/pcap", tag = "lab", params(SessionHeader, ("name" = String, Path, description = "the link (its node's name)"), Follow), responses((status = 200, description = "the link's capture, live while the bed runs", content_type = "application/vnd.tcpdump.pcap", body = Vec<u8>), (status = 400, description = "bad input", body = ErrorBody), (status = 404, description = "no such session, or it holds no lab", body = ErrorBody), (status = 423, description = "the session is not the active one", body = ErrorBody)))]
async fn pcap(
    State(app): State<Shared>,
    s: ActiveSession,
    Path(name): Path<String>,
    axum::extract::Query(q): axum::extract::Query<Follow>,
) -> ApiResult<Response> {
    let (sid, info, lab) = held_lab_bed(&app, &s).await?;
    let index = info
        .index_of(&name, "link", true)
        .map_err(|e| ApiError::not_found(e.to_string()))?;
    let path = info
        .capture_path(index)
        .map_err(|e| ApiError::not_found(e.to_string()))?;
    let file = tokio::fs::File::open(&path).await.map_err(|e| {
        tracing::error!(bed = %info.id, "open {}: {e}", path.display());
        ApiError::internal(format!("link {name:?} has no capture to read"))
    })?;
    tracing::info!(session = %sid, bed = %info.id, topology = ?info.name, link = ?name, "pcap followed");
    let bed = info.id.clone();
    let follow = q.follow;
    let key = s.session.key.clone();
    // Follows the file while the bed runs (unless asked not to) and the
    // session holds the lab; after, it ends at its end.
    let state = (file, bed, std::time::Instant::now());
    let stream = futures_util::stream::unfold(state, move |(mut f, bed, mut checked)| {
        let (app, key, lab) = (app.clone(), key.clone(), lab.clone());
        async move {
            let mut buf = vec![0u8; 65536];
            loop {
                if checked.elapsed() >= Duration::from_millis(500) {
                    if !still_holds(&app, &key, &lab).await {
                        return None;
                    }
                    checked = std::time::Instant::now();
                }
                match f.read(&mut buf).await {
                    Ok(0) => {
                        if !follow || !crate::labs::alive(&bed) {
                            return None;
                        }
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    Ok(n) => {
                        buf.truncate(n);
                        return Some((Ok::<_, std::io::Error>(buf), (f, bed, checked)));
                    }
                    Err(e) => return Some((Err(e), (f, bed, checked))),
                }
            }
        }
    });
    Ok((
        [("content-type", "application/vnd.tcpdump.pcap")],
        Body::from_stream(stream),
    )
        .into_response())
}

#[derive(Deserialize, utoipa::ToSchema)]
struct QmpBody {
    /// The QMP command (one of the allow-list).
    execute: String,
    /// Its arguments.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    arguments: Option<serde_json::Value>,
    /// The machine (none: the first, the DUT).
    #[serde(default)]
    machine: Option<String>,
}

async fn qmp_call(
    info: &alpy::internal::supervisor::registry::BedInfo,
    machine: Option<&str>,
    cmd: &str,
    args: Option<&serde_json::Value>,
) -> ApiResult<serde_json::Value> {
    machine_of(info, machine)?;
    let request = Request::Qmp {
        machine: machine.map(str::to_string),
        command: cmd.to_string(),
        arguments: args.cloned(),
    };
    supervisor_call(info, request).await
}

/// `request` to the bed's supervisor (off the async workers): its reply's
/// value, or its error as a 400.
async fn supervisor_call(
    info: &alpy::internal::supervisor::registry::BedInfo,
    request: Request,
) -> ApiResult<serde_json::Value> {
    let info = info.clone();
    tokio::task::spawn_blocking(move || {
        alpy::internal::supervisor::registry::request(&info, &request)
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))?
    .map_err(|e| ApiError::bad(e.to_string()))
}

#[utoipa::path(post, path = "/lab/qmp", tag = "lab", params(SessionHeader), request_body = QmpBody, responses((status = 200, description = "QMP's return, as {\"return\": ..}", body = Object), (status = 400, description = "bad input", body = ErrorBody), (status = 404, description = "no such session, or it holds no lab", body = ErrorBody), (status = 423, description = "the session is not the active one", body = ErrorBody), (status = 403, description = "the command is not on the allow-list (the answer names it)", body = ErrorBody)))]
async fn qmp(
    State(app): State<Shared>,
    s: ActiveSession,
    Json(body): Json<QmpBody>,
) -> ApiResult<Json<serde_json::Value>> {
    let (sid, info) = held_bed(&app, &s).await?;
    let args = body.arguments.as_ref().map(|a| a.to_string());
    let allowed = QMP_ALLOWED.contains(&body.execute.as_str());
    // The audit log: every call, with its arguments, allowed or not.
    tracing::info!(session = %sid, bed = %info.id, topology = ?info.name, machine = ?body.machine, cmd = ?body.execute, args = ?args, allowed, "qmp");
    if !allowed {
        return Err(ApiError::forbidden(format!(
            "QMP command {:?} is not allowed through the lab; allowed: {}",
            body.execute,
            QMP_ALLOWED.join(", ")
        )));
    }
    Ok(Json(
        json!({ "return": qmp_call(&info, body.machine.as_deref(), &body.execute, body.arguments.as_ref()).await? }),
    ))
}

#[utoipa::path(post, path = "/lab/power/{action}", tag = "lab", params(SessionHeader, ("action" = String, Path, description = "off, on or cycle"), OnMachine), responses((status = 200, description = "{\"action\", \"return\"}", body = Object), (status = 400, description = "bad input", body = ErrorBody), (status = 404, description = "no such session, or it holds no lab", body = ErrorBody), (status = 423, description = "the session is not the active one", body = ErrorBody)))]
async fn power(
    State(app): State<Shared>,
    s: ActiveSession,
    Path(action): Path<String>,
    axum::extract::Query(on): axum::extract::Query<OnMachine>,
) -> ApiResult<Json<serde_json::Value>> {
    let (sid, info) = held_bed(&app, &s).await?;
    let action: PowerAction = action
        .parse()
        .map_err(|e: alpy::Error| ApiError::bad(e.to_string()))?;
    machine_of(&info, on.machine.as_deref())?;
    tracing::info!(session = %sid, bed = %info.id, topology = ?info.name, machine = ?on.machine, action = %action, "power");
    // A VM's ACPI button, cont or reset; a board's power switch.
    let request = Request::Power {
        machine: on.machine.clone(),
        action,
    };
    let r = supervisor_call(&info, request).await?;
    Ok(Json(json!({ "action": action, "return": r })))
}
