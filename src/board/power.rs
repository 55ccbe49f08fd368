//! Switching a board's power: SNMP PoE ports, external commands, QMP.

use std::fmt;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::error::{Error, Result};

/// Whether a board's power port is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortPower {
    /// Powered.
    On,
    /// Not powered.
    Off,
}

/// A secret (an SNMP community, a v3 key): never printed, never logged,
/// and serialised as `"***"`, so no answer built from a configuration can
/// carry it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl<'de> serde::Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Secret, D::Error> {
        let s = String::deserialize(d)?;
        if s == "***" {
            return Err(serde::de::Error::custom(
                "\"***\" is a secret as alpy shows it, not its value: give the real one",
            ));
        }
        Ok(Secret(s))
    }
}

impl serde::Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str("***")
    }
}

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The value, for the protocol that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Something that switches one board's power.
pub trait PowerDriver: Send + Sync {
    /// Switches the port on or off.
    fn set(&self, power: PortPower) -> Result<()>;
    /// The port's state as the switch reports it.
    fn status(&self) -> Result<PortPower>;
    /// What the driver talks to, for errors and logs (no secrets):
    /// `SNMP agent 10.0.0.5:161 port 1.7`.
    fn describe(&self) -> String;
    /// The power switch this port belongs to: requests to one switch are
    /// serialised ([`Power`] takes a lock named after it).
    fn switch(&self) -> String;
}

/// How long a power request waits for another to the same switch.
const LOCK_WAIT: Duration = Duration::from_secs(120);

/// A board's power: a driver, the board's name in every error, and one
/// request at a time per power switch (on this host: the lock is a file
/// in this user's runtime directory).
pub struct Power {
    board: String,
    driver: Box<dyn PowerDriver>,
    lock_dir: PathBuf,
}

impl Power {
    /// The power of board `board`, switched by `driver`.
    pub fn new(board: &str, driver: Box<dyn PowerDriver>) -> Power {
        let lock_dir = crate::settings::Settings::from_env()
            .registry_dir()
            .parent()
            .map(|p| p.join("power"))
            .unwrap_or_else(|| std::env::temp_dir().join("alpy-power"));
        Power {
            board: board.to_string(),
            driver,
            lock_dir,
        }
    }

    /// Powers the board on.
    pub fn on(&self) -> Result<()> {
        self.locked("power on", || self.driver.set(PortPower::On))
    }

    /// Powers the board off.
    pub fn off(&self) -> Result<()> {
        self.locked("power off", || self.driver.set(PortPower::Off))
    }

    /// Off, `off_for`, then on: each half a request of its own, so another
    /// board on the switch is not kept waiting for the pause.
    pub fn cycle(&self, off_for: Duration) -> Result<()> {
        self.off()?;
        std::thread::sleep(off_for);
        self.on()
    }

    /// The port's state, as the switch reports it.
    pub fn status(&self) -> Result<PortPower> {
        self.locked("read the power state", || self.driver.status())
    }

    /// Runs `f` holding the switch's lock (an `flock` on a file named
    /// after the switch), and names the board and the driver in its error.
    fn locked<T>(&self, what: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
        let name = self.driver.switch();
        let file = self.lock_dir.join(format!("{}.lock", lock_name(&name)));
        std::fs::create_dir_all(&self.lock_dir).map_err(|e| Error::Io {
            context: format!("create {}", self.lock_dir.display()),
            source: e,
        })?;
        let f_lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&file)
            .map_err(|e| Error::Io {
                context: format!("open the power lock {}", file.display()),
                source: e,
            })?;
        // Wait for the switch, but not forever: a request that hangs
        // elsewhere is named, not waited on in silence.
        let deadline = std::time::Instant::now() + LOCK_WAIT;
        let mut f_lock = f_lock;
        let _held = loop {
            match nix::fcntl::Flock::lock(f_lock, nix::fcntl::FlockArg::LockExclusiveNonblock) {
                Ok(held) => break held,
                Err((back, nix::errno::Errno::EWOULDBLOCK))
                    if std::time::Instant::now() < deadline =>
                {
                    f_lock = back;
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err((_, nix::errno::Errno::EWOULDBLOCK)) => {
                    return Err(self.named(
                        what,
                        Error::Timeout {
                            what: format!(
                                "power switch {name} (another request holds {})",
                                file.display()
                            ),
                            timeout: LOCK_WAIT,
                            tail: String::new(),
                        },
                    ))
                }
                Err((_, e)) => {
                    return Err(Error::Io {
                        context: format!("lock {} (power switch {name})", file.display()),
                        source: e.into(),
                    })
                }
            }
        };
        f().map_err(|e| self.named(what, e))
    }

    fn named(&self, what: &str, e: Error) -> Error {
        let detail = match e {
            // The driver's own words, without "network set-up:".
            Error::Net(m) => m,
            e => e.to_string(),
        };
        Error::Power {
            board: self.board.clone(),
            what: format!("{what} through {}", self.driver.describe()),
            detail,
        }
    }
}

/// A file name for a switch: its characters that are safe, and a hash.
fn lock_name(switch: &str) -> String {
    use sha2::{Digest, Sha256};
    let safe: String = switch
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .take(40)
        .collect();
    let h = Sha256::digest(switch.as_bytes());
    format!("{safe}-{:02x}{:02x}{:02x}{:02x}", h[0], h[1], h[2], h[3])
}

mod snmp;
pub use snmp::{SnmpAuth, SnmpPoe, V3Auth, V3Privacy};

/// Power by external commands, as labgrid's ExternalPowerDriver: `on`,
/// `off` and `status` are argv lists run without a shell; `status` prints
/// `on` or `off` (or exits 0 for on, 1 for off).
#[derive(Clone)]
pub struct CommandPower {
    /// Switches the board on.
    pub on: Vec<String>,
    /// Switches it off.
    pub off: Vec<String>,
    /// Reports its state.
    pub status: Vec<String>,
    /// The switch the commands drive (requests to one switch never
    /// overlap).
    pub switch: String,
    /// How long each command may take.
    pub timeout: Duration,
}

impl CommandPower {
    /// Commands for switch `switch`, each given 30 s.
    pub fn new(switch: &str, on: &[&str], off: &[&str], status: &[&str]) -> CommandPower {
        let v = |a: &[&str]| a.iter().map(|s| s.to_string()).collect();
        CommandPower {
            on: v(on),
            off: v(off),
            status: v(status),
            switch: switch.to_string(),
            timeout: Duration::from_secs(30),
        }
    }

    fn run(&self, argv: &[String]) -> Result<crate::Output> {
        let (prog, args) = argv
            .split_first()
            .ok_or_else(|| Error::Config("an empty power command".into()))?;
        use std::os::unix::process::CommandExt;
        // Its own process group: a timeout kills what it started too, so
        // no grandchild keeps the pipes (and the switch's lock) held.
        let child = Command::new(prog)
            .args(args)
            .process_group(0)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .map_err(|e| Error::Io {
                context: format!("run {prog}"),
                source: e,
            })?;
        wait_output(child, self.timeout, &shown(argv))
    }
}

/// A command as errors show it: the program and how many arguments, never
/// the arguments (a PDU tool may take a password there).
fn shown(argv: &[String]) -> String {
    match argv.split_first() {
        Some((prog, [])) => prog.clone(),
        Some((prog, rest)) => format!("{prog} (and {} argument(s), not shown)", rest.len()),
        None => "(empty command)".into(),
    }
}

impl std::fmt::Debug for CommandPower {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CommandPower")
            .field("on", &shown(&self.on))
            .field("off", &shown(&self.off))
            .field("status", &shown(&self.status))
            .field("switch", &self.switch)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl PowerDriver for CommandPower {
    fn set(&self, power: PortPower) -> Result<()> {
        let argv = match power {
            PortPower::On => &self.on,
            PortPower::Off => &self.off,
        };
        let out = self.run(argv)?;
        out.checked(&shown(argv)).map(drop)
    }

    fn status(&self) -> Result<PortPower> {
        let out = self.run(&self.status)?;
        match out.stdout_str().trim().to_ascii_lowercase().as_str() {
            "on" | "1" | "true" => Ok(PortPower::On),
            "off" | "0" | "false" => Ok(PortPower::Off),
            _ if out.status.success() => Ok(PortPower::On),
            _ if out.status.code() == 1 => Ok(PortPower::Off),
            other => Err(Error::CommandFailed {
                what: shown(&self.status),
                status: out.status.to_string(),
                output: format!("not a power state: {other:?} {}", out.stderr_str()),
            }),
        }
    }

    fn describe(&self) -> String {
        format!("command power switch {}", self.switch)
    }

    fn switch(&self) -> String {
        format!("command:{}", self.switch)
    }
}

/// A virtual board's power through QEMU's QMP socket: off stops the
/// machine, on resets and runs it.
#[derive(Debug, Clone)]
pub struct QmpPower {
    /// QEMU's QMP socket (`-qmp unix:PATH,server=on,wait=off`).
    pub socket: PathBuf,
    /// How long to wait for QEMU.
    pub timeout: Duration,
}

impl QmpPower {
    /// Power through the QMP socket at `socket`.
    pub fn new(socket: impl Into<PathBuf>) -> QmpPower {
        QmpPower {
            socket: socket.into(),
            timeout: Duration::from_secs(10),
        }
    }

    fn qmp(&self) -> Result<crate::vm::qmp::Qmp> {
        let s = std::os::unix::net::UnixStream::connect(&self.socket).map_err(|e| Error::Io {
            context: format!("connect to QMP at {}", self.socket.display()),
            source: e,
        })?;
        crate::vm::qmp::Qmp::handshake(s, self.timeout)
    }
}

impl PowerDriver for QmpPower {
    fn set(&self, power: PortPower) -> Result<()> {
        let mut q = self.qmp()?;
        match power {
            PortPower::Off => q.stop(),
            PortPower::On => {
                q.system_reset()?;
                q.cont()
            }
        }
    }

    fn status(&self) -> Result<PortPower> {
        Ok(match self.qmp()?.query_status()?.as_str() {
            "running" => PortPower::On,
            _ => PortPower::Off,
        })
    }

    fn describe(&self) -> String {
        format!("QMP at {}", self.socket.display())
    }

    fn switch(&self) -> String {
        format!("qmp:{}", self.socket.display())
    }
}

/// Waits for `child` within `timeout` (killing it after), with what it
/// printed.
fn wait_output(
    mut child: std::process::Child,
    timeout: Duration,
    what: &str,
) -> Result<crate::Output> {
    use std::io::Read;
    let mut pipes = (child.stdout.take(), child.stderr.take());
    let read = |p: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut p) = p {
                let _ = p.read_to_end(&mut buf);
            }
            buf
        })
    };
    let out = read(pipes.0.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let err = read(pipes.1.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let deadline = std::time::Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20))
            }
            Ok(None) => {
                let _ = nix::sys::signal::killpg(
                    nix::unistd::Pid::from_raw(child.id() as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
                let _ = child.wait();
                return Err(Error::Timeout {
                    what: format!("power command {what}"),
                    timeout,
                    tail: String::new(),
                });
            }
            Err(e) => {
                return Err(Error::Io {
                    context: format!("wait for {what}"),
                    source: e,
                })
            }
        }
    };
    use std::os::unix::process::ExitStatusExt;
    let code = status
        .code()
        .map(i64::from)
        .or_else(|| status.signal().map(|s| 128 + i64::from(s)))
        .unwrap_or(-1);
    Ok(crate::Output {
        status: crate::ExitStatus(code),
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    })
}
