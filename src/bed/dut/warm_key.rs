//! What of a DUT shapes its guest's state, for the warm-start key.

use super::Dut;
use crate::error::Result;
use crate::vm::qemu::Nic;
use crate::vm::Accel;

impl Dut {
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
        for (i, d) in self.disks.iter().enumerate() {
            put(&format!("disk{i}"), file_hash(&d.path)?);
            put(
                &format!("disk{i}.format"),
                format!(
                    "{} {:?} {:?}",
                    d.format.clone().unwrap_or_default(),
                    d.bus,
                    d.media
                ),
            );
        }
        if let (Some(code), Some(vars)) = (self.firmware.code(), self.firmware.vars_template()) {
            put("uefi.code", file_hash(code)?);
            put("uefi.vars", file_hash(vars)?);
            put(
                "uefi.secure_boot",
                self.firmware.secure_boot_on().to_string(),
            );
        }
        put("append", c.append.clone().unwrap_or_default());
        put("machine", self.machine_name().to_string());
        put("cpu", c.cpu.clone().unwrap_or_default());
        put("smbios", c.smbios.join("\u{1f}"));
        put("uuid", c.uuid.clone().unwrap_or_default());
        put("aux_serials", self.aux_serials.to_string());
        if let Some(d) = &self.config_drive {
            use sha2::{Digest, Sha256};
            let mut h = Sha256::new();
            h.update(format!(
                "{:?} {:?} {:?}",
                d.format(),
                d.disk_bus(),
                d.files().len()
            ));
            for (name, data) in d.files() {
                h.update(name.as_bytes());
                h.update([0]);
                h.update(data);
            }
            put("config_drive", format!("{:x}", h.finalize()));
        }
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
                format!(
                    "{:?} {} {:?} {:?}",
                    n.model,
                    n.mac.clone().unwrap_or_default(),
                    n.mtu,
                    n.rom
                ),
            );
        }
        Ok(p)
    }
}
