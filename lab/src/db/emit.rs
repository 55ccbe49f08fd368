//! The events a database change emits, once its transaction commits
//! (still under the connection's lock, so in commit order).

use std::sync::Arc;

use alpy::lab::wire::{EventAction, EventType, LabStatus};
use rusqlite::Connection;

use super::{handle, labs::lab_view, view, Db, LabRow, SessionRow, R};
use crate::events::Bus;

impl Db {
    /// The bus this database emits on.
    pub fn events(&self) -> &Arc<Bus> {
        &self.events
    }

    pub(super) fn session_event(
        &self,
        s: &SessionRow,
        action: EventAction,
        actor: &str,
        extra: &[(&str, String)],
    ) {
        let mut attrs = vec![
            ("owner", s.owner.clone()),
            ("status", s.status.to_string()),
            ("position", s.position.to_string()),
        ];
        attrs.extend(extra.iter().cloned());
        let subject = handle(&s.key);
        self.events
            .emit(EventType::Session, action, actor, subject, &attrs);
    }

    pub(super) fn lab_event(
        &self,
        l: &LabRow,
        action: EventAction,
        actor: &str,
        extra: &[(&str, String)],
    ) {
        let mut attrs = vec![
            ("topology", l.name.clone()),
            ("owner", l.owner.clone()),
            ("status", l.status.to_string()),
            ("refcount", l.refcount.to_string()),
        ];
        attrs.extend(extra.iter().cloned());
        self.events
            .emit(EventType::Lab, action, actor, &l.lab_id, &attrs);
    }

    /// Session `key` let go of `lab` (`refcount` holders left).
    pub(super) fn released(
        &self,
        c: &Connection,
        lab: &str,
        refcount: i64,
        key: &str,
        actor: &str,
    ) -> R<()> {
        if let Some(l) = lab_view(c, lab)? {
            let s = ("session", handle(key).to_string());
            self.lab_event(&l, EventAction::Released, actor, &[s]);
            if refcount == 0 && l.status == LabStatus::Idle {
                self.lab_event(&l, EventAction::Idle, actor, &[]);
            }
        }
        Ok(())
    }

    pub(super) fn promoted(&self, c: &Connection, keys: &[String]) -> R<()> {
        for k in keys {
            if let Some(s) = view(c, k)? {
                let board = s.board.iter().map(|b| ("board", b.clone()));
                self.session_event(
                    &s,
                    EventAction::Promoted,
                    SERVER,
                    &board.collect::<Vec<_>>(),
                );
                if let Some(b) = &s.board {
                    self.events().emit(
                        EventType::Board,
                        EventAction::Reserved,
                        SERVER,
                        b,
                        &[("session", handle(&s.key).to_string())],
                    );
                }
            }
        }
        Ok(())
    }
}

/// The actor of what the server does by itself.
pub const SERVER: &str = "alpy-lab";

/// The event of a lab reaching `status`.
pub(super) fn status_action(status: LabStatus) -> EventAction {
    match status {
        LabStatus::Starting => EventAction::Starting,
        LabStatus::Up => EventAction::Up,
        LabStatus::Idle => EventAction::Idle,
        LabStatus::Destroying => EventAction::Destroying,
    }
}
