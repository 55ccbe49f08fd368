//! The operator's routes: destroy any lab, end any session, move a
//! waiting session in the queue. Sessions are named by their handle
//! (what `/queue` shows), never by their id. Every route needs an
//! `operator` token: a `user` or `viewer` token gets 403.

use alpy::lab::wire::{MoveTo, Moved};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{delete, post};
use axum::{Json, Router};

use crate::api::{end_session, ApiError, ApiResult, Shared};
use crate::auth::Operator;
use crate::db::SessionRow;
use crate::lab_api::{start_destroy, Force};

/// The routes.
pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/labs/{id}", delete(destroy_any))
        .route("/sessions/{handle}", delete(end_any))
        .route("/sessions/{handle}/position", post(move_session))
}

/// `DELETE /labs/{id}`: `alpy lab destroy`.
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
async fn move_session(
    State(app): State<Shared>,
    Operator(caller): Operator,
    Path(handle): Path<String>,
    Json(p): Json<MoveTo>,
) -> ApiResult<Json<Moved>> {
    let s = by_handle(&app, &handle).await?;
    let key = s.key.clone();
    let moved = app
        .db(move |db| db.move_waiting(&key, p.position as usize))
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
