//! What only the leader does, run by every server and active while it leads: reconciling LAN
//! gossip into the catalog ([`muster_core::reconcile`]) and managing the Raft membership from
//! gossip ([`muster_core::autopilot`]).
//!
//! Both run when the server takes the leadership (the previous leader's work may be half
//! done), whenever the member list changes, and every [`RECONCILE_INTERVAL`] (to repair a
//! catalog edited by hand, or a write that failed).

use std::sync::Arc;
use std::time::Duration;

use muster_core::raft::Role;
use muster_core::reconcile::{reconcile, GossipMember};
use muster_core::swim::Status;

use super::{Api, Pool};

/// How often the leader reconciles without a membership change (Consul's
/// `reconcile_interval`).
pub const RECONCILE_INTERVAL: Duration = Duration::from_secs(60);

/// The LAN pool as [`reconcile`] takes it.
fn gossip_members(api: &Api) -> Vec<GossipMember> {
    api.members
        .list(Pool::Lan)
        .into_iter()
        .filter_map(|m| {
            let status = match m.status {
                1 => Status::Alive,
                2 => Status::Leaving,
                3 => Status::Left,
                4 => Status::Failed,
                _ => return None,
            };
            Some(GossipMember { name: m.name, addr: m.addr.ip(), tags: m.tags, status })
        })
        .collect()
}

/// Runs the leader's duties on a server, for as long as the agent runs.
pub async fn run_leader_duties(api: Arc<Api>) {
    let Some(consensus) = &api.consensus else { return };
    let mut raft = consensus.raft.clone();
    let mut published = api.members.subscribe();
    loop {
        if raft.wait_for(|status| status.role == Role::Leader).await.is_err() {
            return;
        }
        tracing::info!("leader: reconciling gossip membership into the catalog");
        while api.leads() {
            reconcile_once(&api).await;
            tokio::select! {
                _ = published.changed() => {}
                () = tokio::time::sleep(RECONCILE_INTERVAL) => {}
                lost = raft.wait_for(|status| status.role != Role::Leader) => {
                    if lost.is_err() {
                        return;
                    }
                }
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
            tracing::warn!(reason = %error.reason, ?command, "leader: reconciling a member failed");
        }
    }
}
