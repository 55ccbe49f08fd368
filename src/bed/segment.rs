//! A segment: one L2 network joining machines' NICs, and nodes that
//! join it by name ([`crate::Link::on_segment`]). Two machine NICs and
//! nothing else make a point-to-point link.

use crate::error::{Error, Result};
use crate::net::link::{is_name, parse_endpoint};

/// One L2 network between machines' NICs (and nodes, which join it by
/// name with [`crate::Link::on_segment`]).
///
/// ```
/// use alpy::Segment;
/// // r1's NIC 1 wired straight to r2's NIC 0.
/// let core = Segment::new("core").end("r1:1").end("r2:0");
/// // A LAN with two gateways; a node joins with Link::on_segment("lan").
/// let lan = Segment::new("lan").end("r1:2").end("r2:2");
/// assert_eq!(lan.ends(), [("r1".to_string(), 2), ("r2".to_string(), 2)]);
/// assert!(Segment::new("x").end("r1").check().is_err());
/// ```
#[derive(Debug, Clone)]
pub struct Segment {
    name: String,
    ends: Vec<(String, usize)>,
    invalid: Vec<String>,
}

impl Segment {
    /// A segment named `name` (letters, digits, `-` and `_`), with no ends
    /// yet.
    pub fn new(name: &str) -> Segment {
        Segment {
            name: name.to_string(),
            ends: Vec::new(),
            invalid: Vec::new(),
        }
    }

    /// Adds a machine's NIC, `"r1:0"`.
    pub fn end(mut self, endpoint: &str) -> Segment {
        match parse_endpoint(endpoint) {
            Ok(e) => self.ends.push(e),
            Err(Error::Config(m)) => self.invalid.push(m),
            Err(e) => self.invalid.push(e.to_string()),
        }
        self
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The machines' NICs on it: (machine, NIC index).
    pub fn ends(&self) -> &[(String, usize)] {
        &self.ends
    }

    /// Whether every call parsed and the name is usable.
    pub fn check(&self) -> Result<()> {
        let mut problems = self.invalid.clone();
        if !is_name(&self.name) {
            problems.push(format!(
                "bad segment name {:?}: use 1 to 32 letters, digits, '-' or '_'",
                self.name
            ));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(Error::Config(format!(
                "segment {:?}: {}",
                self.name,
                problems.join("; ")
            )))
        }
    }
}
