//! The snapshot store: keys (what shapes a guest's state, hashed), the
//! files' hashes remembered by inode, and `$ALPY_CACHE/warm/<key>/`
//! itself: looked up, locked while one process builds, written in a
//! temporary directory and renamed into place, touched when used, and
//! kept under its size limit by evicting the least recently used.

use crate::settings::Settings;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// How long a test bed waits for another process building the snapshot
/// it needs.
const BUILD_WAIT: Duration = Duration::from_secs(600);

/// What went into a key, by name, and its hash.
#[derive(Debug, Clone)]
pub struct Key {
    /// Component name → value (file contents as their SHA-256).
    pub parts: BTreeMap<String, String>,
    /// The first 16 hex digits of the hash of all parts.
    pub hex: String,
}

impl Key {
    /// The key of `parts`.
    pub fn new(parts: BTreeMap<String, String>) -> Key {
        let mut h = Sha256::new();
        for (k, v) in &parts {
            h.update(k.as_bytes());
            h.update([0]);
            h.update(v.as_bytes());
            h.update([0]);
        }
        let hex: String = h
            .finalize()
            .iter()
            .take(8)
            .map(|b| format!("{b:02x}"))
            .collect();
        Key { parts, hex }
    }
}

/// The key of a DUT with these NICs and this preparation version: what
/// [`crate::TestBed`] looks its snapshot up by.
pub fn key(dut: &crate::Dut, nics: &[crate::vm::qemu::Nic], version: &str) -> Result<Key> {
    let mut parts = dut.warm_key_parts(nics)?;
    parts.insert("prepare".into(), version.to_string());
    Ok(Key::new(parts))
}

/// The SHA-256 of a file's contents, remembered by path, size, mtime and
/// inode (in `$ALPY_CACHE/warm/file-hashes.json`), so a large disk image is
/// read once.
pub fn file_hash(path: &Path) -> Result<String> {
    let meta = std::fs::metadata(path)
        .map_err(|e| Error::io(format!("read {} for the warm-start key", path.display()), e))?;
    let id = format!(
        "{}|{}|{}|{}",
        path.display(),
        meta.len(),
        meta.mtime_nsec() + meta.mtime() * 1_000_000_000,
        meta.ino()
    );
    let memo_path = warm_dir()?.join("file-hashes.json");
    let mut memo: BTreeMap<String, String> = std::fs::read(&memo_path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    if let Some(h) = memo.get(&id) {
        return Ok(h.clone());
    }
    let mut f = File::open(path).map_err(|e| Error::io(format!("open {}", path.display()), e))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f
            .read(&mut buf)
            .map_err(|e| Error::io(format!("read {}", path.display()), e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    let hex: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
    memo.retain(|k, _| !k.starts_with(&format!("{}|", path.display())));
    memo.insert(id, hex.clone());
    // Best effort: a lost update only means hashing again.
    let _ = write_atomic(&memo_path, &serde_json::to_vec(&memo).unwrap_or_default());
    Ok(hex)
}

/// The first line of `binary --version`, once per process and binary.
pub fn qemu_version(binary: &Path) -> Result<String> {
    static SEEN: OnceLock<Mutex<BTreeMap<PathBuf, String>>> = OnceLock::new();
    let seen = SEEN.get_or_init(Default::default);
    if let Some(v) = crate::util::lock(seen).get(binary) {
        return Ok(v.clone());
    }
    let out = std::process::Command::new(binary)
        .arg("--version")
        .output()
        .map_err(|e| Error::io(format!("run {} --version", binary.display()), e))?;
    let v = String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .unwrap_or("")
        .to_string();
    crate::util::lock(seen).insert(binary.to_path_buf(), v.clone());
    Ok(v)
}

/// `warm/` of the environment's cache (for the file-hash memo, which
/// callers without a bed use too).
fn warm_dir() -> Result<PathBuf> {
    let d = crate::cache::cache_dir()?.join("warm");
    std::fs::create_dir_all(&d).map_err(|e| Error::io(format!("create {}", d.display()), e))?;
    Ok(d)
}

fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    std::fs::write(&tmp, data).map_err(|e| Error::io(format!("write {}", tmp.display()), e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(format!("rename {}", tmp.display()), e))
}

/// What a snapshot knows about itself.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Meta {
    /// The key's parts, for whoever wonders why a snapshot was (not) used.
    pub parts: BTreeMap<String, String>,
    /// The guest's virtual clock at the save, in seconds (capture time
    /// stamps of restored beds count from it).
    pub virtual_clock_s: f64,
    /// The private prompt of the DUT shell, if the preparation attached it.
    pub shell_prompt: Option<String>,
    /// How many disks have a `diskN.qcow2`.
    pub disks: usize,
    /// Whether there is an `OVMF_VARS.fd`.
    pub uefi_vars: bool,
    /// How long the save took, in seconds.
    pub save_s: f64,
    /// The guest's RAM as a file beside the state (mapped by restoring
    /// beds, see [`crate::bed::warm_ram`]); `None`: the RAM is in the
    /// migration stream.
    #[serde(default)]
    pub ram: Option<crate::bed::warm_ram::RamMeta>,
}

/// A snapshot in the cache.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// Its directory.
    pub dir: PathBuf,
    /// Its `meta.json`.
    pub meta: Meta,
}

impl Snapshot {
    /// The migration stream.
    pub fn state(&self) -> PathBuf {
        self.dir.join("state")
    }
}

/// The snapshot cache.
pub struct Store {
    root: PathBuf,
    /// `ALPY_WARM_MAX_MB`, in bytes: the store's size limit.
    max_bytes: u64,
    /// Whether a snapshot may keep its RAM as a file (`ALPY_WARM_MAP`).
    map_ram: bool,
}

/// A snapshot being built: a private directory, renamed into place by
/// [`Store::commit`]; removed if dropped uncommitted.
pub struct Pending {
    /// Where the build writes.
    pub dir: PathBuf,
    /// Whether its RAM may be a file (the store's `ALPY_WARM_MAP`).
    pub map_ram: bool,
    key: String,
    committed: bool,
}

impl Pending {
    /// Where the migration stream goes.
    pub fn state(&self) -> PathBuf {
        self.dir.join("state")
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// The lock of one key, held while its snapshot is built.
pub struct BuildLock {
    _lock: nix::fcntl::Flock<File>,
}

impl Store {
    /// `$ALPY_CACHE/warm`, with the environment's settings.
    pub fn open() -> Result<Store> {
        Store::open_with(&Settings::from_env())
    }

    /// The store `settings` say: its place (`ALPY_CACHE`), its size limit
    /// (`ALPY_WARM_MAX_MB`) and whether RAM may be a file (`ALPY_WARM_MAP`).
    pub fn open_with(settings: &Settings) -> Result<Store> {
        let cache = settings
            .cache_dir()
            .ok_or_else(|| Error::Config("neither ALPY_CACHE nor HOME is set".into()))?;
        let root = cache.join("warm");
        std::fs::create_dir_all(&root)
            .map_err(|e| Error::io(format!("create {}", root.display()), e))?;
        let s = Store {
            root,
            max_bytes: settings.warm_max_bytes(),
            map_ram: settings.warm_map(),
        };
        s.remove_abandoned();
        Ok(s)
    }

    /// The snapshot of `key`, if a complete one exists.
    pub fn get(&self, key: &Key) -> Option<Snapshot> {
        let dir = self.root.join(&key.hex);
        let meta: Meta =
            serde_json::from_slice(&std::fs::read(dir.join("meta.json")).ok()?).ok()?;
        dir.join("state")
            .is_file()
            .then_some(Snapshot { dir, meta })
    }

    /// Marks a snapshot used now (for least-recently-used eviction).
    pub fn touch(&self, snap: &Snapshot) {
        let _ = std::fs::write(snap.dir.join("used"), b"");
    }

    /// Takes `key`'s build lock, waiting while another process holds it.
    pub fn lock(&self, key: &Key) -> Result<BuildLock> {
        let path = self.root.join(format!("{}.lock", key.hex));
        let deadline = Instant::now() + BUILD_WAIT;
        loop {
            let f = File::options()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
                .map_err(|e| Error::io(format!("open {}", path.display()), e))?;
            match nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusiveNonblock) {
                Ok(l) => return Ok(BuildLock { _lock: l }),
                Err((_, nix::errno::Errno::EWOULDBLOCK)) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err((_, e)) => {
                    return Err(Error::Timeout {
                        what: format!("the warm-start build lock {} ({e})", path.display()),
                        timeout: BUILD_WAIT,
                        tail: String::new(),
                    })
                }
            }
        }
    }

    /// A private directory to build `key`'s snapshot in.
    pub fn begin(&self, key: &Key) -> Result<Pending> {
        let dir = self.root.join(format!(
            ".building-{}-{}-{}",
            key.hex,
            std::process::id(),
            crate::run::RunId::new()
        ));
        std::fs::create_dir_all(&dir)
            .map_err(|e| Error::io(format!("create {}", dir.display()), e))?;
        Ok(Pending {
            dir,
            map_ram: self.map_ram,
            key: key.hex.clone(),
            committed: false,
        })
    }

    /// Writes `meta`, makes the files read-only and renames the build into
    /// place; then evicts old snapshots beyond the size limit.
    pub fn commit(&self, mut pending: Pending, meta: &Meta) -> Result<Snapshot> {
        write_atomic(
            &pending.dir.join("meta.json"),
            &serde_json::to_vec_pretty(meta).unwrap_or_default(),
        )?;
        for e in std::fs::read_dir(&pending.dir)
            .map_err(|e| Error::io("list a snapshot", e))?
            .flatten()
        {
            use std::os::unix::fs::PermissionsExt;
            // QEMU opens the RAM file read-write even to map it
            // copy-on-write; its fingerprint guards it instead.
            if e.file_name() == crate::bed::warm_ram::RAM_FILE {
                continue;
            }
            let _ = std::fs::set_permissions(e.path(), std::fs::Permissions::from_mode(0o444));
        }
        let dir = self.root.join(&pending.key);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::rename(&pending.dir, &dir)
            .map_err(|e| Error::io(format!("rename the snapshot into {}", dir.display()), e))?;
        pending.committed = true;
        self.evict(&pending.key, self.max_bytes);
        Ok(Snapshot {
            dir,
            meta: meta.clone(),
        })
    }

    /// Removes a snapshot (one that failed to restore).
    pub fn remove(&self, snap: &Snapshot) {
        let _ = std::fs::remove_dir_all(&snap.dir);
    }

    /// Removes least recently used snapshots (not `keep`) until the cache
    /// holds at most `limit` bytes. Snapshots used or built in the last
    /// [`IN_USE`] are kept even past the limit: another machine of the
    /// same bed (or another bed) built or restored them and may be about
    /// to restore them.
    fn evict(&self, keep: &str, limit: u64) {
        let mut snaps: Vec<(SystemTime, u64, PathBuf)> = std::fs::read_dir(&self.root)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.path().join("meta.json").is_file())
            .map(|e| {
                let dir = e.path();
                let used = std::fs::metadata(dir.join("used"))
                    .or_else(|_| std::fs::metadata(dir.join("meta.json")))
                    .and_then(|m| m.modified())
                    .unwrap_or(SystemTime::UNIX_EPOCH);
                (used, dir_size(&dir), dir)
            })
            .collect();
        snaps.sort();
        let mut total: u64 = snaps.iter().map(|s| s.1).sum();
        let recent = |used: SystemTime| used.elapsed().is_ok_and(|age| age < IN_USE);
        for (used, size, dir) in snaps {
            if total <= limit {
                break;
            }
            if dir.file_name().is_some_and(|n| n == keep) || recent(used) {
                continue;
            }
            log::info!(target: "alpy::warm", "evicting warm-start snapshot {}", dir.display());
            let _ = std::fs::remove_dir_all(&dir);
            total = total.saturating_sub(size);
        }
    }

    /// Removes build directories whose builder process is gone (a save
    /// that was killed).
    fn remove_abandoned(&self) {
        for e in std::fs::read_dir(&self.root)
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(rest) = name.strip_prefix(".building-") else {
                continue;
            };
            let pid = rest.split('-').nth(1).and_then(|p| p.parse::<u32>().ok());
            if pid.is_some_and(|p| crate::run::process_start_time(p).is_none()) {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
}

fn dir_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.metadata().ok())
        // Allocated, not apparent, size: a RAM file is sparse.
        .map(|m| std::os::unix::fs::MetadataExt::blocks(&m) * 512)
        .sum()
}

/// How long a snapshot counts as in use after it was built or restored:
/// eviction leaves it alone for that long.
pub(crate) const IN_USE: Duration = Duration::from_secs(600);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_least_recently_used_snapshots_go_first() {
        let root = std::env::temp_dir().join(format!("alpy-warm-evict-{}", std::process::id()));
        let store = Store {
            root: root.clone(),
            max_bytes: 4096 << 20,
            map_ram: true,
        };
        for (i, name) in ["old", "mid", "new"].iter().enumerate() {
            let d = root.join(name);
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("meta.json"), b"{}").unwrap();
            std::fs::write(d.join("state"), vec![0u8; 1 << 20]).unwrap();
            let used = std::fs::File::create(d.join("used")).unwrap();
            let t = SystemTime::now() - IN_USE - Duration::from_secs(100 - i as u64 * 10);
            used.set_modified(t).unwrap();
        }
        // 3 MiB in all, 2.5 MiB allowed: the oldest goes, even though "new"
        // is kept as the one just built.
        store.evict("new", (5 << 20) / 2);
        assert!(!root.join("old").exists());
        assert!(root.join("mid").exists() && root.join("new").exists());
        store.evict("old", (3 << 20) / 2);
        assert!(!root.join("mid").exists() && root.join("new").exists());
        // One built a moment ago by another machine of the bed stays,
        // even past the limit.
        let d = root.join("sibling");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("meta.json"), b"{}").unwrap();
        std::fs::write(d.join("state"), vec![0u8; 1 << 20]).unwrap();
        store.evict("new", 1);
        assert!(
            root.join("sibling").exists(),
            "a snapshot just built was evicted"
        );
        std::fs::remove_dir_all(&root).ok();
    }

    #[test]
    fn every_part_changes_the_key() {
        let base: BTreeMap<String, String> = [("kernel", "a"), ("memory", "256")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let k0 = Key::new(base.clone());
        assert_eq!(k0.hex, Key::new(base.clone()).hex);
        for (name, value) in [("kernel", "b"), ("memory", "512")] {
            let mut p = base.clone();
            p.insert(name.into(), value.into());
            assert_ne!(Key::new(p).hex, k0.hex, "{name}");
        }
        assert_eq!(k0.hex.len(), 16);
    }
}
