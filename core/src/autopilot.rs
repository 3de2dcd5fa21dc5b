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
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::raft::{Index, Membership, MembershipChange, ServerId};
use crate::swim::Status;
use crate::Instant;

/// Autopilot's settings: Consul's `autopilot` block, kept in the replicated state once the
/// first leader writes it (`/v1/operator/autopilot/configuration` changes it there).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Config {
    /// Remove servers gossip declares failed.
    pub cleanup_dead_servers: bool,
    /// How long a server may go unheard by the leader and stay healthy.
    pub last_contact_threshold: Duration,
    /// How many entries a healthy server may trail the leader's log by.
    pub max_trailing_logs: u64,
    /// The fewest voters autopilot leaves when it removes failed ones (0: no floor).
    pub min_quorum: u32,
    /// How long a learner must stay healthy before it votes.
    pub server_stabilization: Duration,
    /// Consul Enterprise's redundancy zones: kept and shown, not acted on.
    pub redundancy_zone_tag: String,
    /// Consul Enterprise's upgrade migrations: kept and shown, not acted on.
    pub disable_upgrade_migration: bool,
    /// Consul Enterprise's upgrade version tag: kept and shown, not acted on.
    pub upgrade_version_tag: String,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            cleanup_dead_servers: true,
            last_contact_threshold: Duration::from_millis(200),
            max_trailing_logs: 250,
            min_quorum: 0,
            server_stabilization: Duration::from_secs(10),
            redundancy_zone_tag: String::new(),
            disable_upgrade_migration: false,
            upgrade_version_tag: String::new(),
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
    /// How long ago the leader last heard from each other member (missing: never).
    pub last_contact: &'a BTreeMap<ServerId, Duration>,
}

/// Autopilot's memory between steps: since when each member has been healthy, or unhealthy.
#[derive(Debug, Clone, Default)]
pub struct Autopilot {
    config: Config,
    health: BTreeMap<ServerId, Stability>,
    /// The learners when last observed (their promotions are what [`Autopilot::poll_timeout`] waits for).
    learners: Vec<ServerId>,
}

/// A member's health as autopilot last judged it, and since when it has been so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stability {
    /// Alive in gossip, heard within [`Config::last_contact_threshold`] and within
    /// [`Config::max_trailing_logs`] of the leader's log (the leader itself: alive).
    pub healthy: bool,
    /// When `healthy` last changed (Consul's `StableSince`).
    pub since: Instant,
}

/// The cluster's health as the leader judges it (Consul's `/v1/operator/autopilot/health`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    /// Every member healthy.
    pub healthy: bool,
    /// How many healthy voters could fail with a quorum left.
    pub failure_tolerance: usize,
    /// Each member's health.
    pub servers: BTreeMap<ServerId, Stability>,
}

impl Autopilot {
    /// Autopilot with `config`.
    pub fn new(config: Config) -> Autopilot {
        Autopilot { config, health: BTreeMap::new(), learners: Vec::new() }
    }

    /// Its settings.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Takes new settings (the replicated ones changed); what it learned of health stays.
    pub fn set_config(&mut self, config: Config) {
        self.config = config;
    }

    /// Judges every member's health at `now` and returns it with the cluster's.
    pub fn health(&mut self, now: Instant, view: &View<'_>) -> Health {
        self.observe(now, view);
        let voters = &view.membership.voters;
        let healthy_voters =
            voters.iter().filter(|id| self.health.get(id).is_some_and(|s| s.healthy)).count();
        let quorum = voters.len() / 2 + 1;
        Health {
            healthy: self.health.values().all(|s| s.healthy),
            failure_tolerance: healthy_voters.saturating_sub(quorum),
            servers: self.health.clone(),
        }
    }

    /// Records each member's health at `now`; a server that is no member any more is forgotten.
    fn observe(&mut self, now: Instant, view: &View<'_>) {
        let members: Vec<ServerId> =
            view.membership.voters.iter().chain(&view.membership.learners).copied().collect();
        self.health.retain(|id, _| members.contains(id));
        self.learners = view.membership.learners.iter().copied().collect();
        for id in members {
            let healthy = self.is_healthy(id, view);
            let stability = self.health.entry(id).or_insert(Stability { healthy, since: now });
            if stability.healthy != healthy {
                *stability = Stability { healthy, since: now };
            }
        }
    }

    fn is_healthy(&self, id: ServerId, view: &View<'_>) -> bool {
        let alive = view.servers.iter().any(|s| s.id == id && s.status == Status::Alive);
        if id == view.leader {
            return alive;
        }
        let caught_up = view
            .matched
            .get(&id)
            .is_some_and(|&matched| matched.saturating_add(self.config.max_trailing_logs) >= view.last_index);
        let heard = view.last_contact.get(&id).is_some_and(|&ago| ago <= self.config.last_contact_threshold);
        alive && caught_up && heard
    }

    /// The next membership change to make at `now`, if any. Called again after each change
    /// is committed (or refused), and whenever gossip or time moves.
    pub fn next_change(&mut self, now: Instant, view: &View<'_>) -> Option<MembershipChange> {
        self.observe(now, view);
        let status_of = |id: ServerId| view.servers.iter().find(|s| s.id == id).map(|s| s.status);
        let members = view.membership.voters.iter().chain(&view.membership.learners);

        let left = members.clone().find(|&&id| id != view.leader && status_of(id) == Some(Status::Left));
        if let Some(&id) = left {
            return Some(MembershipChange::Remove(id));
        }
        let new = view.servers.iter().find(|s| s.status == Status::Alive && !view.membership.contains(s.id));
        if let Some(server) = new {
            return Some(MembershipChange::AddLearner(server.id));
        }
        let failed = |id: &&ServerId| **id != view.leader && status_of(**id) == Some(Status::Failed);
        if let Some(id) = self.stable_learner(now, view) {
            // A dead voter makes room first: promoting beside it would only raise the quorum.
            let failed_voters: Vec<ServerId> =
                view.membership.voters.iter().filter(failed).copied().collect();
            let removable = (view.membership.voters.len() - 1) / 2;
            let floor = usize::try_from(self.config.min_quorum).unwrap_or(usize::MAX);
            let above_floor = view.membership.voters.len() > floor;
            return match failed_voters.first() {
                Some(&dead)
                    if self.config.cleanup_dead_servers
                        && failed_voters.len() <= removable
                        && above_floor =>
                {
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

    /// A learner healthy for [`Config::server_stabilization`] at `now`, if one is.
    fn stable_learner(&self, now: Instant, view: &View<'_>) -> Option<ServerId> {
        view.membership.learners.iter().copied().find(|id| {
            self.health.get(id).is_some_and(|s| {
                s.healthy && now.saturating_duration_since(s.since) >= self.config.server_stabilization
            })
        })
    }

    /// When the next promotion falls due, if a learner is on its way to one (the caller's
    /// wake-up: nothing else changes without an input).
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.health
            .iter()
            .filter(|(id, s)| s.healthy && self.learners.contains(id))
            .map(|(_, s)| s.since + self.config.server_stabilization)
            .min()
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

    /// Every server of 1..=9 heard from just now.
    fn heard_now() -> BTreeMap<ServerId, Duration> {
        (1..=9).map(|id| (id, Duration::ZERO)).collect()
    }

    fn at(secs: u64) -> Instant {
        Instant::ZERO + Duration::from_secs(secs)
    }

    /// What leader 1 sees with its log at index 10.
    fn view_of<'a>(
        membership: &'a Membership,
        servers: &'a [GossipServer],
        matched: &'a BTreeMap<ServerId, Index>,
        last_contact: &'a BTreeMap<ServerId, Duration>,
    ) -> View<'a> {
        View { leader: 1, membership, servers, last_index: 10, matched, last_contact }
    }

    #[test]
    fn a_new_server_joins_as_a_learner_and_votes_after_stabilizing() {
        let mut autopilot = Autopilot::default();
        let heard = heard_now();
        let gossip =
            servers(&[(1, Status::Alive), (2, Status::Alive), (3, Status::Alive), (4, Status::Alive)]);
        let matched: BTreeMap<ServerId, Index> = [(2, 100), (3, 100)].into_iter().collect();
        let three = membership(&[1, 2, 3], &[]);
        let view = View { last_index: 100, ..view_of(&three, &gossip, &matched, &heard) };
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
        let heard = heard_now();
        let members = membership(&[1, 2, 3], &[4]);
        let matched: BTreeMap<ServerId, Index> = [(2, 10), (3, 10), (4, 10)].into_iter().collect();
        let alive =
            servers(&[(1, Status::Alive), (2, Status::Alive), (3, Status::Alive), (4, Status::Alive)]);
        let view = view_of(&members, &alive, &matched, &heard);
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
        let heard = heard_now();
        let five = membership(&[1, 2, 3, 4, 5], &[]);
        let matched: BTreeMap<ServerId, Index> = [(6, 10)].into_iter().collect();
        let gossip = servers(&[
            (1, Status::Alive),
            (2, Status::Failed),
            (3, Status::Failed),
            (4, Status::Left),
            (5, Status::Alive),
        ]);
        let view = view_of(&five, &gossip, &matched, &heard);
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
        let heard = heard_now();
        let members = membership(&[1, 2, 3], &[4]);
        let matched = BTreeMap::new();
        let gossip =
            servers(&[(1, Status::Alive), (2, Status::Alive), (3, Status::Alive), (4, Status::Failed)]);
        let view = view_of(&members, &gossip, &matched, &heard);
        assert_eq!(autopilot.next_change(at(0), &view), Some(MembershipChange::Remove(4)));
    }

    #[test]
    fn absent_servers_and_the_leader_itself_are_never_removed() {
        let mut autopilot = Autopilot::default();
        let heard = heard_now();
        let three = membership(&[1, 2, 3], &[]);
        let matched = BTreeMap::new();
        let gossip = servers(&[(1, Status::Left)]);
        let view = view_of(&three, &gossip, &matched, &heard);
        assert_eq!(autopilot.next_change(at(0), &view), None);
    }

    #[test]
    fn health_counts_silence_past_the_threshold_and_failure_tolerance_counts_healthy_voters() {
        let mut autopilot = Autopilot::default();
        let five = membership(&[1, 2, 3, 4, 5], &[]);
        let matched: BTreeMap<ServerId, Index> = (2..=5).map(|id| (id, 10)).collect();
        let gossip = servers(&[
            (1, Status::Alive),
            (2, Status::Alive),
            (3, Status::Alive),
            (4, Status::Alive),
            (5, Status::Failed),
        ]);
        let mut heard = heard_now();
        heard.insert(4, Duration::from_millis(201));
        let view = view_of(&five, &gossip, &matched, &heard);
        let health = autopilot.health(at(3), &view);
        let healthy: Vec<ServerId> =
            health.servers.iter().filter(|(_, s)| s.healthy).map(|(&id, _)| id).collect();
        assert_eq!(healthy, [1, 2, 3], "4 unheard for 201 ms, 5 failed");
        assert!(!health.healthy);
        assert_eq!(health.failure_tolerance, 0, "three healthy voters of five: none to spare");
        assert_eq!(health.servers[&4].since, at(3));

        let mut heard_again = heard.clone();
        heard_again.insert(4, Duration::from_millis(200));
        let view = View { last_contact: &heard_again, ..view };
        let health = autopilot.health(at(5), &view);
        assert_eq!(health.failure_tolerance, 1);
        assert_eq!(health.servers[&4], Stability { healthy: true, since: at(5) });
        assert_eq!(health.servers[&2].since, at(3), "unchanged health keeps its time");
    }

    #[test]
    fn min_quorum_keeps_failed_voters_seated() {
        let mut autopilot = Autopilot::new(Config { min_quorum: 3, ..Config::default() });
        let heard = heard_now();
        let with_learner = membership(&[1, 2, 3], &[4]);
        let matched: BTreeMap<ServerId, Index> = [(2, 10), (3, 10), (4, 10)].into_iter().collect();
        let gossip =
            servers(&[(1, Status::Alive), (2, Status::Alive), (3, Status::Failed), (4, Status::Alive)]);
        let view = view_of(&with_learner, &gossip, &matched, &heard);
        assert_eq!(autopilot.next_change(at(0), &view), None);
        assert_eq!(
            autopilot.next_change(at(10), &view),
            Some(MembershipChange::Promote(4)),
            "3 voters: at the floor"
        );
        autopilot.set_config(Config::default());
        assert_eq!(autopilot.next_change(at(10), &view), Some(MembershipChange::Remove(3)));
    }
}
