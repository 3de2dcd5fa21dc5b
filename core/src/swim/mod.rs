//! SWIM membership with the Lifeguard extensions, after memberlist.
//!
//! Each node keeps a table of members (alive, suspect, dead, left), each with the incarnation its
//! state belongs to. Failures are detected by probing (SWIM §4): every probe interval one member,
//! taken round-robin from a shuffled list, is pinged; without an ack within the probe timeout,
//! `indirect_checks` other members are asked to ping it (and to nack if they cannot reach it),
//! and a ping goes to it over the stream channel; without any ack by the end of the interval it
//! is suspected. A suspected member is declared dead when its suspicion times out, unless it
//! refutes by announcing itself alive with a higher incarnation. State changes spread by gossip:
//! each is queued in a [`BroadcastQueue`] and piggybacked on pings, acks and periodic gossip
//! datagrams to `gossip_nodes` random members, until sent a retransmit limit of times. A periodic
//! push/pull over the stream channel exchanges full state, and joining is one push/pull with a
//! seed address.
//!
//! Lifeguard (Dadgar et al., 2018) makes a slow node less likely to accuse healthy ones: local
//! health awareness ([`awareness`]) slows a node's probing when its probes fail without nacks;
//! suspicion timeouts start long and shrink with independent confirmations ([`suspicion`]); and a
//! suspect is told it is suspected in the very ping that probes it ("buddy system"), so it can
//! refute at once. [`Config::lifeguard`] turns all three off for comparison.
//!
//! Incarnations are 64-bit: the high 32 bits are the node's boot epoch, made durable before the
//! node's first message (see [`crate::Node`]), and the low 32 bits count refutations within one
//! life. A restarted node therefore always outranks every claim about its previous lives, without
//! an fsync on the refutation path.

mod awareness;
mod broadcast;
mod suspicion;

use core::net::SocketAddr;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use bytes::Bytes;

use self::awareness::Awareness;
use self::broadcast::{retransmit_limit, BroadcastQueue, Subject};
use self::suspicion::Suspicion;
use crate::limits::{
    DATAGRAM_BYTES_TARGET, MEMBERS_MAX, META_BYTES_MAX, NODE_NAME_BYTES_MAX, PUSH_PULL_EVENT_BYTES_MAX,
    RELAYS_MAX, STREAM_FRAME_BYTES_MAX, USER_EVENTS_PER_LTIME_MAX, USER_EVENT_BUFFER, USER_EVENT_BYTES_MAX,
};
use crate::node::{Channel, Transmit};
use crate::wire::{
    DatagramBuilder, MemberState, Message, NodeAddr, PushPullEvent, PushPullMember, SerfState,
};
use crate::{Instant, Rng};

pub use crate::wire::MemberState as State;

/// Timings and fan-outs of the protocol; memberlist's names and defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// How often a member is probed (`ProbeInterval`).
    pub probe_interval: Duration,
    /// How long a direct ping waits for its ack before indirect probes (`ProbeTimeout`).
    pub probe_timeout: Duration,
    /// Members asked to ping a target that did not answer directly (`IndirectChecks`).
    pub indirect_checks: u8,
    /// Scales the minimum suspicion timeout (`SuspicionMult`).
    pub suspicion_mult: u32,
    /// The maximum suspicion timeout as a multiple of the minimum (`SuspicionMaxTimeoutMult`).
    pub suspicion_max_timeout_mult: u32,
    /// Scales how many times each broadcast is sent (`RetransmitMult`).
    pub retransmit_mult: u32,
    /// How often queued broadcasts are gossiped (`GossipInterval`).
    pub gossip_interval: Duration,
    /// Members gossiped to each interval (`GossipNodes`).
    pub gossip_nodes: u8,
    /// How long dead members still receive gossip, so they can learn they are thought dead and
    /// refute (`GossipToTheDeadTime`).
    pub gossip_to_the_dead_time: Duration,
    /// How often full state is exchanged with a random member (`PushPullInterval`); scaled up
    /// above 32 members.
    pub push_pull_interval: Duration,
    /// Local health awareness never multiplies timings beyond this (`AwarenessMaxMultiplier`).
    pub awareness_max_multiplier: u32,
    /// After this long dead or left, a member's name may be taken by a node at a new address
    /// (Consul's `DeadNodeReclaimTime`).
    pub dead_node_reclaim_time: Duration,
    /// How often a join that got no answer is tried again (Consul's `retry_interval`).
    pub join_retry_interval: Duration,
    /// How often a push/pull is tried with a random dead member, so that both sides of a healed
    /// partition find each other again (serf's `ReconnectInterval`).
    pub reconnect_interval: Duration,
    /// Dead members are forgotten after this long (Consul's `reconnect_timeout`, 72 h).
    pub reconnect_timeout: Duration,
    /// Left members are forgotten after this long (serf's `TombstoneTimeout`, 24 h).
    pub tombstone_timeout: Duration,
    /// How long a leave waits for its broadcast to go out before completing anyway.
    pub leave_timeout: Duration,
    /// The most bytes of a user event's name and payload together (serf's
    /// `UserEventSizeLimit`, 512 by default, at most [`USER_EVENT_BYTES_MAX`]).
    pub user_event_size_limit: usize,
    /// Skip the stream-channel fallback ping (`DisableTcpPings`).
    pub disable_tcp_pings: bool,
    /// Lifeguard: awareness, shrinking suspicion timeouts, nacks and the buddy system.
    pub lifeguard: bool,
}

impl Config {
    /// memberlist's `DefaultLANConfig`, as Consul uses it.
    pub fn lan() -> Config {
        Config {
            probe_interval: Duration::from_secs(1),
            probe_timeout: Duration::from_millis(500),
            indirect_checks: 3,
            suspicion_mult: 4,
            suspicion_max_timeout_mult: 6,
            retransmit_mult: 4,
            gossip_interval: Duration::from_millis(200),
            gossip_nodes: 3,
            gossip_to_the_dead_time: Duration::from_secs(30),
            push_pull_interval: Duration::from_secs(30),
            awareness_max_multiplier: 8,
            dead_node_reclaim_time: Duration::from_secs(30),
            join_retry_interval: Duration::from_secs(30),
            reconnect_interval: Duration::from_secs(30),
            reconnect_timeout: Duration::from_secs(72 * 3600),
            tombstone_timeout: Duration::from_secs(24 * 3600),
            leave_timeout: Duration::from_secs(5),
            user_event_size_limit: 512,
            disable_tcp_pings: false,
            lifeguard: true,
        }
    }

    /// memberlist's `DefaultWANConfig`.
    pub fn wan() -> Config {
        Config {
            probe_interval: Duration::from_secs(5),
            probe_timeout: Duration::from_secs(3),
            suspicion_mult: 6,
            gossip_interval: Duration::from_millis(500),
            gossip_nodes: 4,
            gossip_to_the_dead_time: Duration::from_secs(60),
            push_pull_interval: Duration::from_secs(60),
            ..Config::lan()
        }
    }

    /// Consul's `-dev` gossip: everything at 100 ms.
    pub fn dev() -> Config {
        Config {
            probe_interval: Duration::from_millis(100),
            probe_timeout: Duration::from_millis(100),
            suspicion_mult: 3,
            gossip_interval: Duration::from_millis(100),
            ..Config::lan()
        }
    }

    /// Checks the relations the protocol relies on.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let positive = [
            ("probe_interval", self.probe_interval),
            ("probe_timeout", self.probe_timeout),
            ("gossip_interval", self.gossip_interval),
            ("push_pull_interval", self.push_pull_interval),
            ("reconnect_interval", self.reconnect_interval),
            ("join_retry_interval", self.join_retry_interval),
        ];
        for (name, value) in positive {
            if value < TIMING_MIN {
                return Err(ConfigError::TooShort { name, value, min: TIMING_MIN });
            }
        }
        if self.probe_timeout > self.probe_interval {
            return Err(ConfigError::ProbeTimeoutAboveInterval {
                timeout: self.probe_timeout,
                interval: self.probe_interval,
            });
        }
        let counts = [
            ("suspicion_mult", self.suspicion_mult),
            ("suspicion_max_timeout_mult", self.suspicion_max_timeout_mult),
            ("retransmit_mult", self.retransmit_mult),
            ("awareness_max_multiplier", self.awareness_max_multiplier),
            ("gossip_nodes", u32::from(self.gossip_nodes)),
        ];
        for (name, value) in counts {
            if !(1..=MULTIPLIER_MAX).contains(&value) {
                return Err(ConfigError::OutOfRange { name, value, max: MULTIPLIER_MAX });
            }
        }
        if self.user_event_size_limit > USER_EVENT_BYTES_MAX {
            return Err(ConfigError::OutOfRange {
                name: "user_event_size_limit",
                value: self.user_event_size_limit as u32,
                max: USER_EVENT_BYTES_MAX as u32,
            });
        }
        if u32::from(self.indirect_checks) > MULTIPLIER_MAX {
            return Err(ConfigError::OutOfRange {
                name: "indirect_checks",
                value: self.indirect_checks.into(),
                max: MULTIPLIER_MAX,
            });
        }
        Ok(())
    }
}

impl Default for Config {
    fn default() -> Config {
        Config::lan()
    }
}

/// A gossip configuration the protocol cannot run with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A timing below the floor.
    #[error("{name} of {value:?} is below the minimum of {min:?}")]
    TooShort {
        /// The setting.
        name: &'static str,
        /// Its value.
        value: Duration,
        /// The floor.
        min: Duration,
    },
    /// The direct probe must end within the probe interval, or indirect probes have no time.
    #[error("probe_timeout {timeout:?} must not exceed probe_interval {interval:?}")]
    ProbeTimeoutAboveInterval {
        /// The timeout.
        timeout: Duration,
        /// The interval.
        interval: Duration,
    },
    /// A multiplier or count out of range.
    #[error("{name} of {value} must be between 1 and {max}")]
    OutOfRange {
        /// The setting.
        name: &'static str,
        /// Its value.
        value: u32,
        /// The largest allowed.
        max: u32,
    },
}

/// A change in membership, for the application (serf's member events).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MemberEvent {
    /// What happened.
    pub kind: MemberEventKind,
    /// To whom.
    pub node: NodeAddr,
    /// The member's incarnation after the change.
    pub incarnation: u64,
}

/// The kinds of [`MemberEvent`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MemberEventKind {
    /// A member appeared, or came back after failing or leaving.
    Join,
    /// A member left gracefully.
    Leave,
    /// A member was declared dead.
    Failed,
    /// A member's tags changed.
    Update,
    /// A member came back in a new life (a higher boot epoch) before anyone declared it failed.
    Restart,
    /// A dead or left member was forgotten.
    Reap,
    /// Another node, at `node.addr`, claims a name this node knows alive elsewhere: its own,
    /// or a live member's (memberlist's "conflicting address"). Names must be unique; the claim
    /// is ignored, and reported once per name and address.
    Conflict,
}

/// An application event fired somewhere in the cluster (serf's user event). Delivered at most
/// once per node; like serf's, delivery is best effort and unordered: the Lamport time orders
/// events but does not promise each arrives.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UserEvent {
    /// The event's Lamport time.
    pub ltime: u64,
    /// Its name.
    pub name: String,
    /// Its payload.
    pub payload: Bytes,
}

/// A query to answer: from another member, or asked here (serf's query).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryRequest {
    /// The asker's id for it.
    pub id: u32,
    /// Its Lamport time.
    pub ltime: u64,
    /// What is asked.
    pub name: String,
    /// Its argument.
    pub payload: Bytes,
    /// The asker.
    pub source: NodeAddr,
}

/// The answers to a query asked here, once every member asked has answered or its timeout has
/// passed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryResult {
    /// The id [`Swim::trigger_query`] returned.
    pub id: u32,
    /// What was asked.
    pub name: String,
    /// Each answering member's name and answer, by name.
    pub responses: BTreeMap<String, Bytes>,
    /// Live members (this node included) when the query was asked.
    pub members: usize,
}

/// Why an event could not be fired. Nothing was sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FireError {
    /// Name and payload exceed the configured limit.
    #[error("user event exceeds configured limit of {max} bytes before encoding (is {size})")]
    TooLarge {
        /// Name plus payload bytes.
        size: usize,
        /// The configured limit.
        max: usize,
    },
    /// The event clock has reached its end (only a forged event can put it there).
    #[error("the user event clock is exhausted")]
    ClockExhausted,
    /// Event names are at most 255 bytes.
    #[error("user event name of {0} bytes is too long")]
    NameTooLong(usize),
}

/// A member as this node sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberView {
    /// Name and address.
    pub node: NodeAddr,
    /// Its state.
    pub state: MemberState,
    /// The incarnation the state belongs to.
    pub incarnation: u64,
    /// Its tags.
    pub meta: Bytes,
}

impl MemberView {
    /// The member's status as serf reports it: a suspect is still alive, a dead member failed.
    pub fn status(&self) -> Status {
        match self.state {
            MemberState::Alive | MemberState::Suspect => Status::Alive,
            MemberState::Dead => Status::Failed,
            MemberState::Left => Status::Left,
        }
    }
}

/// A member's status as serf reports it and Consul shows it (`consul members`, and the numbers
/// in `/v1/agent/members`).
///
/// Serf shows `leaving` on every member between a leave intent and memberlist's leave notice.
/// Here the leave intent and the leave are one message (ordered by incarnation rather than by a
/// separate intent clock), so peers go from `alive` to `left`, and `leaving` is the status a
/// node reports of itself while its leave is going out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Status {
    /// Answering, or suspected but not yet failed.
    Alive = 1,
    /// Announcing its graceful leave.
    Leaving = 2,
    /// Left gracefully.
    Left = 3,
    /// Declared dead, and expected back.
    Failed = 4,
}

impl Status {
    /// Consul's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Alive => "alive",
            Status::Leaving => "leaving",
            Status::Left => "left",
            Status::Failed => "failed",
        }
    }

    /// Consul's number for it (`Status` in `/v1/agent/members`).
    pub fn code(self) -> u8 {
        self as u8
    }
}

/// Counters of what the protocol did, for metrics and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Direct pings sent (the stream fallback included).
    pub pings_sent: u64,
    /// Indirect ping requests sent.
    pub indirect_pings_sent: u64,
    /// Probes that ended without an ack.
    pub probes_failed: u64,
    /// Acks that matched no probe or relay.
    pub acks_unmatched: u64,
    /// Nacks sent as a relay.
    pub nacks_sent: u64,
    /// Suspicions this node raised or adopted.
    pub suspicions: u64,
    /// Members this node declared dead when their suspicion timed out.
    pub deaths_declared: u64,
    /// Times this node refuted a suspicion or death of itself.
    pub refutations: u64,
    /// Gossip datagrams sent.
    pub gossip_sent: u64,
    /// Push/pull exchanges started (joins included).
    pub push_pulls_sent: u64,
    /// Messages ignored: about unknown members, stale, addressed to another node, or claiming a
    /// name held by a live node at another address.
    pub messages_ignored: u64,
    /// Members, relays or user events refused because a table was full.
    pub refused_full: u64,
    /// User events dropped for being older than the duplicate buffer remembers.
    pub user_events_too_old: u64,
    /// Push/pulls sent without some dead or left members because the frame was full.
    pub push_pull_truncated: u64,
}

/// The SWIM state machine of one node.
#[derive(Debug)]
pub(crate) struct Swim {
    config: Config,
    me: NodeAddr,
    meta: Bytes,
    incarnation: u64,
    members: BTreeMap<String, Member>,
    /// Members alive or suspect (this node excluded), kept as states change: the cluster size
    /// every suspicion and retransmit limit is computed from, without a scan of the table.
    live_others: usize,
    /// Every member's name in probe order; reshuffled at the end of each pass.
    probe_order: Vec<String>,
    probe_index: usize,
    probe: Option<Probe>,
    /// Indirect pings relayed for others, by the seq of our own ping to the target.
    relays: BTreeMap<u32, Relay>,
    relay_deadlines: BTreeSet<(Instant, u32)>,
    suspicions: BTreeMap<String, Suspicion>,
    /// Suspicion deadlines, ordered by time then name so that ties fire in the same order.
    suspicion_deadlines: BTreeSet<(Instant, String)>,
    broadcasts: BroadcastQueue,
    awareness: Awareness,
    probe_next: Instant,
    gossip_next: Instant,
    push_pull_next: Instant,
    reconnect_next: Instant,
    reap_next: Instant,
    /// Seeds joined through that have not answered yet; retried until one push/pull reply
    /// arrives from anyone (Consul's `retry_join`).
    joins_pending: BTreeSet<SocketAddr>,
    join_retry_next: Option<Instant>,
    leave: Leave,
    /// A boot epoch adopted to outrank a previous life, not yet taken by the node to persist.
    epoch_adopted: Option<u32>,
    /// The most bytes of one datagram before encryption.
    datagram_budget: usize,
    /// How many times `check_invariants` ran, to pace its full checks.
    #[cfg(any(test, feature = "invariants"))]
    invariant_checks: std::cell::Cell<u64>,
    seq_next: u32,
    rng: Rng,
    transmits: VecDeque<Transmit>,
    events: VecDeque<MemberEvent>,
    /// The (name, address) pairs already reported as conflicts, so a claim gossiped again and
    /// again is reported once; at most [`CONFLICTS_REPORTED_MAX`].
    conflicts_reported: BTreeSet<(String, SocketAddr)>,
    /// The Lamport clock of user events: the time the next event fired here gets.
    event_clock: u64,
    /// Events before this Lamport time are not delivered: they happened before this node joined.
    event_min_time: u64,
    /// The events seen at each of the last [`USER_EVENT_BUFFER`] Lamport times, by
    /// `ltime % USER_EVENT_BUFFER`, to drop duplicates (serf's `eventBuffer`).
    events_seen: Vec<Option<SeenEvents>>,
    user_events: VecDeque<UserEvent>,
    /// The Lamport clock of queries.
    query_clock: u64,
    /// The queries seen at each of the last [`QUERY_BUFFER`] Lamport times, as (asker, id).
    queries_seen: Vec<Option<SeenQueries>>,
    /// Queries asked here, waiting for answers until their deadline.
    queries_pending: BTreeMap<u32, PendingQuery>,
    query_deadlines: BTreeSet<(Instant, u32)>,
    query_id_next: u32,
    query_requests: VecDeque<QueryRequest>,
    query_results: VecDeque<QueryResult>,
    stats: Stats,
}

#[derive(Debug, Clone)]
struct PendingQuery {
    ltime: u64,
    name: String,
    deadline: Instant,
    responses: BTreeMap<String, Bytes>,
    members: usize,
}

/// The user events seen at one Lamport time: (time, [(name, payload)]).
type SeenEvents = (u64, Vec<(String, Bytes)>);

/// The queries seen at one Lamport time: (time, [(asker, id)]).
type SeenQueries = (u64, Vec<(String, u32)>);

#[derive(Debug, Clone)]
struct Member {
    addr: SocketAddr,
    meta: Bytes,
    incarnation: u64,
    state: MemberState,
    state_change: Instant,
}

#[derive(Debug, Clone)]
struct Probe {
    target: String,
    seq: u32,
    /// When the direct ping gives up and indirect probes start; `None` once they have.
    direct_deadline: Option<Instant>,
    nacks_expected: u32,
    nacks: u32,
}

#[derive(Debug, Clone)]
struct Relay {
    requester: SocketAddr,
    seq: u32,
    nack: bool,
    deadline: Instant,
}

/// Where a graceful leave stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Leave {
    Staying,
    /// The leave broadcast is going out; complete when it is sent or at the deadline.
    Leaving {
        deadline: Instant,
    },
    Left,
}

impl Swim {
    pub(crate) fn new(
        config: Config,
        me: NodeAddr,
        meta: Bytes,
        incarnation: u64,
        datagram_budget: usize,
        mut rng: Rng,
        now: Instant,
    ) -> Swim {
        assert!(datagram_budget <= DATAGRAM_BYTES_TARGET);
        assert!(me.name.len() <= NODE_NAME_BYTES_MAX);
        assert!(meta.len() <= META_BYTES_MAX);
        // Stagger the periodic work so nodes started together do not act in lockstep.
        let probe_next = now + rng.duration_between(Duration::ZERO, config.probe_interval);
        let gossip_next = now + rng.duration_between(Duration::ZERO, config.gossip_interval);
        let push_pull_next = now + rng.duration_between(Duration::ZERO, config.push_pull_interval);
        let reconnect_next = now + rng.duration_between(Duration::ZERO, config.reconnect_interval);
        Swim {
            awareness: Awareness::new(config.awareness_max_multiplier),
            me,
            meta,
            incarnation,
            members: BTreeMap::new(),
            live_others: 0,
            probe_order: Vec::new(),
            probe_index: 0,
            probe: None,
            relays: BTreeMap::new(),
            relay_deadlines: BTreeSet::new(),
            suspicions: BTreeMap::new(),
            suspicion_deadlines: BTreeSet::new(),
            broadcasts: BroadcastQueue::default(),
            probe_next,
            gossip_next,
            push_pull_next,
            reconnect_next,
            reap_next: now + REAP_INTERVAL,
            joins_pending: BTreeSet::new(),
            join_retry_next: None,
            leave: Leave::Staying,
            epoch_adopted: None,
            datagram_budget,
            #[cfg(any(test, feature = "invariants"))]
            invariant_checks: std::cell::Cell::new(0),
            seq_next: 0,
            rng,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            conflicts_reported: BTreeSet::new(),
            event_clock: 0,
            event_min_time: 0,
            events_seen: vec![None; USER_EVENT_BUFFER as usize],
            user_events: VecDeque::new(),
            query_clock: 0,
            queries_seen: vec![None; QUERY_BUFFER as usize],
            queries_pending: BTreeMap::new(),
            query_deadlines: BTreeSet::new(),
            query_id_next: 0,
            query_requests: VecDeque::new(),
            query_results: VecDeque::new(),
            stats: Stats::default(),
            config,
        }
    }

    /// Fires a user event: stamped with the event clock, delivered here, and gossiped.
    pub(crate) fn trigger_user_event(&mut self, name: String, payload: Bytes) -> Result<(), FireError> {
        if name.len() > NODE_NAME_BYTES_MAX {
            return Err(FireError::NameTooLong(name.len()));
        }
        let size = name.len() + payload.len();
        if size > self.config.user_event_size_limit {
            return Err(FireError::TooLarge { size, max: self.config.user_event_size_limit });
        }
        let ltime = self.event_clock;
        // A forged event at the end of time can push the clock there; refuse rather than wrap.
        self.event_clock = ltime.checked_add(1).ok_or(FireError::ClockExhausted)?;
        self.handle_user_event(ltime, name, payload);
        Ok(())
    }

    /// Asks every member `name` (serf's query): answers are collected until every live member
    /// has answered or a timeout of `16 × gossip_interval × ⌈log10(n + 1)⌉` (serf's default),
    /// then reported as a [`QueryResult`]. The query is also delivered here, like any other member's.
    pub(crate) fn trigger_query(
        &mut self,
        now: Instant,
        name: String,
        payload: Bytes,
    ) -> Result<u32, FireError> {
        if name.len() > NODE_NAME_BYTES_MAX {
            return Err(FireError::NameTooLong(name.len()));
        }
        if name.len() + payload.len() > USER_EVENT_BYTES_MAX {
            return Err(FireError::TooLarge { size: name.len() + payload.len(), max: USER_EVENT_BYTES_MAX });
        }
        let ltime = self.query_clock;
        self.query_clock = ltime.checked_add(1).ok_or(FireError::ClockExhausted)?;
        let id = self.query_id_next;
        self.query_id_next = self.query_id_next.wrapping_add(1);
        let members = self.live_members();
        let timeout =
            self.config.gossip_interval * QUERY_TIMEOUT_MULT * broadcast::log10_ceil(members + 1).max(1);
        let deadline = now + timeout;
        if let Some(stale) = self.queries_pending.insert(
            id,
            PendingQuery { ltime, name: name.clone(), deadline, responses: BTreeMap::new(), members },
        ) {
            // The id space wrapped onto a query still waiting: end the old one first.
            self.query_deadlines.remove(&(stale.deadline, id));
        }
        self.query_deadlines.insert((deadline, id));
        let timeout_ms = u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX);
        let source = self.me.clone();
        self.handle_query(Message::Query { id, ltime, name, payload, source, timeout_ms });
        Ok(id)
    }

    /// Answers a query delivered by [`Swim::poll_query_request`].
    pub(crate) fn respond(&mut self, request: &QueryRequest, payload: Bytes) {
        assert!(payload.len() <= USER_EVENT_BYTES_MAX, "the caller bounds answers");
        if request.source.name == self.me.name {
            self.handle_query_response(request.id, request.ltime, self.me.name.clone(), payload);
            return;
        }
        let from = self.me.name.clone();
        let response = Message::QueryResponse { id: request.id, ltime: request.ltime, from, payload };
        self.send(request.source.addr, Channel::Datagram, response);
    }

    pub(crate) fn poll_query_request(&mut self) -> Option<QueryRequest> {
        self.query_requests.pop_front()
    }

    pub(crate) fn poll_query_result(&mut self) -> Option<QueryResult> {
        self.query_results.pop_front()
    }

    /// Joins through `seed`: a push/pull of full state with whatever node answers there, tried
    /// again every `join_retry_interval` until some push/pull is answered.
    pub(crate) fn trigger_join(&mut self, now: Instant, seed: SocketAddr) {
        if self.leave != Leave::Staying {
            return;
        }
        self.joins_pending.insert(seed);
        self.join_retry_next.get_or_insert(now + self.config.join_retry_interval);
        self.send_push_pull(seed, true, false);
    }

    /// Leaves gracefully: announces it, then completes when the announcement has been gossiped
    /// its full count of times, or at the leave timeout.
    pub(crate) fn trigger_leave(&mut self, now: Instant) {
        if self.leave != Leave::Staying {
            return;
        }
        self.leave = Leave::Leaving { deadline: now + self.config.leave_timeout };
        let dead = Message::Dead {
            incarnation: self.incarnation,
            node: self.me.name.clone(),
            from: self.me.name.clone(),
        };
        self.broadcasts.push(&self.me.name, dead.encode_entry());
        self.check_leave_complete(now);
    }

    /// Marks a failed member as left (serf's force-leave): it is no longer expected back.
    /// Returns whether `name` was a dead member.
    pub(crate) fn trigger_force_leave(&mut self, now: Instant, name: &str, prune: bool) -> bool {
        let Some(member) = self.members.get(name) else { return false };
        let incarnation = member.incarnation;
        match member.state {
            MemberState::Dead => {
                let message = Message::Dead { incarnation, node: name.to_owned(), from: name.to_owned() };
                self.handle_dead(now, message);
            }
            // A member that left already can still be pruned.
            MemberState::Left if prune => {}
            _ => return false,
        }
        if prune {
            self.handle_prune(Message::Prune { incarnation, node: name.to_owned() });
        }
        true
    }

    pub(crate) fn handle_message(&mut self, now: Instant, channel: Channel, message: Message) {
        if self.leave == Leave::Left {
            self.stats.messages_ignored += 1;
            return;
        }
        // A message naming this node as its source or relay target is a loop or a forgery:
        // answering it would make the node send to itself.
        let from_self = match &message {
            Message::Ping { source, .. }
            | Message::PushPull { source, .. }
            | Message::Query { source, .. } => self.is_me(source),
            Message::IndirectPing { target, source, .. } => self.is_me(source) || self.is_me(target),
            _ => false,
        };
        if from_self {
            self.stats.messages_ignored += 1;
            return;
        }
        match message {
            Message::Ping { seq, target, source } => {
                if !target.is_empty() && target != self.me.name {
                    self.stats.messages_ignored += 1;
                    return;
                }
                self.send(source.addr, channel, Message::Ack { seq });
            }
            Message::IndirectPing { seq, target, nack, source } => {
                self.handle_indirect_ping(now, seq, target, nack, source)
            }
            Message::Ack { seq } => self.handle_ack(seq),
            Message::Nack { seq } => match &mut self.probe {
                Some(probe) if probe.seq == seq => probe.nacks += 1,
                _ => self.stats.acks_unmatched += 1,
            },
            Message::Alive { .. } => self.handle_alive(now, message),
            Message::Suspect { .. } => self.handle_suspect(now, message),
            Message::Dead { .. } => self.handle_dead(now, message),
            Message::Prune { .. } => self.handle_prune(message),
            Message::UserEvent { ltime, name, payload } => self.handle_user_event(ltime, name, payload),
            Message::Query { .. } => self.handle_query(message),
            Message::QueryResponse { id, ltime, from, payload } => {
                self.handle_query_response(id, ltime, from, payload)
            }
            Message::PushPull { join: _, reply, source, members, serf } => {
                // The answer to our own join: what happened before it is not ours to deliver.
                let joined = reply && !self.joins_pending.is_empty();
                if reply {
                    self.joins_pending.clear();
                    self.join_retry_next = None;
                }
                self.merge_remote_state(now, &source, members);
                self.merge_serf_state(serf, joined);
                if !reply {
                    self.send_push_pull(source.addr, false, true);
                }
            }
        }
    }

    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        if self.leave == Leave::Left {
            return;
        }
        while let Some((deadline, name)) = self.suspicion_deadlines.first().cloned() {
            if deadline > now {
                break;
            }
            self.suspicion_deadlines.pop_first();
            self.handle_timeout_suspicion(now, name);
        }
        while let Some(&(deadline, id)) = self.query_deadlines.first() {
            if deadline > now {
                break;
            }
            self.query_deadlines.pop_first();
            let pending = self.queries_pending.remove(&id).expect("a query deadline has a query");
            let PendingQuery { name, responses, members, .. } = pending;
            self.query_results.push_back(QueryResult { id, name, responses, members });
        }
        while let Some(&(deadline, seq)) = self.relay_deadlines.first() {
            if deadline > now {
                break;
            }
            self.relay_deadlines.pop_first();
            let relay = self.relays.remove(&seq).expect("a relay deadline has a relay");
            if relay.nack {
                self.send(relay.requester, Channel::Datagram, Message::Nack { seq: relay.seq });
                self.stats.nacks_sent += 1;
            }
        }
        self.check_leave_complete(now);
        if self.leave == Leave::Left {
            return;
        }
        if self.probe.as_ref().and_then(|p| p.direct_deadline).is_some_and(|d| d <= now) {
            self.handle_timeout_direct_probe();
        }
        if self.probe_next <= now {
            self.handle_timeout_probe_round(now);
        }
        if self.gossip_next <= now {
            self.gossip_next = now + self.config.gossip_interval;
            self.gossip(now);
        }
        if self.push_pull_next <= now {
            self.push_pull_next = now + push_pull_scale(self.config.push_pull_interval, self.live_members());
            if let Some(peer) = self.random_members(1, |m| m.state == MemberState::Alive).pop() {
                let addr = self.members[&peer].addr;
                self.send_push_pull(addr, false, false);
            }
        }
        if self.reconnect_next <= now {
            self.reconnect_next = now + self.config.reconnect_interval;
            self.reconnect();
        }
        if self.join_retry_next.is_some_and(|at| at <= now) {
            self.join_retry_next = Some(now + self.config.join_retry_interval);
            for seed in self.joins_pending.clone() {
                self.send_push_pull(seed, true, false);
            }
        }
        if self.reap_next <= now {
            self.reap_next = now + REAP_INTERVAL;
            self.reap(now);
        }
    }

    /// Replaces this node's tags (serf's `SetTags`): a new incarnation, announced to everyone.
    /// Returns `false`, changing nothing, while leaving or when this life has used up its
    /// incarnations.
    pub(crate) fn trigger_update_meta(&mut self, meta: Bytes) -> bool {
        assert!(meta.len() <= META_BYTES_MAX, "the caller checks the size");
        if self.leave != Leave::Staying || self.incarnation & u64::from(u32::MAX) == u64::from(u32::MAX) {
            return false;
        }
        self.meta = meta;
        self.incarnation += 1;
        let alive =
            Message::Alive { incarnation: self.incarnation, node: self.me.clone(), meta: self.meta.clone() };
        self.broadcasts.push(&self.me.name, alive.encode_entry());
        true
    }

    pub(crate) fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    pub(crate) fn poll_event(&mut self) -> Option<MemberEvent> {
        self.events.pop_front()
    }

    pub(crate) fn poll_user_event(&mut self) -> Option<UserEvent> {
        self.user_events.pop_front()
    }

    /// The next instant at which [`Swim::handle_timeout`] has work.
    /// `None` once the node has left: it has nothing more to do.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        let leave = match self.leave {
            Leave::Left => return None,
            Leave::Leaving { deadline } => Some(deadline),
            Leave::Staying => None,
        };
        let suspicion = self.suspicion_deadlines.first().map(|(at, _)| *at);
        let relay = self.relay_deadlines.first().map(|&(at, _)| at);
        let query = self.query_deadlines.first().map(|&(at, _)| at);
        let direct = self.probe.as_ref().and_then(|p| p.direct_deadline);
        let periodic =
            [self.probe_next, self.gossip_next, self.push_pull_next, self.reconnect_next, self.reap_next];
        let timers = [suspicion, relay, query, direct, leave, self.join_retry_next];
        periodic.into_iter().chain(timers.into_iter().flatten()).min()
    }

    pub(crate) fn incarnation(&self) -> u64 {
        self.incarnation
    }

    /// This node's own status.
    pub(crate) fn status(&self) -> Status {
        match self.leave {
            Leave::Staying => Status::Alive,
            Leave::Leaving { .. } => Status::Leaving,
            Leave::Left => Status::Left,
        }
    }

    pub(crate) fn has_left(&self) -> bool {
        self.leave == Leave::Left
    }

    pub(crate) fn stats(&self) -> Stats {
        self.stats
    }

    pub(crate) fn awareness_score(&self) -> u32 {
        self.awareness.score()
    }

    pub(crate) fn members(&self) -> impl Iterator<Item = MemberView> + '_ {
        self.members.iter().map(|(name, m)| MemberView {
            node: NodeAddr { name: name.clone(), addr: m.addr },
            state: m.state,
            incarnation: m.incarnation,
            meta: m.meta.clone(),
        })
    }

    pub(crate) fn member(&self, name: &str) -> Option<MemberView> {
        self.members.get(name).map(|m| MemberView {
            node: NodeAddr { name: name.to_owned(), addr: m.addr },
            state: m.state,
            incarnation: m.incarnation,
            meta: m.meta.clone(),
        })
    }

    // --- probing -------------------------------------------------------------------------

    fn handle_timeout_probe_round(&mut self, now: Instant) {
        if let Some(probe) = self.probe.take() {
            self.handle_probe_failed(now, probe);
        }
        self.probe_next = now + self.awareness.scale(self.config.probe_interval);
        let Some(target) = self.next_probe_target() else { return };
        let seq = self.next_seq();
        let member = &self.members[&target];
        let (addr, state, incarnation) = (member.addr, member.state, member.incarnation);
        let ping = Message::Ping { seq, target: target.clone(), source: self.me.clone() };
        let mut extra = Vec::new();
        if state == MemberState::Suspect && self.config.lifeguard {
            // The buddy system: tell the suspect, so it can refute before the timeout.
            extra.push(Message::Suspect { incarnation, node: target.clone(), from: self.me.name.clone() });
        }
        self.send_with(addr, Channel::Datagram, ping, &extra);
        self.stats.pings_sent += 1;
        let direct_deadline = now + self.awareness.scale(self.config.probe_timeout);
        self.probe =
            Some(Probe { target, seq, direct_deadline: Some(direct_deadline), nacks_expected: 0, nacks: 0 });
    }

    /// The direct ping went unanswered: ask others, and try the stream channel.
    fn handle_timeout_direct_probe(&mut self) {
        let probe = self.probe.as_mut().expect("checked by the caller");
        probe.direct_deadline = None;
        let (target, seq) = (probe.target.clone(), probe.seq);
        let Some(member) = self.members.get(&target) else { return };
        let target_node = NodeAddr { name: target.clone(), addr: member.addr };
        let relays =
            self.random_members(usize::from(self.config.indirect_checks), |m| m.state == MemberState::Alive);
        let relays: Vec<String> = relays.into_iter().filter(|name| *name != target).collect();
        for relay in &relays {
            let request = Message::IndirectPing {
                seq,
                target: target_node.clone(),
                nack: self.config.lifeguard,
                source: self.me.clone(),
            };
            self.send(self.members[relay].addr, Channel::Datagram, request);
            self.stats.indirect_pings_sent += 1;
        }
        if self.config.lifeguard {
            self.probe.as_mut().expect("still probing").nacks_expected = relays.len() as u32;
        }
        if !self.config.disable_tcp_pings {
            let ping = Message::Ping { seq, target: target.clone(), source: self.me.clone() };
            self.send(target_node.addr, Channel::Stream, ping);
            self.stats.pings_sent += 1;
        }
    }

    fn handle_probe_failed(&mut self, now: Instant, probe: Probe) {
        self.stats.probes_failed += 1;
        if self.config.lifeguard {
            // Lifeguard: missing nacks suggest our own network or process is the problem.
            let delta = if probe.nacks_expected > 0 {
                i64::from(probe.nacks_expected - probe.nacks.min(probe.nacks_expected))
            } else {
                1
            };
            self.awareness.apply(delta);
        }
        let Some(member) = self.members.get(&probe.target) else { return };
        if member.state != MemberState::Alive && member.state != MemberState::Suspect {
            return;
        }
        let suspect = Message::Suspect {
            incarnation: member.incarnation,
            node: probe.target.clone(),
            from: self.me.name.clone(),
        };
        self.handle_suspect(now, suspect);
    }

    fn handle_ack(&mut self, seq: u32) {
        if self.probe.as_ref().is_some_and(|p| p.seq == seq) {
            self.probe = None;
            if self.config.lifeguard {
                self.awareness.apply(-1);
            }
            return;
        }
        if let Some(relay) = self.relays.remove(&seq) {
            let removed = self.relay_deadlines.remove(&(relay.deadline, seq));
            assert!(removed, "a relay has a deadline");
            self.send(relay.requester, Channel::Datagram, Message::Ack { seq: relay.seq });
            return;
        }
        self.stats.acks_unmatched += 1;
    }

    fn handle_indirect_ping(
        &mut self,
        now: Instant,
        seq: u32,
        target: NodeAddr,
        nack: bool,
        source: NodeAddr,
    ) {
        if self.relays.len() >= RELAYS_MAX {
            self.stats.refused_full += 1;
            return;
        }
        let our_seq = self.next_seq();
        let deadline = now + self.config.probe_timeout;
        self.relays.insert(our_seq, Relay { requester: source.addr, seq, nack, deadline });
        self.relay_deadlines.insert((deadline, our_seq));
        let ping = Message::Ping { seq: our_seq, target: target.name, source: self.me.clone() };
        self.send(target.addr, Channel::Datagram, ping);
        self.stats.pings_sent += 1;
    }

    /// The next member to probe: round-robin over a list reshuffled after each pass, skipping
    /// dead and left members.
    fn next_probe_target(&mut self) -> Option<String> {
        for _ in 0..=self.probe_order.len() {
            if self.probe_index >= self.probe_order.len() {
                self.rng.shuffle(&mut self.probe_order);
                self.probe_index = 0;
            }
            let name = self.probe_order.get(self.probe_index)?.clone();
            self.probe_index += 1;
            if matches!(self.members[&name].state, MemberState::Alive | MemberState::Suspect) {
                return Some(name);
            }
        }
        None
    }

    // --- state changes (memberlist's aliveNode, suspectNode, deadNode) ---------------------

    fn handle_alive(&mut self, now: Instant, message: Message) {
        let Message::Alive { incarnation, node, meta } = &message else { unreachable!("alive only") };
        if node.name == self.me.name {
            if node.addr != self.me.addr {
                self.report_conflict(node, *incarnation);
            }
            // Someone claims we are alive with an incarnation we never used: refute it, unless
            // we are leaving (a refutation would replace the leave in the broadcast queue).
            let newer = *incarnation > self.incarnation;
            let moved = *incarnation == self.incarnation && node.addr != self.me.addr;
            if (newer || moved) && self.leave == Leave::Staying {
                self.refute(*incarnation, Some(node.addr));
            }
            return;
        }
        let Some(member) = self.members.get(&node.name) else {
            if self.members.len() >= MEMBERS_MAX {
                self.stats.refused_full += 1;
                return;
            }
            self.members.insert(
                node.name.clone(),
                Member {
                    addr: node.addr,
                    meta: meta.clone(),
                    incarnation: *incarnation,
                    state: MemberState::Alive,
                    state_change: now,
                },
            );
            self.live_others += 1;
            // A new member goes to a random place in the probe order.
            let at = self.rng.below(self.probe_order.len() as u64 + 1) as usize;
            self.probe_order.insert(at, node.name.clone());
            if at < self.probe_index {
                self.probe_index += 1;
            }
            self.broadcasts.push(&node.name, message.encode_entry());
            let kind = MemberEventKind::Join;
            self.events.push_back(MemberEvent { kind, node: node.clone(), incarnation: *incarnation });
            return;
        };
        let gone = matches!(member.state, MemberState::Dead | MemberState::Left);
        let reclaims = member.addr != node.addr
            && gone
            && now.saturating_duration_since(member.state_change) >= self.config.dead_node_reclaim_time;
        if member.addr != node.addr && !reclaims {
            // The name is held by a live node elsewhere (or died too recently to be reclaimed).
            self.stats.messages_ignored += 1;
            if is_live(member.state) {
                self.report_conflict(node, *incarnation);
            }
            return;
        }
        if *incarnation <= member.incarnation && !reclaims {
            return;
        }
        self.cancel_suspicion(&node.name);
        self.broadcasts.push(&node.name, message.encode_entry());
        if !is_live(self.members[&node.name].state) {
            self.live_others += 1;
        }
        let member = self.members.get_mut(&node.name).expect("looked up above");
        let meta_changed = member.meta != *meta;
        let restarted = *incarnation >> 32 > member.incarnation >> 32;
        member.incarnation = *incarnation;
        member.addr = node.addr;
        member.meta = meta.clone();
        if member.state != MemberState::Alive {
            member.state = MemberState::Alive;
            member.state_change = now;
        }
        let kind = if gone {
            Some(MemberEventKind::Join)
        } else if restarted {
            Some(MemberEventKind::Restart)
        } else if meta_changed {
            Some(MemberEventKind::Update)
        } else {
            None
        };
        if let Some(kind) = kind {
            self.events.push_back(MemberEvent { kind, node: node.clone(), incarnation: *incarnation });
        }
    }

    fn handle_suspect(&mut self, now: Instant, message: Message) {
        let Message::Suspect { incarnation, node, from } = &message else { unreachable!("suspect only") };
        let Some((state, known_incarnation)) = self.accused_member(*incarnation, node) else { return };
        if let Some(suspicion) = self.suspicions.get_mut(node) {
            if suspicion.incarnation == *incarnation {
                let old = suspicion.deadline();
                if suspicion.confirm(from) {
                    let new = suspicion.deadline();
                    let removed = self.suspicion_deadlines.remove(&(old, node.clone()));
                    assert!(removed, "a suspicion has a deadline");
                    self.suspicion_deadlines.insert((new, node.clone()));
                    self.broadcasts.push(node, message.encode_entry());
                }
                return;
            }
        }
        if state != MemberState::Alive && !(state == MemberState::Suspect && *incarnation > known_incarnation)
        {
            return;
        }
        self.cancel_suspicion(node);
        self.broadcasts.push(node, message.encode_entry());
        self.stats.suspicions += 1;
        let live = self.live_members();
        let mut k = if self.config.lifeguard { self.config.suspicion_mult.saturating_sub(2) } else { 0 };
        if (live as u32).saturating_sub(2) < k {
            k = 0;
        }
        let min = suspicion::timeout_min(self.config.suspicion_mult, live, self.config.probe_interval);
        let max = if self.config.lifeguard { min * self.config.suspicion_max_timeout_mult } else { min };
        let suspicion = Suspicion::new(*incarnation, from.clone(), k, min, max, now);
        self.suspicion_deadlines.insert((suspicion.deadline(), node.clone()));
        self.suspicions.insert(node.clone(), suspicion);
        if !is_live(self.members[node].state) {
            self.live_others += 1;
        }
        let member = self.members.get_mut(node).expect("looked up above");
        // A suspicion can be the first news of a member's new life: say so, or its later
        // refutation (same epoch) would raise no event and the restart would go unreported.
        let restarted = *incarnation >> 32 > member.incarnation >> 32;
        member.incarnation = *incarnation;
        member.state = MemberState::Suspect;
        member.state_change = now;
        if restarted {
            let node = NodeAddr { name: node.clone(), addr: member.addr };
            self.events.push_back(MemberEvent {
                kind: MemberEventKind::Restart,
                node,
                incarnation: *incarnation,
            });
        }
    }

    fn handle_timeout_suspicion(&mut self, now: Instant, name: String) {
        let suspicion = self.suspicions.remove(&name).expect("a suspicion deadline has a suspicion");
        let member = &self.members[&name];
        assert_eq!(member.state, MemberState::Suspect, "a suspicion is cancelled when its member changes");
        assert_eq!(member.incarnation, suspicion.incarnation);
        self.stats.deaths_declared += 1;
        let dead =
            Message::Dead { incarnation: suspicion.incarnation, node: name, from: self.me.name.clone() };
        self.handle_dead(now, dead);
    }

    fn handle_dead(&mut self, now: Instant, message: Message) {
        let Message::Dead { incarnation, node, from } = &message else { unreachable!("dead only") };
        let Some((state, _)) = self.accused_member(*incarnation, node) else { return };
        let leaving = node == from;
        let target = if leaving { MemberState::Left } else { MemberState::Dead };
        match state {
            MemberState::Left => return,
            // Only a leave moves a dead member on (a late leave, or a force-leave).
            MemberState::Dead if !leaving => return,
            _ => {}
        }
        self.cancel_suspicion(node);
        self.broadcasts.push(node, message.encode_entry());
        if is_live(self.members[node].state) {
            self.live_others -= 1;
        }
        let member = self.members.get_mut(node).expect("looked up above");
        member.incarnation = *incarnation;
        member.state = target;
        member.state_change = now;
        let kind = if leaving { MemberEventKind::Leave } else { MemberEventKind::Failed };
        let node = NodeAddr { name: node.clone(), addr: member.addr };
        self.events.push_back(MemberEvent { kind, node, incarnation: *incarnation });
    }

    /// Forgets a member that failed or left at once, and passes the word on (serf's leave
    /// intent with `Prune`). A member alive, or alive again at a later incarnation, stays.
    fn handle_prune(&mut self, message: Message) {
        let Message::Prune { incarnation, node } = &message else { unreachable!("prune only") };
        let Some(member) = self.members.get(node) else {
            self.stats.messages_ignored += 1;
            return;
        };
        if is_live(member.state) || member.incarnation > *incarnation {
            self.stats.messages_ignored += 1;
            return;
        }
        self.broadcasts.push(node, message.encode_entry());
        self.erase(node);
    }

    /// The member a suspicion or death claim at `incarnation` is about, if the claim applies:
    /// a claim about this node is refuted instead (unless it is leaving), one about an unknown
    /// member is ignored, and one about an older incarnation is stale.
    /// Returns its state and incarnation.
    fn accused_member(&mut self, incarnation: u64, node: &str) -> Option<(MemberState, u64)> {
        if node == self.me.name {
            if self.leave == Leave::Staying {
                self.refute(incarnation, None);
            }
            return None;
        }
        let Some(member) = self.members.get(node) else {
            self.stats.messages_ignored += 1;
            return None;
        };
        (incarnation >= member.incarnation).then_some((member.state, member.incarnation))
    }

    /// serf's `handleUserEvent`: witness the Lamport time, drop what is too old or already seen,
    /// deliver and gossip the rest.
    fn handle_user_event(&mut self, ltime: u64, name: String, payload: Bytes) {
        // Witness: the clock moves past every time seen, so events fired here come later.
        self.event_clock = self.event_clock.max(ltime.saturating_add(1));
        let forgotten = self.event_clock > USER_EVENT_BUFFER && ltime < self.event_clock - USER_EVENT_BUFFER;
        if forgotten || ltime < self.event_min_time {
            self.stats.user_events_too_old += 1;
            return;
        }
        let slot = &mut self.events_seen[(ltime % USER_EVENT_BUFFER) as usize];
        match slot {
            Some((seen, events)) if *seen == ltime => {
                if events.iter().any(|(n, p)| *n == name && *p == payload) {
                    return;
                }
                if events.len() >= USER_EVENTS_PER_LTIME_MAX {
                    self.stats.refused_full += 1;
                    return;
                }
                events.push((name.clone(), payload.clone()));
            }
            _ => {
                // The slot's previous Lamport time is forgotten: so are its queued broadcasts.
                if let Some((old, events)) = slot.replace((ltime, vec![(name.clone(), payload.clone())])) {
                    for place in 0..events.len() {
                        self.broadcasts.remove(&Subject::Event(old, place));
                    }
                }
            }
        }
        let slot = &self.events_seen[(ltime % USER_EVENT_BUFFER) as usize];
        let place = slot.as_ref().expect("filled above").1.len() - 1;
        let message = Message::UserEvent { ltime, name: name.clone(), payload: payload.clone() };
        let entry = message.encode_entry();
        // An entry no datagram can carry would sit in the queue forever: deliver, do not gossip.
        if entry.len() < self.datagram_budget {
            self.broadcasts.push_subject(Subject::Event(ltime, place), entry);
        }
        self.user_events.push_back(UserEvent { ltime, name, payload });
    }

    /// serf's `handleQuery`: witness the clock, drop old and duplicate queries, gossip the rest
    /// on and hand them to the node to answer.
    fn handle_query(&mut self, message: Message) {
        let Message::Query { id, ltime, name, payload, source, .. } = &message else {
            unreachable!("query only")
        };
        self.query_clock = self.query_clock.max(ltime.saturating_add(1));
        if self.query_clock > QUERY_BUFFER && *ltime < self.query_clock - QUERY_BUFFER {
            self.stats.user_events_too_old += 1;
            return;
        }
        let slot = &mut self.queries_seen[(ltime % QUERY_BUFFER) as usize];
        match slot {
            Some((seen, queries)) if *seen == *ltime => {
                if queries.iter().any(|(asker, q)| *asker == source.name && q == id) {
                    return;
                }
                if queries.len() >= USER_EVENTS_PER_LTIME_MAX {
                    self.stats.refused_full += 1;
                    return;
                }
                queries.push((source.name.clone(), *id));
            }
            _ => {
                if let Some((old, queries)) = slot.replace((*ltime, vec![(source.name.clone(), *id)])) {
                    for place in 0..queries.len() {
                        self.broadcasts.remove(&Subject::Query(old, place));
                    }
                }
            }
        }
        let slot = &self.queries_seen[(ltime % QUERY_BUFFER) as usize];
        let place = slot.as_ref().expect("filled above").1.len() - 1;
        let entry = message.encode_entry();
        if entry.len() < self.datagram_budget {
            self.broadcasts.push_subject(Subject::Query(*ltime, place), entry);
        }
        self.query_requests.push_back(QueryRequest {
            id: *id,
            ltime: *ltime,
            name: name.clone(),
            payload: payload.clone(),
            source: source.clone(),
        });
    }

    fn handle_query_response(&mut self, id: u32, ltime: u64, from: String, payload: Bytes) {
        match self.queries_pending.get_mut(&id) {
            Some(pending) if pending.ltime == ltime && pending.responses.len() < MEMBERS_MAX => {
                pending.responses.insert(from, payload);
                // Every member asked has answered: report now rather than at the timeout, as
                // serf's key manager returns once NumResp reaches NumNodes.
                if pending.responses.len() >= pending.members {
                    let pending = self.queries_pending.remove(&id).expect("just found");
                    self.query_deadlines.remove(&(pending.deadline, id));
                    let PendingQuery { name, responses, members, .. } = pending;
                    self.query_results.push_back(QueryResult { id, name, responses, members });
                }
            }
            _ => self.stats.messages_ignored += 1,
        }
    }

    /// Announces this node alive with an incarnation above `accused`.
    ///
    /// A claim from a later boot epoch than ours, or one that leaves no room in this epoch, is
    /// about a life this one cannot outrank by counting. If it names our own address (`claim_addr`),
    /// it is our previous life: this node came back with a fresh data dir and restored an older
    /// epoch. It then adopts the epoch after the claim's, which [`crate::Node`] makes durable before
    /// anything more is sent. A later-epoch claim at another address, or one without an address
    /// (a gossiped suspicion), may be another node using our name or a forgery; adopting its epoch
    /// would start an epoch race, so it is ignored and counted, and push/pull corrects it.
    fn refute(&mut self, accused: u64, claim_addr: Option<SocketAddr>) {
        let epoch = self.incarnation >> 32;
        let exhausted = accused >= (epoch << 32 | u64::from(u32::MAX));
        if accused >> 32 > epoch || exhausted {
            let next_epoch = (accused >> 32) + 1;
            if claim_addr != Some(self.me.addr) || next_epoch > u64::from(u32::MAX) {
                self.stats.messages_ignored += 1;
                return;
            }
            self.incarnation = next_epoch << 32;
            self.epoch_adopted = Some(next_epoch as u32);
        } else {
            self.incarnation = self.incarnation.max(accused) + 1;
        }
        self.stats.refutations += 1;
        if self.config.lifeguard {
            self.awareness.apply(1);
        }
        let alive =
            Message::Alive { incarnation: self.incarnation, node: self.me.clone(), meta: self.meta.clone() };
        self.broadcasts.push(&self.me.name, alive.encode_entry());
    }

    /// The boot epoch this node adopted to outrank a previous life, once: the caller must make
    /// it durable before sending anything more.
    pub(crate) fn take_epoch_adopted(&mut self) -> Option<u32> {
        self.epoch_adopted.take()
    }

    /// Reports `node`'s claim on a name held elsewhere, once per name and address.
    fn report_conflict(&mut self, node: &NodeAddr, incarnation: u64) {
        if self.conflicts_reported.len() >= CONFLICTS_REPORTED_MAX {
            return;
        }
        if self.conflicts_reported.insert((node.name.clone(), node.addr)) {
            let kind = MemberEventKind::Conflict;
            self.events.push_back(MemberEvent { kind, node: node.clone(), incarnation });
        }
    }

    fn cancel_suspicion(&mut self, name: &str) {
        if let Some(suspicion) = self.suspicions.remove(name) {
            let removed = self.suspicion_deadlines.remove(&(suspicion.deadline(), name.to_owned()));
            assert!(removed, "a suspicion has a deadline");
        }
    }

    fn merge_remote_state(&mut self, now: Instant, source: &NodeAddr, members: Vec<PushPullMember>) {
        for remote in members {
            let PushPullMember { node, meta, incarnation, state } = remote;
            let message = match state {
                MemberState::Alive => Message::Alive { incarnation, node, meta },
                MemberState::Left => Message::Dead { incarnation, node: node.name.clone(), from: node.name },
                // memberlist prefers suspicion to death for remote claims: the member gets a
                // chance to refute.
                MemberState::Dead | MemberState::Suspect => {
                    // A claim about this node at this address is refuted at once (and may be
                    // about a previous life, whose epoch the refutation must outrank).
                    if node.name == self.me.name {
                        if node.addr == self.me.addr && self.leave == Leave::Staying {
                            self.refute(incarnation, Some(node.addr));
                        }
                        continue;
                    }
                    // An unknown member reported dead is not learned; nor is a claim about a name
                    // now held at another address (a replacement node must not inherit it).
                    if self.members.get(&node.name).map(|m| m.addr) != Some(node.addr) {
                        continue;
                    }
                    Message::Suspect { incarnation, node: node.name, from: source.name.clone() }
                }
            };
            match message {
                Message::Alive { .. } => self.handle_alive(now, message),
                Message::Dead { .. } => self.handle_dead(now, message),
                _ => self.handle_suspect(now, message),
            }
        }
    }

    /// serf's merge of a push/pull's user state: witness both clocks, so that events and
    /// queries fired here are ordered after everything the sender has seen, then take the recent
    /// events gossip may have missed. After a join, events older than the join are not delivered
    /// (Consul joins without `-replay`).
    fn merge_serf_state(&mut self, serf: SerfState, joined: bool) {
        self.event_clock = self.event_clock.max(serf.event_clock);
        self.query_clock = self.query_clock.max(serf.query_clock);
        if joined {
            self.event_min_time = self.event_min_time.max(serf.event_clock);
        }
        for event in serf.events {
            self.handle_user_event(event.ltime, event.name, event.payload);
        }
    }

    /// This node's clocks and the user events it still remembers, newest first, within
    /// [`PUSH_PULL_EVENT_BYTES_MAX`].
    fn serf_state(&self) -> SerfState {
        let mut remembered: Vec<_> = self
            .events_seen
            .iter()
            .flatten()
            .filter(|(ltime, _)| ltime.saturating_add(USER_EVENT_BUFFER) >= self.event_clock)
            .collect();
        remembered.sort_unstable_by_key(|(ltime, _)| core::cmp::Reverse(*ltime));
        let mut events = Vec::new();
        let mut bytes = 0;
        'fill: for (ltime, seen) in remembered {
            for (name, payload) in seen {
                bytes += push_pull_event_bytes(name, payload);
                if bytes > PUSH_PULL_EVENT_BYTES_MAX {
                    break 'fill;
                }
                events.push(PushPullEvent { ltime: *ltime, name: name.clone(), payload: payload.clone() });
            }
        }
        SerfState { event_clock: self.event_clock, query_clock: self.query_clock, events }
    }

    fn reap(&mut self, now: Instant) {
        let expired: Vec<String> = self
            .members
            .iter()
            .filter(|(_, m)| {
                let age = now.saturating_duration_since(m.state_change);
                match m.state {
                    MemberState::Dead => age >= self.config.reconnect_timeout,
                    MemberState::Left => age >= self.config.tombstone_timeout,
                    _ => false,
                }
            })
            .map(|(name, _)| name.clone())
            .collect();
        for name in expired {
            self.erase(&name);
        }
    }

    /// Removes a dead or left member from the list (reaped, or pruned), with a `Reap` event.
    fn erase(&mut self, name: &str) {
        let member = self.members.remove(name).expect("the caller found it");
        assert!(!is_live(member.state), "only dead and left members are erased");
        let at = self.probe_order.iter().position(|n| n == name).expect("every member is in the probe order");
        self.probe_order.remove(at);
        if at < self.probe_index {
            self.probe_index -= 1;
        }
        if self.probe.as_ref().is_some_and(|p| p.target == name) {
            self.probe = None;
        }
        self.cancel_suspicion(name);
        let node = NodeAddr { name: name.to_owned(), addr: member.addr };
        let kind = MemberEventKind::Reap;
        self.events.push_back(MemberEvent { kind, node, incarnation: member.incarnation });
    }

    /// serf's reconnect: a push/pull with a random dead member, attempted with probability
    /// `dead / live` so that a large healthy cluster does not hammer a few dead nodes.
    fn reconnect(&mut self) {
        let dead = self.members.values().filter(|m| m.state == MemberState::Dead).count();
        if dead == 0 {
            return;
        }
        let live = self.live_members();
        if self.rng.below(live as u64) >= dead as u64 {
            return;
        }
        if let Some(name) = self.random_members(1, |m| m.state == MemberState::Dead).pop() {
            let addr = self.members[&name].addr;
            self.send_push_pull(addr, false, false);
        }
    }

    fn check_leave_complete(&mut self, now: Instant) {
        let Leave::Leaving { deadline } = self.leave else { return };
        let nobody_to_tell = self.live_members() <= 1;
        if nobody_to_tell || !self.broadcasts.contains(&self.me.name) || now >= deadline {
            self.leave = Leave::Left;
            self.probe = None;
        }
    }

    // --- sending -------------------------------------------------------------------------

    /// Gossips queued broadcasts to `gossip_nodes` random members: live ones, and those dead for
    /// less than `gossip_to_the_dead_time`.
    fn gossip(&mut self, now: Instant) {
        // The common case in a quiet cluster: nothing to say, so no targets to pick.
        if self.broadcasts.is_empty() {
            return;
        }
        let to_the_dead = self.config.gossip_to_the_dead_time;
        let targets = self.random_members(usize::from(self.config.gossip_nodes), |m| match m.state {
            MemberState::Alive | MemberState::Suspect => true,
            MemberState::Dead => now.saturating_duration_since(m.state_change) < to_the_dead,
            MemberState::Left => false,
        });
        let limit = retransmit_limit(self.config.retransmit_mult, self.live_members());
        for target in targets {
            if self.broadcasts.is_empty() {
                break;
            }
            let mut datagram = DatagramBuilder::new(self.datagram_budget);
            if self.broadcasts.fill(&mut datagram, limit) == 0 {
                break;
            }
            let addr = self.members[&target].addr;
            self.transmits.push_back(Transmit {
                dst: addr,
                channel: Channel::Datagram,
                payload: datagram.finish(),
            });
            self.stats.gossip_sent += 1;
        }
    }

    fn send(&mut self, dst: SocketAddr, channel: Channel, message: Message) {
        self.send_with(dst, channel, message, &[]);
    }

    /// Sends `message` (and `extra` messages) to `dst`; datagrams also carry as much queued
    /// gossip as fits.
    fn send_with(&mut self, dst: SocketAddr, channel: Channel, message: Message, extra: &[Message]) {
        let payload = match channel {
            Channel::Stream => message.encode_frame(),
            Channel::Datagram => {
                let mut datagram = DatagramBuilder::new(self.datagram_budget);
                let pushed = datagram.push_entry(&message.encode_entry());
                assert!(pushed, "a single message fits a datagram");
                for message in extra {
                    datagram.push_entry(&message.encode_entry());
                }
                if !self.broadcasts.is_empty() {
                    let limit = retransmit_limit(self.config.retransmit_mult, self.live_members());
                    self.broadcasts.fill(&mut datagram, limit);
                }
                datagram.finish()
            }
        };
        self.transmits.push_back(Transmit { dst, channel, payload });
    }

    fn send_push_pull(&mut self, dst: SocketAddr, join: bool, reply: bool) {
        let my_state = if self.leave == Leave::Staying { MemberState::Alive } else { MemberState::Left };
        let me = PushPullMember {
            node: self.me.clone(),
            meta: self.meta.clone(),
            incarnation: self.incarnation,
            state: my_state,
        };
        // The frame must stay within its limit however many (and however large) members are
        // known: this node first, then live members, then dead and left ones, until it is full.
        let serf = self.serf_state();
        let serf_bytes: usize = serf.events.iter().map(|e| push_pull_event_bytes(&e.name, &e.payload)).sum();
        let mut budget =
            STREAM_FRAME_BYTES_MAX - PUSH_PULL_HEADER_BYTES_MAX - serf_bytes - push_pull_member_bytes(&me);
        let mut members = vec![me];
        let live_first = self
            .members
            .iter()
            .filter(|(_, m)| matches!(m.state, MemberState::Alive | MemberState::Suspect))
            .chain(
                self.members.iter().filter(|(_, m)| matches!(m.state, MemberState::Dead | MemberState::Left)),
            );
        for (name, m) in live_first {
            let member = PushPullMember {
                node: NodeAddr { name: name.clone(), addr: m.addr },
                meta: m.meta.clone(),
                incarnation: m.incarnation,
                state: m.state,
            };
            let size = push_pull_member_bytes(&member);
            if size > budget {
                self.stats.push_pull_truncated += 1;
                break;
            }
            budget -= size;
            members.push(member);
        }
        let message = Message::PushPull { join, reply, source: self.me.clone(), members, serf };
        self.send(dst, Channel::Stream, message);
        if !reply {
            self.stats.push_pulls_sent += 1;
        }
    }

    // --- helpers -------------------------------------------------------------------------

    fn is_me(&self, node: &NodeAddr) -> bool {
        node.name == self.me.name || node.addr == self.me.addr
    }

    fn next_seq(&mut self) -> u32 {
        let seq = self.seq_next;
        self.seq_next = self.seq_next.wrapping_add(1);
        seq
    }

    /// Members that are alive or suspect, this node included: the cluster size estimate that
    /// scales timeouts and retransmits.
    fn live_members(&self) -> usize {
        1 + self.live_others
    }

    /// Up to `count` distinct members passing `filter`, chosen at random (memberlist's
    /// `kRandomNodes`: at most 3 × n draws, so it stays cheap in large clusters).
    fn random_members(&mut self, count: usize, filter: impl Fn(&Member) -> bool) -> Vec<String> {
        let n = self.probe_order.len();
        let mut chosen: Vec<String> = Vec::with_capacity(count);
        for _ in 0..3 * n {
            if chosen.len() >= count {
                break;
            }
            let name = &self.probe_order[self.rng.below(n as u64) as usize];
            if chosen.contains(name) || !filter(&self.members[name]) {
                continue;
            }
            chosen.push(name.clone());
        }
        chosen
    }

    /// Checks the tables against each other.
    #[cfg(any(test, feature = "invariants"))]
    ///
    /// The checks that walk whole tables cost O(n log n): they run after every step while the
    /// table is small, and after every [`FULL_CHECK_EVERY`]th step beyond that, so that a
    /// simulated 1,000-node cluster stays tractable. The O(1) checks always run.
    pub(crate) fn check_invariants(&self) {
        assert!(!self.members.contains_key(&self.me.name), "a node never lists itself");
        assert!(self.members.len() <= MEMBERS_MAX);
        assert_eq!(self.probe_order.len(), self.members.len(), "probe order lists every member once");
        assert!(self.probe_index <= self.probe_order.len());
        assert_eq!(self.suspicions.len(), self.suspicion_deadlines.len(), "one deadline per suspicion");
        assert_eq!(self.relays.len(), self.relay_deadlines.len());
        assert!(self.awareness.score() < self.config.awareness_max_multiplier);
        let checks = self.invariant_checks.get() + 1;
        self.invariant_checks.set(checks);
        if self.members.len() > FULL_CHECK_MEMBERS_MAX && !checks.is_multiple_of(FULL_CHECK_EVERY) {
            return;
        }
        let listed: BTreeSet<&String> = self.probe_order.iter().collect();
        assert_eq!(listed.len(), self.members.len());
        let live = self.members.values().filter(|m| is_live(m.state)).count();
        assert_eq!(self.live_others, live, "the live count follows every state change");
        assert!(listed.iter().all(|name| self.members.contains_key(*name)));
        assert!(self.probe_index <= self.probe_order.len());
        assert_eq!(self.suspicions.len(), self.suspicion_deadlines.len(), "one deadline per suspicion");
        for (name, member) in &self.members {
            let suspected = member.state == MemberState::Suspect;
            assert_eq!(suspected, self.suspicions.contains_key(name), "suspects and timers match");
        }
        for (deadline, name) in &self.suspicion_deadlines {
            let suspicion = &self.suspicions[name];
            assert_eq!(suspicion.deadline(), *deadline);
            let member = &self.members[name];
            assert_eq!(member.state, MemberState::Suspect, "only suspects have suspicion timers");
            assert_eq!(member.incarnation, suspicion.incarnation);
        }
        assert_eq!(self.relays.len(), self.relay_deadlines.len());
        assert!(self.relays.len() <= RELAYS_MAX);
        for &(deadline, seq) in &self.relay_deadlines {
            assert_eq!(self.relays[&seq].deadline, deadline);
        }
        if let Some(probe) = &self.probe {
            assert!(self.members.contains_key(&probe.target), "probes target members");
            assert!(probe.nacks_expected <= u32::from(self.config.indirect_checks));
        }
        assert!(self.awareness.score() < self.config.awareness_max_multiplier);
        assert_eq!(
            self.joins_pending.is_empty(),
            self.join_retry_next.is_none(),
            "retries only while joins are pending"
        );
        self.broadcasts.check_invariants();
        let events_max = (USER_EVENT_BUFFER + QUERY_BUFFER) as usize * USER_EVENTS_PER_LTIME_MAX;
        assert!(self.broadcasts.len() <= self.members.len() + 1 + events_max, "one broadcast per subject");
        assert_eq!(self.events_seen.len(), USER_EVENT_BUFFER as usize);
        assert_eq!(self.queries_pending.len(), self.query_deadlines.len(), "one deadline per pending query");
        for &(deadline, id) in &self.query_deadlines {
            assert_eq!(self.queries_pending[&id].deadline, deadline);
        }
    }
}

/// The push/pull interval for `nodes` members: memberlist's `pushPullScale`, which stretches it
/// above 32 members so the bandwidth of full-state exchanges stays flat.
fn push_pull_scale(interval: Duration, nodes: usize) -> Duration {
    if nodes <= PUSH_PULL_SCALE_THRESHOLD {
        return interval;
    }
    // ⌈log2 n⌉ − log2 32 + 1, in integers so that every platform computes the same schedule.
    let log2_ceil = usize::BITS - (nodes - 1).leading_zeros();
    interval * (log2_ceil - PUSH_PULL_SCALE_THRESHOLD.trailing_zeros() + 1)
}

/// The encoded size of one push/pull member entry (an IPv6 address at most).
fn push_pull_member_bytes(member: &PushPullMember) -> usize {
    (1 + member.node.name.len()) + (1 + 16 + 2) + (2 + member.meta.len()) + 8 + 1
}

fn push_pull_event_bytes(name: &str, payload: &[u8]) -> usize {
    8 + (1 + name.len()) + (2 + payload.len())
}

/// A push/pull frame's bytes besides its members and events: version, kind, flags, source,
/// member count, both clocks, event count.
const PUSH_PULL_HEADER_BYTES_MAX: usize = 1 + 1 + 1 + (1 + NODE_NAME_BYTES_MAX + 19) + 4 + 8 + 8 + 4;

/// How many recent query Lamport times are remembered to drop duplicates.
const QUERY_BUFFER: u64 = 512;

/// The most name conflicts one node reports in its life (each a distinct name and address).
const CONFLICTS_REPORTED_MAX: usize = 1024;

/// Scales the query timeout (serf's `QueryTimeoutMult`).
const QUERY_TIMEOUT_MULT: u32 = 16;

/// Up to this many members, `check_invariants` walks every table after every step.
#[cfg(any(test, feature = "invariants"))]
const FULL_CHECK_MEMBERS_MAX: usize = 64;

/// Beyond [`FULL_CHECK_MEMBERS_MAX`] members, the tables are walked every this many steps.
#[cfg(any(test, feature = "invariants"))]
const FULL_CHECK_EVERY: u64 = 1024;

/// Above this many members the push/pull interval grows (memberlist's `pushPullScaleThreshold`).
const PUSH_PULL_SCALE_THRESHOLD: usize = 32;

/// How often dead and left members are checked for reaping (serf's `ReapInterval`).
const REAP_INTERVAL: Duration = Duration::from_secs(15);

/// The floor on every protocol timing: faster only floods the network.
const TIMING_MIN: Duration = Duration::from_millis(10);

/// The ceiling on multipliers and fan-outs.
const MULTIPLIER_MAX: u32 = 64;

#[cfg(test)]
mod tests;

fn is_live(state: MemberState) -> bool {
    matches!(state, MemberState::Alive | MemberState::Suspect)
}
