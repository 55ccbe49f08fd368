//! A [`Dut`] written back as a topology file's `[dut]` table: what a test
//! bed sends to a lab server when `REMOTE_LAB_URL` is set. Every choice
//! the file can say is written; one it cannot (a config drive, a chosen
//! accelerator or QEMU binary) is an error that names it.

use toml::{Table, Value};

use crate::bed::dut::Dut;
use crate::error::{Error, Result};
use crate::nic::NicRom;
use crate::vm::firmware::Firmware;
use crate::vm::qemu::{DiskBus, Media, QemuConfig};

/// A disk bus as a topology file names it.
pub(crate) fn bus_name(bus: DiskBus) -> &'static str {
    match bus {
        DiskBus::Virtio => "virtio",
        DiskBus::Ide => "ide",
        DiskBus::Sata => "sata",
        DiskBus::Scsi => "scsi",
        DiskBus::Nvme => "nvme",
    }
}

/// A NIC option ROM as a topology file names it.
pub(crate) fn rom_name(rom: &NicRom) -> String {
    match rom {
        NicRom::None => "none".into(),
        NicRom::QemuDefault => "default".into(),
        NicRom::File(p) => p.display().to_string(),
    }
}

fn path(p: &std::path::Path) -> Value {
    Value::String(p.display().to_string())
}

fn unsupported(what: &str) -> Error {
    Error::Config(format!(
        "the DUT's {what} cannot be sent to a lab server (REMOTE_LAB_URL is set): \
         a remote bed is described by a topology file, which has no such key; \
         leave it out or run the bed here"
    ))
}

impl Dut {
    /// The `[dut]` table of a topology file that describes this DUT, with
    /// its files as local paths (the lab client turns them into the lab
    /// store's names).
    pub(crate) fn topology_table(&self) -> Result<Table> {
        let c = &self.config;
        let default = QemuConfig::default();
        if c.binary != default.binary {
            return Err(unsupported("QEMU binary"));
        }
        if c.accel.is_some() {
            return Err(unsupported("accelerator (the lab host chooses)"));
        }
        if self.config_drive.is_some() {
            return Err(unsupported("config drive"));
        }
        if self.overlay_disks {
            return Err(unsupported("overlay_disks"));
        }
        let mut t = Table::new();
        if let Some(k) = &c.kernel {
            t.insert("kernel".into(), path(k));
        }
        if let Some(i) = &c.initrd {
            t.insert("initrd".into(), path(i));
        }
        if let Some(a) = &c.append {
            t.insert("append".into(), Value::String(a.clone()));
        }
        let disks: Vec<Value> = self
            .disks
            .iter()
            .map(|d| {
                let mut disk = Table::new();
                disk.insert("path".into(), path(&d.path));
                if let Some(f) = &d.format {
                    disk.insert("format".into(), Value::String(f.clone()));
                }
                disk.insert("bus".into(), Value::String(bus_name(d.bus).into()));
                if d.media == Media::Cdrom {
                    disk.insert("cdrom".into(), Value::Boolean(true));
                }
                Value::Table(disk)
            })
            .collect();
        if !disks.is_empty() {
            t.insert("disks".into(), Value::Array(disks));
        }
        match &self.firmware {
            Firmware::Bios => {}
            fw if *fw == Firmware::uefi() => {
                t.insert("firmware".into(), Value::String("uefi".into()));
            }
            fw if *fw == Firmware::secure_boot() => {
                t.insert("firmware".into(), Value::String("secure-boot".into()));
            }
            Firmware::Uefi {
                code,
                vars_template,
                secure_boot,
            } => {
                let name = if *secure_boot { "secure-boot" } else { "uefi" };
                t.insert("firmware".into(), Value::String(name.into()));
                t.insert("firmware_code".into(), path(code));
                t.insert("firmware_vars".into(), path(vars_template));
            }
        }
        if let Some(m) = &self.machine {
            t.insert("machine".into(), Value::String(m.clone()));
        }
        t.insert(
            "nic_model".into(),
            Value::String(self.nic_model.device().into()),
        );
        if self.nic_rom != NicRom::None {
            t.insert("nic_rom".into(), Value::String(rom_name(&self.nic_rom)));
        }
        t.insert("memory_mib".into(), Value::Integer(c.memory_mib.into()));
        t.insert("cpus".into(), Value::Integer(c.cpus.into()));
        if let Some(cpu) = &c.cpu {
            t.insert("cpu".into(), Value::String(cpu.clone()));
        }
        let strings = |v: &[String]| Value::Array(v.iter().cloned().map(Value::String).collect());
        if !c.smbios.is_empty() {
            t.insert("smbios".into(), strings(&c.smbios));
        }
        if let Some(u) = &c.uuid {
            t.insert("uuid".into(), Value::String(u.clone()));
        }
        if self.aux_serials > 0 {
            t.insert(
                "aux_serials".into(),
                Value::Integer(self.aux_serials as i64),
            );
        }
        if !c.extra_args.is_empty() {
            t.insert("extra_args".into(), strings(&c.extra_args));
        }
        Ok(t)
    }
}
