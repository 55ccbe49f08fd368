//! A machine's power and the clock of its captures: resume (vCPUs run, or
//! a board's power on), the offset from QEMU's capture stamps to host
//! time measured then, the captures, and the power-off.

use std::time::{Duration, Instant};

use crate::bed::builder::PowerOff;
use crate::bed::machine::{Machine, Runs};
use crate::bed::state::PowerState;
use crate::error::{Error, Result};
use crate::logging::{self, Step};
use crate::pcap::Capture;

impl Machine {
    /// Lets the vCPUs run.
    pub fn resume(&mut self) -> Result<()> {
        if let Runs::Board(_) = &self.runs {
            return self.resume_board();
        }
        if let Runs::Lab(r) = &self.runs {
            logging::step("Resume the DUT (on the lab)", || r.power("on"))?;
            self.power = PowerState::Running;
            return Ok(());
        }
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
                crate::journal::emit(crate::journal::Event::CaptureClock {
                    machine: self.name().to_string(),
                    offset_s: o,
                });
            }
        }
        Ok(())
    }

    /// Its NIC `nic`'s capture as far as it goes now, with host time
    /// stamps (see [`crate::TestBed::capture`]).
    pub fn capture(&self, nic: usize) -> Result<Capture> {
        let path = &self.nic(nic)?.pcap;
        let cap = match &self.runs {
            // The lab's file, saved under the same name here.
            Runs::Lab(r) => r.capture_to(&nic.to_string(), path)?,
            _ => Capture::open(path)?,
        };
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
        if let Runs::Board(_) = &self.runs {
            return self.power_off_board();
        }
        if self.is_on_lab() {
            self.lab_power_off(timeout)?;
            self.power = PowerState::Off;
            return Ok(());
        }
        match self.poweroff.clone() {
            PowerOff::Console(cmd) => self.console()?.send_line(&cmd)?,
            PowerOff::AcpiButton => self.qmp()?.system_powerdown()?,
        }
        let tail = self.console_tail();
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
}
