//! A lab acquired on a server: the remote counterpart of a test bed.
//! Its console is a local [`Console`] (the expect engine, unchanged) fed
//! by a WebSocket; nodes run commands through the server; captures come
//! back as pcap files.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::error::{Error, Result};
use crate::lab::client::{checked, net, LabClient};
use crate::pcap::Capture;
use crate::vm::console::Console;

/// A lab held by this client's session.
pub struct RemoteBed {
    client: Option<LabClient>,
    lab: Value,
    console: Option<Console>,
    bridge_stop: Arc<AtomicBool>,
    bridge: Option<std::thread::JoinHandle<()>>,
    dir: PathBuf,
}

impl LabClient {
    /// Waits for the session to be active (within `timeout`), uploads
    /// `topology` (TOML; file paths as `store:NAME`) and returns the lab:
    /// a running one with the same topology if there is one.
    pub fn acquire(self, topology: &str, timeout: Duration) -> Result<RemoteBed> {
        self.wait_active(timeout)?;
        let form = reqwest::blocking::multipart::Form::new()
            .text("topology", topology.to_string())
            .text("reuse", "true");
        let r = self
            .with_session(self.http.post(format!("{}/lab", self.url)))
            .multipart(form)
            .send()
            .map_err(net("upload the topology"))?;
        let v: Value = checked(r, "acquire a lab")?
            .json()
            .map_err(net("read the lab"))?;
        log::info!(target: "alpy::lab", "lab {} ({}), reused: {}", v["lab"]["lab_id"], v["lab"]["name"], v["reused"]);
        let dir = std::env::temp_dir().join(format!("alpy-remote-{}", &self.session[..16]));
        std::fs::create_dir_all(&dir)
            .map_err(|e| Error::io(format!("create {}", dir.display()), e))?;
        Ok(RemoteBed {
            client: Some(self),
            lab: v["lab"].clone(),
            console: None,
            bridge_stop: Arc::new(AtomicBool::new(false)),
            bridge: None,
            dir,
        })
    }

    /// [`LabClient::acquire`] with a topology file as a local test bed
    /// reads it: each file it boots (kernel, initrd, disks, firmware) is
    /// named by the lab's store entry with the same SHA-256, so the same
    /// file works locally and remotely.
    pub fn acquire_file(self, path: &Path, timeout: Duration) -> Result<RemoteBed> {
        let text = self.for_lab(path)?;
        self.acquire(&text, timeout)
    }

    /// The topology at `path` with its files replaced by store names.
    pub fn for_lab(&self, path: &Path) -> Result<String> {
        let topology = crate::Topology::load(path)?;
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::io(format!("read topology {}", path.display()), e))?;
        let mut t: toml::Table = text
            .parse()
            .map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
        let r = self
            .http
            .get(format!("{}/store", self.url))
            .bearer_auth(&self.token)
            .send()
            .map_err(net("list the store"))?;
        let store: Value = checked(r, "list the store")?
            .json()
            .map_err(net("read the store"))?;
        let by_hash = |sha: &str| {
            store["files"]
                .as_array()
                .into_iter()
                .flatten()
                .find_map(|f| {
                    (f["sha256"] == sha)
                        .then(|| f["name"].as_str().map(str::to_string))
                        .flatten()
                })
        };
        let map = |key: &str, v: &mut toml::Value| -> Result<()> {
            let Some(s) = v.as_str().filter(|s| !s.starts_with("store:")) else {
                return Ok(());
            };
            let file = topology.resolve(s)?;
            let sha = crate::bed::warm::file_hash(&file)?;
            let name = by_hash(&sha).ok_or_else(|| {
                Error::Config(format!(
                    "{}: {key} = {s:?}: the lab's store has no file like {} (sha256 {}): ask its operator to add it",
                    path.display(),
                    file.display(),
                    &sha[..16]
                ))
            })?;
            *v = toml::Value::String(format!("store:{name}"));
            Ok(())
        };
        if let Some(dut) = t.get_mut("dut").and_then(|d| d.as_table_mut()) {
            for key in ["kernel", "initrd", "firmware_code", "firmware_vars"] {
                if let Some(v) = dut.get_mut(key) {
                    map(&format!("dut.{key}"), v)?;
                }
            }
            if let Some(disks) = dut.get_mut("disks").and_then(|d| d.as_array_mut()) {
                for (i, d) in disks.iter_mut().enumerate() {
                    if let Some(p) = d.as_table_mut().and_then(|d| d.get_mut("path")) {
                        map(&format!("dut.disks[{i}].path"), p)?;
                    }
                }
            }
        }
        toml::to_string(&t)
            .map_err(|e| Error::Internal(format!("re-encode {}: {e}", path.display())))
    }
}

impl RemoteBed {
    fn client(&self) -> Result<&LabClient> {
        self.client
            .as_ref()
            .ok_or_else(|| Error::Closed("the remote bed".into()))
    }

    /// The lab as the server describes it (id, status, refcount, bed).
    pub fn lab(&self) -> &Value {
        &self.lab
    }

    /// The nodes' names.
    pub fn nodes(&self) -> Result<Vec<String>> {
        let c = self.client()?;
        let r = c
            .with_session(c.http.get(format!("{}/lab/devices", c.url)))
            .send()
            .map_err(net("list devices"))?;
        let v: Value = checked(r, "list devices")?
            .json()
            .map_err(net("read devices"))?;
        Ok(v["nodes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|n| n.as_str().map(str::to_string))
            .collect())
    }

    /// Runs `cmd` in node `node`: (exit code, stdout, stderr).
    pub fn node_execute(&self, node: &str, cmd: &[&str]) -> Result<(i64, String, String)> {
        let c = self.client()?;
        let r = c
            .with_session(c.http.post(format!("{}/lab/nodes/{node}/exec", c.url)))
            .json(&serde_json::json!({ "cmd": cmd }))
            .send()
            .map_err(net("exec"))?;
        let text = checked(r, &format!("exec in node {node}"))?
            .text()
            .map_err(net("read exec output"))?;
        let (mut out, mut err, mut code) = (String::new(), String::new(), None);
        for line in text.lines() {
            let v: Value = serde_json::from_str(line).map_err(|e| {
                Error::Internal(format!("lab server: exec output line {line:?}: {e}"))
            })?;
            if let Some(s) = v["stdout"].as_str() {
                out.push_str(s);
            }
            if let Some(s) = v["stderr"].as_str() {
                err.push_str(s);
            }
            if let Some(c) = v["exit_code"].as_i64() {
                code = Some(c);
            }
        }
        let code = code.ok_or_else(|| {
            Error::Internal(format!(
                "lab server: exec in {node} ended without an exit code"
            ))
        })?;
        Ok((code, out, err))
    }

    /// Runs `cmd` in node `node` and returns its stdout; a non-zero exit
    /// is an error with the output.
    pub fn node_succeed(&self, node: &str, cmd: &[&str]) -> Result<String> {
        let (code, out, err) = self.node_execute(node, cmd)?;
        if code != 0 {
            return Err(Error::CommandFailed {
                what: format!("{cmd:?} in remote node {node}"),
                status: format!("exit code {code}"),
                output: format!("{out}{err}"),
            });
        }
        Ok(out)
    }

    /// A QMP command on the bed's QEMU: its `return`.
    pub fn qmp(&self, command: &str, arguments: Option<Value>) -> Result<Value> {
        let c = self.client()?;
        let mut body = serde_json::json!({ "execute": command });
        if let Some(a) = arguments {
            body["arguments"] = a;
        }
        let r = c
            .with_session(c.http.post(format!("{}/lab/qmp", c.url)))
            .json(&body)
            .send()
            .map_err(net("qmp"))?;
        let v: Value = checked(r, &format!("qmp {command}"))?
            .json()
            .map_err(net("read qmp"))?;
        Ok(v["return"].clone())
    }

    /// Link `link`'s capture so far (name or index), read into a
    /// [`Capture`] (kept in a local directory).
    pub fn capture(&self, link: &str) -> Result<Capture> {
        let c = self.client()?;
        let r = c
            .with_session(
                c.http
                    .get(format!("{}/lab/links/{link}/pcap?follow=false", c.url)),
            )
            .send()
            .map_err(net("capture"))?;
        let bytes = checked(r, &format!("capture of link {link}"))?
            .bytes()
            .map_err(net("read the capture"))?;
        let path = self.dir.join(format!("{link}.pcap"));
        std::fs::write(&path, &bytes)
            .map_err(|e| Error::io(format!("write {}", path.display()), e))?;
        Capture::open(&path)
    }

    /// The DUT's serial console: the expect engine over the server's
    /// WebSocket (its transcript in a local `console.log`).
    pub fn console(&mut self) -> Result<&mut Console> {
        if self.console.is_none() {
            let c = self.client()?;
            let url = c.url.replacen("http", "ws", 1) + "/lab/console";
            let mut req = tungstenite::client::IntoClientRequest::into_client_request(url.as_str())
                .map_err(|e| Error::Config(format!("lab console {url}: {e}")))?;
            let sid = c
                .session
                .parse()
                .map_err(|_| Error::Internal("a session id that is no header value".into()))?;
            req.headers_mut().insert("X-Session-ID", sid);
            let (ws, _) = tungstenite::connect(req)
                .map_err(|e| Error::Config(format!("lab console {url}: {e}")))?;
            let (ours, theirs) = UnixStream::pair().map_err(|e| Error::io("socketpair", e))?;
            let stop = Arc::clone(&self.bridge_stop);
            self.bridge = Some(
                std::thread::Builder::new()
                    .name("lab-console".into())
                    .spawn(move || bridge(ws, theirs, &stop))
                    .map_err(|e| Error::io("spawn the console bridge", e))?,
            );
            let name = format!("remote-{}/dut", self.lab["name"].as_str().unwrap_or("lab"));
            self.console = Some(Console::new(
                ours,
                &name,
                Some(&self.dir.join("console.log")),
            )?);
        }
        self.console
            .as_mut()
            .ok_or_else(|| Error::Internal("the console vanished".into()))
    }

    /// Releases the lab and ends the session.
    pub fn close(mut self) -> Result<()> {
        self.end()
    }

    fn end(&mut self) -> Result<()> {
        self.bridge_stop.store(true, Ordering::SeqCst);
        if let Some(c) = self.console.take() {
            let _ = c.close();
        }
        if let Some(b) = self.bridge.take() {
            let _ = b.join();
        }
        let Some(client) = self.client.take() else {
            return Ok(());
        };
        let r = client
            .with_session(client.http.post(format!("{}/lab/release", client.url)))
            .send()
            .map_err(net("release the lab"));
        let released = r.and_then(|r| checked(r, "release the lab").map(drop));
        let ended = client.close();
        let _ = std::fs::remove_dir_all(&self.dir);
        released.and(ended)
    }
}

impl Drop for RemoteBed {
    fn drop(&mut self) {
        if let Err(e) = self.end() {
            log::warn!(target: "alpy::lab", "{e}");
        }
    }
}

type Ws = tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<std::net::TcpStream>>;

/// Copies between the WebSocket and the console's socket, polling both
/// (a tungstenite socket is not split across threads).
fn bridge(mut ws: Ws, mut local: UnixStream, stop: &AtomicBool) {
    if let tungstenite::stream::MaybeTlsStream::Plain(s) = ws.get_ref() {
        let _ = s.set_read_timeout(Some(Duration::from_millis(20)));
    }
    let _ = local.set_nonblocking(true);
    let mut buf = [0u8; 8192];
    while !stop.load(Ordering::SeqCst) {
        match ws.read() {
            Ok(tungstenite::Message::Binary(b)) => {
                if local.write_all(&b).is_err() {
                    break;
                }
            }
            Ok(tungstenite::Message::Close(_)) => break,
            Ok(_) => {}
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => break,
        }
        match local.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if ws
                    .send(tungstenite::Message::Binary(buf[..n].to_vec().into()))
                    .is_err()
                {
                    break;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => break,
        }
    }
    let _ = ws.close(None);
    let _ = local.shutdown(std::net::Shutdown::Both);
}
