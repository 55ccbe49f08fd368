//! The `alpy` command's subcommands, run as a user runs them.

mod common;

use std::process::Command;

/// Held by the tests that start beds or reap: a bed's start reaps dead
/// runs too, which would take `alpy gc`'s victim first.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn alpy(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_alpy"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run alpy");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn graph_draws_a_topology_and_names_bad_input() {
    let (code, dot, err) = alpy(&["graph", "topologies/forward.toml"]);
    assert_eq!(code, 0, "{err}");
    assert!(dot.contains(r#"dut -- n0 [label="nic0"]"#), "{dot}");
    assert!(dot.contains(r#"client\n192.168.1.2/24"#), "{dot}");
    assert!(dot.contains("app iperf"), "{dot}");
    let (code, _, err) = alpy(&["graph", "topologies/no-such.toml"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("alpy graph: error") && err.contains("no-such.toml"),
        "{err}"
    );
    let tmp = common::temp_dir("cli-graph");
    let bad = tmp.join("bad.toml");
    std::fs::write(
        &bad,
        "[dut]\nkernel = \"/proc/self/exe\"\n[[link]]\nadrs = []\n",
    )
    .unwrap();
    let (code, _, err) = alpy(&["graph", &bad.to_string_lossy()]);
    assert_eq!(code, 1);
    assert!(
        err.contains("bad.toml:4:1") && err.contains("unknown field `adrs`"),
        "{err}"
    );
    let (code, help, _) = alpy(&["graph", "--help"]);
    assert!(code == 0 && help.contains("Example: `alpy graph"), "{help}");
}

#[test]
fn gc_removes_a_dead_runs_containers_and_says_so() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let docker = common::docker();
    // A container whose owner is a process that has exited.
    let mut child = Command::new("true").spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();
    let mut spec = common::spec("alpy/node", "gc-victim", &["sleep", "100"]);
    spec.labels.insert(
        alpy::internal::run::LABEL_OWNER_PID.into(),
        dead.to_string(),
    );
    let c = alpy::net::Container::run(&docker, &spec, None).unwrap();
    let name = c.name().to_string();
    std::mem::forget(c); // gc removes it, not this guard
    let (code, out, err) = alpy(&["gc"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&format!("removed container {name}")), "{out}");
    assert!(out.contains("alpy gc: removed"), "{out}");
    let left = docker
        .list_by_label(alpy::internal::run::LABEL_RUN, None)
        .unwrap()
        .into_iter()
        .any(|s| {
            s.names
                .unwrap_or_default()
                .iter()
                .any(|n| n.trim_start_matches('/') == name)
        });
    assert!(!left, "{name} is still there after alpy gc");
}

/// `alpy report DIR` draws a bed's page from its files alone (a run whose
/// process is gone is marked killed), `--suite` one page for a root, and
/// bad input is named.
#[test]
fn report_draws_pages_from_artifacts_and_names_bad_input() {
    use alpy::journal::{Entry, Event};
    let root = common::temp_dir("cli-report");
    let bed = root.join("gone-0123456789");
    std::fs::create_dir_all(&bed).unwrap();
    let lines: Vec<String> = [
        Entry {
            t: 0.0,
            event: Event::Bed {
                name: "gone".into(),
                run: "0123456789".into(),
                test: "a_test".into(),
                host: "h".into(),
                alpy: "0".into(),
                // No such process: its owner died without closing it.
                pid: u32::MAX,
                start_unix_ms: 1_796_000_000_000,
            },
        },
        Entry {
            t: 1.5,
            event: Event::Phase {
                name: "boot".into(),
                secs: 1.0,
            },
        },
    ]
    .iter()
    .map(|e| serde_json::to_string(e).unwrap())
    .collect();
    std::fs::write(bed.join(alpy::journal::FILE), lines.join("\n") + "\n").unwrap();

    let (code, out, err) = alpy(&["report", &bed.to_string_lossy()]);
    assert_eq!(code, 0, "{err}");
    let html = std::fs::read_to_string(out.trim()).unwrap();
    assert!(html.contains(r#"id="outcome">KILLED"#), "{html}");
    assert!(html.contains(r#"data-phase="boot""#), "{html}");

    let page = root.join("suite.html");
    let (code, out, err) = alpy(&[
        "report",
        "--suite",
        &root.to_string_lossy(),
        "--html",
        &page.to_string_lossy(),
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), page.to_string_lossy());
    let suite = std::fs::read_to_string(&page).unwrap();
    assert!(
        // minijinja escapes '/' in attributes as &#x2f; (browsers read it back).
        suite.contains(r#"href="gone-0123456789&#x2f;report.html""#)
            && suite.contains(r#"data-outcome="killed""#),
        "{suite}"
    );

    let (code, _, err) = alpy(&["report", &root.to_string_lossy()]);
    assert_eq!(code, 1);
    assert!(
        err.contains("events.jsonl in") && err.contains("--suite"),
        "{err}"
    );
    let empty = common::temp_dir("cli-report-empty");
    let (code, _, err) = alpy(&["report", "--suite", &empty.to_string_lossy()]);
    assert_eq!(code, 1);
    assert!(err.contains("a bed directory"), "{err}");
}
