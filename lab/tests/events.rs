//! The event stream against a real server: sessions' changes arrive as
//! they are made, by whom, without ids; a follower that reconnects with
//! `Last-Event-ID` gets what it missed (through `alpy lab events`), one
//! the history cannot serve is told so; the server's stop ends streams.

mod common;

use std::io::Read;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use alpy::lab::wire::{Event, EventAction, EventType};
use common::Server;

/// The next event but the server's health checks (within 10 s),
/// and how long after `since` it came.
fn next(rx: &mpsc::Receiver<(Event, Instant)>, since: Instant) -> (Event, Duration) {
    loop {
        let (e, at) = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("an event within 10 s");
        if e.kind != EventType::Health || e.action == EventAction::Started {
            return (e, at.saturating_duration_since(since));
        }
    }
}

/// Every event a follower saw, by id.
type Seen = std::sync::Arc<std::sync::Mutex<std::collections::BTreeMap<u64, Event>>>;

fn expect(
    rx: &mpsc::Receiver<(Event, Instant)>,
    since: Instant,
    what: (EventType, EventAction, &str),
) -> (Event, Duration) {
    let (e, took) = next(rx, since);
    assert_eq!(
        (e.kind, e.action, e.subject.as_str()),
        what,
        "expected {what:?}, got {e}"
    );
    (e, took)
}

#[test]
fn session_changes_stream_as_they_happen_and_resume_after_a_reconnect() {
    let mut s = Server::start("events", "max_sessions_per_token = 4");
    let (tx, rx) = mpsc::channel();
    let (url, viewer) = (s.url.clone(), s.viewer.clone());
    let followed = Seen::default();
    let all = followed.clone();
    let follower = std::thread::spawn(move || {
        let lab = alpy::lab::LabServer::new(&url, &viewer).unwrap();
        lab.events(None, |f| match f {
            alpy::lab::wire::Followed::Event(e) => {
                all.lock().unwrap().insert(e.id, e.clone());
                tx.send((e, Instant::now())).is_ok()
            }
            alpy::lab::wire::Followed::Missed => panic!("a gap for a new follower"),
        })
    });
    // The server's start is the first event; the follower is connected
    // once it has it.
    let (started, _) = next(&rx, Instant::now());
    assert_eq!(
        (started.kind, started.action),
        (EventType::Health, EventAction::Started)
    );
    let t = Instant::now();
    let (a, _, _) = s.session();
    let ha = s.status(&a)["handle"].as_str().unwrap().to_string();
    let (created, took) = expect(&rx, t, (EventType::Session, EventAction::Created, &ha));
    assert_eq!(created.actor, "tests");
    assert_eq!(created.attributes["owner"], "tests");
    println!("session created -> event: {took:?}");
    expect(&rx, t, (EventType::Session, EventAction::Promoted, &ha));

    let t = Instant::now();
    let (b, _, _) = s.session();
    let hb = s.status(&b)["handle"].as_str().unwrap().to_string();
    let (e, took) = expect(&rx, t, (EventType::Session, EventAction::Created, &hb));
    assert_eq!(
        (
            e.attributes["status"].as_str(),
            e.attributes["position"].as_str()
        ),
        ("waiting", "1")
    );
    println!("second session -> event: {took:?}");

    // The active one ends: the waiting one is promoted, in that order.
    let t = Instant::now();
    let r = s.delete(&format!("/session/{a}")).send().unwrap();
    assert_eq!(r.status(), 204);
    let (ended, _) = expect(&rx, t, (EventType::Session, EventAction::Ended, &ha));
    assert!(ended.actor.contains("tests"), "{ended}");
    let (promoted, took) = expect(&rx, t, (EventType::Session, EventAction::Promoted, &hb));
    assert_eq!(promoted.actor, "alpy-lab");
    println!("active session deleted -> next promoted event: {took:?}");
    assert!(ended.id < promoted.id);

    // An operator's move names the operator.
    let (c, _, _) = s.session();
    let (d, _, _) = s.session();
    let hd = s.status(&d)["handle"].as_str().unwrap().to_string();
    let r = s
        .req(
            "POST",
            &format!("/sessions/{hd}/position"),
            Some(&s.operator),
        )
        .json(&serde_json::json!({"position": 1}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let t = Instant::now();
    let mut seen = vec![];
    let moved = loop {
        let (e, _) = next(&rx, t);
        seen.push(e.clone());
        if e.action == EventAction::Moved {
            break e;
        }
    };
    assert_eq!(
        (moved.subject.as_str(), moved.actor.as_str()),
        (hd.as_str(), "operator ops")
    );
    assert_eq!(moved.attributes["position"], "1");

    // A session id is a credential: no event carries one.
    let all = serde_json::to_string(&seen).unwrap()
        + &serde_json::to_string(&[&created, &ended, &promoted]).unwrap();
    for id in [&a, &b, &c, &d] {
        assert!(
            !all.contains(id.as_str()),
            "a session id in the events: {all}"
        );
    }

    // `alpy lab events` after a given event: exactly the two that follow.
    let since = ended.id.to_string();
    let (ok, out, err) = s.alpy_lab(
        &s.viewer,
        &["events", "--since", &since, "--count", "2", "--json"],
    );
    assert!(ok, "{err}");
    let got: Vec<Event> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // The two that followed it, as the live follower saw them (the
    // periodic health checks are not kept, and not printed).
    let seen_then = followed.lock().unwrap().clone();
    let next_two: Vec<Event> = seen_then
        .range(ended.id + 1..)
        .map(|(_, e)| e.clone())
        .filter(|e| (e.kind, e.action) != (EventType::Health, EventAction::Passed))
        .take(2)
        .collect();
    assert_eq!(got, next_two);
    assert_eq!(got[0], promoted);
    // People get one line per event (the first: the server's start).
    let (_, line, _) = s.alpy_lab(&s.viewer, &["events", "--count", "1"]);
    assert!(
        line.contains(&format!(
            "#{} health server started by alpy-lab",
            started.id
        )),
        "{line}"
    );

    // An id the server never sent (it restarted, say): a gap first.
    let mut r = s
        .req("GET", "/events", Some(&s.viewer))
        .header("Last-Event-ID", "999999")
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let mut buf = [0u8; 4096];
    let n = r.read(&mut buf).unwrap();
    let head = String::from_utf8_lossy(&buf[..n]);
    assert!(head.starts_with("event: gap\n"), "{head}");
    drop(r);
    let r = s
        .req("GET", "/events", Some(&s.viewer))
        .header("Last-Event-ID", "seven")
        .send()
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().unwrap().contains("Last-Event-ID"));

    // The server's stop ends the stream (its follower returns).
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(s.child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let t = Instant::now();
    while !follower.is_finished() {
        assert!(
            t.elapsed() < Duration::from_secs(8),
            "the stream outlived the server's stop"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    println!("server stopped -> stream ended: {:?}", t.elapsed());
    follower.join().unwrap().unwrap();
    s.kill();
}

/// The client that `a_killed_clients_lease_ends_*` starts and SIGKILLs
/// (alpy's real client, heartbeats and all).
#[test]
#[ignore = "a child role: a_killed_clients_lease_ends_and_the_next_is_promoted runs it"]
fn hold_a_session_until_killed() {
    let target = std::env::var("ALPY_TEST_HOLD").expect("ALPY_TEST_HOLD: URL and token");
    let (url, token) = target.split_once(' ').unwrap();
    let _lab = alpy::lab::LabClient::connect(url, token).unwrap();
    println!("holding");
    std::thread::sleep(Duration::from_secs(600));
}

/// With the shortest heartbeat limit (10 s), a client killed with
/// SIGKILL loses its session within the limit and a few seconds, and the
/// next session is promoted: measured from the kill to the promotion
/// event.
#[test]
fn a_killed_clients_lease_ends_and_the_next_is_promoted() {
    let s = Server::start(
        "lease",
        "waiting_heartbeat_s = 10.0\nactive_heartbeat_s = 10.0\n",
    );
    let me = std::env::current_exe().unwrap();
    let mut holder = std::process::Command::new(me)
        .args([
            "--ignored",
            "--exact",
            "hold_a_session_until_killed",
            "--nocapture",
        ])
        .env("ALPY_TEST_HOLD", format!("{} {}", s.url, s.token))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(holder.stdout.take().unwrap());
    let mut line = String::new();
    while !line.contains("holding") {
        line.clear();
        let n = std::io::BufRead::read_line(&mut out, &mut line).unwrap();
        assert!(n > 0, "the holding client ended before it held a session");
    }
    let next = alpy::lab::LabClient::connect(&s.url, &s.token).unwrap();
    let hn = next.info().unwrap().handle;
    assert_eq!(next.info().unwrap().position, 1);
    // Let a heartbeat or two pass, so the kill lands mid-period.
    std::thread::sleep(Duration::from_secs(7));
    let (tx, rx) = mpsc::channel();
    let (url, viewer) = (s.url.clone(), s.viewer.clone());
    std::thread::spawn(move || {
        let lab = alpy::lab::LabServer::new(&url, &viewer).unwrap();
        // Neither the expiry nor the promotion happened before the kill.
        let _ = lab.events(None, |f| match f {
            alpy::lab::wire::Followed::Event(e) => tx.send((e, Instant::now())).is_ok(),
            alpy::lab::wire::Followed::Missed => true,
        });
    });
    holder.kill().unwrap();
    let killed = Instant::now();
    holder.wait().unwrap();
    let (mut expired, mut promoted) = (None, None);
    while promoted.is_none() {
        let (e, at) = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("the next session promoted within 60 s of the kill");
        match e.action {
            alpy::lab::wire::EventAction::Expired => expired = Some(at - killed),
            alpy::lab::wire::EventAction::Promoted if e.subject == hn => {
                promoted = Some(at - killed)
            }
            _ => {}
        }
    }
    let expired = expired.expect("the killed client's session expired first");
    println!(
        "heartbeat limit 10 s: SIGKILL -> session expired {:.1} s, next promoted {:.1} s",
        expired.as_secs_f64(),
        promoted.unwrap().as_secs_f64()
    );
    assert_eq!(
        next.info().unwrap().status,
        alpy::lab::wire::SessionStatus::Active
    );
    next.close().unwrap();
}

/// One token cannot hold every connection with streams: past
/// `max_streams_per_token` it gets 429; all tokens together stop at
/// `max_streams`. A token offered as a WebSocket subprotocol counts only
/// on a watched console's upgrade.
#[test]
fn a_token_may_not_hold_every_stream() {
    let s = Server::start("streams", "max_streams_per_token = 2\nmax_streams = 3");
    let follow = |token: &str| s.req("GET", "/events", Some(token)).send().unwrap();
    let (one, two) = (follow(&s.viewer), follow(&s.viewer));
    assert_eq!((one.status().as_u16(), two.status().as_u16()), (200, 200));
    let three = follow(&s.viewer);
    assert_eq!(three.status(), 429);
    let detail = three.text().unwrap();
    assert!(detail.contains("max_streams_per_token"), "{detail}");
    let operator = follow(&s.operator);
    assert_eq!(operator.status(), 200);
    let server_full = follow(&s.other);
    assert_eq!(server_full.status(), 429);
    let detail = server_full.text().unwrap();
    assert!(detail.contains("limits.max_streams allows"), "{detail}");
    drop((one, two, operator));

    for path in ["/queue", "/labs/x/topology.svg"] {
        let r = s
            .req("GET", path, None)
            .header("Upgrade", "websocket")
            .header("Connection", "Upgrade")
            .header(
                "Sec-WebSocket-Protocol",
                format!("alpy-lab, bearer.{}", s.viewer),
            )
            .send()
            .unwrap();
        assert_eq!(r.status(), 401, "a subprotocol token on {path}");
    }
}
