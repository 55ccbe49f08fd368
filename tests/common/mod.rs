//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::sync::Arc;

use alpy::docker::{ContainerSpec, Docker};
use alpy::run::{owner_labels, RunId};

/// A Docker client; tests need a running engine (`scripts/setup` starts one).
pub fn docker() -> Arc<Docker> {
    alpy::logging::init();
    Docker::connect().expect("a Docker engine (run scripts/setup)")
}

/// A spec for a container of a fresh run, labelled like alpy's own.
pub fn spec(image: &str, suffix: &str, cmd: &[&str]) -> ContainerSpec {
    let run = RunId::new();
    ContainerSpec {
        image: image.into(),
        name: run.name(suffix),
        cmd: cmd.iter().map(|s| s.to_string()).collect(),
        network_mode: Some("none".into()),
        labels: owner_labels(&run),
        ..Default::default()
    }
}

/// The test guest built by `images/guest/build`: (kernel, initrd).
pub fn guest() -> (std::path::PathBuf, std::path::PathBuf) {
    let cache = std::env::var_os("ALPY_CACHE")
        .map(std::path::PathBuf::from)
        .or_else(|| {
            std::env::var_os("XDG_CACHE_HOME").map(|x| std::path::PathBuf::from(x).join("alpy"))
        })
        .or_else(|| {
            std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".cache/alpy"))
        })
        .expect("HOME or ALPY_CACHE");
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

/// The prompt of the test guest's shell.
pub const GUEST_PROMPT: &str = "guest# ";

/// A fresh artifacts directory for one test.
pub fn artifacts(name: &str) -> std::path::PathBuf {
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("alpy-tests")
        .join(format!("{name}-{}", RunId::new()));
    std::fs::create_dir_all(&dir).expect("create artifacts dir");
    dir
}
