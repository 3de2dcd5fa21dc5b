//! `/v1/operator/raft/...`, `/v1/operator/usage`, `/v1/coordinate/...` and
//! `/v1/agent/metrics[/stream]` (`../shared/reference/consul-behaviour.md` §1.5, §1.7): the
//! Raft servers as Consul lists them, peer removal and leadership transfer; the catalog's usage
//! counts; coordinates (none are computed yet, so the lists are empty, as on a fresh Consul);
//! and the agent's metrics as JSON or Prometheus text, or streamed one interval at a time.

use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::Router;
use muster_core::fsm::{Table, WatchTarget};
use muster_core::raft::{MembershipChange, ServerId};
use serde_json::{json as value, Value};

use super::{json, Api, ConsensusError, HttpError, Query};

pub(super) fn routes() -> Router<Arc<Api>> {
    Router::new()
        .route("/v1/operator/raft/configuration", get(raft_configuration))
        .route("/v1/operator/raft/peer", delete(remove_peer))
        .route("/v1/operator/raft/transfer-leader", post(transfer_leader))
        .route("/v1/operator/usage", get(usage))
        .route("/v1/coordinate/datacenters", get(coordinate_datacenters))
        .route("/v1/coordinate/nodes", get(coordinate_nodes))
        .route("/v1/agent/metrics", get(metrics))
        .route("/v1/agent/metrics/stream", get(metrics_stream))
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
            .map_err(ConsensusError::from)?;
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
        api.consensus()?.raft.transfer_leadership(server).await.map_err(ConsensusError::from)?;
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

/// `/v1/agent/metrics/stream`: each interval's metrics once it finishes (every
/// [`crate::telemetry::METRICS_INTERVAL`]), as go-metrics' `InmemSink.Stream` writes them through
/// Consul's encoder: indented by four spaces, one object and a newline each, until the client goes
/// away. Go sends no content type of its own, so its server names the empty first write's:
/// `text/plain; charset=utf-8`.
async fn metrics_stream() -> Response {
    let first = crate::telemetry::current_interval();
    let stream = futures_util::stream::unfold(first, |interval| async move {
        let interval_len = crate::telemetry::METRICS_INTERVAL;
        let end_secs = interval.saturating_add(1).saturating_mul(interval_len.as_secs());
        let end = std::time::UNIX_EPOCH + std::time::Duration::from_secs(end_secs);
        let wait = end.duration_since(std::time::SystemTime::now()).unwrap_or_default();
        tokio::time::sleep(wait).await;
        // The next interval is the one running now (go-metrics' `getInterval`), which a slow
        // reader may have let pass by more than one.
        let next = crate::telemetry::current_interval().max(interval + 1);
        let summary = crate::telemetry::interval_json(interval, true);
        Some((Ok::<_, std::convert::Infallible>(summary), next))
    });
    (
        [(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"))],
        axum::body::Body::from_stream(stream),
    )
        .into_response()
}

/// The kinds of Connect instances Consul 1.20 counts in `ConnectServiceInstances`, every one
/// listed even at zero (`state.allConnectKind`).
const CONNECT_KINDS: [&str; 6] = [
    "api-gateway",
    "connect-native",
    "connect-proxy",
    "ingress-gateway",
    "mesh-gateway",
    "terminating-gateway",
];

/// The service name Consul's servers register themselves under; its instances are not billable.
const CONSUL_SERVICE: &str = "consul";

/// `GET /v1/operator/usage` (consul `Operator.Usage`): the catalog's counts for this datacenter,
/// a blocking read on the services, indexed as Consul indexes it (the services' usage entry).
/// Billable instances are the typical ones (no kind) other than `consul`'s.
async fn usage(State(api): State<Arc<Api>>, RawQuery(raw): RawQuery) -> Response {
    let query = Query::parse(raw.as_deref());
    let options = match api.prepare_read(&query).await {
        Ok(options) => options,
        Err(error) => return error.into_response(),
    };
    let targets = || vec![WatchTarget::Table(Table::Services), WatchTarget::Table(Table::Nodes)];
    let datacenter = api.datacenter.clone();
    let (index, body) = match api
        .read(options, targets, |fsm| {
            let catalog = fsm.catalog();
            let (index, names) = catalog.services();
            let mut connect: serde_json::Map<String, Value> =
                CONNECT_KINDS.iter().map(|kind| ((*kind).to_owned(), value!(0))).collect();
            let (mut instances, mut billable) = (0_u64, 0_u64);
            for name in names.keys() {
                for (_, service) in catalog.service_nodes(name, &[]).1 {
                    instances += 1;
                    if service.kind.is_empty() {
                        billable += u64::from(*name != CONSUL_SERVICE);
                    } else if let Some(count) = connect.get_mut(&service.kind) {
                        *count = value!(count.as_u64().unwrap_or(0) + 1);
                    }
                }
            }
            let usage = value!({
                "Services": names.len(),
                "ServiceInstances": instances,
                "ConnectServiceInstances": connect,
                "BillableServiceInstances": billable,
                "Nodes": catalog.nodes().1.len(),
            });
            let mut by_datacenter = serde_json::Map::new();
            by_datacenter.insert(datacenter.clone(), usage);
            (index, value!({"Usage": by_datacenter}))
        })
        .await
    {
        Ok(read) => read,
        Err(error) => return error.into_response(),
    };
    // `structs.Usage` embeds the query's metadata, so the body repeats the headers' values.
    let headers = api.meta_headers(index);
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let mut body = body;
    let last_contact_ms: u64 = header("X-Consul-LastContact").parse().unwrap_or(0);
    for (name, field) in [
        ("Index", value!(index)),
        ("LastContact", value!(last_contact_ms.saturating_mul(1_000_000))),
        ("KnownLeader", value!(header("X-Consul-KnownLeader") == "true")),
        ("ConsistencyLevel", value!(options.consistency.as_str())),
        ("NotModified", value!(false)),
        ("Backend", value!(0)),
        ("ResultsFilteredByACLs", value!(false)),
    ] {
        body[name] = field;
    }
    (headers, json(&query, &body)).into_response()
}
