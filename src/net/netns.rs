//! Network namespace work: taps born inside a node's namespace, and the
//! `ip`/`tc`/sysctl commands that configure it.
//!
//! Two ways to do it, chosen by [`NetMode`]:
//! - **direct** (needs CAP_NET_ADMIN and CAP_SYS_ADMIN, i.e. root): a
//!   throwaway thread `setns`es into `/proc/PID/ns/net`, opens
//!   `/dev/net/tun` with `TUNSETIFF` there, and runs the host's `ip`/`tc`
//!   (children inherit the thread's namespace). About a millisecond a link.
//! - **helper** (no root needed, only access to the Docker engine): a
//!   privileged helper container in the host's PID namespace enters each
//!   node's namespace with `nsenter`, creates the tap there and passes its
//!   fd back to this process over a Unix socket (SCM_RIGHTS), then
//!   configures it; one `docker exec` serves all nodes of a test bed.

use std::fs::File;
use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd};
use std::process::{Command, Stdio};

use crate::error::{Error, Result};

/// How namespace work is done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetMode {
    /// `setns` from this process (root).
    Direct,
    /// Through a privileged helper container (no root needed).
    Helper,
}

impl NetMode {
    /// `ALPY_NET_MODE=direct|helper` if set, else direct when this process
    /// has CAP_NET_ADMIN and CAP_SYS_ADMIN, else helper.
    pub fn detect() -> Result<NetMode> {
        NetMode::detect_with(crate::settings::Settings::from_env().net_mode())
    }

    /// `forced` (`direct` or `helper`, from `ALPY_NET_MODE`) if given, else
    /// direct when this process has CAP_NET_ADMIN and CAP_SYS_ADMIN, else
    /// helper.
    pub fn detect_with(forced: Option<&str>) -> Result<NetMode> {
        match forced {
            Some("direct") => Ok(NetMode::Direct),
            Some("helper") => Ok(NetMode::Helper),
            Some("") | None => Ok(if has_net_caps() {
                NetMode::Direct
            } else {
                NetMode::Helper
            }),
            Some(other) => Err(Error::Config(format!(
                "ALPY_NET_MODE={other:?}: expected \"direct\" or \"helper\""
            ))),
        }
    }
}

/// Whether the effective capability set holds CAP_NET_ADMIN (12) and
/// CAP_SYS_ADMIN (21).
pub fn has_net_caps() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or(0);
    eff & (1 << 12) != 0 && eff & (1 << 21) != 0
}

/// One configuration command for a namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetCmd {
    /// `ip ARGS...`
    Ip(Vec<String>),
    /// `tc ARGS...`
    Tc(Vec<String>),
    /// Write `value` to `/proc/sys/KEY` (dots become slashes).
    Sysctl(String, String),
}

impl NetCmd {
    /// `ip` with whitespace-separated arguments.
    pub fn ip(args: &str) -> Self {
        NetCmd::Ip(args.split_whitespace().map(str::to_string).collect())
    }

    /// `tc` with whitespace-separated arguments.
    pub fn tc(args: &str) -> Self {
        NetCmd::Tc(args.split_whitespace().map(str::to_string).collect())
    }

    /// As a shell command line.
    pub fn to_shell(&self) -> String {
        match self {
            NetCmd::Ip(a) => format!("ip {}", a.join(" ")),
            NetCmd::Tc(a) => format!("tc {}", a.join(" ")),
            NetCmd::Sysctl(k, v) => format!("echo {v} > /proc/sys/{}", k.replace('.', "/")),
        }
    }
}

// TUNSETIFF is _IOW('T', 202, int) in <linux/if_tun.h>, though it passes an
// ifreq: the "bad" form of nix's macro takes the request code as given.
mod ioctl {
    nix::ioctl_write_ptr_bad!(
        /// TUNSETIFF: attach the fd to (or create) the named tap.
        tunsetiff,
        nix::request_code_write!(b'T', 202, std::mem::size_of::<libc::c_int>()),
        super::IfReq
    );
}
const IFF_TAP: libc::c_short = 0x0002;
const IFF_NO_PI: libc::c_short = 0x1000;

#[repr(C)]
struct IfReq {
    name: [u8; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

/// Opens `/dev/net/tun` and attaches to (or creates) tap `name` in the
/// calling thread's network namespace. The fd has FD_CLOEXEC set.
pub fn open_tap(name: &str) -> Result<OwnedFd> {
    if name.is_empty() || name.len() >= libc::IFNAMSIZ {
        return Err(Error::Net(format!(
            "tap name {name:?} must be 1 to {} bytes",
            libc::IFNAMSIZ - 1
        )));
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/net/tun")
        .map_err(|e| Error::io("open /dev/net/tun", e))?;
    let fd: OwnedFd = file.into();
    let mut req = IfReq {
        name: [0; libc::IFNAMSIZ],
        flags: IFF_TAP | IFF_NO_PI,
        _pad: [0; 22],
    };
    req.name[..name.len()].copy_from_slice(name.as_bytes());
    // SAFETY: TUNSETIFF reads an ifreq, which IfReq lays out.
    unsafe { ioctl::tunsetiff(fd.as_raw_fd(), &req) }
        .map_err(|e| Error::Net(format!("TUNSETIFF {name}: {e}")))?;
    Ok(fd)
}

/// Runs `f` in a throwaway thread that has entered the network namespace
/// of process `pid`. The thread ends with `f`, so no other code ever runs
/// in that namespace by accident.
pub fn in_netns<T, F>(pid: i32, f: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T> + Send + 'static,
{
    let path = format!("/proc/{pid}/ns/net");
    let ns = File::open(&path).map_err(|e| Error::io(format!("open {path}"), e))?;
    let h = std::thread::Builder::new()
        .name(format!("netns-{pid}"))
        .spawn(crate::logging::inherit(move || {
            nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(|e| Error::Net(format!("setns into {path}: {e} (needs CAP_SYS_ADMIN)")))?;
            f()
        }))
        .map_err(|e| Error::io("spawn a namespace thread", e))?;
    crate::util::join(h, "the namespace thread")
}

/// Runs commands in the calling thread's network namespace, in order;
/// consecutive `ip` (or `tc`) commands share one `-batch` process.
pub fn run_here(cmds: &[NetCmd]) -> Result<()> {
    let mut i = 0;
    while i < cmds.len() {
        match &cmds[i] {
            NetCmd::Sysctl(k, v) => {
                let path = format!("/proc/sys/{}", k.replace('.', "/"));
                std::fs::write(&path, v)
                    .map_err(|e| Error::io(format!("write {v} to {path}"), e))?;
                i += 1;
            }
            NetCmd::Ip(_) | NetCmd::Tc(_) => {
                let is_ip = matches!(cmds[i], NetCmd::Ip(_));
                let mut batch = String::new();
                while let Some(c) = cmds.get(i) {
                    match (c, is_ip) {
                        (NetCmd::Ip(a), true) | (NetCmd::Tc(a), false) => {
                            batch.push_str(&a.join(" "));
                            batch.push('\n');
                            i += 1;
                        }
                        _ => break,
                    }
                }
                batch_run(if is_ip { "ip" } else { "tc" }, &batch)?;
            }
        }
    }
    Ok(())
}

fn batch_run(prog: &str, batch: &str) -> Result<()> {
    let mut child = Command::new(prog)
        .args(["-batch", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::io(format!("run {prog} (install iproute2)"), e))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(batch.as_bytes())
            .map_err(|e| Error::io(format!("write to {prog} -batch"), e))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| Error::io(format!("wait for {prog}"), e))?;
    if !out.status.success() {
        return Err(Error::Net(format!(
            "{prog} -batch failed: {}\ncommands:\n{batch}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

/// Duplicates an fd (for tests that shuttle frames between taps).
pub fn dup(fd: &OwnedFd) -> Result<OwnedFd> {
    fd.try_clone().map_err(|e| Error::io("dup a tap fd", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_render_for_the_shell() {
        assert_eq!(
            NetCmd::ip("addr add 10.0.0.1/24 dev eth0").to_shell(),
            "ip addr add 10.0.0.1/24 dev eth0"
        );
        assert_eq!(
            NetCmd::Sysctl("net.ipv6.conf.eth0.disable_ipv6".into(), "0".into()).to_shell(),
            "echo 0 > /proc/sys/net/ipv6/conf/eth0/disable_ipv6"
        );
    }

    #[test]
    fn tap_names_are_checked() {
        assert!(open_tap("").is_err());
        assert!(open_tap("a-name-that-is-too-long").is_err());
    }
}
