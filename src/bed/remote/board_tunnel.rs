//! A byte stream to a reserved board through the lab: its SSH port
//! (what `alpy lab ssh-proxy` copies to and from ssh's pipes) or its
//! serial console, over the lab's one HTTP endpoint.

use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::server::LabServer;
use crate::error::{Error, Result};

/// Which of a board's streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BoardStream {
    /// A TCP stream to its SSH server (its `ssh` address in the lab's
    /// configuration).
    Ssh,
    /// Its serial console, through the console server.
    Console,
}

impl BoardStream {
    fn path(self) -> &'static str {
        match self {
            BoardStream::Ssh => "ssh",
            BoardStream::Console => "console",
        }
    }
}

/// An open stream to a board: read and write [`BoardTunnel::socket`].
/// The lab closes it when the session stops holding the board (the
/// socket then reads its end). Close it with [`BoardTunnel::close`];
/// dropping it closes it too.
pub struct BoardTunnel {
    socket: UnixStream,
    stop: Arc<AtomicBool>,
    bridge: Option<std::thread::JoinHandle<Option<String>>>,
    board: String,
}

impl BoardTunnel {
    /// The local end: what is written reaches the board, what the board
    /// sends is read here.
    pub fn socket(&self) -> &UnixStream {
        &self.socket
    }

    /// Closes the stream: an error with the lab's reason if the lab cut
    /// it (the session no longer holds the board).
    pub fn close(mut self) -> Result<()> {
        self.shut()
    }

    fn shut(&mut self) -> Result<()> {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.socket.shutdown(std::net::Shutdown::Both);
        match self.bridge.take().map(std::thread::JoinHandle::join) {
            Some(Err(_)) => Err(Error::Internal("the board tunnel's thread panicked".into())),
            Some(Ok(Some(why))) => Err(Error::Lab {
                what: format!("the stream to board {}", self.board),
                status: None,
                detail: format!("the lab closed it: {why}"),
            }),
            _ => Ok(()),
        }
    }
}

impl Drop for BoardTunnel {
    fn drop(&mut self) {
        let _ = self.shut();
    }
}

impl LabServer {
    /// Opens `which` stream of board `board`, held by the session
    /// `session_id` (an active session's id, as `POST /session` gave it).
    /// The lab refuses a session that does not hold the board (403).
    ///
    /// ```no_run
    /// use alpy::lab::{BoardStream, LabServer};
    /// use std::io::{Read, Write};
    /// # fn main() -> alpy::Result<()> {
    /// let lab = LabServer::from_args_or_env(None, None)?;
    /// let tunnel = lab.board_stream("SESSION-ID", "fw-1", BoardStream::Ssh)?;
    /// let mut banner = [0u8; 64];
    /// let n = (&*tunnel.socket()).read(&mut banner).map_err(|e| alpy::Error::io("read", e))?;
    /// assert!(banner[..n].starts_with(b"SSH-2.0"));
    /// tunnel.close()?;
    /// # Ok(()) }
    /// ```
    pub fn board_stream(
        &self,
        session_id: &str,
        board: &str,
        which: BoardStream,
    ) -> Result<BoardTunnel> {
        let url = format!("{}/boards/{board}/{}", self.url(), which.path());
        let ws = super::ws::open(&url, self.token(), session_id)?;
        let (ours, theirs) = UnixStream::pair().map_err(|e| Error::io("socketpair", e))?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let bridge = std::thread::Builder::new()
            .name("lab-board-stream".into())
            .spawn(move || super::ws::bridge(ws, theirs, &flag))
            .map_err(|e| Error::io("spawn the board stream's bridge", e))?;
        Ok(BoardTunnel {
            socket: ours,
            stop,
            bridge: Some(bridge),
            board: board.to_string(),
        })
    }
}
