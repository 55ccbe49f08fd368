//! Typed network values: MAC addresses and interface addresses with their
//! prefix, shared by nodes, the DUT's NICs and capture filters.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

pub use ipnet::IpNet;

use crate::error::{Error, Result};

/// A MAC address.
///
/// ```
/// use alpy::addr::Mac;
/// let m: Mac = "02:a1:00:00:00:07".parse().unwrap();
/// assert_eq!(m.to_string(), "02:a1:00:00:00:07");
/// assert_eq!(m.octets()[5], 7);
/// assert!("02:a1:00".parse::<Mac>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Mac(pub [u8; 6]);

impl Mac {
    /// The six octets.
    pub fn octets(&self) -> [u8; 6] {
        self.0
    }
}

impl From<[u8; 6]> for Mac {
    fn from(o: [u8; 6]) -> Mac {
        Mac(o)
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let o = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            o[0], o[1], o[2], o[3], o[4], o[5]
        )
    }
}

impl FromStr for Mac {
    type Err = Error;

    fn from_str(s: &str) -> Result<Mac> {
        let bad = || {
            Error::Config(format!(
                "bad MAC address {s:?}: expected six hex octets like 02:a1:00:00:00:01"
            ))
        };
        let parts: Vec<&str> = s.split([':', '-']).collect();
        if parts.len() != 6 {
            return Err(bad());
        }
        let mut o = [0u8; 6];
        for (i, p) in parts.iter().enumerate() {
            if p.len() != 2 {
                return Err(bad());
            }
            o[i] = u8::from_str_radix(p, 16).map_err(|_| bad())?;
        }
        Ok(Mac(o))
    }
}

/// Something that names an interface address with its prefix: a string
/// like `192.168.1.2/24` or `2001:db8::2/64`, or an [`IpNet`].
pub trait ToIpNet {
    /// The address, or what is wrong with it.
    fn to_ip_net(&self) -> Result<IpNet>;
}

impl ToIpNet for IpNet {
    fn to_ip_net(&self) -> Result<IpNet> {
        Ok(*self)
    }
}

impl ToIpNet for &str {
    fn to_ip_net(&self) -> Result<IpNet> {
        self.parse().map_err(|_| {
            Error::Config(format!(
                "bad interface address {self:?}: expected ADDRESS/PREFIX, like 192.168.1.2/24 or 2001:db8::2/64"
            ))
        })
    }
}

impl ToIpNet for String {
    fn to_ip_net(&self) -> Result<IpNet> {
        self.as_str().to_ip_net()
    }
}

impl ToIpNet for &String {
    fn to_ip_net(&self) -> Result<IpNet> {
        self.as_str().to_ip_net()
    }
}

/// Something that names a host address: a string or an [`IpAddr`].
pub trait ToIpAddr {
    /// The address, or what is wrong with it.
    fn to_ip_addr(&self) -> Result<IpAddr>;
}

impl ToIpAddr for IpAddr {
    fn to_ip_addr(&self) -> Result<IpAddr> {
        Ok(*self)
    }
}

impl ToIpAddr for &str {
    fn to_ip_addr(&self) -> Result<IpAddr> {
        self.parse().map_err(|_| {
            Error::Config(format!(
                "bad IP address {self:?}: expected an address like 192.168.1.1 or 2001:db8::1"
            ))
        })
    }
}

impl ToIpAddr for String {
    fn to_ip_addr(&self) -> Result<IpAddr> {
        self.as_str().to_ip_addr()
    }
}

impl ToIpAddr for &String {
    fn to_ip_addr(&self) -> Result<IpAddr> {
        self.as_str().to_ip_addr()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_round_trip_and_reject_garbage() {
        let m: Mac = "52:54:00:AB:cd:01".parse().unwrap();
        assert_eq!(m.to_string(), "52:54:00:ab:cd:01");
        for bad in [
            "",
            "52:54:00:ab:cd",
            "52:54:00:ab:cd:zz",
            "525:4:00:ab:cd:01",
        ] {
            assert!(bad.parse::<Mac>().is_err(), "{bad}");
        }
    }

    #[test]
    fn addresses_are_typed() {
        let n = "192.168.1.2/24".to_ip_net().unwrap();
        assert_eq!(n.addr().to_string(), "192.168.1.2");
        assert_eq!(n.prefix_len(), 24);
        assert!("192.168.1.2".to_ip_net().is_err());
        assert!("2001:db8::1".to_ip_addr().unwrap().is_ipv6());
        let e = "nonsense/8".to_ip_net().unwrap_err().to_string();
        assert!(
            e.contains("\"nonsense/8\"") && e.contains("ADDRESS/PREFIX"),
            "{e}"
        );
    }
}
