//! The supervisor: the process that holds a bed stood up by `alpy up` (or
//! kept after a failed test by `ALPY_KEEP`) until `alpy down`, and what
//! other processes use to reach it.
//!
//! - [`registry`]: where beds are published (a private directory per
//!   user), their description ([`registry::BedInfo`]), finding them, and
//!   the requests to a supervisor.
//! - [`protocol`]: what goes over a supervisor's `control.sock`: one JSON
//!   [`protocol::Request`] per line, one [`protocol::Reply`] per line.
//! - [`control`]: how a supervisor answers those requests on its bed.
//! - [`keep`]: `ALPY_KEEP`, a failed test's bed handed to a supervisor.

pub mod control;
pub mod keep;
pub mod protocol;
pub mod registry;
