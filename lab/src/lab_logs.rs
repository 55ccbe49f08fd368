//! The held lab's logs, for its session's client to keep before the lab
//! goes: `GET /lab/logs` lists the `*.log` files at the top of the bed's
//! artifacts (nodes, apps, QEMU, the console, debug), `GET
//! /lab/logs/{name}` sends one. Only plain files named `*.log` directly in
//! that directory are served: no paths, no links.

use crate::openapi::SessionHeader;
use alpy::lab::wire::ErrorBody;
use alpy::lab::wire::{FileEntry, Files};
use axum::body::Body;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::api::{ApiError, ApiResult, Shared};
use crate::auth::ActiveSession;
use crate::remote::held_bed;

/// The routes.
pub fn routes() -> OpenApiRouter<Shared> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(one))
}

/// Whether `name` is a log the API serves: `*.log`, one plain name.
fn servable(name: &str) -> bool {
    name.ends_with(".log")
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

#[utoipa::path(get, path = "/lab/logs", tag = "lab", params(SessionHeader), responses((status = 200, description = "the *.log files of the lab's bed", body = Files), (status = 400, description = "bad input", body = ErrorBody), (status = 404, description = "no such session, or it holds no lab", body = ErrorBody), (status = 423, description = "the session is not the active one", body = ErrorBody)))]
async fn list(State(app): State<Shared>, s: ActiveSession) -> ApiResult<Json<Files>> {
    let (_, info) = held_bed(&app, &s).await?;
    let mut files = Vec::new();
    for e in std::fs::read_dir(&info.artifacts)
        .into_iter()
        .flatten()
        .flatten()
    {
        let name = e.file_name().to_string_lossy().into_owned();
        let Ok(meta) = std::fs::symlink_metadata(e.path()) else {
            continue;
        };
        if servable(&name) && meta.is_file() {
            files.push(FileEntry {
                name,
                size: meta.len(),
                sha256: None,
            });
        }
    }
    files.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Json(Files { files }))
}

#[utoipa::path(get, path = "/lab/logs/{name}", tag = "lab", params(SessionHeader, ("name" = String, Path, description = "a name from GET /lab/logs")), responses((status = 200, description = "the log", content_type = "text/plain", body = String), (status = 400, description = "bad input", body = ErrorBody), (status = 404, description = "no such session, or it holds no lab", body = ErrorBody), (status = 423, description = "the session is not the active one", body = ErrorBody)))]
async fn one(
    State(app): State<Shared>,
    s: ActiveSession,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    let (sid, info) = held_bed(&app, &s).await?;
    tracing::debug!(session = %sid, bed = %info.id, log = ?name, "log asked for");
    send(&info, &name).await
}

/// Sends log `name` of bed `info` (a plain `*.log` file at the top of
/// its artifacts; anything else is 400 or 404).
pub async fn send(
    info: &alpy::internal::supervisor::registry::BedInfo,
    name: &str,
) -> ApiResult<Response> {
    if !servable(name) {
        return Err(ApiError::bad(format!(
            "log {name:?}: a name from GET /lab/logs (*.log, no path)"
        )));
    }
    use std::os::unix::fs::OpenOptionsExt;
    let missing = || ApiError::not_found(format!("no log {name:?} in this lab"));
    // Opened without following a link, then checked: what is read is the
    // plain file that was checked.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(info.artifacts.join(name))
        .map_err(|_| missing())?;
    if !file.metadata().is_ok_and(|m| m.is_file()) {
        return Err(missing());
    }
    // Streamed: a log may be large.
    let stream = futures_util::stream::unfold(tokio::fs::File::from_std(file), |mut f| async {
        use tokio::io::AsyncReadExt;
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
    Ok((
        [("content-type", "text/plain; charset=utf-8")],
        Body::from_stream(stream),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_plain_log_names_are_served() {
        for ok in ["node0.log", "client-app1.log", "debug.log"] {
            assert!(super::servable(ok), "{ok}");
        }
        for bad in [
            "../x.log",
            "a/b.log",
            ".hidden.log",
            "link0.pcap",
            "x.log/",
            "x\n.log",
        ] {
            assert!(!super::servable(bad), "{bad}");
        }
    }
}
