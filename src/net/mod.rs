//! The network side: the Docker client and container guard, network
//! namespaces and taps, nodes and their links, apps, the no-root helper,
//! and link impairment. Nothing here knows about QEMU or test beds.

pub mod app;
pub mod container;
pub mod docker;
pub mod docker_attach;
mod helper;
pub mod hub;
pub mod impair;
pub mod link;
pub mod netns;
pub mod node;
pub mod nodes;
pub mod remote;
mod tools;
pub mod watchdog;

pub use app::{App, TOOLS_IMAGE};
pub use container::Container;
pub use docker::{Docker, Output};
pub use helper::HELPER_IMAGE;
pub use impair::{Direction, Impairment};
pub use link::Link;
pub use netns::NetMode;
pub use node::{Node, NODE_IMAGE};
pub use nodes::{NodeOptions, Nodes};
pub use remote::{LinkChange, NodeService};

/// The name of the tap inside each node.
pub const TAP_NAME: &str = "eth0";
