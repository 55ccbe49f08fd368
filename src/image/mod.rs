//! Appliance images from Debian packages and a TOML recipe.
//!
//! A [`Recipe`] names packages, a directory of files, kernel modules, the
//! init and the console login, and the output: an initramfs, an ext4 root
//! disk, or a GPT disk that boots through UEFI. [`Plan::new`] resolves the
//! packages as the host's apt sources serve them (never the host's
//! installed versions) and hashes everything the image is made of;
//! [`Plan::build`] makes the image only when that hash changed. `alpy image
//! build RECIPE` does both. Rabbit and alpy's test guest are built this way.
//!
//! ```no_run
//! use alpy::image::{Plan, Recipe};
//! use alpy::settings::Settings;
//!
//! # fn main() -> alpy::Result<()> {
//! let recipe = Recipe::load("examples/dnsbox/recipe.toml".as_ref())?;
//! let built = Plan::new(&recipe, &Settings::from_env())?.build()?;
//! println!("kernel {}", built.kernel.display());
//! # Ok(())
//! # }
//! ```
//!
//! What the build needs on the host (apt-get, dpkg-deb, cpio, modinfo,
//! depmod, mkfs.ext4, qemu-img, sfdisk, mtools) is in `scripts/requirements`;
//! `alpy doctor` checks it.

mod apt;
mod modules;
mod output;
mod recipe;
mod root;

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

pub use recipe::{Init, Login, Output, Recipe};

use crate::error::{Error, Result};
use crate::logging::step;
use crate::settings::Settings;
use apt::{io, Repo};

/// The builder's own text, part of every image's hash: a change to how
/// images are made (a default script, the module handling) rebuilds them.
const BUILDER: [&str; 8] = [
    include_str!("mod.rs"),
    include_str!("root.rs"),
    include_str!("modules.rs"),
    include_str!("output.rs"),
    include_str!("apt.rs"),
    include_str!("recipe.rs"),
    include_str!("rcS"),
    include_str!("disk-init"),
];

/// The files of a built image, in its output directory.
#[derive(Debug, Clone)]
pub struct Built {
    /// The output directory (`<cache>/NAME`).
    pub dir: PathBuf,
    /// The content hash the image was built from.
    pub hash: String,
    /// The kernel (`vmlinuz`).
    pub kernel: PathBuf,
    /// How it boots, with the files of its output kind.
    pub boot: Boot,
}

/// The boot files of each output kind.
#[derive(Debug, Clone)]
pub enum Boot {
    /// `initrd.img`: the whole root file system.
    Initramfs {
        /// The initramfs.
        initrd: PathBuf,
    },
    /// `initrd.img` mounts `NAME.qcow2` from `/dev/vda`.
    Disk {
        /// The small initramfs.
        initrd: PathBuf,
        /// The root disk (qcow2).
        disk: PathBuf,
    },
    /// `disk.raw`: a GPT disk that boots through UEFI (the kernel is on
    /// it; `vmlinuz` beside it is a copy).
    UefiDisk {
        /// The disk (raw).
        disk: PathBuf,
    },
}

/// A recipe resolved against the repositories: its packages, their
/// versions, and the hash of everything the image is made of.
pub struct Plan<'a> {
    recipe: &'a Recipe,
    repo: Repo,
    /// The versioned kernel package.
    kernel_pkg: String,
    /// Every package unpacked into the root, dependencies included.
    packages: Vec<String>,
    /// Packages only the output needs (shim and GRUB for UEFI).
    output_packages: Vec<String>,
    /// The content hash (16 hex digits).
    pub hash: String,
    /// Where the image goes.
    pub dir: PathBuf,
}

impl<'a> Plan<'a> {
    /// Resolves the recipe's packages (as the repositories serve them) and
    /// computes its hash. Takes about a second: apt reads its lists.
    pub fn new(recipe: &'a Recipe, settings: &Settings) -> Result<Plan<'a>> {
        let cache = settings
            .cache_dir()
            .ok_or_else(|| Error::Config("neither ALPY_CACHE nor HOME is set".into()))?;
        let repo = Repo::new(cache.join("apt"))?;
        let kernel_pkg = repo.kernel_package(&recipe.kernel)?;
        let mut wanted = recipe.packages.clone();
        wanted.extend(recipe.init.packages().iter().map(|p| p.to_string()));
        if !recipe
            .packages
            .iter()
            .any(|p| p == "busybox" || p == "busybox-static")
        {
            wanted.push("busybox".into());
        }
        // For the build itself: a disk's initramfs, mkpasswd.
        wanted.push("busybox-static".into());
        let packages = repo.closure(&wanted)?;
        let output_packages: Vec<String> = match recipe.output {
            Output::UefiDisk { .. } => vec!["shim-signed".into(), "grub-efi-amd64-signed".into()],
            _ => Vec::new(),
        };
        let mut all = packages.clone();
        all.push(kernel_pkg.clone());
        all.extend(output_packages.iter().cloned());
        let pins = repo.pins(&all)?;
        if pins.len() < all.len() {
            return Err(Error::Config(format!(
                "the repositories serve {} of the {} packages {} needs (run apt-get update)",
                pins.len(),
                all.len(),
                recipe.name
            )));
        }
        let hash = content_hash(recipe, &pins)?;
        Ok(Plan {
            recipe,
            repo,
            kernel_pkg,
            packages,
            output_packages,
            hash,
            dir: cache.join(&recipe.name),
        })
    }

    /// The image, if it is built and its hash is this plan's.
    pub fn current(&self) -> Option<Built> {
        let built = self.built();
        let have = std::fs::read_to_string(self.dir.join("hash")).ok()?;
        let files: Vec<&PathBuf> = match &built.boot {
            Boot::Initramfs { initrd } => vec![&built.kernel, initrd],
            Boot::Disk { initrd, disk } => vec![&built.kernel, initrd, disk],
            Boot::UefiDisk { disk } => vec![&built.kernel, disk],
        };
        (have.trim() == self.hash && files.iter().all(|f| f.is_file())).then_some(built)
    }

    fn built(&self) -> Built {
        let d = &self.dir;
        let boot = match self.recipe.output {
            Output::Initramfs {} => Boot::Initramfs {
                initrd: d.join("initrd.img"),
            },
            Output::Disk { .. } => Boot::Disk {
                initrd: d.join("initrd.img"),
                disk: d.join(format!("{}.qcow2", self.recipe.name)),
            },
            Output::UefiDisk { .. } => Boot::UefiDisk {
                disk: d.join("disk.raw"),
            },
        };
        Built {
            dir: d.clone(),
            hash: self.hash.clone(),
            kernel: d.join("vmlinuz"),
            boot,
        }
    }

    /// Builds the image unless it is current. Each step is logged with
    /// its time; a failure leaves the previous image in place.
    pub fn build(&self) -> Result<Built> {
        if let Some(b) = self.current() {
            log::info!("image {} is up to date ({})", self.recipe.name, self.hash);
            return Ok(b);
        }
        if matches!(self.recipe.output, Output::Disk { .. }) && !nix::unistd::geteuid().is_root() {
            return Err(Error::Config(format!(
                "{}: a disk output needs root (the ext4 image holds root-owned files): run as root, or \
                 use kind = \"initramfs\"",
                self.recipe.name
            )));
        }
        let work = WorkDir::new(&self.recipe.name)?;
        let w = work.0.as_path();
        let debs = w.join("debs");
        root::mkdir(&debs)?;
        let mut download: Vec<String> = self.packages.clone();
        download.push(self.kernel_pkg.clone());
        step(
            format!(
                "Download {} package(s) and {}",
                self.packages.len(),
                self.kernel_pkg
            ),
            || self.repo.download(&debs, &download),
        )?;
        let root = step("Unpack the packages", || {
            let static_in_root = self.recipe.packages.iter().any(|p| p == "busybox-static");
            root::Root::unpack(w, &debs, &self.kernel_pkg, static_in_root)
        })?;
        step("Add busybox", || root.busybox())?;
        step(
            format!("Add {} kernel module entries", self.recipe.modules.len()),
            || root.modules(self.recipe),
        )?;
        step("Configure (files, users, login, start-up)", || {
            root.configure(self.recipe)
        })?;
        root::mkdir(&self.dir)?;
        let out = self.built();
        let mut made: Vec<PathBuf> = Vec::new();
        let r = self.make_outputs(&root, w, &out, &mut made);
        if let Err(e) = r {
            for f in &made {
                let _ = std::fs::remove_file(staged(f));
            }
            return Err(e);
        }
        // No hash while files are replaced: a crash half-way leaves an
        // image that is never taken for current.
        let hash_file = self.dir.join("hash");
        if hash_file.exists() {
            std::fs::remove_file(&hash_file).map_err(|e| io(&hash_file, "remove", e))?;
        }
        for f in &made {
            std::fs::rename(staged(f), f).map_err(|e| io(f, "move into place", e))?;
        }
        root::write(&hash_file, &format!("{}\n", self.hash))?;
        log::info!(
            "image {} built in {} ({})",
            self.recipe.name,
            self.dir.display(),
            self.hash
        );
        Ok(out)
    }

    /// Makes the output's files, each at its staged name; `made` lists
    /// them (final names) as they are made.
    fn make_outputs(
        &self,
        root: &root::Root,
        w: &Path,
        out: &Built,
        made: &mut Vec<PathBuf>,
    ) -> Result<()> {
        match (&self.recipe.output, &out.boot) {
            (Output::Initramfs {}, Boot::Initramfs { initrd }) => {
                made.push(initrd.clone());
                step("Pack the initramfs", || {
                    output::initramfs(root, &staged(initrd))
                })?;
            }
            (Output::Disk { size_mib }, Boot::Disk { initrd, disk }) => {
                made.extend([initrd.clone(), disk.clone()]);
                step(
                    format!("Make the ext4 disk ({size_mib} MiB) and its initramfs"),
                    || {
                        output::disk(
                            root,
                            w,
                            &self.recipe.name,
                            *size_mib,
                            &staged(disk),
                            &staged(initrd),
                        )
                    },
                )?;
            }
            (Output::UefiDisk { kernel_args }, Boot::UefiDisk { disk }) => {
                let efi_debs = w.join("efi-debs");
                root::mkdir(&efi_debs)?;
                step("Download shim and GRUB", || {
                    self.repo.download(&efi_debs, &self.output_packages)
                })?;
                for deb in std::fs::read_dir(&efi_debs).map_err(|e| io(&efi_debs, "read", e))? {
                    let deb = deb.map_err(|e| io(&efi_debs, "read", e))?.path();
                    apt::run(
                        std::process::Command::new("dpkg-deb")
                            .arg("-x")
                            .arg(&deb)
                            .arg(w.join("efi")),
                        "unpack shim and GRUB",
                    )?;
                }
                made.push(disk.clone());
                step(
                    "Make the GPT disk (ESP: shim, GRUB, kernel, initramfs)",
                    || output::uefi_disk(root, w, kernel_args, &staged(disk)),
                )?;
            }
            _ => {
                return Err(Error::Internal(
                    "output kind and boot files disagree".into(),
                ))
            }
        }
        let k = root
            .kernel
            .join("boot")
            .join(format!("vmlinuz-{}", root.kver));
        made.push(out.kernel.clone());
        root::copy(&k, &staged(&out.kernel))
    }
}

/// Where a file is made before it replaces the old one: `NAME.new`.
fn staged(p: &Path) -> PathBuf {
    let mut name = p.file_name().unwrap_or_default().to_os_string();
    name.push(".new");
    p.with_file_name(name)
}

/// Hashes what the image is made of: the builder, the recipe, its files
/// (paths, modes, contents, link targets) and the packages' pins.
fn content_hash(recipe: &Recipe, pins: &[String]) -> Result<String> {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for part in BUILDER {
        h.update(part);
    }
    h.update(&recipe.text);
    for p in pins {
        h.update(p);
        h.update("\n");
    }
    if let Some(dir) = recipe.files_dir() {
        let mut stack = vec![dir.clone()];
        let mut files: Vec<PathBuf> = Vec::new();
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).map_err(|e| io(&d, "read", e))? {
                let p = e.map_err(|e| io(&d, "read", e))?.path();
                let meta = p.symlink_metadata().map_err(|e| io(&p, "stat", e))?;
                if meta.is_dir() {
                    stack.push(p.clone());
                }
                files.push(p);
            }
        }
        files.sort();
        for p in files {
            let meta = p.symlink_metadata().map_err(|e| io(&p, "stat", e))?;
            h.update(
                p.strip_prefix(&dir)
                    .unwrap_or(&p)
                    .to_string_lossy()
                    .as_bytes(),
            );
            h.update(format!(" {:o}\n", meta.permissions().mode()));
            if meta.file_type().is_symlink() {
                let t = std::fs::read_link(&p).map_err(|e| io(&p, "read link", e))?;
                h.update(t.to_string_lossy().as_bytes());
            } else if meta.is_file() {
                let mut f = std::fs::File::open(&p).map_err(|e| io(&p, "open", e))?;
                let mut buf = Vec::new();
                f.read_to_end(&mut buf).map_err(|e| io(&p, "read", e))?;
                h.update(&buf);
            }
        }
    }
    Ok(h.finalize()
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// A scratch directory, removed on drop.
struct WorkDir(PathBuf);

impl WorkDir {
    fn new(name: &str) -> Result<WorkDir> {
        let base = std::env::temp_dir().join(format!(
            "alpy-image-{name}-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default()
        ));
        // create_dir, not create_dir_all: a directory someone made there
        // first is refused, never used.
        std::fs::create_dir(&base).map_err(|e| io(&base, "create", e))?;
        std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| io(&base, "chmod", e))?;
        Ok(WorkDir(base))
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests;
