//! The test bed: one call stands up the DUT and its links in the right
//! order, and `close()` takes everything down again, keeping the artifacts.
//!
//! Order (see DESIGN.md): reap stale runs, artifacts directory, node
//! containers, taps inside them, QEMU paused with one tap and one pcap per
//! link, QMP, console; then the test starts its apps and calls
//! [`TestBed::resume`]. Closing goes in reverse: console, QEMU, nodes.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::console::{Console, Pattern};
use crate::docker::Docker;
use crate::error::{Error, Result};
use crate::logging::{self, SinkGuard, Step};
use crate::netns::NetMode;
use crate::node::{default_mac, Link, Node, NodeOptions, Nodes};
use crate::pcap::Capture;
use crate::qemu::{Accel, Disk, DiskMode, Nic, NicModel, QemuConfig, Uefi};
use crate::qemu_process::QemuProcess;
use crate::qmp::Qmp;
use crate::run::RunId;

/// How long QEMU may take to answer on QMP.
const QMP_TIMEOUT: Duration = Duration::from_secs(10);

/// The device under test: what QEMU boots.
#[derive(Debug, Clone)]
pub struct Dut {
    kernel: Option<PathBuf>,
    initrd: Option<PathBuf>,
    append: Option<String>,
    disks: Vec<(PathBuf, Option<String>)>,
    overlay_disks: bool,
    uefi: bool,
    nic_model: NicModel,
    memory_mib: u32,
    cpus: u32,
    machine: String,
    accel: Option<Accel>,
    extra_args: Vec<String>,
}

impl Dut {
    fn empty() -> Dut {
        Dut {
            kernel: None,
            initrd: None,
            append: None,
            disks: Vec::new(),
            overlay_disks: false,
            uefi: false,
            nic_model: NicModel::E1000,
            memory_mib: 256,
            cpus: 1,
            machine: "pc".into(),
            accel: None,
            extra_args: Vec::new(),
        }
    }

    /// Direct kernel boot, with an optional initrd.
    pub fn kernel(kernel: impl Into<PathBuf>, initrd: Option<PathBuf>) -> Dut {
        Dut {
            kernel: Some(kernel.into()),
            initrd,
            ..Dut::empty()
        }
    }

    /// Boot from a disk image (never modified: `snapshot=on`).
    pub fn disk_image(image: impl Into<PathBuf>, format: Option<&str>) -> Dut {
        Dut::empty().disk(image, format)
    }

    /// Adds a disk (virtio, never modified).
    pub fn disk(mut self, image: impl Into<PathBuf>, format: Option<&str>) -> Self {
        self.disks.push((image.into(), format.map(str::to_string)));
        self
    }

    /// Keep disk writes in qcow2 overlays in the artifacts directory
    /// instead of QEMU's temporary snapshot.
    pub fn overlay_disks(mut self) -> Self {
        self.overlay_disks = true;
        self
    }

    /// The kernel command line.
    pub fn append(mut self, cmdline: &str) -> Self {
        self.append = Some(cmdline.to_string());
        self
    }

    /// Boot through UEFI (OVMF, with a private variable store).
    pub fn uefi(mut self) -> Self {
        self.uefi = true;
        self
    }

    /// The NIC model of every link.
    pub fn nic_model(mut self, model: NicModel) -> Self {
        self.nic_model = model;
        self
    }

    /// Guest memory.
    pub fn memory_mib(mut self, mib: u32) -> Self {
        self.memory_mib = mib;
        self
    }

    /// vCPUs.
    pub fn cpus(mut self, n: u32) -> Self {
        self.cpus = n;
        self
    }

    /// Machine type (`pc`, `q35`).
    pub fn machine(mut self, m: &str) -> Self {
        self.machine = m.to_string();
        self
    }

    /// Force an accelerator (default: [`Accel::detect`]).
    pub fn accel(mut self, a: Accel) -> Self {
        self.accel = Some(a);
        self
    }

    /// Extra QEMU arguments.
    pub fn extra_arg(mut self, arg: &str) -> Self {
        self.extra_args.push(arg.to_string());
        self
    }
}

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
    name: String,
    dut: Option<Dut>,
    links: Vec<Link>,
    artifacts: Option<PathBuf>,
    net_mode: Option<NetMode>,
    poweroff: PowerOff,
    console_timeout: Duration,
    reap: bool,
    run: Option<RunId>,
    node_image: Option<String>,
}

impl TestBedBuilder {
    /// The DUT.
    pub fn dut(mut self, dut: Dut) -> Self {
        self.dut = Some(dut);
        self
    }

    /// Adds a link (one node, one NIC).
    pub fn link(mut self, link: Link) -> Self {
        self.links.push(link);
        self
    }

    /// Where artifacts go (default: `$ALPY_ARTIFACTS/<name>-<id>` or
    /// `target/alpy/<name>-<id>`).
    pub fn artifacts_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.artifacts = Some(dir.into());
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

    /// Skip removing dead runs' leftovers at start (default: reap).
    pub fn no_reap(mut self) -> Self {
        self.reap = false;
        self
    }

    /// Stands everything up; the DUT stays paused until
    /// [`TestBed::resume`].
    pub fn start(self) -> Result<TestBed> {
        logging::init();
        let t_start = Instant::now();
        let dut = self
            .dut
            .clone()
            .ok_or_else(|| Error::Config("the test bed has no DUT".into()))?;
        let run = self.run.clone().unwrap_or_default();
        let artifacts = match &self.artifacts {
            Some(d) => d.clone(),
            None => default_artifacts_root().join(format!("{}-{run}", sanitize(&self.name))),
        };
        std::fs::create_dir_all(&artifacts)
            .map_err(|e| Error::io(format!("create artifacts dir {}", artifacts.display()), e))?;
        let log_sink = logging::add_file_sink(&artifacts.join("debug.log"))?;
        log::info!(target: "alpy::testbed", "test bed {} (run {run}), artifacts in {}", self.name, artifacts.display());
        let mut bed = TestBed {
            name: self.name.clone(),
            run,
            artifacts,
            poweroff: self.poweroff.clone(),
            nodes: None,
            qemu: None,
            console: None,
            timings: Vec::new(),
            resumed_at: None,
            _log_sink: Some(log_sink),
            closed: false,
        };
        match bed.stand_up(&self, &dut) {
            Ok(()) => {
                bed.record("setup", t_start.elapsed());
                Ok(bed)
            }
            Err(e) => {
                log::error!(target: "alpy::testbed", "start failed: {e}");
                let _ = bed.teardown();
                bed.closed = true;
                eprintln!(
                    "alpy: test bed {} failed to start; artifacts: {}",
                    bed.name,
                    bed.artifacts.display()
                );
                Err(e)
            }
        }
    }
}

/// Where artifacts go by default.
fn default_artifacts_root() -> PathBuf {
    if let Some(d) = std::env::var_os("ALPY_ARTIFACTS") {
        return PathBuf::from(d);
    }
    if let Some(d) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(d).join("alpy");
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

/// A running test bed: DUT, nodes, console, QMP, artifacts.
pub struct TestBed {
    name: String,
    run: RunId,
    artifacts: PathBuf,
    poweroff: PowerOff,
    nodes: Option<Nodes>,
    qemu: Option<QemuProcess>,
    console: Option<Console>,
    timings: Vec<(String, f64)>,
    resumed_at: Option<Instant>,
    _log_sink: Option<SinkGuard>,
    closed: bool,
}

impl TestBed {
    /// Starts building a test bed named `name` (used in the artifacts path).
    pub fn builder(name: &str) -> TestBedBuilder {
        TestBedBuilder {
            name: name.to_string(),
            dut: None,
            links: Vec::new(),
            artifacts: None,
            net_mode: None,
            poweroff: PowerOff::AcpiButton,
            console_timeout: Duration::from_secs(60),
            reap: true,
            run: None,
            node_image: None,
        }
    }

    fn stand_up(&mut self, b: &TestBedBuilder, dut: &Dut) -> Result<()> {
        let docker = logging::step("Connect to Docker", Docker::connect)?;
        // Reaping touches only dead owners' resources: it runs beside the
        // node creation instead of before it.
        std::thread::scope(|s| {
            let reaper = b.reap.then(|| s.spawn(|| crate::reap::reap(&docker)));
            let created = self.create_nodes(&docker, b);
            if let Some(r) = reaper {
                match r.join() {
                    Ok(Ok(reaped)) => log::debug!(target: "alpy::testbed", "reaped {reaped:?}"),
                    Ok(Err(e)) => {
                        log::warn!(target: "alpy::testbed", "reaping dead runs failed: {e}")
                    }
                    Err(_) => log::warn!(target: "alpy::testbed", "the reaper panicked"),
                }
            }
            created
        })?;
        self.start_qemu(dut)?;
        let serial = self
            .qemu_mut()?
            .take_serial()
            .ok_or_else(|| Error::Qemu("no serial console".into()))?;
        let mut console = Console::new(serial, "dut", Some(&self.artifacts.join("console.log")))?;
        console.set_timeout(b.console_timeout);
        self.console = Some(console);
        Ok(())
    }

    fn create_nodes(&mut self, docker: &Arc<Docker>, b: &TestBedBuilder) -> Result<()> {
        let step = Step::start(format!("Create {} nodes", b.links.len()));
        let opts = NodeOptions {
            mode: b.net_mode,
            log_dir: Some(self.artifacts.clone()),
            image: b.node_image.clone(),
        };
        match Nodes::create(docker, &self.run, &b.links, &opts) {
            Ok(nodes) => {
                let (containers, taps) = nodes.timings();
                step.done();
                self.record("nodes", containers);
                self.record("taps", taps);
                self.nodes = Some(nodes);
                Ok(())
            }
            Err(e) => {
                step.failed(&e);
                Err(e)
            }
        }
    }

    fn start_qemu(&mut self, dut: &Dut) -> Result<()> {
        let nodes = self
            .nodes
            .as_ref()
            .ok_or_else(|| Error::Config("no nodes".into()))?;
        let mut nics = Vec::new();
        for n in nodes.iter() {
            let (fd, dgram) = n
                .dut_end()
                .ok_or_else(|| Error::Net(format!("node {} has no tap", n.index())))?;
            nics.push(Nic {
                model: dut.nic_model.clone(),
                mac: Some(default_mac(&self.run, n.index(), true)),
                tap_fd: std::os::fd::AsRawFd::as_raw_fd(&fd),
                dgram,
                pcap: Some(self.pcap_path(n.index())),
            });
        }
        let disks = dut
            .disks
            .iter()
            .enumerate()
            .map(|(i, (path, format))| Disk {
                path: path.clone(),
                format: format.clone(),
                interface: "virtio".into(),
                mode: if dut.overlay_disks {
                    DiskMode::Overlay(self.artifacts.join(format!("disk{i}.qcow2")))
                } else {
                    DiskMode::Snapshot
                },
            })
            .collect();
        let uefi = if dut.uefi {
            Some(Uefi::private_copy(None, None, &self.artifacts)?)
        } else {
            None
        };
        let cfg = QemuConfig {
            machine: dut.machine.clone(),
            accel: dut.accel,
            memory_mib: dut.memory_mib,
            cpus: dut.cpus,
            kernel: dut.kernel.clone(),
            initrd: dut.initrd.clone(),
            append: dut.append.clone(),
            disks,
            uefi,
            nics,
            serial_log: Some(self.artifacts.join("console-qemu.log")),
            paused: true,
            no_shutdown: false,
            extra_args: dut.extra_args.clone(),
            ..Default::default()
        };
        let t0 = Instant::now();
        let qemu = logging::step("Start QEMU (paused)", || {
            QemuProcess::start(&cfg, &self.artifacts.join("qemu.log"), QMP_TIMEOUT)
        })?;
        self.record("qemu", t0.elapsed());
        self.qemu = Some(qemu);
        Ok(())
    }

    fn qemu_mut(&mut self) -> Result<&mut QemuProcess> {
        self.qemu
            .as_mut()
            .ok_or_else(|| Error::Qemu("QEMU is not running".into()))
    }

    /// The run id that names everything of this test bed.
    pub fn run_id(&self) -> &RunId {
        &self.run
    }

    /// QEMU's PID while it runs.
    pub fn qemu_pid(&self) -> Option<i32> {
        self.qemu.as_ref().map(QemuProcess::pid)
    }

    /// The artifacts directory.
    pub fn artifacts_dir(&self) -> &Path {
        &self.artifacts
    }

    /// The capture file of link `i`.
    pub fn pcap_path(&self, i: usize) -> PathBuf {
        self.artifacts.join(format!("link{i}.pcap"))
    }

    /// Reads link `i`'s capture (complete once the test bed is closed).
    pub fn capture(&self, i: usize) -> Result<Capture> {
        Capture::open(&self.pcap_path(i))
    }

    /// Node `i`.
    pub fn node(&self, i: usize) -> &Node {
        match &self.nodes {
            Some(n) => n.node(i),
            None => panic!("the test bed has no nodes (closed?)"),
        }
    }

    /// The MAC of the DUT's NIC on link `i`.
    pub fn dut_mac(&self, i: usize) -> String {
        default_mac(&self.run, i, true)
    }

    /// The serial console.
    pub fn console(&mut self) -> &mut Console {
        match &mut self.console {
            Some(c) => c,
            None => panic!("the test bed has no console (closed?)"),
        }
    }

    /// The QMP session.
    pub fn qmp(&mut self) -> &mut Qmp {
        match &mut self.qemu {
            Some(q) => q.qmp(),
            None => panic!("the test bed has no QEMU (closed?)"),
        }
    }

    /// Lets the vCPUs run.
    pub fn resume(&mut self) -> Result<()> {
        logging::step("Resume the DUT", || self.qmp().cont())?;
        self.resumed_at = Some(Instant::now());
        Ok(())
    }

    /// Waits for `prompt` on the console and records the `boot` phase
    /// (resume to prompt).
    pub fn wait_prompt(&mut self, prompt: &str, timeout: Duration) -> Result<()> {
        let t = self.resumed_at.unwrap_or_else(Instant::now);
        logging::step(format!("Wait for {prompt:?}"), || {
            self.console()
                .expect(&Pattern::exact(prompt), timeout)
                .map(drop)
        })?;
        self.record("boot", t.elapsed());
        Ok(())
    }

    /// Records a phase duration for `timings.json`.
    pub fn record(&mut self, phase: &str, took: Duration) {
        self.timings.push((phase.to_string(), took.as_secs_f64()));
    }

    /// Runs `f` as a logged step and records its duration as `phase`.
    pub fn timed<T>(&mut self, phase: &str, f: impl FnOnce(&mut Self) -> Result<T>) -> Result<T> {
        let t0 = Instant::now();
        let r = logging::step(phase, || f(self));
        self.record(phase, t0.elapsed());
        r
    }

    /// The phase durations recorded so far, in seconds.
    pub fn timings(&self) -> &[(String, f64)] {
        &self.timings
    }

    /// Powers the guest off (as configured) and waits for QEMU's SHUTDOWN
    /// event and exit.
    pub fn shutdown(&mut self, timeout: Duration) -> Result<()> {
        let t0 = Instant::now();
        let how = self.poweroff.clone();
        logging::step("Power off the DUT", || -> Result<()> {
            match &how {
                PowerOff::Console(cmd) => self.console().send_line(cmd)?,
                PowerOff::AcpiButton => self.qmp().system_powerdown()?,
            }
            let tail = self.console.as_ref().map(|c| c.tail()).unwrap_or_default();
            self.qmp()
                .wait_event("SHUTDOWN", timeout)
                .map_err(|e| match e {
                    Error::Timeout { what, timeout, .. } => Error::Timeout {
                        what,
                        timeout,
                        tail,
                    },
                    e => e,
                })?;
            let status = self.qemu_mut()?.wait_exit(timeout)?;
            if !status.success() {
                return Err(Error::Qemu(format!(
                    "QEMU ended badly after power-off: {}",
                    crate::qemu_process::describe_exit(&status)
                )));
            }
            Ok(())
        })?;
        self.record("shutdown", t0.elapsed());
        Ok(())
    }

    /// Tears everything down in reverse order, writes `timings.json`, and
    /// returns the first error. Artifacts stay.
    pub fn close(mut self) -> Result<()> {
        self.closed = true;
        let r = self.teardown();
        if let Err(e) = &r {
            eprintln!(
                "alpy: test bed {} failed to close ({e}); artifacts: {}",
                self.name,
                self.artifacts.display()
            );
        }
        r
    }

    fn teardown(&mut self) -> Result<()> {
        let t0 = Instant::now();
        let step = Step::start(format!("Close test bed {}", self.name));
        let mut first: Option<Error> = None;
        let mut keep = |r: Result<()>| {
            if let Err(e) = r {
                log::error!(target: "alpy::testbed", "close: {e}");
                first.get_or_insert(e);
            }
        };
        if let Some(c) = self.console.take() {
            keep(c.close());
        }
        if let Some(q) = self.qemu.take() {
            keep(q.close());
        }
        if let Some(n) = self.nodes.take() {
            keep(n.close());
        }
        let took = t0.elapsed();
        match &first {
            None => step.done(),
            Some(e) => step.failed(e),
        };
        self.record("close", took);
        let json = serde_json::Value::Object(
            self.timings
                .iter()
                .map(|(k, v)| (k.clone(), serde_json::json!((v * 1e4).round() / 1e4)))
                .collect(),
        );
        let path = self.artifacts.join("timings.json");
        if let Err(e) = std::fs::write(&path, format!("{json:#}\n")) {
            log::warn!(target: "alpy::testbed", "write {}: {e}", path.display());
        }
        self._log_sink = None;
        match first {
            None => Ok(()),
            Some(e) => Err(e),
        }
    }
}

impl Drop for TestBed {
    fn drop(&mut self) {
        if !self.closed {
            self.closed = true;
            let _ = self.teardown();
            eprintln!(
                "alpy: test bed {} was not closed (test failed?); artifacts: {}",
                self.name,
                self.artifacts.display()
            );
        }
    }
}
