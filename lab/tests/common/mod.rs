//! A real alpy-lab server on a loopback port, as the tests' clients see it.
#![allow(dead_code)]

#[path = "../../../tests/common/shared.rs"]
mod shared;
pub use shared::*;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use reqwest::blocking::{Client, Response};

/// The built `alpy-lab` and `alpy` binaries (the workspace's).
pub fn lab_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_alpy-lab"))
}

/// `alpy`, beside `alpy-lab`; built if a filtered test run did not.
pub fn alpy_bin() -> PathBuf {
    // Built once per test process, always: the labs' supervisors run this
    // binary, and a stale one would test old code.
    static BUILT: std::sync::Once = std::sync::Once::new();
    BUILT.call_once(|| {
        let st = Command::new(env!("CARGO"))
            .args(["build", "-q", "-p", "alpy", "--bin", "alpy"])
            .status()
            .expect("cargo build alpy");
        assert!(st.success());
    });
    lab_bin().with_file_name("alpy")
}

/// A running server.
pub struct Server {
    pub dir: PathBuf,
    pub config: PathBuf,
    pub url: String,
    /// A `user` token ("tests"): what get/post/delete send.
    pub token: String,
    /// Another `user` token ("other").
    pub other: String,
    /// A `viewer` token.
    pub viewer: String,
    /// An `operator` token.
    pub operator: String,
    pub child: Child,
}

impl Server {
    /// Writes a configuration (with `limits` TOML lines) in a new directory
    /// and starts a server on it.
    pub fn start(name: &str, limits: &str) -> Server {
        Server::start_with_store(name, limits, "")
    }

    /// [`Server::start`] with more `[store]` lines (`name = "path"`).
    pub fn start_with_store(name: &str, limits: &str, store: &str) -> Server {
        Server::start_config(name, "", limits, store)
    }

    /// [`Server::start`] with top-level configuration lines (`top`: keys,
    /// then tables such as `[timeouts]`) and `[store]` lines.
    pub fn start_config(name: &str, top: &str, limits: &str, store: &str) -> Server {
        // Removed by the server's Drop, after its labs are down.
        let dir = temp_dir(name).keep();
        let (k, i) = guest();
        let config = dir.join("lab.toml");
        std::fs::write(
            &config,
            format!(
                "listen = \"127.0.0.1:0\"\nstate_dir = \"state\"\nalpy = \"{}\"\ndocker_images = [\"alpy/tools\"]\n{top}\n\
                 [limits]\n{limits}\n[store]\nguest-kernel = \"{}\"\nguest-initrd = \"{}\"\n{store}\n",
                alpy_bin().display(),
                k.display(),
                i.display()
            ),
        )
        .unwrap();
        let token = create_token(&config, "tests", "user");
        let other = create_token(&config, "other", "user");
        let viewer = create_token(&config, "watcher", "viewer");
        let operator = create_token(&config, "ops", "operator");
        let (child, url) = spawn(&dir, &config);
        Server {
            dir,
            config,
            url,
            token,
            other,
            viewer,
            operator,
            child,
        }
    }

    /// Starts the server again on the same configuration and state (after
    /// a kill).
    pub fn restart(&mut self) {
        let (child, url) = spawn(&self.dir, &self.config);
        self.child = child;
        self.url = url;
    }

    /// SIGKILL.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// A request with `token` (none: `None`).
    pub fn req(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
    ) -> reqwest::blocking::RequestBuilder {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let b = client().request(m, format!("{}{path}", self.url));
        match token {
            Some(t) => b.bearer_auth(t),
            None => b,
        }
    }

    /// GET with the `user` token.
    pub fn get(&self, path: &str) -> reqwest::blocking::RequestBuilder {
        self.req("GET", path, Some(&self.token))
    }

    /// POST with the `user` token.
    pub fn post(&self, path: &str) -> reqwest::blocking::RequestBuilder {
        self.req("POST", path, Some(&self.token))
    }

    /// DELETE with the `user` token.
    pub fn delete(&self, path: &str) -> reqwest::blocking::RequestBuilder {
        self.req("DELETE", path, Some(&self.token))
    }

    /// GET as session `sid` (its `X-Session-ID` header).
    pub fn get_as(&self, path: &str, sid: &str) -> reqwest::blocking::RequestBuilder {
        self.get(path).header("X-Session-ID", sid)
    }

    /// POST as session `sid`.
    pub fn post_as(&self, path: &str, sid: &str) -> reqwest::blocking::RequestBuilder {
        self.post(path).header("X-Session-ID", sid)
    }

    /// DELETE as session `sid`.
    pub fn delete_as(&self, path: &str, sid: &str) -> reqwest::blocking::RequestBuilder {
        self.delete(path).header("X-Session-ID", sid)
    }

    /// GET as session `sid`: the answer's JSON.
    pub fn json_as(&self, path: &str, sid: &str) -> serde_json::Value {
        self.get_as(path, sid).send().unwrap().json().unwrap()
    }

    /// The operator's view: `GET /queue` with the operator's token.
    pub fn queue(&self) -> serde_json::Value {
        self.req("GET", "/queue", Some(&self.operator))
            .send()
            .unwrap()
            .json()
            .unwrap()
    }

    /// A new session: (id, status, position).
    pub fn session(&self) -> (String, String, i64) {
        let r = self.post("/session").send().unwrap();
        assert_eq!(r.status(), 201);
        let v: serde_json::Value = r.json().unwrap();
        (
            v["session_id"].as_str().unwrap().to_string(),
            v["status"].as_str().unwrap().to_string(),
            v["position"].as_i64().unwrap(),
        )
    }

    /// A session's view.
    pub fn status(&self, id: &str) -> serde_json::Value {
        self.get(&format!("/session/{id}"))
            .send()
            .unwrap()
            .json()
            .unwrap()
    }

    /// The status line's code for a POST that declares a body of `len`
    /// bytes and sends none of it.
    pub fn raw_status_of_declared_body(&self, path: &str, sid: &str, len: usize) -> u16 {
        use std::io::Write;
        let addr = self.url.trim_start_matches("http://");
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        write!(
            stream,
            "POST {path} HTTP/1.1\r\nHost: {addr}\r\nX-Session-ID: {sid}\r\nAuthorization: Bearer {}\r\n\
             Content-Type: multipart/form-data; boundary=b\r\nContent-Length: {len}\r\n\r\n",
            self.token
        )
        .unwrap();
        let mut line = String::new();
        BufReader::new(stream).read_line(&mut line).unwrap();
        line.split_whitespace()
            .nth(1)
            .and_then(|code| code.parse().ok())
            .unwrap_or_else(|| panic!("not an HTTP status line: {line:?}"))
    }

    /// `alpy lab ARGS --url .. --token TOKEN` against this server:
    /// (succeeded, stdout, stderr).
    pub fn alpy_lab(&self, token: &str, args: &[&str]) -> (bool, String, String) {
        let out = Command::new(alpy_bin())
            .arg("lab")
            .args(args)
            .args(["--url", &self.url, "--token", token])
            .output()
            .unwrap();
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        (out.status.success(), text(&out.stdout), text(&out.stderr))
    }

    /// `POST /session` reserving a board of `class` (with the `user`
    /// token): the new session, after checking it was made (201).
    pub fn reserve_board(&self, class: &str) -> serde_json::Value {
        let r = self
            .post("/session")
            .json(&serde_json::json!({"board": {"class": class}}))
            .send()
            .unwrap();
        assert_eq!(r.status(), 201);
        r.json().unwrap()
    }

    /// The ids of the beds of this server's labs on this host.
    pub fn beds(&self) -> Vec<String> {
        alpy::internal::supervisor::registry::list()
            .into_iter()
            .filter(|b| b.artifacts.starts_with(&self.dir))
            .map(|b| b.id)
            .collect()
    }

    /// Uploads a topology for session `sid`.
    pub fn acquire(&self, sid: &str, topology: &str, reuse: bool) -> Response {
        let form = reqwest::blocking::multipart::Form::new()
            .text("topology", topology.to_string())
            .text("reuse", reuse.to_string());
        self.post_as("/lab", sid).multipart(form).send().unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
        // Labs outlive the server by design: take this test's down.
        for bed in alpy::internal::supervisor::registry::list() {
            if bed.artifacts.starts_with(&self.dir) {
                let _ = alpy::internal::supervisor::registry::down(&bed, Duration::from_secs(120));
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub fn client() -> Client {
    Client::builder()
        .timeout(Duration::from_secs(600))
        .build()
        .unwrap()
}

/// `alpy-lab token create NAME --role ROLE --config CONFIG`: the token it
/// printed.
pub fn create_token(config: &Path, name: &str, role: &str) -> String {
    let out = Command::new(lab_bin())
        .args(["token", "create", name, "--role", role, "--config"])
        .arg(config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn spawn(dir: &Path, config: &Path) -> (Child, String) {
    serve(dir, config, &[])
}

/// `alpy-lab serve --config CONFIG ARGS..`, its log in `dir/server.log`;
/// returns the child and the URL it printed.
pub fn serve(dir: &Path, config: &Path, args: &[&str]) -> (Child, String) {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("server.log"))
        .unwrap();
    let mut child = Command::new(lab_bin())
        .args(["serve", "--config"])
        .arg(config)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .trim()
        .strip_prefix("alpy-lab: listening on ")
        .unwrap_or_else(|| {
            panic!(
                "no address in {line:?}; see {}",
                dir.join("server.log").display()
            )
        })
        .to_string();
    (child, url)
}

/// A forward-like topology on the store's test guest.
pub const TOPOLOGY: &str = r#"
name = "remote-forward"
[dut]
kernel = "store:guest-kernel"
initrd = "store:guest-initrd"
append = "console=ttyS0,115200 quiet panic=-1 alpy.forward=1 alpy.ip=eth0=192.168.1.1/24,eth1=192.168.2.1/24"
prompt = "guest# "
poweroff = "console:poweroff -f"
[[link]]
name = "client"
addrs = ["192.168.1.2/24"]
gateway = "192.168.1.1"
[[link]]
name = "server"
addrs = ["192.168.2.2/24"]
gateway = "192.168.2.1"
"#;

/// Every file under `dir` (all levels), with its text.
pub fn files_under(dir: &Path) -> Vec<(PathBuf, String)> {
    let mut found = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                todo.push(p);
            } else {
                let bytes = std::fs::read(&p).unwrap_or_default();
                found.push((p, String::from_utf8_lossy(&bytes).into_owned()));
            }
        }
    }
    found
}
