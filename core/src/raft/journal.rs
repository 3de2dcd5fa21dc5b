//! The on-disk record format of Raft's write-ahead log: pure encoding and decoding, so the
//! decoder can be fuzzed and the simulator can share it. The files themselves (segments, fsync,
//! recovery of a torn tail) are the driver's: `io/src/wal.rs`.
//!
//! ```text
//! record  = len:u32 crc:u32 kind:u8 body[len - 1]     crc = CRC32C(kind body), big-endian
//! kind 1  hard state   term:u64 voted:u8 vote:u64
//! kind 2  truncate     from:u64                       drop every entry from this index on
//! kind 3  entry        index:u64 term:u64 type:u8 payload     type 0 no-op, 1 command, 2 membership
//! ```
//!
//! The log may begin anywhere once a snapshot covers what came before it: the driver deletes
//! old segments, and a truncation that empties the log (a leader's snapshot replacing it) lets
//! the next entry start past the snapshot. Replay accepts any first index into an empty log;
//! [`crate::raft::Raft::new`] checks that the log continues the snapshot.
//!
//! A snapshot is a file of its own, written whole and renamed into place by the driver:
//!
//! ```text
//! snapshot = magic:u32 version:u8 index:u64 term:u64 len:u32 membership data_len:u64 data crc:u32
//! ```

use bytes::{BufMut, Bytes, BytesMut};

use super::{
    Entry, HardState, Index, Membership, Payload, Persist, Restored, Snapshot, SnapshotMeta, ENTRY_BYTES_MAX,
    SNAPSHOT_BYTES_MAX,
};

/// The largest record a log may hold: an entry at the size limit, plus its fields.
pub const RECORD_BYTES_MAX: usize = ENTRY_BYTES_MAX + 64;

const HEADER_BYTES: usize = 8;
const KIND_HARD_STATE: u8 = 1;
const KIND_TRUNCATE: u8 = 2;
const KIND_ENTRY: u8 = 3;

/// Appends the records of `persist` to `buf`: its hard state, its truncation, its entries, in
/// that order (so a torn write keeps a prefix of them, never a later one without an earlier).
/// Its snapshot is not among them: the driver stores it first, as a file of its own.
pub fn encode_persist(persist: &Persist, buf: &mut BytesMut) {
    if let Some(hard) = persist.hard_state {
        encode_hard_state(hard, buf);
    }
    if let Some(from) = persist.truncate_from {
        encode_record(buf, KIND_TRUNCATE, |b| b.put_u64(from));
    }
    for entry in &persist.entries {
        encode_record(buf, KIND_ENTRY, |b| {
            b.put_u64(entry.index);
            b.put_u64(entry.term);
            match &entry.payload {
                Payload::Noop => b.put_u8(0),
                Payload::Command(bytes) => {
                    b.put_u8(1);
                    b.put_slice(bytes);
                }
                Payload::Membership(membership) => {
                    b.put_u8(2);
                    membership.encode(b);
                }
            }
        });
    }
}

/// Appends a hard state record: the driver repeats the current one at the head of each new
/// segment, so deleting older segments never loses it.
pub fn encode_hard_state(hard: HardState, buf: &mut BytesMut) {
    encode_record(buf, KIND_HARD_STATE, |b| {
        b.put_u64(hard.term);
        b.put_u8(u8::from(hard.vote.is_some()));
        b.put_u64(hard.vote.unwrap_or(0));
    });
}

const SNAPSHOT_MAGIC: u32 = 0x4d53_4e50; // "MSNP"
const SNAPSHOT_VERSION: u8 = 1;

/// The file image of `snapshot`.
pub fn encode_snapshot(snapshot: &Snapshot) -> BytesMut {
    let meta = &snapshot.meta;
    let mut buf = BytesMut::with_capacity(snapshot.data.len() + 64);
    buf.put_u32(SNAPSHOT_MAGIC);
    buf.put_u8(SNAPSHOT_VERSION);
    buf.put_u64(meta.index);
    buf.put_u64(meta.term);
    buf.put_u32(meta.membership.encoded_len() as u32);
    meta.membership.encode(&mut buf);
    buf.put_u64(snapshot.data.len() as u64);
    buf.put_slice(&snapshot.data);
    let crc = crc32c::crc32c(&buf);
    buf.put_u32(crc);
    buf
}

/// What is wrong with a record of the log or a snapshot file: damage a crash cannot explain
/// (a torn tail is not reported, see [`replay`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Corruption {
    /// Shorter than a snapshot's checksum.
    #[error("snapshot file too short")]
    SnapshotTooShort,
    /// The snapshot's checksum does not match.
    #[error("snapshot checksum mismatch")]
    SnapshotChecksum,
    /// Another magic number or version.
    #[error("not a snapshot of version {}", SNAPSHOT_VERSION)]
    SnapshotVersion,
    /// The membership does not decode.
    #[error("malformed snapshot membership")]
    SnapshotMembership,
    /// The data's length, which does not fill the file (or is over the limit).
    #[error("snapshot data of {0} bytes does not fill the file")]
    SnapshotData(u64),
    /// A field cut short.
    #[error("short field")]
    ShortField,
    /// Fewer bytes than a record header.
    #[error("truncated header")]
    TruncatedHeader,
    /// A record length of zero or over the limit.
    #[error("record length {0} out of range")]
    RecordLength(usize),
    /// A record longer than what follows it.
    #[error("record runs past the end")]
    RecordPastEnd,
    /// A record's checksum does not match.
    #[error("checksum mismatch")]
    RecordChecksum,
    /// A hard state record that does not decode.
    #[error("malformed hard state")]
    HardState,
    /// A truncation past the end of the log.
    #[error("truncation at {0} beyond the log")]
    TruncationBeyondLog(Index),
    /// A membership entry that does not decode.
    #[error("malformed membership")]
    Membership,
    /// An entry whose payload does not decode.
    #[error("malformed entry payload")]
    EntryPayload,
    /// An entry that does not follow the last one.
    #[error("entry {index} does not continue a log ending at {last}")]
    OutOfSequence {
        /// The entry's index.
        index: Index,
        /// The log's last index.
        last: Index,
    },
    /// A record kind this version does not write.
    #[error("unknown record kind {0}")]
    UnknownKind(u8),
}

/// The inverse of [`encode_snapshot`]; any damage is an error, never a panic.
pub fn decode_snapshot(bytes: &[u8]) -> Result<Snapshot, Corruption> {
    let (content, crc) = bytes.split_last_chunk::<4>().ok_or(Corruption::SnapshotTooShort)?;
    if crc32c::crc32c(content) != u32::from_be_bytes(*crc) {
        return Err(Corruption::SnapshotChecksum);
    }
    let mut body = content;
    let magic = u32::from_be_bytes(*take::<4>(&mut body)?);
    let version = take::<1>(&mut body)?[0];
    if magic != SNAPSHOT_MAGIC || version != SNAPSHOT_VERSION {
        return Err(Corruption::SnapshotVersion);
    }
    let index = u64_field(&mut body)?;
    let term = u64_field(&mut body)?;
    let len = u32::from_be_bytes(*take::<4>(&mut body)?) as usize;
    let membership = body.get(..len).and_then(Membership::decode).ok_or(Corruption::SnapshotMembership)?;
    body = &body[len..];
    let data_len = u64_field(&mut body)?;
    if data_len > SNAPSHOT_BYTES_MAX || data_len != body.len() as u64 {
        return Err(Corruption::SnapshotData(data_len));
    }
    let data = Bytes::copy_from_slice(body);
    Ok(Snapshot { meta: SnapshotMeta { index, term, membership }, data })
}

fn take<'a, const N: usize>(body: &mut &'a [u8]) -> Result<&'a [u8; N], Corruption> {
    let (head, rest) = body.split_first_chunk::<N>().ok_or(Corruption::ShortField)?;
    *body = rest;
    Ok(head)
}

fn encode_record(buf: &mut BytesMut, kind: u8, body: impl FnOnce(&mut BytesMut)) {
    let start = buf.len();
    buf.put_u32(0);
    buf.put_u32(0);
    buf.put_u8(kind);
    body(buf);
    let len = buf.len() - start - HEADER_BYTES;
    assert!(len <= RECORD_BYTES_MAX, "the core bounds entry sizes");
    let crc = crc32c::crc32c(&buf[start + HEADER_BYTES..]);
    buf[start..start + 4].copy_from_slice(&(len as u32).to_be_bytes());
    buf[start + 4..start + 8].copy_from_slice(&crc.to_be_bytes());
}

/// Replays the records in `bytes` (one segment) into `restored`; returns how many bytes are
/// valid. In the last segment, a damaged record with nothing after it but zeros, or one cut
/// short by the end of the file, is a torn tail; anywhere else damage is corruption, reported
/// as (offset, why). Never panics, whatever the bytes (a fuzz target holds it to that).
pub fn replay(bytes: &[u8], is_last: bool, restored: &mut Restored) -> Result<u64, (usize, Corruption)> {
    let mut offset = 0usize;
    while offset < bytes.len() {
        let damage = match decode_record(&bytes[offset..]) {
            Ok((record_len, kind, body)) => match apply_record(kind, body, restored) {
                Ok(()) => {
                    offset += record_len;
                    continue;
                }
                // A well-framed record that makes no sense is never a torn write.
                Err(why) => return Err((offset, why)),
            },
            Err(damage) => damage,
        };
        let rest_is_blank = bytes[offset..].iter().all(|&b| b == 0);
        if is_last && (rest_is_blank || damage.reaches_end) {
            return Ok(offset as u64);
        }
        return Err((offset, damage.why));
    }
    Ok(offset as u64)
}

struct Damage {
    why: Corruption,
    /// The record runs to (or past) the end of the file: a write cut short.
    reaches_end: bool,
}

/// One record at the start of `bytes`: (its total length, kind, body).
fn decode_record(bytes: &[u8]) -> Result<(usize, u8, &[u8]), Damage> {
    let Some(header) = bytes.get(..HEADER_BYTES) else {
        return Err(Damage { why: Corruption::TruncatedHeader, reaches_end: true });
    };
    let len = u32::from_be_bytes(header[..4].try_into().expect("4 bytes")) as usize;
    let crc = u32::from_be_bytes(header[4..8].try_into().expect("4 bytes"));
    if len == 0 || len > RECORD_BYTES_MAX {
        return Err(Damage { why: Corruption::RecordLength(len), reaches_end: false });
    }
    let Some(content) = bytes.get(HEADER_BYTES..HEADER_BYTES + len) else {
        return Err(Damage { why: Corruption::RecordPastEnd, reaches_end: true });
    };
    if crc32c::crc32c(content) != crc {
        let reaches_end = HEADER_BYTES + len == bytes.len();
        return Err(Damage { why: Corruption::RecordChecksum, reaches_end });
    }
    Ok((HEADER_BYTES + len, content[0], &content[1..]))
}

fn apply_record(kind: u8, mut body: &[u8], restored: &mut Restored) -> Result<(), Corruption> {
    match kind {
        KIND_HARD_STATE => {
            let term = u64_field(&mut body)?;
            let (&voted, rest) = body.split_first().ok_or(Corruption::HardState)?;
            body = rest;
            let vote = u64_field(&mut body)?;
            if !body.is_empty() || voted > 1 {
                return Err(Corruption::HardState);
            }
            restored.hard_state = HardState { term, vote: (voted == 1).then_some(vote) };
        }
        KIND_TRUNCATE => {
            let from = u64_field(&mut body)?;
            let end = restored.entries.last().map_or(Index::MAX, |e| e.index + 1);
            if !body.is_empty() || from == 0 || from > end {
                return Err(Corruption::TruncationBeyondLog(from));
            }
            let first = restored.entries.first().map_or(from, |e| e.index);
            restored.entries.truncate(from.saturating_sub(first) as usize);
        }
        KIND_ENTRY => {
            let index = u64_field(&mut body)?;
            let term = u64_field(&mut body)?;
            let (&payload_kind, rest) = body.split_first().ok_or(Corruption::EntryPayload)?;
            let payload = match payload_kind {
                0 if rest.is_empty() => Payload::Noop,
                1 => Payload::Command(Bytes::copy_from_slice(rest)),
                2 => Payload::Membership(Membership::decode(rest).ok_or(Corruption::Membership)?),
                _ => return Err(Corruption::EntryPayload),
            };
            let next = restored.entries.last().map_or(index, |e| e.index + 1);
            if index == 0 || index != next {
                return Err(Corruption::OutOfSequence { index, last: next - 1 });
            }
            restored.entries.push(Entry { index, term, payload });
        }
        other => return Err(Corruption::UnknownKind(other)),
    }
    Ok(())
}

fn u64_field(body: &mut &[u8]) -> Result<u64, Corruption> {
    let (head, rest) = body.split_first_chunk::<8>().ok_or(Corruption::ShortField)?;
    *body = rest;
    Ok(u64::from_be_bytes(*head))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::PersistId;

    /// A command entry, or a no-op for an empty text.
    fn entry(index: Index, term: u64, text: &'static str) -> Entry {
        match text {
            "" => Entry { index, term, payload: Payload::Noop },
            text => Entry::command(index, term, Bytes::from_static(text.as_bytes())),
        }
    }

    #[test]
    fn records_round_trip_and_every_cut_is_a_torn_tail_or_a_prefix() {
        let persist = Persist {
            id: PersistId::from_raw(1),
            hard_state: Some(HardState { term: 3, vote: Some(2) }),
            snapshot: None,
            truncate_from: None,
            entries: vec![entry(1, 1, ""), entry(2, 3, "put k v")],
        };
        let mut buf = BytesMut::new();
        encode_persist(&persist, &mut buf);
        let mut restored = Restored::default();
        assert_eq!(replay(&buf, true, &mut restored), Ok(buf.len() as u64));
        assert_eq!(
            restored,
            Restored {
                hard_state: persist.hard_state.unwrap(),
                snapshot: None,
                entries: persist.entries.clone()
            }
        );
        // Any crash point: a valid prefix of the records survives, the rest is a torn tail.
        for cut in 0..buf.len() {
            let mut restored = Restored::default();
            let valid = replay(&buf[..cut], true, &mut restored).expect("a cut is a torn tail");
            assert!(valid <= cut as u64);
            assert!(restored.entries.len() <= 2);
            // ... but in an older segment it is corruption.
            if valid < cut as u64 {
                assert!(replay(&buf[..cut], false, &mut Restored::default()).is_err());
            }
        }
    }

    #[test]
    fn well_framed_nonsense_is_corruption_even_at_the_tail() {
        let mut buf = BytesMut::new();
        for index in [1, 5] {
            encode_record(&mut buf, KIND_ENTRY, |b| {
                b.put_u64(index);
                b.put_u64(1);
                b.put_u8(0);
            });
        }
        let second = buf.len() / 2;
        let error = replay(&buf, true, &mut Restored::default()).unwrap_err();
        assert_eq!(error, (second, Corruption::OutOfSequence { index: 5, last: 1 }));
    }

    #[test]
    fn a_log_after_deleted_segments_or_a_reset_starts_anywhere() {
        // The first surviving segment starts mid-log; a truncation at 1 then empties it, and
        // the entries after a leader's snapshot follow.
        let mut buf = BytesMut::new();
        let persist = |truncate_from, entries| Persist {
            id: PersistId::from_raw(1),
            hard_state: None,
            snapshot: None,
            truncate_from,
            entries,
        };
        encode_persist(&persist(None, vec![entry(40, 2, "a"), entry(41, 2, "b")]), &mut buf);
        encode_persist(&persist(Some(41), vec![entry(41, 3, "c")]), &mut buf);
        let mut restored = Restored::default();
        replay(&buf, false, &mut restored).unwrap();
        assert_eq!(restored.entries, [entry(40, 2, "a"), entry(41, 3, "c")]);
        encode_persist(&persist(Some(1), vec![entry(90, 4, "d")]), &mut buf);
        let mut restored = Restored::default();
        replay(&buf, true, &mut restored).unwrap();
        assert_eq!(restored.entries, [entry(90, 4, "d")]);
    }

    #[test]
    fn snapshot_files_round_trip_and_any_damage_is_refused() {
        let snapshot = Snapshot {
            meta: SnapshotMeta {
                index: 77,
                term: 5,
                membership: Membership { voters: [1, 2, 3].into(), learners: [9].into() },
            },
            data: Bytes::from_static(b"the state machine"),
        };
        let bytes = encode_snapshot(&snapshot);
        assert_eq!(decode_snapshot(&bytes), Ok(snapshot));
        for cut in 0..bytes.len() {
            assert!(decode_snapshot(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        for at in [0, 5, 20, bytes.len() - 1] {
            let mut damaged = bytes.to_vec();
            damaged[at] ^= 1;
            assert!(decode_snapshot(&damaged).is_err(), "flip at {at}");
        }
    }
}
