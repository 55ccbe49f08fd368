//! Taking a lab down and forgetting it. One caller goes on: the one whose
//! `destroying` mark changed the lab (a second, say housekeeping and a
//! board's teardown at once, leaves it to the first), and its work runs
//! in a task of its own, so a caller that goes away (a client hanging
//! up) never leaves a lab marked and half done.
//!
//! A lab caught while still `starting` has no bed yet: its stand-up task
//! sees the mark when `alpy up` is over, takes the bed it made down and
//! forgets the lab ([`came_up_destroyed`]); the destroyer waits for that.
//! A bed that is still alive after `alpy down` takes the board it ran on
//! offline, so no one is lent a board an old bed still drives.

use std::time::{Duration, Instant};

use alpy::lab::wire::{BoardState, EventAction, LabStatus};

use crate::api::Shared;
use crate::db::{LabRow, SERVER};
use crate::labs;

/// Marks lab `l` `destroying`, then takes it down (see [`finish`]) in a
/// task of its own, and waits for it. `Ok` too when another caller is
/// destroying it already.
pub async fn destroy_now(app: &Shared, l: &LabRow, note: Option<&str>) -> Result<(), String> {
    let id = l.lab_id.clone();
    let claimed = app
        .db(move |db| db.lab_status(&id, LabStatus::Destroying, SERVER))
        .await
        .map_err(|e| format!("mark lab {} destroying: {}", l.lab_id, e.1))?;
    if !claimed {
        return Ok(());
    }
    let (app, id, note) = (app.clone(), l.lab_id.clone(), note.map(str::to_string));
    tokio::spawn(async move { finish(&app, &id, note.as_deref()).await })
        .await
        .map_err(|e| format!("the destroy task failed: {e}"))?
}

/// Takes lab `id` (marked `destroying` by the caller) down and forgets it
/// (its holders get `note`). An error if its bed is still alive after
/// `alpy down`, or a lab still coming up is not over in time: its board,
/// if it has one, is then taken offline with the reason.
pub async fn finish(app: &Shared, id: &str, note: Option<&str>) -> Result<(), String> {
    let lab_id = id.to_string();
    // Read again now that it is marked: only a lab that was still
    // starting has no bed, and none can be recorded in it any more.
    let Some(l) = app
        .db(move |db| db.lab(&lab_id))
        .await
        .map_err(|e| format!("read lab {id}: {}", e.1))?
    else {
        return Ok(());
    };
    let failed = match l.bed_id.clone() {
        Some(bed) => take_down_and_forget(app, &l, &bed, note).await,
        None => match wait_gone(app, &l).await {
            Ok(()) => None,
            Err(why) => Some(offline_for(app, &l, &why).await),
        },
    };
    match failed {
        None => {
            tracing::info!(lab = %l.lab_id, topology = ?l.name, "lab destroyed");
            Ok(())
        }
        Some(why) => Err(why),
    }
}

/// Takes bed `bed` of lab `l` down and forgets the lab (its holders get
/// `note`): why the bed is still up after `alpy down`, if it is (one
/// already gone is no failure). The lab's board is then taken offline
/// before the lab is forgotten, so its teardown never sees it free.
async fn take_down_and_forget(
    app: &Shared,
    l: &LabRow,
    bed: &str,
    note: Option<&str>,
) -> Option<String> {
    let bed = bed.to_string();
    let down = tokio::task::spawn_blocking(move || {
        labs::take_down(&bed).map_err(|e| (e.to_string(), labs::alive(&bed)))
    })
    .await;
    let failed = match down {
        Ok(Ok(())) => None,
        Ok(Err((e, alive))) => {
            tracing::warn!(lab = %l.lab_id, topology = ?l.name, alive, "taking the lab down: {e}");
            alive.then(|| format!("its bed is still up after alpy down: {e}"))
        }
        Err(task) => Some(format!("the take-down task failed: {task}")),
    };
    let failed = match failed {
        Some(why) => Some(offline_for(app, l, &why).await),
        None => None,
    };
    let (id, note) = (l.lab_id.clone(), note.map(str::to_string));
    let _ = app
        .db(move |db| db.drop_lab(&id, note.as_deref(), EventAction::Destroyed, SERVER))
        .await;
    let _ = std::fs::remove_dir_all(&l.dir);
    failed
}

/// Waits until the stand-up task of lab `l` (caught `starting`) forgets
/// it: within the time `alpy up` may take, and a minute more.
async fn wait_gone(app: &Shared, l: &LabRow) -> Result<(), String> {
    tracing::info!(lab = %l.lab_id, topology = ?l.name, "destroyed while starting: waiting for its alpy up");
    let limit = Duration::from_secs(app.cfg.limits.lab_up_timeout_s + 60);
    let deadline = Instant::now() + limit;
    loop {
        let id = l.lab_id.clone();
        match app.db(move |db| db.lab(&id)).await {
            Ok(None) => return Ok(()),
            Ok(Some(_)) | Err(_) if Instant::now() < deadline => {}
            _ => {
                return Err(format!(
                    "it was still coming up {}s after it was destroyed",
                    limit.as_secs()
                ))
            }
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// What the stand-up task of lab `l` does when its `alpy up` is over
/// and the lab was destroyed meanwhile: takes the bed it made down
/// (nobody else knows it) and forgets the lab.
pub async fn came_up_destroyed(app: &Shared, l: &LabRow, bed_id: &str) {
    tracing::warn!(lab = %l.lab_id, topology = ?l.name, bed = %bed_id, "lab destroyed as it came up: taking its bed down");
    let note = Some("the lab was destroyed as it came up");
    if let Some(why) = take_down_and_forget(app, l, bed_id, note).await {
        tracing::error!("{why}");
    }
}

/// `why` lab `l` failed to go, naming it; its board, if it has one, is
/// taken offline with that reason.
async fn offline_for(app: &Shared, l: &LabRow, why: &str) -> String {
    let why = format!("lab {}: {why}", l.lab_id);
    if let Some(board) = &l.board {
        offline(app, board, &why).await;
    }
    why
}

/// Takes board `board` offline: a bed that would not go down may still
/// drive it.
async fn offline(app: &Shared, board: &str, why: &str) {
    tracing::error!(board = %board, "taking the board offline: {why}");
    let (b, w) = (board.to_string(), why.to_string());
    if let Err(e) = app
        .db(move |db| db.set_board_state(&b, BoardState::Offline, Some(&w), "lab teardown"))
        .await
    {
        tracing::error!(board = %board, "taking the board offline: {}", e.1);
    }
}
