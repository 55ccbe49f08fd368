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
