//! `alpy::lab`, the client tests use, against a real server: a session,
//! the queue, a remote bed's console, nodes, captures and QMP, release on
//! close and on drop; and `alpy lab` for people.

mod common;

use std::time::Duration;

use alpy::lab::wire::SessionStatus;
use common::Server;

#[test]
fn a_remote_bed_through_the_client_library() {
    let s = Server::start("client", "");
    // Refusals and unreachable servers are lab errors a program can act on.
    match alpy::lab::LabClient::connect(&s.url, "not-the-token") {
        Err(alpy::Error::Lab {
            status: Some(401), ..
        }) => {}
        other => panic!("a wrong token: {:?}", other.err()),
    }
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let nowhere = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    match alpy::lab::LabClient::connect(&nowhere, &s.token) {
        Err(e @ alpy::Error::Lab { status: None, .. }) => {
            assert!(e.to_string().starts_with("lab server: "), "{e}")
        }
        other => panic!("no server: {:?}", other.err()),
    }
    let lab = alpy::lab::LabClient::connect(&s.url, &s.token).unwrap();
    // A second client waits behind the first.
    let second = alpy::lab::LabClient::connect(&s.url, &s.token).unwrap();
    assert_eq!(second.info().unwrap().position, 1);
    let err = second
        .wait_active(Duration::from_secs(1))
        .unwrap_err()
        .to_string();
    assert!(err.contains("position 1"), "{err}");

    let mut bed = lab
        .acquire(common::TOPOLOGY, Duration::from_secs(60))
        .unwrap();
    assert_eq!(bed.nodes().unwrap(), ["client", "server"]);
    // The server logged the bed's steps as they came (alpy up's typed
    // events), each with its lab.
    let log = std::fs::read_to_string(s.dir.join("server.log")).unwrap();
    let lab_id = &bed.lab().lab_id;
    assert!(
        log.lines()
            .any(|l| l.contains(lab_id.as_str()) && l.contains("step: Create 2 nodes... done")),
        "{log}"
    );
    let out = bed
        .node_succeed(
            "client",
            &["ping", "-c", "3", "-i", "0.3", "-W", "5", "192.168.2.2"],
        )
        .unwrap();
    assert!(out.contains("3 received"), "{out}");
    let e = bed
        .node_succeed("server", &["sh", "-c", "echo no >&2; exit 2"])
        .unwrap_err()
        .to_string();
    assert!(e.contains("exit code 2") && e.contains("no"), "{e}");
    assert_eq!(bed.qmp("query-status", None).unwrap()["status"], "running");
    let cap = bed.capture("client").unwrap();
    let echo = alpy::pcap::Filter::new().icmp_type(8);
    assert!(cap.count(&echo) >= 3, "{} echo requests", cap.count(&echo));
    let console = bed.console().unwrap();
    console.send_line("echo remote-$((6*7))").unwrap();
    console.exp_string("remote-42").unwrap();
    // The CLI sees the same server.
    let (ok, text, _) = s.alpy_lab(&s.token, &["status"]);
    assert!(
        ok && text.contains("1 active session(s), 1 waiting, 1 lab(s)"),
        "{text}"
    );
    bed.close().unwrap();
    // Closing released the lab (idle) and ended the session: the second
    // client is promoted.
    second.wait_active(Duration::from_secs(10)).unwrap();
    let q: serde_json::Value = s.queue();
    assert_eq!(q["labs"][0]["status"], "idle", "{q}");
    // A dropped client (a panicking test) ends its session too.
    let id = second.session_id().to_string();
    drop(second);
    assert_eq!(s.status(&id)["status"], "ended");
    let lab_id = q["labs"][0]["lab_id"].as_str().unwrap();
    let (ok, _, err) = s.alpy_lab(&s.operator, &["destroy", lab_id]);
    assert!(ok, "{err}");
}

#[test]
fn from_env_needs_a_token() {
    // Run in a child so the variables touch no other test.
    if std::env::var("ALPY_LAB_ENV_CHILD").is_err() {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "from_env_needs_a_token", "--nocapture"])
            .env("ALPY_LAB_ENV_CHILD", "1")
            .env("REMOTE_LAB_URL", "http://127.0.0.1:9")
            .env_remove("REMOTE_LAB_TOKEN")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
        return;
    }
    let e = alpy::lab::LabClient::from_env().err().unwrap().to_string();
    assert!(e.contains("REMOTE_LAB_TOKEN is not"), "{e}");
    // An empty URL is no URL: the beds run here (this child runs this
    // test alone).
    std::env::set_var("REMOTE_LAB_URL", "");
    assert!(alpy::lab::LabClient::from_env().unwrap().is_none());
}

#[test]
fn the_clients_heartbeats_keep_its_session() {
    let s = Server::start(
        "client-heart",
        "waiting_heartbeat_s = 7.0\nactive_heartbeat_s = 7.0\n",
    );
    let lab = alpy::lab::LabClient::connect(&s.url, &s.token).unwrap();
    let waiting = alpy::lab::LabClient::connect(&s.url, &s.token).unwrap();
    std::thread::sleep(Duration::from_secs(10));
    assert_eq!(lab.info().unwrap().status, SessionStatus::Active);
    assert_eq!(waiting.info().unwrap().status, SessionStatus::Waiting);
    lab.close().unwrap();
    waiting.close().unwrap();
}

/// The same topology file a local test stands up works remotely: its
/// files are matched to the store by SHA-256.
#[test]
fn the_same_topology_file_runs_remotely() {
    let s = Server::start("same-file", "");
    let forward =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../topologies/forward.toml");
    let lab = alpy::lab::LabClient::connect(&s.url, &s.token).unwrap();
    let text = lab.for_lab(&forward).unwrap();
    assert!(
        text.contains("store:guest-kernel") && text.contains("store:guest-initrd"),
        "{text}"
    );
    let bed = lab.acquire_file(&forward, Duration::from_secs(60)).unwrap();
    let out = bed
        .node_succeed("client", &["ping", "-c", "1", "-W", "5", "192.168.2.2"])
        .unwrap();
    assert!(out.contains("1 received"), "{out}");
    // Its background app (iperf3 on the server node) runs there too.
    bed.node_succeed(
        "client",
        &[
            "sh",
            "-c",
            "for i in $(seq 50); do nc -z 192.168.2.2 5201 && exit 0; sleep 0.2; done; exit 1",
        ],
    )
    .unwrap();
    bed.close().unwrap();
    // A file the store lacks is named, with what to do.
    let dir = common::temp_dir("same-file-bad");
    let odd = dir.join("vmlinuz");
    std::fs::write(&odd, b"not the store's kernel").unwrap();
    let t = dir.join("t.toml");
    std::fs::write(&t, "[dut]\nkernel = \"vmlinuz\"\nprompt = \"# \"\n").unwrap();
    let lab = alpy::lab::LabClient::connect(&s.url, &s.token).unwrap();
    let e = lab.for_lab(&t).unwrap_err().to_string();
    assert!(
        e.contains("dut.kernel")
            && e.contains("store has no file like")
            && e.contains("ask its operator"),
        "{e}"
    );
    lab.close().unwrap();
    std::fs::remove_dir_all(&dir).ok();
}

/// `alpy lab` runs the operator's actions through the client library, and
/// prints the API's own shapes with `--json`.
#[test]
fn the_cli_moves_and_ends_sessions_as_an_operator() {
    let s = Server::start("cli-operator", "max_sessions_per_token = 4");
    let (_a, _, _) = s.session();
    let (_b, _, _) = s.session();
    let (c, _, position) = s.session();
    assert_eq!(position, 2);
    let handle = s.status(&c)["handle"].as_str().unwrap().to_string();
    let alpy = |token: &str, args: &[&str]| s.alpy_lab(token, args);
    // A user may look, not move.
    let (ok, _, err) = alpy(&s.token, &["move", &handle, "1"]);
    assert!(!ok && err.contains("403"), "{err}");
    let (ok, out, err) = alpy(&s.operator, &["move", &handle, "1"]);
    assert!(
        ok && out.contains(&format!("{handle} is now at position 1")),
        "{out}{err}"
    );
    let (ok, out, err) = alpy(&s.viewer, &["queue", "--json"]);
    assert!(ok, "{err}");
    let queue: Vec<alpy::lab::wire::Session> = serde_json::from_str(&out).unwrap();
    let waiting: Vec<_> = queue
        .iter()
        .filter(|q| q.status == SessionStatus::Waiting)
        .map(|q| (q.position, q.handle.as_str()))
        .collect();
    assert_eq!(waiting[0], (1, handle.as_str()), "{out}");
    assert!(queue.iter().all(|q| q.session_id.is_none()), "{out}");
    let (ok, out, err) = alpy(&s.operator, &["end", &handle]);
    assert!(ok && out.contains("ended"), "{out}{err}");
    assert_eq!(s.status(&c)["status"], "ended");
    let (ok, _, err) = alpy(&s.operator, &["end", &handle]);
    assert!(!ok && err.contains("404"), "{err}");
}
