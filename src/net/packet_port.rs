//! A host interface as one end of a wire: a board's port. An `AF_PACKET`
//! socket bound to the interface reads and writes whole Ethernet frames,
//! one per call, as a tap does, so the same user-space switch
//! ([`crate::net::hub::Hub`]) joins it to a node's tap or to a segment.
//!
//! Why not move the interface into a node's namespace: a moved physical
//! port comes back only when the namespace goes, a moved veth is
//! destroyed with it, and a macvlan sees only its own MAC's frames. The
//! socket takes every frame (promiscuous, a membership the kernel drops
//! with the socket, so even SIGKILL leaves no promiscuous port), leaves
//! the interface in the host's namespace, and lets a board's port be
//! impaired and captured like a VM's.
//!
//! The interface must be the board's alone: it may have no addresses (the
//! host's own traffic would go to the board), and its IPv6 is turned off
//! before it is brought up, so the host says nothing on the board's wire.
//! Both stay so after the bed: the interface is left up, IPv6 off.
//!
//! A real network card may merge frames (GRO, LRO) and strip VLAN tags
//! into metadata a plain read does not see: turn those offloads off on a
//! board's port (`ethtool -K IF gro off lro off rxvlan off`).

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use crate::error::{Error, Result};
use crate::net::netns::{self, NetCmd};

/// Every protocol, in network order, as `AF_PACKET` takes it.
fn eth_p_all() -> u16 {
    (libc::ETH_P_ALL as u16).to_be()
}

/// The index of interface `ifname`, or an error that says what to fix.
fn index_of(ifname: &str, what: &str) -> Result<u32> {
    nix::net::if_::if_nametoindex(ifname).map_err(|_| Error::NotFound {
        what: format!("host interface {ifname:?} ({what})"),
        hint: "cable the board to a host interface (or a VLAN of a trunk) and name it in the \
               board's `ports`; `ip link` lists this host's interfaces"
            .into(),
    })
}

/// The addresses `ifname` has that are not IPv6 link-local.
fn addresses_of(ifname: &str) -> Vec<String> {
    let Ok(all) = nix::ifaddrs::getifaddrs() else {
        return Vec::new();
    };
    all.filter(|a| a.interface_name == ifname)
        .filter_map(|a| a.address)
        .filter_map(|s| {
            if let Some(v4) = s.as_sockaddr_in() {
                return Some(v4.ip().to_string());
            }
            let v6 = s.as_sockaddr_in6()?.ip();
            let link_local = v6.segments()[0] & 0xffc0 == 0xfe80;
            (!link_local).then(|| v6.to_string())
        })
        .collect()
}

/// Sets `SOL_PACKET` option `name` to `value` on `fd`; whether it took.
fn packet_option<T>(fd: &OwnedFd, name: libc::c_int, value: &T) -> bool {
    // SAFETY: `value` is a live T and the length given is T's size.
    unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_PACKET,
            name,
            std::ptr::from_ref(value).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        ) == 0
    }
}

/// Readies `ifname` (IPv6 off, up) and opens a socket that reads and
/// writes its frames. `what` names the port in errors (`board fw-3 port 0`).
pub fn open(ifname: &str, what: &str) -> Result<OwnedFd> {
    let index = index_of(ifname, what)?;
    let addrs = addresses_of(ifname);
    if !addrs.is_empty() {
        return Err(Error::Config(format!(
            "{what}: host interface {ifname} has addresses ({}): the host's own traffic \
             would reach the board; give the board an interface of its own, without addresses",
            addrs.join(", ")
        )));
    }
    let v6 = format!("/proc/sys/net/ipv6/conf/{ifname}/disable_ipv6");
    if std::path::Path::new(&v6).exists() {
        std::fs::write(&v6, "1")
            .map_err(|e| Error::io(format!("{what}: turn IPv6 off on {ifname} (needs root)"), e))?;
    }
    netns::run_here(&[NetCmd::ip(&format!("link set dev {ifname} up"))])
        .map_err(|e| Error::Net(format!("{what}: bring {ifname} up: {e}")))?;
    // Protocol 0: no frame at all until the bind below names the
    // interface and the protocols (ETH_P_ALL here would queue every
    // interface's frames in between).
    // SAFETY: plain socket(2); the descriptor is owned below.
    let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(Error::io(
            format!("{what}: open a packet socket on {ifname} (needs CAP_NET_RAW)"),
            std::io::Error::last_os_error(),
        ));
    }
    // SAFETY: `raw` is a fresh descriptor nobody else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let fail = |step: &str| {
        Error::io(
            format!("{what}: {step} on {ifname}"),
            std::io::Error::last_os_error(),
        )
    };
    // What this socket sends is not read back.
    if !packet_option(&fd, libc::PACKET_IGNORE_OUTGOING, &(1 as libc::c_int)) {
        return Err(fail("ignore outgoing frames (Linux 4.20 or later)"));
    }
    // SAFETY: an all-zero sockaddr_ll is valid; the fields are set below.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = eth_p_all();
    sll.sll_ifindex = index as i32;
    // SAFETY: bind with a sockaddr_ll of its own size.
    if unsafe {
        libc::bind(
            fd.as_raw_fd(),
            std::ptr::from_ref(&sll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    } != 0
    {
        return Err(fail("bind a packet socket"));
    }
    // SAFETY: an all-zero packet_mreq is valid; the fields are set below.
    let mut mreq: libc::packet_mreq = unsafe { std::mem::zeroed() };
    mreq.mr_ifindex = index as i32;
    mreq.mr_type = libc::PACKET_MR_PROMISC as u16;
    if !packet_option(&fd, libc::PACKET_ADD_MEMBERSHIP, &mreq) {
        return Err(fail("turn promiscuous mode on"));
    }
    log::debug!(target: "alpy::net", "{what}: host interface {ifname} (index {index}) is a wire end");
    Ok(fd)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_interface_says_what_to_fix() {
        let e = open("alpy-no-such0", "board b port 0")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("alpy-no-such0") && e.contains("board b port 0"),
            "{e}"
        );
        assert!(e.contains("ip link"), "{e}");
    }

    #[test]
    fn an_interface_with_addresses_is_refused() {
        // Loopback always has 127.0.0.1.
        let e = open("lo", "board b port 1").unwrap_err().to_string();
        assert!(e.contains("127.0.0.1") && e.contains("of its own"), "{e}");
    }
}
