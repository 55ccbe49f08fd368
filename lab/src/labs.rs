//! Labs are test beds stood up by `alpy up` from a checked topology in the
//! lab's own directory: each has its own supervisor process, so a lab
//! outlives a restart of this server, and `alpy down` ends it.

use crate::error::Error;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::config::Config;

/// Whether a process works on the lab in `dir`: its `alpy up`, or the
/// bed's supervisor (starting or up), whose command lines name the
/// topology file inside `dir`.
pub fn busy(dir: &Path) -> bool {
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return false;
    };
    let dir = dir.as_os_str().as_encoded_bytes();
    procs.flatten().any(|p| {
        std::fs::read(p.path().join("cmdline")).is_ok_and(|cmd| {
            cmd.split(|b| *b == 0)
                .any(|arg| arg.starts_with(dir) && arg.get(dir.len()) == Some(&b'/'))
        })
    })
}

/// A bed that is up: its id and its description (`alpy up --json`).
pub struct Stood {
    /// The bed's id in this user's registry.
    pub bed_id: String,
    /// What `alpy up --json` printed.
    pub bed: serde_json::Value,
}

/// Stands up `topology` (inside `dir`) with `alpy up --json --events`;
/// artifacts go to `dir/artifacts`. Each step the bed reports (its typed
/// events, read from `alpy up`'s stderr) is logged with `lab` as it
/// happens. Blocks until the bed is ready or fails.
pub fn stand_up(cfg: &Config, dir: &Path, topology: &Path, lab: &str) -> Result<Stood, Error> {
    use std::io::BufRead;
    let alpy = cfg.alpy_command();
    let mut child = Command::new(&alpy)
        .args(["up", "--json", "--events", "--timeout"])
        .arg(cfg.limits.lab_up_timeout_s.to_string())
        .arg(topology)
        .current_dir(dir)
        .env("ALPY_ARTIFACTS", dir.join("artifacts"))
        // The lab is the bed: it must not be sent to a lab server itself.
        .env_remove(alpy::lab::URL_VAR)
        .env_remove(alpy::lab::TOKEN_VAR)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(Error::io(format!("run {} up", alpy.display())))?;
    // Its description (stdout) in a thread of its own, so neither pipe
    // can fill while the other is read.
    let stdout = child.stdout.take().map(|mut o| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = std::io::Read::read_to_end(&mut o, &mut buf);
            buf
        })
    });
    // Steps as they come; any other line is kept for the error message.
    let mut other = Vec::new();
    if let Some(err) = child.stderr.take() {
        for line in std::io::BufReader::new(err).lines().map_while(Result::ok) {
            match serde_json::from_str::<alpy::journal::Entry>(&line) {
                Ok(entry) => {
                    if let Some(step) = entry.event.step_line() {
                        tracing::info!(lab = %lab, t = entry.t, "step: {step}");
                    }
                }
                Err(_) => other.push(line),
            }
        }
    }
    let status = child
        .wait()
        .map_err(Error::io(format!("wait for {} up", alpy.display())))?;
    let stdout = stdout
        .map(|t| t.join().unwrap_or_default())
        .unwrap_or_default();
    if !status.success() {
        return Err(Error::Bed(format!(
            "the lab did not come up ({status}): {}",
            other.join("\n").trim()
        )));
    }
    let bed: serde_json::Value = serde_json::from_slice(&stdout)
        .map_err(|e| Error::Bed(format!("alpy up printed no bed description: {e}")))?;
    let bed_id = bed["id"]
        .as_str()
        .ok_or_else(|| Error::Bed("alpy up printed no bed id".into()))?
        .to_string();
    Ok(Stood { bed_id, bed })
}

/// Takes bed `bed_id` down (nothing to do if it is gone already).
pub fn take_down(bed_id: &str) -> Result<(), Error> {
    match alpy::internal::supervisor::registry::find(bed_id) {
        Ok(info) => alpy::internal::supervisor::registry::down(&info, Duration::from_secs(180))
            .map_err(|e| Error::Bed(format!("take bed {bed_id} down: {e}"))),
        Err(_) => Ok(()),
    }
}

/// Whether bed `bed_id`'s supervisor is alive.
pub fn alive(bed_id: &str) -> bool {
    alpy::internal::supervisor::registry::find(bed_id).is_ok()
}

/// Beds of this user whose artifacts are under `dir` (a lab's bed whose
/// `alpy up` this server lost at a restart).
pub fn beds_under(dir: &Path) -> Vec<String> {
    alpy::internal::supervisor::registry::list()
        .into_iter()
        .filter(|b| b.artifacts.starts_with(dir))
        .map(|b| b.id)
        .collect()
}

/// A lab's directory under the state directory.
pub fn lab_dir(cfg: &Config, lab_id: &str) -> PathBuf {
    cfg.state_dir.join("labs").join(lab_id)
}
