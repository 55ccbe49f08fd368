//! A [`TestBed`] on a lab server. With `REMOTE_LAB_URL` set,
//! [`crate::TestBedBuilder::start`] writes its builder as a topology file,
//! names the files it boots by the lab store's entries, waits in the
//! lab's queue (logging its place) and has the lab stand the bed up and
//! log in. The bed it returns has the same API: its console is the expect
//! engine over the lab's WebSocket, its nodes run commands and apps
//! through the lab, its captures are downloaded into the artifacts, QMP
//! and power go through the lab. A warm start's preparation runs here,
//! once the lab is up. Closing destroys the lab (a test's lab is never
//! shared) and ends the session.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::bed::builder::{PowerOff, TestBedBuilder};
use crate::bed::dut::Dut;
use crate::bed::machine::{Machine, Runs};
use crate::bed::remote::topology_out::builder_topology;
use crate::bed::remote::wire::BoardRequest;
use crate::bed::remote::LabClient;
use crate::bed::testbed::TestBed;
use crate::error::{Error, Result};
use crate::logging;
use crate::net::Nodes;

/// How long a bed waits in the lab's queue, unless `REMOTE_LAB_WAIT`
/// (seconds) says otherwise.
const QUEUE_TIMEOUT: Duration = Duration::from_secs(1800);

fn queue_timeout(settings: &crate::settings::Settings) -> Result<Duration> {
    match settings.lab_wait() {
        None => Ok(QUEUE_TIMEOUT),
        Some(v) => v.parse::<u64>().map(Duration::from_secs).map_err(|_| {
            Error::Config(format!(
                "REMOTE_LAB_WAIT={v:?}: expected how many seconds to wait in the lab's queue"
            ))
        }),
    }
}

impl TestBed {
    /// Stands the bed up on the lab server `client` has a session on.
    pub(crate) fn stand_up_remote(
        &mut self,
        b: &TestBedBuilder,
        dut: &Dut,
        board: Option<&BoardRequest>,
        client: LabClient,
    ) -> Result<()> {
        let url = client.url.clone();
        let mut t = builder_topology(b, dut, board)?;
        let origin = format!("test bed {}", self.name);
        client.to_store_names(&mut t, &origin, |s| Ok(PathBuf::from(s)))?;
        let text = toml::to_string(&t)
            .map_err(|e| Error::Internal(format!("encode the topology of {origin}: {e}")))?;
        let sent = self.artifacts.join("topology.toml");
        if let Err(e) = std::fs::write(&sent, &text) {
            log::warn!(target: "alpy::lab", "write {}: {e}", sent.display());
        }
        log::info!(target: "alpy::lab", "test bed {} runs on the lab at {url} (REMOTE_LAB_URL); its topology is in {}", self.name, sent.display());
        let wait = queue_timeout(&self.settings)?;
        let t0 = Instant::now();
        let remote = logging::step(format!("Acquire a lab at {url}"), || {
            client.acquire_lab(&text, wait, false, Some(self.artifacts.clone()))
        })?;
        self.timings.record("lab", t0.elapsed());
        if let Some(name) = remote.board() {
            log::info!(target: "alpy::lab", "test bed {}: its DUT is the lab's board {name}", self.name);
        }
        self.nodes = Some(Nodes::remote(&b.links, remote.node_service()?));
        // Stamps and MACs are the lab's bed's, not ones derived here.
        let offset = remote.capture_offset();
        let dut = self.dut_mut()?;
        dut.runs = Runs::Lab(Box::new(remote));
        dut.capture_offset = offset;
        dut.resumed_at = Some(Instant::now());
        dut.power = crate::bed::state::PowerState::Running;
        let timeout = dut.console_timeout;
        self.console()?.set_timeout(timeout);
        if let Some(w) = self.warm.clone() {
            // The lab booted the DUT and logged in; the ready point is
            // reached here.
            self.timed("prepare", |bed| w.prepare_bed(bed))?;
            self.dut_mut()?.warm_outcome = Some(crate::bed::state::WarmOutcome::Remote);
        }
        Ok(())
    }

    /// Whether the bed runs on a lab server (`REMOTE_LAB_URL`).
    pub fn is_remote(&self) -> bool {
        self.machines.first().is_some_and(Machine::is_on_lab)
    }

    /// A QMP command on the DUT's QEMU, here or on a lab server: its
    /// `return`.
    ///
    /// ```no_run
    /// # fn f(bed: &mut alpy::TestBed) -> alpy::Result<()> {
    /// let status = bed.qmp_execute("query-status", None)?;
    /// assert_eq!(status["status"], "running");
    /// # Ok(()) }
    /// ```
    pub fn qmp_execute(&mut self, command: &str, arguments: Option<Value>) -> Result<Value> {
        self.dut_mut()?.qmp_execute(command, arguments)
    }
}

impl Machine {
    /// Powers a machine on a lab off as configured and waits until its
    /// QEMU has stopped: QMP answers `shutdown`, or no longer answers (it
    /// exited).
    pub(crate) fn lab_power_off(&mut self, timeout: Duration) -> Result<()> {
        if let Runs::Lab(remote) = &self.runs {
            if let Some(board) = remote.board() {
                // The lab switches the board's port off and answers once
                // it is: a board has no ACPI button alpy can press.
                log::info!(target: "alpy::lab", "{}: switching board {board} off through the lab", self.label);
                return remote.power("off");
            }
        }
        match self.poweroff.clone() {
            PowerOff::Console(cmd) => self.console()?.send_line(&cmd)?,
            PowerOff::AcpiButton => self.qmp_execute("system_powerdown", None).map(drop)?,
        }
        let what = format!("{} to power off on the lab", self.label);
        let deadline = Instant::now() + timeout;
        loop {
            match self.qmp_execute("query-status", None) {
                Ok(v) if v["status"] == "shutdown" => return Ok(()),
                Ok(_) => {}
                // The lab refused the caller (a bad token, a session no
                // longer active): not a sign that QEMU went away. Other
                // answers (400 "QMP protocol: broken pipe", 404 "no lab")
                // are what a powered-off machine looks like from here.
                Err(
                    e @ Error::Lab {
                        status: Some(401 | 403 | 423),
                        ..
                    },
                ) => return Err(e),
                Err(e) => {
                    log::info!(target: "alpy::lab", "QMP no longer answers after power-off: {e}");
                    return Ok(());
                }
            }
            if Instant::now() >= deadline {
                return Err(Error::Timeout {
                    what,
                    timeout,
                    tail: self.console_tail(),
                });
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}
