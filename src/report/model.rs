//! What a bed's report shows, read from its artifacts directory: the
//! journal (`events.jsonl`), the captures, the apps' logs, the topology
//! picture. Nothing here needs the bed itself, so `alpy report DIR` draws
//! the same page after the fact.

use std::path::Path;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::journal::{Entry, Event, Outcome, StepState};
use crate::report::links::{link_reports, read_captures, LinkReport};

/// Console lines kept per page (the newest); the rest stay in the logs.
const CONSOLE_LINES: usize = 10_000;
/// Console lines shown around the first failure.
const CONTEXT: usize = 12;
/// Lines of an app's log shown.
const APP_TAIL: usize = 15;

/// Phases a machine records (`timings.json`); others are the bed's or the
/// test's own.
const MACHINE_PHASES: &[&str] = &[
    "qemu",
    "boot",
    "login",
    "shutdown",
    "restore",
    "save",
    "prepare",
    "snapshot_build",
];
/// Phases the bed records.
const BED_PHASES: &[&str] = &["setup", "nodes", "taps", "close", "lab"];

/// Everything the page shows.
#[derive(Debug, Serialize)]
pub(crate) struct BedReport {
    pub name: String,
    pub test: String,
    pub outcome: String,
    pub first_failure: Option<String>,
    pub duration_s: f64,
    pub run: String,
    pub host: String,
    pub alpy: String,
    pub started: String,
    pub machines: Vec<MachineInfo>,
    pub tcg: bool,
    pub topology_svg: Option<String>,
    pub lanes: Vec<Lane>,
    pub links: Vec<LinkReport>,
    pub console: Vec<Row>,
    pub console_dropped: usize,
    pub context: Vec<Row>,
    pub checks_ok: usize,
    pub checks_failed: usize,
    pub apps: Vec<AppRow>,
    pub files: Vec<FileRow>,
}

/// A machine's QEMU.
#[derive(Debug, Serialize)]
pub(crate) struct MachineInfo {
    pub name: String,
    pub qemu: String,
    pub accel: String,
}

/// A row of the timeline: the bed, a machine, or the test.
#[derive(Debug, Serialize)]
pub(crate) struct Lane {
    pub name: String,
    pub bars: Vec<Bar>,
}

/// A phase on the timeline; `left` and `width` in % of the run.
#[derive(Debug, Serialize)]
pub(crate) struct Bar {
    pub phase: String,
    pub start: f64,
    pub secs: f64,
    pub left: f64,
    pub width: f64,
    pub failed: bool,
}

/// A console line or a check, at its time.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Row {
    pub t: f64,
    /// `console` or `check`.
    pub kind: &'static str,
    pub machine: String,
    pub text: String,
    pub ok: bool,
}

/// An app and the end of its log.
#[derive(Debug, Serialize)]
pub(crate) struct AppRow {
    pub name: String,
    pub node: String,
    pub command: String,
    pub exit_code: Option<i64>,
    pub log: Option<String>,
    pub tail: String,
}

/// A file of the artifacts directory.
#[derive(Debug, Serialize)]
pub(crate) struct FileRow {
    pub name: String,
    pub size: String,
}

impl BedReport {
    /// Reads `dir`'s artifacts.
    pub(crate) fn load(dir: &Path) -> Result<BedReport> {
        // The captures in threads of their own while the journal is read.
        let (entries, captures) = std::thread::scope(|scope| {
            let captures = scope.spawn(|| read_captures(dir));
            let entries = crate::journal::read(dir);
            let captures = captures
                .join()
                .unwrap_or_else(|_| Err(Error::Internal("reading the captures panicked".into())));
            (entries, captures)
        });
        let (entries, captures) = (entries?, captures?);
        let mut r = BedReport {
            name: String::new(),
            test: String::new(),
            outcome: "running".into(),
            first_failure: None,
            duration_s: entries.last().map(|e| e.t).unwrap_or(0.0),
            run: String::new(),
            host: String::new(),
            alpy: String::new(),
            started: String::new(),
            machines: Vec::new(),
            tcg: false,
            topology_svg: None,
            lanes: Vec::new(),
            links: Vec::new(),
            console: Vec::new(),
            console_dropped: 0,
            context: Vec::new(),
            checks_ok: 0,
            checks_failed: 0,
            apps: Vec::new(),
            files: Vec::new(),
        };
        let mut start_unix = 0.0;
        let mut offsets = Vec::new();
        let mut partial: std::collections::HashMap<String, (f64, String)> = Default::default();
        for Entry { t, event } in &entries {
            match event {
                Event::Bed {
                    name,
                    run,
                    test,
                    host,
                    alpy,
                    start_unix_ms,
                    ..
                } => {
                    r.name = name.clone();
                    r.run = run.clone();
                    r.test = test.clone();
                    r.host = host.clone();
                    r.alpy = alpy.clone();
                    start_unix = *start_unix_ms as f64 / 1000.0;
                    r.started = utc(*start_unix_ms);
                }
                Event::Machine {
                    machine,
                    qemu,
                    accel,
                } => {
                    r.tcg |= accel == "tcg";
                    r.machines.retain(|m| &m.name != machine);
                    r.machines.push(MachineInfo {
                        name: machine.clone(),
                        qemu: qemu.clone(),
                        accel: accel.clone(),
                    });
                }
                Event::CaptureClock { machine, offset_s } => {
                    offsets.push((machine.clone(), *offset_s))
                }
                Event::Console { machine, text } => {
                    // Lines arrive whole, or as a prompt's partial line.
                    let (_, buf) = partial
                        .entry(machine.clone())
                        .or_insert((*t, String::new()));
                    buf.push_str(text);
                    if text.ends_with('\n') || buf.len() > 4096 {
                        let (t0, line) = partial.remove(machine).unwrap_or_default();
                        r.console.push(console_row(t0, machine, &line));
                    }
                }
                Event::Check {
                    on,
                    what,
                    ok,
                    detail,
                } => {
                    if *ok {
                        r.checks_ok += 1;
                    } else {
                        r.checks_failed += 1;
                    }
                    let mut text = what.clone();
                    if let Some(d) = detail {
                        text.push_str(&format!("\n{d}"));
                    }
                    r.console.push(Row {
                        t: round(*t),
                        kind: "check",
                        machine: on.clone(),
                        text,
                        ok: *ok,
                    });
                }
                Event::App {
                    name,
                    node,
                    command,
                    log,
                    exit_code,
                    ..
                } => r.apps.push(AppRow {
                    name: name.clone(),
                    node: node.clone(),
                    command: command.clone(),
                    exit_code: *exit_code,
                    // Only a plain name in this directory: a journal is
                    // data, and may come from elsewhere.
                    tail: log
                        .as_deref()
                        .filter(|l| plain_name(l))
                        .map(|l| tail_of(&dir.join(l), APP_TAIL))
                        .unwrap_or_default(),
                    log: log.clone().filter(|l| plain_name(l)),
                }),
                Event::Result {
                    outcome,
                    first_failure,
                } => {
                    r.outcome = match outcome {
                        Outcome::Passed => "passed",
                        Outcome::Failed => "failed",
                        Outcome::Killed => "killed",
                    }
                    .into();
                    r.first_failure = first_failure.clone();
                }
                Event::Step { .. } | Event::Phase { .. } => {}
            }
        }
        for (machine, (t0, line)) in partial {
            r.console.push(console_row(t0, &machine, &line));
        }
        r.console.sort_by(|a, b| a.t.total_cmp(&b.t));
        // The context first: the first failure may be among the lines
        // a long console drops.
        if let Some(i) = r.console.iter().position(|row| !row.ok) {
            let from = i.saturating_sub(CONTEXT);
            let to = (i + CONTEXT + 1).min(r.console.len());
            r.context = r.console[from..to].to_vec();
        }
        let lines = r.console.len();
        if lines > CONSOLE_LINES {
            r.console_dropped = lines - CONSOLE_LINES;
            r.console.drain(..r.console_dropped);
        }
        let first_machine = r.machines.first().map(|m| m.name.clone());
        r.lanes = lanes(&entries, r.duration_s, first_machine.as_deref());
        r.links = link_reports(captures, start_unix, &offsets, r.duration_s);
        r.topology_svg = std::fs::read_to_string(dir.join("topology.svg"))
            .ok()
            .map(|svg| crate::report::links::label_links(&svg, &r.links));
        r.files = files(dir);
        Ok(r)
    }
}

fn console_row(t: f64, machine: &str, line: &str) -> Row {
    Row {
        t: round(t),
        kind: "console",
        machine: machine.to_string(),
        text: strip_controls(line),
        ok: true,
    }
}

/// A console line without its line end and terminal escapes.
fn strip_controls(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\x1b' => {
                // CSI: ESC [ params final-byte; other escapes: one more char.
                if chars.peek() == Some(&'[') {
                    chars.next();
                    for c in chars.by_ref() {
                        if ('@'..='~').contains(&c) {
                            break;
                        }
                    }
                } else {
                    chars.next();
                }
            }
            '\r' | '\n' => {}
            '\t' => out.push_str("    "),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// The timeline: one lane for the bed, one per machine, one for the test's
/// own phases, each phase placed where it ended minus its duration.
fn lanes(entries: &[Entry], total: f64, first_machine: Option<&str>) -> Vec<Lane> {
    let total = total.max(0.001);
    let failed: std::collections::HashSet<&str> = entries
        .iter()
        .filter_map(|e| match &e.event {
            Event::Step {
                what,
                state: StepState::Failed,
                ..
            } => Some(what.as_str()),
            _ => None,
        })
        .collect();
    let mut lanes: Vec<Lane> = Vec::new();
    for e in entries {
        let (lane, phase, name, secs) = match &e.event {
            Event::Phase { name, secs } => {
                let (lane, phase) = phase_lane(name, first_machine);
                (lane, phase, name.clone(), *secs)
            }
            // A node's lane: its apps' lives.
            Event::App {
                name, node, secs, ..
            } => {
                let short = name
                    .rsplit_once(&format!("{node}-"))
                    .map_or(name.as_str(), |(_, a)| a);
                let app = format!("app {short}");
                (format!("node {node}"), app.clone(), app, *secs)
            }
            _ => continue,
        };
        let start = (e.t - secs).max(0.0);
        let bar = Bar {
            phase: name.clone(),
            start: round(start),
            secs,
            left: round(start / total * 100.0),
            width: round((secs / total * 100.0).max(0.3)),
            failed: failed.contains(name.as_str()) || failed.contains(phase.as_str()),
        };
        match lanes.iter_mut().find(|l| l.name == lane) {
            Some(l) => l.bars.push(bar),
            None => lanes.push(Lane {
                name: lane,
                bars: vec![bar],
            }),
        }
    }
    lanes
}

/// A phase's lane and its name there: `"r2: boot"` is r2's `boot`; a
/// machine's own phases go to the first machine, the bed's to `bed`, the
/// rest (the test's `timed()` steps) to `test`.
fn phase_lane(name: &str, first_machine: Option<&str>) -> (String, String) {
    match name.split_once(": ") {
        Some((m, p)) => (m.to_string(), p.to_string()),
        None if MACHINE_PHASES.contains(&name) => {
            (first_machine.unwrap_or("dut").to_string(), name.to_string())
        }
        None if BED_PHASES.contains(&name) => ("bed".into(), name.to_string()),
        None => ("test".into(), name.to_string()),
    }
}

/// To the millisecond: what the page shows and the plot needs.
pub(super) fn round(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// A file name of this directory: one normal component, not hidden.
fn plain_name(name: &str) -> bool {
    let mut parts = Path::new(name).components();
    matches!(
        (parts.next(), parts.next()),
        (Some(std::path::Component::Normal(_)), None)
    ) && !name.starts_with('.')
}

/// The last `n` lines of a file, or why there are none.
fn tail_of(path: &Path, n: usize) -> String {
    match std::fs::read(path) {
        Ok(b) => crate::util::tail_lines(&String::from_utf8_lossy(&b), n),
        Err(e) => format!("({}: {e})", path.display()),
    }
}

/// The directory's files, by name, with their sizes.
fn files(dir: &Path) -> Vec<FileRow> {
    let mut out: Vec<FileRow> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_type().map(|t| t.is_file()).unwrap_or(false))
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || name == crate::report::FILE {
                return None;
            }
            let len = e.metadata().map(|m| m.len()).unwrap_or(0);
            Some(FileRow {
                name,
                size: size(len),
            })
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

fn size(n: u64) -> String {
    match n {
        n if n < 10 * 1024 => format!("{n} B"),
        n if n < 10 * 1024 * 1024 => format!("{} KiB", n / 1024),
        n => format!("{} MiB", n / (1024 * 1024)),
    }
}

/// `2026-12-04 05:13:36 UTC` from milliseconds since the epoch.
fn utc(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil from days (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn console_lines_lose_escapes_and_line_ends() {
        assert_eq!(strip_controls("guest# \x1b[6n\r\n"), "guest# ");
        assert_eq!(
            strip_controls("\x1b[1;32mok\x1b[0m\tdone\r\n"),
            "ok    done"
        );
    }

    #[test]
    fn an_app_log_is_a_plain_name_here() {
        assert!(plain_name("node1-http.log"));
        for bad in ["../x", "/etc/passwd", "a/b", ".lock", ""] {
            assert!(!plain_name(bad), "{bad}");
        }
    }

    #[test]
    fn dates_are_civil_utc() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(1_796_361_216_558), "2026-12-04 05:13:36 UTC");
    }

    #[test]
    fn phases_go_to_their_lanes() {
        let e = |t: f64, name: &str, secs: f64| Entry {
            t,
            event: Event::Phase {
                name: name.into(),
                secs,
            },
        };
        let entries = vec![
            e(1.0, "nodes", 0.5),
            e(11.0, "boot", 9.0),
            e(12.0, "r2: boot", 10.0),
            e(15.0, "ping", 2.0),
        ];
        let lanes = lanes(&entries, 20.0, Some("r1"));
        let names: Vec<_> = lanes.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["bed", "r1", "r2", "test"]);
        assert_eq!(lanes[1].bars[0].start, 2.0);
        assert_eq!(lanes[3].bars[0].left, 65.0);
    }
}
