//! The capture decoders against what real tools put on a real link: the
//! test guest's busybox `udhcpc` gets a lease from `dnsmasq` on the client
//! node, and `dig` on the server node asks that `dnsmasq`, through the
//! guest, for a local record. Link 0's capture must show the four DHCP
//! messages and the DNS question and answer, decoded and filtered.

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use alpy::pcap::{DhcpMessageType, Filter};
use alpy::{App, Commands};

#[test]
fn dhcp_and_dns_from_real_tools_decode_and_filter() {
    let mut bed = common::router_bed("decoders").start().unwrap();
    bed.boot(Duration::from_secs(120)).unwrap();
    // dnsmasq as an appliance would run it: a DHCP range on the LAN, one
    // local record, no forwarding.
    let server = App::new("alpy/tools").cap("NET_ADMIN").cap("NET_RAW").cmd([
        "dnsmasq",
        "--keep-in-foreground",
        "--user=root",
        "--no-resolv",
        "--no-hosts",
        "--log-facility=-",
        "--dhcp-authoritative",
        "--dhcp-range=192.168.1.100,192.168.1.110,255.255.255.0,1h",
        "--dhcp-option=option:router,192.168.1.1",
        "--address=/router.lab/192.168.1.1",
    ]);
    let client = bed.node(0).unwrap();
    let _dnsmasq = client.spawn_app(&server).unwrap();
    client
        .wait_until_succeeds(
            "ss -lnu | grep -q ':67 ' && ss -lnu | grep -q ':53 '",
            Duration::from_secs(20),
        )
        .unwrap();
    // The guest's DHCP client: the exchange only (its script does nothing).
    let out = bed
        .shell()
        .unwrap()
        .succeed_within(
            "udhcpc -i eth0 -n -q -t 5 -T 2 -s /bin/true 2>&1",
            Duration::from_secs(60),
        )
        .unwrap();
    assert!(out.contains("lease of 192.168.1.1"), "{out}");
    // dig from the server node, routed by the guest to dnsmasq.
    let dig =
        App::new("alpy/tools").cmd(["dig", "+short", "+tries=3", "@192.168.1.2", "router.lab"]);
    let answer = bed
        .node(1)
        .unwrap()
        .run_app(&dig, Duration::from_secs(30))
        .unwrap();
    assert_eq!(answer.stdout_str().trim(), "192.168.1.1", "{answer:?}");

    let cap = bed.capture(0).unwrap();
    for t in [
        DhcpMessageType::Discover,
        DhcpMessageType::Offer,
        DhcpMessageType::Request,
        DhcpMessageType::Ack,
    ] {
        assert!(
            cap.count(Filter::new().dhcp(t)) >= 1,
            "no DHCP {t:?} on link 0: {:#?}",
            cap.frames()
                .iter()
                .filter_map(|f| f.dhcp())
                .collect::<Vec<_>>()
        );
    }
    let ack = cap
        .filter(Filter::new().dhcp(DhcpMessageType::Ack))
        .next()
        .and_then(|f| f.dhcp())
        .unwrap();
    let lease = u32::from(ack.your_ip);
    assert!(
        (u32::from(Ipv4Addr::new(192, 168, 1, 100))..=u32::from(Ipv4Addr::new(192, 168, 1, 110)))
            .contains(&lease),
        "{ack:?}"
    );
    assert_eq!(
        ack.server_id,
        Some(Ipv4Addr::new(192, 168, 1, 2)),
        "{ack:?}"
    );
    assert_eq!(ack.routers, [Ipv4Addr::new(192, 168, 1, 1)], "{ack:?}");
    assert_eq!(ack.lease_s, Some(3600), "{ack:?}");
    let discover = cap
        .filter(Filter::new().dhcp(DhcpMessageType::Discover))
        .next()
        .and_then(|f| f.dhcp())
        .unwrap();
    assert_eq!(discover.xid, ack.xid, "one exchange");
    assert_eq!(discover.client_mac, Some(bed.dut_mac(0)), "{discover:?}");

    // The question and its answer, on link 0 (between the guest and
    // dnsmasq).
    let about = Filter::new().dns_name("router.lab");
    assert!(
        cap.count(&about) >= 2,
        "{} DNS frames about router.lab",
        cap.count(&about)
    );
    let answer = cap
        .filter(&about)
        .filter_map(|f| f.dns())
        .find(|d| d.response)
        .expect("an answer");
    assert_eq!(
        answer.addresses_of("router.lab"),
        [IpAddr::V4(Ipv4Addr::new(192, 168, 1, 1))],
        "{answer:?}"
    );
    assert_eq!(answer.rcode, "NoError");
    assert_eq!(cap.count(Filter::new().dns_name("elsewhere.lab")), 0);
    bed.close().unwrap();
}
