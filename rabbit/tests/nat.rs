//! nat: Rabbit masquerades node0's traffic to node1; the server side sees
//! Rabbit's address as the source (checked in node1's link pcap). Fails
//! without masquerading (`RABBIT_SKIP=nat`).

use alpy::pcap::Filter;
use carrot::{node_addr, rabbit_addr, traffic};

#[test]
fn nat() {
    carrot::run("nat", 2, |rabbit, r| {
        rabbit.configure("forward", "forward.sh", &[])?;
        rabbit.configure("nat", "nat.sh", &["eth1"])?;
        r.step("HTTP from node0 to a server on node1");
        let server = traffic::http_backend(rabbit.bed().node(1)?, "server", &[80])?;
        let answers = traffic::http_get_many(
            rabbit.bed().node(0)?,
            &format!("http://{}/", node_addr(1)),
            3,
        )?;
        server.close()?;
        r.check(
            answers.iter().all(|a| a == "server"),
            "node0 reaches the server on node1",
        );
        r.step("Read node1's link capture");
        let cap1 = rabbit.bed().capture(1)?;
        let to_server = Filter::new().ip_dst(node_addr(1)).dst_port(80);
        let from_rabbit = cap1.count(to_server.clone().ip_src(rabbit_addr(1)));
        let from_node0 = cap1.count(to_server.clone().ip_src(node_addr(0)));
        r.value("frames_from_rabbit", from_rabbit);
        r.value("frames_from_node0", from_node0);
        r.check(
            from_rabbit > 0,
            "the server sees Rabbit's address as the source",
        );
        r.check(from_node0 == 0, "node0's own address never reaches link1");
        Ok(())
    });
}
