//! Boards: appliances on real hardware, driven the way a rack drives them.
//!
//! A [`Board`] is power, a console and a login: [`Board::boot`]
//! power-cycles it with its console open and brings it to its shell.
//!
//! A board's power is switched by a [`power::PowerDriver`]: a PoE port over
//! SNMP (v2c, or v3 with authentication and privacy), an external command
//! (on, off, status), or QMP for a virtual board. [`power::Power`] wraps a
//! driver with the board's name (every error names the board and the part
//! that failed) and a lock per power switch, so that requests to one switch
//! never overlap, from threads or from processes: many PDUs and PoE
//! switches take one control session at a time.
//!
//! ```no_run
//! use alpy::board::power::{Power, SnmpAuth, SnmpPoe};
//!
//! # fn main() -> alpy::Result<()> {
//! let switch = SnmpPoe::new("poe1.lab:161", 1, 7, SnmpAuth::v2c("private"));
//! let power = Power::new("board-3", Box::new(switch));
//! power.off()?;
//! assert_eq!(power.status()?, alpy::board::power::PortPower::Off);
//! power.on()?;
//! # Ok(())
//! # }
//! ```

pub mod console;
mod machine;
pub mod power;
mod spec;

pub use machine::Board;
pub use spec::hide_values;
pub use spec::{BoardPort, BoardSpec, ConsoleSpec, PowerSpec, ProtocolSecret};
