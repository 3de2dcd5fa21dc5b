//! The gossip pools at start-up: their tags, their joins (by address or by name, retried as
//! `-retry-join` asks) and how joining is reported.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use super::error::AgentError;
use muster::drive::CommandRequest;
use muster::http;
use muster::version;
use muster_core::gossip::Command;
use muster_core::swim;
use muster_core::tags::Tags;
use tokio::sync::{mpsc, oneshot};

pub(crate) fn pool_of(plan: &PoolPlan) -> http::Pool {
    if plan.label == "serf.wan" {
        http::Pool::Wan
    } else {
        http::Pool::Lan
    }
}

/// One gossip pool the agent runs: the LAN pool always, the WAN pool on servers.
pub(crate) struct PoolPlan {
    pub(crate) label: &'static str,
    pub(crate) name: String,
    pub(crate) port: u16,
    /// Joins given as DNS names, with the port to use when a name gives none.
    pub(crate) join_names: Vec<(String, u16)>,
    /// The address to bind, when not -bind's (-serf-lan-bind, -serf-wan-bind).
    pub(crate) bind: Option<IpAddr>,
    /// The address to advertise, when not -advertise's (-advertise-wan).
    pub(crate) advertise: Option<IpAddr>,
    /// The sources gossip is taken from (-serf-lan-allowed-cidrs); empty: any.
    pub(crate) allowed: Vec<muster_core::cidr::Cidr>,
    pub(crate) joins: Vec<SocketAddr>,
    pub(crate) swim: swim::Config,
    pub(crate) dir: Option<std::path::PathBuf>,
}

/// The tags every member learns about this agent, as Consul sets them.
/// What an agent's gossip tags say about it.
pub(crate) struct TagPlan<'a> {
    pub(crate) server: bool,
    pub(crate) datacenter: &'a str,
    pub(crate) node_id: &'a str,
    pub(crate) server_port: u16,
    pub(crate) expect: usize,
    pub(crate) bootstrap: bool,
}

/// The agent's LAN and WAN tags, as Consul's: `role`, `dc`, `vsn`, `build`, `id`, and for a
/// server its RPC `port`, with `expect` or `bootstrap` when it was started with them.
pub(crate) fn node_tags(plan: &TagPlan<'_>) -> bytes::Bytes {
    let mut tags = Tags::default()
        .with("role", if plan.server { "consul" } else { "node" })
        .with("dc", plan.datacenter)
        .with("vsn", version::PROTOCOL_DEFAULT.to_string())
        .with("build", format!("{}:muster", version::CONSUL_COMPATIBLE_VERSION))
        .with("id", plan.node_id);
    if plan.server {
        tags = tags.with("port", plan.server_port.to_string());
        if plan.expect > 0 {
            tags = tags.with("expect", plan.expect.to_string());
        }
        if plan.bootstrap {
            tags = tags.with("bootstrap", "1");
        }
    }
    tags.encode().expect("the agent's own tags are small")
}

/// The joins given as addresses (`ip`, `ip:port`, `[v6]:port`); names are [`join_names`]'s.
pub(crate) fn parse_joins(
    texts: &[String],
    default_port: u16,
    flag: &str,
) -> Result<Vec<SocketAddr>, AgentError> {
    // The names, and their errors (cloud auto-join among them), are join_names's to report.
    join_names(texts, default_port, flag)?;
    texts
        .iter()
        .filter(|text| join_name(text, default_port).is_none())
        .map(|text| parse_join(text, default_port, flag))
        .collect()
}

/// The joins given as DNS names (`consul.example.com`, `name:port`), checked; Consul's cloud
/// auto-join (`provider=aws ...`) is refused with a reason.
pub(crate) fn join_names(
    texts: &[String],
    default_port: u16,
    flag: &str,
) -> Result<Vec<(String, u16)>, AgentError> {
    let mut names = Vec::new();
    for text in texts {
        if text.contains("provider=") {
            return Err(AgentError::Setting(format!(
                "Error parsing {flag} address {text:?}: cloud auto-join is not supported; give the servers' addresses or DNS names"
            )));
        }
        if let Some(name) = join_name(text, default_port) {
            names.push(name?);
        }
    }
    Ok(names)
}

/// `text` as a DNS name and port, if it is not an address: `None` for an address.
pub(crate) fn join_name(text: &str, default_port: u16) -> Option<Result<(String, u16), AgentError>> {
    if text.parse::<SocketAddr>().is_ok() || text.parse::<IpAddr>().is_ok() || text.contains("provider=") {
        return None;
    }
    let (host, port) = match text.rsplit_once(':') {
        Some((host, port)) => match port.parse::<u16>() {
            Ok(port) => (host, port),
            Err(_) => {
                return Some(Err(AgentError::Setting(format!(
                    "Error parsing join address {text:?}: bad port"
                ))))
            }
        },
        None => (text, default_port),
    };
    let valid = !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    Some(if valid {
        Ok((host.to_owned(), port))
    } else {
        Err(AgentError::Setting(format!(
            "Error parsing join address {text:?}: expected an IP, IP:port or a DNS name"
        )))
    })
}

/// Resolves each name, trying again every `retry` until it resolves, and joins every address
/// it gives.
pub(crate) async fn join_by_name(
    commands: mpsc::Sender<CommandRequest>,
    names: Vec<(String, u16)>,
    retry: std::time::Duration,
    pool: &'static str,
    members: Arc<http::Members>,
) {
    for (host, port) in names {
        let peers = loop {
            match tokio::net::lookup_host((host.as_str(), port)).await {
                Ok(found) => {
                    let peers: Vec<SocketAddr> = found.collect();
                    if !peers.is_empty() {
                        break peers;
                    }
                    tracing::warn!("agent: {pool}: {host} resolves to no address; trying again in {retry:?}");
                }
                Err(error) => {
                    tracing::warn!("agent: {pool}: resolving {host}: {error}; trying again in {retry:?}")
                }
            }
            tokio::time::sleep(retry).await;
        };
        join_all(commands.clone(), peers, pool, members.clone()).await;
    }
}

/// How long after its last attempt a join is given to be answered before -retry-max gives up
/// (a push/pull's TCP timeout).
pub(crate) const RETRY_MAX_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// How long a leaving agent waits for its leave to go out (Consul: a 5 s broadcast timeout).
pub(crate) const LEAVE_GRACE: std::time::Duration = std::time::Duration::from_secs(6);

/// Joins `peers` and logs it in Consul's words: `Joining cluster...`, `(LAN) joining`, then,
/// once gossip shows another member, `(LAN) joined` and `Join cluster completed`.
pub(crate) async fn join_all(
    commands: mpsc::Sender<CommandRequest>,
    peers: Vec<SocketAddr>,
    pool: &'static str,
    members: Arc<http::Members>,
) {
    if peers.is_empty() {
        return;
    }
    let (cluster, which) = match pool {
        "serf.wan" => ("WAN", http::Pool::Wan),
        _ => ("LAN", http::Pool::Lan),
    };
    let addresses = format!("[{}]", peers.iter().map(ToString::to_string).collect::<Vec<_>>().join(" "));
    tracing::info!(cluster, "agent: Joining cluster...");
    match which {
        http::Pool::Wan => tracing::info!(wan_addresses = %addresses, "agent: (WAN) joining"),
        http::Pool::Lan => tracing::info!(lan_addresses = %addresses, "agent: (LAN) joining"),
    }
    let mut requested = 0;
    for peer in peers {
        let (reply_tx, reply_rx) = oneshot::channel();
        if commands.send((Command::Join { peer }, reply_tx)).await.is_err() {
            return;
        }
        match reply_rx.await {
            Ok(Ok(())) => requested += 1,
            Ok(Err(error)) => tracing::warn!(%peer, %error, "agent: {pool}: join refused"),
            Err(_) => return,
        }
    }
    if requested == 0 {
        return;
    }
    // A join is a gossip exchange: it is done when the pool shows someone else.
    let mut published = members.subscribe();
    let joined = tokio::time::timeout(JOIN_REPORT_WAIT, async {
        loop {
            let count = members.list(which).len();
            if count > 1 {
                return count;
            }
            if published.changed().await.is_err() {
                return count;
            }
        }
    });
    if let Ok(count) = joined.await {
        let others = count - 1;
        tracing::info!(number_of_nodes = others, "agent: ({cluster}) joined");
        tracing::info!(
            cluster,
            num_agents = others,
            "agent: Join cluster completed. Synced with initial agents"
        );
    }
}

/// How long a join's outcome is watched for, to report it (the join goes on regardless).
pub(crate) const JOIN_REPORT_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

pub(crate) fn parse_join(text: &str, default_port: u16, flag: &str) -> Result<SocketAddr, AgentError> {
    text.parse::<SocketAddr>()
        .or_else(|_| text.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, default_port)))
        .map_err(|_| {
            AgentError::Setting(format!("Error parsing {flag} address {text:?}: expected IP or IP:port"))
        })
}

pub(crate) fn hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}

/// The agent's randomness is seeded from the OS once, here at the edge; the core only ever sees
/// the seed. Logged so a surprising run can be reasoned about.
pub(crate) fn seed_from_os() -> u64 {
    let seed = muster::consensus::random_u64();
    tracing::debug!(seed, "agent: rng seed");
    seed
}
