//! `/v1/operator/raft/...`, `/v1/operator/usage`, `/v1/coordinate/...` and
//! `/v1/agent/metrics[/stream]` (`../shared/reference/consul-behaviour.md` §1.5, §1.7): the
//! Raft servers as Consul lists them, peer removal and leadership transfer; the catalog's usage
//! counts; coordinates (none are computed yet, so the lists are empty, as on a fresh Consul);
//! and the agent's metrics as JSON or Prometheus text, or streamed one interval at a time.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::Router;
use muster_core::fsm::{Table, WatchTarget};
use muster_core::raft::{MembershipChange, ServerId};
use serde::Serialize;

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
    let servers = members
        .map(|(id, voter)| {
            // Consul's Raft IDs are node IDs; a server gossip has not shown yet is "(unknown)".
            let (node_id, node, address) = match known.get(id) {
                Some(server) => (server.node_id.clone(), server.name.clone(), server.addr.to_string()),
                None => (format!("{id:016x}"), "(unknown)".to_owned(), String::new()),
            };
            RaftServer {
                id: node_id,
                node,
                address,
                leader: status.leader == Some(*id),
                protocol_version: "3",
                voter,
                last_index: status.applied,
            }
        })
        .collect();
    let body = RaftConfiguration { servers, index: status.commit };
    (api.meta_headers(status.commit), json(&query, &body)).into_response()
}

/// Consul's `RaftConfigurationResponse`.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct RaftConfiguration {
    servers: Vec<RaftServer>,
    index: u64,
}

/// Consul's `RaftServer`.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct RaftServer {
    #[serde(rename = "ID")]
    id: String,
    node: String,
    address: String,
    leader: bool,
    protocol_version: &'static str,
    voter: bool,
    /// The last index this server knows of: the applied index of the one answering.
    last_index: u64,
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
        Ok(json(&query, &TransferLeaderResponse { success: true }).into_response())
    };
    result.await.unwrap_or_else(IntoResponse::into_response)
}

/// Consul's `TransferLeaderResponse`.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct TransferLeaderResponse {
    success: bool,
}

async fn coordinate_datacenters(State(api): State<Arc<Api>>, RawQuery(raw): RawQuery) -> Response {
    let query = Query::parse(raw.as_deref());
    let body = [DatacenterMap { datacenter: &api.datacenter, area_id: "WAN", coordinates: NO_COORDINATES }];
    json(&query, &body).into_response()
}

/// Consul's `DatacenterMap`: a datacenter's servers' coordinates in a network area.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct DatacenterMap<'a> {
    datacenter: &'a str,
    #[serde(rename = "AreaID")]
    area_id: &'static str,
    coordinates: [Coordinate; 0],
}

/// A node's network coordinate, of which none are computed yet.
#[derive(Serialize)]
enum Coordinate {}

/// A list of coordinates, as none are computed yet: `[]`, as on a fresh Consul.
const NO_COORDINATES: [Coordinate; 0] = [];

async fn coordinate_nodes(State(api): State<Arc<Api>>, RawQuery(raw): RawQuery) -> Response {
    let query = Query::parse(raw.as_deref());
    match api.consensus() {
        Ok(consensus) => {
            let index = consensus.store.read(|fsm| fsm.applied());
            (api.meta_headers(index), json(&query, &NO_COORDINATES)).into_response()
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
    let (index, usage) = match api
        .read(options, targets, |fsm| {
            let catalog = fsm.catalog();
            let (index, names) = catalog.services();
            let mut connect: BTreeMap<&'static str, u64> =
                CONNECT_KINDS.iter().map(|kind| (*kind, 0)).collect();
            let (mut instances, mut billable) = (0_u64, 0_u64);
            for name in names.keys() {
                for (_, service) in catalog.service_nodes(name, &[]).1 {
                    instances += 1;
                    if service.kind.is_empty() {
                        billable += u64::from(*name != CONSUL_SERVICE);
                    } else if let Some(count) = connect.get_mut(service.kind.as_str()) {
                        *count += 1;
                    }
                }
            }
            let usage = ServiceUsage {
                services: names.len(),
                service_instances: instances,
                connect_service_instances: connect,
                billable_service_instances: billable,
                nodes: catalog.nodes().1.len(),
            };
            (index, usage)
        })
        .await
    {
        Ok(read) => read,
        Err(error) => return error.into_response(),
    };
    // `structs.Usage` embeds the query's metadata, so the body repeats the headers' values.
    let headers = api.meta_headers(index);
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let last_contact_ms: u64 = header("X-Consul-LastContact").parse().unwrap_or(0);
    let body = Usage {
        usage: BTreeMap::from([(api.datacenter.as_str(), usage)]),
        meta: QueryMeta {
            index,
            last_contact: last_contact_ms.saturating_mul(1_000_000),
            known_leader: header("X-Consul-KnownLeader") == "true",
            consistency_level: options.consistency.as_str(),
            not_modified: false,
            backend: 0,
            results_filtered_by_acls: false,
        },
    };
    (headers, json(&query, &body)).into_response()
}

/// Consul's `Usage`: the catalog's counts by datacenter, and the read's metadata.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Usage<'a> {
    usage: BTreeMap<&'a str, ServiceUsage>,
    #[serde(flatten)]
    meta: QueryMeta,
}

/// Consul's `ServiceUsage`.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ServiceUsage {
    services: usize,
    service_instances: u64,
    /// By kind, each of [`CONNECT_KINDS`] even at zero.
    connect_service_instances: BTreeMap<&'static str, u64>,
    billable_service_instances: u64,
    nodes: usize,
}

/// Consul's `QueryMeta`, the headers of a read as fields.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct QueryMeta {
    index: u64,
    /// Nanoseconds (a Go `time.Duration`).
    last_contact: u64,
    known_leader: bool,
    consistency_level: &'static str,
    not_modified: bool,
    /// The storage backend; 0 is Consul's in-memory store.
    backend: u8,
    #[serde(rename = "ResultsFilteredByACLs")]
    results_filtered_by_acls: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The answers' bytes, pinned: the Raft configuration, a leadership transfer, the
    /// coordinates (none) and the usage counts with their query metadata.
    #[test]
    fn the_operators_answers_keep_consuls_shapes() {
        let configuration = RaftConfiguration {
            servers: vec![RaftServer {
                id: "0b6c4a5c-2f4c-4d43-9c55-0cd0b0b8f4a1".into(),
                node: "server-1".into(),
                address: "10.0.0.1:8300".into(),
                leader: true,
                protocol_version: "3",
                voter: true,
                last_index: 12,
            }],
            index: 11,
        };
        let usage = ServiceUsage {
            services: 2,
            service_instances: 3,
            connect_service_instances: CONNECT_KINDS.iter().map(|kind| (*kind, 0)).collect(),
            billable_service_instances: 1,
            nodes: 2,
        };
        let usage = Usage {
            usage: BTreeMap::from([("dc1", usage)]),
            meta: QueryMeta {
                index: 9,
                last_contact: 0,
                known_leader: true,
                consistency_level: "leader",
                not_modified: false,
                backend: 0,
                results_filtered_by_acls: false,
            },
        };
        let datacenters = [DatacenterMap { datacenter: "dc1", area_id: "WAN", coordinates: NO_COORDINATES }];
        let lines = [
            serde_json::to_string(&configuration).unwrap(),
            serde_json::to_string(&TransferLeaderResponse { success: true }).unwrap(),
            serde_json::to_string(&datacenters).unwrap(),
            serde_json::to_string(&NO_COORDINATES).unwrap(),
            serde_json::to_string(&usage).unwrap(),
        ];
        super::super::shapes::assert_golden("operator_shapes.golden", &lines);
    }
}
