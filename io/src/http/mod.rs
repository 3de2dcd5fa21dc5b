//! The HTTP API on 8500, in Consul's shapes (`../shared/reference/consul-behaviour.md` §0,
//! §1): the conventions every endpoint shares live here (query parameters, consistency modes,
//! blocking queries, `X-Consul-*` headers, errors as plain text with Consul's status codes);
//! the endpoints live in their own modules.

pub mod acl;
mod agent;
mod agent_self;
mod autopilot;
mod body;
mod catalog;
mod consensus;
pub mod endpoints;
mod every_request;
mod filter;
mod gossip;
mod host;
mod keyring;
mod kv;
mod limit;
mod members;
mod operator;
mod query;
mod runtime;
mod server;
mod session;
mod shapes;
mod snapshot;
mod status;
pub mod tls;
mod txn;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use bytes::Bytes;
use futures_util::FutureExt;
use muster_core::fsm::{Command, Fsm, Index, Response as FsmResponse, WatchTarget};
use muster_core::raft::Role;
use serde::Serialize;
use tokio::net::TcpListener;

use crate::consensus::{jitter, random_u64};

pub use self::acl::{Access, AclSettings, AgentTokens, Caller, ACL_TOKENS_FILE};
pub use self::agent::{
    apply_definitions, check_definition, definitions, reload, service_definition, ConfigFiles,
    DefinitionError, Definitions,
};
pub(crate) use self::agent::{local_error, persist_check, remove_service};
pub use self::body::Object;
pub use self::gossip::{GossipApi, UserEvent, EVENTS_KEPT};
pub use self::keyring::KeyringWaiters;
pub use self::limit::HTTP_CONNS_PER_CLIENT_MAX;
pub use self::members::{Member, Members, Pool};
pub use self::query::Query;
pub use self::runtime::{Ports, RuntimeConfig};
pub use self::snapshot::{inspect_archive, ArchiveInfo, InspectError};
pub use crate::consensus::{Consensus, ConsensusError, Consistency, Output, RPC_HOLD_TIMEOUT, WRITE_TIMEOUT};
pub use crate::tasks::check_ttl::CheckTtl;
pub use crate::tasks::checks::CheckRunner;
pub use crate::tasks::leader::{AutopilotReport, AutopilotShared, ServerReport};

/// The longest a blocking query waits (Consul's cap); longer `wait`s are cut to it.
pub const BLOCKING_WAIT_MAX: Duration = Duration::from_secs(600);
/// How long a blocking query waits without `wait` (Consul's default).
pub const BLOCKING_WAIT_DEFAULT: Duration = Duration::from_secs(300);

/// Everything the endpoints need from the agent.
#[derive(Debug)]
pub struct Api {
    /// The replicated state and its Raft server, on a server agent; a client agent keeps
    /// none and sends every request that needs them to a server (`forward_to_leader`).
    pub consensus: Option<Consensus>,
    /// Autopilot's configured settings and, on the leader, its latest findings.
    pub autopilot: AutopilotShared,
    /// The agent's datacenter.
    pub datacenter: String,
    /// The agent's node name.
    pub node_name: String,
    /// The agent's node ID (a UUID).
    pub node_id: String,
    /// The gossip pools' latest member lists.
    pub members: Arc<Members>,
    /// The gossip pools' command queues and the user events received.
    pub gossip: Arc<GossipApi>,
    /// This agent's TTL check timers.
    pub check_ttl: CheckTtl,
    /// This agent's services and checks, the authority for its node in the catalog.
    pub local: Arc<crate::local::LocalAgent>,
    /// The configuration files it reads, for reloads.
    pub config: ConfigFiles,
    /// Connections to servers, for forwarding (a server's [`Consensus`] holds the same).
    pub rpc: Arc<crate::rpc::Pool>,
    /// The server a client agent sends its requests to.
    pub chosen_server: ChosenServer,
    /// When its checks run, and the services they may deregister.
    pub checks: CheckRunner,
    /// Where script checks may come from.
    pub script_checks: ScriptChecks,
    /// How long blocking queries wait.
    pub query_times: QueryTimes,
    /// `acl.default_policy`, which every answer reports (`X-Consul-Default-ACL-Policy`).
    pub acl_default_policy: String,
    /// `http_config.response_headers`, added to every answer (checked when read).
    pub response_headers: Vec<(axum::http::HeaderName, HeaderValue)>,
    /// `http_config.block_endpoints`: path prefixes refused with Consul's 403.
    pub block_endpoints: Vec<String>,
    /// The `acl` block when ACLs are on; `None` when off.
    pub acl: Option<AclSettings>,
    /// The HTTPS listener's TLS, when it serves HTTPS (a reload replaces its certificates).
    pub https: Option<tls::Https>,
    /// The server port's TLS (a reload replaces it).
    pub internal_tls: Option<Arc<crate::rpc_tls::InternalTls>>,
}

/// How long a blocking query waits: `?wait` when given, at most `max`; `default` otherwise
/// (`-default-query-time`, `-max-query-time`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueryTimes {
    /// Without `?wait`.
    pub default: Duration,
    /// The most `?wait` may ask.
    pub max: Duration,
}

impl Default for QueryTimes {
    fn default() -> QueryTimes {
        QueryTimes { default: BLOCKING_WAIT_DEFAULT, max: BLOCKING_WAIT_MAX }
    }
}

/// Whether script checks are accepted (Consul refuses them by default: a script check is code
/// any API client could make the agent run).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScriptChecks {
    /// From the HTTP API and configuration files (`enable_script_checks`).
    pub from_api: bool,
    /// From configuration files (`enable_local_script_checks`, or the above).
    pub from_files: bool,
}

/// Serves the API on `listener` until the task is dropped, with Consul's default limit of
/// connections per client.
pub async fn serve(listener: TcpListener, api: Arc<Api>) -> std::io::Result<()> {
    serve_limited(listener, api, HTTP_CONNS_PER_CLIENT_MAX).await
}

/// The same, allowing each client address `conns_per_client` connections at once.
pub async fn serve_limited(
    listener: TcpListener,
    api: Arc<Api>,
    conns_per_client: usize,
) -> std::io::Result<()> {
    let router = router(api);
    let mut listener = limit::LimitedListener::new(listener, conns_per_client);
    loop {
        let (stream, _) = listener.accept().await;
        tokio::spawn(server::serve_connection(stream, router.clone()));
    }
}

/// The most bytes of a request body a server forwards (a snapshot archive is the largest).
const FORWARD_BODY_BYTES_MAX: usize = 64 << 20;

/// Whether this server answers `request` itself, leader or not: the agent's own endpoints,
/// its gossip view, `?stale` reads, and requests forwarded to it already (which are answered
/// here or refused, never sent on).
fn answered_here(request: &axum::extract::Request) -> bool {
    let path = request.uri().path();
    let local = ["/v1/agent/", "/v1/status/", "/v1/event/", "/v1/coordinate/"];
    request.extensions().get::<crate::rpc::Forwarded>().is_some()
        || local.iter().any(|prefix| path.starts_with(prefix))
        || path == "/v1/catalog/datacenters"
        || (request.method() == axum::http::Method::GET && Query::parse(request.uri().query()).has("stale"))
}

/// Whether a client agent answers `request` itself: only what is about the agent (its
/// services, checks and gossip view) and its user events. Everything else reads or writes
/// replicated state, which only servers hold.
fn answered_by_client(request: &axum::extract::Request) -> bool {
    let path = request.uri().path();
    path.starts_with("/v1/agent/") || path.starts_with("/v1/event/")
}

/// Where a request this agent does not answer itself ([`answers_here`]) goes: `None` when
/// this server has become the leader meanwhile.
async fn forward_hop(api: &Api) -> Result<Option<NextHop>, HttpError> {
    match &api.consensus {
        None => Ok(Some(NextHop::Server)),
        Some(_) => api.next_hop().await,
    }
}

/// Whether this agent answers `request` itself: a client agent what is about the agent; a
/// server all it may answer as a follower; the leader everything, without parsing the query.
fn answers_here(api: &Api, request: &axum::extract::Request) -> bool {
    match &api.consensus {
        None => answered_by_client(request),
        Some(consensus) => consensus.raft.status().role == Role::Leader || answered_here(request),
    }
}

/// Sends `request` whole to `hop` over server RPC and answers with its reply.
async fn forward_to_leader(api: &Api, hop: NextHop, request: axum::extract::Request) -> Response {
    let retry = request.method() == axum::http::Method::GET;
    let (parts, body) = request.into_parts();
    let Ok(body) = axum::body::to_bytes(body, FORWARD_BODY_BYTES_MAX).await else {
        return HttpError { status: StatusCode::PAYLOAD_TOO_LARGE, reason: "Request body too large".into() }
            .into_response();
    };
    let forwarded = crate::rpc::HttpRequest {
        method: parts.method.to_string(),
        uri: parts.uri.path_and_query().map_or_else(|| parts.uri.path().to_owned(), ToString::to_string),
        headers: header_pairs(&parts.headers),
        body,
    };
    match api.send(hop, crate::rpc::Call::Http(forwarded), retry).await {
        Ok(crate::rpc::Reply::Http(reply)) => {
            let mut response = Response::new(axum::body::Body::from(reply.body));
            *response.status_mut() =
                StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            for (name, value) in reply.headers {
                if let (Ok(name), Ok(value)) =
                    (header::HeaderName::try_from(name), HeaderValue::from_maybe_shared(value))
                {
                    response.headers_mut().append(name, value);
                }
            }
            response
        }
        Ok(_) => unexpected_reply().into_response(),
        Err(error) => error.into_response(),
    }
}

/// Where a call that needs the leader goes from an agent that cannot answer it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextHop {
    /// To the leader, at this address (from a follower).
    Leader(SocketAddr),
    /// To any server (from a client agent).
    Server,
}

/// Answers the calls that client agents and other servers send here ([`crate::rpc`]).
#[derive(Debug)]
pub struct RpcHandler {
    api: Arc<Api>,
    router: Router,
}

impl RpcHandler {
    /// Answers through `api`'s own routes.
    pub fn new(api: Arc<Api>) -> RpcHandler {
        RpcHandler { router: router(api.clone()), api }
    }
}

impl crate::rpc::Handler for RpcHandler {
    async fn handle(&self, request: crate::rpc::Request) -> crate::rpc::Reply {
        use crate::rpc::{Call, HttpReply, Reply, Request};
        let (call, at_leader) = match request {
            Request::Server(call) => (call, false),
            Request::Leader(call) => (call, true),
        };
        let refusal = |e: HttpError| (e.status.as_u16(), e.reason);
        match call {
            Call::Propose(bytes) if at_leader => {
                let result = match &self.api.consensus {
                    Some(consensus) => consensus.write_forwarded(&bytes).await,
                    None => Err(ConsensusError::NotServer),
                };
                Reply::Propose(result.map_err(|error| (error.status(), error.to_string())))
            }
            Call::Propose(bytes) => {
                let result = match Command::decode(&bytes) {
                    Ok(Some(stamped)) => self.api.write(&stamped.command).await,
                    Ok(None) => Err(HttpError::bad_request("unknown command type")),
                    Err(error) => Err(HttpError::bad_request(error.to_string())),
                };
                Reply::Propose(result.map_err(refusal))
            }
            Call::NodeRows(name) => {
                let rows = match at_leader {
                    true if self.api.leads() => self.api.local_node_rows(&name),
                    true => Err(no_leader()),
                    false => self.api.node_rows(&name).await,
                };
                Reply::NodeRows(rows.map_err(refusal))
            }
            Call::Dns(query) => {
                let handled = crate::dns::handle(
                    &self.api,
                    &query.config,
                    &query.packet,
                    query.transport,
                    query.seed,
                    query.resolved.as_ref(),
                )
                .await;
                Reply::Dns(handled.map_err(refusal))
            }
            Call::Http(forwarded) => {
                let mut builder =
                    axum::http::Request::builder().method(forwarded.method.as_str()).uri(&forwarded.uri);
                for (name, value) in &forwarded.headers {
                    builder = builder.header(name.as_str(), value.as_ref());
                }
                let reply = match builder.body(axum::body::Body::from(forwarded.body)) {
                    Ok(mut request) => {
                        if at_leader {
                            request.extensions_mut().insert(crate::rpc::Forwarded);
                        }
                        let response = tower::ServiceExt::oneshot(self.router.clone(), request).await;
                        let response = match response {
                            Ok(response) => response,
                            Err(never) => match never {},
                        };
                        let (parts, body) = response.into_parts();
                        match axum::body::to_bytes(body, crate::rpc::RPC_FRAME_BYTES_MAX - (1 << 20)).await {
                            Ok(body) => HttpReply {
                                status: parts.status.as_u16(),
                                headers: header_pairs(&parts.headers),
                                body,
                            },
                            Err(error) => error_reply(500, &format!("rpc error: {error}")),
                        }
                    }
                    Err(error) => error_reply(400, &format!("rpc error: malformed request: {error}")),
                };
                Reply::Http(reply)
            }
        }
    }
}

/// Headers as RPC carries them.
fn header_pairs(headers: &HeaderMap) -> Vec<(String, Bytes)> {
    headers.iter().map(|(name, value)| (name.to_string(), Bytes::copy_from_slice(value.as_bytes()))).collect()
}

fn error_reply(status: u16, reason: &str) -> crate::rpc::HttpReply {
    crate::rpc::HttpReply {
        status,
        headers: vec![("content-type".into(), Bytes::from_static(b"text/plain; charset=utf-8"))],
        body: Bytes::copy_from_slice(reason.as_bytes()),
    }
}

/// Every route.
pub fn router(api: Arc<Api>) -> Router {
    Router::new()
        .merge(acl::routes())
        .merge(agent::routes())
        .merge(autopilot::routes())
        .merge(catalog::routes())
        .merge(gossip::routes())
        .merge(host::routes())
        .merge(keyring::routes())
        .merge(kv::routes())
        .merge(members::routes())
        .merge(operator::routes())
        .merge(session::routes())
        .merge(snapshot::routes())
        .merge(status::routes())
        .merge(txn::routes())
        // Consul's answers for a path no endpoint serves, and for a known path with the wrong
        // method.
        .fallback(index)
        .method_not_allowed_fallback(|method: axum::http::Method| async move {
            HttpError {
                status: StatusCode::METHOD_NOT_ALLOWED,
                reason: format!("method {method} not allowed"),
            }
        })
        .layer(every_request::EveryRequestLayer { api: api.clone() })
        .with_state(api)
}

/// What Consul answers at `/` with its UI off, which muster has none of yet (issue 26): an HTTP
/// check pointed at an agent's root passes, as it does against Consul.
pub const UI_DISABLED: &str =
    "Consul Agent: UI disabled. To enable, set ui_config.enabled=true in the agent configuration and restart.";

/// Consul's `Index` (`agent/http.go`), which its router gives every path no endpoint serves,
/// whatever the method: the root answers [`UI_DISABLED`], anything else 404 with a hint that
/// depends on whether the path looks like the API's.
async fn index(uri: axum::http::Uri) -> Response {
    let (status, text) = match uri.path() {
        "/" => (StatusCode::OK, UI_DISABLED),
        path if path.contains("/v1/") => {
            (StatusCode::NOT_FOUND, "Invalid URL path: not a recognized HTTP API endpoint\n")
        }
        _ => (
            StatusCode::NOT_FOUND,
            "Invalid URL path: if attempting to use the HTTP API, ensure the path starts with '/v1/'\n",
        ),
    };
    let mut response = HttpError { status, reason: text.to_owned() }.into_response();
    response.extensions_mut().insert(Unwrapped);
    response
}

/// Marks an answer of Consul's index, which its API wrapper does not touch (no
/// `X-Consul-Default-ACL-Policy`).
#[derive(Debug, Clone, Copy)]
struct Unwrapped;

/// Why Consul CE would refuse `request`'s namespace or partition, if it names one: its
/// `parseEntMeta` refuses either, by header or query, with 400 before the request goes
/// anywhere as a Consul Enterprise feature. (Consul CE checks per endpoint, and a few of its
/// endpoints never look; muster checks them all.)
fn enterprise_tenancy_refusal(request: &axum::extract::Request) -> Option<&'static str> {
    let query = Query::parse(request.uri().query());
    let header = |name: &str| request.headers().get(name).is_some_and(|value| !value.is_empty());
    if header("X-Consul-Namespace") {
        Some("Invalid header: \"X-Consul-Namespace\" - Namespaces are a Consul Enterprise feature")
    } else if query.get("ns").is_some_and(|ns| !ns.is_empty()) {
        Some("Invalid query parameter: \"ns\" - Namespaces are a Consul Enterprise feature")
    } else if header("X-Consul-Partition") {
        Some("Invalid header: \"X-Consul-Partition\" - Partitions are a Consul Enterprise feature")
    } else if query.get("partition").is_some_and(|partition| !partition.is_empty()) {
        Some("Invalid query parameter: \"partition\" - Partitions are a Consul Enterprise feature")
    } else {
        None
    }
}

/// An error as Consul writes one: a status and a plain-text reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpError {
    /// The status.
    pub status: StatusCode,
    /// The reason (the whole body).
    pub reason: String,
}

impl HttpError {
    /// 400 with `reason`.
    pub fn bad_request(reason: impl Into<String>) -> HttpError {
        HttpError { status: StatusCode::BAD_REQUEST, reason: reason.into() }
    }

    /// 500 with `reason`.
    pub fn internal(reason: impl Into<String>) -> HttpError {
        HttpError { status: StatusCode::INTERNAL_SERVER_ERROR, reason: reason.into() }
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let mut response = (self.status, self.reason).into_response();
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
        response
    }
}

/// A JSON body, compact or (`?pretty`) indented by four spaces with a final newline, as
/// Consul writes them.
pub fn json<T: Serialize>(query: &Query, value: &T) -> (HeaderMap, Bytes) {
    let body = if query.has("pretty") {
        let mut out = Vec::new();
        let formatter = serde_json::ser::PrettyFormatter::with_indent(b"    ");
        let mut serializer = serde_json::Serializer::with_formatter(&mut out, formatter);
        value.serialize(&mut serializer).expect("answers serialize");
        out.push(b'\n');
        out
    } else {
        serde_json::to_vec(value).expect("answers serialize")
    };
    let mut headers = HeaderMap::new();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    (headers, Bytes::from(body))
}

impl Consistency {
    /// The mode a read's query asks for, as Consul's `parseConsistency` reads it (`?max_stale`
    /// with a positive duration allows stale reads too); both `?stale` and `?consistent` is a
    /// refusal [`Api::prepare_read`] answers.
    pub fn of(query: &Query) -> Consistency {
        Consistency::parse(query).unwrap_or(Consistency::Default)
    }

    /// The same, refusing what Consul's `parseConsistency` refuses, in its words.
    pub fn parse(query: &Query) -> Result<Consistency, HttpError> {
        let max_stale = match query.get("max_stale").filter(|text| !text.is_empty()) {
            None => false,
            Some(text) => !muster_core::duration::parse(text)
                .map_err(|_| HttpError::bad_request(format!("Invalid max_stale value {text:?}")))?
                .is_zero(),
        };
        match (query.has("stale") || max_stale, query.has("consistent")) {
            (true, true) => {
                Err(HttpError::bad_request("Cannot specify ?stale with ?consistent, conflicting semantics."))
            }
            (false, true) => Ok(Consistency::Consistent),
            (true, false) => Ok(Consistency::Stale),
            (false, false) => Ok(Consistency::Default),
        }
    }

    /// Its name in `X-Consul-Effective-Consistency` (Consul's `QueryOptions.ConsistencyLevel`).
    pub fn as_str(self) -> &'static str {
        match self {
            Consistency::Default => "leader",
            Consistency::Stale => "stale",
            Consistency::Consistent => "consistent",
        }
    }
}

/// Adds `X-Consul-Effective-Consistency` to every read answered with Consul's query metadata
/// (the answers that carry `X-Consul-KnownLeader`, which only [`Api::meta_headers`] writes), as
/// Consul's `setMeta` does: `leader`, `stale` or `consistent`, the mode the read was served in.
/// A read the leader answered for a follower already carries it.
fn add_effective_consistency(response: &mut Response, consistency: Consistency) {
    let headers = response.headers_mut();
    if headers.contains_key("X-Consul-KnownLeader") && !headers.contains_key(EFFECTIVE_CONSISTENCY) {
        headers.insert(EFFECTIVE_CONSISTENCY, HeaderValue::from_static(consistency.as_str()));
    }
}

/// The header naming the consistency mode a read was served in.
const EFFECTIVE_CONSISTENCY: &str = "X-Consul-Effective-Consistency";

/// A read's common parameters.
#[derive(Debug, Clone, Copy)]
pub struct ReadOptions {
    /// Its consistency mode.
    pub consistency: Consistency,
    /// `?index` (and how long to wait past it), for a blocking query.
    pub blocking: Option<(Index, Duration)>,
}

/// A Raft server as the API names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerEntry {
    /// Its node name.
    pub name: String,
    /// Its node ID (its ID in Consul's Raft configuration).
    pub node_id: String,
    /// Where it serves RPC and Raft.
    pub addr: SocketAddr,
}

/// How long a client agent keeps sending to the server it chose before it chooses again (plus
/// up to as much again at random), so that clients spread over servers that joined after
/// them (Consul's client router rebalances every few minutes).
pub const SERVER_REBALANCE_INTERVAL: Duration = Duration::from_secs(120);

/// The server a client agent sends its calls to: one of the alive servers of its datacenter,
/// chosen at random, kept until a call to it fails or its time is up.
#[derive(Debug, Default)]
pub struct ChosenServer {
    current: std::sync::Mutex<Option<(SocketAddr, tokio::time::Instant)>>,
}

impl ChosenServer {
    /// The server to call, none of `tried`.
    fn pick(&self, candidates: &[SocketAddr], tried: &[SocketAddr]) -> Option<SocketAddr> {
        let now = tokio::time::Instant::now();
        let fresh: Vec<SocketAddr> =
            candidates.iter().copied().filter(|addr| !tried.contains(addr)).collect();
        let mut current = self.current.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((addr, until)) = *current {
            if now < until && fresh.contains(&addr) {
                return Some(addr);
            }
        }
        let choice = *fresh.get(random_below(fresh.len()))?;
        *current = Some((choice, now + SERVER_REBALANCE_INTERVAL + jitter(SERVER_REBALANCE_INTERVAL)));
        Some(choice)
    }

    /// Forgets `addr` after a failed call, so the next call chooses again.
    fn failed(&self, addr: SocketAddr) {
        let mut current = self.current.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if current.is_some_and(|(chosen, _)| chosen == addr) {
            *current = None;
        }
    }
}

impl Api {
    /// This agent's consensus parts; a client agent has none (its router sends every request
    /// that needs them to a server, so reaching this there is a routing bug, answered as one).
    pub fn consensus(&self) -> Result<&Consensus, HttpError> {
        self.consensus.as_ref().ok_or_else(|| HttpError::internal("rpc error: this agent is not a server"))
    }

    /// Whether this agent is the Raft leader.
    pub fn leads(&self) -> bool {
        self.consensus.as_ref().is_some_and(|c| c.raft.status().role == Role::Leader)
    }

    /// Whether this agent knows where to send a write: a leader, for a server; a server, for a
    /// client agent.
    pub fn has_route(&self) -> bool {
        match &self.consensus {
            Some(consensus) => consensus.raft.status().leader.is_some(),
            None => !self.server_candidates().is_empty(),
        }
    }

    /// Waits until [`Api::has_route`] holds.
    pub async fn wait_for_route(&self) {
        let mut published = self.members.subscribe();
        loop {
            if self.has_route() {
                return;
            }
            // A leader is elected without a gossip change: look again shortly either way.
            let _ = tokio::time::timeout(Duration::from_millis(100), published.changed()).await;
        }
    }

    /// The servers this agent knows, by Raft ID: itself, and every server of its datacenter
    /// that LAN gossip shows.
    pub fn servers(&self) -> std::collections::BTreeMap<u64, ServerEntry> {
        let mut servers: std::collections::BTreeMap<u64, ServerEntry> = self
            .members
            .lan_servers()
            .into_iter()
            .map(|(server, _)| server)
            .filter(|s| s.datacenter == self.datacenter)
            .map(|s| (s.raft_id, ServerEntry { name: s.name, node_id: s.node_id, addr: s.rpc_addr }))
            .collect();
        if let Some(consensus) = &self.consensus {
            let me = ServerEntry {
                name: self.node_name.clone(),
                node_id: self.node_id.clone(),
                addr: consensus.rpc_addr,
            };
            servers.insert(consensus.raft_id, me);
        }
        servers
    }

    /// The RPC addresses of the alive servers of this agent's datacenter.
    fn server_candidates(&self) -> Vec<SocketAddr> {
        self.members
            .alive_lan_servers()
            .into_iter()
            .filter(|s| s.datacenter == self.datacenter)
            .map(|s| s.rpc_addr)
            .collect()
    }

    /// How long a blocking query waits: `?wait`, capped at the agent's maximum, or its default.
    pub fn blocking_wait(&self, query: &Query) -> Result<Duration, HttpError> {
        match query.get("wait") {
            None => Ok(self.query_times.default),
            Some(text) => muster_core::duration::parse(text)
                .map(|wait| wait.min(self.query_times.max))
                .map_err(|_| HttpError::bad_request("Invalid wait time")),
        }
    }

    /// Checks `?dc` against the local datacenter (there is no other yet).
    pub fn check_datacenter(&self, query: &Query) -> Result<(), HttpError> {
        match query.get("dc") {
            Some(dc) if !dc.is_empty() && dc != self.datacenter => {
                Err(HttpError::internal("No path to datacenter"))
            }
            _ => Ok(()),
        }
    }

    /// Parses a read's parameters and waits until this server may answer in its mode.
    pub async fn prepare_read(&self, query: &Query) -> Result<ReadOptions, HttpError> {
        self.check_datacenter(query)?;
        let consensus = self.consensus()?;
        let consistency = Consistency::parse(query)?;
        let blocking = match query.get("index") {
            None => None,
            Some(text) => {
                let index: Index = text.parse().map_err(|_| HttpError::bad_request("Invalid index"))?;
                let wait = self.blocking_wait(query)?;
                (index > 0).then_some((index, wait))
            }
        };
        consensus.ready(consistency).await.map_err(|error| match error {
            // A follower asked for the leader's view: Consul's words when none can answer here.
            ConsensusError::NotLeader { .. } => no_leader(),
            other => other.into(),
        })?;
        Ok(ReadOptions { consistency, blocking })
    }

    /// Answers a read ([`Consensus::read`]): at once, or (blocking) once its index passes the
    /// one the reader holds or its wait runs out; a consistent one that lost the leadership
    /// while it waited answers Consul's error.
    ///
    /// Not `async`: a wrapper's future would hold a second copy of the closures while the read
    /// waits, in every blocking query.
    pub fn read<'a, R: 'a>(
        &'a self,
        options: ReadOptions,
        targets: impl Fn() -> Vec<WatchTarget> + 'a,
        read: impl Fn(&Fsm) -> (Index, R) + 'a,
    ) -> impl Future<Output = Result<(Index, R), HttpError>> + 'a {
        let consensus = self.consensus.as_ref().expect("ReadOptions come from prepare_read, on a server");
        consensus.read(options.consistency, options.blocking, targets, read).map(|read| Ok(read?))
    }

    /// The headers every indexed read carries (Consul's `setMeta`): the index, whether a leader
    /// is known, and how long ago this server last heard from it. The consistency mode the read
    /// was served in is added on the way out ([`add_effective_consistency`]), from its query.
    pub fn meta_headers(&self, index: Index) -> HeaderMap {
        let status = self.consensus.as_ref().map(|c| c.raft.status());
        let mut headers = HeaderMap::new();
        // Never 0: clients treat 0 as "no index" and would not block on it.
        headers.insert("X-Consul-Index", HeaderValue::from(index.max(1)));
        let known = if status.is_some_and(|s| s.leader.is_some()) { "true" } else { "false" };
        headers.insert("X-Consul-KnownLeader", HeaderValue::from_static(known));
        let last_contact = self.consensus.as_ref().map_or(Duration::ZERO, Consensus::last_contact);
        let millis = u64::try_from(last_contact.as_millis()).unwrap_or(u64::MAX);
        headers.insert("X-Consul-LastContact", HeaderValue::from(millis));
        headers
    }

    /// Where a call that needs the leader goes from here: `None` when this server leads; the
    /// leader, from a follower (held up to [`RPC_HOLD_TIMEOUT`] while none is known, then
    /// `No cluster leader`); any server, from a client agent.
    pub async fn next_hop(&self) -> Result<Option<NextHop>, HttpError> {
        match &self.consensus {
            None => Ok(Some(NextHop::Server)),
            Some(consensus) => Ok(consensus.leader_hop().await?.map(NextHop::Leader)),
        }
    }

    /// Sends `call` one hop. From a client agent, a call that could not reach its server goes
    /// to another one: always when no connection could be made (nothing was sent), and also
    /// after a broken connection when `retry` says the call may run twice (a read).
    pub async fn send(
        &self,
        hop: NextHop,
        call: crate::rpc::Call,
        retry: bool,
    ) -> Result<crate::rpc::Reply, HttpError> {
        use crate::rpc::{Request, RpcError};
        let server = match hop {
            NextHop::Leader(leader) => {
                return self
                    .rpc
                    .call(leader, &Request::Leader(call))
                    .await
                    .map_err(|e| HttpError::internal(e.to_string()))
            }
            NextHop::Server => Request::Server(call),
        };
        let candidates = self.server_candidates();
        let mut tried = Vec::new();
        let mut last_error = HttpError::internal("No known Consul servers");
        while let Some(addr) = self.chosen_server.pick(&candidates, &tried) {
            match self.rpc.call(addr, &server).await {
                Ok(reply) => return Ok(reply),
                Err(error) => {
                    tracing::warn!(server = %addr, %error, "agent: RPC to a server failed");
                    self.chosen_server.failed(addr);
                    tried.push(addr);
                    let unsent = matches!(error, RpcError::Connect(_));
                    last_error = HttpError::internal(error.to_string());
                    if !(unsent || retry) {
                        break;
                    }
                }
            }
        }
        Err(last_error)
    }

    /// The catalog's rows for node `name` as the leader holds them.
    pub async fn node_rows(&self, name: &str) -> Result<crate::rpc::NodeRows, HttpError> {
        let Some(hop) = self.next_hop().await? else { return self.local_node_rows(name) };
        match self.send(hop, crate::rpc::Call::NodeRows(name.to_owned()), true).await? {
            crate::rpc::Reply::NodeRows(rows) => rows.map_err(refusal),
            _ => Err(unexpected_reply()),
        }
    }

    /// The catalog's rows for node `name` as this server holds them.
    pub fn local_node_rows(&self, name: &str) -> Result<crate::rpc::NodeRows, HttpError> {
        Ok(self.consensus()?.store.read(|fsm| {
            let catalog = fsm.catalog();
            crate::rpc::NodeRows {
                node: catalog.node(name).cloned(),
                services: catalog
                    .node_services(name)
                    .1
                    .map(|(_, services)| services.into_iter().cloned().collect())
                    .unwrap_or_default(),
                checks: catalog.node_checks(name).1.into_iter().cloned().collect(),
            }
        }))
    }

    /// Writes a command: proposed here when this server leads, else sent towards the leader.
    pub async fn write(&self, command: &Command) -> Result<FsmResponse, HttpError> {
        if let Some(consensus) = &self.consensus {
            return Ok(consensus.write_via_leader(command).await?);
        }
        // A client agent refuses bad input itself rather than ship it to a server.
        command.validate().map_err(ConsensusError::Rejected)?;
        match self.send(NextHop::Server, crate::rpc::Call::Propose(command.encode(0)), false).await? {
            crate::rpc::Reply::Propose(result) => result.map_err(refusal),
            _ => Err(unexpected_reply()),
        }
    }

    /// Proposes a command through Raft on this server, stamped with its clock, and waits for
    /// the state machine's answer.
    pub async fn write_here(&self, command: &Command) -> Result<FsmResponse, ConsensusError> {
        match &self.consensus {
            Some(consensus) => consensus.write(command).await,
            None => Err(ConsensusError::NotServer),
        }
    }
}

/// A refusal as RPC carries it, back into an error.
fn refusal((status, reason): (u16, String)) -> HttpError {
    HttpError { status: StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), reason }
}

fn unexpected_reply() -> HttpError {
    HttpError::internal("rpc error: unexpected reply")
}

/// Consul's answer when no leader can take a request.
fn no_leader() -> HttpError {
    ConsensusError::NoLeader.into()
}

/// A random number below `n` (0 when `n` is 0).
fn random_below(n: usize) -> usize {
    usize::try_from(random_u64() % u64::try_from(n.max(1)).unwrap_or(u64::MAX)).unwrap_or(0)
}
