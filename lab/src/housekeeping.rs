//! Housekeeping: sessions whose heartbeats stopped are ended (a waiting
//! one after its limit, an active one after its own, its lab released and
//! destroyed if nobody else holds it, the next session promoted). It runs
//! often while sessions exist and seldom when the server is idle; a new
//! session wakes it.
//!
//! At start: every live session's heartbeat clock starts again (an outage
//! longer than the limit ends none of them); labs whose bed died while
//! the server was down are forgotten and their sessions told; a lab caught
//! starting is taken down once its `alpy up` has finished, and so is any
//! bed under the labs' directory that no lab lists, so no bed runs that
//! the server does not count against `max_labs`.

use alpy::lab::wire::{LabStatus, SessionStatus};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::api::Shared;
use crate::db::{handle, ConfiguredBoard, SERVER};
use alpy::lab::wire::BoardJob;
use alpy::lab::wire::{EventAction, EventType};

/// How long to sleep: a quarter of the shortest limit while busy (within
/// 0.2-5 s), 30 s when idle.
fn interval(app: &Shared, busy: bool) -> Duration {
    if !busy {
        return Duration::from_secs(30);
    }
    let l = &app.cfg.limits;
    let quarter = l.waiting_heartbeat_s.min(l.active_heartbeat_s) / 4.0;
    Duration::from_secs_f64(quarter.clamp(0.2, 5.0))
}

/// One pass; returns whether any session is waiting or active.
pub async fn pass(app: &Shared) -> bool {
    let (w, a, max) = (
        app.cfg.limits.waiting_heartbeat_s,
        app.cfg.limits.active_heartbeat_s,
        app.cfg.limits.max_labs,
    );
    match app.db(move |db| db.overdue(w, a)).await {
        Ok(overdue) => {
            for (key, was_active) in overdue {
                let limit = app.cfg.limits.heartbeat(was_active).as_secs_f64();
                let note = format!("no heartbeat for {limit:.0} s");
                let (k, n) = (key.clone(), note.clone());
                let ended = app
                    .db(move |db| {
                        let r =
                            db.end_session(&k, SessionStatus::Expired, Some(&n), max, SERVER)?;
                        db.count("heartbeat_expiries", 1)?;
                        Ok(r)
                    })
                    .await;
                match ended {
                    Ok(released) => {
                        tracing::warn!(session = %handle(&key), active = was_active, lab = ?released, "session expired: {note}");
                        if let Some((lab, 0)) = released {
                            if let Ok(Some(view)) = app.db(move |db| db.lab(&lab)).await {
                                // Not awaited: a lab caught coming up takes
                                // as long as its alpy up, and other
                                // sessions expire meanwhile.
                                let app = app.clone();
                                tokio::spawn(async move {
                                    let r =
                                        crate::lab_destroy::destroy_now(&app, &view, None).await;
                                    if let Err(e) = r {
                                        tracing::error!(lab = %view.lab_id, "{e}");
                                    }
                                });
                            }
                        }
                    }
                    Err(e) => tracing::error!(session = %handle(&key), "expiring: {}", e.1),
                }
            }
        }
        Err(e) => tracing::error!("housekeeping: {}", e.1),
    }
    app.db(|db| db.queue())
        .await
        .map(|q| !q.is_empty())
        .unwrap_or(true)
}

/// Runs forever; says how the server is (a health event) every 5 s
/// while sessions exist, every 30 s when idle.
pub async fn run(app: Shared) {
    let mut said: Option<Instant> = None;
    loop {
        let busy = pass(&app).await;
        let every = Duration::from_secs(if busy { 5 } else { 30 });
        if said.is_none_or(|t| t.elapsed() >= every) {
            health(&app).await;
            said = Some(Instant::now());
        }
        let nap = interval(&app, busy).min(every);
        tokio::select! {
            _ = tokio::time::sleep(nap) => {},
            _ = app.wake.notified() => {},
        }
    }
}

/// A health event: `passed` with the queue's and labs' counts and the
/// oldest heartbeat's age, or `failed` with why the database did not
/// answer.
async fn health(app: &Shared) {
    let bus = std::sync::Arc::clone(app.db.events());
    match app.db(|db| Ok((db.queue()?, db.labs()?))).await {
        Ok((q, labs)) => {
            let now = crate::db::now();
            let active = q
                .iter()
                .filter(|s| s.status == SessionStatus::Active)
                .count();
            let oldest = q
                .iter()
                .map(|s| now - s.last_heartbeat)
                .fold(0.0_f64, f64::max);
            bus.emit_passing(
                EventType::Health,
                EventAction::Passed,
                SERVER,
                "server",
                &[
                    ("active", active.to_string()),
                    ("waiting", (q.len() - active).to_string()),
                    ("labs", labs.len().to_string()),
                    ("oldest_heartbeat_s", format!("{oldest:.0}")),
                ],
            );
        }
        Err(e) => bus.emit(
            EventType::Health,
            EventAction::Failed,
            SERVER,
            "database",
            &[("reason", e.1)],
        ),
    }
}

/// At start (see the module's text).
pub async fn reap_at_start(app: &Shared) {
    let boards: Vec<ConfiguredBoard> = app
        .cfg
        .boards
        .iter()
        .map(|b| {
            let class = app.cfg.board_classes.iter().find(|c| c.name == b.class);
            let has = |job| class.is_some_and(|c| !c.job(job).0.is_empty());
            ConfiguredBoard {
                name: b.name.clone(),
                class: b.class.clone(),
                tags: b.tags.clone(),
                has_setup: has(BoardJob::Setup),
                has_teardown: has(BoardJob::Teardown),
            }
        })
        .collect();
    let n = boards.len();
    let max = app.cfg.limits.max_labs;
    match app.db(move |db| db.sync_boards(&boards, max)).await {
        Ok(()) if n > 0 => tracing::info!(boards = n, "board inventory from the configuration"),
        Ok(()) => {}
        Err(e) => tracing::error!("reading the board inventory at start: {}", e.1),
    }
    match app.db(|db| db.grace_at_start()).await {
        Ok(n) if n > 0 => {
            tracing::info!(
                sessions = n,
                "live sessions' heartbeat clocks start again after the restart"
            )
        }
        Ok(_) => {}
        Err(e) => tracing::error!("extending heartbeats at start: {}", e.1),
    }
    let labs = match app.db(|db| db.labs()).await {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("reading labs at start: {}", e.1);
            return;
        }
    };
    for l in &labs {
        let alive = l.bed_id.as_deref().is_some_and(crate::labs::alive);
        let board_gone = l
            .board
            .as_ref()
            .is_some_and(|b| !app.cfg.boards.iter().any(|c| &c.name == b));
        match (l.status.as_str(), alive) {
            ("up" | "idle", true) if board_gone => {
                // Its board left the configuration: nothing would take
                // it down, and its bed still drives the hardware.
                tracing::warn!(lab = %l.lab_id, board = ?l.board, "the lab's board left the configuration: taking the lab down");
                let (app, l) = (app.clone(), l.clone());
                tokio::spawn(async move {
                    let note = "its board left the lab's configuration";
                    if let Err(e) = crate::lab_destroy::destroy_now(&app, &l, Some(note)).await {
                        tracing::error!(lab = %l.lab_id, "{e}");
                    }
                });
            }
            ("up" | "idle", true) => {
                tracing::info!(lab = %l.lab_id, topology = ?l.name, "lab still up after the restart");
            }
            _ => {
                let note = format!(
                    "lab {} was lost while the server was down ({}); it is taken down",
                    l.lab_id, l.status
                );
                tracing::warn!(lab = %l.lab_id, topology = ?l.name, "{note}");
                let dir = std::path::PathBuf::from(&l.dir);
                if !crate::labs::busy(&dir) {
                    reap_dir(app, &dir).await;
                    let id = l.lab_id.clone();
                    let _ = app
                        .db(move |db| db.drop_lab(&id, Some(&note), EventAction::Destroyed, SERVER))
                        .await;
                    continue;
                }
                // Its `alpy up` still runs: the lab counts against
                // max_labs (as `destroying`) until that is over and what
                // it left is down.
                let id = l.lab_id.clone();
                let _ = app
                    .db(move |db| db.lab_status(&id, LabStatus::Destroying, SERVER))
                    .await;
                let (app, l) = (app.clone(), l.clone());
                tokio::spawn(async move {
                    reap_dir(&app, &dir).await;
                    let id = l.lab_id.clone();
                    let _ = app
                        .db(move |db| db.drop_lab(&id, Some(&note), EventAction::Destroyed, SERVER))
                        .await;
                });
            }
        }
    }
    // Directories of labs the database does not know (a server killed
    // between making a lab's directory and recording it).
    let known: Vec<String> = labs.iter().map(|l| l.dir.clone()).collect();
    let root = app.cfg.state_dir.join("labs");
    for entry in std::fs::read_dir(&root).into_iter().flatten().flatten() {
        let dir = entry.path();
        if !known.iter().any(|k| Path::new(k) == dir) {
            tracing::warn!(dir = %dir.display(), "a lab directory no lab lists: taking down what runs there");
            let app = app.clone();
            tokio::spawn(async move { reap_dir(&app, &dir).await });
        }
    }
}

/// Takes down every bed under `dir` until no process works there any
/// more (an `alpy up` the server lost may still be standing one up; its
/// bed is listed only once up), within the lab timeout; then removes it.
async fn reap_dir(app: &Shared, dir: &Path) {
    let deadline = Instant::now() + Duration::from_secs(app.cfg.limits.lab_up_timeout_s + 30);
    loop {
        let d = dir.to_path_buf();
        let busy = tokio::task::spawn_blocking(move || {
            for bed in crate::labs::beds_under(&d) {
                if let Err(e) = crate::labs::take_down(&bed) {
                    tracing::warn!(bed = %bed, "taking down a lost lab's bed: {e}");
                }
            }
            crate::labs::busy(&d)
        })
        .await
        .unwrap_or(false);
        if !busy || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let _ = std::fs::remove_dir_all(dir);
    tracing::info!(dir = %dir.display(), "lost lab reaped");
}
