//! The Raft simulation: a cluster of servers over a virtual network, disks and clocks, with
//! clients, a nemesis and checkers, all driven from one seed. Each server is the core's
//! [`muster_core::server::Server`], the type the `muster` binary runs (Raft, the state machine
//! and the callers waiting on them), over a register state machine.
//!
//! - **Network**: each message takes a random latency, so messages reorder; some are lost, some
//!   duplicated. Partitions drop messages on blocked links at send time.
//! - **Disks**: each server writes the agent's own write-ahead log (`muster::wal::Wal`) to a
//!   simulated directory ([`SimDir`]); each write is acknowledged after a random fsync latency,
//!   in order, and one fdatasync covers everything appended before it. A crash keeps what was
//!   synced and a random prefix of the rest (a record torn anywhere, or lost whole), and the
//!   restarted server recovers from what the log's own recovery reads back; the *durability*
//!   checker holds that to everything the last fdatasync covered. Segments are small (drawn
//!   from the seed), so logs rotate, and snapshots delete the segments they cover.
//! - **Snapshots**: each cluster draws its snapshot threshold, trailing entries and chunk size
//!   from the seed, small enough that servers snapshot, compact and send snapshots in chunks to
//!   followers that fell behind.
//! - **Clocks**: each server's clock runs fast or slow by a fixed drift, within
//!   [`RaftNet::drift_ppm_max`], or exactly as a scenario sets it ([`RaftNet::clock_drift_ppm`]).
//!   The history can be checked with every read or with `?consistent` reads only
//!   ([`Reads`]): lease reads trust the clocks, ReadIndex reads do not.
//! - **Clients** send writes, compare-and-sets, lease reads and ReadIndex reads to whichever
//!   server they believe leads, and record each operation's call and return in a history.
//! - **Checkers**, run as the simulation goes: *election safety* (one leader per term, and one
//!   vote per server per term, across crashes),
//!   *leader completeness* (a new leader holds every entry known committed), *state machine
//!   safety* (every server applies the same entry at each index, and the same snapshot state
//!   at each snapshot index), *no committed entry is ever
//!   truncated* from any log; and at the end *log matching*
//!   across servers and the [`linearizability`](crate::linearizability) of the client history.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use bytes::Bytes;
use muster::wal::{self, Wal};
use muster_core::fsm::{Command, Fsm, KvCas, KvSet, LeaderDuties, Response, Touched};
use muster_core::raft::{
    wire, Config, Entry, HardState, Index, MembershipChange, Message, Payload, Persist, PlantedBug,
    ProposeError, Raft, Restored, Role, ServerId, Snapshot, Term,
};
use muster_core::server::{self, Done, StateMachine, WriteError};
use muster_core::{Instant, Rng};

use crate::disk::SimDir;
use crate::linearizability::{self, Kind, Op};
use crate::trace::Trace;

pub(crate) mod locks;

pub use self::locks::Hold;
use self::locks::{Locker, LOCKERS, LOCKER_WAITER_BASE};

/// How the virtual network, disks and clocks behave.
#[derive(Debug, Clone)]
pub struct RaftNet {
    /// The shortest one-way latency.
    pub latency_min: Duration,
    /// The longest.
    pub latency_max: Duration,
    /// Probability a message is lost, in parts per million.
    pub loss_ppm: u64,
    /// Probability a message is delivered twice, in parts per million.
    pub duplicate_ppm: u64,
    /// The shortest time a write takes to become durable.
    pub fsync_min: Duration,
    /// The longest.
    pub fsync_max: Duration,
    /// Clocks run fast or slow by up to this much, in parts per million.
    pub drift_ppm_max: u64,
    /// Server `i`'s clock runs fast (or slow, negative) by exactly `clock_drift_ppm[i]` parts per
    /// million, overriding the draw within [`RaftNet::drift_ppm_max`]: scenarios that put the
    /// clocks beyond a bound the code relies on.
    pub clock_drift_ppm: Vec<i64>,
}

impl RaftNet {
    /// A healthy LAN with SSDs: 0.2–2 ms latency, 0.1 % loss and duplication, 0.5–3 ms fsyncs,
    /// clocks within 0.1 %.
    pub fn lan() -> RaftNet {
        RaftNet {
            latency_min: Duration::from_micros(200),
            latency_max: Duration::from_millis(2),
            loss_ppm: 1_000,
            duplicate_ppm: 1_000,
            fsync_min: Duration::from_micros(500),
            fsync_max: Duration::from_millis(3),
            drift_ppm_max: 1_000,
            clock_drift_ppm: Vec::new(),
        }
    }

    /// A hostile network: latency up to 50 ms, 5 % loss, 2 % duplication, slow disks.
    pub fn hostile() -> RaftNet {
        RaftNet {
            latency_min: Duration::from_millis(1),
            latency_max: Duration::from_millis(50),
            loss_ppm: 50_000,
            duplicate_ppm: 20_000,
            fsync_min: Duration::from_millis(1),
            fsync_max: Duration::from_millis(30),
            drift_ppm_max: 10_000,
            clock_drift_ppm: Vec::new(),
        }
    }
}

/// A checker's finding: the simulation is wrong, or the code under test is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Violation {
    /// Two leaders in one term.
    ElectionSafety {
        /// The term.
        term: Term,
        /// Both leaders.
        leaders: (ServerId, ServerId),
    },
    /// A server voted for two candidates in one term (its first vote was lost to a crash).
    DoubleVote {
        /// The voter.
        voter: ServerId,
        /// The term.
        term: Term,
        /// The two candidates.
        candidates: (ServerId, ServerId),
    },
    /// A new leader lacks an entry known committed.
    LeaderCompleteness {
        /// The leader.
        leader: ServerId,
        /// Its term.
        term: Term,
        /// The missing index.
        index: Index,
    },
    /// Two servers applied different entries at one index.
    StateMachineSafety {
        /// The index.
        index: Index,
        /// The server that disagreed.
        server: ServerId,
    },
    /// A server dropped an entry known committed from its log.
    CommittedTruncated {
        /// The server.
        server: ServerId,
        /// The first committed index it dropped.
        index: Index,
    },
    /// A server's write-ahead log came back without something its last fdatasync covered, or
    /// would not open after a crash.
    Durability {
        /// The server.
        server: ServerId,
        /// What was lost, or why the log would not open.
        why: String,
    },
    /// Two logs hold the same (index, term) but differ before it.
    LogMatching {
        /// The servers.
        servers: (ServerId, ServerId),
        /// Where they differ.
        index: Index,
    },
    /// The client history has no linearization.
    Linearizability(linearizability::Violation),
    /// A server panicked (an invariant or assertion in the core).
    Panic(String),
    /// Two lockers counted themselves the lock's holder at once.
    LockShared {
        /// The hold found first.
        first: Hold,
        /// The one that overlaps it.
        second: Hold,
    },
    /// A replica shows the lock held by a session that does not exist.
    LockHeldByDeadSession {
        /// The server.
        server: ServerId,
        /// The session.
        session: String,
    },
    /// The healed cluster did not serve a write in time. Never a safety finding: a planted
    /// safety bug caught only this way counts as missed.
    Liveness(String),
}

impl Violation {
    /// The checker that found it, in the words a failing run prints (`caught by ...`).
    pub fn checker(&self) -> &'static str {
        match self {
            Violation::ElectionSafety { .. } => "election safety",
            Violation::DoubleVote { .. } => "one vote per term",
            Violation::LeaderCompleteness { .. } => "leader completeness",
            Violation::StateMachineSafety { .. } => "state machine safety",
            Violation::CommittedTruncated { .. } => "committed entries stay",
            Violation::Durability { .. } => "durability",
            Violation::LogMatching { .. } => "log matching",
            Violation::Linearizability(_) => "linearizability",
            Violation::LockShared { .. } | Violation::LockHeldByDeadSession { .. } => "locks",
            Violation::Panic(_) => "invariants",
            Violation::Liveness(_) => "liveness",
        }
    }
}

/// Counts of what happened, for scenario reports.
#[derive(Debug, Clone, Copy, Default)]
pub struct RaftStats {
    /// Messages delivered.
    pub delivered: u64,
    /// Messages lost, partitioned or sent to a crashed server.
    pub dropped: u64,
    /// Writes lost or torn by crashes.
    pub writes_lost: u64,
    /// Client operations that completed, and that never learned their outcome.
    pub ops_completed: u64,
    /// Client operations whose outcome is unknown.
    pub ops_unknown: u64,
    /// Fsync batches: persists made durable together.
    pub fsyncs: u64,
    /// Snapshots taken by servers of their own state.
    pub snapshots_taken: u64,
    /// Snapshots servers loaded from a leader's chunks.
    pub snapshots_installed: u64,
    /// Times a locker acquired the lock.
    pub locks_taken: u64,
    /// Lockers that died holding it, leaving their session to expire.
    pub lockers_died: u64,
    /// Sessions the leader destroyed when their TTL ran out.
    pub sessions_expired: u64,
    /// Bytes of unsynced log writes crashes lost (the rest of each torn write survived).
    pub bytes_torn: u64,
    /// Appends a full disk refused (each tried again later).
    pub disk_full_waits: u64,
    /// Log writes or fsyncs that failed (EIO), each stopping its server.
    pub writer_failures: u64,
}

/// What a server's log must hold after a crash, whatever else it holds: every write the last
/// fdatasync covered. The log itself (the agent's `Wal` over a [`SimDir`]) is what a restarted
/// server recovers from; this model is what the durability checker holds it to.
#[derive(Debug, Default, Clone)]
struct Disk {
    hard: HardState,
    snapshot: Option<Snapshot>,
    /// The durable log: contiguous, starting at 1 or anywhere a snapshot covers what precedes.
    entries: Vec<Entry>,
    /// Writes in progress, each acknowledged at its instant, in order.
    pending: VecDeque<(Instant, Persist)>,
    /// Writes appended to the log since its last fdatasync.
    unsynced: Vec<Persist>,
}

impl Disk {
    fn apply(&mut self, persist: &Persist) {
        if let Some(snapshot) = &persist.snapshot {
            self.snapshot = Some(snapshot.clone());
        }
        if let Some(hard) = persist.hard_state {
            self.hard = hard;
        }
        self.apply_entries(persist.truncate_from, &persist.entries);
    }

    fn apply_entries(&mut self, truncate_from: Option<Index>, entries: &[Entry]) {
        if let Some(from) = truncate_from {
            self.entries.retain(|e| e.index < from);
        }
        for entry in entries {
            if let Some(last) = self.entries.last() {
                assert_eq!(entry.index, last.index + 1, "a write continues the durable log");
            }
            self.entries.push(entry.clone());
        }
    }
}

/// A server as the agent runs it: the core server over the registers, answering the client
/// operation (its number in the history) each caller waits on.
type Core = server::Server<Replica, usize>;

#[derive(Debug)]
struct Server {
    core: Option<Core>,
    disk: Disk,
    /// The log as the server has written it: durable entries and writes in flight.
    log: Vec<Entry>,
    /// How much of its replica's [`Replica::log`] the checkers have seen.
    seen: usize,
    /// The index of the last entry (or snapshot) its replica applied, as the checkers saw it.
    applied: Index,
    /// Parts per million this clock runs fast (or slow, negative).
    drift_ppm: i64,
    timer: Option<Instant>,
    boots: u64,
    /// What time decides while it leads: session TTLs, tombstone expiry.
    duties: LeaderDuties,
    /// Its disk, which outlives its crashes.
    dir: SimDir,
    /// The write-ahead log open on it while the server is up.
    wal: Option<Wal<SimDir>>,
    /// Writes the full disk refused, in order, tried again every
    /// [`wal::DISK_FULL_RETRY_INTERVAL`].
    waiting_for_space: VecDeque<Persist>,
    /// Until when its disk stays full.
    full_until: Option<Instant>,
}

/// How long tombstones are kept in the simulation: short enough that runs reap them.
const TOMBSTONE_TTL: Duration = Duration::from_secs(5);

/// A server's leader duties, with the bug planted in them if any.
fn duties(planted_bug: Option<PlantedBug>) -> LeaderDuties {
    let duties = LeaderDuties::new(TOMBSTONE_TTL);
    #[cfg(feature = "invariants")]
    let duties = {
        let mut duties = duties;
        duties.plant(planted_bug);
        duties
    };
    #[cfg(not(feature = "invariants"))]
    let _ = planted_bug;
    duties
}

/// The waiter of a leader duty's proposal: nobody waits on it.
const DUTY_WAITER: usize = usize::MAX;

/// A client operation in flight: its number in the history, the server it waits on and the
/// client that asked.
#[derive(Debug, Clone)]
struct Pending {
    op: usize,
    server: usize,
    client: usize,
    deadline: Instant,
}

/// Which reads a check holds to linearizability.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reads {
    /// Every read: default-mode (lease) reads and `?consistent` (ReadIndex) reads.
    All,
    /// `?consistent` reads only: what holds whatever the clocks do.
    Consistent,
}

/// What a client asks.
enum Request {
    Propose(Kind, Bytes),
    LeaseRead,
    ReadIndex,
}

/// The state machine each server applies its log to: the agent's own [`Fsm`], whose KV store
/// holds the clients' registers (register `k` is the key `k<k>`, its value eight bytes), and a
/// record of what it applied, for the checkers.
#[derive(Debug, Default)]
struct Replica {
    fsm: Fsm,
    /// Planted in `fsm`, and again in every state it restores.
    planted_bug: Option<PlantedBug>,
    /// Every entry applied and snapshot restored since the server booted, in order.
    log: Vec<Applied>,
    /// Snapshots taken of this state.
    snapshots_taken: std::cell::Cell<u64>,
}

#[derive(Debug, Clone)]
enum Applied {
    /// An entry, and what applying it changed (nothing for Raft's own entries).
    Entry(Entry, Touched),
    Snapshot(Snapshot),
}

impl Replica {
    fn new(planted_bug: Option<PlantedBug>) -> Replica {
        let mut replica = Replica { planted_bug, ..Replica::default() };
        replica.plant();
        replica
    }

    fn plant(&mut self) {
        #[cfg(feature = "invariants")]
        self.fsm.plant(self.planted_bug);
        // Without the feature no bug can be planted (`RaftCluster::new` refuses one).
        #[cfg(not(feature = "invariants"))]
        let _ = self.planted_bug;
    }

    /// Register `key`'s value.
    fn get(&self, key: u64) -> Option<u64> {
        let (_, entry) = self.fsm.kv().get(&register_key(key));
        entry.map(|entry| register_value(&entry.value))
    }
}

impl StateMachine for Replica {
    /// Whether the command took effect (a compare-and-set's comparison held).
    type Output = bool;

    fn apply(&mut self, index: Index, command: &Bytes) -> bool {
        let applied = self.fsm.apply(index, command).expect("the clients' commands decode");
        if let Some(Applied::Entry(entry, touched)) = self.log.last_mut() {
            assert_eq!(entry.index, index, "applying() saw this entry first");
            *touched = applied.touched;
        }
        matches!(applied.response, Response::Bool(true))
    }

    fn snapshot(&self) -> Bytes {
        self.snapshots_taken.set(self.snapshots_taken.get() + 1);
        self.fsm.snapshot()
    }

    fn restore(&mut self, snapshot: &Snapshot) {
        self.fsm = Fsm::restore(&snapshot.data).expect("a snapshot of this state machine restores");
        self.plant();
        self.log.push(Applied::Snapshot(snapshot.clone()));
    }

    fn applying(&mut self, entry: &Entry) {
        self.log.push(Applied::Entry(entry.clone(), Touched::default()));
    }
}

/// Register `key`'s name in the KV store.
fn register_key(key: u64) -> String {
    format!("k{key}")
}

fn register_value(bytes: &[u8]) -> u64 {
    u64::from_be_bytes(bytes.try_into().expect("the clients write eight-byte values"))
}

/// A client's write of `value` to register `key`: a plain PUT, or a check-and-set on the index
/// of the write it expects to find (0: the key must not exist), as Consul's `?cas=` is.
fn register_write(key: u64, cas: Option<Index>, value: u64, now: Instant) -> Bytes {
    let set = KvSet { key: register_key(key), value: Bytes::copy_from_slice(&value.to_be_bytes()), flags: 0 };
    let command = match cas {
        None => Command::KvSet(set),
        Some(index) => Command::KvCas(KvCas { set, index }),
    };
    command.encode(now.as_nanos() / 1_000_000)
}

/// Clients, each with its own idea of who leads.
const CLIENTS: usize = 4;

/// How long a client waits before giving an operation up as unknown.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(2);

/// The registers clients use: few enough to collide, enough to keep each key's history short.
const KEYS: u64 = 24;

/// A simulated Raft cluster.
pub struct RaftCluster {
    rng: Rng,
    now: Instant,
    net: RaftNet,
    servers: Vec<Server>,
    base_config: Config,
    /// Log segments roll over past this size (small, so that runs rotate and delete them).
    segment_bytes_max: u64,
    /// The bug planted in every server, if any (in Raft through `base_config`, in the state
    /// machine through each [`Replica`]).
    planted_bug: Option<PlantedBug>,
    in_flight: BTreeMap<(Instant, u64), (usize, usize, Message)>,
    sends: u64,
    timers: BTreeSet<(Instant, usize)>,
    fsyncs: BTreeSet<(Instant, usize)>,
    /// When each server's log writer tries the writes a full disk refused again.
    space_retries: BTreeSet<(Instant, usize)>,
    /// Servers whose log writer failed: each stops, and is started again, at the next step.
    failed_writers: BTreeSet<usize>,
    blocked: BTreeSet<(usize, usize)>,
    /// Until then, every server that grants a vote crashes right after its answer leaves, and
    /// restarts at once.
    vote_trap_until: Option<Instant>,
    /// Until then, a leader that acknowledges a write crashes at once, before its next
    /// messages leave, and restarts: the window in which an acknowledgement before the
    /// leader's own fsync loses the write.
    ack_trap_until: Option<Instant>,
    /// Disks that stall: each write on them takes this much longer, until an instant.
    slow_disks: BTreeMap<usize, (Instant, Duration)>,
    /// Links whose messages take seconds longer until an instant (a stalled TCP connection, a
    /// paused process): messages of a deposed leader arrive in a later term.
    stalled: BTreeMap<(usize, usize), (Instant, Duration)>,
    // Checker state.
    leaders: BTreeMap<Term, ServerId>,
    /// Every vote granted, by (voter, term): a server votes once per term, across restarts.
    votes: BTreeMap<(ServerId, Term), ServerId>,
    committed: BTreeMap<Index, Entry>,
    /// When each committed entry was first applied anywhere.
    first_applied: BTreeMap<Index, Instant>,
    /// For each committed entry, the term of the server that first applied it: no earlier than
    /// the term in which it was committed.
    committed_by_term: BTreeMap<Index, Term>,
    /// The first snapshot state seen at each index: every other must equal it.
    snapshots: BTreeMap<Index, Bytes>,
    violation: Option<Violation>,
    // Clients.
    history: Vec<Op>,
    pending: Vec<Pending>,
    next_value: u64,
    /// The last acknowledged write of each register: its value and its index, which is the
    /// key's `ModifyIndex` for as long as that value stands.
    acked: BTreeMap<u64, (u64, Index)>,
    /// Operations known not to have happened (refused, or their entry lost its index to
    /// another).
    void: BTreeSet<usize>,
    /// The operations that are default-mode (lease) reads.
    lease_reads: BTreeSet<usize>,
    /// Where each write of the history sits in the log, if Raft took it.
    waits: Vec<Option<(Index, Term)>>,
    /// The server each client believes leads. Clients learn only from the answers they get,
    /// so while a deposed leader still believes it leads, some clients talk to it and others
    /// to its successor, as Consul's agents do.
    leader_guess: [usize; CLIENTS],
    /// When each server last became leader, and when the first write it acknowledged returned.
    pub leader_log: Vec<(Instant, ServerId, Term)>,
    /// Completed writes: (return time, server).
    pub writes_acked: Vec<(Instant, usize)>,
    trace: Trace,
    // Lockers.
    lockers: Vec<Locker>,
    /// Every closed span in which a locker held the lock.
    holds: Vec<Hold>,
    next_locker_waiter: usize,
    stats: RaftStats,
}

impl RaftCluster {
    /// `servers` servers (ids 1..=n) with default timings, everything drawn from `seed`.
    pub fn new(seed: u64, servers: usize, net: RaftNet, planted_bug: Option<PlantedBug>) -> RaftCluster {
        RaftCluster::with_spares(seed, servers, 0, net, planted_bug)
    }

    /// `voters` servers bootstrapped as the cluster (ids 1..=voters), and `spares` more started
    /// with no membership, which the nemesis may add, promote and remove.
    pub fn with_spares(
        seed: u64,
        voters: usize,
        spares: usize,
        net: RaftNet,
        planted_bug: Option<PlantedBug>,
    ) -> RaftCluster {
        let servers = voters + spares;
        let mut rng = Rng::from_seed(seed);
        let ids = 1..=voters as ServerId;
        let mut base_config = Config::new(1, ids, 0);
        // Planted bugs exist only in builds that check invariants (the sim's default).
        #[cfg(feature = "invariants")]
        {
            base_config.planted_bug = planted_bug;
        }
        #[cfg(not(feature = "invariants"))]
        assert!(planted_bug.is_none(), "planted bugs need muster-sim's `invariants` feature");
        // Small enough that a run snapshots, compacts and ships snapshots in several chunks.
        base_config.snapshot_threshold = [16, 64, 256, 1024][rng.below(4) as usize];
        base_config.snapshot_trailing = [0, 4, 32][rng.below(3) as usize];
        base_config.snapshot_chunk_bytes = [16, 100, 4096][rng.below(3) as usize];
        let segment_bytes_max = [512, 4096, 1 << 20][rng.below(3) as usize];
        let drift_max = net.drift_ppm_max as i64;
        let servers = (0..servers)
            .map(|index| Server {
                core: None,
                disk: Disk::default(),
                log: Vec::new(),
                seen: 0,
                applied: 0,
                drift_ppm: {
                    let drawn = rng.below(2 * drift_max as u64 + 1) as i64 - drift_max;
                    net.clock_drift_ppm.get(index).copied().unwrap_or(drawn)
                },
                timer: None,
                boots: 0,
                duties: duties(planted_bug),
                dir: SimDir::default(),
                wal: None,
                waiting_for_space: VecDeque::new(),
                full_until: None,
            })
            .collect();
        let mut cluster = RaftCluster {
            rng,
            now: Instant::ZERO,
            net,
            servers,
            base_config,
            segment_bytes_max,
            planted_bug,
            in_flight: BTreeMap::new(),
            sends: 0,
            timers: BTreeSet::new(),
            fsyncs: BTreeSet::new(),
            space_retries: BTreeSet::new(),
            failed_writers: BTreeSet::new(),
            blocked: BTreeSet::new(),
            vote_trap_until: None,
            ack_trap_until: None,
            slow_disks: BTreeMap::new(),
            stalled: BTreeMap::new(),
            leaders: BTreeMap::new(),
            votes: BTreeMap::new(),
            committed: BTreeMap::new(),
            first_applied: BTreeMap::new(),
            committed_by_term: BTreeMap::new(),
            snapshots: BTreeMap::new(),
            violation: None,
            history: Vec::new(),
            pending: Vec::new(),
            next_value: 1,
            acked: BTreeMap::new(),
            void: BTreeSet::new(),
            lease_reads: BTreeSet::new(),
            waits: Vec::new(),
            leader_guess: [0; CLIENTS],
            leader_log: Vec::new(),
            writes_acked: Vec::new(),
            lockers: (0..LOCKERS).map(|_| Locker::default()).collect(),
            holds: Vec::new(),
            next_locker_waiter: 0,
            trace: Trace::default(),
            stats: RaftStats::default(),
        };
        for index in 0..cluster.servers.len() {
            cluster.boot(index);
        }
        cluster
    }

    // --- faults ------------------------------------------------------------------------------

    /// Crashes server `index`: what its log had not synced is lost, perhaps torn mid-record.
    pub fn crash(&mut self, index: usize) {
        let server = &mut self.servers[index];
        assert!(server.core.take().is_some(), "server {index} is already down");
        if let Some(timer) = server.timer.take() {
            self.timers.remove(&(timer, index));
        }
        if let Some(&(at, _)) = server.disk.pending.front() {
            self.fsyncs.remove(&(at, index));
        }
        let lost = std::mem::take(&mut server.disk.pending);
        self.stats.writes_lost += (lost.len() + server.waiting_for_space.len()) as u64;
        server.waiting_for_space.clear();
        self.space_retries.retain(|&(_, i)| i != index);
        server.disk.unsynced.clear();
        // The open log goes with the process; the disk keeps what was synced and perhaps some
        // of the rest, torn anywhere.
        server.wal = None;
        self.stats.bytes_torn += server.dir.crash(&mut self.rng);
        self.trace.record(self.now.as_nanos(), index, &"crash");
    }

    /// Restarts crashed server `index` from its disk.
    pub fn restart(&mut self, index: usize) {
        assert!(self.servers[index].core.is_none(), "server {index} is up");
        self.boot(index);
    }

    /// Whether server `index` is up.
    pub fn is_up(&self, index: usize) -> bool {
        self.servers[index].core.is_some()
    }

    /// Fills server `index`'s disk for `duration`, short of a few bytes, so that the write that
    /// meets it goes in part: its log writer waits for space meanwhile.
    pub fn fill_disk(&mut self, index: usize, duration: Duration) {
        let room = self.rng.below(256);
        self.servers[index].dir.fill(room);
        self.servers[index].full_until = Some(self.now + duration);
        self.trace.record(self.now.as_nanos(), index, &("disk full", duration.as_millis()));
    }

    /// Server `index`'s next fsync fails: the server stops, and is started again.
    pub fn fail_next_sync(&mut self, index: usize) {
        self.servers[index].dir.fail_next_sync();
        self.trace.record(self.now.as_nanos(), index, &"fsync fails");
    }

    /// Blocks every link between servers of different groups.
    pub fn partition(&mut self, groups: &[&[usize]]) {
        self.blocked.clear();
        for (from, to) in crate::links_across(groups) {
            self.blocked.insert((from, to));
        }
        self.trace.record(self.now.as_nanos(), 0, &("partition", groups));
    }

    /// For `duration`, every server that grants a vote crashes the moment its answer leaves and
    /// restarts at once: the window in which persistence ordering decides whether one term can
    /// have two leaders.
    pub fn crash_after_votes(&mut self, duration: Duration) {
        self.vote_trap_until = Some(self.now + duration);
    }

    /// For `duration`, a leader that acknowledges a client's write crashes that instant and
    /// restarts at once.
    /// The power goes: the messages still on their way from it are lost, and so is what it had
    /// not made durable; with servers that had not yet received a write it acknowledged, it
    /// can form a majority without it.
    ///
    /// Meanwhile the leader's disk stalls (each write 10 to 50 ms longer), so that its own
    /// writes are the last to become durable.
    pub fn crash_after_acks(&mut self, duration: Duration) {
        self.ack_trap_until = Some(self.now + duration);
        if let Some(leader) = self.leader() {
            let stall = self.rng.duration_between(Duration::from_millis(10), Duration::from_millis(50));
            self.slow_disks.insert(leader, (self.now + duration, stall));
        }
    }

    /// For `duration`, each directed link stalls with probability `fraction`: each of its
    /// messages takes 1 to 4 s longer (one delay per link).
    pub fn stall_links(&mut self, duration: Duration, fraction: f64) {
        let n = self.servers.len();
        for from in 0..n {
            for to in 0..n {
                if from != to && self.rng.chance(fraction) {
                    let stall = self.rng.duration_between(Duration::from_secs(1), Duration::from_secs(4));
                    self.stalled.insert((from, to), (self.now + duration, stall));
                }
            }
        }
        self.trace.record(self.now.as_nanos(), 0, &"stall");
    }

    /// Asks the leader, if any, to hand leadership to server `target`.
    pub fn transfer_leadership(&mut self, target: usize) {
        if let Some(leader) = self.leader() {
            let id = target as ServerId + 1;
            self.input(leader, |core, now| {
                let _ = core.transfer_leadership(now, id);
            });
            self.trace.record(self.now.as_nanos(), leader, &("transfer", id));
        }
    }

    /// Asks the leader, if any, for one membership change that applies: add a spare as a
    /// learner, promote a learner, or remove a learner or (while more than three vote) a voter.
    pub fn change_membership(&mut self) {
        let Some(leader) = self.leader() else { return };
        let membership = self.raft(leader).expect("up").membership().clone();
        let all: Vec<ServerId> = (1..=self.servers.len() as ServerId).collect();
        let mut options = Vec::new();
        options.extend(
            all.iter().filter(|&&id| !membership.contains(id)).map(|&id| MembershipChange::AddLearner(id)),
        );
        options.extend(membership.learners.iter().map(|&id| MembershipChange::Promote(id)));
        options.extend(membership.learners.iter().map(|&id| MembershipChange::Remove(id)));
        if membership.voters.len() > 3 {
            options.extend(membership.voters.iter().map(|&id| MembershipChange::Remove(id)));
        }
        if options.is_empty() {
            return;
        }
        let change = options[self.rng.below(options.len() as u64) as usize];
        // The change's outcome shows in the membership; no client waits on it.
        self.input(leader, |core, now| core.change_membership(now, change, usize::MAX));
        self.trace.record(self.now.as_nanos(), leader, &("membership", change));
    }

    /// Restores every link.
    pub fn heal(&mut self) {
        self.blocked.clear();
        self.stalled.clear();
        for server in &mut self.servers {
            if server.full_until.take().is_some() {
                server.dir.free();
            }
        }
        self.trace.record(self.now.as_nanos(), 0, &"heal");
    }

    // --- clients -----------------------------------------------------------------------------

    /// Starts one random client operation at the server the clients believe leads.
    pub fn client_op(&mut self) {
        let key = self.rng.below(KEYS);
        let choice = self.rng.below(100);
        let client = self.rng.below(CLIENTS as u64) as usize;
        let server = self.leader_guess[client];
        if self.servers[server].core.is_none() {
            self.leader_guess[client] = self.rng.below(self.servers.len() as u64) as usize;
            return;
        }
        let call = self.now.as_nanos();
        // 40 % writes, 20 % compare-and-sets, 20 % lease reads, 20 % ReadIndex reads.
        let request = match choice {
            0..40 => {
                let value = self.fresh_value();
                Request::Propose(Kind::Write(value), register_write(key, None, value, self.now))
            }
            40..60 => {
                // Expect the value last acknowledged, so that compare-and-sets often succeed:
                // its write's index is the key's ModifyIndex exactly while the value stands
                // (values are unique and nothing deletes).
                let (expected, index) = match self.acked.get(&key) {
                    Some(&(value, index)) => (Some(value), index),
                    None => (None, 0),
                };
                let new = self.fresh_value();
                Request::Propose(
                    Kind::Cas { expected, new, ok: false },
                    register_write(key, Some(index), new, self.now),
                )
            }
            60..80 => Request::LeaseRead,
            _ => Request::ReadIndex,
        };
        let kind = match &request {
            Request::Propose(kind, _) => *kind,
            Request::LeaseRead | Request::ReadIndex => Kind::Read(None),
        };
        // The operation enters the history before the server sees it: an answer given within
        // the same step finds it.
        let op = self.history.len();
        self.history.push(Op { key, call, ret: None, kind });
        self.waits.push(None);
        if let Request::LeaseRead = request {
            self.lease_reads.insert(op);
            // A lease read is served at once, from the server's applied state, or refused.
            let now = local_time(self.now, self.servers[server].drift_ppm);
            let core = self.servers[server].core.as_ref().expect("up");
            match core.raft().lease_read(now) {
                Ok(_) => {
                    let seen = core.state_machine().get(key);
                    self.history[op] = Op { key, call, ret: Some(call), kind: Kind::Read(seen) };
                    self.stats.ops_completed += 1;
                }
                Err(error) => self.refused(op, client, &error),
            }
            return;
        }
        self.pending.push(Pending { op, server, client, deadline: self.now + CLIENT_TIMEOUT });
        let mut taken = None;
        self.input(server, |core, now| match request {
            Request::Propose(_, command) => taken = core.propose(now, command, op),
            Request::ReadIndex => core.read(now, op),
            Request::LeaseRead => unreachable!("served above"),
        });
        self.waits[op] = taken;
    }

    /// Operation `op` of `client` was refused: it never happened; the client looks for the
    /// leader elsewhere.
    fn refused(&mut self, op: usize, client: usize, error: &ProposeError) {
        self.void.insert(op);
        self.leader_guess[client] = match error {
            ProposeError::NotLeader { leader_hint: Some(hint) } => *hint as usize - 1,
            _ => self.rng.below(self.servers.len() as u64) as usize,
        };
    }

    fn fresh_value(&mut self) -> u64 {
        let value = self.next_value;
        self.next_value += 1;
        value
    }

    /// Runs the cluster with a client operation every `op_interval` on average, until `until`.
    pub fn run_with_clients(&mut self, duration: Duration, op_interval: Duration) {
        let until = self.now + duration;
        while self.now < until && self.violation.is_none() {
            let gap = self.rng.duration_between(Duration::ZERO, op_interval * 2);
            self.run_for(gap.min(until.saturating_duration_since(self.now)));
            if self.now < until {
                self.client_op();
                if self.rng.chance(0.25) {
                    self.locker_step();
                }
            }
        }
    }

    // --- running -----------------------------------------------------------------------------

    /// Runs for `duration` of simulated time.
    pub fn run_for(&mut self, duration: Duration) {
        let until = self.now + duration;
        while self.violation.is_none() {
            match self.next_instant() {
                Some(at) if at <= until => self.step(at),
                _ => break,
            }
        }
        self.now = self.now.max(until);
        self.expire_clients();
    }

    /// Runs until `done` holds (checked every 10 ms) or `limit` passes; returns how long it took.
    pub fn run_until(
        &mut self,
        limit: Duration,
        mut done: impl FnMut(&RaftCluster) -> bool,
    ) -> Option<Duration> {
        let start = self.now;
        while self.now < start + limit {
            if done(self) {
                return Some(self.now.saturating_duration_since(start));
            }
            self.run_for(Duration::from_millis(10));
            if self.violation.is_some() {
                return None;
            }
        }
        done(self).then(|| self.now.saturating_duration_since(start))
    }

    /// The current leader, if exactly one server believes it leads in the highest term.
    pub fn leader(&self) -> Option<usize> {
        let mut best: Option<(Term, usize)> = None;
        for i in 0..self.servers.len() {
            if let Some(raft) = self.raft(i) {
                if raft.role() == Role::Leader && best.is_none_or(|(t, _)| raft.term() > t) {
                    best = Some((raft.term(), i));
                }
            }
        }
        best.map(|(_, i)| i)
    }

    /// Server `index`'s Raft, if up.
    pub fn raft(&self, index: usize) -> Option<&Raft> {
        self.servers[index].core.as_ref().map(Core::raft)
    }

    /// The durable log of server `index`.
    pub fn durable_entries(&self, index: usize) -> &[Entry] {
        &self.servers[index].disk.entries
    }

    /// Now, in simulated time.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// Counters.
    pub fn stats(&self) -> RaftStats {
        self.stats
    }

    /// The trace hash.
    pub fn trace_hash(&self) -> u64 {
        self.trace.hash()
    }

    /// The client history so far.
    pub fn history(&self) -> &[Op] {
        &self.history
    }

    /// Every entry known committed, by index.
    pub fn committed(&self) -> &BTreeMap<Index, Entry> {
        &self.committed
    }

    /// The first violation found, if any; then runs the end-of-run checks (log matching and
    /// linearizability) when none was found during the run.
    pub fn check(&mut self) -> Result<(), Violation> {
        self.check_reads(Reads::All)
    }

    /// [`RaftCluster::check`], holding only `reads` to linearizability (writes always).
    pub fn check_reads(&mut self, reads: Reads) -> Result<(), Violation> {
        // Holds still open end now.
        for l in 0..self.lockers.len() {
            self.close_hold(l);
        }
        if let Some(violation) = self.violation.clone() {
            return Err(violation);
        }
        self.check_log_matching()?;
        let history = self.resolved_history(reads);
        linearizability::check(&history).map_err(Violation::Linearizability)
    }

    /// The client history with every write whose client gave up resolved from the committed
    /// log, as Jepsen resolves indeterminate operations where it can: an entry committed at its
    /// index and term took effect no later than its first application anywhere (and a
    /// compare-and-set's outcome is replayed from the log); one whose index went to another
    /// entry never happened. Left unresolved, each such write could fall anywhere after its
    /// call, and the search grows exponentially with their number.
    fn resolved_history(&self, reads: Reads) -> Vec<Op> {
        // Replay the committed log once for the outcome of every compare-and-set.
        // The real rules, not a planted bug's: the outcome the clients should have seen.
        let mut replay = Replica::default();
        let mut outcomes: BTreeMap<Index, bool> = BTreeMap::new();
        for (&index, entry) in &self.committed {
            if let Payload::Command(command) = &entry.payload {
                outcomes.insert(index, replay.apply(index, command));
            }
        }
        let mut history = Vec::with_capacity(self.history.len());
        for (i, op) in self.history.iter().enumerate() {
            let mut op = *op;
            if self.void.contains(&i) || (reads == Reads::Consistent && self.lease_reads.contains(&i)) {
                continue;
            }
            if let (None, Some((index, term))) = (op.ret, self.waits[i]) {
                match self.committed.get(&index) {
                    Some(entry) if entry.term == term => {
                        op.ret = Some(self.first_applied[&index].as_nanos());
                        if let Kind::Cas { ok, .. } = &mut op.kind {
                            *ok = outcomes[&index];
                        }
                    }
                    Some(_) => continue,
                    None => {}
                }
            }
            history.push(op);
        }
        history
    }

    // --- the event loop ----------------------------------------------------------------------

    fn boot(&mut self, index: usize) {
        let seed = self.rng.next_u64();
        let server = &mut self.servers[index];
        server.boots += 1;
        let mut config = Config { id: index as ServerId + 1, rng_seed: seed, ..self.base_config.clone() };
        if !config.voters.contains(&config.id) {
            // A spare: it learns its membership from a leader's log.
            config.voters.clear();
        }
        let restored = match Wal::open_in(server.dir.clone(), self.segment_bytes_max) {
            Ok((wal, restored)) => {
                server.wal = Some(wal);
                restored
            }
            Err(error) => {
                let why = error.to_string();
                self.violation.get_or_insert(Violation::Durability { server: config.id, why });
                return;
            }
        };
        self.check_durable(index, &restored);
        let server = &mut self.servers[index];
        server.disk.hard = restored.hard_state;
        server.disk.snapshot = restored.snapshot.clone();
        server.disk.entries = restored.entries.clone();
        server.seen = 0;
        server.applied = 0;
        server.duties = duties(self.planted_bug);
        server.log = server.disk.entries.clone();
        let now = local_time(self.now, server.drift_ppm);
        let replica = Replica::new(self.planted_bug);
        server.core = Some(Core::new(config, restored, replica, now).expect("valid config"));
        self.trace.record(self.now.as_nanos(), index, &("boot", server.boots));
        self.after_input(index);
    }

    fn next_instant(&self) -> Option<Instant> {
        let delivery = self.in_flight.keys().next().map(|&(at, _)| at);
        let timer = self.timers.first().map(|&(at, _)| at);
        let fsync = self.fsyncs.first().map(|&(at, _)| at);
        let retry = self.space_retries.first().map(|&(at, _)| at);
        let stop = (!self.failed_writers.is_empty()).then_some(self.now);
        [delivery, timer, fsync, retry, stop].into_iter().flatten().min().map(|at| at.max(self.now))
    }

    fn step(&mut self, at: Instant) {
        self.now = at;
        // A failed log writer stops its server (never carry on after a failed write or fsync,
        // as the agent's server task does); its supervisor starts it again.
        for index in std::mem::take(&mut self.failed_writers) {
            if self.servers[index].core.is_some() {
                self.crash(index);
                self.restart(index);
            }
        }
        while let Some(&(done, index)) = self.fsyncs.first() {
            if done > at {
                break;
            }
            self.fsyncs.remove(&(done, index));
            self.complete_fsync(index);
        }
        while let Some(&(when, index)) = self.space_retries.first() {
            if when > at {
                break;
            }
            self.space_retries.remove(&(when, index));
            self.retry_waiting_writes(index);
        }
        while let Some((&(when, seq), _)) = self.in_flight.first_key_value() {
            if when > at {
                break;
            }
            let (from, to, message) = self.in_flight.remove(&(when, seq)).expect("present");
            self.deliver(from, to, message);
        }
        while let Some(&(when, index)) = self.timers.first() {
            if when > at {
                break;
            }
            self.timers.remove(&(when, index));
            self.servers[index].timer = None;
            if self.servers[index].core.is_some() {
                self.input(index, |core, now| core.handle_timeout(now));
            }
        }
    }

    /// Makes durable every write whose fsync completed, all in one batch (group commit), and
    /// acknowledges the newest.
    fn complete_fsync(&mut self, index: usize) {
        let server = &mut self.servers[index];
        let mut newest = None;
        while let Some((done, _)) = server.disk.pending.front() {
            if *done > self.now {
                break;
            }
            let (_, persist) = server.disk.pending.pop_front().expect("checked");
            newest = Some(persist.id);
        }
        if newest.is_some() {
            // One fdatasync covers everything appended so far, as the agent's group commit. A
            // failed one stops the server, as the agent's log writer does (never carry on after
            // a failed fsync); its supervisor starts it again.
            if let Some(Err(_)) = server.wal.as_mut().map(Wal::sync) {
                self.writer_failed(index);
                return;
            }
            for persist in std::mem::take(&mut server.disk.unsynced) {
                server.disk.apply(&persist);
            }
        }
        if let Some(&(next, _)) = server.disk.pending.front() {
            self.fsyncs.insert((next, index));
        }
        let Some(id) = newest else { return };
        self.stats.fsyncs += 1;
        if server.core.is_some() {
            self.input(index, |core, now| core.on_persisted(now, id));
        }
    }

    fn deliver(&mut self, from: usize, to: usize, message: Message) {
        // Every message crosses the real codec, as it would the TCP transport.
        let frame = wire::encode(from as ServerId + 1, &message);
        let (sender, message) = wire::decode(&frame).expect("what a server sends decodes");
        assert_eq!(sender, from as ServerId + 1);
        if self.servers[to].core.is_none() {
            self.stats.dropped += 1;
            return;
        }
        self.stats.delivered += 1;
        self.input(to, |core, now| core.handle_message(now, from as ServerId + 1, message));
    }

    /// Feeds server `index` one input at its local time, then drains it. A panic in the core
    /// (an invariant, an assertion) is a finding, not a crash of the simulator.
    fn input(&mut self, index: usize, input: impl FnOnce(&mut Core, Instant)) {
        if self.call(index, input) {
            self.after_input(index);
        }
    }

    /// Like [`RaftCluster::input`], without draining; `false` if the input panicked.
    fn call(&mut self, index: usize, input: impl FnOnce(&mut Core, Instant)) -> bool {
        let now = local_time(self.now, self.servers[index].drift_ppm);
        let core = self.servers[index].core.as_mut().expect("up");
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| input(core, now)));
        self.record_panic(result)
    }

    /// Drains server `index` after an input: writes, applies, events, messages, its timer.
    fn after_input(&mut self, index: usize) {
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.drain(index)));
        self.record_panic(result);
    }

    /// Records a panic as a finding; `true` if there was none.
    fn record_panic(&mut self, result: std::thread::Result<()>) -> bool {
        let Err(panic) = result else { return true };
        let text = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .unwrap_or_default();
        self.violation.get_or_insert(Violation::Panic(text));
        false
    }

    fn drain(&mut self, index: usize) {
        let mut persists = Vec::new();
        let mut replies = Vec::new();
        let mut roles = Vec::new();
        let mut transmits = Vec::new();
        {
            let core = self.servers[index].core.as_mut().expect("only live servers take input");
            while let Some(persist) = core.poll_persist() {
                persists.push(persist);
            }
            while let Some(reply) = core.poll_reply() {
                replies.push(reply);
            }
            while let Some(change) = core.poll_role() {
                roles.push(change);
            }
            while let Some(transmit) = core.poll_transmit() {
                transmits.push(transmit);
            }
        }
        for persist in persists {
            self.write(index, persist);
        }
        self.check_applied(index);
        for change in roles {
            self.trace.record(self.now.as_nanos(), index, &change);
            self.office(index, change.previous, change.role);
            if change.role == Role::Leader {
                self.on_leader(index, change.term);
            }
        }
        let mut acked = false;
        for reply in replies {
            self.trace.record(self.now.as_nanos(), index, &(reply.waiter, &reply.outcome));
            match reply.waiter {
                DUTY_WAITER => {}
                waiter if waiter >= LOCKER_WAITER_BASE => self.locker_answered(waiter, reply.outcome),
                op => {
                    acked |= matches!(reply.outcome, Ok(Done::Applied { .. }));
                    self.answered(index, op, reply.outcome);
                }
            }
        }
        if acked && self.ack_trap_until.is_some_and(|until| self.now < until) {
            // Power lost the instant the answer left: the messages polled with it never did,
            // nor those still on the way.
            let lost = self.in_flight.len();
            self.in_flight.retain(|_, (from, _, _)| *from != index);
            self.stats.dropped += (lost - self.in_flight.len()) as u64;
            self.crash(index);
            self.restart(index);
            return;
        }
        let mut trap_sprung = None;
        for transmit in transmits {
            let to = transmit.to as usize - 1;
            if let Message::VoteResponse { term, granted: true } = transmit.message {
                let voter = index as ServerId + 1;
                let first = *self.votes.entry((voter, term)).or_insert(transmit.to);
                if first != transmit.to {
                    let violation = Violation::DoubleVote { voter, term, candidates: (first, transmit.to) };
                    self.violation.get_or_insert(violation);
                }
            }
            let trapped = self.vote_trap_until.is_some_and(|until| self.now < until)
                && matches!(transmit.message, Message::VoteResponse { granted: true, .. });
            if trapped {
                trap_sprung = Some(to);
            }
            self.send(index, to, transmit.message);
        }
        if let Some(candidate) = trap_sprung {
            // Power lost the instant the vote left: whatever was not durable is gone. The server
            // is back at once, but the candidate's next messages to it straggle, so it may time
            // out and hear other candidates of the same term before it hears the winner.
            let stall = self.rng.duration_between(Duration::from_secs(1), Duration::from_secs(4));
            self.stalled.insert((candidate, index), (self.now + Duration::from_secs(5), stall));
            self.crash(index);
            self.restart(index);
            return;
        }
        self.run_duties(index);
        let Some(core) = self.servers[index].core.as_ref() else { return };
        let deadline = [Some(core.poll_timeout()), self.servers[index].duties.next_deadline()]
            .into_iter()
            .flatten()
            .min()
            .expect("Raft always has a deadline");
        let global = global_time(deadline, self.servers[index].drift_ppm);
        let server = &mut self.servers[index];
        if server.timer != Some(global) {
            if let Some(old) = server.timer.take() {
                self.timers.remove(&(old, index));
            }
            self.timers.insert((global, index));
            server.timer = Some(global);
        }
    }

    /// Proposes what fell due among leader `index`'s duties (sessions whose TTL ran out,
    /// tombstones past theirs), stamped with its own clock as the agent's leader stamps them.
    fn run_duties(&mut self, index: usize) {
        let Some(core) = self.servers[index].core.as_ref() else { return };
        if core.raft().role() != Role::Leader {
            return;
        }
        let now = local_time(self.now, self.servers[index].drift_ppm);
        for command in self.servers[index].duties.due(now) {
            if self.servers[index].core.is_none() {
                break;
            }
            let bytes = command.encode(now.as_nanos() / 1_000_000);
            self.input(index, |core, now| {
                core.propose(now, bytes, DUTY_WAITER);
            });
        }
    }

    /// Server `index` took or left the leadership: its duties start from the state it holds,
    /// or stop.
    fn office(&mut self, index: usize, previous: Role, role: Role) {
        let now = local_time(self.now, self.servers[index].drift_ppm);
        let Server { core, duties, .. } = &mut self.servers[index];
        let Some(core) = core.as_ref() else { return };
        if role == Role::Leader && previous != Role::Leader {
            duties.take_office(&core.state_machine().fsm, now);
        } else if role != Role::Leader && previous == Role::Leader {
            duties.leave_office();
        }
    }

    /// What server `index` applied, for its duties to follow (if it leads): sessions created
    /// and ended, and the index applied, for the tombstones.
    fn follow_duties(&mut self, index: usize, entry: &Entry, touched: &Touched) {
        let now = local_time(self.now, self.servers[index].drift_ppm);
        let Server { core, duties, .. } = &mut self.servers[index];
        let Some(core) = core.as_ref() else { return };
        let fsm = &core.state_machine().fsm;
        if duties.in_office() {
            let ended = touched.sessions.iter().filter(|id| fsm.sessions().get(id).is_none()).count();
            self.stats.sessions_expired += ended as u64;
        }
        duties.follow(fsm, touched, entry.index, now);
    }

    /// Queues `persist` on server `index`'s disk, checking first that it truncates no
    /// committed entry: only entries that conflict with a leader's can go, and a committed one
    /// never does (leader completeness). Entries a snapshot in the same write covers are not
    /// lost but compacted.
    fn write(&mut self, index: usize, persist: Persist) {
        let held = self.raft(index).map_or(0, Raft::snapshot_index);
        let shadow = &mut self.servers[index].log;
        let covered = persist.snapshot.as_ref().map_or(held, |s| s.meta.index.max(held));
        if let Some(from) = persist.truncate_from {
            let mut dropped = shadow.iter().filter(|e| e.index >= from && e.index > covered);
            if let Some(entry) = dropped.find(|e| self.committed.get(&e.index) == Some(e)) {
                let server = index as ServerId + 1;
                self.violation.get_or_insert(Violation::CommittedTruncated { server, index: entry.index });
            }
        }
        let mut image = Disk { entries: std::mem::take(shadow), ..Disk::default() };
        image.apply_entries(persist.truncate_from, &persist.entries);
        self.servers[index].log = image.entries;
        self.free_space_if_due(index);
        if self.servers[index].waiting_for_space.is_empty() {
            if let Some(persist) = self.append(index, persist) {
                self.wait_for_space(index, persist);
            }
        } else {
            self.servers[index].waiting_for_space.push_back(persist);
        }
    }

    /// Appends `persist` to server `index`'s log and queues its fsync; a full disk hands it
    /// back (the log cut off what part of it went in), as the agent's log writer sees it.
    /// A failed write stops the server (at the next step) and drops the persist.
    fn append(&mut self, index: usize, persist: Persist) -> Option<Persist> {
        let server = &mut self.servers[index];
        if self.failed_writers.contains(&index) {
            return None; // the writer is gone: nothing more is written, or acknowledged
        }
        let wal = server.wal.as_mut().expect("a server that writes is up");
        match wal.append(&persist) {
            Ok(()) => {}
            Err(error) if wal::retryable(&error) => return Some(persist),
            Err(_) => {
                self.writer_failed(index);
                return None;
            }
        }
        let mut latency = self.rng.duration_between(self.net.fsync_min, self.net.fsync_max);
        if let Some(&(until, stall)) = self.slow_disks.get(&index) {
            if self.now < until {
                latency += stall;
            }
        }
        let disk = &mut self.servers[index].disk;
        let done = disk.pending.back().map_or(self.now, |(at, _)| *at).max(self.now + latency);
        if disk.pending.is_empty() {
            self.fsyncs.insert((done, index));
        }
        disk.unsynced.push(persist.clone());
        disk.pending.push_back((done, persist));
        None
    }

    /// Server `index`'s log writer failed: the server stops at the next step.
    fn writer_failed(&mut self, index: usize) {
        self.stats.writer_failures += 1;
        self.failed_writers.insert(index);
    }

    /// The disk is full: `persist` waits, first in line, and the writer tries again later.
    fn wait_for_space(&mut self, index: usize, persist: Persist) {
        self.stats.disk_full_waits += 1;
        self.servers[index].waiting_for_space.push_front(persist);
        self.space_retries.insert((self.now + wal::DISK_FULL_RETRY_INTERVAL, index));
    }

    /// Tries the writes waiting for space on server `index` again, in order.
    fn retry_waiting_writes(&mut self, index: usize) {
        if self.servers[index].core.is_none() {
            return;
        }
        self.free_space_if_due(index);
        while let Some(persist) = self.servers[index].waiting_for_space.pop_front() {
            if let Some(persist) = self.append(index, persist) {
                self.wait_for_space(index, persist);
                return;
            }
        }
    }

    /// Frees server `index`'s disk once its time of being full is over.
    fn free_space_if_due(&mut self, index: usize) {
        let server = &mut self.servers[index];
        if server.full_until.is_some_and(|until| self.now >= until) {
            server.full_until = None;
            server.dir.free();
        }
    }

    /// Server `index` restarted with what its log recovered: it must hold everything the last
    /// fdatasync covered (the hard state, the snapshot, every committed entry).
    fn check_durable(&mut self, index: usize, restored: &Restored) {
        let model = &self.servers[index].disk;
        let (hard, kept) = (model.hard, restored.hard_state);
        let covered = restored.snapshot.as_ref().map_or(0, |s| s.meta.index);
        let why = if kept.term < hard.term
            || (kept.term == hard.term && hard.vote.is_some() && kept.vote != hard.vote)
        {
            Some(format!("hard state {hard:?} came back as {kept:?}"))
        } else if model.snapshot.as_ref().is_some_and(|s| s.meta.index > covered) {
            Some(format!(
                "the snapshot at {} came back at {covered}",
                model.snapshot.as_ref().unwrap().meta.index
            ))
        } else {
            let found = |entry: &Entry| {
                restored
                    .entries
                    .binary_search_by_key(&entry.index, |e| e.index)
                    .is_ok_and(|at| restored.entries[at] == *entry)
            };
            model
                .entries
                .iter()
                .filter(|e| e.index > covered && self.committed.get(&e.index) == Some(*e))
                .find(|e| !found(e))
                .map(|e| format!("committed entry {} (term {}) is gone", e.index, e.term))
        };
        if let Some(why) = why {
            self.violation.get_or_insert(Violation::Durability { server: index as ServerId + 1, why });
        }
    }

    /// Checks every entry and snapshot server `index` applied since the last look.
    fn check_applied(&mut self, index: usize) {
        let seen = self.servers[index].seen;
        let core = self.servers[index].core.as_ref().expect("up");
        let installed = core.raft().stats().snapshots_installed > 0;
        let fresh: Vec<Applied> = core.state_machine().log[seen..]
            .iter()
            .map(|applied| match applied {
                Applied::Entry(entry, touched) => Applied::Entry(entry.clone(), touched.clone()),
                Applied::Snapshot(snapshot) => Applied::Snapshot(snapshot.clone()),
            })
            .collect();
        self.stats.snapshots_taken += core.state_machine().snapshots_taken.take();
        self.servers[index].seen += fresh.len();
        for applied in fresh {
            match applied {
                Applied::Entry(entry, touched) => {
                    // Every replica applies the log in order: the same states in the same order.
                    if entry.index != self.servers[index].applied + 1 {
                        let server = index as ServerId + 1;
                        self.violation
                            .get_or_insert(Violation::StateMachineSafety { index: entry.index, server });
                    }
                    self.servers[index].applied = entry.index;
                    self.follow_duties(index, &entry, &touched);
                    self.check_entry(index, entry);
                    self.check_lock_state(index);
                }
                Applied::Snapshot(snapshot) => {
                    // Loading a snapshot from disk at boot is not an install.
                    self.stats.snapshots_installed += u64::from(installed);
                    self.servers[index].applied = snapshot.meta.index;
                    self.check_snapshot(index, snapshot);
                }
            }
        }
    }

    /// Client operation `op` got its answer from server `index`.
    fn answered(&mut self, index: usize, op: usize, outcome: Result<Done<bool>, WriteError>) {
        let Some(at) = self.pending.iter().position(|p| p.op == op && p.server == index) else {
            // A membership change's answer, or one given up on already.
            return;
        };
        let pending = self.pending.swap_remove(at);
        match outcome {
            Ok(Done::Applied { output: ok, index: at }) => {
                let op = &mut self.history[op];
                op.ret = Some(self.now.as_nanos());
                let written = match &mut op.kind {
                    Kind::Cas { ok: outcome, new, .. } => {
                        *outcome = ok;
                        ok.then_some(*new)
                    }
                    Kind::Write(value) => Some(*value),
                    Kind::Read(_) | Kind::Delete => None,
                };
                if let Some(value) = written {
                    let latest = self.acked.entry(op.key).or_insert((value, at));
                    if latest.1 < at {
                        *latest = (value, at);
                    }
                }
                self.stats.ops_completed += 1;
                self.writes_acked.push((self.now, index));
            }
            Ok(Done::Read { .. }) => {
                let replica = self.servers[index].core.as_ref().expect("up").state_machine();
                let op = &mut self.history[op];
                op.kind = Kind::Read(replica.get(op.key));
                op.ret = Some(self.now.as_nanos());
                self.stats.ops_completed += 1;
            }
            Ok(Done::Changed) => unreachable!("clients change no membership"),
            Err(WriteError::Refused(error)) => self.refused(op, pending.client, &error),
            // Another entry took its index: it never happened.
            Err(WriteError::Lost) => {
                self.void.insert(op);
            }
            // Inside a snapshot from the leader: the log may still tell.
            Err(WriteError::Unknown | WriteError::Stopped) => self.stats.ops_unknown += 1,
        }
    }

    /// Checks a snapshot server `index` restored against every other snapshot and entry known
    /// at its index.
    fn check_snapshot(&mut self, index: usize, snapshot: Snapshot) {
        let meta = &snapshot.meta;
        let server = index as ServerId + 1;
        let known = self.snapshots.entry(meta.index).or_insert_with(|| snapshot.data.clone());
        let term_agrees = self.committed.get(&meta.index).is_none_or(|e| e.term == meta.term);
        if *known != snapshot.data || !term_agrees {
            self.violation.get_or_insert(Violation::StateMachineSafety { index: meta.index, server });
        }
    }

    fn send(&mut self, from: usize, to: usize, message: Message) {
        if self.blocked.contains(&(from, to)) || self.rng.below(1_000_000) < self.net.loss_ppm {
            self.stats.dropped += 1;
            return;
        }
        let copies = if self.rng.below(1_000_000) < self.net.duplicate_ppm { 2 } else { 1 };
        for _ in 0..copies {
            let mut latency = self.rng.duration_between(self.net.latency_min, self.net.latency_max);
            if let Some(&(until, stall)) = self.stalled.get(&(from, to)) {
                if self.now < until {
                    latency += stall;
                }
            }
            self.sends += 1;
            self.in_flight.insert((self.now + latency, self.sends), (from, to, message.clone()));
        }
    }

    // --- checkers ----------------------------------------------------------------------------

    fn on_leader(&mut self, index: usize, term: Term) {
        let id = index as ServerId + 1;
        self.leader_log.push((self.now, id, term));
        if let Some(&other) = self.leaders.get(&term) {
            if other != id {
                self.violation.get_or_insert(Violation::ElectionSafety { term, leaders: (other, id) });
                return;
            }
        }
        self.leaders.insert(term, id);
        let raft = self.raft(index).expect("up");
        // Only entries known committed in an earlier term count: a stale leader (its votes
        // delayed past a later election) need not hold what a later term committed. The term
        // of the server that first applied an entry bounds the term that committed it.
        for (&committed, entry) in &self.committed {
            if self.committed_by_term[&committed] >= term || committed <= raft.snapshot_index() {
                continue;
            }
            if raft.entry(committed).map(|e| e.term) != Some(entry.term) {
                self.violation.get_or_insert(Violation::LeaderCompleteness {
                    leader: id,
                    term,
                    index: committed,
                });
                return;
            }
        }
    }

    /// Checks an entry server `index` applied against what every other server applied there.
    fn check_entry(&mut self, index: usize, entry: Entry) {
        match self.committed.get(&entry.index) {
            Some(known) if *known != entry => {
                let violation =
                    Violation::StateMachineSafety { index: entry.index, server: index as ServerId + 1 };
                self.violation.get_or_insert(violation);
            }
            Some(_) => {}
            None => {
                self.committed.insert(entry.index, entry.clone());
                self.first_applied.insert(entry.index, self.now);
                let term = self.raft(index).map_or(0, Raft::term);
                self.committed_by_term.insert(entry.index, term);
            }
        }
    }

    /// Gives up on operations past their deadline or whose server crashed: their outcome is
    /// unknown.
    fn expire_clients(&mut self) {
        let now = self.now;
        let servers = &self.servers;
        let before = self.pending.len();
        self.pending.retain(|p| p.deadline > now && servers[p.server].core.is_some());
        self.stats.ops_unknown += (before - self.pending.len()) as u64;
    }

    fn check_log_matching(&self) -> Result<(), Violation> {
        let logs: Vec<&[Entry]> = self.servers.iter().map(|s| s.disk.entries.as_slice()).collect();
        for a in 0..logs.len() {
            for b in a + 1..logs.len() {
                let (Some(first), Some(last)) = (
                    logs[a].first().zip(logs[b].first()).map(|(x, y)| x.index.max(y.index)),
                    logs[a].last().zip(logs[b].last()).map(|(x, y)| x.index.min(y.index)),
                ) else {
                    continue;
                };
                let both =
                    |i: Index| (entry_at(logs[a], i).expect("held"), entry_at(logs[b], i).expect("held"));
                // Find the last index both hold with the same term: everything from the first
                // index both hold up to it must be identical.
                let Some(agreed) = (first..=last).rev().find(|&i| both(i).0.term == both(i).1.term) else {
                    continue;
                };
                if let Some(i) = (first..=agreed).find(|&i| both(i).0 != both(i).1) {
                    return Err(Violation::LogMatching {
                        servers: (a as ServerId + 1, b as ServerId + 1),
                        index: i,
                    });
                }
            }
        }
        Ok(())
    }
}

/// The entry at `index` of a contiguous log that may start past 1.
fn entry_at(log: &[Entry], index: Index) -> Option<&Entry> {
    let first = log.first()?.index;
    log.get(usize::try_from(index.checked_sub(first)?).ok()?)
}

/// A server's local clock at global instant `at`.
fn local_time(at: Instant, drift_ppm: i64) -> Instant {
    let nanos = at.as_nanos() as i128;
    Instant::from_nanos((nanos + nanos * drift_ppm as i128 / 1_000_000) as u64)
}

/// The first global instant at which a server's clock reads `local` or later.
fn global_time(local: Instant, drift_ppm: i64) -> Instant {
    let local_nanos = local.as_nanos() as i128;
    let mut global = Instant::from_nanos((local_nanos * 1_000_000 / (1_000_000 + drift_ppm as i128)) as u64);
    while local_time(global, drift_ppm) < local {
        global = Instant::from_nanos(global.as_nanos() + 1);
    }
    global
}

/// The nemesis: for `duration`, with clients running, a fault drawn from the seed every 0.2 to
/// 3 s: a partition (majority/minority, or the leader isolated), a crash of any server or of the
/// leader, a restart, a heal, seconds of extra delay on some links, a leadership transfer, a
/// membership change, a leader crash whose election runs while every voter crashes right after
/// voting (and the winner's next messages to it straggle), or two seconds in which a leader
/// crashes the moment it acknowledges a write. Then everything heals and restarts, and the cluster must elect a
/// leader and serve writes again within `recovery`. Returns the number of faults injected.
pub fn nemesis(cluster: &mut RaftCluster, duration: Duration, recovery: Duration) -> Result<u64, Violation> {
    let n = cluster.servers.len();
    let end = cluster.now + duration;
    let mut faults = 0;
    while cluster.now < end && cluster.violation.is_none() {
        let gap = cluster.rng.duration_between(Duration::from_millis(200), Duration::from_secs(3));
        cluster.run_with_clients(gap, Duration::from_millis(20));
        faults += 1;
        let up: Vec<usize> = (0..n).filter(|&i| cluster.is_up(i)).collect();
        let down: Vec<usize> = (0..n).filter(|&i| !cluster.is_up(i)).collect();
        match cluster.rng.below(13) {
            0 => {
                let mut order: Vec<usize> = (0..n).collect();
                cluster.rng.shuffle(&mut order);
                let cut = 1 + cluster.rng.below(n as u64 - 1) as usize;
                let (left, right) = order.split_at(cut);
                cluster.partition(&[left, right]);
            }
            1 => {
                if let Some(leader) = cluster.leader() {
                    let rest: Vec<usize> = (0..n).filter(|&i| i != leader).collect();
                    cluster.partition(&[&[leader], &rest]);
                }
            }
            2 if up.len() > 1 => {
                let victim = up[cluster.rng.below(up.len() as u64) as usize];
                cluster.crash(victim);
            }
            3 => {
                if let Some(leader) = cluster.leader() {
                    cluster.crash(leader);
                }
            }
            4 if !down.is_empty() => {
                let back = down[cluster.rng.below(down.len() as u64) as usize];
                cluster.restart(back);
            }
            // An election inside a window of crashes right after voting.
            6 => cluster.stall_links(Duration::from_secs(3), 1.0 / 3.0),
            7 => {
                let target = cluster.rng.below(n as u64) as usize;
                cluster.transfer_leadership(target);
            }
            8 => cluster.change_membership(),
            // An election in which every voter crashes right after its vote.
            5 => {
                cluster.crash_after_votes(Duration::from_secs(5));
                if let Some(leader) = cluster.leader() {
                    cluster.crash(leader);
                }
            }
            // Leaders crash the moment they acknowledge a write.
            9 => cluster.crash_after_acks(Duration::from_secs(2)),
            10 if !up.is_empty() => {
                let victim = up[cluster.rng.below(up.len() as u64) as usize];
                let full_for = cluster.rng.duration_between(Duration::from_secs(1), Duration::from_secs(5));
                cluster.fill_disk(victim, full_for);
            }
            11 if !up.is_empty() => {
                let victim = up[cluster.rng.below(up.len() as u64) as usize];
                cluster.fail_next_sync(victim);
            }
            _ => cluster.heal(),
        }
    }
    cluster.heal();
    for i in 0..n {
        if !cluster.is_up(i) {
            cluster.restart(i);
        }
    }
    // Liveness: a leader, and a write acknowledged through it, within `recovery`.
    let acked = cluster.writes_acked.len();
    let start = cluster.now;
    while cluster.violation.is_none() && cluster.writes_acked.len() == acked {
        if cluster.now >= start + recovery {
            let leader = cluster.leader();
            let stuck =
                format!("no write acknowledged within {recovery:?} after healing (leader: {leader:?})");
            return Err(Violation::Liveness(stuck));
        }
        cluster.run_with_clients(Duration::from_millis(100), Duration::from_millis(10));
    }
    cluster.run_for(CLIENT_TIMEOUT);
    cluster.check().map(|()| faults)
}
