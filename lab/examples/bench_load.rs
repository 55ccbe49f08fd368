//! Load on a real alpy-lab server over real HTTP: 20 clients run 1,000
//! create → heartbeat → delete cycles in all (50 each), three times; each
//! run prints p50 and p99 latency per endpoint and its errors, then the
//! medians over the runs.
//!
//! ```text
//! cargo run --release -p alpy-lab --example bench_load [-- CLIENTS CYCLES RUNS]
//! ```
//!
//! It builds and starts its own `alpy-lab serve` on a loopback port with a
//! fresh state directory (SQLite, WAL), and removes it afterwards. No lab
//! is stood up: this measures the session API and its queue.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const ENDPOINTS: [&str; 3] = [
    "POST /session",
    "POST /session/heartbeat",
    "DELETE /session/{id}",
];

fn main() -> Result<(), String> {
    let arg = |i: usize, default: usize| {
        std::env::args()
            .nth(i)
            .map(|a| {
                a.parse()
                    .map_err(|_| format!("argument {i}: {a:?} is not a number"))
            })
            .unwrap_or(Ok(default))
    };
    let (clients, cycles, runs) = (arg(1, 20)?, arg(2, 1000)?, arg(3, 3)?);
    let server_bin = build_server()?;
    let dir = std::env::temp_dir().join(format!("alpy-lab-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    let result = bench(&server_bin, &dir, clients, cycles, runs);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// `alpy-lab` in this profile's target directory, built now.
fn build_server() -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| format!("find this example: {e}"))?;
    // target/<profile>/examples/bench_load → target/<profile>/alpy-lab
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .ok_or("this example is not in a target directory")?;
    let mut cmd = Command::new(env!("CARGO"));
    cmd.args(["build", "-q", "-p", "alpy-lab", "--bin", "alpy-lab"]);
    if profile_dir.ends_with("release") {
        cmd.arg("--release");
    }
    let st = cmd.status().map_err(|e| format!("run cargo: {e}"))?;
    if !st.success() {
        return Err(format!("cargo build alpy-lab: {st}"));
    }
    Ok(profile_dir.join("alpy-lab"))
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_server(bin: &Path, dir: &Path) -> Result<(Server, String, String), String> {
    let config = dir.join("lab.toml");
    std::fs::write(
        &config,
        "listen = \"127.0.0.1:0\"\nstate_dir = \"state\"\ndocker_images = []\n[limits]\nmax_labs = 1\n",
    )
    .map_err(|e| format!("write {}: {e}", config.display()))?;
    let out = Command::new(bin)
        .args(["token", "create", "bench", "--config"])
        .arg(&config)
        .output()
        .map_err(|e| format!("run {}: {e}", bin.display()))?;
    if !out.status.success() {
        return Err(format!(
            "token create: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let token = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let log = std::fs::File::create(dir.join("server.log")).map_err(|e| e.to_string())?;
    let mut child = Command::new(bin)
        .args(["serve", "--config"])
        .arg(&config)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .map_err(|e| format!("start {}: {e}", bin.display()))?;
    let mut line = String::new();
    let stdout = child.stdout.take().ok_or("the server has no stdout")?;
    let server = Server(child);
    BufReader::new(stdout)
        .read_line(&mut line)
        .map_err(|e| format!("read the server's address: {e}"))?;
    let url = line
        .trim()
        .strip_prefix("alpy-lab: listening on ")
        .ok_or_else(|| format!("the server printed {line:?}, not its address"))?
        .to_string();
    Ok((server, url, token))
}

/// One client's cycles: latencies (seconds) per endpoint, and errors.
fn client(url: &str, token: &str, cycles: usize) -> ([Vec<f64>; 3], Vec<String>) {
    let http = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("an HTTP client");
    let mut lat: [Vec<f64>; 3] = Default::default();
    let mut errors = Vec::new();
    let mut timed = |i: usize, req: reqwest::blocking::RequestBuilder, want: u16| {
        let t0 = Instant::now();
        let r = req.send();
        lat[i].push(t0.elapsed().as_secs_f64());
        match r {
            Ok(r) if r.status().as_u16() == want => r.text().ok(),
            Ok(r) => {
                errors.push(format!("{}: {}", ENDPOINTS[i], r.status()));
                None
            }
            Err(e) => {
                errors.push(format!("{}: {e}", ENDPOINTS[i]));
                None
            }
        }
    };
    for _ in 0..cycles {
        let body = timed(
            0,
            http.post(format!("{url}/session")).bearer_auth(token),
            201,
        );
        let Some(id) = body
            .and_then(|b| serde_json::from_str::<serde_json::Value>(&b).ok())
            .and_then(|v| v["session_id"].as_str().map(str::to_string))
        else {
            continue;
        };
        let hb = http
            .post(format!("{url}/session/heartbeat"))
            .header("X-Session-ID", &id);
        timed(1, hb, 204);
        timed(2, http.delete(format!("{url}/session/{id}")), 204);
    }
    (lat, errors)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    percentile(&v, 0.5)
}

fn bench(bin: &Path, dir: &Path, clients: usize, cycles: usize, runs: usize) -> Result<(), String> {
    let (_server, url, token) = start_server(bin, dir)?;
    println!("alpy-lab at {url}: {clients} clients, {cycles} create/heartbeat/delete cycles, {runs} runs");
    let mut per_run: Vec<[(f64, f64); 3]> = Vec::new();
    let mut all_errors = 0;
    for run in 1..=runs {
        let t0 = Instant::now();
        let handles: Vec<_> = (0..clients)
            .map(|c| {
                let (url, token) = (url.clone(), token.clone());
                let n = cycles / clients + usize::from(c < cycles % clients);
                std::thread::spawn(move || client(&url, &token, n))
            })
            .collect();
        let mut lat: [Vec<f64>; 3] = Default::default();
        let mut errors = Vec::new();
        for h in handles {
            let (l, e) = h.join().map_err(|_| "a client thread panicked")?;
            for (all, mine) in lat.iter_mut().zip(l) {
                all.extend(mine);
            }
            errors.extend(e);
        }
        let wall = t0.elapsed().as_secs_f64();
        let mut row = [(0.0, 0.0); 3];
        println!("run {run}: {wall:.2} s, {} errors", errors.len());
        for (i, l) in lat.iter_mut().enumerate() {
            l.sort_by(f64::total_cmp);
            row[i] = (percentile(l, 0.5) * 1e3, percentile(l, 0.99) * 1e3);
            println!(
                "  {:<26} n={:<5} p50 {:>7.2} ms  p99 {:>7.2} ms",
                ENDPOINTS[i],
                l.len(),
                row[i].0,
                row[i].1
            );
        }
        for e in errors.iter().take(5) {
            println!("  error: {e}");
        }
        all_errors += errors.len();
        per_run.push(row);
    }
    println!("median of {runs} runs:");
    for (i, name) in ENDPOINTS.iter().enumerate() {
        println!(
            "  {:<26} p50 {:>7.2} ms  p99 {:>7.2} ms",
            name,
            median(per_run.iter().map(|r| r[i].0).collect()),
            median(per_run.iter().map(|r| r[i].1).collect())
        );
    }
    println!("errors: {all_errors}");
    if all_errors > 0 {
        return Err(format!(
            "{all_errors} requests failed; see {}",
            dir.join("server.log").display()
        ));
    }
    Ok(())
}
