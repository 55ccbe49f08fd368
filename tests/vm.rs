//! The VM side against real QEMU and the test guest: QMP, console, remote
//! shell, uploads, power-off, start-up errors, and death with the harness.

mod common;

use alpy::Commands;
use std::io::Read;
use std::path::Path;
use std::time::{Duration, Instant};

use alpy::internal::qemu::QemuConfig;
use alpy::internal::qemu_process::QemuProcess;
use alpy::vm::Console;
use alpy::vm::RemoteShell;
use sha2::{Digest, Sha256};

fn guest_config(dir: &Path) -> QemuConfig {
    let (kernel, initrd) = common::guest();
    QemuConfig {
        kernel: Some(kernel),
        initrd: Some(initrd),
        append: Some("console=ttyS0,115200 quiet panic=-1".into()),
        serial_log: Some(dir.join("console-qemu.log")),
        extra_args: vec!["-no-reboot".into()],
        ..Default::default()
    }
}

/// Starts QEMU (paused) on the test guest, logging into `dir`.
fn start_guest(dir: &Path) -> QemuProcess {
    QemuProcess::start(
        &guest_config(dir),
        &dir.join("qemu.log"),
        Duration::from_secs(10),
    )
    .expect("QEMU starts")
}

fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Deterministic pseudo-random bytes.
fn noise(len: usize, mut seed: u64) -> Vec<u8> {
    (0..len)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed as u8
        })
        .collect()
}

#[test]
fn boot_shell_uploads_and_poweroff() {
    alpy::logging::init();
    let dir = common::artifacts("vm-boot");
    let mut qemu = start_guest(&dir);
    assert_eq!(
        qemu.qmp().query_status().unwrap(),
        "prelaunch",
        "started paused"
    );
    let serial = qemu.take_serial().unwrap();
    let mut console = Console::new(serial, "guest", Some(&dir.join("console.log"))).unwrap();
    console.set_timeout(Duration::from_secs(120));
    qemu.qmp().cont().unwrap();
    assert_eq!(qemu.qmp().query_status().unwrap(), "running");
    console
        .exp_string(common::GUEST_PROMPT)
        .expect("shell prompt");

    let mut sh = RemoteShell::attach(&mut console).unwrap();
    let out = sh.execute("echo hello; echo err >&2").unwrap();
    assert_eq!(out.status.code(), 0);
    assert_eq!(out.stdout_str(), "hello\nerr\n");
    assert_eq!(sh.execute("true").unwrap().status.code(), 0);
    assert_eq!(sh.execute("sh -c 'exit 3'").unwrap().status.code(), 3);
    assert_eq!(
        sh.execute("printf 'no newline'").unwrap().stdout_str(),
        "no newline"
    );
    // The verbs every command target has.
    let failed = sh.fail("ls /no-such-dir").unwrap();
    assert!(failed.stdout_str().contains("no-such-dir"), "{failed:?}");
    let e = sh.fail("true").unwrap_err().to_string();
    assert!(
        e.contains("expected to fail") && e.contains("the guest"),
        "{e}"
    );
    sh.wait_until_fails("test -e /tmp/gone-soon", Duration::from_secs(5))
        .unwrap();
    let err = sh.succeed("ls /no-such-dir").unwrap_err().to_string();
    assert!(
        err.contains("exit code 1") && err.contains("no-such-dir"),
        "{err}"
    );

    // 64 KiB of text (lines of varied length) and 64 KiB of binary noise.
    let mut text = String::new();
    let mut i = 0;
    while text.len() < 65536 {
        text.push_str(&format!("line {i}: {}\n", "abcdefghij".repeat(i % 9)));
        i += 1;
    }
    text.truncate(65536 - 1);
    text.push('$'); // no final newline: the exact size must survive
    sh.upload_text("/tmp/text", &text).unwrap();
    let bin = noise(65536, 0x9e37_79b9_7f4a_7c15);
    sh.upload_binary("/tmp/bin", &bin).unwrap();
    let sums = sh.succeed("sha256sum /tmp/text /tmp/bin").unwrap();
    assert!(
        sums.contains(&format!("{}  /tmp/text", sha256_hex(text.as_bytes()))),
        "{sums}"
    );
    assert!(
        sums.contains(&format!("{}  /tmp/bin", sha256_hex(&bin))),
        "{sums}"
    );

    let script = "#!/bin/sh\necho \"args: $1 $2\"\nexit 7\n";
    let out = sh.upload_and_run(script, &["a b", "c'd"]).unwrap();
    assert_eq!(
        (out.status.code(), out.stdout_str().as_str()),
        (7, "args: a b c'd\n")
    );

    // Power off from the console: SHUTDOWN arrives, QEMU exits 0.
    sh.console().send_line("poweroff -f").unwrap();
    let ev = qemu
        .qmp()
        .wait_event("SHUTDOWN", Duration::from_secs(60))
        .unwrap();
    assert_eq!(ev.data["guest"], true, "{:?}", ev.data);
    let status = qemu.wait_exit(Duration::from_secs(30)).unwrap();
    assert!(status.success(), "{status:?}");
    qemu.close().expect("QEMU exited 0");
    console.close().unwrap();
    let transcript = std::fs::read(dir.join("console.log")).unwrap();
    assert!(transcript.windows(5).any(|w| w == b"hello"));
}

#[test]
fn bad_argument_quotes_qemu() {
    alpy::logging::init();
    let dir = common::artifacts("vm-badarg");
    let mut cfg = guest_config(&dir);
    cfg.extra_args.push("-no-such-option".into());
    let err = QemuProcess::start(&cfg, &dir.join("qemu.log"), Duration::from_secs(10))
        .err()
        .expect("QEMU must fail");
    let msg = err.to_string();
    assert!(
        msg.contains("invalid option") && msg.contains("-no-such-option"),
        "{msg}"
    );
    assert!(msg.contains("exit code 1"), "{msg}");
}

#[test]
fn missing_kernel_quotes_qemu() {
    alpy::logging::init();
    let dir = common::artifacts("vm-nokernel");
    let mut cfg = guest_config(&dir);
    cfg.kernel = Some(dir.join("no-such-vmlinuz"));
    let err = QemuProcess::start(&cfg, &dir.join("qemu.log"), Duration::from_secs(10))
        .err()
        .expect("QEMU must fail");
    let msg = err.to_string();
    assert!(
        msg.contains("could not open kernel file") && msg.contains("no-such-vmlinuz"),
        "{msg}"
    );
}

#[test]
fn killed_qemu_is_reported_by_name() {
    // A killed QEMU is reported by close() as a signal, by name.
    alpy::logging::init();
    let dir = common::artifacts("vm-killed");
    let mut qemu = start_guest(&dir);
    let pid = qemu.pid();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    qemu.wait_exit(Duration::from_secs(10)).unwrap();
    let msg = qemu.close().unwrap_err().to_string();
    assert!(msg.contains("killed by SIGKILL"), "{msg}");
}

/// Runs only as the child of `qemu_dies_with_the_test_process`: starts QEMU,
/// prints its PID, then waits to be killed.
#[test]
#[ignore = "a child role: qemu_dies_with_the_test_process runs it"]
fn child_holds_qemu() {
    let Some(dir) = common::child_env("ALPY_TEST_CHILD_DIR", "qemu_dies_with_the_test_process")
    else {
        return;
    };
    let dir = Path::new(&dir);
    let qemu = start_guest(dir);
    println!("QEMU_PID={}", qemu.pid());
    std::thread::sleep(Duration::from_secs(120));
    drop(qemu);
}

#[test]
fn qemu_dies_with_the_test_process() {
    let dir = common::artifacts("vm-pdeathsig");
    let mut child = common::child("child_holds_qemu", &[])
        .env("ALPY_TEST_CHILD_DIR", &dir)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut seen = String::new();
    let mut buf = [0u8; 256];
    let pid: i32 = loop {
        let n = stdout.read(&mut buf).unwrap();
        assert!(n > 0, "child ended without starting QEMU: {seen}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        if let Some(rest) = seen.split("QEMU_PID=").nth(1) {
            if let Some(line) = rest.split('\n').next().filter(|_| rest.contains('\n')) {
                break line.trim().parse().unwrap();
            }
        }
    };
    assert!(Path::new(&format!("/proc/{pid}")).exists());
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let t0 = Instant::now();
    // QEMU is a child of the killed process: once gone it is reaped by init.
    while Path::new(&format!("/proc/{pid}/exe")).exists() && t0.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(10));
    }
    let gone_after = t0.elapsed();
    assert!(
        !Path::new(&format!("/proc/{pid}/exe")).exists(),
        "QEMU {pid} survived the SIGKILL of its test process"
    );
    assert!(
        gone_after < Duration::from_secs(1),
        "QEMU took {gone_after:?} to die"
    );
}

/// A QEMU that exited unseen (the spawner thread reaped it) must not be
/// "killed" by Drop: its PID may belong to another process by then. The
/// test hands the PID to a new process on purpose (`ns_last_pid`).
#[test]
fn dropping_a_reaped_qemu_never_kills_whoever_got_its_pid() {
    if !common::needs_root("set ns_last_pid") {
        return;
    }
    let dir = common::artifacts("vm-pid-reuse");
    let mut q = start_guest(&dir);
    let pid = q.pid();
    q.qmp().quit().unwrap();
    let t0 = Instant::now();
    while Path::new(&format!("/proc/{pid}")).exists() {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "QEMU never went away"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    // Ask the kernel for that PID again; other processes may take it first.
    let mut sleeper = None;
    for _ in 0..200 {
        std::fs::write("/proc/sys/kernel/ns_last_pid", (pid - 1).to_string()).unwrap();
        let child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        if child.id() as i32 == pid {
            sleeper = Some(child);
            break;
        }
        let mut child = child;
        child.kill().ok();
        child.wait().ok();
    }
    let mut sleeper = sleeper.expect("could not get QEMU's old PID for a new process");
    drop(q);
    std::thread::sleep(Duration::from_millis(200));
    let alive = sleeper.try_wait().unwrap().is_none();
    sleeper.kill().ok();
    sleeper.wait().ok();
    assert!(
        alive,
        "dropping the QEMU guard killed the process that reused PID {pid}"
    );
}

/// A guest saved at its prompt comes back in a new QEMU with its shell
/// state (a variable set before the save), without booting.
#[test]
fn a_saved_guest_resumes_in_a_new_qemu() {
    alpy::logging::init();
    let dir = common::artifacts("vm-migrate");
    let mut qemu = start_guest(&dir);
    let mut console = Console::new(qemu.take_serial().unwrap(), "guest", None).unwrap();
    console.set_timeout(Duration::from_secs(120));
    qemu.qmp().cont().unwrap();
    console.exp_string(common::GUEST_PROMPT).unwrap();
    let sh = RemoteShell::attach(&mut console).unwrap();
    sh.succeed("export MARK=before-save").unwrap();
    let state = sh.state();
    let file = dir.join("state.bin");
    let t0 = Instant::now();
    let bytes = alpy::internal::migrate::save(qemu.qmp(), &file, Duration::from_secs(60)).unwrap();
    eprintln!("saved {bytes} bytes in {:.2} s", t0.elapsed().as_secs_f64());
    drop(sh);
    console.close().unwrap();
    qemu.close().unwrap();

    let t0 = Instant::now();
    let mut cfg = guest_config(&dir);
    cfg.incoming = true;
    let mut qemu =
        QemuProcess::start(&cfg, &dir.join("qemu2.log"), Duration::from_secs(10)).unwrap();
    let mut console = Console::new(qemu.take_serial().unwrap(), "guest2", None).unwrap();
    alpy::internal::migrate::load(qemu.qmp(), &file, Duration::from_secs(60)).unwrap();
    qemu.qmp().cont().unwrap();
    let mut sh = RemoteShell::resume(&mut console, state);
    let mark = sh.succeed("echo $MARK").unwrap();
    eprintln!(
        "restored and answering in {:.3} s",
        t0.elapsed().as_secs_f64()
    );
    assert_eq!(mark, "before-save\n");
    sh.console().send_line("poweroff -f").unwrap();
    qemu.qmp()
        .wait_event("SHUTDOWN", Duration::from_secs(30))
        .unwrap();
    console.close().unwrap();
    qemu.close().unwrap();
}
