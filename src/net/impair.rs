//! Link impairment: what it is ([`Impairment`]), and a relay in user space
//! that applies it in either direction of a link.
//!
//! [`crate::net::Node::impair`] uses the kernel's `tc netem` on the node's
//! `eth0` where the host kernel has it (frames from the node towards the
//! DUT only). Kernels built without `CONFIG_NET_SCH_NETEM` (like this
//! project's CI machines) have no other way to delay frames, so a link can
//! instead be built with a relay ([`crate::net::Link::relay`]): QEMU's NIC
//! then talks to a datagram socket pair, this relay copies frames between
//! that socket and the tap, and impairment works on any kernel, with or
//! without root, in both directions. The relay costs one copy per frame and
//! a thread per link, so it is opt-in.

use std::collections::VecDeque;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use crate::error::{Error, Result};
use crate::net::netns::NetCmd;
use crate::net::TAP_NAME;
use crate::util::lock;

/// Which way frames travel on a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// From the node to the DUT (what `tc` on the node's `eth0` shapes).
    ToDut,
    /// From the DUT to the node (needs the link's relay).
    ToNode,
    /// Both ways, each with the same settings.
    Both,
}

/// Link impairment: delay, jitter, loss and rate, applied in one
/// [`Direction`] of a link (with `tc` on the node's `eth0`, or in the
/// link's relay).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Impairment {
    /// Added delay.
    pub delay: Option<Duration>,
    /// Jitter around the delay.
    pub jitter: Option<Duration>,
    /// Packet loss in percent.
    pub loss_percent: Option<f64>,
    /// Rate limit in kbit/s.
    pub rate_kbit: Option<u64>,
}

impl Impairment {
    pub(crate) fn commands(&self) -> Vec<NetCmd> {
        let netem_needed =
            self.delay.is_some() || self.jitter.is_some() || self.loss_percent.is_some();
        if !netem_needed {
            if let Some(rate) = self.rate_kbit {
                // A pure rate limit needs no netem: tbf is more widely built.
                return vec![NetCmd::tc(&format!(
                    "qdisc replace dev {TAP_NAME} root tbf rate {rate}kbit burst 16kb latency 400ms"
                ))];
            }
            return Vec::new();
        }
        let mut s = format!("qdisc replace dev {TAP_NAME} root netem");
        if let Some(d) = self.delay {
            s.push_str(&format!(" delay {}us", d.as_micros()));
            if let Some(j) = self.jitter {
                s.push_str(&format!(" {}us", j.as_micros()));
            }
        }
        if let Some(l) = self.loss_percent {
            s.push_str(&format!(" loss {l}%"));
        }
        if let Some(r) = self.rate_kbit {
            s.push_str(&format!(" rate {r}kbit"));
        }
        vec![NetCmd::tc(&s)]
    }
}

/// Frames waiting longer than this many in the queue are dropped (a full
/// link), as netem's default limit does.
const QUEUE_LIMIT: usize = 1000;

/// Frames counted by a relay, per direction.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RelayStats {
    /// Frames from the node towards the DUT, delivered.
    pub forwarded: u64,
    /// Frames from the node dropped by the loss setting or a full queue.
    pub dropped: u64,
    /// Frames from the DUT to the node, delivered.
    pub returned: u64,
    /// Frames from the DUT dropped by the loss setting or a full queue.
    pub returned_dropped: u64,
}

struct Shared {
    /// Settings towards the DUT and towards the node.
    settings: Mutex<[Impairment; 2]>,
    stats: Mutex<RelayStats>,
    stop: AtomicBool,
}

/// A running relay. Dropping or closing it stops the thread.
pub struct Relay {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<Result<()>>>,
}

/// Sets `O_NONBLOCK` on `fd` (relays and segments poll their ports).
pub(crate) fn set_nonblocking(fd: &OwnedFd) -> Result<()> {
    let flags = fcntl(fd, FcntlArg::F_GETFL).map_err(|e| Error::Net(format!("F_GETFL: {e}")))?;
    fcntl(
        fd,
        FcntlArg::F_SETFL(OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK),
    )
    .map_err(|e| Error::Net(format!("F_SETFL: {e}")))?;
    Ok(())
}

impl Relay {
    /// Relays frames between `node` (the tap side) and `dut` (QEMU's side),
    /// each direction impaired as [`Relay::set_direction`] says (default:
    /// not at all).
    pub fn start(node: OwnedFd, dut: OwnedFd, name: &str) -> Result<Relay> {
        set_nonblocking(&node)?;
        set_nonblocking(&dut)?;
        let shared = Arc::new(Shared {
            settings: Mutex::new(Default::default()),
            stats: Mutex::new(RelayStats::default()),
            stop: AtomicBool::new(false),
        });
        let thread = {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name(format!("relay-{name}"))
                .spawn(crate::logging::inherit(move || run(&node, &dut, &shared)))
                .map_err(|e| Error::io("spawn a relay thread", e))?
        };
        Ok(Relay {
            shared,
            thread: Some(thread),
        })
    }

    /// Sets the impairment of frames from the node towards the DUT.
    pub fn set(&self, imp: &Impairment) {
        self.set_direction(Direction::ToDut, imp);
    }

    /// Sets the impairment of one direction, or of both.
    pub fn set_direction(&self, dir: Direction, imp: &Impairment) {
        let mut s = lock(&self.shared.settings);
        if dir != Direction::ToNode {
            s[0] = imp.clone();
        }
        if dir != Direction::ToDut {
            s[1] = imp.clone();
        }
    }

    /// What the relay has counted so far.
    pub fn stats(&self) -> RelayStats {
        *lock(&self.shared.stats)
    }

    /// Stops the relay; reports an I/O error that ended it early.
    pub fn close(mut self) -> Result<()> {
        self.stop()
    }

    fn stop(&mut self) -> Result<()> {
        self.shared.stop.store(true, Ordering::Relaxed);
        match self.thread.take() {
            Some(t) => crate::util::join(t, "the relay thread"),
            None => Ok(()),
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            log::warn!(target: "alpy::impair", "relay: {e}");
        }
    }
}
/// A small xorshift generator: loss and jitter need no cryptography.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new() -> Self {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos() as u64;
        Rng(t | 1)
    }

    /// Uniform in [0, 1).
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// When a frame of `len` bytes read at `now` leaves, given the previous
/// frame's departure: delay plus jitter, no earlier than the rate allows,
/// and never before the frame ahead of it (no reordering).
fn departure(imp: &Impairment, now: Instant, last: Instant, len: usize, rng: &mut Rng) -> Instant {
    let mut at = now + imp.delay.unwrap_or_default();
    if let Some(j) = imp.jitter {
        let offset = j.mul_f64(rng.next() * 2.0);
        at = (at + offset).checked_sub(j).unwrap_or(now).max(now);
    }
    if let Some(kbit) = imp.rate_kbit.filter(|r| *r > 0) {
        let tx = Duration::from_secs_f64(len as f64 * 8.0 / (kbit as f64 * 1000.0));
        at = at.max(last + tx);
    }
    at.max(last)
}

/// One direction of the relay (or of a segment's port): frames read from
/// one fd, impaired, written to the other when their time comes.
pub(crate) struct Lane {
    queue: VecDeque<(Instant, Vec<u8>)>,
    last: Instant,
}

impl Lane {
    pub(crate) fn new() -> Lane {
        Lane {
            queue: VecDeque::new(),
            last: Instant::now(),
        }
    }

    /// Queues `frame` as `imp` says; false if it is lost (by the loss
    /// setting, or a full queue).
    pub(crate) fn push(&mut self, frame: &[u8], imp: &Impairment, rng: &mut Rng) -> bool {
        let lost = imp.loss_percent.is_some_and(|p| rng.next() * 100.0 < p);
        if lost || self.queue.len() >= QUEUE_LIMIT {
            return false;
        }
        let at = departure(imp, Instant::now(), self.last, frame.len(), rng);
        self.last = at;
        self.queue.push_back((at, frame.to_vec()));
        true
    }

    /// The next frame whose time has come.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<Vec<u8>> {
        if self.queue.front().is_some_and(|(at, _)| *at <= now) {
            self.queue.pop_front().map(|(_, f)| f)
        } else {
            None
        }
    }

    /// Reads every waiting frame from `from`; returns how many were lost.
    fn take_in(&mut self, from: &OwnedFd, imp: &Impairment, buf: &mut [u8], rng: &mut Rng) -> u64 {
        let mut lost_count = 0;
        while let Ok(n) = nix::unistd::read(from, buf) {
            if n == 0 {
                break;
            }
            let lost = imp.loss_percent.is_some_and(|p| rng.next() * 100.0 < p);
            if lost || self.queue.len() >= QUEUE_LIMIT {
                lost_count += 1;
                continue;
            }
            let at = departure(imp, Instant::now(), self.last, n, rng);
            self.last = at;
            self.queue.push_back((at, buf[..n].to_vec()));
        }
        lost_count
    }

    /// Writes the frames that are due to `to`: (delivered, dropped). A tap
    /// whose link is down, or a QEMU not reading yet, refuses frames: they
    /// are lost, as on a real wire.
    fn deliver(&mut self, to: &OwnedFd, now: Instant) -> (u64, u64) {
        let (mut sent, mut dropped) = (0, 0);
        while self.queue.front().is_some_and(|(at, _)| *at <= now) {
            if let Some((_, frame)) = self.queue.pop_front() {
                match nix::unistd::write(to, &frame) {
                    Ok(_) => sent += 1,
                    Err(_) => dropped += 1,
                }
            }
        }
        (sent, dropped)
    }

    pub(crate) fn next_due(&self) -> Option<Instant> {
        self.queue.front().map(|(at, _)| *at)
    }
}

fn run(node: &OwnedFd, dut: &OwnedFd, shared: &Shared) -> Result<()> {
    let (mut to_dut, mut to_node) = (Lane::new(), Lane::new());
    let mut rng = Rng::new();
    let mut buf = vec![0u8; 65536];
    let mut stats = RelayStats::default();
    while !shared.stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        let next = [to_dut.next_due(), to_node.next_due()]
            .into_iter()
            .flatten()
            .min();
        let wait = next
            .map(|at| at.saturating_duration_since(now))
            .unwrap_or(Duration::from_millis(100))
            .min(Duration::from_millis(100));
        let mut fds = [
            PollFd::new(node.as_fd(), PollFlags::POLLIN),
            PollFd::new(dut.as_fd(), PollFlags::POLLIN),
        ];
        let ms = u16::try_from(wait.as_millis()).unwrap_or(100);
        match poll(&mut fds, PollTimeout::from(ms)) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(Error::Net(format!("relay poll: {e}"))),
        }
        let readable = |f: &PollFd| f.revents().is_some_and(|r| r.contains(PollFlags::POLLIN));
        let (from_node, from_dut) = (readable(&fds[0]), readable(&fds[1]));
        let [imp_dut, imp_node] = lock(&shared.settings).clone();
        if from_node {
            stats.dropped += to_dut.take_in(node, &imp_dut, &mut buf, &mut rng);
        }
        if from_dut {
            stats.returned_dropped += to_node.take_in(dut, &imp_node, &mut buf, &mut rng);
        }
        let now = Instant::now();
        let (sent, dropped) = to_dut.deliver(dut, now);
        stats.forwarded += sent;
        stats.dropped += dropped;
        let (sent, dropped) = to_node.deliver(node, now);
        stats.returned += sent;
        stats.returned_dropped += dropped;
        *lock(&shared.stats) = stats;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn impairment_commands() {
        let only_rate = Impairment {
            rate_kbit: Some(1000),
            ..Default::default()
        };
        assert_eq!(
            only_rate.commands()[0].to_shell(),
            "tc qdisc replace dev eth0 root tbf rate 1000kbit burst 16kb latency 400ms"
        );
        let delay = Impairment {
            delay: Some(Duration::from_millis(100)),
            jitter: Some(Duration::from_millis(5)),
            loss_percent: Some(1.5),
            ..Default::default()
        };
        assert_eq!(
            delay.commands()[0].to_shell(),
            "tc qdisc replace dev eth0 root netem delay 100000us 5000us loss 1.5%"
        );
    }

    #[test]
    fn departure_follows_delay_rate_and_order() {
        let mut rng = Rng::new();
        let t0 = Instant::now();
        let delay = Impairment {
            delay: Some(Duration::from_millis(100)),
            ..Default::default()
        };
        assert_eq!(
            departure(&delay, t0, t0, 100, &mut rng),
            t0 + Duration::from_millis(100)
        );
        let rate = Impairment {
            rate_kbit: Some(1000),
            ..Default::default()
        };
        // 1250 bytes at 1 Mbit/s take 10 ms after the previous departure.
        let prev = t0 + Duration::from_millis(50);
        assert_eq!(
            departure(&rate, t0, prev, 1250, &mut rng),
            prev + Duration::from_millis(10)
        );
        let jitter = Impairment {
            delay: Some(Duration::from_millis(10)),
            jitter: Some(Duration::from_millis(5)),
            ..Default::default()
        };
        for _ in 0..100 {
            let d = departure(&jitter, t0, t0, 100, &mut rng) - t0;
            assert!(
                d >= Duration::from_millis(5) && d <= Duration::from_millis(15),
                "{d:?}"
            );
        }
        // Never ahead of the frame before it.
        let later = t0 + Duration::from_secs(1);
        assert_eq!(
            departure(&Impairment::default(), t0, later, 100, &mut rng),
            later
        );
    }

    #[test]
    fn relays_both_ways_and_drops_on_loss() {
        use std::os::unix::net::UnixDatagram;
        let (node_ours, node_relay) = UnixDatagram::pair().unwrap();
        let (dut_ours, dut_relay) = UnixDatagram::pair().unwrap();
        let relay = Relay::start(node_relay.into(), dut_relay.into(), "test").unwrap();
        dut_ours
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        node_ours
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        let mut buf = [0u8; 64];
        node_ours.send(b"to dut").unwrap();
        let n = dut_ours.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"to dut");
        dut_ours.send(b"to node").unwrap();
        let n = node_ours.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"to node");
        relay.set(&Impairment {
            delay: Some(Duration::from_millis(150)),
            ..Default::default()
        });
        let t0 = Instant::now();
        node_ours.send(b"late").unwrap();
        let n = dut_ours.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"late");
        assert!(
            t0.elapsed() >= Duration::from_millis(150),
            "{:?}",
            t0.elapsed()
        );
        relay.set(&Impairment {
            loss_percent: Some(100.0),
            ..Default::default()
        });
        node_ours.send(b"lost").unwrap();
        dut_ours
            .set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        assert!(
            dut_ours.recv(&mut buf).is_err(),
            "a 100% loss link delivered a frame"
        );
        let stats = relay.stats();
        assert_eq!((stats.forwarded, stats.returned, stats.dropped), (2, 1, 1));
        // The other direction, on its own: the DUT's frames are delayed,
        // the node's are not.
        relay.set_direction(Direction::ToDut, &Impairment::default());
        relay.set_direction(
            Direction::ToNode,
            &Impairment {
                delay: Some(Duration::from_millis(150)),
                ..Default::default()
            },
        );
        dut_ours
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        let t0 = Instant::now();
        dut_ours.send(b"late back").unwrap();
        let n = node_ours.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"late back");
        assert!(
            t0.elapsed() >= Duration::from_millis(150),
            "{:?}",
            t0.elapsed()
        );
        let t0 = Instant::now();
        node_ours.send(b"prompt").unwrap();
        let n = dut_ours.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"prompt");
        assert!(
            t0.elapsed() < Duration::from_millis(100),
            "{:?}",
            t0.elapsed()
        );
        relay.close().unwrap();
    }
}
