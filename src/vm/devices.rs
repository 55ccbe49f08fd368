//! The DUT's devices on QEMU's command line: disks (bus, medium, boot
//! order) and NICs (model, MAC, MTU, option ROM, capture).

use std::os::fd::RawFd;
use std::path::PathBuf;

use crate::error::{Error, Result};
pub use crate::nic::{NicModel, NicRom};

/// How a disk image is attached without ever modifying it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiskMode {
    /// `snapshot=on`: writes go to a temporary file QEMU deletes.
    Snapshot,
    /// A qcow2 overlay at this path (created by [`crate::vm::qemu_process`]),
    /// kept after the run for inspection.
    Overlay(PathBuf),
    /// Read-only (CD-ROMs, config drives).
    ReadOnly,
}

/// The bus a disk sits on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DiskBus {
    /// `virtio-blk-pci`.
    #[default]
    Virtio,
    /// IDE (`ide-hd`/`ide-cd` on the machine's IDE or, on q35, AHCI ports).
    Ide,
    /// SATA: an AHCI controller of its own, one port per disk.
    Sata,
    /// `virtio-scsi-pci` with `scsi-hd`/`scsi-cd`.
    Scsi,
    /// NVMe (`nvme`, one controller per disk).
    Nvme,
}

impl std::str::FromStr for DiskBus {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s {
            "virtio" => DiskBus::Virtio,
            "ide" => DiskBus::Ide,
            "sata" | "ahci" => DiskBus::Sata,
            "scsi" | "virtio-scsi" => DiskBus::Scsi,
            "nvme" => DiskBus::Nvme,
            _ => {
                return Err(Error::Config(format!(
                    "unknown disk bus {s:?}: expected virtio, ide, sata, scsi or nvme"
                )))
            }
        })
    }
}

/// A disk's medium.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Media {
    /// A hard disk.
    #[default]
    Disk,
    /// A CD-ROM (read-only; IDE, SATA or SCSI).
    Cdrom,
}

/// A disk image.
#[derive(Debug, Clone)]
pub struct Disk {
    /// The base image.
    pub path: PathBuf,
    /// `qcow2`, `raw`, ... (`None`: QEMU probes, with a warning).
    pub format: Option<String>,
    /// The bus.
    pub bus: DiskBus,
    /// Disk or CD-ROM.
    pub media: Media,
    /// How writes are kept away from the base image.
    pub mode: DiskMode,
    /// Firmware boot order (`bootindex`); `None`: not a boot device.
    pub bootindex: Option<u32>,
}

impl Disk {
    /// Whether QEMU can attach it as described.
    pub fn check(&self) -> Result<()> {
        self.check_mode()?;
        if self.media == Media::Cdrom && matches!(self.bus, DiskBus::Virtio | DiskBus::Nvme) {
            return Err(Error::Config(format!(
                "{}: a CD-ROM needs an IDE, SATA or SCSI bus, not {:?}",
                self.path.display(),
                self.bus
            )));
        }
        Ok(())
    }

    /// Whether `disks` fit the machine's IDE buses (4 units on `pc`, 6 on
    /// `q35`).
    pub fn check_all(disks: &[Disk], machine: &str) -> Result<()> {
        let ide = disks.iter().filter(|d| d.bus == DiskBus::Ide).count();
        let max = if machine.contains("q35") { 6 } else { 4 };
        if ide > max {
            return Err(Error::Config(format!(
                "{ide} IDE devices, but machine {machine} has {max} IDE units: put some on SATA"
            )));
        }
        for d in disks {
            d.check()?;
        }
        Ok(())
    }

    fn check_mode(&self) -> Result<()> {
        if self.mode == DiskMode::ReadOnly
            && self.media == Media::Disk
            && matches!(self.bus, DiskBus::Ide | DiskBus::Sata)
        {
            return Err(Error::Config(format!(
                "{}: IDE and SATA hard disks cannot be read-only: attach it with snapshot=on",
                self.path.display()
            )));
        }
        Ok(())
    }
}

/// One guest NIC, backed by a tap fd the QEMU process inherits.
#[derive(Debug, Clone)]
pub struct Nic {
    /// Device model.
    pub model: NicModel,
    /// Guest MAC address, `52:54:00:..` style; QEMU picks one if `None`.
    pub mac: Option<String>,
    /// The tap's file descriptor in this process (inherited by QEMU), or
    /// with `dgram`, a connected datagram socket's.
    pub tap_fd: RawFd,
    /// `tap_fd` is a datagram socket (a relay's end, see `alpy::net::impair`),
    /// not a tap.
    pub dgram: bool,
    /// Where `filter-dump` writes every frame of this NIC, if anywhere.
    pub pcap: Option<PathBuf>,
    /// MTU offered to a virtio guest (`host_mtu`).
    pub mtu: Option<u32>,
    /// The option ROM.
    pub rom: NicRom,
}

/// A path as a QEMU option value: commas are doubled.
pub(crate) fn opt_path(p: &std::path::Path) -> String {
    p.to_string_lossy().replace(',', ",,")
}

/// `-drive`/`-device` arguments for `disks`, controllers first. IDE
/// devices are placed explicitly (on `pc`: two buses of two units; on
/// `q35`: the ICH9 AHCI's six ports), never left to QEMU, which would put
/// them on a SATA controller's one-unit buses.
pub(crate) fn disk_args(disks: &[Disk], machine: &str) -> Vec<String> {
    let q35 = machine.contains("q35");
    let mut a = Vec::new();
    if disks.iter().any(|d| d.bus == DiskBus::Sata) {
        a.extend(["-device".into(), "ahci,id=sata".into()]);
    }
    if disks.iter().any(|d| d.bus == DiskBus::Scsi) {
        a.extend(["-device".into(), "virtio-scsi-pci,id=scsi".into()]);
    }
    let mut sata_port = 0;
    let mut ide_unit = 0;
    for (n, d) in disks.iter().enumerate() {
        let id = format!("disk{n}");
        let mut drive = format!("if=none,id={id}");
        match &d.mode {
            DiskMode::Snapshot => {
                drive.push_str(&format!(",file={},snapshot=on", opt_path(&d.path)));
                if let Some(f) = &d.format {
                    drive.push_str(&format!(",format={f}"));
                }
            }
            DiskMode::Overlay(overlay) => {
                drive.push_str(&format!(",file={},format=qcow2", opt_path(overlay)));
            }
            DiskMode::ReadOnly => {
                drive.push_str(&format!(",file={},readonly=on", opt_path(&d.path)));
                if let Some(f) = &d.format {
                    drive.push_str(&format!(",format={f}"));
                }
            }
        }
        if d.media == Media::Cdrom {
            drive.push_str(",media=cdrom");
        }
        let cd = d.media == Media::Cdrom;
        let mut dev = match d.bus {
            DiskBus::Virtio => format!("virtio-blk-pci,drive={id}"),
            DiskBus::Ide => {
                let k = ide_unit;
                ide_unit += 1;
                let place = if q35 {
                    format!("bus=ide.{k}")
                } else {
                    format!("bus=ide.{},unit={}", k / 2, k % 2)
                };
                format!(
                    "{},drive={id},{place}",
                    if cd { "ide-cd" } else { "ide-hd" }
                )
            }
            DiskBus::Sata => {
                let port = sata_port;
                sata_port += 1;
                format!(
                    "{},drive={id},bus=sata.{port}",
                    if cd { "ide-cd" } else { "ide-hd" }
                )
            }
            DiskBus::Scsi => format!(
                "{},drive={id},bus=scsi.0",
                if cd { "scsi-cd" } else { "scsi-hd" }
            ),
            DiskBus::Nvme => format!("nvme,drive={id},serial=alpy{n}"),
        };
        if let Some(b) = d.bootindex {
            dev.push_str(&format!(",bootindex={b}"));
        }
        a.extend(["-drive".into(), drive, "-device".into(), dev]);
    }
    a
}

/// `-netdev`/`-device`/`-object filter-dump` arguments for `nics`.
pub(crate) fn nic_args(nics: &[Nic]) -> Vec<String> {
    let mut a: Vec<String> = Vec::new();
    for (n, nic) in nics.iter().enumerate() {
        let netdev = if nic.dgram {
            format!("dgram,id=net{n},local.type=fd,local.str={}", nic.tap_fd)
        } else {
            format!("tap,id=net{n},fd={}", nic.tap_fd)
        };
        a.extend(["-netdev".into(), netdev]);
        let mut dev = format!("{},netdev=net{n},id=nic{n}", nic.model.device());
        if let Some(mac) = &nic.mac {
            dev.push_str(&format!(",mac={mac}"));
        }
        match &nic.rom {
            NicRom::None => dev.push_str(",romfile="),
            NicRom::QemuDefault => {}
            NicRom::File(p) => dev.push_str(&format!(",romfile={}", opt_path(p))),
        }
        if let (Some(mtu), NicModel::VirtioNet) = (nic.mtu, &nic.model) {
            dev.push_str(&format!(",host_mtu={mtu}"));
        }
        a.extend(["-device".into(), dev]);
        if let Some(p) = &nic.pcap {
            a.extend([
                "-object".into(),
                format!("filter-dump,id=dump{n},netdev=net{n},file={}", opt_path(p)),
            ]);
        }
    }
    a
}
