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
//! leader), the state inside it at most [`muster_core::fsm::RESTORE_STAGED_BYTES_MAX`] (512 MiB,
//! reachable when it compresses 8:1 or better, as KV data usually does). One restore runs at a
//! time per server.
//!
//! Writing and reading the archive is in [`archive`], which knows nothing of HTTP (the fuzz
//! crate compiles it alone); this module serves it and turns its refusals into [`HttpError`]s.

mod archive;

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use muster_core::fsm::{
    Command, Fsm, Restore, RestoreAbort, RestoreChunk, RESTORE_BYTES_MAX, RESTORE_CHUNK_BYTES_MAX,
};

pub use self::archive::{inspect_archive, ArchiveInfo, InspectError};
use self::archive::{read_archive, write_archive, Limits, Meta, Refusal, META_VERSION};
use super::{Api, HttpError, Query};

pub(super) fn routes() -> Router<Arc<Api>> {
    Router::new().route("/v1/snapshot", get(save).put(restore))
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
    let state =
        tokio::task::spawn_blocking(move || read_archive(&body, Limits::RESTORE).map(|(_, state)| state))
            .await
            .map_err(|error| HttpError::internal(format!("failed to read snapshot file: {error}")))??;
    if state.len() <= RESTORE_BYTES_MAX {
        api.write(&Command::Restore(Restore { state })).await?;
    } else {
        write_in_pieces(api, &state).await?;
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
    crate::consensus::random_u64()
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

impl From<Refusal> for HttpError {
    fn from(refusal: Refusal) -> HttpError {
        let status = match refusal.status {
            archive::Status::BadRequest => StatusCode::BAD_REQUEST,
            archive::Status::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        };
        HttpError { status, reason: refusal.reason }
    }
}

fn too_large(reason: String) -> HttpError {
    HttpError { status: StatusCode::PAYLOAD_TOO_LARGE, reason }
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| u64::try_from(since.as_millis()).unwrap_or(u64::MAX))
}

/// The largest archive a restore reads (a server forwards a body this large to the leader);
/// anything larger is refused before it is decompressed.
pub const ARCHIVE_BYTES_MAX: usize = 64 << 20;
