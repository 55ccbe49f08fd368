//! Warm start: boot a DUT once, save it at its *ready point* (after boot
//! and a preparation step), and restore every later test bed of the same
//! configuration from there in a fraction of a second.
//!
//! A snapshot lives in `$ALPY_CACHE/warm/<key>/`: `state` (QEMU's migration
//! stream), `diskN.qcow2` (the writes up to the ready point, over the
//! read-only base images), `OVMF_VARS.fd` for UEFI guests, and `meta.json`.
//! The key hashes everything that shapes the guest's state and nothing
//! else: kernel, initrd, disk and firmware contents, the kernel command
//! line, machine, memory, vCPUs, NIC count, models and MACs, QEMU's version,
//! the accelerator (and with it `-cpu`), extra arguments, and the caller's
//! version string for the preparation step.
//!
//! Snapshots are built in a temporary directory and renamed into place, so
//! a save killed half-way leaves nothing that looks like a snapshot. One
//! process builds a missing snapshot while others wait on its lock file.
//! The cache is kept under `ALPY_WARM_MAX_MB` (default 4096) by removing the
//! least recently used snapshots; `ALPY_WARM=off` boots cold every time.

use std::sync::Arc;
use std::time::Duration;

use crate::bed::testbed::TestBed;
use crate::error::Result;

mod store;
pub use store::{file_hash, key, qemu_version, BuildLock, Key, Meta, Pending, Snapshot, Store};

/// The preparation a snapshot is taken after.
pub type Prepare = dyn Fn(&mut TestBed) -> Result<()> + Send + Sync;

/// One machine's preparation, in a bed of several
/// ([`WarmStart::per_machine`]).
pub type MachinePrepare = dyn Fn(&mut crate::Machine) -> Result<()> + Send + Sync;

/// What runs between the cold boot and the save.
#[derive(Clone)]
pub(crate) enum Preparation {
    /// The bed's DUT, prepared through the bed (one machine).
    Bed(Arc<Prepare>),
    /// Each machine on its own, so each has its own snapshot: changing
    /// one machine rebuilds only its own.
    EachMachine(Arc<MachinePrepare>),
}
/// What makes a test bed start warm: a version string for the preparation
/// step (change it when the preparation changes) and the preparation,
/// which runs on a booted DUT (after [`TestBed::boot`]) before the save.
///
/// ```no_run
/// use std::time::Duration;
/// use alpy::WarmStart;
/// use alpy::Commands;
/// # fn f(b: alpy::TestBedBuilder) -> alpy::Result<()> {
/// let mut bed = b
///     .warm_start(WarmStart::new("addresses-v1", |bed| {
///         bed.shell()?.succeed("ip addr add 192.168.1.1/24 dev eth0").map(drop)
///     }))
///     .start()?; // restored at the ready point (built on first use), paused
/// bed.boot(Duration::from_secs(60))?; // resumes
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct WarmStart {
    pub(crate) version: String,
    pub(crate) prepare: Preparation,
    /// The ready point's check before the save; `None`: every link up
    /// (see [`crate::bed::ready_point`]).
    pub(crate) ready: Option<Arc<Prepare>>,
    pub(crate) boot_timeout: Duration,
}

impl WarmStart {
    /// A warm start for a bed of several machines (or one): each machine
    /// is booted, prepared by `prepare` and saved on its own, with its own
    /// snapshot (its key has the machine's name and configuration), and
    /// the machines of a bed restore in parallel. Changing one machine
    /// rebuilds only that machine's snapshot. The ready point is
    /// `prepare`'s end (no links-up check: `prepare` waits for what it
    /// needs).
    ///
    /// ```no_run
    /// use alpy::WarmStart;
    /// use alpy::Commands;
    /// # fn f(b: alpy::TestBedBuilder) -> alpy::Result<()> {
    /// let bed = b
    ///     .warm_start(WarmStart::per_machine("routes-v1", |m| {
    ///         let via = if m.name() == "r1" { "10.0.2.2" } else { "10.0.2.1" };
    ///         m.shell()?.succeed(&format!("ip route add default via {via}")).map(drop)
    ///     }))
    ///     .start()?; // every machine restored (or built), paused
    /// # Ok(()) }
    /// ```
    pub fn per_machine(
        version: &str,
        prepare: impl Fn(&mut crate::Machine) -> Result<()> + Send + Sync + 'static,
    ) -> WarmStart {
        WarmStart {
            version: version.to_string(),
            prepare: Preparation::EachMachine(Arc::new(prepare)),
            ready: None,
            boot_timeout: Duration::from_secs(300),
        }
    }

    /// Runs the preparation on a booted bed: the bed's, or each
    /// machine's in turn.
    pub(crate) fn prepare_bed(&self, bed: &mut TestBed) -> Result<()> {
        match &self.prepare {
            Preparation::Bed(f) => f(bed),
            Preparation::EachMachine(f) => {
                for m in bed.machines.iter_mut() {
                    f(m)?;
                }
                Ok(())
            }
        }
    }

    /// A warm start whose ready point is `prepare`'s end.
    pub fn new(
        version: &str,
        prepare: impl Fn(&mut TestBed) -> Result<()> + Send + Sync + 'static,
    ) -> WarmStart {
        WarmStart {
            version: version.to_string(),
            prepare: Preparation::Bed(Arc::new(prepare)),
            ready: None,
            boot_timeout: Duration::from_secs(300),
        }
    }

    /// States the ready point's own check, run after the preparation and
    /// before the save, instead of the default (each link has carried a
    /// frame from the DUT, see [`crate::bed::ready_point`]). An error
    /// fails the snapshot's build.
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use alpy::WarmStart;
    /// use alpy::Commands;
    /// let w = WarmStart::new("ospf-v1", |bed| bed.shell()?.succeed("start-ospf").map(drop))
    ///     .ready_when(|bed| {
    ///         bed.shell()?
    ///             .wait_until_succeeds("ospf-neighbors | grep -q Full", Duration::from_secs(60))
    ///             .map(drop)
    ///     });
    /// ```
    pub fn ready_when(
        mut self,
        check: impl Fn(&mut TestBed) -> Result<()> + Send + Sync + 'static,
    ) -> WarmStart {
        self.ready = Some(Arc::new(check));
        self
    }

    /// How long the cold boot that builds the snapshot may take (300 s).
    pub fn boot_timeout(mut self, t: Duration) -> WarmStart {
        self.boot_timeout = t;
        self
    }
}

impl std::fmt::Debug for WarmStart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WarmStart")
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}
