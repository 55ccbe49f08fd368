//! The lab endpoints: acquire (upload a topology, or reuse a running lab
//! with the same checked topology), show, release (reference count down;
//! a lab nobody holds stays up, idle, for the next session that asks for
//! it), and destroy.

use std::time::{Duration, Instant};

use axum::extract::{Multipart, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::api::{active_session, bearer, new_id, ApiError, ApiResult, Shared};
use crate::db::LabView;
use crate::labs;
use crate::safety::{check_topology, extra_file_path};

/// The lab routes.
pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/lab", post(acquire).get(show).delete(destroy))
        .route("/lab/devices", get(devices))
        .route("/lab/release", post(release))
}

/// What a client uploaded.
struct Upload {
    topology: String,
    extra: Vec<(String, Vec<u8>)>,
    reuse: bool,
}

async fn read_upload(mut m: Multipart) -> ApiResult<Upload> {
    let bad = |e: axum::extract::multipart::MultipartError| {
        ApiError(e.status(), format!("the upload: {}", e.body_text()))
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

async fn acquire(
    State(app): State<Shared>,
    headers: HeaderMap,
    m: Multipart,
) -> ApiResult<Response> {
    let s = active_session(&app, &headers)?;
    let sid = s.session_id.clone();
    if let Some(l) = app.db.held_lab(&sid)? {
        return Err(ApiError::conflict(format!(
            "session {sid} holds lab {} already: POST /lab/release first",
            l.lab_id
        )));
    }
    let up = read_upload(m).await?;
    let lab_id = new_id()?[..20].to_string();
    let dir = labs::lab_dir(&app.cfg, &lab_id);
    let (text, name) = check_topology(
        &up.topology,
        &app.cfg.store,
        &app.cfg.docker_images,
        &dir.join("topology.toml"),
    )
    .map_err(ApiError::bad)?;
    let files_dir = dir.join("files");
    let mut extra = Vec::new();
    for (n, data) in &up.extra {
        extra.push((
            extra_file_path(&files_dir, n).map_err(ApiError::bad)?,
            n,
            data,
        ));
    }
    let mut h = Sha256::new();
    h.update(text.as_bytes());
    let mut sorted: Vec<_> = up.extra.iter().collect();
    sorted.sort();
    for (n, data) in sorted {
        h.update([0]);
        h.update(n.as_bytes());
        h.update([0]);
        h.update(data);
    }
    let hash = hex::encode(h.finalize());
    tracing::info!(session = %sid, topology = %name, hash = %&hash[..12], reuse = up.reuse, "lab asked for");
    if up.reuse {
        if let Some(lab) = wait_while_starting(&app, &hash).await? {
            app.db.hold(&sid, &lab.lab_id)?;
            tracing::info!(session = %sid, topology = %name, lab = %lab.lab_id, "lab reused");
            let lab = app.db.lab(&lab.lab_id)?.unwrap_or(lab);
            return Ok(Json(json!({ "reused": true, "lab": lab })).into_response());
        }
    }
    make_room(&app, &sid, &name).await?;
    std::fs::create_dir_all(&files_dir)
        .map_err(|e| ApiError::internal(format!("create {}: {e}", files_dir.display())))?;
    let topology_path = dir.join("topology.toml");
    std::fs::write(&topology_path, &text).map_err(|e| ApiError::internal(e.to_string()))?;
    for (path, _, data) in &extra {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| ApiError::internal(e.to_string()))?;
        }
        std::fs::write(path, data).map_err(|e| ApiError::internal(e.to_string()))?;
    }
    app.db
        .new_lab(&lab_id, &hash, &name, &dir.to_string_lossy(), &sid)?;
    // In a task of its own: if the client goes away mid-way, the lab is
    // still recorded as up (or dropped), never left `starting`.
    let task = {
        let (app, lab_id, sid, name) = (app.clone(), lab_id.clone(), sid.clone(), name.clone());
        tokio::spawn(async move {
            let cfg = app.cfg.clone();
            let stood =
                tokio::task::spawn_blocking(move || labs::stand_up(&cfg, &dir, &topology_path))
                    .await
                    .map_err(|e| e.to_string())
                    .and_then(|r| r);
            match stood {
                Ok(st) => {
                    app.db.lab_up(&lab_id, &st.bed_id, &st.bed)?;
                    tracing::info!(session = %sid, topology = %name, lab = %lab_id, bed = %st.bed_id, "lab up");
                    Ok(())
                }
                Err(why) => {
                    tracing::error!(session = %sid, topology = %name, lab = %lab_id, "lab failed: {why}");
                    app.db
                        .drop_lab(&lab_id, Some("the lab failed to come up"))?;
                    Err(why)
                }
            }
        })
    };
    match task.await.map_err(|e| ApiError::internal(e.to_string()))? {
        Ok(()) => {
            let lab = app.db.lab(&lab_id)?;
            Ok(Json(json!({ "reused": false, "lab": lab })).into_response())
        }
        Err(why) => Err(ApiError::internal(why)),
    }
}

/// A running lab with this hash, once it is past `starting`.
async fn wait_while_starting(app: &Shared, hash: &str) -> ApiResult<Option<LabView>> {
    let deadline = Instant::now() + Duration::from_secs(app.cfg.limits.lab_up_timeout_s);
    loop {
        match app.db.lab_by_hash(hash)? {
            Some(l) if l.status == "starting" && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            Some(l) if l.status == "up" || l.status == "idle" => return Ok(Some(l)),
            _ => return Ok(None),
        }
    }
}

/// Destroys idle labs until one more fits; 409 if every slot is held.
/// A lab being destroyed frees its slot soon (a session that ends lets the
/// next one in while its lab still goes down): that is waited for.
async fn make_room(app: &Shared, sid: &str, name: &str) -> ApiResult<()> {
    let standing = |labs: &[LabView]| labs.iter().filter(|l| l.status != "gone").count();
    let deadline = Instant::now() + Duration::from_secs(app.cfg.limits.lab_up_timeout_s);
    let mut labs = app.db.labs()?;
    while standing(&labs) >= app.cfg.limits.max_labs
        && labs.iter().any(|l| l.status == "destroying")
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(200)).await;
        labs = app.db.labs()?;
    }
    if standing(&labs) < app.cfg.limits.max_labs {
        return Ok(());
    }
    for l in labs.iter().filter(|l| l.status == "idle") {
        tracing::info!(session = %sid, topology = %name, lab = %l.lab_id, "destroying idle lab to make room");
        destroy_now(app, l, None).await;
        if standing(&app.db.labs()?) < app.cfg.limits.max_labs {
            return Ok(());
        }
    }
    Err(ApiError::conflict(format!(
        "all {} lab slots are held by other sessions",
        app.cfg.limits.max_labs
    )))
}

/// Takes lab `l` down and forgets it (its holders get `note`).
pub async fn destroy_now(app: &Shared, l: &LabView, note: Option<&str>) {
    let _ = app.db.lab_status(&l.lab_id, "destroying");
    if let Some(bed) = l.bed_id.clone() {
        let down = tokio::task::spawn_blocking(move || labs::take_down(&bed)).await;
        if let Ok(Err(e)) | Err(e) = down.map_err(|e| e.to_string()) {
            tracing::warn!(lab = %l.lab_id, topology = %l.name, "taking the lab down: {e}");
        }
    }
    let _ = app.db.drop_lab(&l.lab_id, note);
    let _ = std::fs::remove_dir_all(&l.dir);
    tracing::info!(lab = %l.lab_id, topology = %l.name, "lab destroyed");
}

async fn show(State(app): State<Shared>, headers: HeaderMap) -> ApiResult<Json<LabView>> {
    let s = active_session(&app, &headers)?;
    app.db
        .held_lab(&s.session_id)?
        .map(Json)
        .ok_or_else(|| ApiError::not_found("this session holds no lab: POST /lab first"))
}

async fn devices(
    State(app): State<Shared>,
    headers: HeaderMap,
) -> ApiResult<Json<serde_json::Value>> {
    let s = active_session(&app, &headers)?;
    let lab = app
        .db
        .held_lab(&s.session_id)?
        .ok_or_else(|| ApiError::not_found("this session holds no lab: POST /lab first"))?;
    let bed = lab.bed.unwrap_or_default();
    let nodes: Vec<String> = bed["nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|n| n[0].as_str().map(str::to_string))
        .collect();
    Ok(Json(json!({
        "name": lab.name,
        "nodes": nodes,
        "links": nodes,
        "console": "/lab/console",
    })))
}

async fn release(
    State(app): State<Shared>,
    headers: HeaderMap,
) -> ApiResult<Json<serde_json::Value>> {
    let s = active_session(&app, &headers)?;
    let (lab, refcount) = app
        .db
        .release(&s.session_id)?
        .ok_or_else(|| ApiError::not_found("this session holds no lab"))?;
    tracing::info!(session = %s.session_id, lab = %lab, refcount, "lab released");
    Ok(Json(json!({ "lab_id": lab, "refcount": refcount })))
}

/// `?force=true`.
#[derive(Deserialize)]
pub(crate) struct Force {
    #[serde(default)]
    force: bool,
}

async fn destroy(
    State(app): State<Shared>,
    headers: HeaderMap,
    Query(f): Query<Force>,
) -> ApiResult<Response> {
    let s = active_session(&app, &headers)?;
    let lab = app
        .db
        .held_lab(&s.session_id)?
        .ok_or_else(|| ApiError::not_found("this session holds no lab"))?;
    start_destroy(app, lab, f.force, &s.session_id)
}

/// `DELETE /labs/{id}` with an API token: `alpy lab destroy`.
pub async fn destroy_any(
    State(app): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(f): Query<Force>,
) -> ApiResult<Response> {
    let who = bearer(&app, &headers)?;
    let lab = app
        .db
        .lab(&id)?
        .ok_or_else(|| ApiError::not_found(format!("no lab {id}")))?;
    start_destroy(app, lab, f.force, &format!("token {who}"))
}

fn start_destroy(app: Shared, lab: LabView, force: bool, by: &str) -> ApiResult<Response> {
    if lab.refcount > 1 && !force {
        return Err(ApiError::conflict(format!(
            "lab {} is held by {} sessions: ?force=true destroys it for all",
            lab.lab_id, lab.refcount
        )));
    }
    if lab.status == "destroying" {
        return Err(ApiError::conflict(format!(
            "lab {} is being destroyed",
            lab.lab_id
        )));
    }
    tracing::info!(lab = %lab.lab_id, topology = %lab.name, by = %by, force, "destroy");
    let _ = app.db.lab_status(&lab.lab_id, "destroying");
    let note = format!("lab {} destroyed by {by}", lab.lab_id);
    let id = lab.lab_id.clone();
    tokio::spawn(async move {
        destroy_now(&app, &lab, Some(&note)).await;
    });
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "lab_id": id, "status": "destroying" })),
    )
        .into_response())
}
