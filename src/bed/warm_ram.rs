//! Warm-start snapshots whose guest RAM is a file. The bed that builds a
//! snapshot runs its guest with RAM in `ram` of the snapshot directory
//! (`share=on`), and saves only the device state (`x-ignore-shared`).
//! Beds that restore map that file copy-on-write (`share=off`): a page is
//! read when the guest touches it, pages no bed writes are shared through
//! the page cache, and the file never changes.
//!
//! The file is as large as the guest's memory but sparse: it takes the
//! disk of the pages the guest touched before the save. Where the cache's
//! file system has less free space than the guest's memory, or QEMU lacks
//! `x-ignore-shared` (asked before the build starts), or
//! `ALPY_WARM_MAP=off`, snapshots are made the old way (the whole RAM in
//! the migration stream, copied into every bed).

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// The RAM file's name in a snapshot directory.
pub const RAM_FILE: &str = "ram";

/// How many blocks of the file its fingerprint reads.
const SAMPLES: u64 = 16;
/// How large each sampled block is.
const SAMPLE_BYTES: u64 = 64 * 1024;

/// What a snapshot records about its RAM file, to refuse one that changed
/// (truncated, replaced, written where a sample reads) before a bed maps
/// it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RamMeta {
    /// Its size in bytes (the guest's memory).
    pub size: u64,
    /// Its modification time, in nanoseconds since the epoch (logged when
    /// it differs; a cache copied by CI keeps whole seconds at best).
    pub mtime_ns: i128,
    /// SHA-256 of 16 blocks of 64 KiB spread over the file (not every byte:
    /// reading it all would cost what mapping saves).
    pub sample: String,
}

/// Whether a snapshot of a guest with `memory_mib`, run by QEMU `binary`,
/// may keep its RAM as a file in `dir`; says why not in the debug log.
pub fn mapping_possible(binary: &Path, memory_mib: u32, dir: &Path, allowed: bool) -> bool {
    if !allowed {
        log::debug!(target: "alpy::warm", "ALPY_WARM_MAP=off: the snapshot's RAM goes into its migration stream");
        return false;
    }
    if !has_ignore_shared(binary) {
        log::debug!(target: "alpy::warm",
            "{} has no x-ignore-shared migration capability: restoring by copying", binary.display());
        return false;
    }
    match nix::sys::statvfs::statvfs(dir) {
        Ok(st) => {
            let free = st.blocks_available().saturating_mul(st.fragment_size());
            let need = u64::from(memory_mib) << 20;
            if free < need {
                log::debug!(target: "alpy::warm",
                    "{} has {} MiB free, the guest's RAM file may need {memory_mib} MiB: \
                     restoring by copying instead", dir.display(), free >> 20);
                return false;
            }
            true
        }
        Err(e) => {
            log::debug!(target: "alpy::warm", "statvfs {}: {e}: restoring by copying", dir.display());
            false
        }
    }
}

/// Whether QEMU `binary` offers the `x-ignore-shared` migration
/// capability: asked once per binary of a process, from a QEMU with no
/// machine (`-machine none`), within 10 s.
fn has_ignore_shared(binary: &Path) -> bool {
    static KNOWN: OnceLock<Mutex<HashMap<PathBuf, bool>>> = OnceLock::new();
    let known = KNOWN.get_or_init(|| Mutex::new(HashMap::new()));
    if let Some(v) = crate::util::lock(known).get(binary) {
        return *v;
    }
    let v = probe_ignore_shared(binary).unwrap_or_else(|e| {
        log::debug!(target: "alpy::warm", "asking {} for its migration capabilities: {e}", binary.display());
        false
    });
    crate::util::lock(known).insert(binary.to_path_buf(), v);
    v
}

fn probe_ignore_shared(binary: &Path) -> std::io::Result<bool> {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new(binary)
        .args([
            "-machine",
            "none",
            "-nodefaults",
            "-display",
            "none",
            "-qmp",
            "stdio",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(
            b"{\"execute\":\"qmp_capabilities\"}\n{\"execute\":\"query-migrate-capabilities\"}\n{\"execute\":\"quit\"}\n",
        )?;
    }
    let mut stdout = child
        .stdout
        .take()
        .ok_or_else(|| std::io::Error::other("no stdout"))?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        let _ = tx.send(text);
    });
    let answer = rx.recv_timeout(std::time::Duration::from_secs(10));
    let _ = child.kill();
    let _ = child.wait();
    let text = answer.map_err(|_| std::io::Error::other("no answer within 10 s"))?;
    Ok(text.contains("\"x-ignore-shared\""))
}

/// The fingerprint of the RAM file at `path`.
pub fn fingerprint(path: &Path) -> Result<RamMeta> {
    let what = |e| Error::io(format!("read the RAM file {}", path.display()), e);
    let mut f = std::fs::File::open(path).map_err(what)?;
    let m = f.metadata().map_err(what)?;
    let size = m.len();
    let mut h = Sha256::new();
    let mut buf = vec![0u8; SAMPLE_BYTES as usize];
    let step = (size / SAMPLES).max(1);
    for i in 0..SAMPLES {
        let at = (i * step).min(size.saturating_sub(SAMPLE_BYTES));
        f.seek(SeekFrom::Start(at)).map_err(what)?;
        let n = read_up_to(&mut f, &mut buf).map_err(what)?;
        h.update(&buf[..n]);
    }
    Ok(RamMeta {
        size,
        mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
        sample: format!("{:x}", h.finalize()),
    })
}

fn read_up_to(f: &mut std::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// Fails unless the RAM file at `path` is the one `meta` describes.
pub fn verify(path: &Path, meta: &RamMeta) -> Result<()> {
    let now = fingerprint(path)?;
    if now.mtime_ns != meta.mtime_ns {
        // A cache restored by CI keeps whole seconds at best: not a
        // change by itself.
        log::debug!(target: "alpy::warm", "the RAM file {}'s time differs from the save's", path.display());
    }
    let problem = if now.size != meta.size {
        Some(format!("{} bytes, saved with {}", now.size, meta.size))
    } else if now.sample != meta.sample {
        Some("its contents changed".to_string())
    } else {
        None
    };
    match problem {
        None => Ok(()),
        Some(p) => Err(Error::Config(format!(
            "the snapshot's RAM file {} is not the one saved: {p}",
            path.display()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Asks the real QEMU (7.2 has the capability since 4.0); a binary
    /// that is not there has none.
    #[test]
    fn the_capability_is_asked_of_qemu() {
        assert!(probe_ignore_shared(Path::new("qemu-system-x86_64")).unwrap());
        assert!(!has_ignore_shared(Path::new("/nonexistent/qemu")));
    }

    #[test]
    fn a_changed_ram_file_is_refused() {
        let dir = std::env::temp_dir().join(format!("alpy-warm-ram-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join(RAM_FILE);
        std::fs::write(&p, vec![7u8; 4 << 20]).unwrap();
        let meta = fingerprint(&p).unwrap();
        verify(&p, &meta).unwrap();
        // Same size, same mtime, other bytes where a sample reads.
        let mtime = std::fs::metadata(&p).unwrap().modified().unwrap();
        let mut data = vec![7u8; 4 << 20];
        data[0] = 8;
        std::fs::write(&p, &data).unwrap();
        std::fs::File::options()
            .write(true)
            .open(&p)
            .unwrap()
            .set_modified(mtime)
            .unwrap();
        let e = verify(&p, &meta).unwrap_err().to_string();
        assert!(e.contains("contents changed"), "{e}");
        // Truncated.
        std::fs::write(&p, vec![7u8; 1 << 20]).unwrap();
        let e = verify(&p, &meta).unwrap_err().to_string();
        assert!(e.contains("bytes, saved with"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
