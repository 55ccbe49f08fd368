//! A PoE port switched over SNMP: the PoE MIB's `pethPsePortAdminEnable`
//! (1.3.6.1.2.1.105.1.1.1.3.GROUP.PORT), 1 (true) for on and 2 (false) for
//! off, as labgrid's PoE driver and most PoE switches do it.

use std::time::Duration;

use super::{PortPower, PowerDriver, Secret};
use crate::error::{Error, Result};

/// `pethPsePortAdminEnable`, without its GROUP.PORT index.
pub const PETH_PSE_PORT_ADMIN_ENABLE: &str = "1.3.6.1.2.1.105.1.1.1.3";

/// How to authenticate to the SNMP agent.
#[derive(Debug, Clone)]
pub enum SnmpAuth {
    /// SNMPv2c with a community (one with write access, for power).
    V2c {
        /// The community.
        community: Secret,
    },
    /// SNMPv3 with the User-based Security Model.
    V3 {
        /// The user name.
        user: String,
        /// Authentication (authNoPriv), if any.
        auth: Option<V3Auth>,
        /// Privacy (authPriv; needs `auth`), if any.
        privacy: Option<V3Privacy>,
    },
}

/// SNMPv3 authentication: a protocol (`MD5`, `SHA`, `SHA-256`, ...) and
/// its pass phrase.
#[derive(Debug, Clone)]
pub struct V3Auth {
    /// The protocol's name as net-snmp writes it.
    pub protocol: String,
    /// The pass phrase.
    pub passphrase: Secret,
}

/// SNMPv3 privacy: a protocol (`DES`, `AES`, `AES-256`, ...) and its pass
/// phrase.
#[derive(Debug, Clone)]
pub struct V3Privacy {
    /// The protocol's name as net-snmp writes it.
    pub protocol: String,
    /// The pass phrase.
    pub passphrase: Secret,
}

impl SnmpAuth {
    /// SNMPv2c with `community`.
    pub fn v2c(community: &str) -> SnmpAuth {
        SnmpAuth::V2c {
            community: Secret::new(community),
        }
    }

    /// SNMPv3 authPriv: `user`, authentication `auth` (`SHA`, ...) with
    /// `auth_pass`, privacy `privacy` (`AES`, ...) with `priv_pass`.
    pub fn v3_auth_priv(
        user: &str,
        auth: &str,
        auth_pass: &str,
        privacy: &str,
        priv_pass: &str,
    ) -> SnmpAuth {
        SnmpAuth::V3 {
            user: user.to_string(),
            auth: Some(V3Auth {
                protocol: auth.to_string(),
                passphrase: Secret::new(auth_pass),
            }),
            privacy: Some(V3Privacy {
                protocol: privacy.to_string(),
                passphrase: Secret::new(priv_pass),
            }),
        }
    }

    /// Whether the protocols are ones alpy knows and the pass phrases
    /// fit them: checked where the settings are read, not at the first
    /// power request.
    pub(crate) fn check(&self) -> Result<()> {
        self.to_auth().map(drop)
    }

    fn to_auth(&self) -> Result<async_snmp::Auth> {
        match self {
            SnmpAuth::V2c { community } => Ok(async_snmp::Auth::v2c(bytes_of(community))),
            SnmpAuth::V3 {
                user,
                auth,
                privacy,
            } => {
                let usm = async_snmp::UsmConfig::new(user.clone().into_bytes());
                let proto_err = |what: &str, p: &str| {
                    Error::Config(format!("SNMPv3 {what} protocol {p:?} is not one alpy knows (MD5, SHA, SHA-224, SHA-256, SHA-384, SHA-512; DES, AES, AES-192, AES-256)"))
                };
                let usm = match (auth, privacy) {
                    (None, None) => usm,
                    (Some(a), None) => {
                        let p: async_snmp::AuthProtocol = a
                            .protocol
                            .parse()
                            .map_err(|_| proto_err("authentication", &a.protocol))?;
                        usm.auth(p, a.passphrase.expose())
                            .map_err(|e| Error::Config(format!("SNMPv3 authentication: {e}")))?
                    }
                    (Some(a), Some(x)) => {
                        let p: async_snmp::AuthProtocol = a
                            .protocol
                            .parse()
                            .map_err(|_| proto_err("authentication", &a.protocol))?;
                        let q: async_snmp::PrivProtocol = x
                            .protocol
                            .parse()
                            .map_err(|_| proto_err("privacy", &x.protocol))?;
                        usm.auth_priv(p, a.passphrase.expose(), q, x.passphrase.expose())
                            .map_err(|e| {
                                Error::Config(format!("SNMPv3 authentication and privacy: {e}"))
                            })?
                    }
                    (None, Some(_)) => {
                        return Err(Error::Config(
                            "SNMPv3 privacy needs authentication too (authPriv)".into(),
                        ))
                    }
                };
                Ok(usm.into())
            }
        }
    }
}

fn bytes_of(s: &Secret) -> async_snmp::Community {
    async_snmp::Community::from(s.expose().as_bytes().to_vec())
}

/// A PoE port on a switch's SNMP agent.
#[derive(Debug, Clone)]
pub struct SnmpPoe {
    /// The agent, `host:port` (port 161 unless given).
    pub agent: String,
    /// The PSE group (usually 1).
    pub group: u32,
    /// The port.
    pub port: u32,
    /// How to authenticate.
    pub auth: SnmpAuth,
    /// How long one request may take (two more tries follow).
    pub timeout: Duration,
}

impl SnmpPoe {
    /// Port `port` of group `group` on the agent at `agent` (`host` or
    /// `host:port`), 2 s a try.
    pub fn new(agent: &str, group: u32, port: u32, auth: SnmpAuth) -> SnmpPoe {
        SnmpPoe {
            agent: agent.to_string(),
            group,
            port,
            auth,
            timeout: Duration::from_secs(2),
        }
    }

    fn oid(&self) -> Result<async_snmp::Oid> {
        async_snmp::Oid::parse(&format!(
            "{PETH_PSE_PORT_ADMIN_ENABLE}.{}.{}",
            self.group, self.port
        ))
        .map_err(|e| Error::Internal(format!("the PoE OID: {e}")))
    }

    fn target(&self) -> String {
        let a = &self.agent;
        // `[v6]:port` and `host:port` have a port; a bare v6 address
        // (two or more colons, no brackets) does not.
        let has_port = if a.starts_with('[') {
            a.contains("]:")
        } else {
            a.matches(':').count() == 1
                && a.rsplit_once(':')
                    .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
        };
        match (has_port, a.matches(':').count() > 1 && !a.starts_with('[')) {
            (true, _) => a.clone(),
            (false, true) => format!("[{a}]:161"),
            (false, false) => format!("{a}:161"),
        }
    }
    /// Runs one request on a private current-thread runtime (the library's
    /// callers are synchronous).
    fn request<T>(
        &self,
        f: impl AsyncFnOnce(async_snmp::Client, async_snmp::Oid) -> async_snmp::Result<T>,
    ) -> Result<T> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::Io {
                context: "start the SNMP client's runtime".into(),
                source: e,
            })?;
        let auth = self.auth.to_auth()?;
        let oid = self.oid()?;
        let timeout = self.timeout;
        let target = self.target();
        rt.block_on(async move {
            let retry = async_snmp::Retry::fixed(2, Duration::ZERO)
                .map_err(|e| Error::Internal(format!("SNMP retry: {e}")))?;
            let client = async_snmp::Client::builder(target.as_str(), auth)
                .request_timeout(timeout)
                .retry(retry)
                .connect()
                .await
                .map_err(|e| explain(&target, &e))?;
            f(client, oid).await.map_err(|e| explain(&target, &e))
        })
    }
}

/// An SNMP error in words a lab admin can act on.
fn explain(agent: &str, e: &async_snmp::Error) -> Error {
    let text = e.to_string();
    let low = text.to_ascii_lowercase();
    let hint = if low.contains("timeout") || low.contains("timed out") {
        " (no answer: is the agent up and reachable, and is the community or v3 user right? An agent drops requests with a wrong community without a word)"
    } else if low.contains("unknownusername") || low.contains("unknown user") {
        " (the agent does not know this SNMPv3 user)"
    } else if low.contains("digest") || low.contains("authentication") {
        " (the SNMPv3 authentication pass phrase or protocol is wrong)"
    } else if low.contains("decrypt") || low.contains("decryption") {
        " (the SNMPv3 privacy pass phrase or protocol is wrong)"
    } else if low.contains("noaccess")
        || low.contains("notwritable")
        || low.contains("readonly")
        || low.contains("authorization")
    {
        " (the community or user may read but not write)"
    } else {
        ""
    };
    Error::Net(format!("SNMP agent {agent}: {text}{hint}"))
}

impl PowerDriver for SnmpPoe {
    fn set(&self, power: PortPower) -> Result<()> {
        let value = match power {
            PortPower::On => 1,
            PortPower::Off => 2,
        };
        self.request(async move |client, oid| {
            client
                .set(&oid, async_snmp::Value::Integer(value))
                .await
                .map(drop)
        })
    }

    fn status(&self) -> Result<PortPower> {
        let got = self.request(async move |client, oid| client.get(&oid).await)?;
        let value = got.varbinds.first().map(|vb| vb.value.clone());
        match value {
            Some(async_snmp::Value::Integer(1)) => Ok(PortPower::On),
            Some(async_snmp::Value::Integer(2)) => Ok(PortPower::Off),
            other => Err(Error::Net(format!(
                "SNMP agent {}: port {}.{} reads {other:?}, not 1 (on) or 2 (off): is it a PoE port?",
                self.target(),
                self.group,
                self.port
            ))),
        }
    }

    fn describe(&self) -> String {
        let version = match &self.auth {
            SnmpAuth::V2c { .. } => "v2c".to_string(),
            SnmpAuth::V3 { user, .. } => format!("v3 user {user}"),
        };
        format!(
            "SNMP agent {} ({version}) PoE port {}.{}",
            self.target(),
            self.group,
            self.port
        )
    }

    fn switch(&self) -> String {
        format!("snmp:{}", self.target())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agents_get_port_161_unless_they_name_one() {
        let t = |a: &str| SnmpPoe::new(a, 1, 1, SnmpAuth::v2c("c")).target();
        assert_eq!(t("poe1.lab"), "poe1.lab:161");
        assert_eq!(t("poe1.lab:1161"), "poe1.lab:1161");
        assert_eq!(t("10.0.0.5"), "10.0.0.5:161");
        assert_eq!(t("fe80::1"), "[fe80::1]:161");
        assert_eq!(t("[fe80::1]:1161"), "[fe80::1]:1161");
    }
}
