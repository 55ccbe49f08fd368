//! One machine of a test bed: a QEMU VM with its console, QMP, shell,
//! power state, NICs and captures. A bed holds any number of them
//! ([`crate::TestBed::machine`]); its first is the DUT, which the bed's
//! own verbs (`bed.console()`, `bed.shell()`, `bed.boot(..)`) address.

use std::os::fd::RawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::addr::Mac;
use crate::bed::builder::PowerOff;
use crate::bed::dut::{DiskPlan, Dut};
use crate::bed::state::{PowerState, WarmOutcome};
use crate::bed::timings::TimingsLog;
use crate::error::{Error, Result};
use crate::logging::{self, Step};
use crate::nic::DutNic;
use crate::pcap::Capture;
use crate::vm::console::{Console, Pattern};
use crate::vm::login::Login;
use crate::vm::qemu::RamFile;
use crate::vm::qemu_process::QemuProcess;
use crate::vm::qmp::Qmp;
use crate::vm::remote_shell::{RemoteShell, ShellState};

/// How long QEMU may take to answer on QMP.
const QMP_TIMEOUT: Duration = Duration::from_secs(10);

/// What a machine is made of and how it is reached: the builder's part.
#[derive(Debug, Clone)]
pub(crate) struct MachineSpec {
    pub name: String,
    pub dut: Dut,
    pub tags: Vec<String>,
}

/// One NIC of a machine: the choices for it, its MAC, its capture file.
#[derive(Debug, Clone)]
pub(crate) struct MachineNic {
    pub choices: DutNic,
    pub mac: Mac,
    pub pcap: PathBuf,
}

/// A QEMU machine of a test bed.
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
    pub(crate) dut: Dut,
    /// Where its QEMU's own files go (the bed's directory for the first).
    pub(crate) dir: PathBuf,
    pub(crate) console_log: PathBuf,
    pub(crate) nics: Vec<MachineNic>,
    pub(crate) login: Option<Login>,
    pub(crate) prompt: Option<String>,
    pub(crate) poweroff: PowerOff,
    pub(crate) console_timeout: Duration,
    pub(crate) qemu: Option<QemuProcess>,
    pub(crate) console: Option<Console>,
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
        Machine {
            name: spec.name.clone(),
            tags: spec.tags.clone(),
            dut: spec.dut.clone(),
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
            login: b.login.clone(),
            prompt: b.prompt.clone(),
            poweroff: b.poweroff.clone(),
            console_timeout: b.console_timeout,
            qemu: None,
            console: None,
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

    /// The MAC of its NIC `nic`.
    pub fn mac(&self, nic: usize) -> Result<Mac> {
        Ok(self.nic(nic)?.mac)
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
    fn step_name(&self, what: &str) -> String {
        if self.name == "dut" {
            what.to_string()
        } else {
            format!("{what} [{}]", self.name)
        }
    }

    fn nic(&self, nic: usize) -> Result<&MachineNic> {
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

    /// QEMU's PID, while it runs.
    pub fn qemu_pid(&self) -> Option<i32> {
        self.qemu.as_ref().map(QemuProcess::pid)
    }

    /// The exact QEMU command line, shell-quoted.
    pub fn qemu_command(&self) -> Option<&str> {
        self.qemu.as_ref().map(QemuProcess::command_line)
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
            .dut
            .qemu_config(&self.dir, self.qemu_nics(fds)?, plan)?;
        cfg.ram_file = ram;
        let t0 = Instant::now();
        let qemu = logging::step(self.step_name("Start QEMU (paused)"), || {
            QemuProcess::start(&cfg, &self.dir.join("qemu.log"), QMP_TIMEOUT)
        })?;
        self.timings.record("qemu", t0.elapsed());
        self.qemu = Some(qemu);
        self.power = PowerState::Paused;
        let serial = self
            .qemu_mut()?
            .take_serial()
            .ok_or_else(|| Error::Internal("QEMU gave no serial console".into()))?;
        let mut console = Console::new(serial, &self.label, Some(&self.console_log))?;
        console.set_timeout(self.console_timeout);
        self.console = Some(console);
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
        Ok(self
            .nics
            .iter()
            .zip(fds)
            .map(|(n, &(fd, dgram))| self.dut.nic(&n.choices, n.mac, fd, dgram, n.pcap.clone()))
            .collect())
    }

    /// Ends QEMU and its console, reporting nothing: for a QEMU that is
    /// replaced (after a save, after a failed restore).
    pub(crate) fn stop_qemu(&mut self) {
        if let Some(c) = self.console.take() {
            let _ = c.close();
        }
        if let Some(q) = self.qemu.take() {
            let _ = q.close();
        }
        self.power = PowerState::Absent;
    }

    pub(crate) fn qemu_mut(&mut self) -> Result<&mut QemuProcess> {
        let label = &self.label;
        self.qemu
            .as_mut()
            .ok_or_else(|| Error::Closed(format!("QEMU of {label}")))
    }

    /// Its serial console.
    pub fn console(&mut self) -> Result<&mut Console> {
        let label = &self.label;
        self.console
            .as_mut()
            .ok_or_else(|| Error::Closed(format!("the console of {label}")))
    }

    /// Its QMP session.
    pub fn qmp(&mut self) -> Result<&mut Qmp> {
        Ok(self.qemu_mut()?.qmp())
    }

    /// Lets the vCPUs run.
    pub fn resume(&mut self) -> Result<()> {
        let first = self.resumed_at.is_none();
        let before = std::time::SystemTime::now();
        logging::step(self.step_name("Resume the DUT"), || self.qmp()?.cont())?;
        self.power = PowerState::Running;
        self.resumed_at = Some(Instant::now());
        if first {
            // The virtual clock starts between sending `cont` and its reply.
            let after = std::time::SystemTime::now();
            let wall = |t: std::time::SystemTime| {
                t.duration_since(std::time::UNIX_EPOCH)
                    .map_or(0.0, |d| d.as_secs_f64())
            };
            let resumed = (wall(before) + wall(after)) / 2.0;
            self.capture_offset = self
                .measure_capture_offset(resumed)
                .map(|o| o - self.virtual_clock_base);
            if let Some(o) = self.capture_offset {
                log::debug!(target: "alpy::testbed", "{}: capture time stamps + {o:.6} s = host time", self.label);
            }
        }
        Ok(())
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
        let state = match &self.shell {
            Some(s) => s.clone(),
            None => {
                let s = RemoteShell::attach(self.console()?)?.state();
                self.shell = Some(s.clone());
                s
            }
        };
        Ok(RemoteShell::resume(self.console()?, state))
    }

    /// Sets its NIC `nic` up or down (QMP `set_link`; the guest sees the
    /// carrier change, and no frame passes).
    pub fn set_link(&mut self, nic: usize, up: bool) -> Result<()> {
        self.nic(nic)?;
        let args = serde_json::json!({ "name": format!("nic{nic}"), "up": up });
        self.qmp()?.execute("set_link", Some(args)).map(drop)
    }

    /// Its NIC `nic`'s capture as far as it goes now, with host time
    /// stamps (see [`crate::TestBed::capture`]).
    pub fn capture(&self, nic: usize) -> Result<Capture> {
        let cap = Capture::open(&self.nic(nic)?.pcap)?;
        Ok(cap.shifted(self.capture_offset.unwrap_or(0.0)))
    }

    /// What to add to its captures' raw time stamps to get host time.
    pub fn capture_offset(&self) -> Option<f64> {
        self.capture_offset
    }

    /// QEMU stamps a frame with the second it set the capture up in (a
    /// whole second, from its own clock) plus the virtual clock, which
    /// stands at `virtual_clock_base` until the vCPUs run. Returned: that
    /// second, as an offset from `resumed_wall` (the caller takes
    /// `virtual_clock_base` off).
    ///
    /// A frame captured while the machine was paused (relay links capture
    /// what nodes send before boot) carries that second exactly, whenever
    /// it was written, so the first frame of any NIC is used when there
    /// is one. Only with no frame yet does the file's time say when its
    /// header was written; it is read before the frames, so a frame
    /// written in between is seen and used instead.
    fn measure_capture_offset(&self, resumed_wall: f64) -> Option<f64> {
        let header_written = std::fs::metadata(&self.nics.first()?.pcap)
            .ok()?
            .modified()
            .ok()?
            .duration_since(std::time::UNIX_EPOCH)
            .ok()?
            .as_secs() as f64;
        let first_frame = self
            .nics
            .iter()
            .filter_map(|n| Capture::open(&n.pcap).ok())
            .filter_map(|c| c.frames().first().map(|f| f.timestamp.as_secs_f64()))
            .reduce(f64::min);
        let start = match first_frame {
            Some(stamp) => {
                log::debug!(target: "alpy::testbed", "capture clock from a frame captured while paused ({stamp:.6})");
                stamp - self.virtual_clock_base
            }
            None => header_written,
        };
        Some(resumed_wall - start)
    }

    /// Powers it off (as configured) and waits for QEMU's SHUTDOWN event
    /// and exit.
    pub fn shutdown(&mut self, timeout: Duration) -> Result<()> {
        let t0 = Instant::now();
        let step = Step::start(self.step_name("shutdown"));
        let r = self.power_off(timeout);
        match &r {
            Ok(_) => drop(step.done()),
            Err(e) => drop(step.failed(e)),
        }
        self.timings.record("shutdown", t0.elapsed());
        r
    }

    fn power_off(&mut self, timeout: Duration) -> Result<()> {
        match self.poweroff.clone() {
            PowerOff::Console(cmd) => self.console()?.send_line(&cmd)?,
            PowerOff::AcpiButton => self.qmp()?.system_powerdown()?,
        }
        let tail = self.console.as_ref().map(|c| c.tail()).unwrap_or_default();
        self.qmp()?
            .wait_event("SHUTDOWN", timeout)
            .map_err(|e| match e {
                Error::Timeout { what, timeout, .. } => Error::Timeout {
                    what,
                    timeout,
                    tail,
                },
                e => e,
            })?;
        let status = self.qemu_mut()?.wait_exit(timeout)?;
        if !status.success() {
            return Err(Error::Qemu(format!(
                "QEMU of {} ended badly after power-off: {}",
                self.label,
                crate::vm::qemu_process::describe_exit(&status)
            )));
        }
        self.power = PowerState::Off;
        Ok(())
    }

    /// Closes the console and QEMU; the first error.
    pub(crate) fn close(&mut self) -> Result<()> {
        self.shell = None;
        let mut first = None;
        if let Some(c) = self.console.take() {
            if let Err(e) = c.close() {
                first.get_or_insert(e);
            }
        }
        if let Some(q) = self.qemu.take() {
            if let Err(e) = q.close() {
                first.get_or_insert(e);
            }
        }
        if self.power != PowerState::Off {
            self.power = PowerState::Absent;
        }
        first.map_or(Ok(()), Err)
    }
}
