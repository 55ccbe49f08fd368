//! TestBed end to end: real Docker, real QEMU, the routing test guest.

mod common;

use std::io::{BufRead, BufReader};
use std::net::IpAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use alpy::pcap::Filter;
use alpy::run::{RunId, LABEL_RUN};
use alpy::{App, TestBed};

const PROMPT: &str = common::GUEST_PROMPT;
const BOOT: Duration = Duration::from_secs(180);

fn ping(bed: &TestBed, count: u32) -> alpy::docker::Output {
    let count = count.to_string();
    bed.node(0)
        .run_app(
            &App::new("alpy/tools").cmd([
                "ping",
                "-c",
                &count,
                "-i",
                "0.2",
                "-W",
                "5",
                "192.168.2.2",
            ]),
            Duration::from_secs(60),
        )
        .expect("ping app runs")
}

/// Starts, pings through the DUT, shuts down, closes; returns the bed's
/// artifacts dir.
fn forward_once(name: &str, count: u32) -> std::path::PathBuf {
    let mut bed = common::router_bed(name).start().expect("start");
    bed.resume().unwrap();
    bed.wait_prompt(PROMPT, BOOT).unwrap();
    ping(&bed, count).checked("ping through the DUT").unwrap();
    bed.shutdown(Duration::from_secs(60)).unwrap();
    let dir = bed.artifacts_dir().to_path_buf();
    bed.close().expect("close");
    dir
}

#[test]
fn forward_and_the_pcaps_show_it() {
    let mut bed = common::router_bed("forward").start().expect("start");
    let (node0_mac, dut0_mac) = (bed.node(0).mac().to_string(), bed.dut_mac(0));
    bed.resume().unwrap();
    bed.wait_prompt(PROMPT, BOOT).unwrap();
    let out = ping(&bed, 3).checked("ping through the DUT").unwrap();
    assert!(
        out.stdout_str().contains("3 received"),
        "{}",
        out.stdout_str()
    );
    bed.shutdown(Duration::from_secs(60)).unwrap();
    let dir = bed.artifacts_dir().to_path_buf();
    let (cap0, cap1) = (bed.capture(0), bed.capture(1));
    bed.close().unwrap();
    // Read again after close: the captures are complete by then.
    drop((cap0, cap1));
    let cap0 = alpy::pcap::Capture::open(&dir.join("link0.pcap")).unwrap();
    let cap1 = alpy::pcap::Capture::open(&dir.join("link1.pcap")).unwrap();
    let n0: IpAddr = "192.168.1.2".parse().unwrap();
    let n1: IpAddr = "192.168.2.2".parse().unwrap();
    let req = Filter::new().ip_src(n0).ip_dst(n1).icmp_type(8);
    let rep = Filter::new().ip_src(n1).ip_dst(n0).icmp_type(0);
    cap0.expect_count(&req, 3).unwrap();
    cap1.expect_count(&req, 3).unwrap();
    cap0.expect_count(&rep, 3).unwrap();
    cap1.expect_count(&rep, 3).unwrap();
    // The DUT routes: TTL drops by one, and node0 talks to the DUT's MAC.
    assert!(cap0.filter(&req).all(|f| f.ttl == Some(64)));
    assert!(cap1.filter(&req).all(|f| f.ttl == Some(63)));
    let mac = |s: &str| -> [u8; 6] {
        let v: Vec<u8> = s
            .split(':')
            .map(|x| u8::from_str_radix(x, 16).unwrap())
            .collect();
        v.try_into().unwrap()
    };
    assert_eq!(
        cap0.count(&req.clone().src_mac(mac(&node0_mac)).dst_mac(mac(&dut0_mac))),
        3
    );
    // Artifacts a stranger needs to debug a failed run.
    for f in [
        "debug.log",
        "console.log",
        "qemu.log",
        "timings.json",
        "link0.pcap",
        "link1.pcap",
    ] {
        assert!(dir.join(f).is_file(), "{f} missing in {}", dir.display());
    }
    let timings: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("timings.json")).unwrap()).unwrap();
    for phase in [
        "nodes", "taps", "qemu", "setup", "boot", "shutdown", "close",
    ] {
        assert!(
            timings[phase].as_f64().is_some(),
            "{phase} missing in {timings}"
        );
    }
    let console = std::fs::read(dir.join("console.log")).unwrap();
    assert!(console.windows(16).any(|w| w == b"alpy guest ready"));
}

#[test]
fn impairment_through_the_relay_with_a_dut() {
    let (kernel, initrd) = common::guest();
    let mut bed = TestBed::builder("relay")
        .dut(alpy::Dut::kernel(kernel, Some(initrd)).append(common::ROUTER_APPEND))
        .link(
            alpy::Link::new()
                .node_addr("192.168.1.2/24")
                .gateway("192.168.1.1")
                .relay(),
        )
        .link(
            alpy::Link::new()
                .node_addr("192.168.2.2/24")
                .gateway("192.168.2.1"),
        )
        .poweroff(alpy::PowerOff::Console("poweroff -f".into()))
        .start()
        .expect("start");
    bed.resume().unwrap();
    bed.wait_prompt(PROMPT, BOOT).unwrap();
    let rtt = |out: alpy::docker::Output| -> f64 {
        common::min_rtt_ms(&out.checked("ping through the DUT").unwrap().stdout_str())
    };
    // Warm up: the first pings wait for ARP on both sides of the DUT.
    ping(&bed, 2);
    let base = rtt(ping(&bed, 3));
    bed.node(0)
        .impair(&alpy::Impairment {
            delay: Some(Duration::from_millis(100)),
            ..Default::default()
        })
        .unwrap();
    let slow = rtt(ping(&bed, 3));
    eprintln!("rtt through the DUT: {base:.2} ms, with 100 ms delay on link0: {slow:.2} ms");
    // A 100 ms delay; ping's own timing noise is a few tens of microseconds
    // either way, so the rise is checked to within 1 ms.
    assert!(
        slow >= base + 99.0 && slow >= 100.0,
        "rtt {base} -> {slow} ms"
    );
    bed.shutdown(Duration::from_secs(60)).unwrap();
    let dir = bed.artifacts_dir().to_path_buf();
    bed.close().unwrap();
    // The relayed link is captured like any other.
    let cap0 = alpy::pcap::Capture::open(&dir.join("link0.pcap")).unwrap();
    cap0.expect_count(&Filter::new().icmp_type(8), 2 + 3 + 3)
        .unwrap();
}

#[test]
fn four_test_beds_at_once_in_threads() {
    let handles: Vec<_> = (0..4)
        .map(|i| std::thread::spawn(move || forward_once(&format!("parallel{i}"), 1)))
        .collect();
    for h in handles {
        h.join().expect("a parallel test bed failed");
    }
}

/// Child side of `two_processes_at_once` and `sigkill_at_each_phase`.
#[test]
fn child_role() {
    let Ok(role) = std::env::var("ALPY_TEST_ROLE") else {
        return;
    };
    alpy::logging::init();
    let run = RunId::new();
    let announce = |qemu: i32| {
        println!("READY {run} {qemu}");
    };
    match role.as_str() {
        "forward" => {
            forward_once("process", 1);
            println!("DONE");
        }
        "nodes" => {
            let docker = alpy::docker::Docker::connect().unwrap();
            let links = [alpy::Link::new().node_addr("192.168.1.2/24")];
            let nodes =
                alpy::node::Nodes::create(&docker, &run, &links, &Default::default()).unwrap();
            announce(0);
            std::thread::sleep(Duration::from_secs(300));
            drop(nodes);
        }
        "qemu" | "running" => {
            let mut bed = common::router_bed("killed")
                .run_id(run.clone())
                .start()
                .unwrap();
            if role == "running" {
                bed.resume().unwrap();
                bed.wait_prompt(PROMPT, BOOT).unwrap();
            }
            announce(bed.qemu_pid().unwrap());
            std::thread::sleep(Duration::from_secs(300));
            drop(bed);
        }
        "no-engine" => {
            let err = common::router_bed("no-engine")
                .start()
                .err()
                .expect("no engine");
            println!("ERROR {err}");
        }
        other => panic!("unknown role {other}"),
    }
}

/// The forward scenario end to end as an unprivileged user in the `docker`
/// group: nodes through the helper, QEMU as that user.
#[test]
fn without_root_end_to_end() {
    if !nix::unistd::geteuid().is_root() {
        return; // already unprivileged: the other tests cover it
    }
    let (kernel, initrd) = common::guest();
    let out = common::run_unprivileged(&["forward_and_the_pcaps_show_it"], |dir| {
        // The guest and the artifacts where that user can read and write.
        let guest = dir.join("guest");
        std::fs::create_dir_all(&guest).unwrap();
        std::fs::copy(&kernel, guest.join("vmlinuz")).unwrap();
        std::fs::copy(&initrd, guest.join("initrd.img")).unwrap();
        let artifacts = dir.join("artifacts");
        std::fs::create_dir_all(&artifacts).unwrap();
        std::fs::set_permissions(
            &artifacts,
            std::os::unix::fs::PermissionsExt::from_mode(0o1777),
        )
        .unwrap();
        vec![
            ("ALPY_CACHE".into(), dir.display().to_string()),
            ("ALPY_ARTIFACTS".into(), artifacts.display().to_string()),
        ]
    });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success() && text.contains("1 passed"), "{text}");
    assert!(text.contains("creating 2 nodes (Helper)"), "{text}");
}

#[test]
fn two_processes_at_once() {
    let children: Vec<_> = (0..2)
        .map(|_| {
            common::child("child_role", &[("ALPY_TEST_ROLE", "forward")])
                .stdout(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let out = c.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success() && text.contains("DONE"), "{text}");
    }
}

fn left_of(docker: &alpy::docker::Docker, run: &str) -> Vec<String> {
    docker
        .list_by_label(LABEL_RUN, Some(run))
        .unwrap()
        .into_iter()
        .filter_map(|c| c.names.and_then(|n| n.first().cloned()))
        .collect()
}

#[test]
fn sigkill_at_each_phase_leaves_nothing_after_reap() {
    let docker = common::docker();
    for phase in ["nodes", "qemu", "running"] {
        let mut child = common::child("child_role", &[("ALPY_TEST_ROLE", phase)])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let ready = lines
            .by_ref()
            .map_while(Result::ok)
            .find_map(|l| l.split_once("READY ").map(|(_, rest)| rest.to_string()))
            .unwrap_or_else(|| panic!("child for phase {phase} never got ready"));
        let parts: Vec<&str> = ready.split_whitespace().collect();
        let (run, qemu_pid) = (parts[0].to_string(), parts[1].parse::<i32>().unwrap());
        assert!(
            !left_of(&docker, &run).is_empty(),
            "{phase}: nothing was created?"
        );
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let reaped = alpy::reap::reap(&docker).unwrap();
        assert!(
            left_of(&docker, &run).is_empty(),
            "{phase}: left after reap: {:?}",
            left_of(&docker, &run)
        );
        assert!(
            reaped.containers.iter().any(|c| c.contains(&run)),
            "{phase}: reap did not report {run}: {reaped:?}"
        );
        if qemu_pid > 0 {
            // QEMU died with its owner (PDEATHSIG); give the kernel a moment.
            let t0 = std::time::Instant::now();
            while Path::new(&format!("/proc/{qemu_pid}/exe")).exists()
                && t0.elapsed() < Duration::from_secs(5)
            {
                std::thread::sleep(Duration::from_millis(20));
            }
            assert!(
                !Path::new(&format!("/proc/{qemu_pid}/exe")).exists(),
                "{phase}: QEMU survived"
            );
        }
    }
    // And a new test bed passes.
    forward_once("after-kills", 1);
}

#[test]
fn reap_leaves_live_runs_alone() {
    let bed = common::router_bed("live").start().unwrap();
    let docker = common::docker();
    alpy::reap::reap(&docker).unwrap();
    assert_eq!(
        left_of(&docker, bed.run_id().as_str()).len(),
        2,
        "reap removed a live run's nodes"
    );
    bed.close().unwrap();
}

fn assert_nothing_left(run: &RunId) {
    let docker = common::docker();
    assert!(
        left_of(&docker, run.as_str()).is_empty(),
        "left: {:?}",
        left_of(&docker, run.as_str())
    );
}

/// Starting `builder` fails with a message holding every one of `needles`,
/// and nothing of the run is left.
fn assert_start_fails(builder: alpy::TestBedBuilder, needles: &[&str]) {
    let run = RunId::new();
    let err = builder
        .run_id(run.clone())
        .start()
        .err()
        .expect("start must fail");
    let msg = err.to_string();
    assert!(needles.iter().all(|n| msg.contains(n)), "{msg}");
    assert_nothing_left(&run);
}

#[test]
fn missing_kernel_is_a_clear_error_and_leaves_nothing() {
    let builder = TestBed::builder("nokernel")
        .dut(alpy::Dut::kernel("/nonexistent/vmlinuz", None))
        .link(alpy::Link::new());
    assert_start_fails(
        builder,
        &["could not open kernel file", "/nonexistent/vmlinuz"],
    );
}

#[test]
fn missing_image_is_a_clear_error_and_leaves_nothing() {
    let builder = common::router_bed("noimage").node_image("alpy/not-built");
    assert_start_fails(builder, &["alpy/not-built is missing", "images/build"]);
}

#[test]
fn silent_guest_times_out_with_the_console_tail() {
    let run = RunId::new();
    let mut bed = common::router_bed("noprompt")
        .run_id(run.clone())
        .start()
        .unwrap();
    bed.resume().unwrap();
    bed.wait_prompt(PROMPT, BOOT).unwrap();
    let err = bed
        .wait_prompt("this prompt never comes# ", Duration::from_secs(2))
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("timed out after 2.0 s") && msg.contains("this prompt never comes"),
        "{msg}"
    );
    assert!(
        msg.contains("last output:") && msg.contains("alpy guest ready"),
        "the console tail is shown: {msg}"
    );
    bed.close().unwrap();
    assert_nothing_left(&run);
}

#[test]
fn unreachable_engine_is_a_clear_error() {
    let out = common::child(
        "child_role",
        &[
            ("ALPY_TEST_ROLE", "no-engine"),
            ("DOCKER_HOST", "unix:///nonexistent/docker.sock"),
        ],
    )
    .output()
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("ERROR Docker: no Docker engine answers at unix:///nonexistent/docker.sock"),
        "{text}"
    );
    assert!(text.contains("scripts/setup"), "{text}");
}

/// UEFI is advertised, so it boots once in CI: the test guest's kernel
/// started by OVMF (Debian's `ovmf`, which set-up installs), seen from
/// inside the guest, with the bed's private variable store in use.
#[test]
fn uefi_guest_boots_through_ovmf() {
    let (kernel, initrd) = common::guest();
    let mut bed = TestBed::builder("uefi")
        .dut(
            alpy::Dut::kernel(kernel, Some(initrd))
                .append("console=ttyS0,115200 quiet panic=-1")
                .uefi(),
        )
        .poweroff(alpy::PowerOff::Console("poweroff -f".into()))
        .console_timeout(Duration::from_secs(120))
        .start()
        .expect("start");
    let vars = bed.artifacts_dir().join("OVMF_VARS.fd");
    assert!(vars.is_file(), "private variable store {}", vars.display());
    bed.resume().unwrap();
    bed.wait_prompt(PROMPT, BOOT).unwrap();
    // The kernel exposes /sys/firmware/efi only when EFI firmware booted it.
    let con = bed.console();
    // (The quotes keep the echoed command line from matching.)
    con.send_line(r#"echo firmware=$(test -d /sys/firmware/efi && echo e""fi || echo b""ios)"#)
        .unwrap();
    let answer = alpy::console::Pattern::regex(r"firmware=(efi|bios)\r?\n").unwrap();
    let m = con.expect(&answer, Duration::from_secs(30)).unwrap();
    assert_eq!(m.group(1).as_deref(), Some("efi"), "booted without UEFI");
    bed.wait_prompt(PROMPT, Duration::from_secs(30)).unwrap();
    bed.shutdown(Duration::from_secs(60)).unwrap();
    bed.close().expect("close");
}
