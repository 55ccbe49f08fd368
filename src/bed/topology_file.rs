//! The topology file's schema (serde, every key known) and what turns
//! its sections into alpy's types; positions for error messages.

use std::ops::Range;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::addr::Mac;
use crate::bed::builder::PowerOff;
use crate::bed::config_drive::ConfigDrive;
use crate::error::{Error, Result};
use crate::net::{Direction, Impairment, Link};
use crate::nic::{DutNic, NicModel, NicRom};
use crate::vm::firmware::Firmware;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TopologyFile {
    pub(super) name: Option<String>,
    /// The one-machine form: the machine `dut`.
    pub(super) dut: Option<DutSection>,
    /// Named machines, after the DUT if there is one.
    #[serde(default, rename = "machine")]
    pub(super) machines: Vec<DutSection>,
    #[serde(default, rename = "link")]
    pub(super) links: Vec<LinkSection>,
}

impl TopologyFile {
    /// The machines' sections, `[dut]` first, each with its name.
    pub(super) fn machine_sections(&self) -> Vec<(String, &DutSection)> {
        let dut = self.dut.iter().map(|d| ("dut".to_string(), d));
        let named = self.machines.iter().enumerate().map(|(i, m)| {
            let name = m
                .name
                .as_ref()
                .map_or_else(|| format!("machine{i}"), |n| n.get_ref().clone());
            (name, m)
        });
        dut.chain(named).collect()
    }

    /// The links that are nodes (the others join machines only), in order.
    pub(super) fn node_links(&self) -> impl Iterator<Item = &LinkSection> {
        self.links.iter().filter(|l| l.endpoints.is_none())
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DutSection {
    /// A `[[machine]]`'s name (`[dut]` is `dut`).
    pub(super) name: Option<Spanned<String>>,
    /// The machine's roles.
    #[serde(default)]
    pub(super) tags: Vec<Spanned<String>>,
    pub(super) kernel: Option<Spanned<String>>,
    pub(super) initrd: Option<Spanned<String>>,
    pub(super) append: Option<String>,
    #[serde(default)]
    pub(super) disks: Vec<DiskSection>,
    #[serde(default)]
    pub(super) uefi: bool,
    pub(super) nic_model: Option<Spanned<String>>,
    pub(super) memory_mib: Option<u32>,
    pub(super) cpus: Option<u32>,
    pub(super) machine: Option<String>,
    pub(super) prompt: Option<String>,
    pub(super) login: Option<LoginSection>,
    pub(super) poweroff: Option<Spanned<String>>,
    pub(super) warm: Option<String>,
    #[serde(default)]
    pub(super) extra_args: Vec<String>,
    pub(super) firmware: Option<Spanned<String>>,
    pub(super) firmware_code: Option<Spanned<String>>,
    pub(super) firmware_vars: Option<Spanned<String>>,
    pub(super) cpu: Option<String>,
    #[serde(default)]
    pub(super) smbios: Vec<String>,
    pub(super) uuid: Option<String>,
    #[serde(default)]
    pub(super) aux_serials: usize,
    pub(super) nic_rom: Option<Spanned<String>>,
    pub(super) config_drive: Option<ConfigDriveSection>,
    /// A board instead of a VM: a [`crate::board::BoardSpec`], read when
    /// the section is checked (its errors never quote its secrets).
    pub(super) board: Option<Spanned<toml::Value>>,
    /// On a lab, the board that takes this VM's place.
    pub(super) lab_board: Option<Spanned<crate::lab::wire::BoardRequest>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ConfigDriveSection {
    pub(super) format: Option<Spanned<String>>,
    pub(super) label: Spanned<String>,
    pub(super) bus: Option<Spanned<String>>,
    /// File name → contents (inline: a topology never reads host files
    /// for it).
    #[serde(default)]
    pub(super) files: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NicSection {
    pub(super) model: Option<String>,
    pub(super) mac: Option<Spanned<String>>,
    pub(super) mtu: Option<u32>,
    pub(super) rom: Option<Spanned<String>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DiskSection {
    pub(super) path: Spanned<String>,
    pub(super) format: Option<String>,
    pub(super) bus: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) cdrom: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct LoginSection {
    pub(super) user: String,
    pub(super) password: Option<String>,
    pub(super) prompt: Option<String>,
    pub(super) login_prompt: Option<String>,
    pub(super) password_prompt: Option<String>,
    /// Seconds each step after the login prompt may take.
    pub(super) step_timeout_s: Option<Spanned<f64>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct LinkSection {
    pub(super) name: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) addrs: Vec<Spanned<String>>,
    pub(super) gateway: Option<Spanned<String>>,
    pub(super) gateway6: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) routes: Vec<RouteSection>,
    pub(super) mac: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) relay: bool,
    pub(super) impair: Option<ImpairSection>,
    pub(super) up: Option<bool>,
    pub(super) nic: Option<NicSection>,
    #[serde(default)]
    pub(super) apps: Vec<AppSection>,
    /// The node's roles.
    #[serde(default)]
    pub(super) tags: Vec<Spanned<String>>,
    /// The machine NIC the node is on, `"r1:0"` (default: the DUT's next).
    pub(super) endpoint: Option<Spanned<String>>,
    /// The segment the node is on: a link with `endpoints`, by name.
    pub(super) segment: Option<Spanned<String>>,
    /// Machine NICs joined by this link, with no node of its own (nodes
    /// join it with `segment`).
    pub(super) endpoints: Option<Spanned<Vec<Spanned<String>>>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ImpairSection {
    pub(super) delay_ms: Option<f64>,
    pub(super) jitter_ms: Option<f64>,
    pub(super) loss_percent: Option<Spanned<f64>>,
    pub(super) rate_kbit: Option<u64>,
    pub(super) direction: Option<Spanned<String>>,
}

impl ImpairSection {
    pub(super) fn direction(&self) -> std::result::Result<Direction, String> {
        match self.direction.as_ref().map(|d| d.get_ref().as_str()) {
            None | Some("to_dut") => Ok(Direction::ToDut),
            Some("to_node") => Ok(Direction::ToNode),
            Some("both") => Ok(Direction::Both),
            Some(d) => Err(format!(
                "bad direction {d:?}: expected \"to_dut\", \"to_node\" or \"both\""
            )),
        }
    }

    pub(super) fn impairment(&self) -> Impairment {
        // check_impair bounds them; a value it did not see is dropped,
        // never a panic.
        let ms = |v: Option<f64>| v.and_then(|m| Duration::try_from_secs_f64(m / 1000.0).ok());
        Impairment {
            delay: ms(self.delay_ms),
            jitter: ms(self.jitter_ms),
            loss_percent: self.loss_percent.as_ref().map(|l| *l.get_ref()),
            rate_kbit: self.rate_kbit,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RouteSection {
    pub(super) dest: Spanned<String>,
    pub(super) via: Spanned<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AppSection {
    pub(super) name: Option<String>,
    pub(super) image: String,
    #[serde(default)]
    pub(super) cmd: Vec<String>,
    #[serde(default)]
    pub(super) background: bool,
    /// Linux capabilities to add (`NET_ADMIN` for a DHCP client).
    #[serde(default)]
    pub(super) caps: Vec<String>,
}

/// Where in a file: `path:line:col`.
pub(super) struct Place<'a> {
    pub(super) path: &'a Path,
    pub(super) text: &'a str,
}

impl Place<'_> {
    pub(super) fn at(&self, span: Range<usize>, message: &str) -> Error {
        let before = &self.text[..span.start.min(self.text.len())];
        let line = before.matches('\n').count() + 1;
        let col = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
        Error::Config(format!("{}:{line}:{col}: {message}", self.path.display()))
    }

    pub(super) fn spanned<T>(&self, v: &Spanned<T>, message: &str) -> Error {
        self.at(v.span(), message)
    }
}

/// The [`Link`] a checked link section describes.
pub(super) fn link_of(l: &LinkSection) -> Link {
    let mut link = Link::new();
    if let Some(n) = &l.name {
        link = link.name(n.get_ref());
    }
    for a in &l.addrs {
        link = link.node_addr(a.get_ref().as_str());
    }
    for g in l.gateway.iter().chain(&l.gateway6) {
        link = link.gateway(g.get_ref().as_str());
    }
    for r in &l.routes {
        link = link.route(r.dest.get_ref().as_str(), r.via.get_ref().as_str());
    }
    if let Some(m) = &l.mac {
        link = link.mac(m.get_ref().as_str());
    }
    if l.relay {
        link = link.relay();
    }
    for t in &l.tags {
        link = link.tag(t.get_ref());
    }
    if let Some(imp) = &l.impair {
        link = link.impair_direction(
            imp.direction().unwrap_or(Direction::ToDut),
            imp.impairment(),
        );
    }
    if l.up == Some(false) {
        link = link.down();
    }
    if let Some(e) = &l.endpoint {
        link = link.on(e.get_ref());
    }
    if let Some(seg) = &l.segment {
        link = link.on_segment(seg.get_ref());
    }
    if let Some(n) = &l.nic {
        let mut nic = DutNic::new();
        if let Some(m) = &n.model {
            if let Ok(m) = m.parse::<NicModel>() {
                nic = nic.model(m);
            }
        }
        if let Some(Ok(mac)) = n.mac.as_ref().map(|m| m.get_ref().parse::<Mac>()) {
            nic = nic.mac(mac);
        }
        if let Some(mtu) = n.mtu {
            nic = nic.mtu(mtu);
        }
        if let Some(Ok(rom)) = n.rom.as_ref().map(|r| parse_rom(r.get_ref())) {
            nic = nic.rom(rom);
        }
        link = link.dut_nic(nic);
    }
    link
}

/// `none`, `default` (QEMU's iPXE) or a ROM file's path.
pub(super) fn parse_rom(s: &str) -> std::result::Result<NicRom, String> {
    match s {
        "none" | "" => Ok(NicRom::None),
        "default" => Ok(NicRom::QemuDefault),
        p if p.starts_with('/') => Ok(NicRom::File(p.into())),
        _ => Err(format!(
            "bad rom {s:?}: expected \"none\", \"default\" or an absolute path"
        )),
    }
}

/// The firmware named in `[dut]`, with the files it names resolved.
pub(super) fn parse_firmware(
    d: &DutSection,
    resolve: impl Fn(&str) -> Result<std::path::PathBuf>,
    place: &Place<'_>,
) -> Result<Firmware> {
    let name = d.firmware.as_ref().map(|f| f.get_ref().as_str());
    let name = match (name, d.uefi) {
        (None, true) => Some("uefi"),
        (n, _) => n,
    };
    let file = |f: &Option<Spanned<String>>| f.as_ref().map(|f| resolve(f.get_ref())).transpose();
    let (code, vars) = (file(&d.firmware_code)?, file(&d.firmware_vars)?);
    let chosen = |fw: Firmware, secure| match (code.clone(), vars.clone()) {
        (None, None) => Ok(fw),
        (Some(c), Some(v)) if secure => Ok(Firmware::secure_boot_with(c, v)),
        (Some(c), Some(v)) => Ok(Firmware::uefi_with(c, v)),
        _ => Err(Error::Config(format!(
            "{}: firmware_code and firmware_vars go together",
            place.path.display()
        ))),
    };
    match name {
        None | Some("bios") if code.is_none() && vars.is_none() => Ok(Firmware::Bios),
        None | Some("uefi") => chosen(Firmware::uefi(), false),
        Some("secure-boot") => chosen(Firmware::secure_boot(), true),
        Some(other) => {
            let msg = if other == "bios" {
                "firmware_code and firmware_vars need firmware = \"uefi\" or \"secure-boot\""
                    .to_string()
            } else {
                format!("bad firmware {other:?}: expected \"bios\", \"uefi\" or \"secure-boot\"")
            };
            Err(match &d.firmware {
                Some(f) => place.spanned(f, &msg),
                None => Error::Config(format!("{}: {msg}", place.path.display())),
            })
        }
    }
}

/// The config drive `[dut.config_drive]` describes.
pub(super) fn parse_config_drive(c: &ConfigDriveSection, place: &Place<'_>) -> Result<ConfigDrive> {
    let mut drive = match c.format.as_ref().map(|f| f.get_ref().as_str()) {
        None | Some("vfat") => ConfigDrive::vfat(c.label.get_ref()),
        Some("iso") => ConfigDrive::iso(c.label.get_ref()),
        Some(other) => {
            return Err(place.spanned(
                c.format.as_ref().unwrap_or(&c.label),
                &format!("bad config drive format {other:?}: expected \"vfat\" or \"iso\""),
            ))
        }
    };
    if let Some(b) = &c.bus {
        drive = drive.bus(
            b.get_ref()
                .parse()
                .map_err(|e: Error| place.spanned(b, &e.to_string()))?,
        );
    }
    for (name, data) in &c.files {
        drive = drive.file(name, data);
    }
    drive
        .check()
        .map_err(|e| place.spanned(&c.label, &e.to_string()))?;
    Ok(drive)
}

pub(super) fn check_impair(imp: &ImpairSection, relay: bool, place: &Place<'_>) -> Result<()> {
    let dir = match (&imp.direction, imp.direction()) {
        (Some(d), Err(e)) => return Err(place.spanned(d, &e)),
        (_, d) => d.unwrap_or(Direction::ToDut),
    };
    if let (Some(d), false) = (&imp.direction, dir == Direction::ToDut || relay) {
        return Err(place.spanned(
            d,
            "impairing frames towards the node needs the link's relay: add relay = true",
        ));
    }
    if let Some(l) = &imp.loss_percent {
        if !(0.0..=100.0).contains(l.get_ref()) {
            return Err(place.spanned(l, "loss_percent must be between 0 and 100"));
        }
    }
    for (key, v) in [("delay_ms", imp.delay_ms), ("jitter_ms", imp.jitter_ms)] {
        if let Some(v) = v.filter(|v| !(0.0..=3_600_000.0).contains(v)) {
            return Err(Error::Config(format!(
                "{}: impair.{key} = {v}: from 0 to 3600000 (an hour)",
                place.path.display()
            )));
        }
    }
    Ok(())
}

pub(super) fn parse_poweroff(s: &str) -> std::result::Result<PowerOff, String> {
    match s.split_once(':') {
        _ if s == "acpi" => Ok(PowerOff::AcpiButton),
        Some(("console", cmd)) if !cmd.is_empty() => Ok(PowerOff::Console(cmd.to_string())),
        _ => Err(format!(
            "bad poweroff {s:?}: expected \"acpi\" or \"console:COMMAND\""
        )),
    }
}
