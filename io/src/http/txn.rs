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
use base64::Engine;
use muster_core::fsm::{
    CatalogVerb, Command, KvOperand, KvVerb, Node, Response as FsmResponse, Txn, TxnError, TxnOp, TxnOutcome,
    TxnResult, TXN_OPS_MAX, VALUE_BYTES_MAX,
};
use serde_json::{json as value, Value};

use super::body::Object;
use super::catalog::{check_json, integer, node_json, parse_check, parse_service, service_json, string_map};
use super::kv::DirEntry;
use super::{json, Api, HttpError, Query};

pub(super) fn routes() -> Router<Arc<Api>> {
    Router::new().route("/v1/txn", put(txn))
}

fn parse_failed(reason: impl std::fmt::Display) -> HttpError {
    HttpError::bad_request(format!("Failed to parse body: {reason}"))
}

/// One operation, or the error Consul reports for it at its position.
fn parse_op(item: &Value) -> Result<Result<TxnOp, String>, HttpError> {
    let op = Object::from_value(item, "operation").map_err(|e| parse_failed(e.reason))?;
    if let Some(kv) = op.get("KV") {
        let kv = Object::from_value(kv, "KV").map_err(|e| parse_failed(e.reason))?;
        let verb_text = kv.string("Verb").map_err(|e| parse_failed(e.reason))?;
        let Some(verb) = KvVerb::parse(&verb_text) else {
            return Ok(Err(format!("unknown KV verb {verb_text:?}")));
        };
        let value = match kv.string("Value").map_err(|e| parse_failed(e.reason))? {
            text if text.is_empty() => Bytes::new(),
            text => Bytes::from(
                base64::engine::general_purpose::STANDARD
                    .decode(text)
                    .map_err(|e| parse_failed(format!("Value: {e}")))?,
            ),
        };
        let key = kv.string("Key").map_err(|e| parse_failed(e.reason))?;
        if value.len() > VALUE_BYTES_MAX {
            return Err(HttpError {
                status: StatusCode::PAYLOAD_TOO_LARGE,
                reason: format!(
                    "Value for key {key:?} is too large ({} > {VALUE_BYTES_MAX} bytes)",
                    value.len()
                ),
            });
        }
        let operand = KvOperand {
            key,
            value,
            flags: integer(&kv, "Flags").map_err(|e| parse_failed(e.reason))?.unwrap_or(0),
            index: integer(&kv, "Index").map_err(|e| parse_failed(e.reason))?.unwrap_or(0),
            session: kv.string("Session").map_err(|e| parse_failed(e.reason))?,
        };
        return Ok(Ok(TxnOp::Kv(verb, operand)));
    }
    let catalog_verb = |object: &Object, kind: &str| -> Result<Result<CatalogVerb, String>, HttpError> {
        let text = object.string("Verb").map_err(|e| parse_failed(e.reason))?;
        Ok(CatalogVerb::parse(&text).ok_or_else(|| format!("unknown {kind} verb {text:?}")))
    };
    if let Some(node_op) = op.get("Node") {
        let node_op = Object::from_value(node_op, "Node").map_err(|e| parse_failed(e.reason))?;
        let verb = match catalog_verb(&node_op, "Node")? {
            Ok(verb) => verb,
            Err(error) => return Ok(Err(error)),
        };
        let node = Object::from_value(node_op.get("Node").unwrap_or(&Value::Null), "Node.Node")
            .map_err(|e| parse_failed(e.reason))?;
        let parsed = Node {
            id: node.string("ID").map_err(|e| parse_failed(e.reason))?,
            node: node.string("Node").map_err(|e| parse_failed(e.reason))?,
            address: node.string("Address").map_err(|e| parse_failed(e.reason))?,
            datacenter: node.string("Datacenter").map_err(|e| parse_failed(e.reason))?,
            tagged_addresses: string_map(&node, "TaggedAddresses").map_err(|e| parse_failed(e.reason))?,
            meta: string_map(&node, "Meta").map_err(|e| parse_failed(e.reason))?,
            modify_index: integer(&node, "ModifyIndex").map_err(|e| parse_failed(e.reason))?.unwrap_or(0),
            ..Node::default()
        };
        return Ok(Ok(TxnOp::Node(verb, Box::new(parsed))));
    }
    if let Some(service_op) = op.get("Service") {
        let service_op = Object::from_value(service_op, "Service").map_err(|e| parse_failed(e.reason))?;
        let verb = match catalog_verb(&service_op, "Service")? {
            Ok(verb) => verb,
            Err(error) => return Ok(Err(error)),
        };
        let node = service_op.string("Node").map_err(|e| parse_failed(e.reason))?;
        let service =
            Object::from_value(service_op.get("Service").unwrap_or(&Value::Null), "Service.Service")
                .map_err(|e| parse_failed(e.reason))?;
        let mut parsed = parse_service(&service).map_err(|e| parse_failed(e.reason))?;
        parsed.modify_index =
            integer(&service, "ModifyIndex").map_err(|e| parse_failed(e.reason))?.unwrap_or(0);
        return Ok(Ok(TxnOp::Service(verb, node, Box::new(parsed))));
    }
    if let Some(check_op) = op.get("Check") {
        let check_op = Object::from_value(check_op, "Check").map_err(|e| parse_failed(e.reason))?;
        let verb = match catalog_verb(&check_op, "Check")? {
            Ok(verb) => verb,
            Err(error) => return Ok(Err(error)),
        };
        let check = Object::from_value(check_op.get("Check").unwrap_or(&Value::Null), "Check.Check")
            .map_err(|e| parse_failed(e.reason))?;
        let mut parsed = parse_check(&check)?;
        parsed.modify_index =
            integer(&check, "ModifyIndex").map_err(|e| parse_failed(e.reason))?.unwrap_or(0);
        return Ok(Ok(TxnOp::Check(verb, Box::new(parsed))));
    }
    Ok(Err("no operation specified".to_owned()))
}

fn results_json(outcome: &TxnOutcome) -> (StatusCode, Value) {
    match outcome {
        Ok(results) => {
            let shaped: Vec<Value> = results
                .iter()
                .map(|result| match result {
                    TxnResult::Kv(entry) => value!({"KV": serde_json::to_value(DirEntry::from(entry)).expect("entries serialize")}),
                    TxnResult::Node(node) => value!({"Node": node_json(node)}),
                    TxnResult::Service(_, service) => value!({"Service": service_json(service)}),
                    TxnResult::Check(check) => value!({"Check": check_json(check)}),
                })
                .collect();
            (StatusCode::OK, value!({"Results": shaped, "Errors": null}))
        }
        Err(errors) => (StatusCode::CONFLICT, value!({"Results": null, "Errors": errors_json(errors)})),
    }
}

/// Records a timer when dropped, whichever way the read ends (Consul's deferred `MeasureSince`).
struct Timed(&'static str, std::time::Instant);

impl Drop for Timed {
    fn drop(&mut self) {
        crate::telemetry::measure_since(self.0, &[], self.1);
    }
}

fn errors_json(errors: &[TxnError]) -> Vec<Value> {
    errors.iter().map(|e| value!({"OpIndex": e.op_index, "What": e.what})).collect()
}

async fn txn(State(api): State<Arc<Api>>, RawQuery(raw): RawQuery, body: Bytes) -> Response {
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
            match parse_op(item)? {
                Ok(op) => ops.push(op),
                Err(what) => errors.push(TxnError { op_index, what }),
            }
        }
        if !errors.is_empty() {
            let (status, body) = results_json(&Err(errors));
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
