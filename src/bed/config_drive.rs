//! Day-0 config drives: a vfat or ISO 9660 image made from files the test
//! gives, attached to the DUT, as many vendor VMs read their first
//! configuration from one (cloud-init's `cidata`, OpenStack's `config-2`,
//! a vendor's own label). Built with Debian's dosfstools and mtools (vfat,
//! no mount needed) or xorriso (ISO), into the bed's artifacts.

use std::path::{Component, Path, PathBuf};
use std::process::Command;

use crate::error::{Error, Result};
use crate::vm::qemu::DiskBus;

/// The file system of a config drive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DriveFormat {
    /// A FAT image, attached as a (read-only) disk.
    Vfat,
    /// An ISO 9660 image (Rock Ridge and Joliet names), attached as a CD-ROM.
    Iso,
}

/// A config drive: a label and files.
///
/// ```
/// use alpy::ConfigDrive;
/// let drive = ConfigDrive::vfat("ALPYCFG")
///     .file("day0.sh", "hostname fw-day0\n")
///     .file("openstack/latest/meta_data.json", "{}");
/// assert_eq!(drive.files().len(), 2);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigDrive {
    format: DriveFormat,
    label: String,
    files: Vec<(String, Vec<u8>)>,
    bus: DiskBus,
}

impl ConfigDrive {
    /// A vfat drive labelled `label` (up to 11 characters), on SATA.
    pub fn vfat(label: &str) -> ConfigDrive {
        ConfigDrive::new(DriveFormat::Vfat, label)
    }

    /// An ISO 9660 drive labelled `label` (up to 32 characters), a CD-ROM
    /// on SATA.
    pub fn iso(label: &str) -> ConfigDrive {
        ConfigDrive::new(DriveFormat::Iso, label)
    }

    fn new(format: DriveFormat, label: &str) -> ConfigDrive {
        ConfigDrive {
            format,
            label: label.to_string(),
            files: Vec::new(),
            bus: DiskBus::Sata,
        }
    }

    /// Adds a file; `name` may hold directories (`openstack/latest/x`).
    pub fn file(mut self, name: &str, contents: impl AsRef<[u8]>) -> Self {
        self.files
            .push((name.to_string(), contents.as_ref().to_vec()));
        self
    }

    /// The bus it sits on (default SATA).
    pub fn bus(mut self, bus: DiskBus) -> Self {
        self.bus = bus;
        self
    }

    /// The files, in order.
    pub fn files(&self) -> &[(String, Vec<u8>)] {
        &self.files
    }

    /// Its format.
    pub fn format(&self) -> DriveFormat {
        self.format
    }

    /// Its bus.
    pub fn disk_bus(&self) -> DiskBus {
        self.bus
    }

    /// Whether it can be built: a label that fits, names that stay inside
    /// the drive.
    pub fn check(&self) -> Result<()> {
        let max = match self.format {
            DriveFormat::Vfat => 11,
            DriveFormat::Iso => 32,
        };
        if self.label.is_empty() || self.label.len() > max || !self.label.is_ascii() {
            return Err(Error::Config(format!(
                "config drive label {:?}: use 1 to {max} ASCII characters",
                self.label
            )));
        }
        for (name, _) in &self.files {
            let p = Path::new(name);
            let inside =
                !name.is_empty() && p.components().all(|c| matches!(c, Component::Normal(_)));
            if !inside {
                return Err(Error::Config(format!(
                    "config drive file {name:?}: give a relative path without `..`"
                )));
            }
        }
        Ok(())
    }

    /// Builds the image in `dir` (`config-drive.img` or `.iso`) and
    /// returns its path.
    pub fn build(&self, dir: &Path) -> Result<PathBuf> {
        self.check()?;
        let staging = dir.join("config-drive.d");
        let _ = std::fs::remove_dir_all(&staging);
        for (name, data) in &self.files {
            let p = staging.join(name);
            if let Some(parent) = p.parent() {
                std::fs::create_dir_all(parent)
                    .map_err(|e| Error::io(format!("create {}", parent.display()), e))?;
            }
            std::fs::write(&p, data).map_err(|e| Error::io(format!("write {}", p.display()), e))?;
        }
        std::fs::create_dir_all(&staging)
            .map_err(|e| Error::io(format!("create {}", staging.display()), e))?;
        let image = match self.format {
            DriveFormat::Vfat => {
                let image = dir.join("config-drive.img");
                let _ = std::fs::remove_file(&image);
                let bytes: usize = self.files.iter().map(|(_, d)| d.len() + 4096).sum();
                let kib = (bytes / 1024 + 2048).max(2048);
                run(Command::new("mkfs.vfat")
                    .args(["-C", "-n", &self.label])
                    .arg(&image)
                    .arg(kib.to_string()))?;
                let entries: Vec<PathBuf> = std::fs::read_dir(&staging)
                    .map_err(|e| Error::io(format!("list {}", staging.display()), e))?
                    .flatten()
                    .map(|e| e.path())
                    .collect();
                if !entries.is_empty() {
                    run(Command::new("mcopy")
                        .args(["-s", "-i"])
                        .arg(&image)
                        .args(&entries)
                        .arg("::/"))?;
                }
                image
            }
            DriveFormat::Iso => {
                let image = dir.join("config-drive.iso");
                let _ = std::fs::remove_file(&image);
                run(Command::new("xorriso")
                    .args([
                        "-as",
                        "mkisofs",
                        "-quiet",
                        "-J",
                        "-R",
                        "-V",
                        &self.label,
                        "-o",
                    ])
                    .arg(&image)
                    .arg(&staging))?;
                image
            }
        };
        let _ = std::fs::remove_dir_all(&staging);
        log::info!(target: "alpy::testbed", "config drive {} ({:?}, {} files): {}", self.label, self.format, self.files.len(), image.display());
        Ok(image)
    }
}

fn run(cmd: &mut Command) -> Result<()> {
    let what = format!("{cmd:?}");
    let out = cmd.output().map_err(|e| {
        Error::io(
            format!("run {what} (scripts/setup installs dosfstools, mtools and xorriso)"),
            e,
        )
    })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(Error::CommandFailed {
            what,
            status: out.status.to_string(),
            output: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_must_stay_inside_and_labels_fit() {
        let e = ConfigDrive::vfat("CFG").file("../etc/passwd", "x").check();
        assert!(e.unwrap_err().to_string().contains("without `..`"));
        let e = ConfigDrive::vfat("CFG").file("/etc/passwd", "x").check();
        assert!(e.is_err());
        let e = ConfigDrive::vfat("TWELVE-CHARS").check();
        assert!(e.unwrap_err().to_string().contains("1 to 11"));
        ConfigDrive::iso("config-2")
            .file("a/b/c.json", "{}")
            .check()
            .unwrap();
    }

    #[test]
    fn both_formats_build_and_hold_their_files() {
        let dir = std::env::temp_dir().join(format!("alpy-cd-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let vfat = ConfigDrive::vfat("ALPYCFG")
            .file("day0.sh", "echo hi\n")
            .file("sub/dir/x.txt", "deep")
            .build(&dir)
            .unwrap();
        let listing = Command::new("mdir")
            .args(["-/", "-b", "-i"])
            .arg(&vfat)
            .arg("::/")
            .output()
            .unwrap();
        let listing = String::from_utf8_lossy(&listing.stdout);
        assert!(
            listing.contains("day0.sh") && listing.contains("sub/dir/x.txt"),
            "{listing}"
        );
        let iso = ConfigDrive::iso("config-2")
            .file("openstack/latest/meta_data.json", "{}")
            .build(&dir)
            .unwrap();
        let bytes = std::fs::read(&iso).unwrap();
        // The primary volume descriptor at 32 KiB holds the label.
        assert_eq!(&bytes[32769..32774], b"CD001");
        assert!(bytes[32808..32840].starts_with(b"config-2"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
