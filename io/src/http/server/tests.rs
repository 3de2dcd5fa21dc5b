//! The connection loop against a raw socket: the forms a client writes (keep-alive, pipelined,
//! chunked, `Expect: 100-continue`, HTTP/1.0, HEAD), Go's refusals, and a client that leaves.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::routing::{get, put};
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;

use super::head::HEAD_BYTES_MAX;
use super::*;

impl Socket for TcpStream {
    async fn read_into(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        read_when_ready(self, buf).await
    }
}

/// Set when the handler of `/wait` was dropped before it answered.
static WAIT_DROPPED: AtomicBool = AtomicBool::new(false);

struct SetOnDrop;

impl Drop for SetOnDrop {
    fn drop(&mut self) {
        WAIT_DROPPED.store(true, Ordering::SeqCst);
    }
}

fn router() -> Router {
    Router::new()
        .route("/echo", put(|body: Bytes| async move { body }))
        .route("/ignore", put(|| async { "ignored" }))
        .route("/hello", get(|| async { "hello" }))
        .route(
            "/stream",
            get(|| async {
                let pieces = futures_util::stream::iter(["one ", "two ", "three"].map(Ok::<_, io::Error>));
                Body::from_stream(pieces)
            }),
        )
        .route(
            "/wait",
            get(|| async {
                let _guard = SetOnDrop;
                std::future::pending::<()>().await;
            }),
        )
}

async fn server() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            tokio::spawn(serve_connection(stream, router()));
        }
    });
    addr
}

/// Reads one answer: its head (status line and fields) and its body, by its framing.
async fn read_answer(stream: &mut TcpStream, pending: &mut Vec<u8>) -> (String, String) {
    let head_end = loop {
        if let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        fill(stream, pending).await;
    };
    let head = String::from_utf8(pending.drain(..head_end).collect()).unwrap();
    let lower = head.to_ascii_lowercase();
    let mut body = Vec::new();
    if head.starts_with("HTTP/1.1 100") || head.contains(" 204 ") || lower.contains("\r\nx-head: 1") {
        return (head, String::new());
    }
    if let Some(length) = lower.split("\r\ncontent-length: ").nth(1) {
        let length: usize = length.split("\r\n").next().unwrap().parse().unwrap();
        while pending.len() < length {
            fill(stream, pending).await;
        }
        body.extend(pending.drain(..length));
    } else if lower.contains("transfer-encoding: chunked") {
        let mut state = Chunked::Size;
        let mut buf = BytesMut::from(&pending[..]);
        pending.clear();
        loop {
            match state.step(&mut buf).unwrap() {
                Step::Data(data) => body.extend_from_slice(&data),
                Step::End => break,
                Step::More => {
                    fill(stream, pending).await;
                    buf.extend_from_slice(pending);
                    pending.clear();
                }
            }
        }
        pending.extend_from_slice(&buf);
    } else {
        stream.read_to_end(pending).await.unwrap();
        body.append(pending);
    }
    (head, String::from_utf8(body).unwrap())
}

async fn fill(stream: &mut TcpStream, pending: &mut Vec<u8>) {
    let mut piece = [0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut piece)).await.unwrap().unwrap();
    assert!(n > 0, "the server closed the connection; read so far: {:?}", String::from_utf8_lossy(pending));
    pending.extend_from_slice(&piece[..n]);
}

async fn closed(stream: &mut TcpStream) -> bool {
    let mut piece = [0u8; 16];
    matches!(tokio::time::timeout(Duration::from_secs(5), stream.read(&mut piece)).await, Ok(Ok(0) | Err(_)))
}

async fn connect() -> TcpStream {
    TcpStream::connect(server().await).await.unwrap()
}

#[tokio::test]
async fn keep_alive_and_pipelined_requests_are_answered_in_order() {
    let mut stream = connect().await;
    let mut pending = Vec::new();
    stream.write_all(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let (head, body) = read_answer(&mut stream, &mut pending).await;
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(head.to_ascii_lowercase().contains("\r\ndate: "), "Go's server sends Date: {head}");
    assert_eq!(body, "hello");
    stream
        .write_all(b"PUT /echo HTTP/1.1\r\nContent-Length: 3\r\n\r\nabcGET /hello HTTP/1.1\r\n\r\nGET /nowhere HTTP/1.1\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(read_answer(&mut stream, &mut pending).await.1, "abc");
    assert_eq!(read_answer(&mut stream, &mut pending).await.1, "hello");
    assert!(read_answer(&mut stream, &mut pending).await.0.starts_with("HTTP/1.1 404"));
}

#[tokio::test]
async fn a_chunked_body_is_decoded() {
    let mut stream = connect().await;
    stream
        .write_all(
            b"PUT /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n",
        )
        .await
        .unwrap();
    assert_eq!(read_answer(&mut stream, &mut Vec::new()).await.1, "abcde");
}

#[tokio::test]
async fn expect_continue_is_answered_when_the_handler_reads() {
    let mut stream = connect().await;
    let mut pending = Vec::new();
    stream
        .write_all(b"PUT /echo HTTP/1.1\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        .await
        .unwrap();
    let (head, _) = read_answer(&mut stream, &mut pending).await;
    assert_eq!(head, "HTTP/1.1 100 Continue\r\n\r\n");
    stream.write_all(b"hello").await.unwrap();
    assert_eq!(read_answer(&mut stream, &mut pending).await.1, "hello");

    // A handler that never reads: no 100, the answer, and the connection closes.
    stream
        .write_all(b"PUT /ignore HTTP/1.1\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        .await
        .unwrap();
    let (head, body) = read_answer(&mut stream, &mut pending).await;
    assert!(
        head.starts_with("HTTP/1.1 200") && head.to_ascii_lowercase().contains("connection: close"),
        "{head}"
    );
    assert_eq!(body, "ignored");
    assert!(closed(&mut stream).await);
}

#[tokio::test]
async fn an_unread_body_is_drained_for_the_next_request() {
    let mut stream = connect().await;
    let mut pending = Vec::new();
    stream
        .write_all(b"PUT /ignore HTTP/1.1\r\nContent-Length: 4\r\n\r\nbodyGET /hello HTTP/1.1\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(read_answer(&mut stream, &mut pending).await.1, "ignored");
    assert_eq!(read_answer(&mut stream, &mut pending).await.1, "hello");
}

#[tokio::test]
async fn http_1_0_closes_unless_kept_and_streams_without_chunks() {
    let mut stream = connect().await;
    stream.write_all(b"GET /hello HTTP/1.0\r\n\r\n").await.unwrap();
    let (head, body) = read_answer(&mut stream, &mut Vec::new()).await;
    assert!(head.starts_with("HTTP/1.1 200") && head.to_ascii_lowercase().contains("connection: close"));
    assert_eq!(body, "hello");
    assert!(closed(&mut stream).await);

    let mut stream = connect().await;
    stream.write_all(b"GET /stream HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").await.unwrap();
    let (head, body) = read_answer(&mut stream, &mut Vec::new()).await;
    assert!(!head.to_ascii_lowercase().contains("chunked"), "{head}");
    assert_eq!(body, "one two three");
}

#[tokio::test]
async fn a_streaming_answer_is_chunked_and_head_has_no_body() {
    let mut stream = connect().await;
    let mut pending = Vec::new();
    stream.write_all(b"GET /stream HTTP/1.1\r\n\r\n").await.unwrap();
    let (head, body) = read_answer(&mut stream, &mut pending).await;
    assert!(head.to_ascii_lowercase().contains("transfer-encoding: chunked"), "{head}");
    assert_eq!(body, "one two three");
    stream.write_all(b"HEAD /hello HTTP/1.1\r\nX-Head: 1\r\n\r\nGET /hello HTTP/1.1\r\n\r\n").await.unwrap();
    // The answer to HEAD carries no body: the next bytes are the next answer's head.
    let mut all = Vec::new();
    while !String::from_utf8_lossy(&all).ends_with("hello") {
        fill(&mut stream, &mut all).await;
    }
    let text = String::from_utf8(all).unwrap();
    assert_eq!(text.matches("HTTP/1.1 200 OK").count(), 2, "{text}");
    assert_eq!(text.matches("hello").count(), 1, "{text}");
}

#[tokio::test]
async fn bad_heads_get_gos_answer_and_the_connection_closes() {
    let cases: [(&[u8], &str); 3] = [
        (b"GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n", "HTTP/1.1 400 Bad Request"),
        (b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", "HTTP/1.1 501 Not Implemented"),
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 a TLS hello\r\n\r\n", "HTTP/1.1 400 Bad Request"),
    ];
    for (request, status) in cases {
        let mut stream = connect().await;
        stream.write_all(request).await.unwrap();
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await.unwrap();
        let answer = String::from_utf8(answer).unwrap();
        assert!(answer.starts_with(status), "{request:?}: {answer}");
        assert!(answer.contains("Connection: close"));
    }
    let mut stream = connect().await;
    let mut head = b"GET / HTTP/1.1\r\n".to_vec();
    head.extend(std::iter::repeat_n(b'a', HEAD_BYTES_MAX));
    let _ = stream.write_all(&head).await; // the server may close before it has read it all
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer).await;
    assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 431 Request Header Fields Too Large"));
}

#[tokio::test]
async fn a_client_that_leaves_ends_its_request() {
    let mut stream = connect().await;
    stream.write_all(b"GET /wait HTTP/1.1\r\n\r\n").await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!WAIT_DROPPED.load(Ordering::SeqCst), "the handler runs while the client waits");
    drop(stream);
    for _ in 0..100 {
        if WAIT_DROPPED.load(Ordering::SeqCst) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the handler still runs after its client closed the connection");
}
