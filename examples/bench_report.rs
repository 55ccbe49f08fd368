//! How big `report.html` gets and how long writing it takes.
//!
//! ```text
//! cargo run --release --example bench_report                 # a synthetic 10-minute bed
//! cargo run --release --example bench_report -- DIR...       # real beds' artifacts
//! ```
//!
//! The synthetic bed: 10 minutes, two links of 100,000 frames each
//! (UDP, ARP, ICMP), 20,000 console lines, 2,000 checks, the phases of a
//! one-machine bed. Prints the page's size and the median of 5 writes.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use alpy::journal::{Entry, Event, Outcome, StepState};

const RUNS: usize = 5;

fn main() -> alpy::Result<()> {
    let dirs: Vec<PathBuf> = std::env::args().skip(1).map(PathBuf::from).collect();
    if dirs.is_empty() {
        let dir = std::env::temp_dir().join(format!("alpy-bench-report-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| alpy::Error::io("create the bench dir", e))?;
        synthesize(&dir)?;
        measure(&dir)?;
        let _ = std::fs::remove_dir_all(&dir);
    } else {
        for d in &dirs {
            measure(d)?;
        }
    }
    Ok(())
}

fn measure(dir: &Path) -> alpy::Result<()> {
    let mut times = Vec::new();
    let mut page = PathBuf::new();
    for _ in 0..RUNS {
        let t0 = Instant::now();
        page = alpy::report::write(dir)?;
        times.push(t0.elapsed());
    }
    times.sort();
    let size = std::fs::metadata(&page).map(|m| m.len()).unwrap_or(0);
    println!(
        "{}: report.html {:.1} KB, written in {:.1} ms (median of {RUNS}; {:.1}-{:.1} ms)",
        dir.display(),
        size as f64 / 1000.0,
        ms(times[RUNS / 2]),
        ms(times[0]),
        ms(times[RUNS - 1])
    );
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Writes a 10-minute bed's artifacts into `dir`.
fn synthesize(dir: &Path) -> alpy::Result<()> {
    let minutes = 10.0 * 60.0;
    let start_unix_ms = 1_796_000_000_000u64;
    let mut entries = vec![Entry {
        t: 0.0,
        event: Event::Bed {
            name: "long".into(),
            run: "0123456789".into(),
            test: "ten_minutes".into(),
            host: "bench".into(),
            alpy: env!("CARGO_PKG_VERSION").into(),
            pid: 0,
            start_unix_ms,
        },
    }];
    let mut push = |t: f64, event: Event| entries.push(Entry { t, event });
    push(
        0.8,
        Event::Machine {
            machine: "dut".into(),
            qemu: "7.2.22".into(),
            accel: "tcg".into(),
        },
    );
    push(
        0.9,
        Event::CaptureClock {
            machine: "dut".into(),
            offset_s: 0.0,
        },
    );
    for (t, name, secs) in [
        (0.6, "nodes", 0.5),
        (0.9, "setup", 0.9),
        (10.0, "boot", 9.0),
    ] {
        push(
            t,
            Event::Phase {
                name: name.into(),
                secs,
            },
        );
    }
    for i in 0..20_000 {
        let t = 10.0 + i as f64 * (minutes - 20.0) / 20_000.0;
        push(
            t,
            Event::Console {
                machine: "dut".into(),
                text: format!("line {i}: the appliance says something of a usual length\r\n"),
            },
        );
        if i % 10 == 0 {
            push(
                t,
                Event::Check {
                    on: "node client".into(),
                    what: format!("ping -c1 10.0.{}.1", i % 255),
                    ok: i != 15_000,
                    detail: (i == 15_000).then(|| "exit code 1".into()),
                },
            );
        }
    }
    push(
        minutes - 5.0,
        Event::Step {
            what: "Close test bed long".into(),
            state: StepState::Done,
            secs: Some(0.2),
            error: None,
        },
    );
    push(
        minutes,
        Event::Phase {
            name: "close".into(),
            secs: 0.2,
        },
    );
    push(
        minutes,
        Event::Result {
            outcome: Outcome::Failed,
            first_failure: Some("ping -c1 10.0.210.1: exit code 1".into()),
        },
    );
    let mut text = String::new();
    for e in &entries {
        text.push_str(&serde_json::to_string(e).map_err(|e| alpy::Error::Internal(e.to_string()))?);
        text.push('\n');
    }
    std::fs::write(dir.join(alpy::journal::FILE), text)
        .map_err(|e| alpy::Error::io("write the journal", e))?;
    for link in 0..2 {
        write_pcap(
            &dir.join(format!("link{link}.pcap")),
            start_unix_ms,
            minutes,
        )?;
    }
    Ok(())
}

/// 100,000 frames over the run: UDP mostly, some ARP and ICMP.
fn write_pcap(path: &Path, start_unix_ms: u64, secs: f64) -> alpy::Result<()> {
    use pcap_file::pcap::{PcapPacket, PcapWriter};
    let file = std::fs::File::create(path).map_err(|e| alpy::Error::io("create a pcap", e))?;
    let mut w = PcapWriter::new(std::io::BufWriter::new(file))
        .map_err(|e| alpy::Error::Internal(e.to_string()))?;
    for i in 0..100_000u32 {
        let t = start_unix_ms as f64 / 1000.0 + 10.0 + f64::from(i) * (secs - 20.0) / 100_000.0;
        let frame = match i % 50 {
            0 => arp(),
            1 => ipv4(1, &[8, 0, 0, 0, 0, 1, 0, 1]),
            _ => ipv4(
                17,
                &[0x30, 0x39, 0x13, 0x89, 0, 16, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8],
            ),
        };
        w.write_packet(&PcapPacket::new(
            Duration::from_secs_f64(t),
            frame.len() as u32,
            &frame,
        ))
        .map_err(|e| alpy::Error::Internal(e.to_string()))?;
    }
    Ok(())
}

fn ethernet(ethertype: u16) -> Vec<u8> {
    let mut f = vec![0x52, 0x54, 0, 0, 0, 1, 0x52, 0x54, 0, 0, 0, 2];
    f.extend_from_slice(&ethertype.to_be_bytes());
    f
}

fn arp() -> Vec<u8> {
    let mut f = ethernet(0x0806);
    f.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
    f.extend_from_slice(&[0x52, 0x54, 0, 0, 0, 2, 10, 0, 0, 2]);
    f.extend_from_slice(&[0, 0, 0, 0, 0, 0, 10, 0, 0, 1]);
    f
}

fn ipv4(protocol: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = ethernet(0x0800);
    let len = (20 + payload.len()) as u16;
    f.extend_from_slice(&[0x45, 0]);
    f.extend_from_slice(&len.to_be_bytes());
    f.extend_from_slice(&[0, 0, 0x40, 0, 64, protocol, 0, 0, 10, 0, 0, 2, 10, 0, 1, 2]);
    f.extend_from_slice(payload);
    f
}
