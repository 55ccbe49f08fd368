//! A test bed's link captures: read live, with host time stamps.

use crate::bed::testbed::TestBed;
use crate::error::Result;
use crate::pcap::Capture;

impl TestBed {
    /// Link `i`'s capture as far as it goes now, with host time stamps.
    ///
    /// QEMU's `filter-dump` writes every frame to the file as it passes (no
    /// buffering), so a capture read while the bed runs has every frame up
    /// to the call, and one read after [`TestBed::shutdown`] has all. Time
    /// stamps are moved by [`TestBed::capture_offset`], so they compare with
    /// `SystemTime::now()` taken around the traffic (to within a few ms),
    /// as long as the DUT ran without pause since [`TestBed::resume`].
    pub fn capture(&self, i: usize) -> Result<Capture> {
        if let Some(cap) = self.remote_capture(i)? {
            return Ok(cap);
        }
        self.nodes()?.node(i)?;
        let cap = Capture::open(&self.pcap_path(i))?;
        Ok(cap.shifted(self.capture_offset.unwrap_or(0.0)))
    }

    /// What to add to the time stamps in the raw `linkN.pcap` files to get
    /// host time (seconds; `None` before [`TestBed::resume`]). It is also in
    /// `debug.log`, for reading the files with other tools.
    pub fn capture_offset(&self) -> Option<f64> {
        self.capture_offset
    }

    /// QEMU stamps frames with the whole second of wall time at which it
    /// set up the capture (the file's first write: its header) plus the
    /// virtual clock, which starts at zero when the vCPUs first run.
    pub(crate) fn measure_capture_offset(&self, resumed_wall: f64) -> Option<f64> {
        let meta = std::fs::metadata(self.pcap_path(0)).ok()?;
        let created = meta
            .modified()
            .ok()?
            .duration_since(std::time::UNIX_EPOCH)
            .ok()?;
        let start_ts = created.as_secs() as f64;
        Some(resumed_wall - start_ts)
    }
}
