//! Test beds: the DUT's description, the bed that stands a DUT and its links
//! up in order and takes them down again, and the reaper for what older runs
//! left.

mod board_machine;
mod board_wire;
#[doc(hidden)]
pub mod builder;
mod captures;
mod closing;
#[doc(hidden)]
pub mod config_drive;
#[doc(hidden)]
pub mod doctor;
#[doc(hidden)]
pub mod dut;
#[doc(hidden)]
pub mod graph;
#[doc(hidden)]
pub mod graph_net;
mod guest;
#[doc(hidden)]
pub mod leftovers;
#[doc(hidden)]
pub mod machine;
mod machine_kind;
mod machine_power;
mod nic_impair;
#[doc(hidden)]
pub mod ready_point;
#[doc(hidden)]
pub mod reap;
#[doc(hidden)]
pub mod remote;
#[doc(hidden)]
pub mod roles;
#[doc(hidden)]
pub mod segment;
mod stand_up;
#[doc(hidden)]
pub mod state;
#[doc(hidden)]
pub mod testbed;
#[doc(hidden)]
pub mod timings;
#[doc(hidden)]
pub mod topology;
mod topology_file;
#[doc(hidden)]
pub mod topology_keys;
mod topology_net;
#[doc(hidden)]
pub mod warm;
mod warm_machine;
#[doc(hidden)]
pub mod warm_ram;
mod warm_start;
mod wiring;
