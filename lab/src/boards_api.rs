//! The boards' routes: the inventory for any token (names, classes, tags,
//! state; never a board's power or console settings, which hold the
//! switch's secrets), and an operator's offline and online.

use alpy::lab::wire::{Board, BoardJob, BoardState, Boards, ErrorBody, HealthCheck, TakeOffline};
use axum::extract::{Path, State};
use axum::Json;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::api::{ApiError, ApiResult, Shared};
use crate::auth::{Caller, Operator};
use crate::board_jobs::{run_job, Running};
use crate::db::BoardRow;

/// The routes.
pub fn routes() -> OpenApiRouter<Shared> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(take_offline))
        .routes(routes!(put_online))
        .routes(routes!(check))
}

/// A board as the API shows it: its configuration's public part and its
/// state.
fn view(spec: &alpy::board::BoardSpec, row: Option<BoardRow>) -> Board {
    let Some(row) = row else {
        return Board {
            name: spec.name.clone(),
            class: spec.class.clone(),
            tags: spec.tags.clone(),
            state: BoardState::Online,
            reason: None,
            changed_by: None,
            changed: None,
            ports: spec.ports.len(),
            holder: None,
            busy: None,
            lent_since_check: 0,
            checked: None,
        };
    };
    let BoardRow {
        state,
        reason,
        changed_by,
        changed,
        holder,
        busy,
        lent,
        checked,
        ..
    } = row;
    Board {
        name: spec.name.clone(),
        class: spec.class.clone(),
        tags: spec.tags.clone(),
        state,
        reason,
        changed_by,
        changed,
        ports: spec.ports.len(),
        holder: holder.map(|k| crate::db::handle(&k).to_string()),
        busy,
        lent_since_check: lent,
        checked,
    }
}

/// `GET /boards`: every board, in the configuration's order.
#[utoipa::path(get, path = "/boards", tag = "boards", responses((status = 200, description = "the inventory: names, classes, tags, states (no power or console settings)", body = Boards)))]
async fn list(State(app): State<Shared>, _: Caller) -> ApiResult<Json<Boards>> {
    let names: Vec<String> = app.cfg.boards.iter().map(|b| b.name.clone()).collect();
    let rows = app
        .db(move |db| {
            names
                .iter()
                .map(|n| db.board(n))
                .collect::<Result<Vec<_>, _>>()
        })
        .await?;
    Ok(Json(Boards {
        boards: app
            .cfg
            .boards
            .iter()
            .zip(rows)
            .map(|(spec, row)| view(spec, row))
            .collect(),
    }))
}

/// Board `name`'s configuration, or 404.
fn spec_of(app: &Shared, name: &str) -> ApiResult<alpy::board::BoardSpec> {
    app.cfg
        .boards
        .iter()
        .find(|b| b.name == name)
        .cloned()
        .ok_or_else(|| ApiError::not_found(format!("no board {name:?} (GET /boards lists them)")))
}

/// `POST /boards/{name}/check`: runs the board's class's health check now.
/// A failed check takes the board offline with what it printed; a passing
/// one leaves its state as it was.
#[utoipa::path(post, path = "/boards/{name}/check", tag = "boards", params(("name" = String, Path, description = "the board")), responses((status = 200, description = "how the check went, and the board's state after it", body = HealthCheck), (status = 404, description = "no such board", body = ErrorBody), (status = 409, description = "its class has no health check, it is reserved, or one of its scripts runs now", body = ErrorBody)))]
async fn check(
    State(app): State<Shared>,
    Operator(caller): Operator,
    Path(name): Path<String>,
) -> ApiResult<Json<HealthCheck>> {
    let spec = spec_of(&app, &name)?;
    let has_check = app
        .cfg
        .board_classes
        .iter()
        .any(|c| c.name == spec.class && !c.health_check.is_empty());
    if !has_check {
        return Err(ApiError::conflict(format!(
            "board {name}'s class {} has no health check: add health_check to its \
             [[board_class]] in the configuration",
            spec.class
        )));
    }
    if crate::board_remote::has_open_streams(&app, &name) {
        return Err(ApiError::conflict(format!(
            "board {name}'s console or SSH stream is still open (its last holder's, being \
             cut): try again in a few seconds"
        )));
    }
    let Some(running) = Running::start(&app, &name) else {
        return Err(ApiError::conflict(format!(
            "a script of board {name} runs now: wait for it (GET /boards shows it as busy)"
        )));
    };
    {
        let name = name.clone();
        app.db(move |db| db.begin_check(&name))
            .await?
            .map_err(ApiError::conflict)?;
    }
    tracing::info!(board = %name, by = %caller.name, "health check asked for");
    // In a task of its own: a client that hangs up does not cut it short.
    let task = {
        let app = app.clone();
        tokio::spawn(async move {
            let outcome = run_job(&app, &name, BoardJob::Check, None).await;
            drop(running);
            let row = {
                let name = name.clone();
                app.db(move |db| db.board(&name)).await?
            };
            Ok::<_, ApiError>(HealthCheck {
                board: name,
                passed: outcome.passed,
                output: outcome.output,
                state: view(&spec, row).state,
            })
        })
    };
    let done = task
        .await
        .map_err(|e| ApiError::internal(format!("the health check's task failed: {e}")))??;
    Ok(Json(done))
}

async fn set(
    app: &Shared,
    caller: &Caller,
    name: String,
    state: BoardState,
    reason: Option<String>,
) -> ApiResult<Json<Board>> {
    let spec = spec_of(app, &name)?;
    let actor = format!("operator {}", caller.name);
    let row = app
        .db(move |db| {
            db.set_board_state(&name, state, reason.as_deref(), &actor)?;
            db.board(&name)
        })
        .await?;
    tracing::info!(board = %spec.name, state = %state, by = %caller.name, "board state set");
    Ok(Json(view(&spec, row)))
}

/// `POST /boards/{name}/offline {"reason": ".."}`: never lent until an
/// operator puts it back online.
#[utoipa::path(post, path = "/boards/{name}/offline", tag = "boards", params(("name" = String, Path, description = "the board")), request_body = TakeOffline, responses((status = 200, description = "the board, offline", body = Board), (status = 404, description = "no such board", body = ErrorBody), (status = 422, description = "no reason given", body = ErrorBody)))]
async fn take_offline(
    State(app): State<Shared>,
    Operator(caller): Operator,
    Path(name): Path<String>,
    Json(body): Json<TakeOffline>,
) -> ApiResult<Json<Board>> {
    let reason = body.reason.trim();
    if reason.is_empty() || reason.len() > 4096 {
        return Err(ApiError(
            axum::http::StatusCode::UNPROCESSABLE_ENTITY,
            "say why the board goes offline: a reason of 1 to 4096 characters".into(),
        ));
    }
    let reason = reason.to_string();
    set(&app, &caller, name, BoardState::Offline, Some(reason)).await
}

/// `POST /boards/{name}/online`: lent again.
#[utoipa::path(post, path = "/boards/{name}/online", tag = "boards", params(("name" = String, Path, description = "the board")), responses((status = 200, description = "the board, online", body = Board), (status = 404, description = "no such board", body = ErrorBody)))]
async fn put_online(
    State(app): State<Shared>,
    Operator(caller): Operator,
    Path(name): Path<String>,
) -> ApiResult<Json<Board>> {
    set(&app, &caller, name, BoardState::Online, None).await
}
