//! The recipe file: what an image is made of, as TOML.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Error, Result};

/// An image recipe, read from a TOML file by [`Recipe::load`].
///
/// ```toml
/// name = "dnsbox"                       # output: <cache>/dnsbox/
/// packages = ["dnsmasq-base", "iproute2"]
/// files = "rootfs"                      # copied over the root file system
/// modules = ["virtio_net", "e1000"]     # names, or paths under kernel/
/// init = "busybox"
///
/// [login]
/// password = "dnsbox"                   # root logs in on ttyS0 with it
///
/// [output]
/// kind = "initramfs"                    # or "disk" (ext4 qcow2), "uefi-disk"
/// ```
///
/// Every key is in `docs/IMAGES.md`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recipe {
    /// The image's name: its output directory under alpy's cache, and the
    /// disk's file name (`NAME.qcow2`). Letters, digits, `-`, `_`, `.`.
    pub name: String,
    /// Debian packages of the root file system, as the host's apt sources
    /// serve them; their dependencies (not recommends) are added.
    #[serde(default)]
    pub packages: Vec<String>,
    /// The kernel package (default `linux-image-amd64`, resolved to the
    /// versioned package it depends on).
    #[serde(default = "default_kernel")]
    pub kernel: String,
    /// A directory (relative to the recipe) copied over the root file
    /// system last: configuration, scripts, `/etc/inittab`, `/init`.
    #[serde(default)]
    pub files: Option<PathBuf>,
    /// Empty directories to create in the root file system.
    #[serde(default)]
    pub dirs: Vec<String>,
    /// Kernel modules to keep: a name (`virtio_net`) with what it depends
    /// on, or a path under the kernel's `kernel/` directory (a file or a
    /// whole directory, `net/netfilter`). Modules named by name are loaded
    /// at boot in dependency order (`/etc/modules-order`).
    #[serde(default)]
    pub modules: Vec<String>,
    /// What runs as PID 1.
    #[serde(default)]
    pub init: Init,
    /// Who logs in on the serial console.
    #[serde(default)]
    pub login: Login,
    /// What the build makes.
    pub output: Output,
    /// Packages' paths to leave out of the root file system (documentation,
    /// locales): globs are not supported, each entry is a path prefix.
    #[serde(default = "default_prune")]
    pub prune: Vec<String>,
    /// Where the recipe file is (relative paths in it are from there).
    #[serde(skip)]
    pub dir: PathBuf,
    /// The recipe file's text (part of the image's content hash).
    #[serde(skip)]
    pub text: String,
}

/// What runs as PID 1.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Init {
    /// Busybox's init, with every applet a package does not provide as a
    /// link. The busybox is Debian's `busybox` (dynamic; its shell runs
    /// the packages' programs, `ip` is iproute2's) unless `packages` names
    /// `busybox-static` (no libc needed; its shell prefers its own
    /// applets). It reads `/etc/inittab`; without one in
    /// `files`, the image gets one that runs `/etc/init.d/rcS` (if present)
    /// and a login (or a shell, with no password) on ttyS0. An initramfs
    /// with its own `/init` in `files` runs that instead.
    #[default]
    Busybox,
    /// systemd, from Debian's `systemd-sysv` (with `udev`, `util-linux`'s
    /// `agetty` and `login`, added to the packages). Services are units
    /// in `files` (`/etc/systemd/system/...`, enabled by their
    /// `.wants/` links) or `/etc/rc.local`; the recipe's named modules go
    /// to `/etc/modules-load.d/alpy.conf`; the console is
    /// `serial-getty@ttyS0` (with `--autologin root` when there is no
    /// password).
    Systemd,
}

impl Init {
    /// The packages this init needs besides the recipe's.
    pub fn packages(self) -> &'static [&'static str] {
        match self {
            Init::Busybox => &[],
            Init::Systemd => &["systemd-sysv", "udev", "util-linux", "login"],
        }
    }
}

/// Who logs in on the serial console (`ttyS0`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Login {
    /// The user (default `root`); it must be in `/etc/passwd`.
    #[serde(default = "default_user")]
    pub user: String,
    /// Its password. Without one, the console gives a root shell with no
    /// login.
    pub password: Option<String>,
}

impl Default for Login {
    fn default() -> Login {
        Login {
            user: default_user(),
            password: None,
        }
    }
}

/// What the build makes, besides the kernel (`vmlinuz`).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Output {
    /// The whole root file system as an initramfs (`initrd.img`): boot it
    /// with `Dut::kernel(vmlinuz, Some(initrd.img))`.
    Initramfs {},
    /// An ext4 root disk (`NAME.qcow2`, compressed) and a small initramfs
    /// (`initrd.img`) that mounts it from `/dev/vda` (a virtio disk).
    Disk {
        /// The disk's size in MiB (default 512).
        #[serde(default = "default_disk_mib")]
        size_mib: u32,
    },
    /// A GPT disk (`disk.raw`) whose EFI system partition holds Debian's
    /// signed shim and GRUB, the kernel and the image as an initramfs, the
    /// way vendor appliances ship: boot it with `Dut::uefi()`.
    UefiDisk {
        /// The kernel command line GRUB passes (after `console=ttyS0,115200`).
        #[serde(default)]
        kernel_args: String,
    },
}

/// Names of alpy's own cache directories, which an image may not take.
const RESERVED: [&str; 3] = ["apt", "warm", "ci-tools"];

fn default_kernel() -> String {
    "linux-image-amd64".into()
}
fn default_user() -> String {
    "root".into()
}
fn default_disk_mib() -> u32 {
    512
}
fn default_prune() -> Vec<String> {
    [
        "usr/share/doc",
        "usr/share/man",
        "usr/share/info",
        "usr/share/locale",
        "var/cache/debconf",
    ]
    .map(String::from)
    .to_vec()
}

impl Recipe {
    /// Reads and checks a recipe file. Errors name the file, the line and
    /// column, and what is wrong.
    pub fn load(path: &Path) -> Result<Recipe> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::Io {
            context: format!("read recipe {}", path.display()),
            source: e,
        })?;
        let dir = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        Recipe::parse(&text, &dir).map_err(|e| Error::Config(format!("{}: {e}", path.display())))
    }

    /// Parses a recipe's text; relative paths in it are from `dir`.
    pub fn parse(text: &str, dir: &Path) -> std::result::Result<Recipe, String> {
        let mut r: Recipe = toml::from_str(text).map_err(|e| {
            let at = e
                .span()
                .map(|s| {
                    let line = text[..s.start].matches('\n').count() + 1;
                    let col = s.start - text[..s.start].rfind('\n').map_or(0, |i| i + 1) + 1;
                    format!("{line}:{col}: ")
                })
                .unwrap_or_default();
            format!("{at}{}", e.message())
        })?;
        r.dir = dir.to_path_buf();
        r.text = text.to_string();
        r.check()?;
        Ok(r)
    }

    fn check(&self) -> std::result::Result<(), String> {
        let name_ok = !self.name.is_empty()
            && !self.name.starts_with('.')
            && self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
        if !name_ok {
            return Err(format!(
                "name {:?}: use letters, digits, '-', '_' or '.' (it names a directory)",
                self.name
            ));
        }
        for p in self.packages.iter().chain(std::iter::once(&self.kernel)) {
            let ok = !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+-.:".contains(c));
            if !ok || p.starts_with('-') {
                return Err(format!("package {p:?} is not a Debian package name"));
            }
        }
        if let Some(f) = self.files_dir() {
            if !f.is_dir() {
                return Err(format!(
                    "files = {:?}: {} is not a directory",
                    self.files.as_deref().unwrap_or(Path::new("")),
                    f.display()
                ));
            }
        }
        for m in &self.modules {
            if m.is_empty() || m.contains("..") || m.starts_with('/') {
                return Err(format!(
                    "module {m:?}: give a module name or a path under the kernel's kernel/ directory"
                ));
            }
        }
        for d in self.dirs.iter().chain(&self.prune) {
            if d.split('/').any(|c| c == "..") {
                return Err(format!("path {d:?} leaves the root file system"));
            }
        }
        if let Some(p) = self.prune.iter().find(|p| p.trim_matches('/').is_empty()) {
            return Err(format!(
                "prune {p:?} would remove the whole root file system"
            ));
        }
        if RESERVED.contains(&self.name.as_str()) {
            return Err(format!(
                "name {:?} is a directory of alpy's own cache ({}): choose another",
                self.name,
                RESERVED.join(", ")
            ));
        }
        if let Output::UefiDisk { kernel_args } = &self.output {
            if let Some(c) = kernel_args
                .chars()
                .find(|c| c.is_control() || "\"'`$;{}\\".contains(*c))
            {
                return Err(format!(
                    "output.kernel_args: {c:?} is not allowed (it would change GRUB's script); give plain key=value words"
                ));
            }
        }
        if let Output::Disk { size_mib } = self.output {
            if size_mib < 16 {
                return Err(format!("output.size_mib = {size_mib}: give at least 16"));
            }
        }
        Ok(())
    }

    /// The `files` directory, resolved from the recipe's directory.
    pub fn files_dir(&self) -> Option<PathBuf> {
        self.files.as_ref().map(|f| self.dir.join(f))
    }
}
