//! The decoding: [`Frame`]'s methods that read the protocols of
//! [`super::protocols`] from its bytes, through the crates named there.
//! Captures hold whatever a device under test sent, so nothing here may
//! panic: the crates' decodes are caught, and a property test feeds
//! random payloads to every one.

use std::net::{IpAddr, Ipv4Addr};

use etherparse::{NetSlice, SlicedPacket, TransportSlice};

use super::protocols::{
    BgpType, Dhcp, DhcpMessageType, Dns, DnsAnswer, DnsQuestion, LsaHeader, Nd, NdKind, Ospf,
    OspfHello, OspfType, Vrrp,
};
use super::{Frame, PROTO_OSPF, PROTO_VRRP};
use crate::addr::Mac;

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
