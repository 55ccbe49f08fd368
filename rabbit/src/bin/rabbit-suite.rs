//! The Rabbit suite runner: builds the Rabbit tests, runs them (in
//! parallel, as many at once as the machine has cores), and prints a
//! summary table (test, result, duration, artifacts). Exits non-zero if any
//! test failed.
//!
//! ```text
//! rabbit-suite [--jobs N] [--only TEST]... [--expect-fail] [--shard K/N] [--junit PATH] [--html PATH] [--list]
//! ```
//! `--shard K/N` runs a stable K-th of N shares (for CI jobs run in
//! parallel); `--junit PATH` writes a JUnit XML report, `--html PATH` the
//! suite's page (each test linked to its bed's `report.html`).
//! `--expect-fail` inverts the verdict: every test run must fail (use it
//! with `RABBIT_SKIP=<feature>` to see that a test catches a missing
//! feature). Run it from the workspace (it calls cargo).

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use carrot::suite::{Outcome, Shard};
use clap::Parser;

/// Rabbit's test targets that test the suite itself, not Rabbit: the
/// browser test of the pages runs this runner (and must not run itself).
const HARNESS_TESTS: &[&str] = &["report-pages"];

fn test_binaries() -> Result<Vec<(String, PathBuf)>, String> {
    let out = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args([
            "test",
            "-p",
            "rabbit",
            "--tests",
            "--no-run",
            "--message-format=json",
        ])
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("run cargo: {e}"))?;
    if !out.status.success() {
        return Err("building the Rabbit tests failed".into());
    }
    let mut bins = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let kind_is_test = v["target"]["kind"]
            .as_array()
            .is_some_and(|k| k.iter().any(|x| x == "test"));
        if let (true, Some(exe), Some(name)) = (
            kind_is_test,
            v["executable"].as_str(),
            v["target"]["name"].as_str(),
        ) {
            let name = name.replace('_', "-");
            if !HARNESS_TESTS.contains(&name.as_str()) {
                bins.push((name, PathBuf::from(exe)));
            }
        }
    }
    // Longest first, so that the workers finish together: warm-started
    // medians on this project's machines (rate-limit measures for 5 s,
    // firewall waits out a dropped connection).
    let expected = |name: &str| match name {
        "rate-limit" => 10,
        "firewall" => 9,
        "load-balancing" => 7,
        "nat-chain" => 8,
        "nat" => 6,
        _ => 5,
    };
    bins.sort_by(|a, b| expected(&b.0).cmp(&expected(&a.0)).then(a.0.cmp(&b.0)));
    Ok(bins)
}

fn run_one(name: &str, exe: &PathBuf) -> Outcome {
    let t0 = Instant::now();
    let child = Command::new(exe)
        .args(["--nocapture", "--test-threads=1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            return Outcome {
                test: name.into(),
                summary: format!("cannot run {}: {e}", exe.display()),
                ..Default::default()
            }
        }
    };
    // Keep stderr (alpy's log) flowing so the child never blocks on it.
    let stderr = child.stderr.take();
    let err_thread = std::thread::spawn(move || {
        let mut tail: VecDeque<String> = VecDeque::new();
        if let Some(s) = stderr {
            for line in BufReader::new(s).lines().map_while(Result::ok) {
                if tail.len() == 15 {
                    tail.pop_front();
                }
                tail.push_back(line);
            }
        }
        tail
    });
    let (mut summary, mut artifacts, mut lines) = (String::new(), String::new(), Vec::new());
    if let Some(out) = child.stdout.take() {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if line.starts_with("STEP ") || line.starts_with("CHECK ") || line.starts_with("ERROR ")
            {
                println!("[{name}] {line}");
            }
            if ["STEP ", "VALUE ", "CHECK ", "ERROR "]
                .iter()
                .any(|p| line.starts_with(p))
            {
                lines.push(line.clone());
            }
            if let Some(rest) = line.split_once("RESULT ").map(|x| x.1) {
                summary = rest.splitn(3, ' ').nth(2).unwrap_or("").to_string();
            }
            if let Some(rest) = line.split_once("ARTIFACTS ").map(|x| x.1) {
                artifacts = rest.to_string();
            }
        }
    }
    let status = child.wait();
    let tail = err_thread.join().unwrap_or_default();
    let passed = status.map(|s| s.success()).unwrap_or(false);
    if !passed && summary.is_empty() {
        summary = tail.back().cloned().unwrap_or_default();
    }
    if !passed
        && !lines
            .iter()
            .any(|l| l.starts_with("CHECK FAIL") || l.starts_with("ERROR "))
    {
        // Died without saying why: its last log lines say it.
        lines.extend(tail.iter().map(|l| format!("ERROR {l}")));
    }
    Outcome {
        test: name.into(),
        passed,
        seconds: t0.elapsed().as_secs_f64(),
        summary,
        artifacts,
        lines,
    }
}

/// Runs the Rabbit suite, as many tests at once as there are cores.
///
/// Example: `rabbit-suite --shard 1/2 --junit target/junit.xml`.
#[derive(Parser)]
#[command(name = "rabbit-suite", about)]
struct Args {
    /// How many tests at once (default: the number of cores).
    #[arg(long)]
    jobs: Option<usize>,
    /// Run only this test (repeatable).
    #[arg(long)]
    only: Vec<String>,
    /// Expect every test run to fail (against a Rabbit lacking features).
    #[arg(long)]
    expect_fail: bool,
    /// Run shard K of N (1-based): a stable share for one CI job.
    #[arg(long)]
    shard: Option<Shard>,
    /// Write a JUnit XML report here.
    #[arg(long)]
    junit: Option<PathBuf>,
    /// Write the suite's HTML page here: every test, its result and
    /// duration, the first failure, a link to its bed's report.html.
    #[arg(long)]
    html: Option<PathBuf>,
    /// Print the names of the tests that would run, and exit.
    #[arg(long)]
    list: bool,
}

fn main() {
    let args = Args::parse();
    let jobs = args
        .jobs
        .unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        })
        .max(1);
    let (only, expect_fail) = (args.only.clone(), args.expect_fail);
    let bins = match test_binaries() {
        Ok(b) => b,
        Err(e) => {
            eprintln!("rabbit-suite: {e}");
            std::process::exit(1);
        }
    };
    let all: Vec<String> = bins.iter().map(|(n, _)| n.clone()).collect();
    let all: Vec<&str> = all.iter().map(String::as_str).collect();
    let queue: VecDeque<(String, PathBuf)> = bins
        .iter()
        .filter(|(n, _)| only.is_empty() || only.iter().any(|o| o.replace('_', "-") == *n))
        .filter(|(n, _)| args.shard.is_none_or(|s| s.has(n, &all)))
        .cloned()
        .collect();
    if args.list {
        for (n, _) in &queue {
            println!("{n}");
        }
        return;
    }
    if queue.is_empty() {
        eprintln!(
            "rabbit-suite: no test matches {only:?} (shard {:?})",
            args.shard
        );
        std::process::exit(2);
    }
    let total = queue.len();
    println!("Running {total} Rabbit tests, {jobs} at a time");
    let t0 = Instant::now();
    let queue = Arc::new(Mutex::new(queue));
    let results = Arc::new(Mutex::new(Vec::new()));
    let workers: Vec<_> = (0..jobs.min(total))
        .map(|_| {
            let (queue, results) = (Arc::clone(&queue), Arc::clone(&results));
            std::thread::spawn(move || loop {
                let next = queue.lock().map(|mut q| q.pop_front()).ok().flatten();
                let Some((name, exe)) = next else { break };
                let o = run_one(&name, &exe);
                println!(
                    "[{name}] {} in {:.1} s",
                    if o.passed { "PASS" } else { "FAIL" },
                    o.seconds
                );
                if let Ok(mut r) = results.lock() {
                    r.push(o);
                }
            })
        })
        .collect();
    for w in workers {
        let _ = w.join();
    }
    let mut results = results
        .lock()
        .map(|mut r| std::mem::take(&mut *r))
        .unwrap_or_default();
    results.sort_by(|a, b| a.test.cmp(&b.test));
    if let Some(path) = &args.junit {
        let written = carrot::suite::junit_xml("rabbit", &results).and_then(|xml| {
            std::fs::write(path, xml).map_err(|e| format!("write {}: {e}", path.display()))
        });
        match written {
            Ok(()) => println!("JUnit report: {}", path.display()),
            Err(e) => {
                eprintln!("rabbit-suite: {e}");
                std::process::exit(2);
            }
        }
    }
    if let Some(path) = &args.html {
        match carrot::suite::html(path, &results) {
            Ok(()) => println!("HTML report: {}", path.display()),
            Err(e) => {
                eprintln!("rabbit-suite: {e}");
                std::process::exit(2);
            }
        }
    }
    println!();
    println!(
        "{:<16} {:<6} {:>9}  {:<44} artifacts",
        "test", "result", "duration", "measured"
    );
    for o in &results {
        println!(
            "{:<16} {:<6} {:>7.1} s  {:<44} {}",
            o.test,
            if o.passed { "PASS" } else { "FAIL" },
            o.seconds,
            o.summary,
            o.artifacts
        );
    }
    let failed = results.iter().filter(|o| !o.passed).count();
    println!(
        "\nwall time {:.1} s, {jobs} at a time",
        t0.elapsed().as_secs_f64()
    );
    let ok = if expect_fail {
        // Phrased so that no CI log reader takes it for a failing run.
        let all_failed = failed == results.len();
        println!(
            "--expect-fail: {failed} of {} tests failed against a Rabbit without their feature{}",
            results.len(),
            if all_failed {
                ", as they should"
            } else {
                "; a test that should have failed passed"
            }
        );
        all_failed
    } else {
        println!("{} passed, {} failed", results.len() - failed, failed);
        failed == 0
    };
    std::process::exit(if ok { 0 } else { 1 });
}
