//! The device under test: what QEMU boots, as a [`QemuConfig`] plus the
//! choices that need the test bed's artifacts directory (disk overlays, the
//! UEFI variable store) and its links (one NIC each).

use std::path::{Path, PathBuf};

#[path = "dut/disk.rs"]
mod disk;
mod to_topology;
mod warm_key;
pub use disk::Disk;
pub(crate) use to_topology::rom_name;

use crate::bed::config_drive::{ConfigDrive, DriveFormat};
use crate::error::{Error, Result};
use crate::nic::{DutNic, NicRom};
use crate::vm::qemu::Disk as QemuDisk;
use crate::vm::qemu::{Accel, DiskMode, Firmware, Media, Nic, NicModel, QemuConfig};

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
/// [`QemuConfig::default`] (256 MiB, 1 vCPU); the machine is `pc` with
/// BIOS and `q35` with UEFI unless chosen.
///
/// ```
/// use alpy::{Disk, Dut};
/// use alpy::vm::DiskBus;
/// let dut = Dut::kernel("vmlinuz", Some("initrd.img".into()))
///     .append("console=ttyS0,115200")
///     .memory_mib(512)
///     .uefi();
/// assert_eq!(dut.config().memory_mib, 512);
/// let vendor = Dut::new()
///     .disk(Disk::new("fw.qcow2").format("qcow2").bus(DiskBus::Sata))
///     .secure_boot()
///     .memory_mib(4096)
///     .cpu_model("Skylake-Client")
///     .smbios("type=1,manufacturer=Acme,product=FW-9000,serial=A1")
///     .uuid("6a2b4c1e-0000-4000-8000-00000000a1a1")
///     .aux_serial();
/// assert_eq!(vendor.machine_name(), "q35");
/// ```
#[derive(Debug, Clone)]
pub struct Dut {
    pub(crate) config: QemuConfig,
    disks: Vec<Disk>,
    overlay_disks: bool,
    firmware: Firmware,
    machine: Option<String>,
    nic_model: NicModel,
    nic_rom: NicRom,
    aux_serials: usize,
    config_drive: Option<ConfigDrive>,
    tags: Vec<String>,
    /// This machine's own way in and out (`None`: the builder's).
    login: Option<crate::vm::login::Login>,
    prompt: Option<String>,
    poweroff: Option<crate::bed::builder::PowerOff>,
}

impl Default for Dut {
    /// [`Dut::new`]: no kernel, no disks yet.
    fn default() -> Dut {
        Dut::empty()
    }
}

impl Dut {
    fn empty() -> Dut {
        Dut {
            config: QemuConfig::default(),
            disks: Vec::new(),
            overlay_disks: false,
            firmware: Firmware::Bios,
            machine: None,
            nic_model: NicModel::E1000,
            nic_rom: NicRom::None,
            aux_serials: 0,
            config_drive: None,
            tags: Vec::new(),
            login: None,
            prompt: None,
            poweroff: None,
        }
    }

    /// Gives the machine a role (letters, digits, `-` and `_`): what
    /// [`crate::TestBed::role`] finds it by. Repeatable.
    ///
    /// ```
    /// let r1 = alpy::Dut::kernel("vmlinuz", None).tag("routers");
    /// assert_eq!(r1.tags(), ["routers"]);
    /// ```
    pub fn tag(mut self, role: &str) -> Self {
        if !self.tags.iter().any(|t| t == role) {
            self.tags.push(role.to_string());
        }
        self
    }

    /// Its roles.
    pub fn tags(&self) -> &[String] {
        &self.tags
    }

    /// How this machine is logged in to, in a bed of machines that differ
    /// (a router and a Linux host): replaces the builder's
    /// [`crate::TestBedBuilder::login`] and prompt for this machine.
    ///
    /// ```
    /// use alpy::{Dut, Login};
    /// let host = Dut::kernel("vmlinuz", None).login(Login::new("root").password("secret"));
    /// let router = Dut::kernel("vmlinuz", None).prompt("router# ");
    /// ```
    pub fn login(mut self, login: crate::vm::login::Login) -> Self {
        self.login = Some(login);
        self
    }

    /// The shell prompt this machine boots to (no login): replaces the
    /// builder's login and prompt for this machine.
    pub fn prompt(mut self, prompt: &str) -> Self {
        self.prompt = Some(prompt.to_string());
        self
    }

    /// How this machine is powered off: replaces the builder's
    /// [`crate::TestBedBuilder::poweroff`] for it.
    pub fn poweroff(mut self, how: crate::bed::builder::PowerOff) -> Self {
        self.poweroff = Some(how);
        self
    }

    /// Its own login and prompt, if it has either (else the builder's
    /// apply).
    pub(crate) fn access(&self) -> Option<(Option<crate::vm::login::Login>, Option<String>)> {
        (self.login.is_some() || self.prompt.is_some())
            .then(|| (self.login.clone(), self.prompt.clone()))
    }

    /// Its own power-off, if it has one.
    pub(crate) fn own_poweroff(&self) -> Option<&crate::bed::builder::PowerOff> {
        self.poweroff.as_ref()
    }

    /// Direct kernel boot, with an optional initrd.
    pub fn kernel(kernel: impl Into<PathBuf>, initrd: Option<PathBuf>) -> Dut {
        let mut d = Dut::empty();
        d.config.kernel = Some(kernel.into());
        d.config.initrd = initrd;
        d
    }

    /// A machine that boots from its first disk (add them with
    /// [`Dut::disk`]), or from firmware alone.
    pub fn new() -> Dut {
        Dut::empty()
    }

    /// Adds a disk or CD-ROM. Without a kernel, the first disk is the
    /// boot device (`bootindex=1`).
    ///
    /// ```
    /// use alpy::{Disk, Dut};
    /// let dut = Dut::new().disk(Disk::new("appliance.qcow2").format("qcow2"));
    /// ```
    pub fn disk(mut self, disk: Disk) -> Self {
        self.disks.push(disk);
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

    /// Boot through UEFI (Debian's 4 MiB OVMF, with a private variable
    /// store), on `q35` unless [`Dut::machine`] says otherwise. Before the
    /// second wave this was `pc` with the 2 MiB `OVMF_CODE.fd` and QEMU's
    /// NIC ROMs: [`Firmware::uefi_with`] + `.machine("pc")` +
    /// `.nic_rom(NicRom::QemuDefault)` (see `CHANGELOG.md`).
    pub fn uefi(self) -> Self {
        self.firmware(Firmware::uefi())
    }

    /// Boot through UEFI with Secure Boot (Debian's `.secboot` OVMF and
    /// Microsoft's keys, on q35 with SMM).
    pub fn secure_boot(self) -> Self {
        self.firmware(Firmware::secure_boot())
    }

    /// The firmware: BIOS (default), UEFI with chosen files, Secure Boot.
    pub fn firmware(mut self, firmware: Firmware) -> Self {
        self.firmware = firmware;
        self
    }

    /// The NIC model of every link (a link may choose its own:
    /// [`crate::Link::dut_nic`]).
    pub fn nic_model(mut self, model: NicModel) -> Self {
        self.nic_model = model;
        self
    }

    /// The option ROM of every NIC (default none; a link may choose its own).
    pub fn nic_rom(mut self, rom: NicRom) -> Self {
        self.nic_rom = rom;
        self
    }

    /// The `-cpu` model (default: `host` under KVM, QEMU's under TCG).
    pub fn cpu_model(mut self, model: &str) -> Self {
        self.config.cpu = Some(model.to_string());
        self
    }

    /// An SMBIOS table, as QEMU's `-smbios` takes it:
    /// `type=1,manufacturer=Acme,product=FW-9000,serial=A1`.
    pub fn smbios(mut self, fields: &str) -> Self {
        self.config.smbios.push(fields.to_string());
        self
    }

    /// A fixed machine UUID (SMBIOS system UUID).
    pub fn uuid(mut self, uuid: &str) -> Self {
        self.config.uuid = Some(uuid.to_string());
        self
    }

    /// A day-0 config drive, built into the artifacts at start and
    /// attached after the other disks.
    pub fn config_drive(mut self, drive: ConfigDrive) -> Self {
        self.config_drive = Some(drive);
        self
    }

    /// One more serial port after the console (`ttyS1`, then `ttyS2`...):
    /// its output goes to `serial1.log` (...) in the artifacts.
    pub fn aux_serial(mut self) -> Self {
        self.aux_serials += 1;
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

    /// Machine type (`pc`, `q35`; default `pc`, or `q35` with UEFI).
    pub fn machine(mut self, m: &str) -> Self {
        self.machine = Some(m.to_string());
        self
    }

    /// The machine type it will run.
    pub fn machine_name(&self) -> &str {
        match (&self.machine, self.firmware.is_uefi()) {
            (Some(m), _) => m,
            (None, true) => "q35",
            (None, false) => "pc",
        }
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
        self.firmware.is_uefi()
    }

    /// Its firmware.
    pub fn firmware_choice(&self) -> &Firmware {
        &self.firmware
    }

    /// Every string that will reach QEMU's command line is of its kind
    /// (no value can add an option; see [`crate::vm::argv_check`]).
    pub(crate) fn check_strings(&self) -> Result<()> {
        use crate::vm::argv_check as argv;
        argv::check_machine(self.machine_name())?;
        if let Some(c) = &self.config.cpu {
            argv::check_cpu(c)?;
        }
        if let Some(u) = &self.config.uuid {
            argv::check_uuid(u)?;
        }
        for s in &self.config.smbios {
            s.parse::<argv::Smbios>()?;
        }
        for d in &self.disks {
            if let Some(f) = &d.format {
                argv::check_disk_format(f)?;
            }
        }
        argv::check_device(self.nic_model.device())
    }

    /// Whether QEMU can run it as described: firmware files exist, Secure
    /// Boot has q35, CD-ROMs have a bus that takes them.
    pub fn check(&self) -> Result<()> {
        self.firmware.check()?;
        self.check_strings()?;
        if self.firmware.secure_boot_on() && !self.machine_name().contains("q35") {
            return Err(Error::Config(format!(
                "Secure Boot needs the q35 machine (SMM), not {:?}: drop .machine() or use q35",
                self.machine_name()
            )));
        }
        for d in self.disks_as(&DiskMode::Snapshot) {
            d.check()?;
        }
        Ok(())
    }

    fn disks_as(&self, mode: &DiskMode) -> Vec<QemuDisk> {
        self.disks
            .iter()
            .map(|d| QemuDisk {
                path: d.path.clone(),
                format: d.format.clone(),
                bus: d.bus,
                media: d.media,
                mode: mode.clone(),
                bootindex: None,
            })
            .collect()
    }

    /// The NIC of one link: the link's choices (`link`) over the DUT's
    /// defaults, the DUT-side MAC (unless the link chose one), the fd QEMU
    /// uses (a tap, or a datagram socket when `dgram`), and its capture file.
    pub fn nic(
        &self,
        link: &DutNic,
        mac: crate::addr::Mac,
        fd: i32,
        dgram: bool,
        pcap: PathBuf,
    ) -> Nic {
        let rom = if link.rom == NicRom::None {
            self.nic_rom.clone()
        } else {
            link.rom.clone()
        };
        Nic {
            model: link.model.clone().unwrap_or_else(|| self.nic_model.clone()),
            mac: Some(link.mac.unwrap_or(mac).to_string()),
            tap_fd: fd,
            dgram,
            pcap: Some(pcap),
            mtu: link.mtu,
            rom,
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
        self.check()?;
        let mut cfg = self.config.clone();
        cfg.machine = self.machine_name().to_string();
        let overlay = |dir: &Path, i: usize| DiskMode::Overlay(dir.join(format!("disk{i}.qcow2")));
        let kernel_boot = cfg.kernel.is_some();
        cfg.disks = self
            .disks
            .iter()
            .enumerate()
            .map(|(i, d)| {
                let (path, format, mode) = match plan {
                    _ if d.media == Media::Cdrom => {
                        (d.path.clone(), d.format.clone(), DiskMode::ReadOnly)
                    }
                    DiskPlan::AsConfigured if self.overlay_disks => {
                        (d.path.clone(), d.format.clone(), overlay(artifacts, i))
                    }
                    DiskPlan::AsConfigured => {
                        (d.path.clone(), d.format.clone(), DiskMode::Snapshot)
                    }
                    DiskPlan::OverlaysIn(dir) => {
                        (d.path.clone(), d.format.clone(), overlay(dir, i))
                    }
                    DiskPlan::BackedBy(snap) => (
                        snap.join(format!("disk{i}.qcow2")),
                        Some("qcow2".to_string()),
                        overlay(artifacts, i),
                    ),
                };
                QemuDisk {
                    path,
                    format,
                    bus: d.bus,
                    media: d.media,
                    mode,
                    // Boot from the first disk, never from the network.
                    bootindex: (i == 0 && !kernel_boot).then_some(1),
                }
            })
            .collect();
        if let Some(drive) = &self.config_drive {
            let image = drive.build(artifacts)?;
            // A vfat drive is a disk whose writes QEMU throws away (IDE
            // and SATA disks cannot be read-only); an ISO is a CD-ROM.
            let (media, mode) = match drive.format() {
                DriveFormat::Vfat => (Media::Disk, DiskMode::Snapshot),
                DriveFormat::Iso => (Media::Cdrom, DiskMode::ReadOnly),
            };
            cfg.disks.push(QemuDisk {
                path: image,
                format: Some("raw".into()),
                bus: drive.disk_bus(),
                media,
                mode,
                bootindex: None,
            });
        }
        let saved_vars = match plan {
            DiskPlan::BackedBy(snap) => Some(snap.join("OVMF_VARS.fd")),
            _ => None,
        };
        cfg.uefi = self
            .firmware
            .private_copy(artifacts, saved_vars.as_deref())?;
        cfg.aux_serials = (1..=self.aux_serials)
            .map(|i| artifacts.join(format!("serial{i}.log")))
            .collect();
        cfg.incoming = matches!(plan, DiskPlan::BackedBy(_));
        cfg.nics = nics;
        QemuDisk::check_all(&cfg.disks, &cfg.machine)?;
        cfg.serial_log = Some(artifacts.join("console-qemu.log"));
        cfg.paused = true;
        cfg.no_shutdown = false;
        Ok(cfg)
    }
}
