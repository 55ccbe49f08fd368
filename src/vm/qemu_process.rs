//! The QEMU process guard: spawns QEMU from a thread that lives as long as
//! the process (so `PR_SET_PDEATHSIG` kills QEMU if the test dies), hands it
//! its tap fds and control sockets, captures its output, and tears it down.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use std::os::fd::{FromRawFd, OwnedFd};

use crate::error::{Error, Result};
use crate::util::{lock, shell_quote};
use crate::vm::qemu::{Accel, ControlFds, DiskMode, QemuConfig};
use crate::vm::qmp::Qmp;

/// How long `close()` waits for QEMU to exit after `quit`.
const QUIT_TIMEOUT: Duration = Duration::from_secs(10);
/// Lines of QEMU's output quoted in errors.
const TAIL: usize = 20;

type Tail = Arc<Mutex<VecDeque<String>>>;

/// A running QEMU. Close it with [`QemuProcess::close`]; dropping it kills
/// QEMU.
pub struct QemuProcess {
    pid: i32,
    /// A pidfd of the QEMU process, opened before anything could reap it:
    /// signals through it can never reach a process that reused the PID.
    pidfd: Option<OwnedFd>,
    qmp: Qmp,
    serial: Option<UnixStream>,
    exit_rx: Receiver<std::io::Result<ExitStatus>>,
    exit: Option<ExitStatus>,
    readers: Vec<JoinHandle<()>>,
    tail: Tail,
    command_line: String,
    accel: Accel,
    closed: bool,
}

/// Formats an exit status: `exit code 1`, `killed by SIGKILL`.
pub fn describe_exit(status: &ExitStatus) -> String {
    if let Some(code) = status.code() {
        return format!("exit code {code}");
    }
    match status.signal() {
        Some(sig) => format!("killed by {}", crate::util::signal_name(sig)),
        None => format!("{status}"),
    }
}

/// A pidfd for `pid` (Linux 5.3+), or `None` where the kernel has none.
fn pidfd_open(pid: i32) -> Option<OwnedFd> {
    // SAFETY: pidfd_open(2) takes a pid and flags and returns a new fd.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    // SAFETY: a non-negative return is a new fd that we own.
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Sends SIGKILL through a pidfd; a process already reaped is left alone
/// (ESRCH), never a stranger that reused its PID.
fn pidfd_kill(fd: &OwnedFd) {
    // SAFETY: pidfd_send_signal(2) on our pidfd, no siginfo, no flags.
    unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            fd.as_raw_fd(),
            libc::SIGKILL,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        );
    }
}

impl QemuProcess {
    /// Starts QEMU with `config`, writes its output to `log_path`, and
    /// returns once QMP is negotiated (within `timeout`). A QEMU that fails
    /// to start gives an error quoting its own message.
    pub fn start(config: &QemuConfig, log_path: &Path, timeout: Duration) -> Result<QemuProcess> {
        create_overlays(config)?;
        let accel = match config.accel {
            Some(a) => a,
            None => Accel::detect()?,
        };
        let (qmp_ours, qmp_theirs) =
            UnixStream::pair().map_err(|e| Error::io("create the QMP socket pair", e))?;
        let (serial_ours, serial_theirs) =
            UnixStream::pair().map_err(|e| Error::io("create the serial socket pair", e))?;
        let fds = ControlFds {
            qmp: qmp_theirs.as_raw_fd(),
            serial: serial_theirs.as_raw_fd(),
        };
        let args = config.args(accel, fds)?;
        let command_line = std::iter::once(config.binary.to_string_lossy().into_owned())
            .chain(args.iter().cloned())
            .map(|a| shell_quote(&a))
            .collect::<Vec<_>>()
            .join(" ");
        log::info!(target: "alpy::qemu", "starting QEMU ({accel:?}): {command_line}");
        let mut inherit: Vec<RawFd> = vec![fds.qmp, fds.serial];
        inherit.extend(config.nics.iter().map(|n| n.tap_fd));

        let log_file = File::create(log_path)
            .map_err(|e| Error::io(format!("create QEMU log {}", log_path.display()), e))?;
        let log_file = Arc::new(Mutex::new(log_file));
        let tail: Tail = Arc::new(Mutex::new(VecDeque::new()));

        let (started_tx, started_rx) = mpsc::channel();
        let (exit_tx, exit_rx) = mpsc::channel();
        let binary = config.binary.clone();
        let parent = std::process::id() as i32;
        thread::Builder::new()
            .name("qemu-spawner".into())
            .spawn(crate::logging::inherit(move || {
                let mut cmd = Command::new(&binary);
                // filter-dump stamps frames with mktime() of UTC fields:
                // only under TZ=UTC is that the epoch time.
                cmd.args(&args)
                    .env("TZ", "UTC")
                    .stdin(Stdio::null())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped());
                // SAFETY: only async-signal-safe calls (prctl, getppid, fcntl).
                unsafe {
                    cmd.pre_exec(move || {
                        if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                            return Err(std::io::Error::last_os_error());
                        }
                        // The parent may have died before prctl took effect.
                        if libc::getppid() != parent {
                            return Err(std::io::Error::other("parent exited"));
                        }
                        for &fd in &inherit {
                            if libc::fcntl(fd, libc::F_SETFD, 0) != 0 {
                                return Err(std::io::Error::last_os_error());
                            }
                        }
                        Ok(())
                    });
                }
                match cmd.spawn() {
                    Ok(mut child) => {
                        // Before child.wait() can reap it: the pidfd then
                        // names this process and no other, ever.
                        let pidfd = pidfd_open(child.id() as i32);
                        let out = (
                            child.id() as i32,
                            pidfd,
                            child.stdout.take(),
                            child.stderr.take(),
                        );
                        let _ = started_tx.send(Ok(out));
                        // This thread must live as long as QEMU: PDEATHSIG
                        // fires when the thread that forked it exits.
                        let _ = exit_tx.send(child.wait());
                    }
                    Err(e) => {
                        let _ = started_tx.send(Err(e));
                    }
                }
            }))
            .map_err(|e| Error::io("spawn the QEMU spawner thread", e))?;
        let (pid, pidfd, stdout, stderr) = started_rx
            .recv()
            .map_err(|_| Error::Qemu("the spawner thread died".into()))?
            .map_err(|e| Error::Qemu(format!("cannot run {}: {e}", config.binary.display())))?;
        // QEMU has its copies; ours would keep the sockets open after it dies.
        drop(qmp_theirs);
        drop(serial_theirs);

        let mut readers = Vec::new();
        for (stream, level) in [
            (
                stdout.map(|s| Box::new(s) as Box<dyn Read + Send>),
                log::Level::Info,
            ),
            (
                stderr.map(|s| Box::new(s) as Box<dyn Read + Send>),
                log::Level::Warn,
            ),
        ] {
            if let Some(stream) = stream {
                readers.push(spawn_reader(
                    stream,
                    level,
                    Arc::clone(&log_file),
                    Arc::clone(&tail),
                ));
            }
        }
        let proc_ = QemuProcess {
            pid,
            qmp: match Qmp::handshake(qmp_ours, timeout) {
                Ok(q) => q,
                Err(e) => {
                    return Err(startup_failure(
                        pid,
                        pidfd.as_ref(),
                        &exit_rx,
                        readers,
                        &tail,
                        &command_line,
                        e,
                    ));
                }
            },
            pidfd,
            serial: Some(serial_ours),
            exit_rx,
            exit: None,
            readers,
            tail,
            command_line,
            accel,
            closed: false,
        };
        log::debug!(target: "alpy::qemu", "QEMU pid {} ready, QMP {}", proc_.pid, proc_.qmp.greeting());
        Ok(proc_)
    }

    /// QEMU's PID.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// The full command line, shell-quoted.
    pub fn command_line(&self) -> &str {
        &self.command_line
    }

    /// The accelerator QEMU runs with.
    pub fn accel(&self) -> Accel {
        self.accel
    }

    /// QEMU's version from its QMP greeting (`7.2.22`).
    pub fn version(&self) -> String {
        let v = &self.qmp.greeting()["QMP"]["version"]["qemu"];
        format!("{}.{}.{}", v["major"], v["minor"], v["micro"])
    }

    /// The QMP session.
    pub fn qmp(&mut self) -> &mut Qmp {
        &mut self.qmp
    }

    /// Takes our end of the serial console socket (once).
    pub fn take_serial(&mut self) -> Option<UnixStream> {
        self.serial.take()
    }

    /// The last lines QEMU printed.
    pub fn output_tail(&self) -> String {
        lock(&self.tail)
            .iter()
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Waits for QEMU to exit by itself (e.g. after the guest powered off).
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus> {
        if let Some(s) = self.exit {
            return Ok(s);
        }
        match self.exit_rx.recv_timeout(timeout) {
            Ok(Ok(status)) => {
                self.exit = Some(status);
                Ok(status)
            }
            Ok(Err(e)) => Err(Error::io("wait for QEMU", e)),
            Err(RecvTimeoutError::Timeout) => Err(Error::Timeout {
                what: format!("QEMU (pid {}) to exit", self.pid),
                timeout,
                tail: self.output_tail(),
            }),
            Err(RecvTimeoutError::Disconnected) => {
                Err(Error::Qemu("the spawner thread died".into()))
            }
        }
    }

    fn kill(&self) {
        kill_child(self.pid, self.pidfd.as_ref());
    }

    /// Quits QEMU over QMP (unless it already exited), waits for it, kills
    /// it if it does not exit in time, and reports a non-zero exit, a
    /// signal, or the kill as an error.
    pub fn close(mut self) -> Result<()> {
        self.closed = true;
        let mut killed = false;
        if self.exit.is_none() {
            if let Err(e) = self.qmp.quit() {
                log::debug!(target: "alpy::qemu", "quit: {e}");
            }
            if self.wait_exit(QUIT_TIMEOUT).is_err() {
                self.kill();
                killed = true;
                self.wait_exit(QUIT_TIMEOUT)?;
            }
        }
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
        let status = self
            .exit
            .ok_or_else(|| Error::Qemu("no exit status".into()))?;
        log::debug!(target: "alpy::qemu", "QEMU pid {} ended: {}", self.pid, describe_exit(&status));
        if killed {
            return Err(Error::Qemu(format!(
                "QEMU (pid {}) did not exit within {} s of quit and was killed by SIGKILL",
                self.pid,
                QUIT_TIMEOUT.as_secs()
            )));
        }
        if !status.success() {
            return Err(Error::Qemu(format!(
                "QEMU (pid {}) ended badly: {}; last output:\n{}",
                self.pid,
                describe_exit(&status),
                self.output_tail()
            )));
        }
        Ok(())
    }
}

impl Drop for QemuProcess {
    fn drop(&mut self) {
        if !self.closed && self.exit.is_none() {
            // It may have exited unseen: look before killing.
            if let Ok(Ok(status)) = self.exit_rx.try_recv() {
                self.exit = Some(status);
                return;
            }
            log::warn!(target: "alpy::qemu", "QEMU pid {} dropped without close: killing it", self.pid);
            self.kill();
            let _ = self.wait_exit(Duration::from_secs(5));
        }
    }
}

/// Kills QEMU: through its pidfd where there is one (safe against PID
/// reuse), else by PID (kernels before 5.3).
fn kill_child(pid: i32, pidfd: Option<&OwnedFd>) {
    match pidfd {
        Some(fd) => pidfd_kill(fd),
        None => {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

fn spawn_reader(
    stream: Box<dyn Read + Send>,
    level: log::Level,
    file: Arc<Mutex<File>>,
    tail: Tail,
) -> JoinHandle<()> {
    thread::spawn(crate::logging::inherit(move || {
        let mut r = BufReader::new(stream);
        let mut line = Vec::new();
        while let Ok(n) = r.read_until(b'\n', &mut line) {
            if n == 0 {
                break;
            }
            let _ = lock(&file).write_all(&line);
            let text = String::from_utf8_lossy(&line).trim_end().to_string();
            log::log!(target: "alpy::qemu", level, "{text}");
            let mut t = lock(&tail);
            if t.len() == TAIL {
                t.pop_front();
            }
            t.push_back(text);
            line.clear();
        }
    }))
}

fn startup_failure(
    pid: i32,
    pidfd: Option<&OwnedFd>,
    exit_rx: &Receiver<std::io::Result<ExitStatus>>,
    readers: Vec<JoinHandle<()>>,
    tail: &Tail,
    command_line: &str,
    cause: Error,
) -> Error {
    let status = match exit_rx.recv_timeout(Duration::from_secs(5)) {
        Ok(Ok(s)) => Some(s),
        _ => {
            // Still running but QMP failed: do not leave it behind.
            kill_child(pid, pidfd);
            let _ = exit_rx.recv_timeout(Duration::from_secs(5));
            None
        }
    };
    for r in readers {
        let _ = r.join();
    }
    let output = lock(tail).iter().cloned().collect::<Vec<_>>().join("\n");
    match status {
        Some(s) => Error::Qemu(format!(
            "QEMU failed to start ({}): {}\ncommand: {command_line}",
            describe_exit(&s),
            if output.is_empty() { cause.to_string() } else { output }
        )),
        None => Error::Qemu(format!(
            "QEMU started but QMP did not come up ({cause}); killed it. Output:\n{output}\ncommand: {command_line}"
        )),
    }
}

/// Creates the qcow2 overlays of disks in [`DiskMode::Overlay`].
fn create_overlays(config: &QemuConfig) -> Result<()> {
    for d in &config.disks {
        if let DiskMode::Overlay(overlay) = &d.mode {
            let base: PathBuf = std::fs::canonicalize(&d.path)
                .map_err(|e| Error::io(format!("resolve {}", d.path.display()), e))?;
            let mut cmd = Command::new("qemu-img");
            cmd.args(["create", "-q", "-f", "qcow2", "-b"]).arg(&base);
            if let Some(f) = &d.format {
                cmd.args(["-F", f]);
            }
            let out = cmd
                .arg(overlay)
                .output()
                .map_err(|e| Error::io("run qemu-img (install qemu-utils)", e))?;
            if !out.status.success() {
                return Err(Error::Qemu(format!(
                    "qemu-img create overlay {} failed: {}",
                    overlay.display(),
                    String::from_utf8_lossy(&out.stderr).trim()
                )));
            }
        }
    }
    Ok(())
}
