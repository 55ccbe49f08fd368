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

use crate::addr::Mac;

#[cfg(doc)]
use super::Frame;

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
