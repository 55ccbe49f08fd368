//! The DUT's firmware: BIOS (SeaBIOS, QEMU's default), UEFI (OVMF) with a
//! chosen code image and variable-store template, or UEFI with Secure Boot
//! (the `.secboot` code, whose SMM-protected variables need q35 with SMM,
//! and a template with keys enrolled: Debian's `.ms` one has Microsoft's).
//!
//! Every UEFI run gets a private copy of the template, so beds never share
//! variables and a vendor's NVRAM template is never written.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Which firmware boots the DUT.
///
/// ```
/// use alpy::vm::Firmware;
/// assert!(Firmware::uefi().is_uefi());
/// let sb = Firmware::secure_boot();
/// assert!(sb.secure_boot_on() && sb.vars_template().unwrap().ends_with("OVMF_VARS_4M.ms.fd"));
/// let vendor = Firmware::uefi_with("/opt/fw/CODE.fd", "/opt/fw/NVRAM.fd");
/// assert_eq!(vendor.code().unwrap(), std::path::Path::new("/opt/fw/CODE.fd"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Firmware {
    /// SeaBIOS.
    #[default]
    Bios,
    /// OVMF: code image and variable-store template.
    Uefi {
        /// The firmware code (read-only pflash).
        code: PathBuf,
        /// The variable store each run copies.
        vars_template: PathBuf,
        /// Secure Boot: SMM on q35, secure pflash.
        secure_boot: bool,
    },
}

/// Debian's OVMF files (package `ovmf`).
const OVMF: &str = "/usr/share/OVMF";

impl Firmware {
    /// UEFI with Debian's 4 MiB OVMF build and its empty variable store.
    pub fn uefi() -> Firmware {
        Firmware::uefi_with(
            Path::new(OVMF).join("OVMF_CODE_4M.fd"),
            Path::new(OVMF).join("OVMF_VARS_4M.fd"),
        )
    }

    /// UEFI with a chosen code image and variables template (a vendor's
    /// NVRAM, say).
    pub fn uefi_with(code: impl Into<PathBuf>, vars_template: impl Into<PathBuf>) -> Firmware {
        Firmware::Uefi {
            code: code.into(),
            vars_template: vars_template.into(),
            secure_boot: false,
        }
    }

    /// Secure Boot with Debian's `.secboot` code and the template with
    /// Microsoft's keys enrolled (what shim-signed boots with).
    pub fn secure_boot() -> Firmware {
        Firmware::secure_boot_with(
            Path::new(OVMF).join("OVMF_CODE_4M.secboot.fd"),
            Path::new(OVMF).join("OVMF_VARS_4M.ms.fd"),
        )
    }

    /// Secure Boot with a chosen code image (an SMM build) and template.
    pub fn secure_boot_with(
        code: impl Into<PathBuf>,
        vars_template: impl Into<PathBuf>,
    ) -> Firmware {
        Firmware::Uefi {
            code: code.into(),
            vars_template: vars_template.into(),
            secure_boot: true,
        }
    }

    /// Whether it is UEFI.
    pub fn is_uefi(&self) -> bool {
        matches!(self, Firmware::Uefi { .. })
    }

    /// Whether Secure Boot is on.
    pub fn secure_boot_on(&self) -> bool {
        matches!(
            self,
            Firmware::Uefi {
                secure_boot: true,
                ..
            }
        )
    }

    /// The code image (UEFI only).
    pub fn code(&self) -> Option<&Path> {
        match self {
            Firmware::Uefi { code, .. } => Some(code),
            Firmware::Bios => None,
        }
    }

    /// The variables template (UEFI only).
    pub fn vars_template(&self) -> Option<&Path> {
        match self {
            Firmware::Uefi { vars_template, .. } => Some(vars_template),
            Firmware::Bios => None,
        }
    }

    /// The files it needs, checked: a missing one is an error that says
    /// which and how to get it.
    pub fn check(&self) -> Result<()> {
        for f in self.code().into_iter().chain(self.vars_template()) {
            if !f.is_file() {
                let hint = if f.starts_with(OVMF) {
                    " (install the ovmf package: scripts/setup does)"
                } else {
                    ""
                };
                return Err(Error::Config(format!(
                    "UEFI firmware file {} is missing{hint}",
                    f.display()
                )));
            }
        }
        Ok(())
    }

    /// For UEFI: copies the variables template (or `vars_from`, a saved
    /// store) to `run_dir/OVMF_VARS.fd` and returns what QEMU needs.
    pub fn private_copy(&self, run_dir: &Path, vars_from: Option<&Path>) -> Result<Option<Uefi>> {
        let Firmware::Uefi {
            code,
            vars_template,
            secure_boot,
        } = self
        else {
            return Ok(None);
        };
        self.check()?;
        let template = vars_from.unwrap_or(vars_template);
        let vars = run_dir.join("OVMF_VARS.fd");
        std::fs::copy(template, &vars).map_err(|e| {
            Error::io(
                format!("copy {} to {}", template.display(), vars.display()),
                e,
            )
        })?;
        Ok(Some(Uefi {
            code: code.clone(),
            vars,
            secure_boot: *secure_boot,
        }))
    }
}

/// UEFI boot with OVMF, as QEMU runs it: the firmware code and this run's
/// private copy of the variable store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uefi {
    /// Firmware code (e.g. `/usr/share/OVMF/OVMF_CODE_4M.fd`).
    pub code: PathBuf,
    /// The variable store this run may write (a copy of the template).
    pub vars: PathBuf,
    /// Secure Boot: `-machine smm=on` and a secure pflash.
    pub secure_boot: bool,
}
