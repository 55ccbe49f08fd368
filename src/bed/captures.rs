//! A test bed's link captures: read live, with host time stamps.

use crate::bed::testbed::TestBed;
use crate::error::Result;
use crate::pcap::Capture;

impl TestBed {
    /// The capture of the DUT's NIC `i` (link `i` of a one-machine bed) as
    /// far as it goes now, with host time stamps. Other machines' NICs:
    /// [`crate::bed::machine::Machine::capture`].
    ///
    /// QEMU's `filter-dump` writes every frame to the file as it passes (no
    /// buffering), so a capture read while the bed runs has every frame up
    /// to the call, and one read after [`TestBed::shutdown`] has all. Time
    /// stamps are moved by [`TestBed::capture_offset`], so they compare with
    /// `SystemTime::now()` taken around the traffic (to within a few ms),
    /// as long as the DUT ran without pause since [`TestBed::resume`].
    pub fn capture(&self, i: usize) -> Result<Capture> {
        self.dut_ref()?.capture(i)
    }

    /// What to add to the time stamps in the raw `linkN.pcap` files to get
    /// host time (seconds; `None` before [`TestBed::resume`]). It is also in
    /// `debug.log`, for reading the files with other tools.
    pub fn capture_offset(&self) -> Option<f64> {
        self.machines.first().and_then(|m| m.capture_offset)
    }
}
