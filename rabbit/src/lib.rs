//! # carrot: the library the Rabbit tests share
//!
//! Rabbit is alpy's example appliance (built by `rabbit/image/build`).
//! carrot starts a Rabbit test bed with N links, logs in on the console,
//! uploads and runs Rabbit's configuration scripts (`rabbit/config/`), and
//! starts traffic apps (iperf3, HTTP backends and clients) in the nodes.
//!
//! Link `i` joins Rabbit's `eth<i>` (192.168.<i+1>.1/24) and node `i`
//! (192.168.<i+1>.2/24, gateway Rabbit).
//!
//! Two Rabbits in a chain ([`Rabbit::start_chain`]): node0, Rabbit `a`,
//! Rabbit `b`, node1. `a` has 192.168.1.1/24 on `eth0` (node0's link) and
//! [`CHAIN_A`] on `eth1`; `b` has [`CHAIN_B`] on `eth0` and 192.168.2.1/24
//! on `eth1` (node1's link); each routes to the far node's subnet.
//!
//! Each configuration step names a *feature*; setting `RABBIT_SKIP` to a
//! comma-separated list of features skips those steps, so a test can be seen
//! to fail against a Rabbit that lacks what it tests.
#![warn(missing_docs)]

pub mod config;
pub mod image;
pub mod report;
pub mod suite;
pub mod traffic;

use std::net::IpAddr;
use std::time::Duration;

use alpy::addr::IpNet;
use alpy::vm::NicModel;
use alpy::vm::RemoteShell;
use alpy::WarmStart;
use alpy::{Dut, Link, Login, PowerOff, Result, TestBed};

pub use image::RabbitImage;
pub use report::{run, run_chain, Report};

/// Rabbit's console prompt after login.
pub const PROMPT: &str = "rabbit# ";
/// Rabbit's root password.
pub const PASSWORD: &str = "rabbit";
/// How long Rabbit may take to boot (it takes about 8 s under TCG).
pub const BOOT_TIMEOUT: Duration = Duration::from_secs(120);

/// Rabbit `a`'s address on the wire between two Rabbits in a chain.
pub const CHAIN_A: &str = "10.10.0.1";
/// Rabbit `b`'s address there.
pub const CHAIN_B: &str = "10.10.0.2";

/// Rabbit's address on link `i`.
pub fn rabbit_addr(i: usize) -> IpAddr {
    IpAddr::from([192, 168, i as u8 + 1, 1])
}

/// Node `i`'s address.
pub fn node_addr(i: usize) -> IpAddr {
    IpAddr::from([192, 168, i as u8 + 1, 2])
}

/// Node `i`'s address with its prefix (`/24`).
pub fn node_net(i: usize) -> IpNet {
    IpNet::new(node_addr(i), 24).unwrap_or_else(|_| unreachable!("24 is a valid IPv4 prefix"))
}

/// Runs configuration script `script` (from `rabbit/config/`) on the
/// bed's Rabbit, as a timed step.
fn configure_bed(bed: &mut TestBed, feature: &str, script: &str, args: &[&str]) -> Result<String> {
    let text = config::script(script)?;
    let what = format!("Configure {feature} ({script} {})", args.join(" "));
    bed.timed(&what, |bed| {
        bed.shell()?
            .upload_and_run(text, args)?
            .checked(&format!("{script} on Rabbit"))
            .map(|out| out.stdout_str())
    })
}

/// Rabbit's ready point with `links` links: logged in, addresses set. Its
/// version names the script and whether `RABBIT_SKIP` leaves it out, so a
/// changed script or skip makes a new snapshot.
fn ready_point(links: usize) -> Result<WarmStart> {
    let skip = config::skipped("addresses");
    let version = format!(
        "carrot-ready-v1 links={links} skip={skip} addresses.sh={}",
        config::script("addresses.sh")?
    );
    Ok(WarmStart::new(&version, move |bed| {
        if skip {
            log::warn!(target: "carrot", "RABBIT_SKIP: not configuring addresses");
            return Ok(());
        }
        let n = links.to_string();
        configure_bed(bed, "addresses", "addresses.sh", &[&n]).map(drop)
    })
    .boot_timeout(BOOT_TIMEOUT))
}

/// The ready point of a Rabbit in a chain: logged in, its two links
/// addressed and a route to the far node's subnet. Each Rabbit has its
/// own snapshot.
fn chain_ready_point() -> WarmStart {
    let skip = config::skipped("addresses");
    let version = format!("carrot-chain-v1 skip={skip}");
    WarmStart::per_machine(&version, move |m| {
        if skip {
            log::warn!(target: "carrot", "RABBIT_SKIP: not configuring addresses");
            return Ok(());
        }
        let (eth0, eth1, route) = if m.name() == "a" {
            (
                "192.168.1.1/24".to_string(),
                format!("{CHAIN_A}/30"),
                format!("192.168.2.0/24 via {CHAIN_B}"),
            )
        } else {
            (
                format!("{CHAIN_B}/30"),
                "192.168.2.1/24".to_string(),
                format!("192.168.1.0/24 via {CHAIN_A}"),
            )
        };
        use alpy::Commands;
        m.shell()?
            .succeed(&format!(
                "ip addr add {eth0} dev eth0 && ip link set eth0 up && \
                 ip addr add {eth1} dev eth1 && ip link set eth1 up && ip route add {route}"
            ))
            .map(drop)
    })
    .boot_timeout(BOOT_TIMEOUT)
}

/// A running Rabbit with its links (or two Rabbits in a chain).
pub struct Rabbit {
    bed: TestBed,
    links: usize,
}

impl Rabbit {
    /// Starts a Rabbit test bed with `links` links, logged in with the link
    /// addresses set: restored from a saved ready point (warm start; the
    /// first test with this many links builds it), or booted cold with
    /// `ALPY_WARM=off`.
    pub fn start(name: &str, links: usize) -> Result<Rabbit> {
        let img = RabbitImage::find()?;
        let mut b = TestBed::builder(name)
            .dut(
                Dut::kernel(&img.kernel, Some(img.initrd.clone()))
                    .append("console=ttyS0,115200 root=/dev/vda quiet panic=-1")
                    .disk(alpy::Disk::new(&img.disk).format("qcow2"))
                    .nic_model(NicModel::VirtioNet)
                    .extra_arg("-no-reboot"),
            )
            .login(Login::new("root").password(PASSWORD).prompt(PROMPT))
            .warm_start(ready_point(links)?)
            .poweroff(PowerOff::AcpiButton)
            .console_timeout(Duration::from_secs(60));
        for i in 0..links {
            b = b.link(Link::new().node_addr(node_net(i)).gateway(rabbit_addr(i)));
        }
        let mut bed = b.start()?;
        bed.boot(BOOT_TIMEOUT)?;
        Ok(Rabbit { bed, links })
    }

    /// Starts two Rabbits in a chain, `a` and `b`: node0 on `a`'s `eth0`,
    /// `a`'s `eth1` wired to `b`'s `eth0`, node1 on `b`'s `eth1`. Each is
    /// logged in with its addresses and a route to the far subnet, each
    /// restored from its own snapshot (built on first use).
    pub fn start_chain(name: &str) -> Result<Rabbit> {
        let img = RabbitImage::find()?;
        let rabbit = || {
            Dut::kernel(&img.kernel, Some(img.initrd.clone()))
                .append("console=ttyS0,115200 root=/dev/vda quiet panic=-1")
                .disk(alpy::Disk::new(&img.disk).format("qcow2"))
                .nic_model(NicModel::VirtioNet)
                .extra_arg("-no-reboot")
        };
        let mut bed = TestBed::builder(name)
            .machine("a", rabbit())
            .machine("b", rabbit())
            .link(
                Link::new()
                    .name("node0")
                    .on("a:0")
                    .node_addr(node_net(0))
                    .gateway(rabbit_addr(0)),
            )
            .segment(alpy::Segment::new("ab").end("a:1").end("b:0"))
            .link(
                Link::new()
                    .name("node1")
                    .on("b:1")
                    .node_addr(node_net(1))
                    .gateway(rabbit_addr(1)),
            )
            .login(Login::new("root").password(PASSWORD).prompt(PROMPT))
            .warm_start(chain_ready_point())
            .poweroff(PowerOff::AcpiButton)
            .console_timeout(Duration::from_secs(60))
            .start()?;
        bed.boot(BOOT_TIMEOUT)?;
        Ok(Rabbit { bed, links: 2 })
    }

    /// Runs configuration script `script` on Rabbit `machine` of a chain
    /// (`a` or `b`), unless `feature` is listed in `RABBIT_SKIP`.
    pub fn configure_on(
        &mut self,
        machine: &str,
        feature: &str,
        script: &str,
        args: &[&str],
    ) -> Result<Option<String>> {
        if config::skipped(feature) {
            log::warn!(target: "carrot", "RABBIT_SKIP: not configuring {feature} on {machine}");
            return Ok(None);
        }
        let text = config::script(script)?;
        let what = format!(
            "Configure {feature} on {machine} ({script} {})",
            args.join(" ")
        );
        self.bed
            .timed(&what, |bed| {
                bed.machine(machine)?
                    .shell()?
                    .upload_and_run(text, args)?
                    .checked(&format!("{script} on Rabbit {machine}"))
                    .map(|out| out.stdout_str())
            })
            .map(Some)
    }

    /// The test bed underneath (nodes, console, QMP, artifacts).
    pub fn bed(&mut self) -> &mut TestBed {
        &mut self.bed
    }

    /// How many links.
    pub fn links(&self) -> usize {
        self.links
    }

    /// Rabbit's shell (kept by the test bed: attached once).
    pub fn shell(&mut self) -> Result<RemoteShell<'_>> {
        self.bed.shell()
    }

    /// Runs configuration script `script` (from `rabbit/config/`) with
    /// `args`, unless `feature` is listed in `RABBIT_SKIP`. Returns its
    /// output, or `None` if skipped.
    pub fn configure(
        &mut self,
        feature: &str,
        script: &str,
        args: &[&str],
    ) -> Result<Option<String>> {
        if config::skipped(feature) {
            log::warn!(target: "carrot", "RABBIT_SKIP: not configuring {feature} ({script})");
            return Ok(None);
        }
        configure_bed(&mut self.bed, feature, script, args).map(Some)
    }

    /// Powers Rabbit off with the ACPI button and waits until it is off.
    pub fn power_off(&mut self) -> Result<()> {
        self.bed.shutdown(Duration::from_secs(60))
    }

    /// Closes the test bed; returns the artifacts directory. A Rabbit that
    /// booted cold (`ALPY_WARM=off`) is powered off first; a restored one
    /// is disposable, and quitting QEMU is enough (2.4 s less per test).
    pub fn finish(mut self) -> Result<std::path::PathBuf> {
        let dir = self.bed.artifacts_dir().to_path_buf();
        let running = matches!(
            self.bed.power_state(),
            alpy::PowerState::Running | alpy::PowerState::Paused
        );
        if running && self.bed.warm_outcome() == Some(alpy::WarmOutcome::Cold) {
            self.power_off()?;
        }
        self.bed.close()?;
        Ok(dir)
    }
}
