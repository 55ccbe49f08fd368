//! `report.html`: one self-contained page per bed (no network, no other
//! file needed to open it), drawn from its artifacts directory: the
//! result, a timeline of its phases, the topology with frame counts, each
//! link's frames, the consoles with the checks at their times, the apps.
//!
//! A bed writes it when it closes (also when the test panicked); a bed
//! whose process was killed gets it from `alpy report DIR` or from the
//! next bed started with the same artifacts root ([`complete_killed`]).
//!
//! ```no_run
//! # fn main() -> alpy::Result<()> {
//! let page = alpy::report::write(std::path::Path::new("target/alpy/forward-a285bd7441"))?;
//! println!("open {}", page.display());
//! # Ok(()) }
//! ```

mod links;
mod model;
pub mod suite;

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The page's file name in a bed's artifacts directory.
pub const FILE: &str = "report.html";

/// Writes `dir/report.html` from the artifacts in `dir` and returns its
/// path. A journal without a result whose bed no longer holds the
/// directory (its `.lock` is free: its process is gone) is first marked
/// killed.
pub fn write(dir: &Path) -> Result<PathBuf> {
    write_report(dir).map(|(path, _)| path)
}

/// [`write`], and what the page shows (a suite page sums it up).
fn write_report(dir: &Path) -> Result<(PathBuf, model::BedReport)> {
    write_report_as(dir, running(dir))
}

/// [`write_report`], told whether a bed still holds `dir` (a caller that
/// holds its `.lock` itself knows none does).
fn write_report_as(dir: &Path, running: bool) -> Result<(PathBuf, model::BedReport)> {
    if !has_result(dir)? && !running {
        crate::journal::append_killed(dir)?;
    }
    let report = model::BedReport::load(dir)?;
    let html = render("bed.html", include_str!("bed.html"), &report)?;
    let path = dir.join(FILE);
    // Whole or not at all: another process may read it meanwhile.
    let part = dir.join(format!(".{FILE}.{}", std::process::id()));
    std::fs::write(&part, html)
        .and_then(|()| std::fs::rename(&part, &path))
        .map_err(|e| Error::io(format!("write {}", path.display()), e))?;
    Ok((path, report))
}

/// The page's script: the page's policy allows it alone, by its hash, so
/// nothing a journal or a topology holds can run there.
const SCRIPT: &str = include_str!("bed.js");

/// Renders template `name` (its text `source`) with `r` as `r`, and the
/// page's script and its hash.
fn render<T: serde::Serialize>(name: &str, source: &str, r: &T) -> Result<String> {
    use base64::Engine;
    use sha2::Digest;
    let hash = base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(SCRIPT));
    let mut env = minijinja::Environment::new();
    env.add_template(name, source)
        .map_err(|e| Error::Internal(format!("report template {name}: {e}")))?;
    env.get_template(name)
        .and_then(|t| {
            t.render(minijinja::context! {
                r => minijinja::Value::from(minijinja::value::Serde(r)),
                script => minijinja::Value::from_safe_string(SCRIPT.to_string()),
                script_hash => hash,
            })
        })
        .map_err(|e| Error::Internal(format!("render {name}: {e}")))
}

/// Whether `dir`'s journal ends with a result. Reads the last few KiB
/// only (a result is the last line), so a scan of many old beds stays
/// cheap.
fn has_result(dir: &Path) -> Result<bool> {
    use std::io::{Read, Seek, SeekFrom};
    let path = dir.join(crate::journal::FILE);
    let mut f =
        std::fs::File::open(&path).map_err(|e| Error::io(format!("open {}", path.display()), e))?;
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let mut tail = Vec::new();
    f.seek(SeekFrom::Start(len.saturating_sub(4096)))
        .and_then(|_| f.read_to_end(&mut tail))
        .map_err(|e| Error::io(format!("read {}", path.display()), e))?;
    // Bytes: the cut may fall inside a character.
    let needle = br#""kind":"result""#;
    Ok(tail.windows(needle.len()).any(|w| w == needle))
}

/// Gives every bed directory under `root` whose process died without
/// closing it (no result in its journal, its `.lock` free) a result
/// "killed" and a report. Returns the pages written.
pub fn complete_killed(root: &Path) -> Vec<PathBuf> {
    let Ok(dirs) = std::fs::read_dir(root) else {
        return Vec::new();
    };
    dirs.flatten()
        .map(|d| d.path())
        .filter(|d| d.join(crate::journal::FILE).is_file())
        .filter_map(|d| complete_one(&d))
        .collect()
}

/// Completes `dir` if its bed was killed. Its `.lock`, taken exclusively
/// for the check and the page, keeps out a bed that starts there and any
/// other completer (beds starting at once in one root all complete).
fn complete_one(dir: &Path) -> Option<PathBuf> {
    // A directory without a `.lock` (an older alpy's) has no bed to wait
    // for, and nothing to keep a second completer out.
    let _held = match std::fs::File::open(dir.join(".lock")) {
        Ok(lock) => {
            Some(nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusiveNonblock).ok()?)
        }
        Err(_) => None,
    };
    if has_result(dir).unwrap_or(true) {
        return None;
    }
    match write_report_as(dir, false) {
        Ok((p, _)) => {
            log::info!(target: "alpy::report", "completed the report of a killed run: {}", p.display());
            Some(p)
        }
        Err(e) => {
            log::warn!(target: "alpy::report", "cannot complete the report in {}: {e}", dir.display());
            None
        }
    }
}

/// Whether a bed holds `dir` (its `.lock` is taken): it is running, and
/// its page comes when it closes.
pub fn running(dir: &Path) -> bool {
    let Ok(f) = std::fs::File::open(dir.join(".lock")) else {
        return false;
    };
    match nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockSharedNonblock) {
        Ok(_guard) => false,
        Err(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A kill may cut a line anywhere, inside a character too: the
    /// journal still reads, the killed result lands on a line of its own,
    /// and the tail check finds it whatever byte the tail starts at.
    #[test]
    fn a_journal_cut_inside_a_character_is_completed() {
        let dir = std::env::temp_dir().join(format!("alpy-report-cut-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let bed = r#"{"t":0.0,"kind":"bed","name":"b","run":"r","test":"t","host":"h","alpy":"0","pid":0,"start_unix_ms":0}"#;
        let long = format!(
            r#"{{"t":1.0,"kind":"console","machine":"dut","text":"{}"#,
            "é".repeat(3000)
        );
        let mut bytes = format!("{bed}\n{long}").into_bytes();
        bytes.pop(); // cut inside the last 'é'
        std::fs::write(dir.join(crate::journal::FILE), &bytes).unwrap();
        assert!(!has_result(&dir).unwrap());
        let page = write(&dir).unwrap();
        assert!(has_result(&dir).unwrap());
        let events = crate::journal::read(&dir).unwrap();
        assert!(matches!(
            events.last().map(|e| &e.event),
            Some(crate::journal::Event::Result {
                outcome: crate::journal::Outcome::Killed,
                ..
            })
        ));
        assert!(std::fs::read_to_string(page).unwrap().contains("KILLED"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
