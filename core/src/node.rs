//! [`Node`]: the one input/output surface of the core.

use core::net::SocketAddr;
use std::collections::VecDeque;

use bytes::Bytes;

use crate::limits::OUTPUTS_QUEUED_MAX;
use crate::ping::{self, Pinger};
use crate::time::Monotonic;
use crate::wire::Message;
use crate::{Instant, Rng};

/// One muster node's protocol state: everything it knows and everything it has decided to do,
/// with no I/O of its own.
///
/// # The drive contract
///
/// The methods come in four families:
///
/// - **getters** take `&self` and change nothing;
/// - **`handle_*`** feed an input: a datagram, a stream frame, the expiry of the deadline
///   returned by [`poll_timeout`](Node::poll_timeout), or a [`Command`] from the application;
/// - **`on_persisted`** reports that the driver made a [`Persist`] durable;
/// - **`poll_*`** drain outputs: [`Persist`]s to make durable, [`Transmit`]s to send,
///   [`Event`]s to report, and the next deadline.
///
/// After every `handle_*` or `on_persisted` call the driver drains `poll_persist`,
/// `poll_transmit` and `poll_event` until each returns `None`, then asks `poll_timeout` for the
/// instant at which to call `handle_timeout` next. Every input carries `now`, which must never
/// be earlier than the `now` of any previous input (asserted).
///
/// # Persistence before sending
///
/// A [`Persist`] must be made durable (written and fsynced) and then acknowledged with
/// [`on_persisted`](Node::on_persisted), in the order the persists were polled. The node does
/// not hand out a transmit produced after a persist until that persist is acknowledged, so a
/// driver cannot send a message that claims state a crash could still lose. Persists and
/// transmits may therefore be polled in any order; only the acknowledgement unlocks sends.
///
/// # Example
///
/// Two nodes wired back to back, with "disk" and "network" done by hand:
///
/// ```
/// use std::time::Duration;
/// use muster_core::{Channel, Config, Event, Instant, Node};
///
/// let a_addr = "10.0.0.1:8301".parse().unwrap();
/// let b_addr = "10.0.0.2:8301".parse().unwrap();
/// let mut now = Instant::ZERO;
/// let mut a = Node::new(Config::new(a_addr, 1), None, now).unwrap();
/// let mut b = Node::new(Config::new(b_addr, 2), None, now).unwrap();
/// a.handle_command(now, muster_core::Command::Join { peer: b_addr }).unwrap();
///
/// // Each node first persists its incarnation; nothing is sent before that is durable.
/// for node in [&mut a, &mut b] {
///     let persist = node.poll_persist().expect("the boot incarnation");
///     assert_eq!(persist.state.incarnation, 1);
///     node.on_persisted(now, persist.id);
/// }
///
/// // Run a's timer: it pings b, b acks, a learns b is reachable.
/// let mut reachable = false;
/// while !reachable {
///     now = a.poll_timeout().unwrap();
///     a.handle_timeout(now);
///     while let Some(ping) = a.poll_transmit() {
///         assert_eq!((ping.dst, ping.channel), (b_addr, Channel::Datagram));
///         b.handle_datagram(now, a_addr, &ping.payload);
///         while let Some(ack) = b.poll_transmit() {
///             a.handle_datagram(now, b_addr, &ack.payload);
///         }
///     }
///     while let Some(event) = a.poll_event() {
///         reachable |= event == Event::PeerReachable { peer: b_addr, incarnation: 1 };
///     }
/// }
/// assert!(now <= Instant::ZERO + Duration::from_secs(1));
/// ```
#[derive(Debug)]
pub struct Node {
    config: Config,
    clock: Monotonic,
    incarnation: u64,
    pinger: Pinger,
    persists: VecDeque<Persist>,
    /// Id of the newest persist handed out (0: none yet).
    persist_issued: u64,
    /// Id of the newest persist acknowledged durable; never above `persist_issued`.
    persist_durable: u64,
    /// Transmits waiting for a persist: each may leave once `persist_durable` reaches its barrier,
    /// the newest persist issued when it was produced. Barriers never decrease along the queue.
    held: VecDeque<(u64, Transmit)>,
    stats: Stats,
}

impl Node {
    /// A node starting at `now`, from the durable state of its previous life if there was one.
    ///
    /// Its first output is a [`Persist`] of its new incarnation (one above the restored one), and
    /// it sends nothing before that is acknowledged.
    pub fn new(
        config: Config,
        restored: Option<StableState>,
        now: Instant,
    ) -> Result<Node, ConfigError> {
        config.ping.validate()?;
        let incarnation = match restored {
            None => 1,
            Some(state) => state
                .incarnation
                .checked_add(1)
                .ok_or(ConfigError::IncarnationExhausted)?,
        };
        let mut rng = Rng::from_seed(config.rng_seed);
        let pinger = Pinger::new(
            config.ping.clone(),
            config.advertise,
            incarnation,
            rng.fork(),
            now,
        );
        let mut node = Node {
            config,
            clock: Monotonic::new(now),
            incarnation,
            pinger,
            persists: VecDeque::new(),
            persist_issued: 0,
            persist_durable: 0,
            held: VecDeque::new(),
            stats: Stats::default(),
        };
        node.issue_persist(StableState { incarnation });
        node.finish_step();
        Ok(node)
    }

    /// Feeds a datagram received from the transport address `from`.
    ///
    /// Undecodable datagrams are counted in [`Stats::decode_errors`] and dropped: input from the
    /// network never panics the node and never changes its state.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, payload: &[u8]) {
        self.clock.advance(now);
        self.handle_payload(Channel::Datagram, from, payload);
        self.finish_step();
    }

    /// Feeds one frame (length prefix removed) read from a stream whose remote end is `from`.
    pub fn handle_stream_frame(&mut self, now: Instant, from: SocketAddr, frame: &[u8]) {
        self.clock.advance(now);
        self.handle_payload(Channel::Stream, from, frame);
        self.finish_step();
    }

    /// Runs every timer due at or before `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.clock.advance(now);
        self.pinger.handle_timeout(now);
        self.finish_step();
    }

    /// Applies a command from the application. A command that fails changes nothing.
    pub fn handle_command(&mut self, now: Instant, command: Command) -> Result<(), CommandError> {
        self.clock.advance(now);
        let result = match command {
            Command::Join { peer } => self.pinger.add_peer(peer),
            Command::Forget { peer } => self.pinger.remove_peer(peer),
        };
        self.finish_step();
        result
    }

    /// Reports that the persist `id`, and so every persist before it, is durable.
    ///
    /// Persists must be acknowledged in the order they were polled, each exactly once.
    pub fn on_persisted(&mut self, now: Instant, id: PersistId) {
        self.clock.advance(now);
        assert_eq!(
            id.0,
            self.persist_durable + 1,
            "persists are acknowledged in order, once"
        );
        assert!(
            id.0 <= self.persist_issued,
            "persist {id:?} was never issued"
        );
        self.persist_durable = id.0;
        self.finish_step();
    }

    /// The next state write to make durable, then acknowledge with
    /// [`on_persisted`](Node::on_persisted).
    pub fn poll_persist(&mut self) -> Option<Persist> {
        self.persists.pop_front()
    }

    /// The next message to send. Transmits that wait for an unacknowledged persist stay queued.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        match self.held.front() {
            Some(&(barrier, _)) if barrier <= self.persist_durable => {
                self.held.pop_front().map(|(_, transmit)| transmit)
            }
            _ => None,
        }
    }

    /// The next event for the application.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.pinger.poll_event()
    }

    /// The instant at which [`handle_timeout`](Node::handle_timeout) must next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        Some(self.pinger.poll_timeout())
    }

    /// This node's advertise address.
    pub fn advertise(&self) -> SocketAddr {
        self.config.advertise
    }

    /// This node's incarnation, one more than in its previous life.
    pub fn incarnation(&self) -> u64 {
        self.incarnation
    }

    /// Every known peer with its status and the highest incarnation heard from it, by address.
    pub fn peers(&self) -> impl Iterator<Item = (SocketAddr, ping::Status, u64)> + '_ {
        self.pinger.peers()
    }

    /// Counters of what the node saw.
    pub fn stats(&self) -> Stats {
        Stats {
            ping: self.pinger.stats(),
            ..self.stats
        }
    }

    fn handle_payload(&mut self, channel: Channel, from: SocketAddr, payload: &[u8]) {
        self.stats.messages_received += 1;
        match Message::decode(payload) {
            Ok(message) => self.pinger.handle_message(channel, message),
            Err(error) => {
                self.stats.decode_errors += 1;
                tracing::debug!(%from, ?channel, %error, "dropped undecodable message");
            }
        }
    }

    fn issue_persist(&mut self, state: StableState) {
        self.persist_issued += 1;
        self.persists.push_back(Persist {
            id: PersistId(self.persist_issued),
            state,
        });
    }

    /// Moves the sub-machines' new transmits behind the current persist barrier, then checks
    /// invariants. Runs at the end of every input.
    fn finish_step(&mut self) {
        while let Some(transmit) = self.pinger.poll_transmit() {
            self.held.push_back((self.persist_issued, transmit));
        }
        assert!(
            self.held.len() <= OUTPUTS_QUEUED_MAX,
            "driver stopped draining transmits"
        );
        assert!(
            self.persists.len() <= OUTPUTS_QUEUED_MAX,
            "driver stopped draining persists"
        );
        #[cfg(any(test, feature = "invariants"))]
        self.check_invariants();
    }

    /// Checks the node's invariants and those of each sub-machine.
    #[cfg(any(test, feature = "invariants"))]
    pub fn check_invariants(&self) {
        assert!(self.persist_durable <= self.persist_issued);
        assert!(self.incarnation >= 1);
        let mut barrier_previous = 0;
        for &(barrier, _) in &self.held {
            assert!(
                barrier <= self.persist_issued,
                "barrier beyond the newest persist"
            );
            assert!(
                barrier >= barrier_previous,
                "barriers are ordered along the queue"
            );
            barrier_previous = barrier;
        }
        // The boot persist is issued before anything else, so no transmit is ever unbarriered.
        assert!(self.persist_issued >= 1);
        self.pinger.check_invariants();
    }
}

/// How a node is set up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The address peers reach this node at, and the one it names as sender in every message.
    pub advertise: SocketAddr,
    /// Seeds every random choice the node makes.
    pub rng_seed: u64,
    /// Timing of the ping protocol.
    pub ping: ping::Config,
}

impl Config {
    /// Defaults for a node advertised at `advertise` with randomness seeded by `rng_seed`.
    pub fn new(advertise: SocketAddr, rng_seed: u64) -> Config {
        Config {
            advertise,
            rng_seed,
            ping: ping::Config::default(),
        }
    }
}

/// Why a node could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The ping protocol's settings are inconsistent.
    #[error(transparent)]
    Ping(#[from] ping::ConfigError),
    /// The restored incarnation is the largest there is; the node cannot restart again.
    #[error("the restored incarnation is at its maximum")]
    IncarnationExhausted,
}

/// The state a node must find again after a crash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StableState {
    /// The incarnation of the node's latest life.
    pub incarnation: u64,
}

/// Names one [`Persist`] when acknowledging it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PersistId(u64);

impl PersistId {
    /// The raw sequence number (1 for a node's first persist), for logs and traces.
    pub fn get(self) -> u64 {
        self.0
    }
}

/// A state write that must be durable before the node sends anything produced after it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use = "a persist must be made durable and acknowledged, or the node sends nothing more"]
pub struct Persist {
    /// Acknowledge with [`Node::on_persisted`] once durable.
    pub id: PersistId,
    /// The whole stable state, to replace the previous one atomically.
    pub state: StableState,
}

/// A message for the driver to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// The peer's advertise address.
    pub dst: SocketAddr,
    /// Which transport to send it over.
    pub channel: Channel,
    /// The encoded message: a datagram, or a stream frame without its length prefix.
    pub payload: Bytes,
}

/// The two transports a node speaks over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Channel {
    /// Unreliable, unordered, one message per datagram (UDP).
    Datagram,
    /// Reliable, ordered, length-prefixed frames (TCP).
    Stream,
}

/// Something the application should know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// A node we did not know contacted us.
    PeerDiscovered {
        /// Its advertise address.
        peer: SocketAddr,
    },
    /// A peer acknowledged a probe after being unknown or unreachable.
    PeerReachable {
        /// Its advertise address.
        peer: SocketAddr,
        /// Its incarnation at the time.
        incarnation: u64,
    },
    /// A peer failed to acknowledge every attempt of a probe.
    PeerUnreachable {
        /// Its advertise address.
        peer: SocketAddr,
    },
    /// A peer spoke with a higher incarnation than before: it restarted.
    PeerRestarted {
        /// Its advertise address.
        peer: SocketAddr,
        /// Its new incarnation.
        incarnation: u64,
    },
}

/// Input from the application.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Start probing `peer` (joining through a seed address).
    Join {
        /// The peer's advertise address.
        peer: SocketAddr,
    },
    /// Stop probing `peer`.
    Forget {
        /// The peer's advertise address.
        peer: SocketAddr,
    },
}

/// Why a command was refused. A refused command changed nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// A node cannot join itself.
    #[error("{peer} is this node's own address")]
    IsSelf {
        /// The address given.
        peer: SocketAddr,
    },
    /// The peer table is full.
    #[error("cannot track more than {max} peers")]
    PeersFull {
        /// The limit.
        max: usize,
    },
    /// The peer is not known.
    #[error("{peer} is not a known peer")]
    UnknownPeer {
        /// The address given.
        peer: SocketAddr,
    },
}

/// Counters of what a node saw.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Datagrams and stream frames received.
    pub messages_received: u64,
    /// Of those, the ones that did not decode.
    pub decode_errors: u64,
    /// The ping protocol's counters.
    pub ping: ping::Stats,
}

#[cfg(test)]
mod tests;
