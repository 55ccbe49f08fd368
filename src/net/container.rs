//! A container guard: removed when closed or dropped, its logs saved.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::net::docker::{short, ContainerSpec, Docker, Output};

/// A container that is removed when closed or dropped. Its logs are written
/// to `log` (debug) and, if given, to a file when it is closed.
pub struct Container {
    docker: Arc<Docker>,
    id: String,
    name: String,
    log_file: Option<PathBuf>,
    /// Whether a non-zero exit before close is a failure worth reporting.
    expect_clean_exit: bool,
    closed: bool,
}

impl Container {
    /// Creates and starts a container from `spec`.
    pub fn run(
        docker: &Arc<Docker>,
        spec: &ContainerSpec,
        log_file: Option<&Path>,
    ) -> Result<Self> {
        let id = docker.create(spec)?;
        let c = Container {
            docker: Arc::clone(docker),
            id,
            name: spec.name.clone(),
            log_file: log_file.map(Path::to_path_buf),
            expect_clean_exit: false,
            closed: false,
        };
        docker.start(&c.id)?;
        log::debug!(
            "started container {} ({}) from {}",
            c.name,
            short(&c.id),
            spec.image
        );
        Ok(c)
    }

    /// The container's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The container's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The client this container belongs to.
    pub fn docker(&self) -> &Arc<Docker> {
        &self.docker
    }

    /// The host PID of its first process (it must be running).
    pub fn pid(&self) -> Result<i32> {
        self.docker.pid(&self.id)
    }

    /// Runs a program inside it.
    pub fn exec(&self, cmd: &[&str], timeout: Duration) -> Result<Output> {
        self.docker.exec(&self.id, cmd, timeout)
    }

    /// Fails with its last log lines if it is no longer running.
    pub fn ensure_running(&self) -> Result<()> {
        let (running, status) = self.docker.state(&self.id)?;
        if running {
            return Ok(());
        }
        Err(Error::CommandFailed {
            what: format!(
                "container {} exited at once (not running after its start)",
                self.name
            ),
            status: status.to_string(),
            output: self
                .docker
                .logs(&self.id)
                .map(|o| o.tail())
                .unwrap_or_default(),
        })
    }

    /// Fails like [`Container::ensure_running`] if it exits within `grace`
    /// (an app that dies at once: a bad command, a missing file).
    pub fn ensure_running_for(&self, grace: Duration) -> Result<()> {
        if !grace.is_zero() {
            match self.docker.wait(&self.id, grace) {
                Err(Error::Timeout { .. }) => {}
                Err(e) => return Err(e),
                Ok(_) => {} // exited: ensure_running says how
            }
        }
        self.ensure_running()
    }

    /// Waits for it to exit; returns its status and output.
    pub fn wait(&mut self, timeout: Duration) -> Result<Output> {
        let status = self.docker.wait(&self.id, timeout)?;
        let mut out = self.docker.logs(&self.id)?;
        out.status = status;
        self.expect_clean_exit = true;
        Ok(out)
    }

    fn save_logs(&self) -> Result<Output> {
        let out = self.docker.logs(&self.id)?;
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            log::debug!("[{}] {}", self.name, line);
        }
        for line in String::from_utf8_lossy(&out.stderr).lines() {
            log::debug!("[{} stderr] {}", self.name, line);
        }
        if let Some(path) = &self.log_file {
            let mut all = out.stdout.clone();
            all.extend_from_slice(&out.stderr);
            std::fs::write(path, all)
                .map_err(|e| Error::io(format!("write container log {}", path.display()), e))?;
        }
        Ok(out)
    }

    /// Saves its logs and removes it (killing it with SIGKILL if it runs).
    /// Returns an error if it had exited on its own with a non-zero code, or
    /// if the engine failed to remove it.
    pub fn close(mut self) -> Result<()> {
        // Whatever inspecting says, the container is removed; and it counts
        // as closed only once it is, so that Drop tries again otherwise.
        let state = self.docker.state(&self.id);
        // A forced remove kills a running container (SIGKILL) itself.
        let logs = self.save_logs();
        self.docker.remove(&self.id)?;
        self.closed = true;
        log::debug!("removed container {}", self.name);
        let (running, status) = state?;
        let logs = logs?;
        if !running && !status.success() && !self.expect_clean_exit {
            return Err(Error::CommandFailed {
                what: format!("container {}", self.name),
                status: status.to_string(),
                output: logs.tail(),
            });
        }
        Ok(())
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        if !self.closed {
            let _ = self.save_logs();
            if let Err(e) = self.docker.remove(&self.id) {
                log::warn!("cannot remove container {}: {e}", self.name);
            }
        }
    }
}
