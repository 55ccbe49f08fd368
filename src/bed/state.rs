//! What state a test bed's machine is in, as types: how it got to its
//! ready point ([`WarmOutcome`]) and whether it runs ([`PowerState`]).

use std::fmt;

use crate::bed::testbed::TestBed;

/// How a bed with warm start got to its ready point.
///
/// ```no_run
/// # fn f(bed: &alpy::TestBed) {
/// use alpy::WarmOutcome;
/// if bed.warm_outcome() == Some(WarmOutcome::Built) {
///     println!("this run paid for the snapshot");
/// }
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WarmOutcome {
    /// This bed booted cold, prepared and saved the snapshot, then
    /// restored it.
    Built,
    /// Restored from a snapshot an earlier bed saved.
    Restored,
    /// `ALPY_WARM=off`: booted and prepared cold, no snapshot.
    Cold,
    /// On a lab server: the lab booted the machine and logged in.
    Remote,
}

impl WarmOutcome {
    /// `"built"`, `"restored"`, `"cold"` or `"remote"` (what JSON and logs
    /// show).
    pub fn as_str(self) -> &'static str {
        match self {
            WarmOutcome::Built => "built",
            WarmOutcome::Restored => "restored",
            WarmOutcome::Cold => "cold",
            WarmOutcome::Remote => "remote",
        }
    }
}

impl fmt::Display for WarmOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether the machine runs, as far as the bed has driven it (a QMP
/// command sent by hand, `stop` say, is not seen).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PowerState {
    /// No QEMU runs for it: before `start()`, or after close.
    Absent,
    /// QEMU runs with the vCPUs paused: after `start()` until `boot()` or
    /// `resume()`, and at a warm start's ready point.
    Paused,
    /// The vCPUs run.
    Running,
    /// [`TestBed::shutdown`] succeeded: the guest powered off and QEMU
    /// ended.
    Off,
}

impl PowerState {
    /// `"absent"`, `"paused"`, `"running"` or `"off"`.
    pub fn as_str(self) -> &'static str {
        match self {
            PowerState::Absent => "absent",
            PowerState::Paused => "paused",
            PowerState::Running => "running",
            PowerState::Off => "off",
        }
    }
}

impl fmt::Display for PowerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl TestBed {
    /// With warm start, how the bed got to its ready point; `None`
    /// without warm start.
    pub fn warm_outcome(&self) -> Option<WarmOutcome> {
        self.machines.first().and_then(|m| m.warm_outcome)
    }

    /// Whether the machine runs (see [`PowerState`]).
    pub fn power_state(&self) -> PowerState {
        self.machines
            .first()
            .map_or(PowerState::Absent, |m| m.power)
    }

    /// Whether the guest powered off: [`TestBed::shutdown`] succeeded (a
    /// shutdown that failed leaves it as it was).
    pub fn is_powered_off(&self) -> bool {
        self.power_state() == PowerState::Off
    }
}
