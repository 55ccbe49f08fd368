//! The API against a real server on a loopback port: status codes, auth,
//! the FIFO queue under 50 concurrent clients, heartbeats and expiry, and
//! what uploaded topologies may not do.

mod common;

use std::time::{Duration, Instant};

use common::Server;

#[test]
fn status_codes_auth_and_refusals() {
    let s = Server::start("codes", "");
    assert_eq!(s.req("GET", "/healthz", None).send().unwrap().status(), 204);
    let r = s.req("POST", "/session", None).send().unwrap();
    assert_eq!(r.status(), 401);
    let body: serde_json::Value = r.json().unwrap();
    assert!(
        body["detail"].as_str().unwrap().contains("Bearer"),
        "{body}"
    );
    assert_eq!(
        s.req("POST", "/session", Some("alpylab_wrong"))
            .send()
            .unwrap()
            .status(),
        401
    );
    assert_eq!(s.req("GET", "/queue", None).send().unwrap().status(), 401);
    let (a, status, pos) = s.session();
    assert_eq!((status.as_str(), pos), ("active", 0));
    assert!(a.len() >= 32, "session ids carry at least 128 bits: {a}");
    let (b, status, pos) = s.session();
    assert_eq!((status.as_str(), pos), ("waiting", 1));
    assert_eq!(s.status(&b)["position"], 1);
    assert_eq!(s.get("/session/nope").send().unwrap().status(), 404);
    let active: serde_json::Value = s.get("/active-session").send().unwrap().json().unwrap();
    assert!(active["session_id"].is_null(), "{active}");
    assert_eq!(active["handle"], s.status(&a)["handle"], "{active}");
    // Heartbeats.
    assert_eq!(
        s.post_as("/session/heartbeat", &b).send().unwrap().status(),
        204
    );
    assert_eq!(s.post("/session/heartbeat").send().unwrap().status(), 400);
    assert_eq!(
        s.post_as("/session/heartbeat", "nope")
            .send()
            .unwrap()
            .status(),
        404
    );
    // Every /lab call of a waiting session is 423; without a session 400.
    let calls: Vec<(&str, &str)> = vec![
        ("GET", "/lab"),
        ("DELETE", "/lab"),
        ("GET", "/lab/devices"),
        ("POST", "/lab/release"),
        ("GET", "/lab/console"),
        ("GET", "/lab/links/client/pcap"),
        ("POST", "/lab/power/off"),
    ];
    for (method, path) in &calls {
        let req = |id: Option<&str>| {
            let b = match *method {
                "GET" => s.get(path),
                "DELETE" => s.delete(path),
                _ => s.post(path),
            };
            match id {
                Some(id) => b.header("X-Session-ID", id),
                None => b,
            }
        };
        assert_eq!(
            req(Some(&b)).send().unwrap().status(),
            423,
            "{method} {path}"
        );
        assert_eq!(req(None).send().unwrap().status(), 400, "{method} {path}");
    }
    assert_eq!(s.acquire(&b, common::TOPOLOGY, true).status(), 423);
    let qmp = s
        .post_as("/lab/qmp", &b)
        .json(&serde_json::json!({"execute": "query-status"}))
        .send()
        .unwrap();
    assert_eq!(qmp.status(), 423);
    // The active session: nothing held yet.
    assert_eq!(s.get_as("/lab", &a).send().unwrap().status(), 404);
    // Uploads that reach for the host are refused, with the reason.
    let refused = |topology: &str, needle: &str| {
        let r = s.acquire(&a, topology, true);
        assert_eq!(r.status(), 400, "{topology}");
        let detail = r.json::<serde_json::Value>().unwrap()["detail"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(detail.contains(needle), "{detail}");
    };
    refused("[dut]\nkernel = \"/etc/shadow\"\n", "image store");
    refused("[dut]\nkernel = \"{cache}/guest/vmlinuz\"\n", "image store");
    refused(
        "[dut]\nkernel = \"store:guest-kernel\"\nextra_args = [\"-drive\", \"file=/etc/shadow\"]\n",
        "raw QEMU",
    );
    refused(
        "[dut]\ndisks = [{ path = \"/etc/shadow\" }]\n",
        "dut.disks[0].path",
    );
    refused(
        "[dut]\nkernel = \"store:guest-kernel\"\n[[link]]\napps = [{ image = \"evil/miner\" }]\n",
        "allow-list",
    );
    refused(
        "[dut]\nkernel = \"store:guest-kernel\"\n[[link]]\nadrs = []\n",
        "unknown field",
    );
    for name in ["../escape.txt", "/etc/cron.d/x", "a/../../b"] {
        let form = reqwest::blocking::multipart::Form::new()
            .text("topology", common::TOPOLOGY.to_string())
            .part(
                "extra_files",
                reqwest::blocking::multipart::Part::bytes(b"x".to_vec()).file_name(name),
            );
        let r = s.post_as("/lab", &a).multipart(form).send().unwrap();
        assert_eq!(r.status(), 400, "{name}");
        assert!(r.text().unwrap().contains("without `..`"), "{name}");
    }
    // A body over the limit is refused on its declared length, before any
    // of it is read (sent by hand: a client still writing 17 MiB when the
    // answer comes sees a reset, not the 413).
    assert_eq!(
        s.raw_status_of_declared_body("/lab", &a, 17 << 20),
        413,
        "a body over the limit"
    );
    // Ending sessions: 204, then 409; the next is promoted.
    assert_eq!(
        s.delete(&format!("/session/{a}")).send().unwrap().status(),
        204
    );
    assert_eq!(
        s.delete(&format!("/session/{a}")).send().unwrap().status(),
        409
    );
    assert_eq!(s.status(&b)["status"], "active");
    let doc: serde_json::Value = s.get("/openapi.json").send().unwrap().json().unwrap();
    assert!(doc["paths"]["/lab/console"].is_object(), "{doc}");
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."), "{doc}");
    // The answers' schemas come from the shared wire types.
    let schemas = &doc["components"]["schemas"];
    for name in [
        "Session",
        "Lab",
        "Queue",
        "SessionStatus",
        "LabStatus",
        "ErrorBody",
    ] {
        assert!(schemas[name].is_object(), "no schema {name}: {schemas}");
    }
    assert_eq!(
        schemas["SessionStatus"]["enum"],
        serde_json::json!(["waiting", "active", "ended", "expired"])
    );
    // Every route but /healthz says it can refuse a token.
    assert!(doc["paths"]["/queue"]["get"]["responses"]["401"].is_object());
    assert!(doc["paths"]["/healthz"]["get"]["responses"]["401"].is_null());
    // A held lab's call can find it starting; a JSON body can be refused.
    assert!(doc["paths"]["/lab/console"]["get"]["responses"]["409"].is_object());
    assert!(doc["paths"]["/lab/qmp"]["post"]["responses"]["415"].is_object());
    // `alpy-lab openapi` prints the same document without a server.
    let printed = std::process::Command::new(common::lab_bin())
        .arg("openapi")
        .output()
        .unwrap();
    assert!(printed.status.success());
    let printed: serde_json::Value = serde_json::from_slice(&printed.stdout).unwrap();
    assert_eq!(printed, doc);
    let get_queue = &doc["paths"]["/queue"]["get"]["responses"]["200"];
    assert_eq!(
        get_queue["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/Queue"
    );
    let metrics = s.get("/metrics").send().unwrap().text().unwrap();
    assert!(
        metrics.contains("alpy_lab_queue_length 0")
            && metrics.contains("alpy_lab_active_sessions 1"),
        "{metrics}"
    );
    assert_eq!(s.get("/queue").send().unwrap().status(), 200);
}

#[test]
fn fifo_holds_exactly_with_50_concurrent_clients() {
    let s = Server::start("fifo", "max_sessions_per_token = 50");
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(50));
    let handles: Vec<_> = (0..50)
        .map(|_| {
            let (url, token, barrier) = (s.url.clone(), s.token.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                let v: serde_json::Value = common::client()
                    .post(format!("{url}/session"))
                    .bearer_auth(token)
                    .send()
                    .unwrap()
                    .json()
                    .unwrap();
                (
                    v["position"].as_i64().unwrap(),
                    v["session_id"].as_str().unwrap().to_string(),
                )
            })
        })
        .collect();
    let mut sessions: Vec<(i64, String)> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    sessions.sort();
    let positions: Vec<i64> = sessions.iter().map(|(p, _)| *p).collect();
    assert_eq!(
        positions,
        (0..50).collect::<Vec<_>>(),
        "each place in the queue given once"
    );
    // Promotion follows the queue exactly.
    for (i, (_, id)) in sessions.iter().enumerate() {
        let v = s.status(id);
        assert_eq!(v["status"], "active", "session {i} should be active now");
        if let Some((_, next)) = sessions.get(i + 1) {
            assert_eq!(s.status(next)["position"], 1);
        }
        assert_eq!(
            s.delete(&format!("/session/{id}")).send().unwrap().status(),
            204
        );
    }
}

#[test]
fn heartbeats_keep_sessions_and_a_killed_clients_session_expires() {
    let s = Server::start(
        "heartbeat",
        "waiting_heartbeat_s = 3.0\nactive_heartbeat_s = 2.0\n",
    );
    let (a, _, _) = s.session();
    let (b, _, pos) = s.session();
    assert_eq!(pos, 1);
    let (silent, _, _) = s.session();
    // A's client is a process that heartbeats, then is SIGKILLed.
    let mut client = std::process::Command::new("sh")
        .args(["-c", &format!("while curl -fsS -X POST -H 'X-Session-ID: {a}' -H 'Authorization: Bearer {}' {}/session/heartbeat; do sleep 0.5; done", s.token, s.url)])
        .spawn()
        .unwrap();
    // B heartbeats from here; the silent one never does.
    let beat = |id: &str| s.post_as("/session/heartbeat", id).send().unwrap().status();
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(4) {
        assert_eq!(beat(&b), 204);
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(
        s.status(&a)["status"],
        "active",
        "a heartbeating session lives past its limit"
    );
    assert_eq!(
        s.status(&silent)["status"],
        "expired",
        "a waiting session without heartbeats"
    );
    client.kill().unwrap();
    client.wait().unwrap();
    let killed = Instant::now();
    loop {
        assert_eq!(beat(&b), 204);
        if s.status(&b)["status"] == "active" {
            break;
        }
        assert!(
            killed.elapsed() < Duration::from_secs(10),
            "B was not promoted after A's client died"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let took = killed.elapsed().as_secs_f64();
    assert!(
        took >= 1.5,
        "A expired after {took:.1} s, before its 2 s limit"
    );
    let va = s.status(&a);
    assert_eq!(va["status"], "expired");
    assert!(
        va["note"].as_str().unwrap().contains("no heartbeat"),
        "{va}"
    );
    let metrics = s.get("/metrics").send().unwrap().text().unwrap();
    assert!(
        metrics.contains("alpy_lab_heartbeat_expiries_total 2"),
        "{metrics}"
    );
}

/// `lab/lab.example.toml` as shipped: a server starts from it unchanged
/// (copied beside a state directory of its own), `--listen` overrides its
/// address, `--log-json` logs JSON lines, a token made for it opens a
/// session, and nothing of its store (files that do not exist here) is
/// offered: the log names them.
#[test]
fn the_shipped_example_configuration_starts_as_it_is() {
    let dir = common::temp_dir("example");
    let shipped = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("lab.example.toml");
    let config = dir.join("lab.toml");
    std::fs::copy(&shipped, &config).unwrap();
    let token = common::create_token(&config, "tests", "user");
    assert!(token.starts_with("alpylab_"), "{token}");
    let written = std::fs::read_to_string(&config).unwrap();
    assert!(
        !written.contains(&token),
        "the configuration keeps the token itself, not its hash"
    );
    let (mut child, url) = common::serve(&dir, &config, &["--listen", "127.0.0.1:0", "--log-json"]);
    let stop = |child: &mut std::process::Child| {
        let _ = child.kill();
        let _ = child.wait();
    };
    let port: u16 = url.rsplit(':').next().unwrap().parse().unwrap();
    let client = common::client();
    let healthz = client
        .get(format!("{url}/healthz"))
        .send()
        .unwrap()
        .status();
    let session = client
        .post(format!("{url}/session"))
        .bearer_auth(&token)
        .send()
        .unwrap()
        .status();
    let store: serde_json::Value = client
        .get(format!("{url}/store"))
        .bearer_auth(&token)
        .send()
        .unwrap()
        .json()
        .unwrap();
    stop(&mut child);
    let state = dir.join("alpy-lab-state/alpy-lab.sqlite").exists();
    let log = std::fs::read_to_string(dir.join("server.log")).unwrap_or_default();
    let _ = std::fs::remove_dir_all(&dir);
    assert_ne!(port, 8300, "--listen overrides the configuration's address");
    assert_eq!(healthz, 204);
    assert_eq!(session, 201);
    assert_eq!(store["files"], serde_json::json!([]), "{store}");
    // --log-json: one object per line, the store entry a field of its own.
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(
        lines.iter().any(|v| v["level"] == "WARN"
            && v["fields"]["store"] == "guest-kernel"
            && v["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("store entry left out"))),
        "a missing store file is named in the log:\n{log}"
    );
    assert!(state, "the state lives beside the configuration");
}
