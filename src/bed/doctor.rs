//! `alpy doctor`: is this machine ready to run test beds, and if not, what
//! to do about it.
//!
//! Each [`Check`] is one requirement with its state and, where it fails, the
//! fix. The host commands and files checked are the ones `scripts/setup`
//! installs and verifies (the list in `scripts/requirements`, compiled in),
//! so the two never disagree.
//!
//! ```no_run
//! let report = alpy::doctor::run(&alpy::doctor::Options::default());
//! print!("{}", report.render());
//! std::process::exit(if report.ready() { 0 } else { 1 });
//! ```

use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Serialize;

use crate::vm::qemu::Accel;

/// The requirements list `scripts/setup` works from: command (or absolute
/// file path), Debian package, purpose.
pub const REQUIREMENTS: &str = include_str!("../../scripts/requirements");

/// How one check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Ready.
    Ok,
    /// Works, but not at its best (TCG instead of KVM, relay instead of netem).
    Warn,
    /// Missing or broken: test beds will fail until it is fixed.
    Fail,
}

/// One requirement, its state, what was seen, and the fix where it fails.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// What is checked, e.g. `Docker engine`.
    pub name: String,
    /// The outcome.
    pub state: State,
    /// What was seen (a version, a path, a reason).
    pub detail: String,
    /// What to do about a warning or a failure.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl Check {
    fn new(name: &str, state: State, detail: impl Into<String>, fix: Option<String>) -> Check {
        Check {
            name: name.into(),
            state,
            detail: detail.into(),
            fix,
        }
    }
}

/// All checks of one run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// In the order they ran.
    pub checks: Vec<Check>,
    /// Each of alpy's environment variables ([`crate::settings::VARS`])
    /// and its value here (`None`: unset, the default applies; a secret
    /// shows as `"(set)"`).
    pub settings: Vec<(String, Option<String>)>,
}

impl Report {
    /// No check failed (warnings allowed).
    pub fn ready(&self) -> bool {
        self.checks.iter().all(|c| c.state != State::Fail)
    }

    /// One line per check (`ok`, `WARN`, `FAIL`), fixes indented below.
    pub fn render(&self) -> String {
        let width = self.checks.iter().map(|c| c.name.len()).max().unwrap_or(0);
        let mut s = String::new();
        for c in &self.checks {
            let tag = match c.state {
                State::Ok => "ok  ",
                State::Warn => "WARN",
                State::Fail => "FAIL",
            };
            s.push_str(&format!("{tag}  {:width$}  {}\n", c.name, c.detail));
            if let Some(fix) = &c.fix {
                s.push_str(&format!("      {:width$}  fix: {fix}\n", ""));
            }
        }
        let vwidth = self
            .settings
            .iter()
            .map(|(n, _)| n.len())
            .max()
            .unwrap_or(0);
        s.push_str("settings:\n");
        for (name, value) in &self.settings {
            s.push_str(&format!(
                "      {name:vwidth$}  {}\n",
                value.as_deref().unwrap_or("(unset: the default)")
            ));
        }
        let fails = self
            .checks
            .iter()
            .filter(|c| c.state == State::Fail)
            .count();
        let warns = self
            .checks
            .iter()
            .filter(|c| c.state == State::Warn)
            .count();
        s.push_str(&match (fails, warns) {
            (0, 0) => "alpy doctor: ready\n".to_string(),
            (0, w) => format!("alpy doctor: ready, with {w} warning(s)\n"),
            (f, _) => format!("alpy doctor: NOT ready: {f} check(s) failed\n"),
        });
        s
    }
}

/// Where the checks look.
#[derive(Debug, Clone)]
pub struct Options {
    /// The alpy source tree whose build script (`images/build`) and image
    /// recipes (the test guests', Rabbit's) say whether the images and
    /// guests are current. `None`: those checks are skipped.
    pub source_dir: Option<PathBuf>,
    /// The requirements list (default [`REQUIREMENTS`]).
    pub requirements: String,
}

impl Default for Options {
    /// `ALPY_SOURCE_DIR`, else the tree this crate was built from.
    fn default() -> Options {
        let source_dir = crate::settings::Settings::from_env()
            .source_dir()
            .or_else(|| Some(PathBuf::from(env!("CARGO_MANIFEST_DIR"))))
            .filter(|d| d.join("images/build").is_file());
        Options {
            source_dir,
            requirements: REQUIREMENTS.to_string(),
        }
    }
}

/// Runs every check. Takes a few seconds (it asks the engine, probes netem
/// and resolves package versions for the image checks).
pub fn run(opts: &Options) -> Report {
    let mut checks = vec![user_check()];
    checks.extend(requirement_checks(&opts.requirements));
    let here = crate::settings::Settings::from_env();
    let engine = engine_check(&here);
    let engine_up = engine.state == State::Ok;
    checks.push(engine);
    checks.push(tun_check());
    checks.push(kvm_check(&here));
    checks.push(netem_check());
    checks.push(cache_check());
    checks.extend(build_checks(opts.source_dir.as_deref(), engine_up));
    Report {
        checks,
        settings: settings(),
    }
}

/// The environment variables and their values here.
fn settings() -> Vec<(String, Option<String>)> {
    crate::settings::current()
        .into_iter()
        .map(|(v, value)| (v.name.to_string(), value))
        .collect()
}

/// Whether a requirement is there: a command on `PATH`, or a file.
pub fn present(what: &str) -> bool {
    if what.starts_with('/') {
        return Path::new(what).exists();
    }
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| is_executable(&d.join(what))))
        .unwrap_or(false)
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// One check per line of a requirements list.
pub fn requirement_checks(list: &str) -> Vec<Check> {
    list.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            let what = words.next()?;
            let package = words.next()?;
            let purpose = words.collect::<Vec<_>>().join(" ");
            Some(if present(what) {
                Check::new(what, State::Ok, purpose, None)
            } else {
                Check::new(
                    what,
                    State::Fail,
                    format!("missing ({purpose})"),
                    Some(match package.strip_prefix("crate:") {
                        Some(spec) => {
                            let (name, version) = spec.split_once('@').unwrap_or((spec, "*"));
                            format!(
                                "cargo install --locked {name} --version {version} \
                                 (scripts/setup installs it)"
                            )
                        }
                        None => format!("apt-get install {package} (scripts/setup installs it)"),
                    }),
                )
            })
        })
        .collect()
}

fn user_check() -> Check {
    let name = "user";
    if nix::unistd::geteuid().is_root() {
        return Check::new(name, State::Ok, "root (nodes are entered directly)", None);
    }
    let in_docker = nix::unistd::Group::from_name("docker")
        .ok()
        .flatten()
        .map(|g| {
            nix::unistd::getgroups()
                .map(|gs| gs.contains(&g.gid))
                .unwrap_or(false)
        })
        .unwrap_or(false);
    if in_docker {
        Check::new(
            name,
            State::Ok,
            "member of the docker group (nodes are entered through the helper container)",
            None,
        )
    } else {
        Check::new(
            name,
            State::Fail,
            "neither root nor in the docker group",
            Some("run as root, or `usermod -aG docker $USER` and log in again".into()),
        )
    }
}

fn engine_check(here: &crate::settings::Settings) -> Check {
    let host = here.docker_host();
    match crate::net::Docker::connect().and_then(|d| d.version()) {
        Ok(v) => Check::new("Docker engine", State::Ok, format!("{v} at {host}"), None),
        // The error says where it looked and how to start an engine.
        Err(e) => Check::new("Docker engine", State::Fail, e.to_string(), None),
    }
}

fn tun_check() -> Check {
    match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/net/tun")
    {
        Ok(_) => Check::new("/dev/net/tun", State::Ok, "opens read-write", None),
        Err(e) => Check::new(
            "/dev/net/tun",
            State::Fail,
            format!("cannot open: {e}"),
            Some("modprobe tun; in a container, pass --device /dev/net/tun".into()),
        ),
    }
}

/// Why KVM is or is not used, as [`Accel::detect`] decides it.
fn kvm_check(here: &crate::settings::Settings) -> Check {
    let name = "KVM";
    let slow = "guests run under TCG, about 5x SLOWER than under KVM: allow longer timeouts";
    let opens = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm");
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let reason = match (&opens, Accel::choose(opens.is_ok(), &cpuinfo)) {
        (_, Accel::Kvm) => None,
        (Err(e), _) if e.kind() == std::io::ErrorKind::NotFound => {
            Some("/dev/kvm does not exist (no kvm module, or nested virtualisation is off)")
        }
        (Err(_), _) => Some("/dev/kvm does not open read-write for this user"),
        (Ok(_), _) => {
            Some("/dev/kvm exists but the CPU shows no vmx/svm flag (nested virtualisation is off)")
        }
    };
    let forced = here.accel();
    match (reason, forced) {
        (_, Some("tcg")) => Check::new(
            name,
            State::Warn,
            format!("ALPY_ACCEL=tcg forces TCG: {slow}"),
            None,
        ),
        (None, _) => Check::new(name, State::Ok, "usable: guests run under KVM", None),
        (Some(r), _) => Check::new(
            name,
            State::Warn,
            format!("not usable: {r}; {slow}"),
            Some(
                "on a VM host, enable nested virtualisation; as a user, join the kvm group".into(),
            ),
        ),
    }
}

fn netem_check() -> Check {
    let name = "netem";
    let present = if nix::unistd::geteuid().is_root() {
        // A real probe, in a throwaway network namespace.
        Command::new("unshare")
            .args(["--net", "tc", "qdisc", "add", "dev", "lo", "root", "netem"])
            .args(["delay", "1ms"])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    } else {
        let release = nix::sys::utsname::uname()
            .map(|u| u.release().to_string_lossy().into_owned())
            .unwrap_or_default();
        Path::new("/sys/module/sch_netem").exists()
            || std::fs::read_dir(format!("/lib/modules/{release}/kernel/net/sched"))
                .map(|d| {
                    d.flatten()
                        .any(|e| e.file_name().to_string_lossy().starts_with("sch_netem"))
                })
                .unwrap_or(false)
    };
    if present {
        Check::new(name, State::Ok, "the kernel has tc netem", None)
    } else {
        Check::new(
            name,
            State::Warn,
            "the kernel has no tc netem: Link::relay() impairs links in user space instead",
            None,
        )
    }
}

fn cache_check() -> Check {
    let name = "cache directory";
    let dir = match crate::cache::cache_dir() {
        Ok(d) => d,
        Err(e) => return Check::new(name, State::Fail, e.to_string(), None),
    };
    let probe = dir.join(format!(".doctor-{}", std::process::id()));
    let r = std::fs::create_dir_all(&dir).and_then(|_| std::fs::write(&probe, b"x"));
    std::fs::remove_file(&probe).ok();
    match r {
        Ok(()) => Check::new(
            name,
            State::Ok,
            format!("{} is writable", dir.display()),
            None,
        ),
        Err(e) => Check::new(
            name,
            State::Fail,
            format!("{} is not writable: {e}", dir.display()),
            Some("set ALPY_CACHE to a directory this user can write".into()),
        ),
    }
}

/// The Docker images, each asked of `images/build --check`, and the guests,
/// each asked of its recipe (resolved against the repositories' package
/// versions, as `alpy image build --check` does).
fn build_checks(source: Option<&Path>, engine_up: bool) -> Vec<Check> {
    let Some(src) = source else {
        return vec![Check::new(
            "images and guests",
            State::Warn,
            "not checked: alpy's build scripts were not found",
            Some("set ALPY_SOURCE_DIR to the alpy source tree".into()),
        )];
    };
    let recipes = [
        ("test guest", "images/guest/recipe.toml"),
        ("UEFI guest", "images/uefi-guest/recipe.toml"),
        ("Rabbit", "rabbit/image/recipe.toml"),
    ];
    let images: [(&str, &str, &[&str], bool); 2] = [
        (
            "image alpy/node",
            "images/build",
            &["--check", "node"],
            true,
        ),
        (
            "image alpy/tools",
            "images/build",
            &["--check", "tools"],
            true,
        ),
    ];
    let built = recipes
        .iter()
        .map(|(name, recipe)| recipe_check(name, src, recipe));
    images
        .iter()
        .map(|(name, script, args, needs_engine)| {
            if *needs_engine && !engine_up {
                let fix = Some("start the engine first (scripts/setup does)".to_string());
                return Check::new(name, State::Fail, "not checked: no Docker engine", fix);
            }
            let out = Command::new(src.join(script)).args(*args).output();
            let said = |o: &std::process::Output| {
                let text = String::from_utf8_lossy(&o.stderr);
                let last = text.lines().rev().find(|l| !l.trim().is_empty());
                last.unwrap_or("(the script said nothing)")
                    .trim()
                    .to_string()
            };
            match out {
                Ok(o) if o.status.success() => Check::new(name, State::Ok, said(&o), None),
                Ok(o) => Check::new(
                    name,
                    State::Fail,
                    said(&o),
                    Some(format!("{script} (scripts/setup runs it)")),
                ),
                Err(e) => Check::new(
                    name,
                    State::Fail,
                    format!("cannot run {}: {e}", src.join(script).display()),
                    None,
                ),
            }
        })
        .chain(built)
        .collect()
}

/// Whether the image a recipe describes is built and current.
fn recipe_check(name: &str, src: &Path, recipe: &str) -> Check {
    let fix = Some(format!("alpy image build {recipe} (scripts/setup runs it)"));
    let plan = crate::image::Recipe::load(&src.join(recipe)).and_then(|r| {
        let plan = crate::image::Plan::new(&r, &crate::settings::Settings::from_env())?;
        Ok((plan.current().is_some(), plan.hash.clone()))
    });
    match plan {
        Ok((true, hash)) => {
            Check::new(name, State::Ok, format!("built and current ({hash})"), None)
        }
        Ok((false, hash)) => Check::new(
            name,
            State::Fail,
            format!("not built or out of date (want {hash})"),
            fix,
        ),
        Err(e) => Check::new(
            name,
            State::Fail,
            format!("cannot check {recipe}: {e}"),
            fix,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requirements_name_a_package_for_every_line() {
        let checks = requirement_checks(REQUIREMENTS);
        assert!(checks.len() >= 15, "{checks:?}");
        assert!(checks.iter().any(|c| c.name == "qemu-img"));
    }

    #[test]
    fn a_missing_command_fails_with_its_package() {
        let list = "# comment\nsh  dash  a shell\nalpy-no-such-command  alpy-pkg  testing\n\
                    alpy-no-such-tool  crate:alpy-tool@1.2.3  a crate\n";
        let mut checks = requirement_checks(list);
        assert_eq!(checks.len(), 3);
        let tool = checks.pop().unwrap();
        assert_eq!(
            tool.fix.as_deref(),
            Some("cargo install --locked alpy-tool --version 1.2.3 (scripts/setup installs it)")
        );
        assert_eq!(checks[0].state, State::Ok);
        assert_eq!(checks[1].state, State::Fail);
        assert_eq!(
            checks[1].fix.as_deref(),
            Some("apt-get install alpy-pkg (scripts/setup installs it)")
        );
        let report = Report {
            checks,
            settings: vec![("ALPY_X".into(), None)],
        };
        assert!(!report.ready());
        let text = report.render();
        assert!(text.contains("NOT ready: 1 check(s) failed"));
        assert!(text.contains("ALPY_X  (unset: the default)"), "{text}");
    }

    #[test]
    fn files_are_requirements_too() {
        assert!(present("/proc/self"));
        assert!(!present("/nonexistent/alpy"));
    }
}
