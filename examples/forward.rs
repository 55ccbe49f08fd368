//! The forward scenario as a command-line program: a DUT that routes
//! between two links, node0 (192.168.1.2/24 via .1.1) pings node1
//! (192.168.2.2/24 via .2.1) three times through it.
//!
//! ```text
//! cargo run --release --example forward -- --kernel K --initrd I \
//!     --append "console=ttyS0,115200 ..." --nic-model e1000 --prompt "dut# " [--runs N]
//! ```
//!
//! Before, with the first API (31 lines from builder to JSON): a
//! hand-written ping app, `record()` of a phase timed by hand, timings as a
//! list of pairs. Now (this file): named links, `boot()`, a node's
//! `succeed()`, `timed()`.
//!
//! Prints one JSON line per run with the phase timings (seconds) and the
//! result, then the medians; exits non-zero if any run failed.

use alpy::Commands;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Parser;

use alpy::WarmStart;
use alpy::{Dut, Link, PowerOff, TestBed};

/// The forward scenario: node "client" pings node "server" through the DUT.
#[derive(Parser)]
struct Args {
    /// The DUT's kernel.
    #[arg(long)]
    kernel: PathBuf,
    /// Its initrd.
    #[arg(long)]
    initrd: Option<PathBuf>,
    /// The kernel command line.
    #[arg(long, default_value = "console=ttyS0,115200")]
    append: String,
    /// The NIC model of both links.
    #[arg(long, default_value = "e1000")]
    nic_model: String,
    /// The DUT's shell prompt.
    #[arg(long)]
    prompt: String,
    /// How many runs (medians are printed after two or more).
    #[arg(long, default_value_t = 1)]
    runs: usize,
    /// Start from a saved ready point (the first run builds it) and skip
    /// the power-off: a restored bed is disposable.
    #[arg(long)]
    warm: bool,
    /// With --warm: save right after the prompt, without waiting for the
    /// links to carry a frame from the DUT (what warm start did before it
    /// checked; a guest whose prompt comes before carrier then loses
    /// echoes after a restore).
    #[arg(long)]
    no_link_check: bool,
}

fn one_run(args: &Args) -> Result<serde_json::Value, Box<dyn std::error::Error>> {
    let t0 = Instant::now();
    let bed = TestBed::builder("forward")
        .dut(
            Dut::kernel(&args.kernel, args.initrd.clone())
                .append(&args.append)
                .nic_model(args.nic_model.parse()?),
        )
        .link(
            Link::new()
                .name("client")
                .node_addr("192.168.1.2/24")
                .gateway("192.168.1.1"),
        )
        .link(
            Link::new()
                .name("server")
                .node_addr("192.168.2.2/24")
                .gateway("192.168.2.1"),
        )
        .prompt(&args.prompt)
        .poweroff(PowerOff::Console("poweroff -f".into()));
    let mut bed = if args.warm {
        bed.warm_start(if args.no_link_check {
            WarmStart::new("forward example: at the prompt, no link check", |_| Ok(()))
                .ready_when(|_| Ok(()))
        } else {
            WarmStart::new("forward example: at the prompt", |_| Ok(()))
        })
    } else {
        bed
    }
    .start()?;
    bed.boot(Duration::from_secs(120))?;
    bed.timed("traffic", |bed| {
        bed.node("client")?.succeed("ping -c 3 -W 5 192.168.2.2")
    })?;
    if !args.warm {
        bed.shutdown(Duration::from_secs(60))?;
    }
    let artifacts = bed.artifacts_dir().display().to_string();
    let bed_warm = bed.warm_outcome().map_or("off", |w| w.as_str());
    let t = bed.timings().clone();
    let get = |k: &str| t.get(k).map_or(f64::NAN, |d| d.as_secs_f64());
    let closing = Instant::now();
    bed.close()?;
    Ok(serde_json::json!({
        "result": "pass",
        "setup": get("setup"),
        "boot": get("boot"),
        "traffic": get("traffic"),
        "shutdown": get("shutdown"),
        "restore": get("restore"),
        "snapshot_build": get("snapshot_build"),
        "warm": bed_warm,
        "close": closing.elapsed().as_secs_f64(),
        "total": t0.elapsed().as_secs_f64(),
        "artifacts": artifacts,
    }))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

fn main() {
    alpy::logging::init();
    let args = Args::parse();
    let mut ok = Vec::new();
    let mut failed = 0;
    for run in 1..=args.runs {
        match one_run(&args) {
            Ok(mut v) => {
                v["run"] = run.into();
                println!("{v}");
                ok.push(v);
            }
            Err(e) => {
                failed += 1;
                println!(
                    "{}",
                    serde_json::json!({"run": run, "result": "fail", "error": e.to_string()})
                );
            }
        }
    }
    if ok.len() > 1 {
        let phases = [
            "setup", "boot", "restore", "traffic", "shutdown", "close", "total",
        ];
        let med: serde_json::Map<String, serde_json::Value> = phases
            .iter()
            .map(|p| {
                let m = median(ok.iter().filter_map(|v| v[*p].as_f64()).collect());
                (
                    p.to_string(),
                    serde_json::json!((m * 1000.0).round() / 1000.0),
                )
            })
            .collect();
        println!(
            "{}",
            serde_json::json!({"medians_of": ok.len(), "medians": med})
        );
    }
    if failed > 0 {
        std::process::exit(1);
    }
}
