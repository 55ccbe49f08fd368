//! The operator's routes: destroy any lab, end any session, move a
//! waiting session in the queue. Sessions are named by their handle
//! (what `/queue` shows), never by their id. Every route needs an
//! `operator` token: a `user` or `viewer` token gets 403.

use alpy::lab::wire::ErrorBody;
use alpy::lab::wire::{Destroying, MoveTo, Moved};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Json;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::api::{end_session, ApiError, ApiResult, Shared};
use crate::auth::Operator;
use crate::db::SessionRow;
use crate::lab_api::{start_destroy, Force};

/// The routes.
pub fn routes() -> OpenApiRouter<Shared> {
    OpenApiRouter::new()
        .routes(routes!(destroy_any))
        .routes(routes!(end_any))
        .routes(routes!(move_session))
}

/// `DELETE /labs/{id}`: `alpy lab destroy`.
#[utoipa::path(delete, path = "/labs/{id}", tag = "operator", params(("id" = String, Path, description = "the lab"), Force), responses((status = 202, description = "being destroyed", body = Destroying), (status = 404, description = "no such lab", body = ErrorBody), (status = 409, description = "held by others without force", body = ErrorBody)))]
async fn destroy_any(
    State(app): State<Shared>,
    Operator(caller): Operator,
    Path(id): Path<String>,
    Query(f): Query<Force>,
) -> ApiResult<Response> {
    let lab = {
        let id = id.clone();
        app.db(move |db| db.lab(&id)).await?
    }
    .ok_or_else(|| ApiError::not_found(format!("no lab {id:?}")))?;
    start_destroy(app, lab, f.force, &format!("operator {}", caller.name)).await
}

async fn by_handle(app: &Shared, handle: &str) -> ApiResult<SessionRow> {
    let h = handle.to_string();
    app.db(move |db| db.session_by_handle(&h))
        .await?
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "no live session with handle {handle:?} (GET /queue lists them)"
            ))
        })
}

/// `DELETE /sessions/{handle}`: ends a session, releasing its lab.
#[utoipa::path(delete, path = "/sessions/{handle}", tag = "operator", params(("handle" = String, Path, description = "the session's handle")), responses((status = 204, description = "ended"), (status = 404, description = "no live session with that handle", body = ErrorBody)))]
async fn end_any(
    State(app): State<Shared>,
    Operator(caller): Operator,
    Path(handle): Path<String>,
) -> ApiResult<StatusCode> {
    let s = by_handle(&app, &handle).await?;
    end_session(&app, &s.key, &format!("operator {}", caller.name)).await
}

/// `POST /sessions/{handle}/position {"position": N}`: moves a waiting
/// session to place N of the queue.
#[utoipa::path(post, path = "/sessions/{handle}/position", tag = "operator", params(("handle" = String, Path, description = "the session's handle")), request_body = MoveTo, responses((status = 200, description = "its new position", body = Moved), (status = 404, description = "no live session with that handle", body = ErrorBody), (status = 409, description = "not waiting", body = ErrorBody)))]
async fn move_session(
    State(app): State<Shared>,
    Operator(caller): Operator,
    Path(handle): Path<String>,
    Json(p): Json<MoveTo>,
) -> ApiResult<Json<Moved>> {
    let s = by_handle(&app, &handle).await?;
    let (key, actor) = (s.key.clone(), format!("operator {}", caller.name));
    let moved = app
        .db(move |db| db.move_waiting(&key, p.position as usize, &actor))
        .await?;
    if !moved {
        return Err(ApiError::conflict(format!(
            "session {handle} is {}, not waiting",
            s.status
        )));
    }
    let key = s.key.clone();
    let now = app
        .db(move |db| db.session(&key))
        .await?
        .ok_or_else(|| ApiError::not_found("the session ended meanwhile"))?;
    tracing::info!(session = %handle, position = now.position, by = %caller.name, "session moved");
    Ok(Json(Moved {
        handle,
        position: now.position,
    }))
}
