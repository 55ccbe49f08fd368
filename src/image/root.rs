//! The root file system: packages unpacked, busybox, kernel modules, users,
//! the recipe's files.

use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use super::apt::{io, run};
use super::recipe::{Init, Recipe};
use crate::error::{Error, Result};

/// The directories busybox applets may live in.
const BIN_DIRS: [&str; 4] = ["bin", "sbin", "usr/bin", "usr/sbin"];

/// The start-up script an image gets when its files bring none.
const DEFAULT_RCS: &str = include_str!("rcS");

/// `/etc/pam.d/common-*` as `pam-auth-update` writes them with only
/// pam_unix (Debian's defaults).
const PAM_COMMON: [(&str, &str); 5] = [
    ("common-auth", "auth [success=1 default=ignore] pam_unix.so nullok\nauth requisite pam_deny.so\nauth required pam_permit.so\n"),
    (
        "common-account",
        "account [success=1 new_authtok_reqd=done default=ignore] pam_unix.so\naccount requisite pam_deny.so\naccount required pam_permit.so\n",
    ),
    ("common-password", "password [success=1 default=ignore] pam_unix.so obscure yescrypt\npassword requisite pam_deny.so\npassword required pam_permit.so\n"),
    ("common-session", "session [default=1] pam_permit.so\nsession requisite pam_deny.so\nsession required pam_permit.so\nsession required pam_unix.so\n"),
    (
        "common-session-noninteractive",
        "session [default=1] pam_permit.so\nsession requisite pam_deny.so\nsession required pam_permit.so\nsession required pam_unix.so\n",
    ),
];

/// The modules an initramfs needs to mount a virtio ext4 root disk.
pub(crate) const DISK_MODULES: [&str; 4] = ["virtio_pci", "virtio_blk", "crc32c_generic", "ext4"];

/// A root file system being assembled in `root`, the kernel unpacked in
/// `kernel`.
pub(crate) struct Root {
    pub(crate) root: PathBuf,
    pub(crate) kernel: PathBuf,
    /// The kernel's version (the directory under `lib/modules`).
    pub(crate) kver: String,
    /// The repositories' static busybox (for initramfs images and mkpasswd).
    pub(crate) busybox: PathBuf,
}

impl Root {
    /// Unpacks the downloaded `.deb`s of `debs`: the kernel package into
    /// `work/kernel`, busybox-static into `work/busybox`, the rest into
    /// `work/root`.
    /// With `static_in_root`, busybox-static goes into the root too.
    pub(crate) fn unpack(
        work: &Path,
        debs: &Path,
        kernel_pkg: &str,
        static_in_root: bool,
    ) -> Result<Root> {
        let root = work.join("root");
        let kernel = work.join("kernel");
        let bb = work.join("busybox");
        let mut entries: Vec<PathBuf> = std::fs::read_dir(debs)
            .map_err(|e| io(debs, "read", e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "deb"))
            .collect();
        entries.sort();
        for deb in &entries {
            let file = deb
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default();
            let into = if file.starts_with(&format!("{kernel_pkg}_")) {
                &kernel
            } else if file.starts_with("busybox-static_") {
                if static_in_root {
                    run(
                        Command::new("dpkg-deb").arg("-x").arg(deb).arg(&root),
                        &format!("unpack {file}"),
                    )?;
                }
                &bb
            } else {
                &root
            };
            run(
                Command::new("dpkg-deb").arg("-x").arg(deb).arg(into),
                &format!("unpack {file}"),
            )?;
        }
        let kver = std::fs::read_dir(kernel.join("lib/modules"))
            .map_err(|e| io(&kernel, "read the modules of", e))?
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .next()
            .ok_or_else(|| Error::Config(format!("{kernel_pkg} holds no lib/modules/VERSION")))?;
        let busybox = bb.join("bin/busybox");
        if !busybox.is_file() {
            return Err(Error::Config("busybox-static holds no /bin/busybox".into()));
        }
        std::fs::create_dir_all(&root).map_err(|e| io(&root, "create", e))?;
        Ok(Root {
            root,
            kernel,
            kver,
            busybox,
        })
    }

    /// Busybox as `/bin/busybox`, linked as every applet no package put a
    /// program for, as `/bin/sh` and `/sbin/init`.
    pub(crate) fn busybox(&self) -> Result<()> {
        for d in BIN_DIRS {
            mkdir(&self.root.join(d))?;
        }
        let target = self.root.join("bin/busybox");
        if !target.exists() {
            return Err(Error::Internal(
                "no busybox package was unpacked into the root".into(),
            ));
        }
        // The root's own busybox knows its applets; the static one (same
        // version) answers when the root's cannot run here.
        let list = run(
            Command::new(&target).arg("--list-full"),
            "busybox --list-full",
        )
        .or_else(|_| {
            run(
                Command::new(&self.busybox).arg("--list-full"),
                "busybox --list-full",
            )
        })?;
        for applet in list.lines().filter(|l| !l.is_empty()) {
            let name = applet.rsplit('/').next().unwrap_or(applet);
            let found = BIN_DIRS
                .iter()
                .any(|d| self.root.join(d).join(name).symlink_metadata().is_ok());
            if !found && name != "busybox" {
                link("/bin/busybox", &self.root.join(applet))?;
            }
        }
        for p in ["bin/sh", "sbin/init"] {
            if self.root.join(p).symlink_metadata().is_err() {
                link("/bin/busybox", &self.root.join(p))?;
            }
        }
        Ok(())
    }

    /// The recipe's files and directories, the users, the console login,
    /// the start-up scripts; then what `prune` leaves out.
    pub(crate) fn configure(&self, recipe: &Recipe) -> Result<()> {
        let r = &self.root;
        for d in ["etc/init.d", "root", "proc", "sys", "dev", "run", "tmp"] {
            mkdir(&inside(r, d)?)?;
        }
        std::fs::set_permissions(r.join("tmp"), std::fs::Permissions::from_mode(0o1777))
            .map_err(|e| io(&r.join("tmp"), "chmod", e))?;
        if let Some(files) = recipe.files_dir() {
            run(
                // The checkout's owner is not the image's: files are root's.
                Command::new("cp")
                    .args(["-a", "--no-preserve=ownership"])
                    .arg(format!("{}/.", files.display()))
                    .arg(r),
                &format!("copy {} into the image", files.display()),
            )?;
        }
        // cp gave / the mode of the files directory (0700 in some
        // checkouts): daemons that drop to nobody must still get in.
        std::fs::set_permissions(r, std::fs::Permissions::from_mode(0o755))
            .map_err(|e| io(r, "chmod", e))?;
        for d in &recipe.dirs {
            mkdir(&inside(r, d)?)?;
        }
        if !inside(r, "etc/passwd")?.exists() {
            write(
                &r.join("etc/passwd"),
                "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
            )?;
        }
        if !inside(r, "etc/group")?.exists() {
            write(&r.join("etc/group"), "root:x:0:\nnogroup:x:65534:\n")?;
        }
        self.shadow(recipe)?;
        // What init runs must run, whatever mode a checkout gave the files.
        for p in ["init", "etc/init.d/rcS", "etc/rc.local"] {
            let p = inside(r, p)?;
            if p.symlink_metadata().is_ok_and(|m| m.is_file()) {
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755))
                    .map_err(|e| io(&p, "chmod", e))?;
            }
        }
        match recipe.init {
            Init::Busybox => self.busybox_start_up(recipe)?,
            Init::Systemd => self.systemd_start_up(recipe)?,
        }
        for p in &recipe.prune {
            let path = inside(r, p)?;
            if path.symlink_metadata().is_ok() {
                let res = if path.is_dir() {
                    std::fs::remove_dir_all(&path)
                } else {
                    std::fs::remove_file(&path)
                };
                res.map_err(|e| io(&path, "remove", e))?;
            }
        }
        Ok(())
    }

    /// Busybox init's start-up: the default `rcS` and `inittab` unless
    /// the files bring their own.
    fn busybox_start_up(&self, recipe: &Recipe) -> Result<()> {
        let r = &self.root;
        let rcs = inside(r, "etc/init.d/rcS")?;
        if !rcs.exists() {
            write(&rcs, DEFAULT_RCS)?;
            std::fs::set_permissions(&rcs, std::fs::Permissions::from_mode(0o755))
                .map_err(|e| io(&rcs, "chmod", e))?;
        }
        let inittab = inside(r, "etc/inittab")?;
        if !inittab.exists() {
            let console = if recipe.login.password.is_some() {
                "ttyS0::respawn:/sbin/getty -L 115200 ttyS0 vt100"
            } else {
                "ttyS0::respawn:-/bin/sh"
            };
            write(
                &inittab,
                &format!("::sysinit:/etc/init.d/rcS\n{console}\n::ctrlaltdel:/sbin/reboot\n::shutdown:/bin/umount -a -r\n"),
            )?;
        }
        Ok(())
    }

    /// systemd's start-up: the modules to load, an empty machine id (made
    /// at boot), and the serial console's autologin without a password.
    fn systemd_start_up(&self, recipe: &Recipe) -> Result<()> {
        let r = &self.root;
        if !r.join("sbin/init").exists() && !r.join("lib/systemd/systemd").exists() {
            return Err(Error::Config(
                "init = \"systemd\" but systemd-sysv put no /sbin/init".into(),
            ));
        }
        let named: Vec<&String> = recipe.modules.iter().filter(|m| !m.contains('/')).collect();
        let conf = inside(r, "etc/modules-load.d/alpy.conf")?;
        mkdir(conf.parent().unwrap_or(r))?;
        write(
            &conf,
            &named.iter().map(|m| format!("{m}\n")).collect::<String>(),
        )?;
        // libpam-runtime's postinst writes /etc/pam.d/common-* (with
        // pam-auth-update); an unpacked package runs no postinst. These are
        // what it writes with pam_unix alone.
        if r.join("etc/pam.d/login").exists() {
            for (name, text) in PAM_COMMON {
                let to = inside(r, &format!("etc/pam.d/{name}"))?;
                if !to.exists() {
                    write(&to, text)?;
                }
            }
        }
        let id = inside(r, "etc/machine-id")?;
        if !id.exists() {
            write(&id, "")?;
        }
        if recipe.login.password.is_none() {
            let dropin = inside(
                r,
                "etc/systemd/system/serial-getty@ttyS0.service.d/autologin.conf",
            )?;
            mkdir(dropin.parent().unwrap_or(r))?;
            write(
                &dropin,
                &format!(
                    "[Service]\nExecStart=\nExecStart=-/sbin/agetty --autologin {} --keep-baud 115200,38400,9600 %I $TERM\n",
                    recipe.login.user
                ),
            )?;
        }
        Ok(())
    }

    /// `/etc/shadow`: the login user's password hashed (sha512-crypt), the
    /// other users locked. With no password and a shadow in the files, the
    /// files' shadow stays.
    fn shadow(&self, recipe: &Recipe) -> Result<()> {
        let path = inside(&self.root, "etc/shadow")?;
        let hash = match &recipe.login.password {
            Some(pw) => run(
                Command::new(&self.busybox).args(["mkpasswd", "-m", "sha512", pw]),
                "mkpasswd",
            )?
            .trim()
            .to_string(),
            None if path.exists() => return Ok(()),
            None => String::new(),
        };
        let passwd = std::fs::read_to_string(self.root.join("etc/passwd"))
            .map_err(|e| io(&path, "read", e))?;
        let users: Vec<&str> = passwd
            .lines()
            .filter_map(|l| l.split(':').next())
            .filter(|u| !u.is_empty())
            .collect();
        if !users.contains(&recipe.login.user.as_str()) {
            return Err(Error::Config(format!(
                "login.user {:?} is not in the image's /etc/passwd (users: {})",
                recipe.login.user,
                users.join(", ")
            )));
        }
        let text: String = users
            .iter()
            .map(|u| {
                let pw = if *u == recipe.login.user {
                    hash.as_str()
                } else {
                    "*"
                };
                format!("{u}:{pw}:19000:0:99999:7:::\n")
            })
            .collect();
        write(&path, &text)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| io(&path, "chmod", e))
    }
}

/// `rel` under `root`, refused if any part of it that exists is a symbolic
/// link: a package's `var/run -> /run` would otherwise make a build (as
/// root) create, write or delete the host's files.
pub(crate) fn inside(root: &Path, rel: &str) -> Result<PathBuf> {
    let mut p = root.to_path_buf();
    for part in rel.split('/').filter(|c| !c.is_empty() && *c != ".") {
        if part == ".." {
            return Err(Error::Config(format!("path {rel:?} leaves the image")));
        }
        p.push(part);
        if let Ok(m) = p.symlink_metadata() {
            if m.file_type().is_symlink() {
                let to = std::fs::read_link(&p)
                    .map(|t| t.display().to_string())
                    .unwrap_or_default();
                return Err(Error::Config(format!(
                    "path /{rel} in the image goes through the link /{} -> {to}: name the real path",
                    p.strip_prefix(root).unwrap_or(&p).display()
                )));
            }
        }
    }
    Ok(p)
}

pub(crate) fn mkdir(p: &Path) -> Result<()> {
    std::fs::create_dir_all(p).map_err(|e| io(p, "create", e))
}

pub(crate) fn write(p: &Path, text: &str) -> Result<()> {
    std::fs::write(p, text).map_err(|e| io(p, "write", e))
}

pub(crate) fn copy(from: &Path, to: &Path) -> Result<()> {
    std::fs::copy(from, to)
        .map(|_| ())
        .map_err(|e| io(from, &format!("copy to {} from", to.display()), e))
}

pub(crate) fn link(target: &str, at: &Path) -> Result<()> {
    if let Some(parent) = at.parent() {
        mkdir(parent)?;
    }
    symlink(target, at).map_err(|e| io(at, "link", e))
}
