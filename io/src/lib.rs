//! The muster agent's shell: it drives [`muster_core::Gossip`] over real sockets, disks and clocks.
//!
//! [`drive`] holds the one drive loop, written against `tokio` through `madsim-tokio`, so the
//! simulator (`muster-sim`, compiled with `--cfg madsim`) runs this very loop over madsim's
//! simulated network and clock. [`storage`] makes the gossip node's state durable on a real file
//! system; [`wal`] is Raft's write-ahead log and snapshot files, [`raft_net`] its TCP transport
//! on 8300, and [`raft_server`] runs a Raft server on them. [`store`] holds the replicated state
//! machine a server applies and its HTTP readers block on, and [`consensus`] is the one way into
//! it, for the HTTP API and the simulator's clients alike; `http` is the API on 8500, and
//! `local` the agent's own services and checks, kept on disk and synced into the catalog.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

#[cfg(all(feature = "agent", not(madsim)))]
pub mod acl;
#[cfg(all(feature = "agent", not(madsim)))]
pub mod checks;
#[cfg(all(feature = "agent", not(madsim)))]
pub mod config;
pub mod consensus;
#[cfg(all(feature = "agent", not(madsim)))]
pub mod dns;
pub mod drive;
#[cfg(all(feature = "agent", not(madsim)))]
pub mod http;
#[cfg(all(feature = "agent", not(madsim)))]
pub mod keyring_file;
#[cfg(all(feature = "agent", not(madsim)))]
pub mod local;
#[cfg(all(feature = "agent", not(madsim)))]
pub mod log_format;
#[cfg(all(feature = "agent", not(madsim)))]
pub mod logfile;
mod metrics;
#[cfg(all(feature = "agent", not(madsim)))]
pub mod monitor;
pub mod raft_net;
pub mod raft_server;
#[cfg(all(feature = "agent", not(madsim)))]
pub mod rejoin;
pub mod rpc;
#[cfg(all(feature = "agent", not(madsim)))]
pub mod rpc_tls;
pub mod secure;
#[cfg(not(madsim))]
pub mod storage;
pub mod store;
#[cfg(all(feature = "agent", not(madsim)))]
pub mod syslog;
#[cfg(all(feature = "agent", not(madsim)))]
pub mod tasks;
#[cfg(all(feature = "agent", not(madsim)))]
pub mod telemetry;
pub mod timers;
pub mod version;
pub mod wal;
