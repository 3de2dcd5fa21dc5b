//! A request's head: parsed by `httparse` (hyper's own parser) from the connection's buffer,
//! checked as Go's `net/http` checks it, and turned into `http` types.

use bytes::{Buf, BytesMut};
use http::{header, HeaderMap, HeaderName, HeaderValue, Method, Request, Uri, Version};

/// The largest request head accepted: Go's `http.DefaultMaxHeaderBytes` (1 MiB), plus the
/// 4 KiB slack Go's server adds to it.
pub const HEAD_BYTES_MAX: usize = (1 << 20) + 4096;
/// The most header fields in one request. Go limits only the bytes; `httparse` needs a number,
/// and the fields of a 1 MiB head rarely exceed it.
const FIELDS_MAX: usize = 256;

/// How the request's body is delimited (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// `Content-Length` bytes (none when 0 or absent).
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// A parsed head: the request (its body still to come) and what the connection must know.
#[derive(Debug)]
pub struct Head {
    /// Boxed: a connection's future holds the head's slots for as long as it lives, a blocking
    /// query's included, though the request moves on to the router (224 bytes inline).
    pub request: Box<Request<()>>,
    pub framing: Framing,
    /// `Expect: 100-continue`: the client waits for a `100 Continue` before the body.
    pub expects_continue: bool,
    /// The client wants the connection kept after the answer.
    pub keep_alive: bool,
}

/// A head the server refuses, with Go's status and words; the connection closes after.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HeadError {
    #[error("malformed HTTP request")]
    Malformed,
    #[error("Request Header Fields Too Large")]
    TooLarge,
    #[error("bad Content-Length")]
    BadLength,
    #[error("unsupported transfer encoding")]
    UnsupportedEncoding,
    #[error("unsupported protocol version")]
    Version,
}

impl HeadError {
    /// The status Go's server answers with.
    pub fn status(self) -> u16 {
        match self {
            HeadError::TooLarge => 431,
            HeadError::UnsupportedEncoding => 501,
            HeadError::Version => 505,
            HeadError::Malformed | HeadError::BadLength => 400,
        }
    }
}

/// Parses a complete head from the front of `buf` and removes it; `Ok(None)` while `buf` holds
/// only part of one.
pub fn parse(buf: &mut BytesMut) -> Result<Option<Head>, HeadError> {
    // Blank lines before a request line are allowed (RFC 9112 §2.2), as keep-alive clients
    // sometimes send a stray CRLF after a body.
    let blank = buf.iter().take_while(|&&b| b == b'\r' || b == b'\n').count();
    buf.advance(blank);
    let mut fields = [httparse::EMPTY_HEADER; FIELDS_MAX];
    let mut parsed = httparse::Request::new(&mut fields);
    let length = match parsed.parse(buf) {
        Ok(httparse::Status::Complete(length)) => length,
        Ok(httparse::Status::Partial) if buf.len() >= HEAD_BYTES_MAX => return Err(HeadError::TooLarge),
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooLarge),
        Err(_) => return Err(HeadError::Malformed),
    };
    if length > HEAD_BYTES_MAX {
        return Err(HeadError::TooLarge);
    }
    let head = build(&parsed)?;
    buf.advance(length);
    Ok(Some(head))
}

fn build(parsed: &httparse::Request<'_, '_>) -> Result<Head, HeadError> {
    let method =
        Method::from_bytes(parsed.method.unwrap_or_default().as_bytes()).map_err(|_| HeadError::Malformed)?;
    let uri: Uri = parsed.path.unwrap_or_default().parse().map_err(|_| HeadError::Malformed)?;
    let version = match parsed.version {
        Some(0) => Version::HTTP_10,
        Some(1) => Version::HTTP_11,
        _ => return Err(HeadError::Version),
    };
    let mut headers = HeaderMap::with_capacity(parsed.headers.len());
    for field in parsed.headers.iter() {
        let name = HeaderName::from_bytes(field.name.as_bytes()).map_err(|_| HeadError::Malformed)?;
        let value = HeaderValue::from_bytes(field.value).map_err(|_| HeadError::Malformed)?;
        headers.append(name, value);
    }
    let framing = framing(&mut headers, version)?;
    let expects_continue = version == Version::HTTP_11
        && headers.get(header::EXPECT).is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    let keep_alive = keep_alive(&headers, version);
    let mut request = Request::new(());
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.version_mut() = version;
    *request.headers_mut() = headers;
    Ok(Head { request: Box::new(request), framing, expects_continue, keep_alive })
}

/// The body's framing. A `Transfer-Encoding` other than `chunked` is refused, as Go refuses
/// it; with one, any `Content-Length` is dropped (RFC 9112 §6.3: it must be ignored).
fn framing(headers: &mut HeaderMap, version: Version) -> Result<Framing, HeadError> {
    if let Some(coding) = headers.get(header::TRANSFER_ENCODING) {
        let chunked = headers.get_all(header::TRANSFER_ENCODING).iter().count() == 1
            && coding.to_str().is_ok_and(|c| c.trim().eq_ignore_ascii_case("chunked"));
        if !chunked || version == Version::HTTP_10 {
            return Err(HeadError::UnsupportedEncoding);
        }
        headers.remove(header::CONTENT_LENGTH);
        return Ok(Framing::Chunked);
    }
    let mut length = None;
    for value in headers.get_all(header::CONTENT_LENGTH) {
        let text = value.to_str().map_err(|_| HeadError::BadLength)?.trim();
        if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(HeadError::BadLength);
        }
        let parsed: u64 = text.parse().map_err(|_| HeadError::BadLength)?;
        if length.is_some_and(|l| l != parsed) {
            return Err(HeadError::BadLength);
        }
        length = Some(parsed);
    }
    Ok(Framing::Length(length.unwrap_or(0)))
}

/// HTTP/1.1 keeps the connection unless told `close`; HTTP/1.0 closes it unless told
/// `keep-alive`.
fn keep_alive(headers: &HeaderMap, version: Version) -> bool {
    let said = |token: &str| {
        headers.get_all(header::CONNECTION).iter().any(|value| {
            value.to_str().is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        })
    };
    if version == Version::HTTP_11 {
        !said("close")
    } else {
        said("keep-alive")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(text: &str) -> Result<Option<Head>, HeadError> {
        parse(&mut BytesMut::from(text))
    }

    #[test]
    fn a_request_parses_and_leaves_what_follows() {
        let mut buf =
            BytesMut::from("\r\nPUT /v1/kv/a?cas=0 HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhiGET");
        let head = parse(&mut buf).unwrap().unwrap();
        assert_eq!(head.request.method(), Method::PUT);
        assert_eq!(head.request.uri().path(), "/v1/kv/a");
        assert_eq!(head.request.uri().query(), Some("cas=0"));
        assert_eq!(head.request.headers()["host"], "x");
        assert_eq!(head.framing, Framing::Length(2));
        assert!(head.keep_alive && !head.expects_continue);
        assert_eq!(&buf[..], b"hiGET");
    }

    #[test]
    fn part_of_a_head_waits_for_more() {
        assert!(head("GET /v1/kv/a HTTP/1.1\r\nHost: x\r\n").unwrap().is_none());
        assert!(head("GET /v1/kv/a HT").unwrap().is_none());
    }

    #[test]
    fn framing_and_keep_alive_follow_rfc_9112() {
        let cases = [
            (
                "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
                Framing::Chunked,
                true,
            ),
            ("POST / HTTP/1.1\r\nTransfer-Encoding: Chunked \r\n\r\n", Framing::Chunked, true),
            ("GET / HTTP/1.1\r\nConnection: Close\r\n\r\n", Framing::Length(0), false),
            ("GET / HTTP/1.0\r\n\r\n", Framing::Length(0), false),
            ("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", Framing::Length(0), true),
            ("PUT / HTTP/1.1\r\nContent-Length: 7\r\nContent-Length: 7\r\n\r\n", Framing::Length(7), true),
        ];
        for (text, framing, keep_alive) in cases {
            let head = head(text).unwrap().unwrap();
            assert_eq!((head.framing, head.keep_alive), (framing, keep_alive), "{text:?}");
            if framing == Framing::Chunked {
                assert!(head.request.headers().get(header::CONTENT_LENGTH).is_none());
            }
        }
        let expect =
            head("PUT / HTTP/1.1\r\nExpect: 100-Continue\r\nContent-Length: 1\r\n\r\n").unwrap().unwrap();
        assert!(expect.expects_continue);
    }

    #[test]
    fn bad_heads_get_gos_status() {
        let cases = [
            ("GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400),
            ("GET / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400),
            ("GET / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n", 400),
            ("POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501),
            ("POST / HTTP/1.1\r\nTransfer-Encoding: identity\r\n\r\n", 501),
            ("GET / HTTP/1.1\r\nBad Header: x\r\n\r\n", 400),
            ("G\x01T / HTTP/1.1\r\n\r\n", 400),
            ("GET / HTTP/2.0\r\n\r\n", 400),
        ];
        for (text, status) in cases {
            assert_eq!(head(text).map(|_| ()).unwrap_err().status(), status, "{text:?}");
        }
    }

    #[test]
    fn an_endless_head_is_refused_at_its_limit() {
        let mut text = String::from("GET / HTTP/1.1\r\n");
        while text.len() < HEAD_BYTES_MAX {
            text.push_str("X-Filler: 0123456789012345678901234567890123456789012345678901234567890123\r\n");
        }
        assert_eq!(head(&text).unwrap_err(), HeadError::TooLarge);
    }
}
