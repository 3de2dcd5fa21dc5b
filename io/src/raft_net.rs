//! Raft between servers over TCP: Consul's server RPC port, 8300.
//!
//! Each server keeps one outbound connection to every peer and writes its messages to it as
//! length-prefixed frames ([`muster_core::raft::wire`]), back to back, without waiting for
//! answers: appends pipeline, and a burst of messages is written together and flushed once.
//! Answers come back on the connection the peer keeps to this server. Sending never blocks the
//! Raft loop: each peer has a bounded queue, and a message that finds it full, or a peer that
//! cannot be reached, is dropped, as the network may drop it; Raft retransmits what matters.
//!
//! The bytes on the wire are [`burst`]'s, which the fuzz crate compiles alone.
//!
//! Inbound connections go through the same accept loop as gossip streams (bounded in number
//! overall and per source address, frame bodies bounded in size and time). A frame that does
//! not decode is dropped and counted; it changes nothing.

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use muster_core::raft::{wire, Message, ServerId};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use self::burst::Burst;
pub use self::burst::RPC_PROTOCOL_BYTE;
use crate::drive::{accept_streams, STREAMS_INBOUND_MAX};
use crate::secure::{Secure, ServerStream};

mod burst;

/// Consul's server RPC port.
pub const DEFAULT_PORT: u16 = 8300;

/// Messages queued for one peer before new ones are dropped. A leader's pipeline to a follower
/// holds at most `inflight_appends_max` appends plus heartbeats, far below this.
const PEER_QUEUE_MAX: usize = 4096;

/// How long a connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// After a failed connection attempt, messages to that peer are dropped for this long before
/// the next attempt, rather than each paying the connect timeout.
const RECONNECT_BACKOFF: Duration = Duration::from_millis(200);

/// How long one write of a burst may block before the connection is given up.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// Inbound frames waiting to be decoded.
const INBOUND_QUEUE_MAX: usize = 4096;

/// What the transport dropped, for the logs and tests.
#[derive(Debug, Default)]
pub struct TransportStats {
    /// Outbound messages dropped (queue full, peer unknown or unreachable, write failed).
    pub dropped: AtomicU64,
    /// Inbound frames that did not decode.
    pub malformed: AtomicU64,
}

/// One server's end of the Raft network.
#[derive(Debug)]
pub struct RaftTransport {
    id: ServerId,
    local_addr: SocketAddr,
    peers: BTreeMap<ServerId, (SocketAddr, mpsc::Sender<Bytes>)>,
    stats: Arc<TransportStats>,
    /// How connections to peers are secured, if at all.
    secure: Option<Arc<dyn Secure>>,
    tasks: Vec<JoinHandle<()>>,
}

impl RaftTransport {
    /// Listens on `addr` for server `id`; returns the transport and the messages that arrive,
    /// each with the server that sent it.
    pub async fn bind(
        id: ServerId,
        addr: SocketAddr,
    ) -> io::Result<(RaftTransport, mpsc::Receiver<(ServerId, Message)>)> {
        RaftTransport::bind_with_rpc(id, addr, None, None).await
    }

    /// [`RaftTransport::bind`], also handing every connection that opens with
    /// [`RPC_PROTOCOL_BYTE`] to `rpc` (the server RPC that shares Consul's server port), and
    /// securing connections both ways as `secure` asks.
    pub async fn bind_with_rpc(
        id: ServerId,
        addr: SocketAddr,
        rpc: Option<mpsc::Sender<(ServerStream, SocketAddr)>>,
        secure: Option<Arc<dyn Secure>>,
    ) -> io::Result<(RaftTransport, mpsc::Receiver<(ServerId, Message)>)> {
        let listener = TcpListener::bind(addr).await?;
        let local_addr = listener.local_addr()?;
        let stats = Arc::new(TransportStats::default());
        let (frame_tx, mut frame_rx) = mpsc::channel::<(SocketAddr, Bytes)>(INBOUND_QUEUE_MAX);
        let (message_tx, message_rx) = mpsc::channel(INBOUND_QUEUE_MAX);
        let divert = rpc.map(|rpc| (RPC_PROTOCOL_BYTE, rpc));
        // Servers (and, through RPC, the agents of a whole datacenter behind one NAT) may open
        // many connections from one address: only the overall bound applies here.
        let accept =
            tokio::spawn(accept_streams(listener, frame_tx, divert, secure.clone(), STREAMS_INBOUND_MAX));
        let decode_stats = stats.clone();
        let decode = tokio::spawn(async move {
            while let Some((source, frame)) = frame_rx.recv().await {
                match wire::decode(&frame) {
                    Ok(message) => {
                        if message_tx.send(message).await.is_err() {
                            return;
                        }
                    }
                    Err(error) => {
                        decode_stats.malformed.fetch_add(1, Ordering::Relaxed);
                        tracing::debug!(%source, %error, "agent.server.raft: malformed frame dropped");
                    }
                }
            }
        });
        let transport = RaftTransport {
            id,
            local_addr,
            peers: BTreeMap::new(),
            stats,
            secure,
            tasks: vec![accept, decode],
        };
        Ok((transport, message_rx))
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// What it dropped.
    pub fn stats(&self) -> &TransportStats {
        &self.stats
    }

    /// Sends to `id` at `addr` from now on (a new address replaces the connection).
    pub fn set_peer(&mut self, id: ServerId, addr: SocketAddr) {
        if id == self.id || self.peers.get(&id).is_some_and(|(known, _)| *known == addr) {
            return;
        }
        let (tx, rx) = mpsc::channel(PEER_QUEUE_MAX);
        self.tasks.push(tokio::spawn(peer_link(addr, rx, self.stats.clone(), self.secure.clone())));
        // The old link's task ends when its queue's sender is dropped here.
        self.peers.insert(id, (addr, tx));
    }

    /// Where server `id` listens, if known (this server's own address for itself). Raft and
    /// RPC share the port, so this is also where a call for the leader goes, as
    /// hashicorp/raft's `Leader()` gives Consul the address it forwards to.
    pub fn peer_addr(&self, id: ServerId) -> Option<SocketAddr> {
        if id == self.id {
            return Some(self.local_addr);
        }
        self.peers.get(&id).map(|(addr, _)| *addr)
    }

    /// Queues `message` for `to`; dropped if the peer is unknown or its queue is full.
    pub fn send(&self, to: ServerId, message: &Message) {
        let queued = match self.peers.get(&to) {
            Some((_, queue)) => queue.try_send(wire::encode(self.id, message)).is_ok(),
            None => false,
        };
        if !queued {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Drop for RaftTransport {
    /// Stops listening and closes every connection.
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// A connection to the peer at `addr`, secured as `secure` asks.
async fn connect(addr: SocketAddr, secure: Option<&dyn Secure>) -> io::Result<ServerStream> {
    let tcp = TcpStream::connect(addr).await?;
    let _ = tcp.set_nodelay(true);
    crate::secure::dial(tcp, secure).await
}

/// Writes the frames queued for one peer to a connection kept open to it, reconnecting after
/// failures. Everything queued when a write starts goes out in one burst and one flush.
async fn peer_link(
    addr: SocketAddr,
    mut frames: mpsc::Receiver<Bytes>,
    stats: Arc<TransportStats>,
    secure: Option<Arc<dyn Secure>>,
) {
    let mut stream: Option<ServerStream> = None;
    let mut retry_at = tokio::time::Instant::now();
    let mut burst = Burst::default();
    while let Some(frame) = frames.recv().await {
        burst.clear();
        burst.push(&frame);
        while let Ok(frame) = frames.try_recv() {
            burst.push(&frame);
        }
        let count = burst.count();
        if stream.is_none() && tokio::time::Instant::now() >= retry_at {
            match tokio::time::timeout(CONNECT_TIMEOUT, connect(addr, secure.as_deref())).await {
                Ok(Ok(connected)) => stream = Some(connected),
                Ok(Err(error)) => {
                    tracing::debug!(%addr, %error, "agent.server.raft: peer unreachable");
                    retry_at = tokio::time::Instant::now() + RECONNECT_BACKOFF;
                }
                Err(_) => {
                    tracing::debug!(%addr, "agent.server.raft: peer unreachable");
                    retry_at = tokio::time::Instant::now() + RECONNECT_BACKOFF;
                }
            }
        }
        let Some(connected) = stream.as_mut() else {
            stats.dropped.fetch_add(count, Ordering::Relaxed);
            continue;
        };
        // Flushed, not only written: a stream that buffers (TLS, or madsim's, which sends only
        // on flush) would otherwise hold the burst back.
        let written = tokio::time::timeout(WRITE_TIMEOUT, async {
            connected.write_all(burst.as_bytes()).await?;
            connected.flush().await
        })
        .await;
        if !matches!(written, Ok(Ok(()))) {
            tracing::debug!(%addr, "agent.server.raft: connection lost");
            stats.dropped.fetch_add(count, Ordering::Relaxed);
            stream = None;
        }
    }
}
