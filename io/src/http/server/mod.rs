//! The HTTP/1.1 server: one task per connection, reading requests, handing each to the router
//! and writing its answer.
//!
//! Why not hyper's server: a connection there holds two 8 KiB buffers for its whole life (the
//! read buffer, which grows to 16 KiB, and the head writer's), and `axum::serve` clones the
//! router's route table into each connection (29 KB for muster's routes, measured with
//! heaptrack). A blocking query waits on its connection for minutes, and a fleet of
//! consul-template instances and sidecars holds thousands of them: at 70 to 90 KB each,
//! 10,000 took an agent to 840 MB. Here a waiting connection holds no buffer: the request
//! head is read into a buffer that is freed once parsed, the answer is written from one
//! allocated for it, and an idle connection waits for readiness before it allocates. Parsing
//! is `httparse`'s (hyper's parser) and the types are `http`'s; only the loop is ours.
//!
//! While a request is answered the connection watches its socket: a client that goes away
//! ends its request (a blocking query stops waiting and its watch is dropped), as Go's server
//! cancels the request's context. Bytes that arrive meanwhile (a pipelined request) are kept
//! for the next turn.

mod chunked;
mod head;

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::{pin, Pin};
use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, Method, Response, StatusCode, Version};
use axum::Router;
use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, Notify};
use tower::ServiceExt;

use self::chunked::{ChunkError, Chunked, Step};
use self::head::{Framing, Head, HeadError};

/// How much a read asks for at a time. Heads are mostly a few hundred bytes; bodies read on
/// in pieces of this size as the handler takes them.
const READ_BYTES: usize = 4096;
/// A body the handler left unread is read and dropped up to this size so the connection can
/// carry the next request; past it the connection closes.
const DRAIN_BYTES_MAX: u64 = 1 << 20;
/// An answer whose whole body is known and at most this size is written with its head in one
/// write; a larger or streaming one is written as it comes.
const WHOLE_BODY_BYTES_MAX: usize = 64 * 1024;

/// A connection the server reads requests from.
pub trait Socket: AsyncWrite + Unpin + Send + 'static {
    /// Reads what has arrived into `buf`; the number of bytes read (0: end of file).
    fn read_into(&mut self, buf: &mut BytesMut) -> impl Future<Output = io::Result<usize>> + Send;
}

/// A plain socket's read: it waits for readiness before it reserves room, so a connection
/// waiting for a request holds no buffer.
pub async fn read_when_ready(tcp: &TcpStream, buf: &mut BytesMut) -> io::Result<usize> {
    loop {
        tcp.readable().await?;
        buf.reserve(READ_BYTES);
        match tcp.try_read_buf(buf) {
            Ok(n) => return Ok(n),
            // Readiness was stale: wait again without holding the room reserved.
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => release(buf),
            Err(error) => return Err(error),
        }
    }
}

/// A TLS session's read. Its records are decrypted through the session's own buffers, which
/// readiness of the socket underneath cannot see into, so room is reserved before waiting.
pub async fn read_reserving<S: tokio::io::AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut BytesMut,
) -> io::Result<usize> {
    buf.reserve(READ_BYTES);
    tokio::io::AsyncReadExt::read_buf(stream, buf).await
}

/// Gives back a buffer's memory when it holds nothing.
fn release(buf: &mut BytesMut) {
    if buf.is_empty() {
        *buf = BytesMut::new();
    }
}

/// Serves requests on `socket` until the client closes it, asks to, or breaks the protocol.
pub async fn serve_connection<S: Socket>(socket: S, router: Router) {
    let mut connection = Connection { socket, buf: BytesMut::new(), read_closed: false };
    loop {
        match connection.exchange(&router).await {
            Ok(true) => continue,
            Ok(false) => break,
            Err(error) => {
                tracing::debug!(%error, "agent.http: connection closed");
                break;
            }
        }
    }
    let _ = connection.socket.shutdown().await;
}

struct Connection<S> {
    socket: S,
    /// Bytes read and not yet used: part of a head, body, or a pipelined request.
    buf: BytesMut,
    /// The client sent its end of file.
    read_closed: bool,
}

/// Why a connection ended early.
#[derive(Debug, thiserror::Error)]
enum ConnectionError {
    #[error(transparent)]
    Io(#[from] io::Error),
    #[error("request body: {0}")]
    Body(#[from] ChunkError),
    #[error("the client closed the connection in the middle of a request")]
    Truncated,
    #[error("the answer's body failed: {0}")]
    Answer(axum::Error),
}

impl<S: Socket> Connection<S> {
    /// Reads more into `buf`; the number of bytes read (0: end of file).
    async fn read_more(&mut self) -> io::Result<usize> {
        if self.read_closed {
            return Ok(0);
        }
        let read = self.socket.read_into(&mut self.buf).await?;
        self.read_closed = read == 0;
        Ok(read)
    }

    /// Gives back the buffer's memory when it holds nothing.
    fn release(&mut self) {
        release(&mut self.buf);
    }

    /// The next request's head; `None` when the client closed the connection between requests.
    async fn read_head(&mut self) -> Result<Option<Head>, ConnectionError> {
        loop {
            match head::parse(&mut self.buf) {
                Ok(Some(head)) => {
                    self.release();
                    return Ok(Some(head));
                }
                Ok(None) => {}
                Err(error) => {
                    self.refuse(error).await?;
                    return Ok(None);
                }
            }
            if self.read_more().await? == 0 {
                return if self.buf.is_empty() { Ok(None) } else { Err(ConnectionError::Truncated) };
            }
        }
    }

    /// Answers a head the server cannot serve as Go's server does, before it closes.
    async fn refuse(&mut self, error: HeadError) -> io::Result<()> {
        let status = error.status();
        let reason = StatusCode::from_u16(status).ok().and_then(|s| s.canonical_reason()).unwrap_or("");
        let text = match error {
            HeadError::TooLarge => format!("{status} {reason}"),
            other => format!("{status} {reason}: {other}"),
        };
        let answer = format!(
            "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n{text}"
        );
        self.socket.write_all(answer.as_bytes()).await
    }

    /// One request and its answer; whether the connection carries another.
    async fn exchange(&mut self, router: &Router) -> Result<bool, ConnectionError> {
        let Some(head) = self.read_head().await? else { return Ok(false) };
        let Head { request, framing, expects_continue, keep_alive } = head;
        let is_head = request.method() == Method::HEAD;
        let version = request.version();
        let mut body = BodyFeed::new(framing, expects_continue);
        // In a block, so that the router's future and the answer's head are gone from the
        // connection's future before the answer is written.
        let (outgoing, keep_alive) = {
            let answer = pin!(router.clone().oneshot((*request).map(|()| body.take_body())));
            let Some(answer) = self.answer_while_feeding(answer, &mut body).await? else {
                return Ok(false); // the client went away
            };
            // A client told to wait for `100 Continue` that never came sends no body: what it
            // sends next is not known to be a request.
            let reusable = keep_alive && (body.decoder.done() || !body.expects_continue);
            frame_answer(answer, is_head, version, reusable)
        };
        self.write_answer(outgoing).await?;
        let keep_alive = keep_alive && self.finish_body(&mut body).await?;
        self.release();
        Ok(keep_alive)
    }

    /// Awaits the router's answer while feeding it the request's body and watching for the
    /// client to go away; `None` if it did.
    async fn answer_while_feeding(
        &mut self,
        mut answer: Pin<&mut impl Future<Output = Result<Response<Body>, Infallible>>>,
        body: &mut BodyFeed,
    ) -> Result<Option<Response<Body>>, ConnectionError> {
        loop {
            tokio::select! {
                biased;
                answer = &mut answer => return Ok(Some(answer.unwrap_or_else(|never| match never {}))),
                fed = self.feed_or_watch(body) => {
                    if !fed? {
                        return Ok(None);
                    }
                }
            }
        }
    }

    /// One step beside the handler: feeds it body bytes while it takes them; after the body,
    /// waits for the client to close (`false`) or to send more (kept for the next request).
    async fn feed_or_watch(&mut self, body: &mut BodyFeed) -> Result<bool, ConnectionError> {
        if body.wanted() {
            // Boxed: inline, feeding would size every waiting request's future (a blocking
            // query's included) for what only a request with a body does.
            Box::pin(self.feed(body)).await?;
            return Ok(true);
        }
        if self.read_closed || !self.buf.is_empty() {
            // The client half-closed after its request, or pipelined another: nothing to watch.
            return std::future::pending().await;
        }
        Ok(self.read_more().await? > 0)
    }

    /// Sends the handler the next piece of its body once it asks for one, reading as needed.
    async fn feed(&mut self, body: &mut BodyFeed) -> Result<(), ConnectionError> {
        body.demand.notified().await;
        let Some(sender) = body.sender.as_ref() else { return Ok(()) };
        let Ok(permit) = sender.reserve().await else { return Ok(()) };
        if std::mem::take(&mut body.expects_continue) {
            self.socket.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await?;
        }
        loop {
            match body.decoder.step(&mut self.buf)? {
                Step::Data(data) => {
                    permit.send(Ok(data));
                    return Ok(());
                }
                Step::End => {
                    drop(permit);
                    body.sender = None; // the handler's stream ends
                    return Ok(());
                }
                Step::More => {
                    if self.read_more().await? == 0 {
                        permit.send(Err(io::Error::from(io::ErrorKind::UnexpectedEof)));
                        return Err(ConnectionError::Truncated);
                    }
                }
            }
        }
    }

    /// After the answer: reads and drops the body the handler left unread, if it is small
    /// enough; whether the connection can carry another request.
    async fn finish_body(&mut self, body: &mut BodyFeed) -> Result<bool, ConnectionError> {
        body.sender = None;
        let mut drained = 0u64;
        loop {
            if matches!(body.decoder, Decoder::Length(left) if left > DRAIN_BYTES_MAX - drained) {
                return Ok(false);
            }
            match body.decoder.step(&mut self.buf)? {
                Step::Data(data) => {
                    drained += data.len() as u64;
                    if drained > DRAIN_BYTES_MAX {
                        return Ok(false);
                    }
                }
                Step::End => return Ok(true),
                Step::More => {
                    if self.read_more().await? == 0 {
                        return Ok(false);
                    }
                }
            }
        }
    }

    /// Writes the answer.
    async fn write_answer(&mut self, outgoing: Outgoing) -> Result<(), ConnectionError> {
        match outgoing {
            Outgoing::Bodiless(head) => self.socket.write_all(&head).await?,
            Outgoing::Whole(mut out, body) => {
                let whole = body.collect().await.map_err(ConnectionError::Answer)?.to_bytes();
                out.extend_from_slice(&whole);
                self.socket.write_all(&out).await?;
            }
            Outgoing::Streamed { head, body, chunked } => {
                self.socket.write_all(&head).await?;
                drop(head);
                self.stream_body(body, chunked).await?;
            }
        }
        Ok(())
    }

    /// Writes a body frame by frame as the handler yields it (a monitor's log lines, a
    /// snapshot), each one flushed.
    async fn stream_body(&mut self, mut body: Body, chunked: bool) -> Result<(), ConnectionError> {
        while let Some(frame) = body.frame().await {
            let Ok(data) = frame.map_err(ConnectionError::Answer)?.into_data() else { continue };
            if data.is_empty() {
                continue;
            }
            if chunked {
                self.socket.write_all(format!("{:x}\r\n", data.len()).as_bytes()).await?;
                self.socket.write_all(&data).await?;
                self.socket.write_all(b"\r\n").await?;
            } else {
                self.socket.write_all(&data).await?;
            }
            self.socket.flush().await?;
        }
        if chunked {
            self.socket.write_all(b"0\r\n\r\n").await?;
        }
        Ok(())
    }
}

/// An answer ready to write: its head, and how its body follows.
enum Outgoing {
    /// The head alone.
    Bodiless(Vec<u8>),
    /// The head, to be written with the whole body in one write.
    Whole(Vec<u8>, Body),
    /// The head, then the body as it comes.
    Streamed { head: Vec<u8>, body: Body, chunked: bool },
}

/// Frames `answer` for a request (`is_head`: a HEAD request) in `version`, kept alive after it
/// if `keep_alive` allows: what to write, and whether the connection stays open.
fn frame_answer(
    answer: Response<Body>,
    is_head: bool,
    version: Version,
    keep_alive: bool,
) -> (Outgoing, bool) {
    let (parts, body) = answer.into_parts();
    let bodiless = is_head
        || parts.status.is_informational()
        || parts.status == StatusCode::NO_CONTENT
        || parts.status == StatusCode::NOT_MODIFIED;
    let mut headers = parts.headers;
    let exact = axum::body::HttpBody::size_hint(&body).exact();
    // Streaming without chunked coding (HTTP/1.0) ends the body by closing.
    let chunked = !bodiless && exact.is_none() && version == Version::HTTP_11;
    let keep_alive = keep_alive && (bodiless || exact.is_some() || chunked);
    frame_headers(&mut headers, exact, chunked, bodiless, keep_alive, version);
    let mut head = Vec::with_capacity(256);
    write_head(&mut head, parts.status, &headers);
    let outgoing = if bodiless {
        Outgoing::Bodiless(head)
    } else if exact.is_some_and(|n| n <= WHOLE_BODY_BYTES_MAX as u64) {
        Outgoing::Whole(head, body)
    } else {
        Outgoing::Streamed { head, body, chunked }
    };
    (outgoing, keep_alive)
}

/// The framing headers of an answer: its length or chunked coding, `Date` as Go's server adds
/// it, and whether the connection stays.
fn frame_headers(
    headers: &mut HeaderMap,
    exact: Option<u64>,
    chunked: bool,
    bodiless: bool,
    keep_alive: bool,
    version: Version,
) {
    if !headers.contains_key(header::DATE) {
        if let Ok(date) = HeaderValue::from_str(&httpdate::fmt_http_date(std::time::SystemTime::now())) {
            headers.insert(header::DATE, date);
        }
    }
    if chunked {
        headers.remove(header::CONTENT_LENGTH);
        headers.insert(header::TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
    } else if let Some(length) = exact.filter(|_| !headers.contains_key(header::CONTENT_LENGTH)) {
        if !bodiless || length > 0 {
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
        }
    }
    if !keep_alive {
        headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    } else if version == Version::HTTP_10 {
        headers.insert(header::CONNECTION, HeaderValue::from_static("keep-alive"));
    }
}

/// The status line and header fields, always as HTTP/1.1 (as Go and hyper answer).
fn write_head(out: &mut Vec<u8>, status: StatusCode, headers: &HeaderMap) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// A request body on its way from the connection to the handler. The connection decodes it
/// and sends a piece each time the handler asks for one (`demand`), so a body is never held
/// whole here, and a client waiting for `100 Continue` is told to send only once the handler
/// reads.
struct BodyFeed {
    decoder: Decoder,
    sender: Option<mpsc::Sender<io::Result<Bytes>>>,
    receiver: Option<mpsc::Receiver<io::Result<Bytes>>>,
    demand: Arc<Notify>,
    expects_continue: bool,
}

/// The body's decoder: counted bytes or the chunked coding.
enum Decoder {
    Length(u64),
    Chunked(Chunked),
}

impl Decoder {
    fn done(&self) -> bool {
        matches!(self, Decoder::Length(0) | Decoder::Chunked(Chunked::Done))
    }

    /// The next piece of body from `buf`.
    fn step(&mut self, buf: &mut BytesMut) -> Result<Step, ChunkError> {
        match self {
            Decoder::Chunked(state) => state.step(buf),
            Decoder::Length(0) => Ok(Step::End),
            Decoder::Length(_) if buf.is_empty() => Ok(Step::More),
            Decoder::Length(left) => {
                let take = usize::try_from(*left).unwrap_or(usize::MAX).min(buf.len());
                *left -= take as u64;
                Ok(Step::Data(buf.split_to(take).freeze()))
            }
        }
    }
}

impl BodyFeed {
    fn new(framing: Framing, expects_continue: bool) -> BodyFeed {
        let decoder = match framing {
            Framing::Length(length) => Decoder::Length(length),
            Framing::Chunked => Decoder::Chunked(Chunked::Size),
        };
        let mut feed = BodyFeed {
            decoder,
            sender: None,
            receiver: None,
            demand: Arc::default(),
            expects_continue: false,
        };
        if !feed.decoder.done() {
            let (sender, receiver) = mpsc::channel(1);
            feed.sender = Some(sender);
            feed.receiver = Some(receiver);
            feed.expects_continue = expects_continue;
        }
        feed
    }

    /// The body the handler reads: empty, or fed from the connection as it asks.
    fn take_body(&mut self) -> Body {
        let Some(receiver) = self.receiver.take() else { return Body::empty() };
        let demand = self.demand.clone();
        Body::from_stream(futures_util::stream::unfold(
            (receiver, demand),
            |(mut receiver, demand)| async move {
                demand.notify_one();
                let piece = receiver.recv().await?;
                Some((piece, (receiver, demand)))
            },
        ))
    }

    /// The handler still holds its body and has not seen its end.
    fn wanted(&self) -> bool {
        self.sender.as_ref().is_some_and(|s| !s.is_closed())
    }
}

#[cfg(test)]
mod tests;
