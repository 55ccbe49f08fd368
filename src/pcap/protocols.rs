//! What appliance tests check most, decoded from a [`Frame`]'s bytes on
//! demand: DHCPv4 (dhcproto), DNS (hickory-proto), ICMPv6 neighbour
//! discovery (etherparse), OSPFv2 (ospf-parser), VRRP and BGP. VRRP's and
//! BGP's are fixed headers (RFC 5798 §5.1, RFC 4271 §4.1) read here: no
//! maintained crate decodes VRRP, and BGP's crates parse whole RIBs to
//! tell a message's type.
//!
//! ```
//! use alpy::pcap::{DhcpMessageType, Filter};
//! // A filter for the server's answers that grant an address.
//! let acks = Filter::new().dhcp(DhcpMessageType::Ack);
//! # let _ = acks;
//! ```

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use etherparse::{NetSlice, SlicedPacket, TransportSlice};

use super::{Frame, PROTO_OSPF, PROTO_VRRP};
use crate::addr::Mac;

/// A DHCPv4 message's type (option 53). [`DhcpMessageType::Other`]
/// never holds a number that has a name here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DhcpMessageType {
    /// A client looks for servers.
    Discover,
    /// A server offers an address.
    Offer,
    /// A client asks for the offered (or its old) address.
    Request,
    /// A client refuses an address in use.
    Decline,
    /// A server grants the address.
    Ack,
    /// A server refuses.
    Nak,
    /// A client gives its address back.
    Release,
    /// A client asks for configuration only.
    Inform,
    /// Another type, by number.
    Other(u8),
}

impl DhcpMessageType {
    /// The type of number `n`.
    pub fn from_code(n: u8) -> DhcpMessageType {
        match n {
            1 => DhcpMessageType::Discover,
            2 => DhcpMessageType::Offer,
            3 => DhcpMessageType::Request,
            4 => DhcpMessageType::Decline,
            5 => DhcpMessageType::Ack,
            6 => DhcpMessageType::Nak,
            7 => DhcpMessageType::Release,
            8 => DhcpMessageType::Inform,
            n => DhcpMessageType::Other(n),
        }
    }

    /// Its number (option 53's value).
    pub fn code(self) -> u8 {
        match self {
            DhcpMessageType::Discover => 1,
            DhcpMessageType::Offer => 2,
            DhcpMessageType::Request => 3,
            DhcpMessageType::Decline => 4,
            DhcpMessageType::Ack => 5,
            DhcpMessageType::Nak => 6,
            DhcpMessageType::Release => 7,
            DhcpMessageType::Inform => 8,
            DhcpMessageType::Other(n) => n,
        }
    }
}

/// A DHCPv4 message.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Dhcp {
    /// Its type (option 53), if it has one.
    pub message_type: Option<DhcpMessageType>,
    /// The transaction id a client's exchange shares.
    pub xid: u32,
    /// The client's hardware address.
    pub client_mac: Option<Mac>,
    /// The address a server gives (`yiaddr`).
    pub your_ip: Ipv4Addr,
    /// The server's identifier (option 54).
    pub server_id: Option<Ipv4Addr>,
    /// The address a client asks for (option 50).
    pub requested_ip: Option<Ipv4Addr>,
    /// The subnet mask (option 1).
    pub subnet_mask: Option<Ipv4Addr>,
    /// Routers (option 3).
    pub routers: Vec<Ipv4Addr>,
    /// DNS servers (option 6).
    pub dns_servers: Vec<Ipv4Addr>,
    /// The lease's length in seconds (option 51).
    pub lease_s: Option<u32>,
    /// The client's host name (option 12).
    pub hostname: Option<String>,
}

/// A DNS question.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DnsQuestion {
    /// The name asked about, without the final dot.
    pub name: String,
    /// Its type: `A`, `AAAA`, `PTR`, ... (`TYPE65` for one without a
    /// name here, as RFC 3597 writes them).
    pub rtype: String,
}

/// A DNS answer record.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DnsAnswer {
    /// The record's name, without the final dot.
    pub name: String,
    /// Its type: `A`, `AAAA`, `CNAME`, ...
    pub rtype: String,
    /// Its time to live, in seconds.
    pub ttl: u32,
    /// Its data as text (an address, a name, ...).
    pub data: String,
}

/// A DNS message.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Dns {
    /// The id a question and its answer share.
    pub id: u16,
    /// An answer (else a question).
    pub response: bool,
    /// The response code: `NoError`, `FormErr`, `ServFail`, `NXDomain`,
    /// `NotImp`, `Refused` (RFC 1035's names), else `RCODE<n>`.
    pub rcode: String,
    /// The questions.
    pub questions: Vec<DnsQuestion>,
    /// The answers.
    pub answers: Vec<DnsAnswer>,
}

impl Dns {
    /// The addresses the answers give for `name` (A and AAAA records).
    pub fn addresses_of(&self, name: &str) -> Vec<IpAddr> {
        let name = name.trim_end_matches('.');
        self.answers
            .iter()
            .filter(|a| a.name.eq_ignore_ascii_case(name))
            .filter_map(|a| a.data.parse().ok())
            .collect()
    }

    /// Whether it asks or answers about `name`.
    pub fn is_about(&self, name: &str) -> bool {
        let name = name.trim_end_matches('.');
        self.questions
            .iter()
            .any(|q| q.name.eq_ignore_ascii_case(name))
            || self
                .answers
                .iter()
                .any(|a| a.name.eq_ignore_ascii_case(name))
    }
}

/// An ICMPv6 neighbour discovery message's kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum NdKind {
    /// Type 133.
    RouterSolicitation,
    /// Type 134.
    RouterAdvertisement,
    /// Type 135: who has the target?
    NeighborSolicitation,
    /// Type 136: the target is at the link-layer address.
    NeighborAdvertisement,
    /// Type 137.
    Redirect,
}

/// An ICMPv6 neighbour discovery message.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Nd {
    /// What it is.
    pub kind: NdKind,
    /// The address asked or told about (solicitations, advertisements,
    /// redirects).
    pub target: Option<Ipv6Addr>,
    /// The link-layer address option (source or target), if any.
    pub link_addr: Option<Mac>,
}

/// An OSPFv2 packet's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum OspfType {
    /// 1: Hello.
    Hello,
    /// 2: Database Description.
    DatabaseDescription,
    /// 3: Link State Request.
    LinkStateRequest,
    /// 4: Link State Update.
    LinkStateUpdate,
    /// 5: Link State Acknowledgment.
    LinkStateAck,
}

/// An LSA's header: what it describes and who advertises it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LsaHeader {
    /// The LSA type (1 router, 2 network, 3 summary, 5 external, ...).
    pub lsa_type: u8,
    /// The link state id.
    pub id: Ipv4Addr,
    /// The router that advertises it.
    pub advertising_router: Ipv4Addr,
    /// Its sequence number.
    pub seq: u32,
    /// Its age in seconds.
    pub age: u16,
}

/// An OSPFv2 packet.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Ospf {
    /// Its type.
    pub kind: OspfType,
    /// The router that sent it.
    pub router_id: Ipv4Addr,
    /// Its area.
    pub area: Ipv4Addr,
    /// A hello's (network mask, hello interval s, dead interval s,
    /// designated router, neighbours).
    pub hello: Option<OspfHello>,
    /// The LSA headers it carries (description, update, ack).
    pub lsas: Vec<LsaHeader>,
}

/// What a hello says.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct OspfHello {
    /// The network's mask.
    pub mask: Ipv4Addr,
    /// Seconds between hellos.
    pub hello_interval: u16,
    /// Seconds of silence before a neighbour is dead.
    pub dead_interval: u32,
    /// The router's priority.
    pub priority: u8,
    /// The designated router.
    pub dr: Ipv4Addr,
    /// The backup designated router.
    pub bdr: Ipv4Addr,
    /// The neighbours it has heard.
    pub neighbors: Vec<Ipv4Addr>,
}

/// A VRRP advertisement (versions 2 and 3).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Vrrp {
    /// 2 or 3.
    pub version: u8,
    /// The virtual router's id.
    pub vrid: u8,
    /// The sender's priority (255: it owns the addresses; 0: it leaves).
    pub priority: u8,
    /// The virtual addresses (IPv4 ones; IPv6 under VRRPv3 over IPv6).
    pub addresses: Vec<IpAddr>,
}

/// A BGP message's type. [`BgpType::Other`] never holds a number that
/// has a name here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BgpType {
    /// 1.
    Open,
    /// 2.
    Update,
    /// 3.
    Notification,
    /// 4.
    Keepalive,
    /// 5 (RFC 2918).
    RouteRefresh,
    /// Another, by number.
    Other(u8),
}

impl Frame {
    /// The DHCPv4 message this frame carries (UDP 67 or 68), decoded.
    pub fn dhcp(&self) -> Option<Dhcp> {
        use dhcproto::v4::{DhcpOption, Message, OptionCode};
        use dhcproto::{Decodable, Decoder};
        let ports = [self.src_port?, self.dst_port?];
        if !ports.iter().any(|p| *p == 67 || *p == 68) {
            return None;
        }
        let payload = udp_payload(&self.data)?;
        // dhcproto asserts on some malformed options (in debug builds,
        // as tests build it): a capture from a device under test may hold
        // anything, so a panic there is "not decodable".
        let m = std::panic::catch_unwind(|| Message::decode(&mut Decoder::new(payload)).ok())
            .ok()
            .flatten()?;
        // The client's address, read here: dhcproto slices `chaddr` by the
        // hardware length field unchecked.
        let client_mac = match (payload.get(1), payload.get(2), payload.get(28..34)) {
            (Some(1), Some(6), Some(mac)) => <[u8; 6]>::try_from(mac).ok().map(Mac),
            _ => None,
        };
        let o = m.opts();
        let ip = |code| match o.get(code) {
            Some(DhcpOption::ServerIdentifier(a))
            | Some(DhcpOption::RequestedIpAddress(a))
            | Some(DhcpOption::SubnetMask(a)) => Some(*a),
            _ => None,
        };
        let ips = |code| match o.get(code) {
            Some(DhcpOption::Router(v)) | Some(DhcpOption::DomainNameServer(v)) => v.clone(),
            _ => Vec::new(),
        };
        Some(Dhcp {
            message_type: o
                .msg_type()
                .map(|t| DhcpMessageType::from_code(u8::from(t))),
            xid: m.xid(),
            client_mac,
            your_ip: m.yiaddr(),
            server_id: ip(OptionCode::ServerIdentifier),
            requested_ip: ip(OptionCode::RequestedIpAddress),
            subnet_mask: ip(OptionCode::SubnetMask),
            routers: ips(OptionCode::Router),
            dns_servers: ips(OptionCode::DomainNameServer),
            lease_s: match o.get(OptionCode::AddressLeaseTime) {
                Some(DhcpOption::AddressLeaseTime(s)) => Some(*s),
                _ => None,
            },
            hostname: match o.get(OptionCode::Hostname) {
                Some(DhcpOption::Hostname(h)) => Some(h.clone()),
                _ => None,
            },
        })
    }

    /// The DNS message this frame carries (UDP port 53), decoded.
    pub fn dns(&self) -> Option<Dns> {
        use hickory_proto::op::{Message, MessageType};
        if self.src_port? != 53 && self.dst_port? != 53 {
            return None;
        }
        let payload = udp_payload(&self.data)?;
        let m = std::panic::catch_unwind(|| Message::from_vec(payload).ok())
            .ok()
            .flatten()?;
        let name = |n: &hickory_proto::rr::Name| n.to_utf8().trim_end_matches('.').to_string();
        Some(Dns {
            id: m.id(),
            response: m.message_type() == MessageType::Response,
            rcode: rcode_name(u16::from(m.response_code())),
            questions: m
                .queries()
                .iter()
                .map(|q| DnsQuestion {
                    name: name(q.name()),
                    rtype: rtype_name(u16::from(q.query_type())),
                })
                .collect(),
            answers: m
                .answers()
                .iter()
                .map(|r| DnsAnswer {
                    name: name(r.name()),
                    rtype: rtype_name(u16::from(r.record_type())),
                    ttl: r.ttl(),
                    data: r.data().to_string(),
                })
                .collect(),
        })
    }

    /// The ICMPv6 neighbour discovery message this frame carries.
    pub fn nd(&self) -> Option<Nd> {
        use etherparse::icmpv6::{Icmpv6PayloadSlice as P, NdpOptionSlice as O};
        let p = SlicedPacket::from_ethernet(&self.data).ok()?;
        let Some(TransportSlice::Icmpv6(icmp)) = &p.transport else {
            return None;
        };
        let (kind, target, options) = match icmp.payload_slice().ok()? {
            P::RouterSolicitation(s) => (NdKind::RouterSolicitation, None, s.options_iterator()),
            P::RouterAdvertisement(s) => (NdKind::RouterAdvertisement, None, s.options_iterator()),
            P::NeighborSolicitation(s) => (
                NdKind::NeighborSolicitation,
                Some(s.target_address()),
                s.options_iterator(),
            ),
            P::NeighborAdvertisement(s) => (
                NdKind::NeighborAdvertisement,
                Some(s.target_address()),
                s.options_iterator(),
            ),
            P::Redirect(s) => (
                NdKind::Redirect,
                Some(s.target_address()),
                s.options_iterator(),
            ),
            _ => return None,
        };
        let link_addr = options.flatten().find_map(|o| {
            let bytes = match o {
                O::SourceLinkLayerAddress(a) => a.link_layer_address(),
                O::TargetLinkLayerAddress(a) => a.link_layer_address(),
                _ => return None,
            };
            <[u8; 6]>::try_from(bytes).ok().map(Mac)
        });
        Some(Nd {
            kind,
            target,
            link_addr,
        })
    }

    /// The OSPFv2 packet this frame carries (IP protocol 89), decoded.
    pub fn ospf(&self) -> Option<Ospf> {
        use ospf_parser::{OspfLinkStateAdvertisement as L, Ospfv2Packet as P};
        if self.protocol? != PROTO_OSPF {
            return None;
        }
        let b = ip_payload(&self.data)?;
        // Only the packet: a trailer after it (LLS, authentication) is not
        // LSA headers.
        let len = u16::from_be_bytes([*b.get(2)?, *b.get(3)?]) as usize;
        let b = b.get(..len)?;
        let (_, packet) = std::panic::catch_unwind(|| ospf_parser::parse_ospfv2_packet(b).ok())
            .ok()
            .flatten()?;
        let lsa = |h: &ospf_parser::OspfLinkStateAdvertisementHeader| LsaHeader {
            lsa_type: h.link_state_type.0,
            id: h.link_state_id(),
            advertising_router: h.advertising_router(),
            seq: h.ls_seq_number,
            age: h.ls_age,
        };
        let (kind, header, hello, lsas) = match &packet {
            P::Hello(h) => (
                OspfType::Hello,
                &h.header,
                Some(OspfHello {
                    mask: h.network_mask(),
                    hello_interval: h.hello_interval,
                    dead_interval: h.router_dead_interval,
                    priority: h.router_priority,
                    dr: h.designated_router(),
                    bdr: h.backup_designated_router(),
                    neighbors: h.neighbor_list.iter().map(|n| Ipv4Addr::from(*n)).collect(),
                }),
                Vec::new(),
            ),
            P::DatabaseDescription(d) => (
                OspfType::DatabaseDescription,
                &d.header,
                None,
                d.lsa_headers.iter().map(lsa).collect(),
            ),
            P::LinkStateRequest(r) => (OspfType::LinkStateRequest, &r.header, None, Vec::new()),
            P::LinkStateUpdate(u) => (
                OspfType::LinkStateUpdate,
                &u.header,
                None,
                u.lsa
                    .iter()
                    .map(|l| match l {
                        L::RouterLinks(a) => lsa(&a.header),
                        L::NetworkLinks(a) => lsa(&a.header),
                        L::SummaryLinkIpNetwork(a) | L::SummaryLinkAsbr(a) => lsa(&a.header),
                        L::ASExternalLink(a) => lsa(&a.header),
                        L::NSSAASExternal(a) => lsa(&a.header),
                        L::OpaqueLinkLocalScope(a)
                        | L::OpaqueAreaLocalScope(a)
                        | L::OpaqueASWideScope(a) => lsa(&a.header),
                    })
                    .collect(),
            ),
            P::LinkStateAcknowledgment(a) => (
                OspfType::LinkStateAck,
                &a.header,
                None,
                a.lsa_headers.iter().map(lsa).collect(),
            ),
        };
        Some(Ospf {
            kind,
            router_id: header.source_router(),
            area: Ipv4Addr::from(header.area_id),
            hello,
            lsas,
        })
    }

    /// The VRRP advertisement this frame carries (IP protocol 112).
    pub fn vrrp(&self) -> Option<Vrrp> {
        if self.protocol? != PROTO_VRRP {
            return None;
        }
        let b = ip_payload(&self.data)?;
        // Version and type (1: advertisement), VRID, priority, count.
        let (version, kind) = (b.first()? >> 4, b.first()? & 0x0f);
        if !(2..=3).contains(&version) || kind != 1 {
            return None;
        }
        let (vrid, priority, count) = (*b.get(1)?, *b.get(2)?, *b.get(3)? as usize);
        let v6 = matches!(self.ip_src, Some(IpAddr::V6(_)));
        let size = if v6 { 16 } else { 4 };
        let addrs = b.get(8..8 + count * size)?;
        let addresses = addrs
            .chunks(size)
            .map(|c| match <[u8; 16]>::try_from(c) {
                Ok(a) => IpAddr::V6(a.into()),
                Err(_) => IpAddr::V4(Ipv4Addr::new(c[0], c[1], c[2], c[3])),
            })
            .collect();
        Some(Vrrp {
            version,
            vrid,
            priority,
            addresses,
        })
    }

    /// The BGP messages this frame's TCP segment carries (port 179), by
    /// type: those chained from the segment's start (a segment that
    /// continues a message of the previous one shows none; the TCP
    /// stream is not reassembled).
    pub fn bgp(&self) -> Vec<BgpType> {
        if self.src_port != Some(179) && self.dst_port != Some(179) {
            return Vec::new();
        }
        let Ok(p) = SlicedPacket::from_ethernet(&self.data) else {
            return Vec::new();
        };
        let Some(TransportSlice::Tcp(t)) = &p.transport else {
            return Vec::new();
        };
        let mut b = t.payload();
        let mut out = Vec::new();
        // Each: 16 bytes of marker (all ones), length, type.
        while b.len() >= 19 && b[..16].iter().all(|x| *x == 0xff) {
            let len = u16::from_be_bytes([b[16], b[17]]) as usize;
            out.push(BgpType::from_code(b[18]));
            if len < 19 || len > b.len() {
                break;
            }
            b = &b[len..];
        }
        out
    }
}

impl BgpType {
    /// The type of number `n`.
    pub fn from_code(n: u8) -> BgpType {
        match n {
            1 => BgpType::Open,
            2 => BgpType::Update,
            3 => BgpType::Notification,
            4 => BgpType::Keepalive,
            5 => BgpType::RouteRefresh,
            n => BgpType::Other(n),
        }
    }

    /// Its number.
    pub fn code(self) -> u8 {
        match self {
            BgpType::Open => 1,
            BgpType::Update => 2,
            BgpType::Notification => 3,
            BgpType::Keepalive => 4,
            BgpType::RouteRefresh => 5,
            BgpType::Other(n) => n,
        }
    }
}

/// A DNS record type's name (RFC 3597's `TYPE<n>` for the others).
fn rtype_name(n: u16) -> String {
    let name = match n {
        1 => "A",
        2 => "NS",
        5 => "CNAME",
        6 => "SOA",
        12 => "PTR",
        15 => "MX",
        16 => "TXT",
        28 => "AAAA",
        33 => "SRV",
        35 => "NAPTR",
        43 => "DS",
        46 => "RRSIG",
        48 => "DNSKEY",
        64 => "SVCB",
        65 => "HTTPS",
        255 => "ANY",
        _ => return format!("TYPE{n}"),
    };
    name.to_string()
}

/// A DNS response code's name (RFC 1035's, else `RCODE<n>`).
fn rcode_name(n: u16) -> String {
    let name = match n {
        0 => "NoError",
        1 => "FormErr",
        2 => "ServFail",
        3 => "NXDomain",
        4 => "NotImp",
        5 => "Refused",
        _ => return format!("RCODE{n}"),
    };
    name.to_string()
}

/// A UDP datagram's payload.
fn udp_payload(data: &[u8]) -> Option<&[u8]> {
    match SlicedPacket::from_ethernet(data).ok()?.transport? {
        TransportSlice::Udp(u) => Some(u.payload()),
        _ => None,
    }
}

/// An IP packet's payload (for protocols etherparse does not decode).
fn ip_payload(data: &[u8]) -> Option<&[u8]> {
    match SlicedPacket::from_ethernet(data).ok()?.net? {
        NetSlice::Ipv4(ip) => Some(ip.payload().payload),
        NetSlice::Ipv6(ip) => Some(ip.payload().payload),
        NetSlice::Arp(_) => None,
    }
}
