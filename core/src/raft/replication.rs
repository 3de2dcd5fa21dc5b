//! Log replication (§5.3): the leader's pipelined, batched appends and their answers, the
//! follower's side of an append, and the commit rule (§5.4.2).

use super::leader::{Lead, Leader};
use super::shared::Shared;
use super::{AppendResult, Entry, Index, Message, Payload, PlantedBug, ServerId, Term};
use crate::Instant;

impl Leader {
    /// Appends an entry of this term to the leader's log; it is replicated by the next
    /// [`Leader::replicate`].
    pub(super) fn append(&mut self, shared: &mut Shared, payload: Payload) -> Index {
        let entry = Entry { index: shared.log.last_index() + 1, term: shared.hard.term, payload };
        let index = entry.index;
        shared.log.append(std::slice::from_ref(&entry));
        if shared.note_memberships(std::slice::from_ref(&entry)) {
            self.track_members(shared);
        }
        shared.pending_persist().entries.push(entry);
        if shared.config.bug(PlantedBug::CommitWithoutQuorum) {
            shared.commit = index;
        }
        index
    }

    pub(super) fn replicate_all(&mut self, now: Instant, shared: &mut Shared) {
        for peer in shared.peers().collect::<Vec<_>>() {
            self.replicate(now, shared, peer);
        }
    }

    /// Sends `peer` what it lacks, as far as its state allows: one append while probing, a
    /// pipeline of appends while replicating.
    pub(super) fn replicate(&mut self, now: Instant, shared: &mut Shared, peer: ServerId) {
        let last_index = shared.log.last_index();
        let base = shared.log.base().0;
        loop {
            let progress = self.progress.get_mut(&peer).expect("a leader tracks every member");
            if progress.snapshot.is_some() || progress.next_index <= base {
                // What it lacks is compacted away: the snapshot instead.
                return self.send_snapshot_chunk(now, shared, peer);
            }
            if progress.probing {
                if progress.probe_sent {
                    return;
                }
            } else if progress.next_index > last_index
                || progress.inflight.len() >= shared.config.inflight_appends_max
            {
                return;
            }
            let prev_index = progress.next_index - 1;
            let prev_term = shared.log.term_at(prev_index).expect("next_index is past the base");
            let entries = shared.log.slice(
                progress.next_index,
                shared.config.entries_per_append_max,
                shared.config.append_bytes_max,
            );
            let sent_through = prev_index + entries.len() as Index;
            if progress.probing {
                progress.probe_sent = true;
            } else {
                progress.inflight.push_back(sent_through);
                progress.next_index = sent_through + 1;
            }
            let probing = progress.probing;
            let (term, commit) = (shared.hard.term, shared.commit);
            shared.send_now(peer, Message::AppendEntries { term, prev_index, prev_term, entries, commit });
            if probing {
                return;
            }
        }
    }

    /// Sends `TimeoutNow` to the transfer's target once its log matches this leader's.
    pub(super) fn maybe_hand_over(&self, shared: &mut Shared, peer: ServerId) {
        if self.transfer.is_some_and(|(target, _)| target == peer)
            && self.progress[&peer].match_index == shared.log.last_index()
        {
            shared.send_now(peer, Message::TimeoutNow { term: shared.hard.term });
        }
    }

    /// Commits the highest index a majority holds durably, if it is of this term (§5.4.2).
    pub(super) fn maybe_commit(&mut self, shared: &mut Shared) -> Lead {
        let own = if shared.config.bug(PlantedBug::AckBeforeFsync) {
            shared.log.last_index()
        } else {
            shared.durable_index
        };
        let quorum_index = self.quorum_value(shared, own, |p| p.match_index);
        if quorum_index <= shared.commit || shared.log.term_at(quorum_index) != Some(shared.hard.term) {
            return Lead::On;
        }
        shared.commit = quorum_index;
        self.release_reads(shared);
        // A leader the committed membership leaves out hands over by stepping down; the
        // remaining voters elect one of their own (thesis §4.2.2).
        if shared.membership_index <= shared.commit && !shared.is_voter() {
            return Lead::StepDown;
        }
        Lead::On
    }

    pub(super) fn handle_append_response(
        &mut self,
        now: Instant,
        shared: &mut Shared,
        from: ServerId,
        prev_index: Index,
        result: AppendResult,
    ) -> Lead {
        let progress = self.progress.get_mut(&from).expect("checked by Raft::leader_tracking");
        progress.active = true;
        match result {
            AppendResult::Accepted { match_index } => {
                if match_index > shared.log.last_index() {
                    // Only a confused follower claims entries this leader never sent.
                    shared.stats.messages_ignored += 1;
                    return Lead::On;
                }
                progress.match_index = progress.match_index.max(match_index);
                if progress.snapshot.is_some() && match_index >= shared.log.base().0 {
                    // An append in flight before the transfer began reached it: the log will do.
                    progress.snapshot = None;
                    progress.probing = true;
                }
                progress.next_index = progress.next_index.max(match_index + 1);
                while progress.inflight.front().is_some_and(|&end| end <= match_index) {
                    progress.inflight.pop_front();
                }
                if progress.probing {
                    progress.probing = false;
                    progress.probe_sent = false;
                    progress.inflight.clear();
                    progress.next_index = progress.match_index + 1;
                }
                if self.maybe_commit(shared) == Lead::StepDown {
                    // Its own removal committed.
                    return Lead::StepDown;
                }
                self.maybe_hand_over(shared, from);
            }
            AppendResult::Rejected { conflict_index, conflict_term } => {
                // Stale: an answer to an append sent before the follower matched further, or to
                // one other than the probe now out, or from before a snapshot transfer began.
                let stale = if progress.snapshot.is_some() {
                    true
                } else if progress.probing {
                    prev_index + 1 != progress.next_index
                } else {
                    prev_index <= progress.match_index
                };
                if stale {
                    shared.stats.messages_ignored += 1;
                    return Lead::On;
                }
                let hinted = match conflict_term.and_then(|term| shared.log.last_index_of_term(term)) {
                    Some(last) => last + 1,
                    None => conflict_index,
                };
                progress.next_index =
                    hinted.clamp(progress.match_index + 1, prev_index.max(progress.match_index + 1));
                progress.probe();
            }
        }
        self.replicate(now, shared, from);
        Lead::On
    }

    pub(super) fn handle_heartbeat_response(
        &mut self,
        now: Instant,
        shared: &mut Shared,
        from: ServerId,
        round: u64,
    ) {
        let progress = self.progress.get_mut(&from).expect("checked by Raft::leader_tracking");
        progress.active = true;
        progress.round_acked = progress.round_acked.max(round);
        // A lost append leaves a follower behind with nothing in flight to reveal it: a probe
        // (possibly empty) makes it answer with where it stands.
        let behind = progress.match_index < shared.log.last_index();
        if let Some(send) = progress.snapshot.as_mut() {
            // A chunk unanswered for two heartbeats was lost (or its answer was): send it again.
            if send.sent_at.is_some_and(|at| now >= at + shared.config.heartbeat_interval * 2) {
                send.sent_at = None;
            }
        } else if behind && progress.probing {
            progress.probe_sent = false;
        } else if behind {
            // An empty append at the pipeline's end: accepted if what is in flight arrived,
            // rejected (and so probed) if some of it was lost. (If the log was compacted past
            // it, `replicate` below turns to the snapshot instead.)
            let prev_index = progress.next_index - 1;
            if let Some(prev_term) = shared.log.term_at(prev_index) {
                let (term, commit) = (shared.hard.term, shared.commit);
                let entries = Vec::new();
                shared
                    .send_now(from, Message::AppendEntries { term, prev_index, prev_term, entries, commit });
            }
        }
        self.confirm_rounds(now, shared);
        self.replicate(now, shared, from);
    }
}

impl Shared {
    /// A follower's side of an append (§5.3): it matches at `prev_index` or is rejected with a
    /// hint; what is already held is skipped, the log is cut at the first conflict and the
    /// rest appended. The answer waits for the write.
    pub(super) fn handle_append(
        &mut self,
        from: ServerId,
        prev_index: Index,
        prev_term: Term,
        entries: Vec<Entry>,
        commit: Index,
    ) {
        let term = self.hard.term;
        if prev_index < self.commit {
            // Everything through the commit index matches the leader's log already; answer from
            // there so the leader moves on.
            let skip = (self.commit - prev_index) as usize;
            if skip >= entries.len() {
                let result = AppendResult::Accepted { match_index: self.commit };
                return self.send(from, Message::AppendResponse { term, prev_index, result });
            }
            let prev_index = self.commit;
            let prev_term = self.log.term_at(prev_index).expect("committed entries are held");
            let entries = entries[skip..].to_vec();
            return self.handle_append(from, prev_index, prev_term, entries, commit);
        }
        if let Some((conflict_index, conflict_term)) = self.mismatch_at(prev_index, prev_term) {
            self.stats.appends_rejected += 1;
            let result = AppendResult::Rejected { conflict_index, conflict_term };
            return self.send(from, Message::AppendResponse { term, prev_index, result });
        }
        let new_from = self.cut_at_conflict(&entries);
        let last_new = prev_index + entries.len() as Index;
        if new_from < entries.len() {
            self.log.append(&entries[new_from..]);
            self.note_memberships(&entries[new_from..]);
            self.pending_persist().entries.extend_from_slice(&entries[new_from..]);
        }
        self.commit = self.commit.max(commit.min(last_new));
        let result = AppendResult::Accepted { match_index: last_new };
        self.send(from, Message::AppendResponse { term, prev_index, result });
    }

    /// Where the log fails to hold `prev_term` at `prev_index`, the rejection's hint: the first
    /// index of the conflicting term and that term, or the index past a shorter log.
    fn mismatch_at(&self, prev_index: Index, prev_term: Term) -> Option<(Index, Option<Term>)> {
        match self.log.term_at(prev_index) {
            None => Some((self.log.last_index() + 1, None)),
            Some(held) if held != prev_term => {
                Some((self.log.first_index_of_term_at(prev_index), Some(held)))
            }
            Some(_) => None,
        }
    }

    /// Skips the entries already held and cuts the log (on disk too) at the first one that
    /// conflicts. Returns the position in `entries` from which they are new.
    fn cut_at_conflict(&mut self, entries: &[Entry]) -> usize {
        for (i, entry) in entries.iter().enumerate() {
            match self.log.term_at(entry.index) {
                Some(held) if held == entry.term => continue,
                Some(_) if self.config.bug(PlantedBug::KeepConflictingSuffix) => continue,
                Some(_) => {
                    assert!(entry.index > self.commit, "a committed entry never conflicts (log matching)");
                    self.log.truncate_from(entry.index);
                    if self.membership_index >= entry.index {
                        // The membership in effect came from a dropped entry: back to the one before.
                        self.restore_membership();
                    }
                    self.truncate_durable_from(entry.index);
                    return i;
                }
                None => return i,
            }
        }
        entries.len()
    }
}
