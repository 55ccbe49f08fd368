//! Benchmark of the network side: two nodes created with taps, addresses
//! and gateways, then closed; in direct (root) and helper (no root) modes.
//! Prints medians of 10 runs.
//!
//! ```text
//! cargo run --release --example bench_nodes
//! ```

use std::time::Instant;

use alpy::internal::docker::Docker;
use alpy::internal::netns::{has_net_caps, NetMode};
use alpy::internal::run::RunId;
use alpy::net::{Link, NodeOptions, Nodes};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    alpy::logging::init();
    let docker = Docker::connect()?;
    let links = [
        Link::new()
            .node_addr("192.168.1.2/24")
            .gateway("192.168.1.1"),
        Link::new()
            .node_addr("192.168.2.2/24")
            .gateway("192.168.2.1"),
    ];
    let mut modes = vec![NetMode::Helper];
    if has_net_caps() {
        modes.insert(0, NetMode::Direct);
    }
    for mode in modes {
        let (mut create, mut close) = (Vec::new(), Vec::new());
        for _ in 0..10 {
            let run = RunId::new();
            let opts = NodeOptions {
                mode: Some(mode),
                log_dir: None,
                image: None,
                fixed_macs: false,
            };
            let t0 = Instant::now();
            let nodes = Nodes::create(&docker, &run, &links, &opts)?;
            create.push(t0.elapsed().as_secs_f64() * 1e3);
            let t1 = Instant::now();
            nodes.close()?;
            close.push(t1.elapsed().as_secs_f64() * 1e3);
        }
        println!(
            "{mode:?}: two nodes created with taps, addresses, gateways: median {:.0} ms; closed: median {:.0} ms (10 runs)",
            median(create),
            median(close)
        );
    }
    Ok(())
}
