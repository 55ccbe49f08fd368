//! The Docker images built by `images/build` hold working tools.

mod common;

use std::time::Duration;

use alpy::net::Container;

fn run_in(image: &str, script: &str) -> String {
    let docker = common::docker();
    let spec = common::spec(image, "imgtest", &["sh", "-c", script]);
    let mut c = Container::run(&docker, &spec, None).expect("start container");
    let out = c.wait(Duration::from_secs(60)).expect("container exits");
    c.close().expect("close container");
    let text = format!("{}{}", out.stdout_str(), out.stderr_str());
    assert!(
        out.status.success(),
        "{script} in {image}: {}\n{text}",
        out.status
    );
    text
}

#[test]
fn node_image_has_busybox_tools() {
    let out = run_in(
        "alpy/node",
        "ip link show lo && cat /etc/passwd && sleep 0.01 && echo ok",
    );
    assert!(out.contains("lo:"), "{out}");
    assert!(out.contains("root:x:0:0"), "{out}");
    assert!(out.trim_end().ends_with("ok"), "{out}");
}

#[test]
fn tools_image_has_traffic_tools() {
    let out = run_in(
        "alpy/tools",
        "iperf3 --version && ip -V && ping -V && curl --version && nginx -v 2>&1 \
         && tcpdump --version && nc -h 2>&1 | head -1 && tc -V",
    );
    for want in [
        "iperf 3",
        "iproute2",
        "iputils",
        "curl ",
        "nginx version",
        "tcpdump version",
        "OpenBSD netcat",
    ] {
        assert!(out.contains(want), "missing {want:?} in:\n{out}");
    }
}

#[test]
fn missing_image_says_how_to_build_it() {
    let docker = common::docker();
    let spec = common::spec("alpy/no-such-image", "missing", &["true"]);
    let err = Container::run(&docker, &spec, None)
        .err()
        .expect("no such image");
    let msg = err.to_string();
    assert!(matches!(err, alpy::Error::NotFound { .. }), "{msg}");
    assert!(msg.contains("images/build"), "{msg}");
    // A user's own image gets a user's hint, not alpy's build script.
    let spec = common::spec("acme/router-no-such-image:1.0", "missing", &["true"]);
    let msg = Container::run(&docker, &spec, None)
        .err()
        .expect("no such image")
        .to_string();
    assert!(
        msg.contains("docker load") && !msg.contains("images/build"),
        "{msg}"
    );
}

#[test]
fn nonzero_exit_is_reported_by_close() {
    let docker = common::docker();
    let spec = common::spec("alpy/node", "exit3", &["sh", "-c", "echo bye; exit 3"]);
    let c = Container::run(&docker, &spec, None).expect("start");
    // Let it exit on its own, then close: the exit code must surface.
    docker.wait(c.id(), Duration::from_secs(30)).expect("exits");
    let err = c.close().expect_err("exit 3 is an error");
    let msg = err.to_string();
    assert!(msg.contains("exit code 3") && msg.contains("bye"), "{msg}");
}

#[test]
fn early_exit_and_signals_are_reported_clearly() {
    let docker = common::docker();
    // A container that dies early: ensure_running shows its last lines.
    let spec = common::spec(
        "alpy/node",
        "early",
        &["sh", "-c", "echo 'config file missing' >&2; exit 2"],
    );
    let c = Container::run(&docker, &spec, None).expect("start");
    docker.wait(c.id(), Duration::from_secs(30)).expect("exits");
    let msg = c.ensure_running().unwrap_err().to_string();
    assert!(
        msg.contains("exited at once") && msg.contains("exit code 2"),
        "{msg}"
    );
    assert!(msg.contains("config file missing"), "{msg}");
    assert!(
        c.close().is_err(),
        "an unexpected exit 2 is an error on close too"
    );
    // A program killed by a signal is reported by the signal's name.
    let spec = common::spec("alpy/node", "killed", &["sleep", "100"]);
    let mut c = Container::run(&docker, &spec, None).expect("start");
    docker.kill(c.id(), "SIGKILL").expect("kill");
    let out = c.wait(Duration::from_secs(30)).expect("exits");
    assert_eq!(out.status.to_string(), "killed by SIGKILL");
    c.close().expect("an awaited exit is not an error on close");
}
