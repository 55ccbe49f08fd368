//! What a command left, wherever it ran (a node's container, a machine's
//! shell): how it ended and what it printed. One type for every
//! [`crate::Commands`] implementor.

use crate::error::{Error, Result};

/// How many log lines an error quotes.
const TAIL_LINES: usize = 20;

/// How a command, container or exec'd program ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitStatus(pub i64);

/// The earlier name of [`ExitStatus`].
pub type ContainerExit = ExitStatus;

impl ExitStatus {
    /// Whether it exited with code 0.
    pub fn success(self) -> bool {
        self.0 == 0
    }

    /// The exit code (128 + N for signal N, as Docker and shells report it).
    pub fn code(self) -> i64 {
        self.0
    }
}

impl std::fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            c @ 129..=192 => write!(
                f,
                "killed by {}",
                crate::util::signal_name((c - 128) as i32)
            ),
            c => write!(f, "exit code {c}"),
        }
    }
}

/// Output of a command run to completion.
///
/// A machine's console shell cannot tell the two streams apart: there,
/// `stdout` holds everything the command printed (with `\r\n` turned into
/// `\n`) and `stderr` is empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// How it ended.
    pub status: ExitStatus,
    /// Its standard output.
    pub stdout: Vec<u8>,
    /// Its standard error.
    pub stderr: Vec<u8>,
}

impl Output {
    /// Standard output as (lossy) UTF-8.
    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// Standard error as (lossy) UTF-8.
    pub fn stderr_str(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }

    /// The last lines of stdout and stderr, for error messages.
    pub fn tail(&self) -> String {
        let mut all = self.stdout_str();
        all.push_str(&self.stderr_str());
        crate::util::tail_lines(&all, TAIL_LINES)
    }

    /// `Ok(self)` on exit code 0, else [`Error::CommandFailed`] naming `what`.
    pub fn checked(self, what: &str) -> Result<Self> {
        if self.status.success() {
            Ok(self)
        } else {
            Err(Error::CommandFailed {
                what: what.to_string(),
                status: self.status.to_string(),
                output: self.tail(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_status_names_signals() {
        assert_eq!(ExitStatus(137).to_string(), "killed by SIGKILL");
        assert_eq!(ExitStatus(143).to_string(), "killed by SIGTERM");
        assert_eq!(ExitStatus(1).to_string(), "exit code 1");
        assert!(ExitStatus(0).success());
    }
}
