//! The boards' routes: the inventory for any token (names, classes, tags,
//! state; never a board's power or console settings, which hold the
//! switch's secrets), and an operator's offline and online.

use alpy::lab::wire::{
    Board, BoardState, Boards, ErrorBody, EventAction, EventType, HealthCheck, TakeOffline,
};
use axum::extract::{Path, State};
use axum::Json;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::api::{ApiError, ApiResult, Shared};
use crate::auth::{Caller, Operator};
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
    let (state, reason, changed_by, changed, holder) = match row {
        Some(r) => (r.state, r.reason, r.changed_by, r.changed, r.holder),
        None => (BoardState::Online, None, None, None, None),
    };
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
#[utoipa::path(post, path = "/boards/{name}/check", tag = "boards", params(("name" = String, Path, description = "the board")), responses((status = 200, description = "how the check went, and the board's state after it", body = HealthCheck), (status = 404, description = "no such board", body = ErrorBody), (status = 409, description = "its class has no health check, or one runs now", body = ErrorBody)))]
async fn check(
    State(app): State<Shared>,
    Operator(caller): Operator,
    Path(name): Path<String>,
) -> ApiResult<Json<HealthCheck>> {
    let spec = spec_of(&app, &name)?;
    let class = app
        .cfg
        .board_classes
        .iter()
        .find(|c| c.name == spec.class)
        .cloned()
        .ok_or_else(|| {
            ApiError::conflict(format!(
                "board {name}'s class {} has no health check: add a [[board_class]] with \
                 health_check to the configuration",
                spec.class
            ))
        })?;
    let held = {
        let name = name.clone();
        app.db(move |db| db.board(&name)).await?
    }
    .and_then(|r| r.holder);
    if let Some(h) = held {
        return Err(ApiError::conflict(format!(
            "board {name} is reserved by session {}: check it when it is free (or take it \
             offline first)",
            crate::db::handle(&h)
        )));
    }
    let Some(running) = Running::start(&app, &name) else {
        return Err(ApiError::conflict(format!(
            "board {name}'s health check runs now: wait for it"
        )));
    };
    tracing::info!(board = %name, by = %caller.name, "health check started");
    // A task of its own: a client that goes away does not stop the check
    // half-way, and its result is still recorded.
    let task = {
        let app = app.clone();
        tokio::spawn(async move {
            let outcome = crate::board_check::run(&spec, &class).await;
            let (passed, output) = (outcome.passed, outcome.output);
            let row = {
                let (name, output) = (name.clone(), output.clone());
                app.db(move |db| {
                    if passed {
                        db.events().emit(
                            EventType::Board,
                            EventAction::Passed,
                            "health check",
                            &name,
                            &[],
                        );
                    } else {
                        let reason = format!("health check failed: {output}");
                        db.set_board_state(
                            &name,
                            BoardState::Offline,
                            Some(&reason),
                            "health check",
                        )?;
                    }
                    db.board(&name)
                })
                .await?
            };
            drop(running);
            tracing::info!(board = %name, passed, "health check ended");
            Ok::<_, ApiError>(HealthCheck {
                board: name,
                passed,
                output,
                state: view(&spec, row).state,
            })
        })
    };
    let done = task
        .await
        .map_err(|e| ApiError::internal(format!("the health check's task failed: {e}")))??;
    Ok(Json(done))
}

/// A board's mark in [`crate::api::App::checking`] while its check runs,
/// taken off on drop.
struct Running {
    app: Shared,
    name: String,
}

impl Running {
    /// The mark, or `None` if the board's check runs already.
    fn start(app: &Shared, name: &str) -> Option<Running> {
        let fresh = app
            .checking
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(name.to_string());
        fresh.then(|| Running {
            app: app.clone(),
            name: name.to_string(),
        })
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.app
            .checking
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&self.name);
    }
}

/// Sets board `name`'s state on `caller`'s word; 404 for a board the
/// configuration does not list.
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
