//! A chain of `n` routers, client - r1 - ... - rn - server, shared by the
//! machine tests and `examples/bench_network.rs`: link k is 10.0.k.0/24
//! (left end .1, right end .2), each router routes to the client's and
//! the server's subnets (the test guest's `alpy.route=`).

use alpy::{Dut, Link, Segment, TestBedBuilder};

/// `b` with the chain's machines (made by `router` from their
/// `alpy.ip=` value and routes), wires and end nodes.
pub fn chain(mut b: TestBedBuilder, n: usize, router: impl Fn(&str) -> Dut) -> TestBedBuilder {
    for i in 1..=n {
        let mut routes = Vec::new();
        if i < n {
            routes.push(format!("10.0.{n}.0/24=10.0.{i}.2"));
        }
        if i > 1 {
            routes.push(format!("10.0.0.0/24=10.0.{}.1", i - 1));
        }
        let mut ips = format!("eth0=10.0.{}.2/24,eth1=10.0.{i}.1/24", i - 1);
        if !routes.is_empty() {
            ips.push_str(&format!(" alpy.route={}", routes.join(",")));
        }
        b = b.machine(&format!("r{i}"), router(&ips));
        if i > 1 {
            b = b.segment(
                Segment::new(&format!("l{}", i - 1))
                    .end(&format!("r{}:1", i - 1))
                    .end(&format!("r{i}:0")),
            );
        }
    }
    b.link(
        Link::new()
            .name("client")
            .on("r1:0")
            .node_addr("10.0.0.1/24")
            .gateway("10.0.0.2"),
    )
    .link(
        Link::new()
            .name("server")
            .on(&format!("r{n}:1"))
            .node_addr(format!("10.0.{n}.2/24"))
            .gateway(format!("10.0.{n}.1")),
    )
}
