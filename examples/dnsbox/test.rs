//! dnsbox's test, as a user writes one for their own appliance: build the
//! image from `recipe.toml` (cached: rebuilt only when the recipe, its
//! files or a package changed), boot it with one link, and check what a
//! client on the LAN sees.
//!
//! ```text
//! cargo nextest run --test dnsbox
//! ```
//!
//! A client node gets a lease with busybox `udhcpc` and resolves the box's
//! local name with `dig`; the link's capture shows the DHCP exchange and
//! the DNS answer, decoded.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::time::Duration;

use alpy::image::{Boot, Plan, Recipe};
use alpy::pcap::{DhcpMessageType, Filter};
use alpy::settings::Settings;
use alpy::{App, Commands, Dut, Link, Login, TestBed, TOOLS_IMAGE};

/// Builds dnsbox (or finds it built) and returns its kernel and initramfs.
fn dnsbox() -> alpy::Result<(std::path::PathBuf, std::path::PathBuf)> {
    let recipe =
        Recipe::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/dnsbox/recipe.toml"))?;
    let built = Plan::new(&recipe, &Settings::from_env())?.build()?;
    match built.boot {
        Boot::Initramfs { initrd } => Ok((built.kernel, initrd)),
        other => panic!("dnsbox's recipe makes an initramfs, not {other:?}"),
    }
}

#[test]
fn a_lan_client_gets_a_lease_and_resolves_the_box() -> alpy::Result<()> {
    alpy::logging::init();
    let (kernel, initrd) = dnsbox()?;
    let mut bed = TestBed::builder("dnsbox")
        .dut(Dut::kernel(kernel, Some(initrd)).append("console=ttyS0,115200 quiet"))
        // The client's address comes from dnsbox, so the link sets none.
        .link(Link::new())
        .login(Login::new("root").password("dnsbox").prompt("dnsbox# "))
        .start()?;
    bed.boot(Duration::from_secs(120))?;
    bed.shell()?
        .wait_until_succeeds("pidof dnsmasq", Duration::from_secs(20))?;

    // busybox's DHCP client in the client node; its default script puts
    // the leased address on the node's eth0.
    let udhcpc = App::new(TOOLS_IMAGE)
        .cap("NET_ADMIN")
        .cap("NET_RAW")
        .cmd(["udhcpc", "-i", "eth0", "-n", "-q", "-t", "5", "-T", "2"]);
    let client = bed.node(0)?;
    let lease = client.run_app(&udhcpc, Duration::from_secs(60))?;
    assert!(lease.status.success(), "udhcpc: {lease:?}");
    let addr = client.succeed("ip -4 -o addr show dev eth0")?;
    assert!(addr.contains("inet 10.0.0.1"), "no lease on eth0: {addr}");

    let dig = App::new(TOOLS_IMAGE).cmd(["dig", "+short", "+tries=3", "@10.0.0.1", "box.lan"]);
    let answer = client.run_app(&dig, Duration::from_secs(30))?;
    assert_eq!(answer.stdout_str().trim(), "10.0.0.1", "{answer:?}");

    // What went over the wire, decoded.
    let cap = bed.capture(0)?;
    let ack = cap
        .filter(Filter::new().dhcp(DhcpMessageType::Ack))
        .find_map(|f| f.dhcp())
        .expect("a DHCP ACK on the LAN");
    let leased = u32::from(ack.your_ip);
    assert!(
        (u32::from(Ipv4Addr::new(10, 0, 0, 100))..=u32::from(Ipv4Addr::new(10, 0, 0, 150)))
            .contains(&leased),
        "{ack:?}"
    );
    assert_eq!(ack.routers, [Ipv4Addr::new(10, 0, 0, 1)], "{ack:?}");
    assert_eq!(ack.lease_s, Some(12 * 3600), "{ack:?}");
    let answer = cap
        .filter(Filter::new().dns_name("box.lan"))
        .filter_map(|f| f.dns())
        .find(|d| d.response)
        .expect("a DNS answer about box.lan");
    assert_eq!(
        answer.addresses_of("box.lan"),
        [IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1))]
    );
    bed.close()
}
