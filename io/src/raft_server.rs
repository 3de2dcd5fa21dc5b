//! A Raft server on real parts: the core's [`Raft`] driven by a tokio task, its writes made
//! durable by the write-ahead log on a thread of its own (group commit), its messages carried
//! by [`RaftTransport`], its committed entries applied to the application's [`StateMachine`].
//!
//! The task owns the `Raft` and the state machine, so neither needs a lock: inputs (messages,
//! timer, fsync acknowledgements, commands from [`RaftHandle`]) arrive one at a time, and after
//! each the task drains every output. A proposal's caller waits until its entry is applied and
//! gets the state machine's answer; a consistent read's caller waits until its read index is
//! applied. If the log writer fails, the server stops: what was acknowledged stays
//! acknowledged, but nothing more may be.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::mpsc as std_mpsc;
use std::time::Duration;

use bytes::Bytes;
use muster_core::raft::{
    Apply, Config, ConfigError, Event, Index, Membership, MembershipChange, Message, Payload, Persist,
    PersistId, ProposeError, Raft, Role, ServerId, Stats, Term,
};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::drive::core_now;
use crate::raft_net::RaftTransport;
use crate::wal::{GroupCommit, Wal, WalError};

/// The application's replicated state.
pub trait StateMachine: Send + 'static {
    /// What applying a command answers its proposer.
    type Output: Send + 'static;

    /// Applies the committed command at `index`.
    fn apply(&mut self, index: Index, command: &Bytes) -> Self::Output;

    /// The whole state, encoded (taken when Raft asks, to compact the log).
    fn snapshot(&self) -> Bytes;

    /// Replaces the whole state with a snapshot's.
    fn restore(&mut self, snapshot: &Bytes);
}

/// Why a write did not take effect, or may not have.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    /// Raft refused it; nothing changed.
    #[error(transparent)]
    Refused(#[from] ProposeError),
    /// Its entry was replaced by another leader's: it did not take effect.
    #[error("leadership changed before the write committed")]
    Lost,
    /// A snapshot from the leader covered its entry here: it may or may not have taken effect.
    #[error("outcome unknown: the entry was compacted into a snapshot")]
    Unknown,
    /// The server stopped.
    #[error("the Raft server stopped")]
    Stopped,
}

/// What a server reports about itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status {
    /// Its role.
    pub role: Role,
    /// Its term.
    pub term: Term,
    /// The leader it knows.
    pub leader: Option<ServerId>,
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

enum Command<O> {
    SetPeer(ServerId, std::net::SocketAddr),
    Propose(Bytes, WriteReply<O>),
    Read(oneshot::Sender<Result<Index, WriteError>>),
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
    pub matched: std::collections::BTreeMap<ServerId, Index>,
    /// When each other server was last heard from (on a follower: the leader, among others).
    pub heard: std::collections::BTreeMap<ServerId, tokio::time::Instant>,
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

/// When the server last heard from the leader it follows: written on every message from it,
/// so kept out of [`Status`], whose every change wakes its watchers.
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

    /// How long since this server last heard from the leader it follows (`None`: never; a
    /// leader hears from itself now): Consul's `X-Consul-LastContact`.
    pub fn last_leader_contact(&self) -> Option<Duration> {
        if self.status().role == Role::Leader {
            return Some(Duration::ZERO);
        }
        let heard = *self.leader_contact.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        heard.map(|at| at.elapsed())
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
pub fn start<S: StateMachine>(
    config: Config,
    dir: impl Into<PathBuf>,
    transport: RaftTransport,
    inbound: mpsc::Receiver<(ServerId, Message)>,
    state_machine: S,
) -> Result<RaftHandle<S::Output>, StartError> {
    let Opened { wal, restored } = open(dir)?;
    let origin = tokio::time::Instant::now();
    let raft = Raft::new(config, restored, core_now(origin))?;
    let status = initial_status(raft.term(), raft.snapshot_index(), raft.stats());
    let (client, ends) = channels(status, raft.membership().clone());
    let task = tokio::spawn(async move {
        run_server(wal, raft, origin, transport, inbound, state_machine, ends).await;
    });
    Ok(RaftHandle { client, task })
}

/// A server's log, opened, waiting for its configuration.
#[derive(Debug)]
pub struct Opened {
    wal: Wal,
    restored: muster_core::raft::Restored,
}

impl Opened {
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
        commit: 0,
        applied: 0,
        snapshot_index,
        stats,
        lease: Lease::None,
    }
}

/// Starts a server over an opened log whose configuration comes later (a server that waits
/// for `-bootstrap-expect` servers before it knows its voters). Until the configuration is
/// sent, the server answers every request as a follower that knows no leader, and takes
/// peer addresses. A configuration Raft refuses stops the server, with the reason logged.
pub fn start_opened<S: StateMachine>(
    opened: Opened,
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
        let origin = tokio::time::Instant::now();
        let raft = match Raft::new(config, restored, core_now(origin)) {
            Ok(raft) => raft,
            Err(error) => {
                tracing::error!(%error, "agent.server.raft: cannot start");
                return;
            }
        };
        run_server(wal, raft, origin, transport, inbound, state_machine, ends).await;
    });
    (RaftHandle { client, task }, configure_tx)
}

/// Runs a configured server until it stops.
async fn run_server<S: StateMachine>(
    mut wal: Wal,
    raft: Raft,
    origin: tokio::time::Instant,
    transport: RaftTransport,
    inbound: mpsc::Receiver<(ServerId, Message)>,
    state_machine: S,
    ends: Ends<S::Output>,
) {
    let (persist_tx, persist_rx) = std_mpsc::channel();
    let (durable_tx, durable_rx) = mpsc::unbounded_channel();
    // The log writer blocks on the disk: a thread of its own, group-committing what queues up.
    let spawned = std::thread::Builder::new().name(format!("raft-wal-{}", raft.id())).spawn(move || {
        let result = GroupCommit::run(&mut wal, persist_rx, |id, _| {
            let _ = durable_tx.send(Ok(id));
        });
        if let Err(error) = result {
            let _ = durable_tx.send(Err(error));
        }
    });
    if let Err(error) = spawned {
        tracing::error!(%error, "agent.server.raft: cannot start the log writer");
        return;
    }
    let server = Server {
        raft,
        origin,
        transport,
        state_machine,
        persist_tx,
        applied: 0,
        writes: BTreeMap::new(),
        reads: BTreeMap::new(),
        contacts: BTreeMap::new(),
        contacts_sampled: tokio::time::Instant::now(),
        next_read: 0,
        status: ends.status,
        membership: ends.membership,
        leader_contact: ends.leader_contact,
        changes: BTreeMap::new(),
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

struct Server<S: StateMachine> {
    raft: Raft,
    origin: tokio::time::Instant,
    transport: RaftTransport,
    state_machine: S,
    persist_tx: std_mpsc::Sender<Persist>,
    applied: Index,
    /// Proposals waiting for their entry: index → (term, caller, when proposed).
    writes: BTreeMap<Index, (Term, WriteReply<S::Output>, std::time::Instant)>,
    /// Reads waiting for their index: ctx → (caller, when asked).
    reads: BTreeMap<u64, (oneshot::Sender<Result<Index, WriteError>>, std::time::Instant)>,
    /// When each peer was last heard from, for `raft.leader.lastContact`.
    contacts: BTreeMap<ServerId, tokio::time::Instant>,
    /// When the leader last sampled its contacts.
    contacts_sampled: tokio::time::Instant,
    /// When the leader this server follows was last heard from, for its clients.
    leader_contact: LeaderContact,
    next_read: u64,
    status: watch::Sender<Status>,
    membership: watch::Sender<Membership>,
    /// Membership changes waiting for their entry: index → (term, caller).
    changes: BTreeMap<Index, (Term, ChangeReply)>,
}

/// A role change, in the words of hashicorp/raft and Consul's leader loop, which operators grep
/// for (`entering leader state`, `cluster leadership acquired`), counted as hashicorp/raft
/// counts them (`raft.state.*`; a pre-vote and the vote after it are one election there).
fn log_role(previous: Role, role: Role, term: Term, leader: Option<ServerId>) {
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

impl<S: StateMachine> Server<S> {
    async fn run(
        mut self,
        mut inbound: mpsc::Receiver<(ServerId, Message)>,
        mut durable: mpsc::UnboundedReceiver<std::io::Result<PersistId>>,
        mut commands: mpsc::Receiver<Command<S::Output>>,
    ) {
        self.drain();
        loop {
            let deadline = self.origin + Duration::from_nanos(self.raft.poll_timeout().as_nanos());
            tokio::select! {
                Some((from, message)) = inbound.recv() => {
                    let now = core_now(self.origin);
                    let heard = tokio::time::Instant::now();
                    self.contacts.insert(from, heard);
                    if self.raft.leader() == Some(from) {
                        *self.leader_contact.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(heard);
                    }
                    self.raft.handle_message(now, from, message);
                }
                Some(result) = durable.recv() => match result {
                    Ok(id) => self.raft.on_persisted(core_now(self.origin), id),
                    Err(error) => {
                        tracing::error!(%error, "agent.server.raft: the log writer failed; stopping this server");
                        return;
                    }
                },
                command = commands.recv() => match command {
                    Some(command) => self.command(command),
                    None => return,
                },
                () = tokio::time::sleep_until(deadline) => {
                    self.raft.handle_timeout(core_now(self.origin));
                }
            }
            self.drain();
        }
    }

    fn command(&mut self, command: Command<S::Output>) {
        let now = core_now(self.origin);
        match command {
            Command::SetPeer(id, addr) => self.transport.set_peer(id, addr),
            Command::Propose(bytes, reply) => match self.raft.propose(now, bytes) {
                Ok((index, term)) => {
                    metrics::incr_counter("raft.apply", &[], 1.0);
                    self.writes.insert(index, (term, reply, std::time::Instant::now()));
                }
                Err(error) => {
                    let _ = reply.send(Err(error.into()));
                }
            },
            Command::ChangeMembership(change, reply) => match self.raft.change_membership(now, change) {
                Ok(index) => {
                    self.changes.insert(index, (self.raft.term(), reply));
                }
                Err(error) => {
                    let _ = reply.send(Err(error.into()));
                }
            },
            Command::TransferLeadership(target, reply) => {
                let _ = reply.send(self.raft.transfer_leadership(now, target).map_err(WriteError::from));
            }
            Command::Replication(reply) => {
                let _ = reply.send(Replication {
                    last_index: self.raft.last_index(),
                    matched: self.raft.matched(),
                    heard: self.contacts.clone(),
                    term: self.raft.term(),
                });
            }
            Command::Read(reply) => {
                self.next_read += 1;
                match self.raft.read_index(now, self.next_read) {
                    Ok(()) => {
                        self.reads.insert(self.next_read, (reply, std::time::Instant::now()));
                    }
                    Err(error) => {
                        let _ = reply.send(Err(error.into()));
                    }
                }
            }
        }
    }

    /// Hands every output of the core to its destination, until there are none.
    fn drain(&mut self) {
        loop {
            let mut moved = false;
            while let Some(persist) = self.raft.poll_persist() {
                moved = true;
                // The writer thread only stops on an I/O error, reported on `durable`.
                let _ = self.persist_tx.send(persist);
            }
            while let Some(transmit) = self.raft.poll_transmit() {
                self.transport.send(transmit.to, &transmit.message);
            }
            while let Some(apply) = self.raft.poll_apply() {
                self.apply(apply);
            }
            while let Some(event) = self.raft.poll_event() {
                match event {
                    Event::ReadReady { ctx, index } => {
                        if let Some((reply, asked)) = self.reads.remove(&ctx) {
                            // Consul's time to confirm the leadership before a read.
                            metrics::measure_since("rpc.consistentRead", &[], asked);
                            let _ = reply.send(Ok(index));
                        }
                    }
                    Event::ReadFailed { ctx } => {
                        if let Some((reply, asked)) = self.reads.remove(&ctx) {
                            metrics::measure_since("rpc.consistentRead", &[], asked);
                            let leader_hint = self.raft.leader();
                            let _ = reply.send(Err(ProposeError::NotLeader { leader_hint }.into()));
                        }
                    }
                    Event::SnapshotDue { .. } => {
                        moved = true;
                        let data = self.state_machine.snapshot();
                        let now = core_now(self.origin);
                        // Stale only if a leader's snapshot arrived meanwhile: nothing to do.
                        let _ = self.raft.snapshot_taken(now, self.applied, data);
                    }
                    Event::Role { role, term, leader } => {
                        log_role(self.status.borrow().role, role, term, leader)
                    }
                }
            }
            if !moved {
                break;
            }
        }
        let status = Status {
            role: self.raft.role(),
            term: self.raft.term(),
            leader: self.raft.leader(),
            commit: self.raft.commit_index(),
            applied: self.applied,
            snapshot_index: self.raft.snapshot_index(),
            stats: self.raft.stats(),
            lease: match self.raft.lease_until() {
                None => Lease::None,
                Some(None) => Lease::Always,
                Some(Some(until)) => self
                    .origin
                    .checked_add(Duration::from_nanos(until.as_nanos()))
                    .map_or(Lease::None, Lease::Until),
            },
        };
        self.status.send_if_modified(|old| std::mem::replace(old, status) != status);
        self.sample_contacts();
        let membership = self.raft.membership();
        self.membership.send_if_modified(|old| {
            let changed = old != membership;
            if changed {
                old.clone_from(membership);
            }
            changed
        });
    }

    /// hashicorp/raft's `raft.leader.lastContact`: while leading, every
    /// [`LEADER_CONTACT_SAMPLE_INTERVAL`], how long ago each other voter was last heard from.
    fn sample_contacts(&mut self) {
        let now = tokio::time::Instant::now();
        if self.raft.role() != Role::Leader || now < self.contacts_sampled + LEADER_CONTACT_SAMPLE_INTERVAL {
            return;
        }
        self.contacts_sampled = now;
        let me = self.raft.id();
        for voter in self.raft.membership().voters.iter().filter(|&&voter| voter != me) {
            if let Some(&heard) = self.contacts.get(voter) {
                metrics::add_sample("raft.leader.lastContact", &[], (now - heard).as_millis() as f32);
            }
        }
    }

    fn apply(&mut self, apply: Apply) {
        match apply {
            Apply::Entry(entry) => {
                self.applied = entry.index;
                if let Some((term, reply)) = self.changes.remove(&entry.index) {
                    let done = matches!(entry.payload, Payload::Membership(_)) && term == entry.term;
                    let _ = reply.send(if done { Ok(()) } else { Err(WriteError::Lost) });
                }
                let waiting = self.writes.remove(&entry.index);
                let output = match &entry.payload {
                    Payload::Command(command) => {
                        let started = std::time::Instant::now();
                        let output = self.state_machine.apply(entry.index, command);
                        metrics::measure_since("raft.fsm.apply", &[], started);
                        Some(output)
                    }
                    Payload::Noop | Payload::Membership(_) => None,
                };
                if let Some((term, reply, proposed)) = waiting {
                    if term == entry.term {
                        // Committed and applied in the same step: proposal to commit.
                        metrics::measure_since("raft.commitTime", &[], proposed);
                    }
                    let result = match output {
                        Some(output) if term == entry.term => Ok(output),
                        _ => Err(WriteError::Lost),
                    };
                    let _ = reply.send(result);
                }
            }
            Apply::Snapshot(snapshot) => {
                self.applied = snapshot.meta.index;
                let started = std::time::Instant::now();
                self.state_machine.restore(&snapshot.data);
                let restored_ms = started.elapsed().as_millis() as f32;
                metrics::set_gauge("raft.fsm.lastRestoreDuration", &[], restored_ms);
                let covered: Vec<Index> =
                    self.writes.range(..=snapshot.meta.index).map(|(&i, _)| i).collect();
                for index in covered {
                    let (_, reply, _) = self.writes.remove(&index).expect("listed");
                    let _ = reply.send(Err(WriteError::Unknown));
                }
                let covered: Vec<Index> =
                    self.changes.range(..=snapshot.meta.index).map(|(&i, _)| i).collect();
                for index in covered {
                    let (_, reply) = self.changes.remove(&index).expect("listed");
                    let _ = reply.send(Err(WriteError::Unknown));
                }
            }
        }
    }
}

/// How often a leader samples its contacts (hashicorp/raft checks its lease this often by
/// default: `LeaderLeaseTimeout`).
const LEADER_CONTACT_SAMPLE_INTERVAL: Duration = Duration::from_millis(500);

/// Consul's Raft metrics, recorded by the agent's `telemetry` module; nothing without it (the
/// simulator builds this server without the agent's telemetry).
mod metrics {
    #[cfg(feature = "agent")]
    pub(super) use crate::telemetry::{add_sample, incr_counter, measure_since, set_gauge};

    #[cfg(not(feature = "agent"))]
    pub(super) fn incr_counter(_name: &str, _labels: &[(&'static str, &str)], _n: f32) {}

    #[cfg(not(feature = "agent"))]
    pub(super) fn set_gauge(_name: &str, _labels: &[(&'static str, &str)], _value: f32) {}

    #[cfg(not(feature = "agent"))]
    pub(super) fn add_sample(_name: &str, _labels: &[(&'static str, &str)], _value: f32) {}

    #[cfg(not(feature = "agent"))]
    pub(super) fn measure_since(_name: &str, _labels: &[(&'static str, &str)], _start: std::time::Instant) {}
}
