//! What time decides on the leader, sans-IO: sessions whose TTL ran out are destroyed, and
//! tombstones past their TTL are reaped (Consul's `session_ttl.go` and `TombstoneGC`).
//!
//! The driver tells the duties when its server takes and leaves office, what each applied entry
//! changed ([`LeaderDuties::follow`]) and when a client renews a session; it sleeps until
//! [`LeaderDuties::next_deadline`] and proposes every command [`LeaderDuties::due`] returns.
//! Both the agent (`io/src/http/duties.rs`) and the simulator drive this type, so the decisions
//! the simulator checks (a session lives at least its TTL after a renewal and ends by twice it;
//! a new leader restarts every timer) are the agent's.

use std::time::Duration;

use super::{Command, Fsm, Session, SessionDestroy, SessionTimers, TombstoneGc, TombstoneReap, Touched};
#[cfg(any(test, feature = "invariants"))]
use crate::planted::PlantedBug;
use crate::raft::Index;
use crate::Instant;

/// The leader's timers: session TTLs and tombstone expiry.
#[derive(Debug)]
pub struct LeaderDuties {
    /// Whether this server leads: out of office, nothing is timed and nothing falls due.
    in_office: bool,
    sessions: SessionTimers,
    tombstones: TombstoneGc,
    tombstone_ttl: Duration,
    /// A deliberately broken rule ([`crate::planted`]).
    #[cfg(any(test, feature = "invariants"))]
    planted_bug: Option<PlantedBug>,
}

impl Default for LeaderDuties {
    /// Consul's tombstone TTL.
    fn default() -> LeaderDuties {
        LeaderDuties::new(super::tombstone_gc::TOMBSTONE_TTL)
    }
}

impl LeaderDuties {
    /// Duties that keep tombstones for `tombstone_ttl` (Consul's `tombstone_ttl`, 15 minutes).
    pub fn new(tombstone_ttl: Duration) -> LeaderDuties {
        LeaderDuties {
            in_office: false,
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

    /// Whether this server's duties run (it leads).
    pub fn in_office(&self) -> bool {
        self.in_office
    }

    /// This server took the leadership at `now`, over `fsm` as it stands: every TTL session's
    /// timer restarts at a full period (the old leader's renewals are unknown here), and the
    /// tombstones this leader may reap are those it sees applied from now on.
    pub fn take_office(&mut self, fsm: &Fsm, now: Instant) {
        self.in_office = true;
        self.time_every_session(fsm, now);
        self.tombstones = TombstoneGc::with_ttl(self.tombstone_ttl);
        self.tombstones.hint(fsm.applied(), now);
    }

    /// The leadership is lost: the next leader keeps its own timers.
    pub fn leave_office(&mut self) {
        self.in_office = false;
        self.sessions = SessionTimers::new();
        self.tombstones.reset();
    }

    /// Restarts every TTL session's timer from `fsm`, and forgets the timers of the rest.
    fn time_every_session(&mut self, fsm: &Fsm, now: Instant) {
        self.sessions = SessionTimers::new();
        for session in fsm.sessions().list().1 {
            if let Some(ttl) = session.ttl() {
                self.sessions.reset(&session.id, self.timed(ttl), now);
            }
        }
    }

    /// The entry at `index` was applied at `now`, changing what `touched` lists, leaving `fsm`:
    /// a session created starts its timer, one ended stops it (destroyed, or invalidated by a
    /// failing check or a node leaving), a replaced state (a restore) restarts them all, and
    /// tombstones at or below `index` may be reaped once the TTL has passed. Nothing out of
    /// office.
    pub fn follow(&mut self, fsm: &Fsm, touched: &Touched, index: Index, now: Instant) {
        if !self.in_office {
            return;
        }
        self.tombstones.hint(index, now);
        if touched.all {
            self.time_every_session(fsm, now);
            return;
        }
        for id in &touched.sessions {
            match fsm.sessions().get(id).and_then(Session::ttl) {
                Some(ttl) => self.sessions.reset(id, self.timed(ttl), now),
                None => self.sessions.remove(id),
            }
        }
    }

    /// A client renews session `id` through this leader: its timer restarts. `false` if no
    /// timer runs for it (destroyed, expired, without a TTL, or this server does not lead).
    pub fn renew(&mut self, fsm: &Fsm, id: &str, now: Instant) -> bool {
        let Some(ttl) = fsm.sessions().get(id).and_then(Session::ttl) else { return false };
        if !self.sessions.contains(id) {
            return false;
        }
        self.sessions.reset(id, self.timed(ttl), now);
        true
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

    /// Whether a timer runs for session `id`.
    pub fn times(&self, id: &str) -> bool {
        self.sessions.contains(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fsm::{Applied, Behavior, Deregister, Node, Register};

    /// A state with node `n`, as every session needs one.
    fn state() -> Fsm {
        let mut fsm = Fsm::new();
        let node = Node { node: "n".into(), address: "10.0.0.1".into(), ..Node::default() };
        let register = Register { node, skip_node_update: false, service: None, checks: Vec::new() };
        fsm.apply_command(1, 0, &Command::Register(Box::new(register)));
        fsm
    }

    fn create(id: &str, ttl: &str) -> Command {
        Command::SessionCreate(Session {
            id: id.into(),
            node: "n".into(),
            behavior: Behavior::Release,
            ttl: ttl.into(),
            ..Session::default()
        })
    }

    /// Applies `command` as the next entry and lets `duties` follow it at `now`.
    fn apply(fsm: &mut Fsm, duties: &mut LeaderDuties, command: &Command, now: Instant) -> Applied {
        let index = fsm.applied() + 1;
        let applied = fsm.apply_command(index, 0, command);
        duties.follow(fsm, &applied.touched, index, now);
        applied
    }

    fn at(secs: u64) -> Instant {
        Instant::from_millis(secs * 1000)
    }

    #[test]
    fn a_session_ends_at_twice_its_ttl_after_its_last_renewal_and_not_before() {
        let (mut fsm, mut duties) = (state(), LeaderDuties::new(Duration::from_secs(900)));
        duties.take_office(&fsm, at(0));
        apply(&mut fsm, &mut duties, &create("s", "10s"), at(0));
        apply(&mut fsm, &mut duties, &create("none", ""), at(0));
        assert_eq!(duties.sessions_timed(), 1, "a session without a TTL has no timer");
        assert!(duties.renew(&fsm, "s", at(5)));
        assert!(!duties.renew(&fsm, "none", at(5)), "nothing to renew without a TTL");
        assert!(duties.due(at(24)).is_empty());
        assert_eq!(duties.due(at(25)), [Command::SessionDestroy(SessionDestroy { id: "s".into() })]);
        assert!(duties.due(at(60)).is_empty(), "destroyed once");
    }

    #[test]
    fn a_session_ended_by_its_node_leaving_stops_its_timer() {
        let (mut fsm, mut duties) = (state(), LeaderDuties::new(Duration::from_secs(900)));
        duties.take_office(&fsm, at(0));
        apply(&mut fsm, &mut duties, &create("s", "10s"), at(0));
        assert!(duties.times("s"));
        let leave = Command::Deregister(Deregister { node: "n".into(), service_id: None, check_id: None });
        let applied = apply(&mut fsm, &mut duties, &leave, at(1));
        assert_eq!(applied.touched.sessions, ["s"], "the node's session ends with it");
        assert!(!duties.times("s"));
    }

    #[test]
    fn out_of_office_nothing_is_timed_and_a_new_leader_times_every_session_afresh() {
        let (mut fsm, mut duties) = (state(), LeaderDuties::new(Duration::from_secs(900)));
        apply(&mut fsm, &mut duties, &create("s", "10s"), at(0));
        assert_eq!((duties.sessions_timed(), duties.next_deadline()), (0, None), "a follower times nothing");
        duties.take_office(&fsm, at(100));
        assert!(duties.due(at(119)).is_empty(), "a full period from taking office");
        assert_eq!(duties.due(at(120)).len(), 1);
        duties.leave_office();
        apply(&mut fsm, &mut duties, &create("t", "10s"), at(130));
        assert_eq!((duties.sessions_timed(), duties.next_deadline()), (0, None));
        assert!(duties.due(at(1000)).is_empty());
    }

    #[test]
    fn tombstones_are_reaped_up_to_what_was_applied_once_the_ttl_passes() {
        let (mut fsm, mut duties) = (state(), LeaderDuties::new(Duration::from_secs(30)));
        duties.take_office(&fsm, at(1));
        let delete = Command::KvDelete(crate::fsm::KvDelete { key: "k".into() });
        apply(&mut fsm, &mut duties, &delete, at(1));
        assert!(duties.due(at(2)).is_empty());
        let deadline = duties.next_deadline().expect("a bucket waits");
        assert_eq!(duties.due(deadline), [Command::TombstoneReap(TombstoneReap { up_to: 2 })]);
    }
}
