//! How a bed's links and segments join its machines' NICs: the plan
//! (checked before anything starts, with errors that name the link or
//! segment), then the wires (file descriptors QEMU gets, relays, hubs).
//!
//! - A node's link to a machine NIC: the node's tap (or its relay), as a
//!   one-machine bed always had.
//! - A segment (two machine NICs or more, nodes or not): a datagram
//!   socket pair per machine NIC, and a [`Hub`], the segment's switch in
//!   user space, between their far ends and the nodes' taps. Each machine
//!   NIC's port can be impaired both ways.
//! - A board's port: its host interface as a packet socket
//!   ([`crate::bed::board_wire`]), on a switch of two ports with its
//!   node's tap, or on its segment's switch, captured there.
//!
//! Nothing of this is in any network namespace: the wires are socket
//! pairs and the taps the nodes already have, so nothing is left on the
//! host (but a VLAN sub-interface a killed bed made for a board), and two
//! beds of one topology never meet.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixDatagram;

use crate::bed::board_wire::{self, BoardNics, OpenPort};
use crate::bed::machine::{MachineKind, MachineSpec};
use crate::bed::segment::Segment;
use crate::error::{Error, Result};
use crate::net::hub::Hub;
use crate::net::impair::{Direction, Impairment};
use crate::net::link::{Attach, Link};
use crate::net::Nodes;

/// What the far side of a machine's NIC is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Far {
    /// The node of link `i`.
    Node(usize),
    /// Segment `i` of the builder's.
    Segment(usize),
}

/// The checked plan: per machine, per NIC, its far side.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub nics: Vec<Vec<Far>>,
}

fn machine_index(machines: &[MachineSpec], name: &str, who: &str) -> Result<usize> {
    machines.iter().position(|m| m.name == name).ok_or_else(|| {
        let names: Vec<&str> = machines.iter().map(|m| m.name.as_str()).collect();
        Error::Config(format!(
            "{who}: no machine named {name:?} (the bed has {})",
            names.join(", ")
        ))
    })
}

/// Checks the links and segments against the machines, and numbers each
/// machine's NICs.
pub(crate) fn plan(machines: &[MachineSpec], links: &[Link], segments: &[Segment]) -> Result<Plan> {
    for (i, m) in machines.iter().enumerate() {
        if !crate::net::link::is_name(&m.name) {
            return Err(Error::Config(format!(
                "bad machine name {:?}: use 1 to 32 letters, digits, '-' or '_'",
                m.name
            )));
        }
        if machines[..i].iter().any(|o| o.name == m.name) {
            return Err(Error::Config(format!(
                "two machines are named {:?}: machine names must differ",
                m.name
            )));
        }
    }
    let mut used: Vec<Vec<Option<(Far, String)>>> = vec![Vec::new(); machines.len()];
    let mut take = |m: usize, nic: usize, far: Far, who: String| -> Result<()> {
        let slots = &mut used[m];
        if slots.len() <= nic {
            slots.resize(nic + 1, None);
        }
        if let Some((_, first)) = &slots[nic] {
            return Err(Error::Config(format!(
                "NIC {}:{nic} is used twice: by {first} and by {who}",
                machines[m].name
            )));
        }
        slots[nic] = Some((far, who));
        Ok(())
    };
    let mut next_dut_nic = 0;
    for (i, l) in links.iter().enumerate() {
        let who = format!("link {i} ({})", l.name_or_default(i));
        match &l.attach {
            Attach::NextDutNic => {
                if machines.is_empty() {
                    return Err(Error::Config(format!("{who}: the bed has no machine")));
                }
                take(0, next_dut_nic, Far::Node(i), who)?;
                next_dut_nic += 1;
            }
            Attach::Nic(m, nic) => {
                let m = machine_index(machines, m, &who)?;
                take(m, *nic, Far::Node(i), who)?;
            }
            Attach::Segment(s) => {
                if !segments.iter().any(|seg| seg.name() == s) {
                    return Err(Error::Config(format!(
                        "{who}: no segment named {s:?} (add it with the builder's .segment(..))"
                    )));
                }
            }
        }
    }
    for (si, s) in segments.iter().enumerate() {
        s.check()?;
        if segments[..si].iter().any(|o| o.name() == s.name()) {
            return Err(Error::Config(format!(
                "two segments are named {:?}: segment names must differ",
                s.name()
            )));
        }
        let nodes = links
            .iter()
            .filter(|l| l.attach == Attach::Segment(s.name().to_string()))
            .count();
        if s.ends().len() + nodes < 2 {
            return Err(Error::Config(format!(
                "segment {:?} has {} end(s): a segment joins at least two (machine NICs, \
                 or nodes with Link::on_segment)",
                s.name(),
                s.ends().len() + nodes
            )));
        }
        for (m, nic) in s.ends() {
            let who = format!("segment {:?}", s.name());
            let mi = machine_index(machines, m, &who)?;
            take(mi, *nic, Far::Segment(si), who)?;
        }
    }
    for (m, slots) in used.iter().enumerate() {
        if let MachineKind::Board(b) = &machines[m].kind {
            let down = slots.iter().flatten().find_map(|(far, who)| match far {
                Far::Node(i) if links[*i].down => Some(who),
                _ => None,
            });
            if let Some(who) = down {
                return Err(Error::Config(format!(
                    "{who} starts down, but it is on machine {} (board {}): a board's link \
                     cannot be taken down from here (that needs QEMU); start it up, and \
                     impair its node's link with loss 100% instead",
                    machines[m].name, b.name
                )));
            }
            if slots.len() > b.ports.len() {
                return Err(Error::Config(format!(
                    "machine {} (board {}) has {} port(s) in its `ports`, but the bed uses its \
                     NIC {}: cable more ports and list them, or use fewer NICs",
                    machines[m].name,
                    b.name,
                    b.ports.len(),
                    slots.len() - 1
                )));
            }
        }
    }
    let mut nics = Vec::new();
    for (m, slots) in used.into_iter().enumerate() {
        let mut fars = Vec::new();
        for (n, slot) in slots.into_iter().enumerate() {
            match slot {
                Some((far, _)) => fars.push(far),
                None => {
                    return Err(Error::Config(format!(
                        "machine {} has NICs after {n} but no NIC {n}: number each machine's \
                         NICs from 0 without gaps",
                        machines[m].name
                    )))
                }
            }
        }
        nics.push(fars);
    }
    Ok(Plan { nics })
}

/// The file descriptor one NIC's QEMU gets.
enum End {
    /// The node's tap or relay end (the node owns it).
    Node(usize),
    /// A datagram socket this bed owns.
    Own(OwnedFd),
    /// A board's port: no QEMU takes it; its host interface is on a
    /// switch with the node of link `node` (if on a link) or its segment.
    Board { node: Option<usize> },
}

/// A running segment: its switch, and which port is which machine NIC.
pub(crate) struct Wire {
    hub: Hub,
    /// (machine, NIC) of ports 0, 1, ...; the nodes' ports come after.
    machine_ports: Vec<(usize, usize)>,
}

/// The wires of a bed: every machine's NIC ends, and the segments.
pub(crate) struct Wiring {
    ends: Vec<Vec<End>>,
    /// By the builder's segment index.
    wires: Vec<Wire>,
    /// The switches between boards' ports and their nodes.
    board_links: Vec<Hub>,
    /// VLAN sub-interfaces made for boards' ports, removed at close.
    made: Vec<String>,
}

impl Wiring {
    /// Makes the segments' sockets, relays and hubs (the nodes exist),
    /// and opens the boards' ports. On an error, nothing made is left.
    pub(crate) fn wire(
        plan: &Plan,
        segments: &[Segment],
        links: &[Link],
        nodes: &Nodes,
        boards: &[BoardNics],
    ) -> Result<Wiring> {
        let mut made = Vec::new();
        match Wiring::wire_all(plan, segments, links, nodes, boards, &mut made) {
            Ok(mut w) => {
                w.made = made;
                Ok(w)
            }
            Err(e) => {
                if let Err(e2) = board_wire::remove_made(&made) {
                    log::warn!(target: "alpy::testbed", "after a failed start: {e2}");
                }
                Err(e)
            }
        }
    }

    fn wire_all(
        plan: &Plan,
        segments: &[Segment],
        links: &[Link],
        nodes: &Nodes,
        boards: &[BoardNics],
        made: &mut Vec<String>,
    ) -> Result<Wiring> {
        let board_of = |m: usize| boards.iter().find(|b| b.machine == m);
        let mut open_port = |m: usize, n: usize| -> Result<Option<OpenPort>> {
            let Some(b) = board_of(m) else {
                return Ok(None);
            };
            let (port, pcap) = b
                .ports
                .get(n)
                .ok_or_else(|| Error::Internal(format!("board {} has no port {n}", b.board)))?;
            let open = OpenPort::open(&b.board, n, port, pcap)?;
            made.extend(open.made.clone());
            Ok(Some(open))
        };
        let mut ends: Vec<Vec<Option<End>>> = Vec::new();
        let mut board_links = Vec::new();
        for (m, fars) in plan.nics.iter().enumerate() {
            let mut row = Vec::new();
            for (n, f) in fars.iter().enumerate() {
                let board = board_of(m).is_some();
                row.push(match f {
                    Far::Node(i) if !board => Some(End::Node(*i)),
                    Far::Node(i) => {
                        let port = open_port(m, n)?.ok_or_else(|| {
                            Error::Internal(format!("machine {m} is not a board"))
                        })?;
                        let node = nodes.node(*i)?;
                        let (fd, _) = node.dut_end().ok_or_else(|| {
                            Error::Internal(format!("node {} has no tap", node.name()))
                        })?;
                        let name = format!("{}-{n}", board_of(m).map_or("", |b| &b.board));
                        let ends = vec![
                            fd.try_clone_to_owned()
                                .map_err(|e| Error::io("dup a node's tap", e))?,
                            port.fd,
                        ];
                        board_links.push(Hub::start_captured(
                            ends,
                            &name,
                            vec![(1, port.capture)],
                        )?);
                        Some(End::Board { node: Some(*i) })
                    }
                    // Its segment's switch takes it below.
                    Far::Segment(_) if board => Some(End::Board { node: None }),
                    Far::Segment(_) => None,
                })
            }
            ends.push(row);
        }
        let mut wires = Vec::new();
        for (si, seg) in segments.iter().enumerate() {
            // Each machine NIC on the segment: QEMU's end here, the
            // segment's end into the wire.
            let mut far_ends = Vec::new();
            let mut captures = Vec::new();
            let mut machine_ports = Vec::new();
            for (m, fars) in plan.nics.iter().enumerate() {
                for (n, f) in fars.iter().enumerate() {
                    if *f != Far::Segment(si) {
                        continue;
                    }
                    if let Some(port) = open_port(m, n)? {
                        captures.push((far_ends.len(), port.capture));
                        far_ends.push(port.fd);
                    } else {
                        let (qemu, wire) = UnixDatagram::pair()
                            .map_err(|e| Error::io("create a segment's socket pair", e))?;
                        ends[m][n] = Some(End::Own(qemu.into()));
                        far_ends.push(OwnedFd::from(wire));
                    }
                    machine_ports.push((m, n));
                }
            }
            let seg_name = seg.name().to_string();
            for (i, l) in links.iter().enumerate() {
                if l.attach == Attach::Segment(seg_name.clone()) {
                    far_ends.push(nodes.node(i)?.tap_dup()?);
                }
            }
            log::debug!(target: "alpy::testbed", "segment {}: a switch of {} ports ({} machine NICs)",
                seg.name(), far_ends.len(), machine_ports.len());
            let wire = Wire {
                hub: Hub::start_captured(far_ends, seg.name(), captures)?,
                machine_ports,
            };
            wires.push(wire);
        }
        let ends = ends
            .into_iter()
            .map(|v| v.into_iter().collect::<Option<Vec<End>>>())
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| Error::Internal("a machine NIC was left unwired".into()))?;
        Ok(Wiring {
            ends,
            wires,
            board_links,
            made: Vec::new(),
        })
    }

    /// Machine `m`'s NICs as QEMU takes them: (fd, datagram socket?).
    pub(crate) fn fds(&self, m: usize, nodes: &Nodes) -> Result<Vec<(RawFd, bool)>> {
        let ends = self
            .ends
            .get(m)
            .ok_or_else(|| Error::Internal(format!("no wiring for machine {m}")))?;
        ends.iter()
            .map(|e| match e {
                End::Own(fd) => Ok((fd.as_raw_fd(), true)),
                End::Node(i) => {
                    let n = nodes.node(*i)?;
                    let (fd, dgram) = n
                        .dut_end()
                        .ok_or_else(|| Error::Internal(format!("node {} has no tap", n.name())))?;
                    Ok((fd.as_raw_fd(), dgram))
                }
                End::Board { .. } => Err(Error::Internal(format!(
                    "machine {m} is a board: no QEMU takes its NICs"
                ))),
            })
            .collect()
    }

    /// The link (node) at the far side of machine `m`'s NIC `nic`, if a
    /// node's link is there.
    pub(crate) fn node_of(&self, m: usize, nic: usize) -> Option<usize> {
        match self.ends.get(m)?.get(nic)? {
            End::Node(i) | End::Board { node: Some(i) } => Some(*i),
            End::Own(_) | End::Board { node: None } => None,
        }
    }

    /// Impairs machine `m`'s NIC `nic` on its segment:
    /// [`Direction::ToDut`] what the NIC receives, [`Direction::ToNode`]
    /// what it sends. `None` if that NIC is not on a segment (a node's
    /// link: its node impairs it).
    pub(crate) fn impair(
        &self,
        m: usize,
        nic: usize,
        dir: Direction,
        imp: &Impairment,
    ) -> Option<Result<()>> {
        self.wires.iter().find_map(|w| {
            let port = w.machine_ports.iter().position(|p| *p == (m, nic))?;
            Some(w.hub.set_impairment(port, dir, imp))
        })
    }

    /// Stops the switches, then removes the VLAN sub-interfaces made for
    /// boards; the first error.
    pub(crate) fn close(self) -> Result<()> {
        let mut first = None;
        let hubs = self
            .wires
            .into_iter()
            .map(|w| w.hub)
            .chain(self.board_links);
        for hub in hubs {
            if let Err(e) = hub.close() {
                first.get_or_insert(e);
            }
        }
        if let Err(e) = board_wire::remove_made(&self.made) {
            first.get_or_insert(e);
        }
        first.map_or(Ok(()), Err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Dut;

    fn m(name: &str) -> MachineSpec {
        MachineSpec {
            name: name.into(),
            kind: MachineKind::Vm(Box::new(Dut::kernel("vmlinuz", None))),
            tags: Vec::new(),
        }
    }

    fn err(machines: &[MachineSpec], links: &[Link], segs: &[Segment]) -> String {
        plan(machines, links, segs)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    }

    #[test]
    fn a_chain_numbers_each_machines_nics() {
        let ms = [m("r1"), m("r2")];
        let links = [
            Link::new().name("client").on("r1:0"),
            Link::new().name("server").on("r2:1"),
        ];
        let segs = [Segment::new("core").end("r1:1").end("r2:0")];
        let p = plan(&ms, &links, &segs).expect("plan");
        assert_eq!(p.nics[0], [Far::Node(0), Far::Segment(0)]);
        assert_eq!(p.nics[1], [Far::Segment(0), Far::Node(1)]);
    }

    #[test]
    fn one_machine_links_are_its_nics_in_order() {
        let p = plan(&[m("dut")], &[Link::new(), Link::new()], &[]).expect("plan");
        assert_eq!(p.nics[0], [Far::Node(0), Far::Node(1)]);
    }

    #[test]
    fn mistakes_are_named() {
        let ms = [m("r1"), m("r2")];
        let e = err(&ms, &[Link::new().on("r3:0")], &[]);
        assert!(
            e.contains("no machine named \"r3\"") && e.contains("r1, r2"),
            "{e}"
        );
        let e = err(
            &ms,
            &[Link::new().on("r1:0")],
            &[Segment::new("s").end("r1:0").end("r2:0")],
        );
        assert!(
            e.contains("NIC r1:0 is used twice") && e.contains("link 0"),
            "{e}"
        );
        let e = err(&ms, &[], &[Segment::new("s").end("r1:0")]);
        assert!(e.contains("has 1 end(s)"), "{e}");
        let e = err(&ms, &[Link::new().on("r1:1")], &[]);
        assert!(e.contains("no NIC 0"), "{e}");
        let e = err(&ms, &[Link::new().on_segment("lan")], &[]);
        assert!(e.contains("no segment named \"lan\""), "{e}");
        let e = err(&[m("a"), m("a")], &[], &[]);
        assert!(e.contains("two machines are named"), "{e}");
        let e = err(
            &ms,
            &[],
            &[
                Segment::new("s").end("r1:0").end("r2:0"),
                Segment::new("s").end("r1:1").end("r2:1"),
            ],
        );
        assert!(e.contains("two segments are named"), "{e}");
    }
}
