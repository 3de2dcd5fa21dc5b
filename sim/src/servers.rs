//! The madsim tier's servers: clusters of 3 and 5 built from the code the `muster` binary runs,
//! broken by a nemesis, their clients' histories checked. Compiled only with `--cfg madsim`.
//!
//! Each server is a madsim host running what a server agent runs: the core's Raft server
//! driven by `muster::raft_server`, its write-ahead log (`muster::wal`, group commit, its
//! writer a task here) over a simulated disk ([`SimDir`]: a crash keeps what was synced and a
//! random prefix of the rest, it fills up, an fsync fails), Raft's TCP transport
//! (`muster::raft_net`, its framing and accept loop) over madsim's network, and the replicated
//! store. Clients call the facade the HTTP handlers call ([`Consensus`]): KV put, delete and
//! check-and-set, transactions, sessions and locks, and reads in all three modes.
//!
//! The nemesis draws its faults from the seed: symmetric and one-way partitions, the leader
//! cut off, crash-restarts with torn writes, pauses longer than the election timeout, a full
//! disk, a failed fsync or append (EIO: the server stops, and is restarted, as a supervisor
//! would), clocks that drift (each server's runs within ±20 %, redrawn as the run goes;
//! [`ClockFaults`]), a server taken out of the membership and brought back (five-server
//! clusters keep at least three voters). Then it heals everything and brings every server
//! back into the membership, and the cluster must take a write again (`liveness`) and every key is
//! read back in the consistent mode. The whole history must be linearizable
//! (`linearizability`), the default mode's lease reads included, while the clocks drift within
//! the lease's bound.
//! `?stale` reads from any server must be no older than the contact they report
//! ([`staleness`]).

use std::collections::BTreeSet;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use madsim::net::NetSim;
use madsim::rand::Rng as _;
use madsim::runtime::{Handle, NodeHandle, Runtime};
use madsim::task::NodeId;
use muster::consensus::{Consensus, ConsensusError, Consistency};
use muster::raft_net::RaftTransport;
use muster::raft_server::{self, ClockSkew, Opened, WriteError};
use muster::rpc;
use muster::store::{Store, StoreMachine};
use muster::wal::Wal;
use muster_core::fsm::{
    Command, Fsm, KvCas, KvDelete, KvOperand, KvSet, KvVerb, Response, Txn, TxnOp, WatchTarget,
};
use muster_core::planted::PlantedBug;
use muster_core::raft::{Config, MembershipChange, Role, ServerId};

use crate::disk::SimDir;

pub mod catalog_scale;
// The lockers' commands and constants are the in-process tier's: one locker, two drivers.
use crate::linearizability::{self, Kind, Op};
use crate::raft::locks::{acquire, create_session, register, release, LOCK_KEY, SESSION_TTL};
use crate::staleness::{self, StaleRead};

/// How a run is set up.
#[derive(Debug, Clone)]
pub struct ServersConfig {
    /// Servers (voters).
    pub servers: usize,
    /// Clients, each with one operation in flight.
    pub clients: usize,
    /// How long the clients and the nemesis run, in simulated time.
    pub run_for: Duration,
    /// Whether the nemesis acts.
    pub faults: bool,
    /// A bug planted in every server.
    pub bug: Option<PlantedBug>,
    /// What the nemesis does to the servers' clocks (Raft's timers and the leader lease run on
    /// them).
    pub clocks: ClockFaults,
    /// What the clients ask for.
    pub workload: Workload,
    /// Entries between snapshots: a few dozen, so that installs and compaction happen under
    /// the faults; the agent's default for runs that load a large state.
    pub snapshot_threshold: u64,
}

/// What the clients ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workload {
    /// Every consistency mode, and locks held through sessions.
    AllModes,
    /// Only what rests on no clock: writes and `?consistent` reads (ReadIndex), no default or
    /// `?stale` reads and no locks (whose sessions a leader renews on its lease).
    ClockFree,
}

/// What the nemesis does to the servers' clocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClockFaults {
    /// Each runs up to [`DRIFT_MAX_PPM`] fast or slow, a rate drawn at the start and drawn
    /// again as the run goes, and a leader's clock leaps ahead (which only cuts its lease
    /// short): inside the lease's bound.
    WithinTheLease,
    /// Besides, a leader's clock slows to a hundredth to a twentieth of real time while it is cut
    /// off: past what the lease assumes.
    SlowLeader,
    /// Besides, a follower whose answers renewed the leader's lease loses the leader and its
    /// clock leaps ahead, so it stops deferring to the leader at once: past what the lease
    /// assumes.
    LeapingFollower,
}

impl ServersConfig {
    /// The keys its clients use.
    fn keys(&self) -> u64 {
        (self.clients as u64 * KEYS_PER_CLIENT).max(100)
    }

    /// `servers` servers, ten clients, 20 s of faults, clocks within the lease's bound.
    pub fn new(servers: usize) -> ServersConfig {
        ServersConfig {
            servers,
            clients: 10,
            run_for: Duration::from_secs(20),
            faults: true,
            bug: None,
            clocks: ClockFaults::WithinTheLease,
            workload: Workload::AllModes,
            snapshot_threshold: SNAPSHOT_THRESHOLD_UNDER_FAULTS,
        }
    }
}

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Operations the clients started.
    pub ops: usize,
    /// Operations whose outcome the clients learned.
    pub completed: usize,
    /// Faults the nemesis injected.
    pub faults: usize,
    /// Times a locker took the lock.
    pub locks_taken: usize,
    /// `?stale` reads whose answer the staleness checker bounded.
    pub stale_reads_checked: usize,
    /// Simulated time the run took, the final checks included.
    pub simulated: Duration,
}

/// A checker's finding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The history has no valid order.
    Linearizability(linearizability::Violation),
    /// A state machine's own check failed (an assertion in the core, run after every step in
    /// simulation builds), with its message.
    Invariants(String),
    /// Two lockers held the lock at once, or a server showed it held by a session that does
    /// not exist.
    Locks(String),
    /// After every fault healed, the cluster took no write in time.
    Liveness(String),
    /// A `?stale` read's answer was older than the contact its server reported.
    Staleness(staleness::TooOld),
}

impl Failure {
    /// The checker that found it, as the planted-bug matrix names it.
    pub fn checker(&self) -> &'static str {
        match self {
            Failure::Linearizability(_) => "linearizability",
            Failure::Invariants(_) => "invariants",
            Failure::Locks(_) => "locks",
            Failure::Liveness(_) => "liveness",
            Failure::Staleness(_) => "staleness",
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Linearizability(violation) => write!(
                f,
                "key {} has no linearizable order{}: {:?}",
                violation.key,
                if violation.inconclusive { " (search gave up)" } else { "" },
                violation.ops
            ),
            Failure::Invariants(why) | Failure::Locks(why) | Failure::Liveness(why) => f.write_str(why),
            Failure::Staleness(too_old) => write!(
                f,
                "a ?stale read of key {} from server {} reported {:?} of contact, yet missed {:?}: {:?}",
                too_old.read.key,
                too_old.read.server,
                Duration::from_nanos(too_old.read.last_contact_ns),
                too_old.missed,
                too_old.read
            ),
        }
    }
}

/// Keys the clients use per client: few enough to collide, enough to keep each key's history
/// well under the checker's bound.
const KEYS_PER_CLIENT: u64 = 10;

/// What a `?stale` answer may miss beyond the contact it reports: a deposed leader's appends
/// still carry its commit index until its quorum check lapses, up to two election timeouts
/// after a majority last answered it, while a new leader can commit one election timeout
/// after that (voters refuse to elect another while they hear from a leader); plus the
/// network's delay and a step's scheduling.
const STALE_MARGIN: Duration = Duration::from_millis(1_100);

/// How far each server's clock may drift by default: ±20 %, so the fastest clock runs at most
/// 1.5 times as fast as the slowest, inside the lease's bound of 2 (the lease is half the
/// minimum election timeout).
pub const DRIFT_MAX_PPM: i32 = 200_000;

/// How far a clock leaps ahead: past the longest election timeout (2 s), up to a VM stalled
/// for a while.
const LEAP_MS: std::ops::Range<u64> = 2_000..10_000;

/// How long a client waits for an answer before giving the operation up as unknown.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(3);

/// The servers' write timeout: shorter than the clients' patience, so a write stuck on a leader
/// that lost its quorum comes back as the facade's `Timeout` (an unknown outcome), not as a
/// client giving up.
const WRITE_TIMEOUT: Duration = Duration::from_secs(2);

/// How long the cluster has to take a write once every fault is healed.
const RECOVERY_LIMIT: Duration = Duration::from_secs(30);

/// How long a blocking read waits for a change (within the client's timeout).
const WATCH_WAIT_MS: std::ops::Range<u64> = 200..2_000;

/// Longer than any message stays on the simulated wire (madsim's default latency is at most
/// 10 ms; the nemesis runs use at most 5).
const IN_FLIGHT_MAX: Duration = Duration::from_millis(20);

/// How long the nemesis watches for an election after crashing a leader.
const ELECTION_WATCH: Duration = Duration::from_secs(3);

/// How long a pause lasts: past the election timeout (1 s, up to 2 s with its jitter).
const PAUSE_MS: std::ops::Range<u64> = 1500..4000;

/// How long tombstones are kept: short enough that runs reap them.
const TOMBSTONE_TTL: Duration = Duration::from_secs(5);

/// How long the final reads may take, all keys together, once the cluster took a write again
/// (a restarted server can still call an election then).
const FINAL_READS_LIMIT: Duration = Duration::from_secs(60);

/// How long each server's disk takes to sync, drawn once per server.
const SYNC_DELAY_US: std::ops::Range<u64> = 1_000..40_000;

/// Segments this small rotate often, so the crashes tear segment heads too.
const SEGMENT_BYTES: u64 = 4096;

/// The servers' Raft port, which carries their RPC too, as Consul's server port does.
const RAFT_PORT: u16 = 8300;

/// Entries between snapshots in the fault runs ([`ServersConfig::snapshot_threshold`]).
const SNAPSHOT_THRESHOLD_UNDER_FAULTS: u64 = 48;

/// RPC connections a server's port hands over before it takes them up.
const RPC_QUEUE: usize = 64;

/// Runs one seed: a cluster, its clients and the nemesis, then the checks.
pub fn simulate_servers(seed: u64, config: ServersConfig) -> Result<Report, Failure> {
    let mut madsim_config = madsim::Config::default();
    madsim_config.net.send_latency = Duration::from_millis(1)..Duration::from_millis(5);
    let runtime = Runtime::with_seed_and_config(seed, madsim_config);
    // A panic on any host ends the run: the core's invariant checks assert.
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| runtime.block_on(run(config)))) {
        Ok(outcome) => outcome,
        Err(panic) => {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|text| (*text).to_owned()))
                .unwrap_or_else(|| "a panic without a message".to_owned());
            Err(Failure::Invariants(message))
        }
    }
}

/// A disk fault of [`disk_error_stops_the_server`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskError {
    /// An append fails with EIO, half written.
    Append,
    /// An fsync fails.
    Sync,
}

/// Why a scripted scenario did not reach the outcome it shows.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// The calm cluster elected no leader.
    #[error("no leader in a calm cluster")]
    NoLeader,
    /// The leader's server runs no facade.
    #[error("the leader has no facade")]
    NoFacade,
    /// The server whose disk failed went on.
    #[error("server {server} went on for {RECOVERY_LIMIT:?} after its disk failed")]
    DidNotStop {
        /// The server hit.
        server: usize,
    },
    /// With that server stopped, the others took no write.
    #[error("the others took no write within {RECOVERY_LIMIT:?} of server {server} stopping")]
    OthersStuck {
        /// The server that stopped.
        server: usize,
    },
    /// Restarted, the server did not catch up.
    #[error("server {server}, restarted, did not catch up within {RECOVERY_LIMIT:?}")]
    NoCatchUp {
        /// The server restarted.
        server: usize,
    },
    /// A write on a leader without a quorum waited past the limit.
    #[error("the write still waited after {RECOVERY_LIMIT:?}")]
    WriteWaited,
    /// The isolated leader answered something other than a timeout.
    #[error("the isolated leader answered {0:?}, not a timeout")]
    NotATimeout(Result<Response, ConsensusError>),
    /// No other server took the leadership after the leap.
    #[error("no other leader within {ELECTION_WATCH:?} of the leap")]
    NoNewLeader,
    /// A write the scenario needs failed.
    #[error("{which} write: {source}")]
    Write {
        /// Which of the scenario's writes.
        which: &'static str,
        /// Why.
        source: ConsensusError,
    },
}

impl ScenarioError {
    fn write(which: &'static str) -> impl FnOnce(ConsensusError) -> ScenarioError {
        move |source| ScenarioError::Write { which, source }
    }
}

/// The outcome the issue defines for an I/O error under the log: the server whose `error` it
/// is stops, rather than carry on over a log it can no longer trust; the others go on taking
/// writes; restarted, it catches up with every write acknowledged meanwhile. A follower or the
/// leader (`leader`) is hit, in a calm 3-server cluster; returns how long it took to stop.
pub fn disk_error_stops_the_server(
    seed: u64,
    error: DiskError,
    leader: bool,
) -> Result<Duration, ScenarioError> {
    let runtime = Runtime::with_seed_and_config(seed, madsim::Config::default());
    runtime.block_on(async move {
        let config = ServersConfig { faults: false, ..ServersConfig::new(3) };
        let mut cluster = Cluster::start(&config);
        let first = cluster.wait_for_leader().await.ok_or(ScenarioError::NoLeader)?;
        let victim = if leader { first } else { (first + 1) % cluster.len() };
        match error {
            DiskError::Append => cluster.dirs[victim].fail_next_append(),
            DiskError::Sync => cluster.dirs[victim].fail_next_sync(),
        }
        let hit = madsim::time::Instant::now();
        let mut written = 0;
        while !cluster.facades.get(victim).is_some_and(|facade| facade.raft.is_stopped()) {
            if hit.elapsed() > RECOVERY_LIMIT {
                return Err(ScenarioError::DidNotStop { server: victim });
            }
            written += cluster.write_somewhere(written).await;
        }
        let stopped_after = hit.elapsed();
        // The others go on (a new leader first, if the leader stopped).
        let deadline = madsim::time::Instant::now() + RECOVERY_LIMIT;
        let acked = loop {
            if cluster.write_somewhere(written).await == 1 {
                break written;
            }
            if madsim::time::Instant::now() > deadline {
                return Err(ScenarioError::OthersStuck { server: victim });
            }
        };
        cluster.heal_all();
        let deadline = madsim::time::Instant::now() + RECOVERY_LIMIT;
        loop {
            madsim::time::sleep(Duration::from_millis(50)).await;
            let caught_up = cluster
                .facades
                .get(victim)
                .is_some_and(|facade| facade.store.read(|fsm| fsm.kv().get(&key_name(acked)).1.is_some()));
            if caught_up {
                return Ok(stopped_after);
            }
            if madsim::time::Instant::now() > deadline {
                return Err(ScenarioError::NoCatchUp { server: victim });
            }
        }
    })
}

/// A write on a leader cut off from its quorum answers the facade's `Timeout` once the write
/// timeout runs out (its outcome is unknown: a later leader may commit or replace the entry),
/// rather than wait as long as the partition lasts. Returns how long it waited.
pub fn write_without_quorum_times_out(seed: u64) -> Result<Duration, ScenarioError> {
    let runtime = Runtime::with_seed_and_config(seed, madsim::Config::default());
    runtime.block_on(async move {
        let config = ServersConfig { faults: false, ..ServersConfig::new(3) };
        let mut cluster = Cluster::start(&config);
        let leader = cluster.wait_for_leader().await.ok_or(ScenarioError::NoLeader)?;
        let facade = cluster.facades.get(leader).ok_or(ScenarioError::NoFacade)?;
        cluster.isolate(leader);
        let started = madsim::time::Instant::now();
        let written = madsim::time::timeout(RECOVERY_LIMIT, facade.write(&Command::KvSet(set(0, 1))))
            .await
            .map_err(|_| ScenarioError::WriteWaited)?;
        match written {
            Err(ConsensusError::Timeout) => Ok(started.elapsed()),
            other => Err(ScenarioError::NotATimeout(other)),
        }
    })
}

/// What a deposed leader answered in [`leaping_follower_breaks_the_lease`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeposedReads {
    /// A default read of the key the next leader had just overwritten.
    pub default: Result<Option<u64>, ConsensusError>,
    /// A `?consistent` read of it.
    pub consistent: Result<Option<u64>, ConsensusError>,
}

/// The lease's edge, shown step by step: in a calm 3-server cluster the leader's quorum is
/// shrunk to one follower and a key is written; the nemesis cuts the leader off and leaps
/// that follower's clock ([`Cluster::leap_a_follower`]); the next leader overwrites the key; then the deposed leader
/// is asked for the key in the default mode and in `?consistent`.
pub fn leaping_follower_breaks_the_lease(seed: u64) -> Result<DeposedReads, ScenarioError> {
    let runtime = Runtime::with_seed_and_config(seed, madsim::Config::default());
    runtime.block_on(async move {
        let config = ServersConfig { faults: false, ..ServersConfig::new(3) };
        let mut cluster = Cluster::start(&config);
        let old = cluster.wait_for_leader().await.ok_or(ScenarioError::NoLeader)?;
        let deposed = cluster.facades.get(old).ok_or(ScenarioError::NoFacade)?;
        let follower = cluster.shrink_the_quorum(old);
        // Written while the leader's quorum is shrunk, so that only the follower that will
        // leap holds it: no other can win a vote against it, and none splits the vote.
        deposed.write(&Command::KvSet(set(0, 1))).await.map_err(ScenarioError::write("first"))?;
        cluster.leap_once_the_rest_stop_deferring(old, follower, Duration::from_secs(5)).await;
        let deadline = madsim::time::Instant::now() + ELECTION_WATCH;
        let next = loop {
            let next = cluster
                .facades
                .live()
                .into_iter()
                .find(|(index, facade)| *index != old && facade.raft.status().role == Role::Leader);
            if let Some((_, next)) = next {
                break next;
            }
            if madsim::time::Instant::now() > deadline {
                return Err(ScenarioError::NoNewLeader);
            }
            madsim::time::sleep(Duration::from_millis(1)).await;
        };
        next.write(&Command::KvSet(set(0, 2))).await.map_err(ScenarioError::write("second"))?;
        let read = |consistency| {
            let deposed = deposed.clone();
            async move {
                deposed.ready(consistency).await?;
                Ok(deposed.store.read(|fsm| lookup(fsm, 0).0))
            }
        };
        Ok(DeposedReads {
            default: read(Consistency::Default).await,
            consistent: read(Consistency::Consistent).await,
        })
    })
}

/// What the supervisor shares with the server hosts: each live server's facade.
#[derive(Default)]
struct Facades(Mutex<Vec<Option<Arc<Consensus>>>>);

impl Facades {
    fn get(&self, index: usize) -> Option<Arc<Consensus>> {
        self.0.lock().unwrap()[index].clone()
    }

    /// Each live server's index and facade.
    fn live(&self) -> Vec<(usize, Arc<Consensus>)> {
        let facades = self.0.lock().unwrap();
        facades.iter().enumerate().filter_map(|(index, facade)| Some((index, facade.clone()?))).collect()
    }

    fn set(&self, index: usize, facade: Option<Arc<Consensus>>) {
        self.0.lock().unwrap()[index] = facade;
    }
}

/// Answers server RPC as the agent's handler does for what the simulated servers send each
/// other: a command forwarded to the leader.
struct RpcHandler(Arc<Consensus>);

impl rpc::Handler for RpcHandler {
    async fn handle(&self, request: rpc::Request) -> rpc::Reply {
        match request {
            rpc::Request::Leader(rpc::Call::Propose(encoded)) => {
                let written = self.0.write_forwarded(&encoded).await;
                rpc::Reply::Propose(written.map_err(|error| (error.status(), error.to_string())))
            }
            other => unreachable!("the simulated servers forward proposals only, not {other:?}"),
        }
    }
}

async fn run(config: ServersConfig) -> Result<Report, Failure> {
    let started = madsim::time::Instant::now();
    let mut cluster = Cluster::start(&config);
    let history = History::default();
    let values = Arc::new(AtomicU64::new(1));
    let until = started + config.run_for;
    let clients: Vec<_> = (0..config.clients)
        .map(|client| {
            let client = Client::new(&cluster, client % cluster.len(), history.clone(), started);
            madsim::task::spawn(client.run(until, values.clone(), config.workload))
        })
        .collect();
    let locks = Arc::new(Locks::default());
    let lockers = if config.workload == Workload::ClockFree { 0 } else { LOCKERS };
    let lockers: Vec<_> = (0..lockers)
        .map(|l| {
            let client = Client::new(&cluster, l % cluster.len(), history.clone(), started);
            madsim::task::spawn(Locker::new(l, client, locks.clone()).run(until + LOCKERS_TAIL))
        })
        .collect();
    let sampler = madsim::task::spawn(sample_lock_state(cluster.facades.clone(), locks.clone()));
    let mut faults = 0;
    while madsim::time::Instant::now() < until {
        madsim::time::sleep(Duration::from_millis(madsim::rand::thread_rng().gen_range(500..2500))).await;
        if config.faults {
            cluster.heal_some();
            cluster.inject().await;
            faults += 1;
        }
    }
    for client in clients {
        client.await.expect("a client task ends on its own");
    }
    cluster.heal_all();
    let recovered = match cluster.restore_membership().await {
        Ok(()) => cluster.recover(Client::new(&cluster, 0, history.clone(), started)).await,
        Err(failure) => Err(failure),
    };
    // The lockers go on past the faults, long enough for an abandoned session to expire.
    for locker in lockers {
        locker.await.expect("a locker ends on its own");
    }
    sampler.abort();
    let stale = std::mem::take(&mut *history.stale.lock().unwrap());
    let history = std::mem::take(&mut *history.ops.lock().unwrap());
    recovered?;
    let locks_taken = locks.check(started.elapsed())?;
    linearizability::check(&history).map_err(Failure::Linearizability)?;
    // After linearizability: a lost write leaves stale reads behind too, and the matrix names
    // the checker that sees the cause.
    let stale_reads_checked =
        staleness::check(&history, &stale, nanos(STALE_MARGIN)).map_err(Failure::Staleness)?;
    let report = Report {
        ops: history.len(),
        completed: history.iter().filter(|op| op.ret.is_some()).count(),
        faults,
        locks_taken,
        stale_reads_checked,
        simulated: started.elapsed(),
    };
    Ok(report)
}

/// The servers, as the supervisor (and its nemesis) sees them.
struct Cluster {
    handle: Handle,
    hosts: Vec<NodeHandle>,
    dirs: Vec<SimDir>,
    /// Each server's clock (its machine's: it survives restarts).
    clocks: Vec<Arc<ClockSkew>>,
    clock_faults: ClockFaults,
    facades: Arc<Facades>,
    /// Servers killed and not yet restarted.
    down: BTreeSet<usize>,
    /// Servers paused.
    paused: BTreeSet<usize>,
    /// Servers whose clock the nemesis slowed past the lease's bound.
    slowed: BTreeSet<usize>,
    /// Disks full.
    full: BTreeSet<usize>,
    /// Directed links cut.
    cut: BTreeSet<(usize, usize)>,
    /// Where the disks' crashes draw what they keep.
    rng: muster_core::Rng,
    /// The keys the clients use.
    keys: u64,
}

impl Cluster {
    fn start(config: &ServersConfig) -> Cluster {
        let handle = Handle::current();
        let facades = Arc::new(Facades(Mutex::new(vec![None; config.servers])));
        let dirs: Vec<SimDir> = (0..config.servers).map(|_| SimDir::default()).collect();
        let clocks: Vec<Arc<ClockSkew>> = (0..config.servers).map(|_| Arc::default()).collect();
        let hosts = (0..config.servers)
            .map(|index| {
                let (dir, facades) = (dirs[index].clone(), facades.clone());
                let (sync_delay_us, rate_ppm) = {
                    let mut rng = madsim::rand::thread_rng();
                    (rng.gen_range(SYNC_DELAY_US), rng.gen_range(-DRIFT_MAX_PPM..=DRIFT_MAX_PPM))
                };
                dir.set_sync_delay(Duration::from_micros(sync_delay_us));
                clocks[index].set_rate_ppm(rate_ppm);
                let spec = Spec {
                    index,
                    servers: config.servers,
                    bug: config.bug,
                    clock: clocks[index].clone(),
                    snapshot_threshold: config.snapshot_threshold,
                };
                handle
                    .create_node()
                    .name(format!("s{index}"))
                    .ip(addr(index).ip())
                    .init(move || server_main(spec.clone(), dir.clone(), facades.clone()))
                    .build()
            })
            .collect();
        let rng = muster_core::Rng::from_seed(madsim::rand::thread_rng().gen());
        Cluster {
            handle,
            hosts,
            dirs,
            clocks,
            clock_faults: config.clocks,
            facades,
            down: BTreeSet::new(),
            paused: BTreeSet::new(),
            slowed: BTreeSet::new(),
            full: BTreeSet::new(),
            cut: BTreeSet::new(),
            rng,
            keys: config.keys(),
        }
    }

    fn len(&self) -> usize {
        self.hosts.len()
    }

    /// The server that leads, as the live ones see it.
    fn leader(&self) -> Option<usize> {
        (0..self.len()).find(|&index| self.facades.get(index).is_some_and(|facade| facade.leads()))
    }

    /// Changes the membership through the leader, as `consul operator raft remove-peer` and
    /// a server joining do: a server taken out earlier comes back (a learner, then a voter),
    /// else `target` is taken out if it follows and at least three voters would remain. A
    /// change the leader refuses, or does not commit in time, is left as it is. `true` once
    /// every server votes.
    async fn reconfigure(&self, target: usize) -> bool {
        let Some(leader) = self.leader() else { return false };
        let Some(facade) = self.facades.get(leader) else { return false };
        let membership = facade.raft.membership();
        let out = (0..self.len()).map(server_id).find(|id| !membership.voters.contains(id));
        match out {
            Some(id) if membership.learners.contains(&id) => {
                changed(&facade, MembershipChange::Promote(id)).await;
            }
            Some(id) => {
                if changed(&facade, MembershipChange::AddLearner(id)).await {
                    changed(&facade, MembershipChange::Promote(id)).await;
                }
            }
            None if target < self.len() && target != leader && membership.voters.len() > 3 => {
                changed(&facade, MembershipChange::Remove(server_id(target))).await;
            }
            None => return true,
        }
        false
    }

    /// Brings every server taken out back into the membership, within [`RECOVERY_LIMIT`].
    async fn restore_membership(&self) -> Result<(), Failure> {
        let deadline = madsim::time::Instant::now() + RECOVERY_LIMIT;
        // `usize::MAX`: no server is taken out meanwhile.
        while !self.reconfigure(usize::MAX).await {
            if madsim::time::Instant::now() >= deadline {
                return Err(Failure::Liveness(format!(
                    "the servers taken out could not rejoin within {RECOVERY_LIMIT:?} of healing every fault"
                )));
            }
            madsim::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }

    /// Waits up to [`RECOVERY_LIMIT`] for a leader.
    async fn wait_for_leader(&self) -> Option<usize> {
        let deadline = madsim::time::Instant::now() + RECOVERY_LIMIT;
        while madsim::time::Instant::now() < deadline {
            if let Some(leader) = self.leader() {
                return Some(leader);
            }
            madsim::time::sleep(Duration::from_millis(10)).await;
        }
        None
    }

    /// Writes key `key` through whichever running server leads, if one does: 1 if it was
    /// acknowledged (else a pause, so that a retry loop lets time pass).
    async fn write_somewhere(&self, key: u64) -> u64 {
        let leader =
            self.facades.live().into_iter().find(|(_, facade)| facade.leads() && !facade.raft.is_stopped());
        if let Some((_, facade)) = leader {
            let command = Command::KvSet(set(key, key));
            if let Ok(Ok(_)) = madsim::time::timeout(CLIENT_TIMEOUT, facade.write(&command)).await {
                return 1;
            }
        }
        madsim::time::sleep(Duration::from_millis(10)).await;
        0
    }

    /// One fault, drawn from the seed.
    async fn inject(&mut self) {
        let (target, fault, crash_leader) = {
            let mut rng = madsim::rand::thread_rng();
            (rng.gen_range(0..self.len()), rng.gen_range(0..11), rng.gen_bool(0.5))
        };
        let leader_or_any = self.leader().unwrap_or(target);
        match fault {
            10 => drop(self.reconfigure(target).await),
            9 => self.skew_a_clock(target, self.leader()).await,
            8 => self.crash_a_voter(leader_or_any).await,
            0 => self.partition_minority(),
            1 => self.isolate(leader_or_any),
            2 => {
                let other = (target + madsim::rand::thread_rng().gen_range(1..self.len())) % self.len();
                self.cut_link(target, other);
            }
            3 | 4 => self.crash(if crash_leader { leader_or_any } else { target }),
            5 => self.pause(leader_or_any),
            6 => self.fill_disk(target),
            _ => {
                // A failed fsync or append stops the server; a supervisor restarts it later.
                if madsim::rand::thread_rng().gen_bool(0.5) {
                    self.dirs[target].fail_next_sync();
                } else {
                    self.dirs[target].fail_next_append();
                }
            }
        }
    }

    /// Crashes `leader`, waits for a candidate to ask for votes, and crashes another server a
    /// moment later: a voter that may have answered before its vote was durable.
    async fn crash_a_voter(&mut self, leader: usize) {
        self.crash(leader);
        let deadline = madsim::time::Instant::now() + ELECTION_WATCH;
        while madsim::time::Instant::now() < deadline {
            madsim::time::sleep(Duration::from_millis(1)).await;
            let candidate = (0..self.len()).find(|&index| {
                self.facades.get(index).is_some_and(|facade| facade.raft.status().role == Role::Candidate)
            });
            let Some(candidate) = candidate else { continue };
            let (voter, after) = {
                let mut rng = madsim::rand::thread_rng();
                let offset = rng.gen_range(1..self.len());
                ((candidate + offset) % self.len(), Duration::from_micros(rng.gen_range(0..5_000)))
            };
            madsim::time::sleep(after).await;
            if voter != leader && !self.down.contains(&voter) {
                self.crash(voter);
            }
            return;
        }
    }

    /// Within the lease's bound: draws `target`'s clock rate again, within [`DRIFT_MAX_PPM`], or
    /// leaps the leader's clock ahead. Past it, breaks what the lease assumes as
    /// [`ClockFaults`] says. A slow leader that still hears from the next, or a follower that
    /// leaps while it hears the leader, does no harm (pre-vote and stickiness hold elections
    /// off while the leader is heard, and each heartbeat renews that on the leaped clock; a
    /// newer term reaches the leader at once), so the lease breaks only on a clock that hears
    /// nothing.
    async fn skew_a_clock(&mut self, target: usize, leader: Option<usize>) {
        let (rate_ppm, leap) = {
            let mut rng = madsim::rand::thread_rng();
            (rng.gen_range(-DRIFT_MAX_PPM..=DRIFT_MAX_PPM), Duration::from_millis(rng.gen_range(LEAP_MS)))
        };
        match (self.clock_faults, leader) {
            (ClockFaults::SlowLeader, Some(leader)) => {
                let slow_ppm = madsim::rand::thread_rng().gen_range(-990_000..=-950_000);
                self.clocks[leader].set_rate_ppm(slow_ppm);
                self.slowed.insert(leader);
                self.isolate(leader);
            }
            (ClockFaults::LeapingFollower, Some(leader)) => self.leap_a_follower(leader, leap).await,
            (_, Some(leader)) if rate_ppm % 2 == 0 => self.clocks[leader].jump(leap),
            _ => self.clocks[target].set_rate_ppm(rate_ppm),
        }
    }

    /// Shrinks `leader`'s quorum to the fewest followers that still renew its lease, the rest
    /// cut off from it long enough to stop deferring to it; then cuts the leader off from
    /// those too, and leaps one's clock ahead by `leap`. That follower no longer defers to
    /// the leader it heard a moment ago, and joins the rest in electing a new leader while the
    /// old one's lease, which its answers renewed, still runs.
    async fn leap_a_follower(&mut self, leader: usize, leap: Duration) {
        let follower = self.shrink_the_quorum(leader);
        self.leap_once_the_rest_stop_deferring(leader, follower, leap).await;
    }

    /// Cuts `leader` off from all but the fewest followers that renew its lease, and returns
    /// one of those.
    fn shrink_the_quorum(&mut self, leader: usize) -> usize {
        let servers = self.len();
        let followers: Vec<usize> = (1..servers).map(|offset| (leader + offset) % servers).collect();
        let (quorum, rest) = followers.split_at(servers / 2);
        for &other in rest {
            self.cut_link(leader, other);
            self.cut_link(other, leader);
        }
        quorum[0]
    }

    /// Once the followers cut off from `leader` stopped deferring to it, cuts it off from the
    /// rest too and leaps `follower`'s clock ahead by `leap`.
    async fn leap_once_the_rest_stop_deferring(&mut self, leader: usize, follower: usize, leap: Duration) {
        madsim::time::sleep(ELECTION_WATCH).await;
        self.isolate(leader);
        // A heartbeat already on the wire would still land after the leap and restart the
        // follower's election timer from its leapt clock: the leap waits for the wire to clear.
        madsim::time::sleep(IN_FLIGHT_MAX).await;
        self.clocks[follower].jump(leap);
    }

    /// Heals about half of what is broken.
    fn heal_some(&mut self) {
        let mut rng = madsim::rand::thread_rng();
        if rng.gen_bool(0.5) {
            self.heal_network();
        }
        self.paused.clear();
        self.free_disks_and_reap_stopped();
        if rng.gen_bool(0.7) {
            self.restart_down();
        }
    }

    /// Heals every fault and brings every server back.
    fn heal_all(&mut self) {
        self.heal_network();
        for index in std::mem::take(&mut self.slowed) {
            self.clocks[index].set_rate_ppm(0);
        }
        for index in std::mem::take(&mut self.paused) {
            self.handle.resume(self.hosts[index].id());
        }
        for dir in &self.dirs {
            dir.clear_faults();
        }
        self.free_disks_and_reap_stopped();
        self.restart_down();
    }

    /// Frees the full disks, and takes down the servers their log writer stopped (as a
    /// supervisor sees a process that exited), to be restarted with the crashed ones.
    fn free_disks_and_reap_stopped(&mut self) {
        for index in std::mem::take(&mut self.full) {
            self.dirs[index].free();
        }
        let stopped: Vec<usize> =
            (0..self.len()).filter(|&i| self.facades.get(i).is_some_and(|f| f.raft.is_stopped())).collect();
        for index in stopped {
            self.crash(index);
        }
    }

    /// Restarts every server that is down, over its disk as the crash left it.
    fn restart_down(&mut self) {
        for index in std::mem::take(&mut self.down) {
            self.handle.restart(self.hosts[index].id());
        }
    }

    fn heal_network(&mut self) {
        let net = NetSim::current();
        for (from, to) in std::mem::take(&mut self.cut) {
            net.unclog_link(self.hosts[from].id(), self.hosts[to].id());
        }
    }

    fn cut_link(&mut self, from: usize, to: usize) {
        NetSim::current().clog_link(self.hosts[from].id(), self.hosts[to].id());
        self.cut.insert((from, to));
    }

    /// Splits off a random minority, both ways.
    fn partition_minority(&mut self) {
        let mut rng = madsim::rand::thread_rng();
        let minority = rng.gen_range(1..=(self.len() - 1) / 2);
        let mut order: Vec<usize> = (0..self.len()).collect();
        for i in (1..order.len()).rev() {
            order.swap(i, rng.gen_range(0..=i));
        }
        let (small, large) = order.split_at(minority);
        for (from, to) in crate::links_across(&[small, large]) {
            self.cut_link(from, to);
        }
    }

    /// Cuts `index` off from every other server, both ways.
    fn isolate(&mut self, index: usize) {
        for other in (0..self.len()).filter(|&other| other != index) {
            self.cut_link(index, other);
            self.cut_link(other, index);
        }
    }

    /// Kills `index` (it loses what it had not synced, tearing the last write) until healed.
    fn crash(&mut self, index: usize) {
        self.handle.resume(self.hosts[index].id());
        self.handle.kill(self.hosts[index].id());
        self.facades.set(index, None);
        self.dirs[index].crash(&mut self.rng);
        self.down.insert(index);
    }

    /// Stops `index`'s every task (a SIGSTOP) for longer than an election timeout.
    fn pause(&mut self, index: usize) {
        if self.down.contains(&index) || !self.paused.insert(index) {
            return;
        }
        let (handle, id) = (self.handle.clone(), self.hosts[index].id());
        handle.pause(id);
        let pause = Duration::from_millis(madsim::rand::thread_rng().gen_range(PAUSE_MS));
        madsim::task::spawn(async move {
            madsim::time::sleep(pause).await;
            handle.resume(id);
        });
    }

    /// Leaves `index`'s disk room for a few hundred bytes more, until healed.
    fn fill_disk(&mut self, index: usize) {
        self.dirs[index].fill(madsim::rand::thread_rng().gen_range(0..512));
        self.full.insert(index);
    }

    /// Once healed: the cluster takes a write within [`RECOVERY_LIMIT`], then every key is read
    /// back in the consistent mode, into the history (so a lost write shows as a violation).
    async fn recover(&self, mut client: Client) -> Result<(), Failure> {
        let deadline = madsim::time::Instant::now() + RECOVERY_LIMIT;
        let probe = Command::KvSet(KvSet { key: "liveness".into(), value: Bytes::new(), flags: 0 });
        let mut index = 0;
        loop {
            if madsim::time::Instant::now() >= deadline {
                return Err(Failure::Liveness(format!(
                    "no write was taken within {RECOVERY_LIMIT:?} of healing every fault"
                )));
            }
            if let Some(facade) = self.facades.get(index % self.len()) {
                let write = madsim::time::timeout(CLIENT_TIMEOUT, facade.write(&probe)).await;
                if matches!(write, Ok(Ok(_))) {
                    break;
                }
            }
            index += 1;
            madsim::time::sleep(Duration::from_millis(50)).await;
        }
        // The server that took it, unless leadership has moved on already.
        client.guess = self.leader().unwrap_or(index % self.len());
        let reads_deadline = madsim::time::Instant::now() + FINAL_READS_LIMIT;
        for key in 0..client.keys {
            while !client.read(key, Consistency::Consistent).await {
                if madsim::time::Instant::now() >= reads_deadline {
                    return Err(Failure::Liveness(format!(
                        "key {key} could not be read back within {FINAL_READS_LIMIT:?} of the cluster taking a write"
                    )));
                }
                madsim::time::sleep(Duration::from_millis(50)).await;
            }
        }
        Ok(())
    }
}

/// The clients' histories, shared: each operation enters one when called.
#[derive(Default)]
struct Histories {
    /// Operations for the linearizability checker.
    ops: Mutex<Vec<Op>>,
    /// `?stale` reads, answered, for the staleness checker.
    stale: Mutex<Vec<StaleRead>>,
}

type History = Arc<Histories>;

/// A client: one operation at a time, against the server it believes leads.
struct Client {
    facades: Arc<Facades>,
    /// The servers' hosts: a call runs on its server's host, as an HTTP handler runs in its
    /// agent, so a pause or a crash there holds or ends it.
    hosts: Vec<NodeId>,
    servers: usize,
    /// How many keys the clients spread over.
    keys: u64,
    guess: usize,
    history: History,
    /// The instant operation times count from.
    origin: madsim::time::Instant,
}

/// What an operation's facade call came to.
#[derive(Debug, Clone)]
enum Outcome<T> {
    Done(T),
    /// Known not to have happened.
    Refused,
    /// May or may not have happened.
    Unknown,
}

impl Client {
    fn new(cluster: &Cluster, guess: usize, history: History, origin: madsim::time::Instant) -> Client {
        let hosts = cluster.hosts.iter().map(NodeHandle::id).collect();
        Client {
            facades: cluster.facades.clone(),
            hosts,
            servers: cluster.len(),
            keys: cluster.keys,
            guess,
            history,
            origin,
        }
    }

    /// Runs operations until `until`, each on a random key, writing values from `values`.
    async fn run(mut self, until: madsim::time::Instant, values: Arc<AtomicU64>, workload: Workload) {
        while madsim::time::Instant::now() < until {
            let (key, mut choice) = {
                let mut rng = madsim::rand::thread_rng();
                (rng.gen_range(0..self.keys), rng.gen_range(0..100))
            };
            if workload == Workload::ClockFree && (60..80).contains(&choice) {
                choice = 80;
            }
            // 25 % writes (a fifth of them forwarded by another server), 5 % transactions of
            // two writes, 10 % deletes, 20 % check-and-sets, 15 % default, 5 % stale, 15 %
            // consistent and 5 % blocking consistent reads.
            match choice {
                0..20 => self.write(key, values.fetch_add(1, Ordering::Relaxed)).await,
                20..25 => self.write_via_any(key, values.fetch_add(1, Ordering::Relaxed)).await,
                25..30 => {
                    let other = (key + 1) % self.keys;
                    let written = [
                        (key, values.fetch_add(1, Ordering::Relaxed)),
                        (other, values.fetch_add(1, Ordering::Relaxed)),
                    ];
                    self.txn(written).await;
                }
                30..40 => self.delete(key).await,
                40..60 => self.cas(key, values.fetch_add(1, Ordering::Relaxed)).await,
                60..75 => drop(self.read(key, Consistency::Default).await),
                75..80 => self.stale_read(key).await,
                80..95 => drop(self.read(key, Consistency::Consistent).await),
                _ => self.watch(key).await,
            }
            let think = madsim::rand::thread_rng().gen_range(0..50);
            madsim::time::sleep(Duration::from_millis(think)).await;
        }
    }

    /// The facade of the server this client believes leads, if it is up.
    fn facade(&mut self) -> Option<Arc<Consensus>> {
        let facade = self.facades.get(self.guess);
        if facade.is_none() {
            self.guess_again(None);
        }
        facade
    }

    /// After a refusal: the leader the server named, or another server at random.
    fn guess_again(&mut self, leader: Option<ServerId>) {
        self.guess = match leader {
            Some(id) => index_of(id),
            None => madsim::rand::thread_rng().gen_range(0..self.servers),
        };
    }

    fn now(&self) -> u64 {
        nanos(self.origin.elapsed())
    }

    /// Calls `call` on the believed leader's facade with the client's timeout.
    async fn call<T, F>(&mut self, call: impl FnOnce(Arc<Consensus>) -> F) -> Outcome<T>
    where
        F: std::future::Future<Output = Result<T, ConsensusError>> + Send + 'static,
        T: Send + 'static,
    {
        let Some(facade) = self.facade() else {
            madsim::time::sleep(Duration::from_millis(20)).await;
            return Outcome::Refused;
        };
        self.call_on(self.guess, facade, call).await
    }

    /// Calls `call` on server `index`'s `facade`, on its host, with the client's timeout.
    async fn call_on<T, F>(
        &mut self,
        index: usize,
        facade: Arc<Consensus>,
        call: impl FnOnce(Arc<Consensus>) -> F,
    ) -> Outcome<T>
    where
        F: std::future::Future<Output = Result<T, ConsensusError>> + Send + 'static,
        T: Send + 'static,
    {
        // The host as it is now: a handle taken before a restart spawns into the dead life.
        let host = Handle::current().get_node(self.hosts[index]).expect("every server has a host");
        let on_host = host.spawn(call(facade));
        match madsim::time::timeout(CLIENT_TIMEOUT, on_host).await {
            Ok(Ok(Ok(done))) => Outcome::Done(done),
            Ok(Ok(Err(error))) => self.failed(error).await,
            // The host was killed with the call in flight, or it did not answer in time.
            Ok(Err(_)) | Err(_) => {
                self.guess_again(None);
                Outcome::Unknown
            }
        }
    }

    /// What an error says about the operation, and where to go next.
    async fn failed<T>(&mut self, error: ConsensusError) -> Outcome<T> {
        match error {
            ConsensusError::NotLeader { leader } => {
                self.guess_again(leader);
                if leader.is_none() {
                    madsim::time::sleep(Duration::from_millis(20)).await;
                }
                Outcome::Refused
            }
            ConsensusError::NoLeader
            | ConsensusError::DiskFull
            | ConsensusError::Rejected(_)
            | ConsensusError::Undecodable(_)
            | ConsensusError::LeaderUnreachable(_) => {
                self.guess_again(None);
                Outcome::Refused
            }
            // Replaced by another leader's entry, or refused by Raft: it never happened.
            ConsensusError::Write(WriteError::Lost | WriteError::Refused(_)) => {
                self.guess_again(None);
                Outcome::Refused
            }
            // A leader's refusal cannot tell `No cluster leader` from a write whose outcome is
            // unknown (both are 500), so it may have happened.
            ConsensusError::Write(_)
            | ConsensusError::Timeout
            | ConsensusError::Apply(_)
            | ConsensusError::Forward(_)
            | ConsensusError::Refused { .. }
            | ConsensusError::NotServer => {
                self.guess_again(None);
                Outcome::Unknown
            }
        }
    }

    /// Records `kind` on `key` as called now; `finish` sets what came of it.
    fn start(&self, key: u64, kind: Kind) -> usize {
        let mut history = self.history.ops.lock().unwrap();
        history.push(Op { key, call: self.now(), ret: None, kind });
        history.len() - 1
    }

    fn finish<T>(&self, at: usize, outcome: Outcome<T>, kind: impl FnOnce(T, Kind) -> Kind) {
        match outcome {
            Outcome::Done(done) => {
                let ret = self.now();
                let op = &mut self.history.ops.lock().unwrap()[at];
                op.kind = kind(done, op.kind);
                op.ret = Some(ret);
            }
            // Known not to have happened: left in as a read nobody answered, which the
            // checker skips.
            Outcome::Refused => {
                let op = &mut self.history.ops.lock().unwrap()[at];
                op.kind = Kind::Read(None);
                op.ret = None;
            }
            Outcome::Unknown => {}
        }
    }

    async fn write(&mut self, key: u64, value: u64) {
        let at = self.start(key, Kind::Write(value));
        let command = Command::KvSet(set(key, value));
        let outcome = self.call(|facade| async move { facade.write(&command).await }).await;
        self.finish(at, outcome, |_, kind| kind);
    }

    /// Writes `key` through any server, as the HTTP API does: a server that does not lead
    /// sends it over server RPC to the leader it knows ([`Consensus::write_via_leader`]).
    async fn write_via_any(&mut self, key: u64, value: u64) {
        let via = madsim::rand::thread_rng().gen_range(0..self.servers);
        let Some(facade) = self.facades.get(via) else { return self.write(key, value).await };
        let at = self.start(key, Kind::Write(value));
        let command = Command::KvSet(set(key, value));
        // On the server's host, so that its connections meet the partitions its own do.
        let host = Handle::current().get_node(self.hosts[via]).expect("every server has a host");
        let written = host.spawn(async move { facade.write_via_leader(&command).await });
        let outcome = match madsim::time::timeout(CLIENT_TIMEOUT, written).await {
            Ok(Ok(Ok(_))) => Outcome::Done(()),
            Ok(Ok(Err(error))) => self.failed(error).await,
            Ok(Err(_)) | Err(_) => {
                self.guess_again(None);
                Outcome::Unknown
            }
        };
        self.finish(at, outcome, |(), kind| kind);
    }

    /// Writes both keys in one transaction (`PUT /v1/txn`): each is a write in its key's
    /// history, called and answered together.
    async fn txn(&mut self, writes: [(u64, u64); 2]) {
        let at = writes.map(|(key, value)| self.start(key, Kind::Write(value)));
        let ops = writes
            .iter()
            .map(|&(key, value)| {
                let set = set(key, value);
                let operand = KvOperand { key: set.key, value: set.value, ..KvOperand::default() };
                TxnOp::Kv(KvVerb::Set, operand)
            })
            .collect();
        let command = Command::Txn(Txn { ops });
        let outcome = self.call(|facade| async move { facade.write(&command).await }).await;
        let outcome = match outcome {
            Outcome::Done(Response::Txn(Ok(_))) => Outcome::Done(()),
            Outcome::Done(response) => panic!("a transaction of two writes answered {response:?}"),
            Outcome::Refused => Outcome::Refused,
            Outcome::Unknown => Outcome::Unknown,
        };
        self.finish(at[0], outcome.clone(), |(), kind| kind);
        self.finish(at[1], outcome, |(), kind| kind);
    }

    async fn delete(&mut self, key: u64) {
        let at = self.start(key, Kind::Delete);
        let command = Command::KvDelete(KvDelete { key: key_name(key) });
        let outcome = self.call(|facade| async move { facade.write(&command).await }).await;
        self.finish(at, outcome, |_, kind| kind);
    }

    /// A check-and-set on the value a stale read finds, by its `ModifyIndex`, as a client of
    /// Consul's `?cas=` does: values are unique, so a value stands exactly while the key's
    /// `ModifyIndex` is the one its write set.
    async fn cas(&mut self, key: u64, new: u64) {
        let found = self
            .call(|facade| async move {
                let stale = Consistency::Stale;
                Ok(facade.read(stale, None, Vec::new, |fsm| (fsm.applied(), lookup(fsm, key))).await?.1)
            })
            .await;
        let Outcome::Done((expected, index)) = found else { return };
        let at = self.start(key, Kind::Cas { expected, new, ok: false });
        let command = Command::KvCas(KvCas { set: set(key, new), index });
        let outcome = self.call(|facade| async move { facade.write(&command).await }).await;
        self.finish(at, outcome, |response, kind| match (kind, response) {
            (Kind::Cas { expected, new, .. }, Response::Bool(ok)) => Kind::Cas { expected, new, ok },
            (kind, response) => panic!("a check-and-set answered {response:?} for {kind:?}"),
        });
    }

    /// Reads `key` in `consistency`'s mode; whether an answer came.
    async fn read(&mut self, key: u64, consistency: Consistency) -> bool {
        let at = self.start(key, Kind::Read(None));
        let outcome = self
            .call(|facade| async move {
                facade.ready(consistency).await?;
                let (_, (value, _)) =
                    facade.read(consistency, None, Vec::new, |fsm| (fsm.applied(), lookup(fsm, key))).await?;
                Ok(value)
            })
            .await;
        let answered = matches!(outcome, Outcome::Done(_));
        self.finish(at, outcome, |value, _| Kind::Read(value));
        answered
    }

    /// A `?stale` read from a random server, as DNS and `?stale` HTTP reads are served: what it
    /// found and the contact its server reported, for the staleness checker.
    async fn stale_read(&mut self, key: u64) {
        let server = madsim::rand::thread_rng().gen_range(0..self.servers);
        let Some(facade) = self.facades.get(server) else { return };
        let call = self.now();
        let outcome = self
            .call_on(server, facade, |facade| async move {
                let read = |fsm: &Fsm| (fsm.applied(), lookup(fsm, key).0);
                let (_, value) = facade.read(Consistency::Stale, None, Vec::new, read).await?;
                Ok((value, facade.last_contact()))
            })
            .await;
        if let Outcome::Done((value, contact)) = outcome {
            let read = StaleRead { key, call, last_contact_ns: nanos(contact), value, server };
            self.history.stale.lock().unwrap().push(read);
        }
    }

    /// A blocking `?consistent` read, as a watcher issues it: the key's index now, then a wait
    /// for a change past it, or for the wait's end. Its answer is the value it ends with, which
    /// must be linearizable however long it waited (the leadership is confirmed again at each
    /// wake).
    async fn watch(&mut self, key: u64) {
        let at = self.start(key, Kind::Read(None));
        let wait = Duration::from_millis(madsim::rand::thread_rng().gen_range(WATCH_WAIT_MS));
        let outcome = self
            .call(move |facade| async move {
                let consistent = Consistency::Consistent;
                let name = key_name(key);
                let targets = || vec![WatchTarget::Key(name.clone())];
                let read = |fsm: &Fsm| (fsm.kv().get(&name).0, lookup(fsm, key).0);
                facade.ready(consistent).await?;
                let (index, _) = facade.read(consistent, None, targets, read).await?;
                Ok(facade.read(consistent, Some((index, wait)), targets, read).await?.1)
            })
            .await;
        self.finish(at, outcome, |value, _| Kind::Read(value));
    }
}

/// The value of `key` and the `ModifyIndex` a check-and-set on it names (0: absent).
fn lookup(fsm: &Fsm, key: u64) -> (Option<u64>, u64) {
    match fsm.kv().get(&key_name(key)).1 {
        Some(entry) => {
            let bytes: [u8; 8] =
                entry.value.as_ref().try_into().expect("the clients write eight-byte values");
            (Some(u64::from_be_bytes(bytes)), entry.modify_index)
        }
        None => (None, 0),
    }
}

/// Whether the leader behind `facade` committed `change` within the client's timeout.
async fn changed(facade: &Consensus, change: MembershipChange) -> bool {
    matches!(madsim::time::timeout(CLIENT_TIMEOUT, facade.raft.change_membership(change)).await, Ok(Ok(())))
}

/// `duration` in nanoseconds, saturating.
fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

fn set(key: u64, value: u64) -> KvSet {
    KvSet { key: key_name(key), value: Bytes::copy_from_slice(&value.to_be_bytes()), flags: 0 }
}

fn key_name(key: u64) -> String {
    format!("k{key}")
}

/// What a server's host is, across its restarts.
#[derive(Debug, Clone)]
struct Spec {
    index: usize,
    /// Servers in the cluster.
    servers: usize,
    bug: Option<PlantedBug>,
    /// Its clock, which the nemesis skews.
    clock: Arc<ClockSkew>,
    snapshot_threshold: u64,
}

/// What server `index` runs; madsim runs it again at each restart, over the disk as the crash
/// left it.
async fn server_main(spec: Spec, dir: SimDir, facades: Arc<Facades>) {
    let Spec { index, servers, bug, clock, snapshot_threshold } = spec;
    let id = server_id(index);
    let (wal, restored) = Wal::open_in(dir, SEGMENT_BYTES).expect("the log opens after any crash");
    let mut config = Config::new(id, (0..servers).map(server_id), madsim::rand::thread_rng().gen());
    // A third of the interval stays behind a snapshot, for followers a little behind.
    config.snapshot_threshold = snapshot_threshold;
    config.snapshot_trailing = snapshot_threshold / 3;
    let (rpc_tx, rpc_rx) = tokio::sync::mpsc::channel(RPC_QUEUE);
    let (mut transport, inbound) =
        RaftTransport::bind_with_rpc(id, addr(index), Some(rpc_tx), None).await.expect("the Raft port binds");
    for peer in 0..servers {
        transport.set_peer(server_id(peer), addr(peer));
    }
    let store = Store::with_tombstone_ttl(TOMBSTONE_TTL);
    #[cfg(feature = "invariants")]
    {
        config.planted_bug = bug;
        store.plant(bug);
    }
    #[cfg(not(feature = "invariants"))]
    assert!(bug.is_none(), "planted bugs need muster-sim's `invariants` feature");
    let handle = raft_server::start_in(
        config,
        Opened::new(wal, restored),
        clock,
        transport,
        inbound,
        StoreMachine(store.clone()),
    )
    .expect("the server starts from what its log holds");
    let facade = Arc::new(Consensus {
        store,
        raft: handle.client(),
        raft_id: id,
        rpc_addr: addr(index),
        write_timeout: WRITE_TIMEOUT,
        hold_timeout: muster::consensus::RPC_HOLD_TIMEOUT,
        pool: Arc::default(),
    });
    // The leader's duties, as the agent runs them: session TTLs, tombstone reaping.
    let duties = facade.clone();
    tokio::spawn(async move { duties.run_duties().await });
    tokio::spawn(rpc::serve(rpc_rx, Arc::new(RpcHandler(facade.clone()))));
    facades.set(index, Some(facade));
    // The handle owns the server: it lives as long as this host.
    std::future::pending::<()>().await;
    drop(handle);
}

fn server_id(index: usize) -> ServerId {
    index as ServerId + 1
}

fn index_of(id: ServerId) -> usize {
    usize::try_from(id - 1).expect("server IDs start at 1")
}

fn addr(index: usize) -> SocketAddr {
    assert!(index < 250, "10.0.1.x addresses up to 250 servers");
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 1, index as u8 + 1)), RAFT_PORT)
}

/// Lockers contending for the lock.
const LOCKERS: usize = 2;

/// How long the lockers go on after the other clients stop: past twice a session's TTL, so a
/// session a dead locker left behind expires within the run.
const LOCKERS_TAIL: Duration = Duration::from_secs(25);

/// How often a locker renews its session: half the TTL, as Consul's API client
/// (`Session.RenewPeriodic`) does.
const RENEW_INTERVAL: Duration = Duration::from_secs(5);

/// How long a locker holds the lock: from a moment to well past the lock delay, as a leader
/// elected through the lock holds it.
const HOLD_MS: std::ops::Range<u64> = 200..8_000;

/// How often a locker looks at its state.
const LOCKER_STEP: Duration = Duration::from_millis(100);

/// The chance that a locker holding the lock dies at a step, as a killed `consul lock` does:
/// its session is left to expire, and the lock to be released by the leader.
const DEATH_CHANCE: f64 = 0.01;

/// A span in which a locker counted itself the lock's holder, in nanoseconds of the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Hold {
    locker: usize,
    from: u64,
    to: u64,
}

/// What the lockers saw, and what the servers showed.
#[derive(Default)]
struct Locks {
    holds: Mutex<Vec<Hold>>,
    /// Each locker's hold in progress: since when.
    open: Mutex<[Option<u64>; LOCKERS]>,
    /// A server that showed the lock held by a session it does not have.
    dead_holder: Mutex<Option<String>>,
}

impl Locks {
    /// No two lockers' holds overlap, and no server showed a dead session holding the lock;
    /// returns how many holds there were. Holds still open end at `end`.
    fn check(&self, end: Duration) -> Result<usize, Failure> {
        if let Some(found) = self.dead_holder.lock().unwrap().clone() {
            return Err(Failure::Locks(found));
        }
        let end = u64::try_from(end.as_nanos()).unwrap_or(u64::MAX);
        let mut holds = self.holds.lock().unwrap().clone();
        for (locker, from) in self.open.lock().unwrap().iter().enumerate() {
            holds.extend(from.map(|from| Hold { locker, from, to: end }));
        }
        for (i, a) in holds.iter().enumerate() {
            if let Some(b) =
                holds[i + 1..].iter().find(|b| b.locker != a.locker && b.from < a.to && a.from < b.to)
            {
                return Err(Failure::Locks(format!("two lockers held the lock at once: {a:?} and {b:?}")));
            }
        }
        Ok(holds.len())
    }
}

/// Every 50 ms, each live server's state: the lock, if held, is held by a session it has.
async fn sample_lock_state(facades: Arc<Facades>, locks: Arc<Locks>) {
    loop {
        madsim::time::sleep(Duration::from_millis(50)).await;
        for (index, facade) in facades.live() {
            let dead = facade.store.read(|fsm| {
                let holder = fsm.kv().get(LOCK_KEY).1.and_then(|entry| entry.session.clone())?;
                fsm.sessions().get(&holder).is_none().then_some(holder)
            });
            if let Some(session) = dead {
                let found = format!(
                    "server {index} shows the lock held by session {session}, which it does not have"
                );
                locks.dead_holder.lock().unwrap().get_or_insert(found);
            }
        }
    }
}

/// A client that takes the lock through sessions, as `consul lock` and leader-election
/// libraries do. It counts itself the holder from the acquisition's answer until it asks to
/// release, or until its session's TTL has passed since its last renewal without another: a
/// session lives at least its TTL after a renewal (the leader ends it at twice that), so no
/// other session can take the lock before then.
struct Locker {
    id: usize,
    client: Client,
    locks: Arc<Locks>,
    registered: bool,
    sessions_made: u64,
}

impl Locker {
    fn new(id: usize, client: Client, locks: Arc<Locks>) -> Locker {
        Locker { id, client, locks, registered: false, sessions_made: 0 }
    }

    async fn run(mut self, until: madsim::time::Instant) {
        while madsim::time::Instant::now() < until {
            madsim::time::sleep(LOCKER_STEP).await;
            if !self.registered {
                let register = register(self.id);
                let done = self.client.call(|facade| async move { facade.write(&register).await }).await;
                self.registered = matches!(done, Outcome::Done(_));
                continue;
            }
            self.sessions_made += 1;
            let id = format!("session-{}-{}", self.id, self.sessions_made);
            let asked = self.client.now();
            let create = create_session(self.id, id.clone());
            // The session's TTL runs from its creation, which is after `asked`.
            if let Outcome::Done(_) =
                self.client.call(|facade| async move { facade.write(&create).await }).await
            {
                self.hold_with(&id, asked, until).await;
            }
        }
    }

    /// Takes, holds and releases the lock with session `id` until the session is lost, the
    /// locker dies, or the run ends.
    async fn hold_with(&mut self, id: &str, mut renewed_at: u64, until: madsim::time::Instant) {
        let ttl = u64::try_from(SESSION_TTL.as_nanos()).expect("small");
        let renew_every = u64::try_from(RENEW_INTERVAL.as_nanos()).expect("small");
        let mut release_at = None;
        while madsim::time::Instant::now() < until {
            madsim::time::sleep(LOCKER_STEP).await;
            let now = self.client.now();
            if now >= renewed_at + ttl {
                // Not renewed in time: the session may end any moment from then.
                self.end_hold(renewed_at + ttl);
                return;
            }
            if now >= renewed_at + renew_every {
                let session = id.to_owned();
                match self.client.call(|facade| async move { facade.renew(&session).await }).await {
                    Outcome::Done(Some(_)) => renewed_at = now,
                    // Consul's 404: the session is gone.
                    Outcome::Done(None) => {
                        self.end_hold(now);
                        return;
                    }
                    Outcome::Refused | Outcome::Unknown => {}
                }
                continue;
            }
            match release_at {
                Some(at) if now >= at => {
                    self.end_hold(now);
                    release_at = None;
                    let unlock = release(id);
                    let released =
                        self.client.call(|facade| async move { facade.write(&unlock).await }).await;
                    // A release whose outcome is unknown may still apply after a later acquire
                    // with this session, and free that lock under its holder: a careful client
                    // starts over with a new session (found by seed 224).
                    if let Outcome::Unknown = released {
                        return;
                    }
                }
                Some(_) if madsim::rand::thread_rng().gen_bool(DEATH_CHANCE) => {
                    // Gone without a word: its session is left to expire.
                    self.end_hold(now);
                    return;
                }
                Some(_) => {}
                None => {
                    let lock = acquire(id);
                    let taken = self.client.call(|facade| async move { facade.write(&lock).await }).await;
                    if let Outcome::Done(Response::Bool(true)) = taken {
                        let from = self.client.now();
                        self.locks.open.lock().unwrap()[self.id] = Some(from);
                        let hold = madsim::rand::thread_rng().gen_range(HOLD_MS);
                        release_at = Some(from + hold * 1_000_000);
                    }
                }
            }
        }
    }

    /// Closes this locker's hold, if it has one, at `to`.
    fn end_hold(&self, to: u64) {
        if let Some(from) = self.locks.open.lock().unwrap()[self.id].take() {
            self.locks.holds.lock().unwrap().push(Hold { locker: self.id, from, to: to.max(from) });
        }
    }
}
