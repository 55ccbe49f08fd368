//! One set of command verbs for everything that runs shell commands: a
//! node (in its tools container, here or on a lab), a machine's console
//! shell. Implement [`Commands::execute_within`] and say who runs the
//! commands; the verbs come with it.
//!
//! ```no_run
//! use std::time::Duration;
//! use alpy::Commands;
//! # fn f(bed: &mut alpy::TestBed) -> alpy::Result<()> {
//! let client = bed.node("client")?;
//! client.succeed("ping -c 1 -W 2 192.168.2.2")?;
//! client.fail("ping -c 1 -W 1 10.99.0.1")?;
//! bed.shell()?.wait_until_succeeds("ip route | grep -q default", Duration::from_secs(30))?;
//! # Ok(()) }
//! ```

use std::time::Duration;

use crate::addr::ToIpAddr;
use crate::error::{Error, Result};
use crate::output::Output;
use crate::util::shell_quote;

/// How long one command may run when no timeout is given.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);

/// Runs shell command lines somewhere: the verbs every node and machine
/// shell has.
///
/// `succeed`, `fail`, `wait_until_succeeds`, `wait_until_fails` and
/// `wait_for_open_port` are *checks*: each outcome goes to the bed's
/// journal and report at its time, and a failed one makes the bed's result
/// "failed" even when the test handles the error. To probe without a
/// check, use `execute` and look at the exit status.
pub trait Commands {
    /// Where the commands run, for messages: `node client`, `the guest`.
    fn target(&self) -> String;

    /// Runs `cmd` (one shell command line) and returns how it ended and
    /// what it printed, whatever the exit code; [`Error::Timeout`] after
    /// `timeout`.
    fn execute_within(&self, cmd: &str, timeout: Duration) -> Result<Output>;

    /// The timeout of [`Commands::execute`], [`Commands::succeed`] and
    /// [`Commands::fail`].
    fn command_timeout(&self) -> Duration {
        COMMAND_TIMEOUT
    }

    /// The log scope (the bed) the target belongs to: its checks go to
    /// that bed's journal whichever thread runs them. `None`: the
    /// calling thread's.
    fn log_scope(&self) -> Option<u64> {
        None
    }

    /// A mark of the target's own output so far (a machine's console),
    /// taken when a wait starts; `None` where there is none (a node).
    /// For implementors: see [`Commands::output_besides`].
    fn output_mark(&self) -> Option<u64> {
        None
    }

    /// What the target printed since `mark` other than the exchanges of
    /// `cmd` (a daemon's complaint on the console): a timed-out wait
    /// shows it, so the error says why, not only what did not happen.
    fn output_besides(&self, _mark: u64, _cmd: &str) -> Option<String> {
        None
    }

    /// [`Commands::execute_within`] the default timeout.
    fn execute(&self, cmd: &str) -> Result<Output> {
        self.execute_within(cmd, self.command_timeout())
    }

    /// Runs `cmd` and returns its standard output; a non-zero exit is
    /// [`Error::CommandFailed`] with the output's tail.
    fn succeed(&self, cmd: &str) -> Result<String> {
        self.succeed_within(cmd, self.command_timeout())
    }

    /// [`Commands::succeed`] within `timeout`.
    fn succeed_within(&self, cmd: &str, timeout: Duration) -> Result<String> {
        journaled(self, cmd, succeed_quietly(self, cmd, timeout))
    }

    /// Runs `cmd`, which must fail: returns its output on a non-zero exit;
    /// an exit code of 0 is [`Error::CommandFailed`] saying it succeeded.
    fn fail(&self, cmd: &str) -> Result<Output> {
        journaled(self, &format!("{cmd} (to fail)"), fail_quietly(self, cmd))
    }

    /// Retries `cmd` until it succeeds (returns its standard output) or
    /// `timeout` passes (the error quotes the last failure).
    fn wait_until_succeeds(&self, cmd: &str, timeout: Duration) -> Result<String> {
        let mark = self.output_mark();
        let r = crate::wait::wait_until(
            &format!("`{cmd}` to succeed on {}", self.target()),
            timeout,
            || succeed_quietly(self, cmd, self.command_timeout()),
        )
        .map_err(|e| with_output_besides(self, e, mark, cmd));
        journaled(self, &format!("{cmd} (until it succeeds)"), r)
    }

    /// Retries `cmd` until it fails (returns its output) or `timeout`
    /// passes.
    fn wait_until_fails(&self, cmd: &str, timeout: Duration) -> Result<Output> {
        let mark = self.output_mark();
        let r = crate::wait::wait_until(
            &format!("`{cmd}` to fail on {}", self.target()),
            timeout,
            || fail_quietly(self, cmd),
        )
        .map_err(|e| with_output_besides(self, e, mark, cmd));
        journaled(self, &format!("{cmd} (until it fails)"), r)
    }

    /// Waits until `addr:port` accepts TCP connections from here (it
    /// connects, with `nc -z`).
    fn wait_for_open_port(&self, addr: impl ToIpAddr, port: u16, timeout: Duration) -> Result<()>
    where
        Self: Sized,
    {
        let addr = addr.to_ip_addr()?;
        let cmd = format!("nc -z -w 1 {} {port}", shell_quote(&addr.to_string()));
        self.wait_until_succeeds(&cmd, timeout).map(drop)
    }
}

/// [`Commands::succeed_within`], not journaled (a wait's tries).
fn succeed_quietly<C: Commands + ?Sized>(c: &C, cmd: &str, timeout: Duration) -> Result<String> {
    let out = c
        .execute_within(cmd, timeout)?
        .checked(&format!("`{cmd}` on {}", c.target()))?;
    Ok(out.stdout_str())
}

/// [`Commands::fail`], not journaled (a wait's tries).
fn fail_quietly<C: Commands + ?Sized>(c: &C, cmd: &str) -> Result<Output> {
    let out = c.execute(cmd)?;
    if out.status.success() {
        return Err(Error::CommandFailed {
            what: format!("`{cmd}` on {} (expected to fail)", c.target()),
            status: "it succeeded (exit code 0)".into(),
            output: out.tail(),
        });
    }
    Ok(out)
}

/// Records a check's outcome in the target's bed's journal, and returns
/// it.
fn journaled<C: Commands + ?Sized, T>(c: &C, what: &str, r: Result<T>) -> Result<T> {
    let _scope = crate::logging::enter_for_call(c.log_scope());
    crate::journal::emit(crate::journal::Event::Check {
        on: c.target(),
        what: what.to_string(),
        ok: r.is_ok(),
        detail: r.as_ref().err().map(|e| e.to_string()),
    });
    r
}

/// A wait's timeout with what else the target printed meanwhile.
fn with_output_besides<C: Commands + ?Sized>(
    target: &C,
    e: Error,
    mark: Option<u64>,
    cmd: &str,
) -> Error {
    let besides = mark.and_then(|m| target.output_besides(m, cmd));
    match (e, besides) {
        (
            Error::Timeout {
                what,
                timeout,
                tail,
            },
            Some(more),
        ) if !more.is_empty() => Error::Timeout {
            what,
            timeout,
            tail: format!(
                "{tail}\n{} meanwhile printed (besides the command's own lines):\n{more}",
                target.target()
            ),
        },
        (e, _) => e,
    }
}
