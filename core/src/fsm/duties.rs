//! What time decides on the leader, sans-IO: sessions whose TTL ran out are destroyed, and
//! tombstones past their TTL are reaped (Consul's `session_ttl.go` and `TombstoneGC`).
//!
//! The driver tells the duties when its server takes office, when a session is created or
//! renewed through it and what it applied; it sleeps until [`LeaderDuties::next_deadline`] and
//! proposes every command [`LeaderDuties::due`] returns. Both the agent and the simulator drive
//! this type, so the decisions the simulator checks (a session lives at least its TTL after a
//! renewal and ends by twice it; a new leader restarts every timer) are the agent's.

use std::time::Duration;

use super::{Command, Fsm, Session, SessionDestroy, SessionTimers, TombstoneGc, TombstoneReap};
use crate::planted::PlantedBug;
use crate::raft::Index;
use crate::Instant;

/// The leader's timers: session TTLs and tombstone expiry.
#[derive(Debug)]
pub struct LeaderDuties {
    sessions: SessionTimers,
    tombstones: TombstoneGc,
    tombstone_ttl: Duration,
    /// A deliberately broken rule ([`crate::planted`]).
    #[cfg(any(test, feature = "invariants"))]
    planted_bug: Option<PlantedBug>,
}

impl LeaderDuties {
    /// Duties that keep tombstones for `tombstone_ttl` (Consul's `tombstone_ttl`, 15 minutes).
    pub fn new(tombstone_ttl: Duration) -> LeaderDuties {
        LeaderDuties {
            sessions: SessionTimers::new(),
            tombstones: TombstoneGc::with_ttl(tombstone_ttl),
            tombstone_ttl,
            #[cfg(any(test, feature = "invariants"))]
            planted_bug: None,
        }
    }

    /// Breaks a rule on purpose, to prove the simulator's checkers catch it.
    #[cfg(any(test, feature = "invariants"))]
    #[doc(hidden)]
    pub fn plant(&mut self, bug: Option<PlantedBug>) {
        self.planted_bug = bug;
    }

    /// A session's TTL as its timer counts it.
    fn timed(&self, ttl: Duration) -> Duration {
        #[cfg(any(test, feature = "invariants"))]
        if self.planted_bug == Some(PlantedBug::SessionExpiresEarly) {
            return ttl / 20;
        }
        ttl
    }

    /// This server took the leadership at `now`, over `fsm` as it stands: every TTL session's
    /// timer restarts at a full period (the old leader's renewals are unknown here), and the
    /// tombstones this leader may reap are those it sees applied from now on.
    pub fn take_office(&mut self, fsm: &Fsm, now: Instant) {
        self.sessions = SessionTimers::new();
        for session in fsm.sessions().list().1 {
            if let Some(ttl) = session.ttl() {
                self.sessions.reset(&session.id, self.timed(ttl), now);
            }
        }
        self.tombstones = TombstoneGc::with_ttl(self.tombstone_ttl);
        self.tombstones.hint(fsm.applied(), now);
    }

    /// The leadership is lost: the next leader keeps its own timers.
    pub fn leave_office(&mut self) {
        self.sessions = SessionTimers::new();
        self.tombstones.reset();
    }

    /// A session was created (its entry applied here, on the leader): its timer starts.
    pub fn session_created(&mut self, session: &Session, now: Instant) {
        if let Some(ttl) = session.ttl() {
            self.sessions.reset(&session.id, self.timed(ttl), now);
        }
    }

    /// A client renews session `id` through this leader: its timer restarts. `false` if no
    /// timer runs for it (destroyed, expired, or without a TTL): Consul's 404 to the renewal.
    pub fn renew(&mut self, fsm: &Fsm, id: &str, now: Instant) -> bool {
        let Some(ttl) = fsm.sessions().get(id).and_then(Session::ttl) else { return false };
        if !self.sessions.contains(id) {
            return false;
        }
        self.sessions.reset(id, self.timed(ttl), now);
        true
    }

    /// Session `id` was destroyed: its timer stops.
    pub fn session_destroyed(&mut self, id: &str) {
        self.sessions.remove(id);
    }

    /// The entry at `index` was applied at `now`: tombstones at or below it may be reaped
    /// once the TTL has passed.
    pub fn applied(&mut self, index: Index, now: Instant) {
        self.tombstones.hint(index, now);
    }

    /// When something next falls due.
    pub fn next_deadline(&self) -> Option<Instant> {
        [self.sessions.next_deadline(), self.tombstones.next_deadline()].into_iter().flatten().min()
    }

    /// The commands due at `now`, to propose: a destroy for each session whose timer ran out,
    /// oldest first, and a reap of the tombstones that expired.
    pub fn due(&mut self, now: Instant) -> Vec<Command> {
        let mut due: Vec<Command> = self
            .sessions
            .expired(now)
            .into_iter()
            .map(|id| Command::SessionDestroy(SessionDestroy { id }))
            .collect();
        if let Some(up_to) = self.tombstones.expired(now) {
            due.push(Command::TombstoneReap(TombstoneReap { up_to }));
        }
        due
    }

    /// How many session timers run.
    pub fn sessions_timed(&self) -> usize {
        self.sessions.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fsm::Behavior;

    fn session(id: &str, ttl: &str) -> Session {
        Session {
            id: id.into(),
            name: String::new(),
            node: "n".into(),
            lock_delay_ms: 0,
            behavior: Behavior::Release,
            ttl: ttl.into(),
            node_checks: Vec::new(),
            service_checks: Vec::new(),
            create_index: 0,
            modify_index: 0,
        }
    }

    fn at(secs: u64) -> Instant {
        Instant::from_millis(secs * 1000)
    }

    #[test]
    fn a_session_ends_at_twice_its_ttl_after_its_last_renewal_and_not_before() {
        let mut duties = LeaderDuties::new(Duration::from_secs(900));
        duties.session_created(&session("s", "10s"), at(0));
        duties.session_created(&session("none", ""), at(0));
        assert_eq!(duties.sessions_timed(), 1, "a session without a TTL has no timer");
        assert!(duties.due(at(19)).is_empty());
        assert_eq!(duties.due(at(20)), [Command::SessionDestroy(SessionDestroy { id: "s".into() })]);
        assert!(duties.due(at(40)).is_empty(), "destroyed once");
    }

    #[test]
    fn leaving_office_stops_every_timer_and_the_tombstone_clock() {
        let mut duties = LeaderDuties::new(Duration::from_secs(30));
        duties.session_created(&session("s", "10s"), at(0));
        duties.applied(5, at(0));
        duties.leave_office();
        assert_eq!(duties.next_deadline(), None);
        assert!(duties.due(at(100)).is_empty());
    }

    #[test]
    fn tombstones_are_reaped_up_to_what_was_applied_once_the_ttl_passes() {
        let mut duties = LeaderDuties::new(Duration::from_secs(30));
        duties.applied(7, at(1));
        assert!(duties.due(at(2)).is_empty());
        let deadline = duties.next_deadline().expect("a bucket waits");
        assert_eq!(duties.due(deadline), [Command::TombstoneReap(TombstoneReap { up_to: 7 })]);
    }
}
