//! What a program run in a container left: how it ended and what it printed.

use crate::error::{Error, Result};

/// How many log lines an error quotes.
const TAIL_LINES: usize = 20;

/// How a container or exec'd program ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContainerExit(pub i64);

impl ContainerExit {
    /// Whether it exited with code 0.
    pub fn success(self) -> bool {
        self.0 == 0
    }

    /// The exit code as Docker reports it (128 + N for signal N).
    pub fn code(self) -> i64 {
        self.0
    }
}

impl std::fmt::Display for ContainerExit {
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

/// Output of a program run to completion.
#[derive(Debug, Clone)]
pub struct Output {
    /// How it ended.
    pub status: ContainerExit,
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
        assert_eq!(ContainerExit(137).to_string(), "killed by SIGKILL");
        assert_eq!(ContainerExit(143).to_string(), "killed by SIGTERM");
        assert_eq!(ContainerExit(1).to_string(), "exit code 1");
        assert!(ContainerExit(0).success());
    }
}
