//! Apps in a lab's nodes, for the active session that holds it: run one to
//! completion, or start one in the background and stop it later; and
//! changes to a node's link (impairment, carrier). The
//! lab's supervisor runs them (they belong to its bed: its owner, its
//! artifacts, stopped when it goes down); the server only checks them:
//! allow-listed images, no host mounts, the configured capabilities only.

use crate::openapi::SessionHeader;
use alpy::internal::supervisor::protocol::Request;
use alpy::lab::wire::ErrorBody;
use std::time::Duration;
use utoipa_axum::{router::OpenApiRouter, routes};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use crate::api::{ApiError, ApiResult, Shared};
use crate::auth::ActiveSession;
use crate::remote::held_bed;

/// The longest an app may run to completion.
const MAX_RUN: Duration = Duration::from_secs(1800);

/// The routes.
pub fn routes() -> OpenApiRouter<Shared> {
    OpenApiRouter::new()
        .routes(routes!(start))
        .routes(routes!(stop))
        .routes(routes!(link))
}

/// `POST /lab/nodes/{name}/link`: impairment or carrier on a node's link
/// (alpy's `LinkChange` as JSON), done by the lab's supervisor.
#[utoipa::path(post, path = "/lab/nodes/{name}/link", tag = "lab", params(SessionHeader, ("name" = String, Path, description = "the node")), request_body(content = Object, description = "{\"change\": \"impair\", \"direction\": \"to_dut|to_node|both\", \"impairment\": {..}}, {\"change\": \"clear\"} or {\"change\": \"carrier\", \"up\": bool}"), responses((status = 204, description = "done"), (status = 400, description = "bad input", body = ErrorBody), (status = 404, description = "no such session, or it holds no lab", body = ErrorBody), (status = 423, description = "the session is not the active one", body = ErrorBody)))]
async fn link(
    State(app): State<Shared>,
    s: ActiveSession,
    Path(name): Path<String>,
    Json(change): Json<alpy::net::LinkChange>,
) -> ApiResult<StatusCode> {
    let (sid, info) = held_bed(&app, &s).await?;
    info.index_of(&name, "node", false)
        .map_err(|e| ApiError::not_found(e.to_string()))?;
    if let alpy::net::LinkChange::Impair { impairment, .. } = &change {
        if impairment
            .loss_percent
            .is_some_and(|l| !(0.0..=100.0).contains(&l))
        {
            return Err(ApiError::bad("loss_percent: from 0 to 100"));
        }
    }
    tracing::info!(session = %sid, bed = %info.id, topology = ?info.name, node = ?name, change = ?change, "link");
    let request = Request::Link { node: name, change };
    tokio::task::spawn_blocking(move || {
        alpy::internal::supervisor::registry::request(&info, &request)
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))?
    .map_err(|e| ApiError::conflict(e.to_string()))?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, utoipa::ToSchema)]
struct AppBody {
    /// alpy's `App`, as JSON.
    #[schema(value_type = Object)]
    app: alpy::App,
    /// Start it and return its id (201) instead of waiting for its end.
    #[serde(default)]
    background: bool,
    /// For a run to completion: how long it may take.
    #[serde(default = "default_timeout")]
    timeout_s: f64,
}

fn default_timeout() -> f64 {
    120.0
}

#[utoipa::path(post, path = "/lab/nodes/{name}/apps", tag = "lab", params(SessionHeader, ("name" = String, Path, description = "the node")), request_body = AppBody, responses((status = 200, description = "the app's end: {exit_code, stdout, stderr}", body = Object), (status = 201, description = "started in the background: {app_id}", body = Object), (status = 400, description = "bad input", body = ErrorBody), (status = 404, description = "no such session, or it holds no lab", body = ErrorBody), (status = 423, description = "the session is not the active one", body = ErrorBody), (status = 409, description = "the supervisor refused it", body = ErrorBody)))]
async fn start(
    State(app): State<Shared>,
    s: ActiveSession,
    Path(name): Path<String>,
    Json(body): Json<AppBody>,
) -> ApiResult<(StatusCode, Json<serde_json::Value>)> {
    let (sid, info) = held_bed(&app, &s).await?;
    info.index_of(&name, "node", false)
        .map_err(|e| ApiError::not_found(e.to_string()))?;
    crate::safety::check_app(&body.app, &app.cfg.docker_images, &app.cfg.app_caps)
        .map_err(ApiError::bad)?;
    let timeout = Duration::from_secs_f64(body.timeout_s.clamp(0.0, MAX_RUN.as_secs_f64()));
    let background = body.background;
    tracing::info!(session = %sid, bed = %info.id, topology = ?info.name, node = ?name, image = %body.app.image(), background = body.background, "app");
    let request = if body.background {
        Request::AppStart {
            node: name,
            app: body.app,
        }
    } else {
        Request::AppRun {
            node: name,
            timeout_s: timeout.as_secs_f64(),
            app: body.app,
        }
    };
    let wait = timeout + Duration::from_secs(30);
    let answer = tokio::task::spawn_blocking(move || {
        alpy::internal::supervisor::registry::request_within(&info, &request, wait)
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))?
    .map_err(|e| ApiError::conflict(e.to_string()))?;
    if background {
        Ok((StatusCode::CREATED, Json(json!({ "app_id": answer }))))
    } else {
        Ok((StatusCode::OK, Json(answer)))
    }
}

#[utoipa::path(delete, path = "/lab/apps/{id}", tag = "lab", params(SessionHeader, ("id" = String, Path, description = "the app's id")), responses((status = 204, description = "stopped"), (status = 400, description = "bad input", body = ErrorBody), (status = 404, description = "no such session, or it holds no lab", body = ErrorBody), (status = 423, description = "the session is not the active one", body = ErrorBody), (status = 409, description = "it had failed", body = ErrorBody)))]
async fn stop(
    State(app): State<Shared>,
    s: ActiveSession,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let (sid, info) = held_bed(&app, &s).await?;
    if !id.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(ApiError::bad(format!("bad app id {id:?}")));
    }
    tracing::info!(session = %sid, bed = %info.id, topology = ?info.name, app = ?id, "app stop");
    let request = Request::AppStop { id };
    tokio::task::spawn_blocking(move || {
        alpy::internal::supervisor::registry::request(&info, &request)
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))?
    .map_err(|e| ApiError::conflict(e.to_string()))?;
    Ok(StatusCode::NO_CONTENT)
}
