//! The database's tables and their migrations: the schema a new
//! database gets, and the steps that bring an older one to the current
//! version (`PRAGMA user_version`).

use rusqlite::{params, Connection};

use super::{session_key, R};

/// Makes the tables of a new database, and brings an older one to the
/// current version.
pub(super) fn create_and_migrate(c: &mut Connection) -> R<()> {
    c.execute_batch(SCHEMA)?;
    migrate(c)
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

/// The boards' table as version 3 made it (version 4 adds columns).
const BOARDS_TABLE: &str = "
CREATE TABLE IF NOT EXISTS boards (
  name TEXT PRIMARY KEY,
  class TEXT NOT NULL DEFAULT '',
  tags TEXT NOT NULL DEFAULT '[]',
  state TEXT NOT NULL,
  reason TEXT,
  changed_by TEXT,
  changed REAL,
  holder TEXT
);
";

/// Version 2: session ids hashed, a queue order an operator can change,
/// labs with their owner. Version 3: what a session asks to reserve.
/// Version 4: boards' scripts and health-check clocks. Version 5: the
/// board a lab runs on.
fn migrate(c: &mut Connection) -> R<()> {
    let version: i64 = c.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version < 2 {
        migrate_2(c)?;
    }
    if version < 3 {
        // A boards table from before version 3 (unreleased builds) lacks
        // its class, tags and holder: made again (its states are lost).
        c.execute_batch(&format!(
            "BEGIN;
             ALTER TABLE sessions ADD COLUMN want TEXT;
             DROP TABLE IF EXISTS boards;
             {BOARDS_TABLE}
             PRAGMA user_version = 3;
             COMMIT;"
        ))?;
    }
    if version < 4 {
        // Version 4: the script a board runs (it is lent to nobody new
        // meanwhile), how often it was lent since its last health check,
        // when that was, whether its class has scripts, and the session
        // that let it go last (its teardown's).
        c.execute_batch(&format!(
            "BEGIN;
             {BOARDS_TABLE}
             ALTER TABLE boards ADD COLUMN busy TEXT;
             ALTER TABLE boards ADD COLUMN lent INTEGER NOT NULL DEFAULT 0;
             ALTER TABLE boards ADD COLUMN checked REAL;
             ALTER TABLE boards ADD COLUMN seen REAL;
             ALTER TABLE boards ADD COLUMN has_setup INTEGER NOT NULL DEFAULT 0;
             ALTER TABLE boards ADD COLUMN has_teardown INTEGER NOT NULL DEFAULT 0;
             ALTER TABLE boards ADD COLUMN released_by TEXT;
             PRAGMA user_version = 4;
             COMMIT;"
        ))?;
    }
    if version < 5 {
        // Version 5: the board a lab's bed runs on (a board session's).
        c.execute_batch(
            "BEGIN;
             ALTER TABLE labs ADD COLUMN board TEXT;
             PRAGMA user_version = 5;
             COMMIT;",
        )?;
    }
    Ok(())
}

fn migrate_2(c: &mut Connection) -> R<()> {
    let t = c.transaction()?;
    t.execute_batch(
        "ALTER TABLE sessions ADD COLUMN ord INTEGER;
         UPDATE sessions SET ord = seq;
         ALTER TABLE labs ADD COLUMN owner TEXT NOT NULL DEFAULT '';",
    )?;
    let ids = {
        let mut st = t.prepare("SELECT id FROM sessions")?;
        let rows = st.query_map([], |r| r.get::<_, String>(0))?;
        rows.collect::<Result<Vec<_>, _>>()?
    };
    for id in ids {
        let key = session_key(&id);
        t.execute(
            "UPDATE sessions SET id = ?2 WHERE id = ?1",
            params![id, key],
        )?;
        t.execute(
            "UPDATE holdings SET session_id = ?2 WHERE session_id = ?1",
            params![id, key],
        )?;
    }
    t.execute_batch("PRAGMA user_version = 2;")?;
    t.commit()?;
    Ok(())
}
