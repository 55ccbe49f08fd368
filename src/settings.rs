//! The environment variables alpy reads, in one list: `alpy --help` prints
//! it, `alpy doctor` shows what each is set to here, and a unit test keeps
//! the crate docs' table the same.
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
    VARS.iter()
        .map(|v| {
            let value =
                std::env::var(v.name)
                    .ok()
                    .map(|s| if v.secret { "(set)".to_string() } else { s });
            (v, value)
        })
        .collect()
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
