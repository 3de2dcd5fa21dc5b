//! `/v1/status/leader` and `/v1/status/peers`: the Raft leader's and the voters' RPC addresses
//! (`../shared/reference/consul-behaviour.md` §1.7).

use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use super::{json, Api, Query};

pub(super) fn routes() -> Router<Arc<Api>> {
    Router::new().route("/v1/status/leader", get(leader)).route("/v1/status/peers", get(peers))
}

/// `"ip:port"` of the leader, or `""` when there is none.
async fn leader(State(api): State<Arc<Api>>, RawQuery(raw): RawQuery) -> Response {
    let query = Query::parse(raw.as_deref());
    if let Err(error) = api.check_datacenter(&query) {
        return error.into_response();
    }
    let leader = api.consensus.as_ref().and_then(|c| c.raft.status().leader);
    let address =
        leader.and_then(|id| api.servers().remove(&id)).map_or(String::new(), |s| s.addr.to_string());
    json(&query, &address).into_response()
}

/// Every voter's `"ip:port"` (those whose address gossip has shown).
async fn peers(State(api): State<Arc<Api>>, RawQuery(raw): RawQuery) -> Response {
    let query = Query::parse(raw.as_deref());
    if let Err(error) = api.check_datacenter(&query) {
        return error.into_response();
    }
    let servers = api.servers();
    let voters = api.consensus.as_ref().map(|c| c.raft.membership().voters).unwrap_or_default();
    let peers: Vec<String> =
        voters.iter().filter_map(|id| servers.get(id)).map(|server| server.addr.to_string()).collect();
    json(&query, &peers).into_response()
}
