//! A topology's machine sections (`[dut]`, `[[machine]]`): checked, and
//! turned into [`Dut`]s.

use toml::Spanned;

use super::Topology;
use crate::addr::Mac;
use crate::bed::dut::{Disk, Dut};
use crate::bed::topology_file::{
    parse_config_drive, parse_firmware, parse_poweroff, parse_rom, DutSection, Place,
};
use crate::board::BoardSpec;
use crate::error::{Error, Result};
use crate::vm::qemu::{DiskBus, NicModel};

impl Topology {
    /// One machine's section: the files it boots exist, and its values
    /// parse.
    pub(super) fn check_machine_section(
        &self,
        name: &str,
        dut: &DutSection,
        place: &Place<'_>,
    ) -> Result<()> {
        if let Some(b) = &dut.board {
            check_board_section(name, dut, b, place)?;
        }
        if let Some(w) = &dut.lab_board {
            if dut.board.is_some() || name != "dut" || self.file.dut.is_none() {
                return Err(place.spanned(
                    w,
                    &format!(
                        "machine {name}: lab_board is for the [dut] of a one-machine bed \
                         that boots a VM here (a board of the lab's takes its place there)"
                    ),
                ));
            }
        }
        let mut files: Vec<&Spanned<String>> = dut.kernel.iter().chain(&dut.initrd).collect();
        files.extend(dut.disks.iter().map(|d| &d.path));
        for f in files {
            let p = self.resolve(f.get_ref())?;
            if !p.is_file() {
                return Err(place.spanned(f, &format!("file {} does not exist", p.display())));
            }
        }
        if dut.kernel.is_none() && dut.disks.is_empty() && dut.board.is_none() {
            let section = if name == "dut" && self.file.dut.is_some() {
                "[dut]".to_string()
            } else {
                format!("[[machine]] {name}")
            };
            return Err(Error::Config(format!(
                "{}: {section} needs a kernel or disks",
                self.path.display()
            )));
        }
        if let Some(m) = &dut.nic_model {
            m.get_ref()
                .parse::<NicModel>()
                .map_err(|e| place.spanned(m, &e.to_string()))?;
        }
        if let Some(p) = &dut.poweroff {
            parse_poweroff(p.get_ref()).map_err(|e| place.spanned(p, &e))?;
        }
        if let Some(t) = dut.login.as_ref().and_then(|l| l.step_timeout_s.as_ref()) {
            let s = *t.get_ref();
            if !(s.is_finite() && s > 0.0 && s <= 86_400.0) {
                return Err(place.spanned(
                    t,
                    &format!("step_timeout_s = {s}: give seconds above 0 (at most a day)"),
                ));
            }
        }
        self.check_vendor(dut, place)
    }

    /// The options of vendor images: firmware, disk buses, NIC ROMs and
    /// per-link NICs, the config drive.
    fn check_vendor(&self, dut: &DutSection, place: &Place<'_>) -> Result<()> {
        parse_firmware(dut, |p| self.resolve(p), place)?
            .check()
            .map_err(|e| {
                let at = dut.firmware_code.as_ref().or(dut.firmware.as_ref());
                match at {
                    Some(a) => place.spanned(a, &e.to_string()),
                    None => e,
                }
            })?;
        for d in &dut.disks {
            if let Some(b) = &d.bus {
                b.get_ref()
                    .parse::<DiskBus>()
                    .map_err(|e| place.spanned(b, &e.to_string()))?;
            }
        }
        let roms = dut.nic_rom.iter().chain(
            self.file
                .links
                .iter()
                .filter_map(|l| l.nic.as_ref().and_then(|n| n.rom.as_ref())),
        );
        for r in roms {
            parse_rom(r.get_ref()).map_err(|e| place.spanned(r, &e))?;
        }
        for m in self
            .file
            .links
            .iter()
            .filter_map(|l| l.nic.as_ref().and_then(|n| n.mac.as_ref()))
        {
            m.get_ref()
                .parse::<Mac>()
                .map_err(|e| place.spanned(m, &e.to_string()))?;
        }
        if let Some(c) = &dut.config_drive {
            parse_config_drive(c, place)?;
        }
        Ok(())
    }

    /// The machine a `[dut]` or `[[machine]]` section describes.
    /// The board a machine section describes, if it is one.
    pub(super) fn board_of(&self, d: &DutSection) -> Result<Option<BoardSpec>> {
        d.board.as_ref().map(board_spec).transpose()
    }

    pub(super) fn dut_of(&self, d: &DutSection) -> Result<Dut> {
        let mut dut = match &d.kernel {
            Some(k) => Dut::kernel(
                self.resolve(k.get_ref())?,
                d.initrd
                    .as_ref()
                    .map(|i| self.resolve(i.get_ref()))
                    .transpose()?,
            ),
            None => Dut::new(),
        };
        for disk in &d.disks {
            let path = self.resolve(disk.path.get_ref())?;
            let mut one = if disk.cdrom {
                Disk::cdrom(path)
            } else {
                Disk::new(path)
            };
            if let Some(b) = &disk.bus {
                one = one.bus(b.get_ref().parse()?);
            }
            if let (Some(f), false) = (&disk.format, disk.cdrom) {
                one = one.format(f);
            }
            dut = dut.disk(one);
        }
        let place = Place {
            path: &self.path,
            text: &self.text,
        };
        dut = dut.firmware(parse_firmware(d, |p| self.resolve(p), &place)?);
        if let Some(c) = &d.cpu {
            dut = dut.cpu_model(c);
        }
        for s in &d.smbios {
            dut = dut.smbios(s);
        }
        if let Some(u) = &d.uuid {
            dut = dut.uuid(u);
        }
        for _ in 0..d.aux_serials {
            dut = dut.aux_serial();
        }
        if let Some(r) = &d.nic_rom {
            dut = dut.nic_rom(parse_rom(r.get_ref()).map_err(Error::Config)?);
        }
        if let Some(c) = &d.config_drive {
            dut = dut.config_drive(parse_config_drive(c, &place)?);
        }
        if let Some(a) = &d.append {
            dut = dut.append(a);
        }
        if let Some(m) = &d.nic_model {
            dut = dut.nic_model(m.get_ref().parse()?);
        }
        if let Some(m) = d.memory_mib {
            dut = dut.memory_mib(m);
        }
        if let Some(c) = d.cpus {
            dut = dut.cpus(c);
        }
        if let Some(m) = &d.machine {
            dut = dut.machine(m);
        }
        for a in &d.extra_args {
            dut = dut.extra_arg(a);
        }
        for t in &d.tags {
            dut = dut.tag(t.get_ref());
        }
        // Its own way in and out (the first machine's are the bed's too).
        if let Some(p) = &d.prompt {
            dut = dut.prompt(p);
        }
        if let Some(l) = &d.login {
            dut = dut.login(super::login_of(l));
        }
        if let Some(p) = &d.poweroff {
            dut = dut.poweroff(parse_poweroff(p.get_ref()).map_err(Error::Config)?);
        }
        Ok(dut)
    }
}

/// A board section's spec; a message that names the key at fault, never
/// a value (a community or pass phrase may be one).
fn board_spec(b: &Spanned<toml::Value>) -> Result<BoardSpec> {
    use serde::Deserialize;
    BoardSpec::deserialize(b.get_ref().clone()).map_err(|e| {
        let message = crate::board::hide_values(e.message());
        Error::Config(format!("board: {message}"))
    })
}

/// A machine section that is a board (`board = { .. }`): none of a VM's
/// keys, and a board spec whose power driver can be made.
fn check_board_section(
    name: &str,
    dut: &DutSection,
    b: &Spanned<toml::Value>,
    place: &Place<'_>,
) -> Result<()> {
    let vm_keys = [
        ("kernel", dut.kernel.is_some()),
        ("initrd", dut.initrd.is_some()),
        ("append", dut.append.is_some()),
        ("disks", !dut.disks.is_empty()),
        ("uefi", dut.uefi),
        ("nic_model", dut.nic_model.is_some()),
        ("memory_mib", dut.memory_mib.is_some()),
        ("cpus", dut.cpus.is_some()),
        ("machine", dut.machine.is_some()),
        ("warm", dut.warm.is_some()),
        ("extra_args", !dut.extra_args.is_empty()),
        ("firmware", dut.firmware.is_some()),
        ("firmware_code", dut.firmware_code.is_some()),
        ("firmware_vars", dut.firmware_vars.is_some()),
        ("cpu", dut.cpu.is_some()),
        ("smbios", !dut.smbios.is_empty()),
        ("uuid", dut.uuid.is_some()),
        ("aux_serials", dut.aux_serials > 0),
        ("nic_rom", dut.nic_rom.is_some()),
        ("config_drive", dut.config_drive.is_some()),
    ];
    if let Some((key, _)) = vm_keys.iter().find(|(_, set)| *set) {
        return Err(place.spanned(
            b,
            &format!(
                "machine {name} is a board (board = {{ .. }}): {key} is a VM's key; remove it \
                 (or the board)"
            ),
        ));
    }
    // A board's roles are its spec's (one place for them).
    if let Some(t) = dut.tags.first() {
        return Err(place.spanned(
            t,
            &format!("machine {name} is a board: give its roles as board.tags"),
        ));
    }
    let spec = board_spec(b).map_err(|e| place.spanned(b, &e.to_string()))?;
    spec.power
        .driver()
        .map_err(|e| place.spanned(b, &format!("board {}: its power: {e}", spec.name)))?;
    Ok(())
}
