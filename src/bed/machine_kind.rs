//! What a machine of a test bed is (a VM or a board), and what each of
//! its NICs is: the builder's part, before anything runs.

use std::path::PathBuf;

use crate::addr::Mac;
use crate::bed::dut::Dut;
use crate::board::{BoardPort, BoardSpec};
use crate::nic::DutNic;

/// What a machine is.
#[derive(Debug, Clone)]
pub(crate) enum MachineKind {
    /// A VM that QEMU runs.
    Vm(Box<Dut>),
    /// A board: hardware (or a virtual board) behind a power switch and a
    /// console server, its ports cabled to host interfaces.
    Board(Box<BoardSpec>),
}

impl MachineKind {
    /// The VM, if it is one.
    pub(crate) fn vm(&self) -> Option<&Dut> {
        match self {
            MachineKind::Vm(d) => Some(d.as_ref()),
            MachineKind::Board(_) => None,
        }
    }

    /// The VM, if it is one.
    pub(crate) fn vm_mut(&mut self) -> Option<&mut Dut> {
        match self {
            MachineKind::Vm(d) => Some(d.as_mut()),
            MachineKind::Board(_) => None,
        }
    }
}

/// What a machine is made of and how it is reached: the builder's part.
#[derive(Debug, Clone)]
pub(crate) struct MachineSpec {
    pub name: String,
    pub kind: MachineKind,
    pub tags: Vec<String>,
}

/// What one NIC of a machine is.
#[derive(Debug, Clone)]
pub(crate) enum NicKind {
    /// A QEMU NIC: the choices for it and the MAC alpy gave it.
    Vm { choices: DutNic, mac: Mac },
    /// A board's port, as the host reaches it.
    Port(BoardPort),
}

/// One NIC of a machine: what it is, and its capture file.
#[derive(Debug, Clone)]
pub(crate) struct MachineNic {
    pub kind: NicKind,
    pub pcap: PathBuf,
}
