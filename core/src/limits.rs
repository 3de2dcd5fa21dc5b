//! Every bound the core enforces, in one place.
//!
//! Runtime configuration may lower these but never raise them: each is checked by a
//! `Config::validate` and relied on by assertions.

/// The largest datagram the core emits or accepts. memberlist's UDP buffer is 65,536 bytes but it
/// keeps each packet within 1,400 bytes so that it fits a typical path MTU without fragmentation;
/// we accept what memberlist accepts and emit what memberlist emits.
pub const DATAGRAM_BYTES_MAX: usize = 65_536;

/// The size the core aims to keep each emitted datagram under (memberlist's `UDPBufferSize`).
pub const DATAGRAM_BYTES_TARGET: usize = 1_400;

/// The largest stream frame (length prefix excluded). A push/pull of full membership state for
/// 10,000 members must fit; larger frames are refused before any allocation.
pub const STREAM_FRAME_BYTES_MAX: usize = 16 * 1024 * 1024;

/// The most peers one node tracks. Bounded so that a flood of pings from forged senders cannot
/// grow memory without limit.
pub const PEERS_MAX: usize = 16_384;

/// The most outputs of each kind a node buffers between drains. A driver drains after every
/// input, so reaching this means the driver is broken: it is asserted, not handled.
pub const OUTPUTS_QUEUED_MAX: usize = 4 * PEERS_MAX + 1024;

const _: () = assert!(DATAGRAM_BYTES_TARGET < DATAGRAM_BYTES_MAX);
const _: () = assert!(DATAGRAM_BYTES_MAX <= STREAM_FRAME_BYTES_MAX);
// One round may queue a ping to every peer plus a reply to each of their pings.
const _: () = assert!(OUTPUTS_QUEUED_MAX > 2 * PEERS_MAX);
