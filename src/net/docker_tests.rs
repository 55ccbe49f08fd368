//! Tests of the Docker facade's error mapping.

use super::*;

#[test]
fn errors_are_mapped_by_status() {
    let e = map_err(
        "inspect image x",
        bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            message: "whatever the engine says".into(),
        },
    );
    assert!(matches!(e, Error::NotFound { .. }), "{e}");
    let e = map_err(
        "start container y",
        bollard::errors::Error::DockerResponseServerError {
            status_code: 409,
            message: "conflict".into(),
        },
    );
    assert!(
        matches!(
            e,
            Error::Docker {
                status: Some(409),
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn a_lost_connection_says_the_engine_stopped_answering() {
    let e = map_err(
        "list containers",
        bollard::errors::Error::IOError {
            err: std::io::Error::from(std::io::ErrorKind::ConnectionRefused),
        },
    );
    let msg = e.to_string();
    assert!(
        msg.contains("stopped answering") && msg.contains("DOCKER_HOST"),
        "{msg}"
    );
    assert!(!msg.contains("hyper"), "{msg}");
}

#[test]
fn missing_image_hints_differ_for_users_images() {
    assert!(missing_image_hint("alpy/tools").contains("images/build"));
    let own = missing_image_hint("acme/router:1.2");
    assert!(
        own.contains("docker load") && !own.contains("images/build"),
        "{own}"
    );
}

/// A failing inspect must not keep `close()` from removing the container
/// (it used to mark the container closed first, so Drop skipped it too).
/// Needs the engine and `alpy/node` (scripts/setup).
#[test]
fn close_removes_the_container_even_when_inspect_fails() {
    use crate::net::container::Container;
    let docker = Docker::connect().expect("a Docker engine (run scripts/setup)");
    let run = crate::run::RunId::new();
    let spec = ContainerSpec {
        image: "alpy/node".into(),
        name: run.name("inspectfail"),
        cmd: ["sleep", "100"].iter().map(|s| s.to_string()).collect(),
        network_mode: Some("none".into()),
        labels: crate::run::owner_labels(&run),
        ..Default::default()
    };
    let c = Container::run(&docker, &spec, None).expect("start");
    let id = c.id().to_string();
    docker.fail_inspects(true);
    let r = c.close();
    docker.fail_inspects(false);
    assert!(r.is_err(), "the failed inspect is reported");
    let gone = docker
        .list_by_label(crate::run::LABEL_RUN, None)
        .unwrap()
        .iter()
        .all(|s| s.id.as_deref() != Some(id.as_str()));
    assert!(gone, "container {id} left behind after close()");
}
