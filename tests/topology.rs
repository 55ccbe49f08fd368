//! The shipped topology files stand up real test beds.

mod common;

use alpy::Commands;
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
    let client = t.node("client").unwrap();
    client.succeed("ping -c 2 -i 0.2 -W 5 192.168.2.2").unwrap();
    // The topology's background app serves on the server node.
    client
        .wait_for_open_port("192.168.2.2", 5201, Duration::from_secs(20))
        .unwrap();
    assert_eq!(t.apps().len(), 1);
    t.close().unwrap();
}

#[test]
fn rabbit_topology_boots_and_logs_in() {
    let mut t = alpy::TestBed::from_topology(&topology("rabbit.toml"), BOOT).expect("stand up");
    let kernel = t.shell().unwrap().succeed("uname -s").unwrap();
    assert_eq!(kernel, "Linux\n");
    assert!(t.node("wan").is_ok() && t.node("dmz").is_err());
    t.close().unwrap();
}

/// Links impaired and down from the file; `builder().topology(..)`, nodes
/// by name, and the bed's own `topology.svg`.
#[test]
fn topology_links_start_impaired_and_down() {
    let dir = common::temp_dir("topology-links");
    let file = dir.join("links.toml");
    let forward = std::fs::read_to_string(topology("forward.toml")).unwrap();
    // forward.toml's DUT, with the client link relayed and delayed both
    // ways, and the server link down.
    let dut = &forward[forward.find("[dut]").unwrap()..forward.find("[[link]]").unwrap()];
    std::fs::write(
        &file,
        format!(
            "name = \"links\"\n{dut}\
             [[link]]\nname = \"client\"\naddrs = [\"192.168.1.2/24\"]\ngateway = \"192.168.1.1\"\n\
             relay = true\nimpair = {{ delay_ms = 60, direction = \"both\" }}\n\
             [[link]]\nname = \"server\"\naddrs = [\"192.168.2.2/24\"]\ngateway = \"192.168.2.1\"\nup = false\n"
        ),
    )
    .unwrap();
    let t = alpy::Topology::load(&file).unwrap();
    let mut bed = alpy::TestBed::builder("links")
        .topology(&t)
        .unwrap()
        .start()
        .unwrap();
    bed.boot(BOOT).unwrap();
    let svg = std::fs::read_to_string(bed.artifacts_dir().join("topology.svg")).unwrap();
    assert!(
        svg.contains("client") && svg.contains("nic1 (down)") && svg.contains("delay 60 ms"),
        "{svg}"
    );
    let carrier = bed
        .shell()
        .unwrap()
        .succeed("cat /sys/class/net/eth1/carrier")
        .unwrap();
    assert_eq!(carrier.trim(), "0", "the server link should start down");
    let client = bed.node("client").unwrap();
    assert!(
        client
            .execute("ping -c 1 -W 2 192.168.2.2")
            .unwrap()
            .status
            .code()
            != 0
    );
    bed.set_dut_link(1, true).unwrap();
    let client = bed.node("client").unwrap();
    // The first pings wait for ARP; measure once the neighbours are known.
    client
        .wait_until_succeeds("ping -c 1 -W 5 192.168.2.2", Duration::from_secs(30))
        .unwrap();
    let out = client.succeed("ping -c 3 -i 0.3 -W 5 192.168.2.2").unwrap();
    let rtt = common::min_rtt_ms(&out);
    assert!(
        rtt >= 120.0,
        "delay 60 ms both ways on the client link, min RTT {rtt} ms"
    );
    bed.close().unwrap();
}

/// The vendor-style example: a UEFI disk image with Secure Boot, its
/// config drive and its per-link NICs, all from the file.
#[test]
fn vendor_topology_boots_with_secure_boot_and_its_config_drive() {
    let mut t = alpy::TestBed::from_topology(&topology("vendor.toml"), BOOT).expect("stand up");
    let sh = &mut t.shell().unwrap();
    assert_eq!(sh.succeed("hostname").unwrap(), "fw-day0\n");
    let sb = sh.succeed("dmesg | grep -i 'secure boot'").unwrap();
    assert!(sb.contains("Secure boot enabled"), "{sb}");
    let mtu = sh
        .succeed("cat /sys/class/net/*/mtu | sort -n | head -1")
        .unwrap();
    assert_eq!(mtu.trim(), "1400", "the lan link's MTU");
    for (node, dut) in [("lan", "10.0.0.1"), ("wan", "10.0.1.1")] {
        t.node(node)
            .unwrap()
            .wait_until_succeeds(&format!("ping -c 1 -W 2 {dut}"), Duration::from_secs(30))
            .unwrap();
    }
    t.close().unwrap();
}

/// `docs/TOPOLOGY.md` is the reference alpy generates from its topology
/// schema; `ALPY_UPDATE_DOCS=1` writes it again.
#[test]
fn the_topology_key_reference_in_docs_is_current() {
    let generated = alpy::internal::topology_keys::markdown();
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/TOPOLOGY.md");
    if std::env::var_os("ALPY_UPDATE_DOCS").is_some() {
        std::fs::write(path, &generated).unwrap();
    }
    let in_docs = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        in_docs == generated,
        "docs/TOPOLOGY.md is not what the schema's reference generates: run \
         ALPY_UPDATE_DOCS=1 cargo test --test topology the_topology_key_reference"
    );
}
