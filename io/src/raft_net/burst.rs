//! What goes out on a Raft connection, with nothing of the network in sight: Raft's frames
//! ([`muster_core::raft::wire`]), each behind the stream's four-byte big-endian length prefix
//! ([`muster_core::wire::frame_prefix`]), back to back. The receiver splits them with
//! [`muster_core::wire::frame_len`] (the accept loop in `drive.rs`), and the server port tells a
//! Raft stream from an RPC one by its first byte ([`RPC_PROTOCOL_BYTE`]).
//!
//! Nothing here depends on more than the core, so the fuzz crate compiles this file by path
//! (`fuzz_targets/rpc_frame.rs`).

use muster_core::wire::frame_prefix;

/// The first byte of an RPC connection on the server port. A Raft stream opens with a frame's
/// four-byte big-endian length, at most 16 MiB, so its first byte is 0 or 1: never this one.
pub const RPC_PROTOCOL_BYTE: u8 = 0xF0;
const _: () = assert!(muster_core::STREAM_FRAME_BYTES_MAX >> 24 < RPC_PROTOCOL_BYTE as usize);

/// The frames queued for one peer, written in one go.
#[derive(Debug, Default)]
pub struct Burst {
    bytes: Vec<u8>,
    count: u64,
}

impl Burst {
    /// Empties it for the next burst, keeping its buffer.
    pub fn clear(&mut self) {
        self.bytes.clear();
        self.count = 0;
    }

    /// Appends `frame` (one of [`muster_core::raft::wire::encode`]'s, so within the stream's
    /// frame limit) behind its length prefix.
    pub fn push(&mut self, frame: &[u8]) {
        let before = self.bytes.len();
        self.bytes.extend_from_slice(&frame_prefix(frame.len()));
        self.bytes.extend_from_slice(frame);
        self.count += 1;
        assert_eq!(self.bytes.len(), before + muster_core::wire::FRAME_PREFIX_BYTES + frame.len());
        assert_ne!(self.bytes[0], RPC_PROTOCOL_BYTE, "a Raft stream never reads as RPC");
    }

    /// The bytes to write.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// How many frames it holds.
    pub fn count(&self) -> u64 {
        self.count
    }
}
