//! Taking a lab down and forgetting it. One caller goes on: the one whose
//! `destroying` mark changed the lab (a second, say housekeeping and a
//! board's teardown at once, leaves it to the first). A lab caught while
//! still `starting` has no bed yet: its `alpy up` is waited for and
//! every bed under its directory taken down, so none comes up afterwards
//! with nobody to take it down (on a board, the next holder's).

use alpy::lab::wire::{EventAction, LabStatus};

use crate::api::Shared;
use crate::db::{LabRow, SERVER};
use crate::labs;

/// Marks lab `l` `destroying` on `actor`'s word, then takes it down (see
/// [`finish`]). `Ok` too when another caller is destroying it already.
pub async fn destroy_now(app: &Shared, l: &LabRow, note: Option<&str>) -> Result<(), String> {
    let id = l.lab_id.clone();
    let claimed = app
        .db(move |db| db.lab_status(&id, LabStatus::Destroying, SERVER))
        .await
        .map_err(|e| format!("mark lab {} destroying: {}", l.lab_id, e.1))?;
    if !claimed {
        return Ok(());
    }
    finish(app, &l.lab_id, note).await
}

/// Takes lab `id` (marked `destroying` by the caller) down and forgets it
/// (its holders get `note`). An error if its bed is still alive after
/// `alpy down`: the lab is forgotten all the same (the reason is logged),
/// and a board it ran on must not be lent on that word.
pub async fn finish(app: &Shared, id: &str, note: Option<&str>) -> Result<(), String> {
    let lab_id = id.to_string();
    // Read again now that it is marked: only a lab that was still
    // starting has no bed, and none can come up in it any more.
    let Some(l) = app
        .db(move |db| db.lab(&lab_id))
        .await
        .map_err(|e| format!("read lab {id}: {}", e.1))?
    else {
        return Ok(());
    };
    let mut failed = None;
    match l.bed_id.clone() {
        Some(bed) => {
            let down = tokio::task::spawn_blocking(move || {
                labs::take_down(&bed).map_err(|e| (e.to_string(), labs::alive(&bed)))
            })
            .await;
            match down {
                Ok(Ok(())) => {}
                Ok(Err((e, alive))) => {
                    tracing::warn!(lab = %l.lab_id, topology = ?l.name, alive, "taking the lab down: {e}");
                    failed = alive.then_some(e);
                }
                Err(task) => failed = Some(format!("the task failed: {task}")),
            }
        }
        None => {
            tracing::info!(lab = %l.lab_id, topology = ?l.name, "destroyed while starting: waiting for its alpy up");
            crate::housekeeping::reap_dir(app, std::path::Path::new(&l.dir)).await;
        }
    }
    let (id, note) = (l.lab_id.clone(), note.map(str::to_string));
    let _ = app
        .db(move |db| db.drop_lab(&id, note.as_deref(), EventAction::Destroyed, SERVER))
        .await;
    let _ = std::fs::remove_dir_all(&l.dir);
    tracing::info!(lab = %l.lab_id, topology = ?l.name, "lab destroyed");
    match failed {
        None => Ok(()),
        Some(e) => Err(format!(
            "lab {}'s bed is still up after alpy down: {e}",
            l.lab_id
        )),
    }
}
