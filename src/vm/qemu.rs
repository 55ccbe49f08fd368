//! The QEMU command line, typed: machine, accelerator, memory, kernel or
//! disks or UEFI, NICs on inherited tap fds with a `filter-dump` each, the
//! serial console and QMP on inherited sockets, paused start.
//!
//! [`QemuConfig::args`] is a pure function of the configuration, so the
//! generated command lines are pinned by unit tests. The process itself is
//! run by [`crate::vm::qemu_process`].

use std::os::fd::RawFd;
use std::path::{Path, PathBuf};

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
        match std::env::var("ALPY_ACCEL").ok().as_deref() {
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

/// The emulated NIC model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NicModel {
    /// Intel e1000 (`e1000`).
    E1000,
    /// Virtio network device (`virtio-net-pci`).
    VirtioNet,
    /// Any other QEMU device name, e.g. `rtl8139`.
    Other(String),
}

impl NicModel {
    /// QEMU's device name.
    pub fn device(&self) -> &str {
        match self {
            NicModel::E1000 => "e1000",
            NicModel::VirtioNet => "virtio-net-pci",
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
            "virtio" | "virtio-net" | "virtio-net-pci" => NicModel::VirtioNet,
            other => NicModel::Other(other.to_string()),
        })
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
}

/// How a disk image is attached without ever modifying it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiskMode {
    /// `snapshot=on`: writes go to a temporary file QEMU deletes.
    Snapshot,
    /// A qcow2 overlay at this path (created by [`crate::vm::qemu_process`]),
    /// kept after the run for inspection.
    Overlay(PathBuf),
}

/// A disk image.
#[derive(Debug, Clone)]
pub struct Disk {
    /// The base image.
    pub path: PathBuf,
    /// `qcow2`, `raw`, ... (`None`: QEMU probes, with a warning).
    pub format: Option<String>,
    /// `virtio`, `ide`, ...
    pub interface: String,
    /// How writes are kept away from the base image.
    pub mode: DiskMode,
}

/// UEFI boot with OVMF: the firmware code and a private copy of the
/// variable store.
#[derive(Debug, Clone)]
pub struct Uefi {
    /// Firmware code (e.g. `/usr/share/OVMF/OVMF_CODE.fd`).
    pub code: PathBuf,
    /// The variable store this run may write (a copy of the template).
    pub vars: PathBuf,
}

impl Uefi {
    /// Debian's firmware code and variable-store template (package `ovmf`):
    /// the 4 MiB builds, then the older 2 MiB ones where only those exist.
    pub const DEBIAN_FIRMWARE: [(&'static str, &'static str); 2] = [
        (
            "/usr/share/OVMF/OVMF_CODE_4M.fd",
            "/usr/share/OVMF/OVMF_VARS_4M.fd",
        ),
        (
            "/usr/share/OVMF/OVMF_CODE.fd",
            "/usr/share/OVMF/OVMF_VARS.fd",
        ),
    ];

    /// Copies the variable store `vars_template` to `run_dir` and returns the
    /// configuration (finds OVMF in its Debian place, see
    /// [`Uefi::DEBIAN_FIRMWARE`], if `code` or `vars_template` is `None`).
    pub fn private_copy(
        code: Option<&Path>,
        vars_template: Option<&Path>,
        run_dir: &Path,
    ) -> Result<Uefi> {
        let (debian_code, debian_vars) = Self::DEBIAN_FIRMWARE
            .into_iter()
            .find(|(c, _)| Path::new(c).exists())
            .unwrap_or(Self::DEBIAN_FIRMWARE[0]);
        let code = code.map_or_else(|| PathBuf::from(debian_code), Path::to_path_buf);
        let template = vars_template.map_or_else(|| PathBuf::from(debian_vars), Path::to_path_buf);
        for f in [&code, &template] {
            if !f.exists() {
                return Err(Error::Config(format!(
                    "UEFI firmware file {} is missing (install the ovmf package)",
                    f.display()
                )));
            }
        }
        let vars = run_dir.join("OVMF_VARS.fd");
        std::fs::copy(&template, &vars).map_err(|e| {
            Error::io(
                format!("copy {} to {}", template.display(), vars.display()),
                e,
            )
        })?;
        Ok(Uefi { code, vars })
    }
}

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
    /// Extra raw arguments, appended last.
    pub extra_args: Vec<String>,
}

impl Default for QemuConfig {
    fn default() -> Self {
        QemuConfig {
            binary: PathBuf::from("qemu-system-x86_64"),
            machine: "pc".into(),
            accel: None,
            memory_mib: 256,
            cpus: 1,
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
    /// control fds QEMU will inherit.
    pub fn args(&self, accel: Accel, fds: ControlFds) -> Vec<String> {
        let mut a: Vec<String> = Vec::new();
        let mut push = |xs: &[&str]| a.extend(xs.iter().map(|s| s.to_string()));
        push(&["-nodefaults", "-no-user-config", "-display", "none"]);
        push(&[
            "-machine",
            &format!("{},accel={}", self.machine, accel.as_str()),
        ]);
        if accel == Accel::Kvm {
            push(&["-cpu", "host"]);
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
        if let Some(uefi) = &self.uefi {
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
        for (n, d) in self.disks.iter().enumerate() {
            let mut spec = format!("if={},index={n}", d.interface);
            match &d.mode {
                DiskMode::Snapshot => {
                    spec.push_str(&format!(",file={},snapshot=on", opt_path(&d.path)));
                    if let Some(f) = &d.format {
                        spec.push_str(&format!(",format={f}"));
                    }
                }
                DiskMode::Overlay(overlay) => {
                    spec.push_str(&format!(",file={},format=qcow2", opt_path(overlay)));
                }
            }
            push(&["-drive", &spec]);
        }
        for (n, nic) in self.nics.iter().enumerate() {
            let netdev = if nic.dgram {
                format!("dgram,id=net{n},local.type=fd,local.str={}", nic.tap_fd)
            } else {
                format!("tap,id=net{n},fd={}", nic.tap_fd)
            };
            push(&["-netdev", &netdev]);
            let mut dev = format!("{},netdev=net{n},id=nic{n}", nic.model.device());
            if let Some(mac) = &nic.mac {
                dev.push_str(&format!(",mac={mac}"));
            }
            push(&["-device", &dev]);
            if let Some(p) = &nic.pcap {
                push(&[
                    "-object",
                    &format!("filter-dump,id=dump{n},netdev=net{n},file={}", opt_path(p)),
                ]);
            }
        }
        a.extend(self.extra_args.iter().cloned());
        a
    }
}

/// A path as a QEMU option value: commas are doubled.
fn opt_path(p: &Path) -> String {
    p.to_string_lossy().replace(',', ",,")
}

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
                },
                Nic {
                    model: NicModel::VirtioNet,
                    mac: None,
                    tap_fd: 8,
                    dgram: true,
                    pcap: None,
                },
            ],
            ..Default::default()
        };
        assert_eq!(
            cfg.args(Accel::Tcg, FDS).join(" "),
            "-nodefaults -no-user-config -display none -machine pc,accel=tcg -m 256 -smp 1 -S \
             -chardev socket,id=qmp,fd=3,server=off -mon chardev=qmp,mode=control \
             -chardev socket,id=serial0,fd=4,server=off,logfile=/run/a/console-qemu.log,logappend=on \
             -serial chardev:serial0 \
             -kernel /k/vmlinuz -initrd /k/initrd.img -append console=ttyS0 quiet \
             -netdev tap,id=net0,fd=7 -device e1000,netdev=net0,id=nic0,mac=52:54:00:00:00:01 \
             -object filter-dump,id=dump0,netdev=net0,file=/run/a/link0.pcap \
             -netdev dgram,id=net1,local.type=fd,local.str=8 -device virtio-net-pci,netdev=net1,id=nic1"
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
            }),
            disks: vec![
                Disk {
                    path: "/img/base,1.qcow2".into(),
                    format: Some("qcow2".into()),
                    interface: "virtio".into(),
                    mode: DiskMode::Snapshot,
                },
                Disk {
                    path: "/img/data.raw".into(),
                    format: Some("raw".into()),
                    interface: "ide".into(),
                    mode: DiskMode::Overlay("/run/a/disk1.qcow2".into()),
                },
            ],
            extra_args: vec!["-rtc".into(), "base=utc".into()],
            ..Default::default()
        };
        assert_eq!(
            cfg.args(Accel::Kvm, FDS).join(" "),
            "-nodefaults -no-user-config -display none -machine q35,accel=kvm -cpu host -m 1024 -smp 2 \
             -no-shutdown \
             -chardev socket,id=qmp,fd=3,server=off -mon chardev=qmp,mode=control \
             -chardev socket,id=serial0,fd=4,server=off -serial chardev:serial0 \
             -drive if=pflash,format=raw,unit=0,readonly=on,file=/fw/CODE.fd \
             -drive if=pflash,format=raw,unit=1,file=/run/a/VARS.fd \
             -drive if=virtio,index=0,file=/img/base,,1.qcow2,snapshot=on,format=qcow2 \
             -drive if=ide,index=1,file=/run/a/disk1.qcow2,format=qcow2 \
             -rtc base=utc"
        );
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
    }
}
