//! The server port's framing (8300): the server RPC's frames (io/src/rpc/codec.rs) and the Raft
//! transport's bursts (io/src/raft_net/burst.rs). The first input byte picks one of:
//! - a byte stream, read as RPC frames in arbitrary pieces: reading never panics; a frame
//!   announced over `RPC_FRAME_BYTES_MAX` is refused from its prefix alone; the buffer never
//!   holds more than the announced length, nor more than `FRAME_CAPACITY_INITIAL` or twice
//!   what arrived; how the bytes are cut changes no frame; and every body that decodes as a
//!   `Request` or `Reply` encodes to one that decodes to the same value;
//! - a `Request` and a `Reply` built by `arbitrary`: decode(encode(x)) == x through a frame
//!   read in arbitrary pieces;
//! - pieces that decode as Raft frames, queued as a burst: the burst never opens with
//!   `RPC_PROTOCOL_BYTE`, and split as the receiver splits it, it gives back each frame and
//!   message in order. (Raft frames alone are `wire_decode`'s.)
//!
//! The modules are compiled in by path: they need only serde, postcard, bytes and the core.

#![no_main]

use arbitrary::{Arbitrary, Result, Unstructured};
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use muster_core::raft;
use muster_core::wire::{frame_len, FRAME_PREFIX_BYTES};
use serde::de::DeserializeOwned;

#[path = "../../io/src/raft_net/burst.rs"]
mod burst;
#[path = "../../io/src/rpc/codec.rs"]
mod codec;

use burst::{Burst, RPC_PROTOCOL_BYTE};
use codec::{
    decode_body, encode_body, encode_frame, Call, DnsQuery, FrameError, FrameReader, HttpReply, HttpRequest,
    NodeRows, Reply, Request, FRAME_CAPACITY_INITIAL, RPC_FRAME_BYTES_MAX,
};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    match mode % 3 {
        0 => stream(rest),
        1 => {
            let _ = round_trip(&mut Unstructured::new(rest));
        }
        _ => {
            let _ = raft_burst(&mut Unstructured::new(rest));
        }
    }
});

/// Arbitrary bytes as an RPC stream, cut where the first bytes say.
fn stream(data: &[u8]) {
    let (cuts, bytes) = data.split_at(data.len().min(8));
    let whole = read_whole(bytes);
    let pieces = read_in_pieces(bytes, cuts);
    assert_eq!(pieces, whole, "how the bytes are cut changes no frame");
    for body in pieces.0 {
        if let Ok(request) = decode_body::<Request>(&body) {
            let again = encode_body(&request).expect("a decoded request encodes");
            assert_eq!(decode_body::<Request>(&again), Ok(request), "a request round-trips");
        }
        if let Ok(reply) = decode_body::<Reply>(&body) {
            let again = encode_body(&reply).expect("a decoded reply encodes");
            assert_eq!(decode_body::<Reply>(&again), Ok(reply), "a reply round-trips");
        }
    }
}

/// The frames in `bytes` as a plain reading of the format sees them, and how it ends: `None`
/// for a clean end between frames.
fn read_whole(mut bytes: &[u8]) -> (Vec<Vec<u8>>, Option<FrameError>) {
    let mut frames = Vec::new();
    loop {
        if bytes.is_empty() {
            return (frames, None);
        }
        let Some((prefix, rest)) = bytes.split_first_chunk::<4>() else {
            return (frames, Some(FrameError::PrefixCutShort));
        };
        let len = u32::from_be_bytes(*prefix) as usize;
        if len > RPC_FRAME_BYTES_MAX {
            return (frames, Some(FrameError::TooLarge));
        }
        if rest.len() < len {
            return (frames, Some(FrameError::BodyCutShort));
        }
        frames.push(rest[..len].to_vec());
        bytes = &rest[len..];
    }
}

/// The frames in `bytes` as [`FrameReader`] reads them, handed over in pieces whose sizes
/// `cuts` gives (cycled; never more than the reader wants, as the server reads), checking its
/// buffer after every piece.
fn read_in_pieces(bytes: &[u8], cuts: &[u8]) -> (Vec<Vec<u8>>, Option<FrameError>) {
    let mut frames = Vec::new();
    let mut reader = FrameReader::new();
    let mut cut = cuts.iter().cycle();
    let (mut at, mut frame_at) = (0, 0);
    while at < bytes.len() {
        let size = cut.next().map_or(bytes.len(), |&size| usize::from(size).max(1));
        let piece = &bytes[at..][..size.min(bytes.len() - at).min(reader.wanted())];
        at += piece.len();
        // The length this frame announces, once its prefix has arrived.
        let announced = bytes[frame_at..at]
            .first_chunk::<FRAME_PREFIX_BYTES>()
            .map(|prefix| u32::from_be_bytes(*prefix) as usize);
        match reader.push(piece) {
            Ok(Some(body)) => {
                assert_eq!(reader.wanted(), FRAME_PREFIX_BYTES, "the next frame starts afresh");
                assert_eq!(reader.reserved(), 0);
                assert_eq!(Some(body.len()), announced);
                assert_eq!(body, bytes[frame_at + FRAME_PREFIX_BYTES..at]);
                frames.push(body);
                frame_at = at;
            }
            Ok(None) => {
                assert!(reader.wanted() > 0);
                let Some(len) = announced else {
                    assert_eq!(reader.reserved(), 0, "nothing is held before the prefix is whole");
                    continue;
                };
                let received = at - frame_at - FRAME_PREFIX_BYTES;
                assert_eq!(reader.wanted(), len - received);
                assert!(reader.reserved() <= len, "the buffer stays within the announced length");
                assert!(reader.reserved() <= RPC_FRAME_BYTES_MAX);
                assert!(
                    reader.reserved() <= FRAME_CAPACITY_INITIAL.max(2 * received),
                    "{} bytes reserved for {received} received",
                    reader.reserved()
                );
            }
            Err(error) => {
                assert_eq!(error, FrameError::TooLarge);
                assert!(announced.is_some_and(|len| len > RPC_FRAME_BYTES_MAX), "refused from its prefix");
                return (frames, Some(error));
            }
        }
    }
    (frames, reader.end())
}

/// A request and a reply from `arbitrary`, through their encoding and a frame read in pieces.
fn round_trip(u: &mut Unstructured<'_>) -> Result<()> {
    let request = request(u)?;
    let reply = reply(u)?;
    let cuts: Vec<u8> = u.arbitrary()?;
    let encoded = encode_body(&request).expect("a request encodes");
    let frame = encode_frame(&encoded).expect("a small request fits a frame");
    assert_eq!(frame[..4], u32::try_from(encoded.len()).expect("small").to_be_bytes());
    let (frames, end) = read_in_pieces(&frame, &cuts);
    assert_eq!((frames.len(), end), (1, None));
    assert_eq!(decode_body::<Request>(&frames[0]), Ok(request), "a request round-trips");
    let encoded = encode_body(&reply).expect("a reply encodes");
    let (frames, end) = read_in_pieces(&encode_frame(&encoded).expect("fits"), &cuts);
    assert_eq!((frames.len(), end), (1, None));
    assert_eq!(decode_body::<Reply>(&frames[0]), Ok(reply), "a reply round-trips");
    Ok(())
}

/// Pieces of the input that decode as Raft frames, as one burst to a peer.
fn raft_burst(u: &mut Unstructured<'_>) -> Result<()> {
    let mut burst = Burst::default();
    let mut sent = Vec::new();
    while !u.is_empty() && sent.len() < 16 {
        let len = u.arbitrary_len::<u8>()?;
        let piece = u.bytes(len)?;
        if let Ok(message) = raft::wire::decode(piece) {
            burst.push(piece);
            sent.push((piece.to_vec(), message));
        }
    }
    assert_eq!(burst.count(), sent.len() as u64);
    let mut bytes = burst.as_bytes();
    if let Some(&first) = bytes.first() {
        assert_ne!(first, RPC_PROTOCOL_BYTE, "a Raft stream is never taken for RPC");
    }
    for (frame, message) in &sent {
        let (prefix, rest) = bytes.split_first_chunk::<FRAME_PREFIX_BYTES>().expect("a prefix per frame");
        let len = frame_len(*prefix).expect("within the stream's frame limit");
        assert_eq!(&rest[..len], &frame[..]);
        assert_eq!(&raft::wire::decode(&rest[..len]).expect("decodes as sent"), message);
        bytes = &rest[len..];
    }
    assert!(bytes.is_empty(), "nothing but the frames");
    burst.clear();
    assert_eq!((burst.count(), burst.as_bytes().len()), (0, 0));
    Ok(())
}

fn request(u: &mut Unstructured<'_>) -> Result<Request> {
    let call = call(u)?;
    let request = if u.arbitrary()? { Request::Server(call) } else { Request::Leader(call) };
    // Every variant is built above: a new one fails to compile here until it is.
    match &request {
        Request::Server(call) | Request::Leader(call) => match call {
            Call::Http(_) | Call::Propose(_) | Call::NodeRows(_) | Call::Dns(_) => {}
        },
    }
    Ok(request)
}

fn call(u: &mut Unstructured<'_>) -> Result<Call> {
    Ok(match u.choose_index(4)? {
        0 => Call::Http(HttpRequest {
            method: u.arbitrary()?,
            uri: u.arbitrary()?,
            headers: headers(u)?,
            body: bytes(u)?,
        }),
        1 => Call::Propose(bytes(u)?),
        2 => Call::NodeRows(u.arbitrary()?),
        _ => Call::Dns(DnsQuery {
            packet: bytes(u)?,
            transport: if u.arbitrary()? {
                muster_core::dns::Transport::Udp
            } else {
                muster_core::dns::Transport::Tcp
            },
            config: dns_config(u)?,
            seed: u.arbitrary()?,
            resolved: match u.arbitrary()? {
                false => None,
                true => {
                    let mut resolved = muster_core::dns::Resolved::default();
                    for (name, reply) in u.arbitrary::<Vec<(String, Vec<u8>)>>()? {
                        resolved.insert(name, reply);
                    }
                    Some(resolved)
                }
            },
        }),
    })
}

fn reply(u: &mut Unstructured<'_>) -> Result<Reply> {
    let reply = match u.choose_index(4)? {
        0 => Reply::Http(HttpReply { status: u.arbitrary()?, headers: headers(u)?, body: bytes(u)? }),
        1 => Reply::Propose(refusable(u, |u| {
            Ok(match u.choose_index(4)? {
                0 => muster_core::fsm::Response::Bool(u.arbitrary()?),
                1 => muster_core::fsm::Response::Reaped(u.arbitrary()?),
                2 => muster_core::fsm::Response::Ignored,
                // Transaction outcomes and refusals, as postcard makes them of the input.
                _ => decoded(u)?.unwrap_or(muster_core::fsm::Response::Ignored),
            })
        })?),
        2 => Reply::NodeRows(refusable(u, |u| {
            let mut rows = NodeRows {
                node: u.arbitrary::<bool>()?.then(|| decoded(u)).transpose()?.map(Option::unwrap_or_default),
                ..NodeRows::default()
            };
            if let Some(node) = &mut rows.node {
                node.node = u.arbitrary()?;
            }
            for _ in 0..u.int_in_range(0..=3)? {
                let mut service: muster_core::fsm::Service = decoded(u)?.unwrap_or_default();
                service.id = u.arbitrary()?;
                rows.services.push(service);
            }
            for _ in 0..u.int_in_range(0..=3)? {
                let mut check: muster_core::fsm::Check = decoded(u)?.unwrap_or_default();
                check.check_id = u.arbitrary()?;
                rows.checks.push(check);
            }
            Ok(rows)
        })?),
        _ => Reply::Dns(refusable(u, |u| {
            Ok(match u.choose_index(4)? {
                0 => muster_core::dns::Handled::Answer(u.arbitrary()?),
                1 => muster_core::dns::Handled::Recurse,
                2 => muster_core::dns::Handled::Resolve(u.arbitrary()?),
                _ => muster_core::dns::Handled::Drop,
            })
        })?),
    };
    match &reply {
        Reply::Http(_) | Reply::Propose(_) | Reply::NodeRows(_) | Reply::Dns(_) => {}
    }
    Ok(reply)
}

/// The value `ok` builds, or a refusal's status and reason.
fn refusable<T>(
    u: &mut Unstructured<'_>,
    ok: impl FnOnce(&mut Unstructured<'_>) -> Result<T>,
) -> Result<std::result::Result<T, (u16, String)>> {
    Ok(match u.arbitrary()? {
        true => Ok(ok(u)?),
        false => Err((u.arbitrary()?, u.arbitrary()?)),
    })
}

/// A core value as postcard decodes it from the next bytes of the input (any value postcard
/// decodes is one of the type's), or `None` where they do not decode.
fn decoded<T: DeserializeOwned>(u: &mut Unstructured<'_>) -> Result<Option<T>> {
    let len = u.arbitrary_len::<u8>()?;
    Ok(postcard::from_bytes(u.bytes(len)?).ok())
}

fn dns_config(u: &mut Unstructured<'_>) -> Result<muster_core::dns::Config> {
    Ok(muster_core::dns::Config {
        domain: u.arbitrary()?,
        alt_domain: u.arbitrary()?,
        datacenter: u.arbitrary()?,
        node_ttl_secs: u.arbitrary()?,
        service_ttl_secs: u.arbitrary()?,
        only_passing: u.arbitrary()?,
        udp_answer_limit: u.arbitrary()?,
        a_record_limit: u.arbitrary()?,
        enable_truncate: u.arbitrary()?,
        recursion: u.arbitrary()?,
        soa: muster_core::dns::Soa {
            refresh: u.arbitrary()?,
            retry: u.arbitrary()?,
            expire: u.arbitrary()?,
            min_ttl: u.arbitrary()?,
        },
        node_meta_txt: u.arbitrary()?,
    })
}

fn headers(u: &mut Unstructured<'_>) -> Result<Vec<(String, Bytes)>> {
    let headers: Vec<(String, Vec<u8>)> = u.arbitrary()?;
    Ok(headers.into_iter().map(|(name, value)| (name, Bytes::from(value))).collect())
}

fn bytes(u: &mut Unstructured<'_>) -> Result<Bytes> {
    Ok(Bytes::from(Vec::<u8>::arbitrary(u)?))
}
