//! Helpers every test crate of the workspace shares (the library's tests
//! and the lab's, which include this file): temporary directories, the
//! test guest, child processes, and skips that say so.

use std::path::{Path, PathBuf};

use alpy::internal::run::RunId;

/// A temporary directory, removed with everything in it when dropped
/// (a failing test leaves nothing behind).
pub struct TempDir(PathBuf);

impl TempDir {
    /// Its path.
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Its path, to be removed by whoever takes it.
    pub fn keep(mut self) -> PathBuf {
        std::mem::take(&mut self.0)
    }
}

impl std::ops::Deref for TempDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<Path> for TempDir {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl From<&TempDir> for PathBuf {
    fn from(d: &TempDir) -> PathBuf {
        d.0.clone()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        // Empty once kept.
        if !self.0.as_os_str().is_empty() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// A temporary directory anyone can use (tests may run as another user),
/// removed when the guard drops.
pub fn temp_dir(name: &str) -> TempDir {
    let dir = std::env::temp_dir().join(format!("alpy-test-{name}-{}", RunId::new()));
    std::fs::create_dir_all(&dir).expect("create temp dir");
    TempDir(dir)
}

/// The test guest built by `images/guest/build`: (kernel, initrd), from
/// alpy's cache (`ALPY_CACHE`, else `XDG_CACHE_HOME`, else `~/.cache`).
pub fn guest() -> (PathBuf, PathBuf) {
    let cache = alpy::internal::cache::cache_dir().expect("a cache directory");
    let dir = cache.join("guest");
    let k = dir.join("vmlinuz");
    let i = dir.join("initrd.img");
    assert!(
        k.is_file() && i.is_file(),
        "test guest missing in {}: run scripts/setup",
        dir.display()
    );
    (k, i)
}

/// Set in CI (`.ci/run`): every test must run, so a skip fails.
pub const NO_SKIPS: &str = "ALPY_NO_SKIPS";

/// Says `skipped: <reason>` on standard error, or fails the test when
/// [`NO_SKIPS`] is set (a run that expects every test to run).
pub fn skip(reason: &str) {
    assert!(
        std::env::var_os(NO_SKIPS).is_none(),
        "skipped, but this run expects every test to run ({NO_SKIPS} is set): {reason}"
    );
    say(&format!("skipped: {reason}"));
}

/// Writes a line to standard error past the test harness's capture, so a
/// skip shows even when the test passes.
fn say(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// Whether this process is root; if not, [`skip`]s with `why` (what the
/// test needs root for).
pub fn needs_root(why: &str) -> bool {
    let root = nix::unistd::geteuid().is_root();
    if !root {
        skip(&format!("needs root to {why}"));
    }
    root
}

/// Runs this test binary again as a child running only `test` (an
/// `#[ignore]`d child role included), with `env`.
pub fn child(test: &str, env: &[(&str, &str)]) -> std::process::Command {
    let mut c = std::process::Command::new(std::env::current_exe().unwrap());
    c.args([
        "--exact",
        test,
        "--include-ignored",
        "--nocapture",
        "--test-threads=1",
    ]);
    for (k, v) in env {
        c.env(k, v);
    }
    c
}

/// The value of `var` in a child role (see [`child`]); `None`, said as a
/// skip that does not fail, when the test runs on its own (`cargo test --
/// --include-ignored`) rather than as `parent`'s child.
pub fn child_env(var: &str, parent: &str) -> Option<String> {
    let v = std::env::var(var).ok();
    if v.is_none() {
        say(&format!(
            "skipped: a child role of {parent}, which runs it with {var} set"
        ));
    }
    v
}
