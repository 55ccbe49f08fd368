//! What may reach QEMU's command line from a string that a test, a
//! topology file or an uploaded lab topology gave. QEMU parses most option
//! values as `key=value` lists split at single commas, so a free string
//! that holds a comma can add an option (`format = "raw,file=/etc/shadow"`).
//! Every such field is checked here, in the command-line builder, so local
//! beds and labs are protected alike:
//!
//! - disk formats come from a fixed set ([`DISK_FORMATS`]);
//! - the machine, CPU model and NIC model are names: letters, digits,
//!   `.`, `_`, `-`, `+`, no comma, no `=`;
//! - a UUID and a MAC are what their syntax says;
//! - SMBIOS tables are typed ([`Smbios`]): a known type, its known keys
//!   (never `file=` or `path=`), values with commas escaped;
//! - paths are escaped (QEMU's `,,`).
//!
//! ```
//! use alpy::internal::argv_check::Smbios;
//! let t: Smbios = "type=1,manufacturer=Acme,,Inc,serial=A1".parse().unwrap();
//! assert_eq!(t.to_arg(), "type=1,manufacturer=Acme,,Inc,serial=A1");
//! assert!("type=1,file=/etc/shadow".parse::<Smbios>().is_err());
//! assert!(alpy::internal::argv_check::check_disk_format("raw,file=/x").is_err());
//! ```

use crate::error::{Error, Result};
use crate::vm::qemu::QemuConfig;

/// The disk image formats a disk may name.
pub const DISK_FORMATS: &[&str] = &["raw", "qcow2", "qcow", "qed", "vmdk", "vdi", "vhdx", "vpc"];

/// `s` is a disk format QEMU knows, from [`DISK_FORMATS`].
pub fn check_disk_format(s: &str) -> Result<()> {
    if DISK_FORMATS.contains(&s) {
        return Ok(());
    }
    Err(Error::Config(format!(
        "disk format {s:?}: expected one of {}",
        DISK_FORMATS.join(", ")
    )))
}

/// `s` is a plain name (a machine, CPU or device model): 1-64 of
/// letters, digits, `.`, `_`, `-`, `+`, starting with a letter or digit.
fn check_name(what: &str, s: &str, example: &str) -> Result<()> {
    let ok = !s.is_empty()
        && s.len() <= 64
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-+".contains(c));
    if ok {
        return Ok(());
    }
    Err(Error::Config(format!(
        "{what} {s:?}: a name of letters, digits, '.', '_', '-' and '+' (no ',' or '='), such as {example:?}; \
         `qemu-system-x86_64 -{} help` lists them",
        if what == "CPU model" { "cpu" } else if what == "machine" { "machine" } else { "device" }
    )))
}

/// `s` is a machine type name (`pc`, `q35`, `pc-q35-7.2`).
pub fn check_machine(s: &str) -> Result<()> {
    check_name("machine", s, "q35")
}

/// `s` is a CPU model name (`Skylake-Client`); features are not taken.
pub fn check_cpu(s: &str) -> Result<()> {
    check_name("CPU model", s, "Skylake-Client")
}

/// `s` is a device model name (a NIC's `virtio-net-pci`).
pub fn check_device(s: &str) -> Result<()> {
    check_name("device model", s, "virtio-net-pci")
}

/// `s` is a UUID: 8-4-4-4-12 hex digits.
pub fn check_uuid(s: &str) -> Result<()> {
    let groups: Vec<&str> = s.split('-').collect();
    let lens = [8, 4, 4, 4, 12];
    let ok = groups.len() == 5
        && groups
            .iter()
            .zip(lens)
            .all(|(g, n)| g.len() == n && g.chars().all(|c| c.is_ascii_hexdigit()));
    if ok {
        return Ok(());
    }
    Err(Error::Config(format!(
        "uuid {s:?}: expected 8-4-4-4-12 hex digits, such as \"6a2b4c1e-0000-4000-8000-00000000a1a1\""
    )))
}

/// `s` is a MAC address: six two-digit hex groups split by `:`.
pub fn check_mac(s: &str) -> Result<()> {
    let ok = s.len() == 17
        && s.split(':').count() == 6
        && s.split(':')
            .all(|g| g.len() == 2 && g.chars().all(|c| c.is_ascii_hexdigit()));
    if ok {
        return Ok(());
    }
    Err(Error::Config(format!(
        "MAC {s:?}: expected six hex pairs such as \"52:54:00:12:34:56\""
    )))
}

/// A value inside a QEMU option list: commas doubled, so it stays one
/// value.
pub fn escape(s: &str) -> String {
    s.replace(',', ",,")
}

/// Splits a QEMU option list at single commas (`,,` is a comma inside a
/// value), as QEMU does.
pub fn split_opts(s: &str) -> Vec<String> {
    let mut parts = vec![String::new()];
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == ',' {
            if chars.peek() == Some(&',') {
                chars.next();
                if let Some(last) = parts.last_mut() {
                    last.push(',');
                }
            } else {
                parts.push(String::new());
            }
        } else if let Some(last) = parts.last_mut() {
            last.push(c);
        }
    }
    parts
}

/// The keys SMBIOS table `kind` takes (QEMU's `-smbios` documentation),
/// none of which names a file.
fn smbios_keys(kind: u8) -> Option<&'static [&'static str]> {
    Some(match kind {
        0 => &["vendor", "version", "date", "release", "uefi"],
        1 => &[
            "manufacturer",
            "product",
            "version",
            "serial",
            "uuid",
            "sku",
            "family",
        ],
        2 => &[
            "manufacturer",
            "product",
            "version",
            "serial",
            "asset",
            "location",
        ],
        3 => &["manufacturer", "version", "serial", "asset", "sku"],
        4 => &[
            "sock_pfx",
            "manufacturer",
            "version",
            "serial",
            "asset",
            "part",
        ],
        11 => &["value"],
        17 => &[
            "loc_pfx",
            "bank",
            "manufacturer",
            "serial",
            "asset",
            "part",
            "speed",
        ],
        _ => return None,
    })
}

/// One SMBIOS table: its type and its fields, typed (a known type and
/// its known keys); written back with commas escaped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Smbios {
    /// The table type (0, 1, 2, 3, 4, 11 or 17).
    pub kind: u8,
    /// `(key, value)` pairs, in order.
    pub fields: Vec<(String, String)>,
}

impl std::str::FromStr for Smbios {
    type Err = Error;

    /// QEMU's syntax: `type=1,manufacturer=Acme,serial=A1` (`,,` for a
    /// comma in a value).
    fn from_str(s: &str) -> Result<Smbios> {
        let bad = |why: String| Error::Config(format!("smbios {s:?}: {why}"));
        let parts = split_opts(s);
        let kind = parts
            .first()
            .and_then(|p| p.strip_prefix("type="))
            .and_then(|t| t.parse::<u8>().ok())
            .ok_or_else(|| bad("start with type=N (0, 1, 2, 3, 4, 11 or 17)".into()))?;
        let keys = smbios_keys(kind)
            .ok_or_else(|| bad(format!("type {kind} is not one of 0, 1, 2, 3, 4, 11, 17")))?;
        let mut fields = Vec::new();
        for p in &parts[1..] {
            let (k, v) = p
                .split_once('=')
                .ok_or_else(|| bad(format!("{p:?} is not key=value")))?;
            if !keys.contains(&k) {
                return Err(bad(format!(
                    "type {kind} takes {} (not {k:?})",
                    keys.join(", ")
                )));
            }
            if v.chars().any(char::is_control) {
                return Err(bad(format!("{k}'s value holds a control character")));
            }
            fields.push((k.to_string(), v.to_string()));
        }
        Ok(Smbios { kind, fields })
    }
}

impl Smbios {
    /// The `-smbios` value, commas in values escaped.
    pub fn to_arg(&self) -> String {
        let mut s = format!("type={}", self.kind);
        for (k, v) in &self.fields {
            s.push_str(&format!(",{k}={}", escape(v)));
        }
        s
    }
}

/// Checks every string of `cfg` that reaches an option list.
pub(crate) fn check(cfg: &QemuConfig) -> Result<()> {
    check_machine(&cfg.machine)?;
    if let Some(c) = &cfg.cpu {
        check_cpu(c)?;
    }
    if let Some(u) = &cfg.uuid {
        check_uuid(u)?;
    }
    for s in &cfg.smbios {
        s.parse::<Smbios>()?;
    }
    for d in &cfg.disks {
        if let Some(f) = &d.format {
            check_disk_format(f)?;
        }
    }
    for n in &cfg.nics {
        check_device(n.model.device())?;
        if let Some(m) = &n.mac {
            check_mac(m)?;
        }
    }
    if let Some(a) = &cfg.append {
        if a.contains('\0') {
            return Err(Error::Config("append: holds a NUL byte".into()));
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "argv_check_tests.rs"]
mod tests;
