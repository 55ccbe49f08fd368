//! A lab acquired on a server: the remote counterpart of a test bed.
//! Its console is a local [`Console`] (the expect engine, unchanged) fed
//! by a WebSocket; nodes run commands through the server; captures come
//! back as pcap files.

use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::bed::remote::client::{checked, net, LabClient};
use crate::bed::remote::wire::{Acquired, Devices, FileEntry, Files, Lab};
use crate::error::{Error, Result};
use crate::pcap::Capture;
use crate::vm::console::Console;

/// A lab held by this client's session.
pub struct RemoteBed {
    client: Option<LabClient>,
    lab: Lab,
    console: Option<Console>,
    bridge_stop: Arc<AtomicBool>,
    bridge: Option<std::thread::JoinHandle<()>>,
    dir: PathBuf,
    /// The directory is this bed's own (removed at the end), not a test
    /// bed's artifacts.
    own_dir: bool,
    /// Destroy the lab at the end (a test bed's: never shared) instead of
    /// releasing it.
    destroy: bool,
    /// What the lab says of its bed: the DUT's MACs and capture offset.
    devices: Devices,
}

impl LabClient {
    /// Waits for the session to be active (within `timeout`), uploads
    /// `topology` (TOML; file paths as `store:NAME`) and returns the lab:
    /// a running one with the same topology if there is one.
    pub fn acquire(self, topology: &str, timeout: Duration) -> Result<RemoteBed> {
        self.acquire_lab(topology, timeout, true, None)
    }

    /// [`LabClient::acquire`], reusing a running lab or not; the console's
    /// transcript and the captures go to `dir` (default: a temporary
    /// directory, removed at the end). A lab that is not reused is
    /// destroyed at the end instead of released.
    pub(crate) fn acquire_lab(
        self,
        topology: &str,
        timeout: Duration,
        reuse: bool,
        dir: Option<PathBuf>,
    ) -> Result<RemoteBed> {
        self.wait_active(timeout)?;
        let form = reqwest::blocking::multipart::Form::new()
            .text("topology", topology.to_string())
            .text("reuse", reuse.to_string());
        let r = self
            .with_session(self.http.post(format!("{}/lab", self.url)))
            .multipart(form)
            .send()
            .map_err(net("upload the topology"))?;
        let got: Acquired = checked(r, "acquire a lab")?
            .json()
            .map_err(net("read the lab"))?;
        log::info!(target: "alpy::lab", "lab {} ({}), reused: {}", got.lab.lab_id, got.lab.name, got.reused);
        let devices = self.get_json("/lab/devices", "list devices")?;
        let own_dir = dir.is_none();
        let dir = dir.unwrap_or_else(|| {
            std::env::temp_dir().join(format!("alpy-remote-{}", &self.session[..16]))
        });
        std::fs::create_dir_all(&dir)
            .map_err(|e| Error::io(format!("create {}", dir.display()), e))?;
        Ok(RemoteBed {
            client: Some(self),
            lab: got.lab,
            console: None,
            bridge_stop: Arc::new(AtomicBool::new(false)),
            bridge: None,
            dir,
            own_dir,
            destroy: !reuse,
            devices,
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
        self.to_store_names(&mut t, &path.display().to_string(), |s| topology.resolve(s))?;
        toml::to_string(&t)
            .map_err(|e| Error::Internal(format!("re-encode {}: {e}", path.display())))
    }

    /// Replaces each file a topology boots (kernel, initrd, disks,
    /// firmware) by the name of the lab store's entry with the same
    /// SHA-256; `origin` names the topology in errors, `resolve` turns its
    /// strings into paths.
    pub(crate) fn to_store_names(
        &self,
        t: &mut toml::Table,
        origin: &str,
        resolve: impl Fn(&str) -> Result<PathBuf>,
    ) -> Result<()> {
        let store: Files = self.get_json("/store", "list the store")?;
        let by_hash = |sha: &str| {
            store
                .files
                .iter()
                .find(|f| f.sha256.as_deref() == Some(sha))
                .map(|f| f.name.clone())
        };
        for (key, v) in crate::bed::topology::boot_files_mut(t) {
            let Some(s) = v.as_str().filter(|s| !s.starts_with("store:")) else {
                continue;
            };
            let file = resolve(s)?;
            let sha = crate::bed::warm::file_hash(&file)?;
            let name = by_hash(&sha).ok_or_else(|| {
                Error::Config(format!(
                    "{origin}: {key} = {s:?}: the lab's store has no file like {} (sha256 {}): ask its operator to add it",
                    file.display(),
                    &sha[..16]
                ))
            })?;
            *v = toml::Value::String(format!("store:{name}"));
        }
        Ok(())
    }
}

impl RemoteBed {
    fn client(&self) -> Result<&LabClient> {
        self.client
            .as_ref()
            .ok_or_else(|| Error::Closed("the remote bed".into()))
    }

    /// The lab as the server describes it (id, status, refcount, bed).
    pub fn lab(&self) -> &Lab {
        &self.lab
    }

    /// The DUT's MAC on link `i`, as the lab's bed has it.
    pub fn dut_mac(&self, i: usize) -> Option<crate::addr::Mac> {
        self.devices.dut_macs.get(i)?.parse().ok()
    }

    /// What to add to the lab's raw capture stamps for the lab host's
    /// time (its bed measured it when the DUT was resumed).
    pub fn capture_offset(&self) -> Option<f64> {
        self.devices.capture_offset
    }

    /// The nodes' names.
    pub fn nodes(&self) -> Result<Vec<String>> {
        let now: Devices = self.client()?.get_json("/lab/devices", "list devices")?;
        Ok(now.nodes)
    }

    /// Runs `cmd` in node `node`: (exit code, stdout, stderr).
    pub fn node_execute(&self, node: &str, cmd: &[&str]) -> Result<(i64, String, String)> {
        self.client()?.nodes().exec(node, cmd)
    }

    /// The lab's nodes, for a test bed's [`crate::net::Node`]s.
    pub(crate) fn node_service(&self) -> Result<Arc<dyn crate::net::NodeService>> {
        Ok(Arc::new(self.client()?.nodes()))
    }

    /// The board the lab lent as the DUT (the rack's name), if it is one.
    pub fn board(&self) -> Option<&str> {
        self.devices.board.as_deref()
    }

    /// Presses the power button (`off`), resets (`cycle`) or lets the
    /// vCPUs run (`on`); on a board, switches its power port.
    pub fn power(&self, action: &str) -> Result<()> {
        let c = self.client()?;
        let r = c
            .with_session(c.http.post(format!("{}/lab/power/{action}", c.url)))
            .send()
            .map_err(net("power"))?;
        checked(r, &format!("power {action}")).map(drop)
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
        self.capture_to(link, &self.dir.join(format!("{link}.pcap")))
    }

    /// Link `link`'s capture so far, written to `path` and read.
    pub(crate) fn capture_to(&self, link: &str, path: &Path) -> Result<Capture> {
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
        std::fs::write(path, &bytes)
            .map_err(|e| Error::io(format!("write {}", path.display()), e))?;
        Capture::open(path)
    }

    /// The DUT's serial console: the expect engine over the server's
    /// WebSocket (its transcript in a local `console.log`).
    pub fn console(&mut self) -> Result<&mut Console> {
        if self.console.is_none() {
            let c = self.client()?;
            let ws = super::ws::open(&format!("{}/lab/console", c.url), &c.token, &c.session)?;
            let (ours, theirs) = UnixStream::pair().map_err(|e| Error::io("socketpair", e))?;
            let stop = Arc::clone(&self.bridge_stop);
            self.bridge = Some(
                std::thread::Builder::new()
                    .name("lab-console".into())
                    .spawn(move || {
                        if let Some(why) = super::ws::bridge(ws, theirs, &stop) {
                            log::warn!(target: "alpy::lab", "the lab closed the console: {why}");
                        }
                    })
                    .map_err(|e| Error::io("spawn the console bridge", e))?,
            );
            let name = format!("remote-{}/dut", self.lab.name);
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

    /// The console's last lines (empty before it is attached).
    pub(crate) fn console_tail(&self) -> String {
        self.console.as_ref().map(|c| c.tail()).unwrap_or_default()
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
        if !self.own_dir {
            // A test bed's artifacts keep the lab's logs (nodes, apps,
            // QEMU), as they keep its captures.
            let dest = self.dir.join("lab");
            if let Err(e) = fetch_logs(&client, &dest) {
                log::warn!(target: "alpy::lab", "keeping the lab's logs in {}: {e}", dest.display());
            }
        }
        let (what, req) = if self.destroy {
            let url = format!("{}/lab?force=true", client.url);
            ("destroy the lab", client.http.delete(url))
        } else {
            let url = format!("{}/lab/release", client.url);
            ("release the lab", client.http.post(url))
        };
        let r = client.with_session(req).send().map_err(net(what));
        let mut released = r.and_then(|r| checked(r, what).map(drop));
        if self.destroy && released.is_ok() {
            // Closing returns once the lab's bed is down, as a local one.
            released = wait_gone(&client, Duration::from_secs(180));
        }
        let ended = client.close();
        if self.own_dir {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
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

/// Copies the lab bed's `*.log` files into `dest` (at most 256 MiB).
fn fetch_logs(client: &LabClient, dest: &Path) -> Result<()> {
    const MAX_TOTAL: u64 = 256 << 20;
    let list: Files = client.get_json("/lab/logs", "list the lab's logs")?;
    std::fs::create_dir_all(dest)
        .map_err(|e| Error::io(format!("create {}", dest.display()), e))?;
    let mut total = 0;
    for FileEntry { name, size, .. } in list.files {
        if total + size > MAX_TOTAL {
            log::warn!(target: "alpy::lab", "the lab's {name} ({size} bytes) left on the lab: over 256 MiB of logs");
            continue;
        }
        total += size;
        let r = client
            .with_session(client.http.get(format!("{}/lab/logs/{name}", client.url)))
            .send()
            .map_err(net("fetch a log"))?;
        let data = checked(r, &format!("the lab's {name}"))?
            .bytes()
            .map_err(net("read a log"))?;
        let path = dest.join(name);
        std::fs::write(&path, &data)
            .map_err(|e| Error::io(format!("write {}", path.display()), e))?;
    }
    Ok(())
}

/// Waits until the session's lab is gone (destroyed and forgotten).
fn wait_gone(client: &LabClient, timeout: Duration) -> Result<()> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let r = client
            .with_session(client.http.get(format!("{}/lab", client.url)))
            .send()
            .map_err(net("ask for the lab"))?;
        if r.status().as_u16() == 404 {
            return Ok(());
        }
        let status = checked(r, "ask for the lab")?
            .json::<Lab>()
            .map_err(net("read the lab"))?
            .status;
        if std::time::Instant::now() >= deadline {
            return Err(Error::Timeout {
                what: format!("the lab to go down (it is {status})"),
                timeout,
                tail: String::new(),
            });
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}
