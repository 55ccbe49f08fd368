//! `scripts/setup` fails with a clear message, not shell noise, when it
//! cannot start the Docker engine.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

fn stub(dir: &std::path::Path, name: &str, body: &str) {
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn dockerd_that_cannot_start_gives_a_clear_error() {
    let stubs = std::env::temp_dir().join(format!("alpy-setup-stubs-{}", std::process::id()));
    std::fs::create_dir_all(&stubs).unwrap();
    // No engine answers, and the engine refuses to start.
    stub(&stubs, "docker", "exit 1");
    stub(
        &stubs,
        "dockerd",
        "echo 'failed to start daemon: stub engine is broken' >&2; exit 1",
    );
    let log = stubs.join("dockerd.log");
    let path = format!(
        "{}:{}",
        stubs.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/setup"))
        .env("PATH", path)
        .env("ALPY_DOCKERD_LOG", &log)
        .env_remove("DOCKER_HOST")
        .output()
        .expect("run scripts/setup");
    let stderr = String::from_utf8_lossy(&out.stderr);
    std::fs::remove_dir_all(&stubs).ok();
    assert!(!out.status.success(), "setup must fail:\n{stderr}");
    if nix::unistd::geteuid().is_root() {
        assert!(
            stderr.contains("alpy setup: error: dockerd exited while starting"),
            "{stderr}"
        );
        assert!(stderr.contains("stub engine is broken"), "{stderr}");
    } else {
        assert!(stderr.contains("needs root"), "{stderr}");
    }
}

/// Runs scripts/setup against a requirements list of the test's own (it
/// stops before the engine: the install step fails).
fn setup_with_requirements(name: &str, list: &str) -> (bool, String) {
    let dir = std::env::temp_dir().join(format!("alpy-setup-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let reqs = dir.join("requirements");
    std::fs::write(&reqs, list).unwrap();
    let out = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/setup"))
        .env("ALPY_REQUIREMENTS", &reqs)
        .env("ALPY_APT_LOG", dir.join("apt.log"))
        // The reason must come from the first try; no network round trip.
        .env("ALPY_NO_APT_UPDATE", "1")
        .output()
        .expect("run scripts/setup");
    std::fs::remove_dir_all(&dir).ok();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_missing_command_is_named_with_its_package_and_apts_reason() {
    let (ok, err) = setup_with_requirements(
        "missing",
        "sh dash a shell\nalpy-no-such-command alpy-no-such-package testing\n",
    );
    assert!(!ok, "setup must fail:\n{err}");
    assert!(err.contains("Missing: alpy-no-such-command\n"), "{err}");
    if nix::unistd::geteuid().is_root() {
        assert!(
            err.contains(
                "alpy setup: error: alpy-no-such-command is missing (Debian package alpy-no-such-package)"
            ),
            "{err}"
        );
        assert!(
            err.contains("apt: E: Unable to locate package alpy-no-such-package"),
            "{err}"
        );
    } else {
        assert!(
            err.contains("installing alpy-no-such-package needs root"),
            "{err}"
        );
    }
    assert!(!err.contains("run scripts/setup"), "{err}");
}

#[test]
fn a_missing_crate_tool_is_built_with_cargo_and_named_if_that_fails() {
    // A crate the registry does not have: cargo install fails, and set-up
    // says which tool and what it tried, before any apt-get.
    let (ok, err) = setup_with_requirements(
        "crate",
        "alpy-no-such-tool crate:alpy-no-such-crate-9f3e@0.0.1 testing\n",
    );
    assert!(!ok, "setup must fail:\n{err}");
    assert!(
        err.contains("Building alpy-no-such-crate-9f3e 0.0.1 (cargo install"),
        "{err}"
    );
    assert!(
        err.contains("cargo install alpy-no-such-crate-9f3e 0.0.1 failed"),
        "{err}"
    );
    assert!(!err.contains("apt-get install failed"), "{err}");
}

#[test]
fn an_installed_package_without_the_command_is_named() {
    if !common::needs_root("install packages") {
        return;
    }
    // hostname is installed (it is essential) but has no such command:
    // apt succeeds, and only the check after it can tell.
    let (ok, err) = setup_with_requirements("lacks", "alpy-no-such-command hostname testing\n");
    assert!(!ok, "setup must fail:\n{err}");
    assert!(
        err.contains("alpy-no-such-command is missing (Debian package hostname)"),
        "{err}"
    );
    assert!(
        err.contains("is installed but provides no alpy-no-such-command"),
        "{err}"
    );
}

/// `step` from `images/lib.sh` under `set -e`, as every script runs it:
/// returns (stdout, stderr, exit code).
fn step_under_errexit(script: &str) -> (String, String, Option<i32>) {
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!("set -e; . images/lib.sh; {script}"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run bash");
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        out.status.code(),
    )
}

#[test]
fn a_failing_step_says_so_and_stops_the_script() {
    let (stdout, stderr, code) = step_under_errexit(
        "halfway() { false; echo not-reached; }; step 'Half' halfway; echo after",
    );
    assert!(stderr.contains("Half... failed (exit 1)"), "{stderr}");
    assert_eq!(code, Some(1), "the script must stop with the step's code");
    assert!(
        !stdout.contains("not-reached"),
        "a step stops at its first failure: {stdout}"
    );
    assert!(!stdout.contains("after"), "the script must stop: {stdout}");
    let (_, stderr, code) = step_under_errexit("step 'Three' sh -c 'exit 3'");
    assert!(stderr.contains("Three... failed (exit 3)"), "{stderr}");
    assert_eq!(code, Some(3));
    let (stdout, stderr, code) = step_under_errexit("step 'Fine' true; echo after");
    assert!(stderr.contains("Fine... done ("), "{stderr}");
    assert_eq!((stdout.trim(), code), ("after", Some(0)));
}
