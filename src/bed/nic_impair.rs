//! Impairing a machine's NIC, whatever is at its far side: a segment's
//! port (in the segment's switch) or a node's link (its relay or `tc`).

use crate::bed::testbed::TestBed;
use crate::error::{Error, Result};
use crate::net::{Direction, Impairment};

impl TestBed {
    /// Impairs machine `machine`'s NIC `nic`: [`Direction::ToDut`] the
    /// frames it receives, [`Direction::ToNode`] the frames it sends, or
    /// both. On a segment (a wire between machines) the segment's switch
    /// does it; on a node's link, the node does (frames the NIC sends need
    /// the link's relay, [`crate::Link::relay`]).
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use alpy::{Direction, Impairment};
    /// # fn f(bed: &mut alpy::TestBed) -> alpy::Result<()> {
    /// let wan = Impairment { delay: Some(Duration::from_millis(50)), ..Default::default() };
    /// bed.impair_nic("r1", 1, Direction::Both, &wan)?;
    /// // ...
    /// bed.clear_nic_impairment("r1", 1)?;
    /// # Ok(()) }
    /// ```
    pub fn impair_nic(
        &mut self,
        machine: &str,
        nic: usize,
        dir: Direction,
        imp: &Impairment,
    ) -> Result<()> {
        if self.is_remote() {
            return Err(Error::Config(format!(
                "test bed {} runs on a lab server: impair its links through its nodes \
                 (bed.node(..)?.impair_direction(..))",
                self.name()
            )));
        }
        let m = self
            .machines
            .iter()
            .position(|x| x.name() == machine)
            .ok_or_else(|| Error::NotFound {
                what: format!("machine {machine:?} of test bed {}", self.name()),
                hint: format!("its machines are {}", self.machine_names().join(", ")),
            })?;
        self.machines[m].nic(nic)?;
        log::info!(target: "alpy::testbed", "{machine}:{nic}: impair {dir:?}: {imp:?}");
        let wiring = self
            .wiring
            .as_ref()
            .ok_or_else(|| Error::Closed(format!("the links of test bed {}", self.name())))?;
        if let Some(r) = wiring.impair(m, nic, dir, imp) {
            return r;
        }
        let node = wiring
            .node_of(m, nic)
            .ok_or_else(|| Error::Internal(format!("{machine}:{nic} is wired to nothing")))?;
        let node = self.node(node)?;
        if *imp == Impairment::default() {
            node.clear_impairment()
        } else {
            node.impair_direction(dir, imp)
        }
    }

    /// Takes machine `machine`'s NIC `nic`'s impairment off, both ways.
    pub fn clear_nic_impairment(&mut self, machine: &str, nic: usize) -> Result<()> {
        self.impair_nic(machine, nic, Direction::Both, &Impairment::default())
    }
}
