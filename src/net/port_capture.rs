//! A capture of one switch port, written as frames pass: pcap with host
//! time stamps (what a board's port has instead of QEMU's `filter-dump`).
//! Unbuffered, as QEMU's is: a reader sees each frame once it passed.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use pcap_file::pcap::{PcapPacket, PcapWriter};

use crate::error::{Error, Result};

/// A pcap file being written for one port, both ways.
pub struct PortCapture {
    path: PathBuf,
    writer: PcapWriter<File>,
    failed: bool,
}

impl PortCapture {
    /// Creates (or truncates) `path` and writes the pcap header.
    pub fn create(path: &Path) -> Result<PortCapture> {
        let file = File::create(path)
            .map_err(|e| Error::io(format!("create capture {}", path.display()), e))?;
        let writer = PcapWriter::new(file).map_err(|e| {
            Error::Net(format!(
                "write the header of capture {}: {e}",
                path.display()
            ))
        })?;
        Ok(PortCapture {
            path: path.to_path_buf(),
            writer,
            failed: false,
        })
    }

    /// Records `frame`, stamped now (host time).
    pub fn record(&mut self, frame: &[u8]) {
        if self.failed {
            return;
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let len = u32::try_from(frame.len()).unwrap_or(u32::MAX);
        if let Err(e) = self.writer.write_packet(&PcapPacket::new(now, len, frame)) {
            // A full disk must not stop the frames: the capture stops.
            log::warn!(target: "alpy::net", "capture {} stopped: {e}", self.path.display());
            self.failed = true;
        }
    }
}
