//! Benchmark of the VM side: QEMU spawn to QMP ready, console round trip,
//! upload throughput. Prints medians.
//!
//! ```text
//! cargo run --release --example bench_vm -- [KERNEL INITRD]
//! ```
//! Without arguments it uses the test guest built by `scripts/setup`.

use alpy::Commands;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use alpy::internal::qemu::QemuConfig;
use alpy::internal::qemu_process::QemuProcess;
use alpy::vm::RemoteShell;
use alpy::vm::{Console, Pattern};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    alpy::logging::init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (kernel, initrd) = match args.as_slice() {
        [k, i] => (PathBuf::from(k), PathBuf::from(i)),
        [] => {
            let dir = alpy::internal::cache::cache_dir()?.join("guest");
            (dir.join("vmlinuz"), dir.join("initrd.img"))
        }
        _ => return Err("usage: bench_vm [KERNEL INITRD]".into()),
    };
    let dir = std::env::temp_dir().join(format!("alpy-bench-vm-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let cfg = QemuConfig {
        kernel: Some(kernel),
        initrd: Some(initrd),
        append: Some("console=ttyS0,115200 quiet panic=-1".into()),
        extra_args: vec!["-no-reboot".into()],
        ..Default::default()
    };
    let log = dir.join("qemu.log");

    // 1. QEMU spawn to QMP ready.
    let mut spawn = Vec::new();
    for _ in 0..21 {
        let t0 = Instant::now();
        let q = QemuProcess::start(&cfg, &log, Duration::from_secs(10))?;
        spawn.push(t0.elapsed().as_secs_f64() * 1e3);
        q.close()?;
    }

    // 2. Console round trip on an idle shell.
    let mut qemu = QemuProcess::start(&cfg, &log, Duration::from_secs(10))?;
    let serial = qemu.take_serial().ok_or("no serial")?;
    let mut console = Console::new(serial, "bench", None)?;
    console.set_timeout(Duration::from_secs(120));
    let t_boot = Instant::now();
    qemu.qmp().cont()?;
    console.exp_string("guest# ")?;
    let boot = t_boot.elapsed().as_secs_f64();
    let mut sh = RemoteShell::attach(&mut console)?;
    let mut rtt = Vec::new();
    let done = Pattern::exact("x\r\n");
    for _ in 0..51 {
        let t0 = Instant::now();
        sh.console().send_line("echo x")?;
        sh.console().expect(&done, Duration::from_secs(10))?;
        rtt.push(t0.elapsed().as_secs_f64() * 1e3);
        // Let the prompt arrive before the next round.
        sh.console().exp_string("# ")?;
    }

    // 3. Upload throughput of 64 KiB, text and binary.
    let text: String = (0..)
        .map(|i| format!("line {i} of the benchmark text file\n"))
        .take_while({
            let mut n = 0;
            move |l: &String| {
                n += l.len();
                n <= 65536
            }
        })
        .collect();
    let bin: Vec<u8> = (0..65536u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let (mut up_text, mut up_bin) = (Vec::new(), Vec::new());
    for _ in 0..5 {
        let t0 = Instant::now();
        sh.upload_text("/tmp/t", &text)?;
        up_text.push(text.len() as f64 / 1024.0 / t0.elapsed().as_secs_f64());
        let t0 = Instant::now();
        sh.upload_binary("/tmp/b", &bin)?;
        up_bin.push(bin.len() as f64 / 1024.0 / t0.elapsed().as_secs_f64());
    }
    // 4. Warm start: save at the prompt, then restore into fresh QEMUs
    // until the console answers.
    let state = dir.join("state");
    let shell = sh.state();
    let t0 = Instant::now();
    let bytes = alpy::internal::migrate::save(qemu.qmp(), &state, Duration::from_secs(120))?;
    let save = t0.elapsed().as_secs_f64();
    drop(sh);
    qemu.close()?;
    console.close()?;
    let mut warm_cfg = cfg.clone();
    warm_cfg.incoming = true;
    let mut restore = Vec::new();
    for _ in 0..11 {
        let t0 = Instant::now();
        let mut q = QemuProcess::start(&warm_cfg, &log, Duration::from_secs(10))?;
        let mut c = Console::new(q.take_serial().ok_or("no serial")?, "bench-warm", None)?;
        alpy::internal::migrate::load(q.qmp(), &state, Duration::from_secs(60))?;
        q.qmp().cont()?;
        RemoteShell::resume(&mut c, shell.clone()).succeed("echo x")?;
        restore.push(t0.elapsed().as_secs_f64());
        q.close()?;
        c.close()?;
    }
    std::fs::remove_dir_all(&dir).ok();

    println!("boot to prompt (TCG unless KVM works): {boot:.2} s");
    println!(
        "QEMU spawn to QMP ready: median {:.1} ms over {} runs",
        median(spawn.clone()),
        spawn.len()
    );
    println!(
        "console round trip (echo x): median {:.2} ms over {} runs",
        median(rtt.clone()),
        rtt.len()
    );
    println!(
        "warm start: save {:.0} MB in {save:.2} s; restore to the console answering: median {:.3} s over {} runs",
        bytes as f64 / 1e6,
        median(restore.clone()),
        restore.len()
    );
    println!(
        "upload 64 KiB: text median {:.0} KiB/s, binary median {:.0} KiB/s (5 runs each)",
        median(up_text),
        median(up_bin)
    );
    Ok(())
}
