//! Known bugs the simulator must catch, each planted where it would live in the real code.
//!
//! Only test, simulation and fuzz builds can switch one on: the fields that hold a planted bug
//! exist only there, and elsewhere every check for one is a constant `false`. A simulation run
//! picks one by name (`MUSTER_PLANTED_BUG=cas_ignores_index`); the simulator's test of the
//! whole matrix asserts which checker catches each, within how many seeds.

use std::fmt;
use std::str::FromStr;

/// A deliberately broken rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PlantedBug {
    /// Raft: the leader commits as soon as it has appended, without a majority.
    CommitWithoutQuorum,
    /// Raft: votes leave before the vote is durable, so a crash lets a server vote twice in
    /// one term.
    VoteBeforeFsync,
    /// Raft: a server grants its vote in a term in which it already voted for another.
    VoteTwiceInTerm,
    /// Raft: appends from an older term are accepted.
    AcceptStaleTermAppend,
    /// Raft: a consistent read is answered without confirming leadership.
    ReadWithoutReadIndex,
    /// Raft: a default-mode read is served while the leader believes it leads, lease expired
    /// or not.
    StaleLeaseRead,
    /// Raft: a follower reports contact with its leader from any message, caught up or not.
    ContactWithoutCatchingUp,
    /// Raft: a follower whose entry conflicts with the leader's keeps its own and reports a
    /// match.
    KeepConflictingSuffix,
    /// Raft: the leader counts its own entries toward a majority before they are durable, so a
    /// write is acknowledged before its fsync.
    AckBeforeFsync,
    /// The server: entries handed out together are applied in the wrong order.
    ApplyOutOfOrder,
    /// The state machine: a KV check-and-set writes whatever the key's `ModifyIndex`.
    CasIgnoresIndex,
    /// The state machine: a destroyed session's locks stay held.
    LockSurvivesSessionExpiry,
    /// The leader's duties: a session's timer runs out at a twentieth of its TTL.
    SessionExpiresEarly,
}

impl PlantedBug {
    /// Every planted bug.
    pub const ALL: [PlantedBug; 13] = [
        PlantedBug::CommitWithoutQuorum,
        PlantedBug::VoteBeforeFsync,
        PlantedBug::VoteTwiceInTerm,
        PlantedBug::AcceptStaleTermAppend,
        PlantedBug::ReadWithoutReadIndex,
        PlantedBug::StaleLeaseRead,
        PlantedBug::ContactWithoutCatchingUp,
        PlantedBug::KeepConflictingSuffix,
        PlantedBug::AckBeforeFsync,
        PlantedBug::ApplyOutOfOrder,
        PlantedBug::CasIgnoresIndex,
        PlantedBug::LockSurvivesSessionExpiry,
        PlantedBug::SessionExpiresEarly,
    ];

    /// Its name in `MUSTER_PLANTED_BUG`.
    pub fn name(self) -> &'static str {
        match self {
            PlantedBug::CommitWithoutQuorum => "commit_without_quorum",
            PlantedBug::VoteBeforeFsync => "vote_before_fsync",
            PlantedBug::VoteTwiceInTerm => "vote_twice_in_term",
            PlantedBug::AcceptStaleTermAppend => "accept_stale_term_append",
            PlantedBug::ReadWithoutReadIndex => "read_without_read_index",
            PlantedBug::StaleLeaseRead => "stale_lease_read",
            PlantedBug::ContactWithoutCatchingUp => "contact_without_catching_up",
            PlantedBug::KeepConflictingSuffix => "keep_conflicting_suffix",
            PlantedBug::AckBeforeFsync => "ack_before_fsync",
            PlantedBug::ApplyOutOfOrder => "apply_out_of_order",
            PlantedBug::CasIgnoresIndex => "cas_ignores_index",
            PlantedBug::LockSurvivesSessionExpiry => "lock_survives_session_expiry",
            PlantedBug::SessionExpiresEarly => "session_expires_early",
        }
    }
}

impl fmt::Display for PlantedBug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A name no planted bug has.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no planted bug is named {0:?}; the names are: {names}", names = PlantedBug::ALL.map(PlantedBug::name).join(", "))]
pub struct UnknownBug(pub String);

impl FromStr for PlantedBug {
    type Err = UnknownBug;

    fn from_str(name: &str) -> Result<PlantedBug, UnknownBug> {
        PlantedBug::ALL.into_iter().find(|bug| bug.name() == name).ok_or_else(|| UnknownBug(name.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_bug_is_found_by_its_name_and_no_other() {
        for bug in PlantedBug::ALL {
            assert_eq!(bug.name().parse(), Ok(bug));
        }
        let unknown = "stale_reads".parse::<PlantedBug>().unwrap_err();
        assert!(unknown.to_string().contains("cas_ignores_index"), "{unknown}");
    }
}
