//! The client of an `alpy-lab` server: tests stay here, beds run on the
//! lab host.
//!
//! Existing tests need no change: with `REMOTE_LAB_URL` and
//! `REMOTE_LAB_TOKEN` set, [`crate::TestBedBuilder::start`] and
//! [`crate::TestBed::from_topology`] stand their bed up on the lab and
//! return a [`crate::TestBed`] whose console, nodes, apps, captures, QMP
//! ([`crate::TestBed::qmp_execute`]) and power go through the server. A
//! test's lab is its own, destroyed when the bed closes.
//!
//! ```no_run
//! use alpy::Commands;
//! # fn main() -> alpy::Result<()> {
//! // REMOTE_LAB_URL=http://lab-host:8300 REMOTE_LAB_TOKEN=alpylab_... cargo test
//! let t = alpy::TestBed::from_topology(
//!     std::path::Path::new("topologies/forward.toml"),
//!     std::time::Duration::from_secs(120),
//! )?;
//! assert!(t.is_remote() == std::env::var_os("REMOTE_LAB_URL").is_some());
//! t.node("client")?.succeed("ping -c 1 192.168.2.2")?;
//! t.close()?;
//! # Ok(()) }
//! ```
//!
//! Below that, [`LabClient`] holds a session (created with an API token,
//! kept alive by a heartbeat thread, released on drop); [`RemoteBed`] is a
//! lab acquired from a topology (shared with other sessions that ask for
//! the same one), whose console, nodes, captures and QMP go through the
//! server.
//!
//! ```no_run
//! # fn main() -> alpy::Result<()> {
//! use std::time::Duration;
//! let lab = alpy::lab::LabClient::from_env()?.expect("REMOTE_LAB_URL is set");
//! let mut bed = lab.acquire_file(std::path::Path::new("topologies/forward.toml"), Duration::from_secs(600))?;
//! let out = bed.node_succeed("client", &["ping", "-c", "1", "192.168.2.2"])?;
//! bed.console()?.send_line("uname -a")?;
//! bed.close()?;
//! # Ok(()) }
//! ```

mod board_tunnel;
mod client;
mod event;
mod lab_board;
mod remote_bed;
mod remote_nodes;
mod server;
mod testbed_mode;
mod tls;
pub(crate) mod topology_out;
pub mod wire;
mod ws;

pub use board_tunnel::{BoardStream, BoardTunnel};
pub use client::LabClient;
pub use remote_bed::RemoteBed;
pub use server::LabServer;
pub use tls::{http_client, CA_VAR};

/// The environment variable that points tests at a lab server.
pub const URL_VAR: &str = "REMOTE_LAB_URL";
/// The environment variable that holds the API token.
pub const TOKEN_VAR: &str = "REMOTE_LAB_TOKEN";
