//! Beds of several machines, measured.
//!
//! `chain`: N test-guest routers in a chain (N = 1, 2, 4, 8 by default),
//! a node at each end, N+1 links; for each N, the median over `--runs` of
//! harness setup (start() up to the machines paused), cold boot (every
//! console at its prompt), the end-to-end ping through all N routers,
//! close, and total; and whether anything was left. With `--warm`, each
//! machine starts from its own snapshot (built by a first, unmeasured
//! run): `setup_s` is then the restore, and `boot_s` the resume until
//! every machine's shell answers.
//!
//! `segment`: one machine and K nodes (50 by default) on one segment: set
//! up, torn down, and what was left.
//!
//! `hub`: what the segment's switch in user space carries: iperf3 (TCP,
//! 5 s) between two nodes on a segment of their own, and from the client
//! to the server through one test-guest router (both of its NICs on
//! segments), medians of `--runs`.
//!
//! ```text
//! cargo run --release --example bench_network [-- chain --n 1,2,4,8 --runs 3 [--warm]]
//! cargo run --release --example bench_network -- segment --nodes 50 --runs 3
//! cargo run --release --example bench_network -- hub --runs 3
//! ```

use std::time::{Duration, Instant};

use alpy::{Commands, Dut, Link, Segment, TestBed, TestBedBuilder};

const BOOT: Duration = Duration::from_secs(600);

fn arg(args: &[String], flag: &str, default: &str) -> String {
    args.iter()
        .position(|a| a == flag)
        .and_then(|i| args.get(i + 1))
        .map_or(default, String::as_str)
        .to_string()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

fn guest() -> (std::path::PathBuf, std::path::PathBuf) {
    let dir = alpy::internal::cache::cache_dir()
        .expect("a cache directory")
        .join("guest");
    (dir.join("vmlinuz"), dir.join("initrd.img"))
}

fn router(ips: &str) -> Dut {
    let (k, i) = guest();
    Dut::kernel(k, Some(i))
        .append(&format!(
            "console=ttyS0,115200 quiet panic=-1 alpy.forward=1 alpy.ip={ips}"
        ))
        .tag("routers")
}

fn base(name: &str) -> TestBedBuilder {
    TestBed::builder(name)
        .prompt("guest# ")
        .poweroff(alpy::PowerOff::Console("poweroff -f".into()))
        .console_timeout(BOOT)
}

/// The chain the machine tests use too.
#[path = "../tests/common/chain.rs"]
mod chain;

/// client - r1 - ... - rn - server; link k is 10.0.k.0/24.
fn chain(n: usize) -> TestBedBuilder {
    chain::chain(base(&format!("chain{n}")), n, router)
}

fn bench_chain(ns: &[usize], runs: usize, warm: bool) -> alpy::Result<()> {
    let start = |n: usize| {
        let b = chain(n);
        if warm {
            let w = alpy::WarmStart::per_machine(&format!("bench_network {n}"), |_| Ok(()))
                .boot_timeout(BOOT);
            b.warm_start(w).start()
        } else {
            b.start()
        }
    };
    println!(
        "{:>3} {:>9} {:>9} {:>9} {:>9} {:>9}  left",
        "N", "setup_s", "boot_s", "ping_s", "close_s", "total_s"
    );
    for &n in ns {
        let (mut setup, mut boot, mut ping, mut close, mut total) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let mut left_any = 0;
        if warm {
            // The snapshots, built once, unmeasured.
            let mut bed = start(n)?;
            bed.boot(BOOT)?;
            bed.close()?;
        }
        for _ in 0..runs {
            let t0 = Instant::now();
            let mut bed = start(n)?;
            setup.push(t0.elapsed().as_secs_f64());
            let t1 = Instant::now();
            bed.boot(BOOT)?;
            for m in bed.machine_names() {
                bed.machine(&m)?.shell()?.succeed("true")?;
            }
            boot.push(t1.elapsed().as_secs_f64());
            let t2 = Instant::now();
            bed.node("client")?.wait_until_succeeds(
                &format!("ping -c 1 -W 1 10.0.{n}.2"),
                Duration::from_secs(60),
            )?;
            ping.push(t2.elapsed().as_secs_f64());
            let t3 = Instant::now();
            let left = bed.close_checked()?;
            close.push(t3.elapsed().as_secs_f64());
            total.push(t0.elapsed().as_secs_f64());
            left_any += usize::from(!left.is_empty());
        }
        println!(
            "{n:>3} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>9.3}  {left_any}",
            median(setup),
            median(boot),
            median(ping),
            median(close),
            median(total)
        );
    }
    Ok(())
}

fn bench_segment(nodes: usize, runs: usize) -> alpy::Result<()> {
    println!("one machine and {nodes} nodes on one segment, {runs} runs");
    let (mut up, mut down) = (Vec::new(), Vec::new());
    let mut left_any = 0;
    for _ in 0..runs {
        let mut b = base("segment")
            .machine("r1", router("eth0=10.1.0.1/16"))
            .segment(Segment::new("lan").end("r1:0"));
        for i in 0..nodes {
            b = b.link(
                Link::new()
                    .name(&format!("n{i}"))
                    .on_segment("lan")
                    .node_addr(format!("10.1.{}.{}/16", 1 + i / 250, 1 + i % 250)),
            );
        }
        let t0 = Instant::now();
        let bed = b.start()?;
        up.push(t0.elapsed().as_secs_f64());
        let t1 = Instant::now();
        let left = bed.close_checked()?;
        down.push(t1.elapsed().as_secs_f64());
        left_any += usize::from(!left.is_empty());
    }
    println!(
        "set up {:.3} s, torn down {:.3} s (medians), runs with leftovers: {left_any}",
        median(up),
        median(down)
    );
    Ok(())
}

/// iperf3's received rate in Mbit/s, from its `-J` output.
fn iperf_mbit(json: &str) -> f64 {
    serde_json::from_str::<serde_json::Value>(json)
        .ok()
        .and_then(|v| v["end"]["sum_received"]["bits_per_second"].as_f64())
        .map_or(f64::NAN, |b| b / 1e6)
}

fn iperf(bed: &TestBed, server_node: &str, client_node: &str, addr: &str) -> alpy::Result<f64> {
    let server = bed
        .node(server_node)?
        .spawn_app(&alpy::App::tools(["iperf3", "-s"]).name("iperf-server"))?;
    bed.node(client_node)?
        .wait_for_open_port(addr, 5201, Duration::from_secs(30))?;
    let out = bed
        .node(client_node)?
        .succeed(&format!("iperf3 -c {addr} -t 5 -J"))?;
    let _ = server.close();
    let mbit = iperf_mbit(&out);
    if mbit.is_nan() {
        eprintln!("iperf3 said: {out}");
    }
    Ok(mbit)
}

fn bench_hub(runs: usize) -> alpy::Result<()> {
    let (mut nodes_only, mut routed) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        let mut bed = base("hub")
            .machine("r1", router("eth0=10.0.0.2/24,eth1=10.0.1.1/24"))
            .segment(Segment::new("left").end("r1:0"))
            .segment(Segment::new("right").end("r1:1"))
            .segment(Segment::new("lan"))
            .link(
                Link::new()
                    .name("client")
                    .on_segment("left")
                    .node_addr("10.0.0.1/24")
                    .gateway("10.0.0.2"),
            )
            .link(
                Link::new()
                    .name("server")
                    .on_segment("right")
                    .node_addr("10.0.1.2/24")
                    .gateway("10.0.1.1"),
            )
            .link(
                Link::new()
                    .name("a")
                    .on_segment("lan")
                    .node_addr("10.2.0.1/24"),
            )
            .link(
                Link::new()
                    .name("b")
                    .on_segment("lan")
                    .node_addr("10.2.0.2/24"),
            )
            .start()?;
        bed.boot(BOOT)?;
        nodes_only.push(iperf(&bed, "b", "a", "10.2.0.2")?);
        bed.node("client")?
            .wait_until_succeeds("ping -c 1 -W 1 10.0.1.2", Duration::from_secs(60))?;
        routed.push(iperf(&bed, "server", "client", "10.0.1.2")?);
        bed.close()?;
    }
    println!(
        "iperf3 TCP, medians of {runs}: two nodes through the switch {:.0} Mbit/s; \
         client to server through one TCG router (two switches) {:.0} Mbit/s",
        median(nodes_only),
        median(routed)
    );
    Ok(())
}

fn main() -> alpy::Result<()> {
    alpy::logging::init();
    let args: Vec<String> = std::env::args().collect();
    let runs: usize = arg(&args, "--runs", "3").parse().unwrap_or(3);
    if args.iter().any(|a| a == "hub") {
        return bench_hub(runs);
    }
    if args.iter().any(|a| a == "segment") {
        let nodes = arg(&args, "--nodes", "50").parse().unwrap_or(50);
        return bench_segment(nodes, runs);
    }
    let ns: Vec<usize> = arg(&args, "--n", "1,2,4,8")
        .split(',')
        .filter_map(|s| s.parse().ok())
        .collect();
    bench_chain(&ns, runs, args.iter().any(|a| a == "--warm"))
}
