//! The network side against a real Docker engine: nodes with taps born in
//! their namespaces, addresses and routes, traffic across a wire made of two
//! taps, app containers, impairment, link state, clean-up; and all of it
//! again as an unprivileged user through the helper container.

mod common;

use alpy::Commands;
use std::time::Duration;

use alpy::internal::docker::Docker;
use alpy::internal::run::{RunId, LABEL_RUN};
use alpy::net::{App, Impairment, Link, NodeOptions, Nodes};

const APP_TIMEOUT: Duration = Duration::from_secs(60);

fn create(run: &RunId, links: &[Link]) -> (std::sync::Arc<Docker>, Nodes) {
    create_with_logs(run, links, None)
}

fn create_with_logs(
    run: &RunId,
    links: &[Link],
    log_dir: Option<std::path::PathBuf>,
) -> (std::sync::Arc<Docker>, Nodes) {
    let docker = common::docker();
    let opts = NodeOptions {
        mode: None, // auto: direct as root, helper otherwise
        log_dir,
        image: None,
        fixed_macs: false,
    };
    let nodes = Nodes::create(&docker, run, links, &opts).expect("create nodes");
    eprintln!(
        "nodes created in {:?} mode",
        nodes.mode().expect("local nodes")
    );
    (docker, nodes)
}

fn sh(nodes: &Nodes, i: usize, script: &str) -> alpy::net::Output {
    nodes.node(i).unwrap().execute(script).expect("execute")
}

/// Nothing of the run is left: no container, no helper, no helper dir, no
/// namespace (and so no tap) of its nodes.
fn assert_gone(docker: &Docker, run: &RunId, node_pids: &[i32]) {
    for pid in node_pids {
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}/ns/net")).exists(),
            "node {pid} still alive"
        );
    }
    let left = docker.list_by_label(LABEL_RUN, Some(run.as_str())).unwrap();
    assert!(
        left.is_empty(),
        "containers left: {:?}",
        left.iter().map(|c| &c.names).collect::<Vec<_>>()
    );
    assert!(
        !std::env::temp_dir().join(run.name("net")).exists(),
        "helper dir left"
    );
}

#[test]
fn three_nodes_have_their_addresses_routes_and_macs() {
    let run = RunId::new();
    let links = [
        Link::new()
            .node_addr("192.168.1.2/24")
            .node_addr("2001:db8:1::2/64")
            .gateway("192.168.1.1")
            .gateway("2001:db8:1::1")
            .mac("02:00:00:00:01:02"),
        Link::new()
            .node_addr("192.168.2.2/24")
            .gateway("192.168.2.1")
            .route("10.20.0.0/16", "192.168.2.254"),
        Link::new().node_addr("192.168.3.2/24"),
    ];
    let (docker, nodes) = create(&run, &links);
    let show = "ip -o link show eth0; ip -o addr show dev eth0; ip route; ip -6 route";
    let out: Vec<String> = (0..3).map(|i| sh(&nodes, i, show).stdout_str()).collect();
    for (i, o) in out.iter().enumerate() {
        assert!(
            o.contains("eth0: <") && o.contains(",UP"),
            "node {i} eth0 not up:\n{o}"
        );
        assert!(
            o.contains(&format!(
                "link/ether {}",
                nodes.node(i).unwrap().mac().expect("a local node")
            )),
            "node {i} MAC:\n{o}"
        );
    }
    assert_eq!(
        nodes
            .node(0)
            .unwrap()
            .mac()
            .expect("a local node")
            .to_string(),
        "02:00:00:00:01:02"
    );
    assert!(
        out[0].contains("inet 192.168.1.2/24") && out[0].contains("inet6 2001:db8:1::2/64"),
        "{}",
        out[0]
    );
    assert!(
        out[0].contains("default via 192.168.1.1 dev eth0"),
        "{}",
        out[0]
    );
    assert!(
        out[0].contains("default via 2001:db8:1::1 dev eth0"),
        "{}",
        out[0]
    );
    assert!(out[1].contains("inet 192.168.2.2/24"), "{}", out[1]);
    assert!(
        out[1].contains("10.20.0.0/16 via 192.168.2.254 dev eth0"),
        "{}",
        out[1]
    );
    assert!(out[2].contains("inet 192.168.3.2/24"), "{}", out[2]);
    assert!(
        !out[2].lines().any(|l| l.starts_with("default")),
        "{}",
        out[2]
    );
    let pids: Vec<i32> = nodes.iter().filter_map(|n| n.pid()).collect();
    // A negative index is an error, never the node named "-1".
    let e = nodes
        .get(-1i32)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(e.contains("index -1 (indexes count from 0)"), "{e}");
    nodes.close().expect("close nodes");
    assert_gone(&docker, &run, &pids);
}

#[test]
fn traffic_across_a_wire_of_two_taps() {
    let run = RunId::new();
    let links = [
        Link::new().node_addr("192.168.50.1/24"),
        Link::new()
            .node_addr("192.168.50.2/24")
            .node_addr("fd00:50::2/64")
            .gateway("192.168.50.1")
            .route("10.9.0.0/16", "192.168.50.3"),
    ];
    let (docker, nodes) = create(&run, &links);
    let wire = common::Shuttle::new(
        nodes.node(0).unwrap().tap_dup().unwrap(),
        nodes.node(1).unwrap().tap_dup().unwrap(),
    );

    let ping = "ping -c 3 -i 0.2 -W 2 192.168.50.2";
    let base = sh(&nodes, 0, ping)
        .checked("ping across the wire")
        .expect("ping works");
    let base_rtt = common::min_rtt_ms(&base.stdout_str());

    // Delay needs netem in the host kernel; say so clearly where it is missing.
    let delay = Impairment {
        delay: Some(Duration::from_millis(100)),
        ..Default::default()
    };
    match nodes.node(0).unwrap().impair(&delay) {
        Ok(()) => {
            let slow = sh(&nodes, 0, ping).checked("delayed ping").unwrap();
            let slow_rtt = common::min_rtt_ms(&slow.stdout_str());
            assert!(
                slow_rtt >= base_rtt + 100.0,
                "rtt {base_rtt} -> {slow_rtt} ms"
            );
        }
        Err(e) => {
            let msg = e.to_string();
            assert!(msg.contains("no netem"), "{msg}");
            eprintln!("NOTE: delay not testable here: {msg}");
        }
    }
    nodes.node(0).unwrap().clear_impairment().unwrap();

    nodes.node(1).unwrap().set_link(false).unwrap();
    let down = nodes
        .node(0)
        .unwrap()
        .wait_until_fails(
            "ping -c 2 -i 0.2 -W 1 192.168.50.2",
            Duration::from_secs(10),
        )
        .expect("ping fails with the link down");
    assert!(!down.status.success(), "{down:?}");
    let e = nodes.node(0).unwrap().fail("true").unwrap_err().to_string();
    assert!(
        e.contains("expected to fail") && e.contains("node node0"),
        "{e}"
    );
    nodes.node(1).unwrap().set_link(true).unwrap();
    sh(&nodes, 0, ping).checked("ping after link up").unwrap();
    // Up again with its routes and its IPv6 address, as created.
    let routes = sh(&nodes, 1, "ip route; ip -6 addr show dev eth0").stdout_str();
    for want in [
        "default via 192.168.50.1",
        "10.9.0.0/16 via 192.168.50.3",
        "fd00:50::2/64",
    ] {
        assert!(
            routes.contains(want),
            "{want} is gone after down/up:\n{routes}"
        );
    }

    drop(wire);
    let pids: Vec<i32> = nodes.iter().filter_map(|n| n.pid()).collect();
    nodes.close().unwrap();
    assert_gone(&docker, &run, &pids);
}

/// The user-space relay (alpy::impair) as the wire: delay and loss work on
/// any host kernel, netem or not.
#[test]
fn impairment_through_a_relay_wire() {
    let run = RunId::new();
    let links = [
        Link::new().node_addr("192.168.55.1/24"),
        Link::new().node_addr("192.168.55.2/24"),
    ];
    let (docker, nodes) = create(&run, &links);
    let relay = alpy::internal::impair::Relay::start(
        nodes.node(0).unwrap().tap_dup().unwrap(),
        nodes.node(1).unwrap().tap_dup().unwrap(),
        "test-wire",
    )
    .unwrap();
    let ping = "ping -c 3 -i 0.2 -W 2 192.168.55.2";
    let base = common::min_rtt_ms(
        &sh(&nodes, 0, ping)
            .checked("ping through the relay")
            .unwrap()
            .stdout_str(),
    );
    relay.set(&Impairment {
        delay: Some(Duration::from_millis(100)),
        ..Default::default()
    });
    let slow = common::min_rtt_ms(
        &sh(&nodes, 0, ping)
            .checked("delayed ping")
            .unwrap()
            .stdout_str(),
    );
    eprintln!("rtt through the relay: {base:.2} ms, with 100 ms delay: {slow:.2} ms");
    // A 100 ms delay; ping's own timing noise is a few tens of microseconds
    // either way, so the rise is checked to within 1 ms.
    assert!(
        slow >= base + 99.0 && slow >= 100.0,
        "rtt {base} -> {slow} ms"
    );
    relay.set(&Impairment {
        loss_percent: Some(100.0),
        ..Default::default()
    });
    let lost = sh(&nodes, 0, "ping -c 2 -i 0.2 -W 1 192.168.55.2");
    assert!(!lost.status.success(), "a 100% loss link carried pings");
    relay.set(&Impairment::default());
    sh(&nodes, 0, ping).checked("ping after clearing").unwrap();
    let stats = relay.stats();
    assert!(stats.dropped >= 2 && stats.forwarded >= 9, "{stats:?}");
    relay.close().unwrap();
    let pids: Vec<i32> = nodes.iter().filter_map(|n| n.pid()).collect();
    nodes.close().unwrap();
    assert_gone(&docker, &run, &pids);
}

#[test]
fn apps_run_to_completion_and_in_the_background() {
    let run = RunId::new();
    let links = [
        Link::new().node_addr("192.168.60.1/24"),
        Link::new().node_addr("192.168.60.2/24"),
    ];
    let logs = common::temp_dir("net-logs");
    let (docker, nodes) = create_with_logs(&run, &links, Some(logs.to_path_buf()));

    let app = App::tools(["sh", "-c", "echo out; echo err >&2; exit 4"]).name("exit4");
    let out = nodes.node(0).unwrap().run_app(&app, APP_TIMEOUT).unwrap();
    assert_eq!(out.status.code(), 4);
    assert_eq!(out.stdout_str(), "out\n");
    assert_eq!(out.stderr_str(), "err\n");
    let err = out.checked("the exit-4 app").unwrap_err().to_string();
    assert!(err.contains("exit code 4") && err.contains("err"), "{err}");

    // A command's own timeout, instead of the fixed 120 s.
    let node0 = nodes.node(0).unwrap();
    let e = node0
        .execute_within("sleep 5", Duration::from_secs(1))
        .unwrap_err();
    assert!(matches!(e, alpy::Error::Timeout { .. }), "{e}");
    assert_eq!(
        node0
            .succeed_within("echo within", Duration::from_secs(30))
            .unwrap(),
        "within\n"
    );

    let wire = common::Shuttle::new(
        nodes.node(0).unwrap().tap_dup().unwrap(),
        nodes.node(1).unwrap().tap_dup().unwrap(),
    );
    let (node0, node1) = (nodes.node(0).unwrap(), nodes.node(1).unwrap());
    let server = node1
        .spawn_app(&App::tools(["iperf3", "-s", "-1"]).name("iperf"))
        .unwrap();
    assert_eq!(server.name(), run.name("node1-iperf"));
    // The server is ready once it listens; wait for that, not for a time.
    node1
        .wait_for_listener(5201, Duration::from_secs(10))
        .unwrap();
    // A 1 Mbit/s limit on node0's egress shows in iperf3's figure.
    node0
        .impair(&Impairment {
            rate_kbit: Some(1000),
            ..Default::default()
        })
        .unwrap();
    let client = sh(&nodes, 0, "iperf3 -c 192.168.60.2 -t 3 -J")
        .checked("iperf3 client")
        .unwrap();
    let json: serde_json::Value = serde_json::from_str(&client.stdout_str()).unwrap();
    let bps = json["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .unwrap();
    eprintln!("iperf3 through a 1 Mbit/s limit: {:.3} Mbit/s", bps / 1e6);
    assert!(
        bps > 0.5e6 && bps < 1.5e6,
        "{bps} bit/s through a 1 Mbit/s limit"
    );
    let server_log = logs.join("node1-iperf.log");
    // iperf3 -s -1 exits after its one test: wait for that (closing a
    // running server would kill it before it flushes its output).
    let mut server = server;
    let served = server
        .wait(Duration::from_secs(30))
        .expect("iperf3 -s -1 exits after one test");
    assert!(served.status.success(), "{}", served.tail());
    server.close().expect("iperf3 -s -1 exits 0 after one test");
    let log = std::fs::read_to_string(&server_log).expect("server log saved on close");
    assert!(log.contains("Server listening on 5201"), "{log}");
    drop(wire);
    let pids: Vec<i32> = nodes.iter().filter_map(|n| n.pid()).collect();
    nodes.close().unwrap();
    assert_gone(&docker, &run, &pids);
    std::fs::remove_dir_all(&logs).ok();
}

#[test]
fn an_app_that_dies_at_once_is_an_error_with_its_exit_code_and_log() {
    let run = RunId::new();
    let links = [Link::new().node_addr("192.168.61.1/24")];
    let (docker, nodes) = create(&run, &links);
    let node = nodes.node(0).unwrap();
    let doomed = App::tools(["sh", "-c", "echo cannot bind port 80 >&2; exit 3"]).name("doomed");
    let e = node
        .spawn_app(&doomed)
        .err()
        .expect("an app that exits at once must fail");
    let msg = e.to_string();
    assert!(
        msg.contains("doomed") && msg.contains("exit code 3"),
        "{msg}"
    );
    assert!(msg.contains("cannot bind port 80"), "{msg}");
    // Bad indexes and names are errors, not panics.
    assert!(matches!(nodes.node(7), Err(alpy::Error::NotFound { .. })));
    let e = nodes
        .by_name("server")
        .err()
        .expect("no node called server");
    assert!(e.to_string().contains("one node: node0 (index 0)"), "{e}");
    // Frames towards a node can only be shaped by a relay.
    let e = node
        .impair_direction(alpy::Direction::ToNode, &Impairment::default())
        .unwrap_err();
    assert!(e.to_string().contains("Link::relay()"), "{e}");
    // The node's verbs.
    assert_eq!(node.succeed("echo hi").unwrap(), "hi\n");
    let web = node
        .spawn_app(&App::tools(["nc", "-lk", "-p", "8080"]).name("listener"))
        .unwrap();
    node.wait_for_open_port("192.168.61.1", 8080, Duration::from_secs(10))
        .unwrap();
    web.close().unwrap();
    let e = node
        .succeed("echo nope >&2; false")
        .unwrap_err()
        .to_string();
    assert!(e.contains("exit code 1") && e.contains("nope"), "{e}");
    let t0 = std::time::Instant::now();
    let e = node
        .wait_until_succeeds("test -e /tmp/never", Duration::from_millis(600))
        .unwrap_err();
    assert!(matches!(e, alpy::Error::Timeout { .. }), "{e}");
    assert!(t0.elapsed() < Duration::from_secs(5));
    let pids: Vec<i32> = nodes.iter().filter_map(|n| n.pid()).collect();
    nodes.close().unwrap();
    assert_gone(&docker, &run, &pids);
}

/// The same tests as an unprivileged user in the docker group, which makes
/// alpy take the helper-container path.
#[test]
fn without_root_through_the_helper() {
    if !common::needs_root("run the other tests as an unprivileged user") {
        return;
    }
    let out = common::run_unprivileged(
        &[
            "--test-threads=2",
            "three_nodes_have_their_addresses_routes_and_macs",
            "traffic_across_a_wire_of_two_taps",
            "impairment_through_a_relay_wire",
            "apps_run_to_completion_and_in_the_background",
            "an_app_that_dies_at_once_is_an_error_with_its_exit_code_and_log",
        ],
        |_| Vec::new(),
    );
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{text}");
    assert!(out.status.success(), "the tests failed without root");
    assert!(text.contains("5 passed"), "{text}");
    assert_eq!(
        text.matches("nodes created in Helper mode").count(),
        5,
        "{text}"
    );
}

/// A node's calls log to its own bed's log, whichever thread makes them
/// (here the test's main thread, in neither bed's scope), and a thread
/// spawned for a bed logs there only.
#[test]
fn a_nodes_calls_log_to_its_own_bed_from_any_thread() {
    let dir = common::temp_dir("net-scopes");
    let make = |tag: &'static str, subnet: u8| {
        let dir = dir.to_path_buf();
        std::thread::spawn(move || {
            let sink = alpy::logging::add_scoped_sink(&dir.join(format!("{tag}.log"))).unwrap();
            sink.enter();
            let run = RunId::new();
            let addr = format!("192.168.{subnet}.1/24");
            let (_, nodes) = create(&run, &[Link::new().node_addr(&addr)]);
            (sink, nodes)
        })
        .join()
        .unwrap()
    };
    let (sink_a, nodes_a) = make("a", 61);
    let (sink_b, nodes_b) = make("b", 62);
    nodes_a
        .node(0)
        .unwrap()
        .succeed("echo marker-of-a")
        .unwrap();
    nodes_b
        .node(0)
        .unwrap()
        .succeed("echo marker-of-b")
        .unwrap();
    alpy::logging::spawn_in(sink_a.scope(), || log::info!("a thread of bed a"))
        .join()
        .unwrap();
    nodes_a.close().unwrap();
    nodes_b.close().unwrap();
    drop((sink_a, sink_b));
    let read = |tag: &str| std::fs::read_to_string(dir.join(format!("{tag}.log"))).unwrap();
    let (a, b) = (read("a"), read("b"));
    assert!(
        a.contains("marker-of-a") && !a.contains("marker-of-b"),
        "a:\n{a}"
    );
    assert!(
        b.contains("marker-of-b") && !b.contains("marker-of-a"),
        "b:\n{b}"
    );
    assert!(a.contains("a thread of bed a") && !b.contains("a thread of bed a"));
}

/// The tools container that `execute` runs in starts in the background
/// once the nodes exist, before any verb asks for it; closing the nodes
/// while those starts are under way leaves nothing behind.
#[test]
fn tools_containers_start_in_the_background_and_go_with_the_nodes() {
    let links = [
        Link::new().node_addr("192.168.1.2/24"),
        Link::new().node_addr("192.168.2.2/24"),
    ];
    let tools = |docker: &Docker, run: &RunId| -> alpy::Result<usize> {
        let all = docker.list_by_label(LABEL_RUN, Some(run.as_str()))?;
        Ok(all
            .iter()
            .filter(|c| c.names.iter().flatten().any(|n| n.ends_with("-sh")))
            .count())
    };
    let run = RunId::new();
    let (docker, nodes) = create(&run, &links);
    let pids: Vec<i32> = nodes.iter().filter_map(|n| n.pid()).collect();
    // No verb has been called on either node.
    alpy::wait::wait_until(
        "both tools containers to run",
        Duration::from_secs(30),
        || match tools(&docker, &run).map_err(|e| e.to_string())? {
            2 => Ok(()),
            n => Err(format!("{n} of 2 running")),
        },
    )
    .expect("tools containers started in the background");
    nodes.close().expect("close");
    assert_gone(&docker, &run, &pids);

    // Closed soon after: a start still under way is waited for and
    // removed, and one not begun never begins.
    for delay_ms in [0, 300] {
        let run = RunId::new();
        let (docker, nodes) = create(&run, &links);
        let pids: Vec<i32> = nodes.iter().filter_map(|n| n.pid()).collect();
        std::thread::sleep(Duration::from_millis(delay_ms));
        nodes.close().expect("close");
        std::thread::sleep(Duration::from_secs(1));
        assert_gone(&docker, &run, &pids);
    }
}
