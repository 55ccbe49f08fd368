//! How a test bed starts warm: restore the snapshot of its configuration,
//! or build it first (cold boot, preparation, save) and then restore it.
//! See [`crate::bed::warm`] for the snapshots themselves.

use std::time::{Duration, Instant};

use crate::bed::dut::{DiskPlan, Dut};
use crate::bed::state::WarmOutcome;
use crate::bed::testbed::TestBed;
use crate::bed::warm::{Key, Meta, Snapshot, Store, WarmStart};
use crate::bed::warm_ram::{self, RAM_FILE};
use crate::error::{Error, Result};
use crate::vm::migrate;
use crate::vm::qemu::RamFile;
use crate::vm::remote_shell::ShellState;

impl TestBed {
    /// Restores the snapshot, or builds it first (cold boot, preparation,
    /// save) and then restores it. A snapshot that fails to restore is
    /// removed and built again.
    pub(crate) fn warm_stand_up(&mut self, w: &WarmStart) -> Result<()> {
        let store = Store::open()?;
        let dut = self.dut_ref()?.dut.clone();
        let dut = &dut;
        let nics = self.dut_ref()?.qemu_nics(&self.nic_fds(0)?)?;
        let key = crate::bed::warm::key(dut, &nics, &w.version)?;
        log::debug!(target: "alpy::warm", "warm-start key {} from {:?}", key.hex, key.parts);
        for _ in 0..2 {
            if let Some(snap) = store.get(&key) {
                match self.restore(&snap) {
                    Ok(()) => {
                        store.touch(&snap);
                        self.dut_mut()?
                            .warm_outcome
                            .get_or_insert(WarmOutcome::Restored);
                        return Ok(());
                    }
                    Err(e) => {
                        log::warn!(
                            target: "alpy::warm",
                            "warm start: restoring snapshot {} failed ({e}); removing it and booting cold",
                            snap.dir.display()
                        );
                        self.dut_mut()?.stop_qemu();
                        store.remove(&snap);
                    }
                }
            }
            let lock = store.lock(&key)?;
            if store.get(&key).is_none() {
                let t0 = Instant::now();
                self.build_snapshot(w, dut, &store, &key)?;
                self.timings.record("snapshot_build", t0.elapsed());
                self.dut_mut()?.warm_outcome = Some(WarmOutcome::Built);
            }
            drop(lock);
        }
        Err(Error::Internal(format!(
            "warm-start snapshot {} was built but cannot be restored",
            key.hex
        )))
    }

    fn build_snapshot(&mut self, w: &WarmStart, dut: &Dut, store: &Store, key: &Key) -> Result<()> {
        let pending = store.begin(key)?;
        log::info!(target: "alpy::warm", "building warm-start snapshot {} (first use of this configuration)", key.hex);
        let ram_path = pending.dir.join(RAM_FILE);
        let cfg = dut.config();
        let ram =
            warm_ram::mapping_possible(&cfg.binary, cfg.memory_mib, &pending.dir).then(|| {
                RamFile {
                    path: ram_path.clone(),
                    shared: true,
                }
            });
        self.start_machine(0, DiskPlan::OverlaysIn(&pending.dir), ram.clone())?;
        self.boot(w.boot_timeout)?;
        self.timed("prepare", |bed| (w.prepare)(bed))?;
        self.reach_ready_point(w)?;
        let m = self.dut_ref()?;
        let running = m.resumed_at.map_or(0.0, |t| t.elapsed().as_secs_f64());
        let shell_prompt = m.shell.as_ref().map(|s| s.prompt().to_string());
        let clock_base = m.virtual_clock_base;
        let mapped = ram.is_some();
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
        log::info!(target: "alpy::warm", "saved {} MB of VM state in {save_s:.2} s{}", saved >> 20,
            if mapped { " (the RAM stays in its file, mapped by restoring beds)" } else { "" });
        if dut.is_uefi() {
            let vars = self.artifacts.join("OVMF_VARS.fd");
            std::fs::copy(&vars, pending.dir.join("OVMF_VARS.fd"))
                .map_err(|e| Error::io(format!("keep {} in the snapshot", vars.display()), e))?;
        }
        self.dut_mut()?.stop_qemu();
        // Fingerprinted once QEMU is gone: nothing writes the file after.
        let ram_meta = if mapped {
            Some(warm_ram::fingerprint(&ram_path)?)
        } else {
            None
        };
        let meta = Meta {
            parts: key.parts.clone(),
            virtual_clock_s: clock_base + running,
            shell_prompt,
            disks: dut.disk_count(),
            uefi_vars: dut.is_uefi(),
            save_s,
            ram: ram_meta,
        };
        store.commit(pending, &meta)?;
        // The next round restores what was just saved, like any later bed.
        let m = self.dut_mut()?;
        m.resumed_at = None;
        m.capture_offset = None;
        m.shell = None;
        Ok(())
    }

    fn restore(&mut self, snap: &Snapshot) -> Result<()> {
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
        self.start_machine(0, DiskPlan::BackedBy(&snap.dir), ram)?;
        if mapped && !migrate::ignore_shared_ram(self.qmp()?)? {
            return Err(Error::Qemu(
                "this QEMU cannot load a snapshot whose RAM is a file (no x-ignore-shared)".into(),
            ));
        }
        migrate::load(self.qmp()?, &snap.state(), Duration::from_secs(120))?;
        let m = self.dut_mut()?;
        m.virtual_clock_base = snap.meta.virtual_clock_s;
        let timeout = m.console_timeout;
        m.shell = snap
            .meta
            .shell_prompt
            .as_deref()
            .map(|p| ShellState::from_prompt(p, timeout));
        m.at_ready_point = true;
        self.timings.record("restore", t0.elapsed());
        Ok(())
    }
}
