//! The messages servers exchange, and which of them a correct peer could send ([`well_formed`]).
//! Their encoding is in [`super::wire`].

use bytes::Bytes;

use super::{wire, Entry, Index, ServerId, SnapshotMeta, Term, SNAPSHOT_BYTES_MAX};

/// The messages servers exchange. Every one carries the sender's term.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// "Could I win an election for `term`?" Sent without raising the sender's term.
    PreVote {
        /// The term the sender would stand in.
        term: Term,
        /// The sender's last log index.
        last_index: Index,
        /// The sender's last log term.
        last_term: Term,
    },
    /// The answer to a [`Message::PreVote`].
    PreVoteResponse {
        /// The asked term when granted; the responder's term otherwise.
        term: Term,
        /// Whether the responder would vote.
        granted: bool,
    },
    /// A candidate asks for a vote.
    RequestVote {
        /// The candidate's term.
        term: Term,
        /// The candidate's last log index.
        last_index: Index,
        /// The candidate's last log term.
        last_term: Term,
        /// The leader handed over to this candidate ([`Message::TimeoutNow`]): voters set
        /// leader stickiness aside.
        transfer: bool,
    },
    /// The answer to a [`Message::RequestVote`].
    VoteResponse {
        /// The responder's term.
        term: Term,
        /// Whether it voted for the candidate.
        granted: bool,
    },
    /// The leader replicates entries following (`prev_index`, `prev_term`).
    AppendEntries {
        /// The leader's term.
        term: Term,
        /// The index just before the entries.
        prev_index: Index,
        /// Its term.
        prev_term: Term,
        /// The entries, possibly none.
        entries: Vec<Entry>,
        /// The leader's commit index.
        commit: Index,
    },
    /// The answer to a [`Message::AppendEntries`].
    AppendResponse {
        /// The responder's term.
        term: Term,
        /// The `prev_index` of the append answered, so the leader can ignore stale answers.
        prev_index: Index,
        /// What became of it.
        result: AppendResult,
    },
    /// The leader asserts its leadership and confirms reads; carries no entries.
    Heartbeat {
        /// The leader's term.
        term: Term,
        /// The commit index, limited to what the follower is known to hold.
        commit: Index,
        /// The read round it confirms.
        round: u64,
        /// The newest round the leader had heard this follower answer, when `commit` is the
        /// leader's whole commit index in its own term; 0 otherwise. It dates the follower's
        /// freshness ([`super::Raft::caught_up_at`]).
        acked: u64,
    },
    /// The answer to a [`Message::Heartbeat`].
    HeartbeatResponse {
        /// The responder's term.
        term: Term,
        /// The round answered.
        round: u64,
    },
    /// The leader hands over: the receiver, whose log is up to date, stands for election at
    /// once (thesis §3.10).
    TimeoutNow {
        /// The leader's term.
        term: Term,
    },
    /// One chunk of the leader's snapshot, for a follower behind the leader's log (§7).
    InstallSnapshot {
        /// The leader's term.
        term: Term,
        /// What the snapshot covers.
        meta: SnapshotMeta,
        /// Where this chunk starts in the snapshot's data.
        offset: u64,
        /// The chunk.
        data: Bytes,
        /// Whether it is the last chunk.
        done: bool,
    },
    /// The answer to a [`Message::InstallSnapshot`].
    SnapshotResponse {
        /// The responder's term.
        term: Term,
        /// The index of the snapshot answered.
        index: Index,
        /// The bytes the responder holds: where the next chunk must start.
        received: u64,
        /// The snapshot is installed (durably: the answer waited), or the responder already
        /// held everything it covers.
        installed: bool,
    },
}

impl Message {
    /// The sender's term.
    pub fn term(&self) -> Term {
        match self {
            Message::PreVote { term, .. }
            | Message::PreVoteResponse { term, .. }
            | Message::RequestVote { term, .. }
            | Message::VoteResponse { term, .. }
            | Message::AppendEntries { term, .. }
            | Message::AppendResponse { term, .. }
            | Message::Heartbeat { term, .. }
            | Message::HeartbeatResponse { term, .. }
            | Message::TimeoutNow { term }
            | Message::InstallSnapshot { term, .. }
            | Message::SnapshotResponse { term, .. } => *term,
        }
    }
}

/// The outcome of an append at a follower.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppendResult {
    /// The log now matches the leader's through `match_index` (durably: the answer waited).
    Accepted {
        /// The last index known to match.
        match_index: Index,
    },
    /// The entry before the append did not match.
    Rejected {
        /// Where the leader should look next: the first index of the conflicting term, or the
        /// follower's last index + 1 if its log is shorter.
        conflict_index: Index,
        /// The term of the follower's entry at `prev_index`, if it has one.
        conflict_term: Option<Term>,
    },
}

/// A message to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// The destination.
    pub to: ServerId,
    /// The message.
    pub message: Message,
}

/// Indexes past this are refused on the wire: far beyond any real log, and far enough from
/// `u64::MAX` that index arithmetic cannot overflow.
const INDEX_MAX: Index = 1 << 62;

/// Whether a message is one a correct peer could send: an append's entries follow its
/// `prev_index` one by one with terms that never decrease and never pass the sender's; a
/// snapshot is from no later term than its sender's. The core asserts these shapes, so a
/// message without them is dropped before it reaches the log.
pub(super) fn well_formed(message: &Message) -> bool {
    match message {
        Message::AppendEntries { term, prev_index, prev_term, entries, commit } => {
            let mut previous = (*prev_index, *prev_term);
            let entries_fit = entries.iter().all(|entry| {
                let fits = entry.index == previous.0 + 1 && entry.term >= previous.1 && entry.term <= *term;
                previous = (entry.index, entry.term);
                fits
            });
            *prev_index < INDEX_MAX - ENTRIES_PER_APPEND_LIMIT
                && *commit < INDEX_MAX
                && prev_term <= term
                && entries_fit
        }
        Message::InstallSnapshot { term, meta, offset, .. } => {
            meta.index < INDEX_MAX && meta.term <= *term && *offset < SNAPSHOT_BYTES_MAX
        }
        Message::PreVote { last_index, .. } | Message::RequestVote { last_index, .. } => {
            *last_index < INDEX_MAX
        }
        Message::Heartbeat { commit, .. } => *commit < INDEX_MAX,
        _ => true,
    }
}

/// The most entries one append can carry on the wire (the decoder's bound).
const ENTRIES_PER_APPEND_LIMIT: Index = wire::ENTRIES_PER_MESSAGE_MAX as Index;
