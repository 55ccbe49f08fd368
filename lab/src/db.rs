//! The server's state in SQLite (WAL): sessions in FIFO order, labs with
//! their reference counts, which session holds which lab, and counters.
//! Every change is one transaction, so a server killed at any moment
//! restarts with its queue, sessions and labs as they were.

use std::path::Path;
use std::sync::Mutex;

use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;

/// Seconds since the epoch.
pub fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// A session as the API shows it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SessionView {
    /// The session's id (256 random bits, hex).
    pub session_id: String,
    /// `waiting`, `active`, `ended` or `expired`.
    pub status: String,
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
    /// What happened to it, for a client that asks later (expired,
    /// its lab was lost at a restart, ...).
    pub note: Option<String>,
}

/// A lab as the API shows it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LabView {
    /// The lab's id.
    pub lab_id: String,
    /// SHA-256 of its (checked) topology and extra files.
    pub topology_hash: String,
    /// The topology's name.
    pub name: String,
    /// `starting`, `up`, `idle` (nobody holds it) or `destroying`.
    pub status: String,
    /// Sessions holding it.
    pub refcount: i64,
    /// The bed's id in the alpy registry, once up.
    pub bed_id: Option<String>,
    /// The bed's description (`alpy up --json`), once up.
    pub bed: Option<serde_json::Value>,
    /// The lab's own directory.
    pub dir: String,
}

/// The database.
pub struct Db {
    conn: Mutex<Connection>,
}

const SCHEMA: &str = "
PRAGMA journal_mode=WAL;
PRAGMA synchronous=NORMAL;
CREATE TABLE IF NOT EXISTS sessions (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  id TEXT UNIQUE NOT NULL,
  owner TEXT NOT NULL,
  status TEXT NOT NULL,
  created REAL NOT NULL,
  last_heartbeat REAL NOT NULL,
  note TEXT
);
CREATE INDEX IF NOT EXISTS sessions_status ON sessions(status, seq);
CREATE TABLE IF NOT EXISTS labs (
  id TEXT PRIMARY KEY,
  topology_hash TEXT NOT NULL,
  name TEXT NOT NULL,
  dir TEXT NOT NULL,
  status TEXT NOT NULL,
  refcount INTEGER NOT NULL DEFAULT 0,
  bed_id TEXT,
  bed TEXT,
  created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS holdings (
  session_id TEXT PRIMARY KEY,
  lab_id TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS counters (
  name TEXT PRIMARY KEY,
  value INTEGER NOT NULL
);
";

fn lock(m: &Mutex<Connection>) -> std::sync::MutexGuard<'_, Connection> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

type R<T> = Result<T, String>;

fn e(x: rusqlite::Error) -> String {
    format!("database: {x}")
}

impl Db {
    /// Opens (creating) the database at `path`.
    pub fn open(path: &Path) -> R<Db> {
        let conn = Connection::open(path).map_err(e)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(e)?;
        conn.execute_batch(SCHEMA).map_err(e)?;
        Ok(Db {
            conn: Mutex::new(conn),
        })
    }

    /// The journal mode (`wal`).
    pub fn journal_mode(&self) -> R<String> {
        lock(&self.conn)
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .map_err(e)
    }

    /// Queues a new session for `owner` and promotes as capacity allows.
    pub fn create_session(&self, id: &str, owner: &str, capacity: usize) -> R<SessionView> {
        let mut c = lock(&self.conn);
        let t = c.transaction().map_err(e)?;
        let now = now();
        t.execute(
            "INSERT INTO sessions (id, owner, status, created, last_heartbeat) VALUES (?1, ?2, 'waiting', ?3, ?3)",
            params![id, owner, now],
        )
        .map_err(e)?;
        promote(&t, capacity)?;
        t.commit().map_err(e)?;
        view(&c, id)?.ok_or_else(|| "the new session vanished".to_string())
    }

    /// A session.
    pub fn session(&self, id: &str) -> R<Option<SessionView>> {
        view(&lock(&self.conn), id)
    }

    /// Sessions waiting or active, in queue order.
    pub fn queue(&self) -> R<Vec<SessionView>> {
        let c = lock(&self.conn);
        let ids = all_ids(
            &c,
            "SELECT id FROM sessions WHERE status IN ('active','waiting') ORDER BY status = 'waiting', seq",
        )?;
        ids.iter()
            .filter_map(|id| view(&c, id).transpose())
            .collect()
    }

    /// Records a heartbeat; false if the session is not waiting or active.
    pub fn heartbeat(&self, id: &str) -> R<bool> {
        let n = lock(&self.conn)
            .execute(
                "UPDATE sessions SET last_heartbeat = ?2 WHERE id = ?1 AND status IN ('active','waiting')",
                params![id, now()],
            )
            .map_err(e)?;
        Ok(n == 1)
    }

    /// Ends a session (`status` = `ended` or `expired`, with a note),
    /// releases its lab (returned, with its refcount after) and promotes.
    pub fn end_session(
        &self,
        id: &str,
        status: &str,
        note: Option<&str>,
        capacity: usize,
    ) -> R<Option<(String, i64)>> {
        let mut c = lock(&self.conn);
        let t = c.transaction().map_err(e)?;
        t.execute(
            "UPDATE sessions SET status = ?2, note = COALESCE(?3, note) WHERE id = ?1 AND status IN ('active','waiting')",
            params![id, status, note],
        )
        .map_err(e)?;
        let released = release_in(&t, id)?;
        promote(&t, capacity)?;
        t.commit().map_err(e)?;
        Ok(released)
    }

    /// Sessions whose heartbeat is older than their limit: (id, was active).
    pub fn overdue(&self, waiting_s: f64, active_s: f64) -> R<Vec<(String, bool)>> {
        let c = lock(&self.conn);
        let now = now();
        let mut st = c
            .prepare(
                "SELECT id, status = 'active' FROM sessions WHERE
                 (status = 'waiting' AND last_heartbeat < ?1) OR (status = 'active' AND last_heartbeat < ?2)
                 ORDER BY seq",
            )
            .map_err(e)?;
        let rows = st
            .query_map(params![now - waiting_s, now - active_s], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .map_err(e)?;
        rows.collect::<Result<_, _>>().map_err(e)
    }

    /// Adds `n` to counter `name`.
    pub fn count(&self, name: &str, n: i64) -> R<()> {
        lock(&self.conn)
            .execute(
                "INSERT INTO counters (name, value) VALUES (?1, ?2)
                 ON CONFLICT(name) DO UPDATE SET value = value + ?2",
                params![name, n],
            )
            .map(drop)
            .map_err(e)
    }

    /// Counter `name`.
    pub fn counter(&self, name: &str) -> R<i64> {
        lock(&self.conn)
            .query_row("SELECT value FROM counters WHERE name = ?1", [name], |r| {
                r.get(0)
            })
            .optional()
            .map(|v| v.unwrap_or(0))
            .map_err(e)
    }

    /// The lab session `id` holds.
    pub fn held_lab(&self, session: &str) -> R<Option<LabView>> {
        let c = lock(&self.conn);
        match held_lab_id(&c, session)? {
            Some(l) => lab_view(&c, &l),
            None => Ok(None),
        }
    }

    /// A lab with this topology hash that is starting, up or idle.
    pub fn lab_by_hash(&self, hash: &str) -> R<Option<LabView>> {
        let c = lock(&self.conn);
        let sql =
            "SELECT id FROM labs WHERE topology_hash = ?1 AND status IN ('starting','up','idle')";
        match one_id(&c, sql, hash)? {
            Some(id) => lab_view(&c, &id),
            None => Ok(None),
        }
    }

    /// Every lab.
    pub fn labs(&self) -> R<Vec<LabView>> {
        let c = lock(&self.conn);
        let ids = all_ids(&c, "SELECT id FROM labs ORDER BY created")?;
        ids.iter()
            .filter_map(|id| lab_view(&c, id).transpose())
            .collect()
    }

    /// A lab.
    pub fn lab(&self, id: &str) -> R<Option<LabView>> {
        lab_view(&lock(&self.conn), id)
    }

    /// Session `session` takes a hold on lab `lab` (refcount + 1).
    pub fn hold(&self, session: &str, lab: &str) -> R<()> {
        let mut c = lock(&self.conn);
        let t = c.transaction().map_err(e)?;
        t.execute(
            "INSERT INTO holdings (session_id, lab_id) VALUES (?1, ?2)",
            params![session, lab],
        )
        .map_err(e)?;
        t.execute(
            "UPDATE labs SET refcount = refcount + 1, status = CASE status WHEN 'idle' THEN 'up' ELSE status END WHERE id = ?1",
            [lab],
        )
        .map_err(e)?;
        t.commit().map_err(e)
    }

    /// Records a new lab, starting, held by `session`.
    pub fn new_lab(&self, id: &str, hash: &str, name: &str, dir: &str, session: &str) -> R<()> {
        let mut c = lock(&self.conn);
        let t = c.transaction().map_err(e)?;
        t.execute(
            "INSERT INTO labs (id, topology_hash, name, dir, status, refcount, created) VALUES (?1, ?2, ?3, ?4, 'starting', 1, ?5)",
            params![id, hash, name, dir, now()],
        )
        .map_err(e)?;
        t.execute(
            "INSERT INTO holdings (session_id, lab_id) VALUES (?1, ?2)",
            params![session, id],
        )
        .map_err(e)?;
        t.commit().map_err(e)
    }

    /// A lab is up: its bed's id and description.
    pub fn lab_up(&self, id: &str, bed_id: &str, bed: &serde_json::Value) -> R<()> {
        lock(&self.conn)
            .execute(
                "UPDATE labs SET status = CASE WHEN refcount > 0 THEN 'up' ELSE 'idle' END, bed_id = ?2, bed = ?3 WHERE id = ?1",
                params![id, bed_id, bed.to_string()],
            )
            .map(drop)
            .map_err(e)
    }

    /// Sets a lab's status.
    pub fn lab_status(&self, id: &str, status: &str) -> R<()> {
        lock(&self.conn)
            .execute(
                "UPDATE labs SET status = ?2 WHERE id = ?1",
                params![id, status],
            )
            .map(drop)
            .map_err(e)
    }

    /// Releases session `session`'s hold: (lab, refcount after).
    pub fn release(&self, session: &str) -> R<Option<(String, i64)>> {
        let mut c = lock(&self.conn);
        let t = c.transaction().map_err(e)?;
        let r = release_in(&t, session)?;
        t.commit().map_err(e)?;
        Ok(r)
    }

    /// Forgets a lab and every hold on it; notes `note` on its holders.
    pub fn drop_lab(&self, id: &str, note: Option<&str>) -> R<()> {
        let mut c = lock(&self.conn);
        let t = c.transaction().map_err(e)?;
        if let Some(n) = note {
            t.execute(
                "UPDATE sessions SET note = ?2 WHERE id IN (SELECT session_id FROM holdings WHERE lab_id = ?1)",
                params![id, n],
            )
            .map_err(e)?;
        }
        t.execute("DELETE FROM holdings WHERE lab_id = ?1", [id])
            .map_err(e)?;
        t.execute("DELETE FROM labs WHERE id = ?1", [id])
            .map_err(e)?;
        t.commit().map_err(e)
    }
}

/// The first column of every row of `sql`.
fn all_ids(c: &Connection, sql: &str) -> R<Vec<String>> {
    let mut st = c.prepare(sql).map_err(e)?;
    let rows = st.query_map([], |r| r.get(0)).map_err(e)?;
    rows.collect::<Result<_, _>>().map_err(e)
}

/// The first column of the one row `sql` finds for `param`, if any.
fn one_id(c: &Connection, sql: &str, param: &str) -> R<Option<String>> {
    c.query_row(sql, [param], |r| r.get(0))
        .optional()
        .map_err(e)
}

/// The lab session `session` holds.
fn held_lab_id(c: &Connection, session: &str) -> R<Option<String>> {
    one_id(
        c,
        "SELECT lab_id FROM holdings WHERE session_id = ?1",
        session,
    )
}

fn release_in(t: &rusqlite::Transaction<'_>, session: &str) -> R<Option<(String, i64)>> {
    let Some(lab) = held_lab_id(t, session)? else {
        return Ok(None);
    };
    t.execute("DELETE FROM holdings WHERE session_id = ?1", [session])
        .map_err(e)?;
    t.execute(
        "UPDATE labs SET refcount = MAX(refcount - 1, 0), status = CASE WHEN refcount - 1 <= 0 AND status = 'up' THEN 'idle' ELSE status END WHERE id = ?1",
        [&lab],
    )
    .map_err(e)?;
    let n: i64 = t
        .query_row("SELECT refcount FROM labs WHERE id = ?1", [&lab], |r| {
            r.get(0)
        })
        .optional()
        .map_err(e)?
        .unwrap_or(0);
    Ok(Some((lab, n)))
}

/// Promotes the oldest waiting sessions while fewer than `capacity` are active.
fn promote(t: &rusqlite::Transaction<'_>, capacity: usize) -> R<()> {
    loop {
        let active: i64 = t
            .query_row(
                "SELECT COUNT(*) FROM sessions WHERE status = 'active'",
                [],
                |r| r.get(0),
            )
            .map_err(e)?;
        if active as usize >= capacity {
            return Ok(());
        }
        let next: Option<i64> = t
            .query_row(
                "SELECT seq FROM sessions WHERE status = 'waiting' ORDER BY seq LIMIT 1",
                [],
                |r| r.get(0),
            )
            .optional()
            .map_err(e)?;
        let Some(seq) = next else { return Ok(()) };
        // Its heartbeat clock starts at its promotion.
        t.execute(
            "UPDATE sessions SET status = 'active', last_heartbeat = ?2 WHERE seq = ?1",
            params![seq, now()],
        )
        .map_err(e)?;
    }
}

fn view(c: &Connection, id: &str) -> R<Option<SessionView>> {
    let row: Option<(i64, String, String, f64, f64, Option<String>)> = c
        .query_row(
            "SELECT seq, status, owner, created, last_heartbeat, note FROM sessions WHERE id = ?1",
            [id],
            |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                ))
            },
        )
        .optional()
        .map_err(e)?;
    let Some((seq, status, owner, created, last_heartbeat, note)) = row else {
        return Ok(None);
    };
    let position = if status == "waiting" {
        c.query_row(
            "SELECT COUNT(*) FROM sessions WHERE status = 'waiting' AND seq <= ?1",
            [seq],
            |r| r.get(0),
        )
        .map_err(e)?
    } else {
        0
    };
    let lab_id = held_lab_id(c, id)?;
    Ok(Some(SessionView {
        session_id: id.to_string(),
        status,
        position,
        owner,
        created,
        last_heartbeat,
        lab_id,
        note,
    }))
}

fn lab_view(c: &Connection, id: &str) -> R<Option<LabView>> {
    c.query_row(
        "SELECT id, topology_hash, name, status, refcount, bed_id, bed, dir FROM labs WHERE id = ?1",
        [id],
        |r| {
            let bed: Option<String> = r.get(6)?;
            Ok(LabView {
                lab_id: r.get(0)?,
                topology_hash: r.get(1)?,
                name: r.get(2)?,
                status: r.get(3)?,
                refcount: r.get(4)?,
                bed_id: r.get(5)?,
                bed: bed.and_then(|b| serde_json::from_str(&b).ok()),
                dir: r.get(7)?,
            })
        },
    )
    .optional()
    .map_err(e)
}
