//! The node side of one link: its name, addresses, gateways, routes, MAC,
//! and whether a relay sits between the tap and the DUT.

use std::net::IpAddr;

use crate::addr::{IpNet, Mac, ToIpAddr, ToIpNet};
use crate::error::{Error, Result};
use crate::net::impair::{Direction, Impairment};
use crate::net::netns::NetCmd;
use crate::net::TAP_NAME;
use crate::nic::DutNic;
use crate::run::RunId;

/// The node side of one link. Build it with the methods; a bad address is
/// reported by [`crate::TestBed`]'s `start()` (or [`Link::check`]), naming
/// the link.
///
/// ```
/// use alpy::Link;
/// let l = Link::new()
///     .name("client")
///     .node_addr("192.168.1.2/24")
///     .node_addr("2001:db8:1::2/64")
///     .gateway("192.168.1.1");
/// assert!(l.check(0).is_ok());
/// assert_eq!(l.addrs[1].prefix_len(), 64);
/// let bad = Link::new().node_addr("192.168.1.2");
/// assert!(bad.check(3).unwrap_err().to_string().contains("link 3"));
/// ```
#[derive(Debug, Clone, Default)]
pub struct Link {
    /// The link's name (`bed.node("name")`); `None`: `link<i>`.
    pub link_name: Option<String>,
    /// Addresses with prefix length, IPv4 or IPv6.
    pub addrs: Vec<IpNet>,
    /// IPv4 default gateway.
    pub gateway: Option<IpAddr>,
    /// IPv6 default gateway.
    pub gateway6: Option<IpAddr>,
    /// Extra routes: (destination prefix, next hop).
    pub routes: Vec<(IpNet, IpAddr)>,
    /// The tap's MAC; derived from the run id and link index if `None`.
    pub mac: Option<Mac>,
    /// Put a user-space relay between the tap and the DUT, so that
    /// impairment works without the kernel's netem, in both directions
    /// (see [`crate::net::impair`]).
    pub relay: bool,
    /// Impairment the bed applies once it has started.
    pub impairment: Option<(Direction, Impairment)>,
    /// The DUT's NIC on this link: model, MAC, MTU, option ROM (defaults:
    /// the DUT's).
    pub dut_nic: DutNic,
    /// The link starts down: the DUT's NIC has no carrier until
    /// [`crate::TestBed::set_dut_link`] brings it up.
    pub down: bool,
    /// The node's roles ([`crate::TestBed::role`]).
    pub tags: Vec<String>,
    /// What the node's side is wired to (default: the DUT's next NIC).
    pub attach: Attach,
    /// What the builder methods could not parse, reported by `check`.
    invalid: Vec<String>,
}

impl Link {
    /// An unconfigured link.
    pub fn new() -> Self {
        Self::default()
    }

    /// Names the link (letters, digits, `-` and `_`).
    pub fn name(mut self, name: &str) -> Self {
        self.link_name = Some(name.to_string());
        self
    }

    /// Gives the node a role (letters, digits, `-` and `_`): what
    /// [`crate::TestBed::role`] finds it by. Repeatable.
    ///
    /// ```
    /// let l = alpy::Link::new().name("c1").tag("clients");
    /// assert_eq!(l.tags, ["clients"]);
    /// ```
    pub fn tag(mut self, role: &str) -> Self {
        if !self.tags.iter().any(|t| t == role) {
            self.tags.push(role.to_string());
        }
        self
    }

    fn keep<T>(&mut self, r: Result<T>) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(e) => {
                // The message alone: check() says "invalid configuration"
                // once, for all of them.
                self.invalid.push(match e {
                    Error::Config(m) => m,
                    e => e.to_string(),
                });
                None
            }
        }
    }

    /// Adds an address (`"192.168.1.2/24"`, `"2001:db8:1::2/64"` or an
    /// [`IpNet`]).
    pub fn node_addr(mut self, addr: impl ToIpNet) -> Self {
        if let Some(a) = self.keep(addr.to_ip_net()) {
            self.addrs.push(a);
        }
        self
    }

    /// Sets the default gateway (IPv4 or IPv6, by its family).
    pub fn gateway(mut self, addr: impl ToIpAddr) -> Self {
        match self.keep(addr.to_ip_addr()) {
            Some(g @ IpAddr::V6(_)) => self.gateway6 = Some(g),
            Some(g) => self.gateway = Some(g),
            None => {}
        }
        self
    }

    /// Adds a route to `dest` via `via`.
    pub fn route(mut self, dest: impl ToIpNet, via: impl ToIpAddr) -> Self {
        let d = self.keep(dest.to_ip_net());
        let v = self.keep(via.to_ip_addr());
        if let (Some(d), Some(v)) = (d, v) {
            self.routes.push((d, v));
        }
        self
    }

    /// Sets the node-side MAC address (`"02:a1:00:00:00:01"` or a [`Mac`]).
    pub fn mac(mut self, mac: impl Into<MacArg>) -> Self {
        match mac.into() {
            MacArg::Mac(m) => self.mac = Some(m),
            MacArg::Text(t) => {
                if let Some(m) = self.keep(t.parse()) {
                    self.mac = Some(m);
                }
            }
        }
        self
    }

    /// Impairs this link in user space (a relay between tap and DUT)
    /// instead of with `tc netem`, which some host kernels lack.
    pub fn relay(mut self) -> Self {
        self.relay = true;
        self
    }

    /// Impairs what the node sends to the DUT from the start (see
    /// [`crate::net::Node::impair`]).
    ///
    /// ```
    /// use alpy::{Impairment, Link};
    /// let slow = Link::new().impair(Impairment { rate_kbit: Some(1000), ..Default::default() });
    /// ```
    pub fn impair(self, imp: Impairment) -> Self {
        self.impair_direction(Direction::ToDut, imp)
    }

    /// Impairs one direction of the link, or both, from the start; frames
    /// towards the node need the link's relay ([`Link::relay`]).
    pub fn impair_direction(mut self, dir: Direction, imp: Impairment) -> Self {
        self.impairment = Some((dir, imp));
        self
    }

    /// Chooses the DUT's NIC on this link (its MTU also goes on the node's
    /// side).
    ///
    /// ```
    /// use alpy::nic::{DutNic, NicModel};
    /// let wan = alpy::Link::new().dut_nic(DutNic::new().model(NicModel::Vmxnet3).mtu(1400));
    /// ```
    pub fn dut_nic(mut self, nic: DutNic) -> Self {
        self.dut_nic = nic;
        self
    }

    /// Wires the node to a machine's NIC, `"r1:0"`, instead of the DUT's
    /// next one.
    ///
    /// ```
    /// let l = alpy::Link::new().name("client").on("r1:0");
    /// assert_eq!(l.attach, alpy::internal::link::Attach::Nic("r1".into(), 0));
    /// ```
    pub fn on(mut self, endpoint: &str) -> Self {
        if let Some((m, n)) = self.keep(parse_endpoint(endpoint)) {
            self.attach = Attach::Nic(m, n);
        }
        self
    }

    /// Puts the node on the segment named `segment` (see
    /// [`crate::bed::segment::Segment`]), with the machines' NICs there.
    pub fn on_segment(mut self, segment: &str) -> Self {
        self.attach = Attach::Segment(segment.to_string());
        self
    }

    /// Starts the link down (the DUT's NIC without carrier).
    pub fn down(mut self) -> Self {
        self.down = true;
        self
    }

    /// The name of link `index`: its own, or `link<index>`.
    pub fn name_or_default(&self, index: usize) -> String {
        self.link_name
            .clone()
            .unwrap_or_else(|| format!("link{index}"))
    }

    /// Whether every builder call parsed, and the name is usable; the error
    /// names link `index`.
    pub fn check(&self, index: usize) -> Result<()> {
        let mut problems = self.invalid.clone();
        if let Some(n) = &self.link_name {
            if !is_name(n) {
                problems.push(format!(
                    "bad link name {n:?}: use 1 to 32 letters, digits, '-' or '_'"
                ));
            }
        }
        for t in &self.tags {
            if !is_name(t) {
                problems.push(format!(
                    "bad role {t:?}: use 1 to 32 letters, digits, '-' or '_'"
                ));
            }
        }
        if let Attach::Segment(seg) = &self.attach {
            if self.relay || self.down {
                problems.push(format!(
                    "a node on segment {seg:?} shares it: it has no machine NIC of its own \
                     to relay or to start down (set the machines' NICs down instead)"
                ));
            }
        }
        if matches!(self.impairment, Some((d, _)) if d != Direction::ToDut) && !self.relay {
            problems.push(
                "impairing frames towards the node needs the link's relay: add .relay()".into(),
            );
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(Error::Config(format!(
                "link {index} ({}): {}",
                self.name_or_default(index),
                problems.join("; ")
            )))
        }
    }

    /// The commands that configure `eth0` for this link.
    pub(crate) fn commands(&self, mac: Mac) -> Vec<NetCmd> {
        let mut c = Vec::new();
        let v6 = self.addrs.iter().any(|a| a.addr().is_ipv6()) || self.gateway6.is_some();
        if v6 {
            // Docker disables IPv6 in containers; enable it on the tap.
            c.push(NetCmd::Sysctl(
                format!("net.ipv6.conf.{TAP_NAME}.disable_ipv6"),
                "0".into(),
            ));
            // Else setting the link down flushes its IPv6 addresses.
            c.push(NetCmd::Sysctl(
                format!("net.ipv6.conf.{TAP_NAME}.keep_addr_on_down"),
                "1".into(),
            ));
        }
        c.push(NetCmd::ip(&format!(
            "link set dev {TAP_NAME} address {mac}"
        )));
        if let Some(mtu) = self.dut_nic.mtu {
            c.push(NetCmd::ip(&format!("link set dev {TAP_NAME} mtu {mtu}")));
        }
        c.push(NetCmd::ip(&format!("link set dev {TAP_NAME} up")));
        for a in &self.addrs {
            let nodad = if a.addr().is_ipv6() { " nodad" } else { "" };
            c.push(NetCmd::ip(&format!("addr add {a} dev {TAP_NAME}{nodad}")));
        }
        c.extend(self.route_commands());
        c
    }

    /// The link's routes on the node (default gateways, then the others),
    /// as `replace`: what setting `eth0` up again re-applies, since the
    /// kernel drops a device's routes when it goes down.
    pub(crate) fn route_commands(&self) -> Vec<NetCmd> {
        let mut c = Vec::new();
        // The family follows from the gateway's address (`ip -batch` takes
        // no options).
        for g in [&self.gateway, &self.gateway6].into_iter().flatten() {
            c.push(NetCmd::ip(&format!(
                "route replace default via {g} dev {TAP_NAME}"
            )));
        }
        for (dest, via) in &self.routes {
            c.push(NetCmd::ip(&format!(
                "route replace {dest} via {via} dev {TAP_NAME}"
            )));
        }
        c
    }
}

/// What a link's node is wired to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Attach {
    /// The first machine's (the DUT's) next NIC: link `i` of a one-machine
    /// bed is its NIC `i`.
    #[default]
    NextDutNic,
    /// A machine's NIC: (machine, NIC index).
    Nic(String, usize),
    /// A segment ([`crate::bed::segment::Segment`]), by name.
    Segment(String),
}

/// Parses an endpoint, `"r1:0"`: a machine's name and a NIC index.
///
/// ```
/// assert_eq!(alpy::internal::link::parse_endpoint("r1:2").unwrap(), ("r1".to_string(), 2));
/// assert!(alpy::internal::link::parse_endpoint("r1").is_err());
/// ```
pub fn parse_endpoint(s: &str) -> Result<(String, usize)> {
    let bad = || {
        Error::Config(format!(
            "bad endpoint {s:?}: write a machine and a NIC index, like \"r1:0\""
        ))
    };
    let (m, n) = s.rsplit_once(':').ok_or_else(bad)?;
    let n: usize = n.parse().map_err(|_| bad())?;
    if !is_name(m) || n > 255 {
        return Err(bad());
    }
    Ok((m.to_string(), n))
}

/// Whether `s` may name a link or a role: 1 to 32 letters, digits, `-`,
/// `_`.
pub(crate) fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 32
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// A MAC given as text or as a [`Mac`] (see [`Link::mac`]).
#[derive(Debug, Clone)]
pub enum MacArg {
    /// Parsed when the link is built.
    Text(String),
    /// Already typed.
    Mac(Mac),
}

impl From<&str> for MacArg {
    fn from(s: &str) -> MacArg {
        MacArg::Text(s.to_string())
    }
}

impl From<Mac> for MacArg {
    fn from(m: Mac) -> MacArg {
        MacArg::Mac(m)
    }
}

/// The MAC of link `index` when it must not depend on the run (warm start:
/// the DUT's NICs are part of the saved state, and its ARP cache holds the
/// nodes'): `52:54:00:a1:00:<i>` on the DUT's side, `02:a1:00:a1:00:<i>` on
/// the node's. Each bed's links are private segments, so equal MACs in
/// parallel beds never meet.
pub fn fixed_mac(index: usize, dut_side: bool) -> Mac {
    let first = if dut_side { [0x52, 0x54] } else { [0x02, 0xa1] };
    Mac([first[0], first[1], 0x00, 0xa1, 0x00, index as u8])
}

/// A deterministic, locally administered MAC for link `index` of a run:
/// `52:54:..` on the DUT's side, `02:a1:..` on the node's.
pub fn default_mac(run: &RunId, index: usize, dut_side: bool) -> Mac {
    let h = run.as_str();
    let b = |i: usize| {
        h.get(i..i + 2)
            .and_then(|x| u8::from_str_radix(x, 16).ok())
            .unwrap_or(0)
    };
    let first: [u8; 2] = if dut_side { [0x52, 0x54] } else { [0x02, 0xa1] };
    Mac([first[0], first[1], b(0), b(2), b(4), index as u8])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_commands() {
        let l = Link::new()
            .node_addr("192.168.1.2/24")
            .node_addr("2001:db8:1::2/64")
            .gateway("192.168.1.1")
            .gateway("2001:db8:1::1")
            .route("10.9.0.0/16", "192.168.1.1");
        l.check(0).unwrap();
        let mac: Mac = "02:a1:00:00:00:00".parse().unwrap();
        let cmds: Vec<String> = l.commands(mac).iter().map(NetCmd::to_shell).collect();
        assert_eq!(
            cmds,
            [
                "echo 0 > /proc/sys/net/ipv6/conf/eth0/disable_ipv6",
                "echo 1 > /proc/sys/net/ipv6/conf/eth0/keep_addr_on_down",
                "ip link set dev eth0 address 02:a1:00:00:00:00",
                "ip link set dev eth0 up",
                "ip addr add 192.168.1.2/24 dev eth0",
                "ip addr add 2001:db8:1::2/64 dev eth0 nodad",
                "ip route replace default via 192.168.1.1 dev eth0",
                "ip route replace default via 2001:db8:1::1 dev eth0",
                "ip route replace 10.9.0.0/16 via 192.168.1.1 dev eth0",
            ]
        );
    }

    #[test]
    fn bad_values_are_reported_with_the_link() {
        let l = Link::new()
            .name("up link")
            .node_addr("192.168.1.300/24")
            .gateway("gw")
            .mac("02:a1");
        let e = l.check(2).unwrap_err().to_string();
        for part in [
            "link 2",
            "192.168.1.300/24",
            "\"gw\"",
            "\"02:a1\"",
            "bad link name",
        ] {
            assert!(e.contains(part), "{part} missing in {e}");
        }
        assert_eq!(
            e.matches("invalid configuration").count(),
            1,
            "said once: {e}"
        );
    }

    #[test]
    fn macs_are_deterministic() {
        let run = RunId::new();
        assert_eq!(default_mac(&run, 1, false), default_mac(&run, 1, false));
        assert_ne!(default_mac(&run, 0, false), default_mac(&run, 1, false));
        assert!(default_mac(&run, 0, true).to_string().starts_with("52:54:"));
    }
}
