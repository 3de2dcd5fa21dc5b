//! Raft consensus (Ongaro and Ousterhout, 2014; Ongaro's thesis for pre-vote, check-quorum,
//! leases and ReadIndex), as a sans-IO state machine.
//!
//! A [`Raft`] is one server. Like [`crate::Gossip`], it takes inputs stamped with `now`
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
//!
//! Where each part lives: [`Raft`] (here) holds a role and the state every role shares
//! (`shared.rs`), apart, so that a leader's handlers borrow both and no code asks whether a
//! leader has its followers' progress; the role's own state is `RoleState`, the leader's in
//! `leader.rs`. The concerns: `election.rs` (terms, votes, role changes), `replication.rs`
//! (appends both ways, the commit rule), `read.rs` (ReadIndex, the lease, freshness),
//! `snapshot.rs`, `membership.rs`; `message.rs` and `wire.rs` (messages and their bytes),
//! `log.rs` (the in-memory log), `journal.rs` (its records on disk), `config.rs`.

mod config;
mod election;
pub mod journal;
mod leader;
mod log;
mod membership;
mod message;
mod read;
mod replication;
mod shared;
mod snapshot;
#[cfg(test)]
mod tests;
pub mod wire;

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use bytes::Bytes;

pub use self::config::{Config, ConfigError, PlantedBug};
use self::leader::{Lead, Leader};
use self::log::Log;
use self::membership::latest_membership;
use self::message::well_formed;
pub use self::message::{AppendResult, Message, Transmit};
use self::shared::Shared;
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

/// One Raft server: its role, with the state only that role holds, and the state every role
/// shares. The two are apart so that a leader's handlers borrow both at once, and a leader
/// without its followers' progress cannot be written down.
#[derive(Debug)]
pub struct Raft {
    role: RoleState,
    shared: Shared,
}

/// A role and what only it holds.
#[derive(Debug)]
enum RoleState {
    /// Following `leader`, or waiting for one.
    Follower { leader: Option<ServerId> },
    /// Asking whether it could win; `votes` granted so far, its own included.
    PreCandidate { votes: BTreeSet<ServerId> },
    /// Standing for election; `votes` granted so far, its own included.
    Candidate { votes: BTreeSet<ServerId> },
    /// Leading (boxed: a leader's state is large and a follower's is a word).
    Leader(Box<Leader>),
}

impl RoleState {
    fn role(&self) -> Role {
        match self {
            RoleState::Follower { .. } => Role::Follower,
            RoleState::PreCandidate { .. } => Role::PreCandidate,
            RoleState::Candidate { .. } => Role::Candidate,
            RoleState::Leader(_) => Role::Leader,
        }
    }

    /// The leader's state, or the refusal a non-leader gives.
    fn leader(&self) -> Result<&Leader, ProposeError> {
        match self {
            RoleState::Leader(leader) => Ok(leader),
            other => Err(other.not_leader()),
        }
    }

    /// The refusal a server gives a proposal or read while it does not lead: it names the
    /// leader it follows, if it knows one.
    fn not_leader(&self) -> ProposeError {
        let leader_hint = match self {
            RoleState::Follower { leader } => *leader,
            _ => None,
        };
        ProposeError::NotLeader { leader_hint }
    }
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
        let shared = Shared {
            clock: Monotonic::new(now),
            rng,
            hard,
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
        let mut raft = Raft { role: RoleState::Follower { leader: None }, shared };
        if drop_durable_log {
            // The durable log conflicts with the snapshot or stops short of it: it must go from
            // the disk too, or the entries appended after the snapshot would not continue it.
            raft.shared.pending_persist().truncate_from = Some(1);
            raft.finish_step();
        }
        raft.check_invariants();
        Ok(raft)
    }

    // --- inputs ------------------------------------------------------------------------------

    /// Feeds a message from server `from`.
    pub fn handle_message(&mut self, now: Instant, from: ServerId, message: Message) {
        self.shared.clock.advance(now);
        if from == self.shared.config.id {
            self.shared.stats.messages_ignored += 1;
            return;
        }
        self.step(now, from, message);
        self.finish_step();
    }

    /// Runs the timers due at or before `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.shared.clock.advance(now);
        match &mut self.role {
            RoleState::Leader(leader) => {
                let (heartbeat_due, check_due) =
                    (leader.heartbeat_next <= now, leader.check_quorum_next <= now);
                if leader.transfer.is_some_and(|(_, deadline)| deadline <= now) {
                    leader.transfer = None;
                }
                if check_due && leader.check_quorum(now, &mut self.shared) == Lead::StepDown {
                    self.step_down(now);
                } else if heartbeat_due {
                    leader.broadcast_heartbeat(now, &mut self.shared);
                }
            }
            _ if self.shared.election_deadline <= now => self.start_pre_vote(now),
            _ => {}
        }
        self.finish_step();
    }

    /// Appends a command to the log, if this server leads. Returns the entry's index: the
    /// command took effect when an entry at that index *and this term* is committed.
    pub fn propose(&mut self, now: Instant, command: Bytes) -> Result<(Index, Term), ProposeError> {
        self.shared.clock.advance(now);
        let (leader, shared) = self.as_leader()?;
        if command.len() > ENTRY_BYTES_MAX {
            return Err(ProposeError::TooLarge { size: command.len(), max: ENTRY_BYTES_MAX });
        }
        if shared.log.last_index() - shared.commit >= UNCOMMITTED_ENTRIES_MAX {
            return Err(ProposeError::Busy("uncommitted entries"));
        }
        if leader.transfer.is_some() {
            // New entries would only delay the target's catching up (thesis §3.10).
            return Err(ProposeError::Busy("leadership transfer"));
        }
        let index = leader.append(shared, Payload::Command(command));
        leader.replicate_all(now, shared);
        let term = shared.hard.term;
        self.finish_step();
        Ok((index, term))
    }

    /// Hands leadership to `target` (Consul's `operator raft transfer-leader`): once its log is
    /// up to date, it is told to stand for election at once, and wins it. Proposals are refused
    /// meanwhile; the transfer is abandoned after an election timeout.
    pub fn transfer_leadership(&mut self, now: Instant, target: ServerId) -> Result<(), ProposeError> {
        self.shared.clock.advance(now);
        let (leader, shared) = self.as_leader()?;
        if target == shared.config.id || !shared.membership.voters.contains(&target) {
            return Err(ProposeError::NotAVoter(target));
        }
        leader.transfer = Some((target, now + shared.config.election_timeout));
        leader.maybe_hand_over(shared, target);
        leader.replicate(now, shared, target);
        self.finish_step();
        Ok(())
    }

    /// Reports that the persist `id`, and so every persist before it, is durable.
    pub fn on_persisted(&mut self, now: Instant, id: PersistId) {
        let shared = &mut self.shared;
        shared.clock.advance(now);
        assert!(
            id.0 > shared.persist_durable && id.0 <= shared.persist_issued,
            "persist {id:?} acknowledged out of order"
        );
        shared.persist_durable = id.0;
        while let Some(&(persist, end)) = shared.persist_log_ends.front() {
            if persist > id.0 {
                break;
            }
            shared.persist_log_ends.pop_front();
            shared.durable_index = end;
        }
        if let RoleState::Leader(leader) = &mut self.role {
            if leader.maybe_commit(&mut self.shared) == Lead::StepDown {
                self.step_down(now);
            }
        }
        self.finish_step();
    }

    // --- outputs -----------------------------------------------------------------------------

    /// The next write to make durable.
    pub fn poll_persist(&mut self) -> Option<Persist> {
        self.shared.persists.pop_front()
    }

    /// The next message to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        let shared = &mut self.shared;
        if let Some(transmit) = shared.ready.pop_front() {
            return Some(transmit);
        }
        match shared.held.front() {
            Some(&(barrier, _)) if barrier <= shared.persist_durable => {
                shared.held.pop_front().map(|(_, t)| t)
            }
            _ => None,
        }
    }

    /// What to apply next: a snapshot to load, or the next committed entry in log order, each
    /// once.
    pub fn poll_apply(&mut self) -> Option<Apply> {
        let shared = &mut self.shared;
        if let Some(snapshot) = shared.snapshot_to_apply.take() {
            shared.settle_caught_up();
            return Some(Apply::Snapshot(snapshot));
        }
        if shared.applied >= shared.commit {
            return None;
        }
        shared.applied += 1;
        shared.settle_caught_up();
        let entry = shared.log.get(shared.applied).expect("committed entries are in the log").clone();
        if let RoleState::Leader(leader) = &mut self.role {
            leader.release_reads(shared);
        }
        if !shared.snapshot_asked
            && shared.applied - shared.snapshot_index() >= shared.config.snapshot_threshold
        {
            shared.snapshot_asked = true;
            shared.events.push_back(Event::SnapshotDue { index: shared.applied });
        }
        Some(Apply::Entry(entry))
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.shared.events.pop_front()
    }

    /// When [`Raft::handle_timeout`] must next run.
    pub fn poll_timeout(&self) -> Instant {
        match &self.role {
            // A leader alone has no one to send heartbeats to, and its quorum is itself: an
            // idle single-server agent (`-dev`) then sleeps until something happens.
            RoleState::Leader(leader) if leader.progress.is_empty() => Instant::NEVER,
            RoleState::Leader(leader) => leader.heartbeat_next.min(leader.check_quorum_next),
            _ => self.shared.election_deadline,
        }
    }

    // --- getters -----------------------------------------------------------------------------

    /// This server's id.
    pub fn id(&self) -> ServerId {
        self.shared.config.id
    }

    /// Its role.
    pub fn role(&self) -> Role {
        self.role.role()
    }

    /// Its current term.
    pub fn term(&self) -> Term {
        self.shared.hard.term
    }

    /// Whether `bug` is planted in this server (only test, simulation and fuzz builds have any).
    pub(crate) fn planted(&self, bug: PlantedBug) -> bool {
        self.shared.config.bug(bug)
    }

    /// The leader it knows of.
    pub fn leader(&self) -> Option<ServerId> {
        match &self.role {
            RoleState::Leader(_) => Some(self.shared.config.id),
            RoleState::Follower { leader } => *leader,
            RoleState::PreCandidate { .. } | RoleState::Candidate { .. } => None,
        }
    }

    /// The membership in effect: the latest in the log, committed or not.
    pub fn membership(&self) -> &Membership {
        &self.shared.membership
    }

    /// The highest index known committed.
    pub fn commit_index(&self) -> Index {
        self.shared.commit
    }

    /// The last index in its log.
    pub fn last_index(&self) -> Index {
        self.shared.log.last_index()
    }

    /// The entry at `index`, if held.
    pub fn entry(&self, index: Index) -> Option<&Entry> {
        self.shared.log.get(index)
    }

    /// How far each other server's log is known to match this leader's, by server (what
    /// autopilot judges a new server's catch-up by); empty on a server that does not lead.
    pub fn matched(&self) -> BTreeMap<ServerId, Index> {
        let Ok(leader) = self.role.leader() else { return BTreeMap::new() };
        leader.progress.iter().map(|(id, progress)| (*id, progress.match_index)).collect()
    }

    /// The index of the latest snapshot (0 without one): entries through it may be compacted.
    pub fn snapshot_index(&self) -> Index {
        self.shared.snapshot_index()
    }

    /// Its counters.
    pub fn stats(&self) -> Stats {
        self.shared.stats
    }

    // --- message handling --------------------------------------------------------------------

    fn step(&mut self, now: Instant, from: ServerId, message: Message) {
        if !well_formed(&message) {
            // Decodable but impossible from a correct peer: ignored, never asserted on.
            self.shared.stats.messages_ignored += 1;
            return;
        }
        if self.refuse_while_led(now, from, &message) || !self.observe_term(now, from, &message) {
            return;
        }
        let term = message.term();
        match message {
            Message::PreVote { term, last_index, last_term } => {
                self.handle_pre_vote(from, term, last_index, last_term)
            }
            Message::PreVoteResponse { term, granted } => {
                self.handle_pre_vote_response(now, from, term, granted)
            }
            Message::RequestVote { term, last_index, last_term, .. } => {
                self.handle_request_vote(now, from, term, last_index, last_term)
            }
            Message::VoteResponse { granted, .. } => self.handle_vote_response(now, from, granted),
            Message::AppendEntries { prev_index, prev_term, entries, commit, .. } => {
                if self.follow(now, from, term) {
                    self.shared.handle_append(from, prev_index, prev_term, entries, commit);
                }
            }
            Message::AppendResponse { prev_index, result, .. } => {
                if let Some((leader, shared)) = self.leader_tracking(from) {
                    let lead = leader.handle_append_response(now, shared, from, prev_index, result);
                    self.step_down_if(now, lead);
                }
            }
            Message::Heartbeat { commit, round, acked, .. } => {
                if self.follow(now, from, term) {
                    self.handle_heartbeat(now, from, commit, round, acked);
                }
            }
            Message::HeartbeatResponse { round, .. } => {
                if let Some((leader, shared)) = self.leader_tracking(from) {
                    leader.handle_heartbeat_response(now, shared, from, round);
                }
            }
            Message::InstallSnapshot { meta, offset, data, done, .. } => {
                if self.follow(now, from, term) {
                    self.shared.handle_snapshot_chunk(from, meta, offset, data, done);
                }
            }
            Message::SnapshotResponse { index, received, installed, .. } => {
                if let Some((leader, shared)) = self.leader_tracking(from) {
                    let lead = leader.handle_snapshot_response(now, shared, from, index, received, installed);
                    self.step_down_if(now, lead);
                }
            }
            Message::TimeoutNow { .. } => self.handle_timeout_now(now),
        }
    }

    /// A follower's side of a heartbeat: the commit index as far as it holds the log, an
    /// answer, and the leader's word on how fresh this server is.
    fn handle_heartbeat(&mut self, now: Instant, from: ServerId, commit: Index, round: u64, acked: u64) {
        let shared = &mut self.shared;
        // The leader sends at most what this follower is known to hold.
        shared.commit = shared.commit.max(commit.min(shared.log.last_index()));
        shared.send(from, Message::HeartbeatResponse { term: shared.hard.term, round });
        shared.note_leader_commit(now, commit, round, acked);
    }

    /// The leader's state and the shared state, apart, if this server leads; or the refusal.
    fn as_leader(&mut self) -> Result<(&mut Leader, &mut Shared), ProposeError> {
        match &mut self.role {
            RoleState::Leader(leader) => Ok((leader, &mut self.shared)),
            role => Err(role.not_leader()),
        }
    }

    /// The leader's state and the shared state, apart, if this server leads and replicates to
    /// `from`. An answer from a server removed from (or never in) the membership is counted
    /// and ignored.
    fn leader_tracking(&mut self, from: ServerId) -> Option<(&mut Leader, &mut Shared)> {
        let RoleState::Leader(leader) = &mut self.role else { return None };
        if !leader.progress.contains_key(&from) {
            self.shared.stats.messages_ignored += 1;
            return None;
        }
        Some((leader, &mut self.shared))
    }

    /// Becomes a follower in the same term, with no leader known.
    fn step_down(&mut self, now: Instant) {
        self.become_follower(now, self.shared.hard.term, None);
    }

    fn step_down_if(&mut self, now: Instant, lead: Lead) {
        if lead == Lead::StepDown {
            self.step_down(now);
        }
    }

    /// Issues this step's write, if any, reports a change of role, term or leader, then checks
    /// invariants. Runs at the end of every input.
    fn finish_step(&mut self) {
        let now = (self.role(), self.shared.hard.term, self.leader());
        if self.shared.reported != now {
            self.shared.reported = now;
            self.shared.events.push_back(Event::Role { role: now.0, term: now.1, leader: now.2 });
        }
        self.shared.issue_persist();
        self.check_invariants();
    }

    /// Checks the server's invariants; a no-op outside test, simulation and fuzz builds.
    pub fn check_invariants(&self) {
        #[cfg(any(test, feature = "invariants"))]
        {
            let shared = &self.shared;
            shared.log.check();
            assert!(shared.hard.term >= shared.log.last_term(), "no entry is from a future term");
            assert!(shared.applied <= shared.commit, "only committed entries are applied");
            let base = shared.log.base();
            assert!(base.0 <= shared.snapshot_index(), "only a snapshot lets the log be compacted");
            assert!(shared.snapshot_index() <= shared.applied, "a snapshot covers applied entries only");
            if let Some(snapshot) = &shared.snapshot {
                let term = shared.log.term_at(snapshot.meta.index);
                assert!(term.is_none_or(|t| t == snapshot.meta.term), "the log agrees with its snapshot");
            }
            if !shared.config.bug(PlantedBug::CommitWithoutQuorum) {
                assert!(shared.commit <= shared.log.last_index(), "the commit index is in the log");
            }
            assert!(shared.durable_index <= shared.log.last_index());
            assert!(shared.persist_durable <= shared.persist_issued);
            assert!(shared.pending.is_none(), "every step issues its write");
            if let RoleState::Leader(leader) = &self.role {
                assert_eq!(shared.hard.vote, Some(shared.config.id), "a leader voted for itself");
                let peers: BTreeSet<ServerId> = shared.peers().collect();
                assert!(leader.progress.keys().eq(&peers), "a leader tracks every member");
                for progress in leader.progress.values() {
                    assert!(progress.match_index < progress.next_index, "next is past match");
                    assert!(progress.match_index <= shared.log.last_index());
                }
            }
            let mut previous = 0;
            for &(barrier, _) in &shared.held {
                assert!(barrier >= previous && barrier <= shared.persist_issued);
                previous = barrier;
            }
        }
    }
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
