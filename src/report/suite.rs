//! A suite's page: every test with its result, duration (and a bar), the
//! first failure of a failed one, and a link to its bed's `report.html`.
//!
//! `rabbit-suite --html PATH` writes one from its tests; `alpy report
//! --suite ROOT` writes one from every bed directory under an artifacts
//! root (after `cargo nextest run`, say).
//!
//! ```no_run
//! # fn main() -> alpy::Result<()> {
//! use alpy::report::suite::{write, SuiteTest};
//! let tests = vec![SuiteTest {
//!     name: "forward".into(),
//!     outcome: "passed".into(),
//!     duration_s: 2.7,
//!     first_failure: None,
//!     report: Some("target/alpy/forward-1/report.html".into()),
//! }];
//! write(std::path::Path::new("suite.html"), "rabbit", &tests)?;
//! # Ok(()) }
//! ```

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::{Error, Result};

/// A test of the suite.
#[derive(Debug, Clone, Serialize)]
pub struct SuiteTest {
    /// Its name.
    pub name: String,
    /// `passed`, `failed`, `killed`, `running`, or `unreadable` (its
    /// journal could not be read: `first_failure` says why).
    pub outcome: String,
    /// How long it took.
    pub duration_s: f64,
    /// What failed first, for a failed test.
    pub first_failure: Option<String>,
    /// Its bed's page, if it has one.
    pub report: Option<PathBuf>,
}

#[derive(Serialize)]
struct Page<'a> {
    title: &'a str,
    passed: usize,
    failed: usize,
    total_s: f64,
    tests: Vec<Row<'a>>,
}

#[derive(Serialize)]
struct Row<'a> {
    t: &'a SuiteTest,
    href: Option<String>,
    bar: f64,
}

/// Writes the suite page `path` titled `title`; links to the beds' pages
/// are relative to `path`'s directory where they can be.
pub fn write(path: &Path, title: &str, tests: &[SuiteTest]) -> Result<()> {
    let longest = tests
        .iter()
        .map(|t| t.duration_s)
        .fold(0.0, f64::max)
        .max(0.001);
    let base = path.parent().unwrap_or(Path::new("."));
    let page = Page {
        title,
        passed: tests.iter().filter(|t| t.outcome == "passed").count(),
        failed: tests.iter().filter(|t| t.outcome != "passed").count(),
        total_s: tests.iter().map(|t| t.duration_s).sum(),
        tests: tests
            .iter()
            .map(|t| Row {
                t,
                href: t.report.as_ref().map(|r| relative(base, r)),
                bar: (t.duration_s / longest * 100.0 * 10.0).round() / 10.0,
            })
            .collect(),
    };
    let html = super::render("suite.html", include_str!("suite.html"), &page)?;
    std::fs::write(path, html).map_err(|e| Error::io(format!("write {}", path.display()), e))
}

/// The tests of a root: one per bed directory with a journal, its test
/// named after the bed (and the test's thread, when they differ), its
/// page (re)written; a bed still running is listed without a page.
pub fn from_root(root: &Path) -> Result<Vec<SuiteTest>> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root)
        .map_err(|e| Error::io(format!("read {}", root.display()), e))?
        .flatten()
        .map(|e| e.path())
        .filter(|d| d.join(crate::journal::FILE).is_file())
        .collect();
    dirs.sort();
    let mut tests = Vec::new();
    for dir in dirs {
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        // A running bed's directory is its own: its page comes at close.
        // One unreadable bed does not cost the others their rows.
        let read = if super::running(&dir) {
            super::model::BedReport::load(&dir).map(|r| (None, r))
        } else {
            super::write_report(&dir).map(|(page, r)| (Some(page), r))
        };
        let t = match read {
            Ok((report, r)) => SuiteTest {
                name: if r.test != r.name && r.test != "main" {
                    format!("{} ({name})", r.test)
                } else {
                    name
                },
                outcome: r.outcome,
                duration_s: r.duration_s,
                first_failure: r.first_failure,
                report,
            },
            Err(e) => SuiteTest {
                name,
                outcome: "unreadable".into(),
                duration_s: 0.0,
                first_failure: Some(e.to_string()),
                report: None,
            },
        };
        tests.push(t);
    }
    Ok(tests)
}

/// `target` relative to `base` when it lies below it, else absolute.
fn relative(base: &Path, target: &Path) -> String {
    let abs = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    let (b, t) = (abs(base), abs(target));
    match t.strip_prefix(&b) {
        Ok(rel) => rel.display().to_string(),
        Err(_) => t.display().to_string(),
    }
}
