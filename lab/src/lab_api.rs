//! The lab endpoints: acquire (upload a topology, or reuse a running lab
//! with the same checked topology), show, release (reference count down;
//! a lab nobody holds stays up, idle, for the next session that asks for
//! it), and destroy. Every one needs the caller's own active session.

use crate::openapi::SessionHeader;
use alpy::lab::wire::ErrorBody;
use alpy::lab::wire::{Acquired, Destroying, Devices, EventAction, Lab, LabStatus, Released};
use std::time::{Duration, Instant};
use utoipa_axum::{router::OpenApiRouter, routes};

use axum::extract::{Multipart, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::api::{new_id, ApiError, ApiResult, Shared};
use crate::auth::ActiveSession;
use crate::config::Reuse;
use crate::db::{LabRow, SERVER};
use crate::lab_destroy::destroy_now;
use crate::labs;
use crate::safety::{check_topology, extra_file_path};

/// The lab routes.
pub fn routes() -> OpenApiRouter<Shared> {
    OpenApiRouter::new()
        .routes(routes!(acquire, show, destroy))
        .routes(routes!(devices))
        .routes(routes!(release))
}

/// What a client uploaded.
struct Upload {
    topology: String,
    extra: Vec<(String, Vec<u8>)>,
    reuse: bool,
}

async fn read_upload(mut m: Multipart) -> ApiResult<Upload> {
    let bad = |e: axum::extract::multipart::MultipartError| {
        // A chunked body over the limit fails while it is read: that is a
        // 413 too, not the 500 of a failed read.
        let text = e.body_text();
        let mut cause: Option<&dyn std::error::Error> = Some(&e);
        let mut over = false;
        while let Some(c) = cause {
            over |= c.to_string().contains("length limit exceeded");
            cause = c.source();
        }
        let status = if over {
            StatusCode::PAYLOAD_TOO_LARGE
        } else {
            e.status()
        };
        let text = if over {
            "the body is over limits.max_body_bytes".to_string()
        } else {
            text
        };
        ApiError(status, format!("the upload: {text}"))
    };
    let mut up = Upload {
        topology: String::new(),
        extra: Vec::new(),
        reuse: true,
    };
    let mut seen_topology = false;
    while let Some(field) = m.next_field().await.map_err(bad)? {
        match field.name().unwrap_or_default() {
            "topology" => {
                up.topology = field.text().await.map_err(bad)?;
                seen_topology = true;
            }
            "extra_files" => {
                let name = field
                    .file_name()
                    .map(str::to_string)
                    .ok_or_else(|| ApiError::bad("an extra_files part needs a file name"))?;
                let data = field.bytes().await.map_err(bad)?;
                up.extra.push((name, data.to_vec()));
            }
            "reuse" => up.reuse = field.text().await.map_err(bad)?.trim() == "true",
            other => {
                return Err(ApiError::bad(format!(
                    "unknown form field {other:?}: expected topology, extra_files, reuse"
                )))
            }
        }
    }
    if !seen_topology {
        return Err(ApiError::bad("the form has no topology field"));
    }
    Ok(up)
}

/// SHA-256 of a checked topology and its extra files.
fn topology_hash(text: &str, extra: &[(String, Vec<u8>)]) -> String {
    let mut h = Sha256::new();
    h.update(text.as_bytes());
    let mut sorted: Vec<_> = extra.iter().collect();
    sorted.sort();
    for (n, data) in sorted {
        h.update([0]);
        h.update(n.as_bytes());
        h.update([0]);
        h.update(data);
    }
    hex::encode(h.finalize())
}

#[utoipa::path(post, path = "/lab", tag = "lab", params(SessionHeader), request_body(content_type = "multipart/form-data", description = "topology (TOML, files as store:NAME), extra_files, reuse=true|false"), responses((status = 200, description = "the lab (reused or stood up)", body = Acquired), (status = 400, description = "bad input", body = ErrorBody), (status = 404, description = "no such session, or it holds no lab", body = ErrorBody), (status = 423, description = "the session is not the active one", body = ErrorBody), (status = 409, description = "no room: every lab slot is held", body = ErrorBody), (status = 413, description = "the upload is over limits.max_body_bytes", body = ErrorBody), (status = 500, description = "the lab did not come up (the detail says why)", body = ErrorBody)))]
async fn acquire(
    State(app): State<Shared>,
    ActiveSession(own): ActiveSession,
    m: Multipart,
) -> ApiResult<Response> {
    let key = own.session.key.clone();
    let sid = own.handle().to_string();
    // A board session's lab is a bed on its board (never shared, and
    // not counted among the lab slots: it boots no VM).
    let board = match (&own.session.want, own.session.board.as_deref()) {
        (None, _) => None,
        (Some(_), Some(b)) => Some(b.to_string()),
        (Some(_), None) => {
            return Err(ApiError::conflict(format!(
                "session {sid} reserves a board but holds none now: wait until it is active"
            )))
        }
    };
    let lent = match &board {
        None => None,
        Some(b) => Some(crate::lab_board::lent(&app.cfg, b).ok_or_else(|| {
            ApiError::conflict(format!(
                "board {b} is no longer in this lab's configuration: end the session"
            ))
        })?),
    };
    let held = {
        let key = key.clone();
        app.db(move |db| db.held_lab(&key)).await?
    };
    if let Some(l) = held {
        return Err(ApiError::conflict(format!(
            "session {sid} holds lab {} already: POST /lab/release first",
            l.lab_id
        )));
    }
    let mut up = read_upload(m).await?;
    up.reuse &= board.is_none();
    let lab_id = new_id()?[..20].to_string();
    let dir = labs::lab_dir(&app.cfg, &lab_id);
    let (text, name) = check_topology(
        &up.topology,
        &app.cfg,
        &dir.join("topology.toml"),
        lent.as_ref(),
    )
    .map_err(|e| ApiError::bad(app.redact(&e)))?;
    let files_dir = dir.join("files");
    let mut extra = Vec::new();
    for (n, data) in &up.extra {
        extra.push((extra_file_path(&files_dir, n).map_err(ApiError::bad)?, data));
    }
    // A board lab's text holds the board's secrets: its hash (which
    // answers show) is of what the client sent, and it is never reused.
    let hash = match &board {
        None => topology_hash(&text, &up.extra),
        Some(b) => topology_hash(&format!("board {b}\n{}", up.topology), &up.extra),
    };
    let owner = own.caller.name.clone();
    tracing::info!(session = %sid, topology = ?name, hash = %&hash[..12], reuse = up.reuse, board = ?board, "lab asked for");
    if up.reuse {
        let among = (app.cfg.lab_reuse == Reuse::Owner).then(|| owner.clone());
        if let Some(lab) = wait_while_starting(&app, &hash, among).await? {
            let (k, id) = (key.clone(), lab.lab_id.clone());
            let lab = app
                .db(move |db| {
                    db.hold(&k, &id)?;
                    db.lab(&id)
                })
                .await?
                .unwrap_or(lab);
            tracing::info!(session = %sid, topology = ?name, lab = %lab.lab_id, "lab reused");
            return Ok(Json(Acquired {
                reused: true,
                lab: crate::wire::lab(&lab, &own.caller),
            })
            .into_response());
        }
    }
    match &board {
        None => make_room(&app, &sid, &name).await?,
        // A lab this session left on its board (released, then asked
        // again) goes first: two beds cannot drive one board.
        Some(b) => crate::lab_board::take_down_labs_on(&app, b)
            .await
            .map_err(ApiError::conflict)?,
    }
    let write = || -> std::io::Result<()> {
        std::fs::create_dir_all(&files_dir)?;
        // A board's table holds its secrets: for this user's eyes only.
        use std::os::unix::fs::OpenOptionsExt;
        std::io::Write::write_all(
            &mut std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(dir.join("topology.toml"))?,
            text.as_bytes(),
        )?;
        for (path, data) in &extra {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(path, data)?;
        }
        Ok(())
    };
    if let Err(e) = write() {
        let _ = std::fs::remove_dir_all(&dir);
        return Err(ApiError::internal(format!("write the lab's files: {e}")));
    }
    let row = LabRow {
        lab_id: lab_id.clone(),
        topology_hash: hash,
        name: name.clone(),
        owner,
        status: LabStatus::Starting,
        refcount: 1,
        bed_id: None,
        bed: None,
        dir: dir.to_string_lossy().into_owned(),
        board: board.clone(),
    };
    let recorded = {
        let (row, key) = (row.clone(), key.clone());
        app.db(move |db| db.new_lab(&row, &key)).await
    };
    match recorded {
        Ok(Ok(())) => {}
        Ok(Err(why)) => {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(ApiError::conflict(why));
        }
        Err(e) => {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(e);
        }
    }
    // In a task of its own: if the client goes away mid-way, the lab is
    // still recorded as up (or dropped), never left `starting`.
    let task = {
        let (app, lab_id, sid, name) = (app.clone(), lab_id.clone(), sid.clone(), name.clone());
        let row = row.clone();
        tokio::spawn(async move {
            let cfg = app.cfg.clone();
            let d = dir.clone();
            let id = lab_id.clone();
            let stood = tokio::task::spawn_blocking(move || {
                labs::stand_up(&cfg, &d, &d.join("topology.toml"), &id)
            })
            .await
            .map_err(|e| crate::error::Error::Bed(format!("the stand-up task failed: {e}")))
            .and_then(|r| r);
            match stood {
                Ok(st) => {
                    let id = lab_id.clone();
                    let bed_id = st.bed_id.clone();
                    let up = app
                        .db(move |db| db.lab_up(&id, &st.bed_id, &st.bed))
                        .await?;
                    if !up {
                        // Destroyed as it came up: its bed is this task's
                        // to take down (nobody else knows it).
                        crate::lab_destroy::came_up_destroyed(&app, &row, &bed_id).await;
                        return Err(ApiError::conflict(
                            "the lab was destroyed as it came up (its session ended, or an \
                             operator destroyed it): ask again",
                        ));
                    }
                    tracing::info!(session = %sid, topology = ?name, lab = %lab_id, bed = %bed_id, "lab up");
                    Ok(())
                }
                Err(why) => {
                    // Its uploads go with it; the reason stays in the log.
                    let why = why.to_string();
                    tracing::error!(session = %sid, topology = ?name, lab = %lab_id, "lab failed: {}", why.escape_debug());
                    let id = lab_id.clone();
                    let _ = app
                        .db(move |db| {
                            db.drop_lab(
                                &id,
                                Some("the lab failed to come up"),
                                EventAction::Failed,
                                SERVER,
                            )
                        })
                        .await;
                    let _ = std::fs::remove_dir_all(&dir);
                    Err(ApiError::internal(app.redact(&why)))
                }
            }
        })
    };
    match task.await.map_err(|e| ApiError::internal(e.to_string()))? {
        Ok(()) => {
            let lab = app.db(move |db| db.lab(&lab_id)).await?;
            let lab = lab.ok_or_else(|| {
                ApiError::conflict(
                    "the lab was destroyed (by an operator?) as it came up: ask again",
                )
            })?;
            Ok(Json(Acquired {
                reused: false,
                lab: crate::wire::lab(&lab, &own.caller),
            })
            .into_response())
        }
        Err(why) => Err(why),
    }
}

/// A running lab with this hash (of `owner`'s, unless `None`), once it is
/// past `starting`.
async fn wait_while_starting(
    app: &Shared,
    hash: &str,
    owner: Option<String>,
) -> ApiResult<Option<LabRow>> {
    let deadline = Instant::now() + Duration::from_secs(app.cfg.limits.lab_up_timeout_s);
    loop {
        let (h, o) = (hash.to_string(), owner.clone());
        match app.db(move |db| db.lab_by_hash(&h, o.as_deref())).await? {
            Some(l) if l.status == LabStatus::Starting && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            Some(l) if l.status.is_standing() => return Ok(Some(l)),
            _ => return Ok(None),
        }
    }
}

/// Destroys idle labs until one more fits; 409 if every slot is held.
/// A lab being destroyed frees its slot soon (a session that ends lets the
/// next one in while its lab still goes down): that is waited for.
async fn make_room(app: &Shared, sid: &str, name: &str) -> ApiResult<()> {
    let deadline = Instant::now() + Duration::from_secs(app.cfg.limits.lab_up_timeout_s);
    let max = app.cfg.limits.max_labs;
    // Labs on boards boot no VM: they take no slot.
    let vm_labs = |db: &crate::db::Db| {
        let mut labs = db.labs()?;
        labs.retain(|l| l.board.is_none());
        Ok(labs)
    };
    let mut labs = app.db(vm_labs).await?;
    while labs.len() >= max
        && labs.iter().any(|l| l.status == LabStatus::Destroying)
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(200)).await;
        labs = app.db(vm_labs).await?;
    }
    if labs.len() < max {
        return Ok(());
    }
    for l in labs.iter().filter(|l| l.status == LabStatus::Idle) {
        tracing::info!(session = %sid, topology = ?name, lab = %l.lab_id, "destroying idle lab to make room");
        if let Err(e) = destroy_now(app, l, None).await {
            tracing::error!(lab = %l.lab_id, "{e}");
        }
        if app.db(vm_labs).await?.len() < max {
            return Ok(());
        }
    }
    Err(ApiError::conflict(format!(
        "all {max} lab slots are held by other sessions"
    )))
}

/// The lab the session holds, or 404.
async fn held(app: &Shared, s: &ActiveSession) -> ApiResult<LabRow> {
    let key = s.session.key.clone();
    app.db(move |db| db.held_lab(&key))
        .await?
        .ok_or_else(|| ApiError::not_found("this session holds no lab: POST /lab first"))
}

#[utoipa::path(get, path = "/lab", tag = "lab", params(SessionHeader), responses((status = 200, description = "the session's lab", body = Lab), (status = 400, description = "bad input", body = ErrorBody), (status = 404, description = "no such session, or it holds no lab", body = ErrorBody), (status = 423, description = "the session is not the active one", body = ErrorBody)))]
async fn show(State(app): State<Shared>, s: ActiveSession) -> ApiResult<Json<Lab>> {
    Ok(Json(crate::wire::lab(&held(&app, &s).await?, &s.caller)))
}

#[utoipa::path(get, path = "/lab/devices", tag = "lab", params(SessionHeader), responses((status = 200, description = "nodes, links and the console", body = Devices), (status = 400, description = "bad input", body = ErrorBody), (status = 404, description = "no such session, or it holds no lab", body = ErrorBody), (status = 423, description = "the session is not the active one", body = ErrorBody)))]
async fn devices(State(app): State<Shared>, s: ActiveSession) -> ApiResult<Json<Devices>> {
    let lab = held(&app, &s).await?;
    let bed = lab.bed.unwrap_or_default();
    let nodes: Vec<String> = bed["nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|n| n[0].as_str().map(str::to_string))
        .collect();
    let dut_macs = bed["dut_macs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m.as_str().map(str::to_string))
        .collect();
    Ok(Json(Devices {
        name: lab.name,
        links: nodes.clone(),
        nodes,
        console: "/lab/console".into(),
        dut_macs,
        capture_offset: bed["capture_offset"].as_f64(),
        board: lab.board,
    }))
}

#[utoipa::path(post, path = "/lab/release", tag = "lab", params(SessionHeader), responses((status = 200, description = "the hold was given back", body = Released), (status = 400, description = "bad input", body = ErrorBody), (status = 404, description = "no such session, or it holds no lab", body = ErrorBody), (status = 423, description = "the session is not the active one", body = ErrorBody)))]
async fn release(State(app): State<Shared>, s: ActiveSession) -> ApiResult<Json<Released>> {
    let key = s.session.key.clone();
    let (lab, refcount) = app
        .db(move |db| db.release(&key))
        .await?
        .ok_or_else(|| ApiError::not_found("this session holds no lab"))?;
    tracing::info!(session = %s.handle(), lab = %lab, refcount, "lab released");
    Ok(Json(Released {
        lab_id: lab,
        refcount,
    }))
}

/// `?force=true`.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct Force {
    /// Even if other sessions hold it.
    #[serde(default)]
    pub(crate) force: bool,
}

#[utoipa::path(delete, path = "/lab", tag = "lab", params(SessionHeader, Force), responses((status = 202, description = "being destroyed", body = Destroying), (status = 400, description = "bad input", body = ErrorBody), (status = 404, description = "no such session, or it holds no lab", body = ErrorBody), (status = 423, description = "the session is not the active one", body = ErrorBody), (status = 409, description = "others hold it (?force=true), or it is being destroyed", body = ErrorBody)))]
async fn destroy(
    State(app): State<Shared>,
    s: ActiveSession,
    Query(f): Query<Force>,
) -> ApiResult<Response> {
    let lab = held(&app, &s).await?;
    start_destroy(app, lab, f.force, &format!("session {}", s.handle())).await
}

/// Destroys `lab` in the background (202); 409 if others hold it and not
/// `force`, or it is going already.
pub(crate) async fn start_destroy(
    app: Shared,
    lab: LabRow,
    force: bool,
    by: &str,
) -> ApiResult<Response> {
    if lab.refcount > 1 && !force {
        return Err(ApiError::conflict(format!(
            "lab {} is held by {} sessions: ?force=true destroys it for all",
            lab.lab_id, lab.refcount
        )));
    }
    let id = lab.lab_id.clone();
    let actor = by.to_string();
    let claimed = app
        .db(move |db| db.lab_status(&id, LabStatus::Destroying, &actor))
        .await?;
    if !claimed {
        return Err(ApiError::conflict(format!(
            "lab {} is being destroyed",
            lab.lab_id
        )));
    }
    tracing::info!(lab = %lab.lab_id, topology = ?lab.name, by = %by, force, "destroy");
    let note = format!("lab {} destroyed by {by}", lab.lab_id);
    let id = lab.lab_id.clone();
    tokio::spawn(async move {
        if let Err(e) = crate::lab_destroy::finish(&app, &lab.lab_id, Some(&note)).await {
            tracing::error!(lab = %lab.lab_id, "{e}");
        }
    });
    Ok((
        StatusCode::ACCEPTED,
        Json(Destroying {
            lab_id: id,
            status: LabStatus::Destroying,
        }),
    )
        .into_response())
}
