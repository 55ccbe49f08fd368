//! The server's configuration (TOML): where it listens, who may create
//! sessions (API tokens, stored as SHA-256 hashes), what uploaded
//! topologies may use (the image store and the Docker allow-list), how many
//! labs run at once, and the heartbeat limits.

use crate::error::Error;

mod boards;
pub use boards::{BoardClass, BoardTables};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Listen address (default `127.0.0.1:8300`: loopback only).
    #[serde(default = "default_listen")]
    pub listen: String,
    /// Where the database and the labs' directories live (relative paths
    /// are relative to the configuration file).
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    /// The `alpy` command that stands labs up (default: the one beside
    /// this binary, else `alpy` on PATH).
    pub alpy: Option<PathBuf>,
    /// Limits.
    #[serde(default)]
    pub limits: Limits,
    /// API tokens: name and SHA-256 of the token (`alpy-lab token create`).
    #[serde(default, rename = "token")]
    pub tokens: Vec<Token>,
    /// Files topologies may use, by name: `kernel = "store:NAME"`.
    #[serde(default)]
    pub store: BTreeMap<String, PathBuf>,
    /// Docker images topologies' apps may use.
    #[serde(default)]
    pub docker_images: Vec<String>,
    /// Capabilities an app may be given (default `NET_ADMIN`, `NET_RAW`).
    #[serde(default = "default_app_caps")]
    pub app_caps: Vec<String>,
    /// Which sessions may share a running lab with the same topology:
    /// `owner` (default: sessions of the token that stood it up) or `any`
    /// (every session: a second user sees what the first left in the
    /// lab's nodes and guest).
    #[serde(default)]
    pub lab_reuse: Reuse,
    /// TLS: certificate chain and key (PEM). Without it the server speaks
    /// plain HTTP, which it does only on a loopback address unless
    /// `insecure_plain_http` says otherwise.
    pub tls: Option<Tls>,
    /// Serve plain HTTP on a non-loopback address (behind a reverse proxy
    /// that terminates TLS, say).
    #[serde(default)]
    pub insecure_plain_http: bool,
    /// How long a client may take.
    #[serde(default)]
    pub timeouts: Timeouts,
    /// Boards the lab lends (`[[board]]`), as [`alpy::board::BoardSpec`]
    /// describes them. Their power and console settings (SNMP communities,
    /// v3 pass phrases) are never in an answer or a log.
    #[serde(default, rename = "board")]
    pub boards: Vec<alpy::board::BoardSpec>,
    /// What boards of a class share (`[[board_class]]`): their health
    /// check and how often it runs, their setup and teardown scripts.
    #[serde(default, rename = "board_class")]
    pub board_classes: Vec<BoardClass>,
    /// Each board's `[[board]]` table as written, by name: what a lab
    /// on the board gives `alpy up` (a [`alpy::board::BoardSpec`]
    /// serialises its secrets as `***`). Never in an answer or a log.
    #[serde(skip)]
    pub board_tables: BoardTables,
}

/// Which sessions share a lab.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Reuse {
    /// Only sessions of the token that stood the lab up.
    #[default]
    Owner,
    /// Any session.
    Any,
}

/// The server's certificate and key.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Tls {
    /// Certificate chain, PEM (relative to the configuration file).
    pub cert: PathBuf,
    /// Private key, PEM.
    pub key: PathBuf,
}

/// Client timeouts, in seconds.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Timeouts {
    /// From a connection's start (or its previous answer) to the end of a
    /// request's headers; also the TLS handshake's limit. An idle
    /// keep-alive connection is closed after it.
    pub header_s: f64,
    /// For a whole request body.
    pub body_s: f64,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            header_s: 10.0,
            body_s: 120.0,
        }
    }
}

fn default_app_caps() -> Vec<String> {
    vec!["NET_ADMIN".into(), "NET_RAW".into()]
}

/// Capacity, heartbeats and sizes.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Labs at once, and so active sessions at once (1: the one-lab rule).
    pub max_labs: usize,
    /// A waiting session without a heartbeat for this long is dropped.
    /// alpy's clients beat every 5 s: 10 s is the shortest safe limit.
    pub waiting_heartbeat_s: f64,
    /// An active session without a heartbeat for this long is ended, its
    /// lab released, and the next session promoted (within a quarter of
    /// the limit more). 10 s is the shortest safe limit.
    pub active_heartbeat_s: f64,
    /// Largest request body (a topology with its extra files), in bytes.
    pub max_body_bytes: usize,
    /// How long a lab may take to come up, in seconds.
    pub lab_up_timeout_s: u64,
    /// Live (waiting or active) sessions one token may have.
    pub max_sessions_per_token: usize,
    /// Guest memory a lab's machines may ask for together (default: the
    /// host's).
    pub max_memory_mib: u64,
    /// vCPUs a lab's machines may ask for together (default: the host's
    /// cores).
    pub max_cpus: u64,
    /// Serial ports beyond the console.
    pub max_serials: u64,
    /// Machines one lab may have (`[dut]` and `[[machine]]` sections).
    pub max_machines: usize,
    /// Open connections at once (past it, new ones wait to be accepted).
    pub max_connections: usize,
    /// How long a database call waits for a lock held by another process
    /// before the request gets 503 with Retry-After, in milliseconds.
    pub db_busy_ms: u64,
    /// Events kept for followers of `/events` that reconnect
    /// (`Last-Event-ID`).
    pub event_history: usize,
    /// Long-lived streams (`/events`, watched consoles) one token may
    /// have open at once.
    pub max_streams_per_token: usize,
    /// Long-lived streams of all tokens together: under
    /// `max_connections`, so that heartbeats always get a connection
    /// (default: half of it; see [`Limits::streams`]).
    pub max_streams: Option<usize>,
}

/// The host's memory in MiB (1 GiB if /proc/meminfo says nothing).
fn host_memory_mib() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(1024, |kib| kib / 1024)
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_labs: 1,
            waiting_heartbeat_s: 600.0,
            active_heartbeat_s: 300.0,
            max_body_bytes: 16 << 20,
            lab_up_timeout_s: 600,
            max_sessions_per_token: 16,
            max_memory_mib: host_memory_mib(),
            max_cpus: std::thread::available_parallelism().map_or(1, |n| n.get() as u64),
            max_serials: 4,
            max_machines: 8,
            db_busy_ms: 1000,
            max_connections: 256,
            event_history: crate::events::HISTORY,
            max_streams_per_token: 16,
            max_streams: None,
        }
    }
}

impl Limits {
    /// Long-lived streams of all tokens together.
    pub fn streams(&self) -> usize {
        self.max_streams.unwrap_or(self.max_connections / 2).max(1)
    }

    /// The limit for a session in `status`.
    pub fn heartbeat(&self, active: bool) -> Duration {
        Duration::from_secs_f64(if active {
            self.active_heartbeat_s
        } else {
            self.waiting_heartbeat_s
        })
    }
}

/// One API token, by name, stored hashed.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Token {
    /// Who it is for.
    pub name: String,
    /// Hex SHA-256 of the token.
    pub sha256: String,
    /// What it may do (default `user`).
    #[serde(default)]
    pub role: Role,
}

/// What a token may do; each role may do what the ones before it may.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Read the queue, labs, store and metrics; no session ids, no host
    /// paths, no changes.
    Viewer,
    /// Create sessions, hold labs, use its own sessions' labs.
    #[default]
    User,
    /// Destroy any lab, end any session, reorder the queue; sees host
    /// paths.
    Operator,
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Role::Viewer => "viewer",
            Role::User => "user",
            Role::Operator => "operator",
        })
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Role, String> {
        match s {
            "viewer" => Ok(Role::Viewer),
            "user" => Ok(Role::User),
            "operator" => Ok(Role::Operator),
            _ => Err(format!("role {s:?}: expected viewer, user or operator")),
        }
    }
}

fn default_listen() -> String {
    "127.0.0.1:8300".into()
}

fn default_state_dir() -> PathBuf {
    PathBuf::from("alpy-lab-state")
}

/// The hex SHA-256 of a token.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A new random token (256 bits, hex) prefixed `alpylab_`.
pub fn new_token() -> Result<String, Error> {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b)
        .map_err(|e| Error::Refused(format!("no randomness for a token: {e}")))?;
    Ok(format!("alpylab_{}", hex::encode(b)))
}

impl Config {
    /// Reads and checks `path`; relative paths in it are made absolute.
    pub fn load(path: &Path) -> Result<Config, Error> {
        let text =
            std::fs::read_to_string(path).map_err(Error::io(format!("read {}", path.display())))?;
        let bad = |at: String, detail: String| Error::Config {
            path: path.to_path_buf(),
            at,
            detail,
        };
        let mut c: Config = toml::from_str(&text).map_err(|e| {
            let at = e
                .span()
                .map(|s| {
                    let before = &text[..s.start.min(text.len())];
                    let line = before.matches('\n').count() + 1;
                    let col = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
                    format!(":{line}:{col}")
                })
                .unwrap_or_default();
            // A value written where another type belongs would be quoted:
            // a community or pass phrase, perhaps.
            bad(at, alpy::board::hide_values(e.message()))
        })?;
        // Absolute, so that labs (run in their own directories) find them.
        let parent = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let base = std::fs::canonicalize(parent)
            .map_err(Error::io(format!("resolve {}", parent.display())))?;
        let base = base.as_path();
        if c.state_dir.is_relative() {
            c.state_dir = base.join(&c.state_dir);
        }
        for p in c.store.values_mut() {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        if let Some(tls) = &mut c.tls {
            for p in [&mut tls.cert, &mut tls.key] {
                if p.is_relative() {
                    *p = base.join(&*p);
                }
            }
        }
        // Sessions belong to a token's name: two tokens of one name would
        // share them.
        let mut names = std::collections::BTreeSet::new();
        for t in &c.tokens {
            if !names.insert(t.name.as_str()) {
                return Err(bad(
                    String::new(),
                    format!(
                        "two [[token]] entries are named {:?}: each token needs its own name",
                        t.name
                    ),
                ));
            }
        }
        for (what, limit) in [
            ("waiting", c.limits.waiting_heartbeat_s),
            ("active", c.limits.active_heartbeat_s),
        ] {
            if !(limit > 0.0 && limit.is_finite()) {
                return Err(bad(
                    String::new(),
                    format!("limits.{what}_heartbeat_s must be a number of seconds above 0, not {limit}"),
                ));
            }
            if limit < 10.0 {
                tracing::warn!(
                    "limits.{what}_heartbeat_s = {limit}: alpy's clients send a heartbeat every 5 s, \
                     so a limit under 10 s can end sessions whose clients are alive"
                );
            }
        }
        if !(1..=100_000).contains(&c.limits.event_history) {
            return Err(bad(
                String::new(),
                format!(
                    "limits.event_history = {}: keep between 1 and 100000 events",
                    c.limits.event_history
                ),
            ));
        }
        if let Some(n) = c
            .limits
            .max_streams
            .filter(|n| *n >= c.limits.max_connections)
        {
            return Err(bad(
                String::new(),
                format!(
                    "limits.max_streams ({n}) must be under limits.max_connections ({}): \
                     streams would leave no connection for heartbeats",
                    c.limits.max_connections
                ),
            ));
        }
        if c.limits.max_labs == 0 {
            return Err(bad(
                String::new(),
                "limits.max_labs must be at least 1".into(),
            ));
        }
        boards::check_boards(&c.boards).map_err(|e| bad(String::new(), e))?;
        c.board_tables = BoardTables::of(&text);
        boards::check_classes(&c.board_classes, &c.boards).map_err(|e| bad(String::new(), e))?;
        Ok(c)
    }

    /// The token `presented` (a bearer token), if it is one.
    pub fn token(&self, presented: &str) -> Option<&Token> {
        let h = hash_token(presented);
        // Every hash is compared, so the time taken says nothing of which
        // one matched.
        let mut found = None;
        for t in &self.tokens {
            if constant_eq(t.sha256.as_bytes(), h.as_bytes()) {
                found = Some(t);
            }
        }
        found
    }

    /// The `alpy` command to run.
    pub fn alpy_command(&self) -> PathBuf {
        if let Some(p) = &self.alpy {
            return p.clone();
        }
        std::env::current_exe()
            .ok()
            .and_then(|e| e.parent().map(|d| d.join("alpy")))
            .filter(|p| p.is_file())
            .unwrap_or_else(|| PathBuf::from("alpy"))
    }
}

fn constant_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Adds a token named `name` to the configuration file at `path`
/// (appending a `[[token]]` table) and returns the token, which is shown
/// once and never stored.
pub fn create_token(path: &Path, name: &str, role: Role) -> Result<String, Error> {
    let c = Config::load(path)?;
    let bad = |detail: String| Error::Config {
        path: path.to_path_buf(),
        at: String::new(),
        detail,
    };
    if c.tokens.iter().any(|t| t.name == name) {
        return Err(bad(format!("a token named {name:?} exists")));
    }
    if name.is_empty()
        || !name
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || "-_.@".contains(ch))
    {
        return Err(bad(format!(
            "bad token name {name:?}: use letters, digits, - _ . @"
        )));
    }
    let token = new_token()?;
    let mut text =
        std::fs::read_to_string(path).map_err(Error::io(format!("read {}", path.display())))?;
    if !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(&format!(
        "\n[[token]]\nname = \"{name}\"\nrole = \"{role}\"\nsha256 = \"{}\"\n",
        hash_token(&token)
    ));
    let tmp = path.with_extension("toml.tmp");
    std::fs::write(&tmp, text).map_err(Error::io(format!("write {}", tmp.display())))?;
    std::fs::rename(&tmp, path).map_err(Error::io(format!("replace {}", path.display())))?;
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_become_absolute_and_tokens_are_hashed() {
        let dir = std::env::temp_dir().join(format!("alpy-lab-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("lab.toml"), "[store]\nk = \"store/vmlinuz\"\n").unwrap();
        let cwd = std::env::current_dir().unwrap();
        std::env::set_current_dir(&dir).unwrap();
        let c = Config::load(Path::new("lab.toml"));
        std::env::set_current_dir(cwd).unwrap();
        let c = c.unwrap();
        assert!(
            c.state_dir.is_absolute() && c.state_dir.ends_with("alpy-lab-state"),
            "{:?}",
            c.state_dir
        );
        assert!(c.store["k"].is_absolute());
        let token = create_token(&dir.join("lab.toml"), "ci", Role::Operator).unwrap();
        let text = std::fs::read_to_string(dir.join("lab.toml")).unwrap();
        assert!(!text.contains(&token) && text.contains(&hash_token(&token)));
        let c = Config::load(&dir.join("lab.toml")).unwrap();
        assert_eq!(c.token(&token).map(|t| t.name.as_str()), Some("ci"));
        assert_eq!(c.token(&token).map(|t| t.role), Some(Role::Operator));
        assert!(c.token("alpylab_guess").is_none());
        // A missing file is an I/O error a caller can tell apart.
        let e = Config::load(Path::new("/nonexistent/lab.toml")).unwrap_err();
        assert!(
            matches!(&e, Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound),
            "{e:?}"
        );
        assert!(e.to_string().contains("cannot read /nonexistent"), "{e}");
        std::fs::write(dir.join("bad.toml"), "listen = \"x\"\nlsten = 1\n").unwrap();
        let e = Config::load(&dir.join("bad.toml")).unwrap_err();
        assert!(
            matches!(&e, Error::Config { at, .. } if at == ":2:1"),
            "{e:?}"
        );
        let e = e.to_string();
        assert!(
            e.contains("bad.toml:2:1") && e.contains("unknown field"),
            "{e}"
        );
        std::fs::write(
            dir.join("twice.toml"),
            "[[token]]\nname = \"ci\"\nsha256 = \"aa\"\n[[token]]\nname = \"ci\"\nsha256 = \"bb\"\n",
        )
        .unwrap();
        let e = Config::load(&dir.join("twice.toml")).unwrap_err();
        assert!(matches!(e, Error::Config { .. }), "{e:?}");
        assert!(
            e.to_string()
                .contains("two [[token]] entries are named \"ci\""),
            "{e}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
