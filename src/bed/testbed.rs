//! The test bed: one call stands up the DUT and its links in the right
//! order, and `close()` takes everything down again, keeping the artifacts.
//!
//! Order (see `docs/ARCHITECTURE.md`): reap stale runs beside creating the
//! node containers (with their watchdog), taps inside them, QEMU paused with
//! one tap and one pcap per link, QMP, console; then the test starts its
//! apps and calls [`TestBed::resume`] (or [`TestBed::boot`]). Closing goes
//! in reverse: console, QEMU, nodes.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::addr::Mac;
use crate::bed::builder::TestBedBuilder;
use crate::bed::closing::Closing;
use crate::bed::machine::{Machine, MachineKind, MachineNic, MachineSpec, NicKind};
use crate::bed::timings::{Timings, TimingsLog};
use crate::bed::warm::WarmStart;
use crate::bed::wiring::{Far, Plan, Wiring};
use crate::error::{Error, Result};
use crate::logging::{SinkGuard, Step};
use crate::net::link::{default_mac, fixed_mac};
use crate::net::{Node, Nodes};
use crate::run::RunId;
use crate::vm::console::Console;
use crate::vm::qmp::Qmp;

/// A running test bed: its machines (the first is the DUT), nodes,
/// segments, artifacts.
pub struct TestBed {
    pub(crate) name: String,
    pub(crate) run: RunId,
    pub(crate) artifacts: PathBuf,
    /// The first is the DUT, which the bed's own verbs address.
    pub(crate) machines: Vec<Machine>,
    pub(crate) nodes: Option<Nodes>,
    pub(crate) wiring: Option<Wiring>,
    pub(crate) timings: TimingsLog,
    /// Warm start: the DUT paused at its ready point until `boot()`.
    pub(crate) warm: Option<WarmStart>,
    /// Apps the bed closes before its machines and nodes (a topology
    /// file's background apps).
    pub(crate) apps: Vec<crate::net::Container>,
    /// Each link's gateway as its node sees it (the DUT, usually).
    pub(crate) link_gateways: Vec<Option<std::net::IpAddr>>,
    /// Each link's machine NIC (machine index, NIC), if its node is on
    /// one (not on a segment).
    pub(crate) link_nics: Vec<Option<(usize, usize)>>,
    pub(crate) _log_sink: Option<SinkGuard>,
    /// The artifacts directory is this bed's while this is held.
    pub(crate) dir_lock: Option<nix::fcntl::Flock<std::fs::File>>,
    pub(crate) closed: bool,
    /// `events.jsonl`, closed with the result at teardown.
    pub(crate) journal: Option<crate::journal::Journal>,
    /// The environment's settings, read when the builder was made.
    pub(crate) settings: crate::settings::Settings,
}

impl TestBed {
    pub(crate) fn new(
        name: String,
        run: RunId,
        artifacts: PathBuf,
        log_sink: SinkGuard,
        b: &TestBedBuilder,
        specs: &[MachineSpec],
        plan: &Plan,
    ) -> TestBed {
        let timings = TimingsLog::default();
        let machines = specs
            .iter()
            .zip(&plan.nics)
            .enumerate()
            .map(|(m, (spec, fars))| {
                let dut_files = spec.name == "dut";
                let nics = fars
                    .iter()
                    .enumerate()
                    .map(|(n, far)| {
                        let kind = match &spec.kind {
                            // The plan checked that the board has port n.
                            MachineKind::Board(board) => NicKind::Port(board.ports[n].clone()),
                            MachineKind::Vm(_) => NicKind::Vm {
                                choices: match far {
                                    Far::Node(i) => b.links[*i].dut_nic.clone(),
                                    Far::Segment(_) => Default::default(),
                                },
                                mac: machine_mac(&run, m, n, b.warm.is_some()),
                            },
                        };
                        let pcap = artifacts.join(capture_file(&spec.name, n));
                        MachineNic { kind, pcap }
                    })
                    .collect();
                let timings = if dut_files {
                    timings.clone()
                } else {
                    timings.for_machine(&spec.name)
                };
                Machine::new(spec, nics, b, &name, &artifacts, timings)
            })
            .collect();
        TestBed {
            name,
            run,
            artifacts,
            machines,
            nodes: None,
            wiring: None,
            timings,
            warm: b.warm.clone(),
            apps: Vec::new(),
            link_gateways: b.links.iter().map(|l| l.gateway.or(l.gateway6)).collect(),
            link_nics: (0..b.links.len())
                .map(|i| {
                    plan.nics.iter().enumerate().find_map(|(m, fars)| {
                        let n = fars.iter().position(|f| *f == Far::Node(i))?;
                        Some((m, n))
                    })
                })
                .collect(),
            _log_sink: Some(log_sink),
            dir_lock: None,
            closed: false,
            journal: None,
            settings: b.settings.clone(),
        }
    }

    /// Tears down what a failed start made (`why`).
    pub(crate) fn abandon(&mut self, why: &Error) {
        let _ = self.teardown(Closing::Abandon(why.to_string()));
        self.closed = true;
    }

    /// The DUT: the bed's first machine.
    pub(crate) fn dut_ref(&self) -> Result<&Machine> {
        self.machines
            .first()
            .ok_or_else(|| Error::Internal(format!("test bed {} has no machine", self.name)))
    }

    pub(crate) fn dut_mut(&mut self) -> Result<&mut Machine> {
        let name = &self.name;
        self.machines
            .first_mut()
            .ok_or_else(|| Error::Internal(format!("test bed {name} has no machine")))
    }

    /// The machine named `name`; [`Error::NotFound`] naming the machines
    /// there are.
    ///
    /// ```no_run
    /// use alpy::Commands;
    /// # fn f(bed: &mut alpy::TestBed) -> alpy::Result<()> {
    /// bed.machine("r2")?.shell()?.succeed("ip route")?;
    /// # Ok(()) }
    /// ```
    pub fn machine(&mut self, name: &str) -> Result<&mut Machine> {
        let names = self.machine_names().join(", ");
        let bed = &self.name;
        self.machines
            .iter_mut()
            .find(|m| m.name == name)
            .ok_or_else(|| Error::NotFound {
                what: format!("machine {name:?} of test bed {bed}"),
                hint: format!("its machines are {names}"),
            })
    }

    /// The machines, the DUT first.
    pub fn machines(&self) -> &[Machine] {
        &self.machines
    }

    /// The machines' names, the DUT first.
    pub fn machine_names(&self) -> Vec<String> {
        self.machines.iter().map(|m| m.name.clone()).collect()
    }

    /// The bed's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The run id that names everything of this test bed.
    pub fn run_id(&self) -> &RunId {
        &self.run
    }

    /// The DUT's QEMU PID, while it runs.
    pub fn qemu_pid(&self) -> Option<i32> {
        self.machines.first().and_then(Machine::qemu_pid)
    }

    /// The DUT's exact QEMU command line, shell-quoted (it is also in
    /// `debug.log`).
    pub fn qemu_command(&self) -> Option<&str> {
        self.machines.first().and_then(Machine::qemu_command)
    }

    /// The artifacts directory.
    pub fn artifacts_dir(&self) -> &Path {
        &self.artifacts
    }

    /// The capture file of the machine NIC link `i`'s node is on
    /// (`linkN.pcap` in a one-machine bed); `None` if that node is on a
    /// segment (each machine NIC there has its own:
    /// [`Machine::pcap_path`]).
    pub fn pcap_path(&self, i: usize) -> Option<PathBuf> {
        let (m, nic) = self.link_nics.get(i).copied().flatten()?;
        let path = self.machines.get(m)?.pcap_path(nic).ok()?;
        Some(path.to_path_buf())
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

    /// The apps the bed started itself and closes with it: a topology
    /// file's background apps (`background = true`), in link order.
    pub fn apps(&self) -> &[crate::net::Container] {
        &self.apps
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

    /// The MAC of the machine NIC on link `i` (the DUT's NIC `i` in a
    /// one-machine bed; for a node on a segment, the DUT's NIC `i`). A
    /// board's MACs are its own and alpy does not know them: for a board
    /// this is the MAC a VM would have had there ([`Machine::mac`] says
    /// so with an error).
    pub fn dut_mac(&self, i: usize) -> Mac {
        let (m, nic) = self.link_nics.get(i).copied().flatten().unwrap_or((0, i));
        self.machines
            .get(m)
            .and_then(|machine| machine.mac(nic).ok())
            .unwrap_or_else(|| machine_mac(&self.run, m, nic, self.warm.is_some()))
    }

    /// The serial console.
    pub fn console(&mut self) -> Result<&mut Console> {
        self.dut_mut()?.console()
    }

    /// The QMP session. A bed on a lab server has none here: use
    /// [`TestBed::qmp_execute`], which works on both.
    pub fn qmp(&mut self) -> Result<&mut Qmp> {
        self.dut_mut()?.qmp()
    }

    /// Lets the DUT's vCPUs run.
    pub fn resume(&mut self) -> Result<()> {
        self.dut_mut()?.resume()
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

    /// The phase durations so far (written to `timings.json` on close);
    /// machines other than the DUT record theirs as `"<machine>: <phase>"`.
    pub fn timings(&self) -> Timings {
        self.timings.snapshot()
    }

    /// Powers the DUT off (as configured) and waits for QEMU's SHUTDOWN
    /// event and exit.
    pub fn shutdown(&mut self, timeout: Duration) -> Result<()> {
        self.dut_mut()?.shutdown(timeout)
    }

    /// Tears everything down in reverse order, writes `timings.json`, and
    /// returns the first error. Artifacts stay.
    pub fn close(mut self) -> Result<()> {
        self.closed = true;
        let kept = crate::supervisor::keep::wanted(false, &self.settings)
            .then(|| crate::supervisor::keep::keep(&mut self))
            .flatten();
        let r = self.teardown(Closing::Close);
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

    fn teardown(&mut self, how: Closing) -> Result<()> {
        // This bed's events, even from a thread whose innermost bed is
        // another.
        let _scope =
            crate::logging::enter_for_call(self._log_sink.as_ref().and_then(|s| s.scope()));
        let t0 = Instant::now();
        let step = Step::start(format!("Close test bed {}", self.name));
        let mut first: Option<Error> = None;
        let mut keep = |r: Result<()>| {
            if let Err(e) = r {
                log::error!(target: "alpy::testbed", "close: {e}");
                first.get_or_insert(e);
            }
        };
        for app in self.apps.drain(..) {
            keep(app.close());
        }
        for m in &mut self.machines {
            keep(m.close());
        }
        if let Some(w) = self.wiring.take() {
            keep(w.close());
        }
        if let Some(n) = self.nodes.take() {
            keep(n.close());
        }
        match &first {
            None => drop(step.done()),
            Some(e) => drop(step.failed(e)),
        }
        self.timings.record("close", t0.elapsed());
        let path = self.artifacts.join("timings.json");
        if let Err(e) = std::fs::write(&path, format!("{:#}\n", self.timings().to_json())) {
            log::warn!(target: "alpy::testbed", "write {}: {e}", path.display());
        }
        self.finish_report(&how, first.as_ref());
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
            let kept = crate::supervisor::keep::wanted(true, &self.settings)
                .then(|| crate::supervisor::keep::keep(self))
                .flatten();
            let _ = self.teardown(Closing::Drop);
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

/// The capture file of machine `machine`'s NIC `nic` in the artifacts:
/// `link<nic>.pcap` for a machine named `dut` (a one-machine bed's, as
/// always), `<machine>-nic<nic>.pcap` for the others.
pub(crate) fn capture_file(machine: &str, nic: usize) -> String {
    if machine == "dut" {
        format!("link{nic}.pcap")
    } else {
        format!("{machine}-nic{nic}.pcap")
    }
}

/// The MAC of machine `m`'s NIC `nic`: the DUT's as one-machine beds
/// always had them (by run, or fixed for warm start), the others' with
/// `52:56` and the machine's index, so no two NICs of a bed share one.
pub(crate) fn machine_mac(run: &RunId, m: usize, nic: usize, fixed: bool) -> Mac {
    let dut = if fixed {
        fixed_mac(nic, true)
    } else {
        default_mac(run, nic, true)
    };
    if m == 0 {
        return dut;
    }
    let b = dut.0;
    Mac([0x52, 0x56, b[2], b[3], m as u8, b[5]])
}
