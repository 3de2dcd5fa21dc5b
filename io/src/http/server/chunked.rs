//! The `chunked` transfer coding of a request body (RFC 9112 §7.1), decoded from the
//! connection's buffer as it fills: a pure step function, so the fuzzer and the tests drive it
//! without a socket.

use bytes::{Buf, Bytes, BytesMut};

/// The longest chunk-size line (size, extensions, CRLF) or trailer line accepted. Go's reader
/// allows 4 KiB for a chunk line.
pub const LINE_BYTES_MAX: usize = 4096;
/// The most trailer bytes accepted after the last chunk; they are read and dropped, as no
/// endpoint reads trailers.
pub const TRAILER_BYTES_MAX: usize = 16 * 1024;
/// Hex digits in a chunk size: 16 fill a `u64`.
const SIZE_DIGITS_MAX: usize = 16;

/// Where the decoder is in the coding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chunked {
    /// Before a chunk-size line.
    Size,
    /// Inside a chunk, with so many data bytes left.
    Data(u64),
    /// After a chunk's data, before its CRLF.
    DataEnd,
    /// After the last chunk, reading trailer lines; `bytes` read so far.
    Trailers { bytes: usize },
    /// The body is complete.
    Done,
}

/// What one step found.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Body bytes.
    Data(Bytes),
    /// The buffer holds too little: read more and step again.
    More,
    /// The body ended; the buffer holds what follows it.
    End,
}

/// A body that breaks the coding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ChunkError {
    #[error("invalid chunk size line")]
    Size,
    #[error("chunk line too long")]
    LineTooLong,
    #[error("malformed chunked encoding")]
    MissingCrlf,
    #[error("trailers too large")]
    TrailersTooLarge,
}

impl Chunked {
    /// Takes what it can from `buf`: body bytes, the news that it needs more, or the end.
    pub fn step(&mut self, buf: &mut BytesMut) -> Result<Step, ChunkError> {
        loop {
            match *self {
                Chunked::Size => {
                    let Some(line) = take_line(buf, LINE_BYTES_MAX)? else { return Ok(Step::More) };
                    let size = chunk_size(&line)?;
                    *self = if size == 0 { Chunked::Trailers { bytes: 0 } } else { Chunked::Data(size) };
                }
                Chunked::Data(left) => {
                    if buf.is_empty() {
                        return Ok(Step::More);
                    }
                    let take = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
                    let data = buf.split_to(take).freeze();
                    let left = left - take as u64;
                    *self = if left == 0 { Chunked::DataEnd } else { Chunked::Data(left) };
                    return Ok(Step::Data(data));
                }
                Chunked::DataEnd => {
                    if buf.len() < 2 {
                        return Ok(Step::More);
                    }
                    if &buf[..2] != b"\r\n" {
                        return Err(ChunkError::MissingCrlf);
                    }
                    buf.advance(2);
                    *self = Chunked::Size;
                }
                Chunked::Trailers { bytes } => {
                    let Some(line) = take_line(buf, LINE_BYTES_MAX)? else { return Ok(Step::More) };
                    if line.is_empty() {
                        *self = Chunked::Done;
                        return Ok(Step::End);
                    }
                    let bytes = bytes + line.len() + 2;
                    if bytes > TRAILER_BYTES_MAX {
                        return Err(ChunkError::TrailersTooLarge);
                    }
                    *self = Chunked::Trailers { bytes };
                }
                Chunked::Done => return Ok(Step::End),
            }
        }
    }
}

/// The next CRLF-terminated line, without its CRLF; `None` while the buffer holds no CRLF.
fn take_line(buf: &mut BytesMut, max: usize) -> Result<Option<BytesMut>, ChunkError> {
    match buf.windows(2).position(|pair| pair == b"\r\n") {
        Some(end) if end + 2 > max => Err(ChunkError::LineTooLong),
        Some(end) => {
            let line = buf.split_to(end);
            buf.advance(2);
            Ok(Some(line))
        }
        None if buf.len() >= max => Err(ChunkError::LineTooLong),
        None => Ok(None),
    }
}

/// A chunk-size line's size: hex digits, then optional whitespace and `;extensions`.
fn chunk_size(line: &[u8]) -> Result<u64, ChunkError> {
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 || digits > SIZE_DIGITS_MAX {
        return Err(ChunkError::Size);
    }
    let rest = &line[digits..];
    let rest = &rest[rest.iter().take_while(|b| matches!(b, b' ' | b'\t')).count()..];
    if !(rest.is_empty() || rest[0] == b';') {
        return Err(ChunkError::Size);
    }
    let text = std::str::from_utf8(&line[..digits]).map_err(|_| ChunkError::Size)?;
    u64::from_str_radix(text, 16).map_err(|_| ChunkError::Size)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes `input` fed `piece` bytes at a time; the body and what followed it.
    fn decode(input: &[u8], piece: usize) -> Result<(Vec<u8>, Vec<u8>), ChunkError> {
        let mut state = Chunked::Size;
        let mut buf = BytesMut::new();
        let mut body = Vec::new();
        let mut fed = 0;
        loop {
            match state.step(&mut buf)? {
                Step::Data(data) => body.extend_from_slice(&data),
                Step::End => {
                    buf.extend_from_slice(&input[fed..]);
                    return Ok((body, buf.to_vec()));
                }
                Step::More => {
                    assert!(fed < input.len(), "ran out of input in state {state:?}");
                    let end = (fed + piece).min(input.len());
                    buf.extend_from_slice(&input[fed..end]);
                    fed = end;
                }
            }
        }
    }

    #[test]
    fn bodies_decode_whatever_the_read_sizes() {
        let input = b"4\r\nWiki\r\n5;name=value\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\nX-Trailer: 1\r\n\r\nGET /next";
        for piece in [1, 2, 3, 7, input.len()] {
            let (body, rest) = decode(input, piece).unwrap();
            assert_eq!(body, b"Wikipedia in\r\n\r\nchunks.", "read {piece} bytes at a time");
            assert_eq!(rest, b"GET /next");
        }
    }

    #[test]
    fn uppercase_hex_and_whitespace_before_extensions_are_sizes() {
        assert_eq!(chunk_size(b"1A"), Ok(26));
        assert_eq!(chunk_size(b"a ;ext"), Ok(10));
        assert_eq!(chunk_size(b"ffffffffffffffff"), Ok(u64::MAX));
    }

    #[test]
    fn broken_codings_are_refused() {
        let cases: [(&[u8], ChunkError); 6] = [
            (b"x\r\n", ChunkError::Size),
            (b"\r\n", ChunkError::Size),
            (b"1 2\r\n", ChunkError::Size),
            (b"10000000000000000\r\n", ChunkError::Size),
            (b"2\r\nabXY", ChunkError::MissingCrlf),
            (&[b'1'; LINE_BYTES_MAX], ChunkError::LineTooLong),
        ];
        for (input, error) in cases {
            assert_eq!(decode(input, input.len()), Err(error), "{:?}", String::from_utf8_lossy(input));
        }
    }

    #[test]
    fn trailers_past_their_limit_are_refused() {
        let mut input = b"0\r\n".to_vec();
        while input.len() <= TRAILER_BYTES_MAX + 100 {
            input.extend_from_slice(b"X-Filler: 0123456789012345678901234567890123456789\r\n");
        }
        input.extend_from_slice(b"\r\n");
        assert_eq!(decode(&input, 4096), Err(ChunkError::TrailersTooLarge));
    }
}
