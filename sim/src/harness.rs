//! The in-process simulation harness: a cluster of nodes over a virtual network, disk and clock.
//!
//! Everything is driven from one seed. Time jumps straight to the next thing that happens (a
//! delivery, an fsync completing, a node's deadline), so a minute of cluster time costs
//! milliseconds. Nodes are driven through [`muster::drive::drain`], the step the agent uses.
//!
//! The network delivers each datagram after a random latency, so datagrams reorder; it may lose
//! or duplicate them. Streams are reliable (no loss, no duplication) but share the latency
//! model. Partitions drop everything on a blocked directed link at send time. A crash discards
//! the node and every write it had not yet synced; a restart boots a new [`Gossip`] from what was
//! durable. A *slow* node takes 1 to 3 s extra to process each message it receives, like a
//! process starved of CPU: the situation Lifeguard is designed for.
//!
//! An oracle checks, at every send, the property persistence ordering exists for: a node sends
//! nothing until a boot epoch is durable, and no incarnation of itself from an epoch not yet
//! durable, so no two lives of a node speak with the same incarnations. Each node's own `check_invariants` runs after every input (the `invariants`
//! feature of `muster-core`).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;
use muster::drive::{drain, Outbox};
use muster_core::gossip::{Channel, Command, Config, Event, PersistId, StableState, Transmit};
use muster_core::swim::{self, MemberView, State};
use muster_core::wire::{self, Message};
use muster_core::{Gossip, Instant, Rng};

use crate::trace::Trace;

/// How the virtual network and disks behave.
#[derive(Debug, Clone, PartialEq)]
pub struct NetConfig {
    /// The shortest one-way delay.
    pub latency_min: Duration,
    /// The longest one-way delay; datagrams sent in order may arrive out of order.
    pub latency_max: Duration,
    /// Probability that a datagram is lost.
    pub loss: f64,
    /// Probability that a datagram is delivered twice.
    pub duplicate: f64,
    /// The shortest time a write takes to become durable.
    pub fsync_min: Duration,
    /// The longest time a write takes to become durable.
    pub fsync_max: Duration,
}

impl NetConfig {
    /// A quiet LAN: 0.2 to 2 ms latency, nothing lost, fast disks.
    pub fn lan() -> NetConfig {
        NetConfig {
            latency_min: Duration::from_micros(200),
            latency_max: Duration::from_millis(2),
            loss: 0.0,
            duplicate: 0.0,
            fsync_min: Duration::from_micros(500),
            fsync_max: Duration::from_millis(5),
        }
    }

    /// A hostile network drawn from `rng`: up to 100 ms latency (so heavy reordering), up to 20 %
    /// loss, up to 10 % duplication, fsyncs of up to 200 ms (so crashes often lose writes).
    pub fn hostile(rng: &mut Rng) -> NetConfig {
        let latency_max = rng.duration_between(Duration::from_millis(1), Duration::from_millis(100));
        NetConfig {
            latency_min: rng.duration_between(Duration::from_micros(50), latency_max),
            latency_max,
            loss: rng.below(21) as f64 / 100.0,
            duplicate: rng.below(11) as f64 / 100.0,
            fsync_min: Duration::from_micros(100),
            fsync_max: rng.duration_between(Duration::from_millis(1), Duration::from_millis(200)),
        }
    }
}

/// What the network and disks did, for assertions and reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NetStats {
    /// Messages handed to a live node.
    pub delivered: u64,
    /// Datagrams lost at random.
    pub lost: u64,
    /// Datagrams delivered a second time.
    pub duplicated: u64,
    /// Messages dropped by a partition.
    pub partitioned: u64,
    /// Messages that arrived at a crashed node, or were sent to no node at all.
    pub undeliverable: u64,
    /// Writes that had not become durable when their node crashed.
    pub writes_lost: u64,
    /// Payload bytes sent, all nodes together.
    pub bytes_sent: u64,
}

/// Returned by [`Cluster::run_until`] when the condition did not hold in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stuck {
    /// How long the cluster ran.
    pub waited: Duration,
}

/// A simulated cluster.
#[derive(Debug)]
pub struct Cluster {
    now: Instant,
    rng: Rng,
    net: NetConfig,
    swim: swim::Config,
    members: Vec<Member>,
    by_addr: BTreeMap<SocketAddr, usize>,
    /// Messages in flight, by arrival time and then send order, so that simultaneous arrivals
    /// are handled in the same order on every run.
    in_flight: BTreeMap<(Instant, u64), InFlight>,
    sends: u64,
    /// Each live node's next deadline, by time then node.
    timers: BTreeSet<(Instant, usize)>,
    /// Each node's oldest pending write, by completion time then node.
    fsyncs: BTreeSet<(Instant, usize)>,
    /// Directed links that drop everything: (from, to).
    blocked: BTreeSet<(usize, usize)>,
    /// Which events [`Cluster::events`] keeps; see [`Cluster::keep_events`].
    keep_event: fn(&Event) -> bool,
    stats: NetStats,
    trace: Trace,
}

#[derive(Debug)]
struct Member {
    name: String,
    addr: SocketAddr,
    /// `None` while crashed.
    node: Option<Gossip>,
    /// The deadline registered in `timers`.
    timer: Option<Instant>,
    disk: Disk,
    /// Peers this member joined through, joined again after each restart.
    joins: Vec<SocketAddr>,
    /// Starts with 1; each restart adds one.
    boot: u32,
    /// While set, each message it receives or sends waits a random extra delay in `slow_delay`.
    slow_until: Option<Instant>,
    slow_delay: (Duration, Duration),
    events: Vec<(Instant, Event)>,
}

#[derive(Debug, Default)]
struct Disk {
    durable: Option<StableState>,
    /// Writes in progress, completing in order at the given instants.
    pending: VecDeque<(Instant, PersistId, StableState)>,
}

#[derive(Debug)]
struct InFlight {
    from: usize,
    to: usize,
    channel: Channel,
    payload: Bytes,
    /// Already held back once by a slow receiver.
    delayed: bool,
}

impl Cluster {
    /// `size` nodes named n0, n1, ... at 10.0.0.1:8301, 10.0.0.2:8301, ..., with LAN gossip
    /// settings, all booted at time zero.
    pub fn new(seed: u64, size: usize, net: NetConfig) -> Cluster {
        Cluster::with_swim_config(seed, size, net, swim::Config::lan())
    }

    /// Like [`Cluster::new`], with the nodes' gossip settings given.
    pub fn with_swim_config(seed: u64, size: usize, net: NetConfig, swim: swim::Config) -> Cluster {
        assert!((1..=1 << 20).contains(&size));
        let mut cluster = Cluster {
            now: Instant::ZERO,
            rng: Rng::from_seed(seed),
            net,
            swim,
            members: Vec::with_capacity(size),
            by_addr: BTreeMap::new(),
            in_flight: BTreeMap::new(),
            sends: 0,
            timers: BTreeSet::new(),
            fsyncs: BTreeSet::new(),
            blocked: BTreeSet::new(),
            keep_event: |_| true,
            stats: NetStats::default(),
            trace: Trace::default(),
        };
        for index in 0..size {
            let ip = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 0, 0, 0)) + index as u32 + 1);
            let addr = SocketAddr::from((ip, 8301));
            cluster.by_addr.insert(addr, index);
            cluster.members.push(Member {
                name: format!("n{index}"),
                addr,
                node: None,
                timer: None,
                disk: Disk::default(),
                joins: Vec::new(),
                boot: 0,
                slow_until: None,
                slow_delay: (Duration::ZERO, Duration::ZERO),
                events: Vec::new(),
            });
            cluster.boot(index);
        }
        cluster
    }

    /// The gossip address of node `index`.
    pub fn addr(&self, index: usize) -> SocketAddr {
        self.members[index].addr
    }

    /// The name of node `index`.
    pub fn name(&self, index: usize) -> &str {
        &self.members[index].name
    }

    /// The current virtual time.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// Node `from` joins through node `to`, now and after every restart.
    pub fn join(&mut self, from: usize, to: usize) {
        let peer = self.addr(to);
        self.members[from].joins.push(peer);
        if self.members[from].node.is_some() {
            self.command(from, Command::Join { peer });
        }
    }

    /// Every node joins through node `seed`.
    pub fn join_all_to(&mut self, seed: usize) {
        for index in 0..self.members.len() {
            if index != seed {
                self.join(index, seed);
            }
        }
    }

    /// Sends `command` to node `index`, which must be up; panics if the node refuses it.
    pub fn command(&mut self, index: usize, command: Command) {
        self.try_command(index, command).expect("harness commands are valid");
    }

    /// Sends `command` to node `index`, which must be up: the node's answer.
    pub fn try_command(
        &mut self,
        index: usize,
        command: Command,
    ) -> Result<(), muster_core::gossip::CommandError> {
        let now = self.now;
        let node = self.members[index].node.as_mut().expect("commands go to live nodes");
        let result = node.handle_command(now, command);
        self.after_input(index);
        result
    }

    /// Runs the cluster for `duration` of virtual time.
    pub fn run_for(&mut self, duration: Duration) {
        let end = self.now + duration;
        while let Some(next) = self.next_instant() {
            if next > end {
                break;
            }
            self.step(next);
        }
        self.now = end;
    }

    /// Runs until `done` holds or `limit` has passed. `done` is checked after a step at most once
    /// per [`CHECK_INTERVAL`] of virtual time (predicates over a whole cluster are costly), so the
    /// duration returned is exact to within that.
    pub fn run_until(
        &mut self,
        limit: Duration,
        mut done: impl FnMut(&Cluster) -> bool,
    ) -> Result<Duration, Stuck> {
        let start = self.now;
        let end = self.now + limit;
        let mut checked = self.now;
        if done(self) {
            return Ok(Duration::ZERO);
        }
        loop {
            match self.next_instant() {
                Some(next) if next <= end => self.step(next),
                _ => {
                    self.now = end;
                    return if done(self) { Ok(limit) } else { Err(Stuck { waited: limit }) };
                }
            }
            if self.now >= checked + CHECK_INTERVAL {
                checked = self.now;
                if done(self) {
                    return Ok(self.now.saturating_duration_since(start));
                }
            }
        }
    }

    /// Crashes node `index`: its process state and unsynced writes are lost.
    pub fn crash(&mut self, index: usize) {
        let member = &mut self.members[index];
        assert!(member.node.take().is_some(), "node {index} is already down");
        if let Some(timer) = member.timer.take() {
            self.timers.remove(&(timer, index));
        }
        if let Some(&(at, _, _)) = member.disk.pending.front() {
            self.fsyncs.remove(&(at, index));
        }
        let lost = member.disk.pending.len() as u64;
        member.disk.pending.clear();
        self.stats.writes_lost += lost;
        self.trace.record(self.now.as_nanos(), index, &("crash", lost));
    }

    /// Erases crashed node `index`'s data dir: it will boot as if for the first time.
    pub fn wipe(&mut self, index: usize) {
        assert!(self.members[index].node.is_none(), "node {index} is up");
        self.members[index].disk.durable = None;
        self.trace.record(self.now.as_nanos(), index, &"wipe");
    }

    /// Restarts crashed node `index` from its durable state.
    pub fn restart(&mut self, index: usize) {
        assert!(self.members[index].node.is_none(), "node {index} is up");
        self.boot(index);
    }

    /// Whether node `index` is up.
    pub fn is_up(&self, index: usize) -> bool {
        self.members[index].node.is_some()
    }

    /// Makes node `index` slow until `duration` from now: each message it receives is processed
    /// late, and each message it sends leaves late, by a random delay between `delay_min` and
    /// `delay_max`.
    pub fn slow(&mut self, index: usize, duration: Duration, delay_min: Duration, delay_max: Duration) {
        assert!(delay_min <= delay_max);
        self.members[index].slow_until = Some(self.now + duration);
        self.members[index].slow_delay = (delay_min, delay_max);
        self.trace.record(self.now.as_nanos(), index, &("slow", duration, delay_min, delay_max));
    }

    /// Blocks every link between nodes of different groups, in both directions.
    pub fn partition(&mut self, groups: &[&[usize]]) {
        for (from, to) in crate::links_across(groups) {
            self.block(from, to);
        }
    }

    /// Splits `left` from `right` both ways, except through `via`, which reaches both sides
    /// (a bridge: the two sides can only hear of each other through it).
    pub fn bridge(&mut self, left: &[usize], via: usize, right: &[usize]) {
        assert!(!left.contains(&via) && !right.contains(&via), "the bridge belongs to neither side");
        self.partition(&[left, right]);
    }

    /// Cuts node `index` off from every other node, both ways.
    pub fn isolate(&mut self, index: usize) {
        for other in 0..self.members.len() {
            if other != index {
                self.block(index, other);
                self.block(other, index);
            }
        }
    }

    /// Drops everything `from` sends to `to` (one direction only).
    pub fn block(&mut self, from: usize, to: usize) {
        self.blocked.insert((from, to));
        self.trace.record(self.now.as_nanos(), from, &("block", to));
    }

    /// Removes every partition.
    pub fn heal(&mut self) {
        self.blocked.clear();
        self.trace.record(self.now.as_nanos(), 0, &"heal");
    }

    /// Node `observer`'s view of node `peer`, if it is up and knows it.
    pub fn view(&self, observer: usize, peer: usize) -> Option<MemberView> {
        self.members[observer].node.as_ref()?.member(&self.members[peer].name)
    }

    /// Node `observer`'s belief about node `peer`'s state.
    pub fn state(&self, observer: usize, peer: usize) -> Option<State> {
        self.view(observer, peer).map(|view| view.state)
    }

    /// Whether every live node sees every other live node alive, at its current incarnation,
    /// and every crashed node as suspect, dead or left (or not at all).
    pub fn converged(&self) -> bool {
        let live: Vec<usize> = (0..self.len()).filter(|&i| self.is_up(i)).collect();
        live.iter().all(|&observer| {
            (0..self.len()).filter(|&peer| peer != observer).all(|peer| match self.view(observer, peer) {
                Some(view) if self.is_up(peer) => {
                    view.state == State::Alive
                        && view.incarnation == self.node(peer).map_or(0, Gossip::incarnation)
                }
                Some(view) => view.state != State::Alive,
                None => !self.is_up(peer),
            })
        })
    }

    /// Node `index`, if up.
    pub fn node(&self, index: usize) -> Option<&Gossip> {
        self.members[index].node.as_ref()
    }

    /// From now on, [`Cluster::events`] keeps only the events `keep` accepts; the rest still go
    /// into the trace. A join storm of N nodes reports N × (N − 1) joins: at 5,000 nodes they
    /// alone would hold 4 GB, for a scenario that reads only the failures.
    pub fn keep_events(&mut self, keep: fn(&Event) -> bool) {
        self.keep_event = keep;
    }

    /// Every event node `index` reported, across all its lives (those [`Cluster::keep_events`]
    /// accepted).
    pub fn events(&self, index: usize) -> &[(Instant, Event)] {
        &self.members[index].events
    }

    /// What the network and disks did.
    pub fn stats(&self) -> NetStats {
        self.stats
    }

    /// The run's trace.
    pub fn trace(&self) -> &Trace {
        &self.trace
    }

    /// The number of nodes, up or down.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether the cluster has no nodes (never: it is built with at least one).
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    fn boot(&mut self, index: usize) {
        let rng_seed = self.rng.next_u64();
        let member = &mut self.members[index];
        member.boot += 1;
        let config = Config { swim: self.swim.clone(), ..Config::new(&member.name, member.addr, rng_seed) };
        let node = Gossip::new(config, member.disk.durable, self.now).expect("harness config is valid");
        self.trace.record(self.now.as_nanos(), index, &("boot", member.boot, node.boot_epoch()));
        member.node = Some(node);
        self.after_input(index);
        for peer in self.members[index].joins.clone() {
            self.command(index, Command::Join { peer });
        }
    }

    /// The earliest instant at which anything happens.
    fn next_instant(&self) -> Option<Instant> {
        let delivery = self.in_flight.keys().next().map(|&(at, _)| at);
        let timer = self.timers.first().map(|&(at, _)| at);
        let fsync = self.fsyncs.first().map(|&(at, _)| at);
        [delivery, timer, fsync].into_iter().flatten().min().map(|at| at.max(self.now))
    }

    /// Handles everything due at `at`: completed fsyncs, then deliveries, then timers, each in
    /// a fixed order.
    fn step(&mut self, at: Instant) {
        assert!(at >= self.now, "virtual time went backwards");
        self.now = at;
        while let Some(&(done, index)) = self.fsyncs.first() {
            if done > at {
                break;
            }
            self.fsyncs.pop_first();
            let member = &mut self.members[index];
            let (_, id, state) = member.disk.pending.pop_front().expect("an fsync entry has a pending write");
            member.disk.durable = Some(state);
            if let Some(&(next, _, _)) = member.disk.pending.front() {
                self.fsyncs.insert((next, index));
            }
            let node = member.node.as_mut().expect("a crash clears pending writes");
            node.on_persisted(at, id);
            self.trace.record(at.as_nanos(), index, &("durable", id.get()));
            self.after_input(index);
        }
        while let Some(entry) = self.in_flight.first_entry() {
            if entry.key().0 > at {
                break;
            }
            let message = entry.remove();
            self.deliver(message);
        }
        while let Some(&(deadline, index)) = self.timers.first() {
            if deadline > at {
                break;
            }
            self.timers.pop_first();
            self.members[index].timer = None;
            let node = self.members[index].node.as_mut().expect("crashed nodes have no timers");
            node.handle_timeout(at);
            self.after_input(index);
        }
    }

    fn deliver(&mut self, mut message: InFlight) {
        let now = self.now;
        let slow = self.members[message.to].slow_until.is_some_and(|until| until > now);
        if slow && !message.delayed {
            let (low, high) = self.members[message.to].slow_delay;
            let delay = self.rng.duration_between(low, high);
            message.delayed = true;
            self.sends += 1;
            self.in_flight.insert((now + delay, self.sends), message);
            return;
        }
        let from = self.addr(message.from);
        let Some(node) = self.members[message.to].node.as_mut() else {
            self.stats.undeliverable += 1;
            return;
        };
        match message.channel {
            Channel::Datagram => node.handle_datagram(now, from, &message.payload),
            Channel::Stream => node.handle_stream_frame(now, from, &message.payload),
        }
        self.stats.delivered += 1;
        self.after_input(message.to);
    }

    /// Drains node `index`, carries out its outputs, and re-registers its deadline.
    fn after_input(&mut self, index: usize) {
        let mut outputs = Outbox::default();
        let member = &mut self.members[index];
        let node = member.node.as_mut().expect("only live nodes take input");
        let deadline = drain(node, &mut outputs);
        if member.timer != deadline {
            if let Some(old) = member.timer.take() {
                self.timers.remove(&(old, index));
            }
            if let Some(new) = deadline {
                self.timers.insert((new, index));
            }
            member.timer = deadline;
        }
        for persist in outputs.persists {
            let latency = self.rng.duration_between(self.net.fsync_min, self.net.fsync_max);
            let pending = &mut self.members[index].disk.pending;
            // One disk, one queue: a write completes no earlier than the one before it.
            let done = pending.back().map_or(self.now, |&(at, _, _)| at).max(self.now + latency);
            if pending.is_empty() {
                self.fsyncs.insert((done, index));
            }
            pending.push_back((done, persist.id, persist.state));
        }
        for transmit in outputs.transmits {
            self.check_epochs_sent_are_durable(index, &transmit);
            self.route(index, transmit);
        }
        for event in outputs.events {
            self.trace.record(self.now.as_nanos(), index, &event);
            if (self.keep_event)(&event) {
                self.members[index].events.push((self.now, event));
            }
        }
    }

    /// The oracle: a node sends nothing before a boot epoch is durable, and never an incarnation
    /// of itself from an epoch its disk could still lose. Otherwise a crash could make two lives
    /// of the node speak with the same incarnations.
    fn check_epochs_sent_are_durable(&self, index: usize, transmit: &Transmit) {
        let durable = self.members[index].disk.durable.map(|s| s.boot_epoch);
        let name = &self.members[index].name;
        let messages = match transmit.channel {
            Channel::Datagram => wire::decode_datagram(&transmit.payload),
            Channel::Stream => Message::decode_frame(&transmit.payload).map(|m| vec![m]),
        }
        .expect("nodes send what they can decode");
        let own_incarnations = messages.iter().flat_map(|message| message.incarnations_of(name));
        let epoch_sent = own_incarnations.map(|i| (i >> 32) as u32).max().unwrap_or(1);
        assert!(
            durable >= Some(epoch_sent),
            "node {index} sent an incarnation of boot epoch {epoch_sent} before it was durable \
             (durable: {durable:?}) at {:?}: persistence ordering is broken",
            self.now
        );
    }

    fn route(&mut self, from: usize, transmit: Transmit) {
        self.trace.record(
            self.now.as_nanos(),
            from,
            &(transmit.dst, transmit.channel, transmit.payload.len()),
        );
        self.stats.bytes_sent += transmit.payload.len() as u64;
        let Some(&to) = self.by_addr.get(&transmit.dst) else {
            self.stats.undeliverable += 1;
            return;
        };
        if self.blocked.contains(&(from, to)) {
            self.stats.partitioned += 1;
            return;
        }
        let copies = match transmit.channel {
            Channel::Stream => 1,
            Channel::Datagram if self.rng.chance(self.net.loss) => {
                self.stats.lost += 1;
                0
            }
            Channel::Datagram if self.rng.chance(self.net.duplicate) => {
                self.stats.duplicated += 1;
                2
            }
            Channel::Datagram => 1,
        };
        let sender_slow = self.members[from].slow_until.is_some_and(|until| until > self.now);
        for _ in 0..copies {
            let mut latency = self.rng.duration_between(self.net.latency_min, self.net.latency_max);
            if sender_slow {
                let (low, high) = self.members[from].slow_delay;
                latency += self.rng.duration_between(low, high);
            }
            self.sends += 1;
            let message = InFlight {
                from,
                to,
                channel: transmit.channel,
                payload: transmit.payload.clone(),
                delayed: false,
            };
            self.in_flight.insert((self.now + latency, self.sends), message);
        }
    }
}

/// How often [`Cluster::run_until`] evaluates its condition, in virtual time.
pub const CHECK_INTERVAL: Duration = Duration::from_millis(10);
