//! How a test bed stands up, in order: its nodes (beside the reaper), the
//! wires between its machines' NICs, the first machine's QEMU (warm or
//! cold), the others' in parallel, then the links' start states.

use crate::net::NetMode;
use std::sync::Arc;

use crate::bed::board_wire::BoardNics;
use crate::bed::builder::TestBedBuilder;
use crate::bed::dut::DiskPlan;
use crate::bed::machine::NicKind;
use crate::bed::state::WarmOutcome;
use crate::bed::testbed::TestBed;
use crate::bed::wiring::{Far, Plan, Wiring};
use crate::error::{Error, Result};
use crate::logging::{self, Step};
use crate::net::{Docker, NodeOptions, Nodes};
use crate::vm::qemu::RamFile;

impl TestBed {
    pub(crate) fn stand_up(&mut self, b: &TestBedBuilder, plan: &Plan) -> Result<()> {
        let docker = logging::step("Connect to Docker", Docker::connect)?;
        // Reaping touches only dead owners' resources: it runs beside the
        // node creation instead of before it.
        std::thread::scope(|s| {
            let reaper = b
                .reap
                .then(|| s.spawn(logging::inherit(|| crate::bed::reap::reap(&docker))));
            let created = self.create_nodes(&docker, b);
            if let Some(r) = reaper {
                match crate::util::join_scoped(r, "the reaper") {
                    Ok(reaped) => log::debug!(target: "alpy::testbed", "reaped {reaped:?}"),
                    Err(e) => log::warn!(target: "alpy::testbed", "reaping dead runs failed: {e}"),
                }
            }
            created
        })?;
        let boards = self.board_nics();
        self.wiring = Some(Wiring::wire(
            plan,
            &b.segments,
            &b.links,
            self.nodes()?,
            &boards,
        )?);
        match self.warm.clone() {
            Some(w) if self.settings.warm_enabled() => self.warm_stand_up(&w),
            Some(w) => {
                log::info!(target: "alpy::warm", "ALPY_WARM=off: booting cold");
                self.start_machine(0, DiskPlan::AsConfigured, None)?;
                self.start_other_machines()?;
                self.boot(w.boot_timeout)?;
                self.timed("prepare", |bed| w.prepare_bed(bed))?;
                for m in &mut self.machines {
                    m.warm_outcome = Some(WarmOutcome::Cold);
                }
                Ok(())
            }
            None => {
                self.start_machine(0, DiskPlan::AsConfigured, None)?;
                self.start_other_machines()
            }
        }?;
        self.apply_link_states(&b.links, plan)
    }

    /// The boards' ports, for the wires.
    fn board_nics(&self) -> Vec<BoardNics> {
        self.machines
            .iter()
            .enumerate()
            .filter_map(|(m, machine)| {
                let spec = machine.board_spec()?;
                let ports = machine
                    .nics
                    .iter()
                    .filter_map(|n| match &n.kind {
                        NicKind::Port(p) => Some((p.clone(), n.pcap.clone())),
                        NicKind::Vm { .. } => None,
                    })
                    .collect();
                Some(BoardNics {
                    machine: m,
                    board: spec.name.clone(),
                    ports,
                })
            })
            .collect()
    }

    /// Starts every machine but the first, in parallel.
    pub(crate) fn start_other_machines(&mut self) -> Result<()> {
        let fds: Vec<_> = (1..self.machines.len())
            .map(|m| self.nic_fds(m))
            .collect::<Result<_>>()?;
        logging::each_at_once(
            self.machines[1..].iter_mut().zip(&fds),
            "a machine's start",
            |(m, fds)| m.start(fds, DiskPlan::AsConfigured, None),
        )
        .into_iter()
        .collect()
    }

    /// What the links ask for once everything runs: impairment, and links
    /// that start down.
    fn apply_link_states(&mut self, links: &[crate::net::Link], plan: &Plan) -> Result<()> {
        for (i, l) in links.iter().enumerate() {
            if let Some((dir, imp)) = &l.impairment {
                log::info!(target: "alpy::testbed", "link {i}: impair {dir:?}: {imp:?}");
                self.nodes()?.node(i)?.impair_direction(*dir, imp)?;
            }
            if l.down {
                log::info!(target: "alpy::testbed", "link {i}: starts down");
                let (m, nic) = plan
                    .nics
                    .iter()
                    .enumerate()
                    .find_map(|(m, fars)| {
                        fars.iter().position(|f| *f == Far::Node(i)).map(|n| (m, n))
                    })
                    .ok_or_else(|| Error::Internal(format!("link {i} is on no machine")))?;
                if m == 0 {
                    self.set_dut_link(nic, false)?;
                } else {
                    self.machines[m].set_link(nic, false)?;
                }
            }
        }
        Ok(())
    }

    /// Machine `m`'s NICs as QEMU takes them (none for a board).
    pub(crate) fn nic_fds(&self, m: usize) -> Result<Vec<(std::os::fd::RawFd, bool)>> {
        if self
            .machines
            .get(m)
            .is_some_and(|x| x.board_spec().is_some())
        {
            return Ok(Vec::new());
        }
        let wiring = self
            .wiring
            .as_ref()
            .ok_or_else(|| Error::Internal("QEMU started before the links".into()))?;
        wiring.fds(m, self.nodes()?)
    }

    /// Starts machine `m`'s QEMU (paused).
    pub(crate) fn start_machine(
        &mut self,
        m: usize,
        plan: DiskPlan<'_>,
        ram: Option<RamFile>,
    ) -> Result<()> {
        let fds = self.nic_fds(m)?;
        let machine = self
            .machines
            .get_mut(m)
            .ok_or_else(|| Error::Internal(format!("no machine {m}")))?;
        machine.start(&fds, plan, ram)
    }

    fn create_nodes(&mut self, docker: &Arc<Docker>, b: &TestBedBuilder) -> Result<()> {
        let step = Step::start(format!("Create {} nodes", b.links.len()));
        let opts = NodeOptions {
            mode: Some(match b.net_mode {
                Some(m) => m,
                None => NetMode::detect_with(b.settings.net_mode())?,
            }),
            log_dir: Some(self.artifacts.clone()),
            image: b.node_image.clone(),
            fixed_macs: b.warm.is_some(),
        };
        match Nodes::create(docker, &self.run, &b.links, &opts) {
            Ok(nodes) => {
                let (containers, taps) = nodes.timings();
                step.done();
                self.timings.record("nodes", containers);
                self.timings.record("taps", taps);
                self.nodes = Some(nodes);
                Ok(())
            }
            Err(e) => {
                step.failed(&e);
                Err(e)
            }
        }
    }
}
