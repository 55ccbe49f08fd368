//! Tests of capture reading, decoding and filters.
use super::*;

fn icmp_echo(ttl: u8) -> Vec<u8> {
    let builder = etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4([192, 168, 1, 2], [192, 168, 2, 2], ttl)
        .icmpv4_echo_request(7, 1);
    let mut v = Vec::new();
    builder.write(&mut v, b"ping").unwrap();
    v
}

fn udp(dst_port: u16) -> Vec<u8> {
    let builder = etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4([192, 168, 1, 2], [192, 168, 2, 2], 64)
        .udp(40000, dst_port);
    let mut v = Vec::new();
    builder.write(&mut v, b"data").unwrap();
    v
}

fn arp(operation: u16, sender: [u8; 4], target: [u8; 4]) -> Vec<u8> {
    let packet = etherparse::ArpEthIpv4Packet {
        operation: etherparse::ArpOperation(operation),
        sender_mac: [2, 0, 0, 0, 0, 1],
        sender_ipv4: sender,
        target_mac: [0; 6],
        target_ipv4: target,
    };
    let builder =
        etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [0xff; 6]).arp(packet.into());
    let mut v = Vec::new();
    builder.write(&mut v).unwrap();
    v
}

#[test]
fn arp_is_decoded_and_filtered_by_value() {
    let req = Frame::decode(Duration::ZERO, arp(1, [192, 168, 1, 2], [192, 168, 1, 1]));
    let a = req.arp.expect("an ARP request decodes");
    assert_eq!(a.operation, Arp::REQUEST);
    assert_eq!(a.target_ip, std::net::Ipv4Addr::new(192, 168, 1, 1));
    assert_eq!(req.ethertype, Some(ETHERTYPE_ARP));
    assert!(
        req.summary()
            .ends_with("arp who-has 192.168.1.1 tell 192.168.1.2"),
        "{}",
        req.summary()
    );
    let rep = Frame::decode(Duration::ZERO, arp(2, [192, 168, 1, 1], [192, 168, 1, 2]));
    assert!(
        rep.summary()
            .contains("arp 192.168.1.1 is-at 02:00:00:00:00:01"),
        "{}",
        rep.summary()
    );
    let gw = std::net::Ipv4Addr::new(192, 168, 1, 1);
    let cap = Capture {
        path: "mem".into(),
        frames: vec![req, rep, Frame::decode(Duration::ZERO, icmp_echo(64))],
    };
    // By value and by reference alike.
    assert_eq!(cap.count(Filter::new().arp(Arp::REQUEST)), 1);
    assert_eq!(cap.count(Filter::new().arp_for(gw)), 2);
    let replies = Filter::new().arp(Arp::REPLY).arp_for(gw);
    assert_eq!(cap.filter(&replies).count(), 1);
    assert_eq!(cap.filter(replies).count(), 1);
    cap.expect_count(Filter::new().ethertype(ETHERTYPE_ARP), 2)
        .unwrap();
}

#[test]
fn writes_reads_and_filters() {
    let dir = std::env::temp_dir().join(format!("alpy-pcap-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("t.pcap");
    {
        let file = std::fs::File::create(&path).unwrap();
        let mut w = pcap_file::pcap::PcapWriter::new(file).unwrap();
        for (i, data) in [icmp_echo(64), udp(53), icmp_echo(63)].iter().enumerate() {
            w.write_packet(&pcap_file::pcap::PcapPacket::new(
                Duration::from_millis(i as u64),
                data.len() as u32,
                data,
            ))
            .unwrap();
        }
    }
    let cap = Capture::open(&path).unwrap();
    assert_eq!(cap.frames().len(), 3);
    let echo = Filter::new()
        .icmp_type(8)
        .ip_dst("192.168.2.2".parse().unwrap());
    assert_eq!(cap.count(&echo), 2);
    let ttls: Vec<u8> = cap.filter(&echo).filter_map(|f| f.ttl).collect();
    assert_eq!(ttls, [64, 63]);
    assert_eq!(cap.count(Filter::new().protocol(PROTO_UDP).dst_port(53)), 1);
    assert_eq!(cap.count(Filter::new().dst_port(80)), 0);
    assert_eq!(
        cap.count(
            Filter::new()
                .src_mac([2, 0, 0, 0, 0, 1])
                .ethertype(ETHERTYPE_IPV4)
        ),
        3
    );
    cap.expect_count(&echo, 2).unwrap();
    let err = cap.expect_count(&echo, 5).unwrap_err().to_string();
    assert!(
        err.contains("2 frames match") && err.contains("icmp 8/0"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn garbage_is_not_a_capture() {
    let dir = std::env::temp_dir().join(format!("alpy-pcap-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bad.pcap");
    std::fs::write(&path, b"definitely not pcap").unwrap();
    assert!(Capture::open(&path)
        .unwrap_err()
        .to_string()
        .contains("not a pcap file"));
    std::fs::remove_dir_all(&dir).ok();
}

/// An IPv4 frame (to 224.0.0.5) carrying `proto` with a few payload bytes.
fn ip_proto(proto: u8) -> Vec<u8> {
    let mut ip = etherparse::Ipv4Header::new(
        4,
        1,
        etherparse::IpNumber(proto),
        [10, 0, 0, 1],
        [224, 0, 0, 5],
    )
    .unwrap();
    ip.header_checksum = ip.calc_header_checksum();
    let mut v = vec![1, 0, 0x5e, 0, 0, 5, 2, 0, 0, 0, 0, 1, 0x08, 0x00];
    ip.write(&mut v).unwrap();
    v.extend_from_slice(&[0, 1, 2, 3]);
    v
}

#[test]
fn routing_and_tunnel_protocols_filter_by_number() {
    let numbers = [
        (PROTO_GRE, 47),
        (PROTO_ESP, 50),
        (PROTO_OSPF, 89),
        (PROTO_VRRP, 112),
        (PROTO_SCTP, 132),
    ];
    for (constant, iana) in numbers {
        let f = Frame::decode(Duration::ZERO, ip_proto(iana));
        assert_eq!(f.protocol, Some(iana));
        assert!(
            Filter::new().protocol(constant).matches(&f),
            "protocol {iana}"
        );
        assert!(!Filter::new().protocol(PROTO_UDP).matches(&f));
    }
}

/// An IPv4 packet of protocol `proto` carrying `payload`, framed.
fn framed_ip(proto: u8, dst: [u8; 4], payload: &[u8]) -> Frame {
    let mut v = Vec::new();
    etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [1, 0, 0x5e, 0, 0, 5])
        .ipv4([192, 168, 170, 8], dst, 1)
        .write(&mut v, etherparse::IpNumber(proto), payload)
        .unwrap();
    Frame::decode(Duration::ZERO, v)
}

#[test]
fn ospf_hellos_and_their_fields_decode() {
    // Packet 6 of Wireshark's sample capture ospf.cap: a hello.
    let hello: [u8; 44] = [
        0x02, 0x01, 0x00, 0x2c, 0xc0, 0xa8, 0xaa, 0x08, 0x00, 0x00, 0x00, 0x01, 0x27, 0x3b, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0x00, 0x00, 0x0a,
        0x02, 0x01, 0x00, 0x00, 0x00, 0x28, 0xc0, 0xa8, 0xaa, 0x08, 0x00, 0x00, 0x00, 0x00,
    ];
    let f = framed_ip(PROTO_OSPF, [224, 0, 0, 5], &hello);
    let o = f.ospf().expect("an OSPF packet");
    assert_eq!(o.kind, OspfType::Hello);
    assert_eq!(o.router_id, std::net::Ipv4Addr::new(192, 168, 170, 8));
    assert_eq!(o.area, std::net::Ipv4Addr::new(0, 0, 0, 1));
    let h = o.hello.unwrap();
    assert_eq!((h.hello_interval, h.dead_interval), (10, 40));
    assert_eq!(h.mask, std::net::Ipv4Addr::new(255, 255, 255, 0));
    assert_eq!(h.dr, std::net::Ipv4Addr::new(192, 168, 170, 8));
    assert!(Filter::new().ospf(OspfType::Hello).matches(&f));
    assert!(!Filter::new().ospf(OspfType::LinkStateUpdate).matches(&f));
    // Not OSPF: no decode, no match.
    assert!(framed_ip(PROTO_VRRP, [224, 0, 0, 18], &hello)
        .ospf()
        .is_none());
}

#[test]
fn vrrp_advertisements_decode() {
    // VRRPv2 (RFC 3768 §5.3): version 2, type 1, VRID 7, priority 100,
    // one address, no authentication, 1 s, checksum, 192.168.1.254.
    let adv = [
        0x21, 7, 100, 1, 0, 1, 0, 0, 192, 168, 1, 254, 0, 0, 0, 0, 0, 0, 0, 0,
    ];
    let f = framed_ip(PROTO_VRRP, [224, 0, 0, 18], &adv);
    let v = f.vrrp().expect("a VRRP advertisement");
    assert_eq!((v.version, v.vrid, v.priority), (2, 7, 100));
    assert_eq!(v.addresses, ["192.168.1.254".parse::<IpAddr>().unwrap()]);
    assert!(Filter::new().vrrp(7).matches(&f));
    assert!(!Filter::new().vrrp(8).matches(&f));
    // VRRPv3 (RFC 5798): version 3, max advertisement interval instead.
    let v3 = [0x31, 9, 255, 1, 0, 100, 0, 0, 10, 0, 0, 1];
    let v = framed_ip(PROTO_VRRP, [224, 0, 0, 18], &v3).vrrp().unwrap();
    assert_eq!((v.version, v.vrid, v.priority), (3, 9, 255));
    // A short or odd packet is not one.
    assert!(framed_ip(PROTO_VRRP, [224, 0, 0, 18], &[0x21, 7])
        .vrrp()
        .is_none());
    assert!(framed_ip(PROTO_VRRP, [224, 0, 0, 18], &[0x51, 7, 1, 0])
        .vrrp()
        .is_none());
}

#[test]
fn bgp_messages_in_a_segment_decode() {
    let msg = |t: u8, body: &[u8]| {
        let mut m = vec![0xff; 16];
        m.extend_from_slice(&((19 + body.len()) as u16).to_be_bytes());
        m.push(t);
        m.extend_from_slice(body);
        m
    };
    // An UPDATE (empty: no withdrawn routes, no attributes) and a
    // KEEPALIVE in one segment.
    let mut payload = msg(2, &[0, 0, 0, 0]);
    payload.extend(msg(4, &[]));
    let mut v = Vec::new();
    etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
        .tcp(179, 50000, 1, 1000)
        .write(&mut v, &payload)
        .unwrap();
    let f = Frame::decode(Duration::ZERO, v);
    assert_eq!(f.bgp(), [BgpType::Update, BgpType::Keepalive]);
    assert!(Filter::new().bgp(BgpType::Keepalive).matches(&f));
    assert!(!Filter::new().bgp(BgpType::Open).matches(&f));
    // Port 179 without the marker is not BGP.
    let mut v = Vec::new();
    etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
        .tcp(179, 50000, 1, 1000)
        .write(&mut v, &[0u8; 19])
        .unwrap();
    assert!(Frame::decode(Duration::ZERO, v).bgp().is_empty());
}

#[test]
fn neighbour_discovery_decodes() {
    // A neighbour solicitation for fe80::1 from 02:00:00:00:00:01.
    let target: std::net::Ipv6Addr = "fe80::1".parse().unwrap();
    let mut body = target.octets().to_vec();
    body.extend_from_slice(&[1, 1, 2, 0, 0, 0, 0, 1]);
    let mut v = Vec::new();
    etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [0x33, 0x33, 0xff, 0, 0, 1])
        .ipv6(
            "fe80::2".parse::<std::net::Ipv6Addr>().unwrap().octets(),
            "ff02::1:ff00:1"
                .parse::<std::net::Ipv6Addr>()
                .unwrap()
                .octets(),
            255,
        )
        .icmpv6_raw(135, 0, [0; 4])
        .write(&mut v, &body)
        .unwrap();
    let f = Frame::decode(Duration::ZERO, v);
    let nd = f.nd().expect("a neighbour solicitation");
    assert_eq!(nd.kind, NdKind::NeighborSolicitation);
    assert_eq!(nd.target, Some(target));
    assert_eq!(nd.link_addr, Some(Mac([2, 0, 0, 0, 0, 1])));
    assert!(Filter::new().nd(NdKind::NeighborSolicitation).matches(&f));
    assert!(!Filter::new().nd(NdKind::NeighborAdvertisement).matches(&f));
    // An echo request is ICMPv6 but not neighbour discovery.
    assert!(Frame::decode(Duration::ZERO, icmp_echo(64)).nd().is_none());
}

/// A frame carrying `payload` as UDP to `port`.
fn udp_to(port: u16, payload: &[u8]) -> Frame {
    let mut v = Vec::new();
    etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [0xff; 6])
        .ipv4([0, 0, 0, 0], [255, 255, 255, 255], 64)
        .udp(68, port)
        .write(&mut v, payload)
        .unwrap();
    Frame::decode(Duration::ZERO, v)
}

#[test]
fn dhcp_with_an_odd_hardware_length_decodes_without_its_mac() {
    // A BOOTREPLY whose hlen says 17: dhcproto would slice past chaddr.
    let mut m = vec![0u8; 240];
    m[0] = 2;
    m[1] = 1;
    m[2] = 17;
    m[236..240].copy_from_slice(&[99, 130, 83, 99]);
    m.extend_from_slice(&[53, 1, 5, 255]);
    let d = udp_to(67, &m).dhcp().expect("decoded");
    assert_eq!(d.message_type, Some(DhcpMessageType::Ack));
    assert_eq!(d.client_mac, None);
    assert_eq!(DhcpMessageType::from_code(5), DhcpMessageType::Ack);
    assert!(Filter::new()
        .dhcp(DhcpMessageType::Other(5))
        .matches(&udp_to(67, &m)));
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]

    /// Captures hold whatever a device under test sent: no decoder
    /// panics on any payload.
    #[test]
    fn decoders_never_panic(payload in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600),
                            magic in proptest::prelude::any::<bool>()) {
        let mut p = payload.clone();
        if magic && p.len() >= 240 {
            // Often a DHCP message, so the options are reached.
            p[236..240].copy_from_slice(&[99, 130, 83, 99]);
        }
        for port in [67, 68, 53] {
            let f = udp_to(port, &p);
            let _ = (f.dhcp(), f.dns());
        }
        let _ = framed_ip(PROTO_OSPF, [224, 0, 0, 5], &p).ospf();
        let _ = framed_ip(PROTO_VRRP, [224, 0, 0, 18], &p).vrrp();
        let mut v = Vec::new();
        etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .tcp(179, 50000, 1, 1000)
            .write(&mut v, &p)
            .unwrap();
        let _ = Frame::decode(Duration::ZERO, v).bgp();
        let mut v = Vec::new();
        etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv6([0xfe; 16], [0xff; 16], 255)
            .icmpv6_raw(p.first().copied().unwrap_or(135), 0, [0; 4])
            .write(&mut v, &p)
            .unwrap();
        let _ = Frame::decode(Duration::ZERO, v).nd();
    }
}
