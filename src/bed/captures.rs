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

    /// QEMU stamps a frame with the second it set the capture up in (a
    /// whole second, from its own clock) plus the virtual clock, which
    /// stands at `virtual_clock_base` until the vCPUs run. Returned: that
    /// second, as an offset from `resumed_wall` (the caller takes
    /// `virtual_clock_base` off).
    ///
    /// A frame captured while the DUT was paused (relay links capture
    /// what nodes send before boot) carries that second exactly, whenever
    /// it was written, so the first frame of any link is used when there
    /// is one. Only with no frame yet does the file's time say when its
    /// header was written; it is read before the frames, so a frame
    /// written in between is seen and used instead.
    pub(crate) fn measure_capture_offset(&self, resumed_wall: f64) -> Option<f64> {
        let header_written = std::fs::metadata(self.pcap_path(0))
            .ok()?
            .modified()
            .ok()?
            .duration_since(std::time::UNIX_EPOCH)
            .ok()?
            .as_secs() as f64;
        let first_frame = (0..)
            .map(|i| self.pcap_path(i))
            .take_while(|p| p.exists())
            .filter_map(|p| Capture::open(&p).ok())
            .filter_map(|c| c.frames().first().map(|f| f.timestamp.as_secs_f64()))
            .reduce(f64::min);
        let start = match first_frame {
            Some(stamp) => {
                log::debug!(target: "alpy::testbed", "capture clock from a frame captured while paused ({stamp:.6})");
                stamp - self.virtual_clock_base
            }
            None => header_written,
        };
        Some(resumed_wall - start)
    }
}
