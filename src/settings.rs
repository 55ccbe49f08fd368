//! The environment variables alpy reads, in one list: `alpy --help` prints
//! it, `alpy doctor` shows what each is set to here, and a unit test keeps
//! the crate docs' table the same.
//!
//! They are read in one place, [`Settings::from_env`], into one value: a
//! test bed takes it when its builder is made ([`crate::TestBed::builder`])
//! and passes it down; `alpy` and the doctor read it once at their start.
//! A program may also build one without touching its environment:
//!
//! ```
//! use alpy::settings::Settings;
//! let s = Settings::default().set("ALPY_WARM", "off").set("ALPY_KEEP", "always");
//! assert!(!s.warm_enabled());
//! assert_eq!(s.keep(), "always");
//! ```
//!
//! ```
//! let names: Vec<&str> = alpy::settings::VARS.iter().map(|v| v.name).collect();
//! assert!(names.contains(&"ALPY_ARTIFACTS"));
//! ```

/// An environment variable alpy reads.
#[derive(Debug, Clone, Copy)]
pub struct Var {
    /// Its name.
    pub name: &'static str,
    /// What alpy does when it is unset.
    pub default: &'static str,
    /// What it sets.
    pub what: &'static str,
    /// A secret: shown as set or unset, never its value.
    pub secret: bool,
}

const fn var(name: &'static str, default: &'static str, what: &'static str) -> Var {
    Var {
        name,
        default,
        what,
        secret: false,
    }
}

/// Every variable, in the order of the crate docs' table.
pub const VARS: &[Var] = &[
    var(
        "ALPY_ARTIFACTS",
        "$CARGO_TARGET_DIR/alpy, else the target/ above the running binary, else $TMPDIR/alpy",
        "base directory of test bed artifacts",
    ),
    var("ALPY_ACCEL", "KVM only where it works", "kvm or tcg"),
    var(
        "ALPY_NET_MODE",
        "by capabilities",
        "direct (root) or helper (no root)",
    ),
    var(
        "ALPY_CACHE",
        "$XDG_CACHE_HOME/alpy, else ~/.cache/alpy",
        "where built guests and warm-start snapshots live",
    ),
    var(
        "ALPY_KEEP",
        "off",
        "on-failure or always: keep beds up for debugging",
    ),
    var(
        "ALPY_KEEP_TIMEOUT",
        "1800",
        "seconds a kept bed waits for alpy down",
    ),
    var(
        "ALPY_WARM",
        "on",
        "off (or 0, false): warm-started beds boot cold",
    ),
    var(
        "ALPY_WARM_MAX_MB",
        "4096",
        "size limit of the warm-start cache",
    ),
    var(
        "ALPY_WARM_MAP",
        "on",
        "off: snapshots built from now on carry their RAM in the migration stream",
    ),
    var(
        "ALPY_SOURCE_DIR",
        "the build's source tree",
        "the alpy checkout whose image recipes alpy doctor compares",
    ),
    var(
        "REMOTE_LAB_URL",
        "unset: beds run here",
        "an alpy-lab server: beds run there",
    ),
    Var {
        name: "REMOTE_LAB_TOKEN",
        default: "none; needed with REMOTE_LAB_URL",
        what: "the bearer token for REMOTE_LAB_URL",
        secret: true,
    },
    var(
        "REMOTE_LAB_WAIT",
        "1800",
        "seconds to wait in the lab's queue",
    ),
    var(
        "REMOTE_LAB_BOARD",
        "unset: the DUT is the builder's VM",
        "on a lab, a board of this class is the DUT instead of the VM",
    ),
    var(
        "REMOTE_LAB_CA",
        "the system's roots",
        "a PEM file of the lab's certificate authority",
    ),
    var(
        "CI",
        "unset",
        "true or 1: ALPY_KEEP is ignored (a CI job never waits for alpy down)",
    ),
    var(
        "XDG_RUNTIME_DIR",
        "/tmp/alpy-<uid>",
        "where beds stood up by alpy up keep their sockets (alpy/beds)",
    ),
    var(
        "XDG_CACHE_HOME",
        "~/.cache",
        "the cache's parent when ALPY_CACHE is unset",
    ),
    var(
        "DOCKER_HOST",
        "unix:///var/run/docker.sock",
        "the Docker engine",
    ),
    var(
        "RUST_LOG",
        "info",
        "terminal log level (the debug log always goes to debug.log)",
    ),
];

/// Each variable with its value here (`None`: unset); a secret's value
/// is `"(set)"`.
pub fn current() -> Vec<(&'static Var, Option<String>)> {
    let here = Settings::from_env();
    VARS.iter()
        .map(|v| {
            let value = here.get(v.name).map(|s| {
                if v.secret {
                    "(set)".to_string()
                } else {
                    s.to_string()
                }
            });
            (v, value)
        })
        .collect()
}

/// Variables alpy reads that are not its own settings: where a default
/// comes from.
const ALSO_READ: &[&str] = &["HOME", "CARGO_TARGET_DIR"];

/// The values of [`VARS`] (and of `HOME` and `CARGO_TARGET_DIR`, which
/// defaults come from), read once; each accessor applies its default.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Settings {
    values: std::collections::BTreeMap<String, String>,
}

/// Secrets show as `(set)`: a builder printed with `{:?}` in a test's log
/// must not carry the lab token.
impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secret = |n: &str| VARS.iter().any(|v| v.secret && v.name == n);
        f.debug_map()
            .entries(self.values.iter().map(|(k, v)| {
                let shown = if secret(k) { "(set)" } else { v.as_str() };
                (k, shown)
            }))
            .finish()
    }
}

impl Settings {
    /// The values in this process's environment now: the one place alpy
    /// reads it.
    pub fn from_env() -> Settings {
        let names = VARS.iter().map(|v| v.name).chain(ALSO_READ.iter().copied());
        Settings {
            values: names
                .filter_map(|n| std::env::var(n).ok().map(|v| (n.to_string(), v)))
                .collect(),
        }
    }

    /// This value with `name` set to `value` (the environment is not
    /// touched).
    pub fn set(mut self, name: &str, value: impl Into<String>) -> Settings {
        self.values.insert(name.to_string(), value.into());
        self
    }

    /// This value with `name` unset.
    pub fn unset(mut self, name: &str) -> Settings {
        self.values.remove(name);
        self
    }

    /// A variable's value as given (`None`: unset).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }

    /// A variable's value, an empty one counting as unset.
    fn given(&self, name: &str) -> Option<&str> {
        self.get(name).filter(|v| !v.is_empty())
    }

    fn path(&self, name: &str) -> Option<std::path::PathBuf> {
        self.given(name).map(std::path::PathBuf::from)
    }

    /// `ALPY_ARTIFACTS`, else `$CARGO_TARGET_DIR/alpy`; `None` leaves the
    /// choice to the running binary's `target/`.
    pub fn artifacts_root(&self) -> Option<std::path::PathBuf> {
        self.path("ALPY_ARTIFACTS")
            .or_else(|| self.path("CARGO_TARGET_DIR").map(|d| d.join("alpy")))
    }

    /// `ALPY_ACCEL` (`kvm` or `tcg`), if set.
    pub fn accel(&self) -> Option<&str> {
        self.given("ALPY_ACCEL")
    }

    /// `ALPY_NET_MODE` (`direct` or `helper`), if set.
    pub fn net_mode(&self) -> Option<&str> {
        self.given("ALPY_NET_MODE")
    }

    /// `$ALPY_CACHE`, else `$XDG_CACHE_HOME/alpy`, else `~/.cache/alpy`.
    pub fn cache_dir(&self) -> Option<std::path::PathBuf> {
        self.path("ALPY_CACHE")
            .or_else(|| self.path("XDG_CACHE_HOME").map(|x| x.join("alpy")))
            .or_else(|| self.path("HOME").map(|h| h.join(".cache/alpy")))
    }

    /// `ALPY_KEEP`: `on-failure`, `always`, or `""` (off).
    pub fn keep(&self) -> &str {
        self.get("ALPY_KEEP").unwrap_or_default()
    }

    /// `ALPY_KEEP_TIMEOUT`, 30 minutes by default.
    pub fn keep_timeout(&self) -> std::time::Duration {
        let secs = self
            .given("ALPY_KEEP_TIMEOUT")
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(1800.0);
        std::time::Duration::from_secs_f64(secs.max(0.0))
    }

    /// `CI` when it says a CI job runs (`true` or `1`).
    pub fn ci(&self) -> Option<&str> {
        self.get("CI").filter(|v| *v == "true" || *v == "1")
    }

    /// Warm start is on unless `ALPY_WARM` is `off`, `0` or `false`.
    pub fn warm_enabled(&self) -> bool {
        !matches!(self.get("ALPY_WARM"), Some("off" | "0" | "false"))
    }

    /// Snapshots may keep their RAM as a file unless `ALPY_WARM_MAP=off`.
    pub fn warm_map(&self) -> bool {
        self.get("ALPY_WARM_MAP") != Some("off")
    }

    /// `ALPY_WARM_MAX_MB`, 4096 by default, in bytes.
    pub fn warm_max_bytes(&self) -> u64 {
        self.given("ALPY_WARM_MAX_MB")
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(4096)
            << 20
    }

    /// `ALPY_SOURCE_DIR`, if set.
    pub fn source_dir(&self) -> Option<std::path::PathBuf> {
        self.path("ALPY_SOURCE_DIR")
    }

    /// `DOCKER_HOST`, else the engine's default socket.
    pub fn docker_host(&self) -> &str {
        self.given("DOCKER_HOST")
            .unwrap_or("unix:///var/run/docker.sock")
    }

    /// `$XDG_RUNTIME_DIR/alpy/beds`, else `/tmp/alpy-<uid>/beds`.
    pub fn registry_dir(&self) -> std::path::PathBuf {
        match self.path("XDG_RUNTIME_DIR") {
            Some(d) => d.join("alpy/beds"),
            None => std::env::temp_dir().join(format!("alpy-{}/beds", nix::unistd::getuid())),
        }
    }

    /// `REMOTE_LAB_URL`, if set and not empty.
    pub fn lab_url(&self) -> Option<&str> {
        self.given("REMOTE_LAB_URL")
    }

    /// `REMOTE_LAB_TOKEN`, if set and not empty.
    pub fn lab_token(&self) -> Option<&str> {
        self.given("REMOTE_LAB_TOKEN")
    }

    /// `REMOTE_LAB_WAIT` as given, if set.
    pub fn lab_wait(&self) -> Option<&str> {
        self.get("REMOTE_LAB_WAIT")
    }

    /// `REMOTE_LAB_BOARD`, if set and not empty: the board class a bed
    /// on a lab reserves for its DUT.
    pub fn lab_board(&self) -> Option<&str> {
        self.given("REMOTE_LAB_BOARD")
    }

    /// `REMOTE_LAB_CA`, if set and not empty.
    pub fn lab_ca(&self) -> Option<std::path::PathBuf> {
        self.path("REMOTE_LAB_CA")
    }
}

/// The list as `alpy --help` prints it.
pub fn help() -> String {
    let width = VARS.iter().map(|v| v.name.len()).max().unwrap_or(0);
    let mut s = String::from("Environment (alpy doctor shows their values here):\n");
    for v in VARS {
        s.push_str(&format!(
            "  {:width$}  {} (default: {})\n",
            v.name, v.what, v.default
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// alpy's variables are read in one place: no other file of the
    /// library or the `alpy` command reads one from the environment.
    #[test]
    fn the_environment_is_read_only_here() {
        let mut todo = vec![std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src")];
        let mut readers = Vec::new();
        while let Some(d) = todo.pop() {
            for e in std::fs::read_dir(&d).unwrap().flatten() {
                let path = e.path();
                if path.is_dir() {
                    todo.push(path);
                    continue;
                }
                if path.extension().is_none_or(|x| x != "rs") || path.ends_with("settings.rs") {
                    continue;
                }
                let text = std::fs::read_to_string(&path).unwrap();
                for (n, line) in text.lines().enumerate() {
                    let code = line.trim_start();
                    if code.starts_with("//") {
                        continue;
                    }
                    let reads = ["env::var(", "env::var_os("]
                        .iter()
                        .any(|r| code.contains(r));
                    let names = VARS.iter().map(|v| v.name).chain(ALSO_READ.iter().copied());
                    let named = names
                        .chain(["URL_VAR", "TOKEN_VAR", "CA_VAR"])
                        .any(|name| code.contains(name));
                    if reads && named {
                        readers.push(format!("{}:{}: {}", path.display(), n + 1, code));
                    }
                }
            }
        }
        assert!(
            readers.is_empty(),
            "read through Settings (alpy::settings) instead:\n{}",
            readers.join("\n")
        );
    }

    #[test]
    fn a_secret_is_not_printed() {
        let s = Settings::default()
            .set("REMOTE_LAB_TOKEN", "alpylab_secret")
            .set("CI", "1");
        let shown = format!("{s:?}");
        assert!(
            !shown.contains("alpylab_secret") && shown.contains("(set)"),
            "{shown}"
        );
        assert!(shown.contains("\"CI\": \"1\""), "{shown}");
    }

    #[test]
    fn settings_apply_their_defaults() {
        let none = Settings::default();
        assert!(none.warm_enabled() && none.warm_map());
        assert_eq!(none.warm_max_bytes(), 4096 << 20);
        assert_eq!(none.keep_timeout(), std::time::Duration::from_secs(1800));
        assert_eq!(none.docker_host(), "unix:///var/run/docker.sock");
        assert!(none.ci().is_none() && none.lab_url().is_none());
        let set = none
            .set("ALPY_WARM", "0")
            .set("CI", "true")
            .set("REMOTE_LAB_URL", "")
            .set("ALPY_WARM_MAX_MB", "10")
            .set("XDG_CACHE_HOME", "/c")
            .set("CARGO_TARGET_DIR", "/t");
        assert!(!set.warm_enabled());
        assert_eq!(set.ci(), Some("true"));
        assert_eq!(set.lab_url(), None, "an empty URL is no URL");
        assert_eq!(set.warm_max_bytes(), 10 << 20);
        assert_eq!(set.cache_dir(), Some("/c/alpy".into()));
        assert_eq!(set.artifacts_root(), Some("/t/alpy".into()));
        let set = set.set("ALPY_ARTIFACTS", "/a").set("ALPY_CACHE", "/k");
        assert_eq!(set.artifacts_root(), Some("/a".into()));
        assert_eq!(set.cache_dir(), Some("/k".into()));
    }

    /// The crate docs' table lists exactly these variables.
    #[test]
    fn the_crate_docs_table_matches_the_list() {
        let docs = include_str!("lib.rs");
        let table: Vec<&str> = docs
            .lines()
            .filter_map(|l| l.strip_prefix("//! | `"))
            .filter_map(|l| l.split('`').next())
            .filter(|n| n.chars().all(|c| c.is_ascii_uppercase() || c == '_'))
            .collect();
        let list: Vec<&str> = VARS.iter().map(|v| v.name).collect();
        assert_eq!(table, list, "src/lib.rs's table and settings::VARS differ");
        let readme = include_str!("../README.md");
        let section = readme
            .split("## Environment")
            .nth(1)
            .and_then(|s| s.split("\n## ").next())
            .unwrap_or_default();
        let rows: Vec<&str> = section
            .lines()
            .filter_map(|l| l.strip_prefix("| `"))
            .filter_map(|l| l.split('`').next())
            .collect();
        assert_eq!(
            rows, list,
            "README's Environment table and settings::VARS differ"
        );
    }

    #[test]
    fn a_secret_is_never_shown() {
        let token = VARS.iter().find(|v| v.secret).map(|v| v.name);
        assert_eq!(token, Some("REMOTE_LAB_TOKEN"));
        assert!(help().contains("REMOTE_LAB_TOKEN"));
    }
}
