//! Autopilot: the leader keeps the Raft membership in step with the servers gossip shows
//! (`../shared/reference/consul-behaviour.md` §7; Consul's autopilot, on by default).
//!
//! - A server gossip shows alive that is not a member joins as a **learner** (a non-voter):
//!   it receives the log without weighing on commits while it catches up.
//! - A learner that has been healthy (alive in gossip, within [`Config::max_trailing_logs`]
//!   of the leader's log) for [`Config::server_stabilization`] is **promoted** to voter; any
//!   unhealthy moment restarts that clock.
//! - A member that **left** gracefully is removed.
//! - A learner gossip declares **failed** is removed ([`Config::cleanup_dead_servers`]).
//! - A voter gossip declares failed keeps its seat until a stable learner is waiting for one:
//!   then the dead voter is removed first (while the failed voters are a minority the rest
//!   can outvote, (voters - 1) / 2 at most) and the learner promoted next. This is where
//!   muster departs from Consul, which removes a failed voter at once: a voter that merely
//!   failed (crashed, paused, cut off) restores the cluster's fault tolerance the moment it
//!   returns, whereas a removed one must be added again and stabilize for 10 s first. The
//!   nemesis (`benches/nemesis.sh`) showed the cost of Consul's way: a paused leader was
//!   removed, and the next leader kill left two voters and no quorum.
//!
//! One change at a time (Raft changes the membership by one server per committed entry), in
//! that order of urgency: removals of servers that left, additions, replacing a dead voter
//! by a stable learner, then dead learners. A server gossip does not show at all is left
//! alone: after a leader change gossip may not have caught up yet, and absence proves nothing.

use std::collections::BTreeMap;

use crate::raft::{Index, Membership, MembershipChange, ServerId};
use crate::swim::Status;
use crate::Instant;

/// Autopilot's settings (Consul's `autopilot` block and its defaults).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Remove servers gossip declares failed.
    pub cleanup_dead_servers: bool,
    /// How long a learner must stay healthy before it votes.
    pub server_stabilization: core::time::Duration,
    /// How many entries a healthy server may trail the leader's log by.
    pub max_trailing_logs: u64,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            cleanup_dead_servers: true,
            server_stabilization: core::time::Duration::from_secs(10),
            max_trailing_logs: 250,
        }
    }
}

/// A server as gossip shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GossipServer {
    /// Its Raft ID.
    pub id: ServerId,
    /// Its gossip status.
    pub status: Status,
}

/// What the leader sees when it asks autopilot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct View<'a> {
    /// The leader's own ID.
    pub leader: ServerId,
    /// The membership in effect.
    pub membership: &'a Membership,
    /// The servers of the leader's datacenter in gossip.
    pub servers: &'a [GossipServer],
    /// The leader's last log index.
    pub last_index: Index,
    /// How far each other member's log matches the leader's.
    pub matched: &'a BTreeMap<ServerId, Index>,
}

/// Autopilot's memory between steps: since when each learner has been healthy.
#[derive(Debug, Clone, Default)]
pub struct Autopilot {
    config: Config,
    healthy_since: BTreeMap<ServerId, Instant>,
}

impl Autopilot {
    /// Autopilot with `config`.
    pub fn new(config: Config) -> Autopilot {
        Autopilot { config, healthy_since: BTreeMap::new() }
    }

    /// The next membership change to make at `now`, if any. Called again after each change
    /// is committed (or refused), and whenever gossip or time moves.
    pub fn next_change(&mut self, now: Instant, view: &View<'_>) -> Option<MembershipChange> {
        let status_of = |id: ServerId| view.servers.iter().find(|s| s.id == id).map(|s| s.status);
        let members = view.membership.voters.iter().chain(&view.membership.learners);

        // Track each learner's health; a server that is no learner any more is forgotten.
        self.healthy_since.retain(|id, _| view.membership.learners.contains(id));
        for &id in &view.membership.learners {
            let caught_up = view.matched.get(&id).is_some_and(|&matched| {
                matched.saturating_add(self.config.max_trailing_logs) >= view.last_index
            });
            if status_of(id) == Some(Status::Alive) && caught_up {
                self.healthy_since.entry(id).or_insert(now);
            } else {
                self.healthy_since.remove(&id);
            }
        }

        let left = members.clone().find(|&&id| id != view.leader && status_of(id) == Some(Status::Left));
        if let Some(&id) = left {
            return Some(MembershipChange::Remove(id));
        }
        let new = view.servers.iter().find(|s| s.status == Status::Alive && !view.membership.contains(s.id));
        if let Some(server) = new {
            return Some(MembershipChange::AddLearner(server.id));
        }
        let failed = |id: &&ServerId| **id != view.leader && status_of(**id) == Some(Status::Failed);
        let stable = self
            .healthy_since
            .iter()
            .find(|(_, &since)| now.saturating_duration_since(since) >= self.config.server_stabilization);
        if let Some((&id, _)) = stable {
            // A dead voter makes room first: promoting beside it would only raise the quorum.
            let failed_voters: Vec<ServerId> =
                view.membership.voters.iter().filter(failed).copied().collect();
            let removable = (view.membership.voters.len() - 1) / 2;
            return match failed_voters.first() {
                Some(&dead) if self.config.cleanup_dead_servers && failed_voters.len() <= removable => {
                    Some(MembershipChange::Remove(dead))
                }
                _ => Some(MembershipChange::Promote(id)),
            };
        }
        if !self.config.cleanup_dead_servers {
            return None;
        }
        view.membership.learners.iter().find(failed).map(|&id| MembershipChange::Remove(id))
    }

    /// When the next promotion falls due, if a learner is on its way to one (the caller's
    /// wake-up: nothing else changes without an input).
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.healthy_since.values().map(|&since| since + self.config.server_stabilization).min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;
    use std::time::Duration;

    fn membership(voters: &[ServerId], learners: &[ServerId]) -> Membership {
        Membership {
            voters: voters.iter().copied().collect::<BTreeSet<_>>(),
            learners: learners.iter().copied().collect::<BTreeSet<_>>(),
        }
    }

    fn servers(list: &[(ServerId, Status)]) -> Vec<GossipServer> {
        list.iter().map(|&(id, status)| GossipServer { id, status }).collect()
    }

    fn at(secs: u64) -> Instant {
        Instant::ZERO + Duration::from_secs(secs)
    }

    #[test]
    fn a_new_server_joins_as_a_learner_and_votes_after_stabilizing() {
        let mut autopilot = Autopilot::default();
        let gossip =
            servers(&[(1, Status::Alive), (2, Status::Alive), (3, Status::Alive), (4, Status::Alive)]);
        let matched: BTreeMap<ServerId, Index> = [(2, 100), (3, 100)].into_iter().collect();
        let three = membership(&[1, 2, 3], &[]);
        let view =
            View { leader: 1, membership: &three, servers: &gossip, last_index: 100, matched: &matched };
        assert_eq!(autopilot.next_change(at(0), &view), Some(MembershipChange::AddLearner(4)));

        let with_learner = membership(&[1, 2, 3], &[4]);
        let behind: BTreeMap<ServerId, Index> = [(2, 1000), (3, 1000), (4, 700)].into_iter().collect();
        let view = View { membership: &with_learner, matched: &behind, last_index: 1000, ..view };
        assert_eq!(autopilot.next_change(at(1), &view), None, "300 behind: not healthy");
        assert_eq!(autopilot.poll_timeout(), None);
        let close: BTreeMap<ServerId, Index> = [(2, 1000), (3, 1000), (4, 750)].into_iter().collect();
        let view = View { matched: &close, ..view };
        assert_eq!(autopilot.next_change(at(2), &view), None, "250 behind: caught up, the clock starts");
        assert_eq!(autopilot.poll_timeout(), Some(at(12)));
        assert_eq!(autopilot.next_change(at(11), &view), None);
        assert_eq!(autopilot.next_change(at(12), &view), Some(MembershipChange::Promote(4)));
    }

    #[test]
    fn an_unhealthy_moment_restarts_the_stabilization_clock() {
        let mut autopilot = Autopilot::default();
        let members = membership(&[1, 2, 3], &[4]);
        let matched: BTreeMap<ServerId, Index> = [(2, 10), (3, 10), (4, 10)].into_iter().collect();
        let alive =
            servers(&[(1, Status::Alive), (2, Status::Alive), (3, Status::Alive), (4, Status::Alive)]);
        let view =
            View { leader: 1, membership: &members, servers: &alive, last_index: 10, matched: &matched };
        assert_eq!(autopilot.next_change(at(0), &view), None);
        let mut suspect = alive.clone();
        suspect[3].status = Status::Failed;
        let failing = View { servers: &suspect, ..view.clone() };
        // A failed learner is removed at once; say the operator turned that off.
        autopilot.config.cleanup_dead_servers = false;
        assert_eq!(autopilot.next_change(at(5), &failing), None);
        assert_eq!(autopilot.next_change(at(6), &view), None, "back: the clock restarts at 6");
        assert_eq!(autopilot.next_change(at(15), &view), None);
        assert_eq!(autopilot.next_change(at(16), &view), Some(MembershipChange::Promote(4)));
    }

    #[test]
    fn left_servers_go_first_and_dead_voters_only_make_room_for_a_stable_learner() {
        let mut autopilot = Autopilot::default();
        let five = membership(&[1, 2, 3, 4, 5], &[]);
        let matched: BTreeMap<ServerId, Index> = [(6, 10)].into_iter().collect();
        let gossip = servers(&[
            (1, Status::Alive),
            (2, Status::Failed),
            (3, Status::Failed),
            (4, Status::Left),
            (5, Status::Alive),
        ]);
        let view = View { leader: 1, membership: &five, servers: &gossip, last_index: 10, matched: &matched };
        assert_eq!(autopilot.next_change(at(0), &view), Some(MembershipChange::Remove(4)), "left first");
        let four = membership(&[1, 2, 3, 5], &[]);
        let view = View { membership: &four, ..view };
        assert_eq!(autopilot.next_change(at(0), &view), None, "dead voters keep their seats");

        // A replacement arrives and stabilizes; one dead voter is removed for it, then it votes.
        let with_six = membership(&[1, 2, 3, 5], &[6]);
        let gossip = servers(&[
            (1, Status::Alive),
            (2, Status::Failed),
            (3, Status::Alive),
            (5, Status::Alive),
            (6, Status::Alive),
        ]);
        let view = View { membership: &with_six, servers: &gossip, ..view };
        assert_eq!(autopilot.next_change(at(0), &view), None);
        assert_eq!(autopilot.next_change(at(10), &view), Some(MembershipChange::Remove(2)));
        let three_and_six = membership(&[1, 3, 5], &[6]);
        let view = View { membership: &three_and_six, ..view };
        assert_eq!(autopilot.next_change(at(10), &view), Some(MembershipChange::Promote(6)));

        // Two dead of four: (4 - 1) / 2 = 1 may go, so none does; the learner votes beside them.
        let gossip = servers(&[
            (1, Status::Alive),
            (2, Status::Failed),
            (3, Status::Failed),
            (5, Status::Alive),
            (6, Status::Alive),
        ]);
        let view = View { membership: &with_six, servers: &gossip, ..view };
        assert_eq!(autopilot.next_change(at(10), &view), Some(MembershipChange::Promote(6)));
        let mut off = Autopilot::new(Config { cleanup_dead_servers: false, ..Config::default() });
        assert_eq!(off.next_change(at(0), &view), None);
        assert_eq!(off.next_change(at(10), &view), Some(MembershipChange::Promote(6)));
    }

    #[test]
    fn a_dead_learner_is_removed() {
        let mut autopilot = Autopilot::default();
        let members = membership(&[1, 2, 3], &[4]);
        let matched = BTreeMap::new();
        let gossip =
            servers(&[(1, Status::Alive), (2, Status::Alive), (3, Status::Alive), (4, Status::Failed)]);
        let view =
            View { leader: 1, membership: &members, servers: &gossip, last_index: 10, matched: &matched };
        assert_eq!(autopilot.next_change(at(0), &view), Some(MembershipChange::Remove(4)));
    }

    #[test]
    fn absent_servers_and_the_leader_itself_are_never_removed() {
        let mut autopilot = Autopilot::default();
        let three = membership(&[1, 2, 3], &[]);
        let matched = BTreeMap::new();
        let gossip = servers(&[(1, Status::Left)]);
        let view =
            View { leader: 1, membership: &three, servers: &gossip, last_index: 10, matched: &matched };
        assert_eq!(autopilot.next_change(at(0), &view), None);
    }
}
