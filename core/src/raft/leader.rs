//! What only a leader holds: each follower's progress, its heartbeat rounds and the reads
//! waiting on them, its lease, and a leadership transfer under way. The leader's handlers are
//! methods of [`Leader`] that take the [`Shared`] state beside it; one that finds the leader
//! must step down says so with [`Lead::StepDown`], and [`super::Raft`] makes the change.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use super::shared::Shared;
use super::snapshot::SnapshotSend;
use super::{Event, Index, Payload, ServerId, SERVERS_MAX};
use crate::Instant;

/// A follower as the leader tracks it (raft-rs's `Progress`).
#[derive(Debug, Clone)]
pub(super) struct Progress {
    /// The highest index known to match.
    pub(super) match_index: Index,
    /// The next index to send.
    pub(super) next_index: Index,
    /// Probing: one append at a time until one is accepted. Replicating: pipelined.
    pub(super) probing: bool,
    /// While probing: an append is out and unanswered.
    pub(super) probe_sent: bool,
    /// While replicating: the last index of each append in flight.
    pub(super) inflight: VecDeque<Index>,
    /// Answered anything since the last check-quorum.
    pub(super) active: bool,
    /// The newest heartbeat round it answered.
    pub(super) round_acked: u64,
    /// Behind the log's base: receiving the snapshot instead of entries.
    pub(super) snapshot: Option<SnapshotSend>,
}

impl Progress {
    pub(super) fn new(next_index: Index) -> Progress {
        Progress {
            match_index: 0,
            next_index,
            probing: true,
            probe_sent: false,
            inflight: VecDeque::new(),
            active: false,
            round_acked: 0,
            snapshot: None,
        }
    }

    /// Back to probing from `next_index`, with nothing in flight.
    pub(super) fn probe(&mut self) {
        self.probing = true;
        self.probe_sent = false;
        self.inflight.clear();
    }
}

/// The state of a server while it leads.
#[derive(Debug, Clone)]
pub(super) struct Leader {
    /// Every other member, voter or learner, by id.
    pub(super) progress: BTreeMap<ServerId, Progress>,
    pub(super) heartbeat_next: Instant,
    pub(super) check_quorum_next: Instant,
    /// The newest heartbeat round started, and when each unconfirmed one was sent.
    pub(super) round: u64,
    pub(super) rounds_sent: VecDeque<(u64, Instant)>,
    /// Reads waiting for their round: (round, ctx, read index).
    pub(super) reads: VecDeque<(u64, u64, Index)>,
    /// Reads whose round is confirmed, waiting for their index to be applied.
    pub(super) reads_confirmed: VecDeque<(u64, Index)>,
    /// The lease holds until this instant.
    pub(super) lease_until: Option<Instant>,
    /// A leadership transfer under way: the target, and when to give up on it.
    pub(super) transfer: Option<(ServerId, Instant)>,
}

/// Whether a leader goes on leading after one of its handlers.
#[must_use = "a leader told to step down must become a follower"]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Lead {
    /// It still leads.
    On,
    /// It lost its quorum, or the committed membership leaves it out.
    StepDown,
}

impl Leader {
    /// A server that has just won an election at `now`: it appends its no-op, starts
    /// replicating and sends its first heartbeat round.
    pub(super) fn elected(now: Instant, shared: &mut Shared) -> Leader {
        shared.stats.leaderships += 1;
        let next = shared.log.last_index() + 1;
        let mut leader = Leader {
            progress: shared.peers().map(|peer| (peer, Progress::new(next))).collect(),
            heartbeat_next: now,
            check_quorum_next: now + shared.config.election_timeout,
            round: 0,
            rounds_sent: VecDeque::new(),
            reads: VecDeque::new(),
            reads_confirmed: VecDeque::new(),
            lease_until: None,
            transfer: None,
        };
        leader.append(shared, Payload::Noop);
        leader.replicate_all(now, shared);
        leader.broadcast_heartbeat(now, shared);
        leader
    }

    /// Check-quorum (thesis §6.2): steps down unless a majority answered anything since the
    /// last check, an election timeout ago.
    pub(super) fn check_quorum(&mut self, now: Instant, shared: &mut Shared) -> Lead {
        self.check_quorum_next = now + shared.config.election_timeout;
        let mut active = BTreeSet::from([shared.config.id]);
        for (&peer, progress) in self.progress.iter_mut() {
            if std::mem::take(&mut progress.active) {
                active.insert(peer);
            }
        }
        if shared.has_quorum(&active) {
            return Lead::On;
        }
        shared.stats.quorum_lost += 1;
        Lead::StepDown
    }

    /// The largest value a majority of voters has reached: this server's own value, if it
    /// votes, and each other voter's from its progress.
    pub(super) fn quorum_value(&self, shared: &Shared, own: u64, value: impl Fn(&Progress) -> u64) -> u64 {
        // On every acknowledgement: no allocation, memberships hold at most SERVERS_MAX.
        let mut values = [0u64; SERVERS_MAX];
        let voters = shared.membership.voters.len();
        for (slot, &id) in values.iter_mut().zip(&shared.membership.voters) {
            *slot = if id == shared.config.id { own } else { self.progress.get(&id).map_or(0, &value) };
        }
        let values = &mut values[..voters];
        values.sort_unstable_by(|a, b| b.cmp(a));
        values[voters / 2]
    }

    /// Fails every read still waiting: leadership is lost, and the reader retries at the new
    /// leader.
    pub(super) fn step_down(self, events: &mut VecDeque<Event>) {
        let waiting = self.reads.into_iter().map(|(_, ctx, _)| ctx);
        let confirmed = self.reads_confirmed.into_iter().map(|(ctx, _)| ctx);
        events.extend(waiting.chain(confirmed).map(|ctx| Event::ReadFailed { ctx }));
    }
}
