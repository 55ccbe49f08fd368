//! A segment's switch, in user space: an L2 segment of three or more
//! endpoints (machine NICs and node taps) joined by one thread that
//! forwards each frame to the port its destination MAC was last seen on,
//! or floods it.
//!
//! Why user space and not a Linux bridge: the bridge would need a
//! namespace of its own (a container), veths into each node and taps for
//! QEMU born in it; the switch needs nothing but the file descriptors the
//! bed already has, lives and dies with the process (nothing to clean up
//! after SIGKILL), and QEMU's NICs under TCG move far fewer frames than
//! one thread forwards. Each port is a datagram socket (a QEMU NIC's far
//! end) or a tap: both give one frame per read.
//!
//! Each port can be impaired, both ways: frames towards it
//! ([`Direction::ToDut`]: what its machine receives) wait in its egress
//! lane, frames from it ([`Direction::ToNode`]: what its machine sends)
//! in its ingress lane before they are switched (the same delay, jitter,
//! loss and rate as a link's relay, [`crate::net::impair`]).
//!
//! A port may be captured ([`Hub::start_captured`]): what it sends and is
//! sent, in pcap with host time stamps. A board's port is one (an
//! `AF_PACKET` socket on a host interface, [`crate::net::packet_port`]):
//! QEMU's `filter-dump` does not exist for hardware.

use std::collections::HashMap;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::net::impair::{set_nonblocking, Direction, Impairment, Lane, Rng};
use crate::net::port_capture::PortCapture;
use crate::util::lock;

/// Frames a port has sent into the segment and taken out of it.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PortStats {
    /// Frames read from this port.
    pub received: u64,
    /// Frames written to this port.
    pub sent: u64,
    /// Frames for this port that it refused (a link down, a full queue).
    pub refused: u64,
    /// Frames lost to the port's impairment (its loss setting, a full
    /// queue), either way.
    pub lost: u64,
    /// The port's far end went away (a tap deleted from inside its node,
    /// a closed socket): the switch stopped reading it.
    pub gone: bool,
}

/// A port's impairment: towards it, and from it.
#[derive(Debug, Clone, Default)]
struct PortImpairment {
    towards: Impairment,
    from: Impairment,
}

struct Shared {
    stop: AtomicBool,
    stats: Mutex<Vec<PortStats>>,
    impairments: Mutex<Vec<PortImpairment>>,
}

/// A running switch. Dropping or closing it stops the thread.
pub struct Hub {
    name: String,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<Result<()>>>,
}

impl Hub {
    /// Starts switching frames between `ports` (named `name` in logs).
    pub fn start(ports: Vec<OwnedFd>, name: &str) -> Result<Hub> {
        Hub::start_captured(ports, name, Vec::new())
    }

    /// As [`Hub::start`], and each `(port, capture)` records the frames
    /// that port sends and is sent, with host time stamps.
    pub fn start_captured(
        ports: Vec<OwnedFd>,
        name: &str,
        captures: Vec<(usize, PortCapture)>,
    ) -> Result<Hub> {
        let mut by_port: Vec<Option<PortCapture>> = ports.iter().map(|_| None).collect();
        for (p, c) in captures {
            let n = by_port.len();
            *by_port.get_mut(p).ok_or_else(|| {
                Error::Internal(format!("segment {name}: capture of port {p} of {n}"))
            })? = Some(c);
        }
        for p in &ports {
            set_nonblocking(p)?;
        }
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            stats: Mutex::new(vec![PortStats::default(); ports.len()]),
            impairments: Mutex::new(vec![PortImpairment::default(); ports.len()]),
        });
        let thread = {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name(format!("hub-{name}"))
                .spawn({
                    let name = name.to_string();
                    crate::logging::inherit(move || run(&ports, &shared, &name, by_port))
                })
                .map_err(|e| Error::io("spawn a segment thread", e))?
        };
        Ok(Hub {
            name: name.to_string(),
            shared,
            thread: Some(thread),
        })
    }

    /// Impairs port `port` (in the order given to [`Hub::start`]):
    /// [`Direction::ToDut`] the frames towards it, [`Direction::ToNode`]
    /// the frames from it, or both. A default [`Impairment`] clears it.
    pub fn set_impairment(&self, port: usize, dir: Direction, imp: &Impairment) -> Result<()> {
        let mut all = lock(&self.shared.impairments);
        let n = all.len();
        let p = all.get_mut(port).ok_or_else(|| {
            Error::Internal(format!(
                "segment {} has no port {port} (it has {n})",
                self.name
            ))
        })?;
        if dir != Direction::ToNode {
            p.towards = imp.clone();
        }
        if dir != Direction::ToDut {
            p.from = imp.clone();
        }
        Ok(())
    }

    /// What each port (in the order given to [`Hub::start`]) has counted.
    pub fn stats(&self) -> Vec<PortStats> {
        lock(&self.shared.stats).clone()
    }

    /// Stops the switch; reports an I/O error that ended it early.
    pub fn close(mut self) -> Result<()> {
        self.stop()
    }

    fn stop(&mut self) -> Result<()> {
        self.shared.stop.store(true, Ordering::Relaxed);
        match self.thread.take() {
            Some(t) => crate::util::join(t, &format!("segment {}'s thread", self.name)),
            None => Ok(()),
        }
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            log::warn!(target: "alpy::hub", "segment {}: {e}", self.name);
        }
    }
}

/// Where frames go: `Some(port)` for a unicast destination seen before
/// on another port, `None` to flood.
fn learn_and_route(
    table: &mut HashMap<[u8; 6], usize>,
    frame: &[u8],
    from: usize,
) -> Option<usize> {
    if frame.len() < 14 {
        return None;
    }
    let mut src = [0u8; 6];
    src.copy_from_slice(&frame[6..12]);
    if src[0] & 1 == 0 {
        table.insert(src, from);
    }
    let dst = &frame[0..6];
    if dst[0] & 1 == 1 {
        return None; // broadcast or multicast
    }
    let mut d = [0u8; 6];
    d.copy_from_slice(dst);
    table.get(&d).copied().filter(|&p| p != from)
}

fn run(
    ports: &[OwnedFd],
    shared: &Shared,
    name: &str,
    mut captures: Vec<Option<PortCapture>>,
) -> Result<()> {
    let mut table: HashMap<[u8; 6], usize> = HashMap::new();
    let mut buf = vec![0u8; 65536];
    let mut stats = vec![PortStats::default(); ports.len()];
    let mut ingress: Vec<Lane> = ports.iter().map(|_| Lane::new()).collect();
    let mut egress: Vec<Lane> = ports.iter().map(|_| Lane::new()).collect();
    let mut rng = Rng::new();
    while !shared.stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        let wait = ingress
            .iter()
            .chain(&egress)
            .filter_map(Lane::next_due)
            .min()
            .map_or(Duration::from_millis(100), |at| {
                at.saturating_duration_since(now)
            })
            .min(Duration::from_millis(100));
        // Ports whose far end went away are left out: poll would report
        // them at once, every time, and the thread would spin.
        let live: Vec<usize> = (0..ports.len()).filter(|&p| !stats[p].gone).collect();
        let mut fds: Vec<PollFd> = live
            .iter()
            .map(|&p| PollFd::new(ports[p].as_fd(), PollFlags::POLLIN))
            .collect();
        let ms = u16::try_from(wait.as_millis()).unwrap_or(100);
        match poll(&mut fds, PollTimeout::from(ms)) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(Error::Net(format!("segment poll: {e}"))),
        }
        let gone = PollFlags::POLLHUP | PollFlags::POLLERR | PollFlags::POLLNVAL;
        let mut ready = Vec::new();
        for (f, &p) in fds.iter().zip(&live) {
            let r = f.revents().unwrap_or(PollFlags::empty());
            if r.intersects(gone) {
                log::warn!("segment {name}: port {p} went away ({r:?}); no longer read");
                stats[p].gone = true;
            } else if r.contains(PollFlags::POLLIN) {
                ready.push(p);
            }
        }
        drop(fds);
        let imps = lock(&shared.impairments).clone();
        for from in ready {
            while let Ok(n) = nix::unistd::read(&ports[from], &mut buf) {
                if n == 0 {
                    break;
                }
                stats[from].received += 1;
                if let Some(c) = captures[from].as_mut() {
                    c.record(&buf[..n]);
                }
                if !ingress[from].push(&buf[..n], &imps[from].from, &mut rng) {
                    stats[from].lost += 1;
                }
            }
        }
        let now = Instant::now();
        for (from, lane) in ingress.iter_mut().enumerate() {
            while let Some(frame) = lane.pop_due(now) {
                let targets: Vec<usize> = match learn_and_route(&mut table, &frame, from) {
                    Some(p) => vec![p],
                    None => (0..ports.len()).filter(|&p| p != from).collect(),
                };
                for to in targets {
                    if !egress[to].push(&frame, &imps[to].towards, &mut rng) {
                        stats[to].lost += 1;
                    }
                }
            }
        }
        for (to, lane) in egress.iter_mut().enumerate() {
            while let Some(frame) = lane.pop_due(now) {
                match nix::unistd::write(&ports[to], &frame) {
                    Ok(_) => {
                        stats[to].sent += 1;
                        if let Some(c) = captures[to].as_mut() {
                            c.record(&frame);
                        }
                    }
                    Err(_) => stats[to].refused += 1,
                }
            }
        }
        lock(&shared.stats).clone_from(&stats);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixDatagram;
    use std::time::{Duration, Instant};

    fn frame(dst: [u8; 6], src: [u8; 6]) -> Vec<u8> {
        let mut f = dst.to_vec();
        f.extend_from_slice(&src);
        f.extend_from_slice(&[0x08, 0x00]);
        f.extend_from_slice(&[0u8; 46]);
        f
    }

    fn recv(s: &UnixDatagram) -> Option<Vec<u8>> {
        s.set_read_timeout(Some(Duration::from_millis(300))).ok()?;
        let mut b = [0u8; 2048];
        s.recv(&mut b).ok().map(|n| b[..n].to_vec())
    }

    #[test]
    fn floods_unknown_then_switches_learned_unicast() {
        let (mut outer, mut inner) = (Vec::new(), Vec::new());
        for _ in 0..3 {
            let (a, b) = UnixDatagram::pair().expect("socket pair");
            outer.push(a);
            inner.push(OwnedFd::from(b));
        }
        let hub = Hub::start(inner, "test").expect("hub");
        let (a, b) = ([2, 0, 0, 0, 0, 0xa], [2, 0, 0, 0, 0, 0xb]);
        // A broadcast from port 0 reaches 1 and 2, and teaches the switch A.
        outer[0]
            .send(&frame([0xff; 6], a))
            .expect("send the broadcast");
        assert!(recv(&outer[1]).is_some());
        assert!(recv(&outer[2]).is_some());
        // B answers A: only port 0 hears it.
        let reply = frame(a, b);
        outer[1].send(&reply).expect("send the reply");
        assert_eq!(recv(&outer[0]), Some(reply));
        assert_eq!(recv(&outer[2]), None, "a learned unicast was flooded");
        let t0 = Instant::now();
        while hub.stats()[0].sent < 1 && t0.elapsed() < Duration::from_secs(2) {
            std::thread::sleep(Duration::from_millis(20));
        }
        let s = hub.stats();
        assert_eq!((s[0].received, s[1].received), (1, 1));
        assert_eq!((s[0].sent, s[1].sent, s[2].sent), (1, 1, 1));
        hub.close().expect("close");
    }

    #[test]
    fn a_port_that_went_away_is_left_out_and_the_rest_still_switch() {
        use std::os::unix::net::UnixStream;
        let (mut outer, mut inner) = (Vec::new(), Vec::new());
        for _ in 0..2 {
            let (a, b) = UnixDatagram::pair().expect("socket pair");
            outer.push(a);
            inner.push(OwnedFd::from(b));
        }
        // A third port whose far end is closed: poll reports it hung up.
        let (gone, kept) = UnixStream::pair().expect("stream pair");
        drop(gone);
        inner.push(OwnedFd::from(kept));
        let hub = Hub::start(inner, "gone").expect("hub");
        let t0 = Instant::now();
        while !hub.stats()[2].gone && t0.elapsed() < Duration::from_secs(2) {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(hub.stats()[2].gone, "{:?}", hub.stats());
        let f = frame([0xff; 6], [2, 0, 0, 0, 0, 1]);
        outer[0].send(&f).expect("send");
        assert_eq!(recv(&outer[1]), Some(f));
        assert!(!hub.stats()[0].gone && !hub.stats()[1].gone);
        hub.close().expect("close");
    }

    #[test]
    fn a_port_is_delayed_and_dropped_as_told() {
        let (mut outer, mut inner) = (Vec::new(), Vec::new());
        for _ in 0..2 {
            let (a, b) = UnixDatagram::pair().expect("socket pair");
            outer.push(a);
            inner.push(OwnedFd::from(b));
        }
        let hub = Hub::start(inner, "impaired").expect("hub");
        let delay = Impairment {
            delay: Some(Duration::from_millis(300)),
            ..Default::default()
        };
        hub.set_impairment(1, Direction::ToDut, &delay)
            .expect("port 1");
        let t0 = Instant::now();
        outer[0]
            .send(&frame([0xff; 6], [2, 0, 0, 0, 0, 1]))
            .expect("send");
        outer[1]
            .set_read_timeout(Some(Duration::from_secs(2)))
            .expect("timeout");
        let mut b = [0u8; 2048];
        outer[1].recv(&mut b).expect("the delayed frame");
        assert!(
            t0.elapsed() >= Duration::from_millis(300),
            "{:?}",
            t0.elapsed()
        );
        // All lost from port 1; cleared, it passes again.
        let loss = Impairment {
            loss_percent: Some(100.0),
            ..Default::default()
        };
        hub.set_impairment(1, Direction::ToNode, &loss)
            .expect("port 1");
        outer[1]
            .send(&frame([0xff; 6], [2, 0, 0, 0, 0, 2]))
            .expect("send");
        assert_eq!(recv(&outer[0]), None, "a frame got through 100% loss");
        hub.set_impairment(1, Direction::Both, &Impairment::default())
            .expect("clear");
        outer[1]
            .send(&frame([0xff; 6], [2, 0, 0, 0, 0, 2]))
            .expect("send");
        assert!(recv(&outer[0]).is_some());
        assert!(hub.set_impairment(5, Direction::Both, &loss).is_err());
        hub.close().expect("close");
    }
}
