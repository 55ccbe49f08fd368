//! The client's WebSockets to a lab: opened with the token and the
//! session, and bridged to a local socket (a console's, a tunnel's).

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::error::{Error, Result};

/// Opens the WebSocket at `url` (`http(s)://.../path`) for session
/// `session`, with `token`.
pub(super) fn open(url: &str, token: &str, session: &str) -> Result<Ws> {
    let url = url.replacen("http", "ws", 1);
    let mut req = tungstenite::client::IntoClientRequest::into_client_request(url.as_str())
        .map_err(|e| Error::Lab {
            what: format!("open {url}"),
            status: None,
            detail: e.to_string(),
        })?;
    let sid = session
        .parse()
        .map_err(|_| Error::Internal("a session id that is no header value".into()))?;
    req.headers_mut().insert("X-Session-ID", sid);
    let auth = format!("Bearer {token}")
        .parse()
        .map_err(|_| Error::Config("a lab token that is no header value".into()))?;
    req.headers_mut().insert("Authorization", auth);
    connect_ws(req, &url)
}

pub(super) type Ws =
    tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<std::net::TcpStream>>;

/// Opens the WebSocket `req` to `url` (`ws://` or `wss://`, checked like
/// the HTTP client's TLS).
fn connect_ws(req: tungstenite::handshake::client::Request, url: &str) -> Result<Ws> {
    let bad = |e: String| Error::Lab {
        what: format!("open {url}"),
        status: None,
        detail: e,
    };
    let parsed = reqwest::Url::parse(url).map_err(|e| bad(e.to_string()))?;
    let host = parsed.host_str().ok_or_else(|| bad("no host".into()))?;
    let port = parsed
        .port_or_known_default()
        .ok_or_else(|| bad("no port".into()))?;
    let tcp = std::net::TcpStream::connect((host, port)).map_err(|e| bad(e.to_string()))?;
    // Small packets that wait for answers (an SSH window's adjust, a
    // typed key) go at once.
    let _ = tcp.set_nodelay(true);
    let connector = tungstenite::Connector::Rustls(crate::bed::remote::tls::client_config()?);
    let (ws, _) =
        tungstenite::client_tls_with_config(req, tcp, None, Some(connector)).map_err(|e| {
            // A refused upgrade carries the server's status and detail.
            match e {
                tungstenite::HandshakeError::Failure(tungstenite::Error::Http(r)) => Error::Lab {
                    what: format!("open {url}"),
                    status: Some(r.status().as_u16()),
                    detail: r
                        .body()
                        .as_deref()
                        .and_then(|b| serde_json::from_slice::<serde_json::Value>(b).ok())
                        .and_then(|v| v["detail"].as_str().map(str::to_string))
                        .unwrap_or_else(|| r.status().to_string()),
                },
                e => bad(e.to_string()),
            }
        })?;
    Ok(ws)
}

/// Copies between the WebSocket and the console's socket, polling both
/// (a tungstenite socket is not split across threads). The server's
/// reason, when it closed the stream with one that is not a normal end
/// (the lab cut it: "the session no longer holds this board").
pub(super) fn bridge(mut ws: Ws, mut local: UnixStream, stop: &AtomicBool) -> Option<String> {
    let mut cut = None;
    let tcp = match ws.get_ref() {
        tungstenite::stream::MaybeTlsStream::Plain(s) => Some(s),
        tungstenite::stream::MaybeTlsStream::Rustls(s) => Some(s.get_ref()),
        _ => None,
    };
    // Both sides are waited for at once (poll), then each is served: a
    // WebSocket read that waits while the local side has data would cost
    // a wait per SSH window. The read itself waits 1 ms at most (TLS may
    // hold data the socket no longer shows).
    let tcp_fd = tcp.map(std::os::fd::AsRawFd::as_raw_fd);
    if let Some(s) = tcp {
        let _ = s.set_read_timeout(Some(Duration::from_millis(1)));
    }
    let _ = local.set_nonblocking(true);
    let mut buf = [0u8; 8192];
    while !stop.load(Ordering::SeqCst) {
        if let Some(fd) = tcp_fd {
            wait_either(fd, &local, Duration::from_millis(20));
        }
        match ws.read() {
            Ok(tungstenite::Message::Binary(b)) => {
                if !write_all_waiting(&mut local, &b, stop) {
                    break;
                }
            }
            Ok(tungstenite::Message::Close(frame)) => {
                cut = frame
                    .filter(|f| f.code != tungstenite::protocol::frame::coding::CloseCode::Normal)
                    .map(|f| match f.reason.as_str() {
                        "" => format!("closed with code {}", u16::from(f.code)),
                        why => why.to_string(),
                    });
                break;
            }
            Ok(_) => {}
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => break,
        }
        // What the local side has, up to 256 KiB a turn: one read a turn
        // would cap an upload at a buffer per WebSocket read timeout.
        let mut ended = false;
        for _ in 0..32 {
            match local.read(&mut buf) {
                Ok(0) => {
                    ended = true;
                    break;
                }
                Ok(n) => {
                    if ws
                        .send(tungstenite::Message::Binary(buf[..n].to_vec().into()))
                        .is_err()
                    {
                        ended = true;
                        break;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => {
                    ended = true;
                    break;
                }
            }
        }
        if ended {
            break;
        }
    }
    let _ = ws.close(None);
    let _ = local.shutdown(std::net::Shutdown::Both);
    cut
}

/// Writes all of `data` to the non-blocking `local`, waiting while its
/// reader is behind (its buffer full) rather than giving up; false if
/// the socket failed or `stop` was set.
fn write_all_waiting(local: &mut UnixStream, mut data: &[u8], stop: &AtomicBool) -> bool {
    use std::os::fd::AsFd;
    while !data.is_empty() {
        match local.write(data) {
            Ok(0) => return false,
            Ok(n) => data = &data[n..],
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if stop.load(Ordering::SeqCst) {
                    return false;
                }
                let mut fds = [nix::poll::PollFd::new(
                    local.as_fd(),
                    nix::poll::PollFlags::POLLOUT,
                )];
                let _ = nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(100u16));
            }
            Err(_) => return false,
        }
    }
    true
}

/// Waits up to `timeout` for the WebSocket's socket `fd` or `local` to
/// have something to read.
fn wait_either(fd: std::os::fd::RawFd, local: &UnixStream, timeout: Duration) {
    use std::os::fd::{AsFd, BorrowedFd};
    // SAFETY: `fd` is the WebSocket's socket, open for this whole call
    // (the bridge owns the WebSocket and polls between its reads).
    let tcp = unsafe { BorrowedFd::borrow_raw(fd) };
    let mut fds = [
        nix::poll::PollFd::new(tcp, nix::poll::PollFlags::POLLIN),
        nix::poll::PollFd::new(local.as_fd(), nix::poll::PollFlags::POLLIN),
    ];
    let ms = u16::try_from(timeout.as_millis()).unwrap_or(u16::MAX);
    let _ = nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(ms));
}
