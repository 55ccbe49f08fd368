//! The serial console, shared with other processes over a Unix socket (no
//! TCP): `alpy console ID` attaches through it.
//!
//! Every client receives every byte the console reads from the moment it
//! connects; the console's own reader, its log and `console.log` keep
//! receiving everything as before. Bytes a client sends are typed on the
//! console, but only one client types at a time: the first to send takes
//! the keyboard and keeps it until it disconnects; the others are told
//! that they are read-only for now.
//!
//! A client's first bytes are [`ATTACHED`]: from then on it receives
//! every byte the console reads, so a client that waits for that line
//! (`alpy console`, the lab's console bridge) knows that nothing it
//! provokes afterwards is missed. A refused client gets a line
//! `alpy: refused: <why>` instead.
//!
//! The socket is created mode 0600 (in a 0700 directory, see
//! [`crate::supervisor::registry`]), and a client whose peer credentials are not
//! this process's user (or root) is refused as well.

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::RecvTimeoutError;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::util::lock;
use crate::vm::console::{Console, Taps};

/// The line a share sends a client once it receives the console's bytes.
pub const ATTACHED: &[u8] = b"[alpy: attached]\r\n";

/// Reads a share's first line from `sock` (waiting at most `within`):
/// Ok once the client is attached, the share's reason if it refused. The
/// bytes returned are console output to pass on: empty, except from the
/// share of an older alpy, which sends no attach line (its first line is
/// the console's).
pub fn await_attached(sock: &mut UnixStream, within: Duration) -> Result<Vec<u8>> {
    sock.set_read_timeout(Some(within))
        .map_err(|e| Error::io("configure the console socket", e))?;
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    // Some(true): a whole line; Some(false): the share closed.
    let read = loop {
        match sock.read(&mut byte) {
            Ok(0) => break Ok(false),
            Ok(_) => {
                line.push(byte[0]);
                if byte[0] == b'\n' || line.len() > 512 {
                    break Ok(true);
                }
            }
            Err(e) => break Err(e),
        }
    };
    sock.set_read_timeout(None)
        .map_err(|e| Error::io("configure the console socket", e))?;
    let said = String::from_utf8_lossy(&line).trim().to_string();
    match read {
        Ok(true) if line == ATTACHED => Ok(Vec::new()),
        Ok(true) if said.starts_with("alpy: refused") => Err(Error::Closed(format!(
            "the console share said: {said}"
        ))),
        Ok(true) => {
            log::warn!(target: "alpy::console", "the console share sent no attach line (an older alpy's bed?): passing its first line on");
            Ok(line)
        }
        Ok(false) if said.is_empty() => Err(Error::Closed(
            "the console share closed without attaching this client".into(),
        )),
        Ok(false) => Err(Error::Closed(format!("the console share said: {said}"))),
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            Err(Error::Timeout {
                what: "the console share to attach this client".into(),
                timeout: within,
                tail: format!(
                    "{said}(a bed of an older alpy shares no attach line: take it down and up again)"
                ),
            })
        }
        Err(e) => Err(Error::io("read the console share's first line", e)),
    }
}

/// How often the threads look at the stop flag.
const POLL: Duration = Duration::from_millis(100);

/// Shared by the acceptor and the client threads.
struct Hub {
    name: String,
    taps: Taps,
    /// Writes to the console; one client at a time.
    writer: Mutex<UnixStream>,
    /// The client that holds the keyboard.
    typist: Mutex<Option<u64>>,
    stop: AtomicBool,
    next_id: AtomicU64,
    /// Every client's socket (to shut down on close) and its threads.
    clients: Mutex<Vec<(UnixStream, Vec<JoinHandle<()>>)>>,
}

/// A console's Unix socket; [`ConsoleShare::close`] stops it.
///
/// ```no_run
/// # fn main() -> alpy::Result<()> {
/// # let mut bed: alpy::TestBed = todo!();
/// let dir = std::env::temp_dir();
/// let share = bed.console()?.share(&dir.join("console.sock"))?;
/// // ... `socat - UNIX-CONNECT:...` or `alpy console ID` attaches ...
/// share.close()?;
/// # Ok(()) }
/// ```
pub struct ConsoleShare {
    path: PathBuf,
    hub: Arc<Hub>,
    acceptor: Option<JoinHandle<()>>,
}

impl Console {
    /// Shares this console on a new Unix socket at `path` (mode 0600).
    pub fn share(&self, path: &Path) -> Result<ConsoleShare> {
        let _ = std::fs::remove_file(path);
        let listener = UnixListener::bind(path)
            .map_err(|e| Error::io(format!("listen on {}", path.display()), e))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| Error::io(format!("chmod 0600 {}", path.display()), e))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| Error::io("configure the console socket", e))?;
        let hub = Arc::new(Hub {
            name: self.name().to_string(),
            taps: self.taps(),
            writer: Mutex::new(self.writer()?),
            typist: Mutex::new(None),
            stop: AtomicBool::new(false),
            next_id: AtomicU64::new(1),
            clients: Mutex::new(Vec::new()),
        });
        let acceptor = {
            let hub = Arc::clone(&hub);
            std::thread::Builder::new()
                .name(format!("share-{}", self.name()))
                .spawn(crate::logging::inherit(move || {
                    accept_loop(&listener, &hub)
                }))
                .map_err(|e| Error::io("spawn the console socket's acceptor", e))?
        };
        log::info!(target: "alpy::console", "[{}] shared on {}", self.name(), path.display());
        Ok(ConsoleShare {
            path: path.to_path_buf(),
            hub,
            acceptor: Some(acceptor),
        })
    }
}

impl ConsoleShare {
    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Disconnects every client and removes the socket.
    pub fn close(mut self) -> Result<()> {
        self.stop()
    }

    fn stop(&mut self) -> Result<()> {
        self.hub.stop.store(true, Ordering::SeqCst);
        if let Some(a) = self.acceptor.take() {
            let _ = a.join();
        }
        let clients = std::mem::take(&mut *lock(&self.hub.clients));
        for (sock, threads) in clients {
            let _ = sock.shutdown(std::net::Shutdown::Both);
            for t in threads {
                let _ = t.join();
            }
        }
        match std::fs::remove_file(&self.path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(Error::io(format!("remove {}", self.path.display()), e))
            }
            _ => Ok(()),
        }
    }
}

impl Drop for ConsoleShare {
    fn drop(&mut self) {
        if self.acceptor.is_some() {
            if let Err(e) = self.stop() {
                log::warn!(target: "alpy::console", "[{}] {e}", self.hub.name);
            }
        }
    }
}

fn accept_loop(listener: &UnixListener, hub: &Arc<Hub>) {
    while !hub.stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((client, _)) => {
                if let Err(e) = attach(client, hub) {
                    log::warn!(target: "alpy::console", "[{}] a client: {e}", hub.name);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::thread::sleep(POLL),
            Err(e) => {
                log::warn!(target: "alpy::console", "[{}] accept: {e}", hub.name);
                std::thread::sleep(POLL);
            }
        }
    }
}

/// Whether the peer is this process's user or root.
fn peer_allowed(client: &UnixStream) -> std::result::Result<(), String> {
    let cred = nix::sys::socket::getsockopt(client, nix::sys::socket::sockopt::PeerCredentials)
        .map_err(|e| format!("cannot read the client's credentials: {e}"))?;
    let me = nix::unistd::geteuid().as_raw();
    if cred.uid() == me || cred.uid() == 0 {
        Ok(())
    } else {
        Err(format!(
            "uid {} may not attach to a console of uid {me}",
            cred.uid()
        ))
    }
}

fn attach(mut client: UnixStream, hub: &Arc<Hub>) -> Result<()> {
    client
        .set_nonblocking(false)
        .map_err(|e| Error::io("configure a console client", e))?;
    if let Err(why) = peer_allowed(&client) {
        log::warn!(target: "alpy::console", "[{}] refused a client: {why}", hub.name);
        let _ = write!(client, "alpy: refused: {why}\r\n");
        return Ok(());
    }
    let id = hub.next_id.fetch_add(1, Ordering::SeqCst);
    log::info!(target: "alpy::console", "[{}] client {id} attached", hub.name);
    let rx = hub.taps.tap();
    // Tapped: tell the client, before any of the console's bytes.
    if client.write_all(ATTACHED).is_err() {
        return Ok(());
    }
    let mut out = client
        .try_clone()
        .map_err(|e| Error::io("clone a console client", e))?;
    let input = client
        .try_clone()
        .map_err(|e| Error::io("clone a console client", e))?;
    let sender = {
        let hub = Arc::clone(hub);
        std::thread::Builder::new()
            .name(format!("share-out-{id}"))
            .spawn(crate::logging::inherit(move || loop {
                match rx.recv_timeout(POLL) {
                    Ok(chunk) => {
                        if out.write_all(&chunk).is_err() {
                            break;
                        }
                    }
                    Err(RecvTimeoutError::Timeout) if !hub.stop.load(Ordering::SeqCst) => {}
                    Err(_) => {
                        // The console closed, or the share did.
                        let _ = out.shutdown(std::net::Shutdown::Both);
                        break;
                    }
                }
            }))
            .map_err(|e| Error::io("spawn a console client's sender", e))?
    };
    let typer = {
        let hub = Arc::clone(hub);
        std::thread::Builder::new()
            .name(format!("share-in-{id}"))
            .spawn(crate::logging::inherit(move || type_loop(input, &hub, id)))
            .map_err(|e| Error::io("spawn a console client's reader", e))?
    };
    let mut clients = lock(&hub.clients);
    // Forget clients that are gone, so a long-lived bed does not collect them.
    clients.retain(|(_, threads)| threads.iter().any(|t| !t.is_finished()));
    clients.push((client, vec![sender, typer]));
    Ok(())
}

/// Types what client `id` sends, while it holds the keyboard.
fn type_loop(mut input: UnixStream, hub: &Hub, id: u64) {
    let mut buf = [0u8; 4096];
    let mut told = false;
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let mut typist = lock(&hub.typist);
        if typist.is_none() {
            *typist = Some(id);
            log::info!(target: "alpy::console", "[{}] client {id} types", hub.name);
        }
        if *typist == Some(id) {
            drop(typist);
            log::debug!(
                target: "alpy::console",
                "[{}] > (client {id}) \"{}\"",
                hub.name,
                buf[..n].escape_ascii()
            );
            if lock(&hub.writer).write_all(&buf[..n]).is_err() {
                break;
            }
        } else if !told {
            drop(typist);
            told = true;
            let _ = input.write_all(
                b"\r\n[alpy: read-only: another client is typing on this console; \
                  what you type is dropped until it detaches]\r\n",
            );
        }
    }
    let mut typist = lock(&hub.typist);
    if *typist == Some(id) {
        *typist = None;
    }
    drop(typist);
    let _ = input.shutdown(std::net::Shutdown::Both);
    log::info!(target: "alpy::console", "[{}] client {id} detached", hub.name);
}
