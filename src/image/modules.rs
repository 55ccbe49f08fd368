//! Kernel modules of an image: the recipe's, with what they depend on
//! (from each module's `modinfo`), decompressed so busybox's `insmod`
//! loads them, and their load order.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use super::apt::{io, run};
use super::recipe::{Output, Recipe};
use super::root::{copy, mkdir, write, Root, DISK_MODULES};
use crate::error::{Error, Result};

impl Root {
    /// Copies the recipe's modules and what they depend on (decompressed,
    /// so busybox's insmod loads them), runs depmod, and writes
    /// `/etc/modules-order`: the modules named by name, in load order.
    pub(crate) fn modules(&self, recipe: &Recipe) -> Result<()> {
        let src = self.kernel.join("lib/modules").join(&self.kver);
        let index = module_index(&src.join("kernel"))?;
        let mut wanted: Vec<String> = Vec::new();
        let mut named: Vec<String> = Vec::new();
        for m in &recipe.modules {
            // A path names the file as the recipe writer sees it, with or
            // without the kernel's compression suffix.
            let base = [m.to_string(), format!("{m}.xz"), format!("{m}.zst")]
                .iter()
                .map(|c| src.join("kernel").join(c))
                .find(|p| p.exists())
                .unwrap_or_else(|| src.join("kernel").join(m));
            if m.contains('/') || base.is_dir() {
                if !base.exists() {
                    return Err(Error::Config(format!(
                        "module path {m}: not in the kernel package (kernel/{m} does not exist)"
                    )));
                }
                wanted.extend(
                    index
                        .values()
                        .filter(|rel| src.join("kernel").join(rel).starts_with(&base))
                        .cloned(),
                );
            } else {
                let rel = index.get(&norm(m)).ok_or_else(|| {
                    Error::Config(format!("module {m}: not in the kernel package (no {m}.ko)"))
                })?;
                wanted.push(rel.clone());
                named.push(m.clone());
            }
        }
        if matches!(recipe.output, Output::Disk { .. }) {
            for m in DISK_MODULES {
                if let Some(rel) = index.get(&norm(m)) {
                    wanted.push(rel.clone());
                }
            }
        }
        // What they depend on, from each module's own modinfo.
        let mut done: BTreeMap<String, ()> = BTreeMap::new();
        while let Some(rel) = wanted.pop() {
            if done.insert(rel.clone(), ()).is_some() {
                continue;
            }
            let deps = run(
                Command::new("modinfo")
                    .args(["-F", "depends"])
                    .arg(src.join("kernel").join(&rel)),
                "modinfo",
            )?;
            for d in deps.trim().split(',').filter(|d| !d.is_empty()) {
                if let Some(r) = index.get(&norm(d)) {
                    wanted.push(r.clone());
                }
            }
        }
        let dst = self.root.join("lib/modules").join(&self.kver);
        for rel in done.keys() {
            let from = src.join("kernel").join(rel);
            let to = dst.join("kernel").join(strip_compression(rel));
            if let Some(parent) = to.parent() {
                mkdir(parent)?;
            }
            decompress(&from, &to)?;
        }
        mkdir(&dst)?;
        for f in [
            "modules.order",
            "modules.builtin",
            "modules.builtin.modinfo",
        ] {
            if src.join(f).is_file() {
                copy(&src.join(f), &dst.join(f))?;
            }
        }
        run(
            Command::new("depmod")
                .arg("-b")
                .arg(&self.root)
                .arg(&self.kver),
            "depmod",
        )?;
        let order = self.load_order(&named)?;
        mkdir(&self.root.join("etc"))?;
        write(
            &self.root.join("etc/modules-order"),
            &order.iter().map(|p| format!("{p}\n")).collect::<String>(),
        )
    }

    /// The module files (paths in the image) that loading `names` inserts,
    /// dependencies first, each once.
    pub(crate) fn load_order(&self, names: &[impl AsRef<str>]) -> Result<Vec<String>> {
        let mut order: Vec<String> = Vec::new();
        let prefix = self.root.to_string_lossy().into_owned();
        for n in names {
            let out = run(
                Command::new("modprobe").arg("-d").arg(&self.root).args([
                    "-S",
                    &self.kver,
                    "--show-depends",
                    n.as_ref(),
                ]),
                &format!("modprobe --show-depends {}", n.as_ref()),
            )?;
            for line in out.lines() {
                if let Some(p) = line
                    .split_whitespace()
                    .nth(1)
                    .filter(|_| line.starts_with("insmod "))
                {
                    let p = p.strip_prefix(&prefix).unwrap_or(p).to_string();
                    if !order.contains(&p) {
                        order.push(p);
                    }
                }
            }
        }
        Ok(order)
    }
}

/// Every module of the kernel tree: normalised name to path under `kernel/`.
fn module_index(dir: &Path) -> Result<BTreeMap<String, String>> {
    let mut index = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).map_err(|e| io(&d, "read", e))? {
            let p = e.map_err(|e| io(&d, "read", e))?.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Some(name) = p.file_name().and_then(|n| n.to_str()) {
                if let Some(stem) = strip_compression(name).strip_suffix(".ko") {
                    let rel = p
                        .strip_prefix(dir)
                        .unwrap_or(&p)
                        .to_string_lossy()
                        .into_owned();
                    index.insert(norm(stem), rel);
                }
            }
        }
    }
    Ok(index)
}

/// Module names treat `-` and `_` alike.
fn norm(name: &str) -> String {
    name.replace('-', "_")
}

fn strip_compression(name: &str) -> &str {
    name.strip_suffix(".xz")
        .or_else(|| name.strip_suffix(".zst"))
        .unwrap_or(name)
}

fn decompress(from: &Path, to: &Path) -> Result<()> {
    let name = from.to_string_lossy();
    let tool = if name.ends_with(".xz") {
        "xz"
    } else if name.ends_with(".zst") {
        "zstd"
    } else {
        return copy(from, to);
    };
    let out = Command::new(tool)
        .args(["-dc"])
        .arg(from)
        .output()
        .map_err(|e| io(from, &format!("run {tool} on"), e))?;
    if !out.status.success() {
        return Err(Error::CommandFailed {
            what: format!("{tool} -d {}", from.display()),
            status: out.status.to_string(),
            output: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    std::fs::write(to, out.stdout).map_err(|e| io(to, "write", e))
}
