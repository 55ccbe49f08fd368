//! nat-chain: two Rabbits in a chain (node0, Rabbit a, Rabbit b, node1);
//! both route, and b masquerades what leaves through its eth1. node1's
//! link capture (b's NIC 1) shows b's address as the source, never
//! node0's. Fails without masquerading (`RABBIT_SKIP=nat`).

use alpy::pcap::Filter;
use carrot::{node_addr, rabbit_addr, traffic};

#[test]
fn nat_chain() {
    carrot::run_chain("nat-chain", |rabbit, r| {
        rabbit.configure_on("a", "forward", "forward.sh", &[])?;
        rabbit.configure_on("b", "forward", "forward.sh", &[])?;
        rabbit.configure_on("b", "nat", "nat.sh", &["eth1"])?;
        r.step("HTTP from node0 through a and b to a server on node1");
        let bed = rabbit.bed();
        let server = traffic::http_backend(bed.node("node1")?, "server", &[80])?;
        let answers =
            traffic::http_get_many(bed.node("node0")?, &format!("http://{}/", node_addr(1)), 3)?;
        server.close()?;
        r.check(
            answers.iter().all(|a| a == "server"),
            "node0 reaches the server on node1 through both Rabbits",
        );
        r.step("Read node1's link capture (Rabbit b's NIC 1)");
        let cap = bed.machine("b")?.capture(1)?;
        let to_server = Filter::new().ip_dst(node_addr(1)).dst_port(80);
        let from_b = cap.count(to_server.clone().ip_src(rabbit_addr(1)));
        let from_node0 = cap.count(to_server.clone().ip_src(node_addr(0)));
        r.value("frames_from_rabbit_b", from_b);
        r.value("frames_from_node0", from_node0);
        r.check(
            from_b > 0,
            "the server sees Rabbit b's address as the source",
        );
        r.check(
            from_node0 == 0,
            "node0's own address never reaches node1's link",
        );
        Ok(())
    });
}
