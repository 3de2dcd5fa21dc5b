//! The sans-IO core of muster.
//!
//! Everything muster decides is decided here, and nothing here touches the outside world: no
//! sockets, no files, no clocks, no threads, no global randomness, no async. A [`Gossip`] (one
//! node in one gossip pool) and a [`server::Server`] (a Raft server and its state machine) take
//! inputs (datagrams, stream frames, the expiry of their own deadline, commands), each stamped
//! with the current [`Instant`], and yield outputs (state to persist, messages to send, events,
//! the next deadline). Two drivers run it: the tokio shell in the `muster` crate, over real sockets
//! and disks, and the simulator in `muster-sim`, over a virtual network, disk and clock in which
//! any run can be replayed from its seed.
//!
//! The drive contract is written once, on [`Gossip`] (and followed by `server::Server`). In short:
//!
//! ```text
//!            handle_datagram / handle_stream_frame / handle_timeout / handle_command
//!   driver ───────────────────────────────────────────────────────────────────────▶ Gossip
//!     ▲  ◀── poll_persist ── write + fsync ── on_persisted ──▶                         │
//!     └──────────── poll_transmit / poll_event / poll_timeout ◀────────────────────────┘
//! ```
//!
//! Rules the compiler enforces (`core/clippy.toml`): no `Instant::now`, `SystemTime::now`,
//! `thread_rng` or `HashMap` in this crate; `unsafe` is forbidden.

#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

pub mod acl;
pub mod agent;
pub mod autopilot;
pub mod cidr;
pub mod coordinate;
pub mod deadlines;
pub mod dns;
pub mod duration;
pub mod fsm;
pub mod go_quote;
pub mod gossip;
pub mod health;
pub mod keyring;
mod limits;
#[doc(hidden)]
pub mod planted;
pub mod raft;
pub mod reconcile;
mod rng;
pub mod server;
pub mod servers;
pub mod swim;
pub mod tags;
pub mod template;
mod time;
pub mod wire;

/// Whether this build checks every state machine's invariants after each step (test,
/// simulation and fuzz builds). The checks scan whole states: an agent built with them is
/// correct but slow, and says so at start.
pub const INVARIANT_CHECKS: bool = cfg!(any(test, feature = "invariants"));

pub use gossip::Gossip;
pub use limits::*;
pub use rng::Rng;
pub use time::{Instant, Monotonic};
