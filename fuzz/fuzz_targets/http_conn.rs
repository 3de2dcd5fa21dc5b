//! The HTTP/1.1 server's input (io/src/http/server): request heads (`head::parse`) and chunked
//! bodies (`chunked::Chunked::step`), read from a connection as the server reads it: a head,
//! its body by its framing, the next head, until the bytes run out or are refused.
//! Properties:
//! - nothing panics on any bytes;
//! - what the server makes of a connection does not depend on how its bytes were split into
//!   reads: fed whole and fed in pieces of the first byte's size, the same requests (method,
//!   target, headers, body) come out and the same refusal, if any, ends them.
//!
//! The modules are compiled in by path: they need only httparse, http, bytes and thiserror.

#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;

#[path = "../../io/src/http/server/chunked.rs"]
mod chunked;
#[path = "../../io/src/http/server/head.rs"]
mod head;

use chunked::{Chunked, Step};
use head::Framing;

/// What the server read from a connection: each request as text, then how it ended.
#[derive(Debug, PartialEq, Eq)]
struct Reading {
    requests: Vec<String>,
    end: String,
}

/// The most requests read from one input (each takes at least a few bytes anyway).
const REQUESTS_MAX: usize = 64;

fn read(input: &[u8], piece: usize) -> Reading {
    let mut buf = BytesMut::new();
    let mut fed = 0;
    let mut requests = Vec::new();
    let mut more = |buf: &mut BytesMut| -> bool {
        if fed == input.len() {
            return false;
        }
        let end = (fed + piece).min(input.len());
        buf.extend_from_slice(&input[fed..end]);
        fed = end;
        true
    };
    while requests.len() < REQUESTS_MAX {
        let head = loop {
            match head::parse(&mut buf) {
                Ok(Some(head)) => break head,
                Ok(None) if more(&mut buf) => {}
                Ok(None) => return Reading { requests, end: format!("eof with {} bytes", buf.len()) },
                Err(error) => {
                    return Reading { requests, end: format!("refused: {} {error}", error.status()) }
                }
            }
        };
        let (parts, ()) = head.request.into_parts();
        let mut text = format!(
            "{} {} {:?} {:?} continue {} keep {}",
            parts.method, parts.uri, parts.version, parts.headers, head.expects_continue, head.keep_alive
        );
        let mut body = Vec::new();
        match head.framing {
            Framing::Length(mut left) => {
                while left > 0 {
                    if buf.is_empty() && !more(&mut buf) {
                        return Reading { requests, end: "eof in a body".into() };
                    }
                    let take = (left.min(buf.len() as u64)) as usize;
                    body.extend_from_slice(&buf.split_to(take));
                    left -= take as u64;
                }
            }
            Framing::Chunked => {
                let mut state = Chunked::Size;
                loop {
                    match state.step(&mut buf) {
                        Ok(Step::Data(data)) => body.extend_from_slice(&data),
                        Ok(Step::End) => break,
                        Ok(Step::More) if more(&mut buf) => {}
                        Ok(Step::More) => return Reading { requests, end: "eof in a body".into() },
                        Err(error) => return Reading { requests, end: format!("body refused: {error}") },
                    }
                }
            }
        }
        text.push_str(&format!(" body {body:?}"));
        requests.push(text);
    }
    Reading { requests, end: "enough".into() }
}

fuzz_target!(|input: &[u8]| {
    let Some((&first, rest)) = input.split_first() else { return };
    let whole = read(rest, rest.len().max(1));
    let pieces = read(rest, usize::from(first % 16) + 1);
    assert_eq!(whole, pieces, "the same bytes read in different pieces gave different requests");
});
