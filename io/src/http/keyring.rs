//! `/v1/operator/keyring` (consul `agent/operator_endpoint.go`, `KeyringResponse`): list,
//! install, use and remove gossip encryption keys on every member of every pool this agent is
//! in, LAN and (on servers) WAN. Each operation is the core's keyring query
//! (`Command::Keyring`); its answer arrives as `Event::Keyring`, which the pool's drive loop
//! hands to [`KeyringWaiters::finished`] and the waiting request reads.
//!
//! A pool whose query failed anywhere (a member refused, or did not answer) makes the whole
//! request fail, a list included, with Consul's `keyringErrorsOrNil` text in go-multierror's
//! format (the agent's 500). A member without gossip encryption refuses in serf's words: `Keyring
//! is empty (encryption not enabled)` for a list, `No keyring to modify (encryption not
//! enabled)` for a change.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use base64::Engine;
use bytes::Bytes;
use muster_core::gossip::{Command, KeyringOp, KeyringResult};
use serde::Serialize;
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
) -> Result<Option<Vec<KeyringResponse>>, HttpError> {
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
    // Consul (`keyringErrorsOrNil`) answers any pool's failure as the error, a list included.
    if let Some(errors) = keyring_errors(&api.datacenter, &results) {
        return Err(HttpError::internal(errors));
    }
    if op != KeyringOp::List {
        return Ok(None);
    }
    let list =
        results.iter().map(|(pool, result)| KeyringResponse::new(*pool, &api.datacenter, result)).collect();
    Ok(Some(list))
}

/// Consul's `KeyringResponse`: one pool's answer to a list, the keys in base64.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct KeyringResponse {
    #[serde(rename = "WAN")]
    wan: bool,
    datacenter: String,
    segment: &'static str,
    partition: &'static str,
    messages: BTreeMap<String, String>,
    keys: BTreeMap<String, usize>,
    primary_keys: BTreeMap<String, usize>,
    num_nodes: usize,
    num_resp: usize,
    num_err: usize,
}

impl KeyringResponse {
    fn new(pool: Pool, datacenter: &str, result: &KeyringResult) -> KeyringResponse {
        let encoded = |keys: &BTreeMap<Bytes, usize>| -> BTreeMap<String, usize> {
            keys.iter()
                .map(|(key, count)| (base64::engine::general_purpose::STANDARD.encode(key), *count))
                .collect()
        };
        KeyringResponse {
            wan: pool == Pool::Wan,
            datacenter: datacenter.to_owned(),
            segment: "",
            partition: "",
            messages: messages(result),
            keys: encoded(&result.keys),
            primary_keys: encoded(&result.primary_keys),
            num_nodes: result.members,
            num_resp: result.responses,
            num_err: result.errors.len(),
        }
    }
}

/// The members' errors in serf's words: a member without encryption answers as serf's
/// internal queries do (the core words it its own way).
fn messages(result: &KeyringResult) -> BTreeMap<String, String> {
    let serf_words = |message: &str| match message {
        ENCRYPTION_DISABLED if result.op == KeyringOp::List => {
            "Keyring is empty (encryption not enabled)".to_owned()
        }
        ENCRYPTION_DISABLED => "No keyring to modify (encryption not enabled)".to_owned(),
        other => other.to_owned(),
    };
    result.errors.iter().map(|(node, message)| (node.clone(), serf_words(message))).collect()
}

/// Consul's `keyringErrorsOrNil` over the pools' results, in go-multierror's format: for each
/// pool whose query failed, serf's summary (`<pool> error: 1/3 nodes reported failure`, or
/// `... 2/3 nodes reported success` when some did not answer), then each member's message.
fn keyring_errors(datacenter: &str, results: &[(Pool, KeyringResult)]) -> Option<String> {
    let mut errors = Vec::new();
    for (pool, result) in results {
        let failure = if !result.errors.is_empty() {
            format!("{}/{} nodes reported failure", result.errors.len(), result.members)
        } else if result.responses != result.members {
            format!("{}/{} nodes reported success", result.responses, result.members)
        } else {
            continue;
        };
        let name = match pool {
            Pool::Wan => "WAN".to_owned(),
            Pool::Lan => format!("{datacenter} (LAN)"),
        };
        errors.push(format!("{name} error: {failure}"));
        errors.extend(messages(result).into_iter().map(|(node, message)| format!("{node}: {message}")));
    }
    match errors.len() {
        0 => None,
        1 => Some(format!("1 error occurred:\n\t* {}\n\n", errors[0])),
        n => Some(format!("{n} errors occurred:\n\t* {}\n\n", errors.join("\n\t* "))),
    }
}

/// What the core's keyring answers when the member has no keyring.
const ENCRYPTION_DISABLED: &str = "encryption is not enabled on this agent";

#[cfg(test)]
mod tests {
    use super::*;

    fn failed(op: KeyringOp, member: &str) -> KeyringResult {
        KeyringResult {
            op,
            key: Bytes::new(),
            members: 1,
            responses: 1,
            errors: [(member.to_owned(), ENCRYPTION_DISABLED.to_owned())].into(),
            keys: BTreeMap::new(),
            primary_keys: BTreeMap::new(),
        }
    }

    /// Consul with gossip encryption off: every member refuses, in serf's words, and the
    /// HTTP answer is the multierror (the agent's 500), WAN first.
    #[test]
    fn without_encryption_every_pool_reports_serfs_refusal() {
        let results = [
            (Pool::Wan, failed(KeyringOp::List, "node1.dc1")),
            (Pool::Lan, failed(KeyringOp::List, "node1")),
        ];
        assert_eq!(
            keyring_errors("dc1", &results).unwrap(),
            "4 errors occurred:\n\t* WAN error: 1/1 nodes reported failure\n\t* node1.dc1: Keyring is empty \
             (encryption not enabled)\n\t* dc1 (LAN) error: 1/1 nodes reported failure\n\t* node1: Keyring is \
             empty (encryption not enabled)\n\n"
        );
        let install = [(Pool::Lan, failed(KeyringOp::Install, "node1"))];
        assert_eq!(
            keyring_errors("dc1", &install).unwrap(),
            "2 errors occurred:\n\t* dc1 (LAN) error: 1/1 nodes reported failure\n\t* node1: No keyring to \
             modify (encryption not enabled)\n\n"
        );
    }

    #[test]
    fn a_member_that_did_not_answer_fails_the_operation_and_all_answering_is_success() {
        let mut silent = failed(KeyringOp::Use, "node1");
        silent.errors.clear();
        silent.members = 3;
        silent.responses = 2;
        assert_eq!(
            keyring_errors("dc1", &[(Pool::Lan, silent.clone())]).unwrap(),
            "1 error occurred:\n\t* dc1 (LAN) error: 2/3 nodes reported success\n\n"
        );
        silent.responses = 3;
        assert_eq!(keyring_errors("dc1", &[(Pool::Lan, silent)]), None);
    }

    /// A list's bytes, pinned: Consul's `KeyringResponse` for each pool, WAN first.
    #[test]
    fn a_list_keeps_consuls_shape() {
        let listed = |members| KeyringResult {
            op: KeyringOp::List,
            key: Bytes::new(),
            members,
            responses: members,
            errors: BTreeMap::new(),
            keys: [(Bytes::from_static(b"old"), members), (Bytes::from_static(b"new"), 1)].into(),
            primary_keys: [(Bytes::from_static(b"old"), members)].into(),
        };
        let lines = [(Pool::Wan, listed(1)), (Pool::Lan, listed(3))].map(|(pool, result)| {
            serde_json::to_string(&KeyringResponse::new(pool, "dc1", &result)).unwrap()
        });
        super::super::shapes::assert_golden("keyring_shapes.golden", &lines);
    }
}
