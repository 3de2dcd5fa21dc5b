//! `/v1/operator/keyring` (consul `agent/operator_endpoint.go`, `KeyringResponse`): list,
//! install, use and remove gossip encryption keys on every member of every pool this agent is
//! in, LAN and (on servers) WAN. Each operation is the core's keyring query
//! (`Command::Keyring`); its answer arrives as `Event::Keyring`, which the pool's drive loop
//! hands to [`KeyringWaiters::finished`] and the waiting request reads.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use base64::Engine;
use bytes::Bytes;
use muster_core::{Command, KeyringOp, KeyringResult};
use serde_json::{json as value, Value};
use tokio::sync::oneshot;

use super::{json, Api, HttpError, Pool, Query};

/// How long a keyring request waits for its query's answers (a query over a large pool takes
/// its gossip timeout; this bounds it).
const KEYRING_WAIT: Duration = Duration::from_secs(60);

/// The requests waiting for a keyring query's answers, by pool and operation, oldest first.
#[derive(Debug, Default)]
pub struct KeyringWaiters {
    waiting: Mutex<Vec<(Pool, KeyringOp, oneshot::Sender<KeyringResult>)>>,
}

impl KeyringWaiters {
    /// Hands a finished query's answers to the oldest request waiting for that operation on
    /// that pool (queries of one kind finish in the order asked: they share one timeout).
    pub fn finished(&self, pool: Pool, result: KeyringResult) {
        let mut waiting = self.waiting.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        waiting.retain(|(_, _, reply)| !reply.is_closed());
        if let Some(at) = waiting.iter().position(|(p, op, _)| *p == pool && *op == result.op) {
            let (_, _, reply) = waiting.remove(at);
            let _ = reply.send(result);
        }
    }

    fn wait(&self, pool: Pool, op: KeyringOp) -> oneshot::Receiver<KeyringResult> {
        let (reply, answer) = oneshot::channel();
        self.waiting.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push((pool, op, reply));
        answer
    }
}

pub(super) fn routes() -> Router<Arc<Api>> {
    Router::new().route(
        "/v1/operator/keyring",
        get(|s, q| operate(s, q, Bytes::new(), KeyringOp::List))
            .post(|s, q, body| operate(s, q, body, KeyringOp::Install))
            .put(|s, q, body| operate(s, q, body, KeyringOp::Use))
            .delete(|s, q, body| operate(s, q, body, KeyringOp::Remove)),
    )
}

async fn operate(
    State(api): State<Arc<Api>>,
    RawQuery(raw): RawQuery,
    body: Bytes,
    op: KeyringOp,
) -> Response {
    let query = Query::parse(raw.as_deref());
    let local_only = query.go_bool("local-only").flatten().unwrap_or(false);
    match operate_inner(&api, &body, op, local_only).await {
        Ok(Some(list)) => json(&query, &list).into_response(),
        Ok(None) => axum::http::StatusCode::OK.into_response(),
        Err(error) => error.into_response(),
    }
}

async fn operate_inner(
    api: &Api,
    body: &[u8],
    op: KeyringOp,
    local_only: bool,
) -> Result<Option<Value>, HttpError> {
    if local_only && op != KeyringOp::List {
        return Err(HttpError::bad_request("local-only can only be set for list requests"));
    }
    let key = if op == KeyringOp::List {
        Bytes::new()
    } else {
        #[derive(serde::Deserialize)]
        struct KeyRequest {
            #[serde(rename = "Key")]
            key: String,
        }
        let request: KeyRequest = serde_json::from_slice(body)
            .map_err(|error| HttpError::bad_request(format!("Request decode failed: {error}")))?;
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(request.key.trim())
            .map_err(|error| HttpError::bad_request(format!("Invalid key: {error}")))?;
        Bytes::from(decoded)
    };
    // WAN first, as Consul lists it; a client agent has only its LAN pool.
    // `local-only`: this datacenter's pool alone, no WAN traffic (Consul's meaning).
    let pools: Vec<Pool> = [Pool::Wan, Pool::Lan]
        .into_iter()
        .filter(|pool| api.gossip.pools.iter().any(|(p, _, _)| p == pool))
        .filter(|pool| !local_only || *pool == Pool::Lan)
        .collect();
    let mut results = Vec::new();
    for pool in pools {
        let answer = api.gossip.keyring.wait(pool, op);
        api.gossip.command(pool == Pool::Wan, Command::Keyring { op, key: key.clone() }).await?;
        let result = tokio::time::timeout(KEYRING_WAIT, answer)
            .await
            .map_err(|_| HttpError::internal("timed out waiting for the keyring query's answers"))?
            .map_err(|_| HttpError::internal("the agent is stopping"))?;
        results.push((pool, result));
    }
    let errors: Vec<String> = results
        .iter()
        .flat_map(|(pool, result)| {
            result
                .errors
                .iter()
                .map(move |(node, error)| format!("{} error: {node}: {error}", pool_name(*pool)))
        })
        .collect();
    if op != KeyringOp::List {
        if !errors.is_empty() {
            return Err(HttpError::internal(format!(
                "{} error(s) occurred:\n\t* {}",
                errors.len(),
                errors.join("\n\t* ")
            )));
        }
        return Ok(None);
    }
    let list: Vec<Value> = results
        .iter()
        .map(|(pool, result)| {
            let encoded = |keys: &BTreeMap<Bytes, usize>| -> BTreeMap<String, usize> {
                keys.iter()
                    .map(|(key, count)| (base64::engine::general_purpose::STANDARD.encode(key), *count))
                    .collect()
            };
            let (keys, primary_keys) = (encoded(&result.keys), encoded(&result.primary_keys));
            value!({
                "WAN": *pool == Pool::Wan,
                "Datacenter": api.datacenter,
                "Segment": "",
                "Partition": "",
                "Keys": keys,
                "PrimaryKeys": primary_keys,
                "NumNodes": result.members,
                "NumResp": result.responses,
                "NumErr": result.errors.len(),
                "Messages": result.errors,
            })
        })
        .collect();
    Ok(Some(Value::Array(list)))
}

fn pool_name(pool: Pool) -> &'static str {
    match pool {
        Pool::Lan => "LAN",
        Pool::Wan => "WAN",
    }
}
