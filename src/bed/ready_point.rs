//! A warm-start snapshot's ready point is more than the preparation's end:
//! a restored appliance must have its links up. Many appliances print
//! their prompt before their NICs finish negotiating; a snapshot taken
//! then restores with links still down, and the first frames of a test
//! are lost. Before the save, each link must have carried a frame from
//! the DUT (its node pings its gateway, when it has one, to ask for one);
//! [`WarmStart::ready_when`] replaces that check with the test's own.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::bed::testbed::TestBed;
use crate::bed::warm::WarmStart;
use crate::commands::Commands;
use crate::error::Result;
use crate::pcap::Filter;

/// How long the generic check waits for all links together.
pub const LINKS_UP_TIMEOUT: Duration = Duration::from_secs(30);
/// The least time each link gets, however long the links before it took.
pub const MIN_PER_LINK: Duration = Duration::from_secs(3);

impl TestBed {
    /// The check before a snapshot's save: the warm start's own, or that
    /// every link is up.
    pub(crate) fn reach_ready_point(&mut self, w: &WarmStart) -> Result<()> {
        match w.ready.clone() {
            Some(check) => self.timed("ready check", |bed| check(bed)),
            None => self.timed("links up", |bed| bed.wait_links_up(LINKS_UP_TIMEOUT)),
        }
    }

    /// Waits until each link's capture holds a frame from the DUT: with a
    /// gateway, one newer than the check (a frame from the boot may come
    /// before the appliance reconfigures its links), asked for by a ping;
    /// without one, any frame (nothing can ask for one). A link that stays
    /// silent is not an error (a guest may have nothing to say there): it
    /// is named in a warning, with what to do about it. All links share
    /// `timeout`, but each gets at least [`MIN_PER_LINK`].
    fn wait_links_up(&self, timeout: Duration) -> Result<()> {
        let t0 = Instant::now();
        let mut silent = Vec::new();
        let nics = self.dut_ref()?.nic_count();
        for i in 0..nics {
            // The DUT's NIC i and the node at its far side; a NIC on a
            // segment has none of its own to ask for a frame.
            let Some(n) = self.wiring.as_ref().and_then(|w| w.node_of(0, i)) else {
                log::debug!(target: "alpy::warm", "NIC {i} is on a segment: no links-up check");
                continue;
            };
            let from_dut = Filter::new().src_mac(self.dut_mac(i));
            let gateway: Option<IpAddr> = self.link_gateways.get(n).copied().flatten();
            let node = self.nodes()?.node(n)?;
            let before = match gateway {
                Some(_) => self.capture(i)?.count(&from_dut),
                None => 0,
            };
            let heard_now = || -> Result<bool> { Ok(self.capture(i)?.count(&from_dut) > before) };
            let window = timeout.saturating_sub(t0.elapsed()).max(MIN_PER_LINK);
            let heard =
                crate::wait::Wait::new(format!("link {i} to carry a frame from the DUT"), window)
                    .every(Duration::from_millis(100))
                    .until(|| {
                        if heard_now()? {
                            return Ok(());
                        }
                        if let Some(g) = gateway {
                            // An answer is a frame from the DUT.
                            let _ = node.execute_within(
                                &format!("ping -c 1 -W 1 {g}"),
                                Duration::from_secs(3),
                            );
                            if heard_now()? {
                                return Ok(());
                            }
                        }
                        Err(crate::Error::NotFound {
                            what: format!("a frame from the DUT on link {i}"),
                            hint: "not yet".into(),
                        })
                    });
            match heard {
                Ok(()) => {
                    log::debug!(target: "alpy::warm", "link {i} is up: it carried a frame from the DUT")
                }
                Err(e) => {
                    log::debug!(target: "alpy::warm", "link {i}: {e}");
                    silent.push(i);
                }
            }
        }
        if !silent.is_empty() {
            log::warn!(target: "alpy::warm",
                "warm start: link(s) {silent:?} carried no frame from the DUT within {timeout:?} before \
                 the save; if the guest's links come up late, restored beds lose their first frames. \
                 Give the links a gateway the DUT answers, or state the ready point with \
                 WarmStart::ready_when(..)");
        }
        Ok(())
    }
}
