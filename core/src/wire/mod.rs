//! The wire format: every message nodes exchange, with total encoders and decoders.
//!
//! Decoding never panics and never allocates more than the input justifies: any byte string
//! yields messages or a [`DecodeError`]. Each datagram and frame starts with a version byte, so a
//! later format can be told apart and refused cleanly.
//!
//! ```text
//! datagram = version:u8 entry+              (at most DATAGRAM_BYTES_MAX bytes)
//! entry    = kind:u8 len:u16 body[len]      (one message; several entries make a compound)
//! frame    = version:u8 kind:u8 body        (streams; behind a u32 length prefix)
//!
//! node     = name:str addr
//! addr     = family:u8 (4|6) ip[4|16] port:u16
//! str      = len:u8 utf8[len]               bytes = len:u16 raw[len]
//!
//! Ping          seq:u32 target:str source:node
//! IndirectPing  seq:u32 target:node nack:u8 source:node
//! Ack           seq:u32
//! Nack          seq:u32
//! Alive         incarnation:u64 node meta:bytes
//! Suspect       incarnation:u64 node:str from:str
//! Dead          incarnation:u64 node:str from:str
//! PushPull      flags:u8 source:node count:u32 (node meta:bytes incarnation:u64 state:u8)*
//!               event_clock:u64 query_clock:u64 count:u32 (ltime:u64 name:str payload:bytes)*
//! UserEvent     ltime:u64 name:str payload:bytes
//! Query         id:u32 ltime:u64 name:str payload:bytes source:node timeout_ms:u32
//! QueryResponse id:u32 ltime:u64 from:str payload:bytes
//! ```
//!
//! All integers are big-endian. A datagram carries the message it was sent for first, then
//! piggybacked gossip; entries are length-delimited so that a receiver can skip nothing and
//! trust nothing: every entry must decode, and the lengths must add up exactly.

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use bytes::{BufMut, Bytes, BytesMut};

use crate::limits::{
    DATAGRAM_BYTES_MAX, MEMBERS_MAX, META_BYTES_MAX, NODE_NAME_BYTES_MAX, STREAM_FRAME_BYTES_MAX,
    USER_EVENTS_PER_LTIME_MAX, USER_EVENT_BUFFER, USER_EVENT_BYTES_MAX,
};

/// The only version of the format this build speaks.
pub const WIRE_VERSION: u8 = 1;

/// Bytes of the length prefix in front of each stream frame.
pub const FRAME_PREFIX_BYTES: usize = 4;

/// The most messages one datagram may carry (memberlist's compound limit): bounds the work and
/// the replies one datagram can cause.
pub const DATAGRAM_MESSAGES_MAX: usize = 255;

/// Bytes an entry adds around its message body in a datagram (kind and length).
pub const ENTRY_OVERHEAD_BYTES: usize = 3;

/// A node's identity on the wire: its unique name and the address it is reached at.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeAddr {
    /// The node's name, unique in the cluster.
    pub name: String,
    /// The address the node's gossip listens on (its advertise address).
    pub addr: SocketAddr,
}

/// A member's state as one node believes it (SWIM §4, memberlist's states).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MemberState {
    /// Answering probes.
    Alive,
    /// Failed a probe; declared dead unless it refutes before the suspicion timeout.
    Suspect,
    /// Declared failed.
    Dead,
    /// Left gracefully.
    Left,
}

/// The serf layer's share of a push/pull (serf's `messagePushPull`): its clocks, so a node that
/// joins or heals fires events later than everything the cluster has seen, and its recent user
/// events, so one missed by gossip still arrives.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SerfState {
    /// The sender's user event clock: the time its next event gets.
    pub event_clock: u64,
    /// The sender's query clock.
    pub query_clock: u64,
    /// User events the sender still remembers, newest first.
    pub events: Vec<PushPullEvent>,
}

/// A recent user event in a push/pull.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushPullEvent {
    /// Its Lamport time.
    pub ltime: u64,
    /// Its name.
    pub name: String,
    /// Its payload.
    pub payload: Bytes,
}

/// One member's entry in a push/pull exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushPullMember {
    /// Who.
    pub node: NodeAddr,
    /// Its tags, opaque to gossip.
    pub meta: Bytes,
    /// The incarnation the state belongs to.
    pub incarnation: u64,
    /// Its state as the sender believes it.
    pub state: MemberState,
}

/// Every message of the gossip protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// "Are you there?", answered with an [`Message::Ack`] of the same `seq` to `source`.
    Ping {
        /// Chosen by the prober to match the ack.
        seq: u32,
        /// The name the prober believes lives at the address; a different node ignores it.
        target: String,
        /// The prober.
        source: NodeAddr,
    },
    /// "Ping `target` for me": the receiver pings it and forwards the ack, or a nack when asked.
    IndirectPing {
        /// The requester's seq, used in the forwarded ack or the nack.
        seq: u32,
        /// The node to probe.
        target: NodeAddr,
        /// Whether to answer with a [`Message::Nack`] if the target does not ack in time.
        nack: bool,
        /// The requester.
        source: NodeAddr,
    },
    /// The answer to a ping.
    Ack {
        /// The ping's seq.
        seq: u32,
    },
    /// "I could not reach the target of your indirect ping" (Lifeguard: it proves the relay and
    /// the requester's own network are working).
    Nack {
        /// The indirect ping's seq.
        seq: u32,
    },
    /// `node` is alive at `incarnation`.
    Alive {
        /// Orders claims about the node; only the node itself raises it.
        incarnation: u64,
        /// The node.
        node: NodeAddr,
        /// Its tags.
        meta: Bytes,
    },
    /// `from` suspects `node` at `incarnation`.
    Suspect {
        /// The incarnation suspected.
        incarnation: u64,
        /// The suspect's name.
        node: String,
        /// The accuser's name.
        from: String,
    },
    /// `from` declares `node` dead at `incarnation`; when `from == node` the node left.
    Dead {
        /// The incarnation declared dead.
        incarnation: u64,
        /// The dead node's name.
        node: String,
        /// Who declares it.
        from: String,
    },
    /// Forget `node`, which failed or left, at once rather than at the reap (serf's leave intent
    /// with `Prune`, from `force-leave -prune`). A member still alive is not forgotten.
    Prune {
        /// The incarnation it was forced out at.
        incarnation: u64,
        /// Its name.
        node: String,
    },
    /// An application event fired somewhere in the cluster (serf's user event), spread by gossip.
    UserEvent {
        /// The event's Lamport time: orders events and keys duplicate suppression.
        ltime: u64,
        /// The event's name.
        name: String,
        /// Opaque payload.
        payload: Bytes,
    },
    /// A question to every member, spread by gossip (serf's query); each member that handles it
    /// answers `source` directly with a [`Message::QueryResponse`].
    Query {
        /// Chosen by the asker; with `ltime` and `source` it identifies the query.
        id: u32,
        /// The query's Lamport time.
        ltime: u64,
        /// What is asked (internal queries start with `_muster_`).
        name: String,
        /// Its argument.
        payload: Bytes,
        /// The asker, where answers go.
        source: NodeAddr,
        /// How long the asker waits for answers.
        timeout_ms: u32,
    },
    /// One member's answer to a [`Message::Query`].
    QueryResponse {
        /// The query's id.
        id: u32,
        /// The query's Lamport time.
        ltime: u64,
        /// The answering member's name.
        from: String,
        /// The answer.
        payload: Bytes,
    },
    /// A full-state exchange over a stream: join, and periodic anti-entropy.
    PushPull {
        /// The sender is joining (answered as any other push/pull, kept for the receiver's logs).
        join: bool,
        /// This is the answer to a push/pull, not to be answered again.
        reply: bool,
        /// The sender, where the answer goes.
        source: NodeAddr,
        /// Every member the sender knows, itself included.
        members: Vec<PushPullMember>,
        /// The sender's Lamport clocks and recent user events.
        serf: SerfState,
    },
}

/// Why bytes are not a valid datagram, frame or message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The input ended inside a field.
    #[error("message truncated: {needed} more bytes needed")]
    Truncated {
        /// Bytes missing to complete the field being read.
        needed: usize,
    },
    /// The version byte names a format this build does not speak.
    #[error("unsupported wire version {0} (this build speaks {WIRE_VERSION})")]
    UnsupportedVersion(u8),
    /// The kind byte names no message.
    #[error("unknown message kind {0}")]
    UnknownKind(u8),
    /// An address with a family other than 4 or 6.
    #[error("unknown address family {0}")]
    UnknownAddressFamily(u8),
    /// A member state byte out of range.
    #[error("unknown member state {0}")]
    UnknownMemberState(u8),
    /// A flag byte with bits this version does not define.
    #[error("invalid flag byte {0:#04x}")]
    InvalidFlags(u8),
    /// A name that is not UTF-8.
    #[error("a node name is not valid UTF-8")]
    InvalidName,
    /// Bytes were left over inside an entry or a frame after its message.
    #[error("{0} trailing bytes after the message")]
    TrailingBytes(usize),
    /// A datagram with a version byte and no message.
    #[error("datagram carries no message")]
    Empty,
    /// The input, or a field in it, is larger than allowed.
    #[error("{what} of {size} bytes exceeds the {max}-byte limit")]
    TooLarge {
        /// What was too large.
        what: &'static str,
        /// Its size.
        size: usize,
        /// The limit it broke.
        max: usize,
    },
}

impl Message {
    /// The incarnations this message claims for node `name`: an `Alive` about it, or its entry
    /// in a push/pull. What persistence ordering must cover before the message leaves `name`.
    pub fn incarnations_of<'a>(&'a self, name: &'a str) -> impl Iterator<Item = u64> + 'a {
        let (alive, members): (Option<u64>, &[PushPullMember]) = match self {
            Message::Alive { incarnation, node, .. } if node.name == name => (Some(*incarnation), &[]),
            Message::PushPull { members, .. } => (None, members),
            _ => (None, &[]),
        };
        let listed = members.iter().filter(move |m| m.node.name == name).map(|m| m.incarnation);
        alive.into_iter().chain(listed)
    }

    /// The message kind's byte on the wire.
    pub fn kind(&self) -> u8 {
        match self {
            Message::Ping { .. } => 1,
            Message::IndirectPing { .. } => 2,
            Message::Ack { .. } => 3,
            Message::Nack { .. } => 4,
            Message::Alive { .. } => 5,
            Message::Suspect { .. } => 6,
            Message::Dead { .. } => 7,
            Message::PushPull { .. } => 8,
            Message::UserEvent { .. } => 9,
            Message::Query { .. } => 10,
            Message::QueryResponse { .. } => 11,
            Message::Prune { .. } => 12,
        }
    }

    /// Encodes the message as a datagram entry: kind, length, body.
    pub fn encode_entry(&self) -> Bytes {
        let mut buf = BytesMut::with_capacity(64);
        buf.put_u8(self.kind());
        buf.put_u16(0);
        self.encode_body(&mut buf);
        let body_len = buf.len() - ENTRY_OVERHEAD_BYTES;
        let len = u16::try_from(body_len).expect("datagram messages are far below 64 KiB");
        buf[1..3].copy_from_slice(&len.to_be_bytes());
        buf.freeze()
    }

    /// Encodes the message as a stream frame (without its length prefix).
    pub fn encode_frame(&self) -> Bytes {
        let mut buf = BytesMut::with_capacity(64);
        buf.put_u8(WIRE_VERSION);
        buf.put_u8(self.kind());
        self.encode_body(&mut buf);
        assert!(buf.len() <= STREAM_FRAME_BYTES_MAX, "frame of {} bytes over the limit", buf.len());
        buf.freeze()
    }

    /// Decodes one stream frame (length prefix already removed).
    pub fn decode_frame(bytes: &[u8]) -> Result<Message, DecodeError> {
        if bytes.len() > STREAM_FRAME_BYTES_MAX {
            return Err(too_large("frame", bytes.len(), STREAM_FRAME_BYTES_MAX));
        }
        let mut reader = Reader { bytes };
        check_version(reader.u8()?)?;
        let kind = reader.u8()?;
        let message = decode_body(kind, &mut reader)?;
        reader.finish()?;
        Ok(message)
    }

    fn encode_body(&self, buf: &mut BytesMut) {
        match self {
            Message::Ping { seq, target, source } => {
                buf.put_u32(*seq);
                put_str(buf, target);
                put_node(buf, source);
            }
            Message::IndirectPing { seq, target, nack, source } => {
                buf.put_u32(*seq);
                put_node(buf, target);
                buf.put_u8(u8::from(*nack));
                put_node(buf, source);
            }
            Message::Ack { seq } | Message::Nack { seq } => buf.put_u32(*seq),
            Message::Alive { incarnation, node, meta } => {
                buf.put_u64(*incarnation);
                put_node(buf, node);
                put_bytes(buf, meta, META_BYTES_MAX);
            }
            Message::UserEvent { ltime, name, payload } => {
                buf.put_u64(*ltime);
                put_str(buf, name);
                put_bytes(buf, payload, USER_EVENT_BYTES_MAX);
            }
            Message::Query { id, ltime, name, payload, source, timeout_ms } => {
                buf.put_u32(*id);
                buf.put_u64(*ltime);
                put_str(buf, name);
                put_bytes(buf, payload, USER_EVENT_BYTES_MAX);
                put_node(buf, source);
                buf.put_u32(*timeout_ms);
            }
            Message::QueryResponse { id, ltime, from, payload } => {
                buf.put_u32(*id);
                buf.put_u64(*ltime);
                put_str(buf, from);
                put_bytes(buf, payload, USER_EVENT_BYTES_MAX);
            }
            Message::Suspect { incarnation, node, from } | Message::Dead { incarnation, node, from } => {
                buf.put_u64(*incarnation);
                put_str(buf, node);
                put_str(buf, from);
            }
            Message::Prune { incarnation, node } => {
                buf.put_u64(*incarnation);
                put_str(buf, node);
            }
            Message::PushPull { join, reply, source, members, serf } => {
                buf.put_u8(u8::from(*join) | u8::from(*reply) << 1);
                put_node(buf, source);
                buf.put_u32(u32::try_from(members.len()).expect("member count fits u32"));
                for member in members {
                    put_node(buf, &member.node);
                    put_bytes(buf, &member.meta, META_BYTES_MAX);
                    buf.put_u64(member.incarnation);
                    buf.put_u8(state_byte(member.state));
                }
                buf.put_u64(serf.event_clock);
                buf.put_u64(serf.query_clock);
                assert!(serf.events.len() <= PUSH_PULL_EVENTS_MAX, "the sender bounds its event history");
                buf.put_u32(serf.events.len() as u32);
                for event in &serf.events {
                    buf.put_u64(event.ltime);
                    put_str(buf, &event.name);
                    put_bytes(buf, &event.payload, USER_EVENT_BYTES_MAX);
                }
            }
        }
    }
}

/// Builds a datagram: the version byte, then entries, within a byte budget.
#[derive(Debug)]
pub struct DatagramBuilder {
    buf: BytesMut,
    budget: usize,
}

impl DatagramBuilder {
    /// An empty datagram that will hold at most `budget` bytes (version byte included).
    pub fn new(budget: usize) -> DatagramBuilder {
        assert!(budget <= DATAGRAM_BYTES_MAX);
        let mut buf = BytesMut::with_capacity(budget.min(1500));
        buf.put_u8(WIRE_VERSION);
        DatagramBuilder { buf, budget }
    }

    /// Appends an encoded entry (from [`Message::encode_entry`]); `false` if it does not fit.
    pub fn push_entry(&mut self, entry: &[u8]) -> bool {
        if self.buf.len() + entry.len() > self.budget {
            return false;
        }
        self.buf.put_slice(entry);
        true
    }

    /// Bytes still free.
    pub fn remaining(&self) -> usize {
        self.budget - self.buf.len()
    }

    /// The finished datagram.
    pub fn finish(self) -> Bytes {
        assert!(self.buf.len() > 1, "a datagram carries at least one message");
        self.buf.freeze()
    }
}

/// Decodes a datagram into its messages, in order.
pub fn decode_datagram(bytes: &[u8]) -> Result<Vec<Message>, DecodeError> {
    if bytes.len() > DATAGRAM_BYTES_MAX {
        return Err(too_large("datagram", bytes.len(), DATAGRAM_BYTES_MAX));
    }
    let mut reader = Reader { bytes };
    check_version(reader.u8()?)?;
    if reader.bytes.is_empty() {
        return Err(DecodeError::Empty);
    }
    let mut messages = Vec::new();
    while !reader.bytes.is_empty() {
        if messages.len() == DATAGRAM_MESSAGES_MAX {
            return Err(too_large("messages in a datagram", messages.len() + 1, DATAGRAM_MESSAGES_MAX));
        }
        let kind = reader.u8()?;
        let len = usize::from(reader.u16()?);
        let body = reader.take(len)?;
        let mut entry = Reader { bytes: body };
        messages.push(decode_body(kind, &mut entry)?);
        entry.finish()?;
    }
    Ok(messages)
}

/// Reads the length prefix of a stream frame, refusing lengths over the frame limit before the
/// caller allocates for them.
pub fn frame_len(prefix: [u8; FRAME_PREFIX_BYTES]) -> Result<usize, DecodeError> {
    let len = u32::from_be_bytes(prefix) as usize;
    if len > STREAM_FRAME_BYTES_MAX {
        return Err(too_large("frame", len, STREAM_FRAME_BYTES_MAX));
    }
    Ok(len)
}

/// The length prefix for a frame carrying `payload_len` bytes.
pub fn frame_prefix(payload_len: usize) -> [u8; FRAME_PREFIX_BYTES] {
    assert!(payload_len <= STREAM_FRAME_BYTES_MAX, "frame of {payload_len} bytes is over the limit");
    (payload_len as u32).to_be_bytes()
}

fn decode_body(kind: u8, reader: &mut Reader<'_>) -> Result<Message, DecodeError> {
    Ok(match kind {
        1 => Message::Ping { seq: reader.u32()?, target: reader.str()?, source: reader.node()? },
        2 => Message::IndirectPing {
            seq: reader.u32()?,
            target: reader.node()?,
            nack: reader.flag()?,
            source: reader.node()?,
        },
        3 => Message::Ack { seq: reader.u32()? },
        4 => Message::Nack { seq: reader.u32()? },
        5 => Message::Alive {
            incarnation: reader.u64()?,
            node: reader.node()?,
            meta: reader.bytes("meta", META_BYTES_MAX)?,
        },
        9 => Message::UserEvent {
            ltime: reader.u64()?,
            name: reader.str()?,
            payload: reader.bytes("user event payload", USER_EVENT_BYTES_MAX)?,
        },
        10 => Message::Query {
            id: reader.u32()?,
            ltime: reader.u64()?,
            name: reader.str()?,
            payload: reader.bytes("query payload", USER_EVENT_BYTES_MAX)?,
            source: reader.node()?,
            timeout_ms: reader.u32()?,
        },
        11 => Message::QueryResponse {
            id: reader.u32()?,
            ltime: reader.u64()?,
            from: reader.str()?,
            payload: reader.bytes("query response", USER_EVENT_BYTES_MAX)?,
        },
        6 => Message::Suspect { incarnation: reader.u64()?, node: reader.str()?, from: reader.str()? },
        7 => Message::Dead { incarnation: reader.u64()?, node: reader.str()?, from: reader.str()? },
        12 => Message::Prune { incarnation: reader.u64()?, node: reader.str()? },
        8 => {
            let flags = reader.u8()?;
            if flags & !PUSH_PULL_FLAGS != 0 {
                return Err(DecodeError::InvalidFlags(flags));
            }
            let source = reader.node()?;
            let members = reader.list("push/pull member list", MEMBERS_MAX, MEMBER_BYTES_MIN, |reader| {
                Ok(PushPullMember {
                    node: reader.node()?,
                    meta: reader.bytes("meta", META_BYTES_MAX)?,
                    incarnation: reader.u64()?,
                    state: member_state(reader.u8()?)?,
                })
            })?;
            let event_clock = reader.u64()?;
            let query_clock = reader.u64()?;
            let events =
                reader.list("push/pull event list", PUSH_PULL_EVENTS_MAX, EVENT_BYTES_MIN, |reader| {
                    Ok(PushPullEvent {
                        ltime: reader.u64()?,
                        name: reader.str()?,
                        payload: reader.bytes("user event payload", USER_EVENT_BYTES_MAX)?,
                    })
                })?;
            let serf = SerfState { event_clock, query_clock, events };
            Message::PushPull { join: flags & 1 != 0, reply: flags & 2 != 0, source, members, serf }
        }
        other => return Err(DecodeError::UnknownKind(other)),
    })
}

fn check_version(version: u8) -> Result<(), DecodeError> {
    if version == WIRE_VERSION {
        Ok(())
    } else {
        Err(DecodeError::UnsupportedVersion(version))
    }
}

pub(crate) fn too_large(what: &'static str, size: usize, max: usize) -> DecodeError {
    DecodeError::TooLarge { what, size, max }
}

fn state_byte(state: MemberState) -> u8 {
    match state {
        MemberState::Alive => 0,
        MemberState::Suspect => 1,
        MemberState::Dead => 2,
        MemberState::Left => 3,
    }
}

fn member_state(byte: u8) -> Result<MemberState, DecodeError> {
    Ok(match byte {
        0 => MemberState::Alive,
        1 => MemberState::Suspect,
        2 => MemberState::Dead,
        3 => MemberState::Left,
        other => return Err(DecodeError::UnknownMemberState(other)),
    })
}

pub(crate) fn put_str(buf: &mut BytesMut, text: &str) {
    assert!(text.len() <= NODE_NAME_BYTES_MAX, "name of {} bytes over the limit", text.len());
    buf.put_u8(text.len() as u8);
    buf.put_slice(text.as_bytes());
}

fn put_bytes(buf: &mut BytesMut, bytes: &[u8], max: usize) {
    assert!(bytes.len() <= max, "field of {} bytes over the {max}-byte limit", bytes.len());
    buf.put_u16(bytes.len() as u16);
    buf.put_slice(bytes);
}

fn put_node(buf: &mut BytesMut, node: &NodeAddr) {
    put_str(buf, &node.name);
    match node.addr.ip() {
        IpAddr::V4(ip) => {
            buf.put_u8(4);
            buf.put_slice(&ip.octets());
        }
        IpAddr::V6(ip) => {
            buf.put_u8(6);
            buf.put_slice(&ip.octets());
        }
    }
    buf.put_u16(node.addr.port());
}

/// A cursor that fails with [`DecodeError::Truncated`] instead of panicking.
pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader { bytes }
    }

    pub(crate) fn remaining(&self) -> usize {
        self.bytes.len()
    }

    pub(crate) fn take(&mut self, len: usize) -> Result<&'a [u8], DecodeError> {
        if self.bytes.len() < len {
            return Err(DecodeError::Truncated { needed: len - self.bytes.len() });
        }
        let (head, rest) = self.bytes.split_at(len);
        self.bytes = rest;
        Ok(head)
    }

    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        Ok(self.take(N)?.try_into().expect("took N bytes"))
    }

    pub(crate) fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.array::<1>()?[0])
    }

    pub(crate) fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    pub(crate) fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    pub(crate) fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    /// A byte that must be 0 (false) or 1 (true).
    pub(crate) fn flag(&mut self) -> Result<bool, DecodeError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            other => Err(DecodeError::InvalidFlags(other)),
        }
    }

    pub(crate) fn str(&mut self) -> Result<String, DecodeError> {
        let len = usize::from(self.u8()?);
        let raw = self.take(len)?;
        std::str::from_utf8(raw).map(str::to_owned).map_err(|_| DecodeError::InvalidName)
    }

    pub(crate) fn bytes(&mut self, what: &'static str, max: usize) -> Result<Bytes, DecodeError> {
        let len = usize::from(self.u16()?);
        if len > max {
            return Err(too_large(what, len, max));
        }
        Ok(Bytes::copy_from_slice(self.take(len)?))
    }

    /// A `u32` count, then that many items read by `item`. The count is bounded by `max`
    /// (`what` names the list in the error) and, since each item takes at least `item_bytes_min`
    /// bytes, by what the input can hold: refused before room is reserved for it.
    pub(crate) fn list<T>(
        &mut self,
        what: &'static str,
        max: usize,
        item_bytes_min: usize,
        mut item: impl FnMut(&mut Self) -> Result<T, DecodeError>,
    ) -> Result<Vec<T>, DecodeError> {
        let count = self.u32()? as usize;
        if count > max {
            return Err(too_large(what, count, max));
        }
        if count > self.remaining() / item_bytes_min {
            return Err(DecodeError::Truncated { needed: count * item_bytes_min - self.remaining() });
        }
        let mut items = Vec::with_capacity(count);
        for _ in 0..count {
            items.push(item(self)?);
        }
        Ok(items)
    }

    fn node(&mut self) -> Result<NodeAddr, DecodeError> {
        let name = self.str()?;
        let ip = match self.u8()? {
            4 => IpAddr::V4(Ipv4Addr::from(self.array::<4>()?)),
            6 => IpAddr::V6(Ipv6Addr::from(self.array::<16>()?)),
            other => return Err(DecodeError::UnknownAddressFamily(other)),
        };
        Ok(NodeAddr { name, addr: SocketAddr::new(ip, self.u16()?) })
    }

    pub(crate) fn finish(self) -> Result<(), DecodeError> {
        if self.bytes.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::TrailingBytes(self.bytes.len()))
        }
    }
}

/// The flag bits of a push/pull: join (bit 0), reply (bit 1).
const PUSH_PULL_FLAGS: u8 = 0b11;

/// The smallest encoding of a push/pull member: empty name, IPv4, empty meta.
const MEMBER_BYTES_MIN: usize = 1 + (1 + 4 + 2) + 2 + 8 + 1;

/// The smallest encoding of a push/pull event: ltime, empty name, empty payload.
const EVENT_BYTES_MIN: usize = 8 + 1 + 2;

/// The most events a push/pull may carry: every one a node can remember.
pub const PUSH_PULL_EVENTS_MAX: usize = USER_EVENT_BUFFER as usize * USER_EVENTS_PER_LTIME_MAX;

#[cfg(test)]
mod tests;
