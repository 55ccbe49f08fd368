//! Telnet for board consoles: option negotiation, RFC 2217's
//! SET-BAUDRATE handshake, and the pump between a telnet connection and
//! the console's end.

use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::COM_PORT_OPTION;

/// Telnet option negotiation after RFC 1143's rule: answer only what
/// changes an option's state, so two peers never loop.
pub(super) struct Negotiator {
    /// Options we do (WILL) and options the server does (its WILL, our DO).
    ours: std::collections::HashMap<u8, bool>,
    theirs: std::collections::HashMap<u8, bool>,
    /// Whether RFC 2217 is on.
    com_port: bool,
}

impl Negotiator {
    fn new(com_port: bool) -> Negotiator {
        Negotiator {
            ours: Default::default(),
            theirs: Default::default(),
            com_port,
        }
    }

    /// What to send for the server's `action` on `option`, if anything.
    fn reply(&mut self, action: telnet::Action, option: u8) -> Option<telnet::Action> {
        use telnet::Action;
        const ECHO: u8 = 1;
        const SGA: u8 = 3;
        let (table, want, yes, no) = match action {
            // The server may echo and suppress go-ahead; it may do COM-PORT.
            Action::Will | Action::Wont => {
                let want = action == Action::Will
                    && (option == ECHO || option == SGA || option == COM_PORT_OPTION);
                (&mut self.theirs, want, Action::Do, Action::Dont)
            }
            // We suppress go-ahead, and do COM-PORT when asked for RFC 2217.
            Action::Do | Action::Dont => {
                let want = action == Action::Do
                    && (option == SGA || (option == COM_PORT_OPTION && self.com_port));
                (&mut self.ours, want, Action::Will, Action::Wont)
            }
        };
        let was = table.insert(option, want);
        // Agreement changes only when the state does; a request we refuse
        // is answered once.
        if was == Some(want) {
            return None;
        }
        Some(if want { yes } else { no })
    }
}

/// Why a telnet connection did not open.
pub(super) enum OpenError {
    /// The server closed it (ser2net does while the port's last client
    /// is still being let go): worth another try.
    Closed(String),
    /// Anything else.
    Other(String),
}

/// Connects telnet over `tcp`: with `baud`, offers COM-PORT-OPTION and
/// sends SET-BAUDRATE, which the server must confirm with the same rate
/// within `timeout`. Returns the connection, its negotiation state and
/// the data that came before the confirmation.
pub(super) fn telnet_open(
    tcp: &std::net::TcpStream,
    baud: Option<u32>,
    timeout: Duration,
) -> std::result::Result<(Box<telnet::Telnet>, Negotiator, Vec<u8>), OpenError> {
    telnet_negotiate(tcp, baud, timeout).map_err(|e| {
        if e.starts_with("telnet: ") || e.starts_with("the server closed") {
            OpenError::Closed(e)
        } else {
            OpenError::Other(e)
        }
    })
}

fn telnet_negotiate(
    tcp: &std::net::TcpStream,
    baud: Option<u32>,
    timeout: Duration,
) -> std::result::Result<(Box<telnet::Telnet>, Negotiator, Vec<u8>), String> {
    use telnet::{Action, Event, Telnet, TelnetOption};
    let stream = tcp.try_clone().map_err(|e| e.to_string())?;
    let mut t = Box::new(Telnet::from_stream(Box::new(stream), 4096));
    let mut n = Negotiator::new(baud.is_some());
    let mut early: Vec<u8> = Vec::new();
    let Some(b) = baud else {
        return Ok((t, n, early));
    };
    let com = TelnetOption::parse(COM_PORT_OPTION);
    n.ours.insert(COM_PORT_OPTION, true);
    t.negotiate(&Action::Will, com)
        .map_err(|e| format!("telnet: {e:?}"))?;
    let mut buf = [0u8; rfc2217_rs::subnegotiation::MAX_SIZE];
    let len = rfc2217_rs::Subnegotiation::SetBaudRate(b).serialize_client(&mut buf);
    // rfc2217-rs writes IAC SB COM-PORT-OPTION <command> <data> IAC SE; the
    // telnet crate frames <command> <data> itself.
    t.subnegotiate(com, &buf[3..len - 2])
        .map_err(|e| format!("telnet: {e:?}"))?;
    let said = |early: &[u8]| {
        let text = String::from_utf8_lossy(early).trim().to_string();
        if text.is_empty() {
            String::new()
        } else {
            format!(" (it said: {text:?})")
        }
    };
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!(
                "the server did not confirm RFC 2217's SET-BAUDRATE within {:.1} s{}: is the port in telnet(rfc2217) mode?",
                timeout.as_secs_f64(),
                said(&early)
            ));
        }
        let read = t.read_timeout(left.min(Duration::from_millis(200)));
        match read.map_err(|e| format!("the server closed the connection ({e})"))? {
            Event::Subnegotiation(o, data) if o == com && data.first() == Some(&101) => {
                let got = data.get(1..5).map(|d| u32::from_be_bytes([d[0], d[1], d[2], d[3]]));
                return match got {
                    Some(g) if g == b => Ok((t, n, early)),
                    Some(g) => Err(format!("the server set the line to {g} baud, not {b}")),
                    None => Err("the server's SET-BAUDRATE answer is too short".into()),
                };
            }
            Event::Negotiation(Action::Dont | Action::Wont, o) if o == com => {
                return Err(format!(
                    "the server refused RFC 2217 (COM-PORT-OPTION){}: is the port in telnet(rfc2217) mode?",
                    said(&early)
                ))
            }
            Event::Negotiation(a, o) => {
                if let Some(r) = n.reply(a, o.as_byte()) {
                    let _ = t.negotiate(&r, o);
                }
            }
            Event::Data(d) => early.extend_from_slice(&d),
            _ => {
                let _ = tcp.set_nonblocking(true);
                let mut peek = [0u8; 1];
                let closed = matches!(tcp.peek(&mut peek), Ok(0));
                let _ = tcp.set_nonblocking(false);
                if closed {
                    return Err(format!("the server closed the connection{}", said(&early)));
                }
            }
        }
    }
}

/// Pumps a negotiated telnet connection to the console's end: data both
/// ways (IAC doubled going out), negotiation answered, until either side
/// closes or `stop` is set.
pub(super) fn spawn_telnet(
    tcp: std::net::TcpStream,
    t: Box<telnet::Telnet>,
    n: Negotiator,
    early: Vec<u8>,
    console: UnixStream,
    stop: Arc<AtomicBool>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    use telnet::Event;
    let (mut t, mut n, peer) = (t, n, tcp);
    let mut console = console;
    console.write_all(&early)?;
    std::thread::Builder::new()
        .name("board-telnet".into())
        .spawn(move || {
            let mut buf = [0u8; 4096];
            let _ = console.set_nonblocking(true);
            // Writes to the server block (read_nonblocking leaves the socket
            // non-blocking, and a full send buffer must wait, not fail).
            let send =
                |t: &mut telnet::Telnet,
                 data: Option<&[u8]>,
                 neg: Option<(telnet::Action, telnet::TelnetOption)>| {
                    let _ = peer.set_nonblocking(false);
                    match (data, neg) {
                        (Some(d), _) => t.write(d).is_ok(),
                        (None, Some((a, o))) => t.negotiate(&a, o).is_ok(),
                        _ => true,
                    }
                };
            while !stop.load(Ordering::SeqCst) {
                use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
                let (net_ready, con_ready) = {
                    let mut fds = [
                        PollFd::new(peer.as_fd(), PollFlags::POLLIN),
                        PollFd::new(console.as_fd(), PollFlags::POLLIN),
                    ];
                    if poll(&mut fds, PollTimeout::from(100u8)).is_err() {
                        break;
                    }
                    let r = |f: &PollFd| f.revents().is_some_and(|e| !e.is_empty());
                    (r(&fds[0]), r(&fds[1]))
                };
                if net_ready {
                    let _ = peer.set_nonblocking(true);
                    let mut peek = [0u8; 1];
                    if matches!(peer.peek(&mut peek), Ok(0)) {
                        break; // the server closed
                    }
                    loop {
                        match t.read_nonblocking() {
                            Ok(Event::Data(d)) => {
                                let _ = console.set_nonblocking(false);
                                let ok = console.write_all(&d).is_ok();
                                let _ = console.set_nonblocking(true);
                                if !ok {
                                    return;
                                }
                            }
                            Ok(Event::Negotiation(a, o)) => {
                                if let Some(r) = n.reply(a, o.as_byte()) {
                                    send(&mut t, None, Some((r, o)));
                                }
                            }
                            Ok(Event::NoData) | Ok(Event::Error(_)) | Err(_) => break,
                            Ok(_) => {}
                        }
                    }
                }
                if con_ready {
                    match console.read(&mut buf) {
                        Ok(0) => break,
                        Ok(k) => {
                            if !send(&mut t, Some(&buf[..k]), None) {
                                break;
                            }
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                        Err(_) => break,
                    }
                }
            }
            let _ = console.shutdown(std::net::Shutdown::Both);
        })
}

#[cfg(test)]
mod tests {
    use super::Negotiator;
    use telnet::Action;

    #[test]
    fn negotiation_answers_only_changes_so_peers_never_loop() {
        let mut n = Negotiator::new(true);
        assert_eq!(
            n.reply(Action::Will, 1),
            Some(Action::Do),
            "the server may echo"
        );
        assert_eq!(n.reply(Action::Will, 1), None, "agreed already: no answer");
        assert_eq!(n.reply(Action::Do, 44), Some(Action::Will));
        assert_eq!(n.reply(Action::Do, 44), None);
        assert_eq!(
            n.reply(Action::Do, 24),
            Some(Action::Wont),
            "no terminal type"
        );
        assert_eq!(n.reply(Action::Do, 24), None, "a refusal is said once");
        assert_eq!(n.reply(Action::Will, 200), Some(Action::Dont));
        assert_eq!(
            n.reply(Action::Wont, 1),
            Some(Action::Dont),
            "echo off is a change"
        );
        let mut plain = Negotiator::new(false);
        assert_eq!(
            plain.reply(Action::Do, 44),
            Some(Action::Wont),
            "no RFC 2217 when not asked"
        );
    }
}
