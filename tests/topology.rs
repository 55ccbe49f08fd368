//! The shipped topology files stand up real test beds.

mod common;

use std::path::Path;
use std::time::Duration;

const BOOT: Duration = Duration::from_secs(180);

fn topology(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("topologies")
        .join(name)
}

#[test]
fn forward_topology_routes_and_runs_its_apps() {
    let t = alpy::TestBed::from_topology(&topology("forward.toml"), BOOT).expect("stand up");
    let client = t.bed.node_by_name("client").unwrap();
    client.succeed("ping -c 2 -i 0.2 -W 5 192.168.2.2").unwrap();
    // The topology's background app serves on the server node.
    client
        .wait_for_open_port("192.168.2.2", 5201, Duration::from_secs(20))
        .unwrap();
    assert_eq!(t.apps.len(), 1);
    t.close().unwrap();
}

#[test]
fn rabbit_topology_boots_and_logs_in() {
    let mut t = alpy::TestBed::from_topology(&topology("rabbit.toml"), BOOT).expect("stand up");
    let kernel = t.bed.shell().unwrap().succeed("uname -s").unwrap();
    assert_eq!(kernel, "Linux\n");
    assert!(t.bed.node_by_name("wan").is_ok() && t.bed.node_by_name("dmz").is_err());
    t.close().unwrap();
}
