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

/// client - r1 - r2 - server, no routes: 10.0.1.0/24, 10.0.2.0/24 (the
/// r1-r2 wire, "core"), 10.0.3.0/24; `r2_extra` goes on r2's command line.
fn two_routers(name: &str, r2_extra: &str) -> alpy::TestBedBuilder {
    builder(name)
        .machine("r1", router("eth0=10.0.1.1/24,eth1=10.0.2.1/24"))
        .machine(
            "r2",
            router(&format!("eth0=10.0.2.2/24,eth1=10.0.3.1/24{r2_extra}")),
        )
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
    let mut bed = two_routers("chain", "").start().unwrap();
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

    // r1's side of the middle link impaired: delay on what it receives,
    // then loss on what it sends; cleared, the chain is quick again.
    let delay = alpy::Impairment {
        delay: Some(Duration::from_millis(300)),
        ..Default::default()
    };
    bed.impair_nic("r1", 1, alpy::Direction::ToDut, &delay)
        .unwrap();
    let out = bed
        .node("client")
        .unwrap()
        .succeed("ping -c 3 -i 0.3 -W 3 10.0.3.2")
        .unwrap();
    assert!(common::min_rtt_ms(&out) >= 300.0, "{out}");
    let loss = alpy::Impairment {
        loss_percent: Some(100.0),
        ..Default::default()
    };
    bed.impair_nic("r1", 1, alpy::Direction::ToNode, &loss)
        .unwrap();
    bed.node("client")
        .unwrap()
        .fail("ping -c 2 -W 1 10.0.3.2")
        .unwrap();
    bed.clear_nic_impairment("r1", 1).unwrap();
    let out = bed
        .node("client")
        .unwrap()
        .wait_until_succeeds("ping -c 1 -W 1 10.0.3.2", Duration::from_secs(30))
        .unwrap();
    assert!(common::min_rtt_ms(&out) < 300.0, "{out}");
    let e = bed
        .impair_nic("r1", 7, alpy::Direction::Both, &delay)
        .unwrap_err()
        .to_string();
    assert!(e.contains("NIC 7 of machine chain/r1"), "{e}");

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
/// Each machine boots to a prompt of its own: the builder's login is
/// one no test guest answers.
#[test]
fn a_segment_joins_two_routers_and_a_node() {
    let mut bed = builder("lan")
        .login(alpy::Login::new("nobody"))
        .machine(
            "r1",
            router("eth0=10.0.9.1/24").prompt(common::GUEST_PROMPT),
        )
        .machine("r2", router("eth0=10.0.9.2/24").prompt("alpy guest ready"))
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

/// A chain of `n` test-guest routers (see [`common::chain`]).
fn chain(name: &str, n: usize) -> alpy::TestBedBuilder {
    common::chain::chain(builder(name), n, router)
}

/// Child side of the SIGKILL test: four machines running, then it
/// sleeps until killed.
#[test]
#[ignore = "a child role: sigkill_with_four_machines_leaves_nothing runs it"]
fn child_role() {
    let Some(role) = common::child_env("ALPY_TEST_ROLE", "the SIGKILL test") else {
        return;
    };
    assert_eq!(role, "four");
    let run = alpy::internal::run::RunId::new();
    let mut bed = chain("killed4", 4).run_id(run.clone()).start().unwrap();
    for m in bed.machine_names() {
        bed.machine(&m).unwrap().resume().unwrap();
    }
    let pids: Vec<String> = bed
        .machines()
        .iter()
        .filter_map(|m| m.qemu_pid())
        .map(|p| p.to_string())
        .collect();
    println!("READY {run} {}", pids.join(" "));
    std::thread::sleep(Duration::from_secs(300));
    drop(bed);
}

/// SIGKILL of a bed's owner with four machines running: the watchdog and
/// QEMU's PDEATHSIG leave nothing: no container, no QEMU. The time it
/// took is printed; the limit is [`common::CLEANUP_LIMIT`].
#[test]
fn sigkill_with_four_machines_leaves_nothing() {
    use std::io::BufRead;
    let docker = common::docker();
    let mut child = common::child("child_role", &[("ALPY_TEST_ROLE", "four")])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let ready = std::io::BufReader::new(child.stdout.take().unwrap())
        .lines()
        .map_while(Result::ok)
        .find_map(|l| l.split_once("READY ").map(|(_, r)| r.to_string()))
        .expect("the child never got ready");
    let mut parts = ready.split_whitespace();
    let run = parts.next().unwrap().to_string();
    let pids: Vec<i32> = parts.map(|p| p.parse().unwrap()).collect();
    assert_eq!(pids.len(), 4, "{ready}");
    let left = || {
        let mut left: Vec<String> = docker
            .list_by_label(alpy::internal::run::LABEL_RUN, Some(&run))
            .unwrap()
            .into_iter()
            .filter_map(|c| c.names.and_then(|n| n.first().cloned()))
            .collect();
        for p in &pids {
            if std::path::Path::new(&format!("/proc/{p}/exe")).exists() {
                left.push(format!("QEMU pid {p}"));
            }
        }
        left
    };
    assert!(left().len() >= 6, "4 QEMUs and 2 nodes run: {:?}", left());
    child.kill().unwrap();
    child.wait().unwrap();
    let t0 = std::time::Instant::now();
    let mut now = left();
    while !now.is_empty() && t0.elapsed() < common::CLEANUP_LIMIT {
        std::thread::sleep(Duration::from_millis(50));
        now = left();
    }
    eprintln!("all gone {:.2} s after SIGKILL", t0.elapsed().as_secs_f64());
    assert!(
        now.is_empty(),
        "left {:?} after SIGKILL: {now:?}",
        common::CLEANUP_LIMIT
    );
}

/// Two beds of one multi-machine topology at once: both work, and each
/// one's capture of the r1-r2 wire holds only its own machines' frames.
#[test]
fn two_beds_of_one_topology_run_side_by_side() {
    let t = alpy::Topology::load(std::path::Path::new("topologies/chain.toml")).unwrap();
    let run = |i: usize| {
        let b = t
            .builder()
            .unwrap()
            .artifacts_dir(common::artifacts(&format!("side{i}")));
        std::thread::spawn(move || {
            let mut bed = b.start().unwrap();
            bed.boot(BOOT).unwrap();
            bed.node("client")
                .unwrap()
                .wait_until_succeeds("ping -c 1 -W 1 10.0.3.2", Duration::from_secs(30))
                .unwrap();
            bed.node("client")
                .unwrap()
                .succeed("ping -c 3 -i 0.3 10.0.3.2")
                .unwrap();
            let own = [
                bed.machine("r1").unwrap().mac(1).unwrap(),
                bed.machine("r2").unwrap().mac(0).unwrap(),
            ];
            let core = bed.machine("r1").unwrap().capture(1).unwrap();
            let left = bed.close_checked().unwrap();
            assert!(left.is_empty(), "{left}");
            (own, core)
        })
    };
    let (a, b) = (run(0), run(1));
    let (a, b) = (a.join().unwrap(), b.join().unwrap());
    assert_ne!(a.0, b.0, "two beds' machines share MACs");
    for (own, core) in [a, b] {
        assert!(core.frames().len() >= 6, "{} frames", core.frames().len());
        for f in core.frames() {
            assert!(
                f.src_mac.is_some_and(|m| own.contains(&m)),
                "a frame from {:?} on this bed's wire: {}",
                f.src_mac,
                f.summary()
            );
        }
    }
}

/// Warm start, per machine: the first bed builds both routers'
/// snapshots, the second restores both; with r2's kernel command line
/// changed, only r2's is built again. Each bed forwards.
#[test]
fn a_two_machine_bed_starts_warm_and_rebuilds_only_what_changed() {
    use alpy::WarmOutcome::{Built, Restored};
    use alpy::WarmStart;
    let version = format!("tests/machines {}", alpy::internal::run::RunId::new());
    let warm = || {
        WarmStart::per_machine(&version, |m| {
            let route = if m.name() == "r1" {
                "10.0.3.0/24 via 10.0.2.2"
            } else {
                "10.0.1.0/24 via 10.0.2.1"
            };
            m.shell()?
                .succeed(&format!("ip route add {route}"))
                .map(drop)
        })
        .boot_timeout(BOOT)
    };
    let bed = |name: &str, r2_extra: &str| {
        two_routers(name, r2_extra)
            .warm_start(warm())
            .start()
            .unwrap()
    };
    let check = |mut b: TestBed, expect: [alpy::WarmOutcome; 2]| {
        let got: Vec<_> = b.machines().iter().map(|m| m.warm_outcome()).collect();
        assert_eq!(got, expect.map(Some), "r1, r2");
        b.boot(BOOT).unwrap();
        b.node("client")
            .unwrap()
            .wait_until_succeeds("ping -c 1 -W 1 10.0.3.2", Duration::from_secs(30))
            .unwrap();
        let left = b.close_checked().unwrap();
        assert!(left.is_empty(), "{left}");
    };
    check(bed("warm-built", ""), [Built, Built]);
    check(bed("warm-restored", ""), [Restored, Restored]);
    check(
        bed("warm-one-changed", " alpy.changed=1"),
        [Restored, Built],
    );
    // The bed-wide preparation does not fit a bed of several machines.
    let e = builder("warm-bed-wide")
        .machine("r1", router("eth0=10.0.1.1/24"))
        .machine("r2", router("eth0=10.0.1.2/24"))
        .segment(Segment::new("lan").end("r1:0").end("r2:0"))
        .warm_start(WarmStart::new("x", |_| Ok(())))
        .start()
        .err()
        .expect("a bed-wide preparation")
        .to_string();
    assert!(e.contains("WarmStart::per_machine"), "{e}");
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
