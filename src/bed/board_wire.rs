//! A board's ports in a test bed: each port's host interface (a VLAN's
//! sub-interface made if need be) opened as a wire end
//! ([`crate::net::packet_port`]), joined to its node's tap by a switch of
//! two ports, or to its segment's switch, and captured there with host
//! time stamps. A node's apps, verbs and captures work as for a VM's link.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use crate::board::BoardPort;
use crate::error::{Error, Result};
use crate::net::netns::{self, NetCmd};
use crate::net::packet_port;
use crate::net::port_capture::PortCapture;

/// The ports of one board of a bed: (port, its capture file) by NIC.
#[derive(Debug, Clone)]
pub(crate) struct BoardNics {
    /// The machine's index in the bed.
    pub machine: usize,
    /// The board's name, for messages.
    pub board: String,
    /// By NIC: the port and its capture file.
    pub ports: Vec<(BoardPort, PathBuf)>,
}

/// A board's port, open: the wire end, its capture, and the VLAN
/// sub-interface made for it, which [`remove_made`] removes at close.
pub(crate) struct OpenPort {
    pub fd: OwnedFd,
    pub capture: PortCapture,
    pub made: Option<String>,
}

impl OpenPort {
    /// Opens `port`, NIC `nic` of board `board`, captured to `pcap`.
    pub(crate) fn open(board: &str, nic: usize, port: &BoardPort, pcap: &Path) -> Result<OpenPort> {
        let what = format!("board {board} port {nic} ({port})");
        let (ifname, made) = match port {
            BoardPort::Interface(i) => (i.clone(), None),
            BoardPort::Vlan { trunk, vlan } => vlan_interface(trunk, *vlan, &what)?,
        };
        let opened =
            packet_port::open(&ifname, &what).and_then(|fd| Ok((fd, PortCapture::create(pcap)?)));
        match opened {
            Ok((fd, capture)) => Ok(OpenPort { fd, capture, made }),
            Err(e) => {
                if let Some(m) = &made {
                    let _ = delete_link(m);
                }
                Err(e)
            }
        }
    }
}

/// Removes the VLAN sub-interfaces a bed made; the first error.
pub(crate) fn remove_made(made: &[String]) -> Result<()> {
    let mut first = Ok(());
    for m in made {
        let r = delete_link(m);
        if first.is_ok() {
            first = r;
        }
    }
    first
}

fn delete_link(name: &str) -> Result<()> {
    netns::run_here(&[NetCmd::ip(&format!("link del dev {name}"))])
}

/// The sub-interface of VLAN `vlan` on `trunk`: `trunk.vlan` (or
/// `av<vlan>x<trunk's index, hex>` where that name is too long), made if
/// it does not exist. Returned: its name, and whether this call made it.
/// One that a killed bed made is found and used by the next, and left.
fn vlan_interface(trunk: &str, vlan: u16, what: &str) -> Result<(String, Option<String>)> {
    if !(1..=4094).contains(&vlan) {
        return Err(Error::Config(format!(
            "{what}: VLAN {vlan} is not a VLAN id: use 1 to 4094"
        )));
    }
    let index = nix::net::if_::if_nametoindex(trunk).map_err(|_| Error::NotFound {
        what: format!("trunk {trunk:?} ({what})"),
        hint: "name a host interface in the board's port (`ip link` lists them)".into(),
    })?;
    let long = format!("{trunk}.{vlan}");
    let name = if long.len() <= 15 {
        long
    } else {
        format!("av{vlan}x{:x}", index & 0xffff)
    };
    if nix::net::if_::if_nametoindex(name.as_str()).is_ok() {
        return Ok((name, None));
    }
    netns::run_here(&[
        NetCmd::ip(&format!("link set dev {trunk} up")),
        NetCmd::ip(&format!(
            "link add link {trunk} name {name} type vlan id {vlan}"
        )),
    ])
    .map_err(|e| {
        Error::Net(format!(
            "{what}: make {name}, VLAN {vlan} of {trunk} (it needs root and the kernel's \
             8021q module): {e}"
        ))
    })?;
    log::info!(target: "alpy::testbed", "{what}: made {name}");
    Ok((name.clone(), Some(name)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_vlan_id_out_of_range_is_refused() {
        let e = vlan_interface("lo", 4095, "board b port 0")
            .unwrap_err()
            .to_string();
        assert!(e.contains("4095") && e.contains("1 to 4094"), "{e}");
    }

    #[test]
    fn a_vlan_the_kernel_cannot_make_says_why() {
        // Loopback takes no VLAN, whatever the kernel.
        let e = vlan_interface("lo", 7, "board b port 0")
            .unwrap_err()
            .to_string();
        assert!(e.contains("lo.7") && e.contains("8021q"), "{e}");
        assert!(
            nix::net::if_::if_nametoindex("lo.7").is_err(),
            "lo.7 was made"
        );
    }

    #[test]
    fn a_missing_trunk_says_so() {
        let e = vlan_interface("alpy-no-trunk", 7, "board b port 0")
            .unwrap_err()
            .to_string();
        assert!(e.contains("alpy-no-trunk") && e.contains("ip link"), "{e}");
    }
}
