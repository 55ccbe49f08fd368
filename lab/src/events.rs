//! The event bus: every change to a session, a lab or a board is emitted
//! here by the code that makes it (the database calls, once their
//! transaction has committed), numbered, kept in a bounded history, and
//! sent to every follower of `GET /events` ([`crate::events_api`]).
//!
//! A follower that reconnects with `Last-Event-ID` gets what it missed
//! from the history; one that missed more than the history holds is told
//! so ([`Since::Gap`]) and reads the state afresh. Ids grow across
//! restarts (the first is the start time in microseconds), so an id
//! from before a restart is always older than the history: a gap.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

use alpy::lab::wire::{Event, EventAction, EventType};
use tokio::sync::broadcast;

/// The history's default length (`limits.event_history`).
pub const HISTORY: usize = 1000;

/// The bus.
pub struct Bus {
    inner: Mutex<Inner>,
    tx: broadcast::Sender<Arc<Event>>,
}

struct Inner {
    next: u64,
    history: VecDeque<Arc<Event>>,
    cap: usize,
}

/// What a follower gets first.
pub enum Since {
    /// The kept events after the one it named (all kept when it named
    /// none).
    Replay(Vec<Arc<Event>>),
    /// It named an event older than the history holds, or one this
    /// server never sent (it restarted): its view is stale. The kept
    /// events follow.
    Gap(Vec<Arc<Event>>),
}

impl Bus {
    /// A bus that keeps the last `cap` events, its first id from the
    /// clock.
    pub fn new(cap: usize) -> Bus {
        // Microseconds: a restart within the same second still starts
        // past every id the last run sent (about 1.8e15, under 2^53).
        Bus::starting_at(cap, (crate::db::now() * 1e6) as u64)
    }

    /// A bus whose first event is `first`.
    pub fn starting_at(cap: usize, first: u64) -> Bus {
        let (tx, _) = broadcast::channel(cap.clamp(16, 4096));
        Bus {
            inner: Mutex::new(Inner {
                next: first,
                history: VecDeque::new(),
                cap: cap.max(1),
            }),
            tx,
        }
    }

    /// Emits one event: `kind` `subject` `action` by `actor`, with
    /// `attributes` (never a session id, a secret or a host path).
    pub fn emit(
        &self,
        kind: EventType,
        action: EventAction,
        actor: &str,
        subject: &str,
        attributes: &[(&str, String)],
    ) {
        self.send(kind, action, actor, subject, attributes, true);
    }

    /// [`Bus::emit`] to the followers of now only, not kept in the
    /// history: the periodic health checks, which would crowd changes
    /// out of it.
    pub fn emit_passing(
        &self,
        kind: EventType,
        action: EventAction,
        actor: &str,
        subject: &str,
        attributes: &[(&str, String)],
    ) {
        self.send(kind, action, actor, subject, attributes, false);
    }

    fn send(
        &self,
        kind: EventType,
        action: EventAction,
        actor: &str,
        subject: &str,
        attributes: &[(&str, String)],
        keep: bool,
    ) {
        let mut inner = self.lock();
        let e = Arc::new(Event {
            id: inner.next,
            time: crate::db::now(),
            kind,
            action,
            actor: actor.to_string(),
            subject: subject.to_string(),
            attributes: attributes
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect::<BTreeMap<_, _>>(),
        });
        inner.next += 1;
        if keep {
            if inner.history.len() >= inner.cap {
                inner.history.pop_front();
            }
            inner.history.push_back(Arc::clone(&e));
        }
        tracing::debug!(target: "alpy_lab::event", "{e}");
        // Sent under the lock: a follower that subscribes under it too
        // sees every event once, in order, from replay or from here.
        let _ = self.tx.send(e);
    }

    /// What a follower that saw up to `last` gets first, and its
    /// receiver for what follows.
    pub fn follow(&self, last: Option<u64>) -> (Since, broadcast::Receiver<Arc<Event>>) {
        let inner = self.lock();
        let rx = self.tx.subscribe();
        let kept: Vec<Arc<Event>> = inner.history.iter().cloned().collect();
        let since = match last {
            None => Since::Replay(kept),
            Some(id) => {
                let oldest = kept.first().map_or(inner.next, |e| e.id);
                if id >= inner.next || id + 1 < oldest {
                    Since::Gap(kept)
                } else {
                    Since::Replay(kept.into_iter().filter(|e| e.id > id).collect())
                }
            }
        };
        (since, rx)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Long-lived streams (`/events`, watched consoles) open, per token and
/// in all: one token cannot hold every connection the server accepts, and
/// all streams together leave connections for heartbeats.
#[derive(Default)]
pub struct Streams {
    open: Mutex<std::collections::HashMap<String, usize>>,
}

/// Why a stream was refused.
pub enum Full {
    /// The token has its most.
    Token,
    /// The server has its most.
    Server,
}

/// One open stream of a token; closing it (dropping) frees its place.
pub struct StreamSlot {
    streams: Arc<Streams>,
    token: String,
}

impl Streams {
    /// A place for one more stream of `token`, unless it has `per_token`
    /// open or all tokens together have `total`.
    pub fn open(
        self: &Arc<Self>,
        token: &str,
        per_token: usize,
        total: usize,
    ) -> Result<StreamSlot, Full> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if open.values().sum::<usize>() >= total {
            return Err(Full::Server);
        }
        let n = open.entry(token.to_string()).or_default();
        if *n >= per_token {
            return Err(Full::Token);
        }
        *n += 1;
        Ok(StreamSlot {
            streams: Arc::clone(self),
            token: token.to_string(),
        })
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut open = self.streams.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = open.get_mut(&self.token) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.token);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(s: &Since) -> (bool, Vec<u64>) {
        match s {
            Since::Replay(v) => (false, v.iter().map(|e| e.id).collect()),
            Since::Gap(v) => (true, v.iter().map(|e| e.id).collect()),
        }
    }

    #[test]
    fn replays_what_a_follower_missed_and_says_when_it_cannot() {
        let bus = Bus::starting_at(3, 1);
        for _ in 0..5 {
            bus.emit(EventType::Session, EventAction::Created, "ci", "h", &[]);
        }
        // Kept: 3, 4, 5.
        assert_eq!(ids(&bus.follow(None).0), (false, vec![3, 4, 5]));
        assert_eq!(ids(&bus.follow(Some(3)).0), (false, vec![4, 5]));
        assert_eq!(ids(&bus.follow(Some(2)).0), (false, vec![3, 4, 5]));
        assert_eq!(ids(&bus.follow(Some(5)).0), (false, vec![]));
        // 2 is gone; 9 was never sent (a restarted server).
        assert_eq!(ids(&bus.follow(Some(1)).0), (true, vec![3, 4, 5]));
        assert_eq!(ids(&bus.follow(Some(9)).0), (true, vec![3, 4, 5]));
        let (_, mut rx) = bus.follow(Some(5));
        bus.emit(EventType::Lab, EventAction::Up, "alpy-lab", "l", &[]);
        let e = rx.try_recv().unwrap();
        assert_eq!(
            (e.id, e.kind, e.action),
            (6, EventType::Lab, EventAction::Up)
        );
    }
}
