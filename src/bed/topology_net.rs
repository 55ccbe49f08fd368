//! A topology file's network: machine names, the links that join
//! machines' NICs (`endpoints`), and the nodes' `endpoint` and `segment`,
//! checked with the file's line and column.
//!
//! ```toml
//! [[machine]]
//! name = "r1"
//! kernel = "{cache}/guest/vmlinuz"
//! tags = ["routers"]
//!
//! [[machine]]
//! name = "r2"
//! kernel = "{cache}/guest/vmlinuz"
//!
//! [[link]]                 # a node on r1's NIC 0
//! name = "client"
//! endpoint = "r1:0"
//! addrs = ["10.0.1.2/24"]
//!
//! [[link]]                 # r1's NIC 1 to r2's NIC 0, no node
//! name = "core"
//! endpoints = ["r1:1", "r2:0"]
//!
//! [[link]]                 # a LAN: two routers' NICs, and nodes
//! name = "lan"
//! endpoints = ["r1:2", "r2:1"]
//!
//! [[link]]
//! name = "pc"
//! segment = "lan"
//! addrs = ["10.0.9.10/24"]
//! ```

use toml::Spanned;

use crate::bed::segment::Segment;
use crate::bed::topology_file::{LinkSection, Place, TopologyFile};
use crate::error::Result;
use crate::net::link::{is_name, parse_endpoint};

/// Checks machine names, endpoints and segments, each error at its place.
pub(super) fn check(file: &TopologyFile, place: &Place<'_>) -> Result<()> {
    if file.dut.is_none() && file.machines.is_empty() {
        return Err(crate::error::Error::Config(format!(
            "{}: a topology needs a [dut] or [[machine]] sections",
            place.path.display()
        )));
    }
    if let Some(n) = file.dut.as_ref().and_then(|d| d.name.as_ref()) {
        return Err(place.spanned(n, "[dut] is the machine \"dut\": it takes no name"));
    }
    let mut names: Vec<String> = file.dut.iter().map(|_| "dut".to_string()).collect();
    for (i, m) in file.machines.iter().enumerate() {
        let Some(n) = &m.name else {
            return Err(crate::error::Error::Config(format!(
                "{}: [[machine]] number {} has no name: add name = \"r{}\"",
                place.path.display(),
                i + 1,
                i + 1
            )));
        };
        if !is_name(n.get_ref()) {
            return Err(place.spanned(
                n,
                &format!(
                    "bad machine name {:?}: use 1 to 32 letters, digits, '-' or '_'",
                    n.get_ref()
                ),
            ));
        }
        if names.contains(n.get_ref()) {
            return Err(place.spanned(n, &format!("duplicate machine name {:?}", n.get_ref())));
        }
        names.push(n.get_ref().clone());
        for t in &m.tags {
            check_role(t, place)?;
        }
    }
    if let Some(d) = &file.dut {
        for t in &d.tags {
            check_role(t, place)?;
        }
    }
    let segments: Vec<String> = file
        .links
        .iter()
        .enumerate()
        .filter(|(_, l)| l.endpoints.is_some())
        .map(|(i, l)| link_name(l, i))
        .collect();
    let mut used: Vec<(String, usize)> = Vec::new();
    let mut endpoint = |e: &Spanned<String>| -> Result<()> {
        let (m, nic) =
            parse_endpoint(e.get_ref()).map_err(|err| place.spanned(e, &err.to_string()))?;
        if !names.contains(&m) {
            return Err(place.spanned(
                e,
                &format!(
                    "no machine named {m:?} (the machines: {})",
                    names.join(", ")
                ),
            ));
        }
        if used.contains(&(m.clone(), nic)) {
            return Err(place.spanned(
                e,
                &format!("NIC {m}:{nic} is already on another link: a NIC is on one link"),
            ));
        }
        used.push((m, nic));
        Ok(())
    };
    for l in &file.links {
        if let Some(ends) = &l.endpoints {
            let joining = file
                .links
                .iter()
                .filter(|n| {
                    n.segment.as_ref().map(|s| s.get_ref()) == l.name.as_ref().map(|n| n.get_ref())
                })
                .count();
            if ends.get_ref().len() + joining < 2 {
                return Err(place.spanned(
                    ends,
                    "a link joins at least two endpoints (machine NICs like \"r1:0\", or nodes \
                     with segment = \"...\")",
                ));
            }
            if let Some(k) = node_key(l) {
                return Err(place.spanned(
                    ends,
                    &format!(
                        "a link with endpoints has no node of its own, so no {k}: put the node \
                         in a [[link]] with segment = \"{}\"",
                        l.name.as_ref().map_or("", |n| n.get_ref().as_str())
                    ),
                ));
            }
            for e in ends.get_ref() {
                endpoint(e)?;
            }
        }
        if let (Some(e), Some(_)) = (&l.endpoint, &l.segment) {
            return Err(place.spanned(e, "a node is on a machine NIC or on a segment, not both"));
        }
        if let Some(e) = &l.endpoint {
            endpoint(e)?;
        }
        if let Some(s) = &l.segment {
            if !segments.contains(s.get_ref()) {
                return Err(place.spanned(
                    s,
                    &format!(
                        "no link named {:?} with endpoints (the segments: {})",
                        s.get_ref(),
                        if segments.is_empty() {
                            "none".to_string()
                        } else {
                            segments.join(", ")
                        }
                    ),
                ));
            }
        }
    }
    Ok(())
}

fn check_role(t: &Spanned<String>, place: &Place<'_>) -> Result<()> {
    if is_name(t.get_ref()) {
        return Ok(());
    }
    Err(place.spanned(
        t,
        &format!(
            "bad role {:?}: use 1 to 32 letters, digits, '-' or '_'",
            t.get_ref()
        ),
    ))
}

/// The first key of a node that a link with `endpoints` sets.
fn node_key(l: &LinkSection) -> Option<&'static str> {
    [
        (!l.addrs.is_empty(), "addrs"),
        (l.gateway.is_some() || l.gateway6.is_some(), "gateway"),
        (!l.routes.is_empty(), "routes"),
        (l.mac.is_some(), "mac"),
        (!l.apps.is_empty(), "apps"),
        (!l.tags.is_empty(), "tags"),
        (l.endpoint.is_some(), "endpoint"),
        (l.segment.is_some(), "segment"),
        (l.relay, "relay"),
        (l.impair.is_some(), "impair"),
        (l.up.is_some(), "up"),
        (l.nic.is_some(), "nic"),
    ]
    .into_iter()
    .find_map(|(set, k)| set.then_some(k))
}

fn link_name(l: &LinkSection, i: usize) -> String {
    l.name
        .as_ref()
        .map_or_else(|| format!("link{i}"), |n| n.get_ref().clone())
}

/// The segments the file's links with `endpoints` make.
pub(super) fn segments(file: &TopologyFile) -> Vec<Segment> {
    file.links
        .iter()
        .enumerate()
        .filter_map(|(i, l)| {
            let ends = l.endpoints.as_ref()?;
            Some(
                ends.get_ref()
                    .iter()
                    .fold(Segment::new(&link_name(l, i)), |s, e| s.end(e.get_ref())),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::bed::topology::Topology;

    const TWO: &str = "[[machine]]\nname = \"r1\"\nkernel = \"/proc/self/exe\"\nprompt = \"# \"\ntags = [\"routers\"]\n\
                       [[machine]]\nname = \"r2\"\nkernel = \"/proc/self/exe\"\n";

    fn err(text: &str) -> String {
        Topology::parse(Path::new("/nonexistent/t.toml"), text)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_else(|| "no error".into())
    }

    #[test]
    fn a_chain_and_a_lan_give_machines_links_and_segments() {
        let text = format!(
            "{TWO}[[link]]\nname = \"client\"\nendpoint = \"r1:0\"\naddrs = [\"10.0.1.2/24\"]\n\
             [[link]]\nname = \"core\"\nendpoints = [\"r1:1\", \"r2:0\"]\n\
             [[link]]\nname = \"lan\"\nendpoints = [\"r1:2\", \"r2:1\"]\n\
             [[link]]\nname = \"pc\"\nsegment = \"lan\"\n"
        );
        let t = Topology::parse(Path::new("/x/t.toml"), &text).unwrap();
        assert_eq!(t.link_count(), 2, "client and pc have nodes");
        let b = t.builder().unwrap();
        let names: Vec<String> = b.machine_specs().into_iter().map(|m| m.name).collect();
        assert_eq!(names, ["r1", "r2"]);
        assert_eq!(b.machine_specs()[0].tags, ["routers"]);
        let segs: Vec<&str> = b.segments.iter().map(|s| s.name()).collect();
        assert_eq!(segs, ["core", "lan"]);
        let plan = crate::bed::wiring::plan(&b.machine_specs(), &b.links, &b.segments).unwrap();
        assert_eq!(plan.nics[0].len(), 3);
        assert_eq!(plan.nics[1].len(), 2);
    }

    #[test]
    fn network_mistakes_are_named_at_their_place() {
        // An unknown machine.
        let e = err(&format!("{TWO}[[link]]\nendpoint = \"r3:0\"\n"));
        assert!(
            e.contains("t.toml:10:12") && e.contains("no machine named \"r3\""),
            "{e}"
        );
        // A NIC used twice / an endpoint on two links.
        let e = err(&format!(
            "{TWO}[[link]]\nendpoints = [\"r1:0\", \"r2:0\"]\n[[link]]\nendpoint = \"r1:0\"\n"
        ));
        assert!(
            e.contains("t.toml:12:12") && e.contains("NIC r1:0 is already on another link"),
            "{e}"
        );
        let e = err(&format!(
            "{TWO}[[link]]\nendpoints = [\"r1:0\", \"r1:0\"]\n"
        ));
        assert!(
            e.contains("t.toml:10:22") && e.contains("already on another link"),
            "{e}"
        );
        // Fewer than two endpoints.
        let e = err(&format!(
            "{TWO}[[link]]\nname = \"x\"\nendpoints = [\"r1:0\"]\n"
        ));
        assert!(
            e.contains("t.toml:11:13") && e.contains("at least two endpoints"),
            "{e}"
        );
        // A bad endpoint, a node's keys on a machines-only link.
        let e = err(&format!("{TWO}[[link]]\nendpoint = \"r1\"\n"));
        assert!(
            e.contains("t.toml:10:12") && e.contains("like \"r1:0\""),
            "{e}"
        );
        let e = err(&format!(
            "{TWO}[[link]]\nendpoints = [\"r1:0\", \"r2:0\"]\naddrs = [\"10.0.0.1/24\"]\n"
        ));
        assert!(e.contains("no node of its own, so no addrs"), "{e}");
        // A segment nobody defined; a machine without a name, or twice.
        let e = err(&format!("{TWO}[[link]]\nsegment = \"lan\"\n"));
        assert!(
            e.contains("t.toml:10:11") && e.contains("no link named \"lan\""),
            "{e}"
        );
        let e = err("[[machine]]\nkernel = \"/proc/self/exe\"\n");
        assert!(e.contains("has no name"), "{e}");
        let e = err(&format!(
            "{TWO}[[machine]]\nname = \"r1\"\nkernel = \"/proc/self/exe\"\n"
        ));
        assert!(
            e.contains("t.toml:10:8") && e.contains("duplicate machine name"),
            "{e}"
        );
        // A later machine has its own prompt; the warm start is the bed's.
        let t = Topology::parse(
            Path::new("/x/t.toml"),
            &format!("{TWO}prompt = \"$ \"\nlogin = {{ user = \"admin\" }}\n"),
        )
        .unwrap();
        let specs = t.builder().unwrap().machine_specs();
        assert_eq!(
            specs[0].kind.vm().unwrap().access().unwrap().1.as_deref(),
            Some("# ")
        );
        let (login, prompt) = specs[1].kind.vm().unwrap().access().unwrap();
        assert_eq!(
            (login.unwrap().user, prompt.as_deref()),
            ("admin".to_string(), Some("$ "))
        );
        let e = err(&format!("{TWO}warm = \"v1\"\n"));
        assert!(e.contains("machine r2 sets warm"), "{e}");
        // Warm on the first machine of several: each machine its own
        // snapshot, which start() accepts.
        let two_warm = TWO.replacen("prompt", "warm = \"v1\"\nprompt", 1);
        let b = Topology::parse(Path::new("/x/t.toml"), &two_warm)
            .unwrap()
            .builder()
            .unwrap();
        assert!(
            matches!(
                b.warm.as_ref().map(|w| &w.prepare),
                Some(crate::bed::warm::Preparation::EachMachine(_))
            ),
            "warm on the first of two machines is per machine"
        );
        b.check_warm(&b.machine_specs()).unwrap();
        let e = err("name = \"x\"\n");
        assert!(e.contains("needs a [dut] or [[machine]]"), "{e}");
    }
}
