//! Building a test bed: the DUT, its links, and how to reach and power
//! off the guest; then [`TestBedBuilder::start`] stands it all up.

use crate::settings::Settings;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::bed::dut::Dut;
use crate::bed::graph::Drawing;
use crate::bed::machine::{MachineKind, MachineSpec};
use crate::bed::segment::Segment;
use crate::bed::testbed::TestBed;
use crate::bed::topology::Topology;
use crate::bed::warm::WarmStart;
use crate::bed::wiring;
use crate::error::{Error, Result};
use crate::logging;
use crate::net::link::Attach;
use crate::net::{Link, NetMode};
use crate::run::RunId;
use crate::vm::login::Login;

/// How [`TestBed::shutdown`] powers the guest off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PowerOff {
    /// Type this command on the console (e.g. `poweroff -f`).
    Console(String),
    /// Press the ACPI power button (`system_powerdown`).
    AcpiButton,
}

/// Builds a [`TestBed`].
#[derive(Debug, Clone)]
pub struct TestBedBuilder {
    pub(crate) name: String,
    /// The environment's settings, read once when the builder is made.
    pub(crate) settings: Settings,
    pub(crate) dut: Option<Dut>,
    /// Machines besides the DUT, in the order given.
    pub(crate) machines: Vec<MachineSpec>,
    pub(crate) links: Vec<Link>,
    pub(crate) segments: Vec<Segment>,
    pub(crate) artifacts: Option<PathBuf>,
    pub(crate) net_mode: Option<NetMode>,
    pub(crate) poweroff: PowerOff,
    pub(crate) console_timeout: Duration,
    pub(crate) reap: bool,
    pub(crate) run: Option<RunId>,
    pub(crate) node_image: Option<String>,
    pub(crate) login: Option<Login>,
    pub(crate) prompt: Option<String>,
    pub(crate) warm: Option<WarmStart>,
    /// On a lab, the board that is the DUT instead of the VM.
    pub(crate) lab_board: Option<crate::lab::wire::BoardRequest>,
    /// The apps of each link, for `topology.svg`.
    pub(crate) drawn_apps: Vec<Vec<String>>,
}

impl TestBed {
    /// Starts building a test bed named `name` (used in the artifacts path).
    pub fn builder(name: &str) -> TestBedBuilder {
        TestBedBuilder {
            name: name.to_string(),
            settings: Settings::from_env(),
            dut: None,
            machines: Vec::new(),
            links: Vec::new(),
            segments: Vec::new(),
            artifacts: None,
            net_mode: None,
            poweroff: PowerOff::AcpiButton,
            console_timeout: Duration::from_secs(60),
            reap: true,
            run: None,
            node_image: None,
            login: None,
            prompt: None,
            warm: None,
            lab_board: None,
            drawn_apps: Vec::new(),
        }
    }
}

impl TestBedBuilder {
    /// The DUT.
    pub fn dut(mut self, dut: Dut) -> Self {
        self.dut = Some(dut);
        self
    }

    /// Adds a link (one node, one NIC): on the DUT's next NIC, or where
    /// [`Link::on`] or [`Link::on_segment`] says.
    pub fn link(mut self, link: Link) -> Self {
        self.links.push(link);
        self
    }

    /// Adds a machine named `name` (letters, digits, `-` and `_`). The
    /// DUT ([`TestBedBuilder::dut`]) is the machine `dut` and comes
    /// first; without one, the first machine added is the one the bed's
    /// own verbs (`bed.console()`, `bed.shell()`) address. Machines share
    /// the builder's login, prompt, power-off and console timeout.
    ///
    /// ```no_run
    /// use alpy::{Dut, Link, Segment, TestBed};
    /// # fn main() -> alpy::Result<()> {
    /// let router = || Dut::kernel("vmlinuz", Some("initrd.img".into())).tag("routers");
    /// let bed = TestBed::builder("chain")
    ///     .machine("r1", router())
    ///     .machine("r2", router())
    ///     .link(Link::new().name("client").on("r1:0").node_addr("10.0.1.2/24"))
    ///     .segment(Segment::new("core").end("r1:1").end("r2:0"))
    ///     .link(Link::new().name("server").on("r2:1").node_addr("10.0.3.2/24"))
    ///     .prompt("# ")
    ///     .start()?;
    /// # Ok(()) }
    /// ```
    pub fn machine(mut self, name: &str, dut: Dut) -> Self {
        self.machines.push(MachineSpec {
            name: name.to_string(),
            tags: dut.tags().to_vec(),
            kind: MachineKind::Vm(Box::new(dut)),
        });
        self
    }

    /// Adds a board named `name` (the name the bed's verbs and messages
    /// use; [`crate::board::BoardSpec::name`] is the rack's): a machine
    /// whose NIC `n` is its `ports[n]`, powered and watched as its spec
    /// says. `start()` opens its console and holds it off; `boot()`
    /// switches it on and waits for the builder's login or prompt. Nodes,
    /// apps, captures (host time stamps) and the shell work as for a VM;
    /// what needs QEMU (QMP, `set_link`, warm start) says it is a board.
    /// Added first, with no [`TestBedBuilder::dut`], it is the machine the
    /// bed's own verbs address; named `dut`, its files keep a one-machine
    /// bed's names (`console.log`, `link0.pcap`).
    ///
    /// ```no_run
    /// use alpy::{board::BoardSpec, Link, TestBed};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let spec = BoardSpec::from_toml(&std::fs::read_to_string("fw-3.toml")?)?;
    /// let mut bed = TestBed::builder("on-hardware")
    ///     .board("dut", spec)
    ///     .link(Link::new().node_addr("10.0.1.2/24").gateway("10.0.1.1"))
    ///     .link(Link::new().node_addr("10.0.2.2/24").gateway("10.0.2.1"))
    ///     .prompt("fw# ")
    ///     .start()?;
    /// bed.boot(std::time::Duration::from_secs(300))?;
    /// # Ok(()) }
    /// ```
    pub fn board(mut self, name: &str, spec: crate::board::BoardSpec) -> Self {
        self.machines.push(MachineSpec {
            name: name.to_string(),
            tags: spec.tags.clone(),
            kind: MachineKind::Board(Box::new(spec)),
        });
        self
    }

    /// Adds a segment between machines' NICs (nodes join it with
    /// [`Link::on_segment`]).
    pub fn segment(mut self, segment: Segment) -> Self {
        self.segments.push(segment);
        self
    }

    /// The machines, the DUT (`dut`) first.
    pub(crate) fn machine_specs(&self) -> Vec<MachineSpec> {
        let dut = self.dut.clone().map(|d| MachineSpec {
            name: "dut".into(),
            tags: d.tags().to_vec(),
            kind: MachineKind::Vm(Box::new(d)),
        });
        dut.into_iter()
            .chain(self.machines.iter().cloned())
            .collect()
    }

    /// Whether the bed is more than one machine with nodes on its NICs.
    pub(crate) fn is_network(&self) -> bool {
        self.dut.iter().count() + self.machines.len() > 1
            || !self.segments.is_empty()
            || self.links.iter().any(|l| l.attach != Attach::NextDutNic)
    }

    /// Where artifacts go (default: `$ALPY_ARTIFACTS/<name>-<id>` or
    /// `target/alpy/<name>-<id>`).
    pub fn artifacts_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.artifacts = Some(dir.into());
        self
    }

    /// Settings to use instead of the environment's, read when
    /// [`TestBed::builder`] was called (`ALPY_ARTIFACTS`, `ALPY_WARM`,
    /// `ALPY_KEEP`, `ALPY_ACCEL`, ...: see [`crate::settings`]).
    ///
    /// ```
    /// use alpy::settings::Settings;
    /// let b = alpy::TestBed::builder("t").settings(Settings::from_env().set("ALPY_WARM", "off"));
    /// # let _ = b;
    /// ```
    pub fn settings(mut self, settings: Settings) -> Self {
        self.settings = settings;
        self
    }

    /// Force direct or helper namespace work (default: detect).
    pub fn net_mode(mut self, mode: NetMode) -> Self {
        self.net_mode = Some(mode);
        self
    }

    /// How [`TestBed::shutdown`] powers off (default: ACPI button).
    pub fn poweroff(mut self, p: PowerOff) -> Self {
        self.poweroff = p;
        self
    }

    /// This builder with a topology's DUT, links and console settings:
    /// the same file `alpy up` and [`TestBed::from_topology`] read. Links
    /// added after it come after the topology's.
    ///
    /// ```no_run
    /// # fn main() -> alpy::Result<()> {
    /// let t = alpy::Topology::load(std::path::Path::new("topologies/forward.toml"))?;
    /// let bed = alpy::TestBed::builder("forward-plus")
    ///     .topology(&t)?
    ///     .link(alpy::Link::new().name("extra").node_addr("192.168.3.2/24"))
    ///     .start()?;
    /// bed.close()?;
    /// # Ok(()) }
    /// ```
    pub fn topology(self, t: &Topology) -> Result<Self> {
        t.apply(self)
    }

    /// The console's default deadline (default 60 s).
    pub fn console_timeout(mut self, t: Duration) -> Self {
        self.console_timeout = t;
        self
    }

    /// Use this run id (default: a fresh one), e.g. to correlate logs.
    pub fn run_id(mut self, run: RunId) -> Self {
        self.run = Some(run);
        self
    }

    /// The image of node containers (default `alpy/node`).
    pub fn node_image(mut self, image: &str) -> Self {
        self.node_image = Some(image.to_string());
        self
    }

    /// How to log in on the console: [`TestBed::boot`] waits for the
    /// login prompt and logs in; [`TestBed::shell`] then has a shell.
    pub fn login(mut self, login: Login) -> Self {
        self.login = Some(login);
        self
    }

    /// The shell prompt of a DUT that needs no login (for
    /// [`TestBed::boot`]).
    pub fn prompt(mut self, prompt: &str) -> Self {
        self.prompt = Some(prompt.to_string());
        self
    }

    /// Start from a saved ready point (see [`crate::bed::warm`]): the first
    /// bed of this configuration boots cold, runs the preparation and saves;
    /// every later one restores. Either way `start()` returns with the DUT
    /// at the ready point, paused; [`TestBed::boot`] resumes it. Needs
    /// [`TestBedBuilder::login`] or [`TestBedBuilder::prompt`] for the cold
    /// boot.
    pub fn warm_start(mut self, warm: WarmStart) -> Self {
        self.warm = Some(warm);
        self
    }

    /// Skip removing dead runs' leftovers at start (default: reap).
    pub fn no_reap(mut self) -> Self {
        self.reap = false;
        self
    }

    /// A bed of several machines prepares and saves each on its own: a
    /// bed-wide [`WarmStart::new`] is refused (before anything starts).
    pub(crate) fn check_warm(&self, specs: &[MachineSpec]) -> Result<()> {
        if self.warm.is_some() {
            if let Some((m, b)) = specs.iter().find_map(|s| match &s.kind {
                MachineKind::Board(b) => Some((s, b)),
                MachineKind::Vm(_) => None,
            }) {
                return Err(Error::Config(format!(
                    "test bed {}: warm start does not apply to machine {} (board {}): a board \
                     has no memory image to save or restore, and every boot is a power cycle; \
                     remove .warm(..) from this bed",
                    self.name, m.name, b.name
                )));
            }
        }
        if let (true, Some(w)) = (specs.len() > 1, &self.warm) {
            if matches!(w.prepare, crate::bed::warm::Preparation::Bed(_)) {
                return Err(Error::Config(format!(
                    "test bed {}: its machines ({}) are each prepared and saved on their own: \
                 use WarmStart::per_machine(version, |machine| ..) instead of WarmStart::new",
                    self.name,
                    specs
                        .iter()
                        .map(|m| m.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
        }
        Ok(())
    }

    /// Stands everything up; the DUT stays paused until
    /// [`TestBed::resume`].
    ///
    /// With `REMOTE_LAB_URL` (and `REMOTE_LAB_TOKEN`) set, the bed runs on
    /// that alpy-lab server instead, with the same API: see
    /// [`crate::bed::remote`]. The lab boots the DUT and logs in, so
    /// [`TestBed::boot`] returns at once.
    pub fn start(self) -> Result<TestBed> {
        logging::init();
        let t_start = Instant::now();
        let mut specs = self.machine_specs();
        // The accelerator, chosen once from these settings for every
        // machine that did not force one; on a lab, the lab host chooses
        // (a topology sent there names none).
        let local = self.settings.lab_url().is_none();
        let unset = |s: &MachineSpec| s.kind.vm().is_some_and(|d| d.config.accel.is_none());
        if local && specs.iter().any(unset) {
            let accel = crate::vm::Accel::detect_with(self.settings.accel())?;
            for s in specs.iter_mut() {
                if let Some(d) = s.kind.vm_mut().filter(|d| d.config.accel.is_none()) {
                    d.config.accel = Some(accel);
                }
            }
        }
        if specs.is_empty() {
            return Err(Error::Config(
                "the test bed has no DUT: give the builder .dut(..) or .machine(..)".into(),
            ));
        }
        let plan = wiring::plan(&specs, &self.links, &self.segments)?;
        self.check_warm(&specs)?;
        let run = self.run.clone().unwrap_or_default();
        let artifacts = match &self.artifacts {
            Some(d) => d.clone(),
            None => default_artifacts_root(&self.settings)
                .join(format!("{}-{run}", sanitize(&self.name))),
        };
        std::fs::create_dir_all(&artifacts)
            .map_err(|e| Error::io(format!("create artifacts dir {}", artifacts.display()), e))?;
        // Before anything is written there: a running bed's files (its
        // debug log, its UEFI variables) must never be touched by another.
        let dir_lock = lock_artifacts(&artifacts)?;
        // This bed's records only (see logging): its threads inherit the scope.
        let log_sink = logging::add_scoped_sink(&artifacts.join("debug.log"))?;
        log_sink.enter();
        // Pages of killed runs in the default root, before this bed's
        // records start.
        if self.artifacts.is_none() {
            crate::report::complete_killed(&default_artifacts_root(&self.settings));
        }
        let journal = crate::journal::Journal::open(
            &artifacts,
            log_sink.scope(),
            &self.name,
            &run.to_string(),
        )?;
        let machines: Vec<(String, Vec<String>)> = specs
            .iter()
            .map(|m| (m.name.clone(), m.tags.clone()))
            .collect();
        let drawing = Drawing::network(
            &self.name,
            &machines,
            &self.links,
            &self.segments,
            self.drawn_apps.clone(),
        );
        if let Err(e) = std::fs::write(artifacts.join("topology.svg"), drawing.svg()) {
            log::warn!(target: "alpy::testbed", "cannot write topology.svg: {e}");
        }
        log::info!(target: "alpy::testbed", "test bed {} (run {run}), artifacts in {}", self.name, artifacts.display());
        let mut bed = TestBed::new(
            self.name.clone(),
            run,
            artifacts,
            log_sink,
            &self,
            &specs,
            &plan,
        );
        bed.dir_lock = Some(dir_lock);
        bed.journal = Some(journal);
        let board = self.board_wanted()?;
        let on_lab = crate::bed::remote::LabClient::for_bed(&self.settings, board.clone());
        let stood_up = match on_lab {
            Ok(Some(_)) if self.is_network() => Err(Error::Config(format!(
                "test bed {}: a bed of several machines or segments cannot run on a lab \
                 server yet; unset REMOTE_LAB_URL to run it here",
                self.name
            ))),
            Ok(Some(lab)) => match specs[0].kind.vm() {
                Some(dut) if specs.iter().all(|s| s.kind.vm().is_some()) => {
                    bed.stand_up_remote(&self, dut, board.as_ref(), lab)
                }
                _ => Err(Error::Config(format!(
                    "test bed {}: a board of this host's in a bed on a lab server \
                     (REMOTE_LAB_URL): the lab lends its own boards; unset REMOTE_LAB_URL to \
                     drive this board from here",
                    self.name
                ))),
            },
            Ok(None) => bed.stand_up(&self, &plan),
            Err(e) => Err(e),
        };
        match stood_up {
            Ok(()) => {
                bed.timings.record("setup", t_start.elapsed());
                Ok(bed)
            }
            Err(e) => {
                log::error!(target: "alpy::testbed", "start failed: {e}");
                bed.abandon(&e);
                eprintln!(
                    "alpy: test bed {} failed to start; artifacts: {}",
                    bed.name(),
                    bed.artifacts_dir().display()
                );
                Err(e)
            }
        }
    }
}

/// Takes the artifacts directory for this bed alone (`flock` on its
/// `.lock`, which names the holder), or says who has it.
fn lock_artifacts(dir: &std::path::Path) -> Result<nix::fcntl::Flock<std::fs::File>> {
    use std::io::{Read, Seek, Write};
    let path = dir.join(".lock");
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .map_err(|e| Error::io(format!("open {}", path.display()), e))?;
    // A moment's shared lock is `alpy report` asking whether a bed runs
    // here: try again a few times before saying the directory is taken.
    let mut f = f;
    let mut tries = 0;
    let taken = loop {
        match nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusiveNonblock) {
            Err((back, _)) if tries < 10 => {
                f = back;
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            other => break other,
        }
    };
    match taken {
        Ok(mut l) => {
            let _ = l.set_len(0);
            let _ = l.rewind();
            let _ = write!(l, "{}", std::process::id());
            Ok(l)
        }
        Err((mut f, _)) => {
            let mut holder = String::new();
            let _ = f.read_to_string(&mut holder);
            Err(Error::Config(format!(
                "artifacts directory {} is in use by another test bed (process {}): give each bed \
                 a directory of its own (artifacts_dir, or leave it to ALPY_ARTIFACTS)",
                dir.display(),
                holder.trim()
            )))
        }
    }
}

/// Where artifacts go by default.
fn default_artifacts_root(settings: &Settings) -> PathBuf {
    if let Some(d) = settings.artifacts_root() {
        return d;
    }
    // A binary built by cargo lives under <target>/<profile>/...
    if let Ok(exe) = std::env::current_exe() {
        if let Some(target) = exe
            .ancestors()
            .find(|p| p.file_name().is_some_and(|n| n == "target"))
        {
            return target.join("alpy");
        }
    }
    std::env::temp_dir().join("alpy")
}

fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}
