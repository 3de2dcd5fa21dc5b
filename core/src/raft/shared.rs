//! What every role holds: the term and vote, the log and its commit and apply points, the
//! membership, the ordering of writes before the messages that depend on them, and the queues
//! of outputs. A role's own state lives in [`super::RoleState`]; the two are apart so that a
//! leader's handlers can borrow both at once.

use std::collections::{BTreeSet, VecDeque};

use super::log::Log;
use super::snapshot::Incoming;
use super::{
    Config, Event, HardState, Index, Membership, Persist, PersistId, Role, ServerId, Snapshot, Stats, Term,
    Transmit,
};
use crate::{Instant, Monotonic, Rng};

/// The state shared by every role (raft-rs's `RaftCore`).
#[derive(Debug)]
pub(super) struct Shared {
    pub(super) config: Config,
    pub(super) clock: Monotonic,
    pub(super) rng: Rng,
    pub(super) hard: HardState,
    pub(super) log: Log,
    /// The latest membership in the log (or the bootstrap one), and the index of its entry
    /// (0 for the bootstrap one).
    pub(super) membership: Membership,
    pub(super) membership_index: Index,
    pub(super) commit: Index,
    /// Entries through this index have been handed to the application.
    pub(super) applied: Index,
    /// Entries through this index are durable here.
    pub(super) durable_index: Index,
    /// The latest snapshot, taken here or installed from a leader: what lagging followers get.
    pub(super) snapshot: Option<Snapshot>,
    /// A snapshot the application has yet to load (it precedes any entry in `poll_apply`).
    pub(super) snapshot_to_apply: Option<Snapshot>,
    /// [`super::Event::SnapshotDue`] was emitted and no snapshot has come since.
    pub(super) snapshot_asked: bool,
    /// The snapshot a leader is sending this follower, as far as it arrived.
    pub(super) incoming: Option<Incoming>,
    pub(super) election_deadline: Instant,
    /// When a leader was last heard from, for leader stickiness.
    pub(super) leader_contact: Option<Instant>,
    /// Heartbeat rounds this follower answered lately: term, round, when.
    pub(super) answered: VecDeque<(Term, u64, Instant)>,
    /// Leaders' whole commit indexes, each with the answer time that vouches for it (see
    /// [`super::Raft::caught_up_at`]), oldest first, until this server has applied through them.
    pub(super) caught_up_pending: VecDeque<(Index, Instant)>,
    /// The latest instant at which this server's applied state held everything its leader had
    /// committed ([`super::Raft::caught_up_at`]).
    pub(super) caught_up_at: Option<Instant>,
    /// The log write under construction in this step.
    pub(super) pending: Option<Persist>,
    pub(super) persists: VecDeque<Persist>,
    pub(super) persist_issued: u64,
    pub(super) persist_durable: u64,
    /// For each persist not yet acknowledged, the last log index it leaves durable.
    pub(super) persist_log_ends: VecDeque<(u64, Index)>,
    /// Messages waiting for a persist, each behind the newest persist issued when it was made.
    pub(super) held: VecDeque<(u64, Transmit)>,
    pub(super) ready: VecDeque<Transmit>,
    pub(super) events: VecDeque<Event>,
    /// The role, term and leader last reported in an [`Event::Role`].
    pub(super) reported: (Role, Term, Option<ServerId>),
    pub(super) stats: Stats,
}

impl Shared {
    /// Whether this server has committed an entry of its own term, and so (as a leader) knows
    /// the commit index: its no-op is the first such entry.
    pub(super) fn committed_in_term(&self) -> bool {
        self.log.term_at(self.commit) == Some(self.hard.term)
    }

    /// Whether `servers` include a majority of the voters.
    pub(super) fn has_quorum(&self, servers: &BTreeSet<ServerId>) -> bool {
        let voters = &self.membership.voters;
        !voters.is_empty() && servers.intersection(voters).count() > voters.len() / 2
    }

    pub(super) fn is_voter(&self) -> bool {
        self.membership.voters.contains(&self.config.id)
    }

    pub(super) fn is_sole_voter(&self) -> bool {
        self.membership.voters.len() == 1 && self.is_voter()
    }

    /// Every other member, voter or learner: whom a leader replicates to.
    pub(super) fn peers(&self) -> impl Iterator<Item = ServerId> + '_ {
        let members = self.membership.voters.iter().chain(&self.membership.learners);
        members.copied().filter(move |&id| id != self.config.id)
    }

    /// Every other voter: whom a candidate asks.
    pub(super) fn voter_peers(&self) -> Vec<ServerId> {
        self.membership.voters.iter().copied().filter(|&id| id != self.config.id).collect()
    }

    /// The index of the latest snapshot (0 without one).
    pub(super) fn snapshot_index(&self) -> Index {
        self.snapshot.as_ref().map_or(0, |s| s.meta.index)
    }

    pub(super) fn reset_election_timer(&mut self, now: Instant) {
        let timeout =
            self.rng.duration_between(self.config.election_timeout, self.config.election_timeout * 2);
        self.election_deadline = now + timeout;
    }

    /// Queues a message that may only leave once everything persisted so far is durable.
    pub(super) fn send(&mut self, to: ServerId, message: super::Message) {
        let barrier = self.persist_issued + u64::from(self.pending.is_some());
        self.held.push_back((barrier, Transmit { to, message }));
    }

    /// Queues a message that promises nothing about this server's disk, so it leaves at once.
    pub(super) fn send_now(&mut self, to: ServerId, message: super::Message) {
        self.ready.push_back(Transmit { to, message });
    }

    /// The write this step makes, started if none is yet.
    pub(super) fn pending_persist(&mut self) -> &mut Persist {
        let id = self.persist_issued + 1;
        self.pending.get_or_insert_with(|| Persist {
            id: PersistId(id),
            hard_state: None,
            snapshot: None,
            truncate_from: None,
            entries: Vec::new(),
        })
    }

    pub(super) fn hard_state_changed(&mut self) {
        let hard = self.hard;
        self.pending_persist().hard_state = Some(hard);
    }

    /// Drops the log from `index` on, on disk too: no write in flight or made counts as durable
    /// past the cut, and this step's write neither appends past it nor keeps an earlier cut.
    pub(super) fn truncate_durable_from(&mut self, index: Index) {
        self.durable_index = self.durable_index.min(index - 1);
        for (_, end) in self.persist_log_ends.iter_mut() {
            *end = (*end).min(index - 1);
        }
        let pending = self.pending_persist();
        pending.truncate_from = Some(pending.truncate_from.map_or(index, |t| t.min(index)));
        pending.entries.retain(|e| e.index < index);
    }

    /// Issues this step's write, if it made one.
    pub(super) fn issue_persist(&mut self) {
        if let Some(persist) = self.pending.take() {
            self.persist_issued = persist.id.0;
            self.persist_log_ends.push_back((persist.id.0, self.log.last_index()));
            self.persists.push_back(persist);
        }
    }
}
