//! Connections on the server port (8300), plain or secured: what Raft's links and server RPC
//! read and write, whichever they are.
//!
//! A secured connection opens with [`TLS_PROTOCOL_BYTE`] (Consul's `RPCTLS`), then the TLS
//! handshake, then inside the session the byte that routes any connection on the port (a Raft
//! frame's length, or [`crate::rpc::RPC_PROTOCOL_BYTE`]). The TLS itself is the agent's
//! (`rpc_tls.rs`, behind [`Secure`]); the simulator runs the same links and RPC over plain
//! connections.

use std::fmt::Debug;
use std::future::Future;
use std::io;
use std::pin::Pin;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// The first byte of a TLS connection on the server port (Consul's `pool.RPCTLS`). A Raft
/// stream opens with a frame's four-byte big-endian length, at most 16 MiB, so its first byte is
/// 0 or 1: never this one.
pub const TLS_PROTOCOL_BYTE: u8 = 0x03;
const _: () = assert!(muster_core::STREAM_FRAME_BYTES_MAX >> 24 < TLS_PROTOCOL_BYTE as usize);

/// One connection on the server port.
pub trait ServerIo: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    /// Whether an idle connection still looks open: it has nothing to read, so an end (the
    /// other side closed it) or stray bytes rule it out. It does not wait.
    fn still_open(&mut self) -> bool;
}

/// A connection on the server port, plain or secured.
pub type ServerStream = Box<dyn ServerIo>;

impl Debug for dyn ServerIo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServerStream")
    }
}

/// A future of a secured (or refused) connection.
pub type Securing = Pin<Box<dyn Future<Output = io::Result<ServerStream>> + Send>>;

/// How the server port's connections are secured.
pub trait Secure: Send + Sync + Debug + 'static {
    /// Whether a connection that does not open with TLS is refused (Consul's
    /// `verify_incoming` for internal RPC).
    fn refuses_plain(&self) -> bool;

    /// Runs the server side of the handshake on a connection whose [`TLS_PROTOCOL_BYTE`] was
    /// read.
    fn accept(&self, tcp: TcpStream) -> Securing;

    /// Whether outgoing connections are secured (Consul's `verify_outgoing`); else they
    /// stay plain.
    fn secures_outgoing(&self) -> bool;

    /// Secures an outgoing connection: its [`TLS_PROTOCOL_BYTE`], then the handshake.
    fn dial(&self, tcp: TcpStream) -> Securing;
}

impl ServerIo for TcpStream {
    fn still_open(&mut self) -> bool {
        let mut probe = [0u8; 1];
        matches!(
            self.try_read_buf(&mut &mut probe[..]),
            Err(error) if error.kind() == io::ErrorKind::WouldBlock
        )
    }
}

/// An outgoing connection on `tcp`, secured when `secure` asks for it.
pub async fn dial(tcp: TcpStream, secure: Option<&dyn Secure>) -> io::Result<ServerStream> {
    match secure {
        Some(secure) if secure.secures_outgoing() => secure.dial(tcp).await,
        _ => Ok(Box::new(tcp)),
    }
}
