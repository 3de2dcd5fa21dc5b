//! The agent's long-running loops, started by the binary's `agent::spawn_tasks` once the API
//! state ([`crate::http::Api`]) exists. Each loop waits on one kind of input, hands it to the
//! core (or to the catalog through Raft) and drains what comes back:
//!
//! | task | waits on | feeds | drains |
//! |---|---|---|---|
//! | [`anti_entropy::run_anti_entropy`] | the local state's change signal, a jittered interval | catalog writes that make the node's rows match the local state | the catalog's rows for the node |
//! | [`check_ttl::run_check_ttl_timers`] | the TTL deadlines | a critical status into the local state | [`check_ttl::CheckTtl`] |
//! | [`checks::run_checks`] | the core's [`muster_core::health::Runner`] schedule | check runs; results through the core's `Damper` into the local state | runs due, deferred outputs, the core's `Reaper` |
//! | [`checks::run_alias_checks`] | the local state, a poll of remote nodes | alias statuses into the local state | the catalog's rows of the mirrored node |
//! | [`leader::run_leader_duties`] | the Raft role, the LAN member list | catalog writes from [`muster_core::reconcile`], membership changes from [`muster_core::autopilot`] | autopilot's report for the API |
//! | [`leader::run_duties`] | the leader's timers | the core's `LeaderDuties` (session TTLs, tombstone GC) | — |
//! | [`remote_exec::run_remote_exec`] | `_rexec` user events | job output and exit code into the KV store | the job's spec from the KV store |
//!
//! The gossip pools, Raft's server and the telemetry sinks have loops of their own, next to
//! their drivers ([`crate::drive`], [`crate::raft_server`], [`crate::telemetry`]).

pub mod anti_entropy;
pub mod check_ttl;
pub mod checks;
pub mod leader;
pub mod remote_exec;

use std::sync::Arc;

use crate::http::Api;

/// Starts the loops every agent runs, client or server: anti-entropy, the TTL timers, the
/// checks and the alias checks. A server also runs [`leader::run_duties`] and
/// [`leader::run_leader_duties`]; remote exec runs only where a file turns it on.
pub fn spawn_agent_loops(api: &Arc<Api>) {
    tokio::spawn(anti_entropy::run_anti_entropy(api.clone()));
    tokio::spawn(check_ttl::run_check_ttl_timers(api.clone()));
    tokio::spawn(checks::run_checks(api.clone()));
    tokio::spawn(checks::run_alias_checks(api.clone()));
}
