//! The debugging workflow on a bed stood up by `alpy up`, as a user runs
//! it: exec (with stdin and a TTY), a live capture into tcpdump, the
//! console through its socket from ptys (many readers, one typist, other
//! users refused), and `alpy down`, after which nothing is left.

mod common;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::pty::Pty;

/// The beds of this test live in a registry of their own.
struct Registry(PathBuf);

impl Registry {
    fn new() -> Registry {
        Registry(common::temp_dir("cli-bed").keep())
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_alpy"));
        c.args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env("XDG_RUNTIME_DIR", &self.0)
            .env_remove("CI");
        c
    }

    fn run(&self, args: &[&str]) -> (i32, String, String) {
        self.run_with_input(args, None)
    }

    fn run_with_input(&self, args: &[&str], input: Option<&[u8]>) -> (i32, String, String) {
        let mut c = self.cmd(args);
        c.stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        let mut child = c.spawn().expect("run alpy");
        if let Some(data) = input {
            child.stdin.take().unwrap().write_all(data).unwrap();
        }
        let out = child.wait_with_output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        // Anything still up in this registry goes down with it.
        let _ = self.run(&["down", "--all"]);
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Whatever fails, the bed goes down.
struct Down<'a>(&'a Registry, String);

impl Drop for Down<'_> {
    fn drop(&mut self) {
        let _ = self.0.run(&["down", &self.1]);
    }
}

/// Child side of [`other_users_cannot_attach`]: connects to the socket in
/// `ALPY_TEST_CONSOLE_SOCKET` as whoever runs it and prints what happened.
#[test]
#[ignore = "a child role: the console-sharing test runs it as another user"]
fn connect_role() {
    let Some(path) = common::child_env("ALPY_TEST_CONSOLE_SOCKET", "other_users_cannot_attach")
    else {
        return;
    };
    match std::os::unix::net::UnixStream::connect(&path) {
        Err(e) => println!("CONNECT-ERROR {:?}", e.kind()),
        Ok(mut s) => {
            use std::io::Read;
            let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
            let _ = s.write_all(b"echo intruder\n");
            let mut text = String::new();
            let _ = s.read_to_string(&mut text);
            println!("CONNECTED {text:?}");
        }
    }
}

fn connect_as_other_user(sock: &Path) -> String {
    let out = common::run_unprivileged(&["connect_role"], |_| {
        vec![(
            "ALPY_TEST_CONSOLE_SOCKET".into(),
            sock.display().to_string(),
        )]
    });
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Another user is refused by the directory's mode, by the socket's mode
/// when the directories are opened up, and by the peer check when the
/// socket is opened up too.
fn other_users_cannot_attach(sock: &Path) {
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(sock), 0o600, "{}", sock.display());
    assert_eq!(mode(sock.parent().unwrap()), 0o700);
    let out = connect_as_other_user(sock);
    assert!(out.contains("CONNECT-ERROR PermissionDenied"), "{out}");
    // Open every directory on the way: the socket's own mode still refuses.
    let dirs: Vec<PathBuf> = sock
        .ancestors()
        .skip(1)
        .take(3)
        .map(Path::to_path_buf)
        .collect();
    let saved: Vec<u32> = dirs.iter().map(|d| mode(d)).collect();
    for d in &dirs {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o711)).unwrap();
    }
    let out = connect_as_other_user(sock);
    assert!(out.contains("CONNECT-ERROR PermissionDenied"), "{out}");
    // And with the socket opened too, the bed refuses the peer by its uid.
    std::fs::set_permissions(sock, std::fs::Permissions::from_mode(0o666)).unwrap();
    let out = connect_as_other_user(sock);
    std::fs::set_permissions(sock, std::fs::Permissions::from_mode(0o600)).unwrap();
    for (d, m) in dirs.iter().zip(saved) {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(m)).unwrap();
    }
    assert!(
        out.contains("CONNECTED") && out.contains("alpy: refused: uid"),
        "{out}"
    );
}

#[test]
fn up_exec_capture_console_down() {
    let reg = Registry::new();
    let (code, out, err) = reg.run(&["up", "topologies/forward.toml"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        err.contains("alpy up: Create 2 nodes... done")
            && err.contains("alpy up: Wait for \"guest# \"... done"),
        "the supervisor's steps are shown while the bed comes up:\n{err}"
    );
    let id = out
        .lines()
        .find_map(|l| {
            l.strip_prefix("bed ")
                .and_then(|r| r.split_whitespace().next())
        })
        .unwrap_or_else(|| panic!("no bed id in {out}"))
        .to_string();
    assert!(out.contains(&format!("alpy console {id}")), "{out}");
    let _down = Down(&reg, id.clone());
    let (_, listed, _) = reg.run(&["ls", "--json"]);
    let beds: serde_json::Value = serde_json::from_str(&listed).unwrap();
    let bed = beds[0].clone();
    assert_eq!(bed["id"], id.as_str(), "{listed}");
    assert_eq!(bed["state"], "up", "{listed}");
    let (_, table, _) = reg.run(&["ls"]);
    assert!(table.contains("state") && table.contains(" up "), "{table}");
    let artifacts = PathBuf::from(bed["artifacts"].as_str().unwrap());
    let supervisor = bed["supervisor_pid"].as_u64().unwrap();
    let sock = PathBuf::from(bed["console"].as_str().unwrap());

    // exec: output, exit code, stdin only with -i, a TTY with -t.
    let (code, ping, err) = reg.run(&[
        "exec",
        &id,
        "client",
        "--",
        "ping",
        "-c",
        "1",
        "-W",
        "5",
        "192.168.2.2",
    ]);
    assert!(code == 0 && ping.contains("1 received"), "{ping}{err}");
    let (code, _, _) = reg.run(&["exec", &id, "server", "--", "sh", "-c", "exit 3"]);
    assert_eq!(code, 3, "exec passes the command's exit code on");
    let input = b"seventeen bytes!\n";
    let (code, n, err) = reg.run_with_input(
        &["exec", "-i", &id, "client", "--", "wc", "-c"],
        Some(input),
    );
    assert!(code == 0 && n.trim() == "17", "{n}{err}");
    let (_, n, _) = reg.run_with_input(&["exec", &id, "client", "--", "wc", "-c"], Some(input));
    assert_eq!(n.trim(), "0", "without -i the command gets no input");
    // Every exec runs in the node's one kept tools container: no container
    // per call, and what one call leaves the next one sees.
    let run = artifacts
        .to_string_lossy()
        .rsplit('-')
        .next()
        .unwrap()
        .to_string();
    let containers = || {
        common::docker()
            .list_by_label(alpy::internal::run::LABEL_RUN, Some(&run))
            .unwrap()
    };
    let before = containers().len();
    let (code, _, err) = reg.run(&[
        "exec",
        &id,
        "client",
        "--",
        "sh",
        "-c",
        "echo kept > /tmp/mark",
    ]);
    assert_eq!(code, 0, "{err}");
    let (code, mark, err) = reg.run(&["exec", &id, "client", "--", "cat", "/tmp/mark"]);
    assert!(code == 0 && mark.trim() == "kept", "{mark}{err}");
    assert_eq!(containers().len(), before, "an exec started a container");
    let (code, _, err) = reg.run(&["exec", "-t", &id, "client", "--", "true"]);
    assert!(code == 1 && err.contains("--tty needs a terminal"), "{err}");
    let mut tty = Pty::spawn(reg.cmd(&[
        "exec",
        "-it",
        &id,
        "client",
        "--",
        "sh",
        "-c",
        "tty; read x; echo got-$x; exit 4",
    ]));
    tty.expect("/dev/pts/", Duration::from_secs(30));
    tty.send(b"typed\r");
    tty.expect("got-typed", Duration::from_secs(10));
    assert_eq!(
        tty.wait(Duration::from_secs(10)).code(),
        Some(4),
        "{}",
        tty.text()
    );
    let (code, _, err) = reg.run(&["exec", &id, "nosuch", "--", "true"]);
    assert!(
        code == 1 && err.contains("its nodes are client, server"),
        "{err}"
    );

    // A live capture, piped into tcpdump as a user would.
    let mut capture = reg
        .cmd(&["capture", &id, "client", "--seconds", "6"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let tcpdump = Command::new("tcpdump")
        .args(["-n", "-r", "-"])
        .stdin(capture.stdout.take().unwrap())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tcpdump (scripts/setup installs it)");
    let (code, _, err) = reg.run(&[
        "exec",
        &id,
        "client",
        "--",
        "ping",
        "-c",
        "3",
        "-i",
        "0.3",
        "192.168.2.2",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(capture.wait().unwrap().success());
    let dumped = tcpdump.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&dumped.stdout);
    assert!(
        dumped.status.success(),
        "{}",
        String::from_utf8_lossy(&dumped.stderr)
    );
    let requests = text
        .lines()
        .filter(|l| l.contains("ICMP echo request"))
        .count();
    assert!(requests >= 4, "{requests} echo requests in:\n{text}");

    // The console from ptys: a typist, a watcher, a second would-be typist.
    let mut typist = Pty::spawn(reg.cmd(&["console", &id]));
    typist.expect("detach with Ctrl-]", Duration::from_secs(10));
    let mut watcher = Pty::spawn(reg.cmd(&["console", "--read-only", &id]));
    watcher.expect("read-only; detach", Duration::from_secs(10));
    typist.send(b"echo typed-$((6*7))\r");
    typist.expect("typed-42", Duration::from_secs(20));
    watcher.expect("typed-42", Duration::from_secs(10));
    let mut second = Pty::spawn(reg.cmd(&["console", &id]));
    second.expect("detach with Ctrl-]", Duration::from_secs(10));
    second.send(b"echo intruder-$((1+1))\r");
    second.expect(
        "read-only: another client is typing",
        Duration::from_secs(10),
    );
    typist.send(b"\x1d");
    typist.expect("alpy console: detached", Duration::from_secs(10));
    assert!(typist.wait(Duration::from_secs(10)).success());
    // Now the keyboard is free.
    second.send(b"echo second-$((2+3))\r");
    second.expect("second-5", Duration::from_secs(20));
    watcher.expect("second-5", Duration::from_secs(10));
    second.send(b"\x1d");
    assert!(second.wait(Duration::from_secs(10)).success());
    let transcript = std::fs::read_to_string(artifacts.join("console.log")).unwrap();
    assert!(
        transcript.contains("typed-42") && transcript.contains("second-5"),
        "{transcript}"
    );
    assert!(
        !transcript.contains("intruder-2"),
        "a read-only client's keys reached the guest"
    );
    other_users_cannot_attach(&sock);

    // Down: the watcher is told, and nothing of the bed is left.
    let (code, out, err) = reg.run(&["down", &id]);
    assert_eq!(code, 0, "{out}{err}");
    watcher.expect("the bed closed the console", Duration::from_secs(10));
    assert!(watcher.wait(Duration::from_secs(10)).success());
    let (_, listed, _) = reg.run(&["ls", "--json"]);
    assert_eq!(listed.trim(), "[]");
    let left = containers();
    assert!(left.is_empty(), "containers of {run} left after alpy down");
    assert!(
        alpy::internal::run::process_start_time(supervisor as u32).is_none(),
        "the supervisor lives on"
    );
    let art = artifacts.to_string_lossy().into_owned();
    for p in std::fs::read_dir("/proc").unwrap().flatten() {
        let cmdline = std::fs::read(p.path().join("cmdline")).unwrap_or_default();
        assert!(
            !String::from_utf8_lossy(&cmdline).contains(&art),
            "process {:?} of the bed is left: {}",
            p.file_name(),
            String::from_utf8_lossy(&cmdline).replace('\0', " ")
        );
    }
    let links = Command::new("ip").args(["-o", "link"]).output().unwrap();
    assert!(
        !String::from_utf8_lossy(&links.stdout).contains(&run),
        "a host link of {run} is left"
    );
    assert!(!sock.exists() && !reg.0.join("alpy/beds").join(&id).exists());
    let (code, _, err) = reg.run(&["down", &id]);
    assert!(code == 1 && err.contains("not found"), "{err}");
    // `down --all` takes down whatever this user has up.
    let (code, out, err) = reg.run(&["up", "--json", "topologies/forward.toml"]);
    assert_eq!(code, 0, "{out}{err}");
    let second: serde_json::Value = serde_json::from_str(&out).unwrap();
    let second = second["id"].as_str().unwrap().to_string();
    let (code, out, err) = reg.run(&["down", "--all"]);
    assert!(
        code == 0 && out.contains(&format!("bed {second} is down")),
        "{out}{err}"
    );
    let (_, listed, _) = reg.run(&["ls", "--json"]);
    assert_eq!(listed.trim(), "[]");
}

/// A bed of two machines from `topologies/chain.toml`: `ls` shows the
/// machines, `qmp` and `power` reach the one named, `console ID r2` is
/// r2's console (only r2 has 10.0.3.1), traffic crosses both routers.
#[test]
fn a_two_machine_bed_by_machine_name() {
    let reg = Registry::new();
    let (code, out, err) = reg.run(&["up", "--json", "topologies/chain.toml"]);
    assert_eq!(code, 0, "{out}{err}");
    let up: serde_json::Value = serde_json::from_str(&out).unwrap();
    let id = up["id"].as_str().unwrap().to_string();
    let _down = Down(&reg, id.clone());
    let (_, listed, _) = reg.run(&["ls", "--json"]);
    let beds: serde_json::Value = serde_json::from_str(&listed).unwrap();
    let names: Vec<&str> = beds[0]["machines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["r1", "r2"], "{listed}");
    let (_, table, _) = reg.run(&["ls"]);
    assert!(table.contains("r1,r2"), "{table}");

    let (code, status, err) = reg.run(&["qmp", &id, "r1", "query-status"]);
    assert!(
        code == 0 && status.contains("\"status\":\"running\""),
        "{status}{err}"
    );
    // r2 paused from QMP: a ping through it fails; resumed, it passes.
    let (code, _, err) = reg.run(&["qmp", &id, "r2", "stop"]);
    assert_eq!(code, 0, "{err}");
    let (_, status, _) = reg.run(&["power", &id, "r2", "status"]);
    assert!(status.contains("\"status\":\"paused\""), "{status}");
    let (_, status, _) = reg.run(&["qmp", &id, "query-status"]);
    assert!(
        status.contains("\"status\":\"running\""),
        "r1, the first, still runs: {status}"
    );
    let ping = [
        "exec", &id, "client", "--", "ping", "-c", "1", "-W", "2", "10.0.3.2",
    ];
    let (code, _, _) = reg.run(&ping);
    assert_ne!(code, 0, "a ping crossed a paused r2");
    let (code, _, err) = reg.run(&["power", &id, "r2", "on"]);
    assert_eq!(code, 0, "{err}");
    let mut crossed = false;
    for _ in 0..10 {
        if reg.run(&ping).0 == 0 {
            crossed = true;
            break;
        }
    }
    assert!(crossed, "no ping crossed r1 and r2");
    // The server's capture is r2's NIC 1 (not the first machine's): it
    // holds frames from r2's MAC there.
    let out = reg
        .cmd(&["capture", &id, "server", "--seconds", "1"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let file = std::env::temp_dir().join(format!("alpy-server-{}.pcap", std::process::id()));
    std::fs::write(&file, &out.stdout).unwrap();
    let cap = alpy::pcap::Capture::open(&file);
    std::fs::remove_file(&file).ok();
    let r2_mac: alpy::addr::Mac = beds[0]["dut_macs"][1].as_str().unwrap().parse().unwrap();
    let from_r2 = alpy::pcap::Filter::new().src_mac(r2_mac);
    assert!(
        cap.unwrap().count(&from_r2) > 0,
        "no frame from r2 ({r2_mac}) on the server's link"
    );
    let (code, _, err) = reg.run(&["qmp", &id, "r9", "query-status"]);
    assert!(
        code == 1 && err.contains("its machines are r1, r2"),
        "{err}"
    );
    let (code, _, err) = reg.run(&["power", &id, "r9", "on"]);
    assert!(
        code == 1 && err.contains("its machines are r1, r2"),
        "{err}"
    );

    let mut r2 = Pty::spawn(reg.cmd(&["console", &id, "r2"]));
    r2.expect("chain machine r2", Duration::from_secs(10));
    r2.send(b"ip -o -4 addr show eth1\r");
    r2.expect("10.0.3.1/24", Duration::from_secs(20));
    r2.send(b"\x1d");
    assert!(r2.wait(Duration::from_secs(10)).success());
    let (code, _, err) = reg.run(&["console", &id, "r9"]);
    assert!(
        code == 1 && err.contains("its machines are r1, r2"),
        "{err}"
    );
    let (code, out, err) = reg.run(&["down", &id]);
    assert_eq!(code, 0, "{out}{err}");
}
