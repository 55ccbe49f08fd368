//! A lab seen from the dashboard, by its id rather than through a
//! session: its console (live, over a WebSocket), its topology drawing,
//! its logs and its captures. Who may do what:
//! - every token may watch the console and see the drawing;
//! - only the *holder* (a token whose active session holds the lab) may
//!   type into the console; anyone else's input is refused, and told so;
//! - logs and captures (host paths, traffic) go to the holder and to
//!   operators only.
//!
//! The server checks each of these; the page only follows them.

use alpy::internal::supervisor::registry::BedInfo;
use alpy::lab::wire::{ErrorBody, Whoami};
use axum::body::Body;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use std::time::Duration;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::api::{ApiError, ApiResult, Shared};
use crate::auth::{Caller, WS_PROTOCOL};
use crate::config::Role;
use crate::db::LabRow;
use crate::remote::{attach_console, bridge, Typing};

/// The routes.
pub fn routes() -> OpenApiRouter<Shared> {
    OpenApiRouter::new()
        .routes(routes!(whoami))
        .routes(routes!(console))
        .routes(routes!(drawing))
        .routes(routes!(log))
        .routes(routes!(pcap))
}

/// The token's name and role: what the dashboard shows and offers.
#[utoipa::path(get, path = "/whoami", tag = "service", responses((status = 200, description = "the caller's token", body = Whoami)))]
async fn whoami(caller: Caller) -> Json<Whoami> {
    Json(Whoami {
        name: caller.name,
        role: caller.role.to_string(),
    })
}

/// A lab the caller looks at, with its bed, and whether the caller holds
/// it.
struct Watched {
    lab: LabRow,
    info: BedInfo,
    holder: bool,
}

async fn watched(app: &Shared, caller: &Caller, id: &str) -> ApiResult<Watched> {
    let lab = {
        let id = id.to_string();
        app.db(move |db| db.lab(&id)).await?
    }
    .ok_or_else(|| ApiError::not_found(format!("no lab {id:?} (GET /queue lists them)")))?;
    let bed = lab
        .bed_id
        .clone()
        .ok_or_else(|| ApiError::conflict(format!("lab {} is {}", lab.lab_id, lab.status)))?;
    let info = alpy::internal::supervisor::registry::find(&bed).map_err(|e| {
        tracing::warn!(lab = %lab.lab_id, "its bed is gone: {e}");
        ApiError::conflict(format!("lab {}'s bed is gone", lab.lab_id))
    })?;
    let holder = {
        let (owner, id) = (caller.name.clone(), lab.lab_id.clone());
        caller.role >= Role::User && app.db(move |db| db.holds(&owner, &id)).await?
    };
    Ok(Watched { lab, info, holder })
}

/// 403 unless the caller holds the lab or is an operator.
fn holder_or_operator(w: &Watched, caller: &Caller, what: &str) -> ApiResult<()> {
    if w.holder || caller.is_operator() {
        return Ok(());
    }
    Err(ApiError::forbidden(format!(
        "{what} of lab {} go to its holder and to operators; token {:?} is neither",
        w.lab.lab_id, caller.name
    )))
}

/// `?machine=r2` (none: the first, the DUT).
#[derive(Deserialize, Default, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct OnMachine {
    /// The machine's name; a 404 names them.
    #[serde(default)]
    machine: Option<String>,
}

/// The console, live: read-only unless the caller holds the lab. A
/// browser offers the subprotocols `alpy-lab` and `bearer.<token>`.
#[utoipa::path(get, path = "/labs/{id}/console", tag = "watch", params(("id" = String, Path, description = "the lab"), OnMachine), responses((status = 101, description = "switching protocols: console output as binary messages; typing only for the holder (others get a text message saying why)"), (status = 400, description = "not a WebSocket", body = ErrorBody), (status = 404, description = "no such lab or machine", body = ErrorBody), (status = 409, description = "the lab is not up", body = ErrorBody)))]
async fn console(
    State(app): State<Shared>,
    caller: Caller,
    Path(id): Path<String>,
    Query(on): Query<OnMachine>,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> ApiResult<Response> {
    let w = watched(&app, &caller, &id).await?;
    let slot = app.stream_slot(&caller)?;
    let index = w
        .info
        .machine_index(on.machine.as_deref())
        .map_err(|e| ApiError::not_found(e.to_string()))?;
    let ws = ws.map_err(|e| ApiError::bad(format!("connect with a WebSocket: {e}")))?;
    let shared = match w.info.machines.get(index) {
        Some(m) => m.console.clone(),
        None => w.info.console.clone(),
    };
    let path = shared.ok_or_else(|| ApiError::conflict("the bed does not share its console"))?;
    let (sock, first) = attach_console(path, &w.info.id).await?;
    let typing = if w.holder {
        Typing::Allowed
    } else {
        Typing::Refused(format!(
            "read-only: token {:?} does not hold lab {}; only its holder types into its console",
            caller.name, w.lab.lab_id
        ))
    };
    tracing::info!(lab = %w.lab.lab_id, token = %caller.name, may_type = w.holder, "console watched");
    let (app2, lab_id) = (app.clone(), w.lab.lab_id.clone());
    let (owner, holder) = (caller.name.clone(), w.holder);
    // Ends when the lab goes (or, for the holder, when it no longer holds it).
    let ends = async move {
        let mut failed = 0;
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let (o, l) = (owner.clone(), lab_id.clone());
            let now = app2
                .db(move |db| Ok((db.lab(&l)?.is_some(), db.holds(&o, &l)?)))
                .await;
            match now {
                Ok((false, _)) => return,
                Ok((true, still)) if holder && !still => return,
                Ok(_) => failed = 0,
                // A holder whose hold cannot be checked for 10 s (a
                // database busy past that) is cut; a watcher waits.
                Err(_) => {
                    failed += 1;
                    if holder && failed >= 20 {
                        return;
                    }
                }
            }
        }
    };
    let ws = ws.protocols([WS_PROTOCOL]);
    let cut = if holder {
        "this token no longer holds the lab, the lab is gone, or the hold could not be checked"
    } else {
        "the lab is gone"
    };
    Ok(ws.on_upgrade(move |socket| async move {
        bridge(socket, sock, first, (ends, cut), typing).await;
        drop(slot);
    }))
}

/// The lab's topology, drawn (`topology.svg` of its bed).
#[utoipa::path(get, path = "/labs/{id}/topology.svg", tag = "watch", params(("id" = String, Path, description = "the lab")), responses((status = 200, description = "the drawing", content_type = "image/svg+xml", body = String), (status = 404, description = "no such lab, or no drawing", body = ErrorBody), (status = 409, description = "the lab is not up", body = ErrorBody)))]
async fn drawing(
    State(app): State<Shared>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let w = watched(&app, &caller, &id).await?;
    let svg = tokio::fs::read(w.info.artifacts.join("topology.svg"))
        .await
        .map_err(|_| ApiError::not_found(format!("lab {id} has no topology drawing")))?;
    Ok((
        [
            ("content-type", "image/svg+xml"),
            // A drawing, never a document that runs scripts.
            (
                "content-security-policy",
                "default-src 'none'; style-src 'unsafe-inline'",
            ),
        ],
        svg,
    )
        .into_response())
}

/// One of the lab's `*.log` files (`debug.log`, `console.log`, ...).
#[utoipa::path(get, path = "/labs/{id}/logs/{name}", tag = "watch", params(("id" = String, Path, description = "the lab"), ("name" = String, Path, description = "the log, *.log")), responses((status = 200, description = "the log", content_type = "text/plain", body = String), (status = 403, description = "neither the holder nor an operator", body = ErrorBody), (status = 404, description = "no such lab or log", body = ErrorBody)))]
async fn log(
    State(app): State<Shared>,
    caller: Caller,
    Path((id, name)): Path<(String, String)>,
) -> ApiResult<Response> {
    let w = watched(&app, &caller, &id).await?;
    holder_or_operator(&w, &caller, "logs")?;
    crate::lab_logs::send(&w.info, &name).await
}

/// A link's capture as it is now (a pcap download).
#[utoipa::path(get, path = "/labs/{id}/links/{name}/pcap", tag = "watch", params(("id" = String, Path, description = "the lab"), ("name" = String, Path, description = "the link (its node's name)")), responses((status = 200, description = "the capture so far", content_type = "application/vnd.tcpdump.pcap", body = Vec<u8>), (status = 403, description = "neither the holder nor an operator", body = ErrorBody), (status = 404, description = "no such lab or link", body = ErrorBody)))]
async fn pcap(
    State(app): State<Shared>,
    caller: Caller,
    Path((id, name)): Path<(String, String)>,
) -> ApiResult<Response> {
    let w = watched(&app, &caller, &id).await?;
    holder_or_operator(&w, &caller, "captures")?;
    let index = w
        .info
        .index_of(&name, "link", true)
        .map_err(|e| ApiError::not_found(e.to_string()))?;
    let path = w
        .info
        .capture_path(index)
        .map_err(|e| ApiError::not_found(e.to_string()))?;
    let file = tokio::fs::File::open(&path).await.map_err(|e| {
        tracing::error!(bed = %w.info.id, "open {}: {e}", path.display());
        ApiError::not_found(format!("link {name:?} has no capture to read"))
    })?;
    // Streamed as it is now (a capture may be large, and grows while it
    // is read): its length at the start, no more.
    let len = file
        .metadata()
        .await
        .map_err(|e| ApiError::internal(format!("read link {name:?}'s capture: {e}")))?
        .len();
    use tokio::io::AsyncReadExt;
    let data = futures_util::stream::unfold(file.take(len), |mut f| async {
        let mut buf = vec![0u8; 65536];
        match f.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok::<_, std::io::Error>(buf), f))
            }
            Err(e) => Some((Err(e), f)),
        }
    });
    let file = format!("attachment; filename=\"{}-{}.pcap\"", w.lab.lab_id, name);
    Ok((
        [
            ("content-type", "application/vnd.tcpdump.pcap".to_string()),
            ("content-disposition", file),
            ("content-length", len.to_string()),
        ],
        Body::from_stream(data),
    )
        .into_response())
}
