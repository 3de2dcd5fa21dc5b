//! [`Gossip`]: one node in one gossip pool (LAN or WAN): SWIM, serf's events and queries, the
//! keyring, and what must survive a restart. The core's input/output surface for gossip, as
//! [`crate::server::Server`] is for consensus.

use core::net::SocketAddr;
use std::collections::VecDeque;

use bytes::Bytes;

use crate::keyring::{Keyring, KeyringError, ENVELOPE_OVERHEAD_BYTES, NONCE_BYTES};
use crate::limits::{DATAGRAM_BYTES_TARGET, META_BYTES_MAX, NODE_NAME_BYTES_MAX, OUTPUTS_QUEUED_MAX};
use std::collections::BTreeMap;

use crate::swim::{self, FireError, MemberEvent, MemberView, QueryRequest, QueryResult, Swim, UserEvent};
use crate::time::Monotonic;
use crate::wire::{decode_datagram, Message, NodeAddr};
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
///   returned by [`poll_timeout`](Gossip::poll_timeout), or a [`Command`] from the application;
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
/// [`on_persisted`](Gossip::on_persisted), in the order the persists were polled. The node does
/// not hand out a transmit produced after a persist until that persist is acknowledged, so a
/// driver cannot send a message that claims state a crash could still lose. Persists and
/// transmits may therefore be polled in any order; only the acknowledgement unlocks sends.
///
/// # Example
///
/// Two nodes wired back to back, with "disk" and "network" done by hand:
///
/// ```
/// use muster_core::gossip::{Channel, Command, Config, Event, Gossip};
/// use muster_core::Instant;
/// use muster_core::swim::MemberEventKind;
///
/// let a_addr = "10.0.0.1:8301".parse().unwrap();
/// let b_addr = "10.0.0.2:8301".parse().unwrap();
/// let now = Instant::ZERO;
/// let mut a = Gossip::new(Config::new("a", a_addr, 1), None, now).unwrap();
/// let mut b = Gossip::new(Config::new("b", b_addr, 2), None, now).unwrap();
///
/// // Each node first persists its boot epoch; nothing is sent before that is durable.
/// for node in [&mut a, &mut b] {
///     let persist = node.poll_persist().expect("the boot epoch");
///     assert_eq!(persist.state.boot_epoch, 1);
///     node.on_persisted(now, persist.id);
/// }
///
/// // b joins through a's address: a push/pull of full state over the stream channel.
/// b.handle_command(now, Command::Join { peer: a_addr }).unwrap();
/// let push = b.poll_transmit().unwrap();
/// assert_eq!((push.dst, push.channel), (a_addr, Channel::Stream));
/// a.handle_stream_frame(now, b_addr, &push.payload);
/// let reply = a.poll_transmit().unwrap();
/// b.handle_stream_frame(now, a_addr, &reply.payload);
///
/// // Each now knows the other.
/// let joined = |node: &mut Gossip| match node.poll_event() {
///     Some(Event::Member(event)) => (event.kind, event.node.name),
///     other => panic!("{other:?}"),
/// };
/// assert_eq!(joined(&mut a), (MemberEventKind::Join, "b".to_owned()));
/// assert_eq!(joined(&mut b), (MemberEventKind::Join, "a".to_owned()));
/// ```
#[derive(Debug)]
pub struct Gossip {
    config: Config,
    clock: Monotonic,
    boot_epoch: u32,
    swim: Swim,
    /// Encrypts everything sent and decrypts everything received, when configured.
    keyring: Option<Keyring>,
    /// Changes to `keyring` since start ([`Gossip::keyring_version`]).
    keyring_version: u64,
    /// Draws the encryption nonces.
    nonce_rng: Rng,
    /// Cluster-wide keyring operations asked here, by query id.
    keyring_ops: BTreeMap<u32, (KeyringOp, Bytes)>,
    /// Finished keyring operations, for `poll_event`.
    keyring_results: VecDeque<KeyringResult>,
    /// Whether [`Event::Left`] was reported.
    left_reported: bool,
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

impl Gossip {
    /// A node starting at `now`, from the durable state of its previous life if there was one.
    ///
    /// Its first output is a [`Persist`] of its new boot epoch (one above the restored one), and
    /// it sends nothing before that is acknowledged. Its gossip incarnation starts at
    /// `boot_epoch << 32`, above every incarnation of its previous lives.
    pub fn new(config: Config, restored: Option<StableState>, now: Instant) -> Result<Gossip, ConfigError> {
        config.validate()?;
        let boot_epoch = match restored {
            None => 1,
            Some(state) => state.boot_epoch.checked_add(1).ok_or(ConfigError::BootEpochExhausted)?,
        };
        let mut rng = Rng::from_seed(config.rng_seed);
        let me = NodeAddr { name: config.name.clone(), addr: config.advertise };
        let incarnation = u64::from(boot_epoch) << 32;
        let keyring = match config.encrypt_keys.split_first() {
            None => None,
            Some((primary, others)) => {
                let mut keyring = Keyring::new(primary)?;
                for key in others {
                    keyring.install(key)?;
                }
                Some(keyring)
            }
        };
        // Encrypted datagrams carry the envelope too, and must still fit the target size.
        let budget = DATAGRAM_BYTES_TARGET - if keyring.is_some() { ENVELOPE_OVERHEAD_BYTES } else { 0 };
        let swim =
            Swim::new(config.swim.clone(), me, config.meta.clone(), incarnation, budget, rng.fork(), now);
        let mut node = Gossip {
            config,
            clock: Monotonic::new(now),
            boot_epoch,
            swim,
            keyring,
            keyring_version: 0,
            nonce_rng: rng.fork(),
            keyring_ops: BTreeMap::new(),
            keyring_results: VecDeque::new(),
            left_reported: false,
            persists: VecDeque::new(),
            persist_issued: 0,
            persist_durable: 0,
            held: VecDeque::new(),
            stats: Stats::default(),
        };
        node.issue_persist(StableState { boot_epoch });
        node.finish_step();
        Ok(node)
    }

    /// Feeds a datagram received from the transport address `from`.
    ///
    /// Undecodable datagrams are counted in [`Stats::decode_errors`] and dropped: input from the
    /// network never panics the node and never changes its state.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, payload: &[u8]) {
        self.clock.advance(now);
        self.handle_payload(now, Channel::Datagram, from, payload);
        self.finish_step();
    }

    /// Feeds one frame (length prefix removed) read from a stream whose remote end is `from`.
    pub fn handle_stream_frame(&mut self, now: Instant, from: SocketAddr, frame: &[u8]) {
        self.clock.advance(now);
        self.handle_payload(now, Channel::Stream, from, frame);
        self.finish_step();
    }

    /// Runs every timer due at or before `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.clock.advance(now);
        self.swim.handle_timeout(now);
        self.finish_step();
    }

    /// Applies a command from the application. A command that fails changes nothing.
    pub fn handle_command(&mut self, now: Instant, command: Command) -> Result<(), CommandError> {
        self.clock.advance(now);
        let result = match command {
            Command::Join { peer } if peer == self.config.advertise => Err(CommandError::IsSelf { peer }),
            Command::Join { peer } => {
                self.swim.trigger_join(now, peer);
                Ok(())
            }
            Command::Leave => {
                self.swim.trigger_leave(now);
                Ok(())
            }
            Command::UpdateMeta { meta } if meta.len() > META_BYTES_MAX => {
                Err(CommandError::MetaTooLarge { len: meta.len(), max: META_BYTES_MAX })
            }
            Command::UpdateMeta { meta } => {
                if self.swim.trigger_update_meta(meta) {
                    Ok(())
                } else {
                    Err(CommandError::NotStaying)
                }
            }
            Command::FireEvent { name, payload } => Ok(self.swim.trigger_user_event(name, payload)?),
            Command::Keyring { op, key } => {
                if op != KeyringOp::List && ![16, 24, 32].contains(&key.len()) {
                    Err(CommandError::Keyring(KeyringError::InvalidKeySize(key.len())))
                } else {
                    let name = op.query_name().to_owned();
                    self.swim
                        .trigger_query(now, name, key.clone())
                        .map(|id| {
                            self.keyring_ops.insert(id, (op, key));
                        })
                        .map_err(CommandError::from)
                }
            }
            Command::InstallKey { key } => self.change_keys(|ring| ring.install(&key)),
            Command::UseKey { key } => self.change_keys(|ring| ring.use_key(&key)),
            Command::RemoveKey { key } => self.change_keys(|ring| ring.remove(&key)),
            Command::ForceLeave { name, prune } => {
                if self.swim.trigger_force_leave(now, &name, prune) {
                    Ok(())
                } else {
                    Err(CommandError::NotFailed { name })
                }
            }
        };
        self.finish_step();
        result
    }

    /// Reports that the persist `id`, and so every persist before it, is durable.
    ///
    /// Persists must be acknowledged in the order they were polled, each exactly once.
    pub fn on_persisted(&mut self, now: Instant, id: PersistId) {
        self.clock.advance(now);
        assert_eq!(id.0, self.persist_durable + 1, "persists are acknowledged in order, once");
        assert!(id.0 <= self.persist_issued, "persist {id:?} was never issued");
        self.persist_durable = id.0;
        self.finish_step();
    }

    /// The next state write to make durable, then acknowledge with
    /// [`on_persisted`](Gossip::on_persisted).
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
        if let Some(event) = self.swim.poll_event() {
            return Some(Event::Member(event));
        }
        if let Some(event) = self.swim.poll_user_event() {
            return Some(Event::User(event));
        }
        if let Some(result) = self.keyring_results.pop_front() {
            return Some(Event::Keyring(result));
        }
        if self.swim.has_left() && !self.left_reported {
            self.left_reported = true;
            return Some(Event::Left);
        }
        None
    }

    /// The instant at which [`handle_timeout`](Gossip::handle_timeout) must next be called;
    /// `None` once the node has left and has nothing more to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.swim.poll_timeout()
    }

    /// This node's advertise address.
    pub fn advertise(&self) -> SocketAddr {
        self.config.advertise
    }

    /// This node's name.
    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// This life's boot epoch: one more than the restored one, or the one adopted to outrank a
    /// previous life that peers still remember (after a restart with a fresh data dir).
    pub fn boot_epoch(&self) -> u32 {
        self.boot_epoch
    }

    /// This node's gossip incarnation: its boot epoch in the high 32 bits, refutations within
    /// this life in the low 32.
    pub fn incarnation(&self) -> u64 {
        self.swim.incarnation()
    }

    /// This node's own status: alive, leaving while its leave goes out, then left.
    pub fn status(&self) -> crate::swim::Status {
        self.swim.status()
    }

    /// Every member this node knows (itself excluded), by name.
    pub fn members(&self) -> impl Iterator<Item = MemberView> + '_ {
        self.swim.members()
    }

    /// One member's view, by name.
    pub fn member(&self, name: &str) -> Option<MemberView> {
        self.swim.member(name)
    }

    /// Counts the changes to the keyring since the node started: a driver that keeps the keys
    /// on disk writes them again when this moves.
    pub fn keyring_version(&self) -> u64 {
        self.keyring_version
    }

    /// The installed gossip keys, the primary first; empty when encryption is off.
    pub fn keys(&self) -> Vec<Bytes> {
        self.keyring.iter().flat_map(Keyring::keys).map(Bytes::copy_from_slice).collect()
    }

    /// Whether a graceful leave has completed.
    pub fn has_left(&self) -> bool {
        self.swim.has_left()
    }

    /// Lifeguard's local health score (0 is healthy).
    pub fn health_score(&self) -> u32 {
        self.swim.awareness_score()
    }

    /// Counters of what the node saw.
    pub fn stats(&self) -> Stats {
        Stats { swim: self.swim.stats(), ..self.stats }
    }

    /// Answers the internal queries this node understands; others go unanswered, as in serf.
    fn answer_query(&mut self, request: &QueryRequest) -> Option<Bytes> {
        let op = KeyringOp::from_query_name(&request.name)?;
        let Some(keyring) = self.keyring.as_mut() else {
            return Some(answer_error("encryption is not enabled on this agent"));
        };
        let done = match op {
            KeyringOp::Install => keyring.install(&request.payload),
            KeyringOp::Use => keyring.use_key(&request.payload),
            KeyringOp::Remove => keyring.remove(&request.payload),
            KeyringOp::List => {
                let mut answer = vec![ANSWER_OK];
                for key in keyring.keys() {
                    answer.push(key.len() as u8);
                    answer.extend_from_slice(key);
                }
                return Some(Bytes::from(answer));
            }
        };
        Some(match done {
            Ok(()) => {
                self.keyring_version += 1;
                Bytes::from_static(&[ANSWER_OK])
            }
            Err(error) => answer_error(&error.to_string()),
        })
    }

    /// Applies a change to the keyring, counting it in [`Gossip::keyring_version`].
    fn change_keys(
        &mut self,
        change: impl FnOnce(&mut Keyring) -> Result<(), KeyringError>,
    ) -> Result<(), CommandError> {
        let ring = self.keyring.as_mut().ok_or(CommandError::EncryptionDisabled)?;
        change(ring)?;
        self.keyring_version += 1;
        Ok(())
    }

    fn handle_payload(&mut self, now: Instant, channel: Channel, from: SocketAddr, payload: &[u8]) {
        self.stats.messages_received += 1;
        let allowed = &self.config.allowed_sources;
        if !allowed.is_empty() && !allowed.iter().any(|range| range.contains(from.ip())) {
            self.stats.sources_refused += 1;
            return;
        }
        let decrypted;
        let payload = match &self.keyring {
            None => payload,
            Some(keyring) => match keyring.decrypt(payload) {
                Ok(plaintext) => {
                    decrypted = plaintext;
                    &decrypted[..]
                }
                Err(error) => {
                    self.stats.decrypt_failures += 1;
                    tracing::debug!(%from, ?channel, %error, "dropped a message no key opens");
                    return;
                }
            },
        };
        let decoded = match channel {
            Channel::Datagram => decode_datagram(payload),
            Channel::Stream => Message::decode_frame(payload).map(|message| vec![message]),
        };
        match decoded {
            Ok(messages) => {
                for message in messages {
                    // Full state travels only over streams: a spoofable datagram must not make
                    // this node send its whole table to an address of the sender's choosing.
                    if channel == Channel::Datagram && matches!(message, Message::PushPull { .. }) {
                        self.stats.decode_errors += 1;
                        continue;
                    }
                    self.swim.handle_message(now, channel, message);
                }
            }
            Err(error) => {
                self.stats.decode_errors += 1;
                tracing::debug!(%from, ?channel, %error, "dropped undecodable message");
            }
        }
    }

    fn issue_persist(&mut self, state: StableState) {
        self.persist_issued += 1;
        self.persists.push_back(Persist { id: PersistId(self.persist_issued), state });
    }

    /// Moves the sub-machines' new transmits behind the current persist barrier, then checks
    /// invariants. Runs at the end of every input.
    fn finish_step(&mut self) {
        // Every transmit polled below waits for the adopted epoch to be durable, so no message of
        // the new epoch can outlive a crash that loses it.
        if let Some(epoch) = self.swim.take_epoch_adopted() {
            assert!(epoch > self.boot_epoch, "an adopted epoch outranks the current one");
            self.boot_epoch = epoch;
            self.issue_persist(StableState { boot_epoch: epoch });
        }
        while let Some(request) = self.swim.poll_query_request() {
            if let Some(answer) = self.answer_query(&request) {
                self.swim.respond(&request, answer);
            }
        }
        while let Some(result) = self.swim.poll_query_result() {
            if let Some((op, key)) = self.keyring_ops.remove(&result.id) {
                self.keyring_results.push_back(KeyringResult::from_answers(op, key, result));
            }
        }
        while let Some(mut transmit) = self.swim.poll_transmit() {
            if let Some(keyring) = &self.keyring {
                let mut nonce = [0u8; NONCE_BYTES];
                nonce[..8].copy_from_slice(&self.nonce_rng.next_u64().to_le_bytes());
                nonce[8..].copy_from_slice(&self.nonce_rng.next_u64().to_le_bytes()[..4]);
                transmit.payload = Bytes::from(keyring.encrypt(&transmit.payload, nonce));
            }
            // Held transmits wait for an fsync; a flood of pings during a slow one must not grow
            // the queue without bound. Gossip tolerates loss, so the excess is dropped.
            if self.held.len() >= OUTPUTS_QUEUED_MAX {
                self.stats.transmits_dropped += 1;
                continue;
            }
            self.held.push_back((self.persist_issued, transmit));
        }
        assert!(self.persists.len() <= OUTPUTS_QUEUED_MAX, "driver stopped draining persists");
        #[cfg(any(test, feature = "invariants"))]
        self.check_invariants();
    }

    /// Checks the node's invariants and those of each sub-machine.
    #[cfg(any(test, feature = "invariants"))]
    pub fn check_invariants(&self) {
        assert!(self.persist_durable <= self.persist_issued);
        assert!(self.boot_epoch >= 1);
        assert!(
            self.swim.incarnation() >> 32 == u64::from(self.boot_epoch),
            "the incarnation belongs to the boot epoch being persisted"
        );
        let mut barrier_previous = 0;
        for &(barrier, _) in &self.held {
            assert!(barrier <= self.persist_issued, "barrier beyond the newest persist");
            assert!(barrier >= barrier_previous, "barriers are ordered along the queue");
            barrier_previous = barrier;
        }
        // The boot persist is issued before anything else, so no transmit is ever unbarriered.
        assert!(self.persist_issued >= 1);
        self.swim.check_invariants();
    }
}

/// How a node is set up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The node's name, unique in the cluster.
    pub name: String,
    /// The address peers reach this node at, and the one it names as sender in every message.
    pub advertise: SocketAddr,
    /// The node's tags, gossiped to every member (at most [`META_BYTES_MAX`] bytes).
    pub meta: Bytes,
    /// Seeds every random choice the node makes.
    pub rng_seed: u64,
    /// Gossip timings and fan-outs.
    pub swim: swim::Config,
    /// Gossip encryption keys (16, 24 or 32 bytes), the primary first; empty for none.
    pub encrypt_keys: Vec<Bytes>,
    /// The sources gossip is taken from (Consul's `serf_lan_allowed_cidrs`); empty: any.
    /// Datagrams and stream frames from elsewhere are dropped unread.
    pub allowed_sources: Vec<crate::cidr::Cidr>,
}

impl Config {
    /// LAN defaults for a node named `name` advertised at `advertise`, randomness seeded by
    /// `rng_seed`.
    pub fn new(name: &str, advertise: SocketAddr, rng_seed: u64) -> Config {
        Config {
            name: name.to_owned(),
            advertise,
            meta: Bytes::new(),
            rng_seed,
            swim: swim::Config::lan(),
            encrypt_keys: Vec::new(),
            allowed_sources: Vec::new(),
        }
    }

    /// Checks the configuration; the node refuses to start with an invalid one.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.name.is_empty() || self.name.len() > NODE_NAME_BYTES_MAX {
            return Err(ConfigError::NodeName { len: self.name.len(), max: NODE_NAME_BYTES_MAX });
        }
        if self.meta.len() > META_BYTES_MAX {
            return Err(ConfigError::MetaTooLarge { len: self.meta.len(), max: META_BYTES_MAX });
        }
        Ok(self.swim.validate()?)
    }
}

/// Why a node could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// Gossip settings are inconsistent.
    #[error(transparent)]
    Swim(#[from] swim::ConfigError),
    /// The node name is empty or too long.
    #[error("node name must be 1 to {max} bytes, not {len}")]
    NodeName {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The tags do not fit in gossip.
    #[error("node meta data of {len} bytes exceeds the {max}-byte limit")]
    MetaTooLarge {
        /// Its size.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// An encryption key is unusable.
    #[error("invalid encryption key: {0}")]
    Keyring(#[from] KeyringError),
    /// The restored boot epoch is the largest there is; the node cannot restart again.
    #[error("the restored boot epoch is at its maximum")]
    BootEpochExhausted,
}

/// The state a node must find again after a crash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StableState {
    /// The boot epoch of the node's latest life.
    pub boot_epoch: u32,
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
    /// Acknowledge with [`Gossip::on_persisted`] once durable.
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

/// A cluster-wide keyring operation, as `consul keyring` performs them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum KeyringOp {
    /// Install a key on every member.
    Install,
    /// Make a key the primary on every member.
    Use,
    /// Remove a key from every member.
    Remove,
    /// List every member's keys.
    List,
}

impl KeyringOp {
    fn query_name(self) -> &'static str {
        match self {
            KeyringOp::Install => "_muster_keyring_install",
            KeyringOp::Use => "_muster_keyring_use",
            KeyringOp::Remove => "_muster_keyring_remove",
            KeyringOp::List => "_muster_keyring_list",
        }
    }

    fn from_query_name(name: &str) -> Option<KeyringOp> {
        [KeyringOp::Install, KeyringOp::Use, KeyringOp::Remove, KeyringOp::List]
            .into_iter()
            .find(|op| op.query_name() == name)
    }
}

/// What the members answered to a keyring operation.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KeyringResult {
    /// The operation.
    pub op: KeyringOp,
    /// The key it was about (empty for a list): with `op`, what a waiting request matches on.
    pub key: Bytes,
    /// Live members when it was asked, this node included.
    pub members: usize,
    /// Members that answered.
    pub responses: usize,
    /// Members that answered with an error, and the error.
    pub errors: BTreeMap<String, String>,
    /// For [`KeyringOp::List`]: each key and how many members hold it.
    pub keys: BTreeMap<Bytes, usize>,
    /// For [`KeyringOp::List`]: each primary key and how many members encrypt with it.
    pub primary_keys: BTreeMap<Bytes, usize>,
}

impl KeyringResult {
    fn from_answers(op: KeyringOp, key: Bytes, result: QueryResult) -> KeyringResult {
        let mut errors = BTreeMap::new();
        let mut keys = BTreeMap::new();
        let mut primary_keys = BTreeMap::new();
        for (member, answer) in &result.responses {
            match answer.split_first() {
                Some((&ANSWER_OK, mut listed)) => {
                    // A member lists its primary first.
                    let mut first = true;
                    while let Some((&len, rest)) = listed.split_first() {
                        let Some(key) = rest.get(..usize::from(len)) else {
                            errors.insert(member.clone(), "malformed key list".to_owned());
                            break;
                        };
                        *keys.entry(Bytes::copy_from_slice(key)).or_insert(0) += 1;
                        if std::mem::take(&mut first) {
                            *primary_keys.entry(Bytes::copy_from_slice(key)).or_insert(0) += 1;
                        }
                        listed = &rest[usize::from(len)..];
                    }
                }
                Some((_, message)) => {
                    errors.insert(member.clone(), String::from_utf8_lossy(message).into_owned());
                }
                None => {
                    errors.insert(member.clone(), "empty answer".to_owned());
                }
            }
        }
        KeyringResult {
            op,
            key,
            members: result.members,
            responses: result.responses.len(),
            errors,
            keys,
            primary_keys,
        }
    }
}

fn answer_error(message: &str) -> Bytes {
    let mut answer = vec![ANSWER_ERROR];
    answer.extend_from_slice(&message.as_bytes()[..message.len().min(ANSWER_ERROR_BYTES_MAX)]);
    Bytes::from(answer)
}

/// First byte of a query answer: success.
const ANSWER_OK: u8 = 0;
/// First byte of a query answer: an error message follows.
const ANSWER_ERROR: u8 = 1;
/// Error messages in answers are cut to this many bytes.
const ANSWER_ERROR_BYTES_MAX: usize = 256;

/// Something the application should know.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Event {
    /// Membership changed.
    Member(MemberEvent),
    /// A user event arrived (or was fired here).
    User(UserEvent),
    /// A cluster-wide keyring operation asked here has finished.
    Keyring(KeyringResult),
    /// A graceful leave completed: the node has stopped and may be shut down.
    Left,
}

/// Input from the application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Join the cluster through the node at `peer` (a push/pull of full state with it), retried
    /// every `join_retry_interval` until a push/pull is answered.
    Join {
        /// A member's gossip address.
        peer: SocketAddr,
    },
    /// Leave the cluster gracefully; [`Event::Left`] follows when done.
    Leave,
    /// Replace this node's tags and announce them (serf's `SetTags`).
    UpdateMeta {
        /// The new tags, at most [`META_BYTES_MAX`] bytes.
        meta: Bytes,
    },
    /// Fire a user event to the whole cluster (serf's `UserEvent`).
    FireEvent {
        /// The event's name.
        name: String,
        /// Its payload.
        payload: Bytes,
    },
    /// Apply a keyring operation on every member (Consul's `keyring`); a
    /// [`Event::Keyring`] reports the answers after the query timeout.
    Keyring {
        /// The operation.
        op: KeyringOp,
        /// The key (ignored by [`KeyringOp::List`]).
        key: Bytes,
    },
    /// Install a gossip encryption key (on this node only).
    InstallKey {
        /// 16, 24 or 32 bytes.
        key: Bytes,
    },
    /// Make an installed key the primary, which encrypts (on this node only).
    UseKey {
        /// An installed key.
        key: Bytes,
    },
    /// Remove an installed key other than the primary (on this node only).
    RemoveKey {
        /// An installed key.
        key: Bytes,
    },
    /// Mark a failed member as left, so it is not expected back (serf's force-leave); with
    /// `prune`, every member forgets it at once (a member that left can be pruned too).
    ForceLeave {
        /// The member's name.
        name: String,
        /// Forget it now rather than at the reap.
        prune: bool,
    },
}

/// Why a command was refused. A refused command changed nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// A node cannot join itself.
    #[error("{peer} is this node's own address")]
    IsSelf {
        /// The address given.
        peer: SocketAddr,
    },
    /// The tags do not fit in gossip.
    #[error("node meta data of {len} bytes exceeds the {max}-byte limit")]
    MetaTooLarge {
        /// Their size.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The node is leaving (or has used up this life's incarnations) and announces nothing new.
    #[error("the agent is leaving")]
    NotStaying,
    /// The event cannot be fired.
    #[error(transparent)]
    Fire(#[from] FireError),
    /// The keyring refused the change.
    #[error(transparent)]
    Keyring(#[from] KeyringError),
    /// Key commands need encryption to be configured at start.
    #[error("encryption is not enabled on this agent")]
    EncryptionDisabled,
    /// Force-leave applies to failed members only.
    #[error("no failed member named {name:?}")]
    NotFailed {
        /// The name given.
        name: String,
    },
}

/// Counters of what a node saw.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Datagrams and stream frames received.
    pub messages_received: u64,
    /// Of those, the ones that did not decode.
    pub decode_errors: u64,
    /// Of those, the ones no installed key could open (a wrong key, or tampering).
    pub decrypt_failures: u64,
    /// Transmits dropped because too many were waiting for a persist.
    pub transmits_dropped: u64,
    /// Messages dropped unread: their source is outside the allowed ranges.
    pub sources_refused: u64,
    /// The gossip protocol's counters.
    pub swim: swim::Stats,
}

#[cfg(test)]
mod tests;
