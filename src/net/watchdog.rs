//! Cleanup that needs no next run: a watchdog process per set of nodes
//! that removes the run's containers and temporary files as soon as the
//! owning process dies, however it dies (SIGKILL included).
//!
//! The owner holds the write end of a pipe (close-on-exec, so no other
//! child inherits it); the watchdog, a small shell script in its own
//! session, reads the other end. A clean close writes `q` and the watchdog
//! exits. If the owner dies first, the kernel closes its end, the watchdog
//! reads end-of-file and removes every container labelled with the run
//! (`docker rm -f`, through `DOCKER_HOST` like the library) and the paths
//! it was told about. It sweeps again until 2 s pass with nothing of the
//! run, since a container the owner was creating when it died still lands. QEMU needs no watchdog: it dies with its owner
//! (`PR_SET_PDEATHSIG`). The reaper (`alpy::internal::reap`) stays as the
//! second line of defence, for a host that was rebooted or a watchdog that
//! was killed too.

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::run::{RunId, LABEL_RUN};

/// The watchdog's program. `$1` is the run id.
const SCRIPT: &str = r#"
run=$1
paths=
while IFS= read -r line; do
  case $line in
    q) exit 0 ;;
    "p "*) paths="$paths
${line#p }" ;;
  esac
done
echo "alpy watchdog: the owner of run $run died; removing what it left"
sweep() {
  ids=$(docker ps -aq --filter "label=LABEL=$run")
  if [ -n "$ids" ]; then docker rm -f $ids; return 0; fi
  return 1
}
remove_paths() {
  printf '%s\n' "$paths" | while IFS= read -r p; do
    if [ -n "$p" ]; then rm -rf -- "$p"; fi
  done
}
sweep
remove_paths
# A container the owner was creating when it died (a node's tools, made in
# the background) lands after the first sweep: the engine finishes the
# request. Sweep again until 2 s pass with nothing of the run (30 s at most).
quiet=0 passes=0
while [ "$quiet" -lt 4 ] && [ "$passes" -lt 60 ]; do
  sleep 0.5
  passes=$((passes + 1))
  if sweep; then quiet=0; else quiet=$((quiet + 1)); fi
done
# Again: a late container may have made one of them anew.
remove_paths
echo "alpy watchdog: done"
"#;

/// A running watchdog. [`Watchdog::disarm`] it after a clean close;
/// dropping it disarms it too.
pub struct Watchdog {
    run: RunId,
    pipe: Option<ChildStdin>,
    child: Option<Child>,
}

impl Watchdog {
    /// Starts the watchdog of `run`; its output goes to `log` (or nowhere).
    /// Needs the `docker` command (Debian package `docker.io`).
    pub fn start(run: &RunId, log: Option<&Path>) -> Result<Watchdog> {
        let out = match log {
            Some(p) => Stdio::from(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)
                    .map_err(|e| Error::io(format!("open watchdog log {}", p.display()), e))?,
            ),
            None => Stdio::null(),
        };
        let err = match log {
            Some(p) => Stdio::from(
                std::fs::OpenOptions::new()
                    .append(true)
                    .open(p)
                    .map_err(|e| Error::io(format!("open watchdog log {}", p.display()), e))?,
            ),
            None => Stdio::null(),
        };
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(SCRIPT.replace("LABEL", LABEL_RUN))
            .arg("alpy-watchdog")
            .arg(run.as_str())
            .stdin(Stdio::piped())
            .stdout(out)
            .stderr(err);
        // Its own session: a CI job's time limit that kills the test's
        // process group must not take the watchdog with it.
        // SAFETY: setsid(2) is async-signal-safe.
        unsafe {
            cmd.pre_exec(|| {
                nix::unistd::setsid().map_err(std::io::Error::from)?;
                Ok(())
            });
        }
        let mut child = cmd.spawn().map_err(|e| {
            Error::io(
                "start the cleanup watchdog (sh; it needs the docker command)",
                e,
            )
        })?;
        let pipe = child.stdin.take();
        log::debug!(target: "alpy::watchdog", "watchdog pid {} guards run {run}", child.id());
        Ok(Watchdog {
            run: run.clone(),
            pipe,
            child: Some(child),
        })
    }

    /// The watchdog's PID.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    fn send(&mut self, line: &str) -> Result<()> {
        let pipe = self
            .pipe
            .as_mut()
            .ok_or_else(|| Error::Closed(format!("the watchdog of run {}", self.run)))?;
        pipe.write_all(line.as_bytes())
            .and_then(|_| pipe.flush())
            .map_err(|e| Error::io(format!("tell the watchdog of run {}", self.run), e))
    }

    /// Tells the watchdog to remove `path` too if the owner dies.
    pub fn guard_path(&mut self, path: &Path) -> Result<()> {
        let text = path.to_string_lossy();
        if text.contains('\n') {
            return Err(Error::Config(format!("path {text:?} has a newline")));
        }
        self.send(&format!("p {text}\n"))
    }

    /// Tells the watchdog the owner closed cleanly, and waits for it to
    /// exit.
    pub fn disarm(mut self) -> Result<()> {
        self.stop()
    }

    fn stop(&mut self) -> Result<()> {
        let told = if self.pipe.is_some() {
            self.send("q\n")
        } else {
            Ok(())
        };
        self.pipe = None;
        if let Some(mut child) = self.child.take() {
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            loop {
                match child.try_wait() {
                    Ok(Some(_)) => break,
                    Ok(None) if std::time::Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    _ => {
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                }
            }
        }
        told
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            log::warn!(target: "alpy::watchdog", "{e}");
        }
    }
}
