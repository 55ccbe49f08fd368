//! firewall: Rabbit forwards TCP 80 but drops TCP 8080 from node0 to node1;
//! curl shows it, and node1's link pcap has no frame to 8080. Fails
//! without the rule (`RABBIT_SKIP=firewall`).

use alpy::pcap::Filter;
use carrot::{node_addr, traffic};

#[test]
fn firewall() {
    carrot::run("firewall", 2, |rabbit, r| {
        rabbit.configure("forward", "forward.sh", &[])?;
        rabbit.configure("firewall", "firewall.sh", &["8080"])?;
        r.step("HTTP servers on node1, ports 80 and 8080");
        let server = traffic::http_backend(rabbit.bed().node(1)?, "server", &[80, 8080])?;
        let node0 = rabbit.bed().node(0)?;
        let p80 = traffic::http_get_many(node0, &format!("http://{}:80/", node_addr(1)), 1)?;
        let p8080 = traffic::http_get_many(node0, &format!("http://{}:8080/", node_addr(1)), 1)?;
        server.close()?;
        r.value("port80", p80.join("|"));
        r.value("port8080", p8080.join("|"));
        r.check(p80 == ["server"], "TCP 80 is forwarded");
        r.check(
            p8080.iter().all(|a| a.starts_with("ERROR")),
            "TCP 8080 is dropped",
        );
        let cap1 = rabbit.bed().capture(1)?;
        let n = cap1.count(Filter::new().dst_port(8080));
        r.value("frames_to_8080_on_link1", n);
        r.check(n == 0, "no frame to port 8080 reaches link1");
        Ok(())
    });
}
