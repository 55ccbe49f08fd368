//! The subcommands that attach a terminal to a bed: `console` (the DUT's
//! serial console, through its Unix socket) and `exec` (a program in a
//! node's namespace, with stdin and a TTY when asked).

use std::io::{IsTerminal, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;

use nix::sys::termios::{self, SetArg, Termios};

/// Standard input in raw mode (no echo, no line editing, no signals)
/// while it lives; the old mode comes back on drop.
struct RawTerminal(Option<Termios>);

/// The mode to restore from another thread, before the process exits.
static SAVED: std::sync::Mutex<Option<libc::termios>> = std::sync::Mutex::new(None);

fn restore_terminal() {
    if let Some(saved) = *SAVED.lock().unwrap_or_else(|p| p.into_inner()) {
        let _ = termios::tcsetattr(std::io::stdin().as_fd(), SetArg::TCSANOW, &saved.into());
    }
}

impl RawTerminal {
    /// Raw mode if standard input is a terminal, else nothing.
    fn enter() -> alpy::Result<RawTerminal> {
        let stdin = std::io::stdin();
        if !stdin.is_terminal() {
            return Ok(RawTerminal(None));
        }
        let saved = termios::tcgetattr(stdin.as_fd())
            .map_err(|e| alpy::Error::io("read the terminal's mode", e.into()))?;
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        termios::tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw)
            .map_err(|e| alpy::Error::io("put the terminal in raw mode", e.into()))?;
        *SAVED.lock().unwrap_or_else(|p| p.into_inner()) = Some(saved.clone().into());
        Ok(RawTerminal(Some(saved)))
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        if let Some(saved) = &self.0 {
            let _ = termios::tcsetattr(std::io::stdin().as_fd(), SetArg::TCSANOW, saved);
        }
    }
}

/// The byte of an escape key given as `^]`, `^X` or `ctrl-x`.
pub(crate) fn escape_byte(key: &str) -> alpy::Result<u8> {
    let c = key
        .strip_prefix('^')
        .or_else(|| {
            key.to_ascii_lowercase()
                .strip_prefix("ctrl-")
                .map(|_| &key[5..])
        })
        .filter(|c| c.len() == 1)
        .map(|c| c.as_bytes()[0].to_ascii_uppercase());
    match c {
        Some(u @ b'@'..=b'_') => Ok(u - b'@'),
        _ => Err(alpy::Error::Config(format!(
            "bad escape key {key:?}: give a control key like ^] (the default) or ctrl-x"
        ))),
    }
}

/// Attaches this terminal to bed `id`'s console until the escape key,
/// the end of standard input, or the bed going down.
pub(crate) fn console(
    id: &str,
    machine: Option<&str>,
    read_only: bool,
    escape: &str,
) -> alpy::Result<()> {
    let escape = escape_byte(escape)?;
    let info = alpy::internal::supervisor::registry::find(id)?;
    let index = info.machine_index(machine)?;
    let shared = match info.machines.get(index) {
        Some(m) => m.console.clone(),
        None => info.console.clone(), // a bed published before machines
    };
    let path = shared.ok_or_else(|| alpy::Error::NotFound {
        what: format!("the console socket of bed {}", info.id),
        hint: "the bed was stood up by an alpy that did not share it: take it down and up again"
            .into(),
    })?;
    let sock = UnixStream::connect(&path).map_err(|e| {
        let hint = if e.kind() == std::io::ErrorKind::PermissionDenied {
            " (it is mode 0600: only the bed's user may attach)"
        } else {
            ""
        };
        alpy::Error::io(format!("connect to {}{hint}", path.display()), e)
    })?;
    // Print the banner only once the bed sends us the console's bytes, so
    // whatever a caller provokes after it shows here.
    let mut sock = sock;
    let first = alpy::internal::console_share::await_attached(
        &mut sock,
        std::time::Duration::from_secs(10),
    )?;
    let key = if escape == 0x1d {
        "Ctrl-]".to_string()
    } else {
        format!("Ctrl-{}", (escape + b'@') as char)
    };
    eprintln!(
        "alpy console: attached to {}{} ({}){}; detach with {key}",
        info.name,
        machine.map(|m| format!(" machine {m}")).unwrap_or_default(),
        info.id,
        if read_only { ", read-only" } else { "" }
    );
    let raw = RawTerminal::enter()?;
    if !first.is_empty() {
        let mut out = std::io::stdout();
        let _ = out.write_all(&first).and_then(|_| out.flush());
    }
    let mut from_bed = sock
        .try_clone()
        .map_err(|e| alpy::Error::io("clone the console socket", e))?;
    static DETACHING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    // The bed's side: copy to our output until it closes, then end the
    // whole command (the terminal's mode is restored first), even while
    // the main thread waits for a key.
    let printer = std::thread::spawn(move || {
        let mut out = std::io::stdout();
        let mut buf = [0u8; 8192];
        loop {
            match from_bed.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if out.write_all(&buf[..n]).and_then(|_| out.flush()).is_err() {
                        break;
                    }
                }
            }
        }
        if !DETACHING.load(std::sync::atomic::Ordering::SeqCst) {
            restore_terminal();
            eprint!("\r\nalpy console: the bed closed the console\n");
            std::process::exit(0);
        }
    });
    let mut to_bed = sock;
    let mut stdin = std::io::stdin();
    let mut buf = [0u8; 4096];
    let why = loop {
        let n = match stdin.read(&mut buf) {
            Ok(0) | Err(_) => break "end of input",
            Ok(n) => n,
        };
        let (data, detach) = match buf[..n].iter().position(|&b| b == escape) {
            Some(p) => (&buf[..p], true),
            None => (&buf[..n], false),
        };
        if !read_only && !data.is_empty() && to_bed.write_all(data).is_err() {
            break "the bed closed the console";
        }
        if detach {
            break "detached";
        }
    };
    DETACHING.store(true, std::sync::atomic::Ordering::SeqCst);
    // Half-close, and wait (2 s at most) for the share to close its side:
    // it does so once it has let go of the keyboard, so a client that
    // types after our "detached" is never refused as a second typist.
    let _ = to_bed.shutdown(std::net::Shutdown::Write);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    while !printer.is_finished() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let _ = to_bed.shutdown(std::net::Shutdown::Both);
    let _ = printer.join();
    drop(raw);
    eprint!("\r\nalpy console: {why}\n");
    Ok(())
}

/// Runs a command in a node's namespace (in the node's kept tools
/// container, asked of the bed's supervisor) with our standard streams;
/// returns its exit code.
pub(crate) fn exec(
    id: &str,
    node: &str,
    cmd: &[String],
    interactive: bool,
    tty: bool,
) -> alpy::Result<i32> {
    let info = alpy::internal::supervisor::registry::find(id)?;
    let (name, _) = &info.nodes[info.index_of(node, "node", false)?];
    let size = if tty {
        if !std::io::stdin().is_terminal() {
            return Err(alpy::Error::Config(
                "--tty needs a terminal on standard input: drop -t, or run it from one".into(),
            ));
        }
        Some(terminal_size())
    } else {
        None
    };
    let docker = alpy::net::Docker::connect()?;
    // The node's kept tools container, owned by the bed (removed with it):
    // no container start per call.
    let tools = alpy::internal::supervisor::registry::request(
        &info,
        &alpy::internal::supervisor::protocol::Request::Tools {
            node: name.to_string(),
        },
    )?;
    let tools = tools.as_str().ok_or_else(|| {
        alpy::Error::Internal(format!(
            "the supervisor gave no tools container id: {tools}"
        ))
    })?;
    let raw = if tty {
        Some(RawTerminal::enter()?)
    } else {
        None
    };
    let attach = alpy::internal::docker_attach::Attach {
        stdin: interactive,
        tty: size,
    };
    let code = docker.exec_attached(
        tools,
        cmd,
        attach,
        std::io::stdin(),
        &mut std::io::stdout(),
        &mut std::io::stderr(),
    );
    drop(raw);
    Ok(i32::try_from(code?).unwrap_or(-1))
}

/// The terminal's (rows, columns), or 24x80.
fn terminal_size() -> (u16, u16) {
    let mut ws = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one winsize into the struct we own.
    let ok = unsafe { libc::ioctl(libc::STDIN_FILENO, libc::TIOCGWINSZ, &mut ws) } == 0;
    if ok && ws.ws_row > 0 && ws.ws_col > 0 {
        (ws.ws_row, ws.ws_col)
    } else {
        (24, 80)
    }
}
