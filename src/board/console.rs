//! A board's serial console through a console server (ser2net's modes:
//! raw TCP, telnet, telnet with RFC 2217) or a local serial device. Each
//! gives the same [`Console`] as a VM's: one expect engine, one log, one
//! transcript.

use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::vm::console::Console;

mod telnet_pump;

use telnet_pump::{spawn_telnet, telnet_open, Negotiator, OpenError};

/// The telnet option of RFC 2217.
const COM_PORT_OPTION: u8 = 44;

/// Where a board's serial console is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConsolePort {
    /// A TCP port that carries the serial bytes as they are (ser2net's
    /// `tcp` accepter).
    Tcp(String),
    /// A telnet port (ser2net's `telnet` accepter): telnet commands are
    /// negotiated and stripped.
    Telnet(String),
    /// Telnet with RFC 2217 (ser2net's `telnet(rfc2217)`): the port's baud
    /// rate is set, and the server must confirm it.
    Rfc2217 {
        /// `host:port`.
        addr: String,
        /// The serial line's speed.
        baud: u32,
    },
    /// A serial device on this host (`/dev/ttyUSB0`), set raw at `baud`.
    Serial {
        /// The device.
        path: PathBuf,
        /// The serial line's speed.
        baud: u32,
    },
}

impl std::fmt::Display for ConsolePort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConsolePort::Tcp(a) => write!(f, "console server {a} (raw TCP)"),
            ConsolePort::Telnet(a) => write!(f, "console server {a} (telnet)"),
            ConsolePort::Rfc2217 { addr, baud } => {
                write!(f, "console server {addr} (RFC 2217, {baud} baud)")
            }
            ConsolePort::Serial { path, baud } => {
                write!(f, "serial device {} ({baud} baud)", path.display())
            }
        }
    }
}

/// A board's console: the expect engine over the port's [`ConsoleLink`].
/// Close it with [`BoardConsole::close`]; dropping it closes it too.
pub struct BoardConsole {
    console: Option<Console>,
    link: ConsoleLink,
}

impl BoardConsole {
    /// Connects to `port` for board `board` within `timeout`; `transcript`
    /// receives every byte, as a VM's console. Errors name the board and
    /// the port, and say what to check.
    pub fn open(
        board: &str,
        port: &ConsolePort,
        timeout: Duration,
        transcript: Option<&Path>,
    ) -> Result<BoardConsole> {
        BoardConsole::open_labelled(board, board, port, timeout, transcript)
    }

    /// [`BoardConsole::open`], the console called `label` in logs and the
    /// journal (a test bed's `<bed>/<machine>`).
    pub(crate) fn open_labelled(
        board: &str,
        label: &str,
        port: &ConsolePort,
        timeout: Duration,
        transcript: Option<&Path>,
    ) -> Result<BoardConsole> {
        let (link, ours) = ConsoleLink::open(board, port, timeout)?;
        let console = Console::new(ours, label, transcript).map_err(|e| {
            Error::Net(format!(
                "board {board}: {port}: the console's transcript or log: {e}"
            ))
        })?;
        Ok(BoardConsole {
            console: Some(console),
            link,
        })
    }

    /// The expect engine.
    pub fn console(&mut self) -> &mut Console {
        self.console.as_mut().expect("a console until close")
    }

    /// The console's last lines, for errors.
    pub(crate) fn tail(&self) -> String {
        self.console.as_ref().map(Console::tail).unwrap_or_default()
    }

    /// Closes the console and the connection; the console's error, if any.
    pub fn close(mut self) -> Result<()> {
        self.shut()
    }

    fn shut(&mut self) -> Result<()> {
        // The pumps are told to stop and the connection shut, then the
        // console closed (a pump blocked on it sees the end), then the
        // pumps joined.
        self.link.stop();
        let r = self.console.take().map_or(Ok(()), Console::close);
        self.link.shut();
        r
    }
}

impl Drop for BoardConsole {
    fn drop(&mut self) {
        let _ = self.shut();
    }
}

/// A board's console port as plain bytes: the connection (telnet and
/// RFC 2217 negotiated, their commands stripped) pumped into one end of
/// a socket pair, for whoever relays it (alpy-lab's console WebSocket);
/// [`BoardConsole`] puts the expect engine on it. Dropping it closes the
/// connection and stops the pumps.
///
/// ```no_run
/// use alpy::board::console::{ConsoleLink, ConsolePort};
/// use std::io::Read;
/// # fn main() -> alpy::Result<()> {
/// let port = ConsolePort::Tcp("consoles.lab:7001".into());
/// let (link, mut bytes) = ConsoleLink::open("fw-1", &port, std::time::Duration::from_secs(10))?;
/// let mut buf = [0u8; 512];
/// let n = bytes.read(&mut buf).map_err(|e| alpy::Error::io("read", e))?;
/// drop(link);
/// # Ok(()) }
/// ```
pub struct ConsoleLink {
    stop: Arc<AtomicBool>,
    pumps: Vec<std::thread::JoinHandle<()>>,
    /// The TCP connection, shut down on close so no pump stays blocked.
    tcp: Option<std::net::TcpStream>,
}

impl ConsoleLink {
    /// Connects to `port` for board `board` within `timeout` (a console
    /// server that turns the connection away while another client has the
    /// port is tried again until then): the link, and the socket that
    /// carries the console's bytes both ways. Errors name the board and
    /// the port, and say what to check.
    pub fn open(
        board: &str,
        port: &ConsolePort,
        timeout: Duration,
    ) -> Result<(ConsoleLink, UnixStream)> {
        let fail = |detail: String| Error::Net(format!("board {board}: {port}: {detail}"));
        if let ConsolePort::Rfc2217 { baud, .. } | ConsolePort::Serial { baud, .. } = port {
            if baud_rate(*baud).is_none() {
                return Err(fail(format!(
                    "{baud} is not a baud rate alpy sets (9600, 19200, 38400, 57600, 115200, 230400, 460800, 921600)"
                )));
            }
        }
        let (ours, theirs) = UnixStream::pair().map_err(|e| fail(format!("socket pair: {e}")))?;
        let stop = Arc::new(AtomicBool::new(false));
        // Connect (and negotiate) first, then the pumps: an error on the
        // way leaves no thread behind.
        enum Opened {
            Raw(std::net::TcpStream),
            Telnet(
                std::net::TcpStream,
                Box<telnet::Telnet>,
                Negotiator,
                Vec<u8>,
            ),
            Serial(std::fs::File),
        }
        let opened = match port {
            ConsolePort::Tcp(addr) => {
                let (tcp, ()) =
                    connect_open(addr, timeout, |tcp, _| stays_open(tcp)).map_err(fail)?;
                Opened::Raw(tcp)
            }
            ConsolePort::Telnet(addr) => {
                let (tcp, (t, n, early)) = connect_open(addr, timeout, |tcp, left| {
                    stays_open(tcp)?;
                    telnet_open(tcp, None, left)
                })
                .map_err(fail)?;
                Opened::Telnet(tcp, t, n, early)
            }
            ConsolePort::Rfc2217 { addr, baud } => {
                let (tcp, (t, n, early)) = connect_open(addr, timeout, |tcp, left| {
                    stays_open(tcp)?;
                    telnet_open(tcp, Some(*baud), left)
                })
                .map_err(fail)?;
                Opened::Telnet(tcp, t, n, early)
            }
            ConsolePort::Serial { path, baud } => {
                Opened::Serial(open_serial(path, *baud).map_err(fail)?)
            }
        };
        let spawned = match opened {
            Opened::Raw(tcp) => {
                let keep = tcp.try_clone().map_err(|e| fail(e.to_string()))?;
                spawn_copy(tcp, theirs, stop.clone()).map(|p| (p, Some(keep)))
            }
            Opened::Serial(dev) => spawn_copy(dev, theirs, stop.clone()).map(|p| (p, None)),
            Opened::Telnet(tcp, t, n, early) => {
                let keep = tcp.try_clone().map_err(|e| fail(e.to_string()))?;
                spawn_telnet(tcp, t, n, early, theirs, stop.clone()).map(|p| (vec![p], Some(keep)))
            }
        };
        let (pumps, tcp) = spawned.map_err(|e| fail(format!("start the console's pump: {e}")))?;
        Ok((ConsoleLink { stop, pumps, tcp }, ours))
    }

    /// Closes the connection and waits for the pumps.
    pub fn close(mut self) {
        self.shut();
    }

    /// Tells the pumps to stop and shuts the connection down.
    fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.tcp.take() {
            let _ = t.shutdown(std::net::Shutdown::Both);
        }
    }

    fn shut(&mut self) {
        self.stop();
        for p in self.pumps.drain(..) {
            let _ = p.join();
        }
    }
}

impl Drop for ConsoleLink {
    fn drop(&mut self) {
        self.shut();
    }
}

/// How long a console server has to close a connection it will not
/// serve, before the connection is taken as served.
const AT_ONCE: Duration = Duration::from_millis(300);

/// Whether the server keeps `tcp` open for [`AT_ONCE`]: ser2net accepts,
/// says "Port's device already in use" and closes while another client
/// (or the last one, still being let go) has the port.
fn stays_open(tcp: &std::net::TcpStream) -> std::result::Result<(), OpenError> {
    use std::os::fd::AsRawFd;
    // The peer's FIN shows as POLLRDHUP even with its last words unread
    // (nix's PollFlags has no such flag, hence libc).
    let mut fd = libc::pollfd {
        fd: tcp.as_raw_fd(),
        events: libc::POLLRDHUP,
        revents: 0,
    };
    let ms = i32::try_from(AT_ONCE.as_millis()).unwrap_or(i32::MAX);
    // SAFETY: one pollfd, which lives across the call.
    let n = unsafe { libc::poll(&mut fd, 1, ms) };
    let hup = n > 0 && fd.revents & (libc::POLLRDHUP | libc::POLLHUP) != 0;
    if !hup {
        return Ok(());
    }
    let mut said = [0u8; 256];
    let _ = tcp.set_nonblocking(true);
    let n = std::io::Read::read(&mut &*tcp, &mut said).unwrap_or(0);
    let _ = tcp.set_nonblocking(false);
    let text = String::from_utf8_lossy(&said[..n]).trim().to_string();
    Err(OpenError::Closed(format!(
        "the server closed the connection at once (it said: {text:?})"
    )))
}

/// A connection to `addr` that `open` takes (it negotiates, or checks the
/// server keeps it). A server that closes it at once is tried again
/// until `timeout`: ser2net does that while it still lets the port's last
/// client go.
fn connect_open<T>(
    addr: &str,
    timeout: Duration,
    open: impl Fn(&std::net::TcpStream, Duration) -> std::result::Result<T, OpenError>,
) -> std::result::Result<(std::net::TcpStream, T), String> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let tcp = connect(addr, left.max(Duration::from_millis(100)))?;
        match open(&tcp, left) {
            Ok(t) => return Ok((tcp, t)),
            Err(OpenError::Closed(e)) => {
                if deadline.saturating_duration_since(std::time::Instant::now())
                    < Duration::from_millis(300)
                {
                    return Err(format!(
                        "{e}; the server kept closing the connection for {:.1} s: is another \
                         client on this port (a console server serves one at a time)?",
                        timeout.as_secs_f64()
                    ));
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(OpenError::Other(e)) => return Err(e),
        }
    }
}

fn connect(addr: &str, timeout: Duration) -> std::result::Result<std::net::TcpStream, String> {
    use std::net::ToSocketAddrs;
    let addrs: Vec<_> = addr
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {addr}: {e}"))?
        .collect();
    let mut last = format!("{addr} resolves to no address");
    for a in addrs {
        match std::net::TcpStream::connect_timeout(&a, timeout) {
            Ok(s) => {
                let _ = s.set_nodelay(true);
                return Ok(s);
            }
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                last = format!(
                    "the connection was refused (is the console server running, and is {addr} its port?)"
                )
            }
            Err(e) => last = format!("cannot connect within {:.1} s: {e}", timeout.as_secs_f64()),
        }
    }
    Err(last)
}

/// Opens a serial device raw at `baud`: no controlling terminal, no
/// waiting for carrier (CLOCAL), no hardware flow control.
fn open_serial(path: &Path, baud: u32) -> std::result::Result<std::fs::File, String> {
    use nix::sys::termios::{self, ControlFlags};
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| format!("cannot open: {e}"))?;
    let mut t = termios::tcgetattr(f.as_fd()).map_err(|e| format!("not a serial device: {e}"))?;
    termios::cfmakeraw(&mut t);
    t.control_flags |= ControlFlags::CLOCAL | ControlFlags::CREAD;
    t.control_flags &= !ControlFlags::CRTSCTS;
    let rate = baud_rate(baud).ok_or_else(|| format!("{baud} is not a standard baud rate"))?;
    termios::cfsetspeed(&mut t, rate).map_err(|e| format!("set {baud} baud: {e}"))?;
    termios::tcsetattr(f.as_fd(), termios::SetArg::TCSANOW, &t)
        .map_err(|e| format!("set raw mode: {e}"))?;
    // Blocking again: the pump polls before it reads.
    nix::fcntl::fcntl(&f, nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_RDWR))
        .map_err(|e| format!("clear O_NONBLOCK: {e}"))?;
    Ok(f)
}

fn baud_rate(baud: u32) -> Option<nix::sys::termios::BaudRate> {
    use nix::sys::termios::BaudRate::*;
    Some(match baud {
        9600 => B9600,
        19200 => B19200,
        38400 => B38400,
        57600 => B57600,
        115200 => B115200,
        230400 => B230400,
        460800 => B460800,
        921600 => B921600,
        _ => return None,
    })
}

/// Copies bytes both ways between `port` and the console's end: one
/// thread each way. Port to console polls and checks `stop`; console to
/// port ends when the console closes its end (or the port is shut down).
fn spawn_copy<P>(
    port: P,
    console: UnixStream,
    stop: Arc<AtomicBool>,
) -> std::io::Result<Vec<std::thread::JoinHandle<()>>>
where
    P: Read + Write + AsFd + Send + TryCloneStream + 'static,
{
    let mut port_w = port.try_clone_stream()?;
    let mut console_r = console.try_clone()?;
    let to_port = std::thread::Builder::new()
        .name("board-console-in".into())
        .spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                match console_r.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if port_w.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                }
            }
        })?;
    let mut port_r = port;
    let mut console_w = console;
    let from_port = std::thread::Builder::new()
        .name("board-console-out".into())
        .spawn(move || {
            let mut buf = [0u8; 4096];
            while !stop.load(Ordering::SeqCst) {
                if !readable(&port_r, Duration::from_millis(100)) {
                    continue;
                }
                match port_r.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if console_w.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                }
            }
            // The console sees the end (a closed console server says so).
            let _ = console_w.shutdown(std::net::Shutdown::Both);
        })?;
    Ok(vec![to_port, from_port])
}

/// A second handle on the same stream or device.
pub(crate) trait TryCloneStream: Sized {
    /// The second handle.
    fn try_clone_stream(&self) -> std::io::Result<Self>;
}

impl TryCloneStream for std::net::TcpStream {
    fn try_clone_stream(&self) -> std::io::Result<Self> {
        self.try_clone()
    }
}

impl TryCloneStream for std::fs::File {
    fn try_clone_stream(&self) -> std::io::Result<Self> {
        self.try_clone()
    }
}

fn readable(fd: &impl AsFd, timeout: Duration) -> bool {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
    let ms =
        PollTimeout::try_from(timeout.as_millis().min(60_000) as i32).unwrap_or(PollTimeout::NONE);
    matches!(poll(&mut fds, ms), Ok(n) if n > 0)
}
