//! The `alpy` command's subcommands, run as a user runs them.

mod common;

use std::process::Command;

/// Held by the tests that start beds or reap: a bed's start reaps dead
/// runs too, which would take `alpy gc`'s victim first.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn alpy(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_alpy"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run alpy");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn graph_draws_a_topology_and_names_bad_input() {
    let (code, dot, err) = alpy(&["graph", "topologies/forward.toml"]);
    assert_eq!(code, 0, "{err}");
    assert!(dot.contains(r#"dut -- n0 [label="nic0"]"#), "{dot}");
    assert!(dot.contains(r#"client\n192.168.1.2/24"#), "{dot}");
    assert!(dot.contains("app iperf"), "{dot}");
    let (code, _, err) = alpy(&["graph", "topologies/no-such.toml"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("alpy graph: error") && err.contains("no-such.toml"),
        "{err}"
    );
    let bad = common::temp_dir("cli-graph").join("bad.toml");
    std::fs::write(
        &bad,
        "[dut]\nkernel = \"/proc/self/exe\"\n[[link]]\nadrs = []\n",
    )
    .unwrap();
    let (code, _, err) = alpy(&["graph", &bad.to_string_lossy()]);
    assert_eq!(code, 1);
    assert!(
        err.contains("bad.toml:4:1") && err.contains("unknown field `adrs`"),
        "{err}"
    );
    let (code, help, _) = alpy(&["graph", "--help"]);
    assert!(code == 0 && help.contains("Example: `alpy graph"), "{help}");
}

#[test]
fn gc_removes_a_dead_runs_containers_and_says_so() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let docker = common::docker();
    // A container whose owner is a process that has exited.
    let mut child = Command::new("true").spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();
    let mut spec = common::spec("alpy/node", "gc-victim", &["sleep", "100"]);
    spec.labels
        .insert(alpy::run::LABEL_OWNER_PID.into(), dead.to_string());
    let c = alpy::net::Container::run(&docker, &spec, None).unwrap();
    let name = c.name().to_string();
    std::mem::forget(c); // gc removes it, not this guard
    let (code, out, err) = alpy(&["gc"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&format!("removed container {name}")), "{out}");
    assert!(out.contains("alpy gc: removed"), "{out}");
    let left = docker
        .list_by_label(alpy::run::LABEL_RUN, None)
        .unwrap()
        .into_iter()
        .any(|s| {
            s.names
                .unwrap_or_default()
                .iter()
                .any(|n| n.trim_start_matches('/') == name)
        });
    assert!(!left, "{name} is still there after alpy gc");
}

/// `alpy up` stands a topology up in a supervisor; `ls`, `exec` and `down`
/// reach it; afterwards nothing of it is left.
#[test]
fn up_ls_exec_down() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let (code, out, err) = alpy(&["up", "topologies/forward.toml"]);
    assert_eq!(code, 0, "{out}{err}");
    let id = out
        .lines()
        .find_map(|l| {
            l.strip_prefix("bed ")
                .and_then(|r| r.split_whitespace().next())
        })
        .unwrap_or_else(|| panic!("no bed id in {out}"))
        .to_string();
    assert!(out.contains(&format!("alpy down {id}")), "{out}");
    // Whatever fails below, the bed goes down.
    struct Down(String);
    impl Drop for Down {
        fn drop(&mut self) {
            let _ = alpy(&["down", &self.0]);
        }
    }
    let _down = Down(id.clone());
    let (_, listed, _) = alpy(&["ls", "--json"]);
    let beds: serde_json::Value = serde_json::from_str(&listed).unwrap();
    let bed = beds
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["id"] == id.as_str())
        .unwrap_or_else(|| panic!("{id} not in {listed}"))
        .clone();
    let artifacts = bed["artifacts"].as_str().unwrap().to_string();
    let (code, ping, err) = alpy(&[
        "exec",
        &id,
        "client",
        "--",
        "ping",
        "-c",
        "1",
        "-W",
        "5",
        "192.168.2.2",
    ]);
    assert_eq!(code, 0, "{ping}{err}");
    assert!(ping.contains("1 received"), "{ping}");
    // QMP through the supervisor.
    let (code, status, err) = alpy(&["qmp", &id, "query-status"]);
    assert!(code == 0 && status.contains("\"running\""), "{status}{err}");
    let (code, _, err) = alpy(&["qmp", &id, "set_link", "{not json"]);
    assert!(code == 1 && err.contains("JSON object"), "{err}");
    // A live capture while pinging: valid pcap with the pings in it.
    let pcap = common::temp_dir("cli-capture").join("client.pcap");
    let follower = Command::new(env!("CARGO_BIN_EXE_alpy"))
        .args(["capture", &id, "client", "--seconds", "6"])
        .stdout(std::fs::File::create(&pcap).unwrap())
        .spawn()
        .unwrap();
    let (code, _, err) = alpy(&[
        "exec",
        &id,
        "client",
        "--",
        "ping",
        "-c",
        "3",
        "-i",
        "0.3",
        "192.168.2.2",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(follower.wait_with_output().unwrap().status.success());
    let cap = alpy::pcap::Capture::open(&pcap).unwrap();
    let echo = alpy::pcap::Filter::new().icmp_type(8);
    assert!(
        cap.count(&echo) >= 4,
        "{} echo requests in the live capture",
        cap.count(&echo)
    );
    let (code, _, _) = alpy(&["exec", &id, "server", "--", "sh", "-c", "exit 3"]);
    assert_eq!(code, 3, "exec passes the command's exit code on");
    let (code, _, err) = alpy(&["exec", &id, "nosuch", "--", "true"]);
    assert!(
        code == 1 && err.contains("its nodes are client, server"),
        "{err}"
    );
    let (code, out, err) = alpy(&["down", &id]);
    assert_eq!(code, 0, "{out}{err}");
    let (_, listed, _) = alpy(&["ls", "--json"]);
    assert!(!listed.contains(&id), "{listed}");
    // The bed's run id ends its artifacts directory's name.
    let run = artifacts.rsplit('-').next().unwrap().to_string();
    let docker = common::docker();
    let left = docker
        .list_by_label(alpy::run::LABEL_RUN, Some(&run))
        .unwrap();
    assert!(left.is_empty(), "containers of {run} left after alpy down");
    let (code, _, err) = alpy(&["down", &id]);
    assert!(code == 1 && err.contains("not found"), "{err}");
}
