//! Saving a paused VM's whole state to a file and loading it into a new
//! QEMU, over QMP migration to and from `exec:cat` (QEMU 7.2 has no `file:`
//! URI; where a newer QEMU has one, `exec:` still works).

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::error::{Error, Result};
use crate::util::shell_quote;
use crate::vm::qmp::Qmp;

/// How often migration status is polled.
const POLL: Duration = Duration::from_millis(10);

/// Turns on `x-ignore-shared`, on the saving or the loading side (both
/// need it): RAM in a shared file backend is not in the stream, since the
/// file is the RAM. `Ok(false)` if this QEMU does not have it.
pub fn ignore_shared_ram(qmp: &mut Qmp) -> Result<bool> {
    let caps = json!({ "capabilities": [{ "capability": "x-ignore-shared", "state": true }] });
    match qmp.execute("migrate-set-capabilities", Some(caps)) {
        Ok(_) => Ok(true),
        Err(e @ Error::Qmp { .. }) => {
            log::debug!(target: "alpy::warm", "QEMU has no x-ignore-shared ({e})");
            Ok(false)
        }
        Err(e) => Err(e),
    }
}

/// Stops the vCPUs and writes the VM's state to `path` (which must not be
/// read before this returns). Returns the bytes written.
pub fn save(qmp: &mut Qmp, path: &Path, timeout: Duration) -> Result<u64> {
    qmp.stop()?;
    let uri = format!("exec:cat > {}", shell_quote(&path.to_string_lossy()));
    qmp.execute("migrate", Some(json!({ "uri": uri })))?;
    let deadline = Instant::now() + timeout;
    loop {
        let info = qmp.execute("query-migrate", None)?;
        match info.get("status").and_then(Value::as_str) {
            Some("completed") => break,
            Some("failed") | Some("cancelled") => {
                return Err(Error::Qemu(format!(
                    "saving the VM state to {} failed: {}",
                    path.display(),
                    info.get("error-desc")
                        .and_then(Value::as_str)
                        .unwrap_or("(no reason given)")
                )))
            }
            _ => {}
        }
        if Instant::now() >= deadline {
            return Err(Error::Timeout {
                what: format!("QEMU to save the VM state to {}", path.display()),
                timeout,
                tail: info.to_string(),
            });
        }
        std::thread::sleep(POLL);
    }
    let size = std::fs::metadata(path)
        .map_err(|e| Error::io(format!("stat the saved state {}", path.display()), e))?
        .len();
    Ok(size)
}

/// Loads the state in `path` into a QEMU started with `-incoming defer`
/// and waits until it is loaded; the VM is then paused. A file QEMU cannot
/// load makes QEMU exit: the error is then [`Error::Closed`] or QEMU's own.
pub fn load(qmp: &mut Qmp, path: &Path, timeout: Duration) -> Result<()> {
    if !path.is_file() {
        return Err(Error::NotFound {
            what: format!("saved VM state {}", path.display()),
            hint: "it was removed or never finished".into(),
        });
    }
    let uri = format!("exec:cat {}", shell_quote(&path.to_string_lossy()));
    qmp.execute("migrate-incoming", Some(json!({ "uri": uri })))?;
    let deadline = Instant::now() + timeout;
    loop {
        let status = qmp.query_status()?;
        match status.as_str() {
            "inmigrate" => {}
            "paused" | "prelaunch" | "running" | "postmigrate" => return Ok(()),
            other => {
                return Err(Error::Qemu(format!(
                    "loading the VM state from {} ended in state {other}",
                    path.display()
                )))
            }
        }
        if Instant::now() >= deadline {
            return Err(Error::Timeout {
                what: format!("QEMU to load the VM state from {}", path.display()),
                timeout,
                tail: String::new(),
            });
        }
        std::thread::sleep(POLL);
    }
}
