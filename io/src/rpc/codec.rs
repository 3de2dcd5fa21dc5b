//! The server RPC's messages and their framing, with nothing of the network in sight: each
//! request and reply is a four-byte big-endian length and a postcard body, at most
//! [`RPC_FRAME_BYTES_MAX`] bytes. [`FrameReader`] takes a frame's bytes as they arrive
//! (sans-IO: `super` reads the socket and hands it what came) and sizes nothing by what the
//! length announces, so a peer that announces 65 MiB and sends four bytes costs four bytes.
//!
//! Nothing here depends on more than serde, postcard, bytes and the core, so the fuzz crate
//! compiles this file by path (`fuzz_targets/rpc_frame.rs`).

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// A call, with the hop it is on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// From a client agent to any server: answered as the server's own API would answer it,
    /// sent on to the leader when it needs one.
    Server(Call),
    /// From a server to the one it takes for the leader: answered there, never sent on.
    Leader(Call),
}

/// What one agent asks a server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Call {
    /// An HTTP request, to be answered as the receiving server's API answers it.
    Http(HttpRequest),
    /// A command encoded by [`muster_core::fsm::Command::encode`], to be proposed.
    Propose(Bytes),
    /// The catalog's rows for the node of this name.
    NodeRows(String),
    /// A DNS query, answered from the receiving server's catalog with the sender's settings.
    Dns(DnsQuery),
}

/// A DNS query a client agent forwards.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsQuery {
    /// The query as the client sent it.
    pub packet: Bytes,
    /// How it arrived (the answer is cut to fit).
    pub transport: muster_core::dns::Transport,
    /// The forwarding agent's DNS settings.
    pub config: muster_core::dns::Config,
    /// Shuffles the instances (the same on both passes of one query).
    pub seed: u64,
    /// The forwarding agent's recursors' replies, on a second pass.
    pub resolved: Option<muster_core::dns::Resolved>,
}

/// A node's rows in the catalog, as [`muster_core::agent::LocalState::plan`] compares them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRows {
    /// The node, if the catalog has it.
    pub node: Option<muster_core::fsm::Node>,
    /// Its services.
    pub services: Vec<muster_core::fsm::Service>,
    /// Its checks.
    pub checks: Vec<muster_core::fsm::Check>,
}

/// An HTTP request, whole.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpRequest {
    /// The method.
    pub method: String,
    /// The path and query, as the client sent them.
    pub uri: String,
    /// Every header.
    pub headers: Vec<(String, Bytes)>,
    /// The body.
    pub body: Bytes,
}

/// An HTTP answer, whole.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpReply {
    /// The status code.
    pub status: u16,
    /// Every header.
    pub headers: Vec<(String, Bytes)>,
    /// The body.
    pub body: Bytes,
}

/// What the receiving server answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reply {
    /// To [`Call::Http`].
    Http(HttpReply),
    /// To [`Call::Propose`]: the state machine's answer, or the HTTP status and reason of
    /// the refusal.
    Propose(Result<muster_core::fsm::Response, (u16, String)>),
    /// To [`Call::NodeRows`]: the rows, or the HTTP status and reason of the refusal.
    NodeRows(Result<NodeRows, (u16, String)>),
    /// To [`Call::Dns`]: what to do with the query, or the HTTP status and reason of the refusal.
    Dns(Result<muster_core::dns::Handled, (u16, String)>),
}

/// Why a message could not be framed or a frame read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// A body over [`RPC_FRAME_BYTES_MAX`], to be written or announced by a prefix.
    #[error("rpc frame over the limit")]
    TooLarge,
    /// The stream ended inside a frame's length prefix.
    #[error("early eof")]
    PrefixCutShort,
    /// The stream ended inside a frame's body.
    #[error("rpc frame cut short")]
    BodyCutShort,
    /// A message postcard could not encode, or a body that does not decode as one.
    #[error("{0}")]
    Malformed(String),
}

/// `message`'s postcard body.
pub fn encode_body<T: Serialize>(message: &T) -> Result<Vec<u8>, FrameError> {
    postcard::to_allocvec(message).map_err(|error| FrameError::Malformed(error.to_string()))
}

/// The frame carrying `body`: its length prefix, then the body.
pub fn encode_frame(body: &[u8]) -> Result<Vec<u8>, FrameError> {
    if body.len() > RPC_FRAME_BYTES_MAX {
        return Err(FrameError::TooLarge);
    }
    let mut frame = Vec::with_capacity(FRAME_PREFIX_BYTES + body.len());
    frame.extend_from_slice(&u32::try_from(body.len()).expect("bounded above").to_be_bytes());
    frame.extend_from_slice(body);
    assert_eq!(frame.len(), FRAME_PREFIX_BYTES + body.len());
    Ok(frame)
}

/// The message a frame's body carries.
pub fn decode_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, FrameError> {
    postcard::from_bytes(body).map_err(|error| FrameError::Malformed(error.to_string()))
}

/// One frame read from bytes as they arrive. Ask [`FrameReader::wanted`] how many bytes to
/// read (never past the frame's end, so the next frame's bytes stay in the stream), hand over
/// what arrived with [`FrameReader::push`], and tell [`FrameReader::end`] when the stream ends.
#[derive(Debug, Default)]
pub struct FrameReader {
    prefix: [u8; FRAME_PREFIX_BYTES],
    /// How much of `prefix` has arrived.
    prefix_filled: usize,
    /// Once the prefix is whole: the announced length, and the body so far. The body's
    /// capacity never exceeds the announced length, nor [`FRAME_CAPACITY_INITIAL`] or twice
    /// what has arrived, whichever is larger.
    body: Option<(usize, Vec<u8>)>,
}

impl FrameReader {
    /// A reader waiting for a frame's first byte.
    pub fn new() -> FrameReader {
        FrameReader::default()
    }

    /// Takes `bytes`, at most [`FrameReader::wanted`] of them: the body once the frame is
    /// whole (the reader then waits for the next one), or the refusal of a length over
    /// [`RPC_FRAME_BYTES_MAX`] (the reader is then of no further use).
    pub fn push(&mut self, mut bytes: &[u8]) -> Result<Option<Vec<u8>>, FrameError> {
        assert!(bytes.len() <= self.wanted(), "{} bytes pushed, {} wanted", bytes.len(), self.wanted());
        if self.body.is_none() {
            let take = bytes.len().min(FRAME_PREFIX_BYTES - self.prefix_filled);
            self.prefix[self.prefix_filled..][..take].copy_from_slice(&bytes[..take]);
            self.prefix_filled += take;
            bytes = &bytes[take..];
            if self.prefix_filled < FRAME_PREFIX_BYTES {
                assert!(bytes.is_empty());
                return Ok(None);
            }
            let len = u32::from_be_bytes(self.prefix) as usize;
            if len > RPC_FRAME_BYTES_MAX {
                return Err(FrameError::TooLarge);
            }
            self.body = Some((len, Vec::with_capacity(len.min(FRAME_CAPACITY_INITIAL))));
        }
        let (len, body) = self.body.as_mut().expect("the prefix is whole");
        let needed = body.len() + bytes.len();
        if needed > body.capacity() {
            // Doubling, as a `Vec` grows, but never past the announced length.
            let capacity = needed.max(body.capacity() * 2).min(*len);
            body.reserve_exact(capacity - body.len());
        }
        body.extend_from_slice(bytes);
        assert!(body.len() <= *len);
        assert!(body.capacity() <= (*len).max(body.len()));
        if body.len() < *len {
            return Ok(None);
        }
        let (_, body) = std::mem::take(self).body.expect("the prefix is whole");
        Ok(Some(body))
    }

    /// How many more bytes the frame needs (until its prefix is whole, only the prefix's).
    pub fn wanted(&self) -> usize {
        match &self.body {
            None => FRAME_PREFIX_BYTES - self.prefix_filled,
            Some((len, body)) => len - body.len(),
        }
    }

    /// The bytes held for the frame under way.
    #[cfg(any(test, fuzzing))]
    pub fn reserved(&self) -> usize {
        self.body.as_ref().map_or(0, |(_, body)| body.capacity())
    }

    /// The stream ended: `None` between frames (a clean close), else why the frame is cut
    /// short.
    pub fn end(&self) -> Option<FrameError> {
        match (&self.body, self.prefix_filled) {
            (None, 0) => None,
            (None, _) => Some(FrameError::PrefixCutShort),
            (Some(_), _) => Some(FrameError::BodyCutShort),
        }
    }
}

/// The largest request or reply: a snapshot restore archive (64 MiB) with room for its headers.
pub const RPC_FRAME_BYTES_MAX: usize = 65 << 20;

/// A frame's length prefix: four bytes, big-endian.
pub const FRAME_PREFIX_BYTES: usize = 4;

/// The most a frame's buffer holds before its body arrives: what the length announces, up to
/// this; beyond it the buffer grows with the bytes.
pub const FRAME_CAPACITY_INITIAL: usize = 1 << 20;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_read_a_byte_at_a_time_is_the_frame_written() {
        let request = Request::Leader(Call::NodeRows("node-1".into()));
        let frame = encode_frame(&encode_body(&request).unwrap()).unwrap();
        let mut reader = FrameReader::new();
        let mut read = None;
        for (at, byte) in frame.iter().enumerate() {
            let wanted = if at < FRAME_PREFIX_BYTES { FRAME_PREFIX_BYTES - at } else { frame.len() - at };
            assert_eq!(reader.wanted(), wanted);
            read = reader.push(std::slice::from_ref(byte)).unwrap();
            assert_eq!(read.is_some(), at == frame.len() - 1);
        }
        assert_eq!(decode_body::<Request>(&read.unwrap()).unwrap(), request);
        assert_eq!(reader.end(), None, "a clean close between frames");
    }

    #[test]
    fn a_length_over_the_limit_is_refused_before_its_body() {
        let mut reader = FrameReader::new();
        let prefix = u32::try_from(RPC_FRAME_BYTES_MAX + 1).unwrap().to_be_bytes();
        assert_eq!(reader.push(&prefix), Err(FrameError::TooLarge));
        assert_eq!(encode_frame(&vec![0; RPC_FRAME_BYTES_MAX + 1]), Err(FrameError::TooLarge));
    }

    #[test]
    fn a_length_announced_sizes_the_buffer_only_as_its_bytes_arrive() {
        let mut reader = FrameReader::new();
        let prefix = u32::try_from(RPC_FRAME_BYTES_MAX).unwrap().to_be_bytes();
        assert_eq!(reader.push(&prefix), Ok(None));
        assert_eq!(reader.reserved(), FRAME_CAPACITY_INITIAL);
        assert_eq!(reader.push(&vec![7; FRAME_CAPACITY_INITIAL + 1]), Ok(None));
        assert_eq!(reader.reserved(), 2 * FRAME_CAPACITY_INITIAL);
        assert_eq!(reader.end(), Some(FrameError::BodyCutShort));
        let mut reader = FrameReader::new();
        assert_eq!(reader.push(&[0, 0]), Ok(None));
        assert_eq!(reader.end(), Some(FrameError::PrefixCutShort));
        assert_eq!(reader.push(&[0, 0]), Ok(Some(Vec::new())), "an empty frame is whole at once");
    }
}
