//! A container guard: removed when closed or dropped, its logs saved.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::net::docker::{short, ContainerSpec, Docker, Output};
use crate::net::remote::NodeService;

/// A container that is removed when closed or dropped. Its logs are written
/// to `log` (debug) and, if given, to a file when it is closed.
pub struct Container {
    engine: Engine,
    id: String,
    name: String,
    log_file: Option<PathBuf>,
    /// Whether a non-zero exit before close is a failure worth reporting.
    expect_clean_exit: bool,
    /// For an app: its node and command, for the bed's journal.
    app: Option<Box<(String, String, std::time::Instant)>>,
    closed: bool,
}

/// Where the container runs.
enum Engine {
    Local(Arc<Docker>),
    /// An app in a node on a lab server (its id there).
    Remote(Arc<dyn NodeService>),
}

impl Container {
    /// An app started in a remote node (see [`crate::net::remote`]):
    /// closing it stops it there.
    pub(crate) fn remote(service: Arc<dyn NodeService>, id: String, name: String) -> Container {
        Container {
            engine: Engine::Remote(service),
            id,
            name,
            log_file: None,
            expect_clean_exit: false,
            app: None,
            closed: false,
        }
    }

    fn local(&self) -> Result<&Arc<Docker>> {
        match &self.engine {
            Engine::Local(d) => Ok(d),
            Engine::Remote(_) => Err(crate::net::remote::local_only(
                "this operation on a container",
                &self.name,
            )),
        }
    }

    /// Creates and starts a container from `spec`.
    pub fn run(
        docker: &Arc<Docker>,
        spec: &ContainerSpec,
        log_file: Option<&Path>,
    ) -> Result<Self> {
        let id = docker.create(spec)?;
        let c = Container {
            engine: Engine::Local(Arc::clone(docker)),
            id,
            name: spec.name.clone(),
            log_file: log_file.map(Path::to_path_buf),
            expect_clean_exit: false,
            app: None,
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

    /// Marks it as an app of `node` running `command`: its end goes to
    /// the bed's journal when it is closed.
    pub(crate) fn journaled_as_app(mut self, node: &str, command: String) -> Self {
        self.app = Some(Box::new((
            node.to_string(),
            command,
            std::time::Instant::now(),
        )));
        self
    }

    /// The container's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The container's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The client this container belongs to (`None` for an app on a lab
    /// server).
    pub fn docker(&self) -> Option<&Arc<Docker>> {
        match &self.engine {
            Engine::Local(d) => Some(d),
            Engine::Remote(_) => None,
        }
    }

    /// The host PID of its first process (it must be running).
    pub fn pid(&self) -> Result<i32> {
        self.local()?.pid(&self.id)
    }

    /// Runs a program inside it.
    pub fn exec(&self, cmd: &[&str], timeout: Duration) -> Result<Output> {
        self.local()?.exec(&self.id, cmd, timeout)
    }

    /// Fails with its last log lines if it is no longer running.
    pub fn ensure_running(&self) -> Result<()> {
        let (running, status) = self.local()?.state(&self.id)?;
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
                .local()?
                .logs(&self.id)
                .map(|o| o.tail())
                .unwrap_or_default(),
        })
    }

    /// Fails like [`Container::ensure_running`] if it exits within `grace`
    /// (an app that dies at once: a bad command, a missing file).
    pub fn ensure_running_for(&self, grace: Duration) -> Result<()> {
        if let Engine::Remote(_) = self.engine {
            return Ok(()); // the lab server waited its grace before answering
        }
        if !grace.is_zero() {
            match self.local()?.wait(&self.id, grace) {
                Err(Error::Timeout { .. }) => {}
                Err(e) => return Err(e),
                Ok(_) => {} // exited: ensure_running says how
            }
        }
        self.ensure_running()
    }

    /// Waits for it to exit; returns its status and output.
    pub fn wait(&mut self, timeout: Duration) -> Result<Output> {
        let docker = self.local()?;
        let status = docker.wait(&self.id, timeout)?;
        let mut out = docker.logs(&self.id)?;
        out.status = status;
        self.expect_clean_exit = true;
        Ok(out)
    }

    fn save_logs(&self) -> Result<Output> {
        let out = self.local()?.logs(&self.id)?;
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
        if let Engine::Remote(service) = &self.engine {
            service.stop_app(&self.id)?;
            self.closed = true;
            log::debug!("stopped remote app {} ({})", self.name, self.id);
            return Ok(());
        }
        let docker = Arc::clone(self.local()?);
        // Whatever inspecting says, the container is removed; and it counts
        // as closed only once it is, so that Drop tries again otherwise.
        let state = docker.state(&self.id);
        // A forced remove kills a running container (SIGKILL) itself.
        let logs = self.save_logs();
        docker.remove(&self.id)?;
        self.closed = true;
        log::debug!("removed container {}", self.name);
        let (running, status) = state?;
        if let Some((node, command, started)) = self.app.as_deref() {
            crate::journal::emit(crate::journal::Event::App {
                name: self.name.clone(),
                node: node.clone(),
                command: command.clone(),
                secs: (started.elapsed().as_secs_f64() * 1e3).round() / 1e3,
                log: self
                    .log_file
                    .as_ref()
                    .and_then(|p| p.file_name())
                    .map(|f| f.to_string_lossy().into_owned()),
                exit_code: (!running).then_some(status.0),
            });
        }
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
    /// Removes it without reading its state or logs first: for a container
    /// whose own process only sleeps (a node's tools container), where
    /// both are empty and cost two engine calls.
    pub(crate) fn discard(mut self) -> Result<()> {
        let docker = Arc::clone(self.local()?);
        docker.remove(&self.id)?;
        self.closed = true;
        log::debug!("removed container {}", self.name);
        Ok(())
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        if self.closed {
            return;
        }
        match &self.engine {
            Engine::Remote(service) => {
                if let Err(e) = service.stop_app(&self.id) {
                    log::warn!("cannot stop remote app {}: {e}", self.name);
                }
            }
            Engine::Local(docker) => {
                let _ = self.save_logs();
                if let Err(e) = docker.remove(&self.id) {
                    log::warn!("cannot remove container {}: {e}", self.name);
                }
            }
        }
    }
}
