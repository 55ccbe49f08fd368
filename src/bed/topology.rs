//! Topology files: a test bed as data (TOML), read by Rust tests and by the
//! `alpy` command alike.
//!
//! ```toml
//! name = "forward"
//!
//! [dut]
//! kernel = "{cache}/guest/vmlinuz"      # {cache} is $ALPY_CACHE; relative paths
//! initrd = "{cache}/guest/initrd.img"   # are relative to this file
//! append = "console=ttyS0,115200 quiet alpy.forward=1"
//! nic_model = "e1000"                   # also: memory_mib, cpus, machine, uefi,
//! prompt = "guest# "                    # disks = [{ path = "..", format = "qcow2" }],
//! poweroff = "console:poweroff -f"      # login = { user, password, prompt, login_prompt,
//!                                       #   password_prompt, step_timeout_s }, warm
//!
//! [[link]]
//! name = "client"
//! addrs = ["192.168.1.2/24"]
//! gateway = "192.168.1.1"
//!
//! [[link]]
//! name = "server"
//! addrs = ["192.168.2.2/24", "2001:db8:2::2/64"]
//! gateway = "192.168.2.1"
//! routes = [{ dest = "10.20.0.0/16", via = "192.168.2.254" }]
//! apps = [{ name = "iperf", image = "alpy/tools", cmd = ["iperf3", "-s"], background = true }]
//! # an app may add capabilities: { image = "alpy/tools", cmd = ["udhcpc", "-i", "eth0"], caps = ["NET_ADMIN"] }
//! tags = ["servers"]                    # roles: bed.role("servers")
//!
//! [[link]]
//! name = "wan"
//! relay = true                          # impairment in user space (no netem needed)
//! impair = { delay_ms = 20, jitter_ms = 5, loss_percent = 1, rate_kbit = 10000, direction = "both" }
//! up = false                            # starts without carrier: bed.set_dut_link(2, true)
//! ```
//!
//! Errors name the file, line and column and say what was expected: an
//! unknown key, a bad address or MAC, a missing kernel, a duplicate link
//! name.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;

use crate::addr::{IpNet, Mac};
use crate::bed::builder::TestBedBuilder;
use crate::bed::graph::Drawing;
use crate::bed::testbed::TestBed;
use crate::bed::topology_file::{check_impair, link_of, parse_poweroff, Place, TopologyFile};
use crate::bed::topology_net;
use crate::bed::warm::WarmStart;
use crate::error::{Error, Result};
use crate::net::{App, Link};
use crate::vm::login::Login;

/// The keys of a machine section that name a file it boots, in the order
/// they are reported; disks' `path`s come after them.
const BOOT_FILE_KEYS: [&str; 4] = ["kernel", "initrd", "firmware_code", "firmware_vars"];

/// The values of a topology (as TOML) that name a file a machine boots:
/// for `[dut]` and then each `[[machine]]`, its `kernel`, `initrd`,
/// `firmware_code`, `firmware_vars`, then each `disks[i].path`, with the
/// key as errors name it. What a lab client maps to store names and a lab
/// server maps back to paths.
///
/// ```
/// let mut t: toml::Table = "[dut]\nkernel = \"k\"\ndisks = [{ path = \"d\" }]\n\
///     [[machine]]\nname = \"r2\"\ninitrd = \"i\"".parse().unwrap();
/// let keys: Vec<String> = alpy::internal::topology::boot_files_mut(&mut t)
///     .into_iter()
///     .map(|(k, _)| k)
///     .collect();
/// assert_eq!(keys, ["dut.kernel", "dut.disks[0].path", "machine[0].initrd"]);
/// ```
pub fn boot_files_mut(t: &mut toml::Table) -> Vec<(String, &mut toml::Value)> {
    let mut sections: Vec<(String, &mut toml::Table)> = Vec::new();
    for (key, value) in t.iter_mut() {
        match (key.as_str(), value) {
            ("dut", toml::Value::Table(d)) => sections.insert(0, ("dut".to_string(), d)),
            ("machine", toml::Value::Array(ms)) => {
                for (i, m) in ms.iter_mut().enumerate() {
                    if let Some(m) = m.as_table_mut() {
                        sections.push((format!("machine[{i}]"), m));
                    }
                }
            }
            _ => {}
        }
    }
    sections
        .into_iter()
        .flat_map(|(name, section)| section_files(&name, section))
        .collect()
}

/// [`boot_files_mut`] of one machine section named `name`.
fn section_files<'t>(name: &str, dut: &'t mut toml::Table) -> Vec<(String, &'t mut toml::Value)> {
    let mut files: Vec<(usize, String, &mut toml::Value)> = Vec::new();
    for (key, value) in dut.iter_mut() {
        if let Some(rank) = BOOT_FILE_KEYS.iter().position(|k| k == key) {
            files.push((rank, format!("{name}.{key}"), value));
        } else if key == "disks" {
            let disks = value.as_array_mut().into_iter().flatten().enumerate();
            for (i, d) in disks {
                if let Some(p) = d.as_table_mut().and_then(|d| d.get_mut("path")) {
                    files.push((
                        BOOT_FILE_KEYS.len() + i,
                        format!("{name}.disks[{i}].path"),
                        p,
                    ));
                }
            }
        }
    }
    files.sort_by_key(|(rank, _, _)| *rank);
    files.into_iter().map(|(_, k, v)| (k, v)).collect()
}

/// The [`Login`] a checked `login` table describes.
pub(super) fn login_of(l: &crate::bed::topology_file::LoginSection) -> Login {
    let mut login = Login::new(&l.user);
    if let Some(p) = &l.password {
        login = login.password(p);
    }
    if let Some(p) = &l.prompt {
        login = login.prompt(p);
    }
    if let Some(p) = &l.login_prompt {
        login = login.login_prompt(p);
    }
    if let Some(p) = &l.password_prompt {
        login = login.password_prompt(p);
    }
    if let Some(t) = &l.step_timeout_s {
        login = login.steps_within(Duration::from_secs_f64(*t.get_ref()));
    }
    login
}

/// A test bed described by a topology file.
#[derive(Debug, Clone)]
pub struct Topology {
    /// The bed's name.
    pub name: String,
    /// Where it was read from.
    pub path: PathBuf,
    text: String,
    file: TopologyFile,
}

impl Topology {
    /// Reads and checks a topology file.
    pub fn load(path: &Path) -> Result<Topology> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::io(format!("read topology {}", path.display()), e))?;
        Topology::parse(path, &text)
    }

    /// Parses and checks topology text as if read from `path` (relative
    /// paths in it are relative to `path`'s directory).
    pub fn parse(path: &Path, text: &str) -> Result<Topology> {
        let place = Place { path, text };
        let file: TopologyFile = toml::from_str(text).map_err(|e| {
            let msg = e.message().to_string();
            match e.span() {
                Some(s) => place.at(s, &msg),
                None => Error::Config(format!("{}: {msg}", path.display())),
            }
        })?;
        let name = file.name.clone().unwrap_or_else(|| {
            path.file_stem()
                .map_or("topology".into(), |s| s.to_string_lossy().into_owned())
        });
        let t = Topology {
            name,
            path: path.to_path_buf(),
            text: text.to_string(),
            file,
        };
        t.check(&place)?;
        Ok(t)
    }

    /// A path as the file means it: `{cache}` expanded, a relative path
    /// taken relative to the file.
    pub fn resolve(&self, p: &str) -> Result<PathBuf> {
        let p = if p.contains("{cache}") {
            p.replace("{cache}", &crate::cache::cache_dir()?.to_string_lossy())
        } else {
            p.to_string()
        };
        let p = PathBuf::from(p);
        Ok(if p.is_relative() {
            self.path.parent().unwrap_or(Path::new(".")).join(p)
        } else {
            p
        })
    }

    fn check(&self, place: &Place<'_>) -> Result<()> {
        topology_net::check(&self.file, place)?;
        let sections = self.file.machine_sections();
        for (i, (name, d)) in sections.iter().enumerate() {
            self.check_machine_section(name, d, place)?;
            if i > 0 && d.warm.is_some() {
                return Err(Error::Config(format!(
                    "{}: machine {name} sets warm: the warm start is the bed's, set on its \
                     first machine ({}); each machine has its own snapshot",
                    self.path.display(),
                    sections[0].0
                )));
            }
        }
        self.check_links(place)
    }

    /// The links' values: names, addresses, routes, MACs, roles,
    /// impairment, NIC choices.
    fn check_links(&self, place: &Place<'_>) -> Result<()> {
        let mut names: Vec<(String, &Spanned<String>)> = Vec::new();
        for l in &self.file.links {
            if let Some(n) = &l.name {
                if names.iter().any(|(seen, _)| seen == n.get_ref()) {
                    return Err(place.spanned(n, &format!("duplicate link name {:?}", n.get_ref())));
                }
                names.push((n.get_ref().clone(), n));
            }
            for a in &l.addrs {
                a.get_ref().parse::<IpNet>().map_err(|_| {
                    place.spanned(
                        a,
                        &format!(
                            "bad address {:?}: expected ADDRESS/PREFIX, like 192.168.1.2/24",
                            a.get_ref()
                        ),
                    )
                })?;
            }
            for g in l.gateway.iter().chain(&l.gateway6) {
                g.get_ref().parse::<IpAddr>().map_err(|_| {
                    place.spanned(
                        g,
                        &format!("bad gateway {:?}: expected an IP address", g.get_ref()),
                    )
                })?;
            }
            for r in &l.routes {
                r.dest.get_ref().parse::<IpNet>().map_err(|_| {
                    place.spanned(
                        &r.dest,
                        &format!(
                            "bad route destination {:?}: expected a prefix like 10.0.0.0/8",
                            r.dest.get_ref()
                        ),
                    )
                })?;
                r.via.get_ref().parse::<IpAddr>().map_err(|_| {
                    place.spanned(
                        &r.via,
                        &format!("bad next hop {:?}: expected an IP address", r.via.get_ref()),
                    )
                })?;
            }
            if let Some(m) = &l.mac {
                m.get_ref()
                    .parse::<Mac>()
                    .map_err(|e| place.spanned(m, &e.to_string()))?;
            }
            for t in &l.tags {
                if !crate::net::link::is_name(t.get_ref()) {
                    return Err(place.spanned(
                        t,
                        &format!(
                            "bad role {:?}: use 1 to 32 letters, digits, '-' or '_'",
                            t.get_ref()
                        ),
                    ));
                }
            }
            if let Some(imp) = &l.impair {
                check_impair(imp, l.relay, place)?;
            }
        }
        Ok(())
    }

    /// Whether every string it gives QEMU is of its kind (disk formats,
    /// machine, CPU, SMBIOS, NIC models; see [`crate::vm::argv_check`]),
    /// without starting anything. A lab server checks an upload with it.
    pub fn check_machine(&self) -> Result<()> {
        let b = self.builder()?;
        for m in b.machine_specs() {
            if let Some(d) = m.kind.vm() {
                d.check_strings()?;
            }
        }
        for l in &b.links {
            if let Some(m) = &l.dut_nic.model {
                crate::vm::argv_check::check_device(m.device())?;
            }
        }
        Ok(())
    }

    /// The test bed builder this topology describes.
    pub fn builder(&self) -> Result<TestBedBuilder> {
        self.apply(TestBed::builder(&self.name))
    }

    /// `b` with this topology's DUT, links and console settings (what
    /// [`TestBedBuilder::topology`] does).
    pub fn apply(&self, mut b: TestBedBuilder) -> Result<TestBedBuilder> {
        let sections = self.file.machine_sections();
        for (i, (name, d)) in sections.iter().enumerate() {
            if let Some(spec) = self.board_of(d)? {
                b = b.board(name, spec);
                continue;
            }
            let dut = self.dut_of(d)?;
            b = if i == 0 && self.file.dut.is_some() {
                b.dut(dut)
            } else {
                b.machine(name, dut)
            };
        }
        let Some((_, d)) = sections.first() else {
            return Err(Error::Config(format!(
                "{}: a topology needs a [dut] or [[machine]] sections",
                self.path.display()
            )));
        };
        if let Some(want) = &d.lab_board {
            b = b.lab_board(want.get_ref().clone());
        }
        if let Some(p) = &d.prompt {
            b = b.prompt(p);
        }
        if let Some(l) = &d.login {
            b = b.login(login_of(l));
        }
        if let Some(p) = &d.poweroff {
            b = b.poweroff(parse_poweroff(p.get_ref()).map_err(Error::Config)?);
        }
        if let Some(v) = &d.warm {
            // Several machines: each its own snapshot (a bed-wide one is
            // refused at start()).
            b = b.warm_start(if sections.len() > 1 {
                WarmStart::per_machine(v, |_| Ok(()))
            } else {
                WarmStart::new(v, |_| Ok(()))
            });
        }
        for l in self.file.node_links() {
            b = b.link(link_of(l));
        }
        for s in topology_net::segments(&self.file) {
            b = b.segment(s);
        }
        b.drawn_apps = self.drawing().links.into_iter().map(|l| l.apps).collect();
        Ok(b)
    }

    /// The apps of link `i`: (app, runs in the background).
    pub fn apps(&self, i: usize) -> Vec<(App, bool)> {
        self.file.node_links().nth(i).map_or_else(Vec::new, |l| {
            l.apps
                .iter()
                .map(|a| {
                    let mut app = App::new(&a.image).cmd(a.cmd.clone());
                    if let Some(n) = &a.name {
                        app = app.name(n);
                    }
                    for c in &a.caps {
                        app = app.cap(c);
                    }
                    (app, a.background)
                })
                .collect()
        })
    }

    /// The topology as a drawing (DOT or SVG, see [`crate::bed::graph`]):
    /// each link with its addresses and its apps' names.
    pub fn drawing(&self) -> Drawing {
        let links: Vec<Link> = self.file.node_links().map(link_of).collect();
        let apps = self
            .file
            .node_links()
            .map(|l| {
                l.apps
                    .iter()
                    .map(|a| a.name.clone().unwrap_or_else(|| a.image.clone()))
                    .collect()
            })
            .collect();
        let machines: Vec<(String, Vec<String>)> = self
            .file
            .machine_sections()
            .into_iter()
            .map(|(name, d)| (name, d.tags.iter().map(|t| t.get_ref().clone()).collect()))
            .collect();
        Drawing::network(
            &self.name,
            &machines,
            &links,
            &topology_net::segments(&self.file),
            apps,
        )
    }

    /// How many links have a node (links between machines only have
    /// none).
    pub fn link_count(&self) -> usize {
        self.file.node_links().count()
    }
}

impl TestBed {
    /// Stands up the bed a topology file describes (see
    /// [`crate::bed::topology`]), booted, within `timeout` for the boot.
    pub fn from_topology(path: &Path, timeout: Duration) -> Result<TestBed> {
        let t = Topology::load(path)?;
        let mut bed = t.builder()?.start()?;
        for i in 0..t.link_count() {
            for (app, background) in t.apps(i) {
                if background {
                    let running = bed.node(i)?.spawn_app(&app)?;
                    bed.apps.push(running);
                }
            }
        }
        bed.boot(timeout)?;
        for i in 0..t.link_count() {
            for (app, background) in t.apps(i) {
                if !background {
                    bed.node(i)?
                        .run_app(&app, crate::net::node::COMMAND_TIMEOUT)?
                        .checked(&format!("an app of link {i} of {}", path.display()))?;
                }
            }
        }
        Ok(bed)
    }
}

#[path = "topology_dut.rs"]
mod dut_section;

#[cfg(test)]
#[path = "topology_tests.rs"]
mod tests;
