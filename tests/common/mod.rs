//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub mod chain;
pub mod pty;
#[path = "shared.rs"]
mod shared;
pub use shared::*;

use std::sync::Arc;

use alpy::internal::docker::{ContainerSpec, Docker};
use alpy::internal::run::{owner_labels, RunId};

/// A Docker client; tests need a running engine (`scripts/setup` starts one).
pub fn docker() -> Arc<Docker> {
    alpy::logging::init();
    Docker::connect().expect("a Docker engine (run scripts/setup)")
}

/// A spec for a container of a fresh run, labelled like alpy's own.
pub fn spec(image: &str, suffix: &str, cmd: &[&str]) -> ContainerSpec {
    let run = RunId::new();
    ContainerSpec {
        image: image.into(),
        name: run.name(suffix),
        cmd: cmd.iter().map(|s| s.to_string()).collect(),
        network_mode: Some("none".into()),
        labels: owner_labels(&run),
        ..Default::default()
    }
}

/// The prompt of the test guest's shell.
pub const GUEST_PROMPT: &str = "guest# ";

/// How long the SIGKILL tests wait for a dead owner's run to be cleaned up.
/// A bound against a hang, not the figure: the tests print how long it
/// took (under 3 s on an idle machine; `docker rm` on a loaded CI machine
/// takes longer).
pub const CLEANUP_LIMIT: std::time::Duration = std::time::Duration::from_secs(20);

/// A fresh artifacts directory for one test.
pub fn artifacts(name: &str) -> std::path::PathBuf {
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("alpy-tests")
        .join(format!("{name}-{}", RunId::new()));
    std::fs::create_dir_all(&dir).expect("create artifacts dir");
    dir
}

/// Copies frames between two tap fds in both directions until dropped: a
/// wire between two nodes, without any VM.
pub struct Shuttle {
    stop: Arc<std::sync::atomic::AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Shuttle {
    pub fn new(a: std::os::fd::OwnedFd, b: std::os::fd::OwnedFd) -> Shuttle {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let a2 = a.try_clone().unwrap();
        let b2 = b.try_clone().unwrap();
        let threads = [(a, b2), (b, a2)]
            .into_iter()
            .map(|(from, to)| {
                let stop = Arc::clone(&stop);
                std::thread::spawn(move || {
                    use std::os::fd::AsFd;
                    let mut buf = vec![0u8; 65536];
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        let mut fds = [nix::poll::PollFd::new(
                            from.as_fd(),
                            nix::poll::PollFlags::POLLIN,
                        )];
                        match nix::poll::poll(&mut fds, 100u16) {
                            Ok(0) | Err(_) => continue,
                            Ok(_) => {}
                        }
                        if let Ok(n) = nix::unistd::read(&from, &mut buf) {
                            // A write to a tap whose link is down fails: drop the frame.
                            let _ = nix::unistd::write(&to, &buf[..n]);
                        }
                    }
                })
            })
            .collect();
        Shuttle { stop, threads }
    }
}

impl Drop for Shuttle {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Kernel command line of the test guest as a router between two links.
pub const ROUTER_APPEND: &str =
    "console=ttyS0,115200 quiet panic=-1 alpy.forward=1 alpy.ip=eth0=192.168.1.1/24,eth1=192.168.2.1/24";

/// A test bed builder for the routing test guest with the standard two links.
pub fn router_bed(name: &str) -> alpy::TestBedBuilder {
    let (kernel, initrd) = guest();
    router_links(name).dut(alpy::Dut::kernel(kernel, Some(initrd)).append(ROUTER_APPEND))
}

/// [`router_bed`] without its machine: the two links (node 0 on
/// 192.168.1.0/24, node 1 on 192.168.2.0/24), the prompt and power-off.
pub fn router_links(name: &str) -> alpy::TestBedBuilder {
    alpy::TestBed::builder(name)
        .link(
            alpy::Link::new()
                .node_addr("192.168.1.2/24")
                .gateway("192.168.1.1")
                .tag("ends"),
        )
        .link(
            alpy::Link::new()
                .node_addr("192.168.2.2/24")
                .gateway("192.168.2.1")
                .tag("ends"),
        )
        .prompt(GUEST_PROMPT)
        .poweroff(alpy::PowerOff::Console("poweroff -f".into()))
        .console_timeout(std::time::Duration::from_secs(120))
}

/// The unprivileged user (in the `docker` group) tests run as to check the
/// no-root path; created on first use.
pub const UNPRIVILEGED_USER: &str = "alpy-test";

/// Runs this test binary as [`UNPRIVILEGED_USER`] with `args` (exact test
/// names and harness flags). The build tree may sit where that user cannot
/// enter (a 0700 temporary clone, root's home), so a copy of the binary runs
/// from a fresh readable directory; `prepare` may put more there (it gets
/// the directory) and returns extra environment variables. Needs root.
pub fn run_unprivileged(
    args: &[&str],
    prepare: impl FnOnce(&std::path::Path) -> Vec<(String, String)>,
) -> std::process::Output {
    use std::os::unix::fs::PermissionsExt;
    let user = UNPRIVILEGED_USER;
    let exists = std::process::Command::new("id")
        .arg(user)
        .output()
        .unwrap()
        .status
        .success();
    if !exists {
        let st = std::process::Command::new("useradd")
            .args(["--system", "--no-create-home", "--groups", "docker", user])
            .status()
            .expect("useradd");
        assert!(st.success(), "useradd {user} failed");
    }
    let dir = std::env::temp_dir().join(RunId::new().name("nonroot"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let exe = dir.join("tests");
    std::fs::copy(std::env::current_exe().unwrap(), &exe).unwrap();
    let env = prepare(&dir);
    let out = std::process::Command::new("runuser")
        .args(["-u", user, "--"])
        .arg(&exe)
        .args(["--nocapture", "--include-ignored", "--exact"])
        .args(args)
        .env("TMPDIR", "/tmp")
        .env_remove("ALPY_NET_MODE")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .expect("run the tests as the unprivileged user");
    std::fs::remove_dir_all(&dir).ok();
    out
}

/// For [`run_unprivileged`]: the test guest and an artifacts directory in
/// `dir`, where that user can read and write.
pub fn readable_guest(dir: &std::path::Path) -> Vec<(String, String)> {
    let (kernel, initrd) = guest();
    let g = dir.join("guest");
    std::fs::create_dir_all(&g).unwrap();
    std::fs::copy(&kernel, g.join("vmlinuz")).unwrap();
    std::fs::copy(&initrd, g.join("initrd.img")).unwrap();
    let artifacts = dir.join("artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    std::fs::set_permissions(
        &artifacts,
        std::os::unix::fs::PermissionsExt::from_mode(0o1777),
    )
    .unwrap();
    vec![
        ("ALPY_CACHE".into(), dir.display().to_string()),
        ("ALPY_ARTIFACTS".into(), artifacts.display().to_string()),
    ]
}

/// The minimum RTT of a ping run: unlike the average, it is not skewed by
/// the first ping's ARP resolution.
pub fn min_rtt_ms(ping_output: &str) -> f64 {
    // "rtt min/avg/max/mdev = 0.050/0.061/0.075/0.010 ms"
    let stats = ping_output
        .lines()
        .find(|l| l.contains("min/avg/max"))
        .unwrap_or_else(|| panic!("no rtt line in:\n{ping_output}"));
    let nums = stats.split('=').nth(1).unwrap().trim();
    nums.split('/').next().unwrap().parse().unwrap()
}
