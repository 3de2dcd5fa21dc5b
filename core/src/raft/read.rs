//! Reads (thesis §6.4): ReadIndex confirmed by a heartbeat round, the leader lease for
//! default-mode reads, and how fresh a server's applied state is known to be
//! ([`Raft::caught_up_at`], what `X-Consul-LastContact` reports).

use super::leader::Leader;
use super::shared::Shared;
use super::{
    Event, Index, Message, PlantedBug, ProposeError, Raft, RoleState, ANSWERED_ROUNDS_MAX, PENDING_READS_MAX,
};
use crate::Instant;

impl Raft {
    /// Asks for a consistent read (ReadIndex): answered by [`Event::ReadReady`] once a
    /// heartbeat round confirms this server still leads and the commit index it read is
    /// applied, or [`Event::ReadFailed`] if leadership is lost first.
    pub fn read_index(&mut self, now: Instant, ctx: u64) -> Result<(), ProposeError> {
        self.shared.clock.advance(now);
        let (leader, shared) = self.as_leader()?;
        if !shared.committed_in_term() {
            return Err(ProposeError::NotReady);
        }
        if leader.reads.len() >= PENDING_READS_MAX {
            return Err(ProposeError::Busy("pending reads"));
        }
        if shared.is_sole_voter() || shared.config.bug(PlantedBug::ReadWithoutReadIndex) {
            leader.reads_confirmed.push_back((ctx, shared.commit));
        } else {
            // The read waits for the next round sent. One round is out at a time, and each
            // confirms every read asked before it left: reads batch themselves under load.
            leader.reads.push_back((leader.round + 1, ctx, shared.commit));
            if leader.rounds_sent.is_empty() {
                leader.broadcast_heartbeat(now, shared);
            }
        }
        leader.release_reads(shared);
        self.finish_step();
        Ok(())
    }

    /// A default-mode read: the commit index, if this leader's lease still holds (a majority
    /// answered within the lease). The caller serves the read once that index is applied.
    pub fn lease_read(&self, now: Instant) -> Result<Index, ProposeError> {
        self.role.leader()?;
        match self.lease_until() {
            Some(None) => Ok(self.shared.commit),
            Some(Some(until)) if now < until => Ok(self.shared.commit),
            // No lease, or not committed in its term yet.
            _ => Err(ProposeError::NotReady),
        }
    }

    /// Until when this leader may serve default-mode reads from its state without a round of
    /// messages ([`Raft::lease_read`] at any earlier `now` succeeds): `None` when it does not
    /// lead, has not committed in its term, or holds no lease; `Some(None)` when it is the only
    /// voter, whose lease never ends.
    pub fn lease_until(&self) -> Option<Option<Instant>> {
        let RoleState::Leader(leader) = &self.role else { return None };
        if !self.shared.committed_in_term() {
            return None;
        }
        // The planted bug lives here, where both drivers decide: the agent's facade reads this
        // through the server's status, the in-process simulator through `lease_read`.
        if self.shared.is_sole_voter() || self.shared.config.bug(PlantedBug::StaleLeaseRead) {
            return Some(None);
        }
        Some(Some(leader.lease_until?))
    }

    /// The latest instant at which this server's applied state held everything committed. As a
    /// leader: when it sent the latest heartbeat round a majority answered. As a follower: when
    /// it answered a heartbeat round that a later heartbeat from the leader names, with the
    /// leader's whole commit index, once it has applied through that index (the leader sent
    /// it after hearing the answer, so its commit index then covers everything committed
    /// when the answer left). `X-Consul-LastContact` counts from here, so a `?stale` read's
    /// answer is at most that old, give or take a deposed leader's last moments. hashicorp/raft
    /// counts from any append's arrival, so a follower far behind, or reading a backlog,
    /// reports fresh contact; this one does not. `None` before it has caught up once in this
    /// life.
    pub fn caught_up_at(&self) -> Option<Instant> {
        if self.shared.config.bug(PlantedBug::ContactWithoutCatchingUp) {
            return self.shared.leader_contact;
        }
        self.shared.caught_up_at
    }
}

impl Leader {
    /// Starts a heartbeat round: each follower hears the commit index as far as it holds the
    /// log, and, when that is the whole commit index, the newest round it answered (which lets
    /// it date its freshness, see [`Shared::note_leader_commit`]).
    pub(super) fn broadcast_heartbeat(&mut self, now: Instant, shared: &mut Shared) {
        let committed_in_term = shared.committed_in_term();
        self.heartbeat_next = now + shared.config.heartbeat_interval;
        self.round += 1;
        let round = self.round;
        self.rounds_sent.push_back((round, now));
        for (&peer, progress) in &self.progress {
            let commit = shared.commit.min(progress.match_index);
            let whole = committed_in_term && commit == shared.commit;
            let acked = if whole { progress.round_acked } else { 0 };
            shared.send_now(peer, Message::Heartbeat { term: shared.hard.term, commit, round, acked });
        }
    }

    /// Confirms the heartbeat rounds a majority has answered: they extend the lease and release
    /// the reads waiting for them.
    pub(super) fn confirm_rounds(&mut self, now: Instant, shared: &mut Shared) {
        let confirmed = self.quorum_value(shared, self.round, |p| p.round_acked);
        let mut confirmed_sent_at = None;
        while let Some(&(round, sent_at)) = self.rounds_sent.front() {
            if round > confirmed {
                break;
            }
            self.rounds_sent.pop_front();
            // A majority heard from this leader no earlier than `sent_at`, so none of them will
            // vote for another before `sent_at + election_timeout`.
            let until = sent_at + shared.config.leader_lease;
            self.lease_until = Some(self.lease_until.map_or(until, |u| u.max(until)));
            confirmed_sent_at = Some(sent_at);
        }
        while self.reads.front().is_some_and(|&(round, _, _)| round <= confirmed) {
            let (_, ctx, index) = self.reads.pop_front().expect("checked");
            self.reads_confirmed.push_back((ctx, index));
        }
        let waiting = self.reads.front().is_some_and(|&(round, _, _)| round > self.round);
        if waiting && self.rounds_sent.is_empty() {
            self.broadcast_heartbeat(now, shared);
        }
        // No other leader can have been elected, let alone committed, before a majority
        // acknowledged this one's round, so a leader that has committed in its term is as
        // fresh as the round it sent (its `?stale` answers' contact once the lease lapses).
        if shared.committed_in_term() {
            shared.caught_up_at = shared.caught_up_at.max(confirmed_sent_at);
        }
        self.release_reads(shared);
    }

    /// Emits the confirmed reads whose index has been handed to the application.
    pub(super) fn release_reads(&mut self, shared: &mut Shared) {
        while self.reads_confirmed.front().is_some_and(|&(_, index)| index <= shared.applied) {
            let (ctx, index) = self.reads_confirmed.pop_front().expect("checked");
            shared.events.push_back(Event::ReadReady { ctx, index });
        }
    }
}

impl Shared {
    /// Takes a leader's word that `commit` is its whole commit index, in its own term, and
    /// that it had heard this follower's answer to `acked` when it said so: once applied
    /// through `commit`, this server's state is as fresh as when it sent that answer. An
    /// answer's time, not a message's arrival, because a message can arrive long after it was
    /// sent (TCP retransmits a backlog when a partition heals) while an answer cannot be heard
    /// before it was sent.
    pub(super) fn note_leader_commit(&mut self, now: Instant, commit: Index, round: u64, acked: u64) {
        let term = self.hard.term;
        if self.answered.len() == ANSWERED_ROUNDS_MAX {
            self.answered.pop_front();
        }
        self.answered.push_back((term, round, now));
        if acked == 0 {
            return;
        }
        let Some(&(_, _, answered_at)) = self.answered.iter().find(|&&(t, r, _)| t == term && r == acked)
        else {
            return;
        };
        self.answered.retain(|&(t, r, _)| t == term && r > acked);
        if self.caught_up_pending.len() == ANSWERED_ROUNDS_MAX {
            self.caught_up_pending.pop_front();
        }
        self.caught_up_pending.push_back((commit, answered_at));
        self.settle_caught_up();
    }

    /// Moves `caught_up_at` on past every announced commit this server has applied through.
    pub(super) fn settle_caught_up(&mut self) {
        while let Some(&(commit, at)) = self.caught_up_pending.front() {
            if commit > self.applied {
                break;
            }
            self.caught_up_pending.pop_front();
            self.caught_up_at = Some(at);
        }
    }
}
