//! A test bed drawn: the DUT on the left, one node per link on the right,
//! each edge labelled with the DUT's NIC (`nic<i>`). As Graphviz DOT, for
//! users who lay graphs out themselves, and as SVG, drawn here: a
//! one-machine bed is a star, so no layout engine is needed, and every bed
//! writes `topology.svg` into its artifacts on any host. A bed of several
//! machines or with segments is drawn in columns instead
//! ([`crate::bed::graph_net`]).
//!
//! Relayed links are dashed, links that start down are grey and dotted,
//! impaired links name their impairment.

use svg::node::element::{Line, Rectangle, Text as TextElement};
use svg::node::Text;
use svg::Document;

use crate::bed::graph_net::{self, DrawnAttach, DrawnMachine, DrawnSegment};
use crate::bed::segment::Segment;
use crate::net::link::Attach;
use crate::net::{Direction, Link};

/// One link as drawn.
#[derive(Debug, Clone, PartialEq)]
pub struct DrawnLink {
    /// The link's (node's) name.
    pub name: String,
    /// The node's addresses.
    pub addrs: Vec<String>,
    /// Names of the node's apps.
    pub apps: Vec<String>,
    /// The link has a user-space relay.
    pub relay: bool,
    /// The link starts down.
    pub down: bool,
    /// Its impairment, in words (`delay 20 ms, loss 1% to_dut`).
    pub impairment: Option<String>,
    /// What the node is on.
    pub on: DrawnAttach,
}

/// A label at (`x`, `y`).
pub(crate) fn text(x: i64, y: i64, s: &str, size: u32, anchor: &str) -> TextElement {
    TextElement::new("")
        .set("x", x)
        .set("y", y)
        .set("font-family", "sans-serif")
        .set("font-size", size)
        .set("text-anchor", anchor)
        .add(Text::new(s))
}

/// A white SVG document of `width` x `height`.
pub(crate) fn canvas(width: i64, height: i64) -> Document {
    Document::new()
        .set("xmlns", "http://www.w3.org/2000/svg")
        .set("width", width)
        .set("height", height)
        .set("viewBox", (0, 0, width, height))
        .add(
            Rectangle::new()
                .set("width", "100%")
                .set("height", "100%")
                .set("fill", "white"),
        )
}

/// A node's box centred on `y`: its name, addresses and apps.
pub(crate) fn node_box(
    doc: Document,
    l: &DrawnLink,
    x: i64,
    y: i64,
    width: i64,
    colour: &str,
) -> Document {
    let lines: Vec<String> = l
        .addrs
        .iter()
        .cloned()
        .chain(l.apps.iter().map(|a| format!("app {a}")))
        .collect();
    let row = |n: usize| 14 * i64::try_from(n).unwrap_or(0);
    let box_h = 26 + row(lines.len());
    let top = y - box_h / 2;
    let mut doc = doc
        .add(
            Rectangle::new()
                .set("x", x)
                .set("y", top)
                .set("width", width)
                .set("height", box_h)
                .set("rx", 12)
                .set("fill", "#f6f6f6")
                .set("stroke", colour)
                .set("stroke-width", 1.5),
        )
        .add(text(x + 12, top + 18, &l.name, 13, "start"));
    for (j, line) in lines.iter().enumerate() {
        doc = doc.add(text(x + 12, top + 33 + row(j), line, 11, "start"));
    }
    doc
}

impl DrawnLink {
    /// The machine NIC it is on, if it is on one.
    fn nic(&self) -> Option<usize> {
        match &self.on {
            DrawnAttach::Nic(_, n) => Some(*n),
            DrawnAttach::Segment(_) => None,
        }
    }
}

/// A bed to draw.
#[derive(Debug, Clone, PartialEq)]
pub struct Drawing {
    /// The bed's name.
    pub name: String,
    /// Its links (with nodes), in order.
    pub links: Vec<DrawnLink>,
    /// Its machines, when it has several (empty: the one DUT).
    pub machines: Vec<DrawnMachine>,
    /// Its segments.
    pub segments: Vec<DrawnSegment>,
}

impl Drawing {
    /// The drawing of a bed named `name` with `links`; `apps[i]` names the
    /// apps of link `i` (missing entries: none).
    ///
    /// ```
    /// use alpy::internal::graph::Drawing;
    /// let d = Drawing::new("demo", &[alpy::Link::new().name("client").node_addr("10.0.0.2/24")], vec![]);
    /// assert!(d.dot().contains(r#"client\n10.0.0.2/24"#));
    /// assert!(d.svg().contains("<svg"));
    /// ```
    pub fn new(name: &str, links: &[Link], apps: Vec<Vec<String>>) -> Drawing {
        Drawing::network(name, &[], links, &[], apps)
    }

    /// The drawing of a bed of `machines` (name, roles; empty: the one
    /// DUT), its `links` and `segments`.
    ///
    /// ```
    /// use alpy::internal::graph::Drawing;
    /// use alpy::{Link, Segment};
    /// let m = |n: &str| (n.to_string(), vec!["routers".to_string()]);
    /// let d = Drawing::network(
    ///     "chain",
    ///     &[m("r1"), m("r2")],
    ///     &[Link::new().name("client").on("r1:0")],
    ///     &[Segment::new("core").end("r1:1").end("r2:0")],
    ///     vec![],
    /// );
    /// assert!(d.dot().contains("m1 -- s0 [label=\"nic0\"]"));
    /// assert!(d.svg().contains("core") && d.svg().contains("r2"));
    /// ```
    pub fn network(
        name: &str,
        machines: &[(String, Vec<String>)],
        links: &[Link],
        segments: &[Segment],
        apps: Vec<Vec<String>>,
    ) -> Drawing {
        let first = machines.first().map_or("dut", |(n, _)| n.as_str());
        let mut next_nic = 0;
        let links: Vec<DrawnLink> = links
            .iter()
            .enumerate()
            .map(|(i, l)| DrawnLink {
                on: match &l.attach {
                    Attach::NextDutNic => {
                        next_nic += 1;
                        DrawnAttach::Nic(first.to_string(), next_nic - 1)
                    }
                    Attach::Nic(m, n) => DrawnAttach::Nic(m.clone(), *n),
                    Attach::Segment(s) => DrawnAttach::Segment(s.clone()),
                },
                name: l.name_or_default(i),
                addrs: l.addrs.iter().map(ToString::to_string).collect(),
                apps: apps.get(i).cloned().unwrap_or_default(),
                relay: l.relay,
                down: l.down,
                impairment: l.impairment.as_ref().map(|(d, imp)| {
                    let mut parts = Vec::new();
                    if let Some(v) = imp.delay {
                        parts.push(format!("delay {} ms", v.as_secs_f64() * 1000.0));
                    }
                    if let Some(v) = imp.jitter {
                        parts.push(format!("jitter {} ms", v.as_secs_f64() * 1000.0));
                    }
                    if let Some(v) = imp.loss_percent {
                        parts.push(format!("loss {v}%"));
                    }
                    if let Some(v) = imp.rate_kbit {
                        parts.push(format!("rate {v} kbit/s"));
                    }
                    let dir = match d {
                        Direction::ToDut => "to the DUT",
                        Direction::ToNode => "to the node",
                        Direction::Both => "both ways",
                    };
                    format!("{} {dir}", parts.join(", "))
                }),
            })
            .collect();
        let star = machines.len() <= 1
            && segments.is_empty()
            && links
                .iter()
                .all(|l| matches!(&l.on, DrawnAttach::Nic(m, _) if m == first));
        Drawing {
            name: name.to_string(),
            links,
            machines: if star {
                Vec::new()
            } else {
                machines
                    .iter()
                    .map(|(name, tags)| DrawnMachine {
                        name: name.clone(),
                        tags: tags.clone(),
                    })
                    .collect()
            },
            segments: segments
                .iter()
                .map(|s| DrawnSegment {
                    name: s.name().to_string(),
                    ends: s.ends().to_vec(),
                })
                .collect(),
        }
    }

    /// Graphviz DOT (`dot -Tpng` renders it).
    pub fn dot(&self) -> String {
        if !self.machines.is_empty() {
            return graph_net::dot(self);
        }
        // Quoted for DOT; line breaks become DOT's `\n`.
        let q = |s: &str| {
            let e = s
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n");
            format!("\"{e}\"")
        };
        let mut out = format!("graph {} {{\n  rankdir=LR;\n", q(&self.name));
        out.push_str(&format!(
            "  dut [shape=box, style=bold, label={}];\n",
            q(&format!("DUT\n{}", self.name))
        ));
        for (i, l) in self.links.iter().enumerate() {
            let mut label = l.name.clone();
            for a in &l.addrs {
                label.push('\n');
                label.push_str(a);
            }
            for app in &l.apps {
                label.push_str(&format!("\napp {app}"));
            }
            out.push_str(&format!("  n{i} [shape=ellipse, label={}];\n", q(&label)));
            let mut edge = format!("nic{}", l.nic().unwrap_or(i));
            if let Some(imp) = &l.impairment {
                edge.push_str(&format!("\n{imp}"));
            }
            if l.down {
                edge.push_str("\n(down)");
            }
            let style = match (l.relay, l.down) {
                (_, true) => ", style=dotted, color=grey",
                (true, false) => ", style=dashed",
                _ => "",
            };
            out.push_str(&format!("  dut -- n{i} [label={}{style}];\n", q(&edge)));
        }
        out.push_str("}\n");
        out
    }

    /// A standalone SVG image.
    pub fn svg(&self) -> String {
        if !self.machines.is_empty() {
            return graph_net::svg(self);
        }
        const ROW: i64 = 90;
        const NODE_X: i64 = 420;
        const NODE_W: i64 = 240;
        const DUT_W: i64 = 150;
        let n = i64::try_from(self.links.len())
            .unwrap_or(i64::MAX / ROW)
            .max(1);
        let height = 40 + n * ROW;
        let width = NODE_X + NODE_W + 20;
        let dut_h = (n * ROW - 30).max(60);
        let dut_y = 20 + (n * ROW - dut_h) / 2;
        let mut doc = canvas(width, height)
            .add(
                Rectangle::new()
                    .set("x", 20)
                    .set("y", dut_y)
                    .set("width", DUT_W)
                    .set("height", dut_h)
                    .set("rx", 6)
                    .set("fill", "#eef3fb")
                    .set("stroke", "#1f3b73")
                    .set("stroke-width", 2),
            )
            .add(text(95, dut_y + dut_h / 2 - 4, "DUT", 16, "middle"))
            .add(text(95, dut_y + dut_h / 2 + 16, &self.name, 12, "middle"));
        for (i, l) in self.links.iter().enumerate() {
            let y = 20 + i64::try_from(i).unwrap_or(0) * ROW + ROW / 2;
            let (colour, dash) = match (l.relay, l.down) {
                (_, true) => ("#999999", "2,4"),
                (true, false) => ("#333333", "8,4"),
                _ => ("#333333", "none"),
            };
            doc = doc.add(
                Line::new()
                    .set("x1", 20 + DUT_W)
                    .set("y1", y)
                    .set("x2", NODE_X)
                    .set("y2", y)
                    .set("stroke", colour)
                    .set("stroke-width", 2)
                    .set("stroke-dasharray", dash),
            );
            let mut edge = format!("nic{}", l.nic().unwrap_or(i));
            if l.down {
                edge.push_str(" (down)");
            }
            doc = doc.add(text(20 + DUT_W + 8, y - 6, &edge, 12, "start").set(
                "data-capture",
                crate::bed::testbed::capture_file("dut", l.nic().unwrap_or(i)),
            ));
            if let Some(imp) = &l.impairment {
                doc = doc.add(text(20 + DUT_W + 8, y + 16, imp, 10, "start"));
            }
            doc = node_box(doc, l, NODE_X, y, NODE_W, colour);
        }
        doc.to_string()
    }
}
