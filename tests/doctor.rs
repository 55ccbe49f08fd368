//! `alpy doctor` against the real machine, and against broken variants of
//! it made through the environment.

use std::process::Command;

fn doctor(env: &[(&str, &str)]) -> (i32, String) {
    let mut c = Command::new(env!("CARGO_BIN_EXE_alpy"));
    c.arg("doctor");
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.output().expect("run alpy doctor");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// The line of check `name`, e.g. `ok    Docker engine   20.10 at ...`.
fn line<'a>(report: &'a str, name: &str) -> &'a str {
    report
        .lines()
        .find(|l| {
            l.get(6..)
                .is_some_and(|rest| rest.starts_with(&format!("{name} ")))
        })
        .unwrap_or_else(|| panic!("no check {name:?} in:\n{report}"))
}

#[test]
fn a_set_up_machine_is_ready_and_every_item_is_reported() {
    let (code, report) = doctor(&[]);
    assert_eq!(code, 0, "{report}");
    for name in [
        "user",
        "Docker engine",
        "/dev/net/tun",
        "KVM",
        "netem",
        "cache directory",
        "image alpy/node",
        "image alpy/tools",
        "test guest",
        "Rabbit",
        "qemu-system-x86_64",
        "qemu-img",
        "mmdebstrap",
    ] {
        let l = line(&report, name);
        assert!(!l.starts_with("FAIL"), "{l}");
    }
    assert!(line(&report, "Docker engine").contains(" at "), "{report}");
    // Under TCG it says so, loudly.
    let kvm = line(&report, "KVM");
    if kvm.starts_with("WARN") {
        assert!(kvm.contains("5x SLOWER"), "{kvm}");
    }
}

#[test]
fn an_unreachable_engine_fails_and_says_how_to_start_one() {
    let (code, report) = doctor(&[("DOCKER_HOST", "unix:///nonexistent/docker.sock")]);
    assert_eq!(code, 1, "{report}");
    let l = line(&report, "Docker engine");
    assert!(l.starts_with("FAIL"), "{l}");
    assert!(l.contains("/nonexistent/docker.sock"), "{l}");
    assert!(l.contains("scripts/setup starts dockerd"), "{l}");
    assert!(line(&report, "image alpy/node").contains("not checked"));
    assert!(report.contains("NOT ready"), "{report}");
}

#[test]
fn missing_commands_are_listed_with_their_packages() {
    // No PATH: every command is missing; each names the package to install.
    let (code, report) = doctor(&[("PATH", "/nonexistent")]);
    assert_eq!(code, 1, "{report}");
    assert!(line(&report, "qemu-img").starts_with("FAIL"));
    assert!(
        report.contains("fix: apt-get install qemu-utils (scripts/setup installs it)"),
        "{report}"
    );
    assert!(
        report.contains("fix: apt-get install mmdebstrap"),
        "{report}"
    );
}

#[test]
fn an_unwritable_cache_fails_with_its_fix() {
    let (code, report) = doctor(&[("ALPY_CACHE", "/proc/alpy-cache")]);
    assert_eq!(code, 1, "{report}");
    let l = line(&report, "cache directory");
    assert!(
        l.starts_with("FAIL") && l.contains("/proc/alpy-cache"),
        "{l}"
    );
    assert!(report.contains("fix: set ALPY_CACHE"), "{report}");
}

#[test]
fn json_output_has_every_check() {
    let out = Command::new(env!("CARGO_BIN_EXE_alpy"))
        .args(["doctor", "--json"])
        .output()
        .expect("run alpy doctor --json");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let checks = v["checks"].as_array().expect("checks");
    assert!(checks.iter().any(|c| c["name"] == "KVM"));
    assert!(checks
        .iter()
        .all(|c| ["ok", "warn", "fail"].contains(&c["state"].as_str().unwrap_or(""))));
}
