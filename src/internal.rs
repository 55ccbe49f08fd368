//! The parts alpy's own programs and tests use, and test authors should
//! not need: the supervisor and its registry, run identity, the cache,
//! QEMU's command line and process, migration, the Docker client, network
//! namespaces, the reaper. They are public so that `alpy`, `alpy-lab`, the
//! Rabbit suite and the integration tests can reach them; they carry no
//! stability promise and change without a CHANGELOG migration line.
//!
//! A test author's API is the crate root ([`crate::TestBed`],
//! [`crate::Dut`], [`crate::Link`], ...) and the documented modules
//! beside this one. If a test needs something from here, that is worth an
//! issue: it may belong in the API.

pub use crate::bed::{
    config_drive, graph, leftovers, reap, remote, testbed, timings, topology, topology_keys, warm,
    warm_ram,
};
pub use crate::net::{docker, docker_attach, hub, impair, link, netns, node, nodes, watchdog};
pub use crate::vm::{argv_check, console, console_share, devices, migrate, qemu, qemu_process};
pub use crate::{cache, run, supervisor, util};

#[cfg(test)]
mod tests {
    /// The documented modules are a decision: a new `pub mod` at the root
    /// is either added here (and to the crate docs' list) or hidden and
    /// reached through `internal`.
    #[test]
    fn the_public_modules_are_the_chosen_ones() {
        let lib = include_str!("lib.rs");
        let mut hidden = false;
        let mut public = Vec::new();
        for line in lib.lines().map(str::trim) {
            if let Some(m) = line.strip_prefix("pub mod ") {
                if !hidden {
                    public.push(m.trim_end_matches(';'));
                }
            }
            hidden = line == "#[doc(hidden)]";
        }
        public.sort();
        assert_eq!(
            public,
            [
                "addr", "board", "error", "image", "internal", "journal", "logging", "net", "nic", "pcap", "report",
                "settings", "vm", "wait"
            ],
            "a root module became public (or hidden): decide, and update this list and the crate docs"
        );
        for m in &public {
            assert!(
                lib.contains(&format!("[`{m}`]")),
                "the crate docs' list does not name {m}"
            );
        }
    }
}
