//! The no-root path ([`crate::net::netns::NetMode::Helper`]): one helper
//! container in the host's PID namespace enters each node's namespace with
//! `nsenter`, makes the tap there, passes its fd back over a Unix socket
//! (SCM_RIGHTS) and configures it. One container start and one `docker exec`
//! serve all nodes of a test bed.

use std::os::fd::OwnedFd;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::net::container::Container;
use crate::net::docker::{ContainerSpec, Docker};
use crate::net::netns::NetCmd;
use crate::net::{TAP_NAME, TOOLS_IMAGE};
use crate::run::{owner_labels, RunId};
use crate::util::{lock, shell_quote};

/// The helper's image (needs `ip`, `tc`, `nsenter`, `python3`).
pub const HELPER_IMAGE: &str = TOOLS_IMAGE;
/// The helper's view of its directory.
const HELPER_DIR: &str = "/alpy-net";
/// Creates a tap in the current namespace and passes its fd back.
const MKTAP_PY: &str = include_str!("helper/mktap.py");

/// One tap to make: in node `pid`'s namespace, tagged `index`, configured
/// with `cmds`.
pub(crate) struct TapJob {
    pub index: usize,
    pub pid: i32,
    pub cmds: Vec<NetCmd>,
}

/// The helper container of one test bed (started on first use) and its
/// private directory.
pub(crate) struct Helper {
    docker: Arc<Docker>,
    run: RunId,
    dir: PathBuf,
    container: Mutex<Option<Container>>,
}

impl Helper {
    /// Makes the helper's private directory; the container starts on the
    /// first script.
    pub fn new(docker: &Arc<Docker>, run: &RunId) -> Result<Helper> {
        Ok(Helper {
            docker: Arc::clone(docker),
            run: run.clone(),
            dir: make_helper_dir(run)?,
            container: Mutex::new(None),
        })
    }

    /// The private directory (shared with the helper container).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Starts the helper container unless it runs already.
    pub fn ensure_started(&self) -> Result<()> {
        let mut guard = lock(&self.container);
        if guard.is_some() {
            return Ok(());
        }
        let mut spec = ContainerSpec {
            image: HELPER_IMAGE.into(),
            name: self.run.name("helper"),
            cmd: vec!["sleep".into(), "infinity".into()],
            labels: owner_labels(&self.run),
            ..Default::default()
        };
        spec.network_mode = Some("host".into());
        spec.pid_mode = Some("host".into());
        // Just what nsenter, TUNSETIFF and sysctl writes need; not
        // --privileged, which fails where the engine lacks some caps.
        spec.cap_add = ["NET_ADMIN", "SYS_ADMIN", "SYS_PTRACE"]
            .map(String::from)
            .to_vec();
        spec.devices = vec!["/dev/net/tun".into()];
        spec.security_opt = vec!["seccomp=unconfined".into(), "apparmor=unconfined".into()];
        spec.unmask_proc = true;
        spec.binds = vec![format!("{}:{HELPER_DIR}", self.dir.display())];
        spec.labels.insert("alpy.role".into(), "helper".into());
        *guard = Some(Container::run(&self.docker, &spec, None)?);
        Ok(())
    }

    /// Runs a shell script in the helper container.
    pub fn script(&self, script: &str) -> Result<()> {
        self.ensure_started()?;
        let guard = lock(&self.container);
        let helper = guard
            .as_ref()
            .ok_or_else(|| Error::Internal("the helper container is gone".into()))?;
        log::debug!(target: "alpy::node", "helper script:\n{script}");
        helper
            .exec(&["sh", "-ec", script], Duration::from_secs(60))?
            .checked("the namespace helper script")
            .map(drop)
    }

    /// Runs commands in node `pid`'s namespace.
    pub fn in_node(&self, pid: i32, cmds: &[NetCmd]) -> Result<()> {
        self.script(&nsenter_script(pid, cmds))
    }

    /// Makes every tap of `jobs` inside its node, configures it, and
    /// returns the fds by tag: one exec for all nodes.
    pub fn make_taps(&self, jobs: &[TapJob]) -> Result<Vec<(usize, OwnedFd)>> {
        let sock_path = self.dir.join("fd.sock");
        let _ = std::fs::remove_file(&sock_path);
        let listener = UnixListener::bind(&sock_path)
            .map_err(|e| Error::io(format!("listen on {}", sock_path.display()), e))?;
        let mut script = String::new();
        for j in jobs {
            script.push_str(&format!(
                "nsenter -t {pid} -n python3 {HELPER_DIR}/mktap.py {HELPER_DIR}/fd.sock {TAP_NAME} {i}\n",
                pid = j.pid,
                i = j.index
            ));
            script.push_str(&nsenter_script(j.pid, &j.cmds));
        }
        let count = jobs.len();
        let fds = std::thread::scope(|s| {
            let receiver = s.spawn(crate::logging::inherit(|| {
                receive_fds(&listener, count, Duration::from_secs(60))
            }));
            let ran = self.script(&script);
            // Unblock the receiver if the script failed before sending all.
            if ran.is_err() {
                let _ = std::os::unix::net::UnixStream::connect(&sock_path);
            }
            let fds = crate::util::join_scoped(receiver, "the tap fd receiver");
            ran.and(fds)
        });
        let _ = std::fs::remove_file(&sock_path);
        fds
    }

    /// Removes the helper container and the directory.
    pub fn close(&self) -> Result<()> {
        let container = lock(&self.container).take();
        let r = container.map_or(Ok(()), Container::close);
        let _ = std::fs::remove_dir_all(&self.dir);
        r
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        if let Err(e) = self.close() {
            log::warn!(target: "alpy::node", "closing the helper: {e}");
        }
    }
}

/// A private (0700) directory for the helper, removed with the nodes.
fn make_helper_dir(run: &RunId) -> Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    let dir = std::env::temp_dir().join(run.name("net"));
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&dir)
        .map_err(|e| Error::io(format!("create {}", dir.display()), e))?;
    let owner = dir.join("owner");
    std::fs::write(&owner, crate::run::owner_file_text(run))
        .map_err(|e| Error::io(format!("write {}", owner.display()), e))?;
    let script = dir.join("mktap.py");
    std::fs::write(&script, MKTAP_PY)
        .map_err(|e| Error::io(format!("write {}", script.display()), e))?;
    Ok(dir)
}

/// Accepts `count` connections, each passing one fd tagged with a node index.
fn receive_fds(
    listener: &UnixListener,
    count: usize,
    timeout: Duration,
) -> Result<Vec<(usize, OwnedFd)>> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    use std::os::fd::{AsRawFd, FromRawFd, RawFd};
    let deadline = std::time::Instant::now() + timeout;
    let mut out = Vec::new();
    listener
        .set_nonblocking(false)
        .map_err(|e| Error::io("configure the fd socket", e))?;
    while out.len() < count {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return Err(Error::Timeout {
                what: format!("the helper to pass {count} tap fds (got {})", out.len()),
                timeout,
                tail: String::new(),
            });
        }
        let (stream, _) = listener
            .accept()
            .map_err(|e| Error::io("accept a tap fd", e))?;
        stream
            .set_read_timeout(Some(left))
            .map_err(|e| Error::io("configure the fd socket", e))?;
        let mut buf = [0u8; 32];
        let mut iov = [std::io::IoSliceMut::new(&mut buf)];
        let mut cmsg = nix::cmsg_space!([RawFd; 1]);
        let msg = recvmsg::<()>(
            stream.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .map_err(|e| Error::Net(format!("receive a tap fd: {e}")))?;
        let mut fd = None;
        for c in msg
            .cmsgs()
            .map_err(|e| Error::Net(format!("read a tap fd message: {e}")))?
        {
            if let ControlMessageOwned::ScmRights(fds) = c {
                // SAFETY: SCM_RIGHTS fds are new and ours to own.
                fd = fds.first().map(|&f| unsafe { OwnedFd::from_raw_fd(f) });
            }
        }
        let n = msg.bytes;
        let Some(fd) = fd else {
            // A wake-up connection after a failed script: stop waiting.
            return Err(Error::Net(
                "the helper script failed before passing every tap".into(),
            ));
        };
        let tag = std::str::from_utf8(&buf[..n])
            .ok()
            .and_then(|t| t.parse().ok())
            .ok_or_else(|| Error::Net("the helper sent a tap with a bad tag".into()))?;
        out.push((tag, fd));
    }
    Ok(out)
}

/// A shell command that runs `cmds` in node `pid`'s network namespace.
fn nsenter_script(pid: i32, cmds: &[NetCmd]) -> String {
    let body: Vec<String> = cmds.iter().map(NetCmd::to_shell).collect();
    format!(
        "nsenter -t {pid} -n sh -ec {}\n",
        shell_quote(&body.join("; "))
    )
}
