//! Labs are real test beds: acquire, reuse, release, reference counts,
//! idle labs, force destroy; the remote bed's console (WebSocket), exec,
//! pcap, QMP and power; a lab of two machines, each reached by name; and a
//! server SIGKILLed with an active and three waiting sessions.

mod common;

use std::io::Read;
use std::time::{Duration, Instant};

use common::Server;
use serde_json::Value;

fn lab_of(r: reqwest::blocking::Response) -> Value {
    let status = r.status();
    let v: Value = r.json().unwrap();
    assert_eq!(status, 200, "{v}");
    v
}

fn exec(s: &Server, sid: &str, node: &str, cmd: &[&str]) -> (i64, String) {
    let text = s
        .post_as(&format!("/lab/nodes/{node}/exec"), sid)
        .json(&serde_json::json!({ "cmd": cmd }))
        .send()
        .unwrap()
        .text()
        .unwrap();
    let mut out = String::new();
    let mut code = None;
    for line in text.lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        if let Some(s) = v["stdout"].as_str() {
            out.push_str(s);
        }
        if let Some(c) = v["exit_code"].as_i64() {
            code = Some(c);
        }
    }
    (
        code.unwrap_or_else(|| panic!("no exit code in {text}")),
        out,
    )
}

/// Two routers in a chain on the store's test guest: client - r1 - r2 -
/// server.
const CHAIN: &str = r#"
name = "remote-chain"
[[machine]]
name = "r1"
kernel = "store:guest-kernel"
initrd = "store:guest-initrd"
append = "console=ttyS0,115200 quiet panic=-1 alpy.forward=1 alpy.ip=eth0=10.0.1.1/24,eth1=10.0.2.1/24 alpy.route=10.0.3.0/24=10.0.2.2"
prompt = "guest# "
poweroff = "console:poweroff -f"
[[machine]]
name = "r2"
kernel = "store:guest-kernel"
initrd = "store:guest-initrd"
append = "console=ttyS0,115200 quiet panic=-1 alpy.forward=1 alpy.ip=eth0=10.0.2.2/24,eth1=10.0.3.1/24 alpy.route=10.0.1.0/24=10.0.2.1"
[[link]]
name = "client"
endpoint = "r1:0"
addrs = ["10.0.1.2/24"]
gateway = "10.0.1.1"
[[link]]
name = "core"
endpoints = ["r1:1", "r2:0"]
[[link]]
name = "server"
endpoint = "r2:1"
addrs = ["10.0.3.2/24"]
gateway = "10.0.3.1"
"#;

/// The console of the held lab (`query`: `?machine=r2`, or empty), as a
/// WebSocket.
fn console(
    s: &Server,
    sid: &str,
    query: &str,
) -> Result<
    tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<std::net::TcpStream>>,
    tungstenite::Error,
> {
    let ws_url = s.url.replacen("http://", "ws://", 1) + "/lab/console" + query;
    let mut req =
        tungstenite::client::IntoClientRequest::into_client_request(ws_url.as_str()).unwrap();
    req.headers_mut()
        .insert("X-Session-ID", sid.parse().unwrap());
    req.headers_mut().insert(
        "Authorization",
        format!("Bearer {}", s.token).parse().unwrap(),
    );
    tungstenite::connect(req).map(|(ws, _)| ws)
}

/// Types `line` on `ws` and reads until `want` shows, within 20 s.
fn console_says(
    ws: &mut tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<std::net::TcpStream>>,
    line: &str,
    want: &str,
) {
    ws.send(tungstenite::Message::Text(format!("{line}\n").into()))
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen = Vec::new();
    while !String::from_utf8_lossy(&seen).contains(want) {
        assert!(
            Instant::now() < deadline,
            "no {want:?} on the console: {}",
            String::from_utf8_lossy(&seen)
        );
        if let tungstenite::Message::Binary(b) = ws.read().unwrap() {
            seen.extend_from_slice(&b);
        }
    }
}

/// A lab of two machines: traffic crosses both, and the console, QMP and
/// power of each are reached by its name; an unknown name is a 404 that
/// names the machines.
#[test]
fn a_lab_of_two_machines_by_machine_name() {
    let s = Server::start("lab-machines", "");
    let (a, _, _) = s.session();
    let lab = lab_of(s.acquire(&a, CHAIN, false));
    assert_eq!(lab["reused"], false);
    let mut crossed = false;
    for _ in 0..10 {
        if exec(
            &s,
            &a,
            "client",
            &["ping", "-c", "1", "-W", "2", "10.0.3.2"],
        )
        .0 == 0
        {
            crossed = true;
            break;
        }
    }
    assert!(crossed, "no ping crossed r1 and r2 on the lab");
    let mut r2 = console(&s, &a, "?machine=r2").unwrap();
    console_says(&mut r2, "ip -o -4 addr show eth1", "10.0.3.1/24");
    r2.close(None).ok();
    let mut first = console(&s, &a, "").unwrap();
    console_says(&mut first, "ip -o -4 addr show eth1", "10.0.2.1/24");
    first.close(None).ok();
    match console(&s, &a, "?machine=r9") {
        Err(tungstenite::Error::Http(r)) => assert_eq!(r.status(), 404),
        other => panic!("a console of no machine: {:?}", other.map(|_| ())),
    }
    let qmp = |body: Value| -> (u16, Value) {
        let r = s.post_as("/lab/qmp", &a).json(&body).send().unwrap();
        (r.status().as_u16(), r.json().unwrap())
    };
    let (code, v) = qmp(serde_json::json!({"execute": "stop", "machine": "r2"}));
    assert_eq!(code, 200, "{v}");
    let status = |m: &str| qmp(serde_json::json!({"execute": "query-status", "machine": m})).1;
    assert_eq!(status("r2")["return"]["status"], "paused");
    assert_eq!(
        status("r1")["return"]["status"],
        "running",
        "only r2 stopped"
    );
    let on: Value = s
        .post_as("/lab/power/on?machine=r2", &a)
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(on["action"], "on", "{on}");
    assert_eq!(status("r2")["return"]["status"], "running");
    let (code, v) = qmp(serde_json::json!({"execute": "query-status", "machine": "r9"}));
    assert!(
        code == 404 && v["detail"].as_str().unwrap().contains("r1, r2"),
        "{v}"
    );
    let r = s.post_as("/lab/power/cycle?machine=r9", &a).send().unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(
        s.delete_as("/lab?force=true", &a).send().unwrap().status(),
        202
    );
}

#[test]
fn acquire_reuse_release_and_destroy_real_labs() {
    let s = Server::start("labs", "max_labs = 2\n");
    let (a, _, _) = s.session();
    let (b, status, _) = s.session();
    assert_eq!(status, "active", "two labs at once: two active sessions");
    let first = lab_of(s.acquire(&a, common::TOPOLOGY, true));
    assert_eq!(first["reused"], false);
    let lab_id = first["lab"]["lab_id"].as_str().unwrap().to_string();
    let bed = first["lab"]["bed_id"].as_str().unwrap().to_string();
    assert!(
        alpy::internal::supervisor::registry::find(&bed).is_ok(),
        "the lab is a bed in the registry"
    );
    // The same topology again: the running lab, reference count 2.
    let second = lab_of(s.acquire(&b, common::TOPOLOGY, true));
    assert_eq!(
        (second["reused"].clone(), second["lab"]["lab_id"].clone()),
        (Value::Bool(true), Value::String(lab_id.clone()))
    );
    assert_eq!(second["lab"]["refcount"], 2);
    let devices: Value = s.json_as("/lab/devices", &b);
    assert_eq!(devices["nodes"], serde_json::json!(["client", "server"]));

    // The remote bed: exec, QMP, pcap, console.
    let (code, out) = exec(
        &s,
        &a,
        "client",
        &["ping", "-c", "2", "-W", "5", "192.168.2.2"],
    );
    assert!(code == 0 && out.contains("2 received"), "{code} {out}");
    assert_eq!(exec(&s, &a, "server", &["sh", "-c", "exit 7"]).0, 7);
    // Apps: one in the background, one to completion, then stopped; only
    // allow-listed images, no host mounts.
    let apps = |node: &str, app: alpy::App, background: bool| {
        s.post_as(&format!("/lab/nodes/{node}/apps"), &a)
            .json(&serde_json::json!({ "app": app, "background": background, "timeout_s": 60 }))
            .send()
            .unwrap()
    };
    let r = apps("server", alpy::App::tools(["iperf3", "-s"]), true);
    assert_eq!(r.status(), 201);
    let app_id = r.json::<Value>().unwrap()["app_id"]
        .as_str()
        .unwrap()
        .to_string();
    let listening = |s: &Server| {
        exec(
            s,
            &a,
            "server",
            &[
                "sh",
                "-c",
                "sleep 0.5; ss -Hltn 'sport = :5201' | grep -q .",
            ],
        )
        .0 == 0
    };
    assert!(listening(&s), "the background app listens");
    let r = apps(
        "client",
        alpy::App::tools(["iperf3", "-c", "192.168.2.2", "-t", "1", "-J"]),
        false,
    );
    assert_eq!(r.status(), 200);
    let run: Value = r.json().unwrap();
    assert_eq!(run["exit_code"], 0, "{run}");
    assert!(
        run["stdout"].as_str().unwrap().contains("bits_per_second"),
        "{run}"
    );
    let stop = |id: &str| {
        s.delete_as(&format!("/lab/apps/{id}"), &a)
            .send()
            .unwrap()
            .status()
    };
    assert_eq!(stop(&app_id), 204);
    assert!(!listening(&s), "a stopped app no longer listens");
    assert_eq!(stop(&app_id), 409, "stopped twice");
    for bad in [
        alpy::App::new("evil/miner"),
        alpy::App::tools(["true"]).bind("/etc:/host-etc"),
        alpy::App::tools(["true"]).cap("SYS_ADMIN"),
    ] {
        let r = apps("client", bad, false);
        assert_eq!(r.status(), 400, "{}", r.text().unwrap());
    }
    let q: Value = s
        .post_as("/lab/qmp", &b)
        .json(&serde_json::json!({"execute": "query-status"}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(q["return"]["status"], "running", "{q}");
    let mut pcap = s.get_as("/lab/links/client/pcap", &a).send().unwrap();
    assert_eq!(pcap.status(), 200);
    let mut magic = [0u8; 4];
    pcap.read_exact(&mut magic).unwrap();
    assert!(
        magic == [0xd4, 0xc3, 0xb2, 0xa1] || magic == [0xa1, 0xb2, 0xc3, 0xd4],
        "{magic:?}"
    );
    drop(pcap);
    let mut ws = console(&s, &a, "").unwrap();
    console_says(&mut ws, "echo ws-$((6*7))", "ws-42");
    ws.close(None).ok();
    let off: Value = s
        .post_as("/lab/power/cycle", &b)
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(off["action"], "cycle", "{off}");

    // Release: 2 -> 1; A takes it again, and a destroy without force is
    // refused while two sessions hold it.
    let r: Value = s
        .post_as("/lab/release", &a)
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(r["refcount"], 1);
    let again = lab_of(s.acquire(&a, common::TOPOLOGY, true));
    assert_eq!(again["lab"]["refcount"], 2);
    assert_eq!(
        s.delete_as("/lab", &b).send().unwrap().status(),
        409,
        "held by two: force needed"
    );
    assert_eq!(
        s.delete_as("/lab?force=true", &b).send().unwrap().status(),
        202
    );
    // The server takes the bed down, then tells the holders: wait for
    // the word, which comes last, then check the bed went before it.
    let t0 = Instant::now();
    loop {
        let va = s.status(&a);
        let note = va["note"].as_str().unwrap_or_default();
        if note.contains("destroyed") {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "A is not told of the destroy: {va}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    assert!(
        alpy::internal::supervisor::registry::find(&bed).is_err(),
        "the destroyed lab's bed is still up"
    );
    assert_eq!(s.get_as("/lab", &a).send().unwrap().status(), 404);

    // Reference count to zero: the lab stays up, idle, and is reused.
    let lab = lab_of(s.acquire(&a, common::TOPOLOGY, true));
    let bed2 = lab["lab"]["bed_id"].as_str().unwrap().to_string();
    let r: Value = s
        .post_as("/lab/release", &a)
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(r["refcount"], 0);
    let q: Value = s.queue();
    assert_eq!(q["labs"][0]["status"], "idle", "{q}");
    assert!(
        alpy::internal::supervisor::registry::find(&bed2).is_ok(),
        "an idle lab keeps running"
    );
    let reused = lab_of(s.acquire(&b, common::TOPOLOGY, true));
    assert_eq!(
        (reused["reused"].clone(), reused["lab"]["status"].clone()),
        (Value::Bool(true), Value::String("up".into()))
    );
    // reuse=false stands up a second lab.
    let fresh = lab_of(s.acquire(&a, common::TOPOLOGY, false));
    assert_eq!(fresh["reused"], false);
    assert_ne!(fresh["lab"]["lab_id"], reused["lab"]["lab_id"]);
    // An operator destroys a lab by id.
    let id = fresh["lab"]["lab_id"].as_str().unwrap();
    assert_eq!(
        s.req("DELETE", &format!("/labs/{id}"), None)
            .send()
            .unwrap()
            .status(),
        401
    );
    assert_eq!(
        s.req("DELETE", &format!("/labs/{id}"), Some(&s.operator))
            .send()
            .unwrap()
            .status(),
        202
    );
}

#[test]
fn a_killed_server_restarts_with_its_sessions_and_labs() {
    let mut s = Server::start("restart", "");
    let (a, _, _) = s.session();
    let lab = lab_of(s.acquire(&a, common::TOPOLOGY, true));
    let bed = lab["lab"]["bed_id"].as_str().unwrap().to_string();
    let waiting: Vec<String> = (0..3).map(|_| s.session().0).collect();
    s.kill();
    s.restart();
    assert_eq!(s.status(&a)["status"], "active");
    for (i, w) in waiting.iter().enumerate() {
        let v = s.status(w);
        assert_eq!(
            (v["status"].clone(), v["position"].clone()),
            (Value::String("waiting".into()), Value::from(i as i64 + 1)),
            "{v}"
        );
    }
    // The lab's bed lived on: still owned by A.
    let held: Value = s.json_as("/lab", &a);
    assert_eq!(held["bed_id"], bed.as_str(), "{held}");
    let (code, _) = exec(
        &s,
        &a,
        "client",
        &["ping", "-c", "1", "-W", "5", "192.168.2.2"],
    );
    assert_eq!(code, 0);
    // A bed that dies while the server is down is reaped, and A told.
    s.kill();
    let info = alpy::internal::supervisor::registry::find(&bed).unwrap();
    alpy::internal::supervisor::registry::down(&info, Duration::from_secs(120)).unwrap();
    s.restart();
    let va = s.status(&a);
    assert!(
        va["note"].as_str().unwrap_or_default().contains("lost"),
        "{va}"
    );
    assert!(va["lab_id"].is_null(), "{va}");
    // Order holds on: ending A promotes the first waiting.
    assert_eq!(
        s.delete(&format!("/session/{a}")).send().unwrap().status(),
        204
    );
    assert_eq!(s.status(&waiting[0])["status"], "active");
}

/// A client that goes away while its lab comes up leaves a lab recorded
/// as up, never one stuck `starting`.
#[test]
fn a_lab_comes_up_even_if_its_client_hangs_up() {
    let s = Server::start("hangup", "");
    let (a, _, _) = s.session();
    let form =
        reqwest::blocking::multipart::Form::new().text("topology", common::TOPOLOGY.to_string());
    let hung = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(1))
        .build()
        .unwrap()
        .post(format!("{}/lab", s.url))
        .header("X-Session-ID", &a)
        .bearer_auth(&s.token)
        .multipart(form)
        .send();
    assert!(hung.is_err(), "the client gave up before the lab was up");
    let t0 = Instant::now();
    loop {
        let held: Value = s.json_as("/lab", &a);
        if held["status"] == "up" {
            assert!(
                alpy::internal::supervisor::registry::find(held["bed_id"].as_str().unwrap())
                    .is_ok()
            );
            break;
        }
        assert_eq!(held["status"], "starting", "{held}");
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "the lab never came up: {held}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}
