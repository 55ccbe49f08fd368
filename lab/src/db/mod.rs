//! The server's state in SQLite (WAL): sessions in FIFO order, labs with
//! their reference counts and owners, which session holds which lab, and
//! counters. Every change is one transaction, so a server killed at any
//! moment restarts with its queue, sessions and labs as they were.
//!
//! Session ids are bearer credentials: the database keeps only their
//! SHA-256 (the session's *key*); the first 12 hex digits of the key are
//! its *handle*, safe to show and log. The calls here block: the API runs
//! them off the async workers ([`crate::api::App::db`]). Sessions are
//! here, labs in [`labs`], boards' states in [`boards`], the events each
//! change emits in [`emit`].

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use alpy::lab::wire::{EventAction, LabStatus, SessionStatus};
use rusqlite::{params, Connection, OptionalExtension};
use sha2::{Digest, Sha256};

use crate::events::Bus;

mod board_jobs;
mod boards;
mod emit;
mod labs;
mod schema;

pub use boards::{BoardRow, ConfiguredBoard};

pub use emit::SERVER;
use labs::{held_lab_id, release_in};

/// Seconds since the epoch.
pub fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// A session id's key: its hex SHA-256, what the database stores.
pub fn session_key(id: &str) -> String {
    hex::encode(Sha256::digest(id.as_bytes()))
}

/// A key's handle: its first 12 hex digits, shown in logs and queues.
pub fn handle(key: &str) -> &str {
    &key[..key.len().min(12)]
}

/// What went wrong with the database.
#[derive(Debug)]
pub enum DbError {
    /// Another process holds a lock past the busy timeout: try again.
    Busy,
    /// A limit refuses the change (the message says which).
    Limit(String),
    /// Anything else.
    Other(String),
}

impl std::fmt::Display for DbError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DbError::Busy => write!(f, "the database is locked by another process"),
            DbError::Limit(m) | DbError::Other(m) => write!(f, "{m}"),
        }
    }
}

impl std::error::Error for DbError {}

impl From<rusqlite::Error> for DbError {
    fn from(x: rusqlite::Error) -> Self {
        match x.sqlite_error_code() {
            Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) => {
                DbError::Busy
            }
            _ => DbError::Other(format!("database: {x}")),
        }
    }
}

type R<T> = Result<T, DbError>;

/// A session as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionRow {
    /// SHA-256 of its id.
    pub key: String,
    /// Where it is in its life.
    pub status: SessionStatus,
    /// 0 when active, else the place in the queue (1 = next).
    pub position: i64,
    /// Who created it (the token's name).
    pub owner: String,
    /// Seconds since the epoch.
    pub created: f64,
    /// Seconds since the epoch.
    pub last_heartbeat: f64,
    /// The lab it holds, if any.
    pub lab_id: Option<String>,
    /// What happened to it (expired, its lab was lost at a restart, ...).
    pub note: Option<String>,
    /// The board it asked for (JSON of a `BoardRequest`).
    pub want: Option<String>,
    /// The board it holds.
    pub board: Option<String>,
}

/// A lab as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct LabRow {
    /// The lab's id.
    pub lab_id: String,
    /// SHA-256 of its (checked) topology and extra files.
    pub topology_hash: String,
    /// The topology's name.
    pub name: String,
    /// The token name whose session stood it up.
    pub owner: String,
    /// Where it is in its life.
    pub status: LabStatus,
    /// Sessions holding it.
    pub refcount: i64,
    /// The bed's id in the alpy registry, once up.
    pub bed_id: Option<String>,
    /// The bed's description (`alpy up --json`), once up.
    pub bed: Option<serde_json::Value>,
    /// The lab's own directory.
    pub dir: String,
    /// The board its bed runs on (a board session's lab), if any.
    pub board: Option<String>,
}

/// The database.
pub struct Db {
    conn: Mutex<Connection>,
    events: Arc<Bus>,
}

fn lock(m: &Mutex<Connection>) -> std::sync::MutexGuard<'_, Connection> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Db {
    /// Opens (creating) the database at `path`, readable by its owner
    /// only; a lock held longer than `busy` is [`DbError::Busy`]. Every
    /// change is emitted on `events` once committed.
    pub fn open(path: &Path, busy: Duration, events: Arc<Bus>) -> R<Db> {
        let mut conn = Connection::open(path)?;
        conn.busy_timeout(busy)?;
        schema::create_and_migrate(&mut conn)?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| DbError::Other(format!("chmod {}: {e}", path.display())))?;
        Ok(Db {
            conn: Mutex::new(conn),
            events,
        })
    }

    /// The journal mode (`wal`).
    pub fn journal_mode(&self) -> R<String> {
        Ok(lock(&self.conn).query_row("PRAGMA journal_mode", [], |r| r.get(0))?)
    }

    /// Queues a new session (key `key`) for `owner` and promotes as
    /// capacity allows; [`DbError::Limit`] if `owner` has `max_per_owner`
    /// live sessions already.
    pub fn create_session(
        &self,
        key: &str,
        owner: &str,
        want: Option<&str>,
        capacity: usize,
        max_per_owner: usize,
    ) -> R<SessionRow> {
        let mut c = lock(&self.conn);
        let t = c.transaction()?;
        let live: i64 = t.query_row(
            "SELECT COUNT(*) FROM sessions WHERE owner = ?1 AND status IN ('active','waiting')",
            [owner],
            |r| r.get(0),
        )?;
        if live as usize >= max_per_owner {
            return Err(DbError::Limit(format!(
                "token {owner:?} has {live} live sessions, the most limits.max_sessions_per_token allows: end one first"
            )));
        }
        let now = now();
        t.execute(
            "INSERT INTO sessions (id, owner, status, created, last_heartbeat, want) VALUES (?1, ?2, 'waiting', ?3, ?3, ?4)",
            params![key, owner, now, want],
        )?;
        t.execute("UPDATE sessions SET ord = seq WHERE id = ?1", params![key])?;
        let promoted = promote(&t, Some(capacity))?;
        t.commit()?;
        let s = view(&c, key)?.ok_or_else(|| DbError::Other("the new session vanished".into()))?;
        self.session_event(&s, EventAction::Created, owner, &[]);
        self.promoted(&c, &promoted)?;
        Ok(s)
    }

    /// A session, by key.
    pub fn session(&self, key: &str) -> R<Option<SessionRow>> {
        view(&lock(&self.conn), key)
    }

    /// A live session by its handle (an operator's reference).
    pub fn session_by_handle(&self, handle: &str) -> R<Option<SessionRow>> {
        let c = lock(&self.conn);
        let pattern = format!("{}%", handle.replace(['%', '_'], ""));
        let keys = all_ids(
            &c,
            "SELECT id FROM sessions WHERE id LIKE ?1 AND status IN ('active','waiting')",
            &pattern,
        )?;
        match keys.as_slice() {
            [k] if handle.len() >= 8 => view(&c, k),
            _ => Ok(None),
        }
    }

    /// Sessions waiting or active, in queue order.
    pub fn queue(&self) -> R<Vec<SessionRow>> {
        let c = lock(&self.conn);
        let keys = all_ids(
            &c,
            "SELECT id FROM sessions WHERE status IN ('active','waiting') AND ?1 = ?1 ORDER BY status = 'waiting', ord",
            "",
        )?;
        keys.iter()
            .filter_map(|k| view(&c, k).transpose())
            .collect()
    }

    /// Records a heartbeat; false if the session is not waiting or active.
    pub fn heartbeat(&self, key: &str) -> R<bool> {
        let n = lock(&self.conn).execute(
            "UPDATE sessions SET last_heartbeat = ?2 WHERE id = ?1 AND status IN ('active','waiting')",
            params![key, now()],
        )?;
        Ok(n == 1)
    }

    /// At start: every live session's heartbeat clock starts again, so a
    /// server that was down longer than the limit ends none of them.
    pub fn grace_at_start(&self) -> R<usize> {
        Ok(lock(&self.conn).execute(
            "UPDATE sessions SET last_heartbeat = MAX(last_heartbeat, ?1) WHERE status IN ('active','waiting')",
            params![now()],
        )?)
    }

    /// Ends a session (`status` = `ended` or `expired`, with a note) on
    /// `actor`'s word, releases its lab (returned, with its refcount
    /// after) and promotes.
    pub fn end_session(
        &self,
        key: &str,
        status: SessionStatus,
        note: Option<&str>,
        capacity: usize,
        actor: &str,
    ) -> R<Option<(String, i64)>> {
        let mut c = lock(&self.conn);
        let t = c.transaction()?;
        let n = t.execute(
            "UPDATE sessions SET status = ?2, note = COALESCE(?3, note) WHERE id = ?1 AND status IN ('active','waiting')",
            params![key, status.as_str(), note],
        )?;
        let released = release_in(&t, key)?;
        let board = boards::release_board(&t, key)?;
        let promoted = promote(&t, Some(capacity))?;
        t.commit()?;
        if let Some(b) = &board {
            self.board_released(b, key, actor);
        }
        if let (1, Some(s)) = (n, view(&c, key)?) {
            let action = match status {
                SessionStatus::Expired => EventAction::Expired,
                _ => EventAction::Ended,
            };
            let reason = note.map(|n| ("reason", n.to_string()));
            self.session_event(&s, action, actor, reason.as_slice());
        }
        if let Some((lab, refcount)) = &released {
            self.released(&c, lab, *refcount, key, actor)?;
        }
        self.promoted(&c, &promoted)?;
        Ok(released)
    }

    /// Moves waiting session `key` to queue position `position` (1 =
    /// next) on `actor`'s word; false if it is not waiting.
    pub fn move_waiting(&self, key: &str, position: usize, actor: &str) -> R<bool> {
        let mut c = lock(&self.conn);
        let t = c.transaction()?;
        let mut keys = all_ids(
            &t,
            "SELECT id FROM sessions WHERE status = 'waiting' AND ?1 = ?1 ORDER BY ord",
            "",
        )?;
        let Some(at) = keys.iter().position(|k| k == key) else {
            return Ok(false);
        };
        let k = keys.remove(at);
        keys.insert(position.clamp(1, keys.len() + 1) - 1, k);
        let base: i64 = t.query_row(
            "SELECT COALESCE(MIN(ord), 0) FROM sessions WHERE status = 'waiting'",
            [],
            |r| r.get(0),
        )?;
        for (i, k) in keys.iter().enumerate() {
            t.execute(
                "UPDATE sessions SET ord = ?2 WHERE id = ?1",
                params![k, base + i as i64],
            )?;
        }
        t.commit()?;
        if let Some(s) = view(&c, key)? {
            self.session_event(&s, EventAction::Moved, actor, &[]);
        }
        Ok(true)
    }

    /// Sessions whose heartbeat is older than their limit: (key, was active).
    pub fn overdue(&self, waiting_s: f64, active_s: f64) -> R<Vec<(String, bool)>> {
        let c = lock(&self.conn);
        let now = now();
        let mut st = c.prepare(
            "SELECT id, status = 'active' FROM sessions WHERE
             (status = 'waiting' AND last_heartbeat < ?1) OR (status = 'active' AND last_heartbeat < ?2)
             ORDER BY seq",
        )?;
        let rows = st.query_map(params![now - waiting_s, now - active_s], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Adds `n` to counter `name`.
    pub fn count(&self, name: &str, n: i64) -> R<()> {
        lock(&self.conn).execute(
            "INSERT INTO counters (name, value) VALUES (?1, ?2)
             ON CONFLICT(name) DO UPDATE SET value = value + ?2",
            params![name, n],
        )?;
        Ok(())
    }

    /// Counter `name`.
    pub fn counter(&self, name: &str) -> R<i64> {
        Ok(lock(&self.conn)
            .query_row("SELECT value FROM counters WHERE name = ?1", [name], |r| {
                r.get(0)
            })
            .optional()?
            .unwrap_or(0))
    }
}

/// The first column of every row of `sql` (one parameter).
fn all_ids(c: &Connection, sql: &str, param: &str) -> R<Vec<String>> {
    let mut st = c.prepare(sql)?;
    let rows = st.query_map([param], |r| r.get(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Promotes waiting sessions, in queue order: a session for labs while
/// fewer than `capacity` of those are active (the first that cannot go
/// holds back the rest of them: first come, first served), a session for
/// a board when a free online board fits it (it takes the first by name).
/// With `capacity` `None`, board sessions only. Their keys.
fn promote(t: &rusqlite::Transaction<'_>, capacity: Option<usize>) -> R<Vec<String>> {
    let mut promoted = Vec::new();
    let mut labs: i64 = t.query_row(
        "SELECT COUNT(*) FROM sessions WHERE status = 'active' AND want IS NULL",
        [],
        |r| r.get(0),
    )?;
    let waiting: Vec<(i64, String, Option<String>)> = {
        let mut st =
            t.prepare("SELECT seq, id, want FROM sessions WHERE status = 'waiting' ORDER BY ord")?;
        let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        rows.collect::<Result<_, _>>()?
    };
    let mut labs_held_back = false;
    for (seq, key, want) in waiting {
        match want {
            None => {
                let room = capacity.is_some_and(|c| (labs as usize) < c);
                if labs_held_back || !room {
                    labs_held_back = true;
                    continue;
                }
                labs += 1;
            }
            Some(w) => {
                // A session whose board runs its setup script waits on it.
                if boards::held_board(t, &key)?.is_some() {
                    continue;
                }
                if boards::take_board(t, &key, &w)? != boards::Took::Ready {
                    continue;
                }
            }
        }
        promoted.push(key);
        // Its heartbeat clock starts at its promotion.
        t.execute(
            "UPDATE sessions SET status = 'active', last_heartbeat = ?2 WHERE seq = ?1",
            params![seq, now()],
        )?;
    }
    Ok(promoted)
}

fn view(c: &Connection, key: &str) -> R<Option<SessionRow>> {
    type Row = (
        i64,
        String,
        String,
        f64,
        f64,
        Option<String>,
        Option<String>,
    );
    let row: Option<Row> = c
        .query_row(
            "SELECT ord, status, owner, created, last_heartbeat, note, want FROM sessions WHERE id = ?1",
            [key],
            |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                ))
            },
        )
        .optional()?;
    let Some((ord, status, owner, created, last_heartbeat, note, want)) = row else {
        return Ok(None);
    };
    let status: SessionStatus = status.parse().map_err(DbError::Other)?;
    let position = if status == SessionStatus::Waiting {
        c.query_row(
            "SELECT COUNT(*) FROM sessions WHERE status = 'waiting' AND ord <= ?1",
            [ord],
            |r| r.get(0),
        )?
    } else {
        0
    };
    Ok(Some(SessionRow {
        key: key.to_string(),
        status,
        position,
        owner,
        created,
        last_heartbeat,
        lab_id: held_lab_id(c, key)?,
        note,
        want,
        board: boards::held_board(c, key)?,
    }))
}
