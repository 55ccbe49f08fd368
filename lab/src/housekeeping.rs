//! Housekeeping: sessions whose heartbeats stopped are ended (a waiting
//! one after its limit, an active one after its own, its lab released and
//! destroyed if nobody else holds it, the next session promoted). It runs
//! often while sessions exist and seldom when the server is idle; a new
//! session wakes it. At start, labs whose bed died while the server was
//! down are forgotten and their sessions told.

use std::time::Duration;

use crate::api::Shared;

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
    let l = &app.cfg.limits;
    match app.db.overdue(l.waiting_heartbeat_s, l.active_heartbeat_s) {
        Ok(overdue) => {
            for (id, was_active) in overdue {
                let limit = l.heartbeat(was_active).as_secs_f64();
                let note = format!("no heartbeat for {limit:.0} s");
                match app.db.end_session(&id, "expired", Some(&note), l.max_labs) {
                    Ok(released) => {
                        let _ = app.db.count("heartbeat_expiries", 1);
                        tracing::warn!(session = %id, active = was_active, lab = ?released, "session expired: {note}");
                        if let Some((lab, 0)) = released {
                            if let Ok(Some(view)) = app.db.lab(&lab) {
                                crate::lab_api::destroy_now(app, &view, None).await;
                            }
                        }
                    }
                    Err(e) => tracing::error!(session = %id, "expiring: {e}"),
                }
            }
        }
        Err(e) => tracing::error!("housekeeping: {e}"),
    }
    app.db.queue().map(|q| !q.is_empty()).unwrap_or(true)
}

/// Runs forever.
pub async fn run(app: Shared) {
    loop {
        let busy = pass(&app).await;
        let nap = interval(&app, busy);
        tokio::select! {
            _ = tokio::time::sleep(nap) => {},
            _ = app.wake.notified() => {},
        }
    }
}

/// At start: labs whose bed is gone are forgotten (their sessions get a
/// note); labs caught starting or destroying are finished off.
pub async fn reap_at_start(app: &Shared) {
    let labs = match app.db.labs() {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("reading labs at start: {e}");
            return;
        }
    };
    for l in labs {
        let alive = l.bed_id.as_deref().is_some_and(crate::labs::alive);
        match (l.status.as_str(), alive) {
            ("up" | "idle", true) => {
                tracing::info!(lab = %l.lab_id, topology = %l.name, "lab still up after the restart");
            }
            _ => {
                let lost = crate::labs::beds_under(std::path::Path::new(&l.dir));
                for bed in &lost {
                    let _ = crate::labs::take_down(bed);
                }
                let note = format!(
                    "lab {} was lost while the server was down ({}); it was reaped",
                    l.lab_id, l.status
                );
                tracing::warn!(lab = %l.lab_id, topology = %l.name, "{note}");
                let _ = app.db.drop_lab(&l.lab_id, Some(&note));
                let _ = std::fs::remove_dir_all(&l.dir);
            }
        }
    }
}
