//! Clients that take a lock through sessions, as `consul lock` and leader-election libraries do,
//! and the checks on what they see.
//!
//! Each locker registers its node, creates a session with a TTL and a lock delay, renews it at
//! whichever server it believes leads (a renewal is not a Raft write: the leader restarts its
//! timer, [`LeaderDuties::renew`]), acquires the lock key with its session, holds it a while and
//! releases it. A locker counts itself the holder from the acquisition's answer until it asks to
//! release, or until its session's TTL has passed since its last renewal without another: a
//! session lives at least its TTL after a renewal (the leader ends it at twice that), so no
//! other session can have taken the lock before then. The checker asserts that no two
//! lockers' holds overlap, and that no replica ever shows the lock held by a session that does
//! not exist.

use std::time::Duration;

use bytes::Bytes;
use muster_core::fsm::{Behavior, Command, KvLock, KvSet, KvUnlock, Node, Register, Session};
use muster_core::raft::{ProposeError, Role, ServerId};
use muster_core::server::{Done, WriteError};
use muster_core::Instant;

use super::{local_time, RaftCluster, Violation};

/// Lockers contending for the lock.
pub(super) const LOCKERS: usize = 2;

/// The key they lock.
pub(crate) const LOCK_KEY: &str = "lock";

/// Their sessions' TTL: Consul's shortest.
pub(crate) const SESSION_TTL: Duration = Duration::from_secs(10);
const SESSION_TTL_TEXT: &str = "10s";

/// How long the lock stays closed after a session holding it ends.
const LOCK_DELAY_MS: u64 = 2_000;

/// How often a locker renews its session.
const RENEW_INTERVAL: Duration = Duration::from_secs(3);

/// How long a locker waits for an answer before it counts the outcome unknown.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(2);

/// The chance that a locker holding the lock dies at a step, as a killed `consul lock` does:
/// its session is left to expire, and the lock to be released by the leader.
const DEATH_CHANCE: f64 = 0.01;

/// Lockers' waiters are numbered from here, above every register client's operation.
pub(super) const LOCKER_WAITER_BASE: usize = 1 << 48;

/// What a locker asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Intent {
    Register,
    Create,
    Acquire,
    Release,
}

/// One locker's view.
#[derive(Debug, Default)]
pub(super) struct Locker {
    registered: bool,
    /// Its session, once created.
    session: Option<String>,
    sessions_made: u64,
    /// When it last renewed its session (or asked for it to be created), by the global clock.
    renewed_at: Instant,
    /// Its proposal in flight: the waiter, what it asked, and when it gives up.
    waiting: Option<(usize, Intent, Instant)>,
    /// Since when it holds the lock, and when it means to release it.
    holding: Option<(Instant, Instant)>,
    /// The server it believes leads.
    guess: usize,
}

/// A span in which a locker counted itself the lock's holder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hold {
    /// The locker.
    pub locker: usize,
    /// From its acquisition's answer.
    pub from: Instant,
    /// To its release request, or its session's safe end.
    pub to: Instant,
}

impl RaftCluster {
    /// Moves one locker a step on.
    pub(super) fn locker_step(&mut self) {
        let l = self.rng.below(LOCKERS as u64) as usize;
        let now = self.now;
        if let Some((_, intent, deadline)) = self.lockers[l].waiting {
            if now < deadline {
                return;
            }
            // No answer: the outcome is unknown. An acquisition that took effect unseen keeps
            // the lock from the others until the session ends, which is safe.
            self.lockers[l].waiting = None;
            if intent == Intent::Create {
                self.lockers[l].session = None;
            }
        }
        let locker = &self.lockers[l];
        if let Some(session) = locker.session.clone() {
            if now >= locker.renewed_at + SESSION_TTL {
                // Not renewed in time: the session may end any moment from now.
                self.session_lost(l, locker.renewed_at + SESSION_TTL);
            } else if now >= locker.renewed_at + RENEW_INTERVAL {
                self.renew(l, &session);
            } else if let Some((_, release_at)) = locker.holding {
                if self.rng.chance(DEATH_CHANCE) {
                    // Gone without a word: a new process comes up with a new session.
                    self.end_hold(l, now);
                    self.lockers[l].session = None;
                    self.stats.lockers_died += 1;
                } else if now >= release_at {
                    self.end_hold(l, now);
                    self.locker_propose(l, Intent::Release, release(&session));
                }
            } else {
                self.locker_propose(l, Intent::Acquire, acquire(&session));
            }
        } else if !locker.registered {
            self.locker_propose(l, Intent::Register, register(l));
        } else {
            let made = locker.sessions_made + 1;
            self.lockers[l].sessions_made = made;
            let id = format!("session-{l}-{made}");
            self.lockers[l].session = Some(id.clone());
            self.lockers[l].renewed_at = now;
            self.locker_propose(l, Intent::Create, create_session(l, id));
        }
    }

    /// Renews locker `l`'s session at the server it believes leads.
    fn renew(&mut self, l: usize, session: &str) {
        let s = self.lockers[l].guess;
        let now = local_time(self.now, self.servers[s].drift_ppm);
        let server = &mut self.servers[s];
        let Some(core) = server.core.as_ref() else {
            self.lockers[l].guess = self.rng.below(self.servers.len() as u64) as usize;
            return;
        };
        if core.raft().role() != Role::Leader {
            self.lockers[l].guess = match core.raft().leader() {
                Some(leader) => leader as usize - 1,
                None => self.rng.below(self.servers.len() as u64) as usize,
            };
            return;
        }
        if server.duties.renew(&core.state_machine().fsm, session, now) {
            self.lockers[l].renewed_at = self.now;
        } else {
            // Consul's 404: the session is gone.
            self.session_lost(l, self.now);
        }
    }

    /// Locker `l` stops counting on its session from `at`: a hold ends there, and it makes a
    /// new session.
    fn session_lost(&mut self, l: usize, at: Instant) {
        if self.lockers[l].holding.is_some() {
            self.end_hold(l, at);
        }
        self.lockers[l].session = None;
    }

    fn locker_propose(&mut self, l: usize, intent: Intent, command: Command) {
        let s = self.lockers[l].guess;
        if self.servers[s].core.is_none() {
            self.lockers[l].guess = self.rng.below(self.servers.len() as u64) as usize;
            return;
        }
        self.next_locker_waiter += 1;
        let waiter = LOCKER_WAITER_BASE + self.next_locker_waiter;
        self.lockers[l].waiting = Some((waiter, intent, self.now + ANSWER_TIMEOUT));
        let bytes: Bytes = command.encode(self.now.as_nanos() / 1_000_000);
        self.input(s, |core, now| {
            core.propose(now, bytes, waiter);
        });
    }

    /// A locker's proposal was answered.
    pub(super) fn locker_answered(&mut self, waiter: usize, outcome: Result<Done<bool>, WriteError>) {
        let Some(l) = self.lockers.iter().position(|l| l.waiting.is_some_and(|(w, ..)| w == waiter)) else {
            return;
        };
        let (_, intent, _) = self.lockers[l].waiting.take().expect("found");
        match (intent, outcome) {
            (Intent::Register, Ok(Done::Applied { output: true, .. })) => self.lockers[l].registered = true,
            (Intent::Create, Ok(Done::Applied { output: true, .. })) => {}
            (Intent::Acquire, Ok(Done::Applied { output: true, .. })) => {
                let hold = self.rng.duration_between(Duration::from_millis(200), Duration::from_secs(2));
                self.lockers[l].holding = Some((self.now, self.now + hold));
                self.stats.locks_taken += 1;
            }
            (Intent::Create, Ok(_)) => self.lockers[l].session = None,
            (intent, Err(WriteError::Refused(error))) => {
                if intent == Intent::Create {
                    self.lockers[l].session = None;
                }
                self.lockers[l].guess = match error {
                    ProposeError::NotLeader { leader_hint: Some(hint) } => hint as usize - 1,
                    _ => self.rng.below(self.servers.len() as u64) as usize,
                };
            }
            // Lost or unknown: a creation may have happened unseen; start a fresh session.
            (Intent::Create, Err(_)) => self.lockers[l].session = None,
            _ => {}
        }
    }

    /// Closes locker `l`'s hold, if it has one, at the time now.
    pub(super) fn close_hold(&mut self, l: usize) {
        self.end_hold(l, self.now);
    }

    /// Closes locker `l`'s hold at `to` and checks it against every other locker's.
    fn end_hold(&mut self, l: usize, to: Instant) {
        let Some((from, _)) = self.lockers[l].holding.take() else { return };
        let hold = Hold { locker: l, from, to };
        let open = self.lockers.iter().enumerate().filter_map(|(other, locker)| {
            locker.holding.map(|(from, _)| Hold { locker: other, from, to: Instant::from_nanos(u64::MAX) })
        });
        let clash =
            self.holds.iter().copied().chain(open).find(|h| h.locker != l && h.from < to && from < h.to);
        if let Some(other) = clash {
            self.violation.get_or_insert(Violation::LockShared { first: other, second: hold });
        }
        self.holds.push(hold);
    }

    /// Checks that replica `s` shows the lock held, if at all, by a session that exists.
    pub(super) fn check_lock_state(&mut self, s: usize) {
        let core = self.servers[s].core.as_ref().expect("up");
        let fsm = &core.state_machine().fsm;
        let (_, entry) = fsm.kv().get(LOCK_KEY);
        if let Some(session) = entry.and_then(|entry| entry.session.clone()) {
            if fsm.sessions().get(&session).is_none() {
                let server = s as ServerId + 1;
                self.violation.get_or_insert(Violation::LockHeldByDeadSession { server, session });
            }
        }
    }
}

/// Registers locker `l`'s node, which its sessions name.
pub(crate) fn register(l: usize) -> Command {
    let node = Node { node: node_name(l), address: format!("10.0.0.{}", l + 1), ..Node::default() };
    Command::Register(Box::new(Register { node, ..Register::default() }))
}

/// Creates session `id` for locker `l`: Consul's shortest TTL, a lock delay, release on end.
pub(crate) fn create_session(l: usize, id: String) -> Command {
    Command::SessionCreate(Session {
        id,
        name: "lock".into(),
        node: node_name(l),
        lock_delay_ms: LOCK_DELAY_MS,
        behavior: Behavior::Release,
        ttl: SESSION_TTL_TEXT.into(),
        node_checks: Vec::new(),
        service_checks: Vec::new(),
        create_index: 0,
        modify_index: 0,
    })
}

/// Takes the lock with `session` (`?acquire=`).
pub(crate) fn acquire(session: &str) -> Command {
    Command::KvLock(KvLock { set: lock_value(), session: session.to_owned() })
}

/// Releases the lock `session` holds (`?release=`).
pub(crate) fn release(session: &str) -> Command {
    Command::KvUnlock(KvUnlock { set: lock_value(), session: session.to_owned() })
}

fn lock_value() -> KvSet {
    KvSet { key: LOCK_KEY.into(), value: Bytes::from_static(b"held"), flags: 0 }
}

fn node_name(l: usize) -> String {
    format!("locker-{l}")
}
