//! Benchmark of the tools containers that node verbs run in: eight nodes
//! created, the first `execute` on each (one after the other, as a test
//! does), a second round, and close. Prints medians of 5 runs.
//!
//! ```text
//! cargo run --release --example bench_tools
//! ```

use alpy::Commands;
use std::time::Instant;

use alpy::internal::docker::Docker;
use alpy::internal::run::RunId;
use alpy::net::{Link, NodeOptions, Nodes};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    alpy::logging::init();
    let docker = Docker::connect()?;
    let links: Vec<Link> = (0..8)
        .map(|i| Link::new().node_addr(format!("192.168.{i}.2/24")))
        .collect();
    let runs = 5;
    let (mut create, mut first, mut again, mut close) = (vec![], vec![], vec![], vec![]);
    for _ in 0..runs {
        let run = RunId::new();
        let t0 = Instant::now();
        let nodes = Nodes::create(&docker, &run, &links, &NodeOptions::default())?;
        create.push(ms(t0));
        // What a test does next: configure the DUT for a while.
        std::thread::sleep(std::time::Duration::from_millis(1500));
        let t1 = Instant::now();
        for n in nodes.iter() {
            n.succeed("true")?;
        }
        first.push(ms(t1));
        let t2 = Instant::now();
        for n in nodes.iter() {
            n.succeed("true")?;
        }
        again.push(ms(t2));
        let t3 = Instant::now();
        nodes.close()?;
        close.push(ms(t3));
    }
    println!(
        "8 nodes: created {:.0} ms; first verb on each (after 1.5 s) {:.0} ms; \
         again {:.0} ms; closed {:.0} ms (medians of {runs} runs)",
        median(create),
        median(first),
        median(again),
        median(close)
    );
    Ok(())
}
