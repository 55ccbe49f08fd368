//! The QEMU command line, typed: machine, accelerator, memory, kernel or
//! disks or UEFI, NICs on inherited tap fds with a `filter-dump` each, the
//! serial console and QMP on inherited sockets, paused start.
//!
//! [`QemuConfig::args`] is a pure function of the configuration, so the
//! generated command lines are pinned by unit tests. The process itself is
//! run by [`crate::vm::qemu_process`].

use std::os::fd::RawFd;
use std::path::PathBuf;

use crate::error::{Error, Result};

/// The accelerator QEMU runs the guest with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    /// Hardware virtualisation through `/dev/kvm`.
    Kvm,
    /// Software emulation (slower, works everywhere).
    Tcg,
}

impl Accel {
    /// `ALPY_ACCEL=kvm|tcg` if set, else KVM only when `/dev/kvm` opens
    /// read-write *and* the CPU flags show `vmx` or `svm`, else TCG.
    pub fn detect() -> Result<Accel> {
        Accel::detect_with(crate::settings::Settings::from_env().accel())
    }

    /// `forced` (`kvm` or `tcg`, from `ALPY_ACCEL`) if given, else KVM
    /// only when `/dev/kvm` opens read-write *and* the CPU flags show
    /// `vmx` or `svm`, else TCG.
    pub fn detect_with(forced: Option<&str>) -> Result<Accel> {
        match forced {
            Some("kvm") => return Ok(Accel::Kvm),
            Some("tcg") => return Ok(Accel::Tcg),
            Some("") | None => {}
            Some(other) => {
                return Err(Error::Config(format!(
                    "ALPY_ACCEL={other:?}: expected \"kvm\" or \"tcg\""
                )))
            }
        }
        let kvm_opens = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/kvm")
            .is_ok();
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        Ok(Self::choose(kvm_opens, &cpuinfo))
    }

    /// The rule behind [`Accel::detect`], for given facts.
    pub fn choose(kvm_opens: bool, cpuinfo: &str) -> Accel {
        let virt_flags = cpuinfo
            .lines()
            .filter(|l| l.starts_with("flags"))
            .any(|l| l.split_whitespace().any(|f| f == "vmx" || f == "svm"));
        if kvm_opens && virt_flags {
            Accel::Kvm
        } else {
            Accel::Tcg
        }
    }

    /// The name QEMU's `-machine accel=` takes: `kvm` or `tcg`.
    pub fn as_str(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }
}

pub use crate::vm::devices::{Disk, DiskBus, DiskMode, Media, Nic, NicModel, NicRom};
pub use crate::vm::firmware::{Firmware, Uefi};

/// Everything QEMU is started with.
#[derive(Debug, Clone)]
pub struct QemuConfig {
    /// The QEMU binary (`qemu-system-x86_64`).
    pub binary: PathBuf,
    /// Machine type (`pc`, `q35`, ...).
    pub machine: String,
    /// Accelerator; `None` means [`Accel::detect`].
    pub accel: Option<Accel>,
    /// Guest memory in MiB.
    pub memory_mib: u32,
    /// Number of vCPUs.
    pub cpus: u32,
    /// `-cpu` model; `None`: `host` under KVM, QEMU's default under TCG.
    pub cpu: Option<String>,
    /// `-smbios` tables in QEMU's syntax, e.g.
    /// `type=1,manufacturer=Acme,serial=A1`; each is parsed into a typed
    /// [`crate::vm::argv_check::Smbios`] (known keys only, no `file=`)
    /// before it reaches the command line.
    pub smbios: Vec<String>,
    /// `-uuid`: the machine's fixed UUID.
    pub uuid: Option<String>,
    /// More serial ports after the console (`ttyS1`, ...), each written to
    /// its file.
    pub aux_serials: Vec<PathBuf>,
    /// `-kernel`.
    pub kernel: Option<PathBuf>,
    /// `-initrd`.
    pub initrd: Option<PathBuf>,
    /// `-append`.
    pub append: Option<String>,
    /// Disks.
    pub disks: Vec<Disk>,
    /// UEFI firmware.
    pub uefi: Option<Uefi>,
    /// NICs, in guest PCI order.
    pub nics: Vec<Nic>,
    /// QEMU's own log of the serial console (`logfile=` of the chardev).
    pub serial_log: Option<PathBuf>,
    /// Start with the vCPUs stopped (`-S`).
    pub paused: bool,
    /// Keep QEMU running after the guest powers off (`-no-shutdown`).
    pub no_shutdown: bool,
    /// Wait for a saved state (`-incoming defer`, then
    /// [`crate::vm::migrate::load`]) instead of booting.
    pub incoming: bool,
    /// Guest RAM in a file instead of anonymous memory (warm start maps
    /// snapshots this way); `None`: QEMU's own.
    pub ram_file: Option<RamFile>,
    /// Extra raw arguments, appended last.
    pub extra_args: Vec<String>,
}

/// Guest RAM backed by a file (`-object memory-backend-file`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RamFile {
    /// The file (created by QEMU if missing; it must be the RAM's size
    /// if it exists).
    pub path: PathBuf,
    /// `true`: the guest writes through to the file (`share=on`, how a
    /// snapshot's RAM is made); `false`: the file is mapped copy-on-write
    /// (`share=off`): pages load when touched, writes stay private, and
    /// the file never changes.
    pub shared: bool,
}

impl Default for QemuConfig {
    fn default() -> Self {
        QemuConfig {
            binary: PathBuf::from("qemu-system-x86_64"),
            machine: "pc".into(),
            accel: None,
            memory_mib: 256,
            cpus: 1,
            cpu: None,
            smbios: Vec::new(),
            uuid: None,
            aux_serials: Vec::new(),
            kernel: None,
            initrd: None,
            append: None,
            disks: Vec::new(),
            uefi: None,
            nics: Vec::new(),
            serial_log: None,
            paused: true,
            no_shutdown: false,
            incoming: false,
            ram_file: None,
            extra_args: Vec::new(),
        }
    }
}

/// The fds the QEMU process inherits for its control channels.
#[derive(Debug, Clone, Copy)]
pub struct ControlFds {
    /// QEMU's end of the QMP socket pair.
    pub qmp: RawFd,
    /// QEMU's end of the serial console socket pair.
    pub serial: RawFd,
}

impl QemuConfig {
    /// The argument list (without the binary), given the accelerator and the
    /// control fds QEMU will inherit. Every string that reaches an option
    /// list is checked first ([`crate::vm::argv_check`]): a value can never
    /// add an option.
    pub fn args(&self, accel: Accel, fds: ControlFds) -> Result<Vec<String>> {
        crate::vm::argv_check::check(self)?;
        let smbios = self
            .smbios
            .iter()
            .map(|s| {
                s.parse::<crate::vm::argv_check::Smbios>()
                    .map(|t| t.to_arg())
            })
            .collect::<Result<Vec<_>>>()?;
        let mut a: Vec<String> = Vec::new();
        let mut push = |xs: &[&str]| a.extend(xs.iter().map(|s| s.to_string()));
        push(&["-nodefaults", "-no-user-config", "-display", "none"]);
        let secure = self.uefi.as_ref().is_some_and(|u| u.secure_boot);
        let smm = if secure { ",smm=on" } else { "" };
        let backend = if self.ram_file.is_some() {
            ",memory-backend=alpy-ram"
        } else {
            ""
        };
        push(&[
            "-machine",
            &format!("{},accel={}{smm}{backend}", self.machine, accel.as_str()),
        ]);
        if let Some(r) = &self.ram_file {
            let share = if r.shared { "on" } else { "off" };
            push(&[
                "-object",
                &format!(
                    "memory-backend-file,id=alpy-ram,size={}M,mem-path={},share={share}",
                    self.memory_mib,
                    opt_path(&r.path)
                ),
            ]);
        }
        match (&self.cpu, accel) {
            (Some(cpu), _) => push(&["-cpu", cpu]),
            (None, Accel::Kvm) => push(&["-cpu", "host"]),
            (None, Accel::Tcg) => {}
        }
        if let Some(u) = &self.uuid {
            push(&["-uuid", u]);
        }
        for s in &smbios {
            push(&["-smbios", s]);
        }
        push(&[
            "-m",
            &self.memory_mib.to_string(),
            "-smp",
            &self.cpus.to_string(),
        ]);
        if self.paused {
            push(&["-S"]);
        }
        if self.no_shutdown {
            push(&["-no-shutdown"]);
        }
        if self.incoming {
            push(&["-incoming", "defer"]);
        }
        push(&[
            "-chardev",
            &format!("socket,id=qmp,fd={},server=off", fds.qmp),
            "-mon",
            "chardev=qmp,mode=control",
        ]);
        let mut serial = format!("socket,id=serial0,fd={},server=off", fds.serial);
        if let Some(log) = &self.serial_log {
            serial.push_str(&format!(",logfile={},logappend=on", opt_path(log)));
        }
        push(&["-chardev", &serial, "-serial", "chardev:serial0"]);
        for (i, f) in self.aux_serials.iter().enumerate() {
            let i = i + 1;
            push(&[
                "-chardev",
                &format!("file,id=serial{i},path={}", opt_path(f)),
                "-serial",
                &format!("chardev:serial{i}"),
            ]);
        }
        if let Some(uefi) = &self.uefi {
            if uefi.secure_boot {
                push(&["-global", "driver=cfi.pflash01,property=secure,value=on"]);
            }
            push(&[
                "-drive",
                &format!(
                    "if=pflash,format=raw,unit=0,readonly=on,file={}",
                    opt_path(&uefi.code)
                ),
                "-drive",
                &format!("if=pflash,format=raw,unit=1,file={}", opt_path(&uefi.vars)),
            ]);
        }
        if let Some(k) = &self.kernel {
            push(&["-kernel", &k.to_string_lossy()]);
        }
        if let Some(i) = &self.initrd {
            push(&["-initrd", &i.to_string_lossy()]);
        }
        if let Some(ap) = &self.append {
            push(&["-append", ap]);
        }
        a.extend(crate::vm::devices::disk_args(&self.disks, &self.machine));
        a.extend(crate::vm::devices::nic_args(&self.nics));
        a.extend(self.extra_args.iter().cloned());
        Ok(a)
    }
}

use crate::vm::devices::opt_path;

#[cfg(test)]
mod tests {
    use super::*;

    const FDS: ControlFds = ControlFds { qmp: 3, serial: 4 };

    #[test]
    fn kernel_boot_with_two_nics() {
        let cfg = QemuConfig {
            kernel: Some("/k/vmlinuz".into()),
            initrd: Some("/k/initrd.img".into()),
            append: Some("console=ttyS0 quiet".into()),
            serial_log: Some("/run/a/console-qemu.log".into()),
            nics: vec![
                Nic {
                    model: NicModel::E1000,
                    mac: Some("52:54:00:00:00:01".into()),
                    tap_fd: 7,
                    dgram: false,
                    pcap: Some("/run/a/link0.pcap".into()),
                    mtu: None,
                    rom: NicRom::None,
                },
                Nic {
                    model: NicModel::VirtioNet,
                    mac: None,
                    tap_fd: 8,
                    dgram: true,
                    pcap: None,
                    mtu: Some(9000),
                    rom: NicRom::QemuDefault,
                },
            ],
            ..Default::default()
        };
        assert_eq!(
            cfg.args(Accel::Tcg, FDS).unwrap().join(" "),
            "-nodefaults -no-user-config -display none -machine pc,accel=tcg -m 256 -smp 1 -S \
             -chardev socket,id=qmp,fd=3,server=off -mon chardev=qmp,mode=control \
             -chardev socket,id=serial0,fd=4,server=off,logfile=/run/a/console-qemu.log,logappend=on \
             -serial chardev:serial0 \
             -kernel /k/vmlinuz -initrd /k/initrd.img -append console=ttyS0 quiet \
             -netdev tap,id=net0,fd=7 -device e1000,netdev=net0,id=nic0,mac=52:54:00:00:00:01,romfile= \
             -object filter-dump,id=dump0,netdev=net0,file=/run/a/link0.pcap \
             -netdev dgram,id=net1,local.type=fd,local.str=8 -device virtio-net-pci,netdev=net1,id=nic1,host_mtu=9000"
        );
    }

    #[test]
    fn kvm_uefi_disks_and_extras() {
        let cfg = QemuConfig {
            machine: "q35".into(),
            memory_mib: 1024,
            cpus: 2,
            paused: false,
            no_shutdown: true,
            uefi: Some(Uefi {
                code: "/fw/CODE.fd".into(),
                vars: "/run/a/VARS.fd".into(),
                secure_boot: false,
            }),
            disks: vec![
                Disk {
                    path: "/img/base,1.qcow2".into(),
                    format: Some("qcow2".into()),
                    bus: DiskBus::Virtio,
                    media: Media::Disk,
                    mode: DiskMode::Snapshot,
                    bootindex: Some(1),
                },
                Disk {
                    path: "/img/data.raw".into(),
                    format: Some("raw".into()),
                    bus: DiskBus::Ide,
                    media: Media::Disk,
                    mode: DiskMode::Overlay("/run/a/disk1.qcow2".into()),
                    bootindex: None,
                },
            ],
            extra_args: vec!["-rtc".into(), "base=utc".into()],
            ..Default::default()
        };
        assert_eq!(
            cfg.args(Accel::Kvm, FDS).unwrap().join(" "),
            "-nodefaults -no-user-config -display none -machine q35,accel=kvm -cpu host -m 1024 -smp 2 \
             -no-shutdown \
             -chardev socket,id=qmp,fd=3,server=off -mon chardev=qmp,mode=control \
             -chardev socket,id=serial0,fd=4,server=off -serial chardev:serial0 \
             -drive if=pflash,format=raw,unit=0,readonly=on,file=/fw/CODE.fd \
             -drive if=pflash,format=raw,unit=1,file=/run/a/VARS.fd \
             -drive if=none,id=disk0,file=/img/base,,1.qcow2,snapshot=on,format=qcow2 \
             -device virtio-blk-pci,drive=disk0,bootindex=1 \
             -drive if=none,id=disk1,file=/run/a/disk1.qcow2,format=qcow2 -device ide-hd,drive=disk1,bus=ide.0 \
             -rtc base=utc"
        );
    }

    #[test]
    fn secure_boot_buses_and_identity() {
        let disk = |path: &str, bus, media, mode| Disk {
            path: PathBuf::from(path),
            format: Some("raw".into()),
            bus,
            media,
            mode,
            bootindex: None,
        };
        let cfg = QemuConfig {
            machine: "q35".into(),
            cpu: Some("Skylake-Client".into()),
            smbios: vec!["type=1,manufacturer=Acme,serial=A1".into()],
            uuid: Some("6a2b4c1e-0000-4000-8000-00000000a1a1".into()),
            aux_serials: vec!["/run/a/serial1.log".into()],
            uefi: Some(Uefi {
                code: "/fw/SB.fd".into(),
                vars: "/run/a/VARS.fd".into(),
                secure_boot: true,
            }),
            disks: vec![
                disk(
                    "/i/sata.raw",
                    DiskBus::Sata,
                    Media::Disk,
                    DiskMode::Snapshot,
                ),
                disk("/i/cd.iso", DiskBus::Sata, Media::Cdrom, DiskMode::ReadOnly),
                disk(
                    "/i/scsi.raw",
                    DiskBus::Scsi,
                    Media::Disk,
                    DiskMode::Snapshot,
                ),
                disk(
                    "/i/nvme.raw",
                    DiskBus::Nvme,
                    Media::Disk,
                    DiskMode::Snapshot,
                ),
            ],
            ..Default::default()
        };
        let args = cfg.args(Accel::Tcg, FDS).unwrap().join(" ");
        for want in [
            "-machine q35,accel=tcg,smm=on -cpu Skylake-Client",
            "-uuid 6a2b4c1e-0000-4000-8000-00000000a1a1 -smbios type=1,manufacturer=Acme,serial=A1",
            "-chardev file,id=serial1,path=/run/a/serial1.log -serial chardev:serial1",
            "-global driver=cfi.pflash01,property=secure,value=on",
            "-device ahci,id=sata -device virtio-scsi-pci,id=scsi",
            "-device ide-hd,drive=disk0,bus=sata.0",
            "-drive if=none,id=disk1,file=/i/cd.iso,readonly=on,format=raw,media=cdrom -device ide-cd,drive=disk1,bus=sata.1",
            "-device scsi-hd,drive=disk2,bus=scsi.0",
            "-device nvme,drive=disk3,serial=alpy3",
        ] {
            assert!(args.contains(want), "{want}\nnot in\n{args}");
        }
        let bad = disk(
            "/i/cd.iso",
            DiskBus::Virtio,
            Media::Cdrom,
            DiskMode::ReadOnly,
        );
        assert!(bad
            .check()
            .unwrap_err()
            .to_string()
            .contains("IDE, SATA or SCSI"));
        assert_eq!("sata".parse::<DiskBus>().unwrap(), DiskBus::Sata);
        assert!("floppy".parse::<DiskBus>().is_err());
    }

    #[test]
    fn accel_choice() {
        let vmx = "processor: 0\nflags\t\t: fpu vme vmx sse\n";
        let none = "processor: 0\nflags\t\t: fpu vme sse\n";
        assert_eq!(Accel::choose(true, vmx), Accel::Kvm);
        assert_eq!(Accel::choose(true, "flags : svm"), Accel::Kvm);
        assert_eq!(Accel::choose(true, none), Accel::Tcg);
        assert_eq!(Accel::choose(false, vmx), Accel::Tcg);
    }

    #[test]
    fn nic_models_parse() {
        assert_eq!("e1000".parse::<NicModel>().unwrap(), NicModel::E1000);
        assert_eq!(
            "virtio".parse::<NicModel>().unwrap().device(),
            "virtio-net-pci"
        );
        assert_eq!("rtl8139".parse::<NicModel>().unwrap().device(), "rtl8139");
        assert_eq!("vmxnet3".parse::<NicModel>().unwrap(), NicModel::Vmxnet3);
        assert_eq!("e1000e".parse::<NicModel>().unwrap().device(), "e1000e");
    }
}
