//! Nodes whose namespaces are on another host: a [`NodeService`] carries a
//! node's commands and apps there. The lab client implements it
//! ([`crate::bed::remote`]), so a test bed on an `alpy-lab` server has
//! nodes with the same verbs as local ones (`execute`, `succeed`,
//! `run_app`, `spawn_app`, the waits).

use std::time::Duration;

use crate::error::{Error, Result};
use crate::net::app::App;
use crate::net::docker::Output;

/// Where a remote node's commands and apps run.
pub trait NodeService: Send + Sync {
    /// Runs `argv` in node `node`'s namespace: its status and output;
    /// [`crate::Error::Timeout`] past `timeout`.
    fn execute(&self, node: &str, argv: &[&str], timeout: Duration) -> Result<Output>;
    /// Runs `app` in node `node` to completion, within `timeout`.
    fn run_app(&self, node: &str, app: &App, timeout: Duration) -> Result<Output>;
    /// Starts `app` in node `node` in the background: its id.
    fn start_app(&self, node: &str, app: &App) -> Result<String>;
    /// Stops the app with this id.
    fn stop_app(&self, id: &str) -> Result<()>;
    /// Changes node `node`'s link: impairment or carrier.
    fn change_link(&self, node: &str, change: &LinkChange) -> Result<()>;
}

/// A change to a node's link, as [`crate::net::Node::impair_direction`],
/// [`crate::net::Node::clear_impairment`] and
/// [`crate::net::Node::set_link`] make it (and a lab carries it).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "change", rename_all = "snake_case", deny_unknown_fields)]
pub enum LinkChange {
    /// Impair one direction, or both.
    Impair {
        /// Which way.
        direction: crate::net::Direction,
        /// What to apply.
        impairment: crate::net::Impairment,
    },
    /// No impairment, both ways.
    Clear,
    /// The node's `eth0` up or down.
    Carrier {
        /// Up (`true`) or down.
        up: bool,
    },
}

/// The error for what only a node on this host can do.
pub(crate) fn local_only(what: &str, node: &str) -> Error {
    Error::Config(format!(
        "{what} of node {node}: not available when the bed runs on a lab server \
         (REMOTE_LAB_URL is set); unset it to run the bed here"
    ))
}
