//! The scripts boards run, as the database keeps them: which board has
//! one to run (`busy`: setup, teardown or a health check), which free
//! boards may be due a check, and what a script's end changes (the
//! board free again or offline, a waiting session given its board, the
//! health-check clocks reset).

use alpy::lab::wire::{BoardJob, EventAction, EventType};
use rusqlite::{params, OptionalExtension};

use super::{handle, lock, now, promote, Db, DbError, R};

/// A free online board that runs no script: a health check may be due.
#[derive(Debug, Clone)]
pub struct IdleBoard {
    /// Its name.
    pub name: String,
    /// Its class.
    pub class: String,
    /// Sessions it was lent to since its last check.
    pub lent: u64,
    /// Seconds since its last check (or since the server first saw it).
    pub since_s: f64,
}

impl Db {
    /// Boards with a script to run: (name, which, the key of the session
    /// it is for: the holder's, or for a teardown the one that let go).
    pub fn board_jobs(&self) -> R<Vec<(String, BoardJob, Option<String>)>> {
        let c = lock(&self.conn);
        let mut st = c.prepare(
            "SELECT name, busy, CASE WHEN busy = 'teardown' THEN released_by ELSE holder END
             FROM boards WHERE busy IS NOT NULL ORDER BY name",
        )?;
        let rows = st.query_map([], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get(2)?))
        })?;
        let mut jobs = Vec::new();
        for row in rows {
            let (name, busy, holder) = row?;
            jobs.push((name, busy.parse().map_err(DbError::Other)?, holder));
        }
        Ok(jobs)
    }

    /// Free online boards that run no script.
    pub fn idle_boards(&self) -> R<Vec<IdleBoard>> {
        let c = lock(&self.conn);
        let mut st = c.prepare(
            "SELECT name, class, lent, COALESCE(checked, seen, 0) FROM boards
             WHERE state = 'online' AND holder IS NULL AND busy IS NULL ORDER BY name",
        )?;
        let now = now();
        let rows = st.query_map([], |r| {
            Ok(IdleBoard {
                name: r.get(0)?,
                class: r.get(1)?,
                lent: u64::try_from(r.get::<_, i64>(2)?).unwrap_or(0),
                since_s: now - r.get::<_, f64>(3)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Marks board `name` to run its health check, if nobody holds it and
    /// it runs no script; else says why not.
    pub fn begin_check(&self, name: &str) -> R<Result<(), String>> {
        let c = lock(&self.conn);
        let row: Option<(Option<String>, Option<String>)> = c
            .query_row(
                "SELECT holder, busy FROM boards WHERE name = ?1",
                [name],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        match row {
            None => Ok(Err(format!("no board {name:?}"))),
            Some((Some(h), _)) => Ok(Err(format!(
                "board {name} is reserved by session {}: check it when it is free (or take it \
                 offline first)",
                handle(&h)
            ))),
            Some((None, Some(busy))) => Ok(Err(format!(
                "board {name} runs its {busy} script now: wait for it"
            ))),
            Some((None, None)) => {
                c.execute("UPDATE boards SET busy = 'check' WHERE name = ?1", [name])?;
                Ok(Ok(()))
            }
        }
    }

    /// Board `name`'s `job` ended (for session `key`, a setup's): the
    /// board runs nothing; a failure takes it offline with `reason`; a
    /// passing setup gives the waiting session its board (a failed one
    /// lets it wait for another); a check resets the board's clocks. Then
    /// waiting board sessions are served.
    pub fn end_board_job(
        &self,
        name: &str,
        job: BoardJob,
        key: Option<&str>,
        failed: Option<&str>,
        actor: &str,
    ) -> R<()> {
        let mut c = lock(&self.conn);
        let t = c.transaction()?;
        // Only the script that ran is cleared: a release during a setup
        // marked the teardown, which runs next.
        t.execute(
            "UPDATE boards SET busy = NULL WHERE name = ?1 AND busy = ?2",
            params![name, job.as_str()],
        )?;
        if job == BoardJob::Check {
            t.execute(
                "UPDATE boards SET lent = 0, checked = ?2 WHERE name = ?1",
                params![name, now()],
            )?;
        }
        if let Some(reason) = failed {
            t.execute(
                "UPDATE boards SET state = 'offline', reason = ?2, changed_by = ?3, changed = ?4
                 WHERE name = ?1",
                params![name, reason, actor, now()],
            )?;
        }
        let mut promoted = Vec::new();
        if let (BoardJob::Setup, Some(key)) = (job, key) {
            let holds = super::boards::held_board(&t, key)?.as_deref() == Some(name);
            if holds && failed.is_some() {
                t.execute("UPDATE boards SET holder = NULL WHERE name = ?1", [name])?;
            } else if holds {
                let n = t.execute(
                    "UPDATE sessions SET status = 'active', last_heartbeat = ?2
                     WHERE id = ?1 AND status = 'waiting'",
                    params![key, now()],
                )?;
                if n == 1 {
                    promoted.push(key.to_string());
                }
            }
        }
        promoted.extend(promote(&t, None)?);
        t.commit()?;
        match failed {
            Some(reason) => self.events().emit(
                EventType::Board,
                EventAction::Offline,
                actor,
                name,
                &[("reason", reason.to_string()), ("job", job.to_string())],
            ),
            None => self.events().emit(
                EventType::Board,
                EventAction::Passed,
                actor,
                name,
                &[("job", job.to_string())],
            ),
        }
        self.promoted(&c, &promoted)?;
        Ok(())
    }
}
