//! The labs' side of the database: which session holds which lab, the
//! labs' lives (starting, up, idle, destroying, gone), reference counts.

use alpy::lab::wire::{EventAction, LabStatus};
use rusqlite::{params, Connection, OptionalExtension};

use super::{all_ids, emit::status_action, handle, lock, now, Db, LabRow, R, SERVER};

impl Db {
    /// The lab session `key` holds.
    pub fn held_lab(&self, key: &str) -> R<Option<LabRow>> {
        let c = lock(&self.conn);
        match held_lab_id(&c, key)? {
            Some(l) => lab_view(&c, &l),
            None => Ok(None),
        }
    }

    /// A lab with this topology hash that is starting, up or idle; of
    /// `owner`'s labs only, unless `owner` is `None`.
    pub fn lab_by_hash(&self, hash: &str, owner: Option<&str>) -> R<Option<LabRow>> {
        let c = lock(&self.conn);
        let id: Option<String> = c
            .query_row(
                "SELECT id FROM labs WHERE topology_hash = ?1 AND status IN ('starting','up','idle')
                 AND (?2 IS NULL OR owner = ?2)",
                params![hash, owner],
                |r| r.get(0),
            )
            .optional()?;
        match id {
            Some(id) => lab_view(&c, &id),
            None => Ok(None),
        }
    }

    /// The active sessions of `owner` that hold lab `lab`.
    pub fn holds(&self, owner: &str, lab: &str) -> R<bool> {
        let n: i64 = lock(&self.conn).query_row(
            "SELECT COUNT(*) FROM holdings h JOIN sessions s ON s.id = h.session_id
             WHERE h.lab_id = ?1 AND s.owner = ?2 AND s.status = 'active'",
            params![lab, owner],
            |r| r.get(0),
        )?;
        Ok(n > 0)
    }

    /// Every lab.
    pub fn labs(&self) -> R<Vec<LabRow>> {
        let c = lock(&self.conn);
        let ids = all_ids(&c, "SELECT id FROM labs WHERE ?1 = ?1 ORDER BY created", "")?;
        ids.iter()
            .filter_map(|id| lab_view(&c, id).transpose())
            .collect()
    }

    /// The labs whose beds run on board `board`.
    pub fn labs_on_board(&self, board: &str) -> R<Vec<LabRow>> {
        let c = lock(&self.conn);
        let ids = all_ids(
            &c,
            "SELECT id FROM labs WHERE board = ?1 ORDER BY created",
            board,
        )?;
        ids.iter()
            .filter_map(|id| lab_view(&c, id).transpose())
            .collect()
    }

    /// A lab.
    pub fn lab(&self, id: &str) -> R<Option<LabRow>> {
        lab_view(&lock(&self.conn), id)
    }

    /// Session `key` takes a hold on lab `lab` (refcount + 1).
    pub fn hold(&self, key: &str, lab: &str) -> R<()> {
        let owner = self.session(key)?.map(|s| s.owner).unwrap_or_default();
        let mut c = lock(&self.conn);
        let t = c.transaction()?;
        t.execute(
            "INSERT INTO holdings (session_id, lab_id) VALUES (?1, ?2)",
            params![key, lab],
        )?;
        t.execute(
            "UPDATE labs SET refcount = refcount + 1, status = CASE status WHEN 'idle' THEN 'up' ELSE status END WHERE id = ?1",
            [lab],
        )?;
        t.commit()?;
        if let Some(l) = lab_view(&c, lab)? {
            self.lab_event(
                &l,
                EventAction::Held,
                &owner,
                &[("session", handle(key).to_string())],
            );
        }
        Ok(())
    }

    /// Records a new lab of `owner`, starting, held by session `key`,
    /// if that session is still active (and still holds the lab's board):
    /// else says why not, and records nothing. Its upload may have taken
    /// long enough for the session to end, and a board to pass on.
    pub fn new_lab(&self, lab: &LabRow, key: &str) -> R<Result<(), String>> {
        let mut c = lock(&self.conn);
        let t = c.transaction()?;
        let status: Option<String> = t
            .query_row("SELECT status FROM sessions WHERE id = ?1", [key], |r| {
                r.get(0)
            })
            .optional()?;
        if status.as_deref() != Some("active") {
            return Ok(Err(format!(
                "session {} is no longer active (it ended while the topology was uploaded)",
                handle(key)
            )));
        }
        if let Some(board) = &lab.board {
            if super::boards::held_board(&t, key)?.as_ref() != Some(board) {
                return Ok(Err(format!(
                    "session {} no longer holds board {board}",
                    handle(key)
                )));
            }
            let (state, reason): (String, Option<String>) = t.query_row(
                "SELECT state, reason FROM boards WHERE name = ?1",
                [board],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            if state != "online" {
                return Ok(Err(format!(
                    "board {board} is {state}: {}",
                    reason.unwrap_or_default()
                )));
            }
        }
        t.execute(
            "INSERT INTO labs (id, topology_hash, name, dir, owner, status, refcount, created, board) VALUES (?1, ?2, ?3, ?4, ?5, 'starting', 1, ?6, ?7)",
            params![lab.lab_id, lab.topology_hash, lab.name, lab.dir, lab.owner, now(), lab.board],
        )?;
        t.execute(
            "INSERT INTO holdings (session_id, lab_id) VALUES (?1, ?2)",
            params![key, lab.lab_id],
        )?;
        t.commit()?;
        if let Some(l) = lab_view(&c, &lab.lab_id)? {
            let s = ("session", handle(key).to_string());
            self.lab_event(&l, EventAction::Starting, &lab.owner, &[s]);
        }
        Ok(Ok(()))
    }

    /// A lab is up: its bed's id and description.
    /// Whether it was still starting: a lab being destroyed, or gone,
    /// is not brought back (its new bed is the caller's to take down).
    pub fn lab_up(&self, id: &str, bed_id: &str, bed: &serde_json::Value) -> R<bool> {
        let c = lock(&self.conn);
        let n = c.execute(
            "UPDATE labs SET status = CASE WHEN refcount > 0 THEN 'up' ELSE 'idle' END, bed_id = ?2, bed = ?3
             WHERE id = ?1 AND status = 'starting'",
            params![id, bed_id, bed.to_string()],
        )?;
        if n == 0 {
            return Ok(false);
        }
        if let Some(l) = lab_view(&c, id)? {
            let action = status_action(l.status);
            self.lab_event(&l, action, SERVER, &[]);
        }
        Ok(true)
    }

    /// Sets a lab's status on `actor`'s word; whether it changed (so of
    /// two that set `destroying`, one goes on).
    pub fn lab_status(&self, id: &str, status: LabStatus, actor: &str) -> R<bool> {
        let c = lock(&self.conn);
        let n = c.execute(
            "UPDATE labs SET status = ?2 WHERE id = ?1 AND status != ?2",
            params![id, status.as_str()],
        )?;
        if let (1, Some(l)) = (n, lab_view(&c, id)?) {
            self.lab_event(&l, status_action(status), actor, &[]);
        }
        Ok(n == 1)
    }

    /// Releases session `key`'s hold: (lab, refcount after).
    pub fn release(&self, key: &str) -> R<Option<(String, i64)>> {
        let owner = self.session(key)?.map(|s| s.owner).unwrap_or_default();
        let mut c = lock(&self.conn);
        let t = c.transaction()?;
        let r = release_in(&t, key)?;
        t.commit()?;
        if let Some((lab, refcount)) = &r {
            self.released(&c, lab, *refcount, key, &owner)?;
        }
        Ok(r)
    }

    /// Forgets a lab and every hold on it (`how`: it was destroyed, or
    /// failed to come up) on `actor`'s word; notes `note` on its holders.
    pub fn drop_lab(&self, id: &str, note: Option<&str>, how: EventAction, actor: &str) -> R<()> {
        let mut c = lock(&self.conn);
        let before = lab_view(&c, id)?;
        let t = c.transaction()?;
        if let Some(n) = note {
            t.execute(
                "UPDATE sessions SET note = ?2 WHERE id IN (SELECT session_id FROM holdings WHERE lab_id = ?1)",
                params![id, n],
            )?;
        }
        t.execute("DELETE FROM holdings WHERE lab_id = ?1", [id])?;
        t.execute("DELETE FROM labs WHERE id = ?1", [id])?;
        t.commit()?;
        if let Some(l) = before {
            let reason = note.map(|n| ("reason", n.to_string()));
            self.lab_event(&l, how, actor, reason.as_slice());
        }
        Ok(())
    }
}

/// The lab session `key` holds.
pub(super) fn held_lab_id(c: &Connection, key: &str) -> R<Option<String>> {
    Ok(c.query_row(
        "SELECT lab_id FROM holdings WHERE session_id = ?1",
        [key],
        |r| r.get(0),
    )
    .optional()?)
}

pub(super) fn release_in(t: &rusqlite::Transaction<'_>, key: &str) -> R<Option<(String, i64)>> {
    let Some(lab) = held_lab_id(t, key)? else {
        return Ok(None);
    };
    t.execute("DELETE FROM holdings WHERE session_id = ?1", [key])?;
    t.execute(
        "UPDATE labs SET refcount = MAX(refcount - 1, 0), status = CASE WHEN refcount - 1 <= 0 AND status = 'up' THEN 'idle' ELSE status END WHERE id = ?1",
        [&lab],
    )?;
    let n: i64 = t
        .query_row("SELECT refcount FROM labs WHERE id = ?1", [&lab], |r| {
            r.get(0)
        })
        .optional()?
        .unwrap_or(0);
    Ok(Some((lab, n)))
}

/// Column `i` of `r`, one of the API's status words.
fn word<T: std::str::FromStr<Err = String>>(r: &rusqlite::Row, i: usize) -> rusqlite::Result<T> {
    let text: String = r.get(i)?;
    text.parse().map_err(|e: String| {
        rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, e.into())
    })
}

pub(super) fn lab_view(c: &Connection, id: &str) -> R<Option<LabRow>> {
    Ok(c
        .query_row(
            "SELECT id, topology_hash, name, status, refcount, bed_id, bed, dir, owner, board FROM labs WHERE id = ?1",
            [id],
            |r| {
                let bed: Option<String> = r.get(6)?;
                Ok(LabRow {
                    lab_id: r.get(0)?,
                    topology_hash: r.get(1)?,
                    name: r.get(2)?,
                    status: word(r, 3)?,
                    refcount: r.get(4)?,
                    bed_id: r.get(5)?,
                    bed: bed.and_then(|b| serde_json::from_str(&b).ok()),
                    dir: r.get(7)?,
                    owner: r.get(8)?,
                    board: r.get(9)?,
                })
            },
        )
        .optional()?)
}
