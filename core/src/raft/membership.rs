//! Membership changes one server at a time (thesis §4.1): learners, promotion, removal. A new
//! membership takes effect on every server as soon as its entry is in the log, committed or
//! not; a leader starts and stops tracking the servers it adds and removes.

use std::collections::BTreeSet;

use super::leader::{Leader, Progress};
use super::log::Log;
use super::shared::Shared;
use super::{
    Config, Entry, Index, Membership, MembershipChange, Payload, ProposeError, Raft, ServerId, Snapshot,
    SERVERS_MAX,
};
use crate::Instant;

impl Raft {
    /// Proposes one membership change (thesis §4.1): at most one may be uncommitted at a time,
    /// and only once this leader has committed an entry of its term (the rule that makes
    /// single-server changes safe across leader changes). Returns the entry's index.
    pub fn change_membership(
        &mut self,
        now: Instant,
        change: MembershipChange,
    ) -> Result<Index, ProposeError> {
        self.shared.clock.advance(now);
        let (leader, shared) = self.as_leader()?;
        if !shared.committed_in_term() {
            return Err(ProposeError::NotReady);
        }
        if shared.membership_index > shared.commit {
            return Err(ProposeError::Membership("another change is not committed yet"));
        }
        let next = shared.membership.changed(change)?;
        let index = leader.append(shared, Payload::Membership(next));
        leader.replicate_all(now, shared);
        self.finish_step();
        Ok(index)
    }
}

impl Membership {
    /// This membership with `change` made, or why it cannot be.
    fn changed(&self, change: MembershipChange) -> Result<Membership, ProposeError> {
        let mut next = self.clone();
        match change {
            MembershipChange::AddLearner(id) if next.contains(id) => {
                return Err(ProposeError::Membership("already a member"));
            }
            MembershipChange::AddLearner(_) if next.voters.len() + next.learners.len() >= SERVERS_MAX => {
                return Err(ProposeError::Membership("too many servers"));
            }
            MembershipChange::AddLearner(id) => {
                next.learners.insert(id);
            }
            MembershipChange::Promote(id) => {
                if !next.learners.remove(&id) {
                    return Err(ProposeError::Membership("not a learner"));
                }
                next.voters.insert(id);
            }
            MembershipChange::Remove(id) => {
                if next.voters.contains(&id) && next.voters.len() == 1 {
                    return Err(ProposeError::Membership("cannot remove the last voter"));
                }
                if !next.voters.remove(&id) && !next.learners.remove(&id) {
                    return Err(ProposeError::Membership("not a member"));
                }
            }
        }
        Ok(next)
    }

    /// Whether `id` is a voter or a learner.
    pub fn contains(&self, id: ServerId) -> bool {
        self.voters.contains(&id) || self.learners.contains(&id)
    }

    /// `voters:u16 id:u64* learners:u16 id:u64*`, ids ascending.
    pub(crate) fn encode(&self, buf: &mut bytes::BytesMut) {
        use bytes::BufMut;
        for set in [&self.voters, &self.learners] {
            buf.put_u16(set.len() as u16);
            for &id in set {
                buf.put_u64(id);
            }
        }
    }

    /// The inverse of `encode`, strict: ascending ids, no server in both sets, at most
    /// [`SERVERS_MAX`] in all, nothing left over. `None` otherwise.
    pub(crate) fn decode(mut bytes: &[u8]) -> Option<Membership> {
        let mut sets = [BTreeSet::new(), BTreeSet::new()];
        for set in &mut sets {
            let (count, rest) = bytes.split_first_chunk::<2>()?;
            bytes = rest;
            let count = usize::from(u16::from_be_bytes(*count));
            if count > SERVERS_MAX {
                return None;
            }
            for _ in 0..count {
                let (id, rest) = bytes.split_first_chunk::<8>()?;
                bytes = rest;
                let id = u64::from_be_bytes(*id);
                if set.last().is_some_and(|&last| last >= id) {
                    return None;
                }
                set.insert(id);
            }
        }
        let [voters, learners] = sets;
        let valid =
            bytes.is_empty() && voters.is_disjoint(&learners) && voters.len() + learners.len() <= SERVERS_MAX;
        valid.then_some(Membership { voters, learners })
    }

    pub(crate) fn encoded_len(&self) -> usize {
        4 + 8 * (self.voters.len() + self.learners.len())
    }
}

impl Shared {
    /// Adopts the last membership among newly appended entries. Returns whether there was one.
    pub(super) fn note_memberships(&mut self, appended: &[Entry]) -> bool {
        let latest = appended.iter().rev().find_map(|e| match &e.payload {
            Payload::Membership(membership) => Some((membership.clone(), e.index)),
            _ => None,
        });
        let Some((membership, index)) = latest else { return false };
        self.membership = membership;
        self.membership_index = index;
        true
    }

    /// Takes the membership from the log and snapshot again, after the entry that set it was
    /// dropped.
    pub(super) fn restore_membership(&mut self) {
        (self.membership, self.membership_index) =
            latest_membership(&self.log, self.snapshot.as_ref(), &self.config);
    }
}

impl Leader {
    /// Starts replicating to the members just added and stops for those just removed.
    pub(super) fn track_members(&mut self, shared: &Shared) {
        let members: BTreeSet<ServerId> = shared.peers().collect();
        let next = shared.log.last_index() + 1;
        if self.progress.is_empty() && !members.is_empty() {
            // Alone, its timers were not armed (`Raft::poll_timeout`): they start now, as
            // when it was elected, so the first peer hears a heartbeat at once and has a whole
            // election timeout to answer before the quorum is checked.
            let now = shared.clock.last();
            self.heartbeat_next = now;
            self.check_quorum_next = now + shared.config.election_timeout;
        }
        self.progress.retain(|id, _| members.contains(id));
        for id in members {
            self.progress.entry(id).or_insert_with(|| Progress::new(next));
        }
    }
}

/// The last membership in `log`, else the snapshot's, else the bootstrap one from `config`,
/// with the index it took effect at.
pub(super) fn latest_membership(
    log: &Log,
    snapshot: Option<&Snapshot>,
    config: &Config,
) -> (Membership, Index) {
    log.last_membership().unwrap_or_else(|| match snapshot {
        Some(snapshot) => (snapshot.meta.membership.clone(), snapshot.meta.index),
        None => (Membership { voters: config.voters.clone(), learners: BTreeSet::new() }, 0),
    })
}
