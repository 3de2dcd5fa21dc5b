//! Raft's messages on the wire between servers (TCP on 8300, one length-prefixed frame per
//! message, as the gossip streams frame theirs). Total and canonical like the gossip codec:
//! any bytes decode to a message or a [`DecodeError`], never a panic, and what decodes
//! re-encodes to the same bytes.
//!
//! ```text
//! frame   = version:u8 kind:u8 from:u64 term:u64 body
//! kind 1  PreVote            last_index:u64 last_term:u64
//! kind 2  PreVoteResponse    granted:u8
//! kind 3  RequestVote        last_index:u64 last_term:u64 transfer:u8
//! kind 4  VoteResponse       granted:u8
//! kind 5  AppendEntries      prev_index:u64 prev_term:u64 commit:u64 count:u32 entry*
//! kind 6  AppendResponse     prev_index:u64 (0 match_index:u64 | 1 conflict_index:u64 has_term:u8 conflict_term:u64)
//! kind 7  Heartbeat          commit:u64 round:u64 acked:u64
//! kind 8  HeartbeatResponse  round:u64
//! kind 9  TimeoutNow
//! kind 10 InstallSnapshot    index:u64 snapshot_term:u64 len:u32 membership offset:u64 done:u8 len:u32 data[len]
//! kind 11 SnapshotResponse   index:u64 received:u64 installed:u8
//! entry   = index:u64 term:u64 type:u8 (0 | 1 len:u32 payload[len] | 2 len:u32 membership)
//! membership = voters:u16 id:u64* learners:u16 id:u64*    ids ascending
//! ```

use bytes::{BufMut, Bytes, BytesMut};

use super::{
    AppendResult, Entry, Membership, Message, Payload, ServerId, SnapshotMeta, ENTRY_BYTES_MAX,
    SNAPSHOT_CHUNK_BYTES_MAX,
};
use crate::limits::STREAM_FRAME_BYTES_MAX;
use crate::wire::{too_large, DecodeError, Reader, WIRE_VERSION};

/// The most entries one append may carry on the wire.
pub const ENTRIES_PER_MESSAGE_MAX: usize = 65_536;

/// The smallest encoding of an entry: index, term, type.
const ENTRY_BYTES_MIN: usize = 8 + 8 + 1;

/// The kind byte of each message, numbered as in the frame diagram above: the one source for
/// [`encode`] and [`decode`].
mod kind {
    pub(super) const PRE_VOTE: u8 = 1;
    pub(super) const PRE_VOTE_RESPONSE: u8 = 2;
    pub(super) const REQUEST_VOTE: u8 = 3;
    pub(super) const VOTE_RESPONSE: u8 = 4;
    pub(super) const APPEND_ENTRIES: u8 = 5;
    pub(super) const APPEND_RESPONSE: u8 = 6;
    pub(super) const HEARTBEAT: u8 = 7;
    pub(super) const HEARTBEAT_RESPONSE: u8 = 8;
    pub(super) const TIMEOUT_NOW: u8 = 9;
    pub(super) const INSTALL_SNAPSHOT: u8 = 10;
    pub(super) const SNAPSHOT_RESPONSE: u8 = 11;
}

/// Encodes `message` from server `from` as one frame body (without the length prefix).
///
/// The sender keeps appends within [`STREAM_FRAME_BYTES_MAX`] (its `append_bytes_max` is far
/// below); an append over it is a bug and asserted.
pub fn encode(from: ServerId, message: &Message) -> Bytes {
    let mut buf = BytesMut::with_capacity(64);
    buf.put_u8(WIRE_VERSION);
    buf.put_u8(kind_of(message));
    buf.put_u64(from);
    buf.put_u64(message.term());
    match message {
        Message::PreVote { last_index, last_term, .. } => {
            buf.put_u64(*last_index);
            buf.put_u64(*last_term);
        }
        Message::RequestVote { last_index, last_term, transfer, .. } => {
            buf.put_u64(*last_index);
            buf.put_u64(*last_term);
            buf.put_u8(u8::from(*transfer));
        }
        Message::PreVoteResponse { granted, .. } | Message::VoteResponse { granted, .. } => {
            buf.put_u8(u8::from(*granted))
        }
        Message::AppendEntries { prev_index, prev_term, entries, commit, .. } => {
            buf.put_u64(*prev_index);
            buf.put_u64(*prev_term);
            buf.put_u64(*commit);
            assert!(entries.len() <= ENTRIES_PER_MESSAGE_MAX, "appends are bounded by the sender");
            buf.put_u32(entries.len() as u32);
            for entry in entries {
                buf.put_u64(entry.index);
                buf.put_u64(entry.term);
                match &entry.payload {
                    Payload::Noop => buf.put_u8(0),
                    Payload::Command(bytes) => {
                        buf.put_u8(1);
                        buf.put_u32(bytes.len() as u32);
                        buf.put_slice(bytes);
                    }
                    Payload::Membership(membership) => {
                        buf.put_u8(2);
                        buf.put_u32(membership.encoded_len() as u32);
                        membership.encode(&mut buf);
                    }
                }
            }
        }
        Message::AppendResponse { prev_index, result, .. } => {
            buf.put_u64(*prev_index);
            match result {
                AppendResult::Accepted { match_index } => {
                    buf.put_u8(0);
                    buf.put_u64(*match_index);
                }
                AppendResult::Rejected { conflict_index, conflict_term } => {
                    buf.put_u8(1);
                    buf.put_u64(*conflict_index);
                    buf.put_u8(u8::from(conflict_term.is_some()));
                    buf.put_u64(conflict_term.unwrap_or(0));
                }
            }
        }
        Message::Heartbeat { commit, round, acked, .. } => {
            buf.put_u64(*commit);
            buf.put_u64(*round);
            buf.put_u64(*acked);
        }
        Message::HeartbeatResponse { round, .. } => buf.put_u64(*round),
        Message::TimeoutNow { .. } => {}
        Message::InstallSnapshot { meta, offset, data, done, .. } => {
            buf.put_u64(meta.index);
            buf.put_u64(meta.term);
            buf.put_u32(meta.membership.encoded_len() as u32);
            meta.membership.encode(&mut buf);
            buf.put_u64(*offset);
            buf.put_u8(u8::from(*done));
            assert!(data.len() <= SNAPSHOT_CHUNK_BYTES_MAX, "chunks are bounded by the sender");
            buf.put_u32(data.len() as u32);
            buf.put_slice(data);
        }
        Message::SnapshotResponse { index, received, installed, .. } => {
            buf.put_u64(*index);
            buf.put_u64(*received);
            buf.put_u8(u8::from(*installed));
        }
    }
    assert!(buf.len() <= STREAM_FRAME_BYTES_MAX, "an append of {} bytes is over the frame limit", buf.len());
    buf.freeze()
}

/// Decodes one frame body: the sender and its message.
pub fn decode(bytes: &[u8]) -> Result<(ServerId, Message), DecodeError> {
    if bytes.len() > STREAM_FRAME_BYTES_MAX {
        return Err(too_large("raft frame", bytes.len(), STREAM_FRAME_BYTES_MAX));
    }
    let mut reader = Reader::new(bytes);
    let version = reader.u8()?;
    if version != WIRE_VERSION {
        return Err(DecodeError::UnsupportedVersion(version));
    }
    let kind = reader.u8()?;
    let from = reader.u64()?;
    let term = reader.u64()?;
    let message = match kind {
        kind::PRE_VOTE => Message::PreVote { term, last_index: reader.u64()?, last_term: reader.u64()? },
        kind::PRE_VOTE_RESPONSE => Message::PreVoteResponse { term, granted: reader.flag()? },
        kind::REQUEST_VOTE => Message::RequestVote {
            term,
            last_index: reader.u64()?,
            last_term: reader.u64()?,
            transfer: reader.flag()?,
        },
        kind::VOTE_RESPONSE => Message::VoteResponse { term, granted: reader.flag()? },
        kind::APPEND_ENTRIES => {
            let prev_index = reader.u64()?;
            let prev_term = reader.u64()?;
            let commit = reader.u64()?;
            let entries = reader.list(
                "entries in an append",
                ENTRIES_PER_MESSAGE_MAX,
                ENTRY_BYTES_MIN,
                decode_entry,
            )?;
            Message::AppendEntries { term, prev_index, prev_term, entries, commit }
        }
        kind::APPEND_RESPONSE => {
            let prev_index = reader.u64()?;
            let result = match reader.u8()? {
                0 => AppendResult::Accepted { match_index: reader.u64()? },
                1 => {
                    let conflict_index = reader.u64()?;
                    let has_term = reader.flag()?;
                    let conflict_term = reader.u64()?;
                    if !has_term && conflict_term != 0 {
                        return Err(DecodeError::InvalidFlags(0));
                    }
                    AppendResult::Rejected {
                        conflict_index,
                        conflict_term: has_term.then_some(conflict_term),
                    }
                }
                other => return Err(DecodeError::InvalidFlags(other)),
            };
            Message::AppendResponse { term, prev_index, result }
        }
        kind::HEARTBEAT => {
            Message::Heartbeat { term, commit: reader.u64()?, round: reader.u64()?, acked: reader.u64()? }
        }
        kind::HEARTBEAT_RESPONSE => Message::HeartbeatResponse { term, round: reader.u64()? },
        kind::TIMEOUT_NOW => Message::TimeoutNow { term },
        kind::INSTALL_SNAPSHOT => {
            let index = reader.u64()?;
            let snapshot_term = reader.u64()?;
            let len = reader.u32()? as usize;
            let membership = Membership::decode(reader.take(len)?).ok_or(DecodeError::InvalidFlags(2))?;
            let meta = SnapshotMeta { index, term: snapshot_term, membership };
            let offset = reader.u64()?;
            let done = reader.flag()?;
            let len = reader.u32()? as usize;
            if len > SNAPSHOT_CHUNK_BYTES_MAX {
                return Err(too_large("snapshot chunk", len, SNAPSHOT_CHUNK_BYTES_MAX));
            }
            let data = Bytes::copy_from_slice(reader.take(len)?);
            Message::InstallSnapshot { term, meta, offset, data, done }
        }
        kind::SNAPSHOT_RESPONSE => Message::SnapshotResponse {
            term,
            index: reader.u64()?,
            received: reader.u64()?,
            installed: reader.flag()?,
        },
        other => return Err(DecodeError::UnknownKind(other)),
    };
    reader.finish()?;
    Ok((from, message))
}

fn decode_entry(reader: &mut Reader<'_>) -> Result<Entry, DecodeError> {
    let index = reader.u64()?;
    let term = reader.u64()?;
    let kind = reader.u8()?;
    if kind == 0 {
        return Ok(Entry { index, term, payload: Payload::Noop });
    }
    let len = reader.u32()? as usize;
    if len > ENTRY_BYTES_MAX {
        return Err(too_large("entry", len, ENTRY_BYTES_MAX));
    }
    let bytes = reader.take(len)?;
    let payload = match kind {
        1 => Payload::Command(Bytes::copy_from_slice(bytes)),
        2 => Payload::Membership(Membership::decode(bytes).ok_or(DecodeError::InvalidFlags(2))?),
        other => return Err(DecodeError::InvalidFlags(other)),
    };
    Ok(Entry { index, term, payload })
}

/// The kind byte `message` goes by on the wire.
fn kind_of(message: &Message) -> u8 {
    match message {
        Message::PreVote { .. } => kind::PRE_VOTE,
        Message::PreVoteResponse { .. } => kind::PRE_VOTE_RESPONSE,
        Message::RequestVote { .. } => kind::REQUEST_VOTE,
        Message::VoteResponse { .. } => kind::VOTE_RESPONSE,
        Message::AppendEntries { .. } => kind::APPEND_ENTRIES,
        Message::AppendResponse { .. } => kind::APPEND_RESPONSE,
        Message::Heartbeat { .. } => kind::HEARTBEAT,
        Message::HeartbeatResponse { .. } => kind::HEARTBEAT_RESPONSE,
        Message::TimeoutNow { .. } => kind::TIMEOUT_NOW,
        Message::InstallSnapshot { .. } => kind::INSTALL_SNAPSHOT,
        Message::SnapshotResponse { .. } => kind::SNAPSHOT_RESPONSE,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples() -> Vec<Message> {
        vec![
            Message::PreVote { term: 4, last_index: 10, last_term: 3 },
            Message::PreVoteResponse { term: 4, granted: true },
            Message::RequestVote { term: 4, last_index: 10, last_term: 3, transfer: true },
            Message::VoteResponse { term: 4, granted: false },
            Message::AppendEntries {
                term: 4,
                prev_index: 9,
                prev_term: 3,
                entries: vec![
                    Entry { index: 10, term: 4, payload: Payload::Noop },
                    Entry { index: 11, term: 4, payload: Payload::Command(Bytes::from_static(b"put a 1")) },
                    Entry {
                        index: 12,
                        term: 4,
                        payload: Payload::Membership(Membership {
                            voters: [1, 2, 3].into(),
                            learners: [7].into(),
                        }),
                    },
                ],
                commit: 9,
            },
            Message::AppendResponse {
                term: 4,
                prev_index: 9,
                result: AppendResult::Accepted { match_index: 11 },
            },
            Message::AppendResponse {
                term: 4,
                prev_index: 9,
                result: AppendResult::Rejected { conflict_index: 5, conflict_term: Some(2) },
            },
            Message::AppendResponse {
                term: 4,
                prev_index: 9,
                result: AppendResult::Rejected { conflict_index: 7, conflict_term: None },
            },
            Message::Heartbeat { term: 4, commit: 11, round: 77, acked: 76 },
            Message::HeartbeatResponse { term: 4, round: 77 },
            Message::TimeoutNow { term: 4 },
            Message::InstallSnapshot {
                term: 4,
                meta: SnapshotMeta {
                    index: 900,
                    term: 3,
                    membership: Membership { voters: [1, 2, 3].into(), learners: [].into() },
                },
                offset: 4096,
                data: Bytes::from_static(b"chunk of state"),
                done: true,
            },
            Message::SnapshotResponse { term: 4, index: 900, received: 4110, installed: false },
        ]
    }

    #[test]
    fn every_message_round_trips_and_every_prefix_is_refused() {
        for message in samples() {
            let bytes = encode(3, &message);
            assert_eq!(decode(&bytes), Ok((3, message.clone())));
            for cut in 0..bytes.len() {
                assert!(decode(&bytes[..cut]).is_err(), "{message:?} cut at {cut}");
            }
            let mut longer = bytes.to_vec();
            longer.push(0);
            assert_eq!(decode(&longer), Err(DecodeError::TrailingBytes(1)));
        }
    }

    #[test]
    fn a_huge_entry_count_is_refused_before_allocating() {
        let mut bytes = encode(
            1,
            &Message::AppendEntries { term: 1, prev_index: 0, prev_term: 0, entries: vec![], commit: 0 },
        )
        .to_vec();
        let count_at = bytes.len() - 4;
        bytes[count_at..].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(decode(&bytes), Err(DecodeError::TooLarge { what: "entries in an append", .. })));
        bytes[count_at..].copy_from_slice(&1000u32.to_be_bytes());
        assert!(matches!(decode(&bytes), Err(DecodeError::Truncated { .. })));
    }
}
