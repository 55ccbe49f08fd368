//! Small helpers that every wing uses: shell quoting, log tails, signal
//! names, mutex locking that survives a panicked holder, and thread joins
//! that turn a panic into an error.

use std::sync::{Mutex, MutexGuard};

use crate::error::{Error, Result};

/// Quotes `s` for a POSIX shell. Plain words (letters, digits, `-_./=:,+@%`)
/// stay as they are, so logged command lines read naturally.
///
/// ```
/// assert_eq!(alpy::internal::util::shell_quote("eth0"), "eth0");
/// assert_eq!(alpy::internal::util::shell_quote("it's"), r#"'it'\''s'"#);
/// assert_eq!(alpy::internal::util::shell_quote(""), "''");
/// ```
pub fn shell_quote(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c));
    if plain {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// The last `n` lines of `text`.
///
/// ```
/// assert_eq!(alpy::internal::util::tail_lines("a\nb\nc\n", 2), "b\nc");
/// ```
pub fn tail_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// `SIGKILL` for 9, or `signal 77` for a number with no name.
pub fn signal_name(signal: i32) -> String {
    match nix::sys::signal::Signal::try_from(signal) {
        Ok(s) => s.as_str().to_string(),
        Err(_) => format!("signal {signal}"),
    }
}

/// Locks `m`, taking the data even if a holder panicked: the data here are
/// buffers and statistics, still meaningful after a panic elsewhere.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Joins a scoped thread whose body returns a `Result`; a panic becomes
/// [`Error::Internal`] naming `what`.
pub fn join_scoped<T>(h: std::thread::ScopedJoinHandle<'_, Result<T>>, what: &str) -> Result<T> {
    h.join().unwrap_or_else(|p| Err(panicked(what, p)))
}

/// Joins a thread whose body returns a `Result`; a panic becomes
/// [`Error::Internal`] naming `what`.
pub fn join<T>(h: std::thread::JoinHandle<Result<T>>, what: &str) -> Result<T> {
    h.join().unwrap_or_else(|p| Err(panicked(what, p)))
}

/// The error for a thread that panicked with `payload`.
pub fn panicked(what: &str, payload: Box<dyn std::any::Any + Send>) -> Error {
    let msg = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".into());
    Error::Internal(format!("{what} panicked: {msg}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_have_names() {
        assert_eq!(signal_name(9), "SIGKILL");
        assert_eq!(signal_name(15), "SIGTERM");
        assert_eq!(signal_name(77), "signal 77");
    }

    #[test]
    fn a_panic_becomes_an_internal_error() {
        let r: Result<()> = std::thread::scope(|s| {
            join_scoped(s.spawn(|| -> Result<()> { panic!("boom") }), "worker")
        });
        let e = r.unwrap_err();
        assert!(matches!(e, Error::Internal(_)));
        assert_eq!(e.to_string(), "internal error: worker panicked: boom");
    }
}
