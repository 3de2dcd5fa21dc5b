//! The HTTP API on 8500, in Consul's shapes (`../shared/reference/consul-behaviour.md` §0,
//! §1): the conventions every endpoint shares live here (query parameters, consistency modes,
//! blocking queries, `X-Consul-*` headers, errors as plain text with Consul's status codes);
//! the endpoints live in their own modules.

mod agent;
mod body;
mod catalog;
mod filter;
mod gossip;
mod kv;
mod limit;
mod members;
mod operator;
mod query;
mod session;
mod snapshot;
mod status;
mod timers;
mod txn;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use bytes::Bytes;
use muster_core::fsm::{ApplyError, Command, Fsm, Index, Response as FsmResponse, WatchTarget};
use muster_core::raft::{ProposeError, Role};
use serde::Serialize;
use tokio::net::TcpListener;

use crate::raft_server::{RaftClient, WriteError};
use crate::store::{Store, Wake};

pub use self::agent::{
    apply_definitions, check_definition, definitions, reload, run_anti_entropy, run_check_ttl_timers,
    service_definition, CheckTtl, ConfigFiles, Definitions, ANTI_ENTROPY_INTERVAL,
};
pub use self::body::Object;
pub use self::gossip::{Gossip, UserEvent, EVENTS_KEPT};
pub use self::limit::HTTP_CONNS_PER_CLIENT_MAX;
pub use self::members::{Member, Members, Pool};
pub use self::query::Query;
pub use self::session::{run_ttl_timers, SessionTtl};

/// What a proposal answers, as the Raft server hands it back.
pub type Output = Result<FsmResponse, ApplyError>;

/// The longest a blocking query waits (Consul's cap); longer `wait`s are cut to it.
pub const BLOCKING_WAIT_MAX: Duration = Duration::from_secs(600);
/// How long a blocking query waits without `wait` (Consul's default).
pub const BLOCKING_WAIT_DEFAULT: Duration = Duration::from_secs(300);

/// Everything the endpoints need from the agent.
#[derive(Debug)]
pub struct Api {
    /// The replicated state this server holds.
    pub store: Arc<Store>,
    /// Its Raft server.
    pub raft: RaftClient<Output>,
    /// The agent's datacenter.
    pub datacenter: String,
    /// The agent's node name.
    pub node_name: String,
    /// The agent's node ID (a UUID).
    pub node_id: String,
    /// This server's Raft ID and the address it serves RPC on; the other servers are learned
    /// from gossip ([`Api::servers`]).
    pub server_addrs: Vec<(u64, SocketAddr)>,
    /// The leader's session TTL timers.
    pub session_ttl: SessionTtl,
    /// The gossip pools' latest member lists.
    pub members: Arc<Members>,
    /// The gossip pools' command queues and the user events received.
    pub gossip: Arc<Gossip>,
    /// This agent's TTL check timers.
    pub check_ttl: CheckTtl,
    /// This agent's services and checks, the authority for its node in the catalog.
    pub local: Arc<crate::local::LocalAgent>,
    /// The configuration files it reads, for reloads.
    pub config: ConfigFiles,
    /// Connections to the other servers, for forwarding.
    pub rpc: crate::rpc::Pool,
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
    axum::serve(limit::LimitedListener::new(listener, conns_per_client), router(api)).await
}

/// How long a server holds a request that needs the leader while none is known (Consul's
/// `rpc_hold_timeout`); then it answers `No cluster leader`.
pub const RPC_HOLD_TIMEOUT: Duration = Duration::from_secs(7);

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

/// Sends a request that needs the leader to it, when this server does not lead, and relays
/// the answer; holds it up to [`RPC_HOLD_TIMEOUT`] while no leader is known.
async fn forward_to_leader(
    axum::extract::State(api): axum::extract::State<Arc<Api>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    // The leader's own role is checked first: it answers everything, without parsing the query.
    if api.raft.status().role == Role::Leader || answered_here(&request) {
        return next.run(request).await;
    }
    let Some(leader) = api.leader_addr().await else { return no_leader().into_response() };
    if api.raft.status().role == Role::Leader {
        return next.run(request).await;
    }
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
    match api.rpc.call(leader, &crate::rpc::Request::Http(forwarded)).await {
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
        Ok(crate::rpc::Reply::Propose(_)) => {
            HttpError::internal("rpc error: unexpected reply").into_response()
        }
        Err(error) => HttpError::internal(error.to_string()).into_response(),
    }
}

/// Answers the requests other servers forward here ([`crate::rpc`]).
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
        use crate::rpc::{HttpReply, Reply, Request};
        match request {
            Request::Propose(bytes) => {
                let result = match Command::decode(&bytes) {
                    Ok(Some(stamped)) => self.api.write_here(&stamped.command).await,
                    Ok(None) => Err(HttpError::bad_request("unknown command type")),
                    Err(error) => Err(HttpError::bad_request(error.to_string())),
                };
                Reply::Propose(result.map_err(|e| (e.status.as_u16(), e.reason)))
            }
            Request::Http(forwarded) => {
                let mut builder =
                    axum::http::Request::builder().method(forwarded.method.as_str()).uri(&forwarded.uri);
                for (name, value) in &forwarded.headers {
                    builder = builder.header(name.as_str(), value.as_ref());
                }
                let reply = match builder.body(axum::body::Body::from(forwarded.body)) {
                    Ok(mut request) => {
                        request.extensions_mut().insert(crate::rpc::Forwarded);
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
        .merge(agent::routes())
        .merge(catalog::routes())
        .merge(gossip::routes())
        .merge(kv::routes())
        .merge(members::routes())
        .merge(operator::routes())
        .merge(session::routes())
        .merge(snapshot::routes())
        .merge(status::routes())
        .merge(txn::routes())
        // Go's answers for an unknown path, and Consul's for a known path with the wrong method.
        .fallback(|| async { (StatusCode::NOT_FOUND, "404 page not found\n") })
        .method_not_allowed_fallback(|method: axum::http::Method| async move {
            HttpError {
                status: StatusCode::METHOD_NOT_ALLOWED,
                reason: format!("method {method} not allowed"),
            }
        })
        .layer(axum::extract::DefaultBodyLimit::disable())
        .layer(axum::middleware::from_fn_with_state(api.clone(), forward_to_leader))
        .with_state(api)
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

/// How a read may be served (`?stale`, `?consistent`, or neither).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consistency {
    /// The leader answers from its state (its lease vouches for it).
    Default,
    /// Any server answers from its state.
    Stale,
    /// The leader confirms its leadership with a quorum first (ReadIndex).
    Consistent,
}

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

impl Api {
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
        for (id, addr) in &self.server_addrs {
            let me = ServerEntry { name: self.node_name.clone(), node_id: self.node_id.clone(), addr: *addr };
            servers.insert(*id, me);
        }
        servers
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
        let consistency = match (query.has("stale"), query.has("consistent")) {
            (true, true) => {
                return Err(HttpError::bad_request(
                    "Cannot specify ?stale with ?consistent, conflicting semantics.",
                ))
            }
            (true, false) => Consistency::Stale,
            (false, true) => Consistency::Consistent,
            (false, false) => Consistency::Default,
        };
        let blocking = match query.get("index") {
            None => None,
            Some(text) => {
                let index: Index = text.parse().map_err(|_| HttpError::bad_request("Invalid index"))?;
                let wait = match query.get("wait") {
                    None => BLOCKING_WAIT_DEFAULT,
                    Some(text) => muster_core::duration::parse(text)
                        .map_err(|_| HttpError::bad_request("Invalid wait time"))?,
                };
                (index > 0).then_some((index, wait.min(BLOCKING_WAIT_MAX)))
            }
        };
        match consistency {
            Consistency::Stale => {}
            Consistency::Default => {
                if self.raft.status().role != Role::Leader {
                    return Err(no_leader());
                }
            }
            Consistency::Consistent => {
                self.raft.read_barrier().await.map_err(write_error)?;
            }
        }
        Ok(ReadOptions { consistency, blocking })
    }

    /// Answers a read: at once, or (blocking) once its index passes the one the reader holds
    /// or its wait runs out (with a random extra of up to 1/16 of the wait, as Consul, so
    /// readers that started together do not all return together).
    pub async fn read<R>(
        &self,
        options: ReadOptions,
        targets: impl Fn() -> Vec<WatchTarget>,
        read: impl Fn(&Fsm) -> (Index, R),
    ) -> (Index, R) {
        let Some((min_index, wait)) = options.blocking else {
            return self.store.read(&read);
        };
        let deadline = tokio::time::Instant::now() + wait + jitter(wait / 16);
        loop {
            let attempt = self.store.read_or_watch(
                |fsm| {
                    let (index, answer) = read(fsm);
                    ((index, answer), index > min_index)
                },
                &targets,
            );
            match attempt {
                Ok(answer) => return answer,
                Err((answer, waiter)) => match tokio::time::timeout_at(deadline, waiter.changed()).await {
                    Err(_) => return answer,
                    // A restore: the new state's index may be at or below the one waited on.
                    Ok(Wake::Replaced) => return self.store.read(&read),
                    Ok(Wake::Touched) => {}
                },
            }
        }
    }

    /// The headers every indexed read carries.
    pub fn meta_headers(&self, index: Index) -> HeaderMap {
        let status = self.raft.status();
        let mut headers = HeaderMap::new();
        // Never 0: clients treat 0 as "no index" and would not block on it.
        headers.insert("X-Consul-Index", HeaderValue::from(index.max(1)));
        let known = if status.leader.is_some() { "true" } else { "false" };
        headers.insert("X-Consul-KnownLeader", HeaderValue::from_static(known));
        // Only leaders answer non-stale reads yet, and a leader's last contact is now.
        headers.insert("X-Consul-LastContact", HeaderValue::from_static("0"));
        headers
    }

    /// The leader's RPC address, waiting up to [`RPC_HOLD_TIMEOUT`] for a leader to be known;
    /// `None` if none is.
    pub async fn leader_addr(&self) -> Option<SocketAddr> {
        let deadline = tokio::time::Instant::now() + RPC_HOLD_TIMEOUT;
        loop {
            let leader = self.raft.status().leader.and_then(|id| self.servers().remove(&id));
            if let Some(leader) = leader {
                return Some(leader.addr);
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Writes a command: proposed here when this server leads, else sent to the leader.
    pub async fn write(&self, command: &Command) -> Result<FsmResponse, HttpError> {
        match self.write_here(command).await {
            Err(refused)
                if refused.reason == no_leader().reason && self.raft.status().role != Role::Leader =>
            {
                let Some(leader) = self.leader_addr().await else { return Err(refused) };
                let request = crate::rpc::Request::Propose(command.encode(0));
                match self.rpc.call(leader, &request).await {
                    Ok(crate::rpc::Reply::Propose(Ok(response))) => Ok(response),
                    Ok(crate::rpc::Reply::Propose(Err((status, reason)))) => Err(HttpError {
                        status: StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                        reason,
                    }),
                    Ok(crate::rpc::Reply::Http(_)) => Err(HttpError::internal("rpc error: unexpected reply")),
                    Err(error) => Err(HttpError::internal(error.to_string())),
                }
            }
            other => other,
        }
    }

    /// Proposes a command through Raft on this server, stamped with its clock, and waits for
    /// the state machine's answer.
    pub async fn write_here(&self, command: &Command) -> Result<FsmResponse, HttpError> {
        if let Err(error) = command.validate() {
            return Err(rejected(error));
        }
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| u64::try_from(since.as_millis()).unwrap_or(u64::MAX));
        match self.raft.propose(command.encode(now_ms)).await {
            Ok(Ok(FsmResponse::Rejected(error))) => Err(rejected(error)),
            Ok(Ok(response)) => Ok(response),
            Ok(Err(error)) => Err(HttpError::internal(error.to_string())),
            Err(error) => Err(write_error(error)),
        }
    }
}

/// A refused command, with Consul's status for it.
fn rejected(error: muster_core::fsm::CommandError) -> HttpError {
    use muster_core::fsm::CommandError;
    let status = match error {
        CommandError::ValueTooLarge { .. }
        | CommandError::TooManyOps { .. }
        | CommandError::SnapshotTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        CommandError::MissingKey | CommandError::Catalog(_) | CommandError::Restore(_) => {
            StatusCode::BAD_REQUEST
        }
        CommandError::Lock(_) | CommandError::Session(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    HttpError { status, reason: error.to_string() }
}

/// Consul's answer when no leader can take a request.
fn no_leader() -> HttpError {
    HttpError::internal("No cluster leader")
}

pub(super) fn write_error(error: WriteError) -> HttpError {
    match error {
        WriteError::Refused(ProposeError::NotLeader { .. }) => no_leader(),
        other => HttpError::internal(other.to_string()),
    }
}

/// A random duration up to `max`, from the OS-seeded hasher (the shell's only randomness).
fn jitter(max: Duration) -> Duration {
    use std::hash::{BuildHasher, RandomState};
    let max_nanos = u64::try_from(max.as_nanos()).unwrap_or(u64::MAX);
    if max_nanos == 0 {
        return Duration::ZERO;
    }
    let draw = RandomState::new().hash_one(std::time::SystemTime::now());
    Duration::from_nanos(draw % max_nanos)
}
