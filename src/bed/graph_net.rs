//! A bed of several machines (or with segments) drawn: machines in the
//! left column, segments in the middle, nodes on the right; each edge
//! labelled with the machine's NIC. As DOT and as SVG, like the star
//! drawing of a one-machine bed ([`crate::bed::graph`]).

use svg::node::element::{Line, Rectangle};

use crate::bed::graph::{canvas, node_box, text, Drawing};
use crate::bed::testbed::capture_file;

/// A machine as drawn.
#[derive(Debug, Clone, PartialEq)]
pub struct DrawnMachine {
    /// Its name.
    pub name: String,
    /// Its roles.
    pub tags: Vec<String>,
}

/// A segment as drawn: the machine NICs on it (nodes say which segment
/// they are on).
#[derive(Debug, Clone, PartialEq)]
pub struct DrawnSegment {
    /// Its name.
    pub name: String,
    /// (machine, NIC) on it.
    pub ends: Vec<(String, usize)>,
}

/// Where a drawn node is.
#[derive(Debug, Clone, PartialEq)]
pub enum DrawnAttach {
    /// On a machine's NIC.
    Nic(String, usize),
    /// On a segment.
    Segment(String),
}

fn quote(s: &str) -> String {
    let e = s
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n");
    format!("\"{e}\"")
}

/// DOT of a network drawing.
pub(crate) fn dot(d: &Drawing) -> String {
    let mut out = format!("graph {} {{\n  rankdir=LR;\n", quote(&d.name));
    for (i, m) in d.machines.iter().enumerate() {
        let mut label = m.name.clone();
        if !m.tags.is_empty() {
            label.push_str(&format!("\n[{}]", m.tags.join(", ")));
        }
        out.push_str(&format!(
            "  m{i} [shape=box, style=bold, label={}];\n",
            quote(&label)
        ));
    }
    let machine = |name: &str| d.machines.iter().position(|m| m.name == name);
    for (i, s) in d.segments.iter().enumerate() {
        out.push_str(&format!(
            "  s{i} [shape=hexagon, label={}];\n",
            quote(&s.name)
        ));
        for (m, nic) in &s.ends {
            if let Some(mi) = machine(m) {
                out.push_str(&format!("  m{mi} -- s{i} [label=\"nic{nic}\"];\n"));
            }
        }
    }
    for (i, l) in d.links.iter().enumerate() {
        let mut label = l.name.clone();
        for a in &l.addrs {
            label.push('\n');
            label.push_str(a);
        }
        out.push_str(&format!(
            "  n{i} [shape=ellipse, label={}];\n",
            quote(&label)
        ));
        match &l.on {
            DrawnAttach::Nic(m, nic) => {
                if let Some(mi) = machine(m) {
                    out.push_str(&format!("  m{mi} -- n{i} [label=\"nic{nic}\"];\n"));
                }
            }
            DrawnAttach::Segment(s) => {
                if let Some(si) = d.segments.iter().position(|x| &x.name == s) {
                    out.push_str(&format!("  s{si} -- n{i};\n"));
                }
            }
        }
    }
    out.push_str("}\n");
    out
}

/// A standalone SVG of a network drawing: three columns, rows spread
/// evenly, straight edges.
pub(crate) fn svg(d: &Drawing) -> String {
    const ROW: i64 = 80;
    const MACHINE_X: i64 = 20;
    const MACHINE_W: i64 = 150;
    const SEG_X: i64 = 260;
    const SEG_W: i64 = 130;
    const NODE_X: i64 = 480;
    const NODE_W: i64 = 220;
    let count = |n: usize| i64::try_from(n).unwrap_or(i64::MAX / ROW);
    let rows = count(d.machines.len())
        .max(count(d.segments.len()))
        .max(count(d.links.len()))
        .max(1);
    let height = 40 + rows * ROW;
    let width = NODE_X + NODE_W + 20;
    // Row centre of item `i` of `n` in a column, spread over the height.
    let y_of = |i: usize, n: usize| -> i64 {
        let slot = (rows * ROW) / count(n).max(1);
        20 + count(i) * slot + slot / 2
    };
    let line = |x1: i64, y1: i64, x2: i64, y2: i64| {
        Line::new()
            .set("x1", x1)
            .set("y1", y1)
            .set("x2", x2)
            .set("y2", y2)
            .set("stroke", "#333333")
            .set("stroke-width", 2)
    };
    let mut doc = canvas(width, height);
    let machine_y = |name: &str| {
        d.machines
            .iter()
            .position(|m| m.name == name)
            .map(|i| y_of(i, d.machines.len()))
    };
    let segment_y = |name: &str| {
        d.segments
            .iter()
            .position(|s| s.name == name)
            .map(|i| y_of(i, d.segments.len()))
    };
    // Edges first, so boxes sit on top of them.
    for (i, s) in d.segments.iter().enumerate() {
        let sy = y_of(i, d.segments.len());
        for (m, nic) in &s.ends {
            if let Some(my) = machine_y(m) {
                doc = doc.add(line(MACHINE_X + MACHINE_W, my, SEG_X, sy)).add(
                    text(
                        MACHINE_X + MACHINE_W + 6,
                        my - 6,
                        &format!("nic{nic}"),
                        11,
                        "start",
                    )
                    .set("data-capture", capture_file(m, *nic)),
                );
            }
        }
    }
    for (i, l) in d.links.iter().enumerate() {
        let ny = y_of(i, d.links.len());
        match &l.on {
            DrawnAttach::Nic(m, nic) => {
                if let Some(my) = machine_y(m) {
                    doc = doc.add(line(MACHINE_X + MACHINE_W, my, NODE_X, ny)).add(
                        text(
                            MACHINE_X + MACHINE_W + 6,
                            my + 14,
                            &format!("nic{nic}"),
                            11,
                            "start",
                        )
                        .set("data-capture", capture_file(m, *nic)),
                    );
                }
            }
            DrawnAttach::Segment(s) => {
                if let Some(sy) = segment_y(s) {
                    doc = doc.add(line(SEG_X + SEG_W, sy, NODE_X, ny));
                }
            }
        }
    }
    for (i, m) in d.machines.iter().enumerate() {
        let y = y_of(i, d.machines.len());
        doc = doc
            .add(
                Rectangle::new()
                    .set("x", MACHINE_X)
                    .set("y", y - 28)
                    .set("width", MACHINE_W)
                    .set("height", 56)
                    .set("rx", 6)
                    .set("fill", "#eef3fb")
                    .set("stroke", "#1f3b73")
                    .set("stroke-width", 2),
            )
            .add(text(MACHINE_X + MACHINE_W / 2, y, &m.name, 15, "middle"));
        if !m.tags.is_empty() {
            doc = doc.add(text(
                MACHINE_X + MACHINE_W / 2,
                y + 16,
                &m.tags.join(", "),
                10,
                "middle",
            ));
        }
    }
    for (i, s) in d.segments.iter().enumerate() {
        let y = y_of(i, d.segments.len());
        doc = doc
            .add(
                Rectangle::new()
                    .set("x", SEG_X)
                    .set("y", y - 16)
                    .set("width", SEG_W)
                    .set("height", 32)
                    .set("rx", 16)
                    .set("fill", "#fff7e6")
                    .set("stroke", "#a86b00")
                    .set("stroke-width", 1.5),
            )
            .add(text(SEG_X + SEG_W / 2, y + 5, &s.name, 12, "middle"));
    }
    for (i, l) in d.links.iter().enumerate() {
        let y = y_of(i, d.links.len());
        doc = node_box(doc, l, NODE_X, y, NODE_W, "#333333");
    }
    doc.to_string()
}
