//! # alpy: a test harness for network virtual appliances
//!
//! alpy boots the device under test (DUT) in QEMU, gives each of its network
//! links a Docker "node" container whose network namespace holds the other
//! end of the link (a tap born inside the namespace: no bridge, no NAT),
//! runs traffic containers in those namespaces, drives QEMU over QMP, talks
//! to the serial console expect-style, captures every frame of every link to
//! pcap, and leaves nothing behind, even after a crash.
//!
//! ## A complete test
//!
//! ```no_run
//! use std::time::Duration;
//! use alpy::pcap::Filter;
//! use alpy::{App, Dut, Link, PowerOff, TestBed};
//!
//! fn main() -> alpy::Result<()> {
//!     let mut bed = TestBed::builder("forward-ipv4")
//!         .dut(Dut::kernel("vmlinuz", Some("initrd.img".into())).append("console=ttyS0,115200"))
//!         .link(Link::new().node_addr("192.168.1.2/24").gateway("192.168.1.1"))
//!         .link(Link::new().node_addr("192.168.2.2/24").gateway("192.168.2.1"))
//!         .poweroff(PowerOff::Console("poweroff -f".into()))
//!         .start()?; // nodes and taps ready, DUT paused
//!     // Start servers before the DUT runs, so nothing is missed.
//!     let server = bed.node(1).spawn_app(&App::new("alpy/tools").cmd(["iperf3", "-s", "-1"]))?;
//!     bed.resume()?;
//!     bed.wait_prompt("dut# ", Duration::from_secs(60))?;
//!     bed.node(0)
//!         .run_app(&App::new("alpy/tools").cmd(["ping", "-c", "3", "192.168.2.2"]), Duration::from_secs(30))?
//!         .checked("ping through the DUT")?;
//!     server.close()?;
//!     bed.shutdown(Duration::from_secs(30))?; // poweroff, wait for SHUTDOWN
//!     let dir = bed.artifacts_dir().to_path_buf();
//!     bed.close()?; // everything gone, artifacts kept
//!     let cap = alpy::pcap::Capture::open(&dir.join("link1.pcap"))?;
//!     cap.expect_count(&Filter::new().icmp_type(8), 3)?;
//!     Ok(())
//! }
//! ```
//!
//! ## Where things are
//!
//! - [`testbed`]: the one call that stands a DUT and its links up, in order.
//! - [`node`]: node containers, taps, addresses, app containers, impairment.
//! - [`qemu`], [`qemu_process`], [`qmp`]: the QEMU command line, process and
//!   QMP client.
//! - [`console`], [`remote_shell`]: the expect engine and a shell on it.
//! - [`pcap`]: reading the captures; [`reap`]: leftovers of crashed runs.
//! - [`docker`]: a synchronous Docker client; [`logging`]: logs and steps.
//!
//! ## Environment
//!
//! | variable | effect |
//! |---|---|
//! | `ALPY_ARTIFACTS` | base directory of test bed artifacts (default `target/alpy`) |
//! | `ALPY_ACCEL` | `kvm` or `tcg` (default: KVM only where it works) |
//! | `ALPY_NET_MODE` | `direct` (root) or `helper` (no root); default: by capabilities |
//! | `DOCKER_HOST` | the Docker engine |
//! | `RUST_LOG` | terminal log level (the debug log always goes to `debug.log`) |
#![warn(missing_docs)]

pub mod error;
pub mod impair;
pub mod logging;
pub mod netns;
pub mod node;
pub mod pcap;
pub mod qemu;
pub mod qemu_process;
pub mod qmp;

pub use error::{Error, Result};
pub mod cache;
pub mod console;
pub mod docker;
pub mod doctor;
pub mod reap;
pub mod remote_shell;
pub mod run;
pub mod testbed;
pub use node::{App, Impairment, Link};
pub use testbed::{Dut, PowerOff, TestBed, TestBedBuilder};
