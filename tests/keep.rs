//! Keep on failure: a failing test's bed stays up, the printed commands
//! reach it, `alpy down` or the timeout ends it, and nothing is left.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Child side: a test that fails with its bed unclosed.
#[test]
#[ignore = "a child role: the keep tests run it"]
fn child_role() {
    if common::child_env("ALPY_KEEP_TEST_CHILD", "the keep tests").is_none() {
        return;
    }
    let mut bed = common::router_bed("kept").start().unwrap();
    bed.boot(Duration::from_secs(180)).unwrap();
    panic!("the test fails with its bed open");
}

fn child(env: &[(&str, &str)]) -> std::process::Child {
    let mut c = common::child("child_role", &[("ALPY_KEEP_TEST_CHILD", "1")]);
    c.env_remove("CI")
        .envs(env.iter().copied())
        .stderr(Stdio::piped());
    c.spawn().unwrap()
}

/// Reads the child's stderr until the `alpy down ID` line; returns the id
/// and the lines so far.
fn kept_id(child: &mut std::process::Child) -> (String, Vec<String>) {
    let mut lines = Vec::new();
    for l in BufReader::new(child.stderr.take().unwrap())
        .lines()
        .map_while(Result::ok)
    {
        if let Some(id) = l.trim().strip_prefix("alpy down ") {
            let id = id.to_string();
            lines.push(l);
            return (id, lines);
        }
        lines.push(l);
    }
    panic!("the child never kept its bed:\n{}", lines.join("\n"));
}

fn alpy(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_alpy"))
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

fn containers_of(run: &str) -> usize {
    common::docker()
        .list_by_label(alpy::internal::run::LABEL_RUN, Some(run))
        .unwrap()
        .len()
}

#[test]
fn a_failed_tests_bed_is_kept_until_alpy_down() {
    let mut c = child(&[("ALPY_KEEP", "on-failure"), ("ALPY_KEEP_TIMEOUT", "300")]);
    let (id, lines) = kept_id(&mut c);
    let text = lines.join("\n");
    assert!(
        text.contains(&format!("alpy exec {id} node0 -- ip addr")),
        "{text}"
    );
    // The printed commands work.
    let (code, out) = alpy(&[
        "exec",
        &id,
        "node0",
        "--",
        "ping",
        "-c",
        "1",
        "-W",
        "5",
        "192.168.2.2",
    ]);
    assert!(code == 0 && out.contains("1 received"), "{out}");
    let (code, out) = alpy(&["qmp", &id, "query-status"]);
    assert!(code == 0 && out.contains("running"), "{out}");
    assert!(text.contains(&format!("alpy console {id}")), "{text}");
    let (_, listed) = alpy(&["ls"]);
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with(&id) && l.contains(" kept ")),
        "{listed}"
    );
    let mut console = Command::new(env!("CARGO_BIN_EXE_alpy"));
    console.args(["console", &id]);
    let mut tty = common::pty::Pty::spawn(console);
    tty.expect("detach with Ctrl-]", Duration::from_secs(10));
    tty.send(b"echo kept-$((2+3))\r");
    tty.expect("kept-5", Duration::from_secs(20));
    tty.send(b"\x1d");
    assert!(
        tty.wait(Duration::from_secs(10)).success(),
        "{}",
        tty.text()
    );
    assert!(containers_of(&id) > 0);
    let (code, out) = alpy(&["down", &id]);
    assert_eq!(code, 0, "{out}");
    let status = c.wait().unwrap();
    assert!(!status.success(), "the child test failed, as it should");
    assert_eq!(containers_of(&id), 0, "containers left after alpy down");
}

#[test]
fn a_kept_bed_goes_when_the_timeout_runs_out_and_ci_never_waits() {
    let t0 = Instant::now();
    let mut c = child(&[("ALPY_KEEP", "on-failure"), ("ALPY_KEEP_TIMEOUT", "2")]);
    let (id, _) = kept_id(&mut c);
    c.wait().unwrap();
    assert_eq!(containers_of(&id), 0, "containers left after the timeout");
    let (_, listed) = alpy(&["ls"]);
    assert!(!listed.contains(&id), "{listed}");
    // In CI it does not wait at all.
    let mut c = common::child(
        "child_role",
        &[
            ("ALPY_KEEP_TEST_CHILD", "1"),
            ("ALPY_KEEP", "on-failure"),
            ("CI", "true"),
        ],
    );
    let out = c.stderr(Stdio::piped()).output().unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(
        text.contains("is ignored in CI") && !text.contains("keeping test bed"),
        "{text}"
    );
    assert!(t0.elapsed() < Duration::from_secs(120));
}
