//! A Raft server on real parts: the core's [`CoreServer`] (Raft, the application's
//! [`StateMachine`] and the callers waiting on them) driven by a tokio task, its writes made
//! durable by the write-ahead log on a thread of its own (group commit; a task in the simulator), its messages carried
//! by [`RaftTransport`].
//!
//! This module is an adapter: the task owns the core server, so nothing needs a lock; inputs
//! (messages, timer, fsync acknowledgements, commands from [`RaftHandle`]) arrive one at a time,
//! and after each the task hands every output to its destination: persists to the log writer,
//! messages to the transport, replies to the oneshot channel each caller waits on. Everything
//! decided (what is applied, who is answered what, when a snapshot is taken) is decided in the
//! core, which the simulator drives too. If the log writer fails, the server stops: what was
//! acknowledged stays acknowledged, but nothing more may be.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use muster_core::raft::{
    Config, ConfigError, Index, Membership, MembershipChange, Message, Persist, ProposeError, Role, ServerId,
    Snapshot, Stats, Term,
};
use muster_core::server::{Done, Lease as CoreLease, Reply, RoleChange, Server as CoreServer};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::metrics;
use crate::raft_net::RaftTransport;
use crate::wal::{FsDir, GroupCommit, LogDir, Wal, WalError, Written};

pub use muster_core::server::{StateMachine, WriteError};

/// A state machine the server task can own: sent to its task, answering across threads.
pub trait Machine: StateMachine<Output: Send + 'static> + Send + 'static {}

impl<S: StateMachine<Output: Send + 'static> + Send + 'static> Machine for S {}

/// What a server reports about itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status {
    /// Its role.
    pub role: Role,
    /// Its term.
    pub term: Term,
    /// The leader it knows.
    pub leader: Option<ServerId>,
    /// Where that leader serves RPC, if its address is known.
    pub leader_addr: Option<std::net::SocketAddr>,
    /// The commit index.
    pub commit: Index,
    /// The last index applied to the state machine.
    pub applied: Index,
    /// The index of the latest snapshot.
    pub snapshot_index: Index,
    /// The core's counters.
    pub stats: Stats,
    /// Whether this leader may serve a default-mode read from its state as it stands.
    pub lease: Lease,
    /// The disk under the log is full: what this server writes waits until space is freed.
    pub disk_full: bool,
}

/// A leader's read lease ([`muster_core::raft::Raft::lease_until`]), on the tokio clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lease {
    /// None: not the leader, or no majority confirmed it recently; a read must confirm the
    /// leadership first (ReadIndex).
    None,
    /// Held until this instant.
    Until(tokio::time::Instant),
    /// The only voter: held for as long as it leads.
    Always,
}

impl Lease {
    /// Whether the lease holds at `now`.
    pub fn holds(self, now: tokio::time::Instant) -> bool {
        match self {
            Lease::None => false,
            Lease::Until(until) => now < until,
            Lease::Always => true,
        }
    }
}

/// Where a write's caller waits for its outcome.
type WriteReply<O> = oneshot::Sender<Result<O, WriteError>>;

/// Where a membership change's caller waits for its entry to be applied.
type ChangeReply = oneshot::Sender<Result<(), WriteError>>;

/// Where a consistent read's caller waits for its read index.
type ReadReply = oneshot::Sender<Result<Index, WriteError>>;

enum Command<O> {
    SetPeer(ServerId, std::net::SocketAddr),
    Propose(Bytes, WriteReply<O>),
    Read(ReadReply),
    ChangeMembership(MembershipChange, ChangeReply),
    TransferLeadership(ServerId, oneshot::Sender<Result<(), WriteError>>),
    Replication(oneshot::Sender<Replication>),
}

/// How far the other servers' logs match the leader's, as it tracks them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Replication {
    /// The leader's last log index.
    pub last_index: Index,
    /// The highest index known to match, by server; empty on a server that does not lead.
    pub matched: BTreeMap<ServerId, Index>,
    /// When each other server was last heard from (on a follower: the leader, among others).
    pub heard: BTreeMap<ServerId, tokio::time::Instant>,
    /// The server's term.
    pub term: Term,
}

/// Owns a running server: stopping it, or dropping it with every [`RaftClient`], ends it.
#[derive(Debug)]
pub struct RaftHandle<O> {
    client: RaftClient<O>,
    task: JoinHandle<()>,
}

/// Asks a running server for writes, reads and its status; cheap to clone.
#[derive(Debug)]
pub struct RaftClient<O> {
    commands: mpsc::Sender<Command<O>>,
    status: watch::Receiver<Status>,
    membership: watch::Receiver<Membership>,
    leader_contact: LeaderContact,
}

/// When the server last caught up with the leader it follows ([`muster_core::raft::Raft::caught_up_at`]):
/// it moves with every append, so it is kept out of [`Status`], whose every change wakes its
/// watchers.
type LeaderContact = std::sync::Arc<std::sync::Mutex<Option<tokio::time::Instant>>>;

impl<O> Clone for RaftClient<O> {
    fn clone(&self) -> Self {
        RaftClient {
            commands: self.commands.clone(),
            status: self.status.clone(),
            membership: self.membership.clone(),
            leader_contact: self.leader_contact.clone(),
        }
    }
}

impl<O> std::fmt::Debug for Command<O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Command::SetPeer(..) => "SetPeer",
            Command::Propose(..) => "Propose",
            Command::Read(..) => "Read",
            Command::ChangeMembership(..) => "ChangeMembership",
            Command::TransferLeadership(..) => "TransferLeadership",
            Command::Replication(..) => "Replication",
        })
    }
}

/// Commands waiting for the server task; more make callers wait.
const COMMAND_QUEUE_MAX: usize = 4096;

impl<O: Send + 'static> RaftHandle<O> {
    /// A client of the server.
    pub fn client(&self) -> RaftClient<O> {
        self.client.clone()
    }

    /// Stops the server and waits for its task to end.
    pub async fn stop(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

impl<O> std::ops::Deref for RaftHandle<O> {
    type Target = RaftClient<O>;

    fn deref(&self) -> &RaftClient<O> {
        &self.client
    }
}

impl<O: Send + 'static> RaftClient<O> {
    /// Proposes `command`; answers once it is committed and applied here (this server must
    /// lead).
    pub async fn propose(&self, command: Bytes) -> Result<O, WriteError> {
        let (tx, rx) = oneshot::channel();
        self.commands.send(Command::Propose(command, tx)).await.map_err(|_| WriteError::Stopped)?;
        rx.await.unwrap_or(Err(WriteError::Stopped))
    }

    /// A consistent read barrier (ReadIndex): once it returns, the state machine here reflects
    /// every write acknowledged anywhere before the call. Returns the read index.
    pub async fn read_barrier(&self) -> Result<Index, WriteError> {
        let (tx, rx) = oneshot::channel();
        self.commands.send(Command::Read(tx)).await.map_err(|_| WriteError::Stopped)?;
        rx.await.unwrap_or(Err(WriteError::Stopped))
    }

    /// Changes the membership by one server (this server must lead); answers once the change
    /// is committed and applied here.
    pub async fn change_membership(&self, change: MembershipChange) -> Result<(), WriteError> {
        let (tx, rx) = oneshot::channel();
        self.commands.send(Command::ChangeMembership(change, tx)).await.map_err(|_| WriteError::Stopped)?;
        rx.await.unwrap_or(Err(WriteError::Stopped))
    }

    /// Starts handing leadership to `target` (this server must lead); answers once the
    /// transfer has started, not when it is done (watch [`RaftClient::status`] for that).
    pub async fn transfer_leadership(&self, target: ServerId) -> Result<(), WriteError> {
        let (tx, rx) = oneshot::channel();
        self.commands.send(Command::TransferLeadership(target, tx)).await.map_err(|_| WriteError::Stopped)?;
        rx.await.unwrap_or(Err(WriteError::Stopped))
    }

    /// How far each server's log matches this one's (empty unless this server leads).
    pub async fn replication(&self) -> Result<Replication, WriteError> {
        let (tx, rx) = oneshot::channel();
        self.commands.send(Command::Replication(tx)).await.map_err(|_| WriteError::Stopped)?;
        rx.await.map_err(|_| WriteError::Stopped)
    }

    /// Sends Raft messages for server `id` to `addr` from now on (servers learn each other's
    /// addresses from gossip, and an address may change).
    pub async fn set_peer(&self, id: ServerId, addr: std::net::SocketAddr) -> Result<(), WriteError> {
        self.commands.send(Command::SetPeer(id, addr)).await.map_err(|_| WriteError::Stopped)
    }

    /// How long since this server last caught up with the leader it follows: its state then held
    /// everything the leader had committed (`None`: not yet in this life). Zero on a leader
    /// whose lease holds; one whose lease lapsed (paused, or cut off and not yet stepped down)
    /// counts from its last round a majority acknowledged.
    /// Consul's `X-Consul-LastContact`, which in hashicorp/raft counts from any append instead.
    pub fn last_leader_contact(&self) -> Option<Duration> {
        let status = self.status();
        if status.role == Role::Leader && status.lease.holds(tokio::time::Instant::now()) {
            return Some(Duration::ZERO);
        }
        let heard = *self.leader_contact.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        heard.map(|at| at.elapsed())
    }

    /// Whether the server stopped (its log writer failed, or it was stopped).
    pub fn is_stopped(&self) -> bool {
        self.commands.is_closed()
    }

    /// The server's latest status.
    pub fn status(&self) -> Status {
        *self.status.borrow()
    }

    /// The membership in effect on this server (the latest in its log, committed or not).
    pub fn membership(&self) -> Membership {
        self.membership.borrow().clone()
    }

    /// Waits until the status satisfies `ready`.
    ///
    /// Code the simulator runs keeps to one waiter per server: tokio's watch channel wakes
    /// several in an order drawn from a process-wide counter, which no seed fixes.
    pub async fn wait_for(&mut self, ready: impl FnMut(&Status) -> bool) -> Result<Status, WriteError> {
        self.status.wait_for(ready).await.map(|s| *s).map_err(|_| WriteError::Stopped)
    }
}

/// Why a server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The log could not be opened.
    #[error(transparent)]
    Wal(#[from] WalError),
    /// The configuration, or what the log holds, is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
}

/// Starts a server: opens the log in `dir`, restores the state machine from its snapshot and
/// runs until stopped.
pub fn start<S: Machine>(
    config: Config,
    dir: impl Into<PathBuf>,
    transport: RaftTransport,
    inbound: mpsc::Receiver<(ServerId, Message)>,
    state_machine: S,
) -> Result<RaftHandle<S::Output>, StartError> {
    start_in(config, open(dir)?, Arc::default(), transport, inbound, state_machine)
}

/// Starts a server over a log already opened (in any [`LogDir`]: the simulator's is memory),
/// its Raft timing on a clock that departs from real time as `skew` says.
pub fn start_in<S: Machine, D: LogDir + Send + 'static>(
    config: Config,
    opened: Opened<D>,
    skew: Arc<ClockSkew>,
    transport: RaftTransport,
    inbound: mpsc::Receiver<(ServerId, Message)>,
    state_machine: S,
) -> Result<RaftHandle<S::Output>, StartError> {
    let Opened { wal, restored } = opened;
    let mut clock = Clock::start(skew);
    let core = CoreServer::new(config, restored, Timed(state_machine), clock.now())?;
    let raft = core.raft();
    let status = initial_status(raft.term(), raft.snapshot_index(), raft.stats());
    let (client, ends) = channels(status, raft.membership().clone());
    let task = tokio::spawn(async move {
        run_server(wal, core, clock, transport, inbound, ends).await;
    });
    Ok(RaftHandle { client, task })
}

/// A server's log, opened, waiting for its configuration.
#[derive(Debug)]
pub struct Opened<D: LogDir = FsDir> {
    wal: Wal<D>,
    restored: muster_core::raft::Restored,
}

impl<D: LogDir> Opened<D> {
    /// The log `wal`, which replayed as `restored`.
    pub fn new(wal: Wal<D>, restored: muster_core::raft::Restored) -> Opened<D> {
        Opened { wal, restored }
    }

    /// Whether the log holds anything (a term, an entry or a snapshot): a server with Raft data
    /// must not bootstrap a new cluster (Consul's "Raft data found, disabling bootstrap mode").
    pub fn has_data(&self) -> bool {
        let restored = &self.restored;
        restored.hard_state.term > 0 || !restored.entries.is_empty() || restored.snapshot.is_some()
    }
}

/// Opens (or creates) the log in `dir`.
pub fn open(dir: impl Into<PathBuf>) -> Result<Opened, StartError> {
    let (wal, restored) = Wal::open(dir)?;
    Ok(Opened { wal, restored })
}

/// The server task's ends of its client's channels.
struct Ends<O> {
    commands: mpsc::Receiver<Command<O>>,
    status: watch::Sender<Status>,
    membership: watch::Sender<Membership>,
    leader_contact: LeaderContact,
}

/// A client and the server task's ends, starting from `status` and `membership`.
fn channels<O>(status: Status, membership: Membership) -> (RaftClient<O>, Ends<O>) {
    let (commands_tx, commands_rx) = mpsc::channel(COMMAND_QUEUE_MAX);
    let (status_tx, status_rx) = watch::channel(status);
    let (membership_tx, membership_rx) = watch::channel(membership);
    let leader_contact = LeaderContact::default();
    let client = RaftClient {
        commands: commands_tx,
        status: status_rx,
        membership: membership_rx,
        leader_contact: leader_contact.clone(),
    };
    (client, Ends { commands: commands_rx, status: status_tx, membership: membership_tx, leader_contact })
}

/// What a server that has not applied anything yet reports.
fn initial_status(term: Term, snapshot_index: Index, stats: Stats) -> Status {
    Status {
        role: Role::Follower,
        term,
        leader: None,
        leader_addr: None,
        commit: 0,
        applied: 0,
        snapshot_index,
        stats,
        lease: Lease::None,
        disk_full: false,
    }
}

/// Starts a server over an opened log whose configuration comes later (a server that waits
/// for `-bootstrap-expect` servers before it knows its voters). Until the configuration is
/// sent, the server answers every request as a follower that knows no leader, and takes
/// peer addresses. A configuration Raft refuses stops the server, with the reason logged.
pub fn start_opened<S: Machine, D: LogDir + Send + 'static>(
    opened: Opened<D>,
    transport: RaftTransport,
    inbound: mpsc::Receiver<(ServerId, Message)>,
    state_machine: S,
) -> (RaftHandle<S::Output>, oneshot::Sender<Config>) {
    let (configure_tx, mut configure_rx) = oneshot::channel::<Config>();
    // The handle's channels start from an empty server's view; the real one replaces it.
    let status = initial_status(opened.restored.hard_state.term, 0, Stats::default());
    let (client, mut ends) = channels(status, Membership::default());
    let task = tokio::spawn(async move {
        let mut transport = transport;
        let config = loop {
            tokio::select! {
                biased;
                config = &mut configure_rx => match config {
                    Ok(config) => break config,
                    Err(_) => return,
                },
                command = ends.commands.recv() => match command {
                    None => return,
                    Some(command) => refuse_unconfigured(&mut transport, command),
                },
            }
        };
        let Opened { wal, restored } = opened;
        let mut clock = Clock::start(Arc::default());
        let core = match CoreServer::new(config, restored, Timed(state_machine), clock.now()) {
            Ok(core) => core,
            Err(error) => {
                tracing::error!(%error, "agent.server.raft: cannot start");
                return;
            }
        };
        run_server(wal, core, clock, transport, inbound, ends).await;
    });
    (RaftHandle { client, task }, configure_tx)
}

/// Runs a configured server until it stops.
async fn run_server<S: Machine, D: LogDir + Send + 'static>(
    wal: Wal<D>,
    core: CoreServer<Timed<S>, Waiter<S::Output>>,
    clock: Clock,
    transport: RaftTransport,
    inbound: mpsc::Receiver<(ServerId, Message)>,
    ends: Ends<S::Output>,
) {
    let (persist_tx, durable_rx) = match GroupCommit::spawn(wal, format!("raft-wal-{}", core.raft().id())) {
        Ok(ends) => ends,
        Err(error) => {
            tracing::error!(%error, "agent.server.raft: cannot start the log writer");
            return;
        }
    };
    let server = Server {
        core,
        clock,
        transport,
        persist_tx,
        contacts_sampled: tokio::time::Instant::now(),
        disk_full: false,
        status: ends.status,
        membership: ends.membership,
        leader_contact: ends.leader_contact,
        caught_up_seen: None,
    };
    // hashicorp/raft counts every start in the follower state.
    metrics::incr_counter("raft.state.follower", &[], 1.0);
    server.run(inbound, durable_rx, ends.commands).await;
}

/// A request to a server that has no configuration yet.
fn refuse_unconfigured<O>(transport: &mut RaftTransport, command: Command<O>) {
    let not_leader = || WriteError::Refused(ProposeError::NotLeader { leader_hint: None });
    match command {
        Command::SetPeer(id, addr) => transport.set_peer(id, addr),
        Command::Propose(_, reply) => {
            let _ = reply.send(Err(not_leader()));
        }
        Command::Read(reply) => {
            let _ = reply.send(Err(not_leader()));
        }
        Command::ChangeMembership(_, reply) | Command::TransferLeadership(_, reply) => {
            let _ = reply.send(Err(not_leader()));
        }
        Command::Replication(reply) => {
            let _ = reply.send(Replication::default());
        }
    }
}

/// How a server's clock departs from real time: a rate, in parts per million fast (positive)
/// or slow (negative), and leaps ahead (a VM's clock after its host stalled or migrated it).
/// The agent's never departs: it trusts its machine's monotonic clock. The simulator holds
/// each server's and changes it under the running server, to show what the leader lease
/// survives: it is safe while no clock runs twice as fast as another (the lease is half the
/// minimum election timeout) and none leaps.
#[derive(Debug, Default)]
pub struct ClockSkew {
    rate_ppm: AtomicI32,
    jumped_ns: AtomicU64,
    /// Wakes the server at each change, to arm its timer again: a timer whose deadline a leap
    /// passed fires at once, as a real monotonic clock's does.
    changed: tokio::sync::Notify,
}

impl ClockSkew {
    /// The most a rate departs: a clock that stands still, or runs twice as fast.
    pub const RATE_MAX_PPM: i32 = 1_000_000;

    /// The clock runs `ppm` fast (or slow, if negative) from now on.
    pub fn set_rate_ppm(&self, ppm: i32) {
        self.rate_ppm.store(ppm.clamp(1 - Self::RATE_MAX_PPM, Self::RATE_MAX_PPM), Ordering::Relaxed);
        self.changed.notify_one();
    }

    /// The clock leaps `by` ahead, at once (a monotonic clock never goes back).
    pub fn jump(&self, by: Duration) {
        let by_ns = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        self.jumped_ns.fetch_add(by_ns, Ordering::Relaxed);
        self.changed.notify_one();
    }

    /// Its rate, in clock nanoseconds per million real ones, and its leaps so far.
    fn read(&self) -> (u64, u64) {
        let rate_ppm = 1_000_000 + i64::from(self.rate_ppm.load(Ordering::Relaxed));
        (u64::try_from(rate_ppm).expect("clamped above zero"), self.jumped_ns.load(Ordering::Relaxed))
    }
}

/// Where a clock reading too far ahead to represent is placed (the core's "never").
const FAR_FUTURE: Duration = Duration::from_secs(30 * 365 * 86_400);

/// The Raft server's clock: the core's time since the server started, as a clock with its
/// [`ClockSkew`] counts it, and back to tokio's instants for its timers. A change of skew
/// takes effect from the moment the server next reads the clock, so its readings never go
/// back.
#[derive(Debug)]
struct Clock {
    skew: Arc<ClockSkew>,
    /// A real instant and the clock's reading then: the rate counts from here.
    base_real: tokio::time::Instant,
    base_ns: u64,
    /// The skew in effect since the base.
    rate_ppm: u64,
    jumped_ns: u64,
}

impl Clock {
    fn start(skew: Arc<ClockSkew>) -> Clock {
        let (rate_ppm, jumped_ns) = skew.read();
        Clock { skew, base_real: tokio::time::Instant::now(), base_ns: 0, rate_ppm, jumped_ns }
    }

    /// The core's time now.
    fn now(&mut self) -> muster_core::Instant {
        self.now_at(tokio::time::Instant::now())
    }

    /// The core's time at the real instant `now`, which is never before the last one asked.
    fn now_at(&mut self, now: tokio::time::Instant) -> muster_core::Instant {
        let (rate_ppm, jumped_ns) = self.skew.read();
        if (rate_ppm, jumped_ns) != (self.rate_ppm, self.jumped_ns) {
            self.base_ns = self.reading_at(now).saturating_add(jumped_ns - self.jumped_ns);
            (self.base_real, self.rate_ppm, self.jumped_ns) = (now, rate_ppm, jumped_ns);
        }
        muster_core::Instant::from_nanos(self.reading_at(now))
    }

    fn reading_at(&self, real: tokio::time::Instant) -> u64 {
        let since = real.saturating_duration_since(self.base_real).as_nanos();
        let ticked = u64::try_from(since * u128::from(self.rate_ppm) / 1_000_000).unwrap_or(u64::MAX);
        self.base_ns.saturating_add(ticked)
    }

    /// The real instant at which the clock reads (or read) `at`, at its present rate: exact
    /// since the last change of skew, and close for the recent past (a lease's end, the last
    /// time the server caught up) when the rate changed since.
    fn tokio_instant(&self, at: muster_core::Instant) -> tokio::time::Instant {
        let to_real = |clock_ns: u64| {
            let real_ns = u128::from(clock_ns) * 1_000_000 / u128::from(self.rate_ppm);
            Duration::from_nanos(u64::try_from(real_ns).unwrap_or(u64::MAX))
        };
        match at.as_nanos().checked_sub(self.base_ns) {
            Some(ahead) => self.base_real.checked_add(to_real(ahead)).unwrap_or(self.base_real + FAR_FUTURE),
            None => {
                let ago = to_real(self.base_ns - at.as_nanos());
                self.base_real.checked_sub(ago).unwrap_or(self.base_real)
            }
        }
    }
}

/// A server task's state: the core [`CoreServer`] and the shell around it.
struct Server<S: Machine> {
    core: CoreServer<Timed<S>, Waiter<S::Output>>,
    clock: Clock,
    transport: RaftTransport,
    persist_tx: mpsc::UnboundedSender<Persist>,
    /// When the leader last sampled its contacts.
    contacts_sampled: tokio::time::Instant,
    /// When this server last caught up with the leader it follows, for its clients.
    leader_contact: LeaderContact,
    /// The core's instant behind `leader_contact`, so the lock is taken only when it moves.
    caught_up_seen: Option<muster_core::Instant>,
    /// The log writer waits for space.
    disk_full: bool,
    status: watch::Sender<Status>,
    membership: watch::Sender<Membership>,
}

/// Where a caller waits: the core hands it back in a [`Reply`].
enum Waiter<O> {
    Write(WriteReply<O>),
    Read(ReadReply),
    Change(ChangeReply),
}

impl<O> Waiter<O> {
    /// Sends `reply`'s outcome to its caller, with Consul's timing metric for its kind.
    fn answer(reply: Reply<Waiter<O>, O>) {
        let waited_ms = reply.waited.as_secs_f32() * 1000.0;
        match (reply.waiter, reply.outcome) {
            (Waiter::Write(to), Ok(Done::Applied { output, .. })) => {
                // Proposal to commit and apply, on the leader.
                metrics::add_sample("raft.commitTime", &[], waited_ms);
                let _ = to.send(Ok(output));
            }
            (Waiter::Read(to), Ok(Done::Read { index })) => {
                // Consul's time to confirm the leadership before a read.
                metrics::add_sample("rpc.consistentRead", &[], waited_ms);
                let _ = to.send(Ok(index));
            }
            (Waiter::Change(to), Ok(Done::Changed)) => {
                let _ = to.send(Ok(()));
            }
            (Waiter::Write(to), Err(error)) => {
                let _ = to.send(Err(error));
            }
            (Waiter::Read(to), Err(error)) => {
                let _ = to.send(Err(error));
            }
            (Waiter::Change(to), Err(error)) => {
                let _ = to.send(Err(error));
            }
            (_, Ok(done)) => {
                unreachable!("a reply of another request's kind: {:?}", std::mem::discriminant(&done))
            }
        }
    }
}

/// The application's state machine, with Consul's timings of applying and restoring it.
struct Timed<S>(S);

impl<S: StateMachine> StateMachine for Timed<S> {
    type Output = S::Output;

    fn apply(&mut self, index: Index, command: &Bytes) -> S::Output {
        let started = std::time::Instant::now();
        let output = self.0.apply(index, command);
        metrics::measure_since("raft.fsm.apply", &[], started);
        output
    }

    fn snapshot(&self) -> Bytes {
        self.0.snapshot()
    }

    fn restore(&mut self, snapshot: &Snapshot) {
        let started = std::time::Instant::now();
        self.0.restore(snapshot);
        let restored_ms = started.elapsed().as_secs_f32() * 1000.0;
        metrics::set_gauge("raft.fsm.lastRestoreDuration", &[], restored_ms);
    }
}

/// A role change, in the words of hashicorp/raft and Consul's leader loop, which operators grep
/// for (`entering leader state`, `cluster leadership acquired`), counted as hashicorp/raft
/// counts them (`raft.state.*`; a pre-vote and the vote after it are one election there).
fn log_role(RoleChange { previous, role, term, leader }: RoleChange) {
    let leader_id = leader.map(|id| id.to_string()).unwrap_or_default();
    match role {
        Role::Leader => {
            tracing::info!(term, "agent.server.raft: entering leader state");
            tracing::info!("agent.server: cluster leadership acquired");
            if previous != Role::Leader {
                metrics::incr_counter("raft.state.leader", &[], 1.0);
            }
        }
        Role::Follower => {
            tracing::info!(term, leader_id, "agent.server.raft: entering follower state");
            // A follower's event for a new term or leader is no new follower state.
            if previous != Role::Follower {
                metrics::incr_counter("raft.state.follower", &[], 1.0);
            }
        }
        Role::PreCandidate | Role::Candidate => {
            tracing::info!(term, "agent.server.raft: entering candidate state");
            if !(previous == Role::PreCandidate && role == Role::Candidate) {
                metrics::incr_counter("raft.state.candidate", &[], 1.0);
            }
        }
    }
    if previous == Role::Leader && role != Role::Leader {
        tracing::info!("agent.server: cluster leadership lost");
    }
}

impl<S: Machine> Server<S> {
    async fn run(
        mut self,
        mut inbound: mpsc::Receiver<(ServerId, Message)>,
        mut durable: mpsc::UnboundedReceiver<std::io::Result<Written>>,
        mut commands: mpsc::Receiver<Command<S::Output>>,
    ) {
        self.drain();
        let skew = self.clock.skew.clone();
        loop {
            let deadline = self.clock.tokio_instant(self.core.poll_timeout());
            // Biased, for two reasons. The order is deterministic: an unbiased select draws its
            // order from a thread-local generator, which makes the simulator's seeds replay
            // differently in one thread than in another. And this order cannot starve: the log
            // writer's reports release acknowledgements; the timer carries heartbeats and
            // elections; a command's caller waits for consensus, so commands stop coming while
            // messages are starved, and messages then go through.
            tokio::select! {
                biased;
                Some(result) = durable.recv() => match result {
                    Ok(Written::Durable { newest, .. }) => self.core.on_persisted(self.clock.now(), newest),
                    Ok(Written::Full(full)) => self.disk_full = full,
                    Err(error) => {
                        tracing::error!(%error, "agent.server.raft: the log writer failed; stopping this server");
                        return;
                    }
                },
                () = tokio::time::sleep_until(deadline) => {
                    self.core.handle_timeout(self.clock.now());
                }
                // The skew changed (only ever in the simulator): the clock is read, to count
                // from the change, and the timer is armed again.
                () = skew.changed.notified() => {
                    self.clock.now();
                }
                command = commands.recv() => match command {
                    Some(command) => self.command(command),
                    None => return,
                },
                Some((from, message)) = inbound.recv() => {
                    self.core.handle_message(self.clock.now(), from, message);
                }
            }
            self.drain();
        }
    }

    fn command(&mut self, command: Command<S::Output>) {
        let now = self.clock.now();
        match command {
            Command::SetPeer(id, addr) => self.transport.set_peer(id, addr),
            Command::Propose(bytes, reply) => {
                metrics::incr_counter("raft.apply", &[], 1.0);
                self.core.propose(now, bytes, Waiter::Write(reply));
            }
            Command::ChangeMembership(change, reply) => {
                self.core.change_membership(now, change, Waiter::Change(reply));
            }
            Command::TransferLeadership(target, reply) => {
                let _ = reply.send(self.core.transfer_leadership(now, target));
            }
            Command::Replication(reply) => {
                let raft = self.core.raft();
                let heard =
                    self.core.heard().iter().map(|(&id, &at)| (id, self.clock.tokio_instant(at))).collect();
                let _ = reply.send(Replication {
                    last_index: raft.last_index(),
                    matched: raft.matched(),
                    heard,
                    term: raft.term(),
                });
            }
            Command::Read(reply) => self.core.read(now, Waiter::Read(reply)),
        }
    }

    /// Hands every output of the core to its destination.
    fn drain(&mut self) {
        while let Some(persist) = self.core.poll_persist() {
            // The writer thread only stops on an I/O error, reported on `durable`.
            let _ = self.persist_tx.send(persist);
        }
        while let Some(transmit) = self.core.poll_transmit() {
            self.transport.send(transmit.to, &transmit.message);
        }
        while let Some(reply) = self.core.poll_reply() {
            Waiter::answer(reply);
        }
        while let Some(change) = self.core.poll_role() {
            log_role(change);
        }
        let raft = self.core.raft();
        let status = Status {
            role: raft.role(),
            term: raft.term(),
            leader: raft.leader(),
            leader_addr: raft.leader().and_then(|leader| self.transport.peer_addr(leader)),
            commit: raft.commit_index(),
            applied: self.core.applied(),
            snapshot_index: raft.snapshot_index(),
            stats: raft.stats(),
            lease: match self.core.lease() {
                CoreLease::None => Lease::None,
                CoreLease::Always => Lease::Always,
                CoreLease::Until(until) => Lease::Until(self.clock.tokio_instant(until)),
            },
            disk_full: self.disk_full,
        };
        self.status.send_if_modified(|old| std::mem::replace(old, status) != status);
        self.publish_contact();
        self.sample_contacts();
        let membership = self.core.membership();
        self.membership.send_if_modified(|old| {
            let changed = old != membership;
            if changed {
                old.clone_from(membership);
            }
            changed
        });
    }

    /// Publishes when this server last caught up with its leader, if that moved.
    fn publish_contact(&mut self) {
        let caught_up = self.core.raft().caught_up_at();
        if caught_up == self.caught_up_seen {
            return;
        }
        self.caught_up_seen = caught_up;
        let at = caught_up.map(|at| self.clock.tokio_instant(at));
        *self.leader_contact.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = at;
    }

    /// hashicorp/raft's `raft.leader.lastContact`: while leading, every
    /// [`LEADER_CONTACT_SAMPLE_INTERVAL`], how long ago each other voter was last heard from.
    fn sample_contacts(&mut self) {
        let now = tokio::time::Instant::now();
        if self.core.raft().role() != Role::Leader
            || now < self.contacts_sampled + LEADER_CONTACT_SAMPLE_INTERVAL
        {
            return;
        }
        self.contacts_sampled = now;
        let core_now = self.clock.now();
        let me = self.core.raft().id();
        for voter in self.core.membership().voters.iter().filter(|&&voter| voter != me) {
            if let Some(&heard) = self.core.heard().get(voter) {
                let ago_ms = core_now.saturating_duration_since(heard).as_millis() as f32;
                metrics::add_sample("raft.leader.lastContact", &[], ago_ms);
            }
        }
    }
}

/// How often a leader samples its contacts (hashicorp/raft checks its lease this often by
/// default: `LeaderLeaseTimeout`).
const LEADER_CONTACT_SAMPLE_INTERVAL: Duration = Duration::from_millis(500);

#[cfg(test)]
mod clock_tests {
    use super::*;

    /// A clock on `skew`, and a function that reads it `real_ms` after it started.
    fn started(skew: &Arc<ClockSkew>) -> (Clock, impl Fn(&mut Clock, u64) -> Duration) {
        let clock = Clock::start(skew.clone());
        let start = clock.base_real;
        let read = move |clock: &mut Clock, real_ms| {
            Duration::from_nanos(clock.now_at(start + Duration::from_millis(real_ms)).as_nanos())
        };
        (clock, read)
    }

    #[test]
    fn a_fast_clock_reads_ahead_and_its_timers_fire_early() {
        let skew = Arc::new(ClockSkew::default());
        skew.set_rate_ppm(500_000);
        let (mut clock, read) = started(&skew);
        let start = clock.base_real;
        assert_eq!(read(&mut clock, 1_000), Duration::from_millis(1_500));
        let fires = clock.tokio_instant(muster_core::Instant::from_nanos(3_000_000_000));
        assert_eq!(fires - start, Duration::from_secs(2));
    }

    #[test]
    fn a_change_of_rate_or_a_jump_counts_from_when_it_is_seen_and_never_goes_back() {
        let skew = Arc::new(ClockSkew::default());
        let (mut clock, read) = started(&skew);
        assert_eq!(read(&mut clock, 1_000), Duration::from_secs(1));
        skew.set_rate_ppm(-500_000);
        assert_eq!(read(&mut clock, 1_000), Duration::from_secs(1));
        assert_eq!(read(&mut clock, 3_000), Duration::from_secs(2));
        skew.jump(Duration::from_secs(5));
        assert_eq!(read(&mut clock, 3_000), Duration::from_secs(7));
        assert_eq!(read(&mut clock, 5_000), Duration::from_secs(8));
        // An instant before the last change (the jump, read at 7 s) maps back at the present
        // rate: a clock's second is two real ones at half speed.
        let earlier = clock.tokio_instant(muster_core::Instant::from_nanos(6_000_000_000));
        assert_eq!(clock.base_real - earlier, Duration::from_secs(2));
        // A clock told to stand still or run backwards is held to a crawl.
        skew.set_rate_ppm(-5_000_000);
        assert!(read(&mut clock, 9_000) > Duration::from_secs(8));
    }
}
