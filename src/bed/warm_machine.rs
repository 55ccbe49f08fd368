//! One machine's part of a warm start: start QEMU to build its snapshot,
//! save it, restore it; and the loop that restores a snapshot, or builds
//! it first, for a bed ([`crate::bed::warm_start`]) or for one machine of
//! a bed of several.

use std::os::fd::RawFd;
use std::time::{Duration, Instant};

use crate::bed::dut::DiskPlan;
use crate::bed::machine::Machine;
use crate::bed::state::WarmOutcome;
use crate::bed::warm::{Key, Meta, Pending, Snapshot, Store};
use crate::bed::warm_ram::{self, RAM_FILE};
use crate::error::{Error, Result};
use crate::vm::migrate;
use crate::vm::qemu::RamFile;
use crate::vm::remote_shell::ShellState;

/// What a warm start drives: restore a snapshot, give up on a QEMU whose
/// restore failed, build a snapshot.
pub(crate) trait WarmSubject {
    /// Starts from `snap`, paused at its ready point.
    fn restore(&mut self, snap: &Snapshot) -> Result<()>;
    /// Ends the QEMU of a failed restore.
    fn abandon(&mut self);
    /// Boots cold, prepares, saves into `store` under `key`.
    fn build(&mut self, store: &Store, key: &Key) -> Result<()>;
    /// Records how it went.
    fn outcome(&mut self, o: WarmOutcome);
}

/// Restores the snapshot of `key`, or builds it first (one builder at a
/// time, others wait on its lock) and then restores it. A snapshot that
/// fails to restore is removed and built again.
pub(crate) fn restore_or_build(s: &mut dyn WarmSubject, store: &Store, key: &Key) -> Result<()> {
    for _ in 0..2 {
        if let Some(snap) = store.get(key) {
            match s.restore(&snap) {
                Ok(()) => {
                    store.touch(&snap);
                    s.outcome(WarmOutcome::Restored);
                    return Ok(());
                }
                Err(e) => {
                    log::warn!(
                        target: "alpy::warm",
                        "warm start: restoring snapshot {} failed ({e}); removing it and booting cold",
                        snap.dir.display()
                    );
                    s.abandon();
                    store.remove(&snap);
                }
            }
        }
        let lock = store.lock(key)?;
        if store.get(key).is_none() {
            s.build(store, key)?;
            s.outcome(WarmOutcome::Built);
        }
        drop(lock);
    }
    Err(Error::Internal(format!(
        "warm-start snapshot {} was built but cannot be restored",
        key.hex
    )))
}

impl Machine {
    /// Starts QEMU to build a snapshot in `pending`: its disks' writes
    /// there, its RAM in a file there when that can be mapped later.
    /// Returns whether it is.
    pub(crate) fn start_build(&mut self, fds: &[(RawFd, bool)], pending: &Pending) -> Result<bool> {
        log::info!(target: "alpy::warm", "{}: building warm-start snapshot in {}", self.label, pending.dir.display());
        let cfg = self.vm()?.config();
        let ram =
            warm_ram::mapping_possible(&cfg.binary, cfg.memory_mib, &pending.dir, pending.map_ram)
                .then(|| RamFile {
                    path: pending.dir.join(RAM_FILE),
                    shared: true,
                });
        let mapped = ram.is_some();
        self.start_qemu(fds, DiskPlan::OverlaysIn(&pending.dir), ram)?;
        Ok(mapped)
    }

    /// Saves the machine (booted, prepared, at its ready point) into
    /// `pending`, ends its QEMU and commits the snapshot.
    pub(crate) fn save_build(
        &mut self,
        store: &Store,
        pending: Pending,
        key: &Key,
        mapped: bool,
    ) -> Result<()> {
        let running = self.resumed_at.map_or(0.0, |t| t.elapsed().as_secs_f64());
        let shell_prompt = self.shell.as_ref().map(|s| s.prompt().to_string());
        // Asked before the build: a refusal now would leave a stream whose
        // RAM block no plain restore knows.
        if mapped && !migrate::ignore_shared_ram(self.qmp()?)? {
            return Err(Error::Qemu(
                "QEMU refused x-ignore-shared for a snapshot whose RAM is a file".into(),
            ));
        }
        let t0 = Instant::now();
        let saved = migrate::save(self.qmp()?, &pending.state(), Duration::from_secs(300))?;
        let save_s = t0.elapsed().as_secs_f64();
        self.timings.record("save", t0.elapsed());
        log::info!(target: "alpy::warm", "{}: saved {} MB of VM state in {save_s:.2} s{}", self.label, saved >> 20,
            if mapped { " (the RAM stays in its file, mapped by restoring beds)" } else { "" });
        let dut = self.vm()?.clone();
        if dut.is_uefi() {
            let vars = self.dir.join("OVMF_VARS.fd");
            std::fs::copy(&vars, pending.dir.join("OVMF_VARS.fd"))
                .map_err(|e| Error::io(format!("keep {} in the snapshot", vars.display()), e))?;
        }
        self.stop_qemu();
        // Fingerprinted once QEMU is gone: nothing writes the file after.
        let ram = if mapped {
            Some(warm_ram::fingerprint(&pending.dir.join(RAM_FILE))?)
        } else {
            None
        };
        let meta = Meta {
            parts: key.parts.clone(),
            virtual_clock_s: self.virtual_clock_base + running,
            shell_prompt,
            disks: dut.disk_count(),
            uefi_vars: dut.is_uefi(),
            save_s,
            ram,
        };
        store.commit(pending, &meta)?;
        // The next round restores what was just saved, like any later bed.
        self.resumed_at = None;
        self.capture_offset = None;
        self.shell = None;
        Ok(())
    }

    /// Starts from `snap`: QEMU over its disks (and its RAM file, mapped
    /// copy-on-write), the state loaded, paused at the ready point.
    pub(crate) fn restore(&mut self, fds: &[(RawFd, bool)], snap: &Snapshot) -> Result<()> {
        let t0 = Instant::now();
        let ram = match &snap.meta.ram {
            Some(m) => {
                let path = snap.dir.join(RAM_FILE);
                warm_ram::verify(&path, m)?;
                Some(RamFile {
                    path,
                    shared: false,
                })
            }
            None => None,
        };
        let mapped = ram.is_some();
        self.start_qemu(fds, DiskPlan::BackedBy(&snap.dir), ram)?;
        if mapped && !migrate::ignore_shared_ram(self.qmp()?)? {
            return Err(Error::Qemu(
                "this QEMU cannot load a snapshot whose RAM is a file (no x-ignore-shared)".into(),
            ));
        }
        migrate::load(self.qmp()?, &snap.state(), Duration::from_secs(120))?;
        self.virtual_clock_base = snap.meta.virtual_clock_s;
        let timeout = self.console_timeout;
        self.shell = snap
            .meta
            .shell_prompt
            .as_deref()
            .map(|p| ShellState::from_prompt(p, timeout));
        self.at_ready_point = true;
        self.timings.record("restore", t0.elapsed());
        Ok(())
    }
}

/// A machine of a bed of several, warm-started on its own: prepared by
/// the warm start's per-machine step, with no ready point but the end of
/// that step.
pub(crate) struct Alone<'a> {
    pub machine: &'a mut Machine,
    pub fds: Vec<(RawFd, bool)>,
    pub prepare: &'a crate::bed::warm::MachinePrepare,
    pub boot_timeout: Duration,
}

impl WarmSubject for Alone<'_> {
    fn restore(&mut self, snap: &Snapshot) -> Result<()> {
        self.machine.restore(&self.fds, snap)
    }

    fn abandon(&mut self) {
        self.machine.stop_qemu();
    }

    fn build(&mut self, store: &Store, key: &Key) -> Result<()> {
        let t0 = Instant::now();
        let pending = store.begin(key)?;
        let mapped = self.machine.start_build(&self.fds, &pending)?;
        self.machine.boot(self.boot_timeout)?;
        let t1 = Instant::now();
        (self.prepare)(self.machine)?;
        self.machine.timings.record("prepare", t1.elapsed());
        self.machine.save_build(store, pending, key, mapped)?;
        self.machine.timings.record("snapshot_build", t0.elapsed());
        Ok(())
    }

    fn outcome(&mut self, o: WarmOutcome) {
        match (self.machine.warm_outcome, o) {
            (Some(WarmOutcome::Built), WarmOutcome::Restored) => {}
            _ => self.machine.warm_outcome = Some(o),
        }
    }
}
