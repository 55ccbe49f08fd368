//! Removing what crashed runs left behind.
//!
//! Every container alpy creates carries owner labels (run id, owner PID and
//! start time, boot id), and every helper directory an `owner` file with the
//! same. [`reap`] removes those whose owner is dead (gone, a zombie, a
//! reused PID, or another boot) and never touches a live run's resources.
//! QEMU needs no reaping: it dies with its owner (`PR_SET_PDEATHSIG`), and
//! its sockets are anonymous socket pairs, so no file is left.

use std::path::PathBuf;

use crate::error::Result;
use crate::net::docker::Docker;
use crate::run::{owner_alive, parse_owner_file, LABEL_RUN};

/// What [`reap`] removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Reaped {
    /// Names of removed containers.
    pub containers: Vec<String>,
    /// Removed helper directories.
    pub dirs: Vec<PathBuf>,
}

/// Removes the containers and helper directories of dead owners.
pub fn reap(docker: &Docker) -> Result<Reaped> {
    let mut reaped = Reaped::default();
    let dead: Vec<(String, String)> = docker
        .list_by_label(LABEL_RUN, None)?
        .into_iter()
        .filter(|c| !owner_alive(&c.labels.clone().unwrap_or_default()))
        .filter_map(|c| {
            let name = c
                .names
                .as_ref()
                .and_then(|n| n.first())
                .map(|n| n.trim_start_matches('/').to_string())
                .unwrap_or_default();
            c.id.map(|id| (id, name))
        })
        .collect();
    let results: Vec<(String, Result<()>)> = std::thread::scope(|s| {
        let hs: Vec<_> = dead
            .iter()
            .map(|(id, name)| {
                s.spawn(crate::logging::inherit(move || {
                    (name.clone(), docker.remove(id))
                }))
            })
            .collect();
        hs.into_iter().filter_map(|h| h.join().ok()).collect()
    });
    for (name, r) in results {
        match r {
            Ok(()) => reaped.containers.push(name),
            Err(e) => log::warn!(target: "alpy::reap", "cannot remove {name}: {e}"),
        }
    }
    if let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !(name.starts_with("alpy-") && name.ends_with("-net")) {
                continue;
            }
            let Ok(text) = std::fs::read_to_string(e.path().join("owner")) else {
                continue;
            };
            if !owner_alive(&parse_owner_file(&text)) && std::fs::remove_dir_all(e.path()).is_ok() {
                reaped.dirs.push(e.path());
            }
        }
    }
    if !reaped.containers.is_empty() || !reaped.dirs.is_empty() {
        log::info!(
            target: "alpy::reap",
            "removed leftovers of dead runs: containers {:?}, directories {:?}",
            reaped.containers,
            reaped.dirs
        );
    }
    Ok(reaped)
}
