//! What only the leader does, run by every server and active while it leads: reconciling LAN
//! gossip into the catalog ([`muster_core::reconcile`]) and managing the Raft membership from
//! gossip ([`muster_core::autopilot`]).
//!
//! Both run when the server takes the leadership (the previous leader's work may be half
//! done) and whenever the member list changes; reconciliation also every
//! [`RECONCILE_INTERVAL`] (to repair a catalog edited by hand, or a write that failed), and
//! autopilot every [`AUTOPILOT_INTERVAL`] (a learner catching up changes nothing in gossip).

use std::sync::Arc;
use std::time::Duration;

use muster_core::autopilot::{Autopilot, GossipServer, View};
use muster_core::raft::Role;
use muster_core::reconcile::{reconcile, GossipMember};

use super::{Api, Consensus, Pool};

/// How often the leader reconciles without a membership change (Consul's
/// `reconcile_interval`).
pub const RECONCILE_INTERVAL: Duration = Duration::from_secs(60);

/// How often autopilot looks at the servers' health without a membership change (Consul's
/// `server_health_interval`).
pub const AUTOPILOT_INTERVAL: Duration = Duration::from_secs(2);

/// The most membership changes one autopilot pass makes (each waits for its commit).
const AUTOPILOT_CHANGES_PER_PASS_MAX: usize = 8;

/// The LAN pool as [`reconcile`] takes it.
fn gossip_members(api: &Api) -> Vec<GossipMember> {
    api.members
        .list(Pool::Lan)
        .into_iter()
        .map(|m| GossipMember { name: m.name, addr: m.addr.ip(), tags: m.tags, status: m.status })
        .collect()
}

/// Runs the leader's duties on a server, for as long as the agent runs.
pub async fn run_leader_duties(api: Arc<Api>) {
    let Some(consensus) = &api.consensus else { return };
    let mut raft = consensus.raft.clone();
    let mut published = api.members.subscribe();
    let origin = tokio::time::Instant::now();
    loop {
        if raft.wait_for(|status| status.role == Role::Leader).await.is_err() {
            return;
        }
        tracing::info!(
            "agent.leader: reconciling gossip membership into the catalog and the Raft configuration"
        );
        // A new term starts a new autopilot: learners stabilize again under this leader.
        let mut autopilot = Autopilot::default();
        let mut reconciled_at = tokio::time::Instant::now();
        reconcile_once(&api).await;
        while api.leads() {
            autopilot_once(&api, consensus, &mut autopilot, origin).await;
            tokio::select! {
                _ = published.changed() => reconcile_once(&api).await,
                () = tokio::time::sleep(AUTOPILOT_INTERVAL) => {
                    if reconciled_at.elapsed() >= RECONCILE_INTERVAL {
                        reconciled_at = tokio::time::Instant::now();
                        reconcile_once(&api).await;
                    }
                }
                lost = raft.wait_for(|status| status.role != Role::Leader) => {
                    if lost.is_err() {
                        return;
                    }
                }
            }
        }
    }
}

/// One autopilot pass: the membership changes gossip and replication call for, one at a time.
async fn autopilot_once(
    api: &Api,
    consensus: &Consensus,
    autopilot: &mut Autopilot,
    origin: tokio::time::Instant,
) {
    let servers: Vec<GossipServer> = api
        .members
        .lan_servers()
        .into_iter()
        .filter(|(server, _)| server.datacenter == api.datacenter)
        .map(|(server, status)| GossipServer { id: server.raft_id, status })
        .collect();
    for _ in 0..AUTOPILOT_CHANGES_PER_PASS_MAX {
        let Ok(replication) = consensus.raft.replication().await else { return };
        let membership = consensus.raft.membership();
        let view = View {
            leader: consensus.raft_id,
            membership: &membership,
            servers: &servers,
            last_index: replication.last_index,
            matched: &replication.matched,
        };
        let Some(change) = autopilot.next_change(crate::drive::core_now(origin), &view) else { return };
        let name = |id: u64| api.servers().get(&id).map_or_else(|| format!("{id:016x}"), |s| s.name.clone());
        let what = match change {
            muster_core::raft::MembershipChange::AddLearner(id) => {
                format!("adding {} as a non-voter", name(id))
            }
            muster_core::raft::MembershipChange::Promote(id) => format!("promoting {} to voter", name(id)),
            muster_core::raft::MembershipChange::Remove(id) => format!("removing {}", name(id)),
        };
        match consensus.raft.change_membership(change).await {
            Ok(()) => tracing::info!("agent.server.autopilot: {what}"),
            Err(error) => {
                tracing::warn!(%error, "agent.server.autopilot: {what} failed");
                return;
            }
        }
    }
}

/// One pass: the catalog writes gossip calls for, proposed here (only the leader runs this).
async fn reconcile_once(api: &Api) {
    let Some(consensus) = &api.consensus else { return };
    let members = gossip_members(api);
    let plan =
        consensus.store.read(|fsm| reconcile(&api.datacenter, &api.node_name, &members, fsm.catalog()));
    for command in plan {
        if let Err(error) = api.write_here(&command).await {
            // A member whose tags clash with the catalog (a duplicate node ID) is refused here
            // each pass, and reported each time: an operator must act.
            tracing::warn!(reason = %error.reason, ?command, "agent.leader: reconciling a member failed");
        }
    }
}
