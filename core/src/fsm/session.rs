//! Sessions: named leases that hold KV locks and die with the node or checks they are bound to
//! (`../shared/reference/consul-behaviour.md` §1.6; consul `agent/consul/state/session.go`).
//!
//! The table holds what was created; liveness is decided elsewhere. A session is invalidated
//! by a `SessionDestroy` entry (an explicit destroy, or the leader's TTL timer firing), by its
//! node being deregistered, or by a check it is bound to turning critical or going away: the
//! state machine does the last two itself as part of the catalog write that causes them.
//! Renewals never reach the log: they only reset the leader's timer, as in Consul.

use std::collections::BTreeSet;
use std::time::Duration;

use imbl::{OrdMap, OrdSet};
use serde::{Deserialize, Serialize};

use super::Index;
use crate::deadlines::Deadlines;
use crate::duration;
use crate::time::Instant;

/// The longest lock delay a session may ask for (Consul's `MaxLockDelay`); longer ones are
/// cut to it when they apply.
pub const LOCK_DELAY_MAX_MS: u64 = 60_000;
/// The shortest non-zero session TTL (Consul's `session_ttl_min`).
pub const TTL_MIN: Duration = Duration::from_secs(10);
/// The longest session TTL (Consul's `SessionTTLMax`).
pub const TTL_MAX: Duration = Duration::from_secs(24 * 3600);
/// How many TTLs the leader waits before invalidating a session that was not renewed
/// (Consul's `SessionTTLMultiplier`): clients renew at TTL/2, so one lost renewal is not fatal.
pub const TTL_MULTIPLIER: u32 = 2;

/// What happens to a session's locks when it is invalidated.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Behavior {
    /// The keys are unlocked and kept.
    #[default]
    Release,
    /// The keys are deleted.
    Delete,
}

impl Behavior {
    /// Consul's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Behavior::Release => "release",
            Behavior::Delete => "delete",
        }
    }
}

/// A session, as Consul's `Session`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// Its UUID, chosen by the server that proposes its creation.
    pub id: String,
    /// A human-readable name.
    pub name: String,
    /// The node it is bound to.
    pub node: String,
    /// How long its keys stay unlockable after it dies, milliseconds.
    pub lock_delay_ms: u64,
    /// What happens to its keys when it dies.
    pub behavior: Behavior,
    /// Its TTL as the client wrote it (`"30s"`), empty for none; the leader's timer parses it.
    pub ttl: String,
    /// Node-level checks it is bound to.
    pub node_checks: Vec<String>,
    /// Service-level checks it is bound to (check IDs on its node).
    pub service_checks: Vec<String>,
    /// The index that created it.
    pub create_index: Index,
    /// The index that last changed it (sessions never change: its creation).
    pub modify_index: Index,
}

impl Session {
    /// Its TTL, if it has one (checked when the session was created).
    pub fn ttl(&self) -> Option<Duration> {
        duration::parse(&self.ttl).ok().filter(|ttl| !ttl.is_zero())
    }

    /// Consul's rules for a TTL as a client wrote it: empty or zero for none, else a Go
    /// duration within [`TTL_MIN`, `TTL_MAX`].
    pub fn check_ttl(ttl: &str) -> Result<(), SessionError> {
        if ttl.is_empty() {
            return Ok(());
        }
        let parsed = duration::parse(ttl)
            .map_err(|error| SessionError::InvalidTtl { ttl: ttl.to_owned(), reason: error.to_string() })?;
        if !parsed.is_zero() && !(TTL_MIN..=TTL_MAX).contains(&parsed) {
            return Err(SessionError::TtlOutOfRange { ttl_ns: parsed.as_nanos() });
        }
        Ok(())
    }
}

/// Why a session write was refused; nothing changed. Messages are Consul's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum SessionError {
    /// No ID (a proposer bug, but checked like input).
    #[error("Must provide ID")]
    MissingId,
    /// An ID already in use.
    #[error("Session ID {0:?} already exists")]
    IdTaken(String),
    /// No node.
    #[error("Must provide Node")]
    MissingNode,
    /// The node is not in the catalog.
    #[error("Missing node registration")]
    UnknownNode,
    /// A bound check is not on the node.
    #[error("Missing check '{0}' registration")]
    UnknownCheck(String),
    /// A bound check is critical.
    #[error("Check '{0}' is in critical state")]
    CriticalCheck(String),
    /// A TTL that is not a duration.
    #[error("Session TTL '{ttl}' invalid: {reason}")]
    InvalidTtl {
        /// As written.
        ttl: String,
        /// Why.
        reason: String,
    },
    /// A TTL outside [`TTL_MIN`, `TTL_MAX`].
    #[error(
        "Invalid Session TTL '{ttl_ns}', must be between [{}={}]",
        duration::format(TTL_MIN),
        duration::format(TTL_MAX)
    )]
    TtlOutOfRange {
        /// The TTL, nanoseconds.
        ttl_ns: u128,
    },
}

/// The session table and what it links to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sessions {
    sessions: OrdMap<String, Session>,
    index: Index,
    /// Derived: (node, check ID) → sessions bound to that check.
    #[serde(skip)]
    by_check: OrdMap<(String, String), OrdSet<String>>,
    /// Derived: node → its sessions.
    #[serde(skip)]
    by_node: OrdMap<String, OrdSet<String>>,
}

impl Sessions {
    /// A session by ID.
    pub fn get(&self, id: &str) -> Option<&Session> {
        self.sessions.get(id)
    }

    /// One session and the table index (Consul answers every session query with it).
    pub fn info(&self, id: &str) -> (Index, Option<&Session>) {
        (self.index, self.sessions.get(id))
    }

    /// Every session, by ID, and the table index.
    pub fn list(&self) -> (Index, Vec<&Session>) {
        (self.index, self.sessions.values().collect())
    }

    /// The sessions of `node`, by ID, and the table index.
    pub fn of_node(&self, node: &str) -> (Index, Vec<&Session>) {
        let ids = self.by_node.get(node).into_iter().flatten();
        (self.index, ids.map(|id| &self.sessions[id]).collect())
    }

    /// The table index.
    pub fn index(&self) -> Index {
        self.index
    }

    /// How many sessions exist.
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    /// Whether none exists.
    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// The sessions bound to a check.
    pub(super) fn bound_to_check(&self, node: &str, check_id: &str) -> Vec<String> {
        let key = (node.to_owned(), check_id.to_owned());
        self.by_check.get(&key).into_iter().flatten().cloned().collect()
    }

    /// The sessions of a node.
    pub(super) fn of_node_ids(&self, node: &str) -> BTreeSet<String> {
        self.by_node.get(node).into_iter().flatten().cloned().collect()
    }

    /// Stores a session the caller validated.
    pub(super) fn insert(&mut self, index: Index, session: Session) {
        let session = Session { create_index: index, modify_index: index, ..session };
        self.link(&session);
        self.sessions.insert(session.id.clone(), session);
        self.index = index;
    }

    /// Removes a session; `None` if there was none.
    pub(super) fn remove(&mut self, index: Index, id: &str) -> Option<Session> {
        let session = self.sessions.remove(id)?;
        for key in checks_of(&session) {
            if let Some(ids) = self.by_check.get_mut(&key) {
                ids.remove(id);
                if ids.is_empty() {
                    self.by_check.remove(&key);
                }
            }
        }
        if let Some(ids) = self.by_node.get_mut(&session.node) {
            ids.remove(id);
            if ids.is_empty() {
                self.by_node.remove(&session.node);
            }
        }
        self.index = index;
        Some(session)
    }

    fn link(&mut self, session: &Session) {
        for key in checks_of(session) {
            self.by_check.entry(key).or_default().insert(session.id.clone());
        }
        self.by_node.entry(session.node.clone()).or_default().insert(session.id.clone());
    }

    /// Lowers every index above `at` to `at` (a restore at entry `at`).
    pub(super) fn clamp(&mut self, at: Index) {
        super::clamp_rows(&mut self.sessions, |session| {
            super::clamp_index(&mut session.create_index, at)
                | super::clamp_index(&mut session.modify_index, at)
        });
        super::clamp_index(&mut self.index, at);
    }

    /// Rebuilds the derived indexes after a restore.
    pub(super) fn rebuild(&mut self) {
        self.by_check = OrdMap::new();
        self.by_node = OrdMap::new();
        for session in self.sessions.clone().values() {
            self.link(session);
        }
    }

    /// The table's rules, checked on a restored snapshot.
    pub(super) fn validate(&self, applied: Index) -> Result<(), &'static str> {
        if self.index > applied {
            return Err("the session index is past the applied index");
        }
        for (id, session) in &self.sessions {
            if *id != session.id
                || session.create_index != session.modify_index
                || session.modify_index > self.index
            {
                return Err("a session row is inconsistent");
            }
            if Session::check_ttl(&session.ttl).is_err() {
                return Err("a session's TTL is out of bounds");
            }
        }
        Ok(())
    }

    #[cfg(any(test, feature = "invariants"))]
    pub(super) fn check(&self, applied: Index) {
        if let Err(broken) = self.validate(applied) {
            panic!("session invariant: {broken}");
        }
        let linked: usize = self.by_node.values().map(OrdSet::len).sum();
        assert_eq!(linked, self.sessions.len());
    }
}

/// The (node, check ID) pairs a session is bound to.
fn checks_of(session: &Session) -> impl Iterator<Item = (String, String)> + '_ {
    session
        .node_checks
        .iter()
        .chain(&session.service_checks)
        .map(|check| (session.node.clone(), check.clone()))
}

/// The leader's session TTL timers (Consul's `session_ttl.go`), sans-IO: the shell resets a
/// session's timer when it is created or renewed, asks for the next deadline to sleep until,
/// and proposes a `SessionDestroy` for each session `expired` returns. A new leader resets
/// every TTL session's timer to a full period, as Consul does, since the old leader's renewals
/// are unknown to it.
#[derive(Debug, Default)]
pub struct SessionTimers {
    deadlines: Deadlines,
}

impl SessionTimers {
    /// No timers.
    pub fn new() -> SessionTimers {
        SessionTimers::default()
    }

    /// (Re)starts the timer of a session with TTL `ttl`: it expires after `ttl` ×
    /// [`TTL_MULTIPLIER`] without a renewal.
    pub fn reset(&mut self, id: &str, ttl: Duration, now: Instant) {
        self.deadlines.set(id, now + ttl * TTL_MULTIPLIER);
    }

    /// Stops a session's timer (destroyed); unknown IDs are ignored.
    pub fn remove(&mut self, id: &str) {
        self.deadlines.remove(id);
    }

    /// Whether a session has a running timer (renewing one without is Consul's 404).
    pub fn contains(&self, id: &str) -> bool {
        self.deadlines.contains(id)
    }

    /// The earliest deadline, for the shell's sleep.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.deadlines.next()
    }

    /// The sessions whose deadline is at or before `now`, oldest first; their timers stop.
    pub fn expired(&mut self, now: Instant) -> Vec<String> {
        self.deadlines.expired(now)
    }

    /// Restarts every timer from the state, on gaining leadership.
    pub fn reset_all(&mut self, sessions: &Sessions, now: Instant) {
        self.deadlines.clear();
        for session in sessions.sessions.values() {
            if let Some(ttl) = session.ttl() {
                self.reset(&session.id, ttl, now);
            }
        }
    }

    /// How many timers run.
    pub fn len(&self) -> usize {
        self.deadlines.len()
    }

    /// Whether none runs.
    pub fn is_empty(&self) -> bool {
        self.deadlines.is_empty()
    }
}
