//! The lab API's answers as types: one set that the server (`alpy-lab`)
//! serializes and the client ([`super::LabClient`], [`super::LabServer`])
//! and `alpy lab` deserialize, so the two sides cannot drift apart. With
//! the `openapi` feature each type also describes itself as a schema,
//! which is how the server's `/openapi.json` is generated.
//!
//! ```
//! use alpy::lab::wire::{Session, SessionStatus};
//! let s: Session = serde_json::from_str(
//!     r#"{"handle": "0123456789ab", "status": "waiting", "position": 2,
//!         "owner": "ci", "created": 1.0, "last_heartbeat": 2.0,
//!         "lab_id": null, "note": null}"#,
//! ).unwrap();
//! assert_eq!(s.status, SessionStatus::Waiting);
//! assert!(s.session_id.is_none()); // only its owner sees the id
//! ```

use serde::{Deserialize, Serialize};

pub use super::event::{Event, EventAction, EventType, Followed};

/// Where a session is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum SessionStatus {
    /// In the queue.
    Waiting,
    /// Holds the lab host: may acquire labs.
    Active,
    /// Ended by its owner or an operator.
    Ended,
    /// Ended by the server: its heartbeats stopped.
    Expired,
}

/// Where a lab is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum LabStatus {
    /// Its bed is being stood up.
    Starting,
    /// Up, and held by at least one session.
    Up,
    /// Up, and held by nobody: kept for reuse until room is needed.
    Idle,
    /// Being taken down.
    Destroying,
}

macro_rules! words {
    ($t:ty, $what:literal, $($v:ident = $s:literal),+) => {
        impl $t {
            /// The word the API and the database use.
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$v => $s),+ }
            }
        }
        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.pad(self.as_str())
            }
        }
        impl std::str::FromStr for $t {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s {
                    $($s => Ok(Self::$v),)+
                    other => Err(format!(
                        concat!("unknown ", $what, " status {:?} (known: {})"),
                        other,
                        [$($s),+].join(", ")
                    )),
                }
            }
        }
    };
}
words!(
    SessionStatus,
    "session",
    Waiting = "waiting",
    Active = "active",
    Ended = "ended",
    Expired = "expired"
);
words!(
    LabStatus,
    "lab",
    Starting = "starting",
    Up = "up",
    Idle = "idle",
    Destroying = "destroying"
);

/// Whether a lab's board may be lent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum BoardState {
    /// Online: lent to sessions that ask for its class or tags.
    Online,
    /// Offline: never lent, for the reason given, until an operator puts
    /// it back online.
    Offline,
}
words!(BoardState, "board", Online = "online", Offline = "offline");

/// A script the lab runs on a board, during which it is lent to nobody
/// new: its class's `setup_script` (reserved, its session still waits),
/// `teardown_script` (released) or `health_check`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum BoardJob {
    /// Its class's `setup_script`, for the session that reserved it.
    Setup,
    /// Its class's `teardown_script`, after a session let it go.
    Teardown,
    /// Its class's `health_check`.
    Check,
}
words!(
    BoardJob,
    "board job",
    Setup = "setup",
    Teardown = "teardown",
    Check = "check"
);

/// `GET /boards`: one board of the lab's inventory as a caller sees it:
/// never its power or console settings (they hold the switch's secrets).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Board {
    /// Its name.
    pub name: String,
    /// Its class: boards of one class are interchangeable for a test.
    pub class: String,
    /// Attributes a reservation may ask for.
    pub tags: Vec<String>,
    /// Online or offline.
    pub state: BoardState,
    /// Why it is offline (a failed health check's or script's output, an
    /// operator's words).
    pub reason: Option<String>,
    /// Who changed its state last (`operator NAME`, `health check`,
    /// `setup script`, `teardown script`).
    pub changed_by: Option<String>,
    /// When, in seconds since the epoch.
    pub changed: Option<f64>,
    /// How many network ports it has.
    pub ports: usize,
    /// The handle of the session that holds it.
    #[serde(default)]
    pub holder: Option<String>,
    /// The script that runs on it now, if one does.
    #[serde(default)]
    pub busy: Option<BoardJob>,
    /// Sessions it was lent to since its last health check.
    #[serde(default)]
    pub lent_since_check: u64,
    /// When its last health check ended, in seconds since the epoch.
    #[serde(default)]
    pub checked: Option<f64>,
}

/// `GET /boards`: the inventory, by name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Boards {
    /// Every board the configuration lists.
    pub boards: Vec<Board>,
}

/// `POST /boards/{name}/check`: how a board's health check went.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HealthCheck {
    /// The board.
    pub board: String,
    /// Whether the check passed (exit status 0 within its time).
    pub passed: bool,
    /// What it printed (the end of it), or why it did not finish.
    pub output: String,
    /// The board's state after it: a failed check takes it offline; a
    /// passing one leaves it as it was (an operator puts it online).
    pub state: BoardState,
}

/// The body of `POST /boards/{name}/offline`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TakeOffline {
    /// Why (shown to everyone who lists the boards).
    pub reason: String,
}

impl SessionStatus {
    /// Waiting or active: not over.
    pub fn is_live(self) -> bool {
        matches!(self, SessionStatus::Waiting | SessionStatus::Active)
    }
}

impl LabStatus {
    /// Up or idle: its bed answers.
    pub fn is_standing(self) -> bool {
        matches!(self, LabStatus::Up | LabStatus::Idle)
    }
}

/// A session as the API shows it to a given caller.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Session {
    /// Its id: only in answers to its owner, who presented (or has just
    /// received) it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// The first 12 hex digits of the id's SHA-256: safe to show; an
    /// operator names a session by it.
    pub handle: String,
    /// Where it is in its life.
    pub status: SessionStatus,
    /// 0 when active, else the place in the queue (1 = next).
    pub position: i64,
    /// The name of the token that created it.
    pub owner: String,
    /// Seconds since the epoch.
    pub created: f64,
    /// Seconds since the epoch.
    pub last_heartbeat: f64,
    /// The lab it holds, if any.
    #[serde(default)]
    pub lab_id: Option<String>,
    /// What happened to it, if anything (why it expired, say).
    #[serde(default)]
    pub note: Option<String>,
    /// The board it reserves, once it holds one.
    #[serde(default)]
    pub board: Option<String>,
    /// The board it asked for, if it asked for one.
    #[serde(default)]
    pub wants: Option<BoardRequest>,
}

/// A board a session asks for: of a class, with tags (each tag the board
/// must have). Boards of a class are lent first come, first served; an
/// operator can move a waiting session up.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct BoardRequest {
    /// The class (any class if none).
    #[serde(default)]
    pub class: Option<String>,
    /// Tags the board must all have.
    #[serde(default)]
    pub tags: Vec<String>,
}

impl BoardRequest {
    /// Whether a board of `class` with `tags` will do.
    pub fn fits(&self, class: &str, tags: &[String]) -> bool {
        self.class.as_deref().is_none_or(|c| c == class)
            && self.tags.iter().all(|t| tags.contains(t))
    }
}

impl std::fmt::Display for BoardRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let class = self.class.as_deref().unwrap_or("any class");
        if self.tags.is_empty() {
            write!(f, "a board of {class}")
        } else {
            write!(f, "a board of {class} tagged {}", self.tags.join(", "))
        }
    }
}

/// The body of `POST /session` (none: a session for labs): what it
/// reserves.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct NewSession {
    /// A board to reserve: the session waits until one is free and
    /// online, then holds it while its heartbeats come.
    #[serde(default)]
    pub board: Option<BoardRequest>,
}

/// A lab as the API shows it to a given caller.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Lab {
    /// The lab's id.
    pub lab_id: String,
    /// SHA-256 of its checked topology and extra files: equal topologies
    /// share a lab.
    pub topology_hash: String,
    /// The topology's name.
    pub name: String,
    /// The name of the token that stood it up.
    pub owner: String,
    /// Where it is in its life.
    pub status: LabStatus,
    /// Sessions holding it.
    pub refcount: i64,
    /// The bed's id in the lab host's registry, once up.
    #[serde(default)]
    pub bed_id: Option<String>,
    /// Operators only: the bed's description (`alpy up --json`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub bed: Option<serde_json::Value>,
    /// Operators only: the lab's directory on the lab host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dir: Option<String>,
}

/// `GET /queue`: the live sessions (active first, then the queue in
/// order) and the labs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Queue {
    /// Live sessions, by handle (no ids).
    pub sessions: Vec<Session>,
    /// Every lab.
    pub labs: Vec<Lab>,
}

/// `POST /lab`: the lab the session now holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Acquired {
    /// True when another session's equal lab was joined.
    pub reused: bool,
    /// The lab.
    pub lab: Lab,
}

/// `GET /lab/devices`: what a held lab has.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Devices {
    /// The topology's name.
    pub name: String,
    /// The nodes' names.
    pub nodes: Vec<String>,
    /// The links' names (a link is named by its node).
    pub links: Vec<String>,
    /// The console WebSocket's path.
    pub console: String,
    /// The DUT's NIC MACs, in link order (`null` from a server whose bed
    /// predates them reads as none).
    #[serde(default, deserialize_with = "null_as_empty")]
    pub dut_macs: Vec<String>,
    /// Host time minus capture time, in seconds, when known.
    #[serde(default)]
    pub capture_offset: Option<f64>,
    /// The board the DUT is (the rack's name), when the lab lent one.
    #[serde(default)]
    pub board: Option<String>,
}

/// `null` as an empty list.
fn null_as_empty<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Ok(Option::<Vec<String>>::deserialize(d)?.unwrap_or_default())
}

/// `POST /lab/release`: the hold was given back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Released {
    /// The lab that was held.
    pub lab_id: String,
    /// Sessions still holding it.
    pub refcount: i64,
}

/// `DELETE /lab`, `DELETE /labs/{id}`: the lab is being taken down.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Destroying {
    /// The lab.
    pub lab_id: String,
    /// Always `destroying`.
    pub status: LabStatus,
}

/// `POST /sessions/{handle}/position`: where the session now waits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Moved {
    /// The session's handle.
    pub handle: String,
    /// Its place in the queue now (1 = next).
    pub position: i64,
}

/// The body of `POST /sessions/{handle}/position`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MoveTo {
    /// The place in the queue to move to (1 = next).
    pub position: u32,
}

/// A file: a store entry (with its hash) or a lab log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FileEntry {
    /// Its name (a store name, or a log's file name).
    pub name: String,
    /// Its size in bytes.
    pub size: u64,
    /// Its SHA-256 (store entries only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

/// `GET /store` and `GET /lab/logs`: a list of files.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Files {
    /// The files.
    pub files: Vec<FileEntry>,
}

/// The caller's token, as `GET /whoami` tells it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Whoami {
    /// The token's name.
    pub name: String,
    /// `viewer`, `user` or `operator`.
    pub role: String,
}

/// Every error answer: a status code and this body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    /// What was wrong, and how to fix it where the server knows.
    pub detail: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_the_words_of_the_wire() {
        for s in [
            SessionStatus::Waiting,
            SessionStatus::Active,
            SessionStatus::Ended,
            SessionStatus::Expired,
        ] {
            let json = serde_json::to_string(&s).unwrap();
            assert_eq!(json, format!("\"{s}\""));
            assert_eq!(s.as_str().parse::<SessionStatus>().unwrap(), s);
        }
        for s in [
            LabStatus::Starting,
            LabStatus::Up,
            LabStatus::Idle,
            LabStatus::Destroying,
        ] {
            assert_eq!(serde_json::to_string(&s).unwrap(), format!("\"{s}\""));
            assert_eq!(s.as_str().parse::<LabStatus>().unwrap(), s);
        }
        // Padded like a string in a table.
        assert_eq!(format!("[{:<8}]", SessionStatus::Active), "[active  ]");
        // An older server's bed without MACs.
        let d: Devices = serde_json::from_str(
            r#"{"name":"f","nodes":[],"links":[],"console":"/lab/console","dut_macs":null}"#,
        )
        .unwrap();
        assert!(d.dut_macs.is_empty() && d.capture_offset.is_none());
        let e = "gone".parse::<LabStatus>().unwrap_err();
        assert!(e.contains("\"gone\"") && e.contains("destroying"), "{e}");
    }
}
