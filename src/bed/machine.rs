//! One machine of a test bed: a QEMU VM (or a board) with its console,
//! QMP, shell, power state, NICs and captures. A bed holds any number of them
//! ([`crate::TestBed::machine`]); its first is the DUT, which the bed's
//! own verbs (`bed.console()`, `bed.shell()`, `bed.boot(..)`) address.

use std::os::fd::RawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::addr::Mac;
use crate::bed::board_machine::not_on_a_board;
use crate::bed::builder::PowerOff;
use crate::bed::dut::{DiskPlan, Dut};
use crate::bed::state::{PowerState, WarmOutcome};
use crate::bed::timings::TimingsLog;
use crate::board::Board;
use crate::error::{Error, Result};
use crate::logging::{self, Step};
use crate::vm::console::{Console, Pattern};
use crate::vm::login::Login;
use crate::vm::qemu::RamFile;
use crate::vm::qemu_process::QemuProcess;
use crate::vm::qmp::Qmp;
use crate::vm::remote_shell::{RemoteShell, ShellState};

/// How long QEMU may take to answer on QMP.
const QMP_TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) use crate::bed::machine_kind::{MachineKind, MachineNic, MachineSpec, NicKind};

/// Where a machine runs.
pub(crate) enum Runs {
    /// Not started, or stopped.
    Nowhere,
    /// A QEMU on this host, with its console.
    Here(Box<Here>),
    /// On an alpy-lab server (`REMOTE_LAB_URL`): its console over a
    /// WebSocket, its QMP and power through the lab.
    Lab(Box<crate::bed::remote::RemoteBed>),
    /// A board: its power and its console.
    Board(Box<Board>),
}

impl Runs {
    /// The console where the machine runs; `label` names it in the error.
    fn console(&mut self, label: &str) -> Result<&mut Console> {
        match self {
            Runs::Here(h) => Ok(&mut h.console),
            Runs::Lab(r) => r.console(),
            Runs::Board(b) => b.console(),
            Runs::Nowhere => Err(Error::Closed(format!("the console of {label}"))),
        }
    }
}

/// A machine's QEMU on this host and its console.
pub(crate) struct Here {
    pub qemu: QemuProcess,
    pub console: Console,
}

/// A machine of a test bed: a QEMU here, one on a lab server, or a board
/// ([`crate::TestBedBuilder::board`]).
///
/// ```no_run
/// use alpy::Commands;
/// # fn f(bed: &mut alpy::TestBed) -> alpy::Result<()> {
/// let r2 = bed.machine("r2")?;
/// r2.shell()?.succeed("ip route")?;
/// r2.set_link(0, false)?;                  // QMP set_link on its NIC 0
/// let frames = r2.capture(0)?.frames().len();
/// # Ok(()) }
/// ```
pub struct Machine {
    pub(crate) name: String,
    pub(crate) tags: Vec<String>,
    pub(crate) kind: MachineKind,
    /// Where its QEMU's own files go (the bed's directory for the first).
    pub(crate) dir: PathBuf,
    pub(crate) console_log: PathBuf,
    pub(crate) nics: Vec<MachineNic>,
    pub(crate) login: Option<Login>,
    pub(crate) prompt: Option<String>,
    pub(crate) poweroff: PowerOff,
    pub(crate) console_timeout: Duration,
    pub(crate) runs: Runs,
    pub(crate) shell: Option<ShellState>,
    pub(crate) power: PowerState,
    pub(crate) resumed_at: Option<Instant>,
    /// Host time minus QEMU's capture stamps, once resumed.
    pub(crate) capture_offset: Option<f64>,
    /// The guest's virtual clock when it was last resumed from nothing:
    /// zero after a boot, the snapshot's clock after a restore.
    pub(crate) virtual_clock_base: f64,
    /// Paused at a warm start's ready point until `boot()`.
    pub(crate) at_ready_point: bool,
    pub(crate) warm_outcome: Option<WarmOutcome>,
    pub(crate) timings: TimingsLog,
    /// `<bed>/<machine>`, for messages.
    pub(crate) label: String,
}

impl Machine {
    /// The machine `spec` of bed `bed` (whose artifacts are in
    /// `artifacts`), with `nics`, not started. The machine `dut` keeps a
    /// one-machine bed's file names (`console.log`, QEMU's files in the
    /// bed's directory); another has `console-<name>.log` and `<name>/`.
    pub(crate) fn new(
        spec: &MachineSpec,
        nics: Vec<MachineNic>,
        b: &crate::TestBedBuilder,
        bed: &str,
        artifacts: &Path,
        timings: TimingsLog,
    ) -> Machine {
        let dut_files = spec.name == "dut";
        let vm = spec.kind.vm();
        let (login, prompt) = vm
            .and_then(Dut::access)
            .unwrap_or_else(|| (b.login.clone(), b.prompt.clone()));
        let poweroff = vm
            .and_then(Dut::own_poweroff)
            .cloned()
            .unwrap_or_else(|| b.poweroff.clone());
        Machine {
            name: spec.name.clone(),
            tags: spec.tags.clone(),
            kind: spec.kind.clone(),
            dir: if dut_files {
                artifacts.to_path_buf()
            } else {
                artifacts.join(&spec.name)
            },
            console_log: if dut_files {
                artifacts.join("console.log")
            } else {
                artifacts.join(format!("console-{}.log", spec.name))
            },
            nics,
            login,
            prompt,
            poweroff,
            console_timeout: b.console_timeout,
            runs: Runs::Nowhere,
            shell: None,
            power: PowerState::Absent,
            resumed_at: None,
            capture_offset: None,
            virtual_clock_base: 0.0,
            at_ready_point: false,
            warm_outcome: None,
            timings,
            label: format!("{bed}/{}", spec.name),
        }
    }

    /// The machine's name (`dut` for a bed's `.dut(..)`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its roles ([`crate::TestBed::role`]).
    pub fn tags(&self) -> &[String] {
        &self.tags
    }

    /// How many NICs it has.
    pub fn nic_count(&self) -> usize {
        self.nics.len()
    }

    /// The MAC of its NIC `nic` (on a lab: the one the lab's bed has). A
    /// board's MACs are its own: alpy does not know them.
    pub fn mac(&self, nic: usize) -> Result<Mac> {
        let mine = match &self.nic(nic)?.kind {
            NicKind::Vm { mac, .. } => *mac,
            NicKind::Port(port) => {
                return Err(Error::NotFound {
                    what: format!("the MAC of {}'s NIC {nic} ({port})", self.label),
                    hint: "a board's MACs are its own: read them in its shell (`ip link`) or \
                           in its port's capture"
                        .into(),
                })
            }
        };
        Ok(match &self.runs {
            Runs::Lab(r) => r.dut_mac(nic).unwrap_or(mine),
            _ => mine,
        })
    }

    /// Whether it runs on a lab server.
    pub fn is_on_lab(&self) -> bool {
        matches!(self.runs, Runs::Lab(_))
    }

    /// The capture file of its NIC `nic`.
    pub fn pcap_path(&self, nic: usize) -> Result<&Path> {
        Ok(&self.nic(nic)?.pcap)
    }

    /// Its console's log file.
    pub fn console_log(&self) -> &Path {
        &self.console_log
    }

    /// A step's name in the log: as it always was for the DUT, with the
    /// machine's name for the others.
    pub(crate) fn step_name(&self, what: &str) -> String {
        if self.name == "dut" {
            what.to_string()
        } else {
            format!("{what} [{}]", self.name)
        }
    }

    pub(crate) fn nic(&self, nic: usize) -> Result<&MachineNic> {
        self.nics.get(nic).ok_or_else(|| Error::NotFound {
            what: format!("NIC {nic} of machine {}", self.label),
            hint: format!("it has {} NICs, numbered from 0", self.nics.len()),
        })
    }

    /// With warm start, how it got to its ready point.
    pub fn warm_outcome(&self) -> Option<WarmOutcome> {
        self.warm_outcome
    }

    /// Whether it runs, as far as the bed has driven it.
    pub fn power_state(&self) -> PowerState {
        self.power
    }

    /// QEMU's PID, while it runs here.
    pub fn qemu_pid(&self) -> Option<i32> {
        match &self.runs {
            Runs::Here(h) => Some(h.qemu.pid()),
            _ => None,
        }
    }

    /// The exact QEMU command line, shell-quoted (here).
    pub fn qemu_command(&self) -> Option<&str> {
        match &self.runs {
            Runs::Here(h) => Some(h.qemu.command_line()),
            _ => None,
        }
    }

    /// Starts QEMU (paused) with its NICs on `fds` (fd, datagram socket?)
    /// and its console; its RAM in `ram` if given (warm start).
    pub(crate) fn start_qemu(
        &mut self,
        fds: &[(RawFd, bool)],
        plan: DiskPlan<'_>,
        ram: Option<RamFile>,
    ) -> Result<()> {
        std::fs::create_dir_all(&self.dir)
            .map_err(|e| Error::io(format!("create {}", self.dir.display()), e))?;
        let mut cfg = self
            .vm()?
            .qemu_config(&self.dir, self.qemu_nics(fds)?, plan)?;
        cfg.ram_file = ram;
        let t0 = Instant::now();
        let mut qemu = logging::step(self.step_name("Start QEMU (paused)"), || {
            QemuProcess::start(&cfg, &self.dir.join("qemu.log"), QMP_TIMEOUT)
        })?;
        self.timings.record("qemu", t0.elapsed());
        crate::journal::emit(crate::journal::Event::Machine {
            machine: self.name().to_string(),
            qemu: qemu.version(),
            accel: qemu.accel().as_str().to_string(),
        });
        let console = qemu
            .take_serial()
            .ok_or_else(|| Error::Internal("QEMU gave no serial console".into()))
            .and_then(|serial| Console::new(serial, &self.label, Some(&self.console_log)));
        let mut console = match console {
            Ok(c) => c,
            Err(e) => {
                let _ = qemu.close();
                return Err(e);
            }
        };
        console.set_timeout(self.console_timeout);
        self.runs = Runs::Here(Box::new(Here { qemu, console }));
        self.power = PowerState::Paused;
        Ok(())
    }

    /// Its NICs for QEMU, on `fds`.
    pub(crate) fn qemu_nics(&self, fds: &[(RawFd, bool)]) -> Result<Vec<crate::vm::qemu::Nic>> {
        if fds.len() != self.nics.len() {
            return Err(Error::Internal(format!(
                "machine {}: {} NICs but {} link ends",
                self.label,
                self.nics.len(),
                fds.len()
            )));
        }
        let dut = self.vm()?;
        self.nics
            .iter()
            .zip(fds)
            .map(|(n, &(fd, dgram))| match &n.kind {
                NicKind::Vm { choices, mac } => {
                    Ok(dut.nic(choices, *mac, fd, dgram, n.pcap.clone()))
                }
                NicKind::Port(_) => Err(not_on_a_board(&self.label, "a QEMU NIC")),
            })
            .collect()
    }

    /// The VM it is, or the error that it is a board.
    pub(crate) fn vm(&self) -> Result<&Dut> {
        self.kind
            .vm()
            .ok_or_else(|| not_on_a_board(&self.label, "this"))
    }

    /// Starts it: a VM's QEMU (paused) with its NICs on `fds`; a board's
    /// console, with the board held off.
    pub(crate) fn start(
        &mut self,
        fds: &[(RawFd, bool)],
        plan: DiskPlan<'_>,
        ram: Option<RamFile>,
    ) -> Result<()> {
        match self.kind {
            MachineKind::Vm(_) => self.start_qemu(fds, plan, ram),
            MachineKind::Board(_) => self.start_board(),
        }
    }

    /// Ends QEMU and its console, reporting nothing: for a QEMU that is
    /// replaced (after a save, after a failed restore).
    pub(crate) fn stop_qemu(&mut self) {
        if let Runs::Here(h) = std::mem::replace(&mut self.runs, Runs::Nowhere) {
            let Here { qemu, console } = *h;
            let _ = console.close();
            let _ = qemu.close();
        }
        self.power = PowerState::Absent;
    }

    pub(crate) fn qemu_mut(&mut self) -> Result<&mut QemuProcess> {
        match &mut self.runs {
            Runs::Here(h) => Ok(&mut h.qemu),
            Runs::Lab(_) => Err(Error::Config(format!(
                "{} runs on a lab server (REMOTE_LAB_URL): its QMP goes through the lab; \
                 use qmp_execute(command, arguments)",
                self.label
            ))),
            Runs::Board(_) => Err(not_on_a_board(&self.label, "QMP")),
            Runs::Nowhere => Err(Error::Closed(format!("QEMU of {}", self.label))),
        }
    }

    /// Its serial console (on a lab: the expect engine over the lab's
    /// WebSocket).
    pub fn console(&mut self) -> Result<&mut Console> {
        self.runs.console(&self.label)
    }

    /// Its QMP session (here; on a lab there is none: use
    /// [`Machine::qmp_execute`]).
    pub fn qmp(&mut self) -> Result<&mut Qmp> {
        Ok(self.qemu_mut()?.qmp())
    }

    /// A QMP command, here or through the lab: its `return`.
    pub fn qmp_execute(
        &mut self,
        command: &str,
        arguments: Option<serde_json::Value>,
    ) -> Result<serde_json::Value> {
        match &self.runs {
            Runs::Lab(r) => r.qmp(command, arguments),
            _ => self.qmp()?.execute(command, arguments),
        }
    }

    /// Waits for `prompt` on its console and records the `boot` phase
    /// (resume to prompt).
    pub fn wait_prompt(&mut self, prompt: &str, timeout: Duration) -> Result<()> {
        let t = self.resumed_at.unwrap_or_else(Instant::now);
        logging::step(self.step_name(&format!("Wait for {prompt:?}")), || {
            self.console()?
                .expect(&Pattern::exact(prompt), timeout)
                .map(drop)
        })?;
        self.timings.record("boot", t.elapsed());
        Ok(())
    }

    /// Resumes it and brings it to its shell: logs in as the builder's
    /// [`crate::TestBedBuilder::login`] says, or waits for its
    /// [`crate::TestBedBuilder::prompt`]. A machine restored at its ready
    /// point is only resumed.
    pub fn boot(&mut self, timeout: Duration) -> Result<()> {
        if self.at_ready_point {
            self.at_ready_point = false;
            return self.resume();
        }
        if self.warm_outcome == Some(WarmOutcome::Cold) {
            return Ok(()); // ALPY_WARM=off: booted and prepared in start()
        }
        self.resume()?;
        match (self.login.clone(), self.prompt.clone()) {
            (Some(login), _) => {
                self.wait_prompt(&login.login_prompt, timeout)?;
                let steps = login.step_timeout.unwrap_or(timeout);
                let t0 = Instant::now();
                let step = Step::start(self.step_name("login"));
                let r = login.answer(self.console()?, steps);
                match &r {
                    Ok(_) => drop(step.done()),
                    Err(e) => drop(step.failed(e)),
                }
                self.timings.record("login", t0.elapsed());
                r
            }
            (None, Some(prompt)) => self.wait_prompt(&prompt, timeout),
            (None, None) => Err(Error::Config(
                "boot() needs to know the guest's prompt: give the builder .login(..) or .prompt(..)"
                    .into(),
            )),
        }
    }

    /// Its shell: attached on first use (echo off, a private prompt), then
    /// kept, so each call costs nothing. Boot first.
    pub fn shell(&mut self) -> Result<RemoteShell<'_>> {
        let console = self.runs.console(&self.label)?;
        RemoteShell::attach_once(console, &mut self.shell)
    }

    /// Sets its NIC `nic` up or down (QMP `set_link`; the guest sees the
    /// carrier change, and no frame passes).
    pub fn set_link(&mut self, nic: usize, up: bool) -> Result<()> {
        self.nic(nic)?;
        let args = serde_json::json!({ "name": format!("nic{nic}"), "up": up });
        self.qmp_execute("set_link", Some(args)).map(drop)
    }

    /// The console's last lines, for errors.
    pub(crate) fn console_tail(&self) -> String {
        match &self.runs {
            Runs::Here(h) => h.console.tail(),
            Runs::Lab(r) => r.console_tail(),
            Runs::Board(b) => b.console_tail(),
            Runs::Nowhere => String::new(),
        }
    }

    /// Closes the console and QEMU (or the lab); the first error.
    pub(crate) fn close(&mut self) -> Result<()> {
        self.shell = None;
        let mut first = None;
        match std::mem::replace(&mut self.runs, Runs::Nowhere) {
            Runs::Here(h) => {
                let Here { qemu, console } = *h;
                if let Err(e) = console.close() {
                    first.get_or_insert(e);
                }
                if let Err(e) = qemu.close() {
                    first.get_or_insert(e);
                }
            }
            Runs::Lab(r) => {
                if let Err(e) = r.close() {
                    first.get_or_insert(e);
                }
            }
            Runs::Board(b) => {
                if let Err(e) = b.close() {
                    first.get_or_insert(e);
                }
            }
            Runs::Nowhere => {}
        }
        if self.power != PowerState::Off {
            self.power = PowerState::Absent;
        }
        first.map_or(Ok(()), Err)
    }
}
