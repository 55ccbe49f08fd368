//! How a test bed starts warm: restore the snapshot of its configuration,
//! or build it first (cold boot, preparation, save) and then restore it.
//! A one-machine bed prepared through the bed ([`WarmStart::new`]) has
//! one snapshot with a ready point; with [`WarmStart::per_machine`], each
//! machine has its own and they restore in parallel. See
//! [`crate::bed::warm`] for the snapshots themselves.

use std::time::Instant;

use crate::bed::state::WarmOutcome;
use crate::bed::testbed::TestBed;
use crate::bed::warm::{Key, Preparation, Snapshot, Store, WarmStart};
use crate::bed::warm_machine::{restore_or_build, Alone, WarmSubject};
use crate::error::{Error, Result};

/// The bed's DUT, warm-started through the bed: its preparation and ready
/// point see the whole bed.
struct WholeBed<'a> {
    bed: &'a mut TestBed,
    warm: &'a WarmStart,
}

impl WarmSubject for WholeBed<'_> {
    fn restore(&mut self, snap: &Snapshot) -> Result<()> {
        let fds = self.bed.nic_fds(0)?;
        self.bed.dut_mut()?.restore(&fds, snap)
    }

    fn abandon(&mut self) {
        if let Ok(m) = self.bed.dut_mut() {
            m.stop_qemu();
        }
    }

    fn build(&mut self, store: &Store, key: &Key) -> Result<()> {
        let t0 = Instant::now();
        let pending = store.begin(key)?;
        let fds = self.bed.nic_fds(0)?;
        let mapped = self.bed.dut_mut()?.start_build(&fds, &pending)?;
        let w = self.warm;
        self.bed.boot(w.boot_timeout)?;
        self.bed.timed("prepare", |bed| w.prepare_bed(bed))?;
        self.bed.reach_ready_point(w)?;
        self.bed
            .dut_mut()?
            .save_build(store, pending, key, mapped)?;
        self.bed.timings.record("snapshot_build", t0.elapsed());
        Ok(())
    }

    fn outcome(&mut self, o: WarmOutcome) {
        if let Ok(m) = self.bed.dut_mut() {
            match (m.warm_outcome, o) {
                (Some(WarmOutcome::Built), WarmOutcome::Restored) => {}
                _ => m.warm_outcome = Some(o),
            }
        }
    }
}

impl TestBed {
    /// Starts every machine warm: restored from its snapshot, or the
    /// snapshot built first.
    pub(crate) fn warm_stand_up(&mut self, w: &WarmStart) -> Result<()> {
        let store = Store::open_with(&self.settings)?;
        match &w.prepare {
            Preparation::Bed(_) => {
                if self.machines.len() > 1 {
                    return Err(Error::Config(format!(
                        "test bed {} has {} machines: each is prepared and saved on its own; \
                         use WarmStart::per_machine(version, |machine| ..)",
                        self.name,
                        self.machines.len()
                    )));
                }
                let key = self.machine_key(0, &w.version)?;
                restore_or_build(&mut WholeBed { bed: self, warm: w }, &store, &key)
            }
            Preparation::EachMachine(prepare) => {
                let keys: Vec<Key> = (0..self.machines.len())
                    .map(|m| self.machine_key(m, &w.version))
                    .collect::<Result<_>>()?;
                let fds: Vec<_> = (0..self.machines.len())
                    .map(|m| self.nic_fds(m))
                    .collect::<Result<_>>()?;
                let store = &store;
                crate::logging::each_at_once(
                    self.machines.iter_mut().zip(fds).zip(&keys),
                    "a machine's warm start",
                    |((machine, fds), key)| {
                        let mut alone = Alone {
                            machine,
                            fds,
                            prepare: prepare.as_ref(),
                            boot_timeout: w.boot_timeout,
                        };
                        restore_or_build(&mut alone, store, key)
                    },
                )
                .into_iter()
                .collect()
            }
        }
    }

    /// Machine `m`'s snapshot key: its configuration and NICs, the
    /// preparation's version, and (in a bed of several) its name.
    fn machine_key(&self, m: usize, version: &str) -> Result<Key> {
        let machine = &self.machines[m];
        let nics = machine.qemu_nics(&self.nic_fds(m)?)?;
        let mut key = crate::bed::warm::key(machine.vm()?, &nics, version)?;
        if self.machines.len() > 1 {
            key.parts.insert("machine".into(), machine.name.clone());
            key = Key::new(key.parts);
        }
        log::debug!(target: "alpy::warm", "{}: warm-start key {} from {:?}", machine.label, key.hex, key.parts);
        Ok(key)
    }
}
