//! The network side: the Docker client and container guard, network
//! namespaces and taps, nodes and their links, apps, the no-root helper,
//! and link impairment. Nothing here knows about QEMU or test beds.

#[doc(hidden)]
pub mod app;
#[doc(hidden)]
pub mod container;
#[doc(hidden)]
pub mod docker;
#[doc(hidden)]
pub mod docker_attach;
mod helper;
#[doc(hidden)]
pub mod hub;
#[doc(hidden)]
pub mod impair;
#[doc(hidden)]
pub mod link;
#[doc(hidden)]
pub mod netns;
#[doc(hidden)]
pub mod node;
#[doc(hidden)]
pub mod nodes;
#[doc(hidden)]
pub mod packet_port;
#[doc(hidden)]
pub mod port_capture;
#[doc(hidden)]
pub mod remote;
mod tools;
#[doc(hidden)]
pub mod watchdog;

pub use app::{App, TOOLS_IMAGE};
pub use container::Container;
pub use docker::{Docker, Output};
pub use helper::HELPER_IMAGE;
pub use impair::{Direction, Impairment, Relay, RelayStats};
pub use link::Link;
pub use netns::NetMode;
pub use node::{Node, NODE_IMAGE};
pub use nodes::{NodeKey, NodeOptions, Nodes};
pub use remote::{LinkChange, NodeService};

/// The name of the tap inside each node.
pub const TAP_NAME: &str = "eth0";
