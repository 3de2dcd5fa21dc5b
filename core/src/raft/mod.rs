//! Raft consensus (Ongaro and Ousterhout, 2014; Ongaro's thesis for pre-vote, check-quorum,
//! leases and ReadIndex), as a sans-IO state machine.
//!
//! A [`Raft`] is one server. Like [`crate::Node`], it takes inputs stamped with `now`
//! (`handle_message`, `handle_timeout`, and the commands `propose` and `read_index`) and yields
//! outputs through `poll_*`: log writes to make durable ([`Persist`]), messages to send, committed
//! entries to apply, and events. Persistence ordering is enforced here, not left to the driver:
//! a message whose meaning depends on state not yet durable (a vote, an append acknowledgement,
//! a candidate's request for votes) is held until [`Raft::on_persisted`] acknowledges the write
//! it depends on. Only a leader's own appends and heartbeats leave at once: they promise nothing
//! about the leader's disk, and the leader counts itself towards a commit only for entries it
//! has made durable, so its fsync runs in parallel with its followers'.
//!
//! What this adds to the paper's core:
//! - **Pre-vote** (thesis §9.6): a server whose election timer fires first asks whether it
//!   could win, without raising its term, so a server cut off from the cluster cannot force an
//!   election on its return.
//! - **Check-quorum** (thesis §6.2): a leader that has not heard from a majority within an
//!   election timeout steps down, and a follower that has heard from a leader within the minimum
//!   election timeout ignores requests for votes (leader stickiness).
//! - **ReadIndex** (thesis §6.4) for consistent reads, confirmed by a heartbeat round, and a
//!   **leader lease** for default-mode reads: a leader that heard from a majority within the
//!   lease may serve reads without a round trip. The lease is shorter than the minimum election
//!   timeout, so no other leader can exist while it holds (bounded clock drift assumed).
//! - **Pipelined, batched replication** with the fast backtracking of §5.3's optimisation: a
//!   rejection names the conflicting term and its first index, so a follower's divergent suffix
//!   costs one round trip per term, not per entry.
//!
//! - **Leadership transfer** (thesis §3.10) and **membership changes one server at a time**
//!   (thesis §4.1): learners, promotion, removal; see [`Raft::change_membership`].
//!
//! - **Snapshots** (§7): the application snapshots its applied state when Raft asks
//!   ([`Event::SnapshotDue`], Consul's threshold of 16384 entries) and hands it over with
//!   [`Raft::snapshot_taken`]; the log then keeps a trailing 10240 entries. A follower behind the
//!   leader's log receives the snapshot in chunks ([`Message::InstallSnapshot`]), stop-and-wait,
//!   and a restarted server resumes from its snapshot and the entries after it.

pub mod journal;
mod log;
#[cfg(test)]
mod tests;
pub mod wire;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use bytes::Bytes;

use self::log::Log;
use crate::{Instant, Monotonic, Rng};

/// A server's id, unique in the cluster.
pub type ServerId = u64;
/// A Raft term.
pub type Term = u64;
/// A position in the log, from 1.
pub type Index = u64;

/// The largest payload one entry may carry; larger proposals are refused (Consul's limit on a
/// KV value is 512 KiB, and a transaction's operations travel together).
pub const ENTRY_BYTES_MAX: usize = 4 << 20;

/// Entries the leader holds beyond the commit index before it refuses new proposals: the
/// back-pressure that keeps a leader cut off from its followers from growing without bound.
pub const UNCOMMITTED_ENTRIES_MAX: u64 = 64 * 1024;

/// Reads waiting for their heartbeat round; more are refused.
pub const PENDING_READS_MAX: usize = 64 * 1024;

/// Heartbeat answers a follower remembers the time of, and leader commit indexes it remembers
/// while it applies through them ([`Raft::caught_up_at`]); past it the oldest are dropped,
/// which only makes the follower report older contact.
pub const ANSWERED_ROUNDS_MAX: usize = 64;

/// The largest chunk of a snapshot one message carries (the configured size must be below).
pub const SNAPSHOT_CHUNK_BYTES_MAX: usize = 8 << 20;

/// The largest snapshot a follower assembles from a leader's chunks; past it the transfer is
/// refused rather than allowed to exhaust memory.
pub const SNAPSHOT_BYTES_MAX: u64 = 4 << 30;

/// Timings and limits of one server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// This server.
    pub id: ServerId,
    /// The voters the cluster bootstraps with, this one included; empty for a server that
    /// joins a running cluster (it learns the membership from the leader's log). Once the log
    /// holds a membership entry, the latest one rules.
    pub voters: BTreeSet<ServerId>,
    /// The minimum election timeout; each timer is drawn from `[min, 2 × min)`.
    pub election_timeout: Duration,
    /// How often a leader sends heartbeats.
    pub heartbeat_interval: Duration,
    /// How long after a majority last answered a leader may serve reads without asking again.
    /// Must be below `election_timeout`.
    pub leader_lease: Duration,
    /// The most entries in one append.
    pub entries_per_append_max: usize,
    /// The most payload bytes in one append (one entry always goes, whatever its size).
    pub append_bytes_max: usize,
    /// Appends in flight to one follower before the leader waits for answers.
    pub inflight_appends_max: usize,
    /// Applied entries since the last snapshot before Raft asks for a new one
    /// ([`Event::SnapshotDue`]).
    pub snapshot_threshold: u64,
    /// Entries the log keeps behind a snapshot taken here, so that a follower a little behind
    /// catches up from the log rather than by a whole snapshot.
    pub snapshot_trailing: u64,
    /// The bytes of a snapshot sent in one [`Message::InstallSnapshot`].
    pub snapshot_chunk_bytes: usize,
    /// Seeds the election timers.
    pub rng_seed: u64,
    /// A deliberately broken rule, for proving that the simulator's checkers catch it.
    #[cfg(any(test, feature = "invariants"))]
    #[doc(hidden)]
    pub planted_bug: Option<PlantedBug>,
}

pub use crate::planted::PlantedBug;

impl Config {
    /// Consul's timings at `raft_multiplier` 1 (Consul's production default is 5): election
    /// timeout 1 s, heartbeats every 100 ms, lease 500 ms; and Consul's snapshot policy: a
    /// snapshot every 16384 entries, 10240 kept behind it.
    pub fn new(id: ServerId, voters: impl IntoIterator<Item = ServerId>, rng_seed: u64) -> Config {
        Config {
            id,
            voters: voters.into_iter().collect(),
            election_timeout: Duration::from_secs(1),
            heartbeat_interval: Duration::from_millis(100),
            leader_lease: Duration::from_millis(500),
            entries_per_append_max: 64,
            append_bytes_max: 1 << 20,
            inflight_appends_max: 64,
            snapshot_threshold: 16384,
            snapshot_trailing: 10240,
            snapshot_chunk_bytes: 1 << 20,
            rng_seed,
            #[cfg(any(test, feature = "invariants"))]
            planted_bug: None,
        }
    }

    /// Checks the relations the protocol relies on.
    pub fn validate(&self) -> Result<(), ConfigError> {
        // No voters: a server that joins an existing cluster and learns its membership from
        // the leader's log. Otherwise this server is one of the voters it bootstraps with.
        if !self.voters.is_empty() && !self.voters.contains(&self.id) {
            return Err(ConfigError::NotAVoter(self.id));
        }
        if self.voters.len() > SERVERS_MAX {
            return Err(ConfigError::Timing("more voters than SERVERS_MAX"));
        }
        if self.heartbeat_interval.is_zero() || self.heartbeat_interval * 2 > self.election_timeout {
            return Err(ConfigError::Timing(
                "heartbeat_interval must be positive and at most half the election timeout",
            ));
        }
        // A tenth of the election timeout is left for clocks that run at different rates.
        if self.leader_lease * 10 > self.election_timeout * 9 {
            return Err(ConfigError::Timing("leader_lease must be at most 90 % of the election timeout"));
        }
        if self.entries_per_append_max == 0 || self.inflight_appends_max == 0 {
            return Err(ConfigError::Timing(
                "entries_per_append_max and inflight_appends_max must be positive",
            ));
        }
        if self.snapshot_threshold == 0
            || self.snapshot_chunk_bytes == 0
            || self.snapshot_chunk_bytes > SNAPSHOT_CHUNK_BYTES_MAX
        {
            return Err(ConfigError::Timing(
                "snapshot_threshold must be positive and snapshot_chunk_bytes within 1..=SNAPSHOT_CHUNK_BYTES_MAX",
            ));
        }
        Ok(())
    }

    fn bug(&self, bug: PlantedBug) -> bool {
        #[cfg(any(test, feature = "invariants"))]
        {
            self.planted_bug == Some(bug)
        }
        #[cfg(not(any(test, feature = "invariants")))]
        {
            let _ = bug;
            false
        }
    }
}

/// A configuration Raft cannot run with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The server must be one of the voters.
    #[error("server {0} is not among the voters")]
    NotAVoter(ServerId),
    /// A timing relation is broken.
    #[error("{0}")]
    Timing(&'static str),
    /// What storage restored does not form a log (a bug of the storage, or damage it missed).
    #[error("stored Raft state is inconsistent: {0}")]
    Restore(&'static str),
}

/// One log entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Its position.
    pub index: Index,
    /// The term of the leader that created it.
    pub term: Term,
    /// What it carries.
    pub payload: Payload,
}

impl Entry {
    /// A command entry.
    pub fn command(index: Index, term: Term, command: Bytes) -> Entry {
        Entry { index, term, payload: Payload::Command(command) }
    }

    fn payload_len(&self) -> usize {
        match &self.payload {
            Payload::Noop | Payload::Membership(_) => 0,
            Payload::Command(bytes) => bytes.len(),
        }
    }
}

/// What an entry carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    /// Appended by each new leader, so that it can commit entries of earlier terms (§5.4.2) and
    /// serve reads.
    Noop,
    /// An application command, opaque to Raft.
    Command(Bytes),
    /// A new membership. It takes effect on every server as soon as it is in the log, committed
    /// or not (thesis §4.1).
    Membership(Membership),
}

/// The servers of the cluster: voters elect and commit; learners (Consul's non-voters, and
/// servers being added) receive the log without counting.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Membership {
    /// The voting servers.
    pub voters: BTreeSet<ServerId>,
    /// The non-voting servers.
    pub learners: BTreeSet<ServerId>,
}

impl Membership {
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

/// What a snapshot stands for: the application's state after every entry through `index`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SnapshotMeta {
    /// The last entry it covers.
    pub index: Index,
    /// That entry's term.
    pub term: Term,
    /// The membership in effect at `index`.
    pub membership: Membership,
}

/// A snapshot: its meta and the application's state, opaque to Raft.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// What it covers.
    pub meta: SnapshotMeta,
    /// The application's encoding of its state.
    pub data: Bytes,
}

/// What the application applies next, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Apply {
    /// Replace the whole state with this snapshot's (on restart, or when a leader sent one).
    Snapshot(Snapshot),
    /// Apply one committed entry.
    Entry(Entry),
}

/// Why [`Raft::snapshot_taken`] refused a snapshot. Nothing changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    /// A snapshot at or past this index is already held (one arrived from the leader while
    /// the application was taking this one).
    #[error("snapshot at {index} is not newer than the one held at {held}")]
    Stale {
        /// The refused snapshot's index.
        index: Index,
        /// The index of the snapshot held.
        held: Index,
    },
}

/// One change of membership, the only kind Raft makes (single-server changes, thesis §4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MembershipChange {
    /// Start replicating to a new server, which does not vote yet.
    AddLearner(ServerId),
    /// Make a learner a voter (once it has caught up: the caller's judgement, as Consul's
    /// autopilot makes it).
    Promote(ServerId),
    /// Take a voter or learner out.
    Remove(ServerId),
}

/// The most servers, voters and learners together.
pub const SERVERS_MAX: usize = 64;

/// The state that must survive a crash besides the log: the current term and the vote cast in
/// it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HardState {
    /// The latest term this server has seen.
    pub term: Term,
    /// Whom it voted for in that term.
    pub vote: Option<ServerId>,
}

/// What a server restarts from: its hard state, its latest snapshot and its log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Restored {
    /// The hard state last made durable.
    pub hard_state: HardState,
    /// The latest durable snapshot, if any.
    pub snapshot: Option<Snapshot>,
    /// The durable entries, contiguous and in order: from index 1 without a snapshot; with one,
    /// from anywhere up to just after it (older entries may have been dropped, newer ones kept).
    pub entries: Vec<Entry>,
}

/// Names one [`Persist`] when acknowledging it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PersistId(u64);

impl PersistId {
    /// Its sequence number: persists are numbered from 1 in the order they are issued.
    pub fn get(self) -> u64 {
        self.0
    }

    /// The id numbered `n`, for storage code tested without a Raft. A Raft asserts that every
    /// id it is given back is one it issued.
    pub fn from_raw(n: u64) -> PersistId {
        PersistId(n)
    }
}

/// A write to make durable, then acknowledge with [`Raft::on_persisted`]. Writes must become
/// durable in the order they are polled: a driver may make several durable with one fsync
/// (group commit) and acknowledge the newest.
#[must_use = "messages that depend on this write are held until it is acknowledged"]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Persist {
    /// Acknowledge with this.
    pub id: PersistId,
    /// A new hard state, if it changed.
    pub hard_state: Option<HardState>,
    /// A snapshot to store first, durably and atomically replacing the one before. Once it is
    /// durable, the durable entries through its index are no longer needed.
    pub snapshot: Option<Snapshot>,
    /// Drop every durable entry from this index on before appending.
    pub truncate_from: Option<Index>,
    /// Entries to append.
    pub entries: Vec<Entry>,
}

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
        /// freshness ([`Raft::caught_up_at`]).
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

/// A server's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Following a leader, or waiting for one.
    Follower,
    /// Asking whether it could win an election.
    PreCandidate,
    /// Standing for election.
    Candidate,
    /// Leading.
    Leader,
}

/// What the application hears from Raft.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The role, the term or the known leader changed.
    Role {
        /// The role now.
        role: Role,
        /// The term now.
        term: Term,
        /// The leader, if known.
        leader: Option<ServerId>,
    },
    /// A consistent read asked with [`Raft::read_index`] may be served once entries through
    /// `index` are applied; they have been handed out already.
    ReadReady {
        /// The caller's tag.
        ctx: u64,
        /// The read index.
        index: Index,
    },
    /// A read could not be confirmed: leadership was lost. Retry at the new leader.
    ReadFailed {
        /// The caller's tag.
        ctx: u64,
    },
    /// `snapshot_threshold` entries were applied since the last snapshot: snapshot the applied
    /// state (entries through `index`, or later ones applied since) and hand it over with
    /// [`Raft::snapshot_taken`]. Asked once until a snapshot is taken or installed.
    SnapshotDue {
        /// The last entry applied when asked.
        index: Index,
    },
}

/// Why a proposal or a read was refused. Nothing changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProposeError {
    /// Only the leader takes proposals and reads.
    #[error("not the leader (leader: {leader_hint:?})")]
    NotLeader {
        /// The leader, if known.
        leader_hint: Option<ServerId>,
    },
    /// The payload exceeds [`ENTRY_BYTES_MAX`].
    #[error("entry of {size} bytes exceeds the limit of {max}")]
    TooLarge {
        /// Its size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// Too much is uncommitted or waiting; the cluster is not keeping up.
    #[error("too many operations in flight ({0})")]
    Busy(&'static str),
    /// Not a voter of this cluster, or this server itself.
    #[error("server {0} cannot take over leadership")]
    NotAVoter(ServerId),
    /// The membership change does not apply to the current membership, or another one is not
    /// committed yet.
    #[error("membership change refused: {0}")]
    Membership(&'static str),
    /// The leader has not yet committed an entry of its term, so it does not know the commit
    /// index; reads must wait (thesis §6.4).
    #[error("leader has not committed in its term yet")]
    NotReady,
}

/// A follower as the leader tracks it (raft-rs's `Progress`).
#[derive(Debug, Clone)]
struct Progress {
    /// The highest index known to match.
    match_index: Index,
    /// The next index to send.
    next_index: Index,
    /// Probing: one append at a time until one is accepted. Replicating: pipelined.
    probing: bool,
    /// While probing: an append is out and unanswered.
    probe_sent: bool,
    /// While replicating: the last index of each append in flight.
    inflight: VecDeque<Index>,
    /// Answered anything since the last check-quorum.
    active: bool,
    /// The newest heartbeat round it answered.
    round_acked: u64,
    /// Behind the log's base: receiving the snapshot instead of entries.
    snapshot: Option<SnapshotSend>,
}

/// A snapshot on its way to one follower, a chunk at a time.
#[derive(Debug, Clone)]
struct SnapshotSend {
    /// The snapshot being sent. A newer one taken meanwhile waits for this transfer to finish:
    /// restarting at every snapshot could starve a follower that needs longer than the
    /// threshold's worth of writes to receive one.
    snapshot: Snapshot,
    /// The bytes the follower acknowledged: the next chunk starts here.
    offset: u64,
    /// When the chunk now out left, if one is.
    sent_at: Option<Instant>,
}

/// A snapshot a follower is assembling from the leader's chunks.
#[derive(Debug)]
struct Incoming {
    meta: SnapshotMeta,
    /// The term of the leader sending it: another leader's snapshot at the same index may hold
    /// other bytes (an application's encoding need not be canonical), so its chunks never
    /// continue this one.
    term: Term,
    data: bytes::BytesMut,
}

impl Progress {
    fn new(next_index: Index) -> Progress {
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
}

#[derive(Debug, Clone)]
struct Leader {
    progress: BTreeMap<ServerId, Progress>,
    heartbeat_next: Instant,
    check_quorum_next: Instant,
    /// The newest heartbeat round started, and when each unconfirmed one was sent.
    round: u64,
    rounds_sent: VecDeque<(u64, Instant)>,
    /// Reads waiting for their round: (round, ctx, read index).
    reads: VecDeque<(u64, u64, Index)>,
    /// Reads whose round is confirmed, waiting for their index to be applied.
    reads_confirmed: VecDeque<(u64, Index)>,
    /// The lease holds until this instant.
    lease_until: Option<Instant>,
    /// A leadership transfer under way: the target, and when to give up on it.
    transfer: Option<(ServerId, Instant)>,
}

/// One Raft server.
#[derive(Debug)]
pub struct Raft {
    config: Config,
    clock: Monotonic,
    rng: Rng,
    hard: HardState,
    role: Role,
    leader: Option<ServerId>,
    leader_state: Option<Leader>,
    /// Votes granted to this (pre-)candidate.
    votes: BTreeSet<ServerId>,
    log: Log,
    /// The latest membership in the log (or the bootstrap one), and the index of its entry
    /// (0 for the bootstrap one).
    membership: Membership,
    membership_index: Index,
    commit: Index,
    /// Entries through this index have been handed to the application.
    applied: Index,
    /// Entries through this index are durable here.
    durable_index: Index,
    /// The latest snapshot, taken here or installed from a leader: what lagging followers get.
    snapshot: Option<Snapshot>,
    /// A snapshot the application has yet to load (it precedes any entry in `poll_apply`).
    snapshot_to_apply: Option<Snapshot>,
    /// [`Event::SnapshotDue`] was emitted and no snapshot has come since.
    snapshot_asked: bool,
    /// The snapshot a leader is sending this follower, as far as it arrived.
    incoming: Option<Incoming>,
    election_deadline: Instant,
    /// When a leader was last heard from, for leader stickiness.
    leader_contact: Option<Instant>,
    /// Heartbeat rounds this follower answered lately: term, round, when.
    answered: VecDeque<(Term, u64, Instant)>,
    /// Leaders' whole commit indexes, each with the answer time that vouches for it (see
    /// [`Raft::caught_up_at`]), oldest first, until this server has applied through them.
    caught_up_pending: VecDeque<(Index, Instant)>,
    /// The latest instant at which this server's applied state held everything its leader had
    /// committed ([`Raft::caught_up_at`]).
    caught_up_at: Option<Instant>,
    /// The log write under construction in this step.
    pending: Option<Persist>,
    persists: VecDeque<Persist>,
    persist_issued: u64,
    persist_durable: u64,
    /// For each persist not yet acknowledged, the last log index it leaves durable.
    persist_log_ends: VecDeque<(u64, Index)>,
    /// Messages waiting for a persist, each behind the newest persist issued when it was made.
    held: VecDeque<(u64, Transmit)>,
    ready: VecDeque<Transmit>,
    events: VecDeque<Event>,
    /// The role, term and leader last reported in an [`Event::Role`].
    reported: (Role, Term, Option<ServerId>),
    stats: Stats,
}

/// Counters of what the server did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Elections this server stood in (after a successful pre-vote).
    pub elections: u64,
    /// Times it became leader.
    pub leaderships: u64,
    /// Messages ignored as stale or misdirected.
    pub messages_ignored: u64,
    /// Appends rejected for a log mismatch.
    pub appends_rejected: u64,
    /// Times a leader stepped down for lack of a quorum.
    pub quorum_lost: u64,
    /// Snapshot chunks sent to followers.
    pub snapshot_chunks_sent: u64,
    /// Snapshots installed from a leader.
    pub snapshots_installed: u64,
}

impl Raft {
    /// A server starting at `now` from what it made durable before (or nothing).
    pub fn new(config: Config, restored: Restored, now: Instant) -> Result<Raft, ConfigError> {
        config.validate()?;
        let mut rng = Rng::from_seed(config.rng_seed);
        let (log, drop_durable_log) = restore_log(restored.snapshot.as_ref(), restored.entries)?;
        let durable_index = log.last_index();
        let (membership, membership_index) = latest_membership(&log, restored.snapshot.as_ref(), &config);
        // Everything a snapshot covers was committed; the application loads it first.
        let snapshot_index = restored.snapshot.as_ref().map_or(0, |s| s.meta.index);
        // A leader's snapshot is written (and synced) before the records of its persist, so a
        // crash can keep it and lose the hard state that raised the term to the snapshot's.
        // That term is certain to have existed; taking it without a vote promises nothing.
        let mut hard = restored.hard_state;
        if hard.term < log.last_term() {
            hard = HardState { term: log.last_term(), vote: None };
        }
        let election_deadline =
            now + rng.duration_between(config.election_timeout, config.election_timeout * 2);
        let mut raft = Raft {
            clock: Monotonic::new(now),
            rng,
            hard,
            role: Role::Follower,
            leader: None,
            leader_state: None,
            votes: BTreeSet::new(),
            log,
            membership,
            membership_index,
            commit: snapshot_index,
            applied: snapshot_index,
            durable_index,
            snapshot_to_apply: restored.snapshot.clone(),
            snapshot: restored.snapshot,
            snapshot_asked: false,
            incoming: None,
            election_deadline,
            // A restarted server may have answered a leader's heartbeat just before it went down,
            // and that leader may be serving reads under a lease that counts on it: refuse
            // votes for one election timeout, as if the leader had just been heard.
            leader_contact: Some(now),
            answered: VecDeque::new(),
            caught_up_pending: VecDeque::new(),
            caught_up_at: None,
            pending: None,
            persists: VecDeque::new(),
            persist_issued: 0,
            persist_durable: 0,
            persist_log_ends: VecDeque::new(),
            held: VecDeque::new(),
            ready: VecDeque::new(),
            events: VecDeque::new(),
            reported: (Role::Follower, hard.term, None),
            stats: Stats::default(),
            config,
        };
        if drop_durable_log {
            // The durable log conflicts with the snapshot or stops short of it: it must go from
            // the disk too, or the entries appended after the snapshot would not continue it.
            raft.pending_persist().truncate_from = Some(1);
            raft.finish_step();
        }
        raft.check_invariants();
        Ok(raft)
    }

    // --- inputs ------------------------------------------------------------------------------

    /// Feeds a message from server `from`.
    pub fn handle_message(&mut self, now: Instant, from: ServerId, message: Message) {
        self.clock.advance(now);
        if from == self.config.id {
            self.stats.messages_ignored += 1;
            return;
        }
        self.step(now, from, message);
        self.finish_step();
    }

    /// Runs the timers due at or before `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.clock.advance(now);
        if self.role == Role::Leader {
            let leader = self.leader_state.as_ref().expect("a leader has leader state");
            let (heartbeat_due, check_due) = (leader.heartbeat_next <= now, leader.check_quorum_next <= now);
            if check_due {
                self.check_quorum(now);
            }
            if let Some(leader) = self.leader_state.as_mut() {
                if leader.transfer.is_some_and(|(_, deadline)| deadline <= now) {
                    leader.transfer = None;
                }
            }
            if self.role == Role::Leader && heartbeat_due {
                self.broadcast_heartbeat(now);
            }
        } else if self.election_deadline <= now {
            self.start_pre_vote(now);
        }
        self.finish_step();
    }

    /// Appends a command to the log, if this server leads. Returns the entry's index: the
    /// command took effect when an entry at that index *and this term* is committed.
    pub fn propose(&mut self, now: Instant, command: Bytes) -> Result<(Index, Term), ProposeError> {
        self.clock.advance(now);
        self.check_leader()?;
        if command.len() > ENTRY_BYTES_MAX {
            return Err(ProposeError::TooLarge { size: command.len(), max: ENTRY_BYTES_MAX });
        }
        if self.log.last_index() - self.commit >= UNCOMMITTED_ENTRIES_MAX {
            return Err(ProposeError::Busy("uncommitted entries"));
        }
        if self.leader_state.as_ref().is_some_and(|l| l.transfer.is_some()) {
            // New entries would only delay the target's catching up (thesis §3.10).
            return Err(ProposeError::Busy("leadership transfer"));
        }
        let index = self.append_as_leader(Payload::Command(command));
        self.replicate_all(now);
        self.finish_step();
        Ok((index, self.hard.term))
    }

    /// Asks for a consistent read (ReadIndex): answered by [`Event::ReadReady`] once a
    /// heartbeat round confirms this server still leads and the commit index it read is
    /// applied, or [`Event::ReadFailed`] if leadership is lost first.
    pub fn read_index(&mut self, now: Instant, ctx: u64) -> Result<(), ProposeError> {
        self.clock.advance(now);
        self.check_leader()?;
        if !self.committed_in_term() {
            return Err(ProposeError::NotReady);
        }
        let sole_voter = self.is_sole_voter();
        let leader = self.leader_state.as_mut().expect("leader");
        if leader.reads.len() >= PENDING_READS_MAX {
            return Err(ProposeError::Busy("pending reads"));
        }
        let commit = self.commit;
        if sole_voter || self.config.bug(PlantedBug::ReadWithoutReadIndex) {
            leader.reads_confirmed.push_back((ctx, commit));
        } else {
            // The read waits for the next round sent. One round is out at a time, and each
            // confirms every read asked before it left: reads batch themselves under load.
            leader.reads.push_back((leader.round + 1, ctx, commit));
            if leader.rounds_sent.is_empty() {
                self.broadcast_heartbeat(now);
            }
        }
        self.release_reads();
        self.finish_step();
        Ok(())
    }

    /// Hands leadership to `target` (Consul's `operator raft transfer-leader`): once its log is
    /// up to date, it is told to stand for election at once, and wins it. Proposals are refused
    /// meanwhile; the transfer is abandoned after an election timeout.
    pub fn transfer_leadership(&mut self, now: Instant, target: ServerId) -> Result<(), ProposeError> {
        self.clock.advance(now);
        self.check_leader()?;
        if target == self.config.id || !self.membership.voters.contains(&target) {
            return Err(ProposeError::NotAVoter(target));
        }
        let leader = self.leader_state.as_mut().expect("leader");
        leader.transfer = Some((target, now + self.config.election_timeout));
        self.maybe_hand_over(target);
        self.replicate(now, target);
        self.finish_step();
        Ok(())
    }

    /// Proposes one membership change (thesis §4.1): at most one may be uncommitted at a time,
    /// and only once this leader has committed an entry of its term (the rule that makes
    /// single-server changes safe across leader changes). Returns the entry's index.
    pub fn change_membership(
        &mut self,
        now: Instant,
        change: MembershipChange,
    ) -> Result<Index, ProposeError> {
        self.clock.advance(now);
        self.check_leader()?;
        if !self.committed_in_term() {
            return Err(ProposeError::NotReady);
        }
        if self.membership_index > self.commit {
            return Err(ProposeError::Membership("another change is not committed yet"));
        }
        let mut next = self.membership.clone();
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
        let index = self.append_as_leader(Payload::Membership(next));
        self.replicate_all(now);
        self.finish_step();
        Ok(index)
    }

    /// The membership in effect: the latest in the log, committed or not.
    pub fn membership(&self) -> &Membership {
        &self.membership
    }

    /// A default-mode read: the commit index, if this leader's lease still holds (a majority
    /// answered within the lease). The caller serves the read once that index is applied.
    pub fn lease_read(&self, now: Instant) -> Result<Index, ProposeError> {
        self.check_leader()?;
        match self.lease_until() {
            Some(None) => Ok(self.commit),
            Some(Some(until)) if now < until => Ok(self.commit),
            // No lease, or not committed in its term yet.
            _ => Err(ProposeError::NotReady),
        }
    }

    /// Until when this leader may serve default-mode reads from its state without a round of
    /// messages ([`Raft::lease_read`] at any earlier `now` succeeds): `None` when it does not
    /// lead, has not committed in its term, or holds no lease; `Some(None)` when it is the only
    /// voter, whose lease never ends.
    pub fn lease_until(&self) -> Option<Option<Instant>> {
        if self.role != Role::Leader || !self.committed_in_term() {
            return None;
        }
        // The planted bug lives here, where both drivers decide: the agent's facade reads this
        // through the server's status, the in-process simulator through `lease_read`.
        if self.is_sole_voter() || self.config.bug(PlantedBug::StaleLeaseRead) {
            return Some(None);
        }
        Some(Some(self.leader_state.as_ref()?.lease_until?))
    }

    /// Takes the application's snapshot of its state through `index` (an applied entry, usually
    /// after [`Event::SnapshotDue`]): it is persisted, sent to followers too far behind, and the
    /// log is compacted up to `snapshot_trailing` entries before it.
    pub fn snapshot_taken(&mut self, now: Instant, index: Index, data: Bytes) -> Result<(), SnapshotError> {
        self.clock.advance(now);
        assert!(index <= self.applied, "a snapshot covers only applied entries");
        let held = self.snapshot_index();
        if index <= held {
            return Err(SnapshotError::Stale { index, held });
        }
        let term = self.log.term_at(index).expect("entries after the snapshot are held");
        let membership = match self.log.membership_at(index) {
            Some((membership, _)) => membership,
            None => latest_membership(&Log::default(), self.snapshot.as_ref(), &self.config).0,
        };
        let snapshot = Snapshot { meta: SnapshotMeta { index, term, membership }, data };
        let compact_to = index.saturating_sub(self.config.snapshot_trailing);
        if compact_to > self.log.base().0 {
            self.log.compact_through(compact_to);
        }
        self.snapshot = Some(snapshot.clone());
        self.snapshot_asked = false;
        self.pending_persist().snapshot = Some(snapshot);
        self.finish_step();
        Ok(())
    }

    /// Reports that the persist `id`, and so every persist before it, is durable.
    pub fn on_persisted(&mut self, now: Instant, id: PersistId) {
        self.clock.advance(now);
        assert!(
            id.0 > self.persist_durable && id.0 <= self.persist_issued,
            "persist {id:?} acknowledged out of order"
        );
        self.persist_durable = id.0;
        while let Some(&(persist, end)) = self.persist_log_ends.front() {
            if persist > id.0 {
                break;
            }
            self.persist_log_ends.pop_front();
            self.durable_index = end;
        }
        if self.role == Role::Leader {
            self.maybe_commit();
        }
        self.finish_step();
    }

    // --- outputs -----------------------------------------------------------------------------

    /// The next write to make durable.
    pub fn poll_persist(&mut self) -> Option<Persist> {
        self.persists.pop_front()
    }

    /// The next message to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        if let Some(transmit) = self.ready.pop_front() {
            return Some(transmit);
        }
        match self.held.front() {
            Some(&(barrier, _)) if barrier <= self.persist_durable => self.held.pop_front().map(|(_, t)| t),
            _ => None,
        }
    }

    /// What to apply next: a snapshot to load, or the next committed entry in log order, each
    /// once.
    pub fn poll_apply(&mut self) -> Option<Apply> {
        if let Some(snapshot) = self.snapshot_to_apply.take() {
            self.settle_caught_up();
            return Some(Apply::Snapshot(snapshot));
        }
        if self.applied >= self.commit {
            return None;
        }
        self.applied += 1;
        self.settle_caught_up();
        let entry = self.log.get(self.applied).expect("committed entries are in the log").clone();
        if self.role == Role::Leader {
            self.release_reads();
        }
        if !self.snapshot_asked && self.applied - self.snapshot_index() >= self.config.snapshot_threshold {
            self.snapshot_asked = true;
            self.events.push_back(Event::SnapshotDue { index: self.applied });
        }
        Some(Apply::Entry(entry))
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`Raft::handle_timeout`] must next run.
    pub fn poll_timeout(&self) -> Instant {
        match &self.leader_state {
            Some(leader) => leader.heartbeat_next.min(leader.check_quorum_next),
            None => self.election_deadline,
        }
    }

    // --- getters -----------------------------------------------------------------------------

    /// This server's id.
    pub fn id(&self) -> ServerId {
        self.config.id
    }

    /// Its role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// Its current term.
    pub fn term(&self) -> Term {
        self.hard.term
    }

    /// Whether `bug` is planted in this server (only test, simulation and fuzz builds have any).
    pub(crate) fn planted(&self, bug: PlantedBug) -> bool {
        self.config.bug(bug)
    }

    /// The leader it knows of.
    pub fn leader(&self) -> Option<ServerId> {
        self.leader
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
        if self.config.bug(PlantedBug::ContactWithoutCatchingUp) {
            return self.leader_contact;
        }
        self.caught_up_at
    }

    /// The highest index known committed.
    pub fn commit_index(&self) -> Index {
        self.commit
    }

    /// The last index in its log.
    pub fn last_index(&self) -> Index {
        self.log.last_index()
    }

    /// The entry at `index`, if held.
    pub fn entry(&self, index: Index) -> Option<&Entry> {
        self.log.get(index)
    }

    /// How far each other server's log is known to match this leader's, by server (what
    /// autopilot judges a new server's catch-up by); empty on a server that does not lead.
    pub fn matched(&self) -> BTreeMap<ServerId, Index> {
        self.leader_state
            .iter()
            .flat_map(|leader| leader.progress.iter().map(|(id, progress)| (*id, progress.match_index)))
            .collect()
    }

    /// The index of the latest snapshot (0 without one): entries through it may be compacted.
    pub fn snapshot_index(&self) -> Index {
        self.snapshot.as_ref().map_or(0, |s| s.meta.index)
    }

    /// Its counters.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    // --- message handling --------------------------------------------------------------------

    fn step(&mut self, now: Instant, from: ServerId, message: Message) {
        if !well_formed(&message) {
            // Decodable but impossible from a correct peer: ignored, never asserted on.
            self.stats.messages_ignored += 1;
            return;
        }
        let term = message.term();
        // Leader stickiness: while a leader is heard from, requests for votes are ignored, so a
        // server that was cut off cannot depose a healthy leader on its return.
        if let Message::PreVote { .. } | Message::RequestVote { transfer: false, .. } = message {
            if self.in_leader_lease(now) {
                self.stats.messages_ignored += 1;
                if let Message::PreVote { .. } = message {
                    self.send(from, Message::PreVoteResponse { term: self.hard.term, granted: false });
                }
                return;
            }
        }
        match &message {
            // A pre-vote does not raise anyone's term; an answer granting one carries the asked
            // term, not a term anyone is in.
            Message::PreVote { .. } => {}
            Message::PreVoteResponse { granted: true, .. } => {}
            _ if term > self.hard.term => {
                let leader = match message {
                    Message::AppendEntries { .. }
                    | Message::Heartbeat { .. }
                    | Message::InstallSnapshot { .. } => Some(from),
                    _ => None,
                };
                self.become_follower(now, term, leader);
            }
            _ if term < self.hard.term => {
                let stale_append = matches!(message, Message::AppendEntries { .. });
                if !(stale_append && self.config.bug(PlantedBug::AcceptStaleTermAppend)) {
                    self.stats.messages_ignored += 1;
                    // Tell a stale leader or candidate about the newer term, so it steps down.
                    match message {
                        Message::AppendEntries { .. }
                        | Message::Heartbeat { .. }
                        | Message::InstallSnapshot { .. } => {
                            self.send(from, Message::HeartbeatResponse { term: self.hard.term, round: 0 })
                        }
                        Message::RequestVote { .. } => {
                            self.send(from, Message::VoteResponse { term: self.hard.term, granted: false })
                        }
                        _ => {}
                    }
                    return;
                }
            }
            _ => {}
        }
        match message {
            Message::PreVote { term, last_index, last_term } => {
                let granted = term > self.hard.term && self.log.is_up_to_date(last_index, last_term);
                let term = if granted { term } else { self.hard.term };
                self.send(from, Message::PreVoteResponse { term, granted });
            }
            Message::PreVoteResponse { term, granted } => {
                self.handle_pre_vote_response(now, from, term, granted)
            }
            Message::RequestVote { term, last_index, last_term, .. } => {
                let free = self.hard.vote.is_none_or(|vote| vote == from)
                    || self.config.bug(PlantedBug::VoteTwiceInTerm);
                let granted = free && self.log.is_up_to_date(last_index, last_term);
                if granted {
                    self.hard.vote = Some(from);
                    self.hard_state_changed();
                    self.reset_election_timer(now);
                }
                let response = Message::VoteResponse { term, granted };
                if self.config.bug(PlantedBug::VoteBeforeFsync) {
                    self.ready.push_back(Transmit { to: from, message: response });
                } else {
                    self.send(from, response);
                }
            }
            Message::VoteResponse { granted, .. } => {
                if self.role == Role::Candidate && granted {
                    self.votes.insert(from);
                    if self.has_quorum(&self.votes) {
                        self.become_leader(now);
                    }
                }
            }
            Message::AppendEntries { prev_index, prev_term, entries, commit, .. } => {
                if !self.follow(now, from, term) {
                    return;
                }
                self.handle_append(from, prev_index, prev_term, entries, commit);
            }
            Message::AppendResponse { prev_index, result, .. } => {
                if self.role == Role::Leader && self.tracks(from) {
                    self.handle_append_response(now, from, prev_index, result);
                }
            }
            Message::Heartbeat { commit, round, acked, .. } => {
                if !self.follow(now, from, term) {
                    return;
                }
                // The leader sends at most what this follower is known to hold.
                self.commit = self.commit.max(commit.min(self.log.last_index()));
                self.send(from, Message::HeartbeatResponse { term: self.hard.term, round });
                self.note_leader_commit(now, commit, round, acked);
            }
            Message::HeartbeatResponse { round, .. } => {
                if self.role == Role::Leader && self.tracks(from) {
                    self.handle_heartbeat_response(now, from, round);
                }
            }
            Message::InstallSnapshot { meta, offset, data, done, .. } => {
                if !self.follow(now, from, term) {
                    return;
                }
                self.handle_snapshot_chunk(from, meta, offset, data, done);
            }
            Message::SnapshotResponse { index, received, installed, .. } => {
                if self.role == Role::Leader && self.tracks(from) {
                    self.handle_snapshot_response(now, from, index, received, installed);
                }
            }
            Message::TimeoutNow { .. } => {
                // From the leader of our term (a stale one was refused above): stand at once,
                // skipping pre-vote, which the leader's followers would refuse. Only a voter
                // stands; a learner told to (its promotion lost, say) ignores it.
                if self.role != Role::Leader && self.membership.voters.contains(&self.config.id) {
                    self.leader_contact = None;
                    self.start_election(now, true);
                }
            }
        }
    }

    fn handle_pre_vote_response(&mut self, now: Instant, from: ServerId, term: Term, granted: bool) {
        if self.role != Role::PreCandidate {
            return;
        }
        if !granted {
            if term > self.hard.term {
                self.become_follower(now, term, None);
            }
            return;
        }
        if term != self.hard.term + 1 {
            return;
        }
        self.votes.insert(from);
        if self.has_quorum(&self.votes) {
            self.start_election(now, false);
        }
    }

    fn handle_append(
        &mut self,
        from: ServerId,
        prev_index: Index,
        prev_term: Term,
        entries: Vec<Entry>,
        commit: Index,
    ) {
        let term = self.hard.term;
        let reject = |conflict_index, conflict_term| Message::AppendResponse {
            term,
            prev_index,
            result: AppendResult::Rejected { conflict_index, conflict_term },
        };
        if prev_index < self.commit {
            // Everything through the commit index matches the leader's log already; answer from
            // there so the leader moves on.
            let skip = (self.commit - prev_index) as usize;
            if skip >= entries.len() {
                let match_index = self.commit;
                self.send(
                    from,
                    Message::AppendResponse {
                        term,
                        prev_index,
                        result: AppendResult::Accepted { match_index },
                    },
                );
                return;
            }
            let prev_index = self.commit;
            let prev_term = self.log.term_at(prev_index).expect("committed entries are held");
            let entries = entries[skip..].to_vec();
            return self.handle_append(from, prev_index, prev_term, entries, commit);
        }
        match self.log.term_at(prev_index) {
            None => {
                self.stats.appends_rejected += 1;
                self.send(from, reject(self.log.last_index() + 1, None));
                return;
            }
            Some(held) if held != prev_term => {
                self.stats.appends_rejected += 1;
                let first = self.log.first_index_of_term_at(prev_index);
                self.send(from, reject(first, Some(held)));
                return;
            }
            Some(_) => {}
        }
        // Skip what is already there; truncate at the first conflict; append the rest.
        let mut new_from = entries.len();
        for (i, entry) in entries.iter().enumerate() {
            match self.log.term_at(entry.index) {
                Some(held) if held == entry.term => continue,
                Some(_) if self.config.bug(PlantedBug::KeepConflictingSuffix) => continue,
                Some(_) => {
                    assert!(entry.index > self.commit, "a committed entry never conflicts (log matching)");
                    self.log.truncate_from(entry.index);
                    if self.membership_index >= entry.index {
                        // The membership in effect came from a dropped entry: back to the one before.
                        (self.membership, self.membership_index) =
                            latest_membership(&self.log, self.snapshot.as_ref(), &self.config);
                    }
                    // Writes in flight that end past the cut leave only what precedes it.
                    self.durable_index = self.durable_index.min(entry.index - 1);
                    for (_, end) in self.persist_log_ends.iter_mut() {
                        *end = (*end).min(entry.index - 1);
                    }
                    let pending = self.pending_persist();
                    pending.truncate_from =
                        Some(pending.truncate_from.map_or(entry.index, |t| t.min(entry.index)));
                    pending.entries.retain(|e| e.index < entry.index);
                    new_from = i;
                }
                None => new_from = i,
            }
            break;
        }
        let last_new = prev_index + entries.len() as Index;
        if new_from < entries.len() {
            self.log.append(&entries[new_from..]);
            self.note_memberships(&entries[new_from..]);
            self.pending_persist().entries.extend_from_slice(&entries[new_from..]);
        }
        self.commit = self.commit.max(commit.min(last_new));
        self.send(
            from,
            Message::AppendResponse {
                term,
                prev_index,
                result: AppendResult::Accepted { match_index: last_new },
            },
        );
    }

    /// Takes a leader's word that `commit` is its whole commit index, in its own term, and
    /// that it had heard this follower's answer to `acked` when it said so: once applied
    /// through `commit`, this server's state is as fresh as when it sent that answer. An
    /// answer's time, not a message's arrival, because a message can arrive long after it was
    /// sent (TCP retransmits a backlog when a partition heals) while an answer cannot be heard
    /// before it was sent.
    fn note_leader_commit(&mut self, now: Instant, commit: Index, round: u64, acked: u64) {
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
    fn settle_caught_up(&mut self) {
        while let Some(&(commit, at)) = self.caught_up_pending.front() {
            if commit > self.applied {
                break;
            }
            self.caught_up_pending.pop_front();
            self.caught_up_at = Some(at);
        }
    }

    fn handle_append_response(
        &mut self,
        now: Instant,
        from: ServerId,
        prev_index: Index,
        result: AppendResult,
    ) {
        let last_index = self.log.last_index();
        let leader = self.leader_state.as_mut().expect("leader");
        let progress = leader.progress.get_mut(&from).expect("checked by tracks()");
        progress.active = true;
        match result {
            AppendResult::Accepted { match_index } => {
                if match_index > last_index {
                    // Only a confused follower claims entries this leader never sent.
                    self.stats.messages_ignored += 1;
                    return;
                }
                if match_index > progress.match_index {
                    progress.match_index = match_index;
                }
                if progress.snapshot.is_some() && match_index >= self.log.base().0 {
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
                self.maybe_commit();
                if self.role != Role::Leader {
                    // Its own removal committed: it stepped down.
                    return;
                }
                self.maybe_hand_over(from);
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
                    self.stats.messages_ignored += 1;
                    return;
                }
                let hinted = match conflict_term {
                    Some(term) => match self.log.last_index_of_term(term) {
                        Some(last) => last + 1,
                        None => conflict_index,
                    },
                    None => conflict_index,
                };
                progress.next_index =
                    hinted.clamp(progress.match_index + 1, prev_index.max(progress.match_index + 1));
                progress.probing = true;
                progress.probe_sent = false;
                progress.inflight.clear();
            }
        }
        self.replicate(now, from);
    }

    fn handle_heartbeat_response(&mut self, now: Instant, from: ServerId, round: u64) {
        let last_index = self.log.last_index();
        let leader = self.leader_state.as_mut().expect("leader");
        let progress = leader.progress.get_mut(&from).expect("checked by tracks()");
        progress.active = true;
        progress.round_acked = progress.round_acked.max(round);
        // A lost append leaves a follower behind with nothing in flight to reveal it: a probe
        // (possibly empty) makes it answer with where it stands.
        let behind = progress.match_index < last_index;
        let mut probe = None;
        if let Some(send) = progress.snapshot.as_mut() {
            // A chunk unanswered for two heartbeats was lost (or its answer was): send it again.
            if send.sent_at.is_some_and(|at| now >= at + self.config.heartbeat_interval * 2) {
                send.sent_at = None;
            }
        } else if behind && progress.probing {
            progress.probe_sent = false;
        } else if behind {
            // An empty append at the pipeline's end: accepted if what is in flight arrived,
            // rejected (and so probed) if some of it was lost. (If the log was compacted past
            // it, `replicate` below turns to the snapshot instead.)
            let prev_index = progress.next_index - 1;
            if let Some(prev_term) = self.log.term_at(prev_index) {
                probe = Some(Message::AppendEntries {
                    term: self.hard.term,
                    prev_index,
                    prev_term,
                    entries: Vec::new(),
                    commit: self.commit,
                });
            }
        }
        if let Some(message) = probe {
            self.ready.push_back(Transmit { to: from, message });
        }
        self.confirm_rounds(now);
        self.replicate(now, from);
    }

    /// A chunk of the leader's snapshot. Chunks are taken in order only; anything else is
    /// answered with where the transfer stands, so the leader resumes from there.
    fn handle_snapshot_chunk(
        &mut self,
        from: ServerId,
        meta: SnapshotMeta,
        offset: u64,
        data: Bytes,
        done: bool,
    ) {
        let term = self.hard.term;
        let index = meta.index;
        if index <= self.commit {
            // Everything it covers is committed here already (an earlier transfer finished, or
            // appends overtook it): the log serves from here.
            self.incoming = None;
            let message = Message::SnapshotResponse { term, index, received: offset, installed: true };
            return self.send(from, message);
        }
        let mut incoming = match self.incoming.take() {
            Some(incoming) if incoming.meta == meta && incoming.term == term => incoming,
            _ => Incoming { meta, term, data: bytes::BytesMut::new() },
        };
        let received = incoming.data.len() as u64;
        let size = offset.saturating_add(data.len() as u64);
        if offset != received || size > SNAPSHOT_BYTES_MAX {
            self.stats.messages_ignored += 1;
            if received > 0 {
                self.incoming = Some(incoming);
            }
            // Progress only: nothing here needs to be durable first.
            let message = Message::SnapshotResponse { term, index, received, installed: false };
            return self.ready.push_back(Transmit { to: from, message });
        }
        incoming.data.extend_from_slice(&data);
        if !done {
            let message = Message::SnapshotResponse { term, index, received: size, installed: false };
            self.incoming = Some(incoming);
            return self.ready.push_back(Transmit { to: from, message });
        }
        self.install_snapshot(Snapshot { meta: incoming.meta, data: incoming.data.freeze() });
        // Held until the snapshot is durable: the leader counts this server as holding it.
        self.send(from, Message::SnapshotResponse { term, index, received: size, installed: true });
    }

    /// Replaces the log's committed prefix with a leader's snapshot (§7): a log that holds the
    /// snapshot's last entry keeps what follows it; any other log is dropped whole.
    fn install_snapshot(&mut self, snapshot: Snapshot) {
        let meta = &snapshot.meta;
        assert!(meta.index > self.commit, "only a snapshot past the commit index is installed");
        self.stats.snapshots_installed += 1;
        if self.log.term_at(meta.index) == Some(meta.term) {
            self.log.compact_through(meta.index);
        } else {
            self.log.reset((meta.index, meta.term));
            // Writes in flight may extend the log the snapshot replaces; the truncation below
            // drops them with the rest, so nothing past the snapshot counts as durable.
            self.durable_index = self.durable_index.min(meta.index);
            for (_, end) in self.persist_log_ends.iter_mut() {
                *end = (*end).min(meta.index);
            }
            let pending = self.pending_persist();
            pending.truncate_from = Some(1);
            pending.entries.clear();
        }
        self.commit = meta.index;
        self.applied = meta.index;
        (self.membership, self.membership_index) =
            latest_membership(&self.log, Some(&snapshot), &self.config);
        self.incoming = None;
        self.snapshot_asked = false;
        self.snapshot = Some(snapshot.clone());
        self.snapshot_to_apply = Some(snapshot.clone());
        self.pending_persist().snapshot = Some(snapshot);
    }

    fn handle_snapshot_response(
        &mut self,
        now: Instant,
        from: ServerId,
        index: Index,
        received: u64,
        installed: bool,
    ) {
        let leader = self.leader_state.as_mut().expect("leader");
        let progress = leader.progress.get_mut(&from).expect("checked by tracks()");
        progress.active = true;
        if installed {
            if index <= progress.match_index || index > self.log.last_index() {
                self.stats.messages_ignored += 1;
                return;
            }
            progress.match_index = index;
            progress.next_index = index + 1;
            progress.snapshot = None;
            progress.probing = true;
            progress.probe_sent = false;
            progress.inflight.clear();
            self.maybe_commit();
            if self.role != Role::Leader {
                return;
            }
            self.maybe_hand_over(from);
        } else {
            let current = progress.snapshot.as_mut().filter(|send| send.snapshot.meta.index == index);
            match current {
                // The follower stands where the chunk out started: an answer to a duplicate, or
                // a refusal. The chunk out (or its resend after two heartbeats) will do.
                Some(send) if received == send.offset && send.sent_at.is_some() => {
                    self.stats.messages_ignored += 1;
                    return;
                }
                Some(send) if received <= send.snapshot.data.len() as u64 => {
                    send.offset = received;
                    send.sent_at = None;
                }
                _ => {
                    self.stats.messages_ignored += 1;
                    return;
                }
            }
        }
        self.replicate(now, from);
    }

    /// Sends `peer` the next chunk of the snapshot, unless one is out.
    fn send_snapshot_chunk(&mut self, now: Instant, peer: ServerId) {
        let latest = self.snapshot.as_ref().expect("the log is compacted only behind a snapshot");
        let leader = self.leader_state.as_mut().expect("leader");
        let progress = leader.progress.get_mut(&peer).expect("peer");
        if progress.snapshot.is_none() {
            progress.snapshot = Some(SnapshotSend { snapshot: latest.clone(), offset: 0, sent_at: None });
            progress.probing = true;
            progress.probe_sent = false;
            progress.inflight.clear();
        }
        let send = progress.snapshot.as_mut().expect("set above");
        if send.sent_at.is_some() {
            return;
        }
        if send.offset == 0 && send.snapshot.meta.index < latest.meta.index {
            // Nothing of it has arrived (the follower was down, say): send the newest instead.
            send.snapshot = latest.clone();
        }
        send.sent_at = Some(now);
        let snapshot = &send.snapshot;
        let len = snapshot.data.len();
        let start = usize::try_from(send.offset).expect("within the data, checked on the answer");
        let end = (start + self.config.snapshot_chunk_bytes).min(len);
        let message = Message::InstallSnapshot {
            term: self.hard.term,
            meta: snapshot.meta.clone(),
            offset: send.offset,
            data: snapshot.data.slice(start..end),
            done: end == len,
        };
        self.stats.snapshot_chunks_sent += 1;
        self.ready.push_back(Transmit { to: peer, message });
    }

    // --- roles -------------------------------------------------------------------------------

    fn start_pre_vote(&mut self, now: Instant) {
        self.reset_election_timer(now);
        // Learners and removed servers never stand.
        if !self.membership.voters.contains(&self.config.id) {
            return;
        }
        if self.is_sole_voter() {
            return self.start_election(now, false);
        }
        self.set_role(Role::PreCandidate, None);
        self.votes = BTreeSet::from([self.config.id]);
        let message = Message::PreVote {
            term: self.hard.term + 1,
            last_index: self.log.last_index(),
            last_term: self.log.last_term(),
        };
        for peer in self.voter_peers() {
            self.send(peer, message.clone());
        }
    }

    fn start_election(&mut self, now: Instant, transfer: bool) {
        self.stats.elections += 1;
        self.reset_election_timer(now);
        self.hard = HardState { term: self.hard.term + 1, vote: Some(self.config.id) };
        self.hard_state_changed();
        self.set_role(Role::Candidate, None);
        self.votes = BTreeSet::from([self.config.id]);
        if self.has_quorum(&self.votes) {
            return self.become_leader(now);
        }
        let message = Message::RequestVote {
            term: self.hard.term,
            last_index: self.log.last_index(),
            last_term: self.log.last_term(),
            transfer,
        };
        for peer in self.voter_peers() {
            self.send(peer, message.clone());
        }
    }

    fn become_follower(&mut self, now: Instant, term: Term, leader: Option<ServerId>) {
        if term > self.hard.term {
            self.hard = HardState { term, vote: None };
            self.hard_state_changed();
        }
        self.step_down_reads();
        self.leader_state = None;
        self.votes.clear();
        self.reset_election_timer(now);
        if leader.is_some() {
            self.leader_contact = Some(now);
        }
        self.set_role(Role::Follower, leader);
    }

    /// Follows `leader`, which claims this term (an append, heartbeat or snapshot chunk). `false` (and the message is ignored) if this
    /// server leads the term itself: a correct cluster never has two leaders in a term (the
    /// simulator's election-safety checker holds it to that), so the claim comes from a
    /// confused or forged peer and must not crash this one.
    fn follow(&mut self, now: Instant, leader: ServerId, term: Term) -> bool {
        if self.role == Role::Leader {
            if term < self.hard.term && self.config.bug(PlantedBug::AcceptStaleTermAppend) {
                // The planted bug, whole: with no term check, a leader yields to any append.
                self.become_follower(now, self.hard.term, Some(leader));
            } else {
                self.stats.messages_ignored += 1;
                return false;
            }
        }
        self.leader_contact = Some(now);
        self.reset_election_timer(now);
        if self.role != Role::Follower || self.leader != Some(leader) {
            self.votes.clear();
            self.set_role(Role::Follower, Some(leader));
        }
        true
    }

    fn become_leader(&mut self, now: Instant) {
        self.stats.leaderships += 1;
        let next = self.log.last_index() + 1;
        let progress = self.peers().map(|peer| (peer, Progress::new(next))).collect();
        self.leader_state = Some(Leader {
            progress,
            heartbeat_next: now,
            check_quorum_next: now + self.config.election_timeout,
            round: 0,
            rounds_sent: VecDeque::new(),
            reads: VecDeque::new(),
            reads_confirmed: VecDeque::new(),
            lease_until: None,
            transfer: None,
        });
        self.votes.clear();
        self.set_role(Role::Leader, Some(self.config.id));
        self.append_as_leader(Payload::Noop);
        self.replicate_all(now);
        self.broadcast_heartbeat(now);
    }

    fn set_role(&mut self, role: Role, leader: Option<ServerId>) {
        self.role = role;
        self.leader = leader;
    }

    fn check_quorum(&mut self, now: Instant) {
        let leader = self.leader_state.as_mut().expect("leader");
        leader.check_quorum_next = now + self.config.election_timeout;
        let mut active = BTreeSet::from([self.config.id]);
        for (&peer, progress) in leader.progress.iter_mut() {
            if std::mem::take(&mut progress.active) {
                active.insert(peer);
            }
        }
        if !self.has_quorum(&active) {
            self.stats.quorum_lost += 1;
            self.become_follower(now, self.hard.term, None);
        }
    }

    // --- replication -------------------------------------------------------------------------

    fn append_as_leader(&mut self, payload: Payload) -> Index {
        let entry = Entry { index: self.log.last_index() + 1, term: self.hard.term, payload };
        let index = entry.index;
        self.log.append(std::slice::from_ref(&entry));
        self.note_memberships(std::slice::from_ref(&entry));
        self.pending_persist().entries.push(entry);
        if self.config.bug(PlantedBug::CommitWithoutQuorum) {
            self.commit = index;
        }
        index
    }

    /// Adopts the last membership among newly appended entries; a leader starts or stops
    /// tracking the servers it adds or removes.
    fn note_memberships(&mut self, appended: &[Entry]) {
        let latest = appended.iter().rev().find_map(|e| match &e.payload {
            Payload::Membership(membership) => Some((membership.clone(), e.index)),
            _ => None,
        });
        let Some((membership, index)) = latest else { return };
        self.membership = membership;
        self.membership_index = index;
        let members: BTreeSet<ServerId> = self.peers().collect();
        let next = self.log.last_index() + 1;
        if let Some(leader) = self.leader_state.as_mut() {
            leader.progress.retain(|id, _| members.contains(id));
            for id in members {
                leader.progress.entry(id).or_insert_with(|| Progress::new(next));
            }
        }
    }

    fn replicate_all(&mut self, now: Instant) {
        for peer in self.peers().collect::<Vec<_>>() {
            self.replicate(now, peer);
        }
    }

    /// Sends `peer` what it lacks, as far as its state allows: one append while probing, a
    /// pipeline of appends while replicating.
    fn replicate(&mut self, now: Instant, peer: ServerId) {
        let last_index = self.log.last_index();
        let base = self.log.base().0;
        loop {
            let leader = self.leader_state.as_mut().expect("leader");
            let progress = leader.progress.get_mut(&peer).expect("peer");
            if progress.snapshot.is_some() || progress.next_index <= base {
                // What it lacks is compacted away: the snapshot instead.
                return self.send_snapshot_chunk(now, peer);
            }
            if progress.probing {
                if progress.probe_sent {
                    return;
                }
            } else if progress.next_index > last_index
                || progress.inflight.len() >= self.config.inflight_appends_max
            {
                return;
            }
            let prev_index = progress.next_index - 1;
            let prev_term = self.log.term_at(prev_index).expect("next_index is past the base");
            let entries = self.log.slice(
                progress.next_index,
                self.config.entries_per_append_max,
                self.config.append_bytes_max,
            );
            let sent_through = prev_index + entries.len() as Index;
            if progress.probing {
                progress.probe_sent = true;
            } else {
                progress.inflight.push_back(sent_through);
                progress.next_index = sent_through + 1;
            }
            let commit = self.commit;
            let message =
                Message::AppendEntries { term: self.hard.term, prev_index, prev_term, entries, commit };
            self.ready.push_back(Transmit { to: peer, message });
            let leader = self.leader_state.as_ref().expect("leader");
            if leader.progress[&peer].probing {
                return;
            }
        }
    }

    /// Sends `TimeoutNow` to the transfer's target once its log matches this leader's.
    fn maybe_hand_over(&mut self, peer: ServerId) {
        let last_index = self.log.last_index();
        let leader = self.leader_state.as_ref().expect("leader");
        if leader.transfer.is_some_and(|(target, _)| target == peer)
            && leader.progress[&peer].match_index == last_index
        {
            self.ready
                .push_back(Transmit { to: peer, message: Message::TimeoutNow { term: self.hard.term } });
        }
    }

    /// Commits the highest index a majority holds durably, if it is of this term (§5.4.2).
    fn maybe_commit(&mut self) {
        let now = self.clock.last();
        let own = if self.config.bug(PlantedBug::AckBeforeFsync) {
            self.log.last_index()
        } else {
            self.durable_index
        };
        let quorum_index = self.quorum_value(own, |p| p.match_index);
        if quorum_index > self.commit && self.log.term_at(quorum_index) == Some(self.hard.term) {
            self.commit = quorum_index;
            self.release_reads();
            // A leader the committed membership leaves out hands over by stepping down; the
            // remaining voters elect one of their own (thesis §4.2.2).
            if self.membership_index <= self.commit && !self.membership.voters.contains(&self.config.id) {
                let term = self.hard.term;
                self.become_follower(now, term, None);
            }
        }
    }

    fn broadcast_heartbeat(&mut self, now: Instant) {
        let committed_in_term = self.committed_in_term();
        let leader = self.leader_state.as_mut().expect("leader");
        leader.heartbeat_next = now + self.config.heartbeat_interval;
        leader.round += 1;
        let round = leader.round;
        leader.rounds_sent.push_back((round, now));
        let mut sends = Vec::new();
        for (&peer, progress) in &leader.progress {
            let commit = self.commit.min(progress.match_index);
            let whole = committed_in_term && commit == self.commit;
            let acked = if whole { progress.round_acked } else { 0 };
            sends.push(Transmit {
                to: peer,
                message: Message::Heartbeat { term: self.hard.term, commit, round, acked },
            });
        }
        self.ready.extend(sends);
    }

    /// Confirms the heartbeat rounds a majority has answered: they extend the lease and release
    /// the reads waiting for them.
    fn confirm_rounds(&mut self, now: Instant) {
        let own_round = self.leader_state.as_ref().expect("leader").round;
        let confirmed = self.quorum_value(own_round, |p| p.round_acked);
        let leader = self.leader_state.as_mut().expect("leader");
        let mut confirmed_sent_at = None;
        while let Some(&(round, sent_at)) = leader.rounds_sent.front() {
            if round > confirmed {
                break;
            }
            leader.rounds_sent.pop_front();
            // A majority heard from this leader no earlier than `sent_at`, so none of them will
            // vote for another before `sent_at + election_timeout`.
            let until = sent_at + self.config.leader_lease;
            leader.lease_until = Some(leader.lease_until.map_or(until, |u| u.max(until)));
            confirmed_sent_at = Some(sent_at);
        }
        while leader.reads.front().is_some_and(|&(round, _, _)| round <= confirmed) {
            let (_, ctx, index) = leader.reads.pop_front().expect("checked");
            leader.reads_confirmed.push_back((ctx, index));
        }
        let waiting = leader.reads.front().is_some_and(|&(round, _, _)| round > leader.round);
        if waiting && leader.rounds_sent.is_empty() {
            self.broadcast_heartbeat(now);
        }
        // No other leader can have been elected, let alone committed, before a majority
        // acknowledged this one's round, so a leader that has committed in its term is as
        // fresh as the round it sent (its `?stale` answers' contact once the lease lapses).
        if self.committed_in_term() {
            self.caught_up_at = self.caught_up_at.max(confirmed_sent_at);
        }
        self.release_reads();
    }

    /// Emits the confirmed reads whose index has been handed to the application.
    fn release_reads(&mut self) {
        let Some(leader) = self.leader_state.as_mut() else { return };
        while leader.reads_confirmed.front().is_some_and(|&(_, index)| index <= self.applied) {
            let (ctx, index) = leader.reads_confirmed.pop_front().expect("checked");
            self.events.push_back(Event::ReadReady { ctx, index });
        }
    }

    fn step_down_reads(&mut self) {
        if let Some(leader) = self.leader_state.take() {
            for (_, ctx, _) in leader.reads {
                self.events.push_back(Event::ReadFailed { ctx });
            }
            for (ctx, _) in leader.reads_confirmed {
                self.events.push_back(Event::ReadFailed { ctx });
            }
        }
    }

    // --- helpers -----------------------------------------------------------------------------

    fn check_leader(&self) -> Result<(), ProposeError> {
        if self.role == Role::Leader {
            Ok(())
        } else {
            Err(ProposeError::NotLeader { leader_hint: self.leader })
        }
    }

    /// Whether this leader has committed an entry of its own term, and so knows the commit
    /// index (its no-op is the first such entry).
    fn committed_in_term(&self) -> bool {
        self.log.term_at(self.commit) == Some(self.hard.term)
    }

    /// Whether a leader may still hold a lease that counted on this server: it heard from one
    /// within the minimum election timeout. Contact alone decides, not whether a leader is
    /// known now: a higher term learned from a stray answer forgets the leader but not the
    /// promise made to it, and a restart counts as contact (see [`Raft::new`]).
    fn in_leader_lease(&self, now: Instant) -> bool {
        self.role == Role::Leader
            || self.leader_contact.is_some_and(|at| now < at + self.config.election_timeout)
    }

    fn has_quorum(&self, servers: &BTreeSet<ServerId>) -> bool {
        let voters = &self.membership.voters;
        !voters.is_empty() && servers.intersection(voters).count() > voters.len() / 2
    }

    /// The largest value a majority of voters has reached: this server's own value, if it
    /// votes, and each other voter's from its progress.
    fn quorum_value(&self, own: u64, value: impl Fn(&Progress) -> u64) -> u64 {
        let leader = self.leader_state.as_ref().expect("leader");
        // On every acknowledgement: no allocation, memberships hold at most SERVERS_MAX.
        let mut values = [0u64; SERVERS_MAX];
        let voters = self.membership.voters.len();
        for (slot, &id) in values.iter_mut().zip(&self.membership.voters) {
            *slot = if id == self.config.id { own } else { leader.progress.get(&id).map_or(0, &value) };
        }
        let values = &mut values[..voters];
        values.sort_unstable_by(|a, b| b.cmp(a));
        values[voters / 2]
    }

    /// Whether this leader replicates to `from`; an answer from a server removed from (or never
    /// in) the membership is counted and ignored.
    fn tracks(&mut self, from: ServerId) -> bool {
        let known = self.leader_state.as_ref().is_some_and(|l| l.progress.contains_key(&from));
        if !known {
            self.stats.messages_ignored += 1;
        }
        known
    }

    fn is_sole_voter(&self) -> bool {
        self.membership.voters.len() == 1 && self.membership.voters.contains(&self.config.id)
    }

    /// Every other member, voter or learner: whom a leader replicates to.
    fn peers(&self) -> impl Iterator<Item = ServerId> + '_ {
        let members = self.membership.voters.iter().chain(&self.membership.learners);
        members.copied().filter(move |&id| id != self.config.id)
    }

    /// Every other voter: whom a candidate asks.
    fn voter_peers(&self) -> Vec<ServerId> {
        self.membership.voters.iter().copied().filter(|&id| id != self.config.id).collect()
    }

    fn reset_election_timer(&mut self, now: Instant) {
        let timeout =
            self.rng.duration_between(self.config.election_timeout, self.config.election_timeout * 2);
        self.election_deadline = now + timeout;
    }

    /// Queues a message that may only leave once everything persisted so far is durable.
    fn send(&mut self, to: ServerId, message: Message) {
        self.held
            .push_back((self.persist_issued + u64::from(self.pending.is_some()), Transmit { to, message }));
    }

    fn pending_persist(&mut self) -> &mut Persist {
        let id = self.persist_issued + 1;
        self.pending.get_or_insert_with(|| Persist {
            id: PersistId(id),
            hard_state: None,
            snapshot: None,
            truncate_from: None,
            entries: Vec::new(),
        })
    }

    fn hard_state_changed(&mut self) {
        let hard = self.hard;
        self.pending_persist().hard_state = Some(hard);
    }

    /// Issues this step's write, if any, then checks invariants. Runs at the end of every input.
    fn finish_step(&mut self) {
        let now = (self.role, self.hard.term, self.leader);
        if self.reported != now {
            self.reported = now;
            self.events.push_back(Event::Role { role: now.0, term: now.1, leader: now.2 });
        }
        if let Some(persist) = self.pending.take() {
            self.persist_issued = persist.id.0;
            self.persist_log_ends.push_back((persist.id.0, self.log.last_index()));
            self.persists.push_back(persist);
        }
        self.check_invariants();
    }

    /// Checks the server's invariants; a no-op outside test, simulation and fuzz builds.
    pub fn check_invariants(&self) {
        #[cfg(any(test, feature = "invariants"))]
        {
            self.log.check();
            assert!(self.hard.term >= self.log.last_term(), "no entry is from a future term");
            assert!(self.applied <= self.commit, "only committed entries are applied");
            let base = self.log.base();
            assert!(base.0 <= self.snapshot_index(), "only a snapshot lets the log be compacted");
            assert!(self.snapshot_index() <= self.applied, "a snapshot covers applied entries only");
            if let Some(snapshot) = &self.snapshot {
                let term = self.log.term_at(snapshot.meta.index);
                assert!(term.is_none_or(|t| t == snapshot.meta.term), "the log agrees with its snapshot");
            }
            if !self.config.bug(PlantedBug::CommitWithoutQuorum) {
                assert!(self.commit <= self.log.last_index(), "the commit index is in the log");
            }
            assert!(self.durable_index <= self.log.last_index());
            assert!(self.persist_durable <= self.persist_issued);
            assert!(self.pending.is_none(), "every step issues its write");
            assert_eq!(self.role == Role::Leader, self.leader_state.is_some());
            if self.role == Role::Leader {
                assert_eq!(self.leader, Some(self.config.id));
                assert_eq!(self.hard.vote, Some(self.config.id), "a leader voted for itself");
                let leader = self.leader_state.as_ref().expect("checked");
                for progress in leader.progress.values() {
                    assert!(progress.match_index < progress.next_index, "next is past match");
                    assert!(progress.match_index <= self.log.last_index());
                }
            }
            let mut previous = 0;
            for &(barrier, _) in &self.held {
                assert!(barrier >= previous && barrier <= self.persist_issued);
                previous = barrier;
            }
        }
    }
}

/// Indexes past this are refused on the wire: far beyond any real log, and far enough from
/// `u64::MAX` that index arithmetic cannot overflow.
const INDEX_MAX: Index = 1 << 62;

/// Whether a message is one a correct peer could send: an append's entries follow its
/// `prev_index` one by one with terms that never decrease and never pass the sender's; a
/// snapshot is from no later term than its sender's. The core asserts these shapes, so a
/// message without them is dropped before it reaches the log.
fn well_formed(message: &Message) -> bool {
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

/// The last membership in `log`, else the snapshot's, else the bootstrap one from `config`,
/// with the index it took effect at.
fn latest_membership(log: &Log, snapshot: Option<&Snapshot>, config: &Config) -> (Membership, Index) {
    log.last_membership().unwrap_or_else(|| match snapshot {
        Some(snapshot) => (snapshot.meta.membership.clone(), snapshot.meta.index),
        None => (Membership { voters: config.voters.clone(), learners: BTreeSet::new() }, 0),
    })
}

/// The log a server restarts with: the restored entries after its snapshot. The snapshot is
/// written before the log writes of its persist, so a crash between them leaves a log that
/// either holds the snapshot's last entry (the rest follows) or conflicts with or stops short
/// of it (a leader's snapshot was replacing it: all of it goes).
/// Also says whether the durable entries must all be dropped (they do not continue the
/// snapshot).
fn restore_log(snapshot: Option<&Snapshot>, mut entries: Vec<Entry>) -> Result<(Log, bool), ConfigError> {
    let Some(snapshot) = snapshot else {
        if entries.first().is_some_and(|e| e.index != 1) {
            return Err(ConfigError::Restore("the log starts after index 1 and there is no snapshot"));
        }
        return Ok((Log::with_base((0, 0), entries), false));
    };
    let meta = &snapshot.meta;
    let first = entries.first().map_or(meta.index + 1, |e| e.index);
    if first > meta.index + 1 {
        return Err(ConfigError::Restore("entries are missing between the snapshot and the log"));
    }
    let held_any = !entries.is_empty();
    let kept = match entries.iter().position(|e| e.index == meta.index) {
        Some(at) if entries[at].term == meta.term => Some(entries.split_off(at + 1)),
        Some(_) => None,
        None if first == meta.index + 1 => Some(entries),
        None => None,
    };
    let drop_durable_log = kept.is_none() && held_any;
    Ok((Log::with_base((meta.index, meta.term), kept.unwrap_or_default()), drop_durable_log))
}
