//! `/v1/operator/raft/...`, `/v1/coordinate/...` and `/v1/agent/metrics`
//! (`../shared/reference/consul-behaviour.md` §1.5, §1.7): the Raft servers as Consul lists
//! them, peer removal and leadership transfer; coordinates (none are computed yet, so the lists are empty, as on a fresh Consul);
//! and the agent's gauges as JSON or Prometheus text.

use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::Router;
use muster_core::raft::{MembershipChange, Role, ServerId};
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

/// The gauges: (Consul-style name, value). A client agent has only its own.
fn gauges(api: &Api) -> Vec<(&'static str, f64)> {
    let (local_services, local_checks) = {
        let state = api.local.state();
        (state.services().len(), state.checks().len())
    };
    let mut gauges =
        vec![("consul.agent.services", local_services as f64), ("consul.agent.checks", local_checks as f64)];
    let Some(consensus) = &api.consensus else { return gauges };
    let status = consensus.raft.status();
    let (keys, tombstones, services, nodes, sessions) = consensus.store.read(|fsm| {
        (
            fsm.kv().len(),
            fsm.kv().tombstones(),
            fsm.catalog().services().1.len(),
            fsm.catalog().nodes().1.len(),
            fsm.sessions().len(),
        )
    });
    gauges.extend([
        ("consul.raft.commit_index", status.commit as f64),
        ("consul.raft.applied_index", status.applied as f64),
        ("consul.raft.term", status.term as f64),
        ("consul.raft.leader", f64::from(u8::from(status.role == Role::Leader))),
        ("consul.kvs.entries", keys as f64),
        ("consul.kvs.tombstones", tombstones as f64),
        ("consul.catalog.services", services as f64),
        ("consul.catalog.nodes", nodes as f64),
        ("consul.session.count", sessions as f64),
        ("consul.http.blocked_readers", consensus.store.watching() as f64),
    ]);
    gauges
}

async fn metrics(State(api): State<Arc<Api>>, headers: HeaderMap, RawQuery(raw): RawQuery) -> Response {
    let query = Query::parse(raw.as_deref());
    let prometheus = query.get("format") == Some("prometheus")
        || headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|accept| accept.contains("application/openmetrics-text"));
    let gauges = gauges(&api);
    if prometheus {
        let mut text = String::new();
        for (name, value) in &gauges {
            let name = name.replace('.', "_");
            let _ = writeln!(text, "# HELP {name} {name}\n# TYPE {name} gauge\n{name} {value}");
        }
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        );
        return (headers, text).into_response();
    }
    let timestamp = humantime_utc();
    let body = value!({
        "Timestamp": timestamp,
        "Gauges": gauges.iter().map(|(name, value)| value!({"Name": name, "Value": value, "Labels": {}})).collect::<Vec<_>>(),
        "Points": [],
        "Counters": [],
        "Samples": [],
    });
    json(&query, &body).into_response()
}

/// Now as Go prints a UTC time (`2026-11-30 06:05:00 +0000 UTC`), Consul's metrics timestamp.
fn humantime_utc() -> String {
    let rfc3339 = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    format!("{} +0000 UTC", rfc3339.trim_end_matches('Z').replace('T', " "))
}
