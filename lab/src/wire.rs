//! The API's answers (the shared types of [`alpy::lab::wire`]) made from
//! the stored rows, as a given caller may see them. Session ids appear
//! only in answers to the session's owner who presented (or just
//! received) the id; others see its handle. Host paths and the bed's
//! description (its supervisor's PID, its artifacts directory) appear only
//! in answers to operators.

use alpy::lab::wire::{Lab, Session};

use crate::auth::Caller;
use crate::db::{handle, LabRow, SessionRow};

/// `row` as an answer, with its id if the caller gave it (`id`).
pub fn session(row: &SessionRow, id: Option<&str>) -> Session {
    Session {
        session_id: id.map(str::to_string),
        handle: handle(&row.key).to_string(),
        status: row.status,
        position: row.position,
        owner: row.owner.clone(),
        created: row.created,
        last_heartbeat: row.last_heartbeat,
        lab_id: row.lab_id.clone(),
        note: row.note.clone(),
        board: row.board.clone(),
        wants: row
            .want
            .as_deref()
            .and_then(|w| serde_json::from_str(w).ok()),
    }
}

/// `row` as `caller` may see it.
pub fn lab(row: &LabRow, caller: &Caller) -> Lab {
    let op = caller.is_operator();
    Lab {
        lab_id: row.lab_id.clone(),
        topology_hash: row.topology_hash.clone(),
        name: row.name.clone(),
        owner: row.owner.clone(),
        status: row.status,
        refcount: row.refcount,
        bed_id: row.bed_id.clone(),
        bed: row.bed.clone().filter(|_| op),
        dir: op.then(|| row.dir.clone()),
    }
}
