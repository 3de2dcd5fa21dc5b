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
use muster_core::fsm::{
    Command, Response as FsmResponse, Txn, TxnError, TxnOp, TxnOutcome, TxnResult, TXN_OPS_MAX,
};
use serde_json::{json as value, Value};

use super::body::txn_op;
use super::catalog::{check_json, node_json, service_json};
use super::kv::DirEntry;
use super::{json, Api, HttpError, Query};

pub(super) fn routes() -> Router<Arc<Api>> {
    Router::new().route("/v1/txn", put(txn))
}

fn parse_failed(reason: impl std::fmt::Display) -> HttpError {
    super::body::txn_parse_failed(reason).into()
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
            match txn_op(item)? {
                Ok(op) => ops.push(op),
                Err(invalid) => errors.push(TxnError { op_index, what: invalid.to_string() }),
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
