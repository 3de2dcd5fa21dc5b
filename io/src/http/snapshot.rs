//! `/v1/snapshot`: the whole replicated state as Consul's snapshot archive, and a restore from
//! one (`../shared/reference/consul-behaviour.md` §1.7; consul `snapshot/archive.go`).
//!
//! The archive is a gzip'd tar of three members, as Consul writes it: `meta.json` (Raft's
//! snapshot metadata: `Version`, `ID`, `Index`, `Term`, `Size`), `state.bin` (the state
//! machine's own snapshot, `Fsm::snapshot`) and `SHA256SUMS` (both members' sums, in
//! `sha256sum`'s format). A restore reads the archive within fixed bounds, checks the sums and
//! the metadata, then proposes `Command::Restore` through Raft, so every server installs the
//! state at the same index. A `state.bin` over one entry ([`RESTORE_BYTES_MAX`]) goes as
//! `Command::RestoreChunk`s, one after another, each waited for; the last one restores. The
//! archive is at most [`ARCHIVE_BYTES_MAX`] (64 MiB, as a server forwards it whole to the
//! leader), the state inside it at most [`RESTORE_STAGED_BYTES_MAX`] (512 MiB, reachable when it
//! compresses 8:1 or better, as KV data usually does). One restore runs at a time per server.

use std::io::Read;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use flate2::read::MultiGzDecoder;
use flate2::write::GzEncoder;
use flate2::Compression;
use muster_core::fsm::{
    Command, Fsm, Restore, RestoreAbort, RestoreChunk, RESTORE_BYTES_MAX, RESTORE_CHUNK_BYTES_MAX,
    RESTORE_STAGED_BYTES_MAX,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{Api, HttpError, Query};

pub(super) fn routes() -> Router<Arc<Api>> {
    Router::new().route("/v1/snapshot", get(save).put(restore))
}

/// Raft's snapshot metadata as Consul's `meta.json` carries it (hashicorp/raft's
/// `SnapshotMeta`, in its field order, without the peer and configuration fields).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Meta {
    /// The snapshot format's version: 1.
    version: u64,
    /// `<term>-<index>-<Unix ms>`, as hashicorp/raft names snapshots.
    #[serde(rename = "ID")]
    id: String,
    /// The last index the state includes.
    index: u64,
    /// The Raft term when it was taken.
    term: u64,
    /// `state.bin`'s length.
    size: u64,
}

/// `GET`: the archive of this server's state (`?stale` lets a follower answer).
async fn save(State(api): State<Arc<Api>>, RawQuery(raw): RawQuery) -> Response {
    let query = Query::parse(raw.as_deref());
    match save_inner(&api, &query).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

async fn save_inner(api: &Api, query: &Query) -> Result<Response, HttpError> {
    api.prepare_read(query).await?;
    // A clone is O(1): the state is encoded and compressed off the lock and off the runtime.
    let consensus = api.consensus()?;
    let fsm = consensus.store.read(Fsm::clone);
    let index = fsm.applied();
    let term = consensus.raft.status().term;
    let created_ms = unix_ms();
    let archive = tokio::task::spawn_blocking(move || {
        // Pieces of a restore in progress are no part of what a user saves.
        let state = fsm.without_staged_restore().snapshot();
        let meta = Meta {
            version: META_VERSION,
            id: format!("{term}-{index}-{created_ms}"),
            index,
            term,
            size: state.len() as u64,
        };
        write_archive(&meta, &state, created_ms / 1000)
    })
    .await
    .map_err(|error| HttpError::internal(format!("failed to write snapshot file: {error}")))?
    .map_err(|error| HttpError::internal(format!("failed to write snapshot file: {error}")))?;
    let mut headers = api.meta_headers(index);
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/x-gzip"));
    Ok((headers, archive).into_response())
}

/// `PUT`: replaces the state with an archive's, through Raft; 200 with an empty body.
async fn restore(
    State(api): State<Arc<Api>>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let query = Query::parse(raw.as_deref());
    match restore_inner(&api, &query, &headers, body).await {
        Ok(()) => StatusCode::OK.into_response(),
        Err(error) => error.into_response(),
    }
}

async fn restore_inner(api: &Api, query: &Query, headers: &HeaderMap, body: Body) -> Result<(), HttpError> {
    api.check_datacenter(query)?;
    // One restore at a time on this server: each holds an archive and a whole state in memory,
    // and a second one's first piece would end the first one's staging anyway.
    static RESTORING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let _restoring = RESTORING.lock().await;
    let body = read_body(headers, body).await?;
    let state = tokio::task::spawn_blocking(move || read_archive(&body).map(|(_, state)| state))
        .await
        .map_err(|error| HttpError::internal(format!("failed to read snapshot file: {error}")))??;
    if state.len() <= RESTORE_BYTES_MAX {
        api.write(&Command::Restore(Restore { state })).await?;
    } else {
        write_in_pieces(api, &state).await?;
    }
    // The leader's session timers follow the restored sessions, each from a full period (as on
    // gaining leadership: renewals before the restore say nothing about these sessions).
    if let Some(consensus) = &api.consensus {
        super::session::rearm_ttl_timers(consensus);
    }
    Ok(())
}

/// Proposes `state` as restore pieces, in order, each committed before the next. Another
/// restore starting meanwhile makes the next piece fail (and wins); a leader lost meanwhile
/// fails this one with what the write said. A failed restore's pieces are dropped with a
/// `RestoreAbort` (if that write fails too, or this server dies, they stay staged until the
/// next restore replaces them).
async fn write_in_pieces(api: &Api, state: &Bytes) -> Result<(), HttpError> {
    let id = restore_id();
    let total = state.len() as u64;
    let mut offset = 0;
    while offset < state.len() {
        let end = (offset + RESTORE_CHUNK_BYTES_MAX).min(state.len());
        let bytes = state.slice(offset..end);
        let piece = Command::RestoreChunk(RestoreChunk { id, offset: offset as u64, total, bytes });
        if let Err(error) = api.write(&piece).await {
            if offset > 0 {
                if let Err(abort) = api.write(&Command::RestoreAbort(RestoreAbort { id })).await {
                    tracing::warn!(reason = %abort.reason, "agent.server.snapshot: a failed restore's pieces stay staged");
                }
            }
            return Err(error);
        }
        tracing::debug!(offset = end, total, "agent.server.snapshot: restore piece committed");
        offset = end;
    }
    Ok(())
}

/// An ID for one restore's pieces: distinct from another restore's with overwhelming odds.
fn restore_id() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(unix_ms())
}

/// Reads a whole archive, refusing one over [`ARCHIVE_BYTES_MAX`].
async fn read_body(headers: &HeaderMap, body: Body) -> Result<Bytes, HttpError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|text| text.parse::<u64>().ok());
    if let Some(length) = declared.filter(|&length| length > ARCHIVE_BYTES_MAX as u64) {
        return Err(too_large(format!(
            "Snapshot archive is too large ({length} > {ARCHIVE_BYTES_MAX} bytes)"
        )));
    }
    axum::body::to_bytes(body, ARCHIVE_BYTES_MAX)
        .await
        .map_err(|_| too_large(format!("Snapshot archive is too large (over {ARCHIVE_BYTES_MAX} bytes)")))
}

/// The archive of `state` described by `meta`, its members stamped `mtime` (Unix seconds).
fn write_archive(meta: &Meta, state: &[u8], mtime: u64) -> std::io::Result<Vec<u8>> {
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

/// The members of an archive as read so far.
#[derive(Default)]
struct Members {
    meta: Option<(Meta, Vec<u8>)>,
    state: Option<Vec<u8>>,
    sums: Option<Vec<u8>>,
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
    /// How many of each kind of row the state holds: nodes, services, checks, keys, sessions.
    pub counts: Vec<(&'static str, usize)>,
}

/// Reads and verifies an archive as a restore would (bounds, sums, metadata) without
/// restoring it: its metadata, or the reason a restore would refuse it.
pub fn inspect_archive(archive: &[u8]) -> Result<ArchiveInfo, String> {
    let (meta, state) = read_archive(archive).map_err(|error| error.reason)?;
    let fsm = Fsm::restore(&state).map_err(|error| format!("failed to decode the state: {error}"))?;
    let catalog = fsm.catalog();
    let nodes = catalog.nodes().1;
    let services: usize = nodes
        .iter()
        .map(|node| catalog.node_services(&node.node).1.map_or(0, |(_, services)| services.len()))
        .sum();
    let counts = vec![
        ("Node", nodes.len()),
        ("Service", services),
        ("Check", catalog.checks_in_state(None).1.len()),
        ("KVS", fsm.kv().len()),
        ("Session", fsm.sessions().len()),
    ];
    Ok(ArchiveInfo {
        id: meta.id,
        size_bytes: meta.size,
        index: meta.index,
        term: meta.term,
        version: meta.version,
        counts,
    })
}

/// The verified metadata and `state.bin` of an archive, or why it is refused, with Consul's
/// messages (400) or a size refusal (413). Nothing in the archive sizes an allocation: every
/// read is bounded.
fn read_archive(body: &[u8]) -> Result<(Meta, Bytes), HttpError> {
    // Go's gzip reader refuses a stream without the gzip magic up front; flate2 would only say
    // so at the first read, inside the tar reader's error.
    if body.is_empty() {
        return Err(HttpError::bad_request("failed to decompress snapshot: EOF"));
    }
    if !body.starts_with(&GZIP_MAGIC) {
        return Err(HttpError::bad_request("failed to decompress snapshot: gzip: invalid header"));
    }
    let mut unpacked =
        Bounded { inner: MultiGzDecoder::new(body), left: UNPACKED_BYTES_MAX, exceeded: false };
    let members = read_members(&mut unpacked);
    if unpacked.exceeded {
        return Err(too_large(format!(
            "failed to read snapshot file: the archive unpacks to over {UNPACKED_BYTES_MAX} bytes"
        )));
    }
    let members = members?;
    verify(&members).map_err(|reason| {
        HttpError::bad_request(format!(
            "failed to read snapshot file: failed checking integrity of snapshot: {reason}"
        ))
    })?;
    let (Some((meta, _)), Some(state)) = (members.meta, members.state) else {
        unreachable!("verify requires both members")
    };
    if meta.version != META_VERSION {
        return Err(HttpError::bad_request(format!(
            "failed to read snapshot file: unsupported snapshot version {}",
            meta.version
        )));
    }
    if meta.size != state.len() as u64 {
        return Err(HttpError::bad_request(format!(
            "Raft error when restoring snapshot: failed to write snapshot, size didn't match ({} != {})",
            state.len(),
            meta.size
        )));
    }
    Ok((meta, Bytes::from(state)))
}

/// Reads the tar inside the gzip stream, then the rest of the stream, which Consul requires to
/// end cleanly (the gzip trailer's checksum is checked only at its end). What follows the
/// archive's end must be zeros: the second end-of-archive block and any record padding.
fn read_members(unpacked: &mut Bounded<MultiGzDecoder<&[u8]>>) -> Result<Members, HttpError> {
    let failed = |reason: String| HttpError::bad_request(format!("failed to read snapshot file: {reason}"));
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
                let bytes = read_member(&mut entry, META_BYTES_MAX)
                    .map_err(|error| failed(format!("failed to decode snapshot metadata: {error}")))?;
                let meta = serde_json::from_slice::<Meta>(&bytes)
                    .map_err(|error| failed(format!("failed to decode snapshot metadata: {error}")))?;
                members.meta = Some((meta, bytes));
            }
            STATE => match read_member(&mut entry, STATE_BYTES_MAX) {
                Ok(bytes) => members.state = Some(bytes),
                Err(MemberError::TooLarge) => {
                    return Err(too_large(format!(
                        "failed to read snapshot file: {STATE} is over {STATE_BYTES_MAX} bytes, the most a \
                         restore can carry"
                    )))
                }
                Err(error) => return Err(failed(format!("failed to read or write snapshot data: {error}"))),
            },
            _ => {
                let bytes = read_member(&mut entry, SUMS_BYTES_MAX)
                    .map_err(|error| failed(format!("failed to read snapshot hashes: {error}")))?;
                members.sums = Some(bytes);
            }
        }
    }
    let mut rest = Vec::new();
    archive
        .into_inner()
        .read_to_end(&mut rest)
        .map_err(|error| HttpError::bad_request(format!("failed to decompress snapshot: {}", go(&error))))?;
    if rest.iter().any(|&byte| byte != 0) {
        return Err(HttpError::bad_request(format!("{} unread uncompressed bytes remain", rest.len())));
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
/// is refused before anything is read, so a small upload cannot make a large allocation.
fn read_member<R: Read>(entry: &mut tar::Entry<'_, R>, max: usize) -> Result<Vec<u8>, MemberError> {
    let declared = entry.header().size().unwrap_or(u64::MAX);
    if declared > max as u64 {
        return Err(MemberError::TooLarge);
    }
    let mut bytes = Vec::with_capacity(usize::try_from(declared).unwrap_or(0));
    entry.take(max as u64 + 1).read_to_end(&mut bytes)?;
    if bytes.len() > max {
        return Err(MemberError::TooLarge);
    }
    Ok(bytes)
}

/// Checks `SHA256SUMS` against the members, as Consul's `DecodeAndVerify`: every line names a
/// member and its sum, and both members are listed.
fn verify(members: &Members) -> Result<(), String> {
    let meta = members.meta.as_ref().map_or(&[][..], |(_, bytes)| &bytes[..]);
    let state = members.state.as_deref().unwrap_or_default();
    let sums = members.sums.as_deref().unwrap_or_default();
    let text = std::str::from_utf8(sums).map_err(|_| "SHA256SUMS is not text".to_owned())?;
    let mut seen = [false, false];
    for line in text.lines() {
        let (sum, name) = match line.split_whitespace().collect::<Vec<_>>()[..] {
            [sum, name] if sum.len() == 64 && sum.bytes().all(|b| b.is_ascii_hexdigit()) => (sum, name),
            _ => return Err(format!("malformed line {line:?}")),
        };
        let (slot, data) = match name {
            META => (0, meta),
            STATE => (1, state),
            other => return Err(format!("list missing hash for {other:?}")),
        };
        if !sum.eq_ignore_ascii_case(&sha256_hex(data)) {
            return Err(format!("hash check failed for {name:?}"));
        }
        seen[slot] = true;
    }
    for (listed, name) in seen.into_iter().zip([META, STATE]) {
        if !listed {
            return Err(format!("file missing for {name:?}"));
        }
    }
    if members.meta.is_none() || members.state.is_none() {
        let name = if members.meta.is_none() { META } else { STATE };
        return Err(format!("file missing for {name:?}"));
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

fn too_large(reason: String) -> HttpError {
    HttpError { status: StatusCode::PAYLOAD_TOO_LARGE, reason }
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| u64::try_from(since.as_millis()).unwrap_or(u64::MAX))
}

const META: &str = "meta.json";
const STATE: &str = "state.bin";
const SUMS: &str = "SHA256SUMS";

/// hashicorp/raft's snapshot format version, the only one.
const META_VERSION: u64 = 1;

/// The gzip magic (RFC 1952).
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// The largest archive a restore reads (a server forwards a body this large to the leader);
/// anything larger is refused before it is decompressed.
pub const ARCHIVE_BYTES_MAX: usize = 64 << 20;

/// The largest `state.bin` a restore reads: what the state machine stages.
const STATE_BYTES_MAX: usize = RESTORE_STAGED_BYTES_MAX as usize;

/// The most bytes the decompressed archive may hold: the largest state, with room for the
/// other members, tar headers and padding (a tar record is 10 KiB at most).
const UNPACKED_BYTES_MAX: u64 = STATE_BYTES_MAX as u64 + (1 << 20);

/// The largest `meta.json` (Consul's, with its Raft configuration, is under a kilobyte for small
/// clusters).
const META_BYTES_MAX: usize = 64 << 10;

/// The largest `SHA256SUMS` (two lines of about 80 bytes).
const SUMS_BYTES_MAX: usize = 4 << 10;

const _: () = assert!(META_BYTES_MAX + SUMS_BYTES_MAX < 1 << 20);
