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
