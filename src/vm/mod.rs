//! The VM side: the QEMU command line, the QEMU process guard, the QMP
//! client, the serial console's expect engine and a shell on it. Nothing
//! here knows about Docker or test beds.

#[doc(hidden)]
pub mod argv_check;
#[doc(hidden)]
pub mod console;
#[doc(hidden)]
pub mod console_share;
#[doc(hidden)]
pub mod devices;
#[doc(hidden)]
pub mod firmware;
#[doc(hidden)]
pub mod login;
#[doc(hidden)]
pub mod migrate;
#[doc(hidden)]
pub mod qemu;
#[doc(hidden)]
pub mod qemu_process;
#[doc(hidden)]
pub mod qmp;
#[doc(hidden)]
pub mod remote_shell;

pub use argv_check::Smbios;
pub use console::{Console, Match, Pattern};
pub use firmware::{Firmware, Uefi};
pub use login::Login;
pub use qemu::{Accel, DiskBus, DiskMode, Media, Nic, NicModel, NicRom, QemuConfig};
pub use qmp::{Event as QmpEvent, Qmp};
pub use remote_shell::{RemoteShell, ShellState};
