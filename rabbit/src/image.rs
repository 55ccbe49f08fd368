//! Where Rabbit's built image is.

use std::path::PathBuf;

use alpy::{Error, Result};

/// The files `rabbit/image/build` makes.
#[derive(Debug, Clone)]
pub struct RabbitImage {
    /// The kernel.
    pub kernel: PathBuf,
    /// The initramfs that mounts the root disk.
    pub initrd: PathBuf,
    /// The root disk (qcow2; never modified by a test).
    pub disk: PathBuf,
}

impl RabbitImage {
    /// `$ALPY_CACHE/rabbit` (default `~/.cache/alpy/rabbit`), checked.
    pub fn find() -> Result<RabbitImage> {
        let cache = alpy::settings::Settings::from_env()
            .cache_dir()
            .ok_or_else(|| alpy::Error::Config("neither ALPY_CACHE nor HOME is set".into()))?;
        let dir = cache.join("rabbit");
        let img = RabbitImage {
            kernel: dir.join("vmlinuz"),
            initrd: dir.join("initrd.img"),
            disk: dir.join("rabbit.qcow2"),
        };
        for f in [&img.kernel, &img.initrd, &img.disk] {
            if !f.is_file() {
                return Err(Error::Config(format!(
                    "Rabbit is not built ({} is missing): run rabbit/image/build (scripts/setup does)",
                    f.display()
                )));
            }
        }
        Ok(img)
    }
}
