//! The VM side: the QEMU command line, the QEMU process guard, the QMP
//! client, the serial console's expect engine and a shell on it. Nothing
//! here knows about Docker or test beds.

pub mod argv_check;
pub mod console;
pub mod console_share;
pub mod devices;
pub mod firmware;
pub mod login;
pub mod migrate;
pub mod qemu;
pub mod qemu_process;
pub mod qmp;
pub mod remote_shell;
