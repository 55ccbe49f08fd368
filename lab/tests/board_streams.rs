//! A reserved board's streams through a real server: its console (a pty
//! served by the real ser2net) over a WebSocket, cut once the lease ends;
//! its SSH port (the real dropbear) through `alpy lab ssh-proxy` as
//! OpenSSH's ProxyCommand, for the holder only.

mod common;

use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::Server;
use serde_json::Value;

/// A free loopback TCP port.
fn free_port() -> u16 {
    let s = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a TCP port");
    s.local_addr().expect("its address").port()
}

/// Killed with the test process, and when dropped.
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn dies_with_us(c: &mut Command) -> &mut Command {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl is async-signal-safe; nothing else runs before exec.
    unsafe {
        c.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        })
    }
}

fn wait_for(what: &str, mut ok: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !ok() {
        assert!(t0.elapsed() < Duration::from_secs(20), "never: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// ser2net serving `pty` raw on a loopback port: the port and ser2net.
fn console_server(dir: &Path, pty: &str) -> (u16, Daemon) {
    let port = free_port();
    let yaml = dir.join("ser2net.yaml");
    std::fs::write(
        &yaml,
        format!(
            "connection: &board\n  accepter: tcp,127.0.0.1,{port}\n  connector: serialdev,{pty},115200n81,local\n"
        ),
    )
    .unwrap();
    let child = dies_with_us(
        Command::new("ser2net")
            .args(["-n", "-c"])
            .arg(&yaml)
            .arg("-P"),
    )
    .arg(dir.join("ser2net.pid"))
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .expect("start ser2net (scripts/setup installs it)");
    wait_for("ser2net to listen", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    (port, Daemon(child))
}

/// dropbear on a loopback port, in a mount namespace of its own whose
/// /root holds `dir/home` (its authorized_keys): the host's /root is not
/// touched. The port and dropbear.
fn ssh_server(dir: &Path) -> (u16, Daemon) {
    let port = free_port();
    let key = dir.join("host_key");
    let st = Command::new("dropbearkey")
        .args(["-t", "ed25519", "-f"])
        .arg(&key)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("dropbearkey (scripts/setup installs dropbear-bin)");
    assert!(st.success());
    let script = format!(
        "mount --bind {home} /root && exec dropbear -F -E -s -p 127.0.0.1:{port} -r {key} -P {pid}",
        home = dir.join("home").display(),
        key = key.display(),
        pid = dir.join("dropbear.pid").display(),
    );
    let child = dies_with_us(
        Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c"])
            .arg(script),
    )
    .stdout(Stdio::null())
    .stderr(std::fs::File::create(dir.join("dropbear.log")).unwrap())
    .spawn()
    .expect("unshare");
    wait_for("dropbear to listen", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    (port, Daemon(child))
}

/// `ssh root@b-1 REMOTE...` through `alpy lab ssh-proxy`, as session
/// `sid` of `token`, with the test's `key`.
fn ssh_through_lab(s: &Server, key: &Path, token: &str, sid: &str, remote: &[&str]) -> Command {
    let mut c = Command::new("ssh");
    c.args(["-F", "/dev/null", "-o", "BatchMode=yes"])
        .args([
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
        ])
        .args(["-o", "ConnectTimeout=20"])
        .arg("-i")
        .arg(key)
        .arg("-o")
        .arg(format!(
            "ProxyCommand={} lab ssh-proxy b-1",
            common::alpy_bin().display()
        ))
        .arg("root@b-1")
        .args(remote)
        .env("REMOTE_LAB_URL", &s.url)
        .env("REMOTE_LAB_TOKEN", token)
        .env("ALPY_LAB_SESSION", sid);
    c
}

/// Writes `prompt` to the serial port (`master`) until the console
/// WebSocket shows it, for 20 s at most.
fn until_console_shows(ws: &mut Ws, master: &mut std::fs::File, prompt: &str) {
    let mut seen = Vec::new();
    let t0 = Instant::now();
    while !String::from_utf8_lossy(&seen).contains(prompt.trim_end()) {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "the console never showed {prompt:?}: {seen:?}"
        );
        master
            .write_all(format!("\r\n{prompt}").as_bytes())
            .unwrap();
        if let Ok(tungstenite::Message::Binary(b)) = ws.read() {
            seen.extend_from_slice(&b);
        }
    }
}

type Ws = tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<std::net::TcpStream>>;

fn console_ws(s: &Server, sid: &str) -> Ws {
    let url = s.url.replacen("http://", "ws://", 1) + "/boards/b-1/console";
    let mut req =
        tungstenite::client::IntoClientRequest::into_client_request(url.as_str()).unwrap();
    req.headers_mut()
        .insert("X-Session-ID", sid.parse().unwrap());
    req.headers_mut().insert(
        "Authorization",
        format!("Bearer {}", s.token).parse().unwrap(),
    );
    let (ws, _) = tungstenite::connect(req).expect("the holder's console WebSocket");
    if let tungstenite::stream::MaybeTlsStream::Plain(t) = ws.get_ref() {
        t.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
    }
    ws
}

#[test]
fn a_holder_s_console_is_cut_at_lease_end_and_ssh_goes_through_the_lab() {
    let dir = common::temp_dir("board-streams").keep();
    // The board's serial port: a pty whose other end is this test.
    let pty = nix::pty::openpty(None, None).expect("a pty");
    let slave = std::fs::read_link(format!("/proc/self/fd/{}", pty.slave.as_raw_fd())).unwrap();
    let mut master = std::fs::File::from(pty.master);
    let (console_port, _ser2net) = console_server(&dir, &slave.display().to_string());
    let home = dir.join("home");
    std::fs::create_dir_all(home.join(".ssh")).unwrap();
    let (ssh_port, _dropbear) = ssh_server(&dir);
    let client_key = dir.join("id_ed25519");
    let st = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&client_key)
        .status()
        .expect("ssh-keygen (scripts/setup installs openssh-client)");
    assert!(st.success());
    std::fs::copy(
        client_key.with_extension("pub"),
        home.join(".ssh/authorized_keys"),
    )
    .unwrap();
    let config = format!(
        r#"
[[board]]
name = "b-1"
class = "edge"
console = {{ kind = "tcp", addr = "127.0.0.1:{console_port}" }}
power = {{ driver = "qmp", socket = "/nonexistent/b-1.qmp" }}
ssh = "127.0.0.1:{ssh_port}"
"#
    );
    let s = Server::start_config("board-streams", &config, "", "");
    let a = s.reserve_board("edge");
    assert_eq!(a["status"], "active", "{a}");
    let aid = a["session_id"].as_str().unwrap().to_string();

    // The console, both ways.
    let mut ws = console_ws(&s, &aid);
    until_console_shows(&mut ws, &mut master, "login: ");
    ws.send(tungstenite::Message::Binary(b"root\r".to_vec().into()))
        .unwrap();
    let typed = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    {
        let typed = typed.clone();
        let mut reader = master.try_clone().unwrap();
        std::thread::spawn(move || {
            let mut buf = [0u8; 256];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                typed.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
    }
    wait_for("the typed login to reach the serial port", || {
        String::from_utf8_lossy(&typed.lock().unwrap()).contains("root")
    });

    // The lease ends: the console is cut, with the reason.
    let ended = Instant::now();
    let r = s.delete(&format!("/session/{aid}")).send().unwrap();
    assert_eq!(r.status(), 204);
    let reason = loop {
        assert!(
            ended.elapsed() < Duration::from_secs(10),
            "the console was never cut"
        );
        match ws.read() {
            Ok(tungstenite::Message::Close(Some(f))) => break f.reason.to_string(),
            Ok(tungstenite::Message::Close(None)) => break String::new(),
            Ok(_) => {}
            Err(tungstenite::Error::Io(e)) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => panic!("the console ended without a close frame: {e}"),
        }
    };
    eprintln!(
        "the old holder's console was cut {:.2} s after its session ended",
        ended.elapsed().as_secs_f64()
    );
    assert_eq!(reason, "the session no longer holds this board");

    // The next holder gets the console: the old one let the port go.
    let b = s.reserve_board("edge");
    assert_eq!(b["status"], "active", "{b}");
    let bid = b["session_id"].as_str().unwrap().to_string();
    let mut ws = console_ws(&s, &bid);
    until_console_shows(&mut ws, &mut master, "again: ");
    drop(ws);

    // SSH through the lab: the holder gets in, anyone else is refused.
    let ssh = |token: &str, sid: &str| {
        ssh_through_lab(&s, &client_key, token, sid, &["echo", "through-the-lab"])
            .stdin(Stdio::null())
            .output()
            .expect("ssh (scripts/setup installs openssh-client)")
    };
    let ok = ssh(&s.token, &bid);
    assert!(
        ok.status.success() && String::from_utf8_lossy(&ok.stdout).trim() == "through-the-lab",
        "{}{}",
        String::from_utf8_lossy(&ok.stdout),
        String::from_utf8_lossy(&ok.stderr)
    );
    // 8 MiB up through the tunnel arrive whole (and how fast).
    let big = dir.join("big");
    std::fs::write(&big, vec![0x5a_u8; 8 << 20]).unwrap();
    let t0 = Instant::now();
    let up = ssh_through_lab(&s, &client_key, &s.token, &bid, &["wc", "-c"])
        .stdin(std::fs::File::open(&big).unwrap())
        .output()
        .unwrap();
    let took = t0.elapsed().as_secs_f64();
    assert_eq!(
        String::from_utf8_lossy(&up.stdout).trim(),
        (8 << 20).to_string(),
        "{}",
        String::from_utf8_lossy(&up.stderr)
    );
    eprintln!(
        "8 MiB up through ssh-proxy in {took:.2} s ({:.1} MiB/s, ssh included)",
        8.0 / took
    );

    // A proxy whose lease ends says so, and fails.
    let mut proxy = Command::new(common::alpy_bin())
        .args(["lab", "ssh-proxy", "b-1"])
        .env("REMOTE_LAB_URL", &s.url)
        .env("REMOTE_LAB_TOKEN", &s.token)
        .env("ALPY_LAB_SESSION", &bid)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut banner = [0u8; 7];
    proxy
        .stdout
        .as_mut()
        .unwrap()
        .read_exact(&mut banner)
        .unwrap();
    assert_eq!(&banner, b"SSH-2.0", "the board's SSH server answers");
    let r = s.delete(&format!("/session/{bid}")).send().unwrap();
    assert_eq!(r.status(), 204);
    let t0 = Instant::now();
    let status = loop {
        if let Some(st) = proxy.try_wait().unwrap() {
            break st;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "the proxy outlived its lease"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    proxy
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(
        !status.success() && err.contains("the session no longer holds this board"),
        "{status}: {err}"
    );
    // Another user's active session (it holds no board) is refused.
    let other: Value = s
        .req("POST", "/session", Some(&s.other))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let refused = ssh(&s.other, other["session_id"].as_str().unwrap());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success() && err.contains("403") && err.contains("does not hold board b-1"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A holder that dies (SIGKILL: no goodbye, its heartbeats just stop)
/// loses its board to the next waiter within the heartbeat limit, and its
/// console WebSocket is closed as the lease ends.
#[test]
fn a_killed_holder_s_board_goes_to_the_next_and_its_console_is_cut() {
    use std::os::unix::process::CommandExt;
    let dir = common::temp_dir("board-kill").keep();
    let pty = nix::pty::openpty(None, None).expect("a pty");
    let slave = std::fs::read_link(format!("/proc/self/fd/{}", pty.slave.as_raw_fd())).unwrap();
    let _master = std::fs::File::from(pty.master);
    let (console_port, _ser2net) = console_server(&dir, &slave.display().to_string());
    let config = format!(
        "[[board]]\nname = \"b-1\"\nclass = \"edge\"\nconsole = {{ kind = \"tcp\", addr = \"127.0.0.1:{console_port}\" }}\npower = {{ driver = \"qmp\", socket = \"/nonexistent/b-1.qmp\" }}\n"
    );
    let s = Server::start_config("board-kill", &config, "active_heartbeat_s = 10", "");
    // The holder: `alpy lab reserve`, its command in the same group.
    let marker = dir.join("session");
    let mut holder = Command::new(common::alpy_bin())
        .args(["lab", "reserve", "edge", "--", "sh", "-c"])
        .arg(format!(
            "echo $ALPY_LAB_SESSION > {m}.tmp && mv {m}.tmp {m} && exec sleep 600",
            m = marker.display()
        ))
        .env("REMOTE_LAB_URL", &s.url)
        .env("REMOTE_LAB_TOKEN", &s.token)
        .process_group(0)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for("alpy lab reserve to hold the board", || marker.exists());
    let sid = std::fs::read_to_string(&marker).unwrap().trim().to_string();
    assert_eq!(s.status(&sid)["board"], "b-1");
    let mut ws = console_ws(&s, &sid);
    let b = s.reserve_board("edge");
    assert_eq!(b["status"], "waiting", "{b}");
    let bid = b["session_id"].as_str().unwrap().to_string();

    let pid = nix::unistd::Pid::from_raw(holder.id() as i32);
    nix::sys::signal::killpg(pid, nix::sys::signal::Signal::SIGKILL).unwrap();
    let killed = Instant::now();
    let _ = holder.wait();
    let (mut promoted, mut closed) = (None, None);
    while promoted.is_none() || closed.is_none() {
        assert!(
            killed.elapsed() < Duration::from_secs(60),
            "after 60 s: promoted {promoted:?}, console closed {closed:?}"
        );
        if closed.is_none() {
            match ws.read() {
                Ok(tungstenite::Message::Close(f)) => {
                    let reason = f.map(|f| f.reason.to_string()).unwrap_or_default();
                    assert_eq!(reason, "the session no longer holds this board");
                    closed = Some(killed.elapsed());
                }
                Ok(_) => {}
                Err(tungstenite::Error::Io(e)) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("the console ended without a close frame: {e}"),
            }
        } else {
            std::thread::sleep(Duration::from_millis(100));
        }
        if promoted.is_none() {
            s.post_as("/session/heartbeat", &bid).send().unwrap();
            let now = s.status(&bid);
            if now["status"] == "active" {
                assert_eq!(now["board"], "b-1");
                promoted = Some(killed.elapsed());
            }
        }
    }
    let (promoted, closed) = (promoted.unwrap(), closed.unwrap());
    eprintln!(
        "after the holder's SIGKILL: the next waiter got the board at {:.1} s (limit: 10 s of \
         heartbeats + 5 s), the old console was closed at {:.2} s ({:+.2} s from the lease's end)",
        promoted.as_secs_f64(),
        closed.as_secs_f64(),
        closed.as_secs_f64() - promoted.as_secs_f64()
    );
    assert_eq!(s.status(&sid)["status"], "expired");
    let _ = std::fs::remove_dir_all(&dir);
}
