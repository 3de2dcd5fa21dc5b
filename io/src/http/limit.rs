//! Connections per client: one address may hold at most so many HTTP connections at once
//! (Consul's `limits.http_max_conns_per_client`, 200 by default), so one runaway client cannot
//! take every socket and worker from the others. A connection past the limit is closed at once,
//! before a byte is read, as Consul's connection limiter does.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

/// Consul's default for `http_max_conns_per_client`.
pub const HTTP_CONNS_PER_CLIENT_MAX: usize = 200;

/// Open connections per client address.
type Counts = Arc<Mutex<BTreeMap<IpAddr, usize>>>;

/// A listener that refuses a client's connections past its limit.
#[derive(Debug)]
pub struct LimitedListener {
    listener: TcpListener,
    per_client_max: usize,
    open: Counts,
}

impl LimitedListener {
    /// Wraps `listener`, allowing each client address `per_client_max` connections at once.
    pub fn new(listener: TcpListener, per_client_max: usize) -> LimitedListener {
        LimitedListener { listener, per_client_max, open: Counts::default() }
    }
}

/// An accepted connection; it gives its place back when it closes.
#[derive(Debug)]
pub struct CountedStream {
    stream: TcpStream,
    client: IpAddr,
    open: Counts,
}

impl Drop for CountedStream {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(count) = open.get_mut(&self.client) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.client);
            }
        }
    }
}

impl LimitedListener {
    /// The next connection within its client's limit.
    pub async fn accept(&mut self) -> (CountedStream, SocketAddr) {
        loop {
            let (stream, peer) = match self.listener.accept().await {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: wait a little rather than spin.
                    tracing::warn!(%error, "agent.http: accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            };
            let client = peer.ip();
            {
                let mut open = self.open.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                let count = open.entry(client).or_default();
                if *count >= self.per_client_max {
                    tracing::warn!(%client, limit = self.per_client_max, "agent.http: rejecting a connection: too many from this client");
                    continue; // dropping `stream` closes it
                }
                *count += 1;
            }
            // Answers are small and written whole: do not hold them back for Nagle.
            let _ = stream.set_nodelay(true);
            return (CountedStream { stream, client, open: self.open.clone() }, peer);
        }
    }
}

impl super::server::Socket for CountedStream {
    async fn read_into(&mut self, buf: &mut bytes::BytesMut) -> std::io::Result<usize> {
        super::server::read_when_ready(&self.stream, buf).await
    }
}

impl super::server::Socket for tokio_rustls::server::TlsStream<CountedStream> {
    async fn read_into(&mut self, buf: &mut bytes::BytesMut) -> std::io::Result<usize> {
        super::server::read_reserving(self, buf).await
    }
}

impl AsyncRead for CountedStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for CountedStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}
