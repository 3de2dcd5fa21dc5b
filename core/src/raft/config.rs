//! A server's timings and limits, and the relations between them the protocol relies on.

use std::collections::BTreeSet;
use std::time::Duration;

use super::{ServerId, SERVERS_MAX, SNAPSHOT_CHUNK_BYTES_MAX};

/// Timings and limits of one server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// This server.
    pub id: ServerId,
    /// The voters the cluster bootstraps with, this one included; empty for a server that
    /// joins a running cluster (it learns the membership from the leader's log). Once the log
    /// holds a membership entry, the latest one rules.
    pub voters: BTreeSet<ServerId>,
    /// The minimum election timeout; each timer is drawn from `[min, 2 × min)`.
    pub election_timeout: Duration,
    /// How often a leader sends heartbeats.
    pub heartbeat_interval: Duration,
    /// How long after a majority last answered a leader may serve reads without asking again.
    /// Must be below `election_timeout`.
    pub leader_lease: Duration,
    /// The most entries in one append.
    pub entries_per_append_max: usize,
    /// The most payload bytes in one append (one entry always goes, whatever its size).
    pub append_bytes_max: usize,
    /// Appends in flight to one follower before the leader waits for answers.
    pub inflight_appends_max: usize,
    /// Applied entries since the last snapshot before Raft asks for a new one
    /// ([`super::Event::SnapshotDue`]).
    pub snapshot_threshold: u64,
    /// Entries the log keeps behind a snapshot taken here, so that a follower a little behind
    /// catches up from the log rather than by a whole snapshot.
    pub snapshot_trailing: u64,
    /// The bytes of a snapshot sent in one [`super::Message::InstallSnapshot`].
    pub snapshot_chunk_bytes: usize,
    /// Seeds the election timers.
    pub rng_seed: u64,
    /// A deliberately broken rule, for proving that the simulator's checkers catch it.
    #[cfg(any(test, feature = "invariants"))]
    #[doc(hidden)]
    pub planted_bug: Option<PlantedBug>,
}

pub use crate::planted::PlantedBug;

impl Config {
    /// Consul's timings at `raft_multiplier` 1 (Consul's production default is 5): election
    /// timeout 1 s, heartbeats every 100 ms, lease 500 ms; and Consul's snapshot policy: a
    /// snapshot every 16384 entries, 10240 kept behind it.
    pub fn new(id: ServerId, voters: impl IntoIterator<Item = ServerId>, rng_seed: u64) -> Config {
        Config {
            id,
            voters: voters.into_iter().collect(),
            election_timeout: Duration::from_secs(1),
            heartbeat_interval: Duration::from_millis(100),
            leader_lease: Duration::from_millis(500),
            entries_per_append_max: 64,
            append_bytes_max: 1 << 20,
            inflight_appends_max: 64,
            snapshot_threshold: 16384,
            snapshot_trailing: 10240,
            snapshot_chunk_bytes: 1 << 20,
            rng_seed,
            #[cfg(any(test, feature = "invariants"))]
            planted_bug: None,
        }
    }

    /// Checks the relations the protocol relies on.
    pub fn validate(&self) -> Result<(), ConfigError> {
        // No voters: a server that joins an existing cluster and learns its membership from
        // the leader's log. Otherwise this server is one of the voters it bootstraps with.
        if !self.voters.is_empty() && !self.voters.contains(&self.id) {
            return Err(ConfigError::NotAVoter(self.id));
        }
        if self.voters.len() > SERVERS_MAX {
            return Err(ConfigError::Timing("more voters than SERVERS_MAX"));
        }
        if self.heartbeat_interval.is_zero() || self.heartbeat_interval * 2 > self.election_timeout {
            return Err(ConfigError::Timing(
                "heartbeat_interval must be positive and at most half the election timeout",
            ));
        }
        // A tenth of the election timeout is left for clocks that run at different rates.
        if self.leader_lease * 10 > self.election_timeout * 9 {
            return Err(ConfigError::Timing("leader_lease must be at most 90 % of the election timeout"));
        }
        if self.entries_per_append_max == 0 || self.inflight_appends_max == 0 {
            return Err(ConfigError::Timing(
                "entries_per_append_max and inflight_appends_max must be positive",
            ));
        }
        if self.snapshot_threshold == 0
            || self.snapshot_chunk_bytes == 0
            || self.snapshot_chunk_bytes > SNAPSHOT_CHUNK_BYTES_MAX
        {
            return Err(ConfigError::Timing(
                "snapshot_threshold must be positive and snapshot_chunk_bytes within 1..=SNAPSHOT_CHUNK_BYTES_MAX",
            ));
        }
        Ok(())
    }

    pub(super) fn bug(&self, bug: PlantedBug) -> bool {
        #[cfg(any(test, feature = "invariants"))]
        {
            self.planted_bug == Some(bug)
        }
        #[cfg(not(any(test, feature = "invariants")))]
        {
            let _ = bug;
            false
        }
    }
}

/// A configuration Raft cannot run with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The server must be one of the voters.
    #[error("server {0} is not among the voters")]
    NotAVoter(ServerId),
    /// A timing relation is broken.
    #[error("{0}")]
    Timing(&'static str),
    /// What storage restored does not form a log (a bug of the storage, or damage it missed).
    #[error("stored Raft state is inconsistent: {0}")]
    Restore(&'static str),
}
