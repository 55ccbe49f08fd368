//! Logging: one call sets up `log` for a test program, full debug logs go to
//! files, and [`Step`] prints alpy's familiar `Create nodes...` /
//! `Create nodes... done (0.12 s)` lines.
//!
//! The terminal gets `info` and above (or what `RUST_LOG` says); every file
//! sink added with [`add_file_sink`] gets the full `debug` log of alpy, with
//! time stamps and thread names, so a failed CI run can be read afterwards.
//!
//! **Beds never share a log.** A test bed's `debug.log` is a *scoped* sink
//! ([`add_scoped_sink`]): the thread that starts the bed enters its scope
//! (until the bed is closed), and every thread alpy spawns inherits the
//! scope of the thread that spawned it ([`inherit`]). A record logged in a
//! scope goes only to that scope's sink and to unscoped sinks; a record
//! logged outside any scope goes to every sink. So two beds on two
//! threads of one process keep separate logs; two beds on one thread
//! share that thread's own records (its latest bed gets them), while
//! each bed's own threads (console, relays, QEMU's log readers) stay apart.

use std::fmt::Display;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use log::{Level, LevelFilter, Log, Metadata, Record};

use crate::error::{IoContext, Result};
use crate::journal::StepState;

/// (id, scope, writer): scoped sinks receive only their scope's records
/// and unscoped ones.
type Sink = (u64, Option<u64>, Box<dyn Write + Send>);

thread_local! {
    /// The scopes this thread has entered, innermost last.
    static SCOPES: std::cell::RefCell<Vec<u64>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The innermost log scope of this thread.
pub fn current_scope() -> Option<u64> {
    // None while the thread's locals are torn down (a panic hook may ask).
    SCOPES
        .try_with(|s| s.try_borrow().ok().and_then(|s| s.last().copied()))
        .ok()
        .flatten()
}

fn enter_scope(scope: u64) {
    SCOPES.with(|s| s.borrow_mut().push(scope));
}

fn leave_scope(scope: u64) {
    SCOPES.with(|s| s.borrow_mut().retain(|x| *x != scope));
}

/// A log scope entered for one call: records of the call carry the bed
/// they concern, whatever thread makes it (a test's own thread, say).
/// Dropping it leaves the scope again if the call entered it.
#[must_use = "the scope is left when the guard is dropped"]
pub struct CallScope(Option<u64>);

/// Enters `scope` for a call, unless it is the thread's innermost already.
pub fn enter_for_call(scope: Option<u64>) -> CallScope {
    match scope {
        Some(s) if current_scope() != Some(s) => {
            enter_scope(s);
            CallScope(Some(s))
        }
        _ => CallScope(None),
    }
}

impl Drop for CallScope {
    fn drop(&mut self) {
        if let Some(id) = self.0 {
            SCOPES.with(|s| {
                let mut v = s.borrow_mut();
                if let Some(pos) = v.iter().rposition(|x| *x == id) {
                    v.remove(pos);
                }
            });
        }
    }
}

/// Spawns a thread whose records go to log scope `scope` (a bed's:
/// [`crate::TestBed::spawn`]), like the threads alpy spawns for a bed.
pub fn spawn_in<T: Send + 'static>(
    scope: Option<u64>,
    f: impl FnOnce() -> T + Send + 'static,
) -> std::thread::JoinHandle<T> {
    std::thread::spawn(move || {
        if let Some(s) = scope {
            enter_scope(s);
        }
        f()
    })
}

/// Wraps a thread's body so that it runs in the log scope of the thread
/// that calls this (the spawner): use it on every thread a bed starts.
///
/// ```
/// let h = std::thread::spawn(alpy::logging::inherit(|| log::info!("in the spawner's scope")));
/// h.join().unwrap();
/// ```
pub fn inherit<T, F: FnOnce() -> T>(f: F) -> impl FnOnce() -> T {
    let scope = current_scope();
    move || {
        if let Some(s) = scope {
            enter_scope(s);
        }
        f()
    }
}

/// Runs `f` on every item at once, a scoped thread each in the caller's
/// log scope, and returns the results in the items' order (a thread that
/// panicked is [`crate::Error::Internal`] naming `what`).
pub(crate) fn each_at_once<I, T, F>(items: I, what: &str, f: F) -> Vec<Result<T>>
where
    I: IntoIterator,
    I::Item: Send,
    T: Send,
    F: Fn(I::Item) -> Result<T> + Sync,
{
    let f = &f;
    std::thread::scope(|s| {
        let handles: Vec<_> = items
            .into_iter()
            .map(|item| s.spawn(inherit(move || f(item))))
            .collect();
        handles
            .into_iter()
            .map(|h| crate::util::join_scoped(h, what))
            .collect()
    })
}

struct AlpyLogger {
    terminal: env_logger::Logger,
    sinks: Mutex<Vec<Sink>>,
}

static LOGGER: OnceLock<&'static AlpyLogger> = OnceLock::new();
static NEXT_SINK: AtomicU64 = AtomicU64::new(1);
/// How many sinks are registered: with none, debug records are not even
/// formatted.
static SINKS: AtomicU64 = AtomicU64::new(0);

/// alpy's own dependencies whose debug output would drown the story (HTTP
/// client and runtime chatter): kept at `info` in the debug log. Everything
/// else, alpy and the test's own targets alike, goes in at `debug`.
const CHATTY: &[&str] = &["hyper", "bollard", "tokio", "mio", "h2", "want", "tower"];

fn is_ours(target: &str) -> bool {
    let krate = target.split("::").next().unwrap_or(target);
    !CHATTY
        .iter()
        .any(|c| krate == *c || krate.starts_with(&format!("{c}_")))
}

fn sink_wants(meta: &Metadata) -> bool {
    SINKS.load(Ordering::Relaxed) > 0
        && (meta.level() <= Level::Info || (meta.level() <= Level::Debug && is_ours(meta.target())))
}

impl Log for AlpyLogger {
    fn enabled(&self, meta: &Metadata) -> bool {
        self.terminal.enabled(meta) || sink_wants(meta)
    }

    fn log(&self, record: &Record) {
        if self.terminal.enabled(record.metadata()) {
            self.terminal.log(record);
        }
        if !sink_wants(record.metadata()) {
            return;
        }
        let mut sinks = match self.sinks.lock() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        };
        if sinks.is_empty() {
            return;
        }
        let thread = std::thread::current();
        let line = format!(
            "{} {:<5} [{}] {}: {}\n",
            timestamp(),
            record.level(),
            thread.name().unwrap_or("?"),
            record.target(),
            record.args()
        );
        // A scope whose sink is gone (its bed closed on another thread)
        // counts as no scope.
        let scope = current_scope().filter(|s| sinks.iter().any(|(_, sc, _)| *sc == Some(*s)));
        for (_, sink_scope, sink) in sinks.iter_mut() {
            if scope.is_some() && sink_scope.is_some() && *sink_scope != scope {
                continue;
            }
            // A broken debug log must never fail the test it documents.
            let _ = sink.write_all(line.as_bytes());
        }
    }

    fn flush(&self) {
        self.terminal.flush();
        if let Ok(mut sinks) = self.sinks.lock() {
            for (_, _, sink) in sinks.iter_mut() {
                let _ = sink.flush();
            }
        }
    }
}

/// `HH:MM:SS.mmm` in UTC.
fn timestamp() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let s = now.as_secs() % 86_400;
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        s / 3600,
        s / 60 % 60,
        s % 60,
        now.subsec_millis()
    )
}

/// Sets up logging for the process: `info` to stderr (override with
/// `RUST_LOG`, e.g. `RUST_LOG=alpy=debug`), plus any file sinks. Calling it
/// again is harmless; if another logger was installed first, alpy's file
/// sinks stay silent and that logger gets everything.
pub fn init() {
    LOGGER.get_or_init(|| {
        let terminal = env_logger::Builder::new()
            .filter_level(LevelFilter::Info)
            .parse_env(env_logger::Env::default())
            .format_timestamp_millis()
            .is_test(cfg!(test))
            .build();
        let logger: &'static AlpyLogger = Box::leak(Box::new(AlpyLogger {
            terminal,
            sinks: Mutex::new(Vec::new()),
        }));
        if log::set_logger(logger).is_ok() {
            log::set_max_level(LevelFilter::Debug.max(logger.terminal.filter()));
        }
        logger
    });
}

/// Keeps a file sink alive; dropping it stops writing to the sink (and
/// leaves its scope on the dropping thread).
#[must_use = "the sink is removed when the guard is dropped"]
pub struct SinkGuard {
    id: u64,
    scoped: bool,
}

impl SinkGuard {
    /// This sink's scope, if it is a scoped sink.
    pub fn scope(&self) -> Option<u64> {
        self.scoped.then_some(self.id)
    }

    /// Makes this (scoped) sink's scope the current thread's innermost,
    /// until the guard is dropped.
    pub fn enter(&self) {
        if self.scoped {
            leave_scope(self.id);
            enter_scope(self.id);
        }
    }
}

impl Drop for SinkGuard {
    fn drop(&mut self) {
        if self.scoped {
            leave_scope(self.id);
        }
        if let Some(logger) = LOGGER.get() {
            if let Ok(mut sinks) = logger.sinks.lock() {
                if let Some(pos) = sinks.iter().position(|(id, _, _)| *id == self.id) {
                    SINKS.fetch_sub(1, Ordering::Relaxed);
                    let (_, _, mut sink) = sinks.remove(pos);
                    let _ = sink.flush();
                }
            }
        }
    }
}

fn open_log(path: &Path) -> Result<Box<dyn Write + Send>> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .context(|| format!("open debug log {}", path.display()))?;
    Ok(Box::new(file))
}

/// Writes the full debug log of the whole process to `path` (appending)
/// while the guard lives. Calls [`init`] first.
pub fn add_file_sink(path: &Path) -> Result<SinkGuard> {
    Ok(add_sink(open_log(path)?, false))
}

/// Writes to `path` (appending) the records of a scope of its own (see the
/// module's documentation), plus those logged outside any scope; call
/// [`SinkGuard::enter`] on the threads that work for it. What a test bed's
/// `debug.log` is.
pub fn add_scoped_sink(path: &Path) -> Result<SinkGuard> {
    Ok(add_sink(open_log(path)?, true))
}

/// Sends the full debug log to any writer while the guard lives (tests use it
/// to capture what alpy logs). Calls [`init`] first.
pub fn add_writer_sink(writer: Box<dyn Write + Send>) -> SinkGuard {
    add_sink(writer, false)
}

fn add_sink(writer: Box<dyn Write + Send>, scoped: bool) -> SinkGuard {
    init();
    let id = NEXT_SINK.fetch_add(1, Ordering::Relaxed);
    if let Some(logger) = LOGGER.get() {
        if let Ok(mut sinks) = logger.sinks.lock() {
            sinks.push((id, scoped.then_some(id), writer));
            SINKS.fetch_add(1, Ordering::Relaxed);
        }
    }
    SinkGuard { id, scoped }
}

/// A logged step: `Create nodes...` when it starts, then
/// `Create nodes... done (0.12 s)` from [`Step::done`], or
/// `Create nodes... failed (0.12 s): why` from [`Step::failed`] or when it is
/// dropped unfinished (an early `?` return or a panic).
pub struct Step {
    what: String,
    started: Instant,
    finished: bool,
}

impl Step {
    /// Logs `what...` and starts the clock.
    pub fn start(what: impl Into<String>) -> Self {
        let what = what.into();
        log::info!(target: "alpy::step", "{what}...");
        step_event(&what, StepState::Started, None, None);
        Step {
            what,
            started: Instant::now(),
            finished: false,
        }
    }

    /// Logs `what... done (N.NN s)` and returns the duration.
    pub fn done(mut self) -> Duration {
        self.finished = true;
        let took = self.started.elapsed();
        log::info!(target: "alpy::step", "{}", done_line(&self.what, took));
        step_event(&self.what, StepState::Done, Some(took), None);
        took
    }

    /// Logs `what... failed (N.NN s): why` and returns the duration.
    pub fn failed(mut self, why: &dyn Display) -> Duration {
        self.finished = true;
        let took = self.started.elapsed();
        log::error!(target: "alpy::step", "{}", failed_line(&self.what, took, Some(why)));
        step_event(
            &self.what,
            StepState::Failed,
            Some(took),
            Some(why.to_string()),
        );
        took
    }
}

impl Drop for Step {
    fn drop(&mut self) {
        if !self.finished {
            let took = self.started.elapsed();
            log::error!(target: "alpy::step", "{}", failed_line(&self.what, took, None));
            step_event(&self.what, StepState::Failed, Some(took), None);
        }
    }
}

/// Runs `f` as a [`Step`]: `done` on `Ok`, `failed` with the error on `Err`.
pub fn step<T, E: Display>(
    what: impl Into<String>,
    f: impl FnOnce() -> std::result::Result<T, E>,
) -> std::result::Result<T, E> {
    let s = Step::start(what);
    match f() {
        Ok(v) => {
            s.done();
            Ok(v)
        }
        Err(e) => {
            s.failed(&e);
            Err(e)
        }
    }
}

fn step_event(what: &str, state: StepState, took: Option<Duration>, error: Option<String>) {
    crate::journal::emit(crate::journal::Event::Step {
        what: what.to_string(),
        state,
        secs: took.map(crate::journal::secs),
        error,
    });
}

fn done_line(what: &str, took: Duration) -> String {
    step_line(what, StepState::Done, took, None)
}

fn failed_line(what: &str, took: Duration, why: Option<&dyn Display>) -> String {
    step_line(what, StepState::Failed, took, why.map(|w| w.to_string()))
}

/// The log's words for a step: the same as the journal's (`alpy up` shows
/// those).
fn step_line(what: &str, state: StepState, took: Duration, error: Option<String>) -> String {
    crate::journal::Event::Step {
        what: what.to_string(),
        state,
        secs: Some(took.as_secs_f64()),
        error,
    }
    .step_line()
    .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tests_own_targets_reach_the_debug_log() {
        assert!(is_ours("alpy::node"));
        assert!(is_ours("my_router_test"));
        assert!(is_ours("carrot"));
        assert!(!is_ours("hyper_util::client::legacy"));
        assert!(!is_ours("bollard::docker"));
    }
    use std::sync::Arc;

    /// A writer whose bytes the test can read back.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn captured(buf: &Shared, marker: &str) -> Vec<String> {
        String::from_utf8_lossy(&buf.0.lock().unwrap())
            .lines()
            .filter(|l| l.contains(marker))
            .map(|l| l.split_once("alpy::step: ").map_or(l, |x| x.1).to_string())
            .collect()
    }

    #[test]
    fn step_logs_start_and_done() {
        let buf = Shared::default();
        let _g = add_writer_sink(Box::new(buf.clone()));
        step("Create nodes (done test)", || Ok::<_, String>(())).unwrap();
        let lines = captured(&buf, "(done test)");
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert_eq!(lines[0], "Create nodes (done test)...");
        assert!(
            lines[1].starts_with("Create nodes (done test)... done (") && lines[1].ends_with(" s)"),
            "{lines:?}"
        );
    }

    #[test]
    fn step_logs_failure_with_reason() {
        let buf = Shared::default();
        let _g = add_writer_sink(Box::new(buf.clone()));
        let r: std::result::Result<(), String> =
            step("Start QEMU (failed test)", || Err("no kernel".to_string()));
        assert!(r.is_err());
        let lines = captured(&buf, "(failed test)");
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(
            lines[1].starts_with("Start QEMU (failed test)... failed (")
                && lines[1].ends_with(" s): no kernel"),
            "{lines:?}"
        );
    }

    #[test]
    fn dropped_step_logs_failed() {
        let buf = Shared::default();
        let _g = add_writer_sink(Box::new(buf.clone()));
        {
            let _s = Step::start("Resume (drop test)");
        }
        let lines = captured(&buf, "(drop test)");
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(
            lines[1].starts_with("Resume (drop test)... failed ("),
            "{lines:?}"
        );
    }

    #[test]
    fn line_format() {
        assert_eq!(
            done_line("Create nodes", Duration::from_millis(120)),
            "Create nodes... done (0.12 s)"
        );
        assert_eq!(
            failed_line("Create nodes", Duration::from_millis(5), Some(&"boom")),
            "Create nodes... failed (0.01 s): boom"
        );
    }
}
