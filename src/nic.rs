//! What a DUT's NIC on one link is: its model, MAC, MTU and option ROM.
//! Shared by the VM side (the QEMU device) and the network side (a
//! [`crate::Link`] chooses its DUT NIC).

use std::path::PathBuf;

use crate::addr::Mac;
use crate::error::{Error, Result};

/// The emulated NIC model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NicModel {
    /// Intel 82540EM (`e1000`).
    E1000,
    /// Intel 82574L (`e1000e`).
    E1000e,
    /// VMware's paravirtual NIC (`vmxnet3`).
    Vmxnet3,
    /// Virtio network device (`virtio-net-pci`).
    VirtioNet,
    /// Realtek 8139 (`rtl8139`).
    Rtl8139,
    /// Any other QEMU device name.
    Other(String),
}

impl NicModel {
    /// QEMU's device name.
    pub fn device(&self) -> &str {
        match self {
            NicModel::E1000 => "e1000",
            NicModel::E1000e => "e1000e",
            NicModel::Vmxnet3 => "vmxnet3",
            NicModel::VirtioNet => "virtio-net-pci",
            NicModel::Rtl8139 => "rtl8139",
            NicModel::Other(s) => s,
        }
    }
}

impl std::str::FromStr for NicModel {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s {
            "" => return Err(Error::Config("empty NIC model".into())),
            "e1000" => NicModel::E1000,
            "e1000e" => NicModel::E1000e,
            "vmxnet3" => NicModel::Vmxnet3,
            "virtio" | "virtio-net" | "virtio-net-pci" => NicModel::VirtioNet,
            "rtl8139" => NicModel::Rtl8139,
            other => NicModel::Other(other.to_string()),
        })
    }
}

/// A NIC's option ROM (its PXE code). Loading none is the default: with
/// eight NICs, OVMF spends seconds starting their iPXE ROMs before it
/// boots the disk.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum NicRom {
    /// No ROM (`romfile=`).
    #[default]
    None,
    /// QEMU's own ROM for the model (iPXE), for guests that boot from the
    /// network.
    QemuDefault,
    /// This ROM file.
    File(PathBuf),
}

/// The DUT's side of one link: what differs from the DUT's defaults.
///
/// ```
/// use alpy::nic::{DutNic, NicModel};
/// let nic = DutNic::new().model(NicModel::Vmxnet3).mtu(9000);
/// assert_eq!(nic.model, Some(NicModel::Vmxnet3));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DutNic {
    /// The model (`None`: the DUT's [`crate::Dut::nic_model`]).
    pub model: Option<NicModel>,
    /// The MAC (`None`: derived from the run and the link's index).
    pub mac: Option<Mac>,
    /// The link's MTU: set on the node's side, and offered to a virtio
    /// guest (`host_mtu`).
    pub mtu: Option<u32>,
    /// The option ROM.
    pub rom: NicRom,
}

impl DutNic {
    /// The DUT's defaults.
    pub fn new() -> DutNic {
        DutNic::default()
    }

    /// Chooses the model.
    pub fn model(mut self, model: NicModel) -> Self {
        self.model = Some(model);
        self
    }

    /// Chooses the DUT-side MAC.
    pub fn mac(mut self, mac: Mac) -> Self {
        self.mac = Some(mac);
        self
    }

    /// Chooses the MTU.
    pub fn mtu(mut self, mtu: u32) -> Self {
        self.mtu = Some(mtu);
        self
    }

    /// Chooses the option ROM.
    pub fn rom(mut self, rom: NicRom) -> Self {
        self.rom = rom;
        self
    }
}
