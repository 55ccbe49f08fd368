//! What is left of a run: the one question a user otherwise answers with
//! label queries, `docker ps`, a `/proc` scan and an `ip link` diff.
//! Everything alpy makes for a run carries its id: container labels and
//! names, QEMU's and the watchdog's command lines (the artifacts path),
//! temporary directories, and any host link.

use std::path::PathBuf;

use crate::error::Result;
use crate::net::Docker;
use crate::run::{RunId, LABEL_RUN};

/// What remains of a run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Leftovers {
    /// Containers labelled with the run (name and state).
    pub containers: Vec<String>,
    /// Processes whose command line names the run (pid and command).
    pub processes: Vec<String>,
    /// Host network links whose name holds the run id.
    pub links: Vec<String>,
    /// Temporary files and directories of the run.
    pub files: Vec<PathBuf>,
}

impl Leftovers {
    /// Nothing is left.
    pub fn is_empty(&self) -> bool {
        self.containers.is_empty()
            && self.processes.is_empty()
            && self.links.is_empty()
            && self.files.is_empty()
    }
}

impl std::fmt::Display for Leftovers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.is_empty() {
            return write!(f, "nothing is left");
        }
        let mut parts = Vec::new();
        for c in &self.containers {
            parts.push(format!("container {c}"));
        }
        for p in &self.processes {
            parts.push(format!("process {p}"));
        }
        for l in &self.links {
            parts.push(format!("host link {l}"));
        }
        for p in &self.files {
            parts.push(format!("file {}", p.display()));
        }
        write!(f, "left: {}", parts.join("; "))
    }
}

/// What is left of `run` on this host.
///
/// ```no_run
/// # fn main() -> alpy::Result<()> {
/// # let bed: alpy::TestBed = todo!();
/// let run = bed.run_id().clone();
/// bed.close()?;
/// let left = alpy::internal::leftovers::leftovers(&run)?;
/// assert!(left.is_empty(), "{left}");
/// # Ok(()) }
/// ```
pub fn leftovers(run: &RunId) -> Result<Leftovers> {
    let id = run.to_string();
    let docker = Docker::connect()?;
    let containers = docker
        .list_by_label(LABEL_RUN, Some(&id))?
        .into_iter()
        .map(|c| {
            let name = c.names.and_then(|n| n.first().cloned()).unwrap_or_default();
            format!(
                "{} ({})",
                name.trim_start_matches('/'),
                c.state.map(|s| format!("{s:?}")).unwrap_or_default()
            )
        })
        .collect();
    let me = std::process::id().to_string();
    let mut processes = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let pid = e.file_name().to_string_lossy().into_owned();
        if !pid.bytes().all(|b| b.is_ascii_digit()) || pid == me {
            continue;
        }
        let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(&id) {
            let short: String = cmdline.trim().chars().take(120).collect();
            processes.push(format!("{pid}: {short}"));
        }
    }
    let links = std::fs::read_dir("/sys/class/net")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(&id[..id.len().min(8)]))
        .collect();
    let files = std::fs::read_dir(std::env::temp_dir())
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().contains(&id))
        })
        .collect();
    Ok(Leftovers {
        containers,
        processes,
        links,
        files,
    })
}
