//! `scripts/setup` fails with a clear message, not shell noise, when it
//! cannot start the Docker engine.

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
