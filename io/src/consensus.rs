//! The one way into consensus on a server: writes through Raft, reads in each of Consul's
//! consistency modes (blocking or not), and the typed reasons either fails.
//!
//! The HTTP handlers reach the replicated state only through [`Consensus`], and so do the
//! simulator's clients: this module is compiled without the agent's HTTP stack, so that what
//! `cargo simtest` breaks is the code a request runs, from the mode check to the watch that
//! wakes a blocked reader. Failures are [`ConsensusError`]s, each with Consul's status
//! ([`ConsensusError::status`]) and words, and nothing decides what happened by reading a
//! message.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use muster_core::fsm::{
    ApplyError, Command, CommandError, Fsm, Index, Response as FsmResponse, Session, WatchTarget,
};
use muster_core::raft::{ProposeError, Role, ServerId};

use crate::metrics;
use crate::raft_server::{RaftClient, WriteError};
use crate::rpc::{Call, Pool, Reply, Request, RpcError};
use crate::store::{Store, Wake};

/// What a proposal answers, as the Raft server hands it back.
pub type Output = Result<FsmResponse, ApplyError>;

/// How long a server holds a request that needs the leader while none is known (Consul's
/// `rpc_hold_timeout`); then it answers `No cluster leader`.
pub const RPC_HOLD_TIMEOUT: Duration = Duration::from_secs(7);

/// How long a write waits for its outcome before it answers [`ConsensusError::Timeout`]:
/// Consul's `limits.rpc_client_timeout`, the bound a forwarded write meets in Consul. A leader
/// cut off from its quorum steps down but keeps the entry, which a later leader may yet commit
/// or replace; without a bound its writer would wait for that as long as the outage lasts.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(60);

/// How often a call held for want of a leader looks for one.
pub const LEADER_POLL_INTERVAL: Duration = Duration::from_millis(50);

/// How often a read that waits for a new leader to commit in its term looks again.
const READ_RETRY_INTERVAL: Duration = Duration::from_millis(5);

/// A server's consensus: its replicated state and its Raft server.
#[derive(Debug)]
pub struct Consensus {
    /// The replicated state this server holds.
    pub store: Arc<Store>,
    /// Its Raft server.
    pub raft: RaftClient<Output>,
    /// Its Raft ID.
    pub raft_id: ServerId,
    /// The address it serves RPC and Raft on.
    pub rpc_addr: SocketAddr,
    /// How long a write waits for its outcome (`limits.rpc_client_timeout`, [`WRITE_TIMEOUT`]
    /// by default; `Duration::MAX` for no bound).
    pub write_timeout: Duration,
    /// How long a call for the leader is held while none is known
    /// (`performance.rpc_hold_timeout`, [`RPC_HOLD_TIMEOUT`] by default).
    pub hold_timeout: Duration,
    /// The connections it sends calls for the leader on.
    pub pool: Arc<Pool>,
}

/// How a read may be served (`?stale`, `?consistent`, or neither).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consistency {
    /// The leader answers from its state (its lease vouches for it).
    Default,
    /// Any server answers from its state.
    Stale,
    /// The leader confirms its leadership with a quorum first (ReadIndex).
    Consistent,
}

/// Why a write or a read through consensus failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConsensusError {
    /// No leader is known.
    #[error("No cluster leader")]
    NoLeader,
    /// This server does not lead; `leader` is the one it knows, if any (the request may be
    /// sent on there).
    #[error("No cluster leader")]
    NotLeader {
        /// The leader this server knows.
        leader: Option<ServerId>,
    },
    /// The state machine refused the command; nothing changed.
    #[error(transparent)]
    Rejected(CommandError),
    /// The Raft server could not see the write through: its entry was replaced by another
    /// leader's, compacted before its outcome was known, or the server stopped.
    #[error(transparent)]
    Write(WriteError),
    /// The state machine could not apply the entry (fatal for the server).
    #[error("{0}")]
    Apply(String),
    /// This server leads, and the disk under its log is full: it takes no writes until space is
    /// freed (reads go on). hashicorp/raft's leader answers a failed log write with the file
    /// system's error, as this does.
    #[error("failed to append to the Raft log: no space left on device")]
    DiskFull,
    /// A command forwarded here did not decode (a newer server's, or a broken peer's); nothing
    /// changed.
    #[error("{0}")]
    Undecodable(String),
    /// The write's outcome was not known within the write timeout: it may yet take effect.
    #[error("timed out waiting for the write to commit; it may still take effect")]
    Timeout,
    /// No connection to the leader could be made: nothing was sent.
    #[error("{0}")]
    LeaderUnreachable(String),
    /// The connection to the leader broke, or its answer did not decode, after the call was
    /// sent: it may have been carried out.
    #[error("{0}")]
    Forward(String),
    /// The leader answered the forwarded call with this status and reason.
    #[error("{reason}")]
    Refused {
        /// Consul's HTTP status.
        status: u16,
        /// Consul's words.
        reason: String,
    },
    /// This agent keeps no replicated state (a client agent's router sends such requests to a
    /// server, so reaching this is a routing bug, answered as one).
    #[error("rpc error: this agent is not a server")]
    NotServer,
}

impl From<WriteError> for ConsensusError {
    fn from(error: WriteError) -> ConsensusError {
        match error {
            WriteError::Refused(ProposeError::NotLeader { leader_hint }) => {
                ConsensusError::NotLeader { leader: leader_hint }
            }
            other => ConsensusError::Write(other),
        }
    }
}

impl ConsensusError {
    /// Consul's HTTP status for it, which RPC carries too.
    pub fn status(&self) -> u16 {
        match self {
            ConsensusError::Rejected(refused) => rejected_status(refused),
            // An entry over Raft's limit: the request was too large, as a body over Consul's is.
            ConsensusError::Write(WriteError::Refused(ProposeError::TooLarge { .. })) => 413,
            ConsensusError::Undecodable(_) => 400,
            ConsensusError::Refused { status, .. } => *status,
            _ => 500,
        }
    }
}

/// Consul's status for a refused command.
fn rejected_status(error: &CommandError) -> u16 {
    match error {
        CommandError::ValueTooLarge { .. }
        | CommandError::TooManyOps { .. }
        | CommandError::SnapshotTooLarge { .. } => 413,
        CommandError::MissingKey
        | CommandError::Catalog(_)
        | CommandError::Restore(_)
        | CommandError::RestoreChunkMalformed => 400,
        CommandError::Lock(_) | CommandError::Session(_) => 500,
        // Another restore started while this one's pieces were going in.
        CommandError::RestoreOutOfOrder { .. } => 409,
        // Consul: a used-up bootstrap and a root token's update are permission denials, every
        // other ACL refusal a plain RPC error. (The ACL endpoints will word the 403s.)
        CommandError::Acl(refused) if refused.is_permission_denied() => 403,
        CommandError::Acl(_) => 500,
    }
}

impl Consensus {
    /// Whether this server leads.
    pub fn leads(&self) -> bool {
        self.raft.status().role == Role::Leader
    }

    /// Proposes `command` through Raft on this server (it must lead), stamped with its clock,
    /// and waits for the state machine's answer, up to the write timeout.
    pub async fn write(&self, command: &Command) -> Result<FsmResponse, ConsensusError> {
        command.validate().map_err(ConsensusError::Rejected)?;
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| u64::try_from(since.as_millis()).unwrap_or(u64::MAX));
        let status = self.raft.status();
        if status.disk_full && status.role == Role::Leader {
            return Err(ConsensusError::DiskFull);
        }
        let proposed = tokio::time::timeout(self.write_timeout, self.raft.propose(command.encode(now_ms)));
        match proposed.await.map_err(|_| ConsensusError::Timeout)? {
            Ok(Ok(FsmResponse::Rejected(error))) => Err(ConsensusError::Rejected(error)),
            Ok(Ok(response)) => Ok(response),
            Ok(Err(error)) => Err(ConsensusError::Apply(error.to_string())),
            Err(error) => Err(error.into()),
        }
    }

    /// Writes `command` from any server, as Consul's RPC layer does: proposed here when this
    /// server leads, else sent to the leader over server RPC ([`Consensus::leader_hop`]).
    pub async fn write_via_leader(&self, command: &Command) -> Result<FsmResponse, ConsensusError> {
        command.validate().map_err(ConsensusError::Rejected)?;
        let Some(leader) = self.leader_hop().await? else { return self.write(command).await };
        match self.pool.call(leader, &Request::Leader(Call::Propose(command.encode(0)))).await {
            Ok(Reply::Propose(Ok(response))) => Ok(response),
            Ok(Reply::Propose(Err((status, reason)))) => Err(ConsensusError::Refused { status, reason }),
            Ok(_) => Err(ConsensusError::Forward("rpc error: unexpected reply".to_owned())),
            Err(error @ RpcError::Connect(_)) => Err(ConsensusError::LeaderUnreachable(error.to_string())),
            Err(error) => Err(ConsensusError::Forward(error.to_string())),
        }
    }

    /// Where a call that needs the leader goes from this server: `None` when it leads, else
    /// the leader's RPC address. While no leader (or none whose address is known) is, the
    /// call is held up to the hold timeout, looking again every
    /// [`LEADER_POLL_INTERVAL`], as Consul holds it; then it is answered `No cluster leader`.
    ///
    /// It polls rather than waits on the status channel: tokio's watch channel wakes its many
    /// waiters in an order drawn from a process-wide counter, so in the simulator a seed's run
    /// would depend on the runs before it in the process (the replay test caught this).
    pub async fn leader_hop(&self) -> Result<Option<SocketAddr>, ConsensusError> {
        let deadline = tokio::time::Instant::now() + self.hold_timeout;
        loop {
            let status = self.raft.status();
            if status.role == Role::Leader {
                return Ok(None);
            }
            if let Some(leader) = status.leader_addr {
                return Ok(Some(leader));
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(ConsensusError::NoLeader);
            }
            tokio::time::sleep(LEADER_POLL_INTERVAL).await;
        }
    }

    /// Answers a command another server forwarded here for the leader (RPC's
    /// [`crate::rpc::Call::Propose`] on its [`crate::rpc::Request::Leader`] hop): proposed here,
    /// stamped with this server's clock, never sent on (a server that lost the leadership
    /// meanwhile answers `No cluster leader`).
    pub async fn write_forwarded(&self, encoded: &[u8]) -> Result<FsmResponse, ConsensusError> {
        match Command::decode(encoded) {
            Ok(Some(stamped)) => self.write(&stamped.command).await,
            Ok(None) => Err(ConsensusError::Undecodable("unknown command type".to_owned())),
            Err(error) => Err(ConsensusError::Undecodable(error.to_string())),
        }
    }

    /// Waits until this server may answer a read in `consistency`'s mode from its own state.
    pub async fn ready(&self, consistency: Consistency) -> Result<(), ConsensusError> {
        match consistency {
            Consistency::Stale => {}
            Consistency::Default => {
                let status = self.raft.status();
                if status.role != Role::Leader {
                    return Err(ConsensusError::NotLeader { leader: status.leader });
                }
                // The lease vouches that no other leader can have been elected yet. Without it
                // (a leader paused, or cut off, that has not noticed yet), the leadership is
                // confirmed by a round of heartbeats first (ReadIndex), so the read can never
                // return a state a newer leader has moved past.
                if !status.lease.holds(tokio::time::Instant::now()) {
                    Box::pin(self.read_barrier()).await?;
                }
            }
            Consistency::Consistent => {
                Box::pin(self.read_barrier()).await?;
            }
        }
        Ok(())
    }

    /// Answers a read: at once, or (`blocking`: an index and a wait) once its index passes the
    /// one the reader holds or its wait runs out (with a random extra of up to 1/16 of the
    /// wait, as Consul, so readers that started together do not all return together).
    /// `targets` names what the answer depends on, for the watch that wakes it. The caller has
    /// made the server [`Consensus::ready`] for `consistency`; a consistent read confirms the
    /// leadership again each time it wakes, before it reads again (Consul's `blockingQuery`
    /// runs `consistentRead` at every `RUN_QUERY`), so its answer is linearizable however long
    /// it waited.
    pub async fn read<R>(
        &self,
        consistency: Consistency,
        blocking: Option<(Index, Duration)>,
        targets: impl Fn() -> Vec<WatchTarget>,
        read: impl Fn(&Fsm) -> (Index, R),
    ) -> Result<(Index, R), ConsensusError> {
        let Some((min_index, wait)) = blocking else {
            return Ok(self.store.read(&read));
        };
        let deadline = tokio::time::Instant::now() + wait + jitter(wait / 16);
        loop {
            let ready = |fsm: &Fsm| {
                let (index, answer) = read(fsm);
                ((index, answer), index > min_index)
            };
            let waiter = match self.store.read_or_watch(ready, &targets) {
                Ok(answer) => return Ok(answer),
                Err(waiter) => waiter,
            };
            // (`timeout`, not `timeout_at`: madsim's clock has only the former.)
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let Ok(wake) = tokio::time::timeout(left, waiter.changed()).await else {
                // Read again (the answer is not held while waiting): unchanged unless a write
                // touched it in the same instant.
                return Ok(self.store.read(&read));
            };
            if consistency == Consistency::Consistent {
                Box::pin(self.read_barrier()).await?;
            }
            // A restore: the new state's index may be at or below the one waited on.
            if wake == Wake::Replaced {
                return Ok(self.store.read(&read));
            }
        }
    }

    /// Renews session `id` as Consul's leader does: its TTL timer restarts; nothing reaches the
    /// log. `None`: no such session. Consul answers the session whether or not a timer ran (one
    /// without a TTL has none, and a leader that has not taken office yet starts every timer
    /// afresh when it does).
    pub async fn renew(&self, id: &str) -> Result<Option<Session>, ConsensusError> {
        self.ready(Consistency::Default).await?;
        let session = self.store.read(|fsm| fsm.sessions().get(id).cloned());
        if session.is_some() {
            self.store.renew(id);
        }
        Ok(session)
    }

    /// Runs the leader's timers for as long as the server runs: while it leads, it proposes
    /// what [`muster_core::fsm::LeaderDuties`] finds due (a destroy for each session whose TTL
    /// ran out, twice the TTL after its last renewal as in Consul; a reap of the tombstones past
    /// theirs). The duties follow the state as entries apply ([`Store`]); this task only tells
    /// them when the leadership comes and goes.
    pub async fn run_duties(&self) {
        let mut raft = self.raft.clone();
        loop {
            if raft.wait_for(|status| status.role == Role::Leader).await.is_err() {
                return;
            }
            self.store.take_office();
            let propose_due = async {
                loop {
                    for command in self.store.duties().expired().await {
                        self.propose_duty(&command).await;
                    }
                }
            };
            let mut status = self.raft.clone();
            // Biased: deterministic in the simulator (see the Raft server's loop).
            tokio::select! {
                biased;
                lost = status.wait_for(|status| status.role != Role::Leader) => {
                    self.store.leave_office();
                    if lost.is_err() {
                        return;
                    }
                }
                () = propose_due => {}
            }
        }
    }

    /// Proposes one duty, in Consul's log lines and metric.
    async fn propose_duty(&self, command: &Command) {
        let started = std::time::Instant::now();
        match command {
            Command::SessionDestroy(destroy) => {
                tracing::info!(session = %destroy.id, "agent.server.session: TTL expired, invalidating");
                let written = self.write(command).await;
                metrics::measure_since("session_ttl.invalidate", &[], started);
                if let Err(error) = written {
                    tracing::warn!(session = %destroy.id, reason = %error, "agent.server.session: invalidation failed");
                }
            }
            Command::TombstoneReap(reap) => match self.write(command).await {
                Ok(FsmResponse::Reaped(count)) if count > 0 => {
                    tracing::debug!(count, up_to = reap.up_to, "agent.server.state: reaped tombstones");
                }
                Ok(_) => {}
                Err(error) => tracing::warn!(reason = %error, "agent.leader: reaping tombstones failed"),
            },
            other => unreachable!("the leader's duties propose destroys and reaps only, not {other:?}"),
        }
    }

    /// How long ago this server last heard from its leader (hashicorp/raft's `LastContact`,
    /// which Consul's `setQueryMeta` reports): zero on the leader itself; Go's largest duration
    /// when it never heard from one (`time.Since` of the zero time).
    pub fn last_contact(&self) -> Duration {
        self.raft.last_leader_contact().unwrap_or(muster_core::duration::GO_DURATION_MAX)
    }

    /// Confirms the leadership with a round of heartbeats and waits until the state includes
    /// every write committed before (ReadIndex). A leader elected a moment ago has not
    /// committed in its term yet and cannot say what is committed: the read waits for that, up
    /// to [`RPC_HOLD_TIMEOUT`], as Consul's hold a request while a leader settles.
    ///
    /// Boxed where it is awaited: inline, its future (a round of heartbeats, a hold) would size
    /// every read's, and a blocking query holds its read's future for as long as it waits.
    async fn read_barrier(&self) -> Result<Index, ConsensusError> {
        let deadline = tokio::time::Instant::now() + RPC_HOLD_TIMEOUT;
        loop {
            match self.raft.read_barrier().await {
                Err(WriteError::Refused(ProposeError::NotReady))
                    if tokio::time::Instant::now() < deadline =>
                {
                    tokio::time::sleep(READ_RETRY_INTERVAL).await;
                }
                other => return other.map_err(ConsensusError::from),
            }
        }
    }
}

/// A random duration up to `max`, from [`random_u64`].
pub(crate) fn jitter(max: Duration) -> Duration {
    let max_nanos = u64::try_from(max.as_nanos()).unwrap_or(u64::MAX);
    if max_nanos == 0 {
        return Duration::ZERO;
    }
    Duration::from_nanos(random_u64() % max_nanos)
}

/// A random number: the shell's only randomness. From the OS-seeded hasher in the agent; from
/// madsim's seeded generator in the simulator (std's `RandomState` keeps per-thread state, so a
/// seed would replay differently after another run on the same thread).
pub fn random_u64() -> u64 {
    #[cfg(madsim)]
    {
        madsim::rand::random()
    }
    #[cfg(not(madsim))]
    {
        use std::hash::{BuildHasher, RandomState};
        RandomState::new().hash_one(std::time::SystemTime::now())
    }
}
