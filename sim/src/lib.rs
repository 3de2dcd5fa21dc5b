//! Deterministic simulation of muster, in two tiers.
//!
//! - [`harness`]: an in-process cluster of [`muster_core::Gossip`]s over a virtual network, disk
//!   and clock, driven through the same [`muster::drive::drain`] step as the agent. Needs no
//!   special build; runs under plain `cargo test`. Latency, loss, duplication, reordering,
//!   partitions, crashes that lose unsynced writes, and restarts.
//! - [`world`] (only with `--cfg madsim`, through `cargo simtest`): N nodes each running the real
//!   async [`muster::drive::run`] loop over madsim's simulated UDP, TCP and time, with madsim's
//!   partitions (clog/unclog), kills and restarts; and [`servers`], clusters of Raft servers
//!   built from what the binary runs (Raft server task, write-ahead log, TCP transport, store,
//!   the consensus facade), broken by a nemesis, their clients' histories checked.
//!
//! Both tiers take every random choice from one seed ([`seed`]), print it, and print the exact
//! command that replays a failing seed. Runs are summarised by a [`trace::Trace`] hash: the same
//! seed gives the same hash.

#![forbid(unsafe_code)]

pub mod disk;
pub mod harness;
pub mod health;
pub mod linearizability;
pub mod raft;
pub mod seed;
#[cfg(madsim)]
pub mod servers;
pub mod staleness;
pub mod trace;
#[cfg(madsim)]
pub mod world;

/// Every directed link between nodes of different groups: what a partition into `groups` cuts.
pub fn links_across(groups: &[&[usize]]) -> Vec<(usize, usize)> {
    let mut links = Vec::new();
    for (g, group) in groups.iter().enumerate() {
        for other in &groups[g + 1..] {
            for &a in *group {
                for &b in *other {
                    links.push((a, b));
                    links.push((b, a));
                }
            }
        }
    }
    links
}
