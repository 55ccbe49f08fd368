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
    // A board of the client's own would run its power commands here.
    refused(
        "[dut]\nprompt = \"# \"\n[dut.board]\nname = \"b\"\nclass = \"c\"\nconsole = { kind = \"serial\", path = \"/dev/ttyS0\" }\npower = { driver = \"command\", switch = \"x\", on = [\"touch\", \"/tmp/owned\"], off = [\"true\"], status = [\"echo\", \"on\"] }\n",
        "dut.board: a remote lab lends its own boards",
    );
    refused(
        "[[machine]]\nname = \"r1\"\n[machine.board]\nname = \"b\"\nclass = \"c\"\nconsole = { kind = \"tcp\", addr = \"127.0.0.1:9\" }\npower = { driver = \"qmp\", socket = \"/run/x.qmp\" }\n",
        "machine[0].board: a remote lab lends its own boards",
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

/// Two boards whose power settings hold secrets: an SNMPv2c community and
/// SNMPv3 pass phrases.
const BOARDS: &str = r#"
[[board]]
name = "fw-1"
class = "fw-9000"
tags = ["rev-b"]
ports = ["alpy-no-port0", "alpy-no-port1"]
console = { kind = "rfc2217", addr = "127.0.0.1:9" }
power = { driver = "snmp", agent = "127.0.0.1:9", port = 1, community = "community-s3cret-v2" }

[[board]]
name = "fw-2"
class = "fw-9000"
console = { kind = "tcp", addr = "127.0.0.1:9" }
[board.power]
driver = "snmp"
agent = "127.0.0.1:9"
port = 2
user = "alpyv3"
auth = { protocol = "SHA", passphrase = "auth-phrase-s3cret" }
privacy = { protocol = "AES", passphrase = "priv-phrase-s3cret" }
"#;

const SECRETS: [&str; 3] = [
    "community-s3cret-v2",
    "auth-phrase-s3cret",
    "priv-phrase-s3cret",
];

#[test]
fn boards_are_listed_without_secrets_and_operators_take_them_offline_and_online() {
    let mut s = Server::start_config("boards", BOARDS, "", "");
    let list = |s: &Server| -> serde_json::Value {
        let r = s.req("GET", "/boards", Some(&s.viewer)).send().unwrap();
        assert_eq!(r.status(), 200);
        let text = r.text().unwrap();
        for secret in SECRETS {
            assert!(!text.contains(secret), "/boards shows {secret}: {text}");
        }
        serde_json::from_str(&text).unwrap()
    };
    let boards = list(&s);
    assert_eq!(boards["boards"][0]["name"], "fw-1");
    assert_eq!(boards["boards"][0]["class"], "fw-9000");
    assert_eq!(boards["boards"][0]["ports"], 2);
    assert_eq!(boards["boards"][1]["state"], "online");
    assert!(
        boards["boards"][0].get("power").is_none() && boards["boards"][0].get("console").is_none(),
        "{boards}"
    );

    // A user may not; an operator must say why.
    let offline = |token: &str, name: &str, reason: &str| {
        s.req("POST", &format!("/boards/{name}/offline"), Some(token))
            .json(&serde_json::json!({ "reason": reason }))
            .send()
            .unwrap()
    };
    assert_eq!(offline(&s.token, "fw-1", "mine now").status(), 403);
    assert_eq!(offline(&s.operator, "fw-1", "  ").status(), 422);
    assert_eq!(offline(&s.operator, "fw-9", "no such").status(), 404);
    let r = offline(&s.operator, "fw-1", "fan broken");
    assert_eq!(r.status(), 200);
    let b: serde_json::Value = r.json().unwrap();
    assert_eq!(
        (b["state"].as_str(), b["reason"].as_str()),
        (Some("offline"), Some("fan broken"))
    );
    assert_eq!(b["changed_by"], "operator ops");

    // Kept across a restart.
    s.kill();
    s.restart();
    let boards = list(&s);
    assert_eq!(boards["boards"][0]["state"], "offline", "{boards}");
    assert_eq!(boards["boards"][0]["reason"], "fan broken");

    let online = |token: &str| {
        s.req("POST", "/boards/fw-1/online", Some(token))
            .send()
            .unwrap()
    };
    assert_eq!(online(&s.viewer).status(), 403);
    assert_eq!(online(&s.operator).status(), 200);
    let boards = list(&s);
    assert_eq!(boards["boards"][0]["state"], "online");
    assert!(boards["boards"][0]["reason"].is_null());

    // `alpy lab` does the same for people.
    let alpy = |token: &str, args: &[&str]| s.alpy_lab(token, args);
    let (ok, out, err) = alpy(&s.viewer, &["boards"]);
    assert!(
        ok && out.contains("fw-2") && out.contains("fw-9000"),
        "{out}{err}"
    );
    let (ok, _, err) = alpy(&s.token, &["offline", "fw-2", "--reason", "re-cabling"]);
    assert!(!ok && err.contains("403"), "{err}");
    let (ok, out, err) = alpy(&s.operator, &["offline", "fw-2", "--reason", "re-cabling"]);
    assert!(
        ok && out.contains("fw-2 is offline: re-cabling"),
        "{out}{err}"
    );
    let (ok, out, err) = alpy(&s.viewer, &["boards", "--json"]);
    assert!(ok, "{err}");
    let listed: alpy::lab::wire::Boards = serde_json::from_str(&out).unwrap();
    assert_eq!(listed.boards[1].state, alpy::lab::wire::BoardState::Offline);
    let (ok, out, err) = alpy(&s.operator, &["online", "fw-2"]);
    assert!(ok && out.contains("fw-2 is online"), "{out}{err}");
    for secret in SECRETS {
        let (_, out, _) = alpy(&s.operator, &["boards", "--json"]);
        assert!(!out.contains(secret), "alpy lab boards shows {secret}");
    }

    // No secret in the API's description or the server's log.
    let doc = s.get("/openapi.json").send().unwrap().text().unwrap();
    let log = std::fs::read_to_string(s.dir.join("server.log")).unwrap();
    for secret in SECRETS {
        assert!(!doc.contains(secret), "/openapi.json shows {secret}");
        assert!(!log.contains(secret), "the server's log shows {secret}");
    }
    assert!(log.contains("board state set"), "{log}");
}

#[test]
fn a_board_configuration_error_names_the_board_and_the_fix() {
    let dir = common::temp_dir("bad-boards");
    for (boards, want) in [
        (
            BOARDS.replace("name = \"fw-2\"", "name = \"fw-1\""),
            "two [[board]] entries are named \"fw-1\"",
        ),
        (
            BOARDS.replace("name = \"fw-2\"", "name = \"fw 2\""),
            "name \"fw 2\": use 1 to 64 letters",
        ),
        (
            BOARDS.replace("protocol = \"SHA\"", "protocol = \"SHA-9\""),
            "board fw-2: its power:",
        ),
    ] {
        let config = dir.path().join("lab.toml");
        std::fs::write(
            &config,
            format!("listen = \"127.0.0.1:0\"\nstate_dir = \"state\"\n{boards}"),
        )
        .unwrap();
        // A configuration taken by mistake would serve for ever.
        let mut child = std::process::Command::new(common::lab_bin())
            .args(["serve", "--config"])
            .arg(&config)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let t0 = Instant::now();
        while child.try_wait().unwrap().is_none() {
            if t0.elapsed() > Duration::from_secs(30) {
                let _ = child.kill();
                panic!("{want}: the server took the configuration and serves");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(want), "{want}: {err}");
        for secret in SECRETS {
            assert!(!err.contains(secret), "the error shows {secret}: {err}");
        }
    }
}

#[test]
fn a_failed_health_check_takes_a_board_offline_until_an_operator_puts_it_back() {
    let dir = common::temp_dir("checks");
    let broken = dir.path().join("broken");
    let classes = format!(
        r#"
[[board_class]]
name = "fw-9000"
health_check = ["sh", "-c", "echo checking $ALPY_BOARD of $ALPY_BOARD_CLASS on $ALPY_BOARD_PORTS; if [ -e {broken} ]; then echo fan stalled >&2; exit 3; fi"]

[[board]]
name = "slow-1"
class = "slow"
console = {{ kind = "tcp", addr = "127.0.0.1:9" }}
power = {{ driver = "qmp", socket = "/nonexistent/slow-1.qmp" }}

[[board_class]]
name = "slow"
health_check = ["sh", "-c", "sleep 60.123 & sleep 60.123"]
health_check_timeout_s = 1
"#,
        broken = broken.display()
    );
    let s = Server::start_config("checks", &format!("{BOARDS}{classes}"), "", "");
    let check = |token: &str, name: &str| {
        s.req("POST", &format!("/boards/{name}/check"), Some(token))
            .send()
            .unwrap()
    };
    let state = |name: &str| -> serde_json::Value {
        let all: serde_json::Value = s.get("/boards").send().unwrap().json().unwrap();
        all["boards"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["name"] == name)
            .unwrap()
            .clone()
    };
    assert_eq!(check(&s.token, "fw-1").status(), 403);
    // Passes: the board's attributes were in its environment.
    let r = check(&s.operator, "fw-1");
    assert_eq!(r.status(), 200);
    let c: alpy::lab::wire::HealthCheck = r.json().unwrap();
    assert!(c.passed, "{c:?}");
    assert_eq!(
        c.output,
        "checking fw-1 of fw-9000 on alpy-no-port0,alpy-no-port1"
    );
    assert_eq!(state("fw-1")["state"], "online");
    // Fails: offline, with what it printed as the reason.
    std::fs::write(&broken, "").unwrap();
    let c: alpy::lab::wire::HealthCheck = check(&s.operator, "fw-1").json().unwrap();
    assert!(!c.passed && c.output.contains("fan stalled"), "{c:?}");
    assert_eq!(c.state, alpy::lab::wire::BoardState::Offline);
    let b = state("fw-1");
    assert_eq!(b["state"], "offline");
    let reason = b["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("health check failed") && reason.contains("exit status 3"),
        "{reason}"
    );
    assert_eq!(b["changed_by"], "health check");
    // `alpy lab check` says the same, and fails with the check.
    let (ok, text, err) = s.alpy_lab(&s.operator, &["check", "fw-1"]);
    assert!(
        !ok && text.contains("health check failed") && text.contains("fan stalled"),
        "{text}{err}"
    );
    // A passing check does not put it back: an operator does.
    std::fs::remove_file(&broken).unwrap();
    assert!(
        check(&s.operator, "fw-1")
            .json::<alpy::lab::wire::HealthCheck>()
            .unwrap()
            .passed
    );
    assert_eq!(state("fw-1")["state"], "offline");
    let r = s
        .req("POST", "/boards/fw-1/online", Some(&s.operator))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(state("fw-1")["state"], "online");
    // A check past its time is killed, with its children, and fails.
    let c: alpy::lab::wire::HealthCheck = check(&s.operator, "slow-1").json().unwrap();
    assert!(
        !c.passed && c.output.contains("did not end within 1 s"),
        "{c:?}"
    );
    assert_eq!(state("slow-1")["state"], "offline");
    let sleepers = std::process::Command::new("pgrep")
        .args(["-f", "^sleep 60.123$"])
        .output()
        .unwrap();
    assert!(
        sleepers.stdout.is_empty(),
        "the check's children outlived it: {}",
        String::from_utf8_lossy(&sleepers.stdout)
    );
}

/// Board reservations: first come, first served within what fits; a
/// holder whose heartbeats stop loses its board to the next; an offline
/// board is never lent.
#[test]
fn boards_are_reserved_in_order_and_a_dead_holder_s_board_goes_to_the_next() {
    let s = Server::start_config(
        "reserve",
        BOARDS,
        "active_heartbeat_s = 10\nmax_sessions_per_token = 8",
        "",
    );
    let reserve = |want: serde_json::Value| {
        let r = s.post("/session").json(&want).send().unwrap();
        let code = r.status().as_u16();
        (code, r.json::<serde_json::Value>().unwrap())
    };
    let rev_b = serde_json::json!({"board": {"class": "fw-9000", "tags": ["rev-b"]}});
    let any_fw = serde_json::json!({"board": {"class": "fw-9000"}});
    // A holds fw-1 (the only rev-b); B waits for it; C takes fw-2.
    let (code, a) = reserve(rev_b.clone());
    // A's last heartbeat: its promotion, now.
    let a_beat = Instant::now();
    assert_eq!((code, a["status"].as_str()), (201, Some("active")), "{a}");
    assert_eq!(a["board"], "fw-1");
    let (_, b) = reserve(rev_b.clone());
    assert_eq!(
        (b["status"].as_str(), b["position"].as_i64()),
        (Some("waiting"), Some(1)),
        "{b}"
    );
    let (_, c) = reserve(any_fw.clone());
    assert_eq!(
        (c["status"].as_str(), c["board"].as_str()),
        (Some("active"), Some("fw-2")),
        "{c}"
    );
    // A session for labs is not held back by board sessions.
    let (_, lab) = reserve(serde_json::Value::Null);
    assert_eq!(lab["status"], "active", "{lab}");
    // What fits no board is refused at once.
    let (code, e) = reserve(serde_json::json!({"board": {"class": "router"}}));
    assert_eq!(code, 422, "{e}");
    assert!(e["detail"].as_str().unwrap().contains("GET /boards"), "{e}");
    // /queue shows who holds what, and what a waiting session wants.
    let q = s.queue();
    let by = |h: &serde_json::Value| {
        q["sessions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["handle"] == h["handle"])
            .cloned()
            .unwrap()
    };
    assert_eq!(by(&a)["board"], "fw-1");
    assert_eq!(by(&b)["wants"]["tags"][0], "rev-b");
    let boards: serde_json::Value = s.get("/boards").send().unwrap().json().unwrap();
    assert_eq!(boards["boards"][0]["holder"], a["handle"], "{boards}");
    // A board session's lab is a bed on its board: a topology of VMs is
    // refused, naming the board (tests/board_bed.rs stands one up).
    let (aid, bid, cid) = (
        a["session_id"].as_str().unwrap().to_string(),
        b["session_id"].as_str().unwrap().to_string(),
        c["session_id"].as_str().unwrap().to_string(),
    );
    let r = s
        .post_as("/lab", &aid)
        .multipart(reqwest::blocking::multipart::Form::new().text("topology", "name = \"x\""))
        .send()
        .unwrap();
    assert_eq!(r.status(), 400);
    let why = r.text().unwrap();
    assert!(why.contains("holds board fw-1"), "{why}");

    // A's client dies (its heartbeats stop); B's and C's go on. B gets
    // fw-1 within the heartbeat limit and a quarter more.
    let beat = |id: &str| s.post_as("/session/heartbeat", id).send().unwrap();
    let promoted = loop {
        assert!(
            a_beat.elapsed() < Duration::from_secs(60),
            "B never got fw-1"
        );
        beat(&bid);
        beat(&cid);
        let now = s.status(&bid);
        if now["status"] == "active" {
            break now;
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    eprintln!(
        "the next waiter got the board {:.1} s after its holder's last heartbeat (limit 10 s)",
        a_beat.elapsed().as_secs_f64()
    );
    assert_eq!(promoted["board"], "fw-1");
    assert_eq!(s.status(&aid)["status"], "expired");

    // An offline board is not lent: C ends, fw-2 is offline, D waits
    // until an operator puts it back online.
    let r = s
        .req("POST", "/boards/fw-2/offline", Some(&s.operator))
        .json(&serde_json::json!({"reason": "re-flash"}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        s.delete(&format!("/session/{cid}"))
            .send()
            .unwrap()
            .status(),
        204
    );
    let (_, d) = reserve(any_fw);
    assert_eq!(d["status"], "waiting", "{d}");
    let r = s
        .req("POST", "/boards/fw-2/online", Some(&s.operator))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let d = s.status(d["session_id"].as_str().unwrap());
    assert_eq!(
        (d["status"].as_str(), d["board"].as_str()),
        (Some("active"), Some("fw-2")),
        "{d}"
    );
}
