//! An expect engine over the serial console.
//!
//! A reader thread appends every byte it receives to a buffer and wakes the
//! waiters at once (a condvar; no polling sleeps). Patterns are exact bytes
//! or `regex::bytes` regexes, so non-UTF-8 bytes and ANSI sequences never
//! break matching. Every byte is logged line by line, escaped
//! (`< "login: "`, `> "root\n"`), and written raw to a transcript file.
//!
//! Give the guest kernel `console=ttyS0,115200`: at the default 9600 baud,
//! QEMU's 16550 waits four character times (about 4 ms) before it raises
//! the receive interrupt for a short input, so every round trip costs 4 ms
//! more (measured: 4.8 ms at 9600 baud, 0.6 ms at 115200).
//!
//! The names follow rexpect: [`Console::send_line`], [`Console::exp_string`],
//! [`Console::exp_regex`], [`Console::exp_any`].

use std::collections::VecDeque;
use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use regex::bytes::Regex;

use crate::error::{Error, Result};

/// The default deadline of an `exp_*` call.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Bytes of history kept for timeout errors.
const HISTORY: usize = 16 * 1024;
/// Lines of history a timeout error shows.
const TAIL_LINES: usize = 20;
/// Chunks a tap may fall behind before it is dropped (so that a stalled
/// reader never stalls the console).
const TAP_QUEUE: usize = 4096;

/// A match inside the buffer: start, end, capture groups.
type Found = (usize, usize, Vec<Option<Vec<u8>>>);

/// Something to wait for on the console.
#[derive(Debug, Clone)]
pub enum Pattern {
    /// These exact bytes.
    Exact(Vec<u8>),
    /// A bytes regex.
    Regex(Regex),
}

impl Pattern {
    /// An exact-bytes pattern.
    pub fn exact(s: impl AsRef<[u8]>) -> Self {
        Pattern::Exact(s.as_ref().to_vec())
    }

    /// A regex pattern (bytes semantics; `(?-u)` is not needed for ASCII).
    pub fn regex(re: &str) -> Result<Self> {
        Regex::new(re)
            .map(Pattern::Regex)
            .map_err(|e| Error::Config(format!("bad console regex {re:?}: {e}")))
    }

    /// Finds the first match: (start, end, captures).
    fn find(&self, hay: &[u8]) -> Option<Found> {
        match self {
            Pattern::Exact(needle) => {
                if needle.is_empty() {
                    return Some((0, 0, vec![Some(Vec::new())]));
                }
                hay.windows(needle.len())
                    .position(|w| w == needle.as_slice())
                    .map(|p| (p, p + needle.len(), vec![Some(needle.clone())]))
            }
            Pattern::Regex(re) => re.captures(hay).map(|c| {
                let m = c.get(0).map(|m| (m.start(), m.end())).unwrap_or((0, 0));
                let caps = c.iter().map(|g| g.map(|g| g.as_bytes().to_vec())).collect();
                (m.0, m.1, caps)
            }),
        }
    }

    fn describe(&self) -> String {
        match self {
            Pattern::Exact(b) => format!("\"{}\"", b.escape_ascii()),
            Pattern::Regex(r) => format!("regex /{}/", r.as_str()),
        }
    }
}

/// What an `exp_*` call found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Match {
    /// The bytes before the match (consumed with it).
    pub before: Vec<u8>,
    /// The matched bytes.
    pub matched: Vec<u8>,
    /// Capture groups (group 0 is the whole match); `None` where a group
    /// did not take part.
    pub captures: Vec<Option<Vec<u8>>>,
}

impl Match {
    /// `before` as lossy UTF-8.
    pub fn before_str(&self) -> String {
        String::from_utf8_lossy(&self.before).into_owned()
    }

    /// Capture group `i` as lossy UTF-8.
    pub fn group(&self, i: usize) -> Option<String> {
        self.captures
            .get(i)?
            .as_ref()
            .map(|g| String::from_utf8_lossy(g).into_owned())
    }
}

struct State {
    /// Received, not yet consumed by a match.
    pending: Vec<u8>,
    /// The last bytes received, for error messages.
    history: VecDeque<u8>,
    /// Bytes received in all (a mark for [`Console::output_since`]).
    received: u64,
    /// Why the reader stopped, once it has.
    closed: Option<String>,
    /// Received bytes of a line not logged yet.
    log_line: Vec<u8>,
    /// Other readers (see [`Console::tap`]), each given every chunk read.
    taps: Vec<SyncSender<Arc<[u8]>>>,
}

struct Shared {
    state: Mutex<State>,
    arrived: Condvar,
}

/// Adds taps to a console (see [`Console::tap`]) from any thread.
pub(crate) struct Taps(Arc<Shared>);

impl Taps {
    /// See [`Console::tap`].
    pub(crate) fn tap(&self) -> Receiver<Arc<[u8]>> {
        let (tx, rx) = std::sync::mpsc::sync_channel(TAP_QUEUE);
        let mut st = lock(&self.0);
        if st.closed.is_none() {
            st.taps.push(tx);
        }
        rx
    }
}

fn lock(s: &Shared) -> MutexGuard<'_, State> {
    crate::util::lock(&s.state)
}

/// An expect-style serial console.
pub struct Console {
    name: String,
    /// The log scope (bed) it was made in: checks typed on it belong there.
    log_scope: Option<u64>,
    writer: UnixStream,
    shared: Arc<Shared>,
    reader: Option<JoinHandle<()>>,
    transcript: Option<Arc<Mutex<File>>>,
    timeout: Duration,
}

impl Console {
    /// Attaches to a connected console stream. `name` prefixes log lines;
    /// `transcript`, if given, receives every byte read, raw.
    pub fn new(stream: UnixStream, name: &str, transcript: Option<&Path>) -> Result<Console> {
        let reader_stream = stream
            .try_clone()
            .map_err(|e| Error::io("clone the console socket", e))?;
        let transcript = match transcript {
            // Appended: a bed restored after saving its state keeps one
            // transcript across both QEMUs.
            Some(p) => Some(Arc::new(Mutex::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)
                    .map_err(|e| {
                        Error::io(format!("create console transcript {}", p.display()), e)
                    })?,
            ))),
            None => None,
        };
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                pending: Vec::new(),
                history: VecDeque::new(),
                received: 0,
                closed: None,
                log_line: Vec::new(),
                taps: Vec::new(),
            }),
            arrived: Condvar::new(),
        });
        let reader = {
            let shared = Arc::clone(&shared);
            let transcript = transcript.clone();
            let name = name.to_string();
            std::thread::Builder::new()
                .name(format!("console-{name}"))
                .spawn(crate::logging::inherit(move || {
                    read_loop(reader_stream, &shared, transcript, &name)
                }))
                .map_err(|e| Error::io("spawn the console reader", e))?
        };
        Ok(Console {
            name: name.to_string(),
            log_scope: crate::logging::current_scope(),
            writer: stream,
            shared,
            reader: Some(reader),
            transcript,
            timeout: DEFAULT_TIMEOUT,
        })
    }

    /// Sets the default deadline of `exp_*` calls.
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    /// The default deadline of `exp_*` calls.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Sends bytes as they are.
    pub fn send(&mut self, data: impl AsRef<[u8]>) -> Result<()> {
        let data = data.as_ref();
        // What the guest printed so far (a prompt) goes in the log first.
        flush_partial(&self.shared, &self.name);
        log_lines(&self.name, '>', data);
        self.writer
            .write_all(data)
            .map_err(|e| Error::io(format!("write to console {}", self.name), e))
    }

    /// Sends bytes, logging only their count (for bulk data such as file
    /// uploads, which would drown the log).
    pub fn send_quiet(&mut self, data: &[u8]) -> Result<()> {
        flush_partial(&self.shared, &self.name);
        log::debug!(target: "alpy::console", "[{}] > ({} bytes of data)", self.name, data.len());
        self.writer
            .write_all(data)
            .map_err(|e| Error::io(format!("write to console {}", self.name), e))
    }

    /// Sends a line (appends `\n`).
    pub fn send_line(&mut self, line: &str) -> Result<()> {
        let mut data = Vec::with_capacity(line.len() + 1);
        data.extend_from_slice(line.as_bytes());
        data.push(b'\n');
        self.send(data)
    }

    /// Sends a control character: `c` for Ctrl-C, `d` for Ctrl-D, and
    /// `@ [ \\ ] ^ _` for the others. Anything else is an error.
    pub fn send_control(&mut self, c: char) -> Result<()> {
        let b = match c.to_ascii_uppercase() {
            u @ ('@'..='_') => u as u8 - b'@',
            _ => {
                return Err(Error::Config(format!(
                "{c:?} is not a control key: use a letter (Ctrl-A..Ctrl-Z) or one of @ [ \\ ] ^ _"
            )))
            }
        };
        self.send([b])
    }

    /// Waits for `s` with the default deadline.
    pub fn exp_string(&mut self, s: &str) -> Result<Match> {
        self.expect(&Pattern::exact(s), self.timeout)
    }

    /// Waits for regex `re` with the default deadline.
    pub fn exp_regex(&mut self, re: &str) -> Result<Match> {
        self.expect(&Pattern::regex(re)?, self.timeout)
    }

    /// Waits for one pattern with a given deadline.
    pub fn expect(&mut self, pattern: &Pattern, timeout: Duration) -> Result<Match> {
        self.exp_any(std::slice::from_ref(pattern), timeout)
            .map(|(_, m)| m)
    }

    /// Waits for whichever pattern matches first (earliest in the stream;
    /// on a tie, the first in `patterns`) and says which.
    pub fn exp_any(&mut self, patterns: &[Pattern], timeout: Duration) -> Result<(usize, Match)> {
        let deadline = Instant::now() + timeout;
        let mut st = lock(&self.shared);
        loop {
            let best = patterns
                .iter()
                .enumerate()
                .filter_map(|(i, p)| p.find(&st.pending).map(|m| (i, m)))
                .min_by_key(|(i, (start, _, _))| (*start, *i));
            if let Some((i, (start, end, captures))) = best {
                let consumed: Vec<u8> = st.pending.drain(..end).collect();
                return Ok((
                    i,
                    Match {
                        before: consumed[..start].to_vec(),
                        matched: consumed[start..].to_vec(),
                        captures,
                    },
                ));
            }
            let what = || {
                let names: Vec<String> = patterns.iter().map(Pattern::describe).collect();
                format!("{} on console {}", names.join(" or "), self.name)
            };
            if let Some(why) = &st.closed {
                let tail = history_tail(&st.history);
                let tail = if tail.trim().is_empty() {
                    String::new()
                } else {
                    format!("; last output:\n{}", tail.trim_end())
                };
                return Err(Error::Closed(format!(
                    "console {} ({why}) while waiting for {}{tail}",
                    self.name,
                    what()
                )));
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(Error::Timeout {
                    what: what(),
                    timeout,
                    tail: history_tail(&st.history),
                });
            }
            st = self
                .shared
                .arrived
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
            // (A poisoned lock means a reader thread panicked; its data is
            // still a byte buffer, so carry on with it.)
        }
    }

    /// Drops whatever was received and not yet matched; returns it.
    pub fn discard_pending(&mut self) -> Vec<u8> {
        std::mem::take(&mut lock(&self.shared).pending)
    }

    /// A mark of how much has been received so far, for
    /// [`Console::output_since`].
    pub fn mark(&self) -> u64 {
        lock(&self.shared).received
    }

    /// What was received since `mark` (at most the last 16 KiB), as
    /// text.
    pub fn output_since(&self, mark: u64) -> String {
        let st = lock(&self.shared);
        let new = usize::try_from(st.received.saturating_sub(mark)).unwrap_or(usize::MAX);
        let skip = st.history.len().saturating_sub(new);
        let bytes: Vec<u8> = st.history.iter().skip(skip).copied().collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// The last lines received, escaped (what a timeout error shows).
    pub fn tail(&self) -> String {
        history_tail(&lock(&self.shared).history)
    }

    /// A second reader: receives every chunk read from now on, in order,
    /// until the console closes (then the channel disconnects). A receiver
    /// that falls 4096 chunks behind, or is dropped, is removed.
    pub fn tap(&self) -> Receiver<Arc<[u8]>> {
        self.taps().tap()
    }

    /// A handle that adds taps from another thread.
    pub(crate) fn taps(&self) -> Taps {
        Taps(Arc::clone(&self.shared))
    }

    /// A second handle that writes to the console (for a
    /// [`crate::vm::console_share::ConsoleShare`]); what it sends is not in
    /// this console's log.
    pub fn writer(&self) -> Result<UnixStream> {
        self.writer
            .try_clone()
            .map_err(|e| Error::io(format!("clone console {}'s writer", self.name), e))
    }

    /// The name its log lines carry.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The log scope (the bed) it was made in.
    pub fn log_scope(&self) -> Option<u64> {
        self.log_scope
    }

    /// Stops the reader and flushes the transcript.
    pub fn close(mut self) -> Result<()> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<()> {
        let _ = self.writer.shutdown(std::net::Shutdown::Both);
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        if let Some(t) = &self.transcript {
            crate::util::lock(t)
                .flush()
                .map_err(|e| Error::io("flush the console transcript", e))?;
        }
        Ok(())
    }
}

impl Drop for Console {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown() {
            log::warn!(target: "alpy::console", "console {}: {e}", self.name);
        }
    }
}

fn read_loop(
    mut stream: UnixStream,
    shared: &Shared,
    transcript: Option<Arc<Mutex<File>>>,
    name: &str,
) {
    let mut chunk = [0u8; 8192];
    // A partial line (a prompt) is logged once the console has been quiet
    // for a moment, or when we send, so log lines follow the guest's lines,
    // not read sizes.
    let quiet = Some(std::time::Duration::from_millis(50));
    let mut waiting_on_partial = false;
    let why = loop {
        let want_partial = !lock(shared).log_line.is_empty();
        if want_partial != waiting_on_partial {
            let _ = stream.set_read_timeout(if want_partial { quiet } else { None });
            waiting_on_partial = want_partial;
        }
        match stream.read(&mut chunk) {
            Ok(0) => break "end of stream".to_string(),
            Ok(n) => {
                let data = &chunk[..n];
                if let Some(t) = &transcript {
                    let _ = crate::util::lock(t).write_all(data);
                }
                let mut st = lock(shared);
                st.pending.extend_from_slice(data);
                st.history.extend(data.iter().copied());
                st.received += data.len() as u64;
                let excess = st.history.len().saturating_sub(HISTORY);
                st.history.drain(..excess);
                if !st.taps.is_empty() {
                    let shared_chunk: Arc<[u8]> = Arc::from(data);
                    st.taps.retain(|t| match t.try_send(Arc::clone(&shared_chunk)) {
                        Ok(()) => true,
                        Err(TrySendError::Full(_)) => {
                            log::warn!(target: "alpy::console", "[{name}] a console reader fell behind: dropped");
                            false
                        }
                        Err(TrySendError::Disconnected(_)) => false,
                    });
                }
                st.log_line.extend_from_slice(data);
                while let Some(p) = st.log_line.iter().position(|&b| b == b'\n') {
                    let l: Vec<u8> = st.log_line.drain(..=p).collect();
                    log_one(name, '<', &l);
                }
                drop(st);
                shared.arrived.notify_all();
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                flush_partial(shared, name);
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => break e.to_string(),
        }
    };
    flush_partial(shared, name);
    log::debug!(target: "alpy::console", "[{name}] reader stopped: {why}");
    let mut st = lock(shared);
    st.closed = Some(why);
    st.taps.clear();
    drop(st);
    shared.arrived.notify_all();
}

/// Logs the received bytes of an unfinished line, if any.
fn flush_partial(shared: &Shared, name: &str) {
    let mut st = lock(shared);
    if !st.log_line.is_empty() {
        let l = std::mem::take(&mut st.log_line);
        log_one(name, '<', &l);
    }
}

fn log_lines(name: &str, dir: char, data: &[u8]) {
    for l in data.split_inclusive(|&b| b == b'\n') {
        log_one(name, dir, l);
    }
}

fn log_one(name: &str, dir: char, data: &[u8]) {
    log::debug!(target: "alpy::console", "[{name}] {dir} \"{}\"", data.escape_ascii());
    if dir == '<' {
        // The label is "<bed>/<machine>".
        let machine = name.rsplit('/').next().unwrap_or(name);
        crate::journal::emit(crate::journal::Event::Console {
            machine: machine.to_string(),
            text: String::from_utf8_lossy(data).into_owned(),
        });
    }
}

/// The last lines of the history, escaped so that control bytes show.
fn history_tail(history: &VecDeque<u8>) -> String {
    let bytes: Vec<u8> = history.iter().copied().collect();
    let text: Vec<String> = bytes
        .split(|&b| b == b'\n')
        .map(|l| {
            let l = l.strip_suffix(b"\r").unwrap_or(l);
            l.escape_ascii().to_string()
        })
        .collect();
    let start = text.len().saturating_sub(TAIL_LINES);
    text[start..].join("\n")
}

#[cfg(test)]
#[path = "console_tests.rs"]
mod tests;
