//! The report's links: each capture file's frames by protocol, a
//! frames-per-second plot over the run (sampled, so a long capture does
//! not grow the page), its first and last frame on the bed's clock.

use std::path::Path;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::pcap::Frame;
use crate::report::model::round;

/// Points of a plot, at most.
const PLOT_POINTS: usize = 120;
/// The plot's size in the page.
const PLOT_W: f64 = 360.0;
const PLOT_H: f64 = 48.0;

/// A capture file, summed up.
#[derive(Debug, Serialize)]
pub(crate) struct LinkReport {
    /// The file's name (`link0.pcap`, `r2-nic1.pcap`).
    pub file: String,
    /// The machine whose NIC it is.
    pub machine: String,
    pub frames: usize,
    pub protocols: Vec<(String, usize)>,
    /// Seconds on the bed's clock.
    pub first_t: Option<f64>,
    pub last_t: Option<f64>,
    /// SVG polyline points of frames per second.
    pub plot: String,
    pub peak_fps: f64,
    pub error: Option<String>,
}

/// Every capture of `dir`, read (one thread each: a long test's files
/// take tens of ms), its stamps as in the file.
pub(crate) fn read_captures(dir: &Path) -> Result<Vec<(String, Result<Summary>)>> {
    let mut files: Vec<String> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(format!("read {}", dir.display()), e))?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".pcap"))
        .collect();
    files.sort_by_key(|f| sort_key(f));
    Ok(std::thread::scope(|scope| {
        let jobs: Vec<_> = files
            .into_iter()
            .map(|file| {
                scope.spawn(move || {
                    let summary = summarise(&dir.join(&file));
                    (file, summary)
                })
            })
            .collect();
        jobs.into_iter().filter_map(|j| j.join().ok()).collect()
    }))
}

/// The links of the page: each capture's stamps moved by its machine's
/// offset (`offsets`), then onto the bed's clock (`start_unix`).
pub(crate) fn link_reports(
    captures: Vec<(String, Result<Summary>)>,
    start_unix: f64,
    offsets: &[(String, f64)],
    duration: f64,
) -> Vec<LinkReport> {
    captures
        .into_iter()
        .map(|(file, summary)| {
            let machine = machine_of(&file);
            let offset = offsets
                .iter()
                .rev()
                .find(|(m, _)| *m == machine)
                .map_or(0.0, |(_, o)| *o);
            match summary {
                Ok(s) => s.report(file, machine, offset - start_unix, duration),
                Err(e) => LinkReport {
                    file,
                    machine,
                    frames: 0,
                    protocols: Vec::new(),
                    first_t: None,
                    last_t: None,
                    plot: String::new(),
                    peak_fps: 0.0,
                    error: Some(e.to_string()),
                },
            }
        })
        .collect()
}

/// `link2.pcap` before `link10.pcap`.
fn sort_key(file: &str) -> (String, usize) {
    let stem = file.trim_end_matches(".pcap");
    let digits = stem.len() - stem.trim_end_matches(|c: char| c.is_ascii_digit()).len();
    let (head, n) = stem.split_at(stem.len() - digits);
    (head.to_string(), n.parse().unwrap_or(0))
}

/// The machine of a capture file (see `capture_file`).
fn machine_of(file: &str) -> String {
    match file.rsplit_once("-nic") {
        Some((m, _)) => m.to_string(),
        None => "dut".into(),
    }
}

/// A capture's counts, read frame by frame (no frame is kept: a long
/// test's captures do not fill the memory).
pub(crate) struct Summary {
    /// Stamps as in the file, seconds since the epoch.
    times: Vec<f64>,
    protocols: Vec<(String, usize)>,
}

impl Summary {
    fn report(mut self, file: String, machine: String, shift: f64, duration: f64) -> LinkReport {
        for t in &mut self.times {
            *t += shift;
        }
        let (plot, peak_fps) = plot(&self.times, duration);
        LinkReport {
            file,
            machine,
            frames: self.times.len(),
            protocols: self.protocols,
            first_t: self.times.first().map(|t| round(*t)),
            last_t: self.times.last().map(|t| round(*t)),
            plot,
            peak_fps,
            error: None,
        }
    }
}

/// Reads `path` as [`crate::pcap::Capture::open`] does (a frame cut
/// short at the end is not there yet).
fn summarise(path: &Path) -> Result<Summary> {
    let mut times = Vec::new();
    let mut counts: std::collections::HashMap<String, usize> = Default::default();
    crate::pcap::each_frame(path, |frame| {
        times.push(frame.timestamp.as_secs_f64());
        *counts.entry(protocol(&frame)).or_default() += 1;
    })?;
    let mut protocols: Vec<(String, usize)> = counts.into_iter().collect();
    protocols.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    Ok(Summary { times, protocols })
}

/// A frame's protocol, as a reader names it.
fn protocol(f: &Frame) -> String {
    if f.arp.is_some() || f.ethertype == Some(0x0806) {
        return "ARP".into();
    }
    let port = |p: u16| f.src_port == Some(p) || f.dst_port == Some(p);
    match (f.ethertype, f.protocol) {
        (Some(0x0800 | 0x86dd), Some(p)) => {
            let v6 = f.ethertype == Some(0x86dd);
            match p {
                1 => "ICMP".into(),
                58 => "ICMPv6".into(),
                6 => "TCP".into(),
                17 if port(67) || port(68) => "DHCP".into(),
                17 if port(546) || port(547) => "DHCPv6".into(),
                17 if port(53) => "DNS".into(),
                17 => "UDP".into(),
                89 => "OSPF".into(),
                112 => "VRRP".into(),
                50 => "ESP".into(),
                47 => "GRE".into(),
                132 => "SCTP".into(),
                p if v6 => format!("IPv6 proto {p}"),
                p => format!("IPv4 proto {p}"),
            }
        }
        (Some(0x88cc), _) => "LLDP".into(),
        (Some(0x8035), _) => "RARP".into(),
        (Some(t), _) => format!("ethertype 0x{t:04x}"),
        (None, _) => "not Ethernet".into(),
    }
}

/// Frames per second over `[0, duration]` in at most [`PLOT_POINTS`]
/// buckets, as SVG points; and the peak rate.
fn plot(times: &[f64], duration: f64) -> (String, f64) {
    let end = times.iter().copied().fold(duration, f64::max).max(0.001);
    // Buckets of at least a quarter second, so a burst in a short test
    // is not a rate of thousands per second.
    let buckets = PLOT_POINTS.min(((end / 0.25).ceil() as usize).max(1));
    let width = end / buckets as f64;
    let mut counts = vec![0usize; buckets];
    for t in times {
        let i = ((t.max(0.0) / width) as usize).min(buckets - 1);
        counts[i] += 1;
    }
    let rates: Vec<f64> = counts.iter().map(|c| *c as f64 / width).collect();
    let peak = rates.iter().copied().fold(0.0, f64::max);
    let points = rates
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let x = (i as f64 + 0.5) / buckets as f64 * PLOT_W;
            let y = PLOT_H
                - if peak > 0.0 {
                    r / peak * (PLOT_H - 2.0)
                } else {
                    0.0
                };
            format!("{x:.1},{y:.1}")
        })
        .collect::<Vec<_>>()
        .join(" ");
    (points, round(peak))
}

/// The topology picture with each link's label followed by its frame
/// count (labels carry `data-capture="<file>"`).
pub(crate) fn label_links(svg: &str, links: &[LinkReport]) -> String {
    let mut out = svg.to_string();
    for l in links {
        let attr = format!("data-capture=\"{}\"", l.file);
        let Some(at) = out.find(&attr) else { continue };
        let Some(end) = out[at..].find("</text>").map(|e| at + e) else {
            continue;
        };
        let label = format!(" · {} frames", l.frames);
        let trimmed = out[..end].trim_end().len();
        out.replace_range(trimmed..end, &label);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_name_their_machine_and_sort_by_number() {
        assert_eq!(machine_of("link3.pcap"), "dut");
        assert_eq!(machine_of("r-2-nic1.pcap"), "r-2");
        let mut f = vec!["link10.pcap", "link2.pcap", "a-nic0.pcap"];
        f.sort_by_key(|f| sort_key(f));
        assert_eq!(f, ["a-nic0.pcap", "link2.pcap", "link10.pcap"]);
    }

    #[test]
    fn a_plot_has_bounded_points_and_its_peak() {
        let times: Vec<f64> = (0..100_000).map(|i| i as f64 / 1000.0).collect();
        let (points, peak) = plot(&times, 100.0);
        assert_eq!(points.split(' ').count(), PLOT_POINTS);
        assert!((peak - 1000.0).abs() < 20.0, "{peak}");
    }

    #[test]
    fn labels_get_their_counts() {
        let svg = "<text data-capture=\"link0.pcap\" x=\"1\">\n\nnic0\n</text>";
        let l = LinkReport {
            file: "link0.pcap".into(),
            machine: "dut".into(),
            frames: 7,
            protocols: vec![],
            first_t: None,
            last_t: None,
            plot: String::new(),
            peak_fps: 0.0,
            error: None,
        };
        assert_eq!(
            label_links(svg, &[l]),
            "<text data-capture=\"link0.pcap\" x=\"1\">\n\nnic0 · 7 frames</text>"
        );
    }
}
