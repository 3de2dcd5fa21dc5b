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
//!
//! The code is split by concern. This file holds the public types, the [`Swim`] struct with its
//! entry points (`handle_*`, `poll_*`, `trigger_*`) and `check_invariants`. The failure
//! detector, after memberlist: `probe.rs` (probing, indirect pings, acks), `state.rs` (alive,
//! suspect and dead claims, refutation, merging push/pulls, reaping), `gossip.rs` (gossip,
//! piggybacking, push/pull, reconnect), with `suspicion.rs`, `awareness.rs` and `broadcast.rs`
//! beneath them. serf's layer above it: `events.rs` (user events and queries, in their own
//! struct). `timer.rs` holds the fixed timers and says which deadlines live elsewhere.

mod awareness;
mod broadcast;
mod events;
mod gossip;
mod probe;
mod state;
mod suspicion;
mod timer;

use core::net::SocketAddr;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use bytes::Bytes;

use self::awareness::Awareness;
use self::broadcast::BroadcastQueue;
use self::events::Serf;
#[cfg(any(test, feature = "invariants"))]
use self::events::EVENT_BROADCASTS_MAX;
use self::gossip::push_pull_scale;
use self::probe::{Probe, Relay};
use self::suspicion::Suspicion;
use self::timer::{Timer, TimerTable};
use crate::gossip::{Channel, Transmit};
use crate::limits::{
    DATAGRAM_BYTES_TARGET, MEMBERS_MAX, META_BYTES_MAX, NODE_NAME_BYTES_MAX, RELAYS_MAX, USER_EVENT_BYTES_MAX,
};
use crate::wire::{MemberState, Message, NodeAddr};
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
    /// The fixed timers: probe rounds, gossip, push/pull, reconnect, join retries and reaping.
    /// Deadlines there can be many of (suspicions, relays, queries) are keyed sets instead; see
    /// [`timer`].
    timers: TimerTable,
    /// Seeds joined through that have not answered yet; retried until one push/pull reply
    /// arrives from anyone (Consul's `retry_join`). [`Timer::JoinRetry`] is armed while any is.
    joins_pending: BTreeSet<SocketAddr>,
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
    /// serf's user events and queries, above the failure detector.
    serf: Serf,
    stats: Stats,
}

#[derive(Debug, Clone)]
struct Member {
    addr: SocketAddr,
    meta: Bytes,
    incarnation: u64,
    state: MemberState,
    state_change: Instant,
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
        let timers = periodic_timers(&config, &mut rng, now);
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
            timers,
            joins_pending: BTreeSet::new(),
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
            serf: Serf::new(),
            stats: Stats::default(),
            config,
        }
    }

    pub(crate) fn poll_query_request(&mut self) -> Option<QueryRequest> {
        self.serf.poll_query_request()
    }

    pub(crate) fn poll_query_result(&mut self) -> Option<QueryResult> {
        self.serf.poll_query_result()
    }

    /// Joins through `seed`: a push/pull of full state with whatever node answers there, tried
    /// again every `join_retry_interval` until some push/pull is answered.
    pub(crate) fn trigger_join(&mut self, now: Instant, seed: SocketAddr) {
        if self.leave != Leave::Staying {
            return;
        }
        self.joins_pending.insert(seed);
        if self.timers.get(Timer::JoinRetry).is_none() {
            self.timers.set(Timer::JoinRetry, now + self.config.join_retry_interval);
        }
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
                    self.timers.stop(Timer::JoinRetry);
                }
                self.merge_remote_state(now, &source, members);
                self.merge_serf_state(serf, joined);
                if !reply {
                    self.send_push_pull(source.addr, false, true);
                }
            }
        }
    }

    /// Runs whatever is due at `now`, in a fixed order so that a simulation seed means one run:
    /// suspicions that time out (earliest first, ties by name), then queries, then relayed
    /// pings; then a leave completes if it can; then the direct ping's deadline; then the fixed
    /// timers in [`Timer::VALUES`] order, each at most once.
    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        if self.leave == Leave::Left {
            return;
        }
        self.expire_suspicions(now);
        self.serf.expire_queries(now);
        self.expire_relays(now);
        self.check_leave_complete(now);
        if self.leave == Leave::Left {
            return;
        }
        if self.probe.as_ref().and_then(|p| p.direct_deadline).is_some_and(|d| d <= now) {
            self.handle_timeout_direct_probe();
        }
        for timer in Timer::VALUES {
            if self.timers.expire(timer, now) {
                self.handle_timer(now, timer);
            }
        }
    }

    /// Runs `timer`, which was due at `now`, re-arming it if it is periodic. The probe round
    /// re-arms itself: its interval depends on the health score after the previous probe ends.
    fn handle_timer(&mut self, now: Instant, timer: Timer) {
        match timer {
            Timer::Probe => self.handle_timeout_probe_round(now),
            Timer::Gossip => {
                self.timers.set(Timer::Gossip, now + self.config.gossip_interval);
                self.gossip(now);
            }
            Timer::PushPull => {
                let interval = push_pull_scale(self.config.push_pull_interval, self.live_members());
                self.timers.set(Timer::PushPull, now + interval);
                self.push_pull_random();
            }
            Timer::Reconnect => {
                self.timers.set(Timer::Reconnect, now + self.config.reconnect_interval);
                self.reconnect();
            }
            Timer::JoinRetry => {
                self.timers.set(Timer::JoinRetry, now + self.config.join_retry_interval);
                self.retry_joins();
            }
            Timer::Reap => {
                self.timers.set(Timer::Reap, now + REAP_INTERVAL);
                self.reap(now);
            }
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
        self.serf.poll_user_event()
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
        let query = self.serf.next_deadline();
        let direct = self.probe.as_ref().and_then(|p| p.direct_deadline);
        // The deadlines kept outside the timer table (see the `timer` module for why).
        let outside_table = [suspicion, relay, query, direct, leave];
        // A node that knows no one has no one to probe or gossip to: while it is alone those
        // two timers do not wake it (an idle `-dev` agent probes ten times a second
        // otherwise). They resume on their grid when the first member arrives
        // (`Swim::resume_lonely_timers`).
        let table = if self.members.is_empty() {
            self.timers.next_timeout_skipping(&[Timer::Probe, Timer::Gossip])
        } else {
            self.timers.next_timeout()
        };
        table.into_iter().chain(outside_table.into_iter().flatten()).min()
    }

    /// Moves the probe and gossip deadlines that passed while this node was alone (and so did
    /// not wake it) to their next tick on the same grid: the first member is probed and
    /// gossiped to within an interval, as if the timers had ticked all along.
    fn resume_lonely_timers(&mut self, now: Instant) {
        let lonely =
            [(Timer::Probe, self.config.probe_interval), (Timer::Gossip, self.config.gossip_interval)];
        for (timer, interval) in lonely {
            let Some(due) = self.timers.get(timer).filter(|&due| due < now) else { continue };
            let interval_ns = u64::try_from(interval.as_nanos()).unwrap_or(u64::MAX).max(1);
            let behind_ns = now.as_nanos() - due.as_nanos();
            let ticks = behind_ns.div_ceil(interval_ns);
            self.timers.set(
                timer,
                Instant::from_nanos(due.as_nanos().saturating_add(ticks.saturating_mul(interval_ns))),
            );
        }
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

    fn check_leave_complete(&mut self, now: Instant) {
        let Leave::Leaving { deadline } = self.leave else { return };
        let nobody_to_tell = self.live_members() <= 1;
        if nobody_to_tell || !self.broadcasts.contains(&self.me.name) || now >= deadline {
            self.leave = Leave::Left;
            self.probe = None;
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
        for timer in [Timer::Probe, Timer::Gossip, Timer::PushPull, Timer::Reconnect, Timer::Reap] {
            assert!(self.timers.get(timer).is_some(), "{timer:?} is periodic, always armed");
        }
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
            self.timers.get(Timer::JoinRetry).is_none(),
            "retries only while joins are pending"
        );
        self.broadcasts.check_invariants();
        let broadcasts_max = self.members.len() + 1 + EVENT_BROADCASTS_MAX;
        assert!(self.broadcasts.len() <= broadcasts_max, "one broadcast per subject");
        self.serf.check_invariants();
    }
}

/// The fixed timers of a node started at `now`: the periodic ones armed, their first rounds
/// staggered at random within one interval so that nodes started together do not act in
/// lockstep. Reaping is not staggered (it never was, and so draws nothing from `rng`); no join
/// waits yet.
fn periodic_timers(config: &Config, rng: &mut Rng, now: Instant) -> TimerTable {
    let mut timers = TimerTable::default();
    // The draws are made in this order, as before the timer table, so a seed keeps its meaning.
    let staggered = [
        (Timer::Probe, config.probe_interval),
        (Timer::Gossip, config.gossip_interval),
        (Timer::PushPull, config.push_pull_interval),
        (Timer::Reconnect, config.reconnect_interval),
    ];
    for (timer, interval) in staggered {
        timers.set(timer, now + rng.duration_between(Duration::ZERO, interval));
    }
    timers.set(Timer::Reap, now + REAP_INTERVAL);
    timers
}

/// The most name conflicts one node reports in its life (each a distinct name and address).
const CONFLICTS_REPORTED_MAX: usize = 1024;

/// Up to this many members, `check_invariants` walks every table after every step.
#[cfg(any(test, feature = "invariants"))]
const FULL_CHECK_MEMBERS_MAX: usize = 64;

/// Beyond [`FULL_CHECK_MEMBERS_MAX`] members, the tables are walked every this many steps.
#[cfg(any(test, feature = "invariants"))]
const FULL_CHECK_EVERY: u64 = 1024;

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
