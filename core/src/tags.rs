//! Node tags: the small string map each member gossips about itself (serf's tags), carried in
//! the node's meta and so bounded by [`META_BYTES_MAX`] encoded.
//!
//! Consul puts a node's role, datacenter, server port, node id, build and protocol versions here;
//! every member learns them with the member itself. The encoding is canonical (keys sorted, each
//! once) so that equal tag sets are equal bytes, and a change of meta always means a change of
//! tags.
//!
//! ```text
//! tags = count:u8 (key:str value:str)*      keys strictly ascending, str = len:u8 utf8[len]
//! ```

use std::collections::BTreeMap;

use bytes::{BufMut, Bytes, BytesMut};

use crate::limits::META_BYTES_MAX;
use crate::wire::{put_str, too_large, DecodeError, Reader};

/// A node's tags, by key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tags(pub BTreeMap<String, String>);

/// Why tags cannot be encoded. Nothing is gossiped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TagsError {
    /// Encoded, the tags exceed the meta limit.
    #[error("Encoded length of tags exceeds limit of {max} bytes (is {size})")]
    TooLarge {
        /// The encoded size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// A key or value is longer than 255 bytes.
    #[error("tag {0:?} has a key or value over 255 bytes")]
    FieldTooLong(String),
    /// More than 255 tags.
    #[error("{0} tags are more than the 255 allowed")]
    TooMany(usize),
}

impl Tags {
    /// The tags with `key` set to `value`.
    pub fn with(mut self, key: &str, value: impl Into<String>) -> Tags {
        self.0.insert(key.to_owned(), value.into());
        self
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    /// The canonical encoding, at most [`META_BYTES_MAX`] bytes.
    pub fn encode(&self) -> Result<Bytes, TagsError> {
        if self.0.len() > usize::from(u8::MAX) {
            return Err(TagsError::TooMany(self.0.len()));
        }
        let mut size = 1;
        for (key, value) in &self.0 {
            if key.len() > usize::from(u8::MAX) || value.len() > usize::from(u8::MAX) {
                return Err(TagsError::FieldTooLong(key.clone()));
            }
            size += 2 + key.len() + value.len();
        }
        if size > META_BYTES_MAX {
            return Err(TagsError::TooLarge { size, max: META_BYTES_MAX });
        }
        let mut buf = BytesMut::with_capacity(size);
        buf.put_u8(self.0.len() as u8);
        for (key, value) in &self.0 {
            put_str(&mut buf, key);
            put_str(&mut buf, value);
        }
        Ok(buf.freeze())
    }

    /// Decodes tags a member gossiped. Empty meta is no tags; anything not in canonical form is
    /// an error, never a panic.
    pub fn decode(bytes: &[u8]) -> Result<Tags, DecodeError> {
        if bytes.is_empty() {
            return Ok(Tags::default());
        }
        if bytes.len() > META_BYTES_MAX {
            return Err(too_large("tags", bytes.len(), META_BYTES_MAX));
        }
        let mut reader = Reader::new(bytes);
        let count = reader.u8()?;
        let mut tags = BTreeMap::new();
        for _ in 0..count {
            let key = reader.str()?;
            let value = reader.str()?;
            if tags.last_key_value().is_some_and(|(last, _): (&String, _)| *last >= key) {
                return Err(DecodeError::InvalidName);
            }
            tags.insert(key, value);
        }
        reader.finish()?;
        Ok(Tags(tags))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_round_trip_in_canonical_form() {
        let tags = Tags::default().with("role", "consul").with("dc", "dc1");
        let bytes = tags.encode().unwrap();
        assert_eq!(&bytes[..], b"\x02\x02dc\x03dc1\x04role\x06consul");
        assert_eq!(Tags::decode(&bytes).unwrap(), tags);
        assert_eq!(Tags::decode(b"").unwrap(), Tags::default());
    }

    #[test]
    fn non_canonical_or_truncated_tags_are_refused() {
        let unsorted = b"\x02\x04role\x06consul\x02dc\x03dc1";
        assert_eq!(Tags::decode(unsorted), Err(DecodeError::InvalidName));
        let bytes = Tags::default().with("role", "consul").encode().unwrap();
        for cut in 1..bytes.len() {
            assert!(Tags::decode(&bytes[..cut]).is_err(), "prefix of {cut} bytes");
        }
        let mut trailing = bytes.to_vec();
        trailing.push(0);
        assert_eq!(Tags::decode(&trailing), Err(DecodeError::TrailingBytes(1)));
    }

    #[test]
    fn oversized_tags_are_refused_with_serfs_message() {
        let mut tags = Tags::default();
        for i in 0..3 {
            tags = tags.with(&format!("k{i}"), "v".repeat(200));
        }
        let error = tags.encode().unwrap_err();
        assert_eq!(error, TagsError::TooLarge { size: 1 + 3 * (2 + 2 + 200), max: 512 });
        assert_eq!(error.to_string(), "Encoded length of tags exceeds limit of 512 bytes (is 613)");
    }
}
