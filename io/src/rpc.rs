//! Server RPC on the server port (8300), beside Raft: how a server that does not lead hands a
//! request to the one that does (`../shared/reference/consul-behaviour.md` §7, "RPC path").
//!
//! A connection opens with [`RPC_PROTOCOL_BYTE`], then carries one request and its reply,
//! each a four-byte big-endian length and a postcard body ([`codec`], which the fuzz crate
//! compiles alone). Four calls exist:
//! - [`Call::Http`]: an HTTP request the receiver answers through its own router, exactly as
//!   if its client had sent it there (writes, default and `?consistent` reads, blocking
//!   queries); the reply is the HTTP answer, headers included.
//! - [`Call::Propose`]: a command the agent itself writes (anti-entropy, TTL expiry), which
//!   the leader stamps with its clock and proposes.
//! - [`Call::NodeRows`]: the catalog's rows for one node, which anti-entropy compares with the
//!   agent's own state.
//! - [`Call::Dns`]: a DNS query a client agent cannot answer itself (it keeps no catalog).
//!
//! A call travels at most two hops, client agent → any server → leader, and its [`Request`]
//! says which hop it is on. A client's call ([`Request::Server`]) is answered as the server's
//! own HTTP API would answer it, so the server sends on what needs the leader. A server's call
//! ([`Request::Leader`]) is answered by the receiver itself (marked [`Forwarded`]): one that
//! lost the leadership meanwhile answers `No cluster leader` rather than bounce it.
//! A connection carries one request at a time (so a blocking query holds up nothing else) and
//! is kept for the next one ([`Pool`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use self::codec::{decode_body, encode_body, encode_frame, FrameError, FrameReader};
pub use self::codec::{
    Call, DnsQuery, HttpReply, HttpRequest, NodeRows, Reply, Request, RPC_FRAME_BYTES_MAX,
};
pub use crate::raft_net::RPC_PROTOCOL_BYTE;
use crate::secure::{Secure, ServerStream};

mod codec;

/// How long connecting to a server may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a reply may take: the longest blocking query (10 min, plus its jitter) and more.
const REPLY_TIMEOUT: Duration = Duration::from_secs(11 * 60);

/// How long a connection may wait for its next request before it is closed. Callers keep
/// idle connections for reuse; one the server closed meanwhile is replaced on the next call.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// The most bytes one read of a frame asks the socket for.
const READ_CHUNK_BYTES: usize = 64 << 10;

/// RPC connections served at once; more wait for a slot.
const CONNECTIONS_MAX: usize = 4096;

/// The extension the receiving server puts on a forwarded HTTP request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Forwarded;

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    /// No connection could be made: nothing was sent, so the call may go elsewhere.
    #[error("rpc error: connecting: {0}")]
    Connect(std::io::Error),
    /// A read or write on the connection: the call may or may not have been carried out.
    #[error("rpc error: {0}")]
    Io(#[from] std::io::Error),
    /// The other side's bytes did not decode.
    #[error("rpc error: malformed reply: {0}")]
    Malformed(String),
}

/// How long a connection may sit in the pool and still be used: well inside the server's
/// [`IDLE_TIMEOUT`], so a call does not meet a connection the server is closing.
const REUSE_IDLE_MAX: Duration = Duration::from_secs(30);

/// Connections to other servers, kept open between calls: a connection carries one request
/// at a time, and goes back to the pool once its reply is read, so a busy follower reuses a
/// few connections instead of opening one per request (which would run a machine out of
/// ports at tens of thousands of requests a second).
#[derive(Debug, Default)]
pub struct Pool {
    /// Per server, its idle connections and when each went idle.
    idle: std::sync::Mutex<std::collections::BTreeMap<SocketAddr, Vec<(ServerStream, tokio::time::Instant)>>>,
    /// How new connections are secured, if at all.
    secure: Option<Arc<dyn Secure>>,
}

/// Idle connections kept per server; more are closed when their call ends.
const IDLE_PER_SERVER_MAX: usize = 64;

impl Pool {
    /// A pool whose connections are secured as `secure` asks.
    pub fn secured(secure: Option<Arc<dyn Secure>>) -> Pool {
        Pool { secure, ..Pool::default() }
    }

    /// Sends `request` to the server at `addr` and waits for its reply, on an idle connection
    /// that still looks open, else on a new one. A failure once the request is sent is the
    /// answer, on a reused connection as on a new one: the server may have carried the request
    /// out before the connection broke, so only the caller may decide to send it again (the
    /// simulator caught a forwarded write applied although its caller was told it never left).
    pub async fn call(&self, addr: SocketAddr, request: &Request) -> Result<Reply, RpcError> {
        let result = self.call_uncounted(addr, request).await;
        // Only client agents send `Request::Server` (Consul's `client.rpc`).
        if matches!(request, Request::Server(_)) {
            crate::metrics::client_rpc(addr, result.is_err());
        }
        result
    }

    async fn call_uncounted(&self, addr: SocketAddr, request: &Request) -> Result<Reply, RpcError> {
        let encoded = encode_body(request).map_err(|error| RpcError::Malformed(error.to_string()))?;
        let frame =
            encode_frame(&encoded).map_err(|error| frame_error(error, std::io::ErrorKind::InvalidInput))?;
        let mut stream = match self.take(addr) {
            Some(stream) => stream,
            None => connect(addr, self.secure.as_deref()).await.map_err(RpcError::Connect)?,
        };
        let reply = exchange(&mut stream, &frame).await?;
        self.give_back(addr, stream);
        decode_body(&reply).map_err(|error| RpcError::Malformed(error.to_string()))
    }

    /// An idle connection to `addr` that has not sat too long and that the server has not
    /// closed, as far as can be seen without waiting; the others are dropped.
    fn take(&self, addr: SocketAddr) -> Option<ServerStream> {
        let mut idle = self.idle.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let kept = idle.get_mut(&addr)?;
        while let Some((mut stream, idle_since)) = kept.pop() {
            if idle_since.elapsed() < REUSE_IDLE_MAX && stream.still_open() {
                return Some(stream);
            }
        }
        None
    }

    fn give_back(&self, addr: SocketAddr, stream: ServerStream) {
        let mut idle = self.idle.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let kept = idle.entry(addr).or_default();
        if kept.len() < IDLE_PER_SERVER_MAX {
            kept.push((stream, tokio::time::Instant::now()));
        }
    }
}

/// A new RPC connection to `addr`, secured as `secure` asks, its protocol byte sent.
async fn connect(addr: SocketAddr, secure: Option<&dyn Secure>) -> std::io::Result<ServerStream> {
    let connecting = async {
        let tcp = TcpStream::connect(addr).await?;
        let _ = tcp.set_nodelay(true);
        crate::secure::dial(tcp, secure).await
    };
    let mut stream = tokio::time::timeout(CONNECT_TIMEOUT, connecting)
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))??;
    stream.write_all(&[RPC_PROTOCOL_BYTE]).await?;
    Ok(stream)
}

/// Writes one request frame and reads its reply frame.
async fn exchange(stream: &mut ServerStream, frame: &[u8]) -> std::io::Result<Vec<u8>> {
    // Flushed, not only written: a stream that buffers (madsim's sends only on flush) would
    // hold the request back, and the protocol byte a new connection opens with goes with it.
    stream.write_all(frame).await?;
    stream.flush().await?;
    tokio::time::timeout(REPLY_TIMEOUT, read_frame(stream))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no reply in time"))?
}

/// One frame; its buffer grows with what arrives rather than with what its length announces
/// ([`FrameReader`]), and nothing past the frame's end is read.
async fn read_frame<S: AsyncRead + Unpin>(stream: &mut S) -> std::io::Result<Vec<u8>> {
    let mut reader = FrameReader::new();
    let mut chunk = vec![0u8; READ_CHUNK_BYTES];
    loop {
        let wanted = reader.wanted().min(READ_CHUNK_BYTES);
        let read = stream.read(&mut chunk[..wanted]).await?;
        if read == 0 {
            let error = reader.end().unwrap_or(FrameError::PrefixCutShort);
            return Err(frame_error(error, std::io::ErrorKind::InvalidData));
        }
        if let Some(body) = reader
            .push(&chunk[..read])
            .map_err(|error| frame_error(error, std::io::ErrorKind::InvalidData))?
        {
            return Ok(body);
        }
    }
}

/// A framing error as the I/O error it was before the framing moved to [`codec`]: an
/// oversized frame is `too_large` (invalid input when written, invalid data when read), a cut
/// one an unexpected end.
fn frame_error(error: FrameError, too_large: std::io::ErrorKind) -> std::io::Error {
    let kind = match error {
        FrameError::TooLarge => too_large,
        FrameError::PrefixCutShort | FrameError::BodyCutShort => std::io::ErrorKind::UnexpectedEof,
        FrameError::Malformed(_) => std::io::ErrorKind::Other,
    };
    std::io::Error::new(kind, error.to_string())
}

/// What answers requests: the agent's HTTP API.
pub trait Handler: Send + Sync + 'static {
    /// Answers one request.
    fn handle(&self, request: Request) -> impl std::future::Future<Output = Reply> + Send;
}

/// Serves the RPC connections the server port hands over, each on a task of its own that
/// answers its requests one after another until the caller closes it or it sits idle.
pub async fn serve<H: Handler>(mut connections: mpsc::Receiver<(ServerStream, SocketAddr)>, handler: Arc<H>) {
    let slots = Arc::new(tokio::sync::Semaphore::new(CONNECTIONS_MAX));
    while let Some((mut stream, from)) = connections.recv().await {
        crate::metrics::incr_counter("rpc.accept_conn", &[], 1.0);
        let Ok(slot) = slots.clone().acquire_owned().await else { return };
        let handler = handler.clone();
        tokio::spawn(async move {
            while let Some(reply) = answer_one(&mut stream, from, &*handler).await {
                let written = async {
                    stream.write_all(&reply).await?;
                    stream.flush().await
                };
                if written.await.is_err() {
                    break;
                }
            }
            drop(slot);
        });
    }
}

/// Reads one request and returns its reply frame; `None` when the connection should close
/// (closed, idle too long, or a request that does not decode).
async fn answer_one<H: Handler, S: AsyncRead + Unpin>(
    stream: &mut S,
    from: SocketAddr,
    handler: &H,
) -> Option<Vec<u8>> {
    let request = tokio::time::timeout(IDLE_TIMEOUT, read_frame(stream)).await.ok()?.ok()?;
    let request: Request = match decode_body(&request) {
        Ok(request) => request,
        Err(error) => {
            tracing::debug!(%from, %error, "agent.server.rpc: malformed request dropped");
            crate::metrics::incr_counter("rpc.request_error", &[], 1.0);
            return None;
        }
    };
    let reply = crate::metrics::answering_rpc(handler.handle(request)).await;
    crate::metrics::incr_counter("rpc.request", &[], 1.0);
    let written = encode_body(&reply).and_then(|encoded| encode_frame(&encoded));
    match written {
        Ok(frame) => Some(frame),
        Err(error) => {
            tracing::warn!(%from, %error, "agent.server.rpc: reply not sent");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    /// Echoes HTTP requests back as replies and answers every proposal `Bool(true)`.
    struct Echo;

    impl Handler for Echo {
        async fn handle(&self, request: Request) -> Reply {
            let (Request::Server(call) | Request::Leader(call)) = request;
            match call {
                Call::Http(http) => {
                    Reply::Http(HttpReply { status: 201, headers: http.headers, body: http.body })
                }
                Call::Propose(_) => Reply::Propose(Ok(muster_core::fsm::Response::Bool(true))),
                Call::NodeRows(_) => Reply::NodeRows(Ok(NodeRows::default())),
                Call::Dns(_) => Reply::Dns(Ok(muster_core::dns::Handled::Drop)),
            }
        }
    }

    async fn server() -> (SocketAddr, crate::raft_net::RaftTransport) {
        let (tx, rx) = mpsc::channel(8);
        let (transport, _inbound) =
            crate::raft_net::RaftTransport::bind_with_rpc(1, "127.0.0.1:0".parse().unwrap(), Some(tx), None)
                .await
                .unwrap();
        tokio::spawn(serve(rx, Arc::new(Echo)));
        (transport.local_addr(), transport)
    }

    #[tokio::test]
    async fn a_request_crosses_the_server_port_and_its_reply_comes_back() {
        let (addr, _transport) = server().await;
        let request = HttpRequest {
            method: "PUT".into(),
            uri: "/v1/kv/a?cas=0".into(),
            headers: vec![("x-test".into(), Bytes::from_static(b"1"))],
            body: Bytes::from_static(b"value"),
        };
        let pool = Pool::default();
        let reply = pool.call(addr, &Request::Leader(Call::Http(request))).await.unwrap();
        let expected = HttpReply {
            status: 201,
            headers: vec![("x-test".into(), Bytes::from_static(b"1"))],
            body: Bytes::from_static(b"value"),
        };
        assert_eq!(reply, Reply::Http(expected));
        // The second call reuses the first one's connection.
        let proposed =
            pool.call(addr, &Request::Server(Call::Propose(Bytes::from_static(b"\x01")))).await.unwrap();
        assert_eq!(proposed, Reply::Propose(Ok(muster_core::fsm::Response::Bool(true))));
        assert_eq!(pool.idle.lock().unwrap()[&addr].len(), 1, "one connection served both calls");
    }

    /// A server that answers each connection's first request and then closes it.
    async fn one_answer_per_connection() -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut stream, from)) = listener.accept().await {
                let mut protocol = [0u8; 1];
                stream.read_exact(&mut protocol).await.unwrap();
                let reply = answer_one(&mut stream, from, &Echo).await.unwrap();
                stream.write_all(&reply).await.unwrap();
            }
        });
        addr
    }

    /// A pooled connection the server has since closed is not used again: the next call goes
    /// on a new connection and is answered; it is never sent on a dead one and then sent again.
    #[tokio::test]
    async fn a_connection_the_server_closed_is_not_reused() {
        let addr = one_answer_per_connection().await;
        let pool = Pool::default();
        let propose = Request::Leader(Call::Propose(Bytes::from_static(b"\x01")));
        let answered = Reply::Propose(Ok(muster_core::fsm::Response::Bool(true)));
        assert_eq!(pool.call(addr, &propose).await.unwrap(), answered);
        // The server's end of the first connection is closed by now.
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(pool.call(addr, &propose).await.unwrap(), answered, "the call went on a new connection");
    }

    #[tokio::test]
    async fn garbage_and_oversized_frames_are_dropped_without_a_reply() {
        let (addr, _transport) = server().await;
        let mut rng = muster_core::Rng::from_seed(7);
        for _ in 0..64 {
            let len = rng.below(64) as usize;
            let body: Vec<u8> = (0..len).map(|_| rng.below(256) as u8).collect();
            // Whatever postcard makes of random bytes, decoding returns; nothing panics.
            let _ = postcard::from_bytes::<Request>(&body);
            let _ = postcard::from_bytes::<Reply>(&body);
        }
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let mut out = vec![RPC_PROTOCOL_BYTE];
        out.extend_from_slice(&4u32.to_be_bytes());
        out.extend_from_slice(&[0xff; 4]);
        stream.write_all(&out).await.unwrap();
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await.unwrap();
        assert_eq!(answer, Vec::<u8>::new(), "a request that does not decode is closed unanswered");
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let mut out = vec![RPC_PROTOCOL_BYTE];
        out.extend_from_slice(&u32::try_from(RPC_FRAME_BYTES_MAX + 1).unwrap().to_be_bytes());
        stream.write_all(&out).await.unwrap();
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await.unwrap();
        assert_eq!(answer, Vec::<u8>::new(), "an oversized frame is refused before its body");
        // The server still answers.
        let proposed =
            Pool::default().call(addr, &Request::Leader(Call::Propose(Bytes::new()))).await.unwrap();
        assert_eq!(proposed, Reply::Propose(Ok(muster_core::fsm::Response::Bool(true))));
    }
}
