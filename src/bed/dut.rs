//! The device under test: what QEMU boots, as a [`QemuConfig`] plus the
//! choices that need the test bed's artifacts directory (disk overlays, the
//! UEFI variable store) and its links (one NIC each).

use std::path::{Path, PathBuf};

use crate::error::Result;
use crate::vm::qemu::{Accel, Disk, DiskMode, Nic, NicModel, QemuConfig, Uefi};

/// Where a bed's disk writes go.
#[derive(Debug, Clone, Copy)]
pub(crate) enum DiskPlan<'a> {
    /// As the DUT says: QEMU's snapshot, or overlays in the artifacts.
    AsConfigured,
    /// Overlays in this directory (a warm-start snapshot being built).
    OverlaysIn(&'a Path),
    /// Restoring the snapshot in this directory: overlays in the artifacts
    /// over its disks, its UEFI variables, `-incoming defer`.
    BackedBy(&'a Path),
}

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
    /// the test bed adds).
    pub fn config(&self) -> &QemuConfig {
        &self.config
    }

    /// The QEMU settings, to change what the builder methods do not cover
    /// (the QEMU binary, say).
    pub fn config_mut(&mut self) -> &mut QemuConfig {
        &mut self.config
    }

    /// How many disks.
    pub fn disk_count(&self) -> usize {
        self.disks.len()
    }

    /// Whether it boots through UEFI.
    pub fn is_uefi(&self) -> bool {
        self.uefi
    }

    /// What shapes the guest's state, for the warm-start key: file
    /// contents as hashes, the QEMU settings, the NICs (`nics`: model and
    /// MAC of each).
    pub(crate) fn warm_key_parts(
        &self,
        nics: &[Nic],
    ) -> Result<std::collections::BTreeMap<String, String>> {
        use crate::bed::warm::{file_hash, qemu_version};
        let c = &self.config;
        let mut p = std::collections::BTreeMap::new();
        let mut put = |k: &str, v: String| {
            p.insert(k.to_string(), v);
        };
        if let Some(k) = &c.kernel {
            put("kernel", file_hash(k)?);
        }
        if let Some(i) = &c.initrd {
            put("initrd", file_hash(i)?);
        }
        for (i, (path, format)) in self.disks.iter().enumerate() {
            put(&format!("disk{i}"), file_hash(path)?);
            put(
                &format!("disk{i}.format"),
                format.clone().unwrap_or_default(),
            );
        }
        if self.uefi {
            let (code, vars) = Uefi::DEBIAN_FIRMWARE
                .into_iter()
                .find(|(c, _)| Path::new(c).exists())
                .unwrap_or(Uefi::DEBIAN_FIRMWARE[0]);
            put("uefi.code", file_hash(Path::new(code))?);
            put("uefi.vars", file_hash(Path::new(vars))?);
        }
        put("append", c.append.clone().unwrap_or_default());
        put("machine", c.machine.clone());
        put("memory_mib", c.memory_mib.to_string());
        put("cpus", c.cpus.to_string());
        let accel = match c.accel {
            Some(a) => a,
            None => Accel::detect()?,
        };
        // The accelerator decides -cpu (host under KVM, QEMU's default under TCG).
        put("accel", accel.as_str().to_string());
        put("qemu", qemu_version(&c.binary)?);
        put("extra_args", c.extra_args.join("\u{1f}"));
        put("nics", nics.len().to_string());
        for (i, n) in nics.iter().enumerate() {
            put(
                &format!("nic{i}"),
                format!("{:?} {}", n.model, n.mac.clone().unwrap_or_default()),
            );
        }
        Ok(p)
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
    /// `artifacts`, with `nics`: disks as `plan` says, a private UEFI
    /// variable store there, the console's log there, paused.
    pub(crate) fn qemu_config(
        &self,
        artifacts: &Path,
        nics: Vec<Nic>,
        plan: DiskPlan<'_>,
    ) -> Result<QemuConfig> {
        let mut cfg = self.config.clone();
        let overlay = |dir: &Path, i: usize| DiskMode::Overlay(dir.join(format!("disk{i}.qcow2")));
        cfg.disks = self
            .disks
            .iter()
            .enumerate()
            .map(|(i, (path, format))| {
                let (path, format, mode) = match plan {
                    DiskPlan::AsConfigured if self.overlay_disks => {
                        (path.clone(), format.clone(), overlay(artifacts, i))
                    }
                    DiskPlan::AsConfigured => (path.clone(), format.clone(), DiskMode::Snapshot),
                    DiskPlan::OverlaysIn(dir) => (path.clone(), format.clone(), overlay(dir, i)),
                    DiskPlan::BackedBy(snap) => (
                        snap.join(format!("disk{i}.qcow2")),
                        Some("qcow2".to_string()),
                        overlay(artifacts, i),
                    ),
                };
                Disk {
                    path,
                    format,
                    interface: "virtio".into(),
                    mode,
                }
            })
            .collect();
        cfg.uefi = match (self.uefi, plan) {
            (false, _) => None,
            (true, DiskPlan::BackedBy(snap)) => Some(Uefi::private_copy(
                None,
                Some(&snap.join("OVMF_VARS.fd")),
                artifacts,
            )?),
            (true, _) => Some(Uefi::private_copy(None, None, artifacts)?),
        };
        cfg.incoming = matches!(plan, DiskPlan::BackedBy(_));
        cfg.nics = nics;
        cfg.serial_log = Some(artifacts.join("console-qemu.log"));
        cfg.paused = true;
        cfg.no_shutdown = false;
        Ok(cfg)
    }
}
