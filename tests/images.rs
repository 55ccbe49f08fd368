//! The Docker images built by `images/build` hold working tools.

mod common;

use std::time::Duration;

use alpy::docker::Container;

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
    assert!(msg.contains("images/build"), "{msg}");
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
