//! The lab's events as they travel on `GET /events` (Server-Sent Events,
//! one JSON [`Event`] per message, the message's SSE id its
//! [`Event::id`]). Every change to a session, a lab, a board or the
//! server's health is one event, emitted where the change is made.
//!
//! ```
//! use alpy::lab::wire::{Event, EventAction, EventType};
//! let e: Event = serde_json::from_str(
//!     r#"{"id": 7, "time": 1.5, "type": "session", "action": "promoted",
//!         "actor": "alpy-lab", "subject": "0123456789ab",
//!         "attributes": {"owner": "ci"}}"#,
//! ).unwrap();
//! assert_eq!((e.kind, e.action), (EventType::Session, EventAction::Promoted));
//! assert_eq!(e.to_string(), "#7 session 0123456789ab promoted by alpy-lab owner=ci");
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// What an event is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum EventType {
    /// A session: its subject is the session's handle.
    Session,
    /// A lab: its subject is the lab's id.
    Lab,
    /// A board: its subject is the board's name.
    Board,
    /// The server itself: its subject is the part checked.
    Health,
    /// A type this client does not know (a newer server's).
    #[serde(other)]
    Unknown,
}

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum EventAction {
    /// A session joined the queue.
    Created,
    /// A waiting session became the active one.
    Promoted,
    /// An operator moved a waiting session in the queue.
    Moved,
    /// A session's heartbeats stopped for longer than its limit.
    Expired,
    /// A session was ended by its client or an operator.
    Ended,
    /// A lab is being stood up.
    Starting,
    /// A lab is up and held.
    Up,
    /// A lab is up and nobody holds it.
    Idle,
    /// A session took a hold on a standing lab.
    Held,
    /// A session let go of its lab.
    Released,
    /// A lab is being taken down.
    Destroying,
    /// A lab is gone.
    Destroyed,
    /// A lab did not come up, or a check failed (the reason is an
    /// attribute).
    Failed,
    /// A board was reserved for a session.
    Reserved,
    /// A board went offline (the reason is an attribute).
    Offline,
    /// A board is back online.
    Online,
    /// A board's power was switched on.
    PowerOn,
    /// A board's power was switched off.
    PowerOff,
    /// A check passed.
    Passed,
    /// The server started.
    Started,
    /// An action this client does not know (a newer server's).
    #[serde(other)]
    Unknown,
}

/// What a follower of the events gets.
#[derive(Debug, Clone, PartialEq)]
pub enum Followed {
    /// The next event.
    Event(Event),
    /// Events were missed (the server's history no longer holds them, or
    /// it restarted): read the state afresh; events follow.
    Missed,
}

/// One thing that happened in the lab.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Event {
    /// Its place in the server's stream, growing by one, and across
    /// restarts (the server's start time in microseconds comes first): what
    /// `Last-Event-ID` names.
    pub id: u64,
    /// Seconds since the epoch.
    pub time: f64,
    /// What it is about.
    #[serde(rename = "type")]
    pub kind: EventType,
    /// What happened.
    pub action: EventAction,
    /// Who made it happen: a token's name, `operator NAME`, or
    /// `alpy-lab` for the server's own housekeeping.
    pub actor: String,
    /// The session's handle, the lab's id or the board's name.
    pub subject: String,
    /// The rest: `owner`, `position`, `lab`, `topology`, `reason`, ...
    /// (never a session id, a secret or a host path).
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
}

/// The word `v` is on the wire (`power_on`, ...).
fn word(v: &impl Serialize) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        _ => "?".into(),
    }
}

impl std::fmt::Display for EventType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&word(self))
    }
}

impl std::fmt::Display for EventAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&word(self))
    }
}

/// One line: `#id type subject action by actor key=value ...`.
impl std::fmt::Display for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "#{} {} {} {} by {}",
            self.id, self.kind, self.subject, self.action, self.actor
        )?;
        for (k, v) in &self.attributes {
            write!(f, " {k}={v}")?;
        }
        Ok(())
    }
}
