//! How a bed's test ended, decided when the bed is taken down: the
//! journal's result and `report.html` (see [`crate::report`]).

use std::time::Instant;

use crate::error::Error;
use crate::journal::Outcome;
use crate::TestBed;

/// How a bed is being taken down.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Closing {
    /// By [`TestBed::close`].
    Close,
    /// By `Drop`: a panic, or an early return.
    Drop,
    /// After a failed start, which says why.
    Abandon(String),
}

impl TestBed {
    /// Writes the journal's result and `report.html`; a failed bed's
    /// report is named on standard output as a JUnit attachment (GitLab
    /// shows it in the merge request).
    pub(crate) fn finish_report(&mut self, how: &Closing, close_error: Option<&Error>) {
        let Some(journal) = self.journal.take() else {
            return;
        };
        let recorded = journal.first_failure();
        let (outcome, failure) = match (how, recorded) {
            (Closing::Abandon(why), _) => (Outcome::Failed, Some(format!("start: {why}"))),
            (_, Some(f)) => (Outcome::Failed, Some(f)),
            (Closing::Drop, None) if std::thread::panicking() => (Outcome::Failed, None),
            (Closing::Drop, None) => (
                Outcome::Failed,
                Some("the bed was dropped without close() (the test returned early)".into()),
            ),
            (Closing::Close, None) => match close_error {
                Some(e) => (Outcome::Failed, Some(format!("closing the bed: {e}"))),
                None => (Outcome::Passed, None),
            },
        };
        if let Err(e) = journal.close(outcome, failure) {
            log::warn!(target: "alpy::testbed", "{e}");
        }
        let t0 = Instant::now();
        match crate::report::write(&self.artifacts) {
            Ok(page) => {
                log::debug!(target: "alpy::testbed", "wrote {} in {:.1} ms", page.display(), t0.elapsed().as_secs_f64() * 1e3);
                if outcome != Outcome::Passed {
                    println!("[[ATTACHMENT|{}]]", page.display());
                }
            }
            Err(e) => log::warn!(target: "alpy::testbed", "cannot write the report: {e}"),
        }
    }
}
