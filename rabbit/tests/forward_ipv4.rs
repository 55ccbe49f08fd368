//! forward-ipv4: node0 reaches node1 through Rabbit; the pcaps show the TTL
//! decremented by one. Fails when Rabbit does not forward
//! (`RABBIT_SKIP=forward`).

use alpy::pcap::Filter;
use carrot::{node_addr, traffic};

#[test]
fn forward_ipv4() {
    carrot::run("forward-ipv4", 2, |rabbit, r| {
        rabbit.configure("forward", "forward.sh", &[])?;
        r.step("Ping node1 from node0 through Rabbit");
        let out = traffic::ping(rabbit.bed().node(0)?, node_addr(1), 3)?;
        let text = out.stdout_str();
        let received = text
            .lines()
            .find_map(|l| l.split(", ").find(|p| p.ends_with(" received")))
            .and_then(|p| p.split_whitespace().next())
            .and_then(|n| n.parse::<u32>().ok())
            .unwrap_or(0);
        r.value("echo_replies", received);
        r.check(received == 3, "node0 gets 3 echo replies from node1");

        r.step("Read the link captures");
        let cap0 = rabbit.bed().capture(0)?;
        let cap1 = rabbit.bed().capture(1)?;
        let req = Filter::new()
            .ip_src(node_addr(0))
            .ip_dst(node_addr(1))
            .icmp_type(8);
        let ttl0: Vec<u8> = cap0.filter(&req).filter_map(|f| f.ttl).collect();
        let ttl1: Vec<u8> = cap1.filter(&req).filter_map(|f| f.ttl).collect();
        r.value("ttl_link0", format!("{ttl0:?}"));
        r.value("ttl_link1", format!("{ttl1:?}"));
        r.check(ttl0.len() == 3, "3 echo requests on link0");
        r.check(ttl1.len() == 3, "3 echo requests forwarded to link1");
        r.check(
            ttl0.iter().zip(&ttl1).all(|(a, b)| *b + 1 == *a),
            "the TTL drops by one through Rabbit",
        );
        // Every suite run powers Rabbit off once with the ACPI button.
        r.step("Power Rabbit off with the ACPI button");
        rabbit.power_off()
    });
}
