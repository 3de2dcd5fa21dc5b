//! `muster agent`, started in named steps: [`Plan::new`] checks the flags and files and
//! derives every setting; then, on the runtime, [`open_pools`] binds and restores the gossip
//! pools, [`start_consensus`] starts a server's Raft and state machine, [`build_api`] builds
//! the API every task shares, [`spawn_tasks`] starts the agent's loops, [`serve_listeners`]
//! binds HTTP and DNS, and [`run_pools`] drives gossip until a signal or a failure stops it.
//!
//! The steps' parts: `settings.rs` (files, then flags over them, checked), `logging.rs`,
//! `gossip.rs` (tags and joins), `consensus.rs` (a server's Raft, bootstrapped or joined),
//! `process.rs` (signals, reloads, the PID file).

mod consensus;
mod error;
mod gossip;
mod logging;
mod process;
mod settings;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::sync::Arc;

use muster::config;
use muster::drive::{self, CommandRequest, Sockets};
use muster::http;
use muster::local;
use muster::raft_server::RaftHandle;
use muster::storage::{AgentStorage, FileStorage, MemoryStorage};
use muster::store::Store;
use muster::version;
use muster_core::gossip::{Command, Config, Event};
use muster_core::raft;
use muster_core::{swim, Gossip, Instant};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::{mpsc, oneshot};

use self::consensus::{start_consensus, RpcConnection, ServerPlan};
use self::error::{AgentError, Listener};
use self::gossip::{
    hostname, join_all, join_by_name, join_names, node_tags, parse_joins, pool_of, seed_from_os, PoolPlan,
    TagPlan, LEAVE_GRACE, RETRY_MAX_GRACE,
};
use self::logging::{event_logger, init_logging};
use self::process::{auto_reload, reload_on_sighup, wait_for_signal, PidFile, Signal};
use self::settings::{decode_key, dns_settings, node_id, own_node, parse_cidrs, parse_node_meta, FromFiles};
use crate::cli;

/// muster's `performance.raft_multiplier` when none is set: 1, the value Consul's documentation
/// recommends for production, where Consul's own default of 5 is tuned for the smallest cloud
/// instances. A user who sets it gets Consul's scaling.
const RAFT_MULTIPLIER_DEFAULT: u8 = 1;

/// Everything the agent's flags and files decide, checked, before anything is bound.
struct Plan {
    bind_ip: IpAddr,
    advertise_ip: IpAddr,
    server: bool,
    node_name: String,
    node_id: String,
    node_meta: std::collections::BTreeMap<String, String>,
    encrypt_key: Option<bytes::Bytes>,
    /// -bootstrap-expect (0: none; one is bootstrap mode).
    expect: usize,
    bootstrap: bool,
    tags: bytes::Bytes,
    pools: Vec<PoolPlan>,
    /// The WAN pool's port, if this agent runs one.
    wan_port: Option<u16>,
    leave_on_terminate: bool,
    leave_on_interrupt: bool,
    client_ip: IpAddr,
    http_port: Option<u16>,
    /// `ports.https` with the TLS it serves, when HTTPS is on.
    https: Option<(u16, http::tls::Https)>,
    /// TLS on the server port, for Raft and RPC both ways (off without settings).
    internal_tls: Arc<muster::rpc_tls::InternalTls>,
    dns_port: Option<u16>,
    dns_settings: Arc<muster::dns::Settings>,
    query_times: http::QueryTimes,
    /// Where Raft keeps its log: a directory of its own under -dev, removed at exit.
    raft_dir: std::path::PathBuf,
}

/// Runs the agent until a signal or a failure stops it.
/// `muster agent`: the files read and laid under the flags, then the agent run until it stops.
/// What stops it early is printed in Consul's `==> ` form, and the exit code is 1.
pub(crate) fn main(mut args: cli::AgentArgs, matches: Option<&clap::ArgMatches>) -> ExitCode {
    let outcome = settings::apply_config_files(&mut args, matches).and_then(|files| agent(args, files));
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("==> {message}");
            ExitCode::from(1)
        }
    }
}

fn agent(args: cli::AgentArgs, files: FromFiles) -> Result<(), AgentError> {
    init_logging(&args)?;
    let _pid_file = args.pid_file.as_deref().map(PidFile::write).transpose()?;
    // Each setting muster accepts but does not act on yet, once, naming where it came from.
    for warning in &files.warnings {
        tracing::warn!("agent: {warning}");
    }
    let plan = Plan::new(&args, &files)?;
    // Consul compiles its watch plans before it starts anything.
    for entry in &files.watches {
        let entry = entry.as_object().expect("config keeps only objects under watches");
        crate::cmd::watch::from_config(entry, "127.0.0.1:8500")
            .map_err(|error| AgentError::Setting(format!("Failed to compile watch parameters: {error}")))?;
    }
    if files.acl_enabled {
        // Consul's servers check the token of every RPC; muster's do not yet.
        tracing::warn!(
            "agent: acl.enabled: requests over HTTP and DNS are checked, but server RPC (port {}) does not \
             check tokens yet; keep it reachable by cluster members only (tls verify_incoming admits only \
             holders of a certificate the CA signed)",
            args.server_port
        );
    }
    if muster_core::INVARIANT_CHECKS {
        tracing::warn!(
            "agent: built with invariant checks after every step (a test build); expect it to be slow"
        );
    }
    raise_open_file_limit();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .on_thread_park(crate::allocator::release_freed_memory)
        .build()
        .map_err(AgentError::Runtime)?;
    let dev_dir = args.dev.then(|| plan.raft_dir.clone());
    let result = runtime.block_on(run(args, files, plan));
    if let Some(dir) = dev_dir {
        let _ = std::fs::remove_dir_all(&dir);
    }
    result
}

/// Raises the open-file soft limit to the hard limit, as Go's runtime does at start-up (and so
/// Consul): every HTTP connection, blocking query included, holds a descriptor, and the usual
/// soft limit of 1,024 would refuse a fleet of watchers long before memory runs short.
fn raise_open_file_limit() {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    /// Linux's default `fs.nr_open`, the most an unlimited hard limit lets a process have.
    const NR_OPEN_DEFAULT: u64 = 1 << 20;
    let limit = getrlimit(Resource::Nofile);
    let target = match (limit.current, limit.maximum) {
        (Some(current), Some(maximum)) if current < maximum => maximum,
        (Some(current), None) if current < NR_OPEN_DEFAULT => NR_OPEN_DEFAULT,
        _ => return,
    };
    let raised = Rlimit { current: Some(target), maximum: limit.maximum };
    if let Err(error) = setrlimit(Resource::Nofile, raised) {
        tracing::warn!(%error, "agent: could not raise the open-file limit");
    }
}

impl Plan {
    fn new(args: &cli::AgentArgs, files: &FromFiles) -> Result<Plan, AgentError> {
        check_args(args)?;
        let server = args.server.unwrap_or(args.dev);
        let bind_ip = match (args.bind, args.dev) {
            (Some(ip), _) => ip,
            (None, true) => IpAddr::V4(Ipv4Addr::LOCALHOST),
            (None, false) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        };
        // Bound to every address, the agent advertises this machine's one private IPv4, as
        // Consul does (and refuses to guess among several).
        let advertise_ip = match args.advertise.unwrap_or(bind_ip) {
            ip if ip.is_unspecified() => IpAddr::V4(config::private_ipv4(&config::interfaces()?)?),
            ip => ip,
        };
        let node_name = args.node.clone().unwrap_or_else(|| hostname().unwrap_or_else(|| "muster".into()));
        let node_id = match &args.node_id {
            Some(id) => {
                muster_core::fsm::catalog::parse_uuid(id).map_err(|reason| format!("node_id: {reason}"))?;
                id.to_lowercase()
            }
            None => node_id(args.data_dir.as_deref().filter(|_| !args.dev))?,
        };
        // Consul: an expectation of one is bootstrap mode.
        let expect = match args.bootstrap_expect {
            1 => {
                tracing::warn!("BootstrapExpect is set to 1; this is the same as Bootstrap mode.");
                0
            }
            n => n,
        };
        let bootstrap = args.bootstrap.unwrap_or(args.dev) || args.bootstrap_expect == 1;
        if args.bootstrap == Some(true) && !server {
            return Err(AgentError::Setting("bootstrap mode requires server mode (-server)".to_owned()));
        }
        let tags = node_tags(&TagPlan {
            server,
            datacenter: &args.datacenter,
            node_id: &node_id,
            server_port: args.server_port,
            expect,
            bootstrap,
        });
        // `ports.serf_wan` of -1 (or 0) keeps a server out of the WAN pool, as in Consul.
        let wan_port = u16::try_from(args.serf_wan_port).ok().filter(|port| *port > 0 && server);
        let pools = gossip_plans(args, &node_name, wan_port)?;
        let port = |port: i32, flag: &str| match port {
            -1 => Ok(None),
            port => u16::try_from(port).map(Some).map_err(|_| format!("Invalid {flag} {port}")),
        };
        Ok(Plan {
            bind_ip,
            advertise_ip,
            server,
            node_name,
            node_id,
            node_meta: parse_node_meta(&args.node_meta)?,
            encrypt_key: args.encrypt.as_deref().map(decode_key).transpose()?,
            expect,
            bootstrap,
            tags,
            pools,
            wan_port,
            // Consul's defaults: a client leaves gracefully on SIGTERM and SIGINT; a server on
            // neither, since its leave takes it out of the Raft configuration and a restart
            // should not.
            leave_on_terminate: files.leave_on_terminate.unwrap_or(!server),
            leave_on_interrupt: !files.skip_leave_on_interrupt.unwrap_or(server),
            client_ip: args.client.unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            http_port: port(args.http_port, "-http-port")?,
            https: https_plan(args, files)?,
            internal_tls: internal_tls(args, files)?,
            dns_port: port(args.dns_port, "-dns-port")?,
            dns_settings: Arc::new(dns_settings(args, &files.dns)?),
            query_times: query_times(args)?,
            raft_dir: match (&args.data_dir, args.dev) {
                (_, true) => std::env::temp_dir().join(format!("muster-dev-{}", std::process::id())),
                (Some(dir), false) => dir.join("raft"),
                (None, false) => unreachable!("checked by check_args"),
            },
        })
    }
}

/// HTTPS when `ports.https` (or `-https-port`) is above 0 and a certificate is configured;
/// without one the agent warns and serves no HTTPS, since there is nothing it could present.
fn https_plan(
    args: &cli::AgentArgs,
    files: &FromFiles,
) -> Result<Option<(u16, http::tls::Https)>, AgentError> {
    let Some(port) = args.https_port.and_then(|port| u16::try_from(port).ok()).filter(|port| *port > 0)
    else {
        return Ok(None);
    };
    let timeout = files.https_handshake_timeout.unwrap_or(http::tls::HANDSHAKE_TIMEOUT_DEFAULT);
    match http::tls::Https::new(&files.tls_https, port, timeout) {
        Ok((https, warnings)) => {
            for warning in warnings {
                tracing::warn!("agent: {warning}");
            }
            Ok(Some((port, https)))
        }
        Err(error @ http::tls::HttpsError::NoCertificate { .. }) => {
            tracing::warn!("agent: {error}; serving no HTTPS");
            Ok(None)
        }
        Err(error) => Err(AgentError::Setting(error.to_string())),
    }
}

/// The server port's TLS (`tls.internal_rpc` over `tls.defaults`); off without settings.
fn internal_tls(
    args: &cli::AgentArgs,
    files: &FromFiles,
) -> Result<Arc<muster::rpc_tls::InternalTls>, AgentError> {
    let (tls, warnings) =
        muster::rpc_tls::InternalTls::new(&files.tls_internal_rpc, &args.datacenter, &args.domain)
            .map_err(|error| AgentError::Setting(error.to_string()))?;
    for warning in warnings {
        tracing::warn!("agent: {warning}");
    }
    Ok(Arc::new(tls))
}

/// The checks on the flags alone, in Consul's words.
fn check_args(args: &cli::AgentArgs) -> Result<(), AgentError> {
    if let Some(version) = args.raft_protocol.filter(|&v| v != 3) {
        return Err(AgentError::Setting(format!(
            "raft_protocol version {version} is not supported by this version of muster (only 3)"
        )));
    }
    if let Some(version) = args.protocol.filter(|v| !(2..=3).contains(v)) {
        return Err(AgentError::Setting(format!(
            "Protocol version {version} is not supported: muster speaks 2 to 3"
        )));
    }
    if !args.dev && args.data_dir.is_none() {
        return Err(AgentError::Setting("data_dir cannot be empty".to_owned()));
    }
    if args.datacenter.is_empty()
        || !args.datacenter.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(AgentError::Setting(format!(
            "Invalid datacenter {:?}: use letters, digits, '-' and '_'",
            args.datacenter
        )));
    }
    if args.bootstrap_expect > 0 && !args.server.unwrap_or(args.dev) {
        return Err(AgentError::Setting("'bootstrap_expect > 0' requires 'server = true'".to_owned()));
    }
    if args.bootstrap_expect > 0 && args.dev {
        return Err(AgentError::Setting("'bootstrap_expect' not allowed in dev mode".to_owned()));
    }
    if args.bootstrap_expect > 0 && args.bootstrap == Some(true) {
        return Err(AgentError::Setting(
            "'bootstrap_expect' and 'bootstrap' are mutually exclusive".to_owned(),
        ));
    }
    Ok(())
}

/// `-default-query-time` and `-max-query-time`, each a positive duration.
fn query_times(args: &cli::AgentArgs) -> Result<http::QueryTimes, AgentError> {
    let query_time = |text: &Option<String>, flag: &str, default: std::time::Duration| match text {
        None => Ok(default),
        Some(text) => muster_core::duration::parse(text)
            .ok()
            .filter(|d| !d.is_zero())
            .ok_or_else(|| format!("Invalid {flag} {text:?}: want a positive duration such as 300s")),
    };
    Ok(http::QueryTimes {
        default: query_time(&args.default_query_time, "-default-query-time", http::BLOCKING_WAIT_DEFAULT)?,
        max: query_time(&args.max_query_time, "-max-query-time", http::BLOCKING_WAIT_MAX)?,
    })
}

/// The gossip pools: the LAN pool always; on a server, the WAN pool with the servers of every
/// datacenter, as "<node>.<dc>" (clients only ever join their own LAN). A restarted agent
/// joins the members it last knew, unless it had left.
fn gossip_plans(
    args: &cli::AgentArgs,
    node_name: &str,
    wan_port: Option<u16>,
) -> Result<Vec<PoolPlan>, AgentError> {
    let lan = PoolPlan {
        label: "serf.lan",
        name: node_name.to_owned(),
        port: args.serf_lan_port,
        bind: args.serf_lan_bind,
        advertise: None,
        allowed: parse_cidrs(&args.serf_lan_allowed_cidrs, "serf_lan_allowed_cidrs")?,
        joins: parse_joins(&args.join, args.serf_lan_port, "-join")?,
        join_names: join_names(&args.join, args.serf_lan_port, "-join")?,
        swim: if args.dev { swim::Config::dev() } else { swim::Config::lan() },
        dir: args.data_dir.clone(),
    };
    let wan = wan_port.map(|wan_port| -> Result<PoolPlan, AgentError> {
        Ok(PoolPlan {
            label: "serf.wan",
            name: format!("{node_name}.{}", args.datacenter),
            port: wan_port,
            bind: args.serf_wan_bind,
            advertise: args.advertise_wan,
            allowed: parse_cidrs(&args.serf_wan_allowed_cidrs, "serf_wan_allowed_cidrs")?,
            joins: parse_joins(&args.join_wan, wan_port, "-join-wan")?,
            join_names: join_names(&args.join_wan, wan_port, "-join-wan")?,
            swim: if args.dev { swim::Config::dev() } else { swim::Config::wan() },
            dir: args.data_dir.as_ref().map(|dir| dir.join("wan")),
        })
    });
    let mut plans: Vec<PoolPlan> = std::iter::once(lan).chain(wan.transpose()?).collect();
    for (flag, text, label) in [
        ("-retry-interval", &args.retry_interval, "serf.lan"),
        ("-retry-interval-wan", &args.retry_interval_wan, "serf.wan"),
    ] {
        let Some(text) = text else { continue };
        let interval = muster_core::duration::parse(text)
            .ok()
            .filter(|interval| !interval.is_zero())
            .ok_or_else(|| format!("Invalid {flag} {text:?}: want a positive duration such as 30s"))?;
        for plan in plans.iter_mut().filter(|p| p.label == label) {
            plan.swim.join_retry_interval = interval;
        }
    }
    for plan in &mut plans {
        rejoin_remembered(plan, args.rejoin == Some(true))?;
    }
    Ok(plans)
}

/// Adds the members `plan`'s pool last knew to its joins, unless it had left (and `-rejoin`
/// does not ask to rejoin anyway).
fn rejoin_remembered(plan: &mut PoolPlan, rejoin: bool) -> Result<(), AgentError> {
    let Some(dir) = plan.dir.as_deref() else { return Ok(()) };
    let remembered = muster::rejoin::read(dir)?;
    if remembered.left && !rejoin {
        tracing::info!("agent: {}: left before; not rejoining the known members (use -rejoin)", plan.label);
        return Ok(());
    }
    let known: Vec<SocketAddr> = remembered.peers.into_iter().filter(|p| !plan.joins.contains(p)).collect();
    if !known.is_empty() {
        tracing::info!("agent: {}: rejoining {} known members", plan.label, known.len());
    }
    plan.joins.extend(known);
    Ok(())
}

/// A gossip pool, bound and restored, ready to run.
type OpenPool = (PoolPlan, Sockets, AgentStorage, Gossip);

/// What a server runs besides the API: its Raft server, its state, and the RPC connections
/// its port hands over.
type Server = (RaftHandle<http::Output>, Arc<Store>, Option<mpsc::Receiver<RpcConnection>>);

/// The agent on the runtime: each step in turn, then the pools until they stop.
async fn run(args: cli::AgentArgs, files: FromFiles, mut plan: Plan) -> Result<(), AgentError> {
    let origin = tokio::time::Instant::now();
    let mut pools = Vec::new();
    for pool in std::mem::take(&mut plan.pools) {
        pools.push(open_pool(pool, &plan, args.disable_keyring_file == Some(true)).await?);
    }
    // Each pool's drive loop publishes its member list for /v1/agent/members, takes the API's
    // joins, leaves and events on its command queue, and reports user events to it.
    let members = Arc::new(http::Members::default());
    let channels: Vec<_> = pools.iter().map(|_| mpsc::channel::<CommandRequest>(16)).collect();
    let mut gossip = http::GossipApi::new(
        pools
            .iter()
            .zip(&channels)
            .map(|((pool, ..), (tx, _))| (pool_of(pool), pool.port, tx.downgrade()))
            .collect(),
    );
    gossip.encrypted = pools.iter().any(|(_, _, _, node)| !node.keys().is_empty());
    let gossip = Arc::new(gossip);
    let raft_id = muster_core::servers::raft_id(&plan.node_id).ok_or_else(|| {
        format!("Node ID {:?} cannot name a Raft server (its first 64 bits are zero)", plan.node_id)
    })?;
    let mut server = match plan.server {
        false => None,
        true => Some(start_consensus(server_plan(&args, &files, &plan, raft_id), members.clone()).await?),
    };
    let api = build_api(&args, &files, &plan, raft_id, server.as_ref(), members.clone(), gossip.clone())?;
    http::apply_definitions(&api, files.definitions.clone()).await?;
    spawn_tasks(&api, &args, &files, &mut server);
    let (http_addrs, dns_addrs) = serve_listeners(&api, &args, &files, &plan).await?;
    start_watches(&files.watches, http_addrs.first().copied());
    api.config.set_runtime(runtime_config(&args, &files, &plan, http_addrs, dns_addrs));
    print_banner(&args, &plan);
    let pooled = Pooled { origin, members, gossip, server: plan.server, tags: plan.tags.clone() };
    let result = run_pools(pooled, pools.into_iter().zip(channels).collect(), &args, &plan).await;
    if let Some((handle, ..)) = server {
        handle.stop().await;
    }
    result
}

/// Binds one gossip pool's sockets and restores its node from its data directory, with the
/// keys of its keyring file, else `-encrypt`'s.
async fn open_pool(pool: PoolPlan, plan: &Plan, disable_keyring_file: bool) -> Result<OpenPool, AgentError> {
    let bind = SocketAddr::new(pool.bind.unwrap_or(plan.bind_ip), pool.port);
    let advertise = SocketAddr::new(pool.advertise.unwrap_or(plan.advertise_ip), pool.port);
    let udp = UdpSocket::bind(bind).await.map_err(AgentError::bind(Listener::GossipUdp, bind))?;
    let tcp = TcpListener::bind(bind).await.map_err(AgentError::bind(Listener::GossipTcp, bind))?;
    let (storage, restored) = match &pool.dir {
        None => (AgentStorage::Memory(MemoryStorage::default()), None),
        Some(dir) => {
            let storage = FileStorage::open(dir).map_err(|e| AgentError::Storage {
                what: format!("data dir {}", dir.display()),
                reason: e.to_string(),
            })?;
            let restored = storage.load().map_err(|e| AgentError::Storage {
                what: format!("gossip state in {}", dir.display()),
                reason: e.to_string(),
            })?;
            (AgentStorage::File(storage), restored)
        }
    };
    let mut config = Config::new(&pool.name, advertise, seed_from_os());
    config.swim = pool.swim.clone();
    config.allowed_sources = pool.allowed.clone();
    config.meta = plan.tags.clone();
    // A keyring file from an earlier run wins over -encrypt, as in Consul: it carries every
    // rotation since.
    let from_file = match pool.dir.as_deref().filter(|_| !disable_keyring_file) {
        Some(dir) => muster::keyring_file::read(dir)?,
        None => None,
    };
    config.encrypt_keys = match from_file {
        Some(keys) => {
            if plan.encrypt_key.is_some() {
                tracing::warn!(
                    "agent: {}: a keyring file exists; ignoring -encrypt (use `muster keyring` to change keys)",
                    pool.label
                );
            }
            keys
        }
        None => plan.encrypt_key.iter().cloned().collect(),
    };
    let node = Gossip::new(config, restored, Instant::ZERO)
        .map_err(|e| AgentError::Setting(format!("Error: {e}")))?;
    Ok((pool, Sockets { udp, tcp }, storage, node))
}

/// How this server starts Raft.
fn server_plan(args: &cli::AgentArgs, files: &FromFiles, plan: &Plan, raft_id: raft::ServerId) -> ServerPlan {
    ServerPlan {
        dev: args.dev,
        bootstrap: plan.bootstrap,
        expect: plan.expect,
        raft_id,
        bind: SocketAddr::new(plan.bind_ip, args.server_port),
        dir: plan.raft_dir.clone(),
        datacenter: args.datacenter.clone(),
        raft_multiplier: files.raft_multiplier.unwrap_or(RAFT_MULTIPLIER_DEFAULT),
        secure: Some(plan.internal_tls.clone()),
    }
}

/// The API every task and listener shares: the agent's own node, services and checks, its
/// gossip, and on a server its consensus.
fn build_api(
    args: &cli::AgentArgs,
    files: &FromFiles,
    plan: &Plan,
    raft_id: raft::ServerId,
    server: Option<&Server>,
    members: Arc<http::Members>,
    gossip: Arc<http::GossipApi>,
) -> Result<Arc<http::Api>, AgentError> {
    let mut node = own_node(&plan.node_id, &plan.node_name, &args.datacenter, plan.advertise_ip);
    node.meta.extend(plan.node_meta.clone());
    let local_dir = args.data_dir.clone().filter(|_| !args.dev);
    let local = local::LocalAgent::open(node, local_dir)
        .map_err(|e| format!("Error reading the agent's services and checks: {e}"))?;
    // One pool of RPC connections: a server's consensus forwards writes to the leader on it,
    // the HTTP API the requests it sends on.
    let rpc = Arc::new(muster::rpc::Pool::secured(Some(plan.internal_tls.clone())));
    let tokens_file = args.data_dir.as_ref().filter(|_| files.acl_token_persistence && !args.dev);
    let acl = acl_settings(files, server.is_some(), tokens_file.map(|dir| dir.join(http::ACL_TOKENS_FILE)))?;
    Ok(Arc::new(http::Api {
        consensus: server.map(|(handle, store, _)| http::Consensus {
            store: store.clone(),
            raft: handle.client(),
            raft_id,
            rpc_addr: SocketAddr::new(plan.advertise_ip, args.server_port),
            write_timeout: match files.rpc_client_timeout {
                // Consul's 0: no bound.
                Some(std::time::Duration::ZERO) => std::time::Duration::MAX,
                configured => configured.unwrap_or(http::WRITE_TIMEOUT),
            },
            hold_timeout: files.rpc_hold_timeout.unwrap_or(http::RPC_HOLD_TIMEOUT),
            pool: rpc.clone(),
        }),
        autopilot: http::AutopilotShared::new(files.autopilot.clone()),
        datacenter: args.datacenter.clone(),
        node_name: plan.node_name.clone(),
        node_id: plan.node_id.clone(),
        members,
        gossip,
        check_ttl: http::CheckTtl::default(),
        local: Arc::new(local),
        config: http::ConfigFiles::new(files.sources.clone()),
        rpc,
        chosen_server: http::ChosenServer::default(),
        checks: match files.check_update_interval {
            Some(interval) => http::CheckRunner::new(seed_from_os()).with_update_interval(interval),
            None => http::CheckRunner::new(seed_from_os()),
        },
        script_checks: http::ScriptChecks {
            from_api: args.enable_script_checks == Some(true),
            from_files: args.enable_local_script_checks == Some(true),
        },
        query_times: plan.query_times,
        acl_default_policy: files.acl_default_policy.clone().unwrap_or_else(|| "allow".to_owned()),
        response_headers: response_headers(&files.response_headers),
        block_endpoints: files.block_endpoints.clone(),
        acl,
        https: plan.https.as_ref().map(|(_, https)| https.clone()),
        internal_tls: Some(plan.internal_tls.clone()),
    }))
}

/// The `acl` block, when ACLs are on. A client agent refuses them: it answers its agent
/// endpoints itself and cannot resolve tokens without the servers yet, so it would either
/// answer everyone or no one.
fn acl_settings(
    files: &FromFiles,
    server: bool,
    persist_to: Option<std::path::PathBuf>,
) -> Result<Option<http::AclSettings>, AgentError> {
    if !files.acl_enabled {
        return Ok(None);
    }
    if !server {
        return Err(
            "acl.enabled: muster enforces ACLs on servers only yet; a client agent would answer its \
                    agent endpoints to every token, which is less secure than this configuration asks"
                .to_owned()
                .into(),
        );
    }
    let policy = files.acl_default_policy.as_deref().unwrap_or("allow");
    let default_policy = muster_core::acl::DefaultPolicy::parse(policy).ok_or_else(|| {
        format!("acl.default_policy: invalid value {policy:?}: must be \"allow\" or \"deny\"")
    })?;
    let mut tokens = http::AgentTokens {
        default: files.acl_default_token.clone().unwrap_or_default(),
        dns: files.acl_dns_token.clone().unwrap_or_default(),
        ..http::AgentTokens::default()
    };
    if let Some(path) = &persist_to {
        tokens
            .load(path)
            .map_err(|error| format!("Error loading persisted tokens from {}: {error}", path.display()))?;
    }
    Ok(Some(http::AclSettings {
        default_policy,
        persist_to,
        tokens: std::sync::RwLock::new(tokens),
        initial_management: files.acl_initial_management.clone(),
    }))
}

/// `http_config.response_headers` as HTTP answers carry them; a name or value HTTP cannot carry
/// is left out with a warning (Consul starts with it, and Go writes it as it is).
fn response_headers(
    configured: &std::collections::BTreeMap<String, String>,
) -> Vec<(axum::http::HeaderName, axum::http::HeaderValue)> {
    let valid = |(name, value): (&String, &String)| match (name.parse(), value.parse()) {
        (Ok(name), Ok(value)) => Some((name, value)),
        _ => {
            tracing::warn!(header = %name, "agent: http_config.response_headers: not a valid HTTP header; left out");
            None
        }
    };
    configured.iter().filter_map(valid).collect()
}

/// Starts the agent's loops: telemetry, reloads, anti-entropy, checks, and on a server the
/// leader's duties and the RPC it serves.
fn spawn_tasks(api: &Arc<http::Api>, args: &cli::AgentArgs, files: &FromFiles, server: &mut Option<Server>) {
    // Remote execution runs what any client asks: off unless a file turns it on.
    if !files.disable_remote_exec.unwrap_or(true) {
        tracing::warn!("agent: remote exec is enabled (disable_remote_exec = false)");
        tokio::spawn(muster::tasks::remote_exec::run_remote_exec(api.clone()));
    }
    // Consul's metric names; gauge names carry the machine's host name (not the node name)
    // when a sink is configured, as go-metrics names them.
    muster::telemetry::start(files.telemetry.clone(), hostname().unwrap_or_default());
    tokio::spawn(muster::telemetry::run_usage_metrics(api.clone()));
    tokio::spawn(reload_on_sighup(api.clone()));
    if args.auto_reload_config == Some(true) {
        tokio::spawn(auto_reload(api.clone()));
    }
    muster::tasks::spawn_agent_loops(api);
    if let Some((_, _, rpc_connections)) = server {
        tokio::spawn(muster::tasks::leader::run_duties(api.clone()));
        tokio::spawn(muster::tasks::leader::run_leader_duties(api.clone()));
        if let Some(connections) = rpc_connections.take() {
            tokio::spawn(muster::rpc::serve(connections, Arc::new(http::RpcHandler::new(api.clone()))));
        }
    }
}

/// Runs each of the configuration's watch plans on a thread of its own against the agent's
/// HTTP API, as Consul's agent runs them against its own client.
fn start_watches(watches: &[serde_json::Value], http: Option<SocketAddr>) {
    if watches.is_empty() {
        return;
    }
    let Some(mut http) = http else {
        tracing::warn!("agent: watches need the HTTP API, which is off (ports.http = -1); none runs");
        return;
    };
    if http.ip().is_unspecified() {
        http.set_ip(IpAddr::V4(Ipv4Addr::LOCALHOST));
    }
    for entry in watches.iter().filter_map(serde_json::Value::as_object) {
        // Checked at start; an entry that no longer compiles here would be a bug.
        let Ok(watch) = crate::cmd::watch::from_config(entry, &http.to_string()) else { continue };
        std::thread::spawn(move || crate::cmd::watch::run_for_agent(&watch));
    }
}

/// The addresses the HTTP and DNS listeners bind: `addresses.http` and `addresses.dns`
/// replace `client_addr` for their listener, as in Consul.
fn listen_on(args: &cli::AgentArgs, files: &FromFiles, plan: &Plan, ips: &[IpAddr]) -> Vec<IpAddr> {
    let several = files.client_addrs.len() > 1 && args.client == files.client_addrs.first().copied();
    match (ips.is_empty(), several) {
        (false, _) => ips.to_vec(),
        // `client_addr` naming several addresses: each listener binds every one.
        (true, true) => files.client_addrs.clone(),
        (true, false) => vec![plan.client_ip],
    }
}

/// Binds the HTTP and DNS listeners and serves each on a task; returns what each bound.
async fn serve_listeners(
    api: &Arc<http::Api>,
    args: &cli::AgentArgs,
    files: &FromFiles,
    plan: &Plan,
) -> Result<(Vec<SocketAddr>, Vec<SocketAddr>), AgentError> {
    let mut http_addrs = Vec::new();
    let mut dns_addrs = Vec::new();
    if let Some(port) = plan.http_port {
        for ip in listen_on(args, files, plan, &files.addresses_http) {
            let addr = SocketAddr::new(ip, port);
            http_addrs.push(addr);
            let listener = TcpListener::bind(addr).await.map_err(AgentError::bind(Listener::Http, addr))?;
            let api = api.clone();
            tokio::spawn(async move {
                if let Err(error) = http::serve(listener, api).await {
                    tracing::error!(%error, "agent: the HTTP server stopped");
                }
            });
        }
    }
    if let Some((port, https)) = &plan.https {
        for ip in listen_on(args, files, plan, &files.addresses_https) {
            let addr = SocketAddr::new(ip, *port);
            let listener = TcpListener::bind(addr).await.map_err(AgentError::bind(Listener::Https, addr))?;
            tokio::spawn(https.clone().serve(listener, api.clone(), http::HTTP_CONNS_PER_CLIENT_MAX));
        }
    }
    if let Some(port) = plan.dns_port {
        for ip in listen_on(args, files, plan, &files.addresses_dns) {
            let addr = SocketAddr::new(ip, port);
            dns_addrs.push(addr);
            let udp = UdpSocket::bind(addr).await.map_err(AgentError::bind(Listener::DnsUdp, addr))?;
            let tcp = TcpListener::bind(addr).await.map_err(AgentError::bind(Listener::DnsTcp, addr))?;
            tokio::spawn(muster::dns::serve(api.clone(), plan.dns_settings.clone(), udp, tcp));
        }
    }
    Ok((http_addrs, dns_addrs))
}

/// The agent's settings as `/v1/agent/self` shows them.
fn runtime_config(
    args: &cli::AgentArgs,
    files: &FromFiles,
    plan: &Plan,
    http_addrs: Vec<SocketAddr>,
    dns_addrs: Vec<SocketAddr>,
) -> http::RuntimeConfig {
    let interval = |text: &Option<String>| {
        text.as_deref()
            .and_then(|t| muster_core::duration::parse(t).ok())
            .unwrap_or(std::time::Duration::from_secs(30))
    };
    http::RuntimeConfig {
        dev_mode: args.dev,
        bootstrap: plan.bootstrap,
        bootstrap_expect: args.bootstrap_expect,
        data_dir: args.data_dir.clone(),
        bind_addr: Some(plan.bind_ip),
        advertise_addr_lan: Some(plan.advertise_ip),
        advertise_addr_wan: Some(args.advertise_wan.unwrap_or(plan.advertise_ip)),
        client_addrs: listen_on(args, files, plan, &[]),
        http_addrs,
        dns_addrs,
        ports: http::Ports {
            http: args.http_port,
            https: args.https_port.unwrap_or(-1),
            grpc: args.grpc_port.unwrap_or(-1),
            grpc_tls: args.grpc_tls_port.unwrap_or(-1),
            dns: args.dns_port,
            serf_lan: i32::from(args.serf_lan_port),
            serf_wan: plan.wan_port.map_or(-1, i32::from),
            server: i32::from(args.server_port),
        },
        retry_join_lan: args.join.clone(),
        retry_join_wan: args.join_wan.clone(),
        retry_join_interval_lan: interval(&args.retry_interval),
        retry_join_interval_wan: interval(&args.retry_interval_wan),
        retry_join_max_attempts_lan: args.retry_max.unwrap_or(0),
        retry_join_max_attempts_wan: args.retry_max_wan.unwrap_or(0),
        log_level: args.log_level.clone().unwrap_or_else(|| "info".to_owned()).to_uppercase(),
        log_json: args.log_json == Some(true),
        node_meta: plan.node_meta.clone(),
        dns_domain: format!("{}.", args.domain.trim_end_matches('.')),
        dns_alt_domain: args.alt_domain.clone().unwrap_or_default(),
        dns_recursors: args.recursor.clone(),
        disable_remote_exec: files.disable_remote_exec.unwrap_or(true),
        leave_on_terminate: plan.leave_on_terminate,
        skip_leave_on_interrupt: !plan.leave_on_interrupt,
        rejoin_after_leave: args.rejoin == Some(true),
        disable_keyring_file: args.disable_keyring_file == Some(true),
    }
}

/// Consul's start-up banner; with -log-json it is left out, as Consul leaves it out, so
/// stdout is JSON lines.
fn print_banner(args: &cli::AgentArgs, plan: &Plan) {
    if args.log_json == Some(true) {
        tracing::info!("agent: muster agent running!");
        return;
    }
    println!("==> Starting muster agent...");
    println!("               Version: '{}'", version::MUSTER_VERSION);
    println!("             Node name: '{}'", plan.node_name);
    println!("            Datacenter: '{}'", args.datacenter);
    println!("                Server: {} (Bootstrap: {})", plan.server, plan.bootstrap);
    let port = |port: Option<u16>| port.map_or("-1".to_owned(), |port| port.to_string());
    let (http, dns) = (port(plan.http_port), port(plan.dns_port));
    println!("           Client Addr: [{}] (HTTP: {http}, HTTPS: -1, gRPC: -1, DNS: {dns})", plan.client_ip);
    let wan_port = port(plan.wan_port);
    println!("          Cluster Addr: {} (LAN: {}, WAN: {wan_port})", plan.advertise_ip, args.serf_lan_port);
    println!("     Gossip Encryption: {}", plan.encrypt_key.is_some());
    println!();
    println!("==> muster agent running!");
}

/// What every pool's loop shares.
struct Pooled {
    origin: tokio::time::Instant,
    members: Arc<http::Members>,
    gossip: Arc<http::GossipApi>,
    server: bool,
    tags: bytes::Bytes,
}

/// A pool's queue of commands from the API.
type Queue = (mpsc::Sender<CommandRequest>, mpsc::Receiver<CommandRequest>);

/// Runs every pool's drive loop until one fails (which stops the agent: a half-present server
/// misleads everyone) or a signal ends them.
async fn run_pools(
    pooled: Pooled,
    pools: Vec<(OpenPool, Queue)>,
    args: &cli::AgentArgs,
    plan: &Plan,
) -> Result<(), AgentError> {
    // SIGINT or SIGTERM: every pool leaves gracefully (Consul's default for agents); the agent
    // stops once every leave has gone out, or after a grace period.
    let (left_tx, left_rx) = mpsc::channel::<()>(pools.len());
    let mut leavers = Vec::new();
    let mut running = tokio::task::JoinSet::new();
    let mut remembering = Vec::new();
    for ((pool, sockets, storage, node), (tx, rx)) in pools {
        if let Some(dir) = pool.dir.clone() {
            let members = pooled.members.clone();
            let task = tokio::spawn(muster::rejoin::remember(
                members,
                pool_of(&pool),
                pool.name.clone(),
                dir.clone(),
            ));
            remembering.push((task, dir));
        }
        give_up_joining(&mut running, &pool, args.retry_max, &pooled.members);
        leavers.push(tx.clone());
        let disable_keyring_file = args.disable_keyring_file == Some(true);
        running.spawn(drive_pool(
            &pooled,
            pool,
            (sockets, storage, node),
            (tx, rx),
            left_tx.clone(),
            disable_keyring_file,
        ));
    }
    drop(left_tx);
    let leaving = Leaving {
        leavers,
        left: left_rx,
        remembering,
        server: pooled.server,
        on_terminate: plan.leave_on_terminate,
        on_interrupt: plan.leave_on_interrupt,
    };
    let shutdown = tokio::spawn(leave_on_signal(leaving, pooled.gossip.clone()));
    let mut result = Ok(());
    while let Some(joined) = running.join_next().await {
        let outcome = match joined {
            Ok(outcome) => outcome,
            // Aborted below, after the first failure, which is the one to report.
            Err(error) if error.is_cancelled() && result.is_err() => continue,
            Err(error) => return Err(AgentError::Stopped(error.to_string())),
        };
        if let Err(error) = outcome {
            result = Err(AgentError::Stopped(error.to_string()));
            running.abort_all();
        }
    }
    shutdown.abort();
    result
}

/// -retry-max: a pool that joined nobody after that many attempts stops the agent (the first
/// attempt at start, then one every retry interval), as Consul's does.
fn give_up_joining(
    running: &mut tokio::task::JoinSet<std::io::Result<()>>,
    pool: &PoolPlan,
    retry_max: Option<u32>,
    members: &Arc<http::Members>,
) {
    let joining = !pool.joins.is_empty() || !pool.join_names.is_empty();
    let Some(attempts) = retry_max.filter(|&n| n > 0 && joining) else { return };
    let (members, which, label) = (members.clone(), pool_of(pool), pool.label);
    let give_up_after = pool.swim.join_retry_interval * (attempts - 1) + RETRY_MAX_GRACE;
    running.spawn(async move {
        tokio::time::sleep(give_up_after).await;
        if members.list(which).len() > 1 {
            // Joined: from here on the pool runs as any other.
            return std::future::pending().await;
        }
        tracing::error!("agent: {label}: Retry join is exiting after max attempts: {attempts}");
        Err(std::io::Error::other(format!("{label}: Retry join failed after {attempts} attempts")))
    });
}

/// One pool's drive loop, with its joiners: it publishes the member list after each step that
/// changed it, hands user events and keyring results to the API, and keeps the keyring file.
fn drive_pool(
    pooled: &Pooled,
    pool: PoolPlan,
    (sockets, storage, node): (Sockets, AgentStorage, Gossip),
    (tx, rx): Queue,
    left_tx: mpsc::Sender<()>,
    disable_keyring_file: bool,
) -> impl std::future::Future<Output = std::io::Result<()>> + Send + 'static {
    let members = pooled.members.clone();
    let joiner = tokio::spawn(join_all(tx.clone(), pool.joins.clone(), pool.label, members.clone()));
    // Names are looked up here, again every retry interval until they resolve (DNS may not
    // know the servers yet when an agent starts), then joined like addresses.
    let resolver = tokio::spawn(join_by_name(
        tx,
        pool.join_names.clone(),
        pool.swim.join_retry_interval,
        pool.label,
        members.clone(),
    ));
    let role = if pooled.server { "server" } else { "client" };
    let mut log_event = event_logger(format!("agent.{role}.{}", pool.label), pool.name.clone(), left_tx);
    // A member event marks the list stale; the next step publishes it.
    let stale = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let marked = stale.clone();
    let which = pool_of(&pool);
    let events = pooled.gossip.clone();
    let on_event = move |event: Event| {
        match &event {
            Event::Member(_) => marked.store(true, std::sync::atomic::Ordering::Relaxed),
            Event::User(user) if which == http::Pool::Lan => {
                events.received(&user.name, user.ltime, &user.payload)
            }
            Event::Keyring(result) => events.keyring.finished(which, result.clone()),
            _ => {}
        }
        log_event(event);
    };
    let own_tags = pooled.tags.clone();
    let keyring_dir = pool.dir.clone().filter(|_| !disable_keyring_file);
    let mut saved_version = node.keyring_version();
    let on_step = move |node: &Gossip| {
        if stale.swap(false, std::sync::atomic::Ordering::Relaxed) {
            members.publish(which, node, &own_tags);
        }
        // A keyring operation changed the keys: keep them for the next start.
        if node.keyring_version() != saved_version {
            let written =
                keyring_dir.as_deref().map_or(Ok(()), |dir| muster::keyring_file::write(dir, &node.keys()));
            // Once per change: a failure is reported, not retried at every step.
            if let Err(error) = written {
                tracing::error!("agent: writing the keyring file: {error}; a restart will use the old keys");
            }
            saved_version = node.keyring_version();
        }
    };
    let origin = pooled.origin;
    async move {
        let result = drive::run(node, origin, sockets, storage, rx, on_event, on_step).await;
        joiner.abort();
        resolver.abort();
        result
    }
}

/// What a graceful leave needs: each pool's queue, where each reports its leave went out,
/// and the tasks that remember each pool's members.
struct Leaving {
    leavers: Vec<mpsc::Sender<CommandRequest>>,
    left: mpsc::Receiver<()>,
    remembering: Vec<(tokio::task::JoinHandle<()>, std::path::PathBuf)>,
    server: bool,
    on_terminate: bool,
    on_interrupt: bool,
}

/// Waits for SIGINT, SIGTERM or a leave asked over HTTP; then, unless the signal's setting
/// says not to, every pool leaves, and the leave is remembered so that the next start does not
/// rejoin without -rejoin. Dropping the queues then ends the pools.
async fn leave_on_signal(mut leaving: Leaving, gossip: Arc<http::GossipApi>) {
    let leave = tokio::select! {
        signal = wait_for_signal() => {
            // Go's names for the signals, as Consul logs them.
            let (leave, name) = match signal {
                Signal::Interrupt => (leaving.on_interrupt, "interrupt"),
                Signal::Terminate => (leaving.on_terminate, "terminated"),
            };
            tracing::info!(signal = name, "agent: Caught");
            leave
        }
        () = gossip.leave.notified() => {
            tracing::info!("agent: leave requested over HTTP");
            true
        }
    };
    if !leave {
        tracing::info!("agent: graceful shutdown disabled; exiting without leaving");
        return;
    }
    tracing::info!("agent: Gracefully shutting down agent...");
    let role = if leaving.server { "server" } else { "client" };
    tracing::info!("agent.{role}: {role} starting leave");
    for tx in &leaving.leavers {
        let (reply, _) = oneshot::channel();
        let _ = tx.send((Command::Leave, reply)).await;
    }
    let pools = leaving.leavers.len();
    let all_left = async {
        for _ in 0..pools {
            let _ = leaving.left.recv().await;
        }
    };
    match tokio::time::timeout(LEAVE_GRACE, all_left).await {
        Ok(()) => tracing::info!("agent: Graceful leave complete"),
        Err(_) => tracing::warn!("agent: Timeout waiting for leave to complete"),
    }
    for (task, dir) in leaving.remembering {
        task.abort();
        let _ = task.await;
        let left =
            muster::rejoin::Remembered { left: true, ..muster::rejoin::read(&dir).unwrap_or_default() };
        if let Err(error) = muster::rejoin::write(&dir, &left) {
            tracing::warn!(%error, "agent: cannot record the leave");
        }
    }
    tracing::info!("agent: Requesting shutdown");
}
