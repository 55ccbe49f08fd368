//! One error type for the whole library.

use std::time::Duration;

/// The result type of every fallible alpy call.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in a test bed. Each variant says what was
/// being done and with what, so the message alone is enough to debug a CI log.
///
/// Match on the kind, not on the text; new kinds may be added:
///
/// ```
/// # fn f(r: alpy::Result<()>) {
/// match r {
///     Err(alpy::Error::NotFound { what, .. }) => eprintln!("no such thing: {what}"),
///     Err(alpy::Error::Closed(what)) => eprintln!("{what} went away"),
///     Err(e) => eprintln!("{e}"),
///     Ok(()) => {}
/// }
/// # }
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An I/O call failed; `context` says which and on what.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The Docker engine refused or failed a request, or stopped answering.
    #[error("Docker: {context}: {message}")]
    Docker {
        /// What was being done (with which container or image).
        context: String,
        /// What the engine said, plus a hint where one helps.
        message: String,
        /// The engine's HTTP status, when it answered at all.
        status: Option<u16>,
    },
    /// Something asked for does not exist: an image, a container, a link or
    /// node by index or name.
    #[error("{what} not found: {hint}")]
    NotFound {
        /// What was looked for, e.g. `image acme/router`, `link 7`.
        what: String,
        /// What exists instead, or how to make it exist.
        hint: String,
    },
    /// The other end went away (end of file on the console, a closed QMP
    /// socket, a container that exited): waiting longer cannot help.
    #[error("closed: {0}")]
    Closed(String),
    /// A fault inside alpy (a worker thread panicked): a bug to report.
    #[error("internal error: {0}")]
    Internal(String),
    /// A wait ran past its deadline.
    #[error("timed out after {:.1} s waiting for {what}{}", .timeout.as_secs_f64(), tail_block(.tail))]
    Timeout {
        /// What was awaited.
        what: String,
        /// How long it was awaited.
        timeout: Duration,
        /// The last lines seen (console output, logs), if any.
        tail: String,
    },
    /// QEMU answered a QMP command with an error.
    #[error("QMP command {command} failed: {class}: {desc}")]
    Qmp {
        /// The command that failed.
        command: String,
        /// QMP error class, e.g. `GenericError`.
        class: String,
        /// QEMU's description.
        desc: String,
    },
    /// The QMP peer broke the protocol (bad JSON, closed mid-reply, ...).
    #[error("QMP protocol: {0}")]
    QmpProtocol(String),
    /// QEMU failed to start or exited badly.
    #[error("QEMU: {0}")]
    Qemu(String),
    /// A program (in a container, a node or the guest) exited unsuccessfully.
    #[error("{what} failed: {status}{}", tail_block(.output))]
    CommandFailed {
        /// The program and where it ran.
        what: String,
        /// How it ended: `exit code 2`, `killed by SIGKILL`.
        status: String,
        /// The last lines of its output.
        output: String,
    },
    /// A lab server (alpy-lab) refused a request, or could not be
    /// reached: `status` is the HTTP status when it answered.
    #[error("lab server: {what}: {}{detail}", .status.map(|s| format!("{s}: ")).unwrap_or_default())]
    Lab {
        /// What was asked (`start a session`, `POST /lab/exec`).
        what: String,
        /// The HTTP status of its answer; `None` when none came (the
        /// connection failed, or timed out).
        status: Option<u16>,
        /// The server's `detail`, or the transport's error.
        detail: String,
    },
    /// Network namespace, tap or address configuration failed.
    #[error("network set-up: {0}")]
    Net(String),
    /// A capture file could not be read.
    #[error("pcap {path}: {message}")]
    Pcap {
        /// The capture file.
        path: String,
        /// What went wrong.
        message: String,
    },
    /// A board's power could not be switched or read: `what` names the
    /// request and the switch (never a secret), `detail` what went wrong.
    #[error("board {board}: {what}: {detail}")]
    Power {
        /// The board.
        board: String,
        /// The request and the switch it went to.
        what: String,
        /// What went wrong.
        detail: String,
    },
    /// The caller asked for something that cannot work (bad option, missing file).
    #[error("invalid configuration: {0}")]
    Config(String),
}

fn tail_block(tail: &str) -> String {
    if tail.trim().is_empty() {
        String::new()
    } else {
        format!("; last output:\n{}", tail.trim_end())
    }
}

impl Error {
    /// An [`Error::Io`] with context.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}

/// Adds context to `std::io::Result`s.
pub(crate) trait IoContext<T> {
    /// Wraps the error into [`Error::Io`] with `context`.
    fn context(self, context: impl FnOnce() -> String) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn context(self, context: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| Error::io(context(), e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeout_shows_the_tail() {
        let e = Error::Timeout {
            what: "\"login:\" on the console".into(),
            timeout: Duration::from_millis(1500),
            tail: "line one\nline two\n".into(),
        };
        assert_eq!(
            e.to_string(),
            "timed out after 1.5 s waiting for \"login:\" on the console; last output:\nline one\nline two"
        );
    }

    #[test]
    fn command_failed_without_output_has_no_tail() {
        let e = Error::CommandFailed {
            what: "ping in node alpy-x-node0".into(),
            status: "exit code 1".into(),
            output: " \n".into(),
        };
        assert_eq!(
            e.to_string(),
            "ping in node alpy-x-node0 failed: exit code 1"
        );
    }
}
