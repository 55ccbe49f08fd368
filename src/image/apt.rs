//! Packages as the host's apt sources serve them, never as the host has
//! them installed.
//!
//! apt-get and apt-cache run with the host's sources and package lists but
//! an *empty* dpkg status: to apt nothing is installed, so a version the
//! host has (newer than the repositories, from backports, built by hand)
//! never leaks into an image. The binary caches are private too, so the
//! host's apt is never disturbed.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::{Error, Result};

/// What a read-only appliance never runs: left out of dependency closures.
const SKIP: &[&str] = &[
    "debconf",
    "cdebconf",
    "dpkg",
    "install-info",
    "tar",
    "libdebian-installer4",
    "libnewt0.52",
    "libslang2",
    "libtextwrap1",
];

/// apt with an empty dpkg status, its state kept under `dir`.
pub(crate) struct Repo {
    dir: PathBuf,
}

impl Repo {
    /// Keeps apt's private state in `dir` (created if missing).
    pub(crate) fn new(dir: PathBuf) -> Result<Repo> {
        std::fs::create_dir_all(&dir).map_err(|e| io(&dir, "create", e))?;
        let status = dir.join("empty-status");
        if !status.exists() {
            std::fs::write(&status, b"").map_err(|e| io(&status, "create", e))?;
        }
        Ok(Repo { dir })
    }

    fn apt(&self, tool: &str) -> Command {
        let mut c = Command::new(tool);
        let d = &self.dir;
        c.arg("-q")
            .arg(format!(
                "-oDir::State::status={}",
                d.join("empty-status").display()
            ))
            .arg(format!(
                "-oDir::Cache::pkgcache={}",
                d.join("pkgcache.bin").display()
            ))
            .arg(format!(
                "-oDir::Cache::srcpkgcache={}",
                d.join("srcpkgcache.bin").display()
            ))
            .arg("-oDebug::NoLocking=1");
        c
    }

    /// The versioned package a metapackage (`linux-image-amd64`) depends on,
    /// or the package itself when it is not one.
    pub(crate) fn kernel_package(&self, name: &str) -> Result<String> {
        let out = run(
            self.apt("apt-cache").args(["depends", name]),
            "apt-cache depends",
        )?;
        let dep = out
            .lines()
            .filter_map(|l| l.trim().strip_prefix("Depends: "))
            .find(|d| d.starts_with("linux-image-") && !d.starts_with('<'));
        match dep {
            Some(d) => Ok(d.to_string()),
            None if out.lines().next().map(str::trim) == Some(name) => Ok(name.to_string()),
            None => Err(Error::Config(format!(
                "the repositories serve no {name} (are the package lists empty? run apt-get update)"
            ))),
        }
    }

    /// The packages and their dependencies (not recommends), without the
    /// package-manager machinery in [`SKIP`].
    pub(crate) fn closure(&self, packages: &[String]) -> Result<Vec<String>> {
        if packages.is_empty() {
            return Ok(Vec::new());
        }
        let out = run(
            self.apt("apt-cache")
                .args(["depends", "--recurse", "--no-recommends", "--no-suggests"])
                .args([
                    "--no-conflicts",
                    "--no-breaks",
                    "--no-replaces",
                    "--no-enhances",
                ])
                .args(packages),
            "apt-cache depends",
        )?;
        let mut all: Vec<String> = out
            .lines()
            .filter(|l| !l.starts_with(' ') && !l.starts_with('<') && !l.is_empty())
            .filter(|l| !SKIP.contains(l))
            .map(String::from)
            .collect();
        all.sort();
        all.dedup();
        for p in packages {
            if !all.iter().any(|a| a == p) {
                return Err(Error::Config(format!(
                    "the repositories serve no package {p} (check its name with `apt-cache policy {p}`; \
                     run apt-get update if the lists are old)"
                )));
            }
        }
        Ok(all)
    }

    /// `file SHA256:...` of each package apt would download: exactly the
    /// files a build unpacks. A new version in the repositories changes
    /// them; the mirror's address does not count.
    pub(crate) fn pins(&self, packages: &[String]) -> Result<Vec<String>> {
        let out = run(
            self.apt("apt-get")
                .args(["download", "--print-uris"])
                .args(packages),
            "apt-get download --print-uris",
        )?;
        let mut pins: Vec<String> = out
            .lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f.len() >= 4).then(|| format!("{} {}", f[1], f[3]))
            })
            .collect();
        pins.sort();
        Ok(pins)
    }

    /// Downloads the packages into `dir`. With stale lists (a version no
    /// longer served) it refreshes them once, as root, and tries again.
    pub(crate) fn download(&self, dir: &Path, packages: &[String]) -> Result<()> {
        let attempt = || {
            self.apt("apt-get")
                .arg("download")
                .args(packages)
                .current_dir(dir)
                .output()
        };
        let out = attempt().map_err(|e| spawn("apt-get", e))?;
        if out.status.success() {
            return Ok(());
        }
        let mut last = out;
        if nix::unistd::geteuid().is_root() && std::env::var_os("ALPY_NO_APT_UPDATE").is_none() {
            log::warn!(
                "downloading packages failed; refreshing the package lists (apt-get update)"
            );
            let up = Command::new("apt-get").args(["update", "-q"]).output();
            if matches!(&up, Ok(o) if o.status.success()) {
                last = attempt().map_err(|e| spawn("apt-get", e))?;
                if last.status.success() {
                    return Ok(());
                }
            }
        }
        let err = String::from_utf8_lossy(&last.stderr);
        let lines: Vec<&str> = err
            .lines()
            .filter(|l| l.starts_with("E: ") || l.starts_with("W: "))
            .filter(|l| !l.contains("unsandboxed"))
            .collect();
        Err(Error::CommandFailed {
            what: format!(
                "downloading {} package(s) from the repositories",
                packages.len()
            ),
            status: last.status.to_string(),
            output: if lines.is_empty() {
                err.to_string()
            } else {
                lines.join("\n")
            },
        })
    }
}

/// Runs a command and returns its standard output; a failure carries its
/// standard error.
pub(crate) fn run(cmd: &mut Command, what: &str) -> Result<String> {
    let prog = cmd.get_program().to_string_lossy().into_owned();
    let out = cmd.output().map_err(|e| spawn(&prog, e))?;
    if !out.status.success() {
        return Err(Error::CommandFailed {
            what: what.to_string(),
            status: out.status.to_string(),
            output: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn spawn(prog: &str, e: std::io::Error) -> Error {
    Error::Io {
        context: format!(
            "run {prog} (scripts/setup installs it; `alpy doctor` lists what is missing)"
        ),
        source: e,
    }
}

pub(crate) fn io(path: &Path, what: &str, e: std::io::Error) -> Error {
    Error::Io {
        context: format!("{what} {}", path.display()),
        source: e,
    }
}
