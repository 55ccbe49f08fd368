//! Beds of several machines: a chain of two routers with a point-to-point
//! link between them, a segment shared by two routers and a node, roles
//! across machines.

mod common;

use std::net::IpAddr;
use std::time::Duration;

use alpy::pcap::{Filter, PROTO_ICMP};
use alpy::{Commands, Dut, Link, Segment, TestBed};

const BOOT: Duration = Duration::from_secs(120);

/// The test guest as a router with `ips` (`eth0=ADDR/LEN,...`), tagged
/// "routers".
fn router(ips: &str) -> Dut {
    let (kernel, initrd) = common::guest();
    Dut::kernel(kernel, Some(initrd))
        .append(&format!(
            "console=ttyS0,115200 quiet panic=-1 alpy.forward=1 alpy.ip={ips}"
        ))
        .tag("routers")
}

fn builder(name: &str) -> alpy::TestBedBuilder {
    TestBed::builder(name)
        .artifacts_dir(common::artifacts(name))
        .prompt(common::GUEST_PROMPT)
        .poweroff(alpy::PowerOff::Console("poweroff -f".into()))
        .console_timeout(BOOT)
}

fn echo_requests() -> Filter {
    Filter::new().protocol(PROTO_ICMP).icmp_type(8)
}

/// client - r1 - r2 - server, with static routes on the routers: the
/// client reaches the server; on the r1-r2 link each echo request has a
/// TTL one lower than on the client's; r1-r2 set down from QMP stops the
/// traffic, and up again restores it. Then the routers, as a role.
#[test]
fn a_chain_of_two_routers_forwards_and_its_middle_link_goes_down() {
    let mut bed = builder("chain")
        .machine("r1", router("eth0=10.0.1.1/24,eth1=10.0.2.1/24"))
        .machine("r2", router("eth0=10.0.2.2/24,eth1=10.0.3.1/24"))
        .link(
            Link::new()
                .name("client")
                .on("r1:0")
                .node_addr("10.0.1.2/24")
                .gateway("10.0.1.1"),
        )
        .segment(Segment::new("core").end("r1:1").end("r2:0"))
        .link(
            Link::new()
                .name("server")
                .on("r2:1")
                .node_addr("10.0.3.2/24")
                .gateway("10.0.3.1"),
        )
        .start()
        .unwrap();
    assert_eq!(bed.machine_names(), ["r1", "r2"]);
    bed.boot(BOOT).unwrap();
    bed.machine("r1")
        .unwrap()
        .shell()
        .unwrap()
        .succeed("ip route add 10.0.3.0/24 via 10.0.2.2")
        .unwrap();
    bed.machine("r2")
        .unwrap()
        .shell()
        .unwrap()
        .succeed("ip route add 10.0.1.0/24 via 10.0.2.1")
        .unwrap();
    let client = bed.node("client").unwrap();
    client
        .wait_until_succeeds("ping -c 1 -W 1 10.0.3.2", Duration::from_secs(30))
        .unwrap();
    client.succeed("ping -c 3 -i 0.3 -W 2 10.0.3.2").unwrap();

    // TTL: one lower on r1's far side than on the client's link.
    let to_server = echo_requests().ip_dst("10.0.3.2".parse::<IpAddr>().unwrap());
    let r1 = bed.machine("r1").unwrap();
    let near = r1.capture(0).unwrap();
    let far = r1.capture(1).unwrap();
    let ttls = |c: &alpy::pcap::Capture| -> Vec<u8> {
        c.filter(&to_server).filter_map(|f| f.ttl).collect()
    };
    let (near, far) = (ttls(&near), ttls(&far));
    assert!(near.len() >= 4, "client link: {near:?}");
    assert_eq!(near.len(), far.len(), "every request crossed r1");
    assert!(
        near.iter().zip(&far).all(|(a, b)| *b + 1 == *a),
        "TTLs {near:?} then {far:?}"
    );
    // r2's end of the same wire saw the same requests.
    let r2_near = bed.machine("r2").unwrap().capture(0).unwrap();
    assert_eq!(ttls(&r2_near), far);

    // The middle link down (r1's side), then up again.
    bed.machine("r1").unwrap().set_link(1, false).unwrap();
    let client = bed.node("client").unwrap();
    client.fail("ping -c 2 -W 1 10.0.3.2").unwrap();
    bed.machine("r1").unwrap().set_link(1, true).unwrap();
    let client = bed.node("client").unwrap();
    client
        .wait_until_succeeds("ping -c 1 -W 1 10.0.3.2", Duration::from_secs(30))
        .unwrap();

    // Roles: both routers, each with its exit code; the failing one named.
    let routers = bed.role("routers").unwrap();
    assert_eq!(routers.names(), ["r1", "r2"]);
    let outs = routers.succeed("ip -o -4 addr show eth1").unwrap();
    assert!(outs[0].1.contains("10.0.2.1/24"), "{outs:?}");
    assert!(outs[1].1.contains("10.0.3.1/24"), "{outs:?}");
    let e = routers
        .succeed("ip -o -4 addr show eth0 | grep -q 10.0.1.")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("1 of 2 members")
            && e.contains("machine r2: exit code 1")
            && !e.contains("machine r1:"),
        "{e}"
    );
    drop(routers);

    let dir = bed.artifacts_dir().to_path_buf();
    let left = bed.close_checked().unwrap();
    assert!(left.is_empty(), "{left}");
    for f in [
        "console-r1.log",
        "console-r2.log",
        "r1-nic1.pcap",
        "r2-nic0.pcap",
    ] {
        assert!(dir.join(f).is_file(), "{f} missing in {}", dir.display());
    }
    let timings = std::fs::read_to_string(dir.join("timings.json")).unwrap();
    assert!(timings.contains("\"r2: boot\""), "{timings}");
}

/// r1, r2 and a node on one segment: the node pings both routers, and
/// each router's capture of the segment shows ARP from both routers.
#[test]
fn a_segment_joins_two_routers_and_a_node() {
    let mut bed = builder("lan")
        .machine("r1", router("eth0=10.0.9.1/24"))
        .machine("r2", router("eth0=10.0.9.2/24"))
        .segment(Segment::new("lan").end("r1:0").end("r2:0"))
        .link(
            Link::new()
                .name("client")
                .on_segment("lan")
                .node_addr("10.0.9.10/24"),
        )
        .start()
        .unwrap();
    bed.boot(BOOT).unwrap();
    let client = bed.node("client").unwrap();
    for ip in ["10.0.9.1", "10.0.9.2"] {
        client
            .wait_until_succeeds(&format!("ping -c 1 -W 1 {ip}"), Duration::from_secs(30))
            .unwrap();
    }
    // The routers talk to each other over the same segment.
    bed.machine("r1")
        .unwrap()
        .shell()
        .unwrap()
        .wait_until_succeeds("ping -c 1 -W 1 10.0.9.2", Duration::from_secs(30))
        .unwrap();
    let macs = [
        bed.machine("r1").unwrap().mac(0).unwrap(),
        bed.machine("r2").unwrap().mac(0).unwrap(),
    ];
    assert_ne!(macs[0], macs[1]);
    for m in ["r1", "r2"] {
        let cap = bed.machine(m).unwrap().capture(0).unwrap();
        for mac in macs {
            let arp = Filter::new()
                .ethertype(alpy::pcap::ETHERTYPE_ARP)
                .src_mac(mac);
            assert!(cap.count(&arp) > 0, "{m}'s capture has no ARP from {mac}");
        }
    }
    let left = bed.close_checked().unwrap();
    assert!(left.is_empty(), "{left}");
}

/// Mistakes in a bed's wiring are named before anything starts.
#[test]
fn wiring_mistakes_are_named_before_anything_starts() {
    let e = builder("bad-wiring")
        .machine("r1", router("eth0=10.0.1.1/24"))
        .link(Link::new().name("client").on("r9:0"))
        .start()
        .err()
        .expect("an unknown machine")
        .to_string();
    assert!(
        e.contains("no machine named \"r9\"") && e.contains("link 0 (client)"),
        "{e}"
    );
}
