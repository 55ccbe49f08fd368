//! The device under test: what QEMU boots, as a [`QemuConfig`] plus the
//! choices that need the test bed's artifacts directory (disk overlays, the
//! UEFI variable store) and its links (one NIC each).

use std::path::{Path, PathBuf};

use crate::error::Result;
use crate::vm::qemu::{Accel, Disk, DiskMode, Nic, NicModel, QemuConfig, Uefi};

/// The device under test. Its QEMU settings start from
/// [`QemuConfig::default`] (256 MiB, 1 vCPU, machine `pc`).
///
/// ```
/// use alpy::Dut;
/// let dut = Dut::kernel("vmlinuz", Some("initrd.img".into()))
///     .append("console=ttyS0,115200")
///     .memory_mib(512)
///     .uefi();
/// assert_eq!(dut.config().memory_mib, 512);
/// ```
#[derive(Debug, Clone)]
pub struct Dut {
    config: QemuConfig,
    disks: Vec<(PathBuf, Option<String>)>,
    overlay_disks: bool,
    uefi: bool,
    nic_model: NicModel,
}

impl Dut {
    fn empty() -> Dut {
        Dut {
            config: QemuConfig::default(),
            disks: Vec::new(),
            overlay_disks: false,
            uefi: false,
            nic_model: NicModel::E1000,
        }
    }

    /// Direct kernel boot, with an optional initrd.
    pub fn kernel(kernel: impl Into<PathBuf>, initrd: Option<PathBuf>) -> Dut {
        let mut d = Dut::empty();
        d.config.kernel = Some(kernel.into());
        d.config.initrd = initrd;
        d
    }

    /// Boot from a disk image (never modified: `snapshot=on`).
    pub fn disk_image(image: impl Into<PathBuf>, format: Option<&str>) -> Dut {
        Dut::empty().disk(image, format)
    }

    /// Adds a disk (virtio, never modified).
    pub fn disk(mut self, image: impl Into<PathBuf>, format: Option<&str>) -> Self {
        self.disks.push((image.into(), format.map(str::to_string)));
        self
    }

    /// Keep disk writes in qcow2 overlays in the artifacts directory
    /// instead of QEMU's temporary snapshot.
    pub fn overlay_disks(mut self) -> Self {
        self.overlay_disks = true;
        self
    }

    /// The kernel command line.
    pub fn append(mut self, cmdline: &str) -> Self {
        self.config.append = Some(cmdline.to_string());
        self
    }

    /// Boot through UEFI (OVMF, with a private variable store).
    pub fn uefi(mut self) -> Self {
        self.uefi = true;
        self
    }

    /// The NIC model of every link.
    pub fn nic_model(mut self, model: NicModel) -> Self {
        self.nic_model = model;
        self
    }

    /// Guest memory.
    pub fn memory_mib(mut self, mib: u32) -> Self {
        self.config.memory_mib = mib;
        self
    }

    /// vCPUs.
    pub fn cpus(mut self, n: u32) -> Self {
        self.config.cpus = n;
        self
    }

    /// Machine type (`pc`, `q35`).
    pub fn machine(mut self, m: &str) -> Self {
        self.config.machine = m.to_string();
        self
    }

    /// Force an accelerator (default: [`Accel::detect`]).
    pub fn accel(mut self, a: Accel) -> Self {
        self.config.accel = Some(a);
        self
    }

    /// Extra QEMU arguments.
    pub fn extra_arg(mut self, arg: &str) -> Self {
        self.config.extra_args.push(arg.to_string());
        self
    }

    /// The QEMU settings so far (without disks, NICs and firmware, which
    /// [`Dut::qemu_config`] adds).
    pub fn config(&self) -> &QemuConfig {
        &self.config
    }

    /// The NIC of one link: its model, the DUT-side MAC, the fd QEMU uses
    /// (a tap, or a datagram socket when `dgram`), and its capture file.
    pub fn nic(&self, mac: crate::addr::Mac, fd: i32, dgram: bool, pcap: PathBuf) -> Nic {
        Nic {
            model: self.nic_model.clone(),
            mac: Some(mac.to_string()),
            tap_fd: fd,
            dgram,
            pcap: Some(pcap),
        }
    }

    /// The complete QEMU configuration for a bed whose artifacts live in
    /// `artifacts`, with `nics`: disks as snapshots or overlays there, a
    /// private UEFI variable store there, the console's log there, paused.
    pub fn qemu_config(&self, artifacts: &Path, nics: Vec<Nic>) -> Result<QemuConfig> {
        let mut cfg = self.config.clone();
        cfg.disks = self
            .disks
            .iter()
            .enumerate()
            .map(|(i, (path, format))| Disk {
                path: path.clone(),
                format: format.clone(),
                interface: "virtio".into(),
                mode: if self.overlay_disks {
                    DiskMode::Overlay(artifacts.join(format!("disk{i}.qcow2")))
                } else {
                    DiskMode::Snapshot
                },
            })
            .collect();
        cfg.uefi = if self.uefi {
            Some(Uefi::private_copy(None, None, artifacts)?)
        } else {
            None
        };
        cfg.nics = nics;
        cfg.serial_log = Some(artifacts.join("console-qemu.log"));
        cfg.paused = true;
        cfg.no_shutdown = false;
        Ok(cfg)
    }
}
