//! The test bed: one call stands up the DUT and its links in the right
//! order, and `close()` takes everything down again, keeping the artifacts.
//!
//! Order (see `docs/ARCHITECTURE.md`): reap stale runs beside creating the
//! node containers (with their watchdog), taps inside them, QEMU paused with
//! one tap and one pcap per link, QMP, console; then the test starts its
//! apps and calls [`TestBed::resume`] (or [`TestBed::boot`]). Closing goes
//! in reverse: console, QEMU, nodes.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::addr::Mac;
use crate::bed::builder::{PowerOff, TestBedBuilder};
use crate::bed::dut::DiskPlan;
use crate::bed::dut::Dut;
use crate::bed::state::{PowerState, WarmOutcome};
use crate::bed::timings::Timings;
use crate::bed::warm::WarmStart;
use crate::error::{Error, Result};
use crate::logging::{self, SinkGuard, Step};
use crate::net::link::{default_mac, fixed_mac};
use crate::net::{Docker, Node, NodeOptions, Nodes};
use crate::run::RunId;
use crate::vm::console::Console;
use crate::vm::login::Login;
use crate::vm::qemu::RamFile;
use crate::vm::qemu_process::QemuProcess;
use crate::vm::qmp::Qmp;
use crate::vm::remote_shell::ShellState;

/// How long QEMU may take to answer on QMP.
const QMP_TIMEOUT: Duration = Duration::from_secs(10);

/// A running test bed: DUT, nodes, console, QMP, artifacts.
pub struct TestBed {
    pub(crate) name: String,
    pub(crate) run: RunId,
    pub(crate) artifacts: PathBuf,
    pub(crate) poweroff: PowerOff,
    pub(crate) login: Option<Login>,
    pub(crate) prompt: Option<String>,
    pub(crate) nodes: Option<Nodes>,
    pub(crate) qemu: Option<QemuProcess>,
    pub(crate) console: Option<Console>,
    pub(crate) shell: Option<ShellState>,
    pub(crate) timings: Timings,
    pub(crate) resumed_at: Option<Instant>,
    /// Host time minus QEMU's capture stamps, once resumed (see
    /// [`crate::pcap::Capture::shifted`]).
    pub(crate) capture_offset: Option<f64>,
    /// The guest's virtual clock when it was last resumed from nothing:
    /// zero after a boot, the snapshot's clock after a restore.
    pub(crate) virtual_clock_base: f64,
    /// Warm start: MACs by link index, and the DUT paused at its ready
    /// point until `boot()`.
    pub(crate) warm: Option<WarmStart>,
    pub(crate) at_ready_point: bool,
    pub(crate) warm_outcome: Option<WarmOutcome>,
    pub(crate) power: PowerState,
    pub(crate) console_timeout: Duration,
    /// Each link's choices for the DUT's NIC.
    pub(crate) dut_nics: Vec<crate::nic::DutNic>,
    /// Each link's gateway as its node sees it (the DUT, usually).
    pub(crate) link_gateways: Vec<Option<std::net::IpAddr>>,
    pub(crate) _log_sink: Option<SinkGuard>,
    /// The artifacts directory is this bed's while this is held.
    pub(crate) dir_lock: Option<nix::fcntl::Flock<std::fs::File>>,
    /// The lab that runs this bed, with `REMOTE_LAB_URL` (see
    /// [`crate::bed::remote`]).
    pub(crate) remote: Option<crate::bed::remote::RemoteBed>,
    pub(crate) closed: bool,
}

impl TestBed {
    pub(crate) fn new(
        name: String,
        run: RunId,
        artifacts: PathBuf,
        log_sink: SinkGuard,
        b: &TestBedBuilder,
    ) -> TestBed {
        TestBed {
            name,
            run,
            artifacts,
            poweroff: b.poweroff.clone(),
            login: b.login.clone(),
            prompt: b.prompt.clone(),
            nodes: None,
            qemu: None,
            console: None,
            shell: None,
            timings: Timings::default(),
            resumed_at: None,
            capture_offset: None,
            virtual_clock_base: 0.0,
            warm: b.warm.clone(),
            at_ready_point: false,
            warm_outcome: None,
            power: PowerState::Absent,
            console_timeout: b.console_timeout,
            dut_nics: b.links.iter().map(|l| l.dut_nic.clone()).collect(),
            link_gateways: b.links.iter().map(|l| l.gateway.or(l.gateway6)).collect(),
            _log_sink: Some(log_sink),
            dir_lock: None,
            remote: None,
            closed: false,
        }
    }

    /// Tears down what a failed start made.
    pub(crate) fn abandon(&mut self) {
        let _ = self.teardown();
        self.closed = true;
    }

    pub(crate) fn stand_up(&mut self, b: &TestBedBuilder, dut: &Dut) -> Result<()> {
        let docker = logging::step("Connect to Docker", Docker::connect)?;
        // Reaping touches only dead owners' resources: it runs beside the
        // node creation instead of before it.
        std::thread::scope(|s| {
            let reaper = b
                .reap
                .then(|| s.spawn(logging::inherit(|| crate::bed::reap::reap(&docker))));
            let created = self.create_nodes(&docker, b);
            if let Some(r) = reaper {
                match crate::util::join_scoped(r, "the reaper") {
                    Ok(reaped) => log::debug!(target: "alpy::testbed", "reaped {reaped:?}"),
                    Err(e) => log::warn!(target: "alpy::testbed", "reaping dead runs failed: {e}"),
                }
            }
            created
        })?;
        match self.warm.clone() {
            Some(w) if WarmStart::enabled() => self.warm_stand_up(&w, dut),
            Some(w) => {
                log::info!(target: "alpy::warm", "ALPY_WARM=off: booting cold");
                self.start_qemu(dut, DiskPlan::AsConfigured, None)?;
                self.boot(w.boot_timeout)?;
                self.timed("prepare", |bed| (w.prepare)(bed))?;
                self.warm_outcome = Some(WarmOutcome::Cold);
                Ok(())
            }
            None => self.start_qemu(dut, DiskPlan::AsConfigured, None),
        }?;
        self.apply_link_states(&b.links)
    }

    /// What the links ask for once everything runs: impairment, and links
    /// that start down.
    fn apply_link_states(&mut self, links: &[crate::net::Link]) -> Result<()> {
        for (i, l) in links.iter().enumerate() {
            if let Some((dir, imp)) = &l.impairment {
                log::info!(target: "alpy::testbed", "link {i}: impair {dir:?}: {imp:?}");
                self.nodes()?.node(i)?.impair_direction(*dir, imp)?;
            }
            if l.down {
                log::info!(target: "alpy::testbed", "link {i}: starts down");
                self.set_dut_link(i, false)?;
            }
        }
        Ok(())
    }

    /// The NICs of the DUT, one per node.
    pub(crate) fn dut_nics(&self, dut: &Dut) -> Result<Vec<crate::vm::qemu::Nic>> {
        let nodes = self
            .nodes
            .as_ref()
            .ok_or_else(|| Error::Internal("QEMU started before the nodes".into()))?;
        let mut nics = Vec::new();
        for n in nodes.iter() {
            let (fd, dgram) = n
                .dut_end()
                .ok_or_else(|| Error::Internal(format!("node {} has no tap", n.name())))?;
            let fd = std::os::fd::AsRawFd::as_raw_fd(&fd);
            nics.push(dut.nic(
                &self.dut_nics.get(n.index()).cloned().unwrap_or_default(),
                self.dut_mac(n.index()),
                fd,
                dgram,
                self.pcap_path(n.index()),
            ));
        }
        Ok(nics)
    }

    fn create_nodes(&mut self, docker: &Arc<Docker>, b: &TestBedBuilder) -> Result<()> {
        let step = Step::start(format!("Create {} nodes", b.links.len()));
        let opts = NodeOptions {
            mode: b.net_mode,
            log_dir: Some(self.artifacts.clone()),
            image: b.node_image.clone(),
            fixed_macs: b.warm.is_some(),
        };
        match Nodes::create(docker, &self.run, &b.links, &opts) {
            Ok(nodes) => {
                let (containers, taps) = nodes.timings();
                step.done();
                self.timings.record("nodes", containers);
                self.timings.record("taps", taps);
                self.nodes = Some(nodes);
                Ok(())
            }
            Err(e) => {
                step.failed(&e);
                Err(e)
            }
        }
    }

    /// Starts QEMU (paused) with one NIC per node and its console; its
    /// RAM in `ram` if given (warm start).
    pub(crate) fn start_qemu(
        &mut self,
        dut: &Dut,
        plan: DiskPlan<'_>,
        ram: Option<RamFile>,
    ) -> Result<()> {
        let mut cfg = dut.qemu_config(&self.artifacts, self.dut_nics(dut)?, plan)?;
        cfg.ram_file = ram;
        let t0 = Instant::now();
        let qemu = logging::step("Start QEMU (paused)", || {
            QemuProcess::start(&cfg, &self.artifacts.join("qemu.log"), QMP_TIMEOUT)
        })?;
        self.timings.record("qemu", t0.elapsed());
        self.qemu = Some(qemu);
        self.power = PowerState::Paused;
        let serial = self
            .qemu_mut()?
            .take_serial()
            .ok_or_else(|| Error::Internal("QEMU gave no serial console".into()))?;
        let console_name = format!("{}/dut", self.name);
        let mut console = Console::new(
            serial,
            &console_name,
            Some(&self.artifacts.join("console.log")),
        )?;
        console.set_timeout(self.console_timeout);
        self.console = Some(console);
        Ok(())
    }

    fn qemu_mut(&mut self) -> Result<&mut QemuProcess> {
        self.qemu
            .as_mut()
            .ok_or_else(|| Error::Closed(format!("QEMU of test bed {}", self.name)))
    }

    /// The bed's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The run id that names everything of this test bed.
    pub fn run_id(&self) -> &RunId {
        &self.run
    }

    /// QEMU's PID, while it runs.
    pub fn qemu_pid(&self) -> Option<i32> {
        self.qemu.as_ref().map(QemuProcess::pid)
    }

    /// The exact QEMU command line, shell-quoted (it is also in
    /// `debug.log`).
    pub fn qemu_command(&self) -> Option<&str> {
        self.qemu.as_ref().map(QemuProcess::command_line)
    }

    /// The artifacts directory.
    pub fn artifacts_dir(&self) -> &Path {
        &self.artifacts
    }

    /// Link `i`'s capture file.
    pub fn pcap_path(&self, i: usize) -> PathBuf {
        self.artifacts.join(format!("link{i}.pcap"))
    }

    pub(crate) fn nodes(&self) -> Result<&Nodes> {
        self.nodes
            .as_ref()
            .ok_or_else(|| Error::Closed(format!("the nodes of test bed {}", self.name)))
    }

    /// The node at the far end of a link, by index or by name;
    /// [`Error::NotFound`] (naming the nodes there are) if there is none.
    ///
    /// ```no_run
    /// use alpy::Commands;
    /// # fn main() -> alpy::Result<()> {
    /// # let bed: alpy::TestBed = todo!();
    /// bed.node("client")?.succeed("ping -c 1 192.168.2.2")?;
    /// bed.node(1)?.succeed("ip addr")?;
    /// # Ok(()) }
    /// ```
    pub fn node(&self, key: impl crate::net::nodes::NodeKey) -> Result<&Node> {
        self.nodes()?.get(key)
    }

    /// The node of the link named `name` (nodes of unnamed links are
    /// `node<i>`).
    pub fn node_by_name(&self, name: &str) -> Result<&Node> {
        self.nodes()?.by_name(name)
    }

    /// (node name, node container id) of every node on this host (none
    /// for a bed on a lab).
    pub fn nodes_info(&self) -> Vec<(String, String)> {
        self.nodes
            .as_ref()
            .map(|n| {
                n.iter()
                    .filter_map(|n| Some((n.name().to_string(), n.id()?.to_string())))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The DUT's MAC on link `i`.
    pub fn dut_mac(&self, i: usize) -> Mac {
        if let Some(m) = self.remote.as_ref().and_then(|r| r.dut_mac(i)) {
            return m;
        }
        if self.warm.is_some() {
            fixed_mac(i, true)
        } else {
            default_mac(&self.run, i, true)
        }
    }

    /// The serial console.
    pub fn console(&mut self) -> Result<&mut Console> {
        if let Some(r) = self.remote.as_mut() {
            return r.console();
        }
        let name = &self.name;
        self.console
            .as_mut()
            .ok_or_else(|| Error::Closed(format!("the console of test bed {name}")))
    }

    /// The QMP session. A bed on a lab server has none here: use
    /// [`TestBed::qmp_execute`], which works on both.
    pub fn qmp(&mut self) -> Result<&mut Qmp> {
        if self.remote.is_some() {
            return Err(Error::Config(format!(
                "test bed {} runs on a lab server (REMOTE_LAB_URL): its QMP goes through the lab; \
                 use bed.qmp_execute(command, arguments)",
                self.name
            )));
        }
        Ok(self.qemu_mut()?.qmp())
    }

    /// Lets the vCPUs run.
    pub fn resume(&mut self) -> Result<()> {
        if let Some(r) = &self.remote {
            logging::step("Resume the DUT (on the lab)", || r.power("on"))?;
            self.power = PowerState::Running;
            return Ok(());
        }
        let first = self.resumed_at.is_none();
        let before = std::time::SystemTime::now();
        logging::step("Resume the DUT", || self.qmp()?.cont())?;
        self.power = PowerState::Running;
        self.resumed_at = Some(Instant::now());
        if first {
            // The virtual clock starts between sending `cont` and its reply.
            let after = std::time::SystemTime::now();
            let wall = |t: std::time::SystemTime| {
                t.duration_since(std::time::UNIX_EPOCH)
                    .map_or(0.0, |d| d.as_secs_f64())
            };
            let resumed = (wall(before) + wall(after)) / 2.0;
            self.capture_offset = self
                .measure_capture_offset(resumed)
                .map(|o| o - self.virtual_clock_base);
            if let Some(o) = self.capture_offset {
                log::debug!(target: "alpy::testbed", "capture time stamps + {o:.6} s = host time");
            }
        }
        Ok(())
    }

    /// Runs `f` as a logged step and records its duration as `phase` in the
    /// timings; any error type passes through.
    pub fn timed<T, E: std::fmt::Display>(
        &mut self,
        phase: &str,
        f: impl FnOnce(&mut Self) -> std::result::Result<T, E>,
    ) -> std::result::Result<T, E> {
        let t0 = Instant::now();
        let step = Step::start(phase.to_string());
        let r = f(self);
        match &r {
            Ok(_) => drop(step.done()),
            Err(e) => drop(step.failed(e)),
        }
        self.timings.record(phase, t0.elapsed());
        r
    }

    /// Spawns a thread that belongs to this bed: what it logs goes to the
    /// bed's `debug.log` (and to no other bed's). Nodes' calls log to their
    /// bed from any thread; use this for a test's own threads that log
    /// about the bed.
    ///
    /// ```no_run
    /// # fn f(bed: &alpy::TestBed) {
    /// let h = bed.spawn(|| log::info!("load generator started"));
    /// h.join().unwrap();
    /// # }
    /// ```
    pub fn spawn<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> std::thread::JoinHandle<T> {
        crate::logging::spawn_in(self._log_sink.as_ref().and_then(|s| s.scope()), f)
    }

    /// Records a duration the test measured itself (config → route, say)
    /// as phase `name` in `timings.json`, beside the ones alpy and
    /// [`TestBed::timed`] record.
    ///
    /// ```no_run
    /// # fn f(bed: &mut alpy::TestBed) {
    /// let t0 = std::time::Instant::now();
    /// // ... change the config, wait for the route ...
    /// bed.record("converge", t0.elapsed());
    /// # }
    /// ```
    pub fn record(&mut self, name: &str, took: Duration) {
        self.timings.record(name, took);
    }

    /// Notes a measured value (a frame count, a rate) as `name`: written
    /// to `timings.json` under `"notes"`.
    pub fn note(&mut self, name: &str, value: f64) {
        log::info!(target: "alpy::testbed", "note {name} = {value}");
        self.timings.note(name, value);
    }

    /// The phase durations so far (written to `timings.json` on close).
    pub fn timings(&self) -> &Timings {
        &self.timings
    }

    /// Powers the guest off (as configured) and waits for QEMU's SHUTDOWN
    /// event and exit.
    pub fn shutdown(&mut self, timeout: Duration) -> Result<()> {
        if self.remote.is_some() {
            self.timed("shutdown", |bed| bed.remote_shutdown(timeout))?;
            self.power = PowerState::Off;
            return Ok(());
        }
        let how = self.poweroff.clone();
        self.timed("shutdown", |bed| -> Result<()> {
            match &how {
                PowerOff::Console(cmd) => bed.console()?.send_line(cmd)?,
                PowerOff::AcpiButton => bed.qmp()?.system_powerdown()?,
            }
            let tail = bed.console.as_ref().map(|c| c.tail()).unwrap_or_default();
            bed.qmp()?
                .wait_event("SHUTDOWN", timeout)
                .map_err(|e| match e {
                    Error::Timeout { what, timeout, .. } => Error::Timeout {
                        what,
                        timeout,
                        tail,
                    },
                    e => e,
                })?;
            let status = bed.qemu_mut()?.wait_exit(timeout)?;
            if !status.success() {
                return Err(Error::Qemu(format!(
                    "QEMU ended badly after power-off: {}",
                    crate::vm::qemu_process::describe_exit(&status)
                )));
            }
            bed.power = PowerState::Off;
            Ok(())
        })
    }

    /// Tears everything down in reverse order, writes `timings.json`, and
    /// returns the first error. Artifacts stay.
    pub fn close(mut self) -> Result<()> {
        self.closed = true;
        let kept = crate::bed::keep::wanted(false)
            .then(|| crate::bed::keep::keep(&mut self))
            .flatten();
        let r = self.teardown();
        if let Some(k) = kept {
            k.withdraw();
        }
        if let Err(e) = &r {
            eprintln!(
                "alpy: test bed {} failed to close ({e}); artifacts: {}",
                self.name,
                self.artifacts.display()
            );
        }
        r
    }

    /// [`TestBed::close`], then what is left of the run (containers,
    /// processes, host links, temporary files): a report to assert on.
    ///
    /// ```no_run
    /// # fn main() -> alpy::Result<()> {
    /// # let bed: alpy::TestBed = todo!();
    /// let left = bed.close_checked()?;
    /// assert!(left.is_empty(), "{left}");
    /// # Ok(()) }
    /// ```
    pub fn close_checked(self) -> Result<crate::bed::leftovers::Leftovers> {
        let run = self.run.clone();
        self.close()?;
        crate::bed::leftovers::leftovers(&run)
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
        self.shell = None;
        if let Some(c) = self.console.take() {
            keep(c.close());
        }
        if let Some(q) = self.qemu.take() {
            keep(q.close());
        }
        if let Some(n) = self.nodes.take() {
            keep(n.close());
        }
        if let Some(r) = self.remote.take() {
            keep(r.close());
        }
        match &first {
            None => drop(step.done()),
            Some(e) => drop(step.failed(e)),
        }
        self.timings.record("close", t0.elapsed());
        let path = self.artifacts.join("timings.json");
        if let Err(e) = std::fs::write(&path, format!("{:#}\n", self.timings.to_json())) {
            log::warn!(target: "alpy::testbed", "write {}: {e}", path.display());
        }
        self._log_sink = None;
        self.dir_lock = None;
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
            let kept = crate::bed::keep::wanted(true)
                .then(|| crate::bed::keep::keep(self))
                .flatten();
            let _ = self.teardown();
            if let Some(k) = kept {
                k.withdraw();
            }
            eprintln!(
                "alpy: test bed {} was not closed (test failed?); artifacts: {}",
                self.name,
                self.artifacts.display()
            );
        }
    }
}
