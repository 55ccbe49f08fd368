//! What a Rabbit test prints: its steps as it goes, then one
//! `RESULT <test> PASS|FAIL <measured values>` line and the artifacts path,
//! which the suite runner reads.

use std::fmt::Display;

/// Collects a test's measured values and checks.
pub struct Report {
    test: String,
    values: Vec<(String, String)>,
    failures: Vec<String>,
}

impl Report {
    /// A report for `test`.
    pub fn new(test: &str) -> Report {
        alpy::logging::init();
        println!("TEST {test}");
        Report {
            test: test.to_string(),
            values: Vec::new(),
            failures: Vec::new(),
        }
    }

    /// Prints a step.
    pub fn step(&self, what: &str) {
        println!("STEP {what}");
    }

    /// Records a measured value.
    pub fn value(&mut self, name: &str, v: impl Display) {
        println!("VALUE {name}={v}");
        self.values.push((name.to_string(), v.to_string()));
    }

    /// Records a check; a false one fails the test.
    pub fn check(&mut self, ok: bool, what: &str) {
        println!("CHECK {} {what}", if ok { "ok  " } else { "FAIL" });
        alpy::journal::check(ok, what);
        if !ok {
            self.failures.push(what.to_string());
        }
    }

    /// Records an error that ended the test.
    pub fn error(&mut self, e: &dyn Display) {
        println!("ERROR {e}");
        alpy::journal::check(false, &e.to_string());
        self.failures.push(e.to_string());
    }

    /// Prints the result line and the artifacts path; panics (failing the
    /// cargo test) if any check failed.
    pub fn finish(self, artifacts: Option<&std::path::Path>) {
        let values: Vec<String> = self
            .values
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let verdict = if self.failures.is_empty() {
            "PASS"
        } else {
            "FAIL"
        };
        println!("RESULT {} {verdict} {}", self.test, values.join(" "));
        if let Some(a) = artifacts {
            println!("ARTIFACTS {}", a.display());
        }
        assert!(
            self.failures.is_empty(),
            "{} failed: {}",
            self.test,
            self.failures.join("; ")
        );
    }
}

/// Runs a Rabbit test: starts Rabbit with `links` links, runs `body`,
/// powers Rabbit off and closes everything, then prints the verdict (and
/// fails the cargo test on any failed check or error).
pub fn run(
    test: &str,
    links: usize,
    body: impl FnOnce(&mut crate::Rabbit, &mut Report) -> alpy::Result<()>,
) {
    let report = Report::new(test);
    report.step(&format!("Start Rabbit with {links} links"));
    run_with(report, crate::Rabbit::start(test, links), body)
}

/// [`run`] for two Rabbits in a chain ([`crate::Rabbit::start_chain`]).
pub fn run_chain(
    test: &str,
    body: impl FnOnce(&mut crate::Rabbit, &mut Report) -> alpy::Result<()>,
) {
    let report = Report::new(test);
    report.step("Start two Rabbits in a chain");
    run_with(report, crate::Rabbit::start_chain(test), body)
}

fn run_with(
    mut report: Report,
    started: alpy::Result<crate::Rabbit>,
    body: impl FnOnce(&mut crate::Rabbit, &mut Report) -> alpy::Result<()>,
) {
    let mut rabbit = match started {
        Ok(r) => r,
        Err(e) => {
            report.error(&e);
            return report.finish(None);
        }
    };
    let artifacts = rabbit.bed().artifacts_dir().to_path_buf();
    if let Err(e) = body(&mut rabbit, &mut report) {
        report.error(&e);
    }
    report.step("Power Rabbit off and close the test bed");
    if let Err(e) = rabbit.finish() {
        report.error(&e);
    }
    report.finish(Some(&artifacts));
}
