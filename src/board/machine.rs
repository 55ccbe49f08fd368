//! A board brought to its shell: power-cycled, its console watched from
//! power-on, logged in.

use std::path::PathBuf;
use std::time::Duration;

use super::console::{BoardConsole, ConsolePort};
use super::power::Power;
use crate::error::{Error, Result};
use crate::vm::console::{Console, Pattern};
use crate::vm::login::Login;
use crate::vm::remote_shell::{RemoteShell, ShellState};

/// How long the console server may take to accept.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A board: its power, its console, and how it shows it is ready.
///
/// Ready means: the console is open (so everything from power-on is seen
/// and logged), the board is power-cycled, then its login prompt is
/// answered or its shell prompt seen. Warm start does not apply to a
/// board: there is no memory to restore, so every boot is a power cycle.
///
/// ```no_run
/// use std::time::Duration;
/// use alpy::board::{Board, console::ConsolePort, power::{Power, SnmpAuth, SnmpPoe}};
/// use alpy::Commands;
///
/// # fn main() -> alpy::Result<()> {
/// let power = Power::new("fw-3", Box::new(SnmpPoe::new("poe1.lab", 1, 3, SnmpAuth::v2c("private"))));
/// let mut board = Board::new("fw-3", power, ConsolePort::Tcp("consoles.lab:7003".into()))
///     .login(alpy::Login::new("admin").password("admin").prompt("fw# "));
/// board.boot(Duration::from_secs(300))?;
/// board.shell()?.succeed("show version")?;
/// board.close()?;
/// # Ok(()) }
/// ```
pub struct Board {
    name: String,
    /// What its console is called in logs and the journal.
    console_label: String,
    power: Power,
    port: ConsolePort,
    login: Option<Login>,
    prompt: Option<String>,
    off_for: Duration,
    transcript: Option<PathBuf>,
    console: Option<BoardConsole>,
    shell: Option<ShellState>,
}

impl Board {
    /// Board `name`, powered by `power`, its console on `port`.
    pub fn new(name: &str, power: Power, port: ConsolePort) -> Board {
        Board {
            name: name.to_string(),
            console_label: name.to_string(),
            power,
            port,
            login: None,
            prompt: None,
            off_for: Duration::from_secs(1),
            transcript: None,
            console: None,
            shell: None,
        }
    }

    /// Log in on the console when it boots.
    pub fn login(mut self, login: Login) -> Board {
        self.login = Some(login);
        self
    }

    /// Or wait for this shell prompt (a console without a login).
    pub fn prompt(mut self, prompt: &str) -> Board {
        self.prompt = Some(prompt.to_string());
        self
    }

    /// How long the power stays off in a cycle (default 1 s).
    pub fn off_for(mut self, d: Duration) -> Board {
        self.off_for = d;
        self
    }

    /// Calls its console `label` in logs and the journal (a test bed's
    /// `<bed>/<machine>`; the board's name otherwise).
    pub(crate) fn console_label(mut self, label: &str) -> Board {
        self.console_label = label.to_string();
        self
    }

    /// Write every console byte to this file.
    pub fn transcript(mut self, path: impl Into<PathBuf>) -> Board {
        self.transcript = Some(path.into());
        self
    }

    /// The board's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its power.
    pub fn power(&self) -> &Power {
        &self.power
    }

    /// Opens the console, power-cycles the board, and brings it to its
    /// shell within `timeout`. Errors name the board and the part that
    /// failed (the power switch, the console server, the prompt that never
    /// came, with the console's last lines).
    pub fn boot(&mut self, timeout: Duration) -> Result<()> {
        if self.login.is_none() && self.prompt.is_none() {
            return Err(Error::Config(format!(
                "board {}: boot() needs its prompt or login: give .login(..) or .prompt(..)",
                self.name
            )));
        }
        self.open_off()?;
        self.power_on()?;
        let name = self.name.clone();
        let (login, prompt) = (self.login.clone(), self.prompt.clone());
        let console = self.console()?;
        let r = match (login, prompt) {
            (Some(l), _) => l.log_in(console, timeout),
            (None, Some(p)) => console.expect(&Pattern::exact(&p), timeout).map(drop),
            (None, None) => Ok(()),
        };
        r.map_err(|e| match e {
            Error::Timeout {
                what,
                timeout,
                tail,
            } => Error::Timeout {
                what: format!("board {name} after its power cycle: {what}"),
                timeout,
                tail,
            },
            e => e,
        })
    }

    /// Opens the console (if it is not open) and switches the board off
    /// for [`Board::off_for`], so that everything from its next power-on
    /// is seen: the first half of [`Board::boot`], and a test bed's start.
    pub(crate) fn open_off(&mut self) -> Result<()> {
        self.shell = None;
        if self.console.is_none() {
            let c = BoardConsole::open_labelled(
                &self.name,
                &self.console_label,
                &self.port,
                CONNECT_TIMEOUT,
                self.transcript.as_deref(),
            )?;
            self.console = Some(c);
        }
        self.power.off()?;
        std::thread::sleep(self.off_for);
        // What the board said before it went dark is not this boot's.
        self.console()?.discard_pending();
        Ok(())
    }

    /// Switches it on: the second half of [`Board::boot`], before the
    /// prompt; a test bed's resume.
    pub(crate) fn power_on(&mut self) -> Result<()> {
        self.power.on()
    }

    /// The console's last lines, for errors (empty before it is open).
    pub(crate) fn console_tail(&self) -> String {
        self.console.as_ref().map(|c| c.tail()).unwrap_or_default()
    }

    /// Its console (open after [`Board::boot`]).
    pub fn console(&mut self) -> Result<&mut Console> {
        match self.console.as_mut() {
            Some(c) => Ok(c.console()),
            None => Err(not_open(&self.name)),
        }
    }

    /// Its shell, attached on first use (echo off, a private prompt).
    pub fn shell(&mut self) -> Result<RemoteShell<'_>> {
        let console = match self.console.as_mut() {
            Some(c) => c.console(),
            None => return Err(not_open(&self.name)),
        };
        RemoteShell::attach_once(console, &mut self.shell)
    }

    /// Closes the console and powers the board off; the first error.
    pub fn close(mut self) -> Result<()> {
        let closed = self.console.take().map_or(Ok(()), BoardConsole::close);
        let off = self.power.off();
        closed.and(off)
    }
}

fn not_open(board: &str) -> Error {
    Error::Config(format!(
        "board {board}: its console is not open: boot() it first"
    ))
}
