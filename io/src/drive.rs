//! The drive loop: feeds a [`Gossip`] its inputs and carries out its outputs.
//!
//! Two layers, so that every driver shares the part that matters:
//!
//! - [`drain`] is synchronous: it empties a node's outputs into a [`Host`]. The in-process
//!   simulator harness implements `Host` over a virtual network; [`run`] implements it over
//!   sockets.
//! - [`run`] is the async loop. It is written against `tokio` as re-exported by `madsim-tokio`:
//!   real tokio in the agent, madsim's deterministic runtime in the simulator. Both therefore run
//!   this same code; only the sockets and the [`Storage`] differ.

use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use muster_core::gossip::{Channel, Command, CommandError, Event, Persist, PersistId, StableState, Transmit};
use muster_core::wire::{frame_len, frame_prefix, FRAME_PREFIX_BYTES};
use muster_core::{Gossip, Instant, DATAGRAM_BYTES_MAX};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::secure::{Secure, ServerStream, TLS_PROTOCOL_BYTE};

/// Where a node's outputs go. Implemented by [`run`] over sockets and by the simulator's harness
/// over its virtual network.
pub trait Host {
    /// Begin making `persist` durable; acknowledge it with [`Gossip::on_persisted`] when done.
    fn persist(&mut self, persist: Persist);
    /// Send `transmit`. Loss is allowed: the protocols above tolerate it.
    fn transmit(&mut self, transmit: Transmit);
    /// Report `event` to the application.
    fn event(&mut self, event: Event);
}

/// Empties every output of `node` into `host` and returns the next deadline.
///
/// Call after every input. Persists are handed over before transmits, so a host that makes them
/// durable synchronously and acknowledges at once still sends in a correct order.
pub fn drain(node: &mut Gossip, host: &mut impl Host) -> Option<Instant> {
    while let Some(persist) = node.poll_persist() {
        host.persist(persist);
    }
    while let Some(transmit) = node.poll_transmit() {
        host.transmit(transmit);
    }
    while let Some(event) = node.poll_event() {
        host.event(event);
    }
    node.poll_timeout()
}

/// Durable storage for a node's [`StableState`].
pub trait Storage: Send + 'static {
    /// Makes `state` durable, replacing the previous state atomically. When the future resolves
    /// to `Ok`, a crash of the process or the machine will not lose it.
    fn save(&mut self, state: StableState) -> impl Future<Output = io::Result<()>> + Send;
}

/// A command for a running node, with a channel for its result.
pub type CommandRequest = (Command, oneshot::Sender<Result<(), CommandError>>);

/// The sockets a node speaks over: one datagram socket and one stream listener, both bound to
/// the node's bind address.
#[derive(Debug)]
pub struct Sockets {
    /// The datagram socket.
    pub udp: UdpSocket,
    /// The stream listener.
    pub tcp: TcpListener,
}

/// Runs `node` until `commands` is closed or the storage fails.
///
/// `origin` is the instant the node's [`Instant::ZERO`] corresponds to. `on_event` is called for
/// every event, in order, on the loop's task; `on_step` after every input, with the node, for
/// whoever needs to look at its state (the simulator's views, later the agent's API).
pub async fn run<S: Storage>(
    mut node: Gossip,
    origin: tokio::time::Instant,
    sockets: Sockets,
    storage: S,
    mut commands: mpsc::Receiver<CommandRequest>,
    mut on_event: impl FnMut(Event),
    mut on_step: impl FnMut(&Gossip),
) -> io::Result<()> {
    let now = move || core_now(origin);
    let Sockets { udp, tcp } = sockets;
    let (persist_tx, persist_rx) = mpsc::channel::<Persist>(CHANNEL_CAPACITY);
    let (persisted_tx, mut persisted_rx) = mpsc::channel::<io::Result<PersistId>>(CHANNEL_CAPACITY);
    let (frame_tx, mut frame_rx) = mpsc::channel::<(SocketAddr, Bytes)>(CHANNEL_CAPACITY);
    let storage_task = tokio::spawn(persist_in_order(storage, persist_rx, persisted_tx));
    let accept_task = tokio::spawn(accept_streams(tcp, frame_tx, None, None, STREAMS_PER_SOURCE_MAX));
    let outbound = Arc::new(Semaphore::new(STREAMS_OUTBOUND_MAX));
    let mut outbox = Outbox::default();
    let mut datagram = vec![0u8; DATAGRAM_BYTES_MAX];

    let result = loop {
        let deadline = drain(&mut node, &mut outbox);
        while let Some(event) = outbox.events.pop_front() {
            on_event(event);
        }
        on_step(&node);
        for persist in outbox.persists.drain(..) {
            if persist_tx.send(persist).await.is_err() {
                break;
            }
        }
        for transmit in outbox.transmits.drain(..) {
            send(&udp, &outbound, transmit).await;
        }
        let sleep = match deadline {
            Some(deadline) => origin + Duration::from_nanos(deadline.as_nanos()),
            None => origin + Duration::from_secs(IDLE_WAKEUP_SECS) + elapsed(origin),
        };
        // Biased, in this order: durability first (it releases sends), then the node's own
        // deadline (so a flood of datagrams cannot starve probes and suspicion timeouts), then
        // commands, stream frames and datagrams.
        tokio::select! {
            biased;
            persisted = persisted_rx.recv() => match persisted {
                Some(Ok(id)) => node.on_persisted(now(), id),
                Some(Err(error)) => break Err(error),
                None => break Err(io::Error::other("the storage task stopped")),
            },
            () = tokio::time::sleep_until(sleep) => node.handle_timeout(now()),
            request = commands.recv() => match request {
                Some((command, reply)) => {
                    let _ = reply.send(node.handle_command(now(), command));
                }
                None => break Ok(()),
            },
            Some((from, frame)) = frame_rx.recv() => node.handle_stream_frame(now(), from, &frame),
            received = udp.recv_from(&mut datagram) => match received {
                Ok((len, from)) => node.handle_datagram(now(), from, &datagram[..len]),
                Err(error) => tracing::debug!(%error, "datagram receive failed"),
            },
        }
    };
    storage_task.abort();
    accept_task.abort();
    result
}

/// A [`Host`] that collects a node's outputs, in order, to be carried out after [`drain`]
/// returns: by the async loop here, by the simulator's harness over its virtual network.
#[derive(Debug, Default)]
pub struct Outbox {
    /// Persists, oldest first.
    pub persists: Vec<Persist>,
    /// Transmits, oldest first.
    pub transmits: Vec<Transmit>,
    /// Events, oldest first.
    pub events: VecDeque<Event>,
}

impl Host for Outbox {
    fn persist(&mut self, persist: Persist) {
        self.persists.push(persist);
    }

    fn transmit(&mut self, transmit: Transmit) {
        self.transmits.push(transmit);
    }

    fn event(&mut self, event: Event) {
        self.events.push_back(event);
    }
}

/// The node's clock: time since `origin`, in the core's representation.
pub fn core_now(origin: tokio::time::Instant) -> Instant {
    Instant::from_nanos(u64::try_from(elapsed(origin).as_nanos()).unwrap_or(u64::MAX))
}

fn elapsed(origin: tokio::time::Instant) -> Duration {
    tokio::time::Instant::now().duration_since(origin)
}

/// Saves persists one at a time, in order, and reports each id once it is durable.
async fn persist_in_order<S: Storage>(
    mut storage: S,
    mut persists: mpsc::Receiver<Persist>,
    persisted: mpsc::Sender<io::Result<PersistId>>,
) {
    while let Some(persist) = persists.recv().await {
        let result = storage.save(persist.state).await.map(|()| persist.id);
        let failed = result.is_err();
        if persisted.send(result).await.is_err() || failed {
            return;
        }
    }
}

async fn send(udp: &UdpSocket, outbound: &Arc<Semaphore>, transmit: Transmit) {
    match transmit.channel {
        Channel::Datagram => {
            if let Err(error) = send_datagram(udp, transmit.dst, &transmit.payload).await {
                tracing::debug!(dst = %transmit.dst, %error, "datagram send failed");
            }
        }
        // Stream messages are rare (a probe's last attempt), so each gets its own short-lived
        // connection rather than a pool; the reply comes back on a connection the peer opens.
        Channel::Stream => {
            // A bounded number of stream sends at once; beyond it the message is dropped, as a
            // lost datagram would be, rather than piling up tasks and buffers.
            let Ok(permit) = outbound.clone().try_acquire_owned() else {
                tracing::debug!(dst = %transmit.dst, "too many stream sends in flight; dropped");
                return;
            };
            tokio::spawn(async move {
                let _permit = permit;
                let sent = tokio::time::timeout(STREAM_SEND_TIMEOUT, async {
                    let mut stream = TcpStream::connect(transmit.dst).await?;
                    stream.write_all(&frame_prefix(transmit.payload.len())).await?;
                    stream.write_all(&transmit.payload).await?;
                    stream.flush().await
                })
                .await;
                if !matches!(sent, Ok(Ok(()))) {
                    tracing::debug!(dst = %transmit.dst, "stream send failed or timed out");
                }
            });
        }
    }
}

/// `send_to`, papering over madsim's argument order (destination first) and return type.
async fn send_datagram(udp: &UdpSocket, dst: SocketAddr, payload: &[u8]) -> io::Result<()> {
    #[cfg(not(madsim))]
    return udp.send_to(payload, dst).await.map(drop);
    #[cfg(madsim)]
    return udp.send_to(dst, payload).await;
}

/// Accepts stream connections and forwards each frame read from them, with a bound on how many
/// connections are read at once, and on how many of them one source address may hold (so one
/// host cannot take every slot and shut the others out).
///
/// With `divert`, a connection whose first byte is the divert byte is handed over whole (after
/// that byte) instead of being read as frames: the server port carries Raft's frames and RPC
/// connections side by side. A frame's length prefix never starts with the divert byte. With
/// `secure`, a connection that opens with [`TLS_PROTOCOL_BYTE`] is routed the same way once
/// its handshake is done, by the first byte inside the session; one that does not is refused
/// when `secure` refuses plain connections.
pub(crate) async fn accept_streams(
    listener: TcpListener,
    frames: mpsc::Sender<(SocketAddr, Bytes)>,
    divert: Option<Divert>,
    secure: Option<Arc<dyn Secure>>,
    per_source_max: usize,
) {
    let permits = Arc::new(Semaphore::new(STREAMS_INBOUND_MAX));
    let per_source: Arc<std::sync::Mutex<BTreeMap<IpAddr, usize>>> = Arc::default();
    loop {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let (stream, from) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of descriptors, most likely: back off instead of spinning.
                tracing::debug!(%error, "stream accept failed");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let Some(slot) = SourceSlot::take(&per_source, from.ip(), per_source_max) else {
            tracing::debug!(%from, "stream refused: too many from this source");
            drop(stream);
            continue;
        };
        let frames = frames.clone();
        let divert = divert.clone();
        let secure = secure.clone();
        tokio::spawn(async move {
            let route = divert.is_some() || secure.is_some();
            let Some((stream, first)) = open_stream(stream, from, route, secure.as_deref()).await else {
                return;
            };
            if let (Some((byte, diverted)), Some(first)) = (divert, first) {
                if first == byte {
                    // The diverted connection keeps neither this loop's slot nor its permit:
                    // its receiver bounds its own connections.
                    drop(slot);
                    drop(permit);
                    let _ = diverted.send((stream, from)).await;
                    return;
                }
            }
            if let Err(error) = read_frames(stream, from, &frames, first).await {
                tracing::debug!(%from, %error, "stream closed");
            }
            drop(slot);
            drop(permit);
        });
    }
}

/// The stream to read a new connection on, and its first byte when it was read to route it
/// (it is, with `route`); `None` when the connection is refused or fails before that byte.
async fn open_stream(
    mut stream: TcpStream,
    from: SocketAddr,
    route: bool,
    secure: Option<&dyn Secure>,
) -> Option<(ServerStream, Option<u8>)> {
    if !route {
        return Some((Box::new(stream), None));
    }
    let first = read_first(&mut stream).await?;
    match secure {
        Some(secure) if first == TLS_PROTOCOL_BYTE => {
            let mut session = match tokio::time::timeout(STREAM_IDLE_TIMEOUT, secure.accept(stream)).await {
                Ok(Ok(session)) => session,
                Ok(Err(error)) => {
                    tracing::error!(conn = %from, %error, "agent.server.rpc: TLS handshake failed");
                    return None;
                }
                Err(_) => return None,
            };
            let first = read_first(&mut session).await?;
            Some((session, Some(first)))
        }
        Some(secure) if secure.refuses_plain() => {
            tracing::warn!(conn = %from, "agent.server.rpc: Non-TLS connection attempted with VerifyIncoming set");
            None
        }
        _ => Some((Box::new(stream), Some(first))),
    }
}

/// A connection's first byte, if it comes in time.
async fn read_first<S: tokio::io::AsyncRead + Unpin>(stream: &mut S) -> Option<u8> {
    let mut read = [0u8; 1];
    match tokio::time::timeout(STREAM_IDLE_TIMEOUT, stream.read_exact(&mut read)).await {
        Ok(Ok(_)) => Some(read[0]),
        _ => None,
    }
}

/// One source address's hold on an inbound stream; released when dropped.
struct SourceSlot {
    counts: Arc<std::sync::Mutex<BTreeMap<IpAddr, usize>>>,
    ip: IpAddr,
}

impl SourceSlot {
    fn take(
        counts: &Arc<std::sync::Mutex<BTreeMap<IpAddr, usize>>>,
        ip: IpAddr,
        max: usize,
    ) -> Option<SourceSlot> {
        let mut map = counts.lock().expect("never held across a panic");
        let held = map.entry(ip).or_insert(0);
        if *held >= max {
            return None;
        }
        *held += 1;
        Some(SourceSlot { counts: counts.clone(), ip })
    }
}

impl Drop for SourceSlot {
    fn drop(&mut self) {
        let mut map = self.counts.lock().expect("never held across a panic");
        let held = map.get_mut(&self.ip).expect("a slot's source is counted");
        *held -= 1;
        if *held == 0 {
            map.remove(&self.ip);
        }
    }
}

/// Where diverted connections go, and the first byte that diverts them.
pub(crate) type Divert = (u8, mpsc::Sender<(ServerStream, SocketAddr)>);

async fn read_frames(
    mut stream: ServerStream,
    from: SocketAddr,
    frames: &mpsc::Sender<(SocketAddr, Bytes)>,
    mut first: Option<u8>,
) -> io::Result<()> {
    loop {
        let mut prefix = [0u8; FRAME_PREFIX_BYTES];
        // The first byte of the first prefix may have been read already, to route the stream.
        let rest = match first.take() {
            Some(byte) => {
                prefix[0] = byte;
                &mut prefix[1..]
            }
            None => &mut prefix[..],
        };
        let read = tokio::time::timeout(STREAM_IDLE_TIMEOUT, stream.read_exact(rest)).await;
        match read {
            Err(_elapsed) => return Ok(()),
            Ok(Err(error)) if error.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
            Ok(result) => result?,
        };
        let len = frame_len(prefix).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        // The body must arrive within the deadline, and the buffer grows with what arrives
        // rather than trusting the announced length: a peer that announces 16 MiB and sends
        // nothing ties up neither memory nor the connection for long.
        let mut frame = Vec::with_capacity(len.min(FRAME_PREALLOCATE_BYTES_MAX));
        let mut body = (&mut stream).take(len as u64);
        match tokio::time::timeout(STREAM_FRAME_TIMEOUT, body.read_to_end(&mut frame)).await {
            Err(_elapsed) => return Err(io::Error::new(io::ErrorKind::TimedOut, "frame body too slow")),
            Ok(result) => result?,
        };
        if frame.len() != len {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "frame cut short"));
        }
        if frames.send((from, Bytes::from(frame))).await.is_err() {
            return Ok(());
        }
    }
}

/// Depth of the channels between the loop and its helper tasks. They only buffer bursts: the
/// loop drains them on every turn.
const CHANNEL_CAPACITY: usize = 256;

/// Inbound stream connections read at once; more wait in the listen backlog.
pub(crate) const STREAMS_INBOUND_MAX: usize = 256;

/// Inbound streams one source address may hold at once. Peers' streams are short (one message
/// each), so even many agents sharing one address (a laptop running a test cluster) stay far
/// below it.
pub const STREAMS_PER_SOURCE_MAX: usize = 32;

/// How long a stream send may take, connection included (memberlist's `TCPTimeout` is 10 s).
const STREAM_SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// How long an inbound stream may sit idle before it is closed.
const STREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Outbound stream sends in flight at once.
const STREAMS_OUTBOUND_MAX: usize = 64;

/// How long a frame's body may take to arrive once its length is known (memberlist's
/// `TCPTimeout`).
const STREAM_FRAME_TIMEOUT: Duration = Duration::from_secs(10);

/// The most memory reserved for a frame before its bytes arrive.
const FRAME_PREALLOCATE_BYTES_MAX: usize = 64 * 1024;

/// The pause after a failed accept (typically: out of file descriptors).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// How long the loop sleeps when the node has no deadline at all.
const IDLE_WAKEUP_SECS: u64 = 3600;
