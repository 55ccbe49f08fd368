//! A board as a machine of a test bed: its start (console open, power
//! held off, as a VM's QEMU starts paused), its resume (power on), and
//! what a board cannot do, said plainly.
//!
//! Everything else is the machine's own: the login or the prompt on the
//! console, the shell, the nodes on its ports, and the captures, which its
//! wires write with host time stamps ([`crate::bed::board_wire`]).

use std::time::Instant;

use crate::bed::machine::{Machine, MachineKind, Runs};
use crate::bed::state::PowerState;
use crate::board::BoardSpec;
use crate::error::{Error, Result};
use crate::logging;
use crate::supervisor::protocol::PowerAction;

impl Machine {
    /// The board it is, if it is one.
    pub(crate) fn board_spec(&self) -> Option<&BoardSpec> {
        match &self.kind {
            MachineKind::Board(b) => Some(b),
            MachineKind::Vm(_) => None,
        }
    }

    /// Opens the board's console (its transcript is the machine's console
    /// log) and switches it off until [`Machine::resume`].
    pub(crate) fn start_board(&mut self) -> Result<()> {
        let spec = self
            .board_spec()
            .ok_or_else(|| Error::Internal(format!("{} is not a board", self.label)))?;
        let mut board = spec
            .board()?
            .transcript(self.console_log.clone())
            .console_label(&self.label);
        crate::journal::emit(crate::journal::Event::Machine {
            machine: self.name.clone(),
            qemu: format!("none: board {} of class {}", spec.name, spec.class),
            accel: "hardware".into(),
        });
        logging::step(self.step_name("Open the console, power off"), || {
            board.open_off()
        })?;
        board.console()?.set_timeout(self.console_timeout);
        self.runs = Runs::Board(Box::new(board));
        self.power = PowerState::Paused;
        Ok(())
    }

    /// Switches the board on. Its captures are stamped by this host, so
    /// they need no offset.
    pub(crate) fn resume_board(&mut self) -> Result<()> {
        let step = self.step_name("Power on the board");
        let Runs::Board(b) = &mut self.runs else {
            return Err(Error::Closed(format!("the board {}", self.label)));
        };
        logging::step(step, || b.power_on())?;
        self.power = PowerState::Running;
        self.resumed_at = Some(Instant::now());
        self.capture_offset = Some(0.0);
        Ok(())
    }

    /// Switches the board off (its shutdown: a board has no ACPI button
    /// alpy can press).
    pub(crate) fn power_off_board(&mut self) -> Result<()> {
        let Runs::Board(b) = &mut self.runs else {
            return Err(Error::Closed(format!("the board {}", self.label)));
        };
        b.power().off()?;
        self.power = PowerState::Off;
        Ok(())
    }
}

impl Machine {
    /// Switches it off, on or through a cycle, as
    /// [`crate::internal::supervisor::protocol::Request::Power`] says: a
    /// board's switch (it returns once the switch did it), a VM's ACPI
    /// button, `cont` or reset.
    pub(crate) fn switch_power(&mut self, action: PowerAction) -> Result<serde_json::Value> {
        let kind = match &mut self.runs {
            Runs::Board(b) => {
                match action {
                    PowerAction::Off => b.power().off()?,
                    PowerAction::On => b.power_on()?,
                    PowerAction::Cycle => {
                        b.power().off()?;
                        b.power_on()?;
                    }
                }
                self.power = match action {
                    PowerAction::Off => PowerState::Off,
                    PowerAction::On | PowerAction::Cycle => PowerState::Running,
                };
                "board"
            }
            _ => {
                let command = match action {
                    PowerAction::Off => "system_powerdown",
                    PowerAction::On => "cont",
                    PowerAction::Cycle => "system_reset",
                };
                self.qmp()?.execute(command, None)?;
                "vm"
            }
        };
        Ok(serde_json::json!({ "machine": self.name, "kind": kind, "action": action }))
    }
}

/// The error for what needs QEMU (QMP, `set_link`, warm start) on machine
/// `label`, a board.
pub(crate) fn not_on_a_board(label: &str, what: &str) -> Error {
    Error::Config(format!(
        "{label} is a board: {what} needs QEMU, and a board has none (take a port down at \
         the board's switch, or impair its node's link)"
    ))
}
