//! The gauges a server reports about its state, as Consul's usage reporter does.

use std::sync::Arc;

use muster_core::raft::Role;

use super::{set_gauge, AUTOPILOT_TRAILING_LOGS_MAX, USAGE_INTERVAL};
use crate::http::{Api, Pool};

/// The gauges a server reports about its state, as Consul's usage reporter, session stats and
/// leader loop report them every 10 s (`state.*`, `members.*`, `raft.applied_index`,
/// `raft.last_index`, `session_ttl.active`, `server.isLeader`, `autopilot.*`, `version`);
/// nothing on a client agent. `/v1/agent/metrics` refreshes them before it answers.
pub async fn refresh_server_gauges(api: &Api) {
    let Some(consensus) = &api.consensus else { return };
    let status = consensus.raft.status();
    let leads = status.role == Role::Leader;
    set_gauge("server.isLeader", &[], if leads { 1.0 } else { 0.0 });
    set_gauge("raft.applied_index", &[], status.applied as f32);
    let replication = consensus.raft.replication().await.ok();
    if let Some(replication) = &replication {
        set_gauge("raft.last_index", &[], replication.last_index as f32);
    }
    let (nodes, services, instances, kv_entries) = consensus.store.read(|fsm| {
        let catalog = fsm.catalog();
        let names = catalog.services().1;
        let instances: usize = names.keys().map(|name| catalog.service_nodes(name, &[]).1.len()).sum();
        (catalog.nodes().1.len(), names.len(), instances, fsm.kv().len())
    });
    let ttl_sessions = consensus.store.duties().read(muster_core::fsm::LeaderDuties::sessions_timed);
    let datacenter = [("datacenter", api.datacenter.as_str())];
    set_gauge("state.nodes", &datacenter, nodes as f32);
    set_gauge("state.peerings", &datacenter, 0.0);
    set_gauge("state.services", &datacenter, services as f32);
    set_gauge("state.service_instances", &datacenter, instances as f32);
    set_gauge("state.kv_entries", &datacenter, kv_entries as f32);
    // Only the leader times sessions (a follower's duties time none).
    set_gauge("session_ttl.active", &[], ttl_sessions as f32);
    let alive: Vec<_> = api
        .members
        .list(Pool::Lan)
        .into_iter()
        .filter(|member| member.status == muster_core::swim::Status::Alive)
        .collect();
    let with_role =
        |role: &str| alive.iter().filter(|m| m.tags.get("role").is_some_and(|r| r == role)).count();
    set_gauge("members.clients", &datacenter, with_role("node") as f32);
    set_gauge("members.servers", &datacenter, with_role("consul") as f32);
    set_gauge("version", &[("version", crate::version::CONSUL_COMPATIBLE_VERSION), ("pre_release", "")], 1.0);
    match replication.filter(|_| leads) {
        Some(replication) => {
            let membership = consensus.raft.membership();
            let alive_servers: Vec<u64> = api
                .members
                .lan_servers()
                .into_iter()
                .filter(|(_, status)| *status == muster_core::swim::Status::Alive)
                .map(|(server, _)| server.raft_id)
                .collect();
            // Autopilot's health: alive in gossip and within `max_trailing_logs` of the leader.
            let healthy = |id: &u64| {
                *id == consensus.raft_id
                    || (alive_servers.contains(id)
                        && replication.matched.get(id).is_some_and(|&matched| {
                            replication.last_index.saturating_sub(matched) <= AUTOPILOT_TRAILING_LOGS_MAX
                        }))
            };
            let voters = membership.voters.len();
            let healthy_voters = membership.voters.iter().filter(|id| healthy(id)).count();
            set_gauge("autopilot.healthy", &[], if healthy_voters == voters { 1.0 } else { 0.0 });
            set_gauge(
                "autopilot.failure_tolerance",
                &[],
                healthy_voters.saturating_sub(voters / 2 + 1) as f32,
            );
        }
        None => set_gauge("autopilot.healthy", &[], f32::NAN),
    }
}

/// Refreshes [`refresh_server_gauges`] every 10 s (Consul's reporting interval), for as long as
/// the agent runs; returns at once on a client agent. The integrator spawns it beside
/// [`start`](super::start).
pub async fn run_usage_metrics(api: Arc<Api>) {
    if api.consensus.is_none() {
        return;
    }
    loop {
        refresh_server_gauges(&api).await;
        tokio::time::sleep(USAGE_INTERVAL).await;
    }
}
