//! Waiting for a condition: retry until it holds or a deadline passes, and
//! say what the last attempt saw.

use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// Retries `f` until it returns `Ok` or `timeout` passes. Waits 50 ms after
/// the first failure, doubling up to 1 s. The timeout error names `what` and
/// quotes the last failure. An [`Error::Closed`] ends the wait at once:
/// what went away will not come back.
///
/// ```
/// use std::time::Duration;
/// let mut tries = 0;
/// let v = alpy::wait::wait_until("the third try", Duration::from_secs(5), || {
///     tries += 1;
///     if tries < 3 { Err(alpy::Error::Net(format!("try {tries}"))) } else { Ok(tries) }
/// }).unwrap();
/// assert_eq!(v, 3);
///
/// let e = alpy::wait::wait_until("never", Duration::from_millis(120), || -> alpy::Result<()> {
///     Err(alpy::Error::Net("still down".into()))
/// }).unwrap_err();
/// assert!(e.to_string().contains("still down"));
/// ```
pub fn wait_until<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Result<T>) -> Result<T> {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(50);
    loop {
        let last = match f() {
            Ok(v) => return Ok(v),
            Err(e @ Error::Closed(_)) => return Err(e),
            Err(e) => e,
        };
        let now = Instant::now();
        if now >= deadline {
            return Err(Error::Timeout {
                what: what.to_string(),
                timeout,
                tail: format!("last attempt: {last}"),
            });
        }
        std::thread::sleep(pause.min(deadline - now));
        pause = (pause * 2).min(Duration::from_secs(1));
    }
}
