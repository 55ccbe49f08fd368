//! Turning a root file system into what QEMU boots: an initramfs, an ext4
//! disk with a small initramfs, or a GPT disk with UEFI.

use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use super::apt::{io, run};
use super::root::{copy, link, mkdir, write, Root, DISK_MODULES};
use crate::error::{Error, Result};

/// The initramfs of a disk image.
const DISK_INIT: &str = include_str!("disk-init");

/// Packs `dir` as a gzipped newc cpio archive at `to`, every file owned by
/// root (so no root is needed to build one).
pub(crate) fn cpio(dir: &Path, to: &Path) -> Result<()> {
    run(
        // pipefail: a cpio that fails must fail the build, not leave the
        // short archive gzip wrote.
        Command::new("bash")
            .arg("-c")
            .arg(r#"set -o pipefail; cd "$1" && find . | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet | gzip -1 >"$2""#)
            .arg("bash")
            .arg(dir)
            .arg(to),
        "pack the initramfs (find | cpio | gzip)",
    )
    .map(|_| ())
}

/// The whole root as an initramfs: `/init` is the files' own, or busybox's
/// init.
pub(crate) fn initramfs(root: &Root, to: &Path) -> Result<()> {
    if root.root.join("init").symlink_metadata().is_err() {
        link("/sbin/init", &root.root.join("init"))?;
    }
    cpio(&root.root, to)
}

/// An ext4 disk of the root (`disk`, qcow2, compressed) and an initramfs
/// (`initrd`) with busybox and the modules that mount it.
pub(crate) fn disk(
    root: &Root,
    work: &Path,
    label: &str,
    size_mib: u32,
    disk: &Path,
    initrd: &Path,
) -> Result<()> {
    let ird = work.join("disk-initramfs");
    for d in ["bin", "proc", "sys", "dev", "newroot"] {
        mkdir(&ird.join(d))?;
    }
    copy(&root.busybox, &ird.join("bin/busybox"))?;
    for a in [
        "sh",
        "mount",
        "umount",
        "insmod",
        "switch_root",
        "mkdir",
        "usleep",
        "echo",
    ] {
        link("busybox", &ird.join("bin").join(a))?;
    }
    write(&ird.join("init"), DISK_INIT)?;
    std::fs::set_permissions(ird.join("init"), std::fs::Permissions::from_mode(0o755))
        .map_err(|e| io(&ird.join("init"), "chmod", e))?;
    // A kernel without one of them (built in, or named otherwise) still
    // builds: modprobe says what each needs; the mount says if that fails.
    let mut order: Vec<String> = Vec::new();
    for m in DISK_MODULES {
        match root.load_order(&[m]) {
            Ok(o) => {
                for p in o {
                    if !order.contains(&p) {
                        order.push(p);
                    }
                }
            }
            Err(e) => log::warn!("the disk's initramfs goes without {m}: {e}"),
        }
    }
    for rel in &order {
        let to = ird.join(rel.trim_start_matches('/'));
        if let Some(p) = to.parent() {
            mkdir(p)?;
        }
        copy(&root.root.join(rel.trim_start_matches('/')), &to)?;
    }
    write(
        &ird.join("modules-order"),
        &order.iter().map(|p| format!("{p}\n")).collect::<String>(),
    )?;
    cpio(&ird, initrd)?;

    let raw = work.join("disk.raw");
    let f = std::fs::File::create(&raw).map_err(|e| io(&raw, "create", e))?;
    f.set_len(u64::from(size_mib) << 20)
        .map_err(|e| io(&raw, "size", e))?;
    drop(f);
    let label: String = label.chars().take(16).collect();
    run(
        Command::new("mkfs.ext4")
            .args(["-q", "-F", "-L", &label, "-d"])
            .arg(&root.root)
            .arg(&raw),
        &format!(
            "mkfs.ext4 ({size_mib} MiB; a bigger output.size_mib helps if the root does not fit)"
        ),
    )?;
    run(
        Command::new("qemu-img")
            .args(["convert", "-c", "-O", "qcow2"])
            .arg(&raw)
            .arg(disk),
        "qemu-img convert",
    )
    .map(|_| ())
}

/// A GPT disk with one EFI system partition (sized to what it holds):
/// shim as `EFI/BOOT/BOOTX64.EFI`, GRUB beside it, a `grub.cfg`, the kernel
/// and the initramfs. Nothing is mounted: mtools fills the partition's
/// image, which is then written into the disk at `disk`.
pub(crate) fn uefi_disk(root: &Root, work: &Path, kernel_args: &str, disk: &Path) -> Result<()> {
    let initrd = work.join("initrd.img");
    initramfs(root, &initrd)?;
    let x = work.join("efi");
    let shim = x.join("usr/lib/shim/shimx64.efi.signed");
    let grub = x.join("usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed");
    if !shim.is_file() || !grub.is_file() {
        return Err(Error::Config(
            "shim-signed or grub-efi-amd64-signed holds no shimx64.efi.signed or grubx64.efi.signed".into(),
        ));
    }
    let cfg = work.join("grub.cfg");
    write(
        &cfg,
        &format!(
            "set timeout=0\nset default=0\nmenuentry \"alpy image\" {{\n  linux /vmlinuz console=ttyS0,115200 \
             quiet panic=-1 {kernel_args}\n  initrd /initrd.img\n}}\n"
        ),
    )?;
    let kernel = root
        .kernel
        .join("boot")
        .join(format!("vmlinuz-{}", root.kver));
    // The ESP holds what goes in with room to spare (FAT32 wants 33 MiB at
    // least); the disk adds 1 MiB before it and the backup GPT after.
    let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    let content: u64 = [&shim, &grub, &kernel, &initrd]
        .iter()
        .map(|p| size(p))
        .sum();
    let esp_mib: u64 = (content * 5 / 4 / (1 << 20) + 8).max(62);
    let f = std::fs::File::create(disk).map_err(|e| io(disk, "create", e))?;
    f.set_len((esp_mib + 2) << 20)
        .map_err(|e| io(disk, "size", e))?;
    drop(f);
    let mut sfdisk = Command::new("sfdisk");
    sfdisk
        .args(["--quiet"])
        .arg(disk)
        .stdin(std::process::Stdio::piped());
    let table = format!(
        "label: gpt\nstart=2048, size={}, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, name=\"ESP\"\n",
        esp_mib * 2048
    );
    pipe(&mut sfdisk, &table, "sfdisk")?;
    let esp = work.join("esp.img");
    run(
        Command::new("mkfs.vfat")
            .args(["-C", "-F", "32", "-n", "ESP"])
            .arg(&esp)
            .arg((esp_mib * 1024).to_string()),
        "mkfs.vfat",
    )?;
    let img = esp.to_string_lossy().into_owned();
    run(
        Command::new("mmd").args(["-i", &img, "::/EFI", "::/EFI/BOOT", "::/EFI/debian"]),
        "mmd",
    )?;
    for (from, to) in [
        (&shim, "::/EFI/BOOT/BOOTX64.EFI"),
        (&grub, "::/EFI/BOOT/grubx64.efi"),
        (&cfg, "::/EFI/BOOT/grub.cfg"),
        (&cfg, "::/EFI/debian/grub.cfg"),
        (&kernel, "::/vmlinuz"),
        (&initrd, "::/initrd.img"),
    ] {
        run(
            Command::new("mcopy").args(["-i", &img]).arg(from).arg(to),
            &format!("mcopy {to}"),
        )?;
    }
    let bytes = std::fs::read(&esp).map_err(|e| io(&esp, "read", e))?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(disk)
        .map_err(|e| io(disk, "open", e))?;
    f.seek(SeekFrom::Start(1 << 20))
        .and_then(|_| f.write_all(&bytes))
        .and_then(|_| f.sync_all())
        .map_err(|e| io(disk, "write the ESP into", e))
}

fn pipe(cmd: &mut Command, input: &str, what: &str) -> Result<()> {
    let mut child = cmd
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| Error::Io {
            context: format!("run {what}"),
            source: e,
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(input.as_bytes()).map_err(|e| Error::Io {
            context: format!("write to {what}"),
            source: e,
        })?;
    }
    let out = child.wait_with_output().map_err(|e| Error::Io {
        context: format!("wait for {what}"),
        source: e,
    })?;
    if !out.status.success() {
        return Err(Error::CommandFailed {
            what: what.to_string(),
            status: out.status.to_string(),
            output: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    Ok(())
}
