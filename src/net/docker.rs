//! A synchronous facade over bollard: what a test needs from the Docker
//! engine (containers, exec, logs, labels), with errors that say what to do.
//!
//! Each [`Docker`] client owns one current-thread tokio runtime and blocks on
//! it; never call it from async code. It honours `DOCKER_HOST`.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bollard::models::{ContainerCreateBody, ContainerSummary, HostConfig};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, InspectContainerOptions, KillContainerOptionsBuilder,
    ListContainersOptionsBuilder, LogsOptionsBuilder, RemoveContainerOptionsBuilder,
    WaitContainerOptions,
};
use futures_util::StreamExt;

use crate::error::{Error, Result};
pub use crate::output::{ContainerExit, ExitStatus, Output};

/// How long ordinary engine requests may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// A synchronous Docker engine client.
pub struct Docker {
    rt: tokio::runtime::Runtime,
    api: bollard::Docker,
    /// Tests only: make container inspects fail (see
    /// `Docker::fail_inspects`).
    fail_inspects: std::sync::atomic::AtomicBool,
}

/// What to create: image, command, namespaces, capabilities, labels.
#[derive(Debug, Clone, Default)]
pub struct ContainerSpec {
    /// Image reference, e.g. `alpy/tools`.
    pub image: String,
    /// Container name (unique per run: derive it from the run id).
    pub name: String,
    /// Command; empty keeps the image's default.
    pub cmd: Vec<String>,
    /// `none`, `host`, `container:<id>`, ...
    pub network_mode: Option<String>,
    /// `host` to share the host's PID namespace.
    pub pid_mode: Option<String>,
    /// Extra capabilities, e.g. `NET_ADMIN`.
    pub cap_add: Vec<String>,
    /// Bind mounts `host:container[:ro]`.
    pub binds: Vec<String>,
    /// Environment `KEY=value`.
    pub env: Vec<String>,
    /// Labels (the owner labels are added by the caller).
    pub labels: HashMap<String, String>,
    /// Run as this user (`uid[:gid]`).
    pub user: Option<String>,
    /// Give it all capabilities and devices.
    pub privileged: bool,
    /// Host devices to expose (`/dev/net/tun`), read-write.
    pub devices: Vec<String>,
    /// Security options (`seccomp=unconfined`, ...).
    pub security_opt: Vec<String>,
    /// Leave `/proc` unmasked and `/proc/sys` writable (namespace helpers
    /// that write per-namespace sysctls).
    pub unmask_proc: bool,
    /// Skip what a container that only holds a namespace never uses (a
    /// private IPC namespace, a cgroup namespace, the seccomp filter): it
    /// starts about 40 ms sooner. For node containers, which run `sleep`.
    pub minimal: bool,
}

impl Docker {
    /// Connects to the engine (`DOCKER_HOST` or the local socket) and checks
    /// it answers, with a message that says how to start one if not.
    pub fn connect() -> Result<Arc<Docker>> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::io("create tokio runtime for the Docker client", e))?;
        let settings = crate::settings::Settings::from_env();
        let host = settings.docker_host();
        let unreachable = |e: String| Error::Docker {
            status: None,
            context: format!("no Docker engine answers at {host}"),
            message: format!(
                "{e}; start one (scripts/setup starts dockerd, or run `dockerd &` as root) \
                 or point DOCKER_HOST at a running engine"
            ),
        };
        let api = rt
            .block_on(async { bollard::Docker::connect_with_defaults() })
            .map_err(|e| unreachable(e.to_string()))?;
        let docker = Docker {
            rt,
            api,
            fail_inspects: std::sync::atomic::AtomicBool::new(false),
        };
        docker
            .call(
                &format!("ping the engine at {host}"),
                Duration::from_secs(10),
                |api| async move { api.ping().await },
            )
            .map_err(|e| unreachable(e.to_string()))?;
        Ok(Arc::new(docker))
    }

    /// The underlying bollard client, for what this facade does not cover.
    /// Use it only through [`Docker::block_on`].
    pub fn api(&self) -> &bollard::Docker {
        &self.api
    }

    /// Runs a future on this client's runtime.
    pub fn block_on<F: Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    /// Runs `fut` on the runtime; `Err` if it did not finish within `timeout`.
    fn with_deadline<F: Future>(
        &self,
        timeout: Duration,
        fut: F,
    ) -> std::result::Result<F::Output, tokio::time::error::Elapsed> {
        self.rt
            .block_on(async move { tokio::time::timeout(timeout, fut).await })
    }

    /// Runs one engine call with a deadline, mapping errors with `context`.
    fn call<T, F, Fut>(&self, context: &str, timeout: Duration, f: F) -> Result<T>
    where
        F: FnOnce(bollard::Docker) -> Fut,
        Fut: Future<Output = std::result::Result<T, bollard::errors::Error>>,
    {
        let api = self.api.clone();
        match self.with_deadline(timeout, f(api)) {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(map_err(context, e)),
            Err(_) => Err(Error::Timeout {
                what: format!("the Docker engine to {context}"),
                timeout,
                tail: String::new(),
            }),
        }
    }

    /// The engine's version, e.g. `20.10.24+dfsg1`.
    pub fn version(&self) -> Result<String> {
        let v = self.call(
            "ask the engine's version",
            REQUEST_TIMEOUT,
            |api| async move { api.version().await },
        )?;
        Ok(v.version.unwrap_or_else(|| "(unknown version)".into()))
    }

    /// Whether `image` exists locally.
    pub fn image_exists(&self, image: &str) -> Result<bool> {
        let image = image.to_string();
        match self.call(
            &format!("inspect image {image}"),
            REQUEST_TIMEOUT,
            |api| async move { api.inspect_image(&image).await },
        ) {
            Ok(_) => Ok(true),
            Err(Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Creates a container and returns its id.
    pub fn create(&self, spec: &ContainerSpec) -> Result<String> {
        let opts = CreateContainerOptionsBuilder::default()
            .name(&spec.name)
            .build();
        let none_if_empty = |v: &Vec<String>| (!v.is_empty()).then(|| v.clone());
        let body = ContainerCreateBody {
            image: Some(spec.image.clone()),
            cmd: none_if_empty(&spec.cmd),
            env: none_if_empty(&spec.env),
            labels: Some(spec.labels.clone()),
            user: spec.user.clone(),
            host_config: Some(HostConfig {
                network_mode: spec.network_mode.clone(),
                pid_mode: spec.pid_mode.clone(),
                cap_add: none_if_empty(&spec.cap_add),
                binds: none_if_empty(&spec.binds),
                init: Some(false),
                privileged: Some(spec.privileged),
                devices: (!spec.devices.is_empty()).then(|| {
                    spec.devices
                        .iter()
                        .map(|d| bollard::models::DeviceMapping {
                            path_on_host: Some(d.clone()),
                            path_in_container: Some(d.clone()),
                            cgroup_permissions: Some("rwm".into()),
                        })
                        .collect()
                }),
                security_opt: if spec.minimal {
                    let mut o = spec.security_opt.clone();
                    o.push("seccomp=unconfined".into());
                    Some(o)
                } else {
                    none_if_empty(&spec.security_opt)
                },
                ipc_mode: spec.minimal.then(|| "none".to_string()),
                cgroupns_mode: spec
                    .minimal
                    .then_some(bollard::models::HostConfigCgroupnsModeEnum::HOST),
                masked_paths: spec.unmask_proc.then(Vec::new),
                readonly_paths: spec.unmask_proc.then(Vec::new),
                ..Default::default()
            }),
            ..Default::default()
        };
        let context = format!("create container {} from image {}", spec.name, spec.image);
        let res = self.call(&context, REQUEST_TIMEOUT, |api| async move {
            api.create_container(Some(opts), body).await
        });
        match res {
            Ok(r) => Ok(r.id),
            Err(Error::NotFound { .. }) => Err(Error::NotFound {
                what: format!("image {}", spec.image),
                hint: missing_image_hint(&spec.image),
            }),
            Err(e) => Err(e),
        }
    }

    /// Starts a created container.
    pub fn start(&self, id: &str) -> Result<()> {
        let id2 = id.to_string();
        self.call(
            &format!("start container {id}"),
            REQUEST_TIMEOUT,
            |api| async move { api.start_container(&id2, None).await },
        )
    }

    /// Makes every container inspect of this client fail, as an engine
    /// that stops answering would: for tests of the failure paths around
    /// it.
    #[cfg(test)]
    pub(crate) fn fail_inspects(&self, fail: bool) {
        self.fail_inspects
            .store(fail, std::sync::atomic::Ordering::Relaxed);
    }

    /// The engine's view of a container's state.
    fn inspect_state(&self, id: &str) -> Result<bollard::models::ContainerState> {
        if self
            .fail_inspects
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            return Err(Error::Docker {
                context: format!("inspect container {id}"),
                message: "inspect failed (injected by a test)".into(),
                status: None,
            });
        }
        let id2 = id.to_string();
        let info = self.call(
            &format!("inspect container {id}"),
            REQUEST_TIMEOUT,
            |api| async move {
                api.inspect_container(&id2, None::<InspectContainerOptions>)
                    .await
            },
        )?;
        Ok(info.state.unwrap_or_default())
    }

    /// The PID (in the host's namespace) of a running container's first process.
    pub fn pid(&self, id: &str) -> Result<i32> {
        let state = self.inspect_state(id)?;
        match state.pid {
            Some(pid) if pid > 0 && state.running == Some(true) => Ok(pid as i32),
            _ => Err(Error::Docker {
                status: None,
                context: format!("inspect container {id}"),
                message: format!(
                    "it is not running (exit code {})",
                    state.exit_code.unwrap_or(-1)
                ),
            }),
        }
    }

    /// Whether the container is running, and its exit code if not.
    pub fn state(&self, id: &str) -> Result<(bool, ExitStatus)> {
        let state = self.inspect_state(id)?;
        Ok((
            state.running == Some(true),
            ExitStatus(state.exit_code.unwrap_or(-1)),
        ))
    }

    /// Sends a signal (`SIGKILL`, `SIGTERM`, ...) to a container.
    pub fn kill(&self, id: &str, signal: &str) -> Result<()> {
        let id2 = id.to_string();
        let opts = KillContainerOptionsBuilder::default()
            .signal(signal)
            .build();
        self.call(
            &format!("kill container {id} with {signal}"),
            REQUEST_TIMEOUT,
            |api| async move { api.kill_container(&id2, Some(opts)).await },
        )
    }

    /// Waits for a container to stop and returns its exit status.
    pub fn wait(&self, id: &str, timeout: Duration) -> Result<ExitStatus> {
        let id2 = id.to_string();
        let fut = async move {
            let mut s = self.api.wait_container(&id2, None::<WaitContainerOptions>);
            match s.next().await {
                Some(Ok(r)) => Ok(ExitStatus(r.status_code)),
                // bollard reports a non-zero exit as an error: read the code from it.
                Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => {
                    Ok(ExitStatus(code))
                }
                Some(Err(e)) => Err(e),
                None => Ok(ExitStatus(-1)),
            }
        };
        match self.with_deadline(timeout, fut) {
            Ok(Ok(s)) => Ok(s),
            Ok(Err(e)) => Err(map_err(&format!("wait for container {id}"), e)),
            Err(_) => Err(Error::Timeout {
                what: format!("container {id} to exit"),
                timeout,
                tail: self.logs(id).map(|o| o.tail()).unwrap_or_default(),
            }),
        }
    }

    /// A container's stdout and stderr so far.
    pub fn logs(&self, id: &str) -> Result<Output> {
        let id2 = id.to_string();
        let opts = LogsOptionsBuilder::default()
            .stdout(true)
            .stderr(true)
            .build();
        let (stdout, stderr) = self.call(
            &format!("read logs of container {id}"),
            REQUEST_TIMEOUT,
            |api| async move { split_output(Box::pin(api.logs(&id2, Some(opts)))).await },
        )?;
        Ok(Output {
            status: ExitStatus(0),
            stdout,
            stderr,
        })
    }

    /// Runs a program in a running container and returns its output.
    pub fn exec(&self, id: &str, cmd: &[&str], timeout: Duration) -> Result<Output> {
        let cmd: Vec<String> = cmd.iter().map(|s| s.to_string()).collect();
        let id2 = id.to_string();
        let what = format!("exec {:?} in container {id}", cmd.join(" "));
        self.call(&what, timeout, |api| async move {
            let exec = api
                .create_exec(
                    &id2,
                    bollard::exec::CreateExecOptions {
                        attach_stdout: Some(true),
                        attach_stderr: Some(true),
                        cmd: Some(cmd),
                        ..Default::default()
                    },
                )
                .await?;
            let (stdout, stderr) = match api.start_exec(&exec.id, None).await? {
                bollard::exec::StartExecResults::Attached { output, .. } => {
                    split_output(output).await?
                }
                bollard::exec::StartExecResults::Detached => (Vec::new(), Vec::new()),
            };
            let info = api.inspect_exec(&exec.id).await?;
            Ok(Output {
                status: ExitStatus(info.exit_code.unwrap_or(-1)),
                stdout,
                stderr,
            })
        })
    }

    /// Removes a container, killing it first if it runs.
    pub fn remove(&self, id: &str) -> Result<()> {
        let id2 = id.to_string();
        let opts = RemoveContainerOptionsBuilder::default()
            .force(true)
            .v(true)
            .build();
        match self.call(
            &format!("remove container {id}"),
            REQUEST_TIMEOUT,
            |api| async move { api.remove_container(&id2, Some(opts)).await },
        ) {
            Err(Error::NotFound { .. }) => Ok(()),
            r => r,
        }
    }

    /// All containers (running or not) that carry label `key=value`.
    pub fn list_by_label(&self, key: &str, value: Option<&str>) -> Result<Vec<ContainerSummary>> {
        let filter = match value {
            Some(v) => format!("{key}={v}"),
            None => key.to_string(),
        };
        let filters = HashMap::from([("label".to_string(), vec![filter.clone()])]);
        let opts = ListContainersOptionsBuilder::default()
            .all(true)
            .filters(&filters)
            .build();
        self.call(
            &format!("list containers labelled {filter}"),
            REQUEST_TIMEOUT,
            |api| async move { api.list_containers(Some(opts)).await },
        )
    }
}

/// Reads a stream of container output into (stdout, stderr).
async fn split_output<S>(
    mut s: S,
) -> std::result::Result<(Vec<u8>, Vec<u8>), bollard::errors::Error>
where
    S: futures_util::Stream<
            Item = std::result::Result<bollard::container::LogOutput, bollard::errors::Error>,
        > + Unpin,
{
    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
    while let Some(item) = s.next().await {
        match item? {
            bollard::container::LogOutput::StdErr { message } => stderr.extend_from_slice(&message),
            other => stdout.extend_from_slice(&other.into_bytes()),
        }
    }
    Ok((stdout, stderr))
}

/// What to do about a missing image: alpy's own are built by set-up, a
/// user's own must be built or loaded by the user.
fn missing_image_hint(image: &str) -> String {
    if image.starts_with("alpy/") {
        "it is one of alpy's images: build it with `images/build` (scripts/setup builds them all)"
            .into()
    } else {
        format!(
            "build it (`docker build -t {image} ...`), load it (`docker load -i FILE`) \
             or pull it (`docker pull {image}`) on this host"
        )
    }
}

/// Maps a bollard error by its kind and HTTP status, never by its text.
pub(crate) fn map_err(context: &str, e: bollard::errors::Error) -> Error {
    use bollard::errors::Error as B;
    match e {
        B::DockerResponseServerError {
            status_code: 404,
            message,
        } => Error::NotFound {
            what: context.to_string(),
            hint: message,
        },
        B::DockerResponseServerError {
            status_code,
            message,
        } => Error::Docker {
            context: context.to_string(),
            message: format!("{message} (HTTP {status_code})"),
            status: Some(status_code),
        },
        // The connection itself failed: the engine went away under us.
        e @ (B::HyperLegacyError { .. }
        | B::IOError { .. }
        | B::SocketNotFoundError(_)
        | B::HttpClientError { .. }
        | B::RequestTimeoutError) => {
            let settings = crate::settings::Settings::from_env();
            let host = settings.docker_host();
            Error::Docker {
                context: context.to_string(),
                message: format!(
                    "the Docker engine at {host} stopped answering ({e}); check that dockerd \
                     still runs (`docker info`, the engine's log) and that DOCKER_HOST points at it"
                ),
                status: None,
            }
        }
        other => Error::Docker {
            context: context.to_string(),
            message: other.to_string(),
            status: None,
        },
    }
}

/// The first 12 characters of a container id.
pub(crate) fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}

#[cfg(test)]
#[path = "docker_tests.rs"]
mod tests;
