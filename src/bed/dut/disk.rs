//! A machine's disk as a test describes it: path, bus, format, disk or
//! CD-ROM. The bed decides where writes go (QEMU's snapshot, or overlays).

use std::path::PathBuf;

use crate::vm::qemu::{DiskBus, Media};

/// A disk or CD-ROM image for [`crate::Dut::disk`]. Never modified: writes
/// go to QEMU's snapshot, or to overlays in the artifacts directory with
/// [`crate::Dut::overlay_disks`]. Without a kernel, the first disk boots.
///
/// ```
/// use alpy::{Disk, Dut};
/// use alpy::vm::DiskBus;
/// let dut = Dut::new()
///     .disk(Disk::new("fw.qcow2").format("qcow2").bus(DiskBus::Sata))
///     .disk(Disk::new("data.raw"))
///     .disk(Disk::cdrom("tools.iso").bus(DiskBus::Ide));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disk {
    pub(crate) path: PathBuf,
    pub(crate) format: Option<String>,
    pub(crate) bus: DiskBus,
    pub(crate) media: Media,
}

impl Disk {
    /// A disk image on virtio; QEMU probes its format unless
    /// [`Disk::format`] names it.
    pub fn new(path: impl Into<PathBuf>) -> Disk {
        Disk {
            path: path.into(),
            format: None,
            bus: DiskBus::Virtio,
            media: Media::Disk,
        }
    }

    /// A CD-ROM image (read-only, raw) on SATA; IDE and SCSI work too.
    pub fn cdrom(path: impl Into<PathBuf>) -> Disk {
        Disk {
            path: path.into(),
            format: Some("raw".into()),
            bus: DiskBus::Sata,
            media: Media::Cdrom,
        }
    }

    /// The bus it hangs on: IDE, SATA, SCSI, NVMe or virtio.
    pub fn bus(mut self, bus: DiskBus) -> Disk {
        self.bus = bus;
        self
    }

    /// Its image format (`raw`, `qcow2`, ...), instead of QEMU's probe.
    pub fn format(mut self, format: &str) -> Disk {
        self.format = Some(format.to_string());
        self
    }
}
