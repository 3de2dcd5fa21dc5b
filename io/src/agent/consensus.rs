//! A server's consensus at start-up: the Raft server and its state machine started from disk,
//! bootstrapped once `-bootstrap-expect` servers are seen, or joined to a running cluster.

use std::net::SocketAddr;
use std::sync::Arc;

use muster::http;
use muster::raft_server::RaftHandle;
use muster::store::{self, Store};
use muster_core::raft;
use tokio::sync::{mpsc, oneshot};

use super::error::{AgentError, FileAction, Listener};
use super::gossip::seed_from_os;

/// How this server starts Raft.
pub(crate) struct ServerPlan {
    pub(crate) dev: bool,
    /// -bootstrap (or -dev): a cluster of this one server.
    pub(crate) bootstrap: bool,
    /// -bootstrap-expect (0: none, or one, which is bootstrap mode).
    pub(crate) expect: usize,
    pub(crate) raft_id: raft::ServerId,
    pub(crate) bind: SocketAddr,
    pub(crate) dir: std::path::PathBuf,
    pub(crate) datacenter: String,
    /// `performance.raft_multiplier`.
    pub(crate) raft_multiplier: u8,
    /// TLS on the server port, both ways.
    pub(crate) secure: Option<Arc<dyn muster::secure::Secure>>,
}

/// Starts this server's Raft over its log and the state machine it applies to. A lone
/// bootstrapper is its only voter. A server with -bootstrap-expect and no Raft data waits for
/// the expected servers in gossip, then starts with them as voters; with Raft data it starts
/// from its log (and the voters it bootstrapped with). Any other server starts with no voters
/// and waits to be added by a leader. Every server follows gossip for its peers' addresses.
pub(crate) async fn start_consensus(
    plan: ServerPlan,
    members: Arc<http::Members>,
) -> Result<(RaftHandle<http::Output>, Arc<Store>, Option<mpsc::Receiver<RpcConnection>>), AgentError> {
    use muster::raft_server;
    let mut config = raft::Config::new(plan.raft_id, [], seed_from_os());
    if plan.dev {
        // Consul's dev timings are tens of milliseconds: a leader at once, and nothing else to
        // wait for with one server.
        config.election_timeout = std::time::Duration::from_millis(100);
        config.heartbeat_interval = std::time::Duration::from_millis(20);
        config.leader_lease = std::time::Duration::from_millis(50);
    } else {
        // hashicorp/raft's timings at multiplier 1 (a 1 s election timeout, a 500 ms lease;
        // heartbeats at a tenth of the timeout), scaled as Consul scales them.
        let multiplier = u32::from(plan.raft_multiplier);
        config.election_timeout = std::time::Duration::from_secs(1) * multiplier;
        config.heartbeat_interval = std::time::Duration::from_millis(100) * multiplier;
        config.leader_lease = std::time::Duration::from_millis(500) * multiplier;
    }
    // RPC shares the server port with Raft: connections opening with the RPC byte come here.
    let (rpc_tx, rpc_rx) = mpsc::channel(RPC_ACCEPT_QUEUE);
    let (transport, inbound) = muster::raft_net::RaftTransport::bind_with_rpc(
        plan.raft_id,
        plan.bind,
        Some(rpc_tx),
        plan.secure.clone(),
    )
    .await
    .map_err(AgentError::bind(Listener::Server, plan.bind))?;
    let opened = raft_server::open(&plan.dir).map_err(|e| AgentError::Storage {
        what: format!("Raft in {}", plan.dir.display()),
        reason: e.to_string(),
    })?;
    let voters_file = plan.dir.join(BOOTSTRAP_VOTERS_FILE);
    let store = Store::new();
    let machine = store::StoreMachine(store.clone());
    let has_data = opened.has_data();
    let (handle, configure) = raft_server::start_opened(opened, transport, inbound, machine);
    tokio::spawn(follow_server_addresses(members.clone(), handle.client(), plan.raft_id));
    if plan.bootstrap {
        config.voters = [plan.raft_id].into_iter().collect();
        let _ = configure.send(config);
    } else if has_data || plan.expect == 0 {
        if has_data && plan.expect > 0 {
            tracing::info!("agent.server.raft: Raft data found, disabling bootstrap mode");
        }
        config.voters = read_voters(&voters_file)?;
        let _ = configure.send(config);
    } else {
        tokio::spawn(await_bootstrap(members, plan, config, voters_file, configure));
    }
    Ok((handle, store, Some(rpc_rx)))
}

/// Waits until gossip shows the expected servers, then starts Raft with them as voters.
pub(crate) async fn await_bootstrap(
    members: Arc<http::Members>,
    plan: ServerPlan,
    mut config: raft::Config,
    voters_file: std::path::PathBuf,
    configure: oneshot::Sender<raft::Config>,
) {
    use muster_core::servers::{bootstrap, Bootstrap};
    let mut published = members.subscribe();
    let mut seen_before = None;
    loop {
        match bootstrap(plan.expect, &plan.datacenter, &members.alive_lan_servers()) {
            Bootstrap::Wait { seen } => {
                if seen_before != Some(seen) {
                    tracing::info!("agent: waiting for {} servers to bootstrap, {seen} seen", plan.expect);
                    seen_before = Some(seen);
                }
            }
            Bootstrap::Refuse(reason) => {
                // The server stays up without voters: an operator can still add it to a cluster.
                tracing::error!("agent: {reason}");
                let _ = configure.send(config);
                return;
            }
            Bootstrap::Ready(servers) => {
                let voters: std::collections::BTreeSet<raft::ServerId> =
                    servers.iter().map(|s| s.raft_id).collect();
                match existing_voters(&servers, plan.raft_id, plan.secure.clone()).await {
                    Err(unanswered) => {
                        // Every server must have answered before deciding; ask again shortly.
                        tracing::info!("agent: {unanswered}");
                        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                        continue;
                    }
                    Ok(Some(existing)) if existing != voters => {
                        // A cluster exists that this server is not a founder of: bootstrapping
                        // would make a second one. It waits, without voters, to be added.
                        tracing::info!(
                            "agent: a server already has a Raft configuration; disabling bootstrap mode"
                        );
                        let _ = configure.send(config);
                        return;
                    }
                    // Nobody has one yet, or the others bootstrapped this very set a moment ago.
                    Ok(_) => {}
                }
                let names: Vec<String> =
                    servers.iter().map(|s| format!("{} ({})", s.name, s.rpc_addr)).collect();
                tracing::info!(
                    "agent: found expected number of peers, attempting bootstrap: {}",
                    names.join(", ")
                );
                config.voters = servers.iter().map(|s| s.raft_id).collect();
                if let Err(error) = write_voters(&voters_file, &config.voters) {
                    tracing::error!(%error, "agent: cannot record the bootstrap voters; not bootstrapping");
                    return;
                }
                let _ = configure.send(config);
                return;
            }
        }
        if published.changed().await.is_err() {
            return;
        }
    }
}

/// A server that did not answer for its Raft configuration (by name), or not with one.
#[derive(Debug, thiserror::Error)]
#[error("cannot ask {0} for its Raft configuration yet")]
pub(crate) struct Unanswered(String);

/// The voters of the Raft configuration another of `servers` already has, if one has any
/// (Consul asks its peers the same before bootstrapping); `Err` names a server that did not
/// answer.
pub(crate) async fn existing_voters(
    servers: &[muster_core::servers::ServerInfo],
    me: raft::ServerId,
    secure: Option<Arc<dyn muster::secure::Secure>>,
) -> Result<Option<std::collections::BTreeSet<raft::ServerId>>, Unanswered> {
    use muster::rpc::{Call, HttpRequest, Pool, Reply, Request};
    let pool = Pool::secured(secure);
    for server in servers.iter().filter(|s| s.raft_id != me) {
        let ask = Request::Leader(Call::Http(HttpRequest {
            method: "GET".into(),
            uri: "/v1/operator/raft/configuration?stale".into(),
            headers: Vec::new(),
            body: bytes::Bytes::new(),
        }));
        let body = match pool.call(server.rpc_addr, &ask).await {
            Ok(Reply::Http(reply)) if reply.status == 200 => reply.body,
            _ => return Err(Unanswered(server.name.clone())),
        };
        let configuration: serde_json::Value =
            serde_json::from_slice(&body).map_err(|_| Unanswered(server.name.clone()))?;
        let ids: std::collections::BTreeSet<raft::ServerId> = configuration["Servers"]
            .as_array()
            .map(|servers| {
                servers
                    .iter()
                    .filter_map(|s| s["ID"].as_str())
                    .filter_map(|id| {
                        muster_core::servers::raft_id(id).or_else(|| u64::from_str_radix(id, 16).ok())
                    })
                    .collect()
            })
            .unwrap_or_default();
        if !ids.is_empty() {
            return Ok(Some(ids));
        }
    }
    Ok(None)
}

/// Points Raft at every server gossip shows, as their addresses become known or change.
pub(crate) async fn follow_server_addresses(
    members: Arc<http::Members>,
    raft: muster::raft_server::RaftClient<http::Output>,
    me: raft::ServerId,
) {
    let mut published = members.subscribe();
    loop {
        for server in members.alive_lan_servers().into_iter().filter(|s| s.raft_id != me) {
            if raft.set_peer(server.raft_id, server.rpc_addr).await.is_err() {
                return;
            }
        }
        if published.changed().await.is_err() {
            return;
        }
    }
}

/// The voters a server bootstrapped with (none if it never bootstrapped with others).
pub(crate) fn read_voters(
    path: &std::path::Path,
) -> Result<std::collections::BTreeSet<raft::ServerId>, AgentError> {
    match std::fs::read_to_string(path) {
        Ok(text) => text
            .split_whitespace()
            .map(|id| u64::from_str_radix(id, 16))
            .collect::<Result<_, _>>()
            .map_err(|e| AgentError::Damaged { path: path.to_owned(), reason: e.to_string() }),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(Default::default()),
        Err(error) => Err(AgentError::file(FileAction::Reading, path)(error)),
    }
}

/// Records the bootstrap voters durably before Raft starts with them.
pub(crate) fn write_voters(
    path: &std::path::Path,
    voters: &std::collections::BTreeSet<raft::ServerId>,
) -> std::io::Result<()> {
    let text: Vec<String> = voters.iter().map(|id| format!("{id:016x}")).collect();
    muster::storage::replace_file(path, text.join("\n").as_bytes())
}

/// Where a server that bootstrapped with others keeps the voters it started with: the first
/// configuration is implied by every server's starting voters (not written to the log), so a
/// restart must start from the same set.
pub(crate) const BOOTSTRAP_VOTERS_FILE: &str = "bootstrap-voters";

/// An RPC connection the server port handed over.
pub(crate) type RpcConnection = (muster::secure::ServerStream, SocketAddr);

/// RPC connections waiting for their handler task.
pub(crate) const RPC_ACCEPT_QUEUE: usize = 256;
