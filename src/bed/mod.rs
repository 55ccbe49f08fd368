//! Test beds: the DUT's description, the bed that stands a DUT and its links
//! up in order and takes them down again, and the reaper for what older runs
//! left.

pub mod builder;
mod captures;
mod closing;
pub mod config_drive;
pub mod doctor;
pub mod dut;
pub mod graph;
pub mod graph_net;
mod guest;
pub mod leftovers;
pub mod machine;
mod nic_impair;
pub mod ready_point;
pub mod reap;
pub mod remote;
pub mod roles;
pub mod segment;
mod stand_up;
pub mod state;
pub mod testbed;
pub mod timings;
pub mod topology;
mod topology_file;
mod topology_net;
pub mod warm;
mod warm_machine;
pub mod warm_ram;
mod warm_start;
mod wiring;
