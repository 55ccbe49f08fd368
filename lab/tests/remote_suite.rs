//! End to end: Rabbit's suite, unchanged, with `REMOTE_LAB_URL` pointing
//! at a real alpy-lab on a loopback port. Every test bed is a lab there:
//! its console, its nodes' commands and apps, its captures and its power
//! go through the server (its log says so), and after the suite no lab,
//! bed, container or process is left.

mod common;

use alpy::Commands;
use std::process::Command;
use std::time::{Duration, Instant};

use common::Server;

/// The runs of the beds whose artifacts are under `dir`: each bed's
/// journal (`events.jsonl`) starts with its `bed` event, which names it.
fn runs_under(dir: &std::path::Path) -> Vec<String> {
    let mut runs = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = e.path();
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                todo.push(path);
            } else if e.file_name() == "events.jsonl" {
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                let first: serde_json::Value = text
                    .lines()
                    .next()
                    .and_then(|l| serde_json::from_str(l).ok())
                    .unwrap_or_default();
                if let Some(run) = first["run"].as_str() {
                    runs.push(run.to_string());
                }
            }
        }
    }
    runs.sort();
    runs.dedup();
    runs
}

fn active_labs(s: &Server) -> u64 {
    let text = s.get("/metrics").send().unwrap().text().unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("alpy_lab_active_labs "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no alpy_lab_active_labs in {text}"))
}

/// `TestBed::from_topology` on the lab: the shipped forward topology (its
/// files are the store's test guest), its background app started there,
/// a ping through the DUT and its frames in the downloaded capture.
fn topology_file_on_the_lab(s: &Server) {
    // The only test of this binary, and no other thread reads the
    // environment here.
    std::env::set_var("REMOTE_LAB_URL", &s.url);
    std::env::set_var("REMOTE_LAB_TOKEN", &s.token);
    std::env::set_var("ALPY_ARTIFACTS", s.dir.join("artifacts"));
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../topologies/forward.toml");
    let t = alpy::TestBed::from_topology(&path, Duration::from_secs(120));
    for v in ["REMOTE_LAB_URL", "REMOTE_LAB_TOKEN", "ALPY_ARTIFACTS"] {
        std::env::remove_var(v);
    }
    let t = t.unwrap_or_else(|e| panic!("forward.toml on the lab: {e}"));
    assert!(t.is_remote());
    assert_eq!(t.apps().len(), 1, "the iperf server app");
    let client = t.node("client").unwrap();
    assert!(client.is_remote());
    let wall = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64()
    };
    let before = wall();
    client.succeed("ping -c 2 -W 3 192.168.2.2").unwrap();
    let after = wall();
    client
        .wait_for_open_port("192.168.2.2", 5201, Duration::from_secs(10))
        .unwrap();
    let cap = t.capture(0).unwrap();
    let echo: Vec<f64> = cap
        .filter(&alpy::pcap::Filter::new().icmp_type(8))
        .map(|f| f.timestamp.as_secs_f64())
        .collect();
    assert_eq!(echo.len(), 2, "the client's echo requests on link 0");
    // Host time (the lab runs on this host): within the ping's window.
    let offset = t.capture_offset().expect("a lab bed has an offset");
    eprintln!(
        "lab capture offset {offset:.3} s; echo stamps {echo:?} in [{before:.3}, {after:.3}]"
    );
    assert!(
        echo.iter()
            .all(|s| *s >= before - 0.005 && *s <= after + 0.005),
        "echo stamps {echo:?} outside [{before:.3}, {after:.3}]"
    );
    // The DUT's MAC is the lab bed's: the replies come from it.
    let replies: Vec<_> = cap
        .filter(&alpy::pcap::Filter::new().icmp_type(0))
        .filter_map(|f| f.src_mac)
        .collect();
    assert!(!replies.is_empty());
    assert!(
        replies.iter().all(|m| *m == t.dut_mac(0)),
        "replies from {replies:?}, dut_mac(0) = {}",
        t.dut_mac(0)
    );
    // Carrier and impairment through the lab, as locally.
    // A command's own timeout holds through the lab too.
    let e = client
        .execute_within("sleep 5", Duration::from_secs(1))
        .unwrap_err();
    assert!(matches!(e, alpy::Error::Timeout { .. }), "{e}");
    let flags = || client.succeed("ip -o link show dev eth0").unwrap();
    client.set_link(false).unwrap();
    let down = flags();
    assert!(!down.contains(",UP"), "{down}");
    client.set_link(true).unwrap();
    let up = flags();
    assert!(up.contains(",UP"), "{up}");
    let shaped = alpy::net::Impairment {
        rate_kbit: Some(512),
        ..Default::default()
    };
    client.impair(&shaped).unwrap();
    let q = client.succeed("tc qdisc show dev eth0").unwrap();
    assert!(q.contains("tbf") && q.contains("512Kbit"), "{q}");
    client.clear_impairment().unwrap();
    let q = client.succeed("tc qdisc show dev eth0").unwrap();
    assert!(q.contains("pfifo") && !q.contains("tbf"), "{q}");
    let artifacts = t.artifacts_dir().to_path_buf();
    // The lab bed's run (operators see the bed, and a node container
    // carries its run's label): its containers, whatever other tests run
    // beside this one.
    let node = s.queue()["labs"][0]["bed"]["nodes"][0][1]
        .as_str()
        .expect("the operator sees the lab's bed and its nodes")
        .to_string();
    let docker = |args: &[&str]| {
        let out = Command::new("docker").args(args).output().expect("docker");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let run = docker(&[
        "inspect",
        "-f",
        "{{index .Config.Labels \"alpy.run\"}}",
        &node,
    ]);
    assert!(
        !run.is_empty(),
        "node container {node} has no alpy.run label"
    );
    let ours = || docker(&["ps", "-aq", "--filter", &format!("label=alpy.run={run}")]);
    assert!(!ours().is_empty(), "no container of run {run}");
    t.close().unwrap();
    // close() returned once the lab's bed was down: none of its
    // containers is left.
    let left = ours();
    assert!(
        left.is_empty(),
        "containers left right after close(): {left:?}"
    );
    // The lab's logs came back: the iperf app's, QEMU's, the lab bed's.
    let logs: Vec<String> = std::fs::read_dir(artifacts.join("lab"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        logs.iter().any(|l| l == "server-iperf.log") && logs.iter().any(|l| l == "qemu.log"),
        "{logs:?}"
    );
}

#[test]
fn the_rabbit_suite_passes_on_a_lab_server() {
    let rabbit = alpy::internal::cache::cache_dir().unwrap().join("rabbit");
    let store = format!(
        "rabbit-kernel = \"{}\"\nrabbit-initrd = \"{}\"\nrabbit-disk = \"{}\"\n",
        rabbit.join("vmlinuz").display(),
        rabbit.join("initrd.img").display(),
        rabbit.join("rabbit.qcow2").display()
    );
    let s = Server::start_with_store("remote-suite", "max_labs = 1", &store);
    let artifacts = s.dir.join("artifacts");
    let workspace = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    // The one-machine tests: a Rust TestBed with REMOTE_LAB_URL is one
    // machine so far (a lab of several is tested through its API in
    // labs.rs), so nat-chain (two Rabbits) runs locally only.
    eprintln!("remote suite: nat-chain left out (two machines: TestBed on a lab is one machine)");
    let out = Command::new(env!("CARGO"))
        .current_dir(&workspace)
        .args([
            "run",
            "-q",
            "-p",
            "rabbit",
            "--bin",
            "rabbit-suite",
            "--",
            "--jobs",
            "2",
            "--only",
            "forward-ipv4",
            "--only",
            "firewall",
            "--only",
            "load-balancing",
            "--only",
            "nat",
            "--only",
            "rate-limit",
        ])
        .env("REMOTE_LAB_URL", &s.url)
        .env("REMOTE_LAB_TOKEN", &s.token)
        .env("ALPY_ARTIFACTS", &artifacts)
        .output()
        .expect("run rabbit-suite");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let log = std::fs::read_to_string(s.dir.join("server.log")).unwrap_or_default();
    eprintln!("{stdout}");
    assert!(
        out.status.success(),
        "the Rabbit suite failed on the lab:\n{stdout}\n{}\nserver log:\n{log}",
        String::from_utf8_lossy(&out.stderr)
    );
    for test in [
        "forward-ipv4",
        "firewall",
        "load-balancing",
        "nat",
        "rate-limit",
    ] {
        assert!(
            stdout
                .lines()
                .any(|l| l.contains(test) && l.contains("PASS")),
            "{test} did not pass:\n{stdout}"
        );
    }
    topology_file_on_the_lab(&s);
    let log = std::fs::read_to_string(s.dir.join("server.log")).unwrap_or_default();
    // Each test bed was a lab of its own, and everything went through it.
    let count = |what: &str| log.lines().filter(|l| l.contains(what)).count();
    assert_eq!(count("lab up"), 6, "{log}");
    for what in [
        "console attached",
        "exec",
        "app",
        "pcap followed",
        "power",
        "qmp",
    ] {
        assert!(count(what) > 0, "no {what:?} in the server's log:\n{log}");
    }
    // Destroying is asynchronous: the labs and their beds go within a
    // minute or two.
    let beds = || s.beds();
    let t0 = Instant::now();
    while (active_labs(&s) > 0 || !beds().is_empty()) && t0.elapsed() < Duration::from_secs(120) {
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(active_labs(&s), 0, "labs are left on the server");
    assert!(beds().is_empty(), "beds are left: {:?}", beds());
    // Every bed of this server's labs wrote its run into its journal; no
    // container of those runs is left (containers of other tests running
    // beside this one are theirs to clean).
    let runs = runs_under(&s.dir);
    assert!(runs.len() >= 5, "the labs' runs: {runs:?}");
    let left: Vec<String> = runs
        .iter()
        .flat_map(|run| {
            let out = Command::new("docker")
                .args(["ps", "-aq", "--filter", &format!("label=alpy.run={run}")])
                .output()
                .expect("docker ps");
            String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .map(|c| format!("{c} (run {run})"))
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(left.is_empty(), "containers are left: {left:?}");
    // No process of a lab (its supervisor, QEMU, a watchdog) is left:
    // each names the lab's directory, under this server's, on its command
    // line; the server itself is the only one.
    let dir = s.dir.to_string_lossy().into_owned();
    let server = s.child.id().to_string();
    let procs: Vec<String> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|p| p.file_name().to_string_lossy() != server.as_str())
        .filter_map(|p| {
            let cmdline = std::fs::read(p.path().join("cmdline")).ok()?;
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            cmdline
                .contains(&dir)
                .then(|| format!("{:?}: {cmdline}", p.file_name()))
        })
        .collect();
    assert!(
        procs.is_empty(),
        "processes of the labs are left: {procs:?}"
    );
}
