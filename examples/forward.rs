//! The forward scenario as a command-line program: a DUT that routes
//! between two links, node0 (192.168.1.2/24 via .1.1) pings node1
//! (192.168.2.2/24 via .2.1) three times through it.
//!
//! ```text
//! cargo run --release --example forward -- --kernel K --initrd I \
//!     --append "console=ttyS0,115200 ..." --nic-model e1000 --prompt "dut# " [--runs N]
//! ```
//!
//! Prints one JSON line per run with the phase timings (seconds) and the
//! result, then the medians; exits non-zero if any run failed.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use alpy::{App, Dut, Link, PowerOff, TestBed};

struct Args {
    kernel: PathBuf,
    initrd: Option<PathBuf>,
    append: String,
    nic_model: String,
    prompt: String,
    runs: usize,
}

fn parse_args() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let (mut kernel, mut initrd, mut append) = (None, None, String::from("console=ttyS0,115200"));
    let (mut nic_model, mut prompt, mut runs) = (String::from("e1000"), None, 1usize);
    while let Some(a) = it.next() {
        let mut val = || it.next().ok_or_else(|| format!("{a} needs a value"));
        match a.as_str() {
            "--kernel" => kernel = Some(PathBuf::from(val()?)),
            "--initrd" => initrd = Some(PathBuf::from(val()?)),
            "--append" => append = val()?,
            "--nic-model" => nic_model = val()?,
            "--prompt" => prompt = Some(val()?),
            "--runs" => runs = val()?.parse().map_err(|e| format!("--runs: {e}"))?,
            "-h" | "--help" => {
                return Err("usage: forward --kernel K [--initrd I] [--append A] [--nic-model M] --prompt P [--runs N]".into())
            }
            other => return Err(format!("unknown argument {other:?} (try --help)")),
        }
    }
    Ok(Args {
        kernel: kernel.ok_or("--kernel is required")?,
        initrd,
        append,
        nic_model,
        prompt: prompt.ok_or("--prompt is required")?,
        runs,
    })
}

fn one_run(args: &Args) -> Result<serde_json::Value, Box<dyn std::error::Error>> {
    let t0 = Instant::now();
    let mut bed = TestBed::builder("forward")
        .dut(
            Dut::kernel(&args.kernel, args.initrd.clone())
                .append(&args.append)
                .nic_model(args.nic_model.parse()?),
        )
        .link(
            Link::new()
                .node_addr("192.168.1.2/24")
                .gateway("192.168.1.1"),
        )
        .link(
            Link::new()
                .node_addr("192.168.2.2/24")
                .gateway("192.168.2.1"),
        )
        .poweroff(PowerOff::Console("poweroff -f".into()))
        .start()?;
    let setup = t0.elapsed();
    bed.resume()?;
    bed.wait_prompt(&args.prompt, Duration::from_secs(120))?;
    let t = Instant::now();
    bed.node(0)
        .run_app(
            &App::new("alpy/tools").cmd(["ping", "-c", "3", "-W", "5", "192.168.2.2"]),
            Duration::from_secs(60),
        )?
        .checked("ping node1 from node0 through the DUT")?;
    let traffic = t.elapsed();
    bed.record("traffic", traffic);
    bed.shutdown(Duration::from_secs(60))?;
    let timings: std::collections::HashMap<String, f64> = bed.timings().iter().cloned().collect();
    let artifacts = bed.artifacts_dir().display().to_string();
    let t = Instant::now();
    bed.close()?;
    let close = t.elapsed();
    let get = |k: &str| timings.get(k).copied().unwrap_or(f64::NAN);
    Ok(serde_json::json!({
        "result": "pass",
        "setup": setup.as_secs_f64(),
        "boot": get("boot"),
        "traffic": traffic.as_secs_f64(),
        "shutdown": get("shutdown"),
        "close": close.as_secs_f64(),
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
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
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
        let phases = ["setup", "boot", "traffic", "shutdown", "close", "total"];
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
