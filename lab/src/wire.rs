//! What the API answers, typed: a session and a lab as a given caller may
//! see them. Session ids appear only in answers to the session's owner
//! who presented (or just received) the id; others see its handle. Host
//! paths and the bed's description (its supervisor's PID, its artifacts
//! directory) appear only in answers to operators.

use serde::Serialize;

use crate::auth::Caller;
use crate::db::{handle, LabRow, SessionRow};

/// A session as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct SessionOut {
    /// Its id: only to its owner, who knows it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// The first 12 hex digits of the id's SHA-256: safe to show; an
    /// operator names a session by it.
    pub handle: String,
    /// `waiting`, `active`, `ended` or `expired`.
    pub status: String,
    /// 0 when active, else the place in the queue (1 = next).
    pub position: i64,
    /// The token that created it.
    pub owner: String,
    /// Seconds since the epoch.
    pub created: f64,
    /// Seconds since the epoch.
    pub last_heartbeat: f64,
    /// The lab it holds, if any.
    pub lab_id: Option<String>,
    /// What happened to it, if anything.
    pub note: Option<String>,
}

impl SessionOut {
    /// `row`, with its id if the caller gave it (`id`).
    pub fn of(row: &SessionRow, id: Option<&str>) -> SessionOut {
        SessionOut {
            session_id: id.map(str::to_string),
            handle: handle(&row.key).to_string(),
            status: row.status.clone(),
            position: row.position,
            owner: row.owner.clone(),
            created: row.created,
            last_heartbeat: row.last_heartbeat,
            lab_id: row.lab_id.clone(),
            note: row.note.clone(),
        }
    }
}

/// A lab as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct LabOut {
    /// The lab's id.
    pub lab_id: String,
    /// SHA-256 of its checked topology and extra files.
    pub topology_hash: String,
    /// The topology's name.
    pub name: String,
    /// The token that stood it up.
    pub owner: String,
    /// `starting`, `up`, `idle` or `destroying`.
    pub status: String,
    /// Sessions holding it.
    pub refcount: i64,
    /// The bed's id in the lab host's registry, once up.
    pub bed_id: Option<String>,
    /// Operators only: the bed's description (`alpy up --json`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bed: Option<serde_json::Value>,
    /// Operators only: the lab's directory on the host.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dir: Option<String>,
}

impl LabOut {
    /// `row` as `caller` may see it.
    pub fn of(row: &LabRow, caller: &Caller) -> LabOut {
        let op = caller.is_operator();
        LabOut {
            lab_id: row.lab_id.clone(),
            topology_hash: row.topology_hash.clone(),
            name: row.name.clone(),
            owner: row.owner.clone(),
            status: row.status.clone(),
            refcount: row.refcount,
            bed_id: row.bed_id.clone(),
            bed: row.bed.clone().filter(|_| op),
            dir: op.then(|| row.dir.clone()),
        }
    }
}
