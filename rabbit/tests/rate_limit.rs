//! rate-limit: Rabbit limits traffic from node0 to node1 to 1 Mbit/s (tc);
//! iperf3 measures between 0.9 and 1.1 Mbit/s. Fails without the limit
//! (`RABBIT_SKIP=rate-limit`).

use carrot::{node_addr, traffic};

#[test]
fn rate_limit() {
    carrot::run("rate-limit", 2, |rabbit, r| {
        rabbit.configure("forward", "forward.sh", &[])?;
        rabbit.configure("rate-limit", "rate-limit.sh", &["eth1", "1mbit"])?;
        r.step("iperf3 from node0 to node1 through Rabbit");
        let server = traffic::iperf3_server(rabbit.bed().node(1)?)?;
        let res = traffic::iperf3_client(rabbit.bed().node(0)?, node_addr(1), 5)?;
        server.close()?;
        let mbps = res.received_bps / 1e6;
        r.value("received_mbit_s", format!("{mbps:.3}"));
        r.value("retransmits", res.retransmits);
        r.check(
            (0.9..=1.1).contains(&mbps),
            "throughput between 0.9 and 1.1 Mbit/s",
        );
        Ok(())
    });
}
