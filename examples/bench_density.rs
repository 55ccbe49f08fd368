//! Warm start at scale: for a test guest whose preparation fills M MiB of
//! its memory (a file of non-zero bytes in its tmpfs), the save time and
//! snapshot size, then 1, 4 and 8 beds restored at once from that one
//! snapshot: restore time (QEMU's start to the console answering), each QEMU's
//! resident memory, and how much the host's used memory grew. Both ways
//! of restoring, same hour: `copy` (the RAM in the migration stream,
//! `ALPY_WARM_MAP=off`) and `map` (the RAM file mapped copy-on-write).
//!
//! ```text
//! cargo run --release --example bench_density [-- --mib 64,512,2048 --beds 1,4,8 --modes copy,map]
//! ```

use std::time::{Duration, Instant};

use alpy::WarmStart;
use alpy::{Commands, Dut, TestBed};

const BOOT: Duration = Duration::from_secs(600);

fn list(args: &[String], flag: &str, default: &str) -> Vec<String> {
    let v = args
        .iter()
        .position(|a| a == flag)
        .and_then(|i| args.get(i + 1))
        .map_or(default, String::as_str);
    v.split(',').map(str::to_string).collect()
}

fn percentile(mut v: Vec<f64>, p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v.get(i).copied().unwrap_or(f64::NAN)
}

/// `MemTotal - MemAvailable`, in MiB.
fn host_used_mib() -> f64 {
    let text = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let kb = |key: &str| {
        text.lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (kb("MemTotal:") - kb("MemAvailable:")) / 1024.0
}

/// A QEMU's resident memory (all, and anonymous only), in MiB.
fn rss_mib(pid: i32) -> (f64, f64) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kb = |key: &str| {
        text.lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(f64::NAN)
    };
    (kb("VmRSS:") / 1024.0, kb("RssAnon:") / 1024.0)
}

fn bed(mib: u32, mode: &str, tag: &str) -> alpy::Result<alpy::TestBedBuilder> {
    let guest = alpy::internal::cache::cache_dir()?.join("guest");
    let version = format!("bench_density fill={mib} mode={mode} v2");
    Ok(TestBed::builder(&format!("density-{tag}"))
        .dut(
            Dut::kernel(guest.join("vmlinuz"), Some(guest.join("initrd.img")))
                .append("console=ttyS0,115200 quiet panic=-1")
                .memory_mib(mib + 256),
        )
        .prompt("guest# ")
        .console_timeout(BOOT)
        .warm_start(
            WarmStart::new(&version, move |bed| {
                // A tmpfs of its own (the root one holds half the RAM at
                // most), filled with copies of 1 MiB of random bytes: no
                // zero pages for the migration stream to skip, and fast
                // under TCG (a pipe of `yes` writes about 1 MB/s).
                let cmd = format!(
                    "mkdir -p /fill && mount -t tmpfs -o size={}m tmpfs /fill && \
                     head -c 1048576 /dev/urandom > /fill/r && \
                     i=1; while [ $i -lt {mib} ]; do cat /fill/r; i=$((i+1)); done > /fill/f",
                    mib + 8
                );
                bed.shell()?.succeed_within(&cmd, BOOT).map(drop)
            })
            .boot_timeout(BOOT),
        ))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    alpy::logging::init();
    let args: Vec<String> = std::env::args().collect();
    let mibs = list(&args, "--mib", "64,512,2048");
    let counts = list(&args, "--beds", "1,4,8");
    let modes = list(&args, "--modes", "copy,map");
    println!("| M MiB | mode | save s | snapshot MB | beds | restore median / p95 s | QEMU RSS (anon) MiB | host used +MiB |");
    println!("|---|---|---|---|---|---|---|---|");
    for mib in &mibs {
        let mib: u32 = mib.parse()?;
        for mode in &modes {
            let mode: &'static str = if mode == "copy" { "copy" } else { "map" };
            // Set while no other thread runs: only the snapshot's build
            // reads it.
            std::env::set_var("ALPY_WARM_MAP", if mode == "copy" { "off" } else { "on" });
            // The build (its save) first, then the restores.
            let first = bed(mib, mode, "build")?.start()?;
            first.close()?;
            let (size_mb, snap) = snapshot_size_mb(mib, mode);
            for n in &counts {
                let n: usize = n.parse()?;
                let used0 = host_used_mib();
                let handles: Vec<_> = (0..n)
                    .map(|i| {
                        std::thread::spawn(move || -> alpy::Result<(f64, TestBed)> {
                            let t0 = Instant::now();
                            let mut b = bed(mib, mode, &format!("r{i}"))?.start()?;
                            let started = Instant::now();
                            b.boot(BOOT)?;
                            b.shell()?.succeed("test -s /fill/f")?;
                            // QEMU's start and the load (the "restore"
                            // phase), then resume to the console answering.
                            let restore = b
                                .timings()
                                .get("restore")
                                .map_or(f64::NAN, |d| d.as_secs_f64());
                            let _ = t0;
                            Ok((restore + started.elapsed().as_secs_f64(), b))
                        })
                    })
                    .collect();
                let mut times = Vec::new();
                let mut beds = Vec::new();
                for h in handles {
                    let (t, b) = h.join().map_err(|_| "a bed thread panicked")??;
                    times.push(t);
                    beds.push(b);
                }
                let used = host_used_mib() - used0;
                let rss: Vec<(f64, f64)> = beds
                    .iter()
                    .filter_map(|b| b.qemu_pid())
                    .map(rss_mib)
                    .collect();
                let rss_all = percentile(rss.iter().map(|r| r.0).collect(), 0.5);
                let rss_anon = percentile(rss.iter().map(|r| r.1).collect(), 0.5);
                for b in beds {
                    b.close()?;
                }
                println!(
                    "| {mib} | {mode} | {snap:.2} | {size_mb:.0} | {n} | {:.2} / {:.2} | {rss_all:.0} ({rss_anon:.0}) | {used:.0} |",
                    percentile(times.clone(), 0.5),
                    percentile(times, 0.95),
                );
            }
        }
    }
    Ok(())
}

/// The snapshot's allocated size on disk (state, disks, RAM file), MB,
/// and how long its save took (s).
fn snapshot_size_mb(mib: u32, mode: &str) -> (f64, f64) {
    let version = format!("bench_density fill={mib} mode={mode} v2");
    let Ok(warm) = alpy::internal::cache::cache_dir().map(|c| c.join("warm")) else {
        return (f64::NAN, f64::NAN);
    };
    let dir = std::fs::read_dir(&warm)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .find(|d| std::fs::read_to_string(d.join("meta.json")).is_ok_and(|t| t.contains(&version)));
    dir.map_or((f64::NAN, f64::NAN), |d| {
        let save_s = std::fs::read(d.join("meta.json"))
            .ok()
            .and_then(|t| serde_json::from_slice::<serde_json::Value>(&t).ok())
            .and_then(|m| m["save_s"].as_f64())
            .unwrap_or(f64::NAN);
        let size: f64 = std::fs::read_dir(d)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.metadata().ok())
            .map(|m| std::os::unix::fs::MetadataExt::blocks(&m) as f64 * 512.0 / 1e6)
            .sum();
        (size, save_s)
    })
}
