//! The boards' side of the database: each configured board's class and
//! tags, its state (online or offline, with the reason, who changed it
//! and when) and the session that holds it. The configuration says which
//! boards exist; the database keeps their state across restarts, so a
//! board an operator took offline stays offline.

use alpy::lab::wire::{BoardJob, BoardRequest, BoardState, EventAction, EventType, SessionStatus};
use rusqlite::{params, Connection, OptionalExtension};

use super::{handle, lock, now, Db, DbError, R};

/// A board's state as the database keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct BoardRow {
    /// The board's name.
    pub name: String,
    /// Online or offline.
    pub state: BoardState,
    /// Why it is offline.
    pub reason: Option<String>,
    /// Who changed its state last.
    pub changed_by: Option<String>,
    /// When.
    pub changed: Option<f64>,
    /// The key of the session that holds it.
    pub holder: Option<String>,
    /// The script it runs (or has to run).
    pub busy: Option<BoardJob>,
    /// Sessions it was lent to since its last health check.
    pub lent: u64,
    /// When its last health check ended.
    pub checked: Option<f64>,
    /// When the server first saw it.
    pub seen: Option<f64>,
}

/// A board as the configuration gives it to the database.
#[derive(Debug, Clone)]
pub struct ConfiguredBoard {
    /// Its name.
    pub name: String,
    /// Its class.
    pub class: String,
    /// Its tags.
    pub tags: Vec<String>,
    /// Its class has a setup script (run before a session may use it).
    pub has_setup: bool,
    /// Its class has a teardown script (run before it is lent again).
    pub has_teardown: bool,
}

/// What [`take_board`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Took {
    /// No free online board fits.
    Nothing,
    /// A board, ready for its session.
    Ready,
    /// A board whose setup script runs first (its session waits on).
    SettingUp,
}

impl Db {
    /// Makes the boards table hold exactly `names` (the configuration's):
    /// a new board starts online, a board that left the configuration is
    /// forgotten, the others keep their state.
    pub fn sync_boards(&self, boards: &[ConfiguredBoard], capacity: usize) -> R<()> {
        // A held board that left the configuration: its session ends, as
        // any session ends (events, the queue served), since it would hold
        // nothing, and the board could be lent again under a new name.
        let held: Vec<(String, String)> = {
            let c = lock(&self.conn);
            let mut st = c.prepare("SELECT name, holder FROM boards WHERE holder IS NOT NULL")?;
            let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect::<Result<_, _>>()?
        };
        for (name, key) in held {
            if boards.iter().any(|b| b.name == name) {
                continue;
            }
            let note = format!("its board {name} left the configuration");
            tracing::warn!(session = %handle(&key), board = %name, "session ended: {note}");
            self.end_session(
                &key,
                SessionStatus::Ended,
                Some(&note),
                capacity,
                super::SERVER,
            )?;
        }
        let mut c = lock(&self.conn);
        let t = c.transaction()?;
        t.execute_batch(
            "CREATE TEMP TABLE IF NOT EXISTS configured (name TEXT PRIMARY KEY);
             DELETE FROM configured;",
        )?;
        for b in boards {
            let tags = serde_json::to_string(&b.tags).map_err(|e| DbError::Other(e.to_string()))?;
            t.execute(
                "INSERT OR IGNORE INTO configured (name) VALUES (?1)",
                [&b.name],
            )?;
            t.execute(
                "INSERT OR IGNORE INTO boards (name, state, seen) VALUES (?1, 'online', ?2)",
                params![b.name, now()],
            )?;
            t.execute(
                "UPDATE boards SET class = ?2, tags = ?3, has_setup = ?4, has_teardown = ?5,
                   seen = COALESCE(seen, ?6) WHERE name = ?1",
                params![b.name, b.class, tags, b.has_setup, b.has_teardown, now()],
            )?;
        }
        t.execute(
            "DELETE FROM boards WHERE name NOT IN (SELECT name FROM configured)",
            [],
        )?;
        // A new board may be what a waiting session waits for.
        let promoted = super::promote(&t, None)?;
        t.commit()?;
        self.promoted(&c, &promoted)?;
        Ok(())
    }

    /// Board `name`'s state.
    pub fn board(&self, name: &str) -> R<Option<BoardRow>> {
        let c = lock(&self.conn);
        let row = c
            .query_row(
                "SELECT state, reason, changed_by, changed, holder, busy, lent, checked, seen
                 FROM boards WHERE name = ?1",
                [name],
                |r| {
                    Ok((
                        (r.get::<_, String>(0)?, r.get(1)?, r.get(2)?, r.get(3)?),
                        (
                            r.get(4)?,
                            r.get::<_, Option<String>>(5)?,
                            r.get::<_, i64>(6)?,
                        ),
                        (r.get(7)?, r.get(8)?),
                    ))
                },
            )
            .optional()?;
        let Some(((state, reason, changed_by, changed), (holder, busy, lent), (checked, seen))) =
            row
        else {
            return Ok(None);
        };
        Ok(Some(BoardRow {
            name: name.to_string(),
            state: state.parse().map_err(DbError::Other)?,
            reason,
            changed_by,
            changed,
            holder,
            busy: busy
                .map(|b| b.parse())
                .transpose()
                .map_err(DbError::Other)?,
            lent: u64::try_from(lent).unwrap_or(0),
            checked,
            seen,
        }))
    }

    /// Sets board `name` `state` (with `reason` when offline) on `actor`'s
    /// word, and emits it; false if there is no such board.
    pub fn set_board_state(
        &self,
        name: &str,
        state: BoardState,
        reason: Option<&str>,
        actor: &str,
    ) -> R<bool> {
        let mut c = lock(&self.conn);
        let t = c.transaction()?;
        let n = t.execute(
            "UPDATE boards SET state = ?2, reason = ?3, changed_by = ?4, changed = ?5 WHERE name = ?1",
            params![name, state.as_str(), reason, actor, now()],
        )?;
        // Back online, it may be what a waiting session waits for.
        let promoted = super::promote(&t, None)?;
        t.commit()?;
        if n == 1 {
            let (action, attrs) = match state {
                BoardState::Offline => (
                    EventAction::Offline,
                    vec![("reason", reason.unwrap_or_default().to_string())],
                ),
                BoardState::Online => (EventAction::Online, Vec::new()),
            };
            self.events()
                .emit(EventType::Board, action, actor, name, &attrs);
        }
        self.promoted(&c, &promoted)?;
        Ok(n == 1)
    }

    /// Emits that session `key` let go of `board`.
    pub(super) fn board_released(&self, board: &str, key: &str, actor: &str) {
        self.events().emit(
            EventType::Board,
            EventAction::Released,
            actor,
            board,
            &[("session", handle(key).to_string())],
        );
    }
}

/// Gives session `key` the first free online board (by name) that fits
/// `want` (JSON of a [`BoardRequest`]): one that runs no script and whose
/// class has no setup script is ready; one whose class has one is marked
/// to run it first.
pub(super) fn take_board(t: &rusqlite::Transaction<'_>, key: &str, want: &str) -> R<Took> {
    let want: BoardRequest = serde_json::from_str(want)
        .map_err(|e| DbError::Other(format!("a session's board request: {e}")))?;
    let free: Vec<(String, String, String)> = {
        let mut st = t.prepare(
            "SELECT name, class, tags FROM boards
             WHERE state = 'online' AND holder IS NULL AND busy IS NULL
               AND NOT EXISTS (SELECT 1 FROM labs WHERE labs.board = boards.name)
             ORDER BY name",
        )?;
        let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        rows.collect::<Result<_, _>>()?
    };
    // The plainest board that fits first (fewest tags), so that a request
    // for any board does not take the one a tagged request needs.
    let mut free: Vec<(String, String, Vec<String>)> = free
        .into_iter()
        .map(|(n, c, t)| (n, c, serde_json::from_str(&t).unwrap_or_default()))
        .collect();
    free.sort_by(|a, b| a.2.len().cmp(&b.2.len()).then_with(|| a.0.cmp(&b.0)));
    for (name, class, tags) in free {
        if want.fits(&class, &tags) {
            t.execute(
                "UPDATE boards SET holder = ?2, lent = lent + 1,
                   busy = CASE WHEN has_setup = 1 THEN 'setup' END WHERE name = ?1",
                params![name, key],
            )?;
            let setup: bool = t.query_row(
                "SELECT has_setup FROM boards WHERE name = ?1",
                [&name],
                |r| r.get(0),
            )?;
            return Ok(if setup { Took::SettingUp } else { Took::Ready });
        }
    }
    Ok(Took::Nothing)
}

/// Takes session `key`'s board back; the board's name, if it held one.
/// Its teardown is marked to run before it is lent again, when its class
/// has a script or a lab's bed runs on it (the bed goes first; a setup
/// script that still runs ends first).
pub(super) fn release_board(t: &rusqlite::Transaction<'_>, key: &str) -> R<Option<String>> {
    let board = held_board(t, key)?;
    t.execute(
        "UPDATE boards SET holder = NULL, released_by = ?1,
           busy = CASE WHEN has_teardown = 1 THEN 'teardown'
                       WHEN EXISTS (SELECT 1 FROM labs WHERE labs.board = boards.name)
                         THEN 'teardown'
                       WHEN busy = 'setup' THEN 'setup' END
         WHERE holder = ?1",
        [key],
    )?;
    Ok(board)
}

/// The board session `key` holds.
pub(super) fn held_board(c: &Connection, key: &str) -> R<Option<String>> {
    Ok(
        c.query_row("SELECT name FROM boards WHERE holder = ?1", [key], |r| {
            r.get(0)
        })
        .optional()?,
    )
}
