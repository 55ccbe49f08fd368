//! The attacks that once chained into root on the lab host, run against a
//! real server (and, where they need one, a real lab): every route by
//! role, another owner's session, QMP that reaches the host, QEMU option
//! injection through topology strings, caps, a chunked oversize upload,
//! kill -9 while a lab starts, a locked database, slow clients, and a
//! restart after a long outage.

mod common;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use common::Server;
use serde_json::Value;

/// Every route, with what each caller gets. `A` is the user token's
/// active session, `B` its waiting one.
#[test]
fn every_route_answers_each_role_as_its_rules_say() {
    let s = Server::start("roles", "max_sessions_per_token = 3");
    let (a, _, _) = s.session();
    let (b, _, _) = s.session();
    let handle_b = s.status(&b)["handle"].as_str().unwrap().to_string();
    // (method, path, session header, anon, viewer, other user, owner, operator)
    type Row<'a> = (&'a str, String, Option<&'a str>, [u16; 5]);
    let rows: Vec<Row> = vec![
        ("GET", "/healthz".into(), None, [204, 204, 204, 204, 204]),
        ("GET", "/queue".into(), None, [401, 200, 200, 200, 200]),
        (
            "GET",
            "/active-session".into(),
            None,
            [401, 200, 200, 200, 200],
        ),
        ("GET", "/store".into(), None, [401, 200, 200, 200, 200]),
        // No boards in this configuration: an operator gets 404, and
        // nobody else gets past the role check (tests/api.rs has boards).
        ("GET", "/boards".into(), None, [401, 200, 200, 200, 200]),
        (
            "POST",
            "/boards/nope/offline".into(),
            None,
            [401, 403, 403, 403, 415],
        ),
        (
            "POST",
            "/boards/nope/online".into(),
            None,
            [401, 403, 403, 403, 404],
        ),
        (
            "POST",
            "/boards/nope/check".into(),
            None,
            [401, 403, 403, 403, 404],
        ),
        ("GET", "/metrics".into(), None, [401, 200, 200, 200, 200]),
        ("GET", "/events".into(), None, [401, 200, 200, 200, 200]),
        ("GET", "/whoami".into(), None, [401, 200, 200, 200, 200]),
        // The dashboard's page asks for a token itself.
        ("GET", "/".into(), None, [200, 200, 200, 200, 200]),
        ("GET", "/ui/app.js".into(), None, [200, 200, 200, 200, 200]),
        ("GET", "/ui/app.css".into(), None, [200, 200, 200, 200, 200]),
        // A lab by id (the roles on a real lab: tests/dashboard.rs).
        (
            "GET",
            "/labs/nope/console".into(),
            None,
            [401, 404, 404, 404, 404],
        ),
        (
            "GET",
            "/labs/nope/topology.svg".into(),
            None,
            [401, 404, 404, 404, 404],
        ),
        (
            "GET",
            "/labs/nope/logs/debug.log".into(),
            None,
            [401, 404, 404, 404, 404],
        ),
        (
            "GET",
            "/labs/nope/links/client/pcap".into(),
            None,
            [401, 404, 404, 404, 404],
        ),
        (
            "GET",
            "/openapi.json".into(),
            None,
            [401, 200, 200, 200, 200],
        ),
        (
            "GET",
            format!("/session/{a}"),
            None,
            [401, 404, 404, 200, 404],
        ),
        (
            "POST",
            "/session/heartbeat".into(),
            Some(&a),
            [401, 403, 404, 204, 404],
        ),
        ("GET", "/lab".into(), Some(&a), [401, 403, 404, 404, 404]),
        (
            "GET",
            "/lab/devices".into(),
            Some(&a),
            [401, 403, 404, 404, 404],
        ),
        (
            "POST",
            "/lab/release".into(),
            Some(&a),
            [401, 403, 404, 404, 404],
        ),
        (
            "GET",
            "/lab/console".into(),
            Some(&a),
            [401, 403, 404, 404, 404],
        ),
        // A board's streams: its holder's session only (no such board
        // here; tests/board_streams.rs has one).
        (
            "GET",
            "/boards/nope/console".into(),
            Some(&a),
            [401, 403, 404, 404, 404],
        ),
        (
            "GET",
            "/boards/nope/ssh".into(),
            Some(&a),
            [401, 403, 404, 404, 404],
        ),
        (
            "POST",
            "/lab/power/off".into(),
            Some(&a),
            [401, 403, 404, 404, 404],
        ),
        (
            "GET",
            "/lab/links/client/pcap".into(),
            Some(&a),
            [401, 403, 404, 404, 404],
        ),
        (
            "GET",
            "/lab/logs".into(),
            Some(&a),
            [401, 403, 404, 404, 404],
        ),
        (
            "GET",
            "/lab/logs/qemu.log".into(),
            Some(&a),
            [401, 403, 404, 404, 404],
        ),
        (
            "POST",
            "/lab/nodes/client/link".into(),
            Some(&a),
            [401, 403, 404, 415, 404],
        ),
        (
            "POST",
            "/lab/nodes/client/exec".into(),
            Some(&a),
            [401, 403, 404, 415, 404],
        ),
        (
            "POST",
            "/lab/nodes/client/apps".into(),
            Some(&a),
            [401, 403, 404, 415, 404],
        ),
        (
            "DELETE",
            "/lab/apps/app1".into(),
            Some(&a),
            [401, 403, 404, 404, 404],
        ),
        (
            "POST",
            "/lab/qmp".into(),
            Some(&a),
            [401, 403, 404, 415, 404],
        ),
        ("GET", "/lab".into(), Some(&b), [401, 403, 404, 423, 404]),
        ("POST", "/lab".into(), Some(&a), [401, 403, 404, 400, 404]),
        ("DELETE", "/lab".into(), Some(&a), [401, 403, 404, 404, 404]),
        (
            "POST",
            "/lab/power/cycle".into(),
            Some(&b),
            [401, 403, 404, 423, 404],
        ),
        (
            "DELETE",
            "/labs/nope".into(),
            None,
            [401, 403, 403, 403, 404],
        ),
        (
            "DELETE",
            "/sessions/0000000000".into(),
            None,
            [401, 403, 403, 403, 404],
        ),
        (
            "POST",
            format!("/sessions/{handle_b}/position"),
            None,
            [401, 403, 403, 403, 415],
        ),
    ];
    // The table covers the API: every route of the generated document
    // (the router registers exactly those) has a row, and every row is a
    // documented route. Two are checked on their own below.
    let doc: Value = s.get("/openapi.json").send().unwrap().json().unwrap();
    let below = [("POST", "/session"), ("DELETE", "/session/{id}")];
    let mut documented = Vec::new();
    for (template, ops) in doc["paths"].as_object().unwrap() {
        for method in ops.as_object().unwrap().keys() {
            documented.push((method.to_uppercase(), template.clone()));
        }
    }
    assert!(documented.len() >= 28, "{documented:?}");
    for (method, template) in &documented {
        let covered = rows
            .iter()
            .any(|(m, path, _, _)| m == method && fits(template, path))
            || below.contains(&(method.as_str(), template.as_str()));
        assert!(
            covered,
            "{method} {template} is in /openapi.json but not in this table: add its row"
        );
    }
    for (m, path, _, _) in &rows {
        assert!(
            documented.iter().any(|(dm, t)| dm == m && fits(t, path)),
            "{m} {path} is not in /openapi.json"
        );
    }
    let tokens = [
        None,
        Some(s.viewer.as_str()),
        Some(s.other.as_str()),
        Some(s.token.as_str()),
        Some(s.operator.as_str()),
    ];
    let who = ["anonymous", "viewer", "other user", "owner", "operator"];
    for (method, path, sid, codes) in &rows {
        for (i, token) in tokens.iter().enumerate() {
            let mut r = s.req(method, path, *token);
            if let Some(sid) = sid {
                r = r.header("X-Session-ID", *sid);
            }
            let r = r.send().unwrap();
            let code = r.status().as_u16();
            let ct = r
                .headers()
                .get("content-type")
                .map(|v| v.to_str().unwrap().to_string())
                .unwrap_or_default();
            assert_eq!(
                code,
                codes[i],
                "{method} {path} as {}: {}",
                who[i],
                r.text().unwrap()
            );
            if code >= 400 {
                assert!(ct.starts_with("application/json"), "{method} {path}: {ct}");
            }
        }
    }
    // A viewer cannot open sessions; others' ids end nothing.
    assert_eq!(
        s.req("POST", "/session", Some(&s.viewer))
            .send()
            .unwrap()
            .status(),
        403
    );
    assert_eq!(
        s.req("DELETE", &format!("/session/{a}"), Some(&s.other))
            .send()
            .unwrap()
            .status(),
        404
    );
    // No session id in any shared view, whoever asks.
    for t in [&s.viewer, &s.other, &s.token, &s.operator] {
        for path in ["/queue", "/active-session"] {
            let text = s.req("GET", path, Some(t)).send().unwrap().text().unwrap();
            assert!(!text.contains(&a) && !text.contains(&b), "{path}: {text}");
        }
    }
    // Bearer is case-insensitive; a wrong scheme is 401 with a reason.
    let r = s
        .req("GET", "/queue", None)
        .header("Authorization", format!("bEaReR {}", s.token))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = s
        .req("GET", "/queue", None)
        .header("Authorization", format!("Basic {}", s.token))
        .send()
        .unwrap();
    assert_eq!(r.status(), 401);
    // axum's own rejections answer in the one JSON shape.
    let r = s
        .req("GET", "/no/such/route", Some(&s.token))
        .send()
        .unwrap();
    assert_eq!(r.status(), 404);
    assert!(r.json::<Value>().unwrap()["detail"].is_string());
    let r = s
        .post_as("/lab/qmp", &a)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.json::<Value>().unwrap()["detail"].is_string());
    // The operator moves B to the front, then ends it by handle.
    let (c, _, _) = s.session();
    let handle_c = s.status(&c)["handle"].as_str().unwrap().to_string();
    let r = s
        .req(
            "POST",
            &format!("/sessions/{handle_c}/position"),
            Some(&s.operator),
        )
        .json(&serde_json::json!({ "position": 1 }))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().unwrap());
    assert_eq!(
        (
            s.status(&c)["position"].clone(),
            s.status(&b)["position"].clone()
        ),
        (1.into(), 2.into())
    );
    let r = s
        .req(
            "DELETE",
            &format!("/sessions/{handle_b}"),
            Some(&s.operator),
        )
        .send()
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(s.status(&b)["status"], "ended");
    // One token holds at most max_sessions_per_token live sessions.
    let (_d, _, _) = s.session();
    let r = s.post("/session").send().unwrap();
    assert_eq!(r.status(), 429, "{}", r.text().unwrap());
}

/// Whether `path` is an instance of the OpenAPI path `template`
/// (`/session/{id}`).
fn fits(template: &str, path: &str) -> bool {
    let path = path.split('?').next().unwrap_or(path);
    let (t, p): (Vec<_>, Vec<_>) = (template.split('/').collect(), path.split('/').collect());
    t.len() == p.len()
        && t.iter()
            .zip(&p)
            .all(|(t, p)| t == p || (t.starts_with('{') && !p.is_empty()))
}

fn detail(r: reqwest::blocking::Response) -> (u16, String) {
    let code = r.status().as_u16();
    let v: Value = r.json().unwrap_or_default();
    (code, v["detail"].as_str().unwrap_or_default().to_string())
}

/// The host-reaching attacks against a server with a real lab.
#[test]
fn topology_qmp_and_upload_attacks_are_refused() {
    let s = Server::start(
        "attacks",
        "max_memory_mib = 4096\nmax_cpus = 2\nmax_body_bytes = 1048576",
    );
    let (a, _, _) = s.session();
    let refused = |topology: &str, needle: &str| {
        let (code, why) = detail(s.acquire(&a, topology, true));
        assert_eq!(code, 400, "{topology}: {why}");
        assert!(why.contains(needle), "{topology}: {why}");
        assert!(
            !why.contains(&s.dir.display().to_string()),
            "a host path in {why}"
        );
    };
    let base = "[dut]\nkernel = \"store:guest-kernel\"\ninitrd = \"store:guest-initrd\"\n";
    refused(
        "[dut]\ndisks = [{ path = \"store:guest-kernel\", format = \"raw,file=/etc/shadow\" }]\n",
        "disk format",
    );
    refused(
        &format!("{base}smbios = [\"file=/etc/shadow\"]\n"),
        "smbios",
    );
    refused(
        &format!("{base}smbios = [\"type=1,file=/etc/shadow\"]\n"),
        "smbios",
    );
    refused(
        &format!("{base}machine = \"pc,firmware=/etc/shadow\"\n"),
        "machine",
    );
    refused(&format!("{base}cpu = \"qemu64,+vmx\"\n"), "CPU model");
    refused(&format!("{base}memory_mib = 999999999\n"), "max_memory_mib");
    refused(&format!("{base}cpus = 10000\n"), "max_cpus");
    refused(&format!("{base}aux_serials = 100000000\n"), "max_serials");
    refused(
        &format!("name = \"x\\nforged line\"\n{base}"),
        "control character",
    );
    // Numbers that would have panicked a request's thread.
    refused(
        &format!("{base}[[link]]\nimpair = {{ delay_ms = inf }}\n"),
        "an hour",
    );
    // A chunked upload over the limit: 413, not 500. Just over it, so the
    // client has sent all of it when the answer comes (the server closes
    // a connection whose body it did not read: a client still sending
    // then sees the close instead of the answer).
    let upload = || {
        let big = vec![b'x'; (1 << 20) + 1024];
        let form = reqwest::blocking::multipart::Form::new()
            .text("topology", common::TOPOLOGY.to_string())
            .part(
                "extra_files",
                reqwest::blocking::multipart::Part::reader(std::io::Cursor::new(big))
                    .file_name("big"),
            );
        s.post_as("/lab", &a).multipart(form).send()
    };
    let answer = (0..3)
        .find_map(|_| upload().ok())
        .expect("an answer to the chunked upload");
    let (code, why) = detail(answer);
    assert_eq!(code, 413, "{why}");
    // A real lab: QMP that would reach the host is refused and logged.
    let lab: Value = s.acquire(&a, common::TOPOLOGY, true).json().unwrap();
    let lab_id = lab["lab"]["lab_id"].as_str().unwrap().to_string();
    assert!(
        lab["lab"]["dir"].is_null() && lab["lab"]["bed"].is_null(),
        "{lab}"
    );
    let qmp = |cmd: &str, args: Value| {
        detail(
            s.post_as("/lab/qmp", &a)
                .json(&serde_json::json!({ "execute": cmd, "arguments": args }))
                .send()
                .unwrap(),
        )
    };
    let marker = s.dir.join("pwned");
    let (code, why) = qmp(
        "migrate",
        serde_json::json!({ "uri": format!("exec:touch {}", marker.display()) }),
    );
    assert_eq!(code, 403, "{why}");
    assert!(why.contains("query-status"), "names the allowed set: {why}");
    let (code, _) = qmp(
        "human-monitor-command",
        serde_json::json!({ "command-line": "info version" }),
    );
    assert_eq!(code, 403);
    let (code, _) = qmp("query-status", Value::Null);
    assert_eq!(code, 200);
    std::thread::sleep(Duration::from_millis(500));
    assert!(!marker.exists(), "migrate exec: ran on the host");
    let log = std::fs::read_to_string(s.dir.join("server.log")).unwrap();
    assert!(
        log.contains("migrate") && log.contains("exec:touch") && log.contains("allowed=false"),
        "the audit log records the call with its arguments"
    );
    // Session ids never reach the log; handles do.
    assert!(!log.contains(&a), "a session id in the log");
    // A log name that is a link to a host file is not served, nor listed.
    let q = s.queue();
    let artifacts = std::path::PathBuf::from(q["labs"][0]["bed"]["artifacts"].as_str().unwrap());
    std::os::unix::fs::symlink("/etc/passwd", artifacts.join("evil.log")).unwrap();
    let r = s.get_as("/lab/logs/evil.log", &a).send().unwrap();
    assert_eq!(r.status(), 404);
    let listed = s.get_as("/lab/logs", &a).send().unwrap().text().unwrap();
    assert!(
        !listed.contains("evil.log") && listed.contains("qemu.log"),
        "{listed}"
    );
    // The console is cut once the session no longer holds the lab.
    let ws_url = s.url.replacen("http://", "ws://", 1) + "/lab/console";
    let mut req =
        tungstenite::client::IntoClientRequest::into_client_request(ws_url.as_str()).unwrap();
    req.headers_mut().insert("X-Session-ID", a.parse().unwrap());
    req.headers_mut().insert(
        "Authorization",
        format!("Bearer {}", s.token).parse().unwrap(),
    );
    let (mut ws, _) = tungstenite::connect(req).unwrap();
    if let tungstenite::stream::MaybeTlsStream::Plain(t) = ws.get_ref() {
        t.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    }
    assert_eq!(s.post_as("/lab/release", &a).send().unwrap().status(), 200);
    let released = Instant::now();
    let reason = loop {
        match ws.read() {
            Ok(tungstenite::Message::Close(f)) => break f.map(|f| f.reason.to_string()),
            Ok(_) => continue,
            Err(e) => panic!("the console was not cut with a reason: {e}"),
        }
    };
    println!(
        "console cut {:.2} s after the release",
        released.elapsed().as_secs_f64()
    );
    assert_eq!(
        reason.as_deref(),
        Some("the session no longer holds this lab")
    );
    // Held again for what follows.
    let again: Value = s.acquire(&a, common::TOPOLOGY, true).json().unwrap();
    assert_eq!(again["lab"]["lab_id"], lab_id.as_str(), "{again}");
    // A plain user cannot destroy a lab, even its own, by id.
    let r = s.delete(&format!("/labs/{lab_id}")).send().unwrap();
    assert_eq!(r.status(), 403);
    // Another owner with the same topology gets a lab of its own.
    assert_eq!(s.post_as("/lab/release", &a).send().unwrap().status(), 200);
    assert_eq!(
        s.delete(&format!("/session/{a}")).send().unwrap().status(),
        204
    );
    let v: Value = s
        .req("POST", "/session", Some(&s.other))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let b = v["session_id"].as_str().unwrap().to_string();
    let form = reqwest::blocking::multipart::Form::new()
        .text("topology", common::TOPOLOGY.to_string())
        .text("reuse", "true");
    let r: Value = s
        .req("POST", "/lab", Some(&s.other))
        .header("X-Session-ID", &b)
        .multipart(form)
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(r["reused"], false, "{r}");
    assert_ne!(r["lab"]["lab_id"], lab_id.as_str(), "{r}");
}

/// A server killed 3 s into `POST /lab` and restarted at once: the bed
/// its `alpy up` finishes is taken down, so no bed runs that the server
/// does not list, and `max_labs` holds.
#[test]
fn kill_9_while_a_lab_starts_leaves_no_bed_the_server_does_not_list() {
    let mut s = Server::start("orphan", "");
    let (a, _, _) = s.session();
    let (url, sid, token) = (s.url.clone(), a.clone(), s.token.clone());
    let upload = std::thread::spawn(move || {
        let form = reqwest::blocking::multipart::Form::new()
            .text("topology", common::TOPOLOGY.to_string());
        let _ = common::client()
            .post(format!("{url}/lab"))
            .bearer_auth(token)
            .header("X-Session-ID", sid)
            .multipart(form)
            .send();
    });
    std::thread::sleep(Duration::from_secs(3));
    s.kill();
    s.restart();
    upload.join().unwrap();
    // The lost `alpy up` goes on for a few seconds; the server waits for it
    // and takes down what it left.
    let t0 = Instant::now();
    loop {
        let listed: Vec<String> = s.queue()["labs"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|l| l["bed_id"].as_str().map(str::to_string))
            .collect();
        let beds = s.beds();
        let unlisted: Vec<&String> = beds.iter().filter(|b| !listed.contains(b)).collect();
        let labs = s.queue()["labs"].as_array().unwrap().len();
        if unlisted.is_empty() && labs == 0 {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(90),
            "beds the server does not list: {unlisted:?}; labs: {}",
            s.queue()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    // The slot is free again: the session's lab comes up.
    let r = s.acquire(&a, common::TOPOLOGY, true);
    assert_eq!(r.status(), 200, "{}", r.text().unwrap());
    assert_eq!(s.beds().len(), 1, "max_labs = 1 holds");
}

/// A write lock held from outside for 15 s: `/healthz` keeps answering
/// at once, writes get 503 with Retry-After, and succeed once it is
/// released.
#[test]
fn a_locked_database_slows_nothing_and_writes_get_503() {
    let s = Server::start("dblock", "db_busy_ms = 500");
    let (_a, _, _) = s.session();
    let db = s.dir.join("state/alpy-lab.sqlite");
    let (locked_tx, locked_rx) = std::sync::mpsc::channel();
    let holder = std::thread::spawn(move || {
        let c = rusqlite::Connection::open(db).unwrap();
        c.execute_batch("BEGIN EXCLUSIVE").unwrap();
        locked_tx.send(()).unwrap();
        std::thread::sleep(Duration::from_secs(15));
        c.execute_batch("COMMIT").unwrap();
    });
    locked_rx.recv().unwrap();
    let t0 = Instant::now();
    let mut worst = Duration::ZERO;
    let mut saw_503 = false;
    while t0.elapsed() < Duration::from_secs(12) {
        // The client is built before the clock starts: what is timed is
        // the server's answer, not the client's TLS set-up.
        let healthz = s.req("GET", "/healthz", None);
        let t = Instant::now();
        assert_eq!(healthz.send().unwrap().status(), 204);
        worst = worst.max(t.elapsed());
        let r = s.post("/session").send().unwrap();
        if r.status() == 503 {
            assert_eq!(r.headers()["retry-after"], "1");
            saw_503 = true;
        } else {
            panic!("a write under the lock: {}", r.status());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    println!(
        "slowest /healthz under the lock: {:.1} ms",
        worst.as_secs_f64() * 1000.0
    );
    assert!(saw_503);
    assert!(worst < Duration::from_secs(1), "/healthz took {worst:?}");
    holder.join().unwrap();
    assert_eq!(s.post("/session").send().unwrap().status(), 201);
}

/// A client that sends its headers one byte a second is cut after the
/// header timeout, and so is one that sends nothing.
#[test]
fn slow_and_idle_clients_are_cut_after_the_header_timeout() {
    let s = Server::start_config(
        "slow",
        "[timeouts]\nheader_s = 2.0",
        "max_connections = 2",
        "",
    );
    let addr = s.url.trim_start_matches("http://").to_string();
    let cut_after = |drip: bool| {
        let mut c = std::net::TcpStream::connect(&addr).unwrap();
        c.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let t0 = Instant::now();
        let request =
            b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Padding: aaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
        let mut sent = 0;
        let mut buf = [0u8; 256];
        loop {
            if drip && sent < request.len() {
                if c.write_all(&request[sent..sent + 1]).is_err() {
                    return t0.elapsed();
                }
                sent += 1;
            }
            match c.read(&mut buf) {
                Ok(0) => return t0.elapsed(),
                Ok(_) => return t0.elapsed(),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => return t0.elapsed(),
            }
            std::thread::sleep(Duration::from_millis(800));
            assert!(t0.elapsed() < Duration::from_secs(30), "never cut");
        }
    };
    for drip in [true, false] {
        let took = cut_after(drip);
        println!("cut after {:.1} s (drip: {drip})", took.as_secs_f64());
        assert!(
            took >= Duration::from_secs(1),
            "cut before the timeout: {took:?}"
        );
        assert!(took < Duration::from_secs(10), "cut late: {took:?}");
    }
    // Two idle connections fill max_connections = 2: a third request is
    // served only once the header timeout has cut one of them.
    let idle: Vec<_> = (0..2)
        .map(|_| std::net::TcpStream::connect(&addr).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let t0 = Instant::now();
    let r = s.req("GET", "/healthz", None).send().unwrap();
    assert_eq!(r.status(), 204);
    let waited = t0.elapsed();
    println!(
        "third connection served after {:.1} s",
        waited.as_secs_f64()
    );
    assert!(
        waited >= Duration::from_secs(1),
        "not held back: {waited:?}"
    );
    drop(idle);
}

/// The server down longer than the heartbeat limits: its sessions live on.
#[test]
fn an_outage_longer_than_the_heartbeat_limit_ends_no_session() {
    let mut s = Server::start(
        "outage",
        "waiting_heartbeat_s = 2.0\nactive_heartbeat_s = 2.0",
    );
    let (a, _, _) = s.session();
    let (b, _, _) = s.session();
    s.kill();
    std::thread::sleep(Duration::from_secs(4));
    s.restart();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(s.status(&a)["status"], "active");
    assert_eq!(s.status(&b)["status"], "waiting");
    // And a session that stays silent after the restart still expires.
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(s.status(&b)["status"], "expired");
}
