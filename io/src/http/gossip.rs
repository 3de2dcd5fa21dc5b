//! The gossip side of the agent API (`../shared/reference/consul-behaviour.md` §1.5, §1.7):
//! join, leave and force-leave, and user events (fire, list). Each goes to a pool's drive loop
//! as a command; events that arrive are kept in a ring of the newest [`EVENTS_KEPT`].

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::Router;
use base64::Engine;
use muster_core::gossip::Command;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use super::members::Pool;
use super::{json, Api, HttpError, Query};
use crate::drive::CommandRequest;

/// How many received events `/v1/event/list` remembers (Consul's ring of 256).
pub const EVENTS_KEPT: usize = 256;

/// The pools' command queues, and the events received.
#[derive(Debug, Default)]
pub struct GossipApi {
    /// Each pool's drive loop, with its default port. Weak: the API must not keep a drive
    /// loop alive once the agent drops its own sender to stop it.
    pub pools: Vec<(Pool, u16, mpsc::WeakSender<CommandRequest>)>,
    /// Woken by `PUT /v1/agent/leave`: the agent leaves and stops.
    pub leave: tokio::sync::Notify,
    /// Whether the pools' gossip is encrypted (`encrypt`).
    pub encrypted: bool,
    /// Requests waiting for a keyring query's answers.
    pub keyring: super::KeyringWaiters,
    events: Mutex<VecDeque<UserEvent>>,
    /// Counts received events, for `/v1/event/list` readers blocked on a new one.
    arrivals: tokio::sync::watch::Sender<u64>,
}

/// A user event as Consul's API shows it; also what travels in the gossip payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct UserEvent {
    #[serde(rename = "ID")]
    pub(crate) id: String,
    pub(crate) name: String,
    /// Base64, or `null` when empty.
    pub(crate) payload: Option<String>,
    pub(crate) node_filter: String,
    pub(crate) service_filter: String,
    pub(crate) tag_filter: String,
    version: u8,
    #[serde(rename = "LTime")]
    pub(crate) ltime: u64,
}

impl GossipApi {
    /// The API's side of the agent's pools.
    pub fn new(pools: Vec<(Pool, u16, mpsc::WeakSender<CommandRequest>)>) -> GossipApi {
        GossipApi { pools, ..GossipApi::default() }
    }

    /// Records an event the LAN pool delivered (its gossip payload is the event's JSON; other
    /// payloads are kept with a name-only envelope).
    pub fn received(&self, name: &str, ltime: u64, payload: &[u8]) {
        let mut event = serde_json::from_slice::<UserEvent>(payload).unwrap_or_else(|_| UserEvent {
            id: String::new(),
            name: name.to_owned(),
            payload: (!payload.is_empty()).then(|| base64::engine::general_purpose::STANDARD.encode(payload)),
            node_filter: String::new(),
            service_filter: String::new(),
            tag_filter: String::new(),
            version: 1,
            ltime,
        });
        event.ltime = ltime;
        let mut events = self.events.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if events.len() == EVENTS_KEPT {
            events.pop_front();
        }
        events.push_back(event);
        drop(events);
        self.arrivals.send_modify(|count| *count += 1);
    }

    /// A receiver that sees every later arrival of an event.
    pub(crate) fn subscribe_arrivals(&self) -> tokio::sync::watch::Receiver<u64> {
        self.arrivals.subscribe()
    }

    /// The events kept with a Lamport time after `ltime` (all of them for `None`), oldest
    /// first.
    pub(crate) fn events_after(&self, ltime: Option<u64>) -> Vec<UserEvent> {
        let events = self.events.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        events.iter().filter(|e| ltime.is_none_or(|seen| e.ltime > seen)).cloned().collect()
    }

    fn pool(&self, wan: bool) -> Result<&(Pool, u16, mpsc::WeakSender<CommandRequest>), HttpError> {
        let wanted = if wan { Pool::Wan } else { Pool::Lan };
        self.pools.iter().find(|(pool, _, _)| *pool == wanted).ok_or_else(|| {
            HttpError::internal(if wan { "No WAN pool on this agent (not a server)" } else { "No LAN pool" })
        })
    }

    pub(super) async fn command(&self, wan: bool, command: Command) -> Result<(), HttpError> {
        let (_, _, commands) = self.pool(wan)?;
        let commands = commands.upgrade().ok_or_else(|| HttpError::internal("the agent is stopping"))?;
        let (reply, answer) = oneshot::channel();
        commands.send((command, reply)).await.map_err(|_| HttpError::internal("the agent is stopping"))?;
        match answer.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err(HttpError::internal(error.to_string())),
            Err(_) => Err(HttpError::internal("the agent is stopping")),
        }
    }
}

pub(super) fn routes() -> Router<Arc<Api>> {
    Router::new()
        .route("/v1/agent/join/{address}", put(join))
        .route("/v1/agent/leave", put(leave))
        .route("/v1/agent/force-leave/{node}", put(force_leave))
        .route("/v1/event/fire/{name}", put(fire))
        .route("/v1/event/list", get(list))
}

fn wan(query: &Query) -> bool {
    query.go_bool("wan").flatten().unwrap_or(false)
}

async fn join(State(api): State<Arc<Api>>, Path(address): Path<String>, RawQuery(raw): RawQuery) -> Response {
    let query = Query::parse(raw.as_deref());
    let result = async {
        let wan = wan(&query);
        let (_, port, _) = api.gossip.pool(wan)?;
        let peer = address
            .parse::<SocketAddr>()
            .or_else(|_| address.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, *port)))
            .map_err(|_| {
                HttpError::internal(format!("Error parsing address {address:?}: expected IP or IP:port"))
            })?;
        // The join itself is asynchronous (a push/pull, retried every retry_interval), but
        // Consul's join answers whether the address could be contacted, and `muster join`
        // prints "Failed to join any nodes." on that: so first a TCP connect, as memberlist's
        // push/pull begins, within its TCP timeout.
        match tokio::time::timeout(JOIN_CONTACT_TIMEOUT, tokio::net::TcpStream::connect(peer)).await {
            Ok(Ok(_)) => {}
            Ok(Err(error)) => {
                return Err(HttpError::internal(format!(
                    "1 error occurred:\n\t* Failed to join {peer}: dial tcp {peer}: connect: {}\n\n",
                    crate::checks::go_errno(&error)
                )))
            }
            Err(_) => {
                return Err(HttpError::internal(format!(
                    "1 error occurred:\n\t* Failed to join {peer}: dial tcp {peer}: i/o timeout\n\n"
                )))
            }
        }
        api.gossip.command(wan, Command::Join { peer }).await?;
        Ok::<_, HttpError>(StatusCode::OK.into_response())
    };
    result.await.unwrap_or_else(IntoResponse::into_response)
}

/// How long `PUT /v1/agent/join` waits to contact the address (memberlist's TCP timeout).
const JOIN_CONTACT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Leaves every pool gracefully, then the agent stops (Consul's `PUT /v1/agent/leave`).
async fn leave(State(api): State<Arc<Api>>) -> Response {
    api.gossip.leave.notify_one();
    StatusCode::OK.into_response()
}

async fn force_leave(
    State(api): State<Arc<Api>>,
    Path(node): Path<String>,
    RawQuery(raw): RawQuery,
) -> Response {
    let query = Query::parse(raw.as_deref());
    match api
        .gossip
        .command(
            wan(&query),
            Command::ForceLeave { name: node, prune: query.go_bool("prune").flatten().unwrap_or(false) },
        )
        .await
    {
        Ok(()) => StatusCode::OK.into_response(),
        Err(error) => error.into_response(),
    }
}

async fn fire(
    State(api): State<Arc<Api>>,
    Path(name): Path<String>,
    RawQuery(raw): RawQuery,
    body: Bytes,
) -> Response {
    let query = Query::parse(raw.as_deref());
    let result = async {
        api.check_datacenter(&query)?;
        let event = UserEvent {
            id: uuid::Uuid::new_v4().to_string(),
            name: name.clone(),
            payload: (!body.is_empty()).then(|| base64::engine::general_purpose::STANDARD.encode(&body)),
            node_filter: query.get("node").unwrap_or("").to_owned(),
            service_filter: query.get("service").unwrap_or("").to_owned(),
            tag_filter: query.get("tag").unwrap_or("").to_owned(),
            version: 1,
            ltime: 0,
        };
        let payload = Bytes::from(serde_json::to_vec(&event).expect("events serialize"));
        api.gossip.command(false, Command::FireEvent { name, payload }).await?;
        Ok::<_, HttpError>(json(&query, &event).into_response())
    };
    result.await.unwrap_or_else(IntoResponse::into_response)
}

/// The events named `name` (all without one), and their index: the newest one's Lamport time,
/// meaningful against this agent only, as Consul's is.
fn matching(gossip: &GossipApi, name: Option<&str>) -> (u64, Vec<UserEvent>) {
    let events = gossip.events.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let matching: Vec<UserEvent> =
        events.iter().filter(|e| name.is_none_or(|name| e.name == name)).cloned().collect();
    (matching.iter().map(|e| e.ltime).max().unwrap_or(0).max(1), matching)
}

/// The events received, newest last; `?index` blocks until a newer one arrives or `?wait`
/// runs out.
async fn list(State(api): State<Arc<Api>>, access: super::Access, RawQuery(raw): RawQuery) -> Response {
    let query = Query::parse(raw.as_deref());
    let min_index = match query.get("index").map(str::parse::<u64>).transpose() {
        Ok(index) => index.unwrap_or(0),
        Err(_) => return HttpError::bad_request("Invalid index").into_response(),
    };
    let wait = match api.blocking_wait(&query) {
        Ok(wait) => wait,
        Err(error) => return error.into_response(),
    };
    let deadline = tokio::time::Instant::now() + wait;
    let mut arrivals = api.gossip.arrivals.subscribe();
    let (index, events) = loop {
        // Subscribed before reading: an event that arrives between the two wakes the wait.
        arrivals.mark_unchanged();
        let (index, events) = matching(&api.gossip, query.get("name"));
        if min_index == 0 || index > min_index {
            break (index, events);
        }
        match tokio::time::timeout_at(deadline, arrivals.changed()).await {
            Ok(Ok(())) => {}
            // The wait ran out, or the agent is stopping.
            Err(_) | Ok(Err(_)) => break (index, events),
        }
    };
    // Consul lists the events the caller may read (`event:read` on the name).
    let readable: Vec<&UserEvent> =
        events.iter().filter(|e| access.allows(muster_core::acl::Permission::EventRead(&e.name))).collect();
    let mut headers = HeaderMap::new();
    headers.insert("X-Consul-Index", HeaderValue::from(index));
    access.filtered_header(readable.len() != events.len(), &mut headers);
    (headers, json(&query, &readable)).into_response()
}
