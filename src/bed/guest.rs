//! What a test does with the DUT as a guest: wait for its prompt, boot it
//! (log in), its shell, its links as the guest sees them, its clock.

use std::time::Duration;

use crate::bed::testbed::TestBed;
use crate::commands::Commands;
use crate::error::{Error, Result};
use crate::logging;
use crate::vm::remote_shell::RemoteShell;

impl TestBed {
    /// Waits for `prompt` on the DUT's console and records the `boot`
    /// phase (resume to prompt).
    pub fn wait_prompt(&mut self, prompt: &str, timeout: Duration) -> Result<()> {
        self.dut_mut()?.wait_prompt(prompt, timeout)
    }

    /// Resumes every machine and brings each to its shell: logs in as the
    /// builder's [`crate::TestBedBuilder::login`] says, or waits for its
    /// [`crate::TestBedBuilder::prompt`]. Machines boot in parallel; the
    /// error names the first that failed.
    pub fn boot(&mut self, timeout: Duration) -> Result<()> {
        if self.is_remote() {
            return Ok(()); // the lab booted it and logged in
        }
        logging::each_at_once(self.machines.iter_mut(), "a machine's boot", |m| {
            m.boot(timeout)
        })
        .into_iter()
        .collect()
    }

    /// The DUT's shell: attached on first use (echo off, a private prompt),
    /// then kept, so each call costs nothing. Boot first ([`TestBed::boot`]).
    ///
    /// ```no_run
    /// use alpy::Commands;
    /// # fn f(bed: &mut alpy::TestBed) -> alpy::Result<()> {
    /// let sh = bed.shell()?;
    /// sh.succeed("ip addr add 192.168.1.1/24 dev eth0")?;
    /// let routes = sh.succeed("ip route")?;
    /// sh.wait_until_succeeds("ping -c1 -W1 192.168.1.2", std::time::Duration::from_secs(10))?;
    /// # Ok(()) }
    /// ```
    pub fn shell(&mut self) -> Result<RemoteShell<'_>> {
        self.dut_mut()?.shell()
    }

    /// Sets the DUT's side of link `i` up or down (QMP `set_link` on the
    /// NIC `nic<i>`; the guest sees the carrier change).
    pub fn set_dut_link(&mut self, i: usize, up: bool) -> Result<()> {
        self.nodes()?.node(i)?;
        let args = serde_json::json!({ "name": format!("nic{i}"), "up": up });
        self.qmp_execute("set_link", Some(args)).map(drop)
    }

    /// Sets the guest's clock to the host's (`date -u -s @SECONDS` in the
    /// DUT shell). A restored DUT's clock is the clock of its save; call
    /// this where a test needs the real time in the guest.
    pub fn sync_guest_clock(&mut self) -> Result<()> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_err(|e| Error::Internal(format!("the host clock is before 1970: {e}")))?;
        self.shell()?
            .succeed(&format!("date -u -s @{} >/dev/null", now.as_secs()))
            .map(drop)
    }
}
