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
//! use alpy::{App, Commands, Dut, Link, PowerOff, TestBed};
//!
//! fn main() -> alpy::Result<()> {
//!     let mut bed = TestBed::builder("forward-ipv4")
//!         .dut(Dut::kernel("vmlinuz", Some("initrd.img".into())).append("console=ttyS0,115200"))
//!         .link(Link::new().name("client").node_addr("192.168.1.2/24").gateway("192.168.1.1"))
//!         .link(Link::new().name("server").node_addr("192.168.2.2/24").gateway("192.168.2.1"))
//!         .poweroff(PowerOff::Console("poweroff -f".into()))
//!         .start()?; // nodes and taps ready, DUT paused
//!     // Start servers before the DUT runs, so nothing is missed.
//!     let server = bed.node("server")?.spawn_app(&App::tools(["iperf3", "-s", "-1"]).name("iperf"))?;
//!     bed.resume()?;
//!     bed.wait_prompt("dut# ", Duration::from_secs(60))?;
//!     bed.node("client")?.succeed("ping -c 3 192.168.2.2")?;
//!     server.close()?;
//!     bed.shutdown(Duration::from_secs(30))?; // poweroff, wait for SHUTDOWN
//!     let cap = bed.capture(1)?; // complete so far: QEMU writes each frame
//!     cap.expect_count(&Filter::new().icmp_type(8), 3)?;
//!     bed.close() // everything gone, artifacts kept
//! }
//! ```
//!
//! ## Where things are
//!
//! A test author's API is the crate root ([`TestBed`], [`TestBedBuilder`],
//! [`Dut`], [`Disk`], [`Link`], [`App`], [`Machine`], [`Segment`],
//! [`Topology`], [`WarmStart`], [`ConfigDrive`], the [`Commands`] verbs)
//! and these modules:
//!
//! - [`net`]: nodes and their links, apps, impairment;
//! - [`vm`]: the serial console's expect engine, login, a shell on the
//!   console, QMP, and the DUT's device choices (disk bus, NIC model);
//! - [`pcap`]: reading captures, filters and typed frames;
//! - [`board`]: boards on real hardware: power over SNMP PoE ports,
//!   external commands or QMP;
//! - [`image`]: appliance images from Debian packages and a TOML recipe
//!   (`alpy image build`);
//! - [`lab`]: running the same tests on an `alpy-lab` server;
//! - [`journal`] and [`report`]: a bed's events and its HTML report;
//! - [`wait`], [`error`], [`addr`], [`nic`], [`settings`], [`logging`],
//!   [`doctor`].
//!
//! [`internal`] holds what alpy's own programs and tests reach into (the
//! supervisor, QEMU's process, the Docker client, the reaper): public for
//! the workspace, with no stability promise. The layout, and why, is in
//! `docs/ARCHITECTURE.md`.
//!
//! ## Environment
//!
//! | variable | effect |
//! |---|---|
//! | `ALPY_ARTIFACTS` | base directory of test bed artifacts (default `$CARGO_TARGET_DIR/alpy`, else the `target/` above the running binary) |
//! | `ALPY_ACCEL` | `kvm` or `tcg` (default: KVM only where it works) |
//! | `ALPY_NET_MODE` | `direct` (root) or `helper` (no root); default: by capabilities |
//! | `ALPY_CACHE` | where built guests and warm-start snapshots live (default `$XDG_CACHE_HOME/alpy`, else `~/.cache/alpy`) |
//! | `ALPY_KEEP` | `on-failure` or `always`: keep beds up for debugging (`alpy down` takes a kept bed down) |
//! | `ALPY_KEEP_TIMEOUT` | seconds a kept bed waits for `alpy down` (default 1800) |
//! | `ALPY_WARM` | `off`: warm-started beds boot cold (see [`WarmStart`]) |
//! | `ALPY_WARM_MAX_MB` | size limit of the warm-start cache (default 4096) |
//! | `ALPY_WARM_MAP` | `off`: snapshots built from now on carry their RAM in the migration stream |
//! | `ALPY_SOURCE_DIR` | the alpy checkout whose image recipes `alpy doctor` compares (default: the build's) |
//! | `REMOTE_LAB_URL` | an alpy-lab server: beds run there (see [`lab`]) |
//! | `REMOTE_LAB_TOKEN` | the bearer token for it (never shown) |
//! | `REMOTE_LAB_WAIT` | seconds a bed waits in the lab's queue (default 1800) |
//! | `REMOTE_LAB_BOARD` | on a lab, the DUT is a board of this class instead of the builder's VM (see [`TestBedBuilder::lab_board`]) |
//! | `REMOTE_LAB_CA` | a PEM file of the lab's certificate authority (default: the system's roots) |
//! | `CI` | `true` or `1`: `ALPY_KEEP` is ignored (a CI job never waits for `alpy down`) |
//! | `XDG_RUNTIME_DIR` | where beds stood up by `alpy up` keep their sockets (default `/tmp/alpy-<uid>`) |
//! | `XDG_CACHE_HOME` | the cache's parent when `ALPY_CACHE` is unset (default `~/.cache`) |
//! | `DOCKER_HOST` | the Docker engine |
//! | `RUST_LOG` | terminal log level (the debug log always goes to `debug.log`) |
//!
//! [`settings::VARS`] holds the same list; `alpy --help` prints it and
//! `alpy doctor` shows each value.
#![warn(missing_docs)]

pub mod addr;
#[doc(hidden)]
pub mod bed;
pub mod board;
#[doc(hidden)]
pub mod cache;
#[doc(hidden)]
pub mod commands;
pub mod error;
pub mod image;
pub mod journal;
pub mod logging;
pub mod net;
pub mod nic;
#[doc(hidden)]
pub mod output;
pub mod pcap;
pub mod report;
#[doc(hidden)]
pub mod run;
pub mod settings;
#[doc(hidden)]
pub mod supervisor;
#[doc(hidden)]
pub mod util;
pub mod vm;
pub mod wait;

pub mod internal;

#[doc(inline)]
pub use bed::doctor;
#[doc(inline)]
pub use bed::remote as lab;

pub use addr::Mac;
pub use bed::builder::{PowerOff, TestBedBuilder};
pub use bed::config_drive::ConfigDrive;
pub use bed::dut::{Disk, Dut};
pub use bed::graph::Drawing;
pub use bed::leftovers::Leftovers;
pub use bed::machine::Machine;
pub use bed::roles::Role;
pub use bed::segment::Segment;
pub use bed::state::{PowerState, WarmOutcome};
pub use bed::testbed::TestBed;
pub use bed::timings::Timings;
pub use bed::topology::Topology;
pub use bed::warm::WarmStart;
pub use commands::Commands;
pub use error::{Error, Result};
pub use net::{App, Direction, Impairment, Link, TOOLS_IMAGE};
pub use output::{ExitStatus, Output};
pub use run::RunId;
pub use vm::login::Login;
