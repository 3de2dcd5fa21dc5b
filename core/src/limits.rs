//! Every bound the core enforces, in one place.
//!
//! Runtime configuration may lower these but never raise them: each is checked by a
//! `Config::validate` and relied on by assertions.

/// The largest datagram the core accepts. memberlist reads into a 65,536-byte buffer.
pub const DATAGRAM_BYTES_MAX: usize = 65_536;

/// The size the core keeps each emitted datagram within (memberlist's `UDPBufferSize`): small
/// enough to cross a typical path without IP fragmentation.
pub const DATAGRAM_BYTES_TARGET: usize = 1_400;

/// The largest stream frame (length prefix excluded). A push/pull of 10,000 members with full
/// tags is about 5.5 MB (memberlist caps remote state at 20 MB); larger frames are refused
/// before any allocation.
pub const STREAM_FRAME_BYTES_MAX: usize = 16 * 1024 * 1024;

/// The most members one node tracks. Bounded so that a flood of forged alive messages cannot
/// grow memory without limit; well above Consul's largest documented LAN pools.
pub const MEMBERS_MAX: usize = 65_536;

/// The largest encoded tag set of a node (memberlist's `MetaMaxSize`).
pub const META_BYTES_MAX: usize = 512;

/// The most bytes of a user event's name and payload together that any configuration may allow
/// (the default limit is 512, as serf's `UserEventSizeLimit`): an event must fit one datagram
/// with its envelope, since events travel only by gossip.
pub const USER_EVENT_BYTES_MAX: usize = 1_024;

/// How many recent user-event Lamport times are remembered to drop duplicates (serf's
/// `EventBuffer`); older events are ignored.
pub const USER_EVENT_BUFFER: u64 = 512;

/// The most distinct user events remembered per Lamport time; more are dropped, so a flood of
/// forged events at one time cannot grow memory.
pub const USER_EVENTS_PER_LTIME_MAX: usize = 64;

/// The most bytes of recent user events one push/pull carries (newest first), so that the
/// event history never crowds members out of the frame.
pub const PUSH_PULL_EVENT_BYTES_MAX: usize = 1 << 20;

/// The longest node name, in bytes (its length travels in one byte).
pub const NODE_NAME_BYTES_MAX: usize = 255;

/// The most outputs of each kind a node buffers between drains. A driver drains after every
/// input, so reaching this means the driver is broken: it is asserted, not handled. One push/pull
/// merge may queue an event per member.
pub const OUTPUTS_QUEUED_MAX: usize = 4 * MEMBERS_MAX;

/// The most indirect pings a node relays at once; more are dropped (and counted). Each costs a
/// timer and a table entry, so forged requests cannot exhaust memory.
pub const RELAYS_MAX: usize = 4_096;

const _: () = assert!(DATAGRAM_BYTES_TARGET < DATAGRAM_BYTES_MAX);
const _: () = assert!(DATAGRAM_BYTES_MAX <= STREAM_FRAME_BYTES_MAX);
const _: () = assert!(NODE_NAME_BYTES_MAX <= u8::MAX as usize);
const _: () = assert!(META_BYTES_MAX <= u16::MAX as usize);
// An alive message with the longest name and full meta must fit one datagram with room to spare,
// or a node with big tags could never announce itself over UDP.
const _: () =
    assert!(1 + 3 + 8 + (1 + NODE_NAME_BYTES_MAX + 19) + (2 + META_BYTES_MAX) < DATAGRAM_BYTES_TARGET);
// A push/pull of MEMBERS_MAX members with the longest names and full tags... would not fit a frame;
// the member count is therefore also bounded by the frame size at decode time.
const _: () = assert!(OUTPUTS_QUEUED_MAX > 2 * MEMBERS_MAX);
// A user event at the limit, with its entry header, Lamport time and the encryption envelope,
// fits one datagram.
const _: () = assert!(1 + 3 + 8 + 1 + 2 + USER_EVENT_BYTES_MAX + 29 < DATAGRAM_BYTES_TARGET);
