//! Reading the captures QEMU's `filter-dump` writes, one per link: frames
//! with time stamps, decoded with etherparse, filtered by MAC, ethertype,
//! IP addresses, protocol and ports; and the protocols appliance tests
//! check most, decoded on demand ([`Frame::dhcp`], [`Frame::dns`],
//! [`Frame::nd`], [`Frame::ospf`], [`Frame::vrrp`], [`Frame::bgp`]) and
//! filtered by ([`Filter::dhcp`], [`Filter::dns_name`], ...).
//!
//! ```no_run
//! use alpy::pcap::{Capture, Filter};
//! let cap = Capture::open("link0.pcap".as_ref())?;
//! let echo_requests = Filter::new().ip_dst("192.168.2.2".parse()?).icmp_type(8);
//! println!("{} echo requests", cap.count(&echo_requests));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use std::borrow::Borrow;

use etherparse::{LinkSlice, NetSlice, SlicedPacket, TransportSlice};

use crate::addr::Mac;
use crate::error::{Error, Result};

mod decode;
mod protocols;
pub use protocols::{
    BgpType, Dhcp, DhcpMessageType, Dns, DnsAnswer, DnsQuestion, LsaHeader, Nd, NdKind, Ospf,
    OspfHello, OspfType, Vrrp,
};

/// EtherType of IPv4.
pub const ETHERTYPE_IPV4: u16 = 0x0800;
/// EtherType of ARP.
pub const ETHERTYPE_ARP: u16 = 0x0806;
/// EtherType of IPv6.
pub const ETHERTYPE_IPV6: u16 = 0x86dd;
/// IP protocol number of ICMP.
pub const PROTO_ICMP: u8 = 1;
/// IP protocol number of TCP.
pub const PROTO_TCP: u8 = 6;
/// IP protocol number of UDP.
pub const PROTO_UDP: u8 = 17;
/// IP protocol number of ICMPv6.
pub const PROTO_ICMPV6: u8 = 58;
/// IP protocol number of GRE.
pub const PROTO_GRE: u8 = 47;
/// IP protocol number of ESP (IPsec).
pub const PROTO_ESP: u8 = 50;
/// IP protocol number of OSPF.
pub const PROTO_OSPF: u8 = 89;
/// IP protocol number of VRRP.
pub const PROTO_VRRP: u8 = 112;
/// IP protocol number of SCTP.
pub const PROTO_SCTP: u8 = 132;

/// One captured frame, with what could be decoded of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Time stamp, since the epoch. In a capture from
    /// [`crate::TestBed::capture`] it is host time (comparable with
    /// `SystemTime::now()`); in a file opened with [`Capture::open`] it is
    /// QEMU's own stamp (see [`Capture::shifted`]).
    pub timestamp: Duration,
    /// The frame's bytes as captured.
    pub data: Vec<u8>,
    /// Source MAC.
    pub src_mac: Option<Mac>,
    /// Destination MAC.
    pub dst_mac: Option<Mac>,
    /// EtherType (after any VLAN tag).
    pub ethertype: Option<u16>,
    /// IP source.
    pub ip_src: Option<IpAddr>,
    /// IP destination.
    pub ip_dst: Option<IpAddr>,
    /// IPv4 TTL or IPv6 hop limit.
    pub ttl: Option<u8>,
    /// IP protocol (IPv4) or next header (IPv6).
    pub protocol: Option<u8>,
    /// TCP/UDP source port.
    pub src_port: Option<u16>,
    /// TCP/UDP destination port.
    pub dst_port: Option<u16>,
    /// ICMP(v6) type and code.
    pub icmp: Option<(u8, u8)>,
    /// TCP flags byte (FIN=1, SYN=2, RST=4, PSH=8, ACK=16).
    pub tcp_flags: Option<u8>,
    /// An ARP packet (Ethernet/IPv4), decoded.
    pub arp: Option<Arp>,
}

/// An ARP request or reply for IPv4 over Ethernet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arp {
    /// 1 request, 2 reply ([`Arp::REQUEST`], [`Arp::REPLY`]).
    pub operation: u16,
    /// Who asks (or answers).
    pub sender_mac: Mac,
    /// The sender's address.
    pub sender_ip: std::net::Ipv4Addr,
    /// Whose MAC is wanted (zero in a request).
    pub target_mac: Mac,
    /// The address asked about.
    pub target_ip: std::net::Ipv4Addr,
}

impl Arp {
    /// A request: who has `target_ip`?
    pub const REQUEST: u16 = 1;
    /// A reply: `sender_ip` is at `sender_mac`.
    pub const REPLY: u16 = 2;
}

impl Frame {
    /// Decodes an Ethernet frame; undecodable layers stay `None`.
    pub fn decode(timestamp: Duration, data: Vec<u8>) -> Frame {
        let mut f = Frame {
            timestamp,
            data,
            src_mac: None,
            dst_mac: None,
            ethertype: None,
            ip_src: None,
            ip_dst: None,
            ttl: None,
            protocol: None,
            src_port: None,
            dst_port: None,
            icmp: None,
            tcp_flags: None,
            arp: None,
        };
        let data = f.data.clone();
        let Ok(p) = SlicedPacket::from_ethernet(&data) else {
            return f;
        };
        if let Some(LinkSlice::Ethernet2(eth)) = &p.link {
            f.src_mac = Some(Mac(eth.source()));
            f.dst_mac = Some(Mac(eth.destination()));
            f.ethertype = Some(eth.ether_type().0);
        }
        match &p.net {
            Some(NetSlice::Ipv4(ip)) => {
                let h = ip.header();
                f.ethertype = Some(ETHERTYPE_IPV4);
                f.ip_src = Some(IpAddr::V4(h.source_addr()));
                f.ip_dst = Some(IpAddr::V4(h.destination_addr()));
                f.ttl = Some(h.ttl());
                f.protocol = Some(h.protocol().0);
            }
            Some(NetSlice::Ipv6(ip)) => {
                let h = ip.header();
                f.ethertype = Some(ETHERTYPE_IPV6);
                f.ip_src = Some(IpAddr::V6(h.source_addr()));
                f.ip_dst = Some(IpAddr::V6(h.destination_addr()));
                f.ttl = Some(h.hop_limit());
                f.protocol = Some(ip.payload().ip_number.0);
            }
            Some(NetSlice::Arp(arp)) => {
                f.ethertype = Some(ETHERTYPE_ARP);
                if let Ok(a) = arp.to_packet().try_eth_ipv4() {
                    f.arp = Some(Arp {
                        operation: a.operation.0,
                        sender_mac: Mac(a.sender_mac),
                        sender_ip: a.sender_ipv4.into(),
                        target_mac: Mac(a.target_mac),
                        target_ip: a.target_ipv4.into(),
                    });
                }
            }
            None => {}
        }
        match &p.transport {
            Some(TransportSlice::Tcp(t)) => {
                f.src_port = Some(t.source_port());
                f.dst_port = Some(t.destination_port());
                f.tcp_flags = t.slice().get(13).copied();
            }
            Some(TransportSlice::Udp(u)) => {
                f.src_port = Some(u.source_port());
                f.dst_port = Some(u.destination_port());
            }
            Some(TransportSlice::Icmpv4(i)) => f.icmp = Some((i.type_u8(), i.code_u8())),
            Some(TransportSlice::Icmpv6(i)) => f.icmp = Some((i.type_u8(), i.code_u8())),
            _ => {}
        }
        f
    }

    /// A one-line summary, for logs and assertion messages.
    pub fn summary(&self) -> String {
        let mac = |m: Option<Mac>| m.map(|m| m.to_string()).unwrap_or_else(|| "?".into());
        let mut s = format!(
            "{:.6} {} > {} type {:#06x}",
            self.timestamp.as_secs_f64(),
            mac(self.src_mac),
            mac(self.dst_mac),
            self.ethertype.unwrap_or(0)
        );
        if let (Some(a), Some(b)) = (self.ip_src, self.ip_dst) {
            s.push_str(&format!(
                " {a} > {b} proto {} ttl {}",
                self.protocol.unwrap_or(0),
                self.ttl.unwrap_or(0)
            ));
        }
        if let (Some(a), Some(b)) = (self.src_port, self.dst_port) {
            s.push_str(&format!(" ports {a} > {b}"));
        }
        if let Some((t, c)) = self.icmp {
            s.push_str(&format!(" icmp {t}/{c}"));
        }
        if let Some(a) = self.arp {
            match a.operation {
                Arp::REQUEST => s.push_str(&format!(
                    " arp who-has {} tell {}",
                    a.target_ip, a.sender_ip
                )),
                Arp::REPLY => s.push_str(&format!(" arp {} is-at {}", a.sender_ip, a.sender_mac)),
                op => s.push_str(&format!(" arp op {op}")),
            }
        }
        s
    }
}

/// A frame filter; every condition set must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    src_mac: Option<Mac>,
    dst_mac: Option<Mac>,
    ethertype: Option<u16>,
    ip_src: Option<IpAddr>,
    ip_dst: Option<IpAddr>,
    protocol: Option<u8>,
    src_port: Option<u16>,
    dst_port: Option<u16>,
    icmp_type: Option<u8>,
    arp_op: Option<u16>,
    arp_target: Option<std::net::Ipv4Addr>,
    dhcp: Option<DhcpMessageType>,
    dns_name: Option<String>,
    nd: Option<NdKind>,
    ospf: Option<OspfType>,
    vrrp: Option<u8>,
    bgp: Option<BgpType>,
}

impl Filter {
    /// Matches every frame.
    pub fn new() -> Self {
        Self::default()
    }
    /// Source MAC.
    pub fn src_mac(mut self, mac: impl Into<Mac>) -> Self {
        self.src_mac = Some(mac.into());
        self
    }
    /// Destination MAC.
    pub fn dst_mac(mut self, mac: impl Into<Mac>) -> Self {
        self.dst_mac = Some(mac.into());
        self
    }
    /// EtherType.
    pub fn ethertype(mut self, t: u16) -> Self {
        self.ethertype = Some(t);
        self
    }
    /// IP source address.
    pub fn ip_src(mut self, a: IpAddr) -> Self {
        self.ip_src = Some(a);
        self
    }
    /// IP destination address.
    pub fn ip_dst(mut self, a: IpAddr) -> Self {
        self.ip_dst = Some(a);
        self
    }
    /// IP protocol number.
    pub fn protocol(mut self, p: u8) -> Self {
        self.protocol = Some(p);
        self
    }
    /// TCP/UDP source port.
    pub fn src_port(mut self, p: u16) -> Self {
        self.src_port = Some(p);
        self
    }
    /// TCP/UDP destination port.
    pub fn dst_port(mut self, p: u16) -> Self {
        self.dst_port = Some(p);
        self
    }
    /// ICMP type (8 echo request, 0 echo reply); implies ICMP.
    pub fn icmp_type(mut self, t: u8) -> Self {
        self.icmp_type = Some(t);
        self
    }

    /// ARP packets of this operation ([`Arp::REQUEST`], [`Arp::REPLY`]).
    pub fn arp(mut self, operation: u16) -> Self {
        self.arp_op = Some(operation);
        self
    }
    /// ARP packets about this address (the target of a request, the
    /// sender of a reply).
    pub fn arp_for(mut self, ip: std::net::Ipv4Addr) -> Self {
        self.arp_target = Some(ip);
        self
    }

    /// DHCPv4 messages of this type ([`Frame::dhcp`]).
    pub fn dhcp(mut self, t: DhcpMessageType) -> Self {
        self.dhcp = Some(t);
        self
    }
    /// DNS questions or answers about `name` ([`Frame::dns`]).
    pub fn dns_name(mut self, name: &str) -> Self {
        self.dns_name = Some(name.trim_end_matches('.').to_string());
        self
    }
    /// ICMPv6 neighbour discovery messages of this kind ([`Frame::nd`]).
    pub fn nd(mut self, kind: NdKind) -> Self {
        self.nd = Some(kind);
        self
    }
    /// OSPFv2 packets of this type ([`Frame::ospf`]).
    pub fn ospf(mut self, t: OspfType) -> Self {
        self.ospf = Some(t);
        self
    }
    /// VRRP advertisements of virtual router `vrid` ([`Frame::vrrp`]).
    pub fn vrrp(mut self, vrid: u8) -> Self {
        self.vrrp = Some(vrid);
        self
    }
    /// TCP segments that carry a BGP message of this type
    /// ([`Frame::bgp`]).
    pub fn bgp(mut self, t: BgpType) -> Self {
        self.bgp = Some(t);
        self
    }

    /// Whether `f` passes.
    pub fn matches(&self, f: &Frame) -> bool {
        fn ok<T: PartialEq>(want: &Option<T>, have: &Option<T>) -> bool {
            want.as_ref().is_none_or(|w| have.as_ref() == Some(w))
        }
        ok(&self.src_mac, &f.src_mac)
            && ok(&self.dst_mac, &f.dst_mac)
            && ok(&self.ethertype, &f.ethertype)
            && ok(&self.ip_src, &f.ip_src)
            && ok(&self.ip_dst, &f.ip_dst)
            && ok(&self.protocol, &f.protocol)
            && ok(&self.src_port, &f.src_port)
            && ok(&self.dst_port, &f.dst_port)
            && self
                .icmp_type
                .is_none_or(|t| f.icmp.map(|i| i.0) == Some(t))
            && self
                .arp_op
                .is_none_or(|op| f.arp.map(|a| a.operation) == Some(op))
            && self.arp_target.is_none_or(|ip| {
                f.arp.is_some_and(|a| match a.operation {
                    Arp::REPLY => a.sender_ip == ip,
                    _ => a.target_ip == ip,
                })
            })
            && self.matches_protocols(f)
    }

    /// The decoded protocols' conditions (decoded only when set).
    fn matches_protocols(&self, f: &Frame) -> bool {
        self.dhcp.is_none_or(|t| {
            f.dhcp().and_then(|d| d.message_type).map(|m| m.code()) == Some(t.code())
        }) && self
            .dns_name
            .as_ref()
            .is_none_or(|n| f.dns().is_some_and(|d| d.is_about(n)))
            && self.nd.is_none_or(|k| f.nd().map(|n| n.kind) == Some(k))
            && self
                .ospf
                .is_none_or(|t| f.ospf().map(|o| o.kind) == Some(t))
            && self
                .vrrp
                .is_none_or(|id| f.vrrp().map(|v| v.vrid) == Some(id))
            && self
                .bgp
                .is_none_or(|t| f.bgp().iter().any(|b| b.code() == t.code()))
    }
}

/// A capture file, read whole.
#[derive(Debug, Clone)]
pub struct Capture {
    path: PathBuf,
    frames: Vec<Frame>,
}

/// Reads a pcap file frame by frame, decoding each and keeping none (a
/// long capture does not fill the memory); returns how many there were.
/// A frame cut short at the end (QEMU still writing it) is not there yet.
///
/// ```no_run
/// # fn main() -> alpy::Result<()> {
/// let mut arp = 0;
/// alpy::pcap::each_frame(std::path::Path::new("link0.pcap"), |f| {
///     arp += usize::from(f.arp.is_some())
/// })?;
/// # Ok(()) }
/// ```
pub fn each_frame(path: &Path, mut f: impl FnMut(Frame)) -> Result<usize> {
    let err = |message: String| Error::Pcap {
        path: path.display().to_string(),
        message,
    };
    let file = std::fs::File::open(path).map_err(|e| err(e.to_string()))?;
    let mut reader = pcap_file::pcap::PcapReader::new(std::io::BufReader::new(file))
        .map_err(|e| err(format!("not a pcap file: {e}")))?;
    let mut n = 0;
    while let Some(p) = reader.next_packet() {
        let p = match p {
            Ok(p) => p,
            Err(pcap_file::PcapError::IncompleteBuffer) => break,
            Err(e) => return Err(err(format!("frame {n}: {e}"))),
        };
        f(Frame::decode(p.timestamp, p.data.into_owned()));
        n += 1;
    }
    Ok(n)
}

impl Capture {
    /// Reads and decodes a pcap file.
    pub fn open(path: &Path) -> Result<Capture> {
        let mut frames = Vec::new();
        each_frame(path, |f| frames.push(f))?;
        Ok(Capture {
            path: path.to_path_buf(),
            frames,
        })
    }

    /// The same capture with every time stamp moved by `seconds` (which may
    /// be negative).
    ///
    /// QEMU's `filter-dump` stamps a frame with the time QEMU's creation of
    /// the filter (whole seconds of wall time) plus the guest's *virtual*
    /// clock, which stands still while the DUT is paused. So raw stamps run
    /// early by the time between QEMU's start and `resume()`, plus the
    /// fraction of the second QEMU started in. [`crate::TestBed::capture`]
    /// applies the bed's offset, which it measures, and gives host time.
    pub fn shifted(mut self, seconds: f64) -> Capture {
        for f in &mut self.frames {
            let t = f.timestamp.as_secs_f64() + seconds;
            f.timestamp = Duration::from_secs_f64(t.max(0.0));
        }
        self
    }

    /// The file it was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// All frames, in capture order.
    pub fn frames(&self) -> &[Frame] {
        &self.frames
    }

    /// The frames that pass `filter` (given by value or by reference).
    ///
    /// ```no_run
    /// # fn main() -> alpy::Result<()> {
    /// use alpy::pcap::{Arp, Capture, Filter};
    /// let cap = Capture::open(std::path::Path::new("link0.pcap"))?;
    /// let replies = cap.filter(Filter::new().arp(Arp::REPLY)).count();
    /// let echo = Filter::new().icmp_type(8);
    /// assert_eq!(cap.filter(&echo).count(), cap.count(echo));
    /// # Ok(()) }
    /// ```
    pub fn filter<'a, F>(&'a self, filter: F) -> impl Iterator<Item = &'a Frame> + 'a
    where
        F: Borrow<Filter> + 'a,
    {
        self.frames
            .iter()
            .filter(move |f| filter.borrow().matches(f))
    }

    /// How many frames pass `filter`.
    pub fn count(&self, filter: impl Borrow<Filter>) -> usize {
        self.filter(filter).count()
    }

    /// Fails unless exactly `n` frames pass (`min..=max` with
    /// [`Capture::expect_between`]), listing the capture in the error.
    pub fn expect_count(&self, filter: impl Borrow<Filter>, n: usize) -> Result<()> {
        self.expect_between(filter, n, n)
    }

    /// Fails unless between `min` and `max` frames pass.
    pub fn expect_between(
        &self,
        filter: impl Borrow<Filter>,
        min: usize,
        max: usize,
    ) -> Result<()> {
        let filter = filter.borrow();
        let n = self.count(filter);
        if (min..=max).contains(&n) {
            return Ok(());
        }
        let listing: Vec<String> = self.frames.iter().take(40).map(Frame::summary).collect();
        Err(Error::Pcap {
            path: self.path.display().to_string(),
            message: format!(
                "{n} frames match {filter:?}, expected {}; the capture ({} frames) begins:\n{}",
                if min == max {
                    min.to_string()
                } else {
                    format!("{min}..={max}")
                },
                self.frames.len(),
                listing.join("\n")
            ),
        })
    }
}

#[cfg(test)]
#[path = "pcap_tests.rs"]
mod tests;
