//! Boards as configuration describes them (a lab's inventory, a test's
//! own file): TOML in, drivers out, secrets never out.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::console::ConsolePort;
use super::power::{
    CommandPower, PowerDriver, QmpPower, Secret, SnmpAuth, SnmpPoe, V3Auth, V3Privacy,
};
use crate::error::{Error, Result};

/// One board: what it is, how it is powered, where its console is.
///
/// ```
/// let spec: alpy::board::BoardSpec = toml::from_str(r#"
///     name = "fw-3"
///     class = "fw-9000"
///     tags = ["rev-b"]
///     console = { kind = "rfc2217", addr = "consoles.lab:7003" }
///     power = { driver = "snmp", agent = "poe1.lab", port = 3, community = "private" }
/// "#).unwrap();
/// assert!(spec.power.driver().is_ok());
/// assert!(!format!("{spec:?}").contains("private"));
/// ```
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BoardSpec {
    /// The board's name (unique in a lab).
    pub name: String,
    /// Its class: boards of one class are interchangeable for a test.
    pub class: String,
    /// Attributes a reservation may ask for.
    #[serde(default)]
    pub tags: Vec<String>,
    /// How it is powered.
    pub power: PowerSpec,
    /// Where its console is.
    pub console: ConsoleSpec,
    /// Its network ports, in its NIC order: host interfaces cabled to
    /// it, or VLANs of a trunk.
    #[serde(default)]
    pub ports: Vec<BoardPort>,
    /// Where its SSH server is, as the lab host reaches it (`host:port`,
    /// often a management port): alpy-lab tunnels the holder's
    /// `alpy lab ssh-proxy BOARD` to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh: Option<String>,
}

/// One of a board's network ports, as the host reaches it.
///
/// ```
/// let spec: alpy::board::BoardSpec = toml::from_str(r#"
///     name = "fw-3"
///     class = "fw-9000"
///     console = { kind = "tcp", addr = "consoles.lab:7003" }
///     power = { driver = "qmp", socket = "/run/fw-3.qmp" }
///     ports = ["enp3s0", { trunk = "enp4s0", vlan = 103 }]
/// "#).unwrap();
/// assert_eq!(spec.ports[0], alpy::board::BoardPort::Interface("enp3s0".into()));
/// assert_eq!(spec.ports[1].to_string(), "VLAN 103 of enp4s0");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(untagged, deny_unknown_fields)]
pub enum BoardPort {
    /// A host interface cabled to the board's port, for the board alone.
    Interface(String),
    /// A VLAN of a trunk cabled to a switch that puts the board's port in
    /// that VLAN. Its sub-interface is made when a bed starts (and removed
    /// when it closes) unless it exists.
    Vlan {
        /// The trunk's host interface.
        trunk: String,
        /// The VLAN id (1 to 4094).
        vlan: u16,
    },
}

impl std::fmt::Display for BoardPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BoardPort::Interface(i) => write!(f, "{i}"),
            BoardPort::Vlan { trunk, vlan } => write!(f, "VLAN {vlan} of {trunk}"),
        }
    }
}

/// A power driver and its settings.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(tag = "driver", rename_all = "kebab-case", deny_unknown_fields)]
pub enum PowerSpec {
    /// A PoE port on a switch's SNMP agent: v2c with `community`, or v3
    /// with `user` (and `auth`, `privacy`).
    Snmp {
        /// `host` or `host:port`.
        agent: String,
        /// The PSE group (default 1).
        #[serde(default = "one")]
        group: u32,
        /// The port.
        port: u32,
        /// SNMPv2c's community.
        #[serde(default)]
        community: Option<Secret>,
        /// SNMPv3's user.
        #[serde(default)]
        user: Option<String>,
        /// SNMPv3 authentication.
        #[serde(default)]
        auth: Option<ProtocolSecret>,
        /// SNMPv3 privacy.
        #[serde(default)]
        privacy: Option<ProtocolSecret>,
    },
    /// External commands (argv lists, no shell).
    Command {
        /// The switch they drive (requests to one switch never overlap).
        switch: String,
        /// Switches the board on.
        on: Vec<String>,
        /// Switches it off.
        off: Vec<String>,
        /// Prints `on` or `off`.
        status: Vec<String>,
    },
    /// A virtual board's QEMU, through its QMP socket.
    Qmp {
        /// The socket.
        socket: PathBuf,
    },
}

/// An SNMPv3 protocol and its pass phrase.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ProtocolSecret {
    /// `SHA`, `SHA-256`, `MD5`; `AES`, `AES-256`, `DES`.
    pub protocol: String,
    /// The pass phrase.
    pub passphrase: Secret,
}

/// Where a board's console is (the same kinds as [`ConsolePort`]).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum ConsoleSpec {
    /// Raw TCP.
    Tcp {
        /// `host:port`.
        addr: String,
    },
    /// Telnet.
    Telnet {
        /// `host:port`.
        addr: String,
    },
    /// Telnet with RFC 2217.
    Rfc2217 {
        /// `host:port`.
        addr: String,
        /// The line's speed (default 115200).
        #[serde(default = "baud")]
        baud: u32,
    },
    /// A serial device on the host.
    Serial {
        /// The device.
        path: PathBuf,
        /// The line's speed (default 115200).
        #[serde(default = "baud")]
        baud: u32,
    },
}

fn one() -> u32 {
    1
}
fn baud() -> u32 {
    115200
}

impl PowerSpec {
    /// The driver these settings describe; an error says which setting is
    /// missing or contradicts another.
    pub fn driver(&self) -> Result<Box<dyn PowerDriver>> {
        match self {
            PowerSpec::Snmp {
                agent,
                group,
                port,
                community,
                user,
                auth,
                privacy,
            } => {
                let auth = match (community, user) {
                    (Some(c), None) => {
                        if auth.is_some() || privacy.is_some() {
                            return Err(Error::Config(
                                "power: auth and privacy are SNMPv3's: give `user` instead of `community`".into(),
                            ));
                        }
                        SnmpAuth::V2c {
                            community: c.clone(),
                        }
                    }
                    (None, Some(u)) => {
                        if privacy.is_some() && auth.is_none() {
                            return Err(Error::Config(
                                "power: SNMPv3 privacy needs auth too".into(),
                            ));
                        }
                        SnmpAuth::V3 {
                            user: u.clone(),
                            auth: auth.as_ref().map(|a| V3Auth {
                                protocol: a.protocol.clone(),
                                passphrase: a.passphrase.clone(),
                            }),
                            privacy: privacy.as_ref().map(|p| V3Privacy {
                                protocol: p.protocol.clone(),
                                passphrase: p.passphrase.clone(),
                            }),
                        }
                    }
                    (Some(_), Some(_)) => {
                        return Err(Error::Config(
                            "power: give `community` (SNMPv2c) or `user` (SNMPv3), not both".into(),
                        ))
                    }
                    (None, None) => {
                        return Err(Error::Config(
                            "power: SNMP needs `community` (v2c) or `user` (v3)".into(),
                        ))
                    }
                };
                auth.check()?;
                Ok(Box::new(SnmpPoe::new(agent, *group, *port, auth)))
            }
            PowerSpec::Command {
                switch,
                on,
                off,
                status,
            } => {
                if on.is_empty() || off.is_empty() || status.is_empty() {
                    return Err(Error::Config(
                        "power: a command driver needs `on`, `off` and `status`".into(),
                    ));
                }
                let mut driver = CommandPower::new(switch, &[], &[], &[]);
                driver.on = on.clone();
                driver.off = off.clone();
                driver.status = status.clone();
                Ok(Box::new(driver))
            }
            PowerSpec::Qmp { socket } => Ok(Box::new(QmpPower::new(socket))),
        }
    }
}

impl ConsoleSpec {
    /// The console port.
    pub fn port(&self) -> ConsolePort {
        match self {
            ConsoleSpec::Tcp { addr } => ConsolePort::Tcp(addr.clone()),
            ConsoleSpec::Telnet { addr } => ConsolePort::Telnet(addr.clone()),
            ConsoleSpec::Rfc2217 { addr, baud } => ConsolePort::Rfc2217 {
                addr: addr.clone(),
                baud: *baud,
            },
            ConsoleSpec::Serial { path, baud } => ConsolePort::Serial {
                path: path.clone(),
                baud: *baud,
            },
        }
    }
}

impl BoardSpec {
    /// Parses a board from TOML. An error gives the line, the column and
    /// what is wrong, never the line's text (it may hold a secret).
    pub fn from_toml(text: &str) -> Result<BoardSpec> {
        toml::from_str(text).map_err(|e| {
            let at = e
                .span()
                .map(|sp| {
                    let line = text[..sp.start].matches('\n').count() + 1;
                    let col = sp.start - text[..sp.start].rfind('\n').map_or(0, |i| i + 1) + 1;
                    format!("{line}:{col}: ")
                })
                .unwrap_or_default();
            Error::Config(format!("board: {at}{}", hide_values(e.message())))
        })
    }

    /// A [`super::Board`] of this spec (power and console), to be given
    /// its login or prompt.
    pub fn board(&self) -> Result<super::Board> {
        let power = super::power::Power::new(&self.name, self.power.driver()?);
        Ok(super::Board::new(&self.name, power, self.console.port()))
    }
}

/// `message` (a serde error's) with the values it quotes hidden: serde
/// shows what was written where another type belongs (`invalid type:
/// string "s3cret", expected u32`, ``integer `123456` ``), which may be a
/// community or pass phrase. Field names and the rest of the message
/// stay.
///
/// ```
/// let m = alpy::board::hide_values("invalid type: string \"s3cret\", expected u32");
/// assert_eq!(m, "invalid type: string \"(hidden)\", expected u32");
/// let m = alpy::board::hide_values("invalid type: integer `123456`, expected a string");
/// assert_eq!(m, "invalid type: integer `(hidden)`, expected a string");
/// ```
pub fn hide_values(message: &str) -> String {
    const QUOTED: [(&str, char); 5] = [
        ("string \"", '"'),
        ("integer `", '`'),
        ("floating point `", '`'),
        ("character `", '`'),
        ("byte array `", '`'),
    ];
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    loop {
        // The next value serde quotes: `string "..."` (with \" escapes),
        // or a number, character or bytes in backticks.
        let next = QUOTED
            .iter()
            .filter_map(|(lead, close)| rest.find(lead).map(|at| (at, *lead, *close)))
            .min_by_key(|(at, _, _)| *at);
        let Some((at, lead, close)) = next else {
            out.push_str(rest);
            return out;
        };
        out.push_str(&rest[..at + lead.len()]);
        rest = &rest[at + lead.len()..];
        let mut end = None;
        let mut escaped = false;
        for (i, c) in rest.char_indices() {
            if escaped {
                escaped = false;
            } else if c == '\\' && close == '"' {
                escaped = true;
            } else if c == close {
                end = Some(i);
                break;
            }
        }
        out.push_str("(hidden)");
        match end {
            Some(i) => {
                out.push(close);
                rest = &rest[i + close.len_utf8()..];
            }
            None => return out,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> std::result::Result<BoardSpec, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    const V3: &str = r#"
        name = "fw-1"
        class = "fw"
        console = { kind = "serial", path = "/dev/ttyUSB0" }
        [power]
        driver = "snmp"
        agent = "poe1.lab:1161"
        port = 4
        user = "lab"
        auth = { protocol = "SHA", passphrase = "auth-secret-1" }
        privacy = { protocol = "AES", passphrase = "priv-secret-2" }
    "#;

    #[test]
    fn specs_become_drivers_and_ports() {
        let s = parse(V3).unwrap();
        assert_eq!(
            s.power.driver().unwrap().describe(),
            "SNMP agent poe1.lab:1161 (v3 user lab) PoE port 1.4"
        );
        assert_eq!(
            s.console.port(),
            ConsolePort::Serial {
                path: "/dev/ttyUSB0".into(),
                baud: 115200
            }
        );
        let c = parse(
            r#"name = "b"
               class = "c"
               console = { kind = "tcp", addr = "h:1" }
               power = { driver = "command", switch = "pdu", on = ["pdu", "on"], off = ["pdu", "off"], status = ["pdu", "st"] }"#,
        )
        .unwrap();
        assert_eq!(c.power.driver().unwrap().switch(), "command:pdu");
    }

    #[test]
    fn secrets_never_leave_in_debug_or_serialised_form() {
        let s = parse(V3).unwrap();
        let shown = [
            format!("{s:?}"),
            serde_json::to_string(&s).unwrap(),
            toml::to_string(&s).unwrap(),
        ];
        for text in shown {
            assert!(
                !text.contains("auth-secret-1") && !text.contains("priv-secret-2"),
                "{text}"
            );
        }
        assert!(serde_json::to_string(&s)
            .unwrap()
            .contains("\"passphrase\":\"***\""));
    }

    #[test]
    fn a_parse_error_never_quotes_the_secret_s_line() {
        let text = "name = \"b\"\nclass = \"c\"\nconsole = { kind = \"tcp\", addr = \"h:1\" }\n\
                    power = { driver = \"snmp\", agent = \"a\", port = 1, community = \"s3cret-c\", colour = 2 }\n";
        let e = BoardSpec::from_toml(text).unwrap_err().to_string();
        assert!(e.contains("4:") && e.contains("colour"), "{e}");
        assert!(!e.contains("s3cret-c"), "{e}");
        // A redacted value read back in is refused, not sent as a community.
        let back = "name = \"b\"\nclass = \"c\"\nconsole = { kind = \"tcp\", addr = \"h:1\" }\n\
                    power = { driver = \"snmp\", agent = \"a\", port = 1, community = \"***\" }\n";
        let e = BoardSpec::from_toml(back).unwrap_err().to_string();
        assert!(e.contains("real one"), "{e}");
    }

    #[test]
    fn a_value_of_the_wrong_type_is_not_quoted() {
        let text = "name = \"b\"\nclass = \"c\"\nconsole = { kind = \"tcp\", addr = \"h:1\" }\n\
                    power = { driver = \"snmp\", agent = \"a\", port = \"s3cret-p\", community = \"c\" }\n";
        let e = BoardSpec::from_toml(text).unwrap_err().to_string();
        assert!(e.contains("invalid type") && !e.contains("s3cret-p"), "{e}");
        let number = text.replace(
            "port = \"s3cret-p\", community = \"c\"",
            "port = 1, community = 9876543",
        );
        let e = BoardSpec::from_toml(&number).unwrap_err().to_string();
        assert!(e.contains("invalid type") && !e.contains("9876543"), "{e}");
        for (given, want) in [
            (
                "unknown field `x`, expected `y`",
                "unknown field `x`, expected `y`",
            ),
            (
                "invalid type: string \"pa\\\"ss\", expected u32",
                "invalid type: string \"(hidden)\", expected u32",
            ),
            (
                "invalid type: integer `123456`, expected a string",
                "invalid type: integer `(hidden)`, expected a string",
            ),
            (
                "invalid basic string, expected `\"`",
                "invalid basic string, expected `\"`",
            ),
            (
                "invalid type: string \"unclosed",
                "invalid type: string \"(hidden)",
            ),
        ] {
            assert_eq!(hide_values(given), want, "{given}");
        }
    }

    #[test]
    fn contradictions_and_gaps_are_refused_with_what_to_give() {
        let base = "name = \"b\"\nclass = \"c\"\nconsole = { kind = \"tcp\", addr = \"h:1\" }\n";
        for (power, want) in [
            ("{ driver = \"snmp\", agent = \"a\", port = 1 }", "`community` (v2c) or `user` (v3)"),
            ("{ driver = \"snmp\", agent = \"a\", port = 1, community = \"c\", user = \"u\" }", "not both"),
            (
                "{ driver = \"snmp\", agent = \"a\", port = 1, community = \"c\", auth = { protocol = \"SHA\", passphrase = \"p\" } }",
                "SNMPv3's",
            ),
            (
                "{ driver = \"snmp\", agent = \"a\", port = 1, user = \"u\", privacy = { protocol = \"AES\", passphrase = \"p\" } }",
                "needs auth",
            ),
            ("{ driver = \"command\", switch = \"s\", on = [], off = [\"x\"], status = [\"y\"] }", "`on`, `off` and `status`"),
        ] {
            let s = parse(&format!("{base}power = {power}\n")).unwrap();
            let e = s.power.driver().err().expect(power).to_string();
            assert!(e.contains(want), "{power}: {e}");
        }
        let e = parse(&format!("{base}power = {{ driver = \"pdu\" }}\n")).unwrap_err();
        assert!(e.contains("pdu"), "{e}");
        let e = parse(&format!(
            "{base}power = {{ driver = \"qmp\", socket = \"/s\" }}\ncolor = 1\n"
        ))
        .unwrap_err();
        assert!(e.contains("color"), "{e}");
    }
}
