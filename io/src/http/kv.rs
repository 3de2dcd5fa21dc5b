//! `/v1/kv/<key>`: GET (one key, `?recurse`, `?keys` with `?separator`, `?raw`), PUT (`?flags`,
//! `?cas`, `?acquire`, `?release`) and DELETE (`?recurse`, `?cas`), as consul
//! `agent/kvs_endpoint.go` answers them (`../shared/reference/consul-behaviour.md` §1.1).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use base64::Engine;
use bytes::Bytes;
use muster_core::acl::Permission;
use muster_core::fsm::{
    Command, KvCas, KvDelete, KvDeleteCas, KvDeleteTree, KvEntry, KvLock, KvSet, KvUnlock,
    Response as FsmResponse, WatchTarget, VALUE_BYTES_MAX,
};
use serde::Serialize;

use super::{json, Access, Api, HttpError, Query};

/// The largest refused body still read to its end before answering (see `read_value`).
const OVERSIZED_DRAIN_BYTES_MAX: u64 = 4 << 20;

/// Where Consul's refusal of a large value points.
const VALUE_SIZE_DOCS: &str =
    "https://developer.hashicorp.com/docs/agent/config/config-files#kv_max_value_size";

pub(super) fn routes() -> Router<Arc<Api>> {
    // The empty key (`/v1/kv/?recurse`, `/v1/kv/?keys`) has no path segment to capture.
    let root = get(|state: State<Arc<Api>>, access: Access, query: RawQuery| {
        get_kv(state, access, Path(String::new()), query)
    })
    .put(|state: State<Arc<Api>>, access: Access, headers: HeaderMap, query: RawQuery, body: Body| {
        put_kv(state, access, Path(String::new()), headers, query, body)
    })
    .delete(|state: State<Arc<Api>>, access: Access, query: RawQuery| {
        delete_kv(state, access, Path(String::new()), query)
    });
    Router::new()
        .route("/v1/kv", root.clone())
        .route("/v1/kv/", root)
        .route("/v1/kv/{*key}", get(get_kv).put(put_kv).delete(delete_kv))
}

/// Consul's `DirEntry`, field for field and in its order.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct DirEntry<'a> {
    lock_index: u64,
    key: &'a str,
    flags: u64,
    /// Base64, or `null` when empty.
    value: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    session: Option<&'a str>,
    create_index: u64,
    modify_index: u64,
}

impl<'a> From<&'a KvEntry> for DirEntry<'a> {
    fn from(entry: &'a KvEntry) -> DirEntry<'a> {
        DirEntry {
            lock_index: entry.lock_index,
            key: &entry.key,
            flags: entry.flags,
            value: (!entry.value.is_empty())
                .then(|| base64::engine::general_purpose::STANDARD.encode(&entry.value)),
            session: entry.session.as_deref(),
            create_index: entry.create_index,
            modify_index: entry.modify_index,
        }
    }
}

/// What a KV read found.
enum Found {
    Entries(Vec<KvEntry>),
    Keys(Vec<String>),
}

impl Found {
    /// Only what the caller may read (Consul filters lists rather than refusing them), and
    /// whether anything was left out.
    fn readable(self, access: &Access) -> (Found, bool) {
        match self {
            Found::Entries(mut entries) => {
                let before = entries.len();
                entries.retain(|entry| access.allows(Permission::KeyRead(&entry.key)));
                let removed = entries.len() != before;
                (Found::Entries(entries), removed)
            }
            Found::Keys(mut keys) => {
                let before = keys.len();
                keys.retain(|key| access.allows(Permission::KeyRead(key)));
                let removed = keys.len() != before;
                (Found::Keys(keys), removed)
            }
        }
    }
}

async fn get_kv(
    State(api): State<Arc<Api>>,
    access: Access,
    Path(key): Path<String>,
    RawQuery(raw): RawQuery,
) -> Response {
    let query = Query::parse(raw.as_deref());
    match get_kv_inner(&api, &access, key, &query).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

async fn get_kv_inner(api: &Api, access: &Access, key: String, query: &Query) -> Result<Response, HttpError> {
    let keys = query.has("keys");
    let recurse = query.has("recurse");
    if key.is_empty() && !keys && !recurse {
        return Err(HttpError::bad_request("Missing key name"));
    }
    if !keys && !recurse {
        access.require(Permission::KeyRead(&key))?;
    }
    let options = api.prepare_read(query).await?;
    // Go's `Get` of the historic misspelling first, then the right one wins.
    let separator = query.get("separator").or(query.get("seperator")).map(str::to_owned);
    let target =
        if keys || recurse { WatchTarget::Prefix(key.clone()) } else { WatchTarget::Key(key.clone()) };
    let (index, found) = api
        .read(
            options,
            || vec![target.clone()],
            |fsm| {
                let kv = fsm.kv();
                if keys {
                    let (index, keys) = kv.keys(&key, separator.as_deref());
                    (index, Found::Keys(keys))
                } else if recurse {
                    let (index, entries) = kv.list(&key);
                    (index, Found::Entries(entries.into_iter().cloned().collect()))
                } else {
                    let (index, entry) = kv.get(&key);
                    (index, Found::Entries(entry.into_iter().cloned().collect()))
                }
            },
        )
        .await?;
    let (found, removed) = found.readable(access);
    let mut headers = api.meta_headers(index);
    access.filtered_header(removed, &mut headers);
    let response = match found {
        // The root answers an empty list; any other prefix without keys is not found.
        Found::Keys(keys) if keys.is_empty() && !key.is_empty() => {
            (StatusCode::NOT_FOUND, headers).into_response()
        }
        Found::Keys(keys) => {
            let (json_headers, body) = json(query, &keys);
            (headers, json_headers, body).into_response()
        }
        Found::Entries(entries) if entries.is_empty() => (StatusCode::NOT_FOUND, headers).into_response(),
        Found::Entries(entries) if query.has("raw") && !recurse => {
            let mut raw_headers = HeaderMap::new();
            raw_headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
            raw_headers.insert("X-Content-Type-Options", HeaderValue::from_static("nosniff"));
            raw_headers.insert("Content-Security-Policy", HeaderValue::from_static("sandbox"));
            (headers, raw_headers, Body::from(entries[0].value.clone())).into_response()
        }
        Found::Entries(entries) => {
            let shaped: Vec<DirEntry<'_>> = entries.iter().map(DirEntry::from).collect();
            let (json_headers, body) = json(query, &shaped);
            (headers, json_headers, body).into_response()
        }
    };
    Ok(response)
}

async fn put_kv(
    State(api): State<Arc<Api>>,
    access: Access,
    Path(key): Path<String>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
    body: Body,
) -> Response {
    let query = Query::parse(raw.as_deref());
    if let Err(denied) = access.require(Permission::KeyWrite(&key)) {
        return denied.into_response();
    }
    match put_kv_inner(&api, key, &headers, &query, body).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

async fn put_kv_inner(
    api: &Api,
    key: String,
    headers: &HeaderMap,
    query: &Query,
    body: Body,
) -> Result<Response, HttpError> {
    api.check_datacenter(query)?;
    if key.is_empty() {
        return Err(HttpError::bad_request("Missing key name"));
    }
    if let Some(conflict) = query.conflicting(&["cas", "acquire", "release"]) {
        return Err(HttpError::bad_request(conflict));
    }
    let flags = query.u64("flags").map_err(|error| HttpError::bad_request(error.to_string()))?.unwrap_or(0);
    let cas = query.u64("cas").map_err(|error| HttpError::bad_request(error.to_string()))?;
    let value = read_value(headers, body).await?;
    let set = KvSet { key, value, flags };
    let (command, plain) = if let Some(index) = cas {
        (Command::KvCas(KvCas { set, index }), false)
    } else if let Some(session) = query.get("acquire") {
        (Command::KvLock(KvLock { set, session: session.to_owned() }), false)
    } else if let Some(session) = query.get("release") {
        (Command::KvUnlock(KvUnlock { set, session: session.to_owned() }), false)
    } else {
        (Command::KvSet(set), true)
    };
    let started = std::time::Instant::now();
    let response = api.write(&command).await;
    crate::telemetry::measure_since("kvs.apply", &[], started);
    let response = response?;
    // A plain PUT answers `true` whatever happened; the others say whether they took effect.
    let ok = plain || response == FsmResponse::Bool(true);
    Ok(bool_body(query, ok))
}

/// Reads a PUT body up to the value limit, refusing a larger one with Consul's message.
async fn read_value(headers: &HeaderMap, body: Body) -> Result<Bytes, HttpError> {
    let too_large = |size: String| HttpError {
        status: StatusCode::PAYLOAD_TOO_LARGE,
        reason: format!(
            "Request body({size} bytes) too large, max size: {VALUE_BYTES_MAX} bytes. See {VALUE_SIZE_DOCS}."
        ),
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|text| text.parse::<u64>().ok());
    if let Some(length) = declared.filter(|&length| length > VALUE_BYTES_MAX as u64) {
        // Read (and drop) a moderately large body so the client, still sending, can read the
        // refusal instead of meeting a closed connection; a huge one is cut off.
        if length <= OVERSIZED_DRAIN_BYTES_MAX {
            let _ = axum::body::to_bytes(body, OVERSIZED_DRAIN_BYTES_MAX as usize).await;
        }
        return Err(too_large(length.to_string()));
    }
    axum::body::to_bytes(body, VALUE_BYTES_MAX)
        .await
        .map_err(|_| too_large(format!("more than {VALUE_BYTES_MAX}")))
}

async fn delete_kv(
    State(api): State<Arc<Api>>,
    access: Access,
    Path(key): Path<String>,
    RawQuery(raw): RawQuery,
) -> Response {
    let query = Query::parse(raw.as_deref());
    let permission =
        if query.has("recurse") { Permission::KeyWritePrefix(&key) } else { Permission::KeyWrite(&key) };
    if let Err(denied) = access.require(permission) {
        return denied.into_response();
    }
    match delete_kv_inner(&api, key, &query).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

async fn delete_kv_inner(api: &Api, key: String, query: &Query) -> Result<Response, HttpError> {
    api.check_datacenter(query)?;
    if let Some(conflict) = query.conflicting(&["recurse", "cas"]) {
        return Err(HttpError::bad_request(conflict));
    }
    let recurse = query.has("recurse");
    if key.is_empty() && !recurse {
        return Err(HttpError::bad_request("Missing key name"));
    }
    let cas = query.u64("cas").map_err(|error| HttpError::bad_request(error.to_string()))?;
    let command = match cas {
        Some(index) => Command::KvDeleteCas(KvDeleteCas { key, index }),
        None if recurse => Command::KvDeleteTree(KvDeleteTree { prefix: key }),
        None => Command::KvDelete(KvDelete { key }),
    };
    let started = std::time::Instant::now();
    let response = api.write(&command).await;
    crate::telemetry::measure_since("kvs.apply", &[], started);
    let response = response?;
    let ok = cas.is_none() || response == FsmResponse::Bool(true);
    Ok(bool_body(query, ok))
}

fn bool_body(query: &Query, ok: bool) -> Response {
    let (headers, body) = json(query, &ok);
    (headers, body).into_response()
}
