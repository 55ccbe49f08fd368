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
