//! Where built guests live between runs (the test guest, Rabbit).

use std::path::PathBuf;

use crate::error::{Error, Result};

/// `$ALPY_CACHE`, else `$XDG_CACHE_HOME/alpy`, else `~/.cache/alpy`: the
/// same directory `images/lib.sh` (`alpy_cache_dir`) builds into.
pub fn cache_dir() -> Result<PathBuf> {
    crate::settings::Settings::from_env()
        .cache_dir()
        .ok_or_else(|| Error::Config("neither ALPY_CACHE nor HOME is set".into()))
}
