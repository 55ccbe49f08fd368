//! The board inventory's side of the configuration: what the boards of a
//! class share (`[[board_class]]`: scripts on reserve and release, a
//! health check and how often it runs), and the checks that the
//! `[[board]]` and `[[board_class]]` entries fit together.

use alpy::lab::wire::BoardJob;
use serde::{Deserialize, Serialize};

/// What the boards of one class share.
///
/// ```toml
/// [[board_class]]
/// name = "edge-router"
/// health_check = ["/etc/alpy-lab/check-board"]
/// check_every_sessions = 10
/// check_every_hours = 24
/// setup_script = ["/etc/alpy-lab/flash", "--factory"]
/// teardown_script = ["/etc/alpy-lab/wipe"]
/// ```
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BoardClass {
    /// The class (`class` of its `[[board]]` entries).
    pub name: String,
    /// The health check: a command and its arguments (no shell), run with
    /// the board's attributes in its environment (`ALPY_BOARD`,
    /// `ALPY_BOARD_CLASS`, `ALPY_BOARD_TAGS`, `ALPY_BOARD_PORTS`,
    /// `ALPY_BOARD_CONSOLE`). Exit status 0 passes; anything else, or no
    /// end within `health_check_timeout_s`, takes the board offline with
    /// what it printed as the reason.
    #[serde(default)]
    pub health_check: Vec<String>,
    /// How long the health check may take (default 300 s).
    #[serde(default = "default_timeout")]
    pub health_check_timeout_s: f64,
    /// Check a free board once it was lent this many times since its last
    /// check.
    #[serde(default)]
    pub check_every_sessions: Option<u64>,
    /// Check a free board once this many hours passed since its last
    /// check (or since the server first saw it).
    #[serde(default)]
    pub check_every_hours: Option<f64>,
    /// Run when a session reserves a board, before the session may use it
    /// (it waits meanwhile), with the board's attributes and
    /// `ALPY_SESSION` (the session's handle) in its environment. A failure
    /// takes the board offline with its output; the session waits on for
    /// another board.
    #[serde(default)]
    pub setup_script: Vec<String>,
    /// Run when a session lets its board go; the board is lent again only
    /// after it. A failure takes the board offline with its output.
    #[serde(default)]
    pub teardown_script: Vec<String>,
    /// How long a setup or teardown script may take (default 300 s).
    #[serde(default = "default_timeout")]
    pub script_timeout_s: f64,
}

fn default_timeout() -> f64 {
    300.0
}

impl BoardClass {
    /// The command of `job` (empty if the class has none) and its time.
    pub fn job(&self, job: BoardJob) -> (&[String], f64) {
        match job {
            BoardJob::Setup => (&self.setup_script, self.script_timeout_s),
            BoardJob::Teardown => (&self.teardown_script, self.script_timeout_s),
            BoardJob::Check => (&self.health_check, self.health_check_timeout_s),
        }
    }

    /// The configuration key of `job`'s command.
    pub fn key(job: BoardJob) -> &'static str {
        match job {
            BoardJob::Setup => "setup_script",
            BoardJob::Teardown => "teardown_script",
            BoardJob::Check => "health_check",
        }
    }

    /// Whether a free board of this class that was lent `lent` times and
    /// last checked `since_s` seconds ago is due a health check.
    pub fn check_due(&self, lent: u64, since_s: f64) -> bool {
        !self.health_check.is_empty()
            && (self.check_every_sessions.is_some_and(|n| lent >= n)
                || self
                    .check_every_hours
                    .is_some_and(|h| since_s >= h * 3600.0))
    }
}

/// Whether `s` is a name that fits a URL path segment and a log line.
fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Board names are unique URL path segments, classes are named, and each
/// board's power driver can be made from its settings.
/// Each board's `[[board]]` table as the configuration wrote it, by
/// name, secrets and all; shown (`{:?}`) by its boards' names only.
#[derive(Clone, Default)]
pub struct BoardTables(std::collections::BTreeMap<String, toml::Value>);

impl BoardTables {
    /// The tables of the `[[board]]` entries of configuration `text`
    /// (already read as a whole: a bad one is no entry here).
    pub(super) fn of(text: &str) -> BoardTables {
        let t: toml::Table = text.parse().unwrap_or_default();
        let tables = t
            .get("board")
            .and_then(|b| b.as_array())
            .into_iter()
            .flatten()
            .filter_map(|b| Some((b.get("name")?.as_str()?.to_string(), b.clone())))
            .collect();
        BoardTables(tables)
    }

    /// Board `name`'s table.
    pub fn get(&self, name: &str) -> Option<&toml::Value> {
        self.0.get(name)
    }
}

impl std::fmt::Debug for BoardTables {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

pub(super) fn check_boards(boards: &[alpy::board::BoardSpec]) -> Result<(), String> {
    let mut names = std::collections::BTreeSet::new();
    for (i, b) in boards.iter().enumerate() {
        if !is_name(&b.name) {
            return Err(format!(
                "[[board]] number {}: name {:?}: use 1 to 64 letters, digits, '-', '_' or '.'",
                i + 1,
                b.name
            ));
        }
        if !names.insert(b.name.as_str()) {
            return Err(format!(
                "two [[board]] entries are named {:?}: each board needs its own name",
                b.name
            ));
        }
        if !is_name(&b.class) {
            return Err(format!(
                "board {}: class {:?}: use 1 to 64 letters, digits, '-', '_' or '.'",
                b.name, b.class
            ));
        }
        b.power
            .driver()
            .map_err(|e| format!("board {}: its power: {e}", b.name))?;
    }
    Ok(())
}

/// Each `[[board_class]]` names a class some board has, once, with at
/// least one command, commands that name a program, periods that need a
/// health check, and time limits above 0.
pub(super) fn check_classes(
    classes: &[BoardClass],
    boards: &[alpy::board::BoardSpec],
) -> Result<(), String> {
    let mut seen = std::collections::BTreeSet::new();
    for c in classes {
        let at = format!("[[board_class]] {:?}", c.name);
        if !seen.insert(c.name.as_str()) {
            return Err(format!("two {at} entries: one per class"));
        }
        if !boards.iter().any(|b| b.class == c.name) {
            return Err(format!(
                "{at}: no [[board]] has this class (check the spelling)"
            ));
        }
        let jobs = [BoardJob::Check, BoardJob::Setup, BoardJob::Teardown];
        if jobs.iter().all(|j| c.job(*j).0.is_empty()) {
            return Err(format!(
                "{at}: give it a health_check, a setup_script or a teardown_script \
                 (a command and its arguments: [\"/path/to/it\", \"arg\"])"
            ));
        }
        for j in jobs {
            if c.job(j).0.first().is_some_and(|p| p.trim().is_empty()) {
                return Err(format!(
                    "{at}: {} starts with an empty program: [\"/path/to/it\", \"arg\"]",
                    BoardClass::key(j)
                ));
            }
        }
        if c.health_check.is_empty()
            && (c.check_every_sessions.is_some() || c.check_every_hours.is_some())
        {
            return Err(format!(
                "{at}: check_every_sessions and check_every_hours need a health_check"
            ));
        }
        if c.check_every_sessions == Some(0) {
            return Err(format!(
                "{at}: check_every_sessions must be 1 or more (leave it out for never)"
            ));
        }
        if c.check_every_hours
            .is_some_and(|h| !(h > 0.0 && h <= 8760.0))
        {
            return Err(format!(
                "{at}: check_every_hours must be hours above 0, a year at most"
            ));
        }
        for (key, s) in [
            ("health_check_timeout_s", c.health_check_timeout_s),
            ("script_timeout_s", c.script_timeout_s),
        ] {
            if !(s > 0.0 && s <= 86_400.0) {
                return Err(format!(
                    "{at}: {key} must be seconds above 0, a day at most"
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(sessions: Option<u64>, hours: Option<f64>) -> BoardClass {
        BoardClass {
            name: "c".into(),
            health_check: vec!["true".into()],
            health_check_timeout_s: 1.0,
            check_every_sessions: sessions,
            check_every_hours: hours,
            setup_script: Vec::new(),
            teardown_script: Vec::new(),
            script_timeout_s: 1.0,
        }
    }

    #[test]
    fn a_check_is_due_after_n_sessions_or_h_hours_whichever_comes_first() {
        let both = class(Some(3), Some(2.0));
        assert!(!both.check_due(2, 7199.0));
        assert!(both.check_due(3, 0.0));
        assert!(both.check_due(0, 7200.0));
        assert!(
            !class(None, None).check_due(1000, 1e9),
            "no period: on demand only"
        );
        let mut none = class(Some(1), Some(1.0));
        none.health_check.clear();
        assert!(!none.check_due(5, 1e9), "no health check: never due");
    }

    #[test]
    fn a_class_s_mistakes_are_named() {
        let board: alpy::board::BoardSpec = toml::from_str(
            r#"
name = "b"
class = "c"
console = { kind = "tcp", addr = "127.0.0.1:9" }
power = { driver = "qmp", socket = "/nonexistent" }
"#,
        )
        .unwrap();
        let boards = [board];
        let bad = |f: &dyn Fn(&mut BoardClass)| {
            let mut c = class(None, None);
            f(&mut c);
            check_classes(&[c], &boards).unwrap_err()
        };
        assert!(bad(&|c| c.health_check.clear()).contains("give it a health_check"));
        assert!(bad(&|c| c.setup_script = vec![" ".into()])
            .contains("setup_script starts with an empty program"));
        assert!(bad(&|c| c.check_every_sessions = Some(0)).contains("1 or more"));
        assert!(bad(&|c| c.check_every_hours = Some(-1.0)).contains("hours above 0"));
        assert!(bad(&|c| c.script_timeout_s = 0.0).contains("script_timeout_s must be"));
        assert!(bad(&|c| c.name = "d".into()).contains("no [[board]] has this class"));
        assert!(check_classes(&[class(Some(2), Some(24.0))], &boards).is_ok());
        let mut periodic = class(Some(2), None);
        periodic.health_check.clear();
        periodic.setup_script = vec!["true".into()];
        assert!(check_classes(&[periodic], &boards)
            .unwrap_err()
            .contains("need a health_check"));
    }
}
