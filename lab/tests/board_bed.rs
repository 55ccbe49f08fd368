//! A test's bed on a lab's board. The rack is built from real parts:
//! the board is a QEMU VM booting Rabbit, its console served by the real
//! ser2net (RFC 2217), its power a PoE port of the real snmpd, its ports
//! the host sides of its NICs. Rabbit's `forward-ipv4`, unchanged, runs
//! with `REMOTE_LAB_URL` and `REMOTE_LAB_BOARD` on that board, reserved
//! by class, and the same source runs against a VM here. Through the
//! API: what a board session's topology may say, and a lab left on a
//! board by a session that ended goes before the board is lent again.

mod common;
#[path = "../../tests/board/sim.rs"]
mod sim;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use alpy::board::power::{PortPower, PowerDriver, QmpPower};
use common::{files_under, Server};
use serde_json::Value;

/// A rack of one board booting Rabbit (virtio NICs, its disk written to
/// a snapshot only).
fn rabbit_rack() -> sim::SimRack {
    let dir = alpy::internal::cache::cache_dir().unwrap().join("rabbit");
    let guest = sim::Guest {
        kernel: dir.join("vmlinuz"),
        initrd: dir.join("initrd.img"),
        disk: Some(dir.join("rabbit.qcow2")),
        append: "console=ttyS0,115200 root=/dev/vda quiet panic=-1".into(),
        nic: "virtio-net-pci",
        memory_mib: 256,
    };
    sim::SimRack::start_guest("rabbit-board", 1, 2, &guest)
}

/// The lab's `[[board]]` for the rack's board.
fn board_config(rack: &sim::SimRack) -> String {
    let ports: Vec<String> = rack.ports[0].iter().map(|p| format!("{p:?}")).collect();
    format!(
        r#"
[[board]]
name = "rabbit-1"
class = "rabbit"
ports = [{ports}]
console = {{ kind = "rfc2217", addr = "127.0.0.1:{rfc}" }}
power = {{ driver = "snmp", agent = "{agent}", port = 1, community = "{community}" }}
"#,
        ports = ports.join(", "),
        rfc = rack.consoles[0].1,
        agent = rack.agent(),
        community = sim::COMMUNITY,
    )
}

/// Rabbit's suite with `--only forward-ipv4` and `env`: its stdout, after
/// checking that the test passed.
fn forward_ipv4(what: &str, env: &[(&str, &str)], artifacts: &Path, log: &Path) -> String {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut c = Command::new(env!("CARGO"));
    c.current_dir(&workspace)
        .args(["run", "-q", "-p", "rabbit", "--bin", "rabbit-suite", "--"])
        .args(["--only", "forward-ipv4"])
        .env("ALPY_ARTIFACTS", artifacts)
        .env_remove("REMOTE_LAB_URL")
        .env_remove("REMOTE_LAB_TOKEN");
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.output().expect("run rabbit-suite");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    eprintln!("{what}:\n{stdout}");
    assert!(
        out.status.success()
            && stdout
                .lines()
                .any(|l| l.contains("forward-ipv4") && l.contains("PASS")),
        "forward-ipv4 failed {what}:\n{stdout}\n{}\nserver log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        std::fs::read_to_string(log).unwrap_or_default()
    );
    stdout
}

fn wait_until(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !ok() {
        assert!(t0.elapsed() < timeout, "never within {timeout:?}: {what}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The board as `GET /boards` shows it.
fn board(s: &Server) -> Value {
    let all: Value = s.get("/boards").send().unwrap().json().unwrap();
    all["boards"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|b| b["name"] == "rabbit-1")
        .cloned()
        .unwrap_or_else(|| panic!("no rabbit-1 in {all}"))
}

fn labs_of(s: &Server) -> usize {
    s.queue()["labs"].as_array().map_or(0, Vec::len)
}

/// A board session of this test's: its id, once active.
fn reserve(s: &Server) -> String {
    let v = s.reserve_board("rabbit");
    let sid = v["session_id"].as_str().unwrap().to_string();
    wait_until(
        "the board session to be active",
        Duration::from_secs(60),
        || s.status(&sid)["status"] == "active",
    );
    sid
}

/// Rabbit on the board as a topology for a board session.
const ON_BOARD: &str = "name = \"on-rabbit-1\"\n[dut]\nlab_board = { class = \"rabbit\" }\n\
                        [dut.login]\nuser = \"root\"\npassword = \"rabbit\"\nprompt = \"rabbit# \"\n\
                        [[link]]\n[[link]]\n";

/// A session whose upload was slow ends before the upload does: the lab
/// is refused (409), not stood up on a board lent to nobody (or to the
/// next holder).
fn a_session_that_ends_mid_upload_gets_no_lab(s: &Server) {
    use std::io::{BufRead, Write};
    let sid = reserve(s);
    let body = format!(
        "--b\r\nContent-Disposition: form-data; name=\"topology\"\r\n\r\n{ON_BOARD}\r\n--b--\r\n"
    );
    let addr = s.url.trim_start_matches("http://").to_string();
    let stream = std::net::TcpStream::connect(&addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(120)))
        .unwrap();
    let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
    let mut stream = stream;
    write!(
        stream,
        "POST /lab HTTP/1.1\r\nHost: {addr}\r\nX-Session-ID: {sid}\r\nAuthorization: Bearer {}\r\n\
         Content-Type: multipart/form-data; boundary=b\r\nContent-Length: {}\r\n\
         Expect: 100-continue\r\nConnection: close\r\n\r\n",
        s.token,
        body.len(),
    )
    .unwrap();
    stream.flush().unwrap();
    // The server asks for the body once the handler reads it: the session
    // was checked, and the upload is under way.
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert!(line.contains(" 100 "), "{line:?}");
    reader.read_line(&mut line).unwrap();
    let r = s.delete(&format!("/session/{sid}")).send().unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    stream.write_all(body.as_bytes()).unwrap();
    let mut answer = String::new();
    std::io::Read::read_to_string(&mut reader, &mut answer).unwrap();
    assert!(
        answer.starts_with("HTTP/1.1 409 "),
        "the late upload got {answer:?}"
    );
    assert!(answer.contains("no longer active"), "{answer}");
    assert_eq!(labs_of(s), 0);
    wait_until("the board to be free", Duration::from_secs(30), || {
        board(s)["holder"].is_null() && board(s)["busy"].is_null()
    });
}

/// A lab destroyed while it still comes up leaves no bed behind: its
/// `alpy up` is waited for, and the bed it made taken down.
fn a_lab_destroyed_while_starting_leaves_no_bed(s: &Server, rack: &sim::SimRack) {
    let sid = reserve(s);
    let up = {
        let (url, token, sid) = (s.url.clone(), s.token.clone(), sid.clone());
        std::thread::spawn(move || {
            let form = reqwest::blocking::multipart::Form::new()
                .text("topology", ON_BOARD)
                .text("reuse", "false");
            let r = common::client()
                .post(format!("{url}/lab"))
                .bearer_auth(token)
                .header("X-Session-ID", sid)
                .multipart(form)
                .send()
                .unwrap();
            (r.status().as_u16(), r.text().unwrap())
        })
    };
    wait_until("the lab to be starting", Duration::from_secs(30), || {
        s.queue()["labs"][0]["status"] == "starting"
    });
    let r = s.delete_as("/lab", &sid).send().unwrap();
    assert_eq!(r.status(), 202);
    let (status, body) = up.join().unwrap();
    assert_eq!(status, 409, "{body}");
    assert!(body.contains("destroyed as it came up"), "{body}");
    wait_until(
        "the lab and its bed to be gone",
        Duration::from_secs(120),
        || labs_of(s) == 0 && s.beds().is_empty(),
    );
    assert_eq!(
        QmpPower::new(rack.qmp(1)).status().unwrap(),
        PortPower::Off,
        "the bed that came up was taken down, and the board switched off"
    );
    s.delete(&format!("/session/{sid}")).send().unwrap();
    wait_until("the board to be free", Duration::from_secs(30), || {
        board(s)["holder"].is_null() && board(s)["busy"].is_null()
    });
}

/// Through the API: a board session's topology names the board it holds
/// (`lab_board`) and no VM; the lab it gets runs on that board; a session
/// that ends leaving it up has it taken down before the board is free.
fn a_board_session_s_lab(s: &Server, rack: &sim::SimRack) {
    let sid = reserve(s);
    let refused = |topology: &str| -> String {
        let r = s.acquire(&sid, topology, false);
        assert_eq!(r.status(), 400, "{topology}");
        r.text().unwrap()
    };
    let vm = refused("[dut]\nkernel = \"store:guest-kernel\"\n");
    assert!(vm.contains("holds board rabbit-1"), "{vm}");
    let other = refused("[dut]\nlab_board = { class = \"edge\" }\n");
    assert!(other.contains("a board of edge"), "{other}");
    // A session of VMs cannot name a lab board.
    let (vm_sid, status, _) = s.session();
    assert_eq!(status, "active");
    let r = s.acquire(
        &vm_sid,
        "[dut]\nlab_board = { class = \"rabbit\" }\n",
        false,
    );
    assert_eq!(r.status(), 400);
    assert!(r.text().unwrap().contains("reserves no board"));
    s.delete(&format!("/session/{vm_sid}")).send().unwrap();

    let r = s.acquire(&sid, ON_BOARD, true);
    let status = r.status();
    let body = r.text().unwrap();
    assert_eq!(status, 200, "{body}");
    let devices = s.json_as("/lab/devices", &sid);
    assert_eq!(devices["board"], "rabbit-1", "{devices}");
    // The lab's copy has the board's table, for the lab's user only.
    let lab_dirs = s.dir.join("state/labs");
    let written = files_under(&lab_dirs)
        .into_iter()
        .find(|(p, _)| p.ends_with("topology.toml"))
        .expect("the lab's topology");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&written.0).unwrap().permissions().mode();
    assert_eq!(mode & 0o077, 0, "{} is mode {mode:o}", written.0.display());
    assert!(written.1.contains(sim::COMMUNITY), "{}", written.1);
    assert_eq!(
        QmpPower::new(rack.qmp(1)).status().unwrap(),
        PortPower::On,
        "the lab's bed booted the board"
    );
    // The session ends with its lab up: the board's teardown takes the
    // lab down first, then the board is free (and switched off).
    let r = s.delete(&format!("/session/{sid}")).send().unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    wait_until(
        "the lab on the board to go and the board to be free",
        Duration::from_secs(180),
        || labs_of(s) == 0 && board(s)["holder"].is_null() && board(s)["busy"].is_null(),
    );
    assert_eq!(
        QmpPower::new(rack.qmp(1)).status().unwrap(),
        PortPower::Off,
        "the lab's bed went down and switched the board off"
    );
    let log = std::fs::read_to_string(s.dir.join("server.log")).unwrap_or_default();
    assert!(
        log.contains("taking down the lab on the board let go"),
        "{log}"
    );
}

#[test]
fn rabbit_s_forward_check_runs_on_a_lab_board_reserved_by_class() {
    let rack = rabbit_rack();
    let s = Server::start_config("board-bed", &board_config(&rack), "", "");
    let log = s.dir.join("server.log");
    let artifacts = s.dir.join("artifacts");
    let on_lab = [
        ("REMOTE_LAB_URL", s.url.as_str()),
        ("REMOTE_LAB_TOKEN", s.token.as_str()),
        ("REMOTE_LAB_BOARD", "rabbit"),
    ];
    forward_ipv4("on the lab's board", &on_lab, &artifacts, &log);
    let server_log = std::fs::read_to_string(&log).unwrap_or_default();
    let count = |what: &str| server_log.lines().filter(|l| l.contains(what)).count();
    assert_eq!(count("lab up"), 1, "{server_log}");
    assert!(
        server_log
            .lines()
            .any(|l| l.contains("lab asked for") && l.contains("rabbit-1")),
        "{server_log}"
    );
    // Rabbit's power-off went through /lab/power (the supervisor switched
    // the board's port off).
    assert!(
        server_log
            .lines()
            .any(|l| l.contains("alpy_lab::remote: power ") && l.contains("action=off")),
        "{server_log}"
    );
    // The board's power port was switched by the lab's bed: off at start,
    // on at boot, off by the test's power-off.
    let sets = rack
        .agent_log()
        .lines()
        .filter(|l| l.contains("end set 1.1"))
        .count();
    assert!(sets >= 3, "the agent's log:\n{}", rack.agent_log());
    let client_files = files_under(&artifacts);
    assert!(
        client_files
            .iter()
            .any(|(_, t)| t.contains("its DUT is the lab's board rabbit-1")),
        "no client log names the board"
    );
    wait_until(
        "the board to be free again",
        Duration::from_secs(120),
        || board(&s)["holder"].is_null() && board(&s)["busy"].is_null() && labs_of(&s) == 0,
    );

    a_session_that_ends_mid_upload_gets_no_lab(&s);
    a_lab_destroyed_while_starting_leaves_no_bed(&s, &rack);
    a_board_session_s_lab(&s, &rack);

    // No secret in an answer or a log: the server's, the client's files
    // (the lab's logs it fetched among them), the API's description.
    let openapi = s.get("/openapi.json").send().unwrap().text().unwrap();
    let boards = s.get("/boards").send().unwrap().text().unwrap();
    let queue = s.queue().to_string();
    let server_log = std::fs::read_to_string(&log).unwrap_or_default();
    for (what, text) in [
        ("the server's log", server_log.as_str()),
        ("/openapi.json", openapi.as_str()),
        ("GET /boards", boards.as_str()),
        ("GET /queue", queue.as_str()),
    ] {
        assert!(!text.contains(sim::COMMUNITY), "the community in {what}");
    }
    for (p, t) in files_under(&artifacts) {
        assert!(
            !t.contains(sim::COMMUNITY),
            "the community in {}",
            p.display()
        );
    }

    // The same source against a VM: REMOTE_LAB_BOARD without a lab is
    // only logged.
    let here = s.dir.join("here");
    forward_ipv4(
        "here, on a VM",
        &[("REMOTE_LAB_BOARD", "rabbit")],
        &here,
        &log,
    );
    assert!(
        files_under(&here)
            .iter()
            .any(|(_, t)| t.contains("here (no REMOTE_LAB_URL) the DUT is the builder's VM")),
        "no log says the VM ran"
    );
}
