//! # carrot: the library the Rabbit tests share
//!
//! Rabbit is alpy's example appliance (built by `rabbit/image/build`).
//! carrot starts a Rabbit test bed with N links, logs in on the console,
//! uploads and runs Rabbit's configuration scripts (`rabbit/config/`), and
//! starts traffic apps (iperf3, HTTP backends and clients) in the nodes.
//!
//! Link `i` joins Rabbit's `eth<i>` (192.168.<i+1>.1/24) and node `i`
//! (192.168.<i+1>.2/24, gateway Rabbit).
//!
//! Each configuration step names a *feature*; setting `RABBIT_SKIP` to a
//! comma-separated list of features skips those steps, so a test can be seen
//! to fail against a Rabbit that lacks what it tests.
#![warn(missing_docs)]

pub mod config;
pub mod image;
pub mod report;
pub mod traffic;

use std::time::Duration;

use alpy::remote_shell::RemoteShell;
use alpy::{Dut, Link, PowerOff, Result, TestBed};

pub use image::RabbitImage;
pub use report::{run, Report};

/// Rabbit's console prompt after login.
pub const PROMPT: &str = "rabbit# ";
/// Rabbit's root password.
pub const PASSWORD: &str = "rabbit";
/// How long Rabbit may take to boot (it takes about 8 s under TCG).
pub const BOOT_TIMEOUT: Duration = Duration::from_secs(120);

/// Rabbit's address on link `i`.
pub fn rabbit_addr(i: usize) -> String {
    format!("192.168.{}.1", i + 1)
}

/// Node `i`'s address.
pub fn node_addr(i: usize) -> String {
    format!("192.168.{}.2", i + 1)
}

/// A running Rabbit with its links.
pub struct Rabbit {
    bed: TestBed,
    links: usize,
}

impl Rabbit {
    /// Starts a Rabbit test bed with `links` links (paused), resumes it,
    /// waits for the login prompt, logs in and sets the link addresses.
    pub fn start(name: &str, links: usize) -> Result<Rabbit> {
        let img = RabbitImage::find()?;
        let mut b = TestBed::builder(name)
            .dut(
                Dut::kernel(&img.kernel, Some(img.initrd.clone()))
                    .append("console=ttyS0,115200 root=/dev/vda quiet panic=-1")
                    .disk(&img.disk, Some("qcow2"))
                    .nic_model(alpy::qemu::NicModel::VirtioNet)
                    .extra_arg("-no-reboot"),
            )
            .poweroff(PowerOff::AcpiButton)
            .console_timeout(Duration::from_secs(60));
        for i in 0..links {
            b = b.link(
                Link::new()
                    .node_addr(&format!("{}/24", node_addr(i)))
                    .gateway(&rabbit_addr(i)),
            );
        }
        let mut bed = b.start()?;
        bed.resume()?;
        bed.wait_prompt("rabbit login: ", BOOT_TIMEOUT)?;
        let mut rabbit = Rabbit { bed, links };
        rabbit.bed.timed("login", |bed| {
            let c = bed.console();
            c.send_line("root")?;
            c.exp_string("Password: ")?;
            c.send_line(PASSWORD)?;
            c.exp_string(PROMPT).map(drop)
        })?;
        let n = links.to_string();
        rabbit.configure("addresses", "addresses.sh", &[&n])?;
        Ok(rabbit)
    }

    /// The test bed underneath (nodes, console, QMP, artifacts).
    pub fn bed(&mut self) -> &mut TestBed {
        &mut self.bed
    }

    /// How many links.
    pub fn links(&self) -> usize {
        self.links
    }

    /// A remote shell on Rabbit's console.
    pub fn shell(&mut self) -> Result<RemoteShell<'_>> {
        let mut sh = RemoteShell::attach(self.bed.console())?;
        sh.set_timeout(Duration::from_secs(60));
        Ok(sh)
    }

    /// Runs configuration script `script` (from `rabbit/config/`) with
    /// `args`, unless `feature` is listed in `RABBIT_SKIP`. Returns its
    /// output, or `None` if skipped.
    pub fn configure(
        &mut self,
        feature: &str,
        script: &str,
        args: &[&str],
    ) -> Result<Option<String>> {
        if config::skipped(feature) {
            log::warn!(target: "carrot", "RABBIT_SKIP: not configuring {feature} ({script})");
            return Ok(None);
        }
        let text = config::script(script)?;
        let what = format!("Configure {feature} ({script} {})", args.join(" "));
        let out = self.bed.timed(&what, |bed| {
            let mut sh = RemoteShell::attach(bed.console())?;
            sh.set_timeout(Duration::from_secs(60));
            let out = sh.upload_and_run(text, args)?;
            if out.code != 0 {
                return Err(alpy::Error::CommandFailed {
                    what: format!("{script} on Rabbit"),
                    status: format!("exit code {}", out.code),
                    output: out.output,
                });
            }
            Ok(out.output)
        })?;
        Ok(Some(out))
    }

    /// Powers Rabbit off with the ACPI button, then closes the test bed.
    /// Returns the artifacts directory.
    pub fn finish(mut self) -> Result<std::path::PathBuf> {
        let dir = self.bed.artifacts_dir().to_path_buf();
        self.bed.shutdown(Duration::from_secs(60))?;
        self.bed.close()?;
        Ok(dir)
    }
}
