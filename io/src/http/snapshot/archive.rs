//! Consul's snapshot archive, written and read with nothing of HTTP in sight: a gzip'd tar of
//! `meta.json` (Raft's snapshot metadata), `state.bin` (the state machine's snapshot,
//! `Fsm::snapshot`) and `SHA256SUMS` (both members' sums, in `sha256sum`'s format), as consul's
//! `snapshot/archive.go` writes it.
//!
//! Reading is bounded throughout: the decompressed stream at [`Limits::unpacked_bytes_max`]
//! (a compression bomb is refused as soon as it unpacks past it), each member at its own bound,
//! and no buffer sized by a header before the bytes it announces arrive. A refused archive is a
//! [`Refusal`]: the status Consul answers with and its reason, which `super` turns into the
//! HTTP error. Nothing here depends on more than serde, serde_json, postcard, tar, flate2, sha2,
//! bytes and the core, so the fuzz crate compiles this file by path
//! (`fuzz_targets/snapshot_archive.rs`).

use std::io::Read;

use bytes::Bytes;
use flate2::read::MultiGzDecoder;
use flate2::write::GzEncoder;
use flate2::Compression;
use muster_core::fsm::{Fsm, RESTORE_STAGED_BYTES_MAX};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Raft's snapshot metadata as Consul's `meta.json` carries it (hashicorp/raft's
/// `SnapshotMeta`, in its field order, without the peer and configuration fields).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Meta {
    /// The snapshot format's version: 1.
    pub version: u64,
    /// `<term>-<index>-<Unix ms>`, as hashicorp/raft names snapshots.
    #[serde(rename = "ID")]
    pub id: String,
    /// The last index the state includes.
    pub index: u64,
    /// The Raft term when it was taken.
    pub term: u64,
    /// `state.bin`'s length.
    pub size: u64,
}

/// Why an archive is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct Refusal {
    /// The status Consul answers with.
    pub status: Status,
    /// The reason (the whole body of the answer).
    pub reason: String,
}

/// The statuses a refused archive is answered with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// 400: the archive is malformed, damaged or of another version.
    BadRequest,
    /// 413: the archive, or what it unpacks to, is over its bound.
    PayloadTooLarge,
}

impl Refusal {
    fn bad_request(reason: impl Into<String>) -> Refusal {
        Refusal { status: Status::BadRequest, reason: reason.into() }
    }

    fn too_large(reason: impl Into<String>) -> Refusal {
        Refusal { status: Status::PayloadTooLarge, reason: reason.into() }
    }
}

/// The bounds a read keeps to. A restore reads with [`Limits::RESTORE`]; the fuzzer reads with
/// small ones, to reach every bound with small inputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The most bytes the decompressed stream may hold (tar headers and padding included).
    pub unpacked_bytes_max: u64,
    /// The largest `state.bin`.
    pub state_bytes_max: usize,
    /// The largest `meta.json`.
    pub meta_bytes_max: usize,
    /// The largest `SHA256SUMS`.
    pub sums_bytes_max: usize,
}

impl Limits {
    /// What a restore reads: the largest state the state machine stages, with room for the
    /// other members, tar headers and padding (a tar record is 10 KiB at most).
    pub const RESTORE: Limits = Limits {
        unpacked_bytes_max: STATE_BYTES_MAX as u64 + (1 << 20),
        state_bytes_max: STATE_BYTES_MAX,
        meta_bytes_max: META_BYTES_MAX,
        sums_bytes_max: SUMS_BYTES_MAX,
    };
}

/// What an archive's metadata says of it (`muster snapshot inspect`, and the check `muster
/// snapshot save` makes of what it wrote).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveInfo {
    /// `<term>-<index>-<Unix ms>`.
    pub id: String,
    /// `state.bin`'s length in bytes.
    pub size_bytes: u64,
    /// The last Raft index the state includes.
    pub index: u64,
    /// The Raft term it was taken in.
    pub term: u64,
    /// The snapshot format's version.
    pub version: u64,
    /// Each kind of row the state holds (nodes, services, checks, keys, sessions): how many,
    /// and the bytes they take encoded (`snapshot inspect`'s `Type Count Size` table).
    pub kinds: Vec<(&'static str, usize, u64)>,
    /// Every key of the KV store and the bytes its entry takes encoded (`-kvdetails`).
    pub keys: Vec<(String, u64)>,
}

/// The archive of `state` described by `meta`, its members stamped `mtime` (Unix seconds).
pub fn write_archive(meta: &Meta, state: &[u8], mtime: u64) -> std::io::Result<Vec<u8>> {
    // Go's JSON encoder, which writes Consul's, ends the document with a newline.
    let mut meta_json = serde_json::to_vec(meta).expect("metadata serializes");
    meta_json.push(b'\n');
    let sums = format!("{}  {META}\n{}  {STATE}\n", sha256_hex(&meta_json), sha256_hex(state));
    let mut archive = tar::Builder::new(GzEncoder::new(Vec::new(), Compression::default()));
    for (name, data) in [(META, &meta_json[..]), (STATE, state), (SUMS, sums.as_bytes())] {
        let mut header = tar::Header::new_ustar();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_size(data.len() as u64);
        header.set_mode(0o600);
        header.set_mtime(mtime);
        archive.append_data(&mut header, name, data)?;
    }
    archive.into_inner()?.finish()
}

/// Why [`inspect_archive`] found an archive a restore would refuse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InspectError {
    /// The archive itself: its compression, members, sums, metadata or sizes.
    #[error(transparent)]
    Archive(#[from] Refusal),
    /// The state it holds does not decode.
    #[error("failed to decode the state: {0}")]
    State(#[from] muster_core::fsm::SnapshotError),
}

/// Reads and verifies an archive as a restore would (bounds, sums, metadata) without
/// restoring it: its metadata, or the reason a restore would refuse it.
pub fn inspect_archive(archive: &[u8]) -> Result<ArchiveInfo, InspectError> {
    let (meta, state) = read_archive(archive, Limits::RESTORE)?;
    let fsm = Fsm::restore(&state)?;
    let catalog = fsm.catalog();
    // The bytes a row takes encoded, as the state holds it.
    fn encoded<T: Serialize>(row: &T) -> u64 {
        postcard::to_allocvec(row).map_or(0, |bytes| bytes.len() as u64)
    }
    fn kind<T: Serialize>(name: &'static str, rows: &[&T]) -> (&'static str, usize, u64) {
        (name, rows.len(), rows.iter().map(|row| encoded(*row)).sum())
    }
    let nodes = catalog.nodes().1;
    let services: Vec<_> = nodes
        .iter()
        .flat_map(|node| {
            catalog.node_services(&node.node).1.map(|(_, services)| services).unwrap_or_default()
        })
        .collect();
    let entries = fsm.kv().list("").1;
    let kinds = vec![
        kind("Node", &nodes),
        kind("Service", &services),
        kind("Check", &catalog.checks_in_state(None).1),
        kind("KVS", &entries),
        kind("Session", &fsm.sessions().list().1),
    ];
    let keys = entries.iter().map(|entry| (entry.key.clone(), encoded(*entry))).collect();
    Ok(ArchiveInfo {
        id: meta.id,
        size_bytes: meta.size,
        index: meta.index,
        term: meta.term,
        version: meta.version,
        kinds,
        keys,
    })
}

/// The verified metadata and `state.bin` of an archive, or why it is refused, with Consul's
/// messages (400) or a size refusal (413). Nothing in the archive sizes an allocation: every
/// read is bounded by `limits`.
pub fn read_archive(body: &[u8], limits: Limits) -> Result<(Meta, Bytes), Refusal> {
    // Go's gzip reader refuses a stream without the gzip magic up front; flate2 would only say
    // so at the first read, inside the tar reader's error.
    if body.is_empty() {
        return Err(Refusal::bad_request("failed to decompress snapshot: EOF"));
    }
    if !body.starts_with(&GZIP_MAGIC) {
        return Err(Refusal::bad_request("failed to decompress snapshot: gzip: invalid header"));
    }
    let mut unpacked =
        Bounded { inner: MultiGzDecoder::new(body), left: limits.unpacked_bytes_max, exceeded: false };
    let members = read_members(&mut unpacked, limits);
    if unpacked.exceeded {
        return Err(Refusal::too_large(format!(
            "failed to read snapshot file: the archive unpacks to over {} bytes",
            limits.unpacked_bytes_max
        )));
    }
    let members = members?;
    verify(&members).map_err(|reason| {
        Refusal::bad_request(format!(
            "failed to read snapshot file: failed checking integrity of snapshot: {reason}"
        ))
    })?;
    let (Some((meta, _)), Some(state)) = (members.meta, members.state) else {
        unreachable!("verify requires both members")
    };
    if meta.version != META_VERSION {
        return Err(Refusal::bad_request(format!(
            "failed to read snapshot file: unsupported snapshot version {}",
            meta.version
        )));
    }
    if meta.size != state.len() as u64 {
        return Err(Refusal::bad_request(format!(
            "Raft error when restoring snapshot: failed to write snapshot, size didn't match ({} != {})",
            state.len(),
            meta.size
        )));
    }
    Ok((meta, Bytes::from(state)))
}

/// The members of an archive as read so far.
#[derive(Default)]
struct Members {
    meta: Option<(Meta, Vec<u8>)>,
    state: Option<Vec<u8>>,
    sums: Option<Vec<u8>>,
}

/// Reads the tar inside the gzip stream, then the rest of the stream, which Consul requires to
/// end cleanly (the gzip trailer's checksum is checked only at its end). What follows the
/// archive's end must be zeros: the second end-of-archive block and any record padding.
fn read_members(unpacked: &mut Bounded<MultiGzDecoder<&[u8]>>, limits: Limits) -> Result<Members, Refusal> {
    let failed = |reason: String| Refusal::bad_request(format!("failed to read snapshot file: {reason}"));
    let mut archive = tar::Archive::new(unpacked);
    let mut members = Members::default();
    let entries =
        archive.entries().map_err(|error| failed(format!("failed reading snapshot: {}", go(&error))))?;
    for entry in entries {
        let mut entry = entry.map_err(|error| failed(format!("failed reading snapshot: {}", go(&error))))?;
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let duplicate = match name.as_str() {
            META => members.meta.is_some(),
            STATE => members.state.is_some(),
            SUMS => members.sums.is_some(),
            _ => return Err(failed(format!("unexpected file {name:?} in snapshot"))),
        };
        if duplicate {
            return Err(failed(format!("duplicate file {name:?} in snapshot")));
        }
        match name.as_str() {
            META => {
                let bytes = read_member(&mut entry, limits.meta_bytes_max)
                    .map_err(|error| failed(format!("failed to decode snapshot metadata: {error}")))?;
                let meta = serde_json::from_slice::<Meta>(&bytes)
                    .map_err(|error| failed(format!("failed to decode snapshot metadata: {error}")))?;
                members.meta = Some((meta, bytes));
            }
            STATE => match read_member(&mut entry, limits.state_bytes_max) {
                Ok(bytes) => members.state = Some(bytes),
                Err(MemberError::TooLarge) => {
                    return Err(Refusal::too_large(format!(
                        "failed to read snapshot file: {STATE} is over {} bytes, the most a restore can \
                         carry",
                        limits.state_bytes_max
                    )))
                }
                Err(error) => return Err(failed(format!("failed to read or write snapshot data: {error}"))),
            },
            _ => {
                let bytes = read_member(&mut entry, limits.sums_bytes_max)
                    .map_err(|error| failed(format!("failed to read snapshot hashes: {error}")))?;
                members.sums = Some(bytes);
            }
        }
    }
    let mut rest = Vec::new();
    archive
        .into_inner()
        .read_to_end(&mut rest)
        .map_err(|error| Refusal::bad_request(format!("failed to decompress snapshot: {}", go(&error))))?;
    if rest.iter().any(|&byte| byte != 0) {
        return Err(Refusal::bad_request(format!("{} unread uncompressed bytes remain", rest.len())));
    }
    Ok(members)
}

/// Why a member could not be read.
#[derive(Debug, thiserror::Error)]
enum MemberError {
    #[error("over the size limit")]
    TooLarge,
    #[error("{}", go(.0))]
    Io(#[from] std::io::Error),
}

/// An I/O error as Go words the common one (Consul's messages embed Go's).
fn go(error: &std::io::Error) -> String {
    match error.kind() {
        std::io::ErrorKind::UnexpectedEof => "unexpected EOF".to_owned(),
        _ => error.to_string(),
    }
}

/// A member's bytes, at most `max` of them whatever its header claims: a header claiming more
/// is refused before anything is read, and one claiming less than `max` but more than arrives
/// costs only what arrives (the buffer grows with the bytes, from [`member_buffer`]) and is
/// refused as cut short.
fn read_member<R: Read>(entry: &mut tar::Entry<'_, R>, max: usize) -> Result<Vec<u8>, MemberError> {
    let declared = entry.header().size().unwrap_or(u64::MAX);
    if declared > max as u64 {
        return Err(MemberError::TooLarge);
    }
    let mut bytes = member_buffer(declared);
    entry.take(max as u64 + 1).read_to_end(&mut bytes)?;
    if bytes.len() > max {
        return Err(MemberError::TooLarge);
    }
    // The tar ended inside the member (a clean gzip stream that stops short): as Go's tar
    // reader says it.
    if (bytes.len() as u64) < declared {
        return Err(MemberError::Io(std::io::ErrorKind::UnexpectedEof.into()));
    }
    Ok(bytes)
}

/// The buffer a member of `declared` bytes is read into: sized for it up to
/// [`MEMBER_CAPACITY_INITIAL`], beyond which it grows as the bytes arrive.
fn member_buffer(declared: u64) -> Vec<u8> {
    let capacity = usize::try_from(declared).unwrap_or(usize::MAX).min(MEMBER_CAPACITY_INITIAL);
    Vec::with_capacity(capacity)
}

/// Why `SHA256SUMS` does not vouch for the members, in Consul's `DecodeAndVerify` words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum SumsError {
    #[error("SHA256SUMS is not text")]
    NotText,
    #[error("malformed line {0:?}")]
    Malformed(String),
    #[error("list missing hash for {0:?}")]
    Unlisted(String),
    #[error("hash check failed for {0:?}")]
    Mismatch(String),
    #[error("file missing for {0:?}")]
    Missing(&'static str),
}

/// Checks `SHA256SUMS` against the members, as Consul's `DecodeAndVerify`: every line names a
/// member and its sum, and both members are listed.
fn verify(members: &Members) -> Result<(), SumsError> {
    let meta = members.meta.as_ref().map_or(&[][..], |(_, bytes)| &bytes[..]);
    let state = members.state.as_deref().unwrap_or_default();
    let sums = members.sums.as_deref().unwrap_or_default();
    let text = std::str::from_utf8(sums).map_err(|_| SumsError::NotText)?;
    let mut seen = [false, false];
    for line in text.lines() {
        let (sum, name) = match line.split_whitespace().collect::<Vec<_>>()[..] {
            [sum, name] if sum.len() == 64 && sum.bytes().all(|b| b.is_ascii_hexdigit()) => (sum, name),
            _ => return Err(SumsError::Malformed(line.to_owned())),
        };
        let (slot, data) = match name {
            META => (0, meta),
            STATE => (1, state),
            other => return Err(SumsError::Unlisted(other.to_owned())),
        };
        if !sum.eq_ignore_ascii_case(&sha256_hex(data)) {
            return Err(SumsError::Mismatch(name.to_owned()));
        }
        seen[slot] = true;
    }
    for (listed, name) in seen.into_iter().zip([META, STATE]) {
        if !listed {
            return Err(SumsError::Missing(name));
        }
    }
    if members.meta.is_none() || members.state.is_none() {
        let name = if members.meta.is_none() { META } else { STATE };
        return Err(SumsError::Missing(name));
    }
    Ok(())
}

/// A reader that fails, and says so, past `left` bytes.
struct Bounded<R> {
    inner: R,
    left: u64,
    exceeded: bool,
}

impl<R: Read> Read for Bounded<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.left == 0 {
            // At the bound: one more byte means the stream is over it.
            let mut probe = [0u8; 1];
            return match self.inner.read(&mut probe)? {
                0 => Ok(0),
                _ => {
                    self.exceeded = true;
                    Err(std::io::Error::other("over the size limit"))
                }
            };
        }
        let room = usize::try_from(self.left).unwrap_or(usize::MAX).min(buf.len());
        let read = self.inner.read(&mut buf[..room])?;
        self.left -= read as u64;
        Ok(read)
    }
}

fn sha256_hex(data: &[u8]) -> String {
    format!("{:x}", Sha256::digest(data))
}

const META: &str = "meta.json";
const STATE: &str = "state.bin";
const SUMS: &str = "SHA256SUMS";

/// hashicorp/raft's snapshot format version, the only one.
pub const META_VERSION: u64 = 1;

/// The gzip magic (RFC 1952).
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// The largest `state.bin` a restore reads: what the state machine stages.
const STATE_BYTES_MAX: usize = RESTORE_STAGED_BYTES_MAX as usize;

/// The largest `meta.json` (Consul's, with its Raft configuration, is under a kilobyte for small
/// clusters).
const META_BYTES_MAX: usize = 64 << 10;

/// The largest `SHA256SUMS` (two lines of about 80 bytes).
const SUMS_BYTES_MAX: usize = 4 << 10;

/// The most a member's buffer holds before its bytes arrive: a header may claim up to its
/// member's bound (512 MiB for `state.bin`) in an archive of a few hundred bytes, so what it
/// claims sizes the buffer only this far.
const MEMBER_CAPACITY_INITIAL: usize = 1 << 20;

const _: () = assert!(META_BYTES_MAX + SUMS_BYTES_MAX < 1 << 20);

#[cfg(test)]
mod tests {
    use super::*;

    /// A gzip'd tar of `members` as given: headers claim `claimed` bytes (or each member's own
    /// length), and the archive ends where the data does.
    fn pack(members: &[(&str, &[u8], Option<u64>)]) -> Vec<u8> {
        let mut tar = Vec::new();
        for (name, data, claimed) in members {
            let mut header = tar::Header::new_ustar();
            header.set_entry_type(tar::EntryType::Regular);
            header.set_path(name).unwrap();
            header.set_size(claimed.unwrap_or(data.len() as u64));
            header.set_mode(0o600);
            header.set_cksum();
            tar.extend_from_slice(header.as_bytes());
            tar.extend_from_slice(data);
            tar.resize(tar.len().next_multiple_of(512), 0);
        }
        let mut gz = GzEncoder::new(Vec::new(), Compression::default());
        std::io::Write::write_all(&mut gz, &tar).unwrap();
        gz.finish().unwrap()
    }

    fn meta(state: &[u8]) -> Meta {
        Meta {
            version: META_VERSION,
            id: "2-10-1700000000000".into(),
            index: 10,
            term: 2,
            size: state.len() as u64,
        }
    }

    #[test]
    fn an_archive_written_reads_back_and_inspects() {
        let state = Fsm::new().snapshot();
        let archive = write_archive(&meta(&state), &state, 1_700_000_000).unwrap();
        let (read, restored) = read_archive(&archive, Limits::RESTORE).unwrap();
        assert_eq!(read, meta(&state));
        assert_eq!(&restored[..], &state[..]);
        let info = inspect_archive(&archive).unwrap();
        assert_eq!((info.index, info.term, info.size_bytes), (10, 2, state.len() as u64));
    }

    /// A header may claim up to its member's bound in an archive of a few hundred bytes: the
    /// claim alone must not size a buffer (it once reserved all 512 MiB a state may take).
    #[test]
    fn a_header_claiming_a_large_member_reserves_no_more_than_arrives() {
        assert!(member_buffer(STATE_BYTES_MAX as u64).capacity() <= MEMBER_CAPACITY_INITIAL);
        assert!(member_buffer(u64::MAX).capacity() <= MEMBER_CAPACITY_INITIAL);
        assert_eq!(member_buffer(100).capacity(), 100);
        let archive = pack(&[(STATE, b"", Some(STATE_BYTES_MAX as u64))]);
        assert!(archive.len() < 200, "{} bytes", archive.len());
        let refused = read_archive(&archive, Limits::RESTORE).unwrap_err();
        assert_eq!(
            refused,
            Refusal::bad_request(
                "failed to read snapshot file: failed to read or write snapshot data: unexpected EOF"
            )
        );
    }

    #[test]
    fn a_compression_bomb_is_refused_at_its_bound() {
        let zeros = vec![0u8; 1 << 20];
        let archive = pack(&[(STATE, &zeros, None)]);
        assert!(archive.len() < 4 << 10, "{} bytes", archive.len());
        let small = Limits { unpacked_bytes_max: 64 << 10, state_bytes_max: 2 << 20, ..Limits::RESTORE };
        let refused = read_archive(&archive, small).unwrap_err();
        assert_eq!(refused.status, Status::PayloadTooLarge);
        assert_eq!(refused.reason, "failed to read snapshot file: the archive unpacks to over 65536 bytes");
    }
}
