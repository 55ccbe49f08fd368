//! The client of an `alpy-lab` server: tests stay here, beds run on the
//! lab host. [`LabClient`] holds a session (created with an API token,
//! kept alive by a heartbeat thread, released on drop); [`RemoteBed`] is a
//! lab acquired from a topology, whose console, nodes, captures and QMP go
//! through the server.
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

mod client;
mod remote_bed;
mod remote_nodes;
mod testbed_mode;
pub(crate) mod topology_out;

pub use client::{LabClient, SessionInfo};
pub use remote_bed::RemoteBed;

/// The environment variable that points tests at a lab server.
pub const URL_VAR: &str = "REMOTE_LAB_URL";
/// The environment variable that holds the API token.
pub const TOKEN_VAR: &str = "REMOTE_LAB_TOKEN";
