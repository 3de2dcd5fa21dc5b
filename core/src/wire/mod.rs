//! The wire format: every message a node sends or receives, with its encoder and decoder.
//!
//! Decoding is total: any byte string yields a message or a [`DecodeError`], never a panic and
//! never an allocation larger than the input. Every message starts with a version byte so that
//! a later format can be told apart and refused cleanly.
//!
//! Layout of a message (all integers big-endian):
//!
//! ```text
//! version: u8 = 1 | kind: u8 | sender: addr | incarnation: u64 | body
//! addr  = family: u8 (4 | 6) | ip: [u8; 4] or [u8; 16] | port: u16
//! body  = Ping: seq u32 | Ack: seq u32
//! ```
//!
//! Stream frames (the reliable channel) carry the same messages behind a `u32` length prefix; see
//! [`frame_len`].

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use bytes::{BufMut, Bytes, BytesMut};

use crate::limits::{DATAGRAM_BYTES_MAX, STREAM_FRAME_BYTES_MAX};

/// The only version of the format this build speaks.
pub const WIRE_VERSION: u8 = 1;

/// Bytes of the length prefix in front of each stream frame.
pub const FRAME_PREFIX_BYTES: usize = 4;

/// A message as it travels between nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Message {
    /// The address the sender wants replies sent to (its advertise address). Replies go here,
    /// not to the transport's source address, which on a stream is an ephemeral port.
    pub sender: SocketAddr,
    /// The sender's incarnation: a number that grows with every restart of the sender.
    pub incarnation: u64,
    /// What the message says.
    pub body: Body,
}

/// The kinds of message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    /// "Are you there?" The receiver answers with an [`Body::Ack`] carrying the same `seq`.
    Ping {
        /// Chosen by the sender to match the ack to the probe.
        seq: u32,
    },
    /// The answer to a [`Body::Ping`].
    Ack {
        /// The `seq` of the ping being answered.
        seq: u32,
    },
}

/// Why a byte string is not a message.
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
    /// Bytes were left over after a complete message.
    #[error("{0} trailing bytes after the message")]
    TrailingBytes(usize),
    /// The input is larger than any message may be.
    #[error("message of {size} bytes exceeds the {max}-byte limit")]
    TooLarge {
        /// Size of the input.
        size: usize,
        /// The limit it broke.
        max: usize,
    },
}

impl Message {
    /// Encodes the message into a new buffer.
    pub fn encode(&self) -> Bytes {
        let mut buf = BytesMut::with_capacity(Message::ENCODED_BYTES_MAX);
        self.encode_into(&mut buf);
        buf.freeze()
    }

    /// Appends the encoded message to `buf`.
    pub fn encode_into(&self, buf: &mut BytesMut) {
        let start = buf.len();
        buf.put_u8(WIRE_VERSION);
        buf.put_u8(self.body.kind());
        put_addr(buf, self.sender);
        buf.put_u64(self.incarnation);
        match self.body {
            Body::Ping { seq } | Body::Ack { seq } => buf.put_u32(seq),
        }
        debug_assert!(buf.len() - start <= Message::ENCODED_BYTES_MAX);
    }

    /// Decodes exactly one message from `bytes`; anything left over is an error.
    pub fn decode(bytes: &[u8]) -> Result<Message, DecodeError> {
        if bytes.len() > DATAGRAM_BYTES_MAX {
            return Err(DecodeError::TooLarge {
                size: bytes.len(),
                max: DATAGRAM_BYTES_MAX,
            });
        }
        let mut reader = Reader { bytes };
        let version = reader.u8()?;
        if version != WIRE_VERSION {
            return Err(DecodeError::UnsupportedVersion(version));
        }
        let kind = reader.u8()?;
        let sender = reader.addr()?;
        let incarnation = reader.u64()?;
        let body = match kind {
            KIND_PING => Body::Ping { seq: reader.u32()? },
            KIND_ACK => Body::Ack { seq: reader.u32()? },
            other => return Err(DecodeError::UnknownKind(other)),
        };
        if !reader.bytes.is_empty() {
            return Err(DecodeError::TrailingBytes(reader.bytes.len()));
        }
        Ok(Message {
            sender,
            incarnation,
            body,
        })
    }

    /// The largest encoding of any message (an IPv6 sender).
    pub const ENCODED_BYTES_MAX: usize = 1 + 1 + (1 + 16 + 2) + 8 + 4;
}

impl Body {
    fn kind(&self) -> u8 {
        match self {
            Body::Ping { .. } => KIND_PING,
            Body::Ack { .. } => KIND_ACK,
        }
    }
}

/// Reads the length prefix of a stream frame, refusing lengths over the frame limit before the
/// caller allocates for them.
pub fn frame_len(prefix: [u8; FRAME_PREFIX_BYTES]) -> Result<usize, DecodeError> {
    let len = u32::from_be_bytes(prefix) as usize;
    if len > STREAM_FRAME_BYTES_MAX {
        return Err(DecodeError::TooLarge {
            size: len,
            max: STREAM_FRAME_BYTES_MAX,
        });
    }
    Ok(len)
}

/// The length prefix for a frame carrying `payload_len` bytes.
pub fn frame_prefix(payload_len: usize) -> [u8; FRAME_PREFIX_BYTES] {
    assert!(
        payload_len <= STREAM_FRAME_BYTES_MAX,
        "frame of {payload_len} bytes is over the limit"
    );
    (payload_len as u32).to_be_bytes()
}

fn put_addr(buf: &mut BytesMut, addr: SocketAddr) {
    match addr.ip() {
        IpAddr::V4(ip) => {
            buf.put_u8(4);
            buf.put_slice(&ip.octets());
        }
        IpAddr::V6(ip) => {
            buf.put_u8(6);
            buf.put_slice(&ip.octets());
        }
    }
    buf.put_u16(addr.port());
}

/// A cursor that fails with [`DecodeError::Truncated`] instead of panicking.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl Reader<'_> {
    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let Some((head, rest)) = self.bytes.split_first_chunk::<N>() else {
            return Err(DecodeError::Truncated {
                needed: N - self.bytes.len(),
            });
        };
        self.bytes = rest;
        Ok(*head)
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.array::<1>()?[0])
    }

    fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    fn addr(&mut self) -> Result<SocketAddr, DecodeError> {
        let ip = match self.u8()? {
            4 => IpAddr::V4(Ipv4Addr::from(self.array::<4>()?)),
            6 => IpAddr::V6(Ipv6Addr::from(self.array::<16>()?)),
            other => return Err(DecodeError::UnknownAddressFamily(other)),
        };
        Ok(SocketAddr::new(ip, self.u16()?))
    }
}

const KIND_PING: u8 = 1;
const KIND_ACK: u8 = 2;

#[cfg(test)]
mod tests {
    use super::*;

    fn ping_v4() -> Message {
        Message {
            sender: "10.0.0.1:8301".parse().unwrap(),
            incarnation: 0x0102_0304_0506_0708,
            body: Body::Ping { seq: 0xA0B0_C0D0 },
        }
    }

    #[test]
    fn ping_encodes_to_the_documented_layout() {
        let bytes = ping_v4().encode();
        assert_eq!(
            &bytes[..],
            &[
                1, 1, // version, kind
                4, 10, 0, 0, 1, 0x20, 0x6D, // family, ip, port 8301
                1, 2, 3, 4, 5, 6, 7, 8, // incarnation
                0xA0, 0xB0, 0xC0, 0xD0, // seq
            ]
        );
        assert_eq!(Message::decode(&bytes), Ok(ping_v4()));
    }

    #[test]
    fn ack_with_ipv6_sender_round_trips_at_the_size_bound() {
        let ack = Message {
            sender: "[2001:db8::1]:8302".parse().unwrap(),
            incarnation: u64::MAX,
            body: Body::Ack { seq: 0 },
        };
        let bytes = ack.encode();
        assert_eq!(bytes.len(), Message::ENCODED_BYTES_MAX);
        assert_eq!(Message::decode(&bytes), Ok(ack));
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        let bytes = ping_v4().encode();
        for len in 0..bytes.len() {
            assert!(
                matches!(
                    Message::decode(&bytes[..len]),
                    Err(DecodeError::Truncated { .. })
                ),
                "prefix of {len} bytes"
            );
        }
    }

    #[test]
    fn malformed_headers_and_trailing_bytes_are_named() {
        let bytes = ping_v4().encode().to_vec();
        let with = |i: usize, b: u8| {
            let mut v = bytes.clone();
            v[i] = b;
            Message::decode(&v)
        };
        assert_eq!(with(0, 9), Err(DecodeError::UnsupportedVersion(9)));
        assert_eq!(with(1, 77), Err(DecodeError::UnknownKind(77)));
        assert_eq!(with(2, 5), Err(DecodeError::UnknownAddressFamily(5)));
        let mut long = bytes.clone();
        long.extend_from_slice(&[0, 0]);
        assert_eq!(Message::decode(&long), Err(DecodeError::TrailingBytes(2)));
        let huge = vec![0u8; DATAGRAM_BYTES_MAX + 1];
        assert_eq!(
            Message::decode(&huge),
            Err(DecodeError::TooLarge {
                size: DATAGRAM_BYTES_MAX + 1,
                max: DATAGRAM_BYTES_MAX
            })
        );
    }

    #[test]
    fn frame_prefix_round_trips_and_oversized_frames_are_refused() {
        assert_eq!(frame_len(frame_prefix(300)), Ok(300));
        let over = (STREAM_FRAME_BYTES_MAX as u32 + 1).to_be_bytes();
        assert_eq!(
            frame_len(over),
            Err(DecodeError::TooLarge {
                size: STREAM_FRAME_BYTES_MAX + 1,
                max: STREAM_FRAME_BYTES_MAX
            })
        );
    }
}
