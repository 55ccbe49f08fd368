//! The Rabbit suite runner: builds the Rabbit tests, runs them (in
//! parallel, as many at once as the machine has cores), and prints a
//! summary table (test, result, duration, artifacts). Exits non-zero if any
//! test failed.
//!
//! ```text
//! rabbit-suite [--jobs N] [--only TEST]... [--expect-fail]
//! ```
//! `--expect-fail` inverts the verdict: every test run must fail (use it
//! with `RABBIT_SKIP=<feature>` to see that a test catches a missing
//! feature). Run it from the workspace (it calls cargo).

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Instant;

struct Outcome {
    test: String,
    passed: bool,
    seconds: f64,
    summary: String,
    artifacts: String,
}

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
            bins.push((name.replace('_', "-"), PathBuf::from(exe)));
        }
    }
    // Longest first, so that the workers finish together: warm-started
    // medians on this project's machines (rate-limit measures for 5 s,
    // firewall waits out a dropped connection).
    let expected = |name: &str| match name {
        "rate-limit" => 10,
        "firewall" => 9,
        "load-balancing" => 7,
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
                passed: false,
                seconds: 0.0,
                summary: format!("cannot run {}: {e}", exe.display()),
                artifacts: String::new(),
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
    let (mut summary, mut artifacts) = (String::new(), String::new());
    if let Some(out) = child.stdout.take() {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if line.starts_with("STEP ") || line.starts_with("CHECK ") || line.starts_with("ERROR ")
            {
                println!("[{name}] {line}");
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
    Outcome {
        test: name.into(),
        passed,
        seconds: t0.elapsed().as_secs_f64(),
        summary,
        artifacts,
    }
}

fn main() {
    let mut jobs = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let (mut only, mut expect_fail) = (Vec::new(), false);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--jobs" => {
                jobs = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(jobs)
                    .max(1)
            }
            "--only" => only.extend(args.next()),
            "--expect-fail" => expect_fail = true,
            _ => {
                eprintln!("usage: rabbit-suite [--jobs N] [--only TEST]... [--expect-fail]");
                std::process::exit(2);
            }
        }
    }
    let bins = match test_binaries() {
        Ok(b) => b,
        Err(e) => {
            eprintln!("rabbit-suite: {e}");
            std::process::exit(1);
        }
    };
    let queue: VecDeque<(String, PathBuf)> = bins
        .into_iter()
        .filter(|(n, _)| only.is_empty() || only.iter().any(|o| o.replace('_', "-") == *n))
        .collect();
    if queue.is_empty() {
        eprintln!("rabbit-suite: no test matches {only:?}");
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
