//! Runs the boards' scripts. The database marks what a board has to run
//! (`busy`): a setup script when a session reserves it, a teardown
//! script when the session lets it go, a health check on an operator's
//! word or when its class's period is due. This loop starts each marked
//! script once (a script cut short by a restart runs again), at most one
//! per board, and records its end: a failure takes the board offline
//! with what the script printed.

use std::time::Duration;

use alpy::lab::wire::BoardJob;

use crate::api::Shared;
use crate::board_script::Outcome;
use crate::config::BoardClass;
use crate::db::handle;

/// How often the loop looks for work.
const EVERY: Duration = Duration::from_millis(500);

/// Runs forever, if the configuration lists boards.
pub async fn run(app: Shared) {
    if app.cfg.boards.is_empty() {
        return;
    }
    // Scripts an earlier run left (it died; they did not) would run
    // beside the ones marked again below: a flash, twice at once.
    let mark = crate::board_script::mark_of(&app.cfg.state_dir);
    match tokio::task::spawn_blocking(move || crate::board_script::kill_left_over(&mark)).await {
        Ok(0) => {}
        Ok(n) => tracing::warn!(
            processes = n,
            "killed what board scripts of an earlier run left"
        ),
        Err(e) => tracing::error!("looking for board scripts an earlier run left: {e}"),
    }
    loop {
        pass(&app).await;
        tokio::time::sleep(EVERY).await;
    }
}

/// One pass: due health checks are marked, marked scripts started.
async fn pass(app: &Shared) {
    match app.db(|db| db.idle_boards()).await {
        Ok(idle) => {
            for b in idle {
                let class = app.cfg.board_classes.iter().find(|c| c.name == b.class);
                let due = class.is_some_and(|c| c.check_due(b.lent, b.since_s));
                if !due {
                    continue;
                }
                let name = b.name.clone();
                match app.db(move |db| db.begin_check(&name)).await {
                    Ok(Ok(())) => tracing::info!(
                        board = %b.name, lent = b.lent, hours = b.since_s / 3600.0,
                        "health check due"
                    ),
                    Ok(Err(_)) => {} // taken meanwhile: next time
                    Err(e) => tracing::error!(board = %b.name, "marking a check: {}", e.1),
                }
            }
        }
        Err(e) => tracing::error!("board scripts: {}", e.1),
    }
    let jobs = match app.db(|db| db.board_jobs()).await {
        Ok(jobs) => jobs,
        Err(e) => {
            tracing::error!("board scripts: {}", e.1);
            return;
        }
    };
    for (name, job, holder) in jobs {
        // The old holder's console or SSH stream is being cut: the
        // script would find the console server's port taken.
        if crate::board_remote::has_open_streams(app, &name) {
            continue;
        }
        let Some(running) = Running::start(app, &name) else {
            continue;
        };
        // A script that ended between the listing and the claim cleared
        // its mark (and the board may be lent since): the mark is read
        // again now that no script of the board can end unseen.
        let wanted = (name.clone(), job, holder.clone());
        let still = app
            .db(move |db| Ok(db.board_jobs()?.contains(&wanted)))
            .await;
        if !matches!(still, Ok(true)) {
            continue;
        }
        let app = app.clone();
        tokio::spawn(async move {
            run_job(&app, &name, job, holder).await;
            drop(running);
        });
    }
}

/// The board's spec and its class, from the configuration.
fn class_of(app: &Shared, name: &str) -> Option<(alpy::board::BoardSpec, BoardClass)> {
    let spec = app.cfg.boards.iter().find(|b| b.name == name)?;
    let class = app
        .cfg
        .board_classes
        .iter()
        .find(|c| c.name == spec.class)?;
    Some((spec.clone(), class.clone()))
}

/// Runs board `name`'s `job` (for the session `holder`) and records its
/// end (the script is the actor of what it changes). A board whose class
/// lost the script (the configuration changed) passes at once.
pub async fn run_job(app: &Shared, name: &str, job: BoardJob, holder: Option<String>) -> Outcome {
    let session = holder.as_deref().map(|k| handle(k).to_string());
    tracing::info!(board = %name, job = %job, session = ?session, "board script started");
    // A lab's bed on the board goes before its teardown script runs (and
    // before anyone else is lent the board).
    let down = match job {
        BoardJob::Teardown => crate::lab_board::take_down_labs_on(app, name).await,
        BoardJob::Setup | BoardJob::Check => Ok(()),
    };
    let outcome = match (down, class_of(app, name)) {
        (Err(why), _) => Outcome {
            passed: false,
            output: why,
        },
        (Ok(()), Some((spec, class))) if !class.job(job).0.is_empty() => {
            let mark = crate::board_script::mark_of(&app.cfg.state_dir);
            crate::board_script::run(&spec, &class, job, session.as_deref(), &mark).await
        }
        (Ok(()), _) => Outcome {
            passed: true,
            output: format!("its class has no {} now", BoardClass::key(job)),
        },
    };
    let actor = match job {
        BoardJob::Setup => "setup script",
        BoardJob::Teardown => "teardown script",
        BoardJob::Check => "health check",
    };
    let failed = (!outcome.passed).then(|| format!("{actor} failed: {}", outcome.output));
    // Recorded, or the script would run again (a flash, twice): a busy
    // database is waited for (a minute); another error is logged once.
    for attempt in 1..=60 {
        let (n, a, h) = (name.to_string(), actor.to_string(), holder.clone());
        let f = failed.clone();
        match app
            .db(move |db| db.end_board_job(&n, job, h.as_deref(), f.as_deref(), &a))
            .await
        {
            Ok(()) => break,
            Err(e) => {
                tracing::error!(board = %name, job = %job, attempt, "recording the script's end: {}", e.1);
                if e.0 != axum::http::StatusCode::SERVICE_UNAVAILABLE {
                    break;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
    match &failed {
        Some(reason) => tracing::warn!(board = %name, job = %job, "board offline: {reason}"),
        None => tracing::info!(board = %name, job = %job, "board script passed"),
    }
    outcome
}

/// A board's mark while one of its scripts runs, so that none runs twice.
pub struct Running {
    app: Shared,
    name: String,
}

impl Running {
    /// Marks board `name`; `None` if a script of its runs already.
    pub fn start(app: &Shared, name: &str) -> Option<Running> {
        let fresh = app
            .board_scripts
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
            .board_scripts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&self.name);
    }
}
