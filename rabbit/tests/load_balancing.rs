//! load-balancing: HTTP requests from node0 to Rabbit are spread over two
//! backends (node1, node2), each serving its own name: over 20 requests
//! both answer, neither more than 15 times. Fails without the balancer
//! (`RABBIT_SKIP=load-balancing`).

use carrot::{node_addr, rabbit_addr, traffic};

#[test]
fn load_balancing() {
    carrot::run("load-balancing", 3, |rabbit, r| {
        rabbit.configure("forward", "forward.sh", &[])?;
        r.step("Start HTTP backends on node1 and node2");
        let b1 = traffic::http_backend(rabbit.bed().node(1)?, "backend1", &[80])?;
        let b2 = traffic::http_backend(rabbit.bed().node(2)?, "backend2", &[80])?;
        let listen = format!("{}:80", rabbit_addr(0));
        let (be1, be2) = (
            format!("{}:80", node_addr(1)),
            format!("{}:80", node_addr(2)),
        );
        rabbit.configure("load-balancing", "load-balancer.sh", &[&listen, &be1, &be2])?;
        r.step("20 HTTP requests from node0 to Rabbit");
        let answers = traffic::http_get_many(
            rabbit.bed().node(0)?,
            &format!("http://{}/", rabbit_addr(0)),
            20,
        )?;
        let n1 = answers.iter().filter(|a| *a == "backend1").count();
        let n2 = answers.iter().filter(|a| *a == "backend2").count();
        let errors = answers.iter().filter(|a| a.starts_with("ERROR")).count();
        r.value("backend1", n1);
        r.value("backend2", n2);
        r.value("errors", errors);
        r.check(n1 + n2 == 20, "all 20 requests answered by a backend");
        r.check(n1 > 0 && n2 > 0, "both backends answer");
        r.check(
            n1 <= 15 && n2 <= 15,
            "neither backend answers more than 15 times",
        );
        b1.close()?;
        b2.close()?;
        Ok(())
    });
}
