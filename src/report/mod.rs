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
/// path. A journal without a result whose process is gone is first marked
/// killed.
pub fn write(dir: &Path) -> Result<PathBuf> {
    if owner_died(dir)? {
        crate::journal::append_killed(dir)?;
    }
    let report = model::BedReport::load(dir)?;
    let html = render("bed.html", include_str!("bed.html"), &report)?;
    let path = dir.join(FILE);
    std::fs::write(&path, html).map_err(|e| Error::io(format!("write {}", path.display()), e))?;
    Ok(path)
}

/// Renders template `name` (its text `source`) with `r` as `r`.
fn render<T: serde::Serialize>(name: &str, source: &str, r: &T) -> Result<String> {
    let mut env = minijinja::Environment::new();
    env.add_template(name, source)
        .map_err(|e| Error::Internal(format!("report template {name}: {e}")))?;
    env.get_template(name)
        .and_then(|t| {
            t.render(
                minijinja::context! { r => minijinja::Value::from(minijinja::value::Serde(r)) },
            )
        })
        .map_err(|e| Error::Internal(format!("render {name}: {e}")))
}

/// Whether `dir`'s journal has no result and its process is gone. Reads
/// the first line (the pid) and the last few KiB (a result is the last
/// line), so a scan of many old beds stays cheap.
fn owner_died(dir: &Path) -> Result<bool> {
    use std::io::{BufRead, Read, Seek, SeekFrom};
    let path = dir.join(crate::journal::FILE);
    let mut f =
        std::fs::File::open(&path).map_err(|e| Error::io(format!("open {}", path.display()), e))?;
    let mut first = String::new();
    std::io::BufReader::new(&f)
        .read_line(&mut first)
        .map_err(|e| Error::io(format!("read {}", path.display()), e))?;
    let Ok(crate::journal::Entry {
        event: crate::journal::Event::Bed { pid, .. },
        ..
    }) = serde_json::from_str(&first)
    else {
        return Ok(false);
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let mut tail = String::new();
    f.seek(SeekFrom::Start(len.saturating_sub(4096)))
        .and_then(|_| f.read_to_string(&mut tail))
        .map_err(|e| Error::io(format!("read {}", path.display()), e))?;
    if tail.contains(r#""kind":"result""#) {
        return Ok(false);
    }
    Ok(pid == 0 || !Path::new(&format!("/proc/{pid}")).exists())
}

/// Gives every bed directory under `root` whose process died without
/// closing it (no result in its journal, its process gone, its `.lock`
/// free) a result "killed" and a report. Returns the pages written.
pub fn complete_killed(root: &Path) -> Vec<PathBuf> {
    let Ok(dirs) = std::fs::read_dir(root) else {
        return Vec::new();
    };
    dirs.flatten()
        .map(|d| d.path())
        .filter(|d| d.join(crate::journal::FILE).is_file())
        .filter(|d| owner_died(d).unwrap_or(false) && !running(d))
        .filter_map(|d| match write(&d) {
            Ok(p) => {
                log::info!(target: "alpy::report", "completed the report of a killed run: {}", p.display());
                Some(p)
            }
            Err(e) => {
                log::warn!(target: "alpy::report", "cannot complete the report in {}: {e}", d.display());
                None
            }
        })
        .collect()
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
