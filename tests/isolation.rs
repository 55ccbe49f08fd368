//! Beds in one process never share a log: each `debug.log` names only its
//! own run, and console log lines carry the bed's name.

mod common;

use alpy::Commands;
use std::time::Duration;

const BOOT: Duration = Duration::from_secs(180);

#[test]
fn two_beds_on_two_threads_keep_their_own_debug_logs() {
    let run = |name: &'static str| {
        std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                let mut bed = common::router_bed(name).start().unwrap();
                bed.boot(BOOT).unwrap();
                bed.node(0)
                    .unwrap()
                    .succeed("ping -c 1 -W 5 192.168.2.2")
                    .unwrap();
                bed.console()
                    .unwrap()
                    .send_line("echo console-of-$((40+2))")
                    .unwrap();
                bed.console().unwrap().exp_string("console-of-42").unwrap();
                let dir = bed.artifacts_dir().to_path_buf();
                let run = bed.run_id().to_string();
                bed.close().unwrap();
                (dir, run)
            })
            .unwrap()
    };
    let a = run("logs-alpha");
    let b = run("logs-beta");
    let (dir_a, run_a) = a.join().unwrap();
    let (dir_b, run_b) = b.join().unwrap();
    for (dir, name, own, other_name, other) in [
        (&dir_a, "logs-alpha", &run_a, "logs-beta", &run_b),
        (&dir_b, "logs-beta", &run_b, "logs-alpha", &run_a),
    ] {
        let log = std::fs::read_to_string(dir.join("debug.log")).unwrap();
        assert!(
            log.contains(&format!("test bed {name} (run {own})")),
            "{log}"
        );
        assert!(
            log.contains("starting QEMU") || log.contains("Start QEMU"),
            "{log}"
        );
        assert!(
            log.contains(&format!("[{name}/dut] < \"console-of-42")),
            "console lines carry the bed's name:\n{log}"
        );
        let foreign: Vec<&str> = log
            .lines()
            .filter(|l| l.contains(other.as_str()) || l.contains(other_name))
            .collect();
        assert!(
            foreign.is_empty(),
            "{} lines of {name}'s debug.log are about {other_name}:\n{}",
            foreign.len(),
            foreign.join("\n")
        );
    }
}
