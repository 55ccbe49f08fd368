//! # alpy: a test harness for network virtual appliances
//!
//! alpy boots the device under test (DUT) in QEMU, gives each of its network
//! links a Docker "node" container whose network namespace holds the other
//! end of the link, runs traffic containers in those namespaces, drives
//! QEMU over QMP, talks to the serial console expect-style, captures every
//! frame to pcap and leaves nothing behind.
#![warn(missing_docs)]

pub mod error;
pub mod logging;
pub mod netns;
pub mod node;
pub mod pcap;
pub mod qemu;
pub mod qemu_process;
pub mod qmp;

pub use error::{Error, Result};
pub mod console;
pub mod docker;
pub mod reap;
pub mod remote_shell;
pub mod run;
pub mod testbed;
pub use node::{App, Impairment, Link};
pub use testbed::{Dut, PowerOff, TestBed, TestBedBuilder};
