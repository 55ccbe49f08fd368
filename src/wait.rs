//! Waiting for a condition: retry until it holds or a deadline passes, and
//! say what the last attempt saw.

use std::any::Any;
use std::fmt::Display;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// Retries `f` until it returns `Ok` or `timeout` passes. Waits 50 ms after
/// the first failure, doubling up to 1 s ([`Wait::every`] for a fixed
/// interval). `f`'s error may be of any type that displays: the timeout
/// error names `what` and quotes the last failure. An [`Error::Closed`]
/// ends the wait at once: what went away will not come back.
///
/// ```
/// use std::time::Duration;
/// let mut tries = 0;
/// let v = alpy::wait::wait_until("the third try", Duration::from_secs(5), || {
///     tries += 1;
///     if tries < 3 { Err(format!("try {tries}")) } else { Ok(tries) }
/// }).unwrap();
/// assert_eq!(v, 3);
///
/// let e = alpy::wait::wait_until("never", Duration::from_millis(120), || -> Result<(), &str> {
///     Err("still down")
/// }).unwrap_err();
/// assert!(e.to_string().contains("still down"));
/// ```
pub fn wait_until<T, E: Display + 'static>(
    what: &str,
    timeout: Duration,
    f: impl FnMut() -> std::result::Result<T, E>,
) -> Result<T> {
    Wait::new(what, timeout).until(f)
}

/// A wait: what for, for how long, how often.
///
/// ```
/// use std::time::{Duration, Instant};
/// use alpy::wait::Wait;
/// // Measuring convergence: try every 100 ms, so the time it took is
/// // known to 100 ms (a backing-off wait can overshoot by a second).
/// let t0 = Instant::now();
/// Wait::new("the route to go", Duration::from_secs(5))
///     .every(Duration::from_millis(100))
///     .until(|| if t0.elapsed() > Duration::from_millis(300) { Ok(()) } else { Err("still there") })
///     .unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct Wait {
    what: String,
    timeout: Duration,
    every: Option<Duration>,
}

impl Wait {
    /// A wait for `what`, at most `timeout`, backing off (50 ms doubling
    /// to 1 s) between tries.
    pub fn new(what: impl Into<String>, timeout: Duration) -> Wait {
        Wait {
            what: what.into(),
            timeout,
            every: None,
        }
    }

    /// Try every `interval` (from the start of one try to the next)
    /// instead of backing off.
    pub fn every(mut self, interval: Duration) -> Wait {
        self.every = Some(interval);
        self
    }

    /// Retries `f` until it returns `Ok` (its value) or the timeout
    /// passes ([`Error::Timeout`], quoting the last failure).
    pub fn until<T, E: Display + 'static>(
        &self,
        mut f: impl FnMut() -> std::result::Result<T, E>,
    ) -> Result<T> {
        let deadline = Instant::now() + self.timeout;
        let mut pause = Duration::from_millis(50);
        loop {
            let tried = Instant::now();
            let last = match f() {
                Ok(v) => return Ok(v),
                Err(e) => e,
            };
            let as_alpy = (&last as &dyn Any).downcast_ref::<Error>();
            if let Some(Error::Closed(what)) = as_alpy {
                return Err(Error::Closed(what.clone()));
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(Error::Timeout {
                    what: self.what.clone(),
                    timeout: self.timeout,
                    tail: last_attempt(as_alpy, &last),
                });
            }
            let nap = match self.every {
                Some(interval) => interval.saturating_sub(now - tried),
                None => {
                    let p = pause;
                    pause = (pause * 2).min(Duration::from_secs(1));
                    p
                }
            };
            std::thread::sleep(nap.min(deadline - now));
        }
    }
}

/// What the timeout error says of the last try: a failed command's status
/// and output (its name is in the wait's `what` already), else the error.
fn last_attempt(as_alpy: Option<&Error>, last: &dyn Display) -> String {
    match as_alpy {
        Some(Error::CommandFailed { status, output, .. }) => {
            format!(
                "last attempt: {status}; last output:\n{}",
                output.trim_end()
            )
        }
        _ => format!("last attempt: {last}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fixed_interval_tries_often_and_backing_off_does_not() {
        let tries = |w: Wait| {
            let (t0, mut n) = (Instant::now(), 0);
            w.until(|| {
                n += 1;
                if t0.elapsed() >= Duration::from_millis(1500) {
                    Ok(())
                } else {
                    Err("not yet")
                }
            })
            .unwrap();
            n
        };
        let fixed =
            tries(Wait::new("a", Duration::from_secs(10)).every(Duration::from_millis(100)));
        let backing = tries(Wait::new("b", Duration::from_secs(10)));
        assert!(fixed >= 10, "{fixed} tries at 100 ms in 1.5 s");
        assert!(backing <= 7, "{backing} tries backing off in 1.5 s");
    }

    #[test]
    fn a_failed_command_is_quoted_once() {
        let e = wait_until(
            "`ping x` to succeed on node client",
            Duration::ZERO,
            || -> Result<()> {
                Err(Error::CommandFailed {
                    what: "`ping x` on node client".into(),
                    status: "exit code 2".into(),
                    output: "ping: connect: Network is unreachable\n".into(),
                })
            },
        )
        .unwrap_err()
        .to_string();
        assert_eq!(e.matches("ping x").count(), 1, "{e}");
        assert!(
            e.contains("exit code 2") && e.contains("unreachable"),
            "{e}"
        );
    }

    #[test]
    fn closed_ends_the_wait_at_once() {
        let mut n = 0;
        let e = wait_until("x", Duration::from_secs(10), || -> Result<()> {
            n += 1;
            Err(Error::Closed("the bed".into()))
        })
        .unwrap_err();
        assert!(matches!(e, Error::Closed(_)) && n == 1);
    }
}
