//! What the suite runner reports: each test's outcome, the JUnit XML that
//! CI systems show (GitLab's merge-request widget, Jenkins, GitHub
//! summaries), and the shards that split the suite across CI jobs.

use std::time::Duration;

use quick_junit::{NonSuccessKind, Property, Report, TestCase, TestCaseStatus, TestSuite};

/// How one test ended, and what it printed.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// The test's name (`forward-ipv4`).
    pub test: String,
    /// Whether it passed.
    pub passed: bool,
    /// How long it ran.
    pub seconds: f64,
    /// Its measured values (`key=value ...`), or the reason it failed.
    pub summary: String,
    /// Its artifacts directory (empty if it never got that far).
    pub artifacts: String,
    /// Its `STEP`, `VALUE`, `CHECK` and `ERROR` lines, in order.
    pub lines: Vec<String>,
}

impl Outcome {
    /// What a CI system should attach: the bed's `report.html` if it was
    /// written, else the artifacts directory.
    pub fn attachment(&self) -> String {
        let page = std::path::Path::new(&self.artifacts).join(alpy::report::FILE);
        if page.is_file() {
            page.display().to_string()
        } else {
            self.artifacts.clone()
        }
    }

    /// The bed's page, if the test got that far.
    pub fn report_page(&self) -> Option<std::path::PathBuf> {
        let page = std::path::Path::new(&self.artifacts).join(alpy::report::FILE);
        (!self.artifacts.is_empty() && page.is_file()).then_some(page)
    }

    /// The lines that say why it failed: failed checks and errors.
    pub fn failures(&self) -> Vec<&str> {
        self.lines
            .iter()
            .map(String::as_str)
            .filter(|l| l.starts_with("CHECK FAIL") || l.starts_with("ERROR "))
            .collect()
    }
}

/// Writes the suite's HTML page (see [`alpy::report::suite`]).
pub fn html(path: &std::path::Path, outcomes: &[Outcome]) -> Result<(), String> {
    let tests: Vec<alpy::report::suite::SuiteTest> = outcomes
        .iter()
        .map(|o| alpy::report::suite::SuiteTest {
            name: o.test.clone(),
            outcome: if o.passed { "passed" } else { "failed" }.into(),
            duration_s: o.seconds,
            first_failure: (!o.passed).then(|| {
                o.failures()
                    .first()
                    .map(|f| f.to_string())
                    .unwrap_or_else(|| o.summary.clone())
            }),
            report: o.report_page(),
        })
        .collect();
    alpy::report::suite::write(path, "rabbit", &tests).map_err(|e| e.to_string())
}

/// The JUnit XML of a suite run: one `testcase` per test with its duration;
/// a `failure` quoting the failed CHECK and ERROR lines; the test's lines in
/// `system-out`, ending with GitLab's `[[ATTACHMENT|path]]` for the
/// bed's `report.html` (the artifacts directory if there is none); the
/// artifacts directory is the suite's property `artifacts.<test>`. The document validates against Jenkins'
/// `junit-10.xsd` (which GitLab reads too): no per-testcase properties, and
/// no `skipped` count on the root element (this suite skips nothing).
pub fn junit_xml(suite: &str, outcomes: &[Outcome]) -> Result<String, String> {
    let mut ts = TestSuite::new(suite);
    for o in outcomes {
        let status = if o.passed {
            TestCaseStatus::success()
        } else {
            let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
            let why = o.failures();
            let message = match why.first() {
                Some(first) if why.len() > 1 => format!("{first} (and {} more)", why.len() - 1),
                Some(first) => first.to_string(),
                None => format!("{} failed: {}", o.test, o.summary),
            };
            s.set_message(message);
            s.set_description(if why.is_empty() {
                o.summary.clone()
            } else {
                why.join("\n")
            });
            s
        };
        let mut tc = TestCase::new(o.test.clone(), status);
        tc.set_classname("rabbit");
        tc.set_time(Duration::from_secs_f64(o.seconds.max(0.0)));
        let mut out = o.lines.join("\n");
        if !o.artifacts.is_empty() {
            ts.add_property(Property::new(
                format!("artifacts.{}", o.test),
                o.artifacts.clone(),
            ));
            out.push_str(&format!("\n[[ATTACHMENT|{}]]", o.attachment()));
        }
        tc.set_system_out(out);
        ts.add_test_case(tc);
    }
    let mut report = Report::new(suite);
    report.add_test_suite(ts);
    let xml = report
        .to_string()
        .map_err(|e| format!("cannot write JUnit XML: {e}"))?;
    // junit-10.xsd has no `skipped` on <testsuites>; quick-junit always
    // writes it (as 0 here: the suite skips nothing).
    Ok(xml.replacen(" skipped=\"0\" failures=", " failures=", 1))
}

/// A shard `K/N` (1-based K): which part of the suite a CI job runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// This shard, 1..=total.
    pub index: usize,
    /// How many shards.
    pub total: usize,
}

impl std::str::FromStr for Shard {
    type Err = String;

    fn from_str(s: &str) -> Result<Shard, String> {
        let bad = || format!("bad shard {s:?}: expected K/N with 1 <= K <= N, like 1/2");
        let (k, n) = s.split_once('/').ok_or_else(bad)?;
        let (index, total) = (k.parse().map_err(|_| bad())?, n.parse().map_err(|_| bad())?);
        if index == 0 || total == 0 || index > total {
            return Err(bad());
        }
        Ok(Shard { index, total })
    }
}

impl Shard {
    /// Whether test `name` (of all of `names`) belongs to this shard. Tests
    /// are dealt round-robin in name order, so every shard's share is
    /// stable and the shards together run every test exactly once.
    pub fn has(&self, name: &str, names: &[&str]) -> bool {
        let mut sorted: Vec<&str> = names.to_vec();
        sorted.sort_unstable();
        sorted
            .iter()
            .position(|n| *n == name)
            .is_some_and(|i| i % self.total == self.index - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(test: &str, passed: bool) -> Outcome {
        Outcome {
            test: test.into(),
            passed,
            seconds: 4.25,
            summary: "echo_replies=0".into(),
            artifacts: format!("/tmp/alpy/{test}-1"),
            lines: vec![
                "STEP Ping node1".into(),
                "VALUE echo_replies=0".into(),
                if passed {
                    "CHECK ok   3 replies"
                } else {
                    "CHECK FAIL node0 gets 3 echo replies"
                }
                .into(),
            ],
        }
    }

    #[test]
    fn junit_round_trips_with_counts_failures_and_attachments() {
        let xml = junit_xml(
            "rabbit",
            &[outcome("nat", true), outcome("forward-ipv4", false)],
        )
        .unwrap();
        let report = Report::deserialize_from_str(&xml).unwrap();
        let suite = &report.test_suites[0];
        assert_eq!((suite.tests, suite.failures), (2, 1));
        let failed = suite
            .test_cases
            .iter()
            .find(|c| c.name.as_str() == "forward-ipv4")
            .unwrap();
        match &failed.status {
            TestCaseStatus::NonSuccess { message, .. } => assert_eq!(
                message.as_deref(),
                Some("CHECK FAIL node0 gets 3 echo replies")
            ),
            other => panic!("{other:?}"),
        }
        assert!(suite
            .properties
            .iter()
            .any(|p| p.name.as_str() == "artifacts.forward-ipv4"
                && p.value.as_str() == "/tmp/alpy/forward-ipv4-1"));
        let out = failed.system_out.as_deref().unwrap();
        assert!(
            out.contains("STEP Ping node1")
                && out.contains("[[ATTACHMENT|/tmp/alpy/forward-ipv4-1]]")
        );
        assert_eq!(failed.time, Some(Duration::from_secs_f64(4.25)));
    }

    #[test]
    fn two_shards_run_every_test_exactly_once() {
        let names = [
            "rate-limit",
            "nat",
            "firewall",
            "forward-ipv4",
            "load-balancing",
        ];
        let shards: Vec<Shard> = ["1/2", "2/2"].iter().map(|s| s.parse().unwrap()).collect();
        for n in names {
            let owners = shards.iter().filter(|s| s.has(n, &names)).count();
            assert_eq!(owners, 1, "{n} runs in {owners} shards");
        }
        assert!("0/2".parse::<Shard>().is_err() && "3/2".parse::<Shard>().is_err());
    }
}
