//! A bed's typed events, as JSON lines in `events.jsonl` in its artifacts
//! directory: the steps it took, its phases, what its consoles printed,
//! the checks a test made, its apps' ends and its result. The HTML report
//! ([`crate::report`]) is drawn from them; other programs can follow them
//! instead of reading `debug.log`.
//!
//! Events reach the journal of the bed whose log scope the calling thread
//! is in (see [`crate::logging`]): a bed's own threads, the test's thread
//! that started it (the innermost bed, when one thread started several),
//! and a node's or shell's checks (they enter their bed's scope) write to
//! that bed's file; a thread outside any bed writes nowhere.
//!
//! Each line is one [`Entry`]: `t`, seconds since the bed started, and the
//! [`Event`] itself, tagged by `kind`:
//!
//! ```text
//! {"t":0.0,"kind":"bed","name":"forward","run":"a285bd7441",...}
//! {"t":0.51,"kind":"step","what":"Create 2 nodes","state":"done","secs":0.51}
//! {"t":10.2,"kind":"console","machine":"dut","text":"guest# "}
//! {"t":12.0,"kind":"check","on":"dut","what":"ping -c1 10.0.0.1","ok":true}
//! ```

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::util::lock;

/// The journal's file name in a bed's artifacts directory.
pub const FILE: &str = "events.jsonl";

/// How a step ended, or that it started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepState {
    /// The step began.
    Started,
    /// The step ended well.
    Done,
    /// The step ended with an error (or was abandoned).
    Failed,
}

/// How a bed's test ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Closed with no failed check.
    Passed,
    /// A check failed, the test panicked, the bed failed to start, was
    /// dropped without `close()`, or closing failed.
    Failed,
    /// The test's process died without closing the bed (SIGKILL, say):
    /// written afterwards, by `alpy report` or the next bed.
    Killed,
}

/// One event of a bed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Event {
    /// The bed started: the first event of every journal.
    Bed {
        /// The bed's name.
        name: String,
        /// Its run id.
        run: String,
        /// The test's name (the thread's name under `cargo test`).
        test: String,
        /// The host's name.
        host: String,
        /// The alpy version.
        alpy: String,
        /// The test's process id (a report tells a killed run by it).
        pid: u32,
        /// Wall-clock start, milliseconds since the Unix epoch: capture
        /// time stamps are placed on the bed's time with it.
        start_unix_ms: u64,
    },
    /// A machine's QEMU started.
    Machine {
        /// The machine's name.
        machine: String,
        /// QEMU's version.
        qemu: String,
        /// The accelerator (`tcg`, `kvm`).
        accel: String,
    },
    /// What to add to the stamps of a machine's capture files
    /// (`link0.pcap`, `r2-nic1.pcap`) to get host time.
    CaptureClock {
        /// The machine.
        machine: String,
        /// Seconds to add.
        offset_s: f64,
    },
    /// A step of alpy's (`Create 2 nodes`, `Wait for "login:"`).
    Step {
        /// What the step does.
        what: String,
        /// Started or how it ended.
        state: StepState,
        /// Its duration, once ended.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        secs: Option<f64>,
        /// Why it failed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// A phase recorded in `timings.json`, which ended at `t`.
    Phase {
        /// The phase (`boot`, `r2: login`, a test's `timed()` name).
        name: String,
        /// Its duration.
        secs: f64,
    },
    /// Text a machine's console printed.
    Console {
        /// The machine.
        machine: String,
        /// What it printed (bytes as lossy UTF-8).
        text: String,
    },
    /// A check: a command expected to succeed or fail, a wait, or a
    /// test's own ([`check`]).
    Check {
        /// Where it ran (a machine or node), empty for a test's own.
        on: String,
        /// What was checked.
        what: String,
        /// Whether it held.
        ok: bool,
        /// Why not, when it did not.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        detail: Option<String>,
    },
    /// An app was closed (stopped, or collected after it ended).
    App {
        /// The app's name.
        name: String,
        /// Its node.
        node: String,
        /// Its command (empty: the image's own).
        command: String,
        /// How long it lived (it started at `t - secs`).
        #[serde(default)]
        secs: f64,
        /// Its log's file name in the artifacts directory.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        log: Option<String>,
        /// Its exit code, if it had ended (None: it still ran).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        exit_code: Option<i64>,
    },
    /// How the test ended: the last event.
    Result {
        /// The outcome.
        outcome: Outcome,
        /// The first failure (a check, a panic's message, an error).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        first_failure: Option<String>,
    },
}

impl Event {
    /// A step as a person reads it: `Create 2 nodes...`, `Create 2
    /// nodes... done (0.51 s)`, `... failed (0.12 s): why`; `None` for
    /// other events. `alpy up` prints these from the supervisor's events.
    ///
    /// ```
    /// use alpy::journal::{Event, StepState};
    /// let e = Event::Step { what: "Boot".into(), state: StepState::Done, secs: Some(9.6), error: None };
    /// assert_eq!(e.step_line().as_deref(), Some("Boot... done (9.60 s)"));
    /// ```
    pub fn step_line(&self) -> Option<String> {
        let Event::Step {
            what,
            state,
            secs,
            error,
        } = self
        else {
            return None;
        };
        let secs = secs.unwrap_or(0.0);
        Some(match (state, error) {
            (StepState::Started, _) => format!("{what}..."),
            (StepState::Done, _) => format!("{what}... done ({secs:.2} s)"),
            (StepState::Failed, Some(why)) => format!("{what}... failed ({secs:.2} s): {why}"),
            (StepState::Failed, None) => format!("{what}... failed ({secs:.2} s)"),
        })
    }
}

/// A line of `events.jsonl`: when, and what.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// Seconds since the bed started.
    pub t: f64,
    /// The event.
    #[serde(flatten)]
    pub event: Event,
}

/// An open journal: the bed holds it and closes it.
pub(crate) struct Journal {
    scope: Option<u64>,
    inner: Arc<Open>,
}

struct Open {
    started: Instant,
    file: Mutex<std::io::BufWriter<std::fs::File>>,
    first_failure: Mutex<Option<String>>,
}

/// Where every journal of this process is copied as well (see [`tee`]).
fn tee_file() -> &'static Mutex<Option<std::fs::File>> {
    static T: OnceLock<Mutex<Option<std::fs::File>>> = OnceLock::new();
    T.get_or_init(Default::default)
}

/// Copies the events of every bed of this process, from now on, to
/// `path` as well (appending): for a process that owns one bed and whose
/// parent must follow it before the bed's artifacts directory is known,
/// as `alpy up` follows its supervisor. The copy does not say which bed a
/// line is of: use it in a process of one bed.
pub fn tee(path: &Path) -> Result<()> {
    let f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| Error::io(format!("open {}", path.display()), e))?;
    *lock(tee_file()) = Some(f);
    Ok(())
}

/// Stops [`tee`]: later events go to their beds' journals only.
pub fn untee() {
    *lock(tee_file()) = None;
}

fn journals() -> &'static Mutex<HashMap<u64, Arc<Open>>> {
    static J: OnceLock<Mutex<HashMap<u64, Arc<Open>>>> = OnceLock::new();
    J.get_or_init(Default::default)
}

impl Journal {
    /// Opens `dir/events.jsonl` (anew) for log scope `scope` and writes
    /// the [`Event::Bed`] line.
    pub(crate) fn open(dir: &Path, scope: Option<u64>, name: &str, run: &str) -> Result<Journal> {
        let path = dir.join(FILE);
        let file = std::fs::File::create(&path)
            .map_err(|e| Error::io(format!("create {}", path.display()), e))?;
        let inner = Arc::new(Open {
            started: Instant::now(),
            file: Mutex::new(std::io::BufWriter::new(file)),
            first_failure: Mutex::new(None),
        });
        if let Some(s) = scope {
            lock(journals()).insert(s, Arc::clone(&inner));
        }
        record_panics();
        let j = Journal { scope, inner };
        j.write(Event::Bed {
            name: name.to_string(),
            run: run.to_string(),
            test: std::thread::current().name().unwrap_or("main").to_string(),
            host: nix::unistd::gethostname()
                .map(|h| h.to_string_lossy().into_owned())
                .unwrap_or_default(),
            alpy: env!("CARGO_PKG_VERSION").to_string(),
            pid: std::process::id(),
            start_unix_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0),
        });
        Ok(j)
    }

    /// Writes `event` now.
    pub(crate) fn write(&self, event: Event) {
        self.inner.write(event);
    }

    /// The first failure recorded so far.
    pub(crate) fn first_failure(&self) -> Option<String> {
        lock(&self.inner.first_failure).clone()
    }

    /// Writes the result and closes the file.
    pub(crate) fn close(self, outcome: Outcome, failure: Option<String>) -> Result<()> {
        let first_failure = failure.or_else(|| self.first_failure());
        self.write(Event::Result {
            outcome,
            first_failure,
        });
        if let Some(s) = self.scope {
            lock(journals()).remove(&s);
        }
        lock(&self.inner.file)
            .flush()
            .map_err(|e| Error::io("flush events.jsonl", e))
    }
}

impl Open {
    fn write(&self, event: Event) {
        if let Event::Check {
            ok: false,
            what,
            detail,
            ..
        } = &event
        {
            let mut first = lock(&self.first_failure);
            if first.is_none() {
                *first = Some(match detail {
                    Some(d) => format!("{what}: {d}"),
                    None => what.clone(),
                });
            }
        }
        let entry = Entry {
            t: secs(self.started.elapsed()),
            event,
        };
        let Ok(line) = serde_json::to_string(&entry) else {
            return;
        };
        let line = line + "\n";
        let mut f = lock(&self.file);
        // A full disk must not fail the test: the report says less.
        let _ = f.write_all(line.as_bytes()).and_then(|_| {
            // Console text and steps are flushed at once, so a killed run
            // leaves them on disk.
            f.flush()
        });
        // Under the journal's lock, so the copy keeps the journal's order;
        // one write per line.
        if let Some(t) = lock(tee_file()).as_mut() {
            let _ = t.write_all(line.as_bytes());
        }
        drop(f);
    }
}

/// Makes a panic (a failed `assert!`) a failed check in the panicking
/// thread's bed, at its time, before the previous hook prints it.
fn record_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let message = info
                .payload()
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| info.payload().downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "(a panic without a message)".into());
            let at = info
                .location()
                .map(|l| format!(" at {}:{}", l.file(), l.line()))
                .unwrap_or_default();
            emit(Event::Check {
                on: String::new(),
                what: format!("the test panicked{at}"),
                ok: false,
                detail: Some(message),
            });
            previous(info);
        }));
    });
}

/// A duration as the journal writes it: seconds, to 0.1 ms (as
/// `timings.json` does).
pub(crate) fn secs(d: std::time::Duration) -> f64 {
    (d.as_secs_f64() * 1e4).round() / 1e4
}

/// Writes `event` to the journal of the calling thread's bed, if any.
pub(crate) fn emit(event: Event) {
    let Some(scope) = crate::logging::current_scope() else {
        return;
    };
    let open = lock(journals()).get(&scope).cloned();
    if let Some(j) = open {
        j.write(event);
    }
}

/// Records a test's own check in the calling thread's bed (its report
/// shows it at this time; a failed one makes the bed's result "failed"),
/// and returns `ok`.
///
/// ```no_run
/// # fn f(bed: &mut alpy::TestBed) -> alpy::Result<()> {
/// use alpy::Commands;
/// let routes = bed.machine("r1")?.shell()?.succeed("ip route")?;
/// assert!(alpy::journal::check(routes.contains("10.0.0.0/8"), "r1 has the route to 10/8"));
/// # Ok(()) }
/// ```
pub fn check(ok: bool, what: &str) -> bool {
    emit(Event::Check {
        on: String::new(),
        what: what.to_string(),
        ok,
        detail: None,
    });
    ok
}

/// Reads a journal, skipping lines that do not parse (a line cut by a
/// kill, even in the middle of a character).
pub fn read(dir: &Path) -> Result<Vec<Entry>> {
    let path = dir.join(FILE);
    let bytes =
        std::fs::read(&path).map_err(|e| Error::io(format!("read {}", path.display()), e))?;
    Ok(bytes
        .split(|&b| b == b'\n')
        .filter_map(|l| serde_json::from_slice(l).ok())
        .collect())
}

/// Appends the result of a bed whose process died without closing it.
pub(crate) fn append_killed(dir: &Path) -> Result<()> {
    let entries = read(dir)?;
    let t = entries.last().map(|e| e.t).unwrap_or(0.0);
    let entry = Entry {
        t,
        event: Event::Result {
            outcome: Outcome::Killed,
            first_failure: Some("the test's process died before it closed the bed".into()),
        },
    };
    let line = serde_json::to_string(&entry)
        .map_err(|e| Error::Internal(format!("encode an event: {e}")))?;
    let path = dir.join(FILE);
    // After a line the kill cut short, on a line of its own.
    let cut = std::fs::read(&path)
        .map(|b| b.last().is_some_and(|&c| c != b'\n'))
        .unwrap_or(false);
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .map_err(|e| Error::io(format!("open {}", path.display()), e))?;
    let sep = if cut { "\n" } else { "" };
    writeln!(f, "{sep}{line}").map_err(|e| Error::io(format!("append to {}", path.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_with_their_kind_tag() {
        let e = Entry {
            t: 1.5,
            event: Event::Check {
                on: "dut".into(),
                what: "ping".into(),
                ok: false,
                detail: Some("exit 1".into()),
            },
        };
        let line = serde_json::to_string(&e).unwrap();
        assert!(line.contains(r#""kind":"check""#), "{line}");
        assert_eq!(serde_json::from_str::<Entry>(&line).unwrap(), e);
    }

    #[test]
    fn the_first_failed_check_is_kept_and_only_in_its_scope() {
        let dir = std::env::temp_dir().join(format!("alpy-journal-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let sink = crate::logging::add_scoped_sink(&dir.join("debug.log")).unwrap();
        let j = Journal::open(&dir, sink.scope(), "b", "r").unwrap();
        check(false, "outside the scope");
        sink.enter();
        check(true, "first");
        check(false, "second");
        check(false, "third");
        assert_eq!(j.first_failure().as_deref(), Some("second"));
        j.close(Outcome::Failed, None).unwrap();
        let entries = read(&dir).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        let whats: Vec<_> = entries
            .iter()
            .filter_map(|e| match &e.event {
                Event::Check { what, .. } => Some(what.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(whats, ["first", "second", "third"]);
        assert!(matches!(
            entries.last().map(|e| &e.event),
            Some(Event::Result { outcome: Outcome::Failed, first_failure: Some(f) }) if f == "second"
        ));
    }
}
