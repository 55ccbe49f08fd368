//! Test beds that outlive the command that stood them up (`alpy up`): each
//! is owned by a supervisor process and has a directory in this user's
//! registry, `$XDG_RUNTIME_DIR/alpy/beds/<id>/` (else
//! `/tmp/alpy-<uid>/beds/<id>/`, mode 0700), holding `bed.json` (what the
//! other subcommands need), `control.sock` (mode 0600), on which the
//! supervisor takes one JSON request per line
//! ([`crate::supervisor::protocol`]), and `console.sock` (mode 0600), the DUT's serial console
//! shared for `alpy console` ([`crate::vm::console_share`]), with
//! `console-<machine>.sock` for each other machine of the bed.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::bed::testbed::TestBed;
use crate::error::{Error, Result};
use crate::supervisor::protocol::{Reply, Request};
use crate::vm::console_share::ConsoleShare;

/// What a stood-up bed tells the other subcommands.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BedInfo {
    /// The bed's id (its run id).
    pub id: String,
    /// The bed's name.
    pub name: String,
    /// The topology file it was stood up from.
    pub topology: PathBuf,
    /// The supervisor's PID.
    pub supervisor_pid: u32,
    /// When it was ready (seconds since the epoch).
    pub started: u64,
    /// Its artifacts directory.
    pub artifacts: PathBuf,
    /// Node name → node container id.
    pub nodes: Vec<(String, String)>,
    /// The console's Unix socket, when it is shared.
    #[serde(default)]
    pub console: Option<PathBuf>,
    /// `up` (stood up by `alpy up`) or `kept` (a failed test's, kept by
    /// `ALPY_KEEP`).
    #[serde(default)]
    pub state: String,
    /// The DUT's MAC on each link, in link order.
    #[serde(default)]
    pub dut_macs: Vec<String>,
    /// What to add to the raw `linkN.pcap` stamps for this host's time.
    #[serde(default)]
    pub capture_offset: Option<f64>,
    /// Each link's capture file: the machine NIC its node is on (`None`
    /// for a node on a segment). Read it with [`BedInfo::capture_path`].
    #[serde(default)]
    pub captures: Vec<Option<PathBuf>>,
    /// The bed's machines, the DUT first, with their console sockets.
    #[serde(default)]
    pub machines: Vec<MachineInfo>,
}

/// One machine of a stood-up bed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MachineInfo {
    /// Its name (`dut` for a one-machine bed).
    pub name: String,
    /// Its roles.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Its console's Unix socket, when it is shared.
    #[serde(default)]
    pub console: Option<PathBuf>,
    /// The rack's name of the board it is (none: a VM).
    #[serde(default)]
    pub board: Option<String>,
}

impl BedInfo {
    /// What to publish about `bed`, owned by this process, under `id`.
    pub fn of(bed: &TestBed, id: &str, topology: PathBuf) -> BedInfo {
        BedInfo {
            id: id.to_string(),
            name: bed.name().to_string(),
            topology,
            supervisor_pid: std::process::id(),
            started: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            artifacts: bed.artifacts_dir().to_path_buf(),
            nodes: bed.nodes_info(),
            console: None,
            state: "up".into(),
            dut_macs: (0..bed.link_nics.len())
                .map(|i| bed.dut_mac(i).to_string())
                .collect(),
            capture_offset: bed.capture_offset(),
            captures: (0..bed.link_nics.len()).map(|i| bed.pcap_path(i)).collect(),
            machines: bed
                .machines()
                .iter()
                .map(|m| MachineInfo {
                    name: m.name().to_string(),
                    tags: m.tags().to_vec(),
                    console: None,
                    board: m.board_spec().map(|b| b.name.clone()),
                })
                .collect(),
        }
    }

    /// The index of machine `name` (`None`: the first, the DUT), or
    /// [`Error::NotFound`] naming the machines there are.
    pub fn machine_index(&self, name: Option<&str>) -> Result<usize> {
        let Some(name) = name else {
            return Ok(0);
        };
        self.machines
            .iter()
            .position(|m| m.name == name)
            .ok_or_else(|| Error::NotFound {
                what: format!("machine {name} of bed {}", self.id),
                hint: format!(
                    "its machines are {}",
                    self.machines
                        .iter()
                        .map(|m| m.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            })
    }

    /// Link `i`'s capture file: the machine NIC its node is on. An
    /// [`Error::NotFound`] for a node on a segment (its machines' NICs
    /// there each have their own capture). Entries written before
    /// `captures` existed name `linkN.pcap`.
    pub fn capture_path(&self, i: usize) -> Result<PathBuf> {
        if self.captures.is_empty() {
            return Ok(self.artifacts.join(format!("link{i}.pcap")));
        }
        self.captures
            .get(i)
            .cloned()
            .flatten()
            .ok_or_else(|| Error::NotFound {
                what: format!("a capture of link {i} of bed {}", self.id),
                hint: "its node is on a segment: each machine NIC there has its own capture \
                   (<machine>-nic<N>.pcap in the artifacts directory; linkN.pcap for a \
                   machine named dut)"
                    .into(),
            })
    }

    /// The index of the node (`what` = "node") or link named `key`; with
    /// `by_index`, a number names it too.
    pub fn index_of(&self, key: &str, what: &str, by_index: bool) -> Result<usize> {
        self.nodes
            .iter()
            .position(|(n, _)| n == key)
            .or_else(|| {
                by_index
                    .then(|| key.parse::<usize>().ok())
                    .flatten()
                    .filter(|i| *i < self.nodes.len())
            })
            .ok_or_else(|| Error::NotFound {
                what: format!("{what} {key} of bed {}", self.id),
                hint: format!(
                    "its {what}s are {}",
                    self.nodes
                        .iter()
                        .map(|(n, _)| n.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            })
    }
}

/// The registry of this user's beds.
pub fn registry_dir() -> PathBuf {
    crate::settings::Settings::from_env().registry_dir()
}

/// The directory of bed `id`, created private (0700) like the registry.
pub fn bed_dir(id: &str) -> Result<PathBuf> {
    let dir = registry_dir().join(id);
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .map_err(|e| {
            Error::io(
                format!("create the bed's registry entry {}", dir.display()),
                e,
            )
        })?;
    Ok(dir)
}

/// Beds in the registry whose supervisor is alive (directories of dead
/// supervisors are removed; `alpy gc` removes their containers).
pub fn list() -> Vec<BedInfo> {
    let mut beds = Vec::new();
    for e in std::fs::read_dir(registry_dir())
        .into_iter()
        .flatten()
        .flatten()
    {
        let info: Option<BedInfo> = std::fs::read(e.path().join("bed.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        match info {
            Some(i) if crate::run::process_start_time(i.supervisor_pid).is_some() => beds.push(i),
            Some(_) => {
                let _ = std::fs::remove_dir_all(e.path());
            }
            None => {} // still starting
        }
    }
    beds.sort_by_key(|b| b.started);
    beds
}

/// Bed `id` (or the only one, if `id` is a unique prefix).
pub fn find(id: &str) -> Result<BedInfo> {
    let beds = list();
    let hits: Vec<&BedInfo> = beds.iter().filter(|b| b.id.starts_with(id)).collect();
    match hits.as_slice() {
        [one] => Ok((*one).clone()),
        [] => Err(Error::NotFound {
            what: format!("test bed {id}"),
            hint: format!("`alpy ls` lists this user's beds ({} now)", beds.len()),
        }),
        _ => Err(Error::Config(format!(
            "{id} names more than one bed: give more of the id"
        ))),
    }
}

/// The supervisor's side: publishes `info` and serves `control.sock` until
/// a `down` arrives.
pub struct Published {
    dir: PathBuf,
    listener: UnixListener,
    consoles: Vec<ConsoleShare>,
}

impl Published {
    /// Shares each machine's console (`console.sock` for the DUT,
    /// `console-<machine>.sock` for the others), opens `control.sock` (all
    /// 0600) and writes `bed.json`, in `dir`.
    pub fn new(dir: &Path, bed: &mut TestBed, info: &BedInfo) -> Result<Published> {
        let mut info = info.clone();
        let mut consoles = Vec::new();
        let names = bed.machine_names();
        for (i, name) in names.iter().enumerate() {
            let file = if i == 0 {
                "console.sock".to_string()
            } else {
                format!("console-{name}.sock")
            };
            let share = if i == 0 {
                bed.console()?.share(&dir.join(file))?
            } else {
                bed.machine(name)?.console()?.share(&dir.join(file))?
            };
            if let Some(m) = info.machines.get_mut(i) {
                m.console = Some(share.path().to_path_buf());
            }
            consoles.push(share);
        }
        info.console = consoles.first().map(|c| c.path().to_path_buf());
        let sock = dir.join("control.sock");
        let _ = std::fs::remove_file(&sock);
        let listener = UnixListener::bind(&sock)
            .map_err(|e| Error::io(format!("listen on {}", sock.display()), e))?;
        std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| Error::io(format!("chmod {}", sock.display()), e))?;
        let tmp = dir.join("bed.json.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(&info).unwrap_or_default())
            .map_err(|e| Error::io(format!("write {}", tmp.display()), e))?;
        std::fs::rename(&tmp, dir.join("bed.json"))
            .map_err(|e| Error::io(format!("publish {}", dir.display()), e))?;
        Ok(Published {
            dir: dir.to_path_buf(),
            listener,
            consoles,
        })
    }

    /// Serves requests until [`Request::Down`] (whose connection it
    /// returns, for the reply once the bed is closed). Any other request
    /// goes to `handle`, whose value (or error) is written back as one
    /// [`Reply`] line; a line that is no request gets an error reply.
    pub fn serve_until_down(
        &self,
        handle: impl FnMut(Request) -> Result<Value>,
    ) -> Result<UnixStream> {
        self.serve(None, handle)?
            .ok_or_else(|| Error::Internal("the control socket stopped without a deadline".into()))
    }

    /// [`Published::serve_until_down`], giving up at `deadline` (`None`).
    pub fn serve(
        &self,
        deadline: Option<Instant>,
        mut handle: impl FnMut(Request) -> Result<Value>,
    ) -> Result<Option<UnixStream>> {
        self.listener
            .set_nonblocking(deadline.is_some())
            .map_err(|e| Error::io("configure the control socket", e))?;
        loop {
            let stream = match self.listener.accept() {
                Ok((s, _)) => s,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if deadline.is_some_and(|d| Instant::now() >= d) {
                        return Ok(None);
                    }
                    std::thread::sleep(Duration::from_millis(100));
                    continue;
                }
                Err(e) => return Err(Error::io("accept a control connection", e)),
            };
            let _ = stream.set_nonblocking(false);
            let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
            let mut line = String::new();
            let mut r = BufReader::new(
                stream
                    .try_clone()
                    .map_err(|e| Error::io("clone a control connection", e))?,
            );
            if r.read_line(&mut line).is_err() {
                continue;
            }
            // `down` as an older alpy sends it.
            let line = if line.trim() == "down" {
                json_line(&Request::Down)
            } else {
                line
            };
            let reply = match Request::parse(line.trim()) {
                Ok(Request::Down) => return Ok(Some(stream)),
                Ok(request) => Reply::of(handle(request)),
                Err(e) => Reply::of(Err(e)),
            };
            let mut w = stream;
            let _ = writeln!(w, "{}", json_line(&reply));
        }
    }

    /// Stops sharing the console before the bed closes it: attached
    /// clients are told the console is gone.
    pub fn unshare_console(&mut self) {
        for c in std::mem::take(&mut self.consoles) {
            if let Err(e) = c.close() {
                log::warn!("{e}");
            }
        }
    }

    /// Removes the bed's registry entry.
    pub fn withdraw(mut self) {
        self.unshare_console();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Sends `request` to bed `info`'s supervisor; returns its reply's value
/// (an error reply is an error naming the bed).
pub fn request(info: &BedInfo, request: &Request) -> Result<Value> {
    request_within(info, request, Duration::from_secs(60))
}

/// `value` as one line of JSON.
pub(crate) fn json_line<T: serde::Serialize>(value: &T) -> String {
    // Serializing these plain types cannot fail; a message says so if it
    // ever did.
    serde_json::to_string(value)
        .unwrap_or_else(|e| format!(r#"{{"result":"error","error":"encode a reply: {e}"}}"#))
}

/// [`request`], waiting up to `timeout` for the answer (an app run to
/// completion takes as long as it takes).
pub fn request_within(info: &BedInfo, request: &Request, timeout: Duration) -> Result<Value> {
    let sock = registry_dir().join(&info.id).join("control.sock");
    let mut s = UnixStream::connect(&sock)
        .map_err(|e| Error::io(format!("connect to {}", sock.display()), e))?;
    let _ = s.set_read_timeout(Some(timeout));
    writeln!(s, "{}", json_line(request))
        .map_err(|e| Error::io("send a request to the supervisor", e))?;
    let mut answer = String::new();
    BufReader::new(s)
        .read_line(&mut answer)
        .map_err(|e| Error::io("read the supervisor's answer", e))?;
    let reply: Reply = serde_json::from_str(answer.trim_end()).map_err(|e| {
        Error::Internal(format!(
            "bed {}'s supervisor answered {:?}, which is no reply ({e}): is it an older alpy? \
             `alpy down {}` and stand it up again",
            info.id,
            answer.trim_end(),
            info.id
        ))
    })?;
    reply.into_result(&format!("bed {}", info.id))
}

/// Asks bed `id`'s supervisor to take it down, and waits until it has
/// (its registry entry is gone and the supervisor has exited), within
/// `timeout`.
pub fn down(info: &BedInfo, timeout: Duration) -> Result<()> {
    let dir = registry_dir().join(&info.id);
    let sock = dir.join("control.sock");
    let mut s = UnixStream::connect(&sock)
        .map_err(|e| Error::io(format!("connect to {}", sock.display()), e))?;
    writeln!(s, "{}", json_line(&Request::Down)).map_err(|e| Error::io("send down", e))?;
    // A supervisor of this alpy answers only once the bed is closed; one
    // of an older alpy (line commands) refuses the JSON at once: it gets
    // the old `down` line instead.
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let mut first = String::new();
    let _ = BufReader::new(&s).read_line(&mut first);
    if first.starts_with("error ") {
        log::info!(target: "alpy::registry", "bed {}'s supervisor is of an older alpy: sending it the old down", info.id);
        let mut old = UnixStream::connect(&sock)
            .map_err(|e| Error::io(format!("connect to {}", sock.display()), e))?;
        writeln!(old, "down").map_err(|e| Error::io("send down", e))?;
    }
    let deadline = Instant::now() + timeout;
    // Exited (a zombie counts: its parent may never reap it).
    let supervisor_runs = || crate::run::process_start_time(info.supervisor_pid).is_some();
    while dir.exists() || supervisor_runs() {
        if Instant::now() >= deadline {
            return Err(Error::Timeout {
                what: format!("test bed {} to go down", info.id),
                timeout,
                tail: String::new(),
            });
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A supervisor of an older alpy takes only `down` lines: `down()`
    /// sends it one when it refuses the JSON request.
    #[test]
    fn an_older_supervisor_is_taken_down_too() {
        let id = format!("compat{}", std::process::id());
        let dir = bed_dir(&id).unwrap();
        let listener = UnixListener::bind(dir.join("control.sock")).unwrap();
        let old = std::thread::spawn({
            let dir = dir.clone();
            move || {
                let mut lines = Vec::new();
                for _ in 0..2 {
                    let (s, _) = listener.accept().unwrap();
                    let mut line = String::new();
                    BufReader::new(&s).read_line(&mut line).unwrap();
                    let line = line.trim().to_string();
                    if line == "down" {
                        std::fs::remove_dir_all(&dir).unwrap();
                    } else {
                        writeln!(&s, "error unknown command {line:?}").unwrap();
                    }
                    lines.push(line);
                }
                lines
            }
        });
        let info = BedInfo {
            id: id.clone(),
            name: "old".into(),
            topology: PathBuf::new(),
            // No such process: only the directory says it is up.
            supervisor_pid: u32::MAX / 2,
            started: 0,
            artifacts: PathBuf::new(),
            nodes: Vec::new(),
            console: None,
            state: "up".into(),
            dut_macs: Vec::new(),
            capture_offset: None,
            captures: Vec::new(),
            machines: Vec::new(),
        };
        down(&info, Duration::from_secs(10)).unwrap();
        let lines = old.join().unwrap();
        assert_eq!(lines, [r#"{"op":"down"}"#, "down"]);
        assert!(!dir.exists());
    }
}
