//! The DNS interface on real sockets: UDP and TCP listeners on the client address (port 8600),
//! answering through the core's [`muster_core::dns::handle`]. A server answers from its own
//! replica of the catalog (stale reads allowed, as Consul's default `allow_stale`: no leader is
//! needed); a client agent sends the packet to a server over RPC with its DNS settings and relays
//! the answer. Names outside the domain go to the configured recursors, in order or at random,
//! each given `recursor_timeout`; when all fail the answer is SERVFAIL. Hostnames outside the
//! domain that an answer points at (external services) are looked up through the same
//! recursors, by the agent the query came to, between the core's two passes.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use muster_core::dns::{self, Handled, Resolved, Transport};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

use crate::http::{Api, HttpError};

/// The biggest DNS message over UDP muster reads.
const UDP_PACKET_BYTES_MAX: usize = 65_535;
/// How long a TCP connection may sit idle between queries.
const TCP_IDLE: Duration = Duration::from_secs(10);
/// Concurrent TCP connections served; more wait to be accepted.
const TCP_CONNS_MAX: usize = 256;

/// How recursors are tried (Consul's `recursor_strategy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RecursorStrategy {
    /// In the order given.
    #[default]
    Sequential,
    /// Starting from a random one.
    Random,
}

/// The DNS interface's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// What answers say (domain, TTLs, health filtering, size limits).
    pub answers: dns::Config,
    /// Upstream servers for names outside the domain.
    pub recursors: Vec<SocketAddr>,
    /// How they are tried.
    pub strategy: RecursorStrategy,
    /// How long each is given.
    pub recursor_timeout: Duration,
}

/// Serves DNS on `udp` and `tcp` for as long as the agent runs: one UDP receive loop per core
/// on the one socket (a server answers inline in its loop, so loops are its parallelism).
pub async fn serve(api: Arc<Api>, settings: Arc<Settings>, udp: UdpSocket, tcp: TcpListener) {
    let udp = Arc::new(udp);
    let loops = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    for _ in 1..loops {
        tokio::spawn(serve_udp(api.clone(), settings.clone(), udp.clone()));
    }
    tokio::join!(serve_udp(api.clone(), settings.clone(), udp), serve_tcp(api, settings, tcp));
}

async fn serve_udp(api: Arc<Api>, settings: Arc<Settings>, socket: Arc<UdpSocket>) {
    let mut buf = vec![0u8; UDP_PACKET_BYTES_MAX];
    loop {
        let (len, from) = match socket.recv_from(&mut buf).await {
            Ok(received) => received,
            Err(error) => {
                // ICMP errors from earlier sends surface here on some systems: not fatal.
                tracing::debug!(%error, "agent.dns: receiving over UDP");
                continue;
            }
        };
        let packet = Bytes::copy_from_slice(&buf[..len]);
        if api.consensus.is_some() && settings.recursors.is_empty() {
            // A server answers from memory at once: no task per query.
            if let Some(answer) = answer(&api, &settings, &packet, Transport::Udp).await {
                let _ = socket.send_to(&answer, from).await;
            }
            continue;
        }
        let (api, settings, socket) = (api.clone(), settings.clone(), socket.clone());
        tokio::spawn(async move {
            if let Some(answer) = answer(&api, &settings, &packet, Transport::Udp).await {
                let _ = socket.send_to(&answer, from).await;
            }
        });
    }
}

async fn serve_tcp(api: Arc<Api>, settings: Arc<Settings>, listener: TcpListener) {
    let permits = Arc::new(tokio::sync::Semaphore::new(TCP_CONNS_MAX));
    loop {
        let Ok(permit) = permits.clone().acquire_owned().await else { return };
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::debug!(%error, "agent.dns: accepting over TCP");
                continue;
            }
        };
        let (api, settings) = (api.clone(), settings.clone());
        tokio::spawn(async move {
            let _ = serve_connection(&api, &settings, stream).await;
            drop(permit);
        });
    }
}

/// Queries on one TCP connection, each framed by a two-byte length, until it closes or idles.
async fn serve_connection(api: &Api, settings: &Settings, mut stream: TcpStream) -> std::io::Result<()> {
    loop {
        let mut prefix = [0u8; 2];
        match tokio::time::timeout(TCP_IDLE, stream.read_exact(&mut prefix)).await {
            Ok(Ok(_)) => {}
            Ok(Err(_)) | Err(_) => return Ok(()),
        }
        let mut packet = vec![0u8; usize::from(u16::from_be_bytes(prefix))];
        tokio::time::timeout(TCP_IDLE, stream.read_exact(&mut packet))
            .await
            .map_err(std::io::Error::other)??;
        let Some(answer) = answer(api, settings, &Bytes::from(packet), Transport::Tcp).await else {
            return Ok(());
        };
        let Ok(len) = u16::try_from(answer.len()) else { return Ok(()) };
        let mut framed = Vec::with_capacity(answer.len() + 2);
        framed.extend_from_slice(&len.to_be_bytes());
        framed.extend_from_slice(&answer);
        stream.write_all(&framed).await?;
    }
}

/// The answer to `packet`, or `None` to send nothing; timed as Consul times its DNS answers.
async fn answer(api: &Api, settings: &Settings, packet: &Bytes, transport: Transport) -> Option<Vec<u8>> {
    let started = std::time::Instant::now();
    let answer = answer_untimed(api, settings, packet, transport).await;
    let config = &settings.answers;
    crate::telemetry::dns_answered(packet, &config.domain, &config.alt_domain, &api.node_name, started);
    answer
}

async fn answer_untimed(
    api: &Api,
    settings: &Settings,
    packet: &Bytes,
    transport: Transport,
) -> Option<Vec<u8>> {
    // One seed for both passes, so the second draws the instances whose names were looked up.
    // It need not be reproducible in the agent (the core's tests pin theirs).
    let seed = crate::consensus::random_u64();
    let mut handled = handle(api, &settings.answers, packet, transport, seed, None).await;
    if let Ok(Handled::Resolve(names)) = &handled {
        let resolved = resolve(settings, names).await;
        handled = handle(api, &settings.answers, packet, transport, seed, Some(&resolved)).await;
    }
    let handled = match handled {
        Ok(handled) => handled,
        Err(error) => {
            tracing::warn!(reason = %error.reason, "agent.dns: answering a query failed");
            dns::servfail(packet)
        }
    };
    match handled {
        Handled::Answer(bytes) => Some(bytes),
        Handled::Drop => None,
        Handled::Resolve(_) => {
            debug_assert!(false, "the core asked for names on a second pass");
            None
        }
        Handled::Recurse => match recurse(settings, packet).await {
            Some(answer) => Some(answer),
            None => match dns::servfail(packet) {
                Handled::Answer(bytes) => Some(bytes),
                _ => None,
            },
        },
    }
}

/// `packet` answered from this server's catalog, or (on a client agent) by a server's; `seed`
/// shuffles the instances, `resolved` is the second pass's (see [`dns::handle`]).
pub async fn handle(
    api: &Api,
    config: &dns::Config,
    packet: &[u8],
    transport: Transport,
    seed: u64,
    resolved: Option<&Resolved>,
) -> Result<Handled, HttpError> {
    if let Ok(consensus) = api.consensus() {
        let mut rng = muster_core::Rng::from_seed(seed);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX));
        return Ok(consensus.store.read(|fsm| {
            let authorizer = api.acl.as_ref().map(|acl| dns_authorizer(fsm, acl, &api.datacenter));
            let catalog = fsm.catalog();
            dns::handle_as(packet, transport, catalog, config, &mut rng, now, resolved, authorizer.as_ref())
        }));
    }
    let call = crate::rpc::Call::Dns(crate::rpc::DnsQuery {
        packet: Bytes::copy_from_slice(packet),
        transport,
        config: config.clone(),
        seed,
        resolved: resolved.cloned(),
    });
    match api.send(crate::http::NextHop::Server, call, true).await? {
        crate::rpc::Reply::Dns(handled) => {
            handled.map_err(|(status, reason)| HttpError { status: status_code(status), reason })
        }
        _ => Err(HttpError::internal("unexpected reply to a DNS query")),
    }
}

/// What DNS answers may show with ACLs on: the `dns` token's permissions, else the `default`
/// token's, else the anonymous token's (Consul's order); nothing when that token does not
/// resolve.
fn dns_authorizer(
    fsm: &muster_core::fsm::Fsm,
    acl: &crate::http::AclSettings,
    datacenter: &str,
) -> muster_core::acl::Authorizer {
    let tokens = acl.tokens();
    let secret = if tokens.dns.is_empty() { &tokens.default } else { &tokens.dns };
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| u64::try_from(since.as_millis()).unwrap_or(u64::MAX));
    match fsm.acl().resolve(secret, now_ms, datacenter, acl.default_policy) {
        Ok(token) => token.authorizer,
        Err(error) => {
            tracing::warn!(reason = %error, "agent.dns: the DNS token does not resolve; answering nothing");
            muster_core::acl::Authorizer::from_policies([], muster_core::acl::DefaultPolicy::Deny)
        }
    }
}

fn status_code(status: u16) -> axum::http::StatusCode {
    axum::http::StatusCode::from_u16(status).unwrap_or(axum::http::StatusCode::INTERNAL_SERVER_ERROR)
}

/// Each of `names` looked up (type A) through the recursors, at once; a name none answers is
/// recorded with an empty reply, so the second pass leaves its CNAME alone.
async fn resolve(settings: &Settings, names: &[String]) -> Resolved {
    let lookups = names.iter().map(|name| async move {
        let id = (crate::consensus::random_u64() & u64::from(u16::MAX)) as u16;
        let reply = match dns::address_query(name, id) {
            Some(query) => recurse(settings, &query).await.unwrap_or_default(),
            None => Vec::new(),
        };
        (name.clone(), reply)
    });
    let mut resolved = Resolved::default();
    for (name, reply) in futures_util::future::join_all(lookups).await {
        resolved.insert(name, reply);
    }
    resolved
}

/// The first answer a recursor gives to `packet` (over UDP), trying them as the strategy says.
async fn recurse(settings: &Settings, packet: &[u8]) -> Option<Vec<u8>> {
    let count = settings.recursors.len();
    if count == 0 {
        return None;
    }
    let start = match settings.strategy {
        RecursorStrategy::Sequential => 0,
        RecursorStrategy::Random => (crate::consensus::random_u64() % count as u64) as usize,
    };
    for offset in 0..count {
        let recursor = settings.recursors[(start + offset) % count];
        match tokio::time::timeout(settings.recursor_timeout, ask_recursor(recursor, packet)).await {
            Ok(Ok(answer)) => return Some(answer),
            Ok(Err(error)) => tracing::warn!(%recursor, %error, "agent.dns: recursor failed"),
            Err(_) => tracing::warn!(%recursor, "agent.dns: recursor timed out"),
        }
    }
    None
}

async fn ask_recursor(recursor: SocketAddr, packet: &[u8]) -> std::io::Result<Vec<u8>> {
    let local: SocketAddr = if recursor.is_ipv4() { ([0, 0, 0, 0], 0).into() } else { ([0u16; 8], 0).into() };
    let socket = UdpSocket::bind(local).await?;
    socket.connect(recursor).await?;
    socket.send(packet).await?;
    let mut buf = vec![0u8; UDP_PACKET_BYTES_MAX];
    loop {
        let len = socket.recv(&mut buf).await?;
        // Only the answer to this query (same ID) counts.
        if len >= 2 && packet.len() >= 2 && buf[..2] == packet[..2] {
            buf.truncate(len);
            return Ok(buf);
        }
    }
}
