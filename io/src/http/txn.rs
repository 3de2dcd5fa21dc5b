//! `PUT /v1/txn` (`../shared/reference/consul-behaviour.md` §1.2): up to 128 KV, node, service
//! and check operations, all or nothing. 200 with every result, or 409 with every error and
//! nothing changed; a transaction of reads only is answered without the log.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::put;
use axum::Router;
use muster_core::acl::Permission;
use muster_core::fsm::{
    CatalogVerb, Command, KvVerb, Response as FsmResponse, Txn, TxnError, TxnOp, TxnOutcome, TxnResult,
    TXN_OPS_MAX,
};
use serde::Serialize;
use serde_json::Value;

use super::body::txn_op;
use super::kv::DirEntry;
use super::shapes::{HealthCheckJson, NodeJson, NodeServiceJson};
use super::{json, Access, Api, HttpError, Query};

pub(super) fn routes() -> Router<Arc<Api>> {
    Router::new().route("/v1/txn", put(txn))
}

fn parse_failed(reason: impl std::fmt::Display) -> HttpError {
    super::body::txn_parse_failed(reason).into()
}

/// Consul's `TxnResponse`: every result, or every error.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct TxnResponse<'a> {
    results: Option<Vec<TxnResultJson<'a>>>,
    errors: Option<Vec<TxnErrorJson<'a>>>,
}

/// Consul's `TxnResult`: an object with one field, named for what the operation read or wrote
/// (serde's encoding of an enum).
#[derive(Serialize)]
enum TxnResultJson<'a> {
    #[serde(rename = "KV")]
    Kv(DirEntry<'a>),
    Node(NodeJson<'a>),
    Service(NodeServiceJson<'a>),
    /// Boxed: a check's shape is several times the size of the others'.
    Check(Box<HealthCheckJson<'a>>),
}

/// Consul's `TxnError`.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct TxnErrorJson<'a> {
    op_index: usize,
    what: &'a str,
}

fn results_json(outcome: &TxnOutcome) -> (StatusCode, TxnResponse<'_>) {
    match outcome {
        Ok(results) => {
            let shaped = results
                .iter()
                .map(|result| match result {
                    TxnResult::Kv(entry) => TxnResultJson::Kv(DirEntry::from(entry)),
                    TxnResult::Node(node) => TxnResultJson::Node(NodeJson::from(&**node)),
                    TxnResult::Service(_, service) => {
                        TxnResultJson::Service(NodeServiceJson::from(&**service))
                    }
                    TxnResult::Check(check) => {
                        TxnResultJson::Check(Box::new(HealthCheckJson::from(&**check)))
                    }
                })
                .collect();
            (StatusCode::OK, TxnResponse { results: Some(shaped), errors: None })
        }
        Err(errors) => {
            let shaped =
                errors.iter().map(|e| TxnErrorJson { op_index: e.op_index, what: &e.what }).collect();
            (StatusCode::CONFLICT, TxnResponse { results: None, errors: Some(shaped) })
        }
    }
}

/// Records a timer when dropped, whichever way the read ends (Consul's deferred `MeasureSince`).
struct Timed(&'static str, std::time::Instant);

impl Drop for Timed {
    fn drop(&mut self) {
        crate::telemetry::measure_since(self.0, &[], self.1);
    }
}

/// The permission operation `op` needs (Consul's `vetTxnOps`): a key's read or write (write
/// on the prefix for a tree delete), a node's, a service's by name, a check's node or service.
fn permission(op: &TxnOp) -> Permission<'_> {
    match op {
        TxnOp::Kv(KvVerb::DeleteTree, operand) => Permission::KeyWritePrefix(&operand.key),
        TxnOp::Kv(verb, operand) if verb.reads_only() => Permission::KeyRead(&operand.key),
        TxnOp::Kv(_, operand) => Permission::KeyWrite(&operand.key),
        TxnOp::Node(CatalogVerb::Get, node) => Permission::NodeRead(&node.node),
        TxnOp::Node(_, node) => Permission::NodeWrite(&node.node),
        TxnOp::Service(CatalogVerb::Get, _, service) => Permission::ServiceRead(&service.service),
        TxnOp::Service(_, _, service) => Permission::ServiceWrite(&service.service),
        TxnOp::Check(_, check) if !check.service_name.is_empty() => {
            Permission::ServiceWrite(&check.service_name)
        }
        TxnOp::Check(_, check) => Permission::NodeWrite(&check.node),
    }
}

async fn txn(State(api): State<Arc<Api>>, access: Access, RawQuery(raw): RawQuery, body: Bytes) -> Response {
    let query = Query::parse(raw.as_deref());
    let result = async {
        api.check_datacenter(&query)?;
        let items = match serde_json::from_slice::<Value>(&body).map_err(parse_failed)? {
            Value::Array(items) => items,
            _ => return Err(parse_failed("expected a list of operations")),
        };
        if items.len() > TXN_OPS_MAX {
            return Err(HttpError {
                status: StatusCode::PAYLOAD_TOO_LARGE,
                reason: format!("Transaction contains too many operations ({} > {TXN_OPS_MAX})", items.len()),
            });
        }
        let mut ops = Vec::with_capacity(items.len());
        let mut errors = Vec::new();
        for (op_index, item) in items.iter().enumerate() {
            match txn_op(item)? {
                Ok(op) => match access.require(permission(&op)) {
                    Ok(()) => ops.push(op),
                    Err(denied) => errors.push(TxnError { op_index, what: denied.reason }),
                },
                Err(invalid) => errors.push(TxnError { op_index, what: invalid.to_string() }),
            }
        }
        if !errors.is_empty() {
            let outcome = Err(errors);
            let (status, body) = results_json(&outcome);
            return Ok((status, json(&query, &body)).into_response());
        }
        let txn = Txn { ops };
        let started = std::time::Instant::now();
        if txn.ops.iter().all(TxnOp::reads_only) {
            let _timed = Timed("txn.read", started);
            api.prepare_read(&query).await?;
            let (index, outcome) =
                api.consensus()?.store.read(|fsm| (fsm.applied(), fsm.read_txn(&txn).expect("reads only")));
            let (status, body) = results_json(&outcome);
            return Ok((status, api.meta_headers(index), json(&query, &body)).into_response());
        }
        let written = api.write(&Command::Txn(txn)).await;
        crate::telemetry::measure_since("txn.apply", &[], started);
        let outcome = match written? {
            FsmResponse::Txn(outcome) => outcome,
            other => {
                return Err(HttpError::internal(format!("unexpected answer to a transaction: {other:?}")))
            }
        };
        let (status, body) = results_json(&outcome);
        Ok((status, json(&query, &body)).into_response())
    };
    result.await.unwrap_or_else(IntoResponse::into_response)
}

#[cfg(test)]
mod tests {
    use muster_core::fsm::{Check, KvEntry, Node, Service};

    use super::*;

    /// The answers' bytes, pinned: Consul's `TxnResponse`, each result an object with one field
    /// named for its kind, and `null` for the half that is empty.
    #[test]
    fn txn_answers_keep_consuls_shapes() {
        let entry = KvEntry {
            key: "k".into(),
            value: "v".into(),
            flags: 7,
            lock_index: 1,
            session: Some("s1".into()),
            create_index: 3,
            modify_index: 4,
        };
        let node = Node { node: "n".into(), address: "10.0.0.1".into(), ..Node::default() };
        let service = Service { id: "s".into(), service: "s".into(), ..Service::default() };
        let check = Check { check_id: "c".into(), ..Check::default() };
        let results = vec![
            TxnResult::Kv(entry),
            TxnResult::Node(Box::new(node)),
            TxnResult::Service("n".into(), Box::new(service)),
            TxnResult::Check(Box::new(check)),
        ];
        let errors = vec![TxnError { op_index: 1, what: "failed".into() }];
        let lines = [results_json(&Ok(results)), results_json(&Err(errors))]
            .map(|(status, body)| format!("{} {}", status.as_u16(), serde_json::to_string(&body).unwrap()));
        super::super::shapes::assert_golden("txn_shapes.golden", &lines);
    }
}
