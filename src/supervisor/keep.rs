//! Keep on failure: with `ALPY_KEEP=on-failure`, a test bed dropped without
//! `close()` (a test that failed or panicked) stays up for debugging; with
//! `ALPY_KEEP=always` every bed does, closed or not. It prints the `alpy`
//! commands that reach it, answers them (through the bed registry, like a
//! bed stood up by `alpy up`), and is taken down by `alpy down ID` or when
//! `ALPY_KEEP_TIMEOUT` seconds (default 1800) have passed. In CI
//! (`CI=true`) it never waits, and says so.

use crate::settings::Settings;
use std::io::Write;
use std::time::Instant;

use crate::bed::testbed::TestBed;
use crate::supervisor::registry::{bed_dir, BedInfo, Published};

/// Prints to stderr without ever panicking (this runs in Drop, maybe
/// during unwinding, maybe with nobody reading stderr any more).
macro_rules! say {
    ($($t:tt)*) => {{
        let _ = writeln!(std::io::stderr(), $($t)*);
    }};
}

/// Whether a bed being torn down should be kept: `failed` when it is
/// dropped unclosed.
pub fn wanted(failed: bool, settings: &Settings) -> bool {
    let mode = settings.keep();
    let want = match mode {
        "always" => true,
        "on-failure" => failed,
        _ => false,
    };
    if let (true, Some(ci)) = (want, settings.ci()) {
        say!("alpy: ALPY_KEEP={mode} is ignored in CI (CI={ci}): not waiting");
        return false;
    }
    want
}

/// Publishes the bed, prints how to reach it, and waits for `alpy down`
/// or the timeout. Errors are printed: keeping is best effort. Returns the
/// registry entry, to withdraw once the bed is torn down (so that
/// `alpy down` returns when nothing is left). A bed on a lab server is not
/// kept: its lab is destroyed with it.
pub fn keep(bed: &mut TestBed) -> Option<Published> {
    if bed.is_remote() {
        say!(
            "alpy: test bed {} runs on a lab server: not kept (its lab goes down with it)",
            bed.name()
        );
        return None;
    }
    let id = bed.run_id().to_string();
    let dir = match bed_dir(&id) {
        Ok(d) => d,
        Err(e) => {
            say!("alpy: cannot keep test bed {}: {e}", bed.name());
            return None;
        }
    };
    let mut info = BedInfo::of(bed, &id, Default::default());
    info.state = "kept".into();
    let mut published = match Published::new(&dir, bed, &info) {
        Ok(p) => p,
        Err(e) => {
            say!("alpy: cannot keep test bed {}: {e}", bed.name());
            return None;
        }
    };
    let wait = bed.settings.keep_timeout();
    say!(
        "alpy: keeping test bed {} ({id}) for debugging, for {:.0} s or until `alpy down {id}`:",
        bed.name(),
        wait.as_secs_f64()
    );
    say!("  alpy console {id}   (detach: Ctrl-])");
    for (node, _) in &info.nodes {
        say!("  alpy exec {id} {node} -- ip addr");
        say!("  alpy capture {id} {node} | tcpdump -n -r -");
    }
    say!("  alpy qmp {id} query-status");
    say!("  alpy down {id}");
    say!("  artifacts: {}", info.artifacts.display());
    let mut control = crate::supervisor::control::Control::new();
    let served = published.serve(Some(Instant::now() + wait), |request| {
        control.answer(bed, request)
    });
    if let Err(e) = control.close() {
        say!(
            "alpy: stopping the apps started on test bed {}: {e}",
            bed.name()
        );
    }
    match served {
        Ok(Some(mut down)) => {
            let done = crate::supervisor::protocol::Reply::Ok {
                value: serde_json::Value::Null,
            };
            let _ = writeln!(down, "{}", crate::supervisor::registry::json_line(&done));
            say!("alpy: `alpy down {id}`: closing test bed {}", bed.name());
        }
        Ok(None) => say!(
            "alpy: ALPY_KEEP_TIMEOUT ran out: closing test bed {}",
            bed.name()
        ),
        Err(e) => say!("alpy: keeping test bed {}: {e}", bed.name()),
    }
    published.unshare_console();
    Some(published)
}
