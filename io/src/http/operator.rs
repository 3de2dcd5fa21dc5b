//! `/v1/operator/raft/...`, `/v1/coordinate/...` and `/v1/agent/metrics`
//! (`../shared/reference/consul-behaviour.md` §1.5, §1.7): the Raft servers as Consul lists
//! them, peer removal and leadership transfer; coordinates (none are computed yet, so the lists are empty, as on a fresh Consul);
//! and the agent's metrics as JSON or Prometheus text.

use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::Router;
use muster_core::raft::{MembershipChange, ServerId};
use serde_json::{json as value, Value};

use super::{json, write_error, Api, HttpError, Query};

pub(super) fn routes() -> Router<Arc<Api>> {
    Router::new()
        .route("/v1/operator/raft/configuration", get(raft_configuration))
        .route("/v1/operator/raft/peer", delete(remove_peer))
        .route("/v1/operator/raft/transfer-leader", post(transfer_leader))
        .route("/v1/coordinate/datacenters", get(coordinate_datacenters))
        .route("/v1/coordinate/nodes", get(coordinate_nodes))
        .route("/v1/agent/metrics", get(metrics))
}

async fn raft_configuration(State(api): State<Arc<Api>>, RawQuery(raw): RawQuery) -> Response {
    let query = Query::parse(raw.as_deref());
    let raft = match api.consensus() {
        Ok(consensus) => &consensus.raft,
        Err(error) => return error.into_response(),
    };
    let status = raft.status();
    let membership = raft.membership();
    let known = api.servers();
    let members =
        membership.voters.iter().map(|id| (id, true)).chain(membership.learners.iter().map(|id| (id, false)));
    let servers: Vec<Value> = members
        .map(|(id, voter)| {
            // Consul's Raft IDs are node IDs; a server gossip has not shown yet is "(unknown)".
            let (node_id, node, address) = match known.get(id) {
                Some(server) => (server.node_id.clone(), server.name.clone(), server.addr.to_string()),
                None => (format!("{id:016x}"), "(unknown)".to_owned(), String::new()),
            };
            value!({
                "ID": node_id,
                "Node": node,
                "Address": address,
                "Leader": status.leader == Some(*id),
                "Voter": voter,
                "ProtocolVersion": "3",
                "LastIndex": status.applied,
            })
        })
        .collect();
    let body = value!({"Servers": servers, "Index": status.commit});
    (api.meta_headers(status.commit), json(&query, &body)).into_response()
}

/// The Raft server a request names by `?id` (its node ID) or `?address` (its RPC address),
/// among those in the membership.
fn named_server(api: &Api, query: &Query) -> Result<ServerId, HttpError> {
    let membership = api.consensus()?.raft.membership();
    let servers = api.servers();
    let find = |matches: &dyn Fn(&super::ServerEntry) -> bool| {
        servers.iter().find(|(id, server)| membership.contains(**id) && matches(server)).map(|(id, _)| *id)
    };
    let found = match (query.get("id"), query.get("address")) {
        (Some(_), Some(_)) => return Err(HttpError::bad_request("Must specify only one of ?id or ?address")),
        (Some(id), None) => find(&|server| server.node_id == id)
            .ok_or_else(|| format!("id {id:?} was not found in the Raft configuration")),
        (None, Some(address)) => find(&|server| server.addr.to_string() == address)
            .ok_or_else(|| format!("address {address:?} was not found in the Raft configuration")),
        (None, None) => {
            return Err(HttpError::bad_request(
                "Must specify either ?id with the server's ID or ?address with IP:port of peer to remove",
            ))
        }
    };
    found.map_err(HttpError::internal)
}

/// Takes a server out of the Raft configuration (Consul's `operator raft remove-peer`). The
/// core refuses what would break the cluster, such as removing its last voter.
async fn remove_peer(State(api): State<Arc<Api>>, RawQuery(raw): RawQuery) -> Response {
    let query = Query::parse(raw.as_deref());
    let result = async {
        api.check_datacenter(&query)?;
        let server = named_server(&api, &query)?;
        api.consensus()?
            .raft
            .change_membership(MembershipChange::Remove(server))
            .await
            .map_err(write_error)?;
        Ok::<_, HttpError>(axum::http::StatusCode::OK.into_response())
    };
    result.await.unwrap_or_else(IntoResponse::into_response)
}

/// Hands leadership to the server `?id` names (Consul's `operator raft transfer-leader`).
async fn transfer_leader(State(api): State<Arc<Api>>, RawQuery(raw): RawQuery) -> Response {
    let query = Query::parse(raw.as_deref());
    let result = async {
        api.check_datacenter(&query)?;
        let server = match query.get("id") {
            Some(_) => named_server(&api, &query)?,
            None => return Err(HttpError::bad_request("Must specify ?id with the server's ID")),
        };
        api.consensus()?.raft.transfer_leadership(server).await.map_err(write_error)?;
        Ok(json(&query, &value!({"Success": true})).into_response())
    };
    result.await.unwrap_or_else(IntoResponse::into_response)
}

async fn coordinate_datacenters(State(api): State<Arc<Api>>, RawQuery(raw): RawQuery) -> Response {
    let query = Query::parse(raw.as_deref());
    let body = value!([{"Datacenter": api.datacenter, "AreaID": "WAN", "Coordinates": []}]);
    json(&query, &body).into_response()
}

async fn coordinate_nodes(State(api): State<Arc<Api>>, RawQuery(raw): RawQuery) -> Response {
    let query = Query::parse(raw.as_deref());
    match api.consensus() {
        Ok(consensus) => {
            let index = consensus.store.read(|fsm| fsm.applied());
            (api.meta_headers(index), json(&query, &value!([]))).into_response()
        }
        Err(error) => error.into_response(),
    }
}

/// `/v1/agent/metrics`: the telemetry registry's latest finished interval as JSON, or its
/// Prometheus text (`?format=prometheus`, or an `Accept` Consul takes for it), the server's
/// state gauges refreshed first ([`crate::telemetry`]).
async fn metrics(State(api): State<Arc<Api>>, headers: HeaderMap, RawQuery(raw): RawQuery) -> Response {
    let query = Query::parse(raw.as_deref());
    crate::telemetry::refresh_server_gauges(&api).await;
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let (content_type, body) = if crate::telemetry::prometheus_requested(query.get("format"), accept) {
        (crate::telemetry::PROMETHEUS_CONTENT_TYPE, crate::telemetry::prometheus_text())
    } else {
        ("application/json", crate::telemetry::metrics_json(query.has("pretty")))
    };
    let mut headers = HeaderMap::new();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    (headers, body).into_response()
}
