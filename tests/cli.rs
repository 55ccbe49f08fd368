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
    spec.labels
        .insert(alpy::run::LABEL_OWNER_PID.into(), dead.to_string());
    let c = alpy::net::Container::run(&docker, &spec, None).unwrap();
    let name = c.name().to_string();
    std::mem::forget(c); // gc removes it, not this guard
    let (code, out, err) = alpy(&["gc"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&format!("removed container {name}")), "{out}");
    assert!(out.contains("alpy gc: removed"), "{out}");
    let left = docker
        .list_by_label(alpy::run::LABEL_RUN, None)
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
