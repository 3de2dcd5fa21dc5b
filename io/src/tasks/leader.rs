//! What only the leader does, run by every server and active while it leads: reconciling LAN
//! gossip into the catalog ([`muster_core::reconcile`]), managing the Raft membership from
//! gossip ([`muster_core::autopilot`]), and what time decides ([`run_duties`]: core's
//! [`muster_core::fsm::LeaderDuties`], which the simulator drives too).
//!
//! Both run when the server takes the leadership (the previous leader's work may be half
//! done) and whenever the member list changes; reconciliation also every
//! [`RECONCILE_INTERVAL`] (to repair a catalog edited by hand, or a write that failed), and
//! autopilot every [`AUTOPILOT_INTERVAL`] (a learner catching up changes nothing in gossip).

use std::sync::Arc;
use std::time::Duration;

use std::collections::BTreeMap;
use std::time::SystemTime;

use muster_core::autopilot::{self, Autopilot, GossipServer, View};
use muster_core::fsm::{AutopilotSet, Command};
use muster_core::raft::{Role, ServerId};
use muster_core::reconcile::{reconcile, GossipMember};
use muster_core::swim::Status;

use crate::http::{Api, Consensus, Pool};

/// How often the leader reconciles without a membership change (Consul's
/// `reconcile_interval`).
pub const RECONCILE_INTERVAL: Duration = Duration::from_secs(60);

/// How often autopilot looks at the servers' health without a membership change (Consul's
/// `server_health_interval`).
pub const AUTOPILOT_INTERVAL: Duration = Duration::from_secs(2);

/// The most membership changes one autopilot pass makes (each waits for its commit).
const AUTOPILOT_CHANGES_PER_PASS_MAX: usize = 8;

/// Autopilot's settings from the agent's configuration, and what the leader's autopilot last
/// found (for `/v1/operator/autopilot/health` and `/state`).
#[derive(Debug, Default)]
pub struct AutopilotShared {
    /// The agent's `autopilot` block: what the first leader stores when none is stored yet.
    pub defaults: autopilot::Config,
    report: std::sync::Mutex<Option<AutopilotReport>>,
}

impl AutopilotShared {
    /// Settings from the agent's `autopilot` block.
    pub fn new(defaults: autopilot::Config) -> AutopilotShared {
        AutopilotShared { defaults, report: std::sync::Mutex::default() }
    }

    /// What the leader's autopilot last found, if this server leads.
    pub fn report(&self) -> Option<AutopilotReport> {
        self.report.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    fn publish(&self, report: Option<AutopilotReport>) {
        *self.report.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = report;
    }
}

/// The cluster's health as the leader last judged it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AutopilotReport {
    /// Every server healthy.
    pub healthy: bool,
    /// How many healthy voters could fail with a quorum left.
    pub failure_tolerance: usize,
    /// The leader's Raft ID.
    pub leader: ServerId,
    /// Each member of the Raft configuration.
    pub servers: Vec<ServerReport>,
}

/// One server in an [`AutopilotReport`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerReport {
    /// Its Raft ID.
    pub raft_id: ServerId,
    /// Its node ID (Consul's Raft server ID).
    pub node_id: String,
    /// Its node name.
    pub name: String,
    /// Where it serves RPC and Raft.
    pub address: String,
    /// Its gossip status, if gossip shows it.
    pub status: Option<Status>,
    /// Whether it votes.
    pub voter: bool,
    /// How long since the leader last heard from it (zero for the leader).
    pub last_contact: std::time::Duration,
    /// The leader's term.
    pub last_term: u64,
    /// How far its log is known to match the leader's.
    pub last_index: u64,
    /// Autopilot's judgement.
    pub healthy: bool,
    /// When that judgement last changed.
    pub stable_since: SystemTime,
}

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
        let mut autopilot = Autopilot::new(stored_autopilot_config(&api, consensus).await);
        if let Err(error) = crate::http::acl::initialize_acls(&api).await {
            tracing::warn!(reason = %error.reason, "agent.server.acl: initializing ACLs failed");
        }
        let mut reconciled_at = tokio::time::Instant::now();
        reconcile_once(&api).await;
        while api.leads() {
            autopilot_once(&api, consensus, &mut autopilot, origin).await;
            if let Some(entry) = consensus.store.read(|fsm| fsm.autopilot().cloned()) {
                autopilot.set_config(entry.config);
            }
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
        api.autopilot.publish(None);
    }
}

/// Runs the leader's timers on a server ([`Consensus::run_duties`]), for as long as the agent
/// runs; nothing on a client agent.
pub async fn run_duties(api: Arc<Api>) {
    if let Some(consensus) = &api.consensus {
        consensus.run_duties().await;
    }
}

/// Autopilot's settings as stored, after storing the agent's own when none are (Consul's
/// leader does so as it takes office); the agent's own if that write fails.
async fn stored_autopilot_config(api: &Api, consensus: &Consensus) -> autopilot::Config {
    if let Some(entry) = consensus.store.read(|fsm| fsm.autopilot().cloned()) {
        return entry.config;
    }
    let defaults = api.autopilot.defaults.clone();
    let set = Command::AutopilotSet(AutopilotSet { config: defaults.clone(), cas: None });
    if let Err(error) = api.write_here(&set).await {
        tracing::warn!(reason = %error, "agent.server.autopilot: storing the autopilot configuration failed");
    }
    defaults
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
    for pass in 0..AUTOPILOT_CHANGES_PER_PASS_MAX {
        let Ok(replication) = consensus.raft.replication().await else { return };
        let membership = consensus.raft.membership();
        let now = tokio::time::Instant::now();
        let last_contact: BTreeMap<ServerId, std::time::Duration> = replication
            .heard
            .iter()
            .map(|(&id, &heard)| (id, now.saturating_duration_since(heard)))
            .collect();
        let view = View {
            leader: consensus.raft_id,
            membership: &membership,
            servers: &servers,
            last_index: replication.last_index,
            matched: &replication.matched,
            last_contact: &last_contact,
        };
        if pass == 0 {
            let health = autopilot.health(crate::drive::core_now(origin), &view);
            api.autopilot.publish(Some(report(api, &view, &health, replication.term, origin)));
        }
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

/// The report of one autopilot pass, in the names and wall-clock times the API shows.
fn report(
    api: &Api,
    view: &View<'_>,
    health: &autopilot::Health,
    term: u64,
    origin: tokio::time::Instant,
) -> AutopilotReport {
    let known = api.servers();
    let wall = |since: muster_core::Instant| {
        let ago = crate::drive::core_now(origin).saturating_duration_since(since);
        SystemTime::now().checked_sub(ago).unwrap_or(SystemTime::UNIX_EPOCH)
    };
    let servers = health
        .servers
        .iter()
        .map(|(&raft_id, stability)| {
            let entry = known.get(&raft_id);
            ServerReport {
                raft_id,
                node_id: entry.map_or_else(|| format!("{raft_id:016x}"), |s| s.node_id.clone()),
                name: entry.map_or_else(String::new, |s| s.name.clone()),
                address: entry.map_or_else(String::new, |s| s.addr.to_string()),
                status: view.servers.iter().find(|s| s.id == raft_id).map(|s| s.status),
                voter: view.membership.voters.contains(&raft_id),
                last_contact: match raft_id == view.leader {
                    true => std::time::Duration::ZERO,
                    false => view.last_contact.get(&raft_id).copied().unwrap_or_default(),
                },
                last_term: term,
                last_index: match raft_id == view.leader {
                    true => view.last_index,
                    false => view.matched.get(&raft_id).copied().unwrap_or(0),
                },
                healthy: stability.healthy,
                stable_since: wall(stability.since),
            }
        })
        .collect();
    AutopilotReport {
        healthy: health.healthy,
        failure_tolerance: health.failure_tolerance,
        leader: view.leader,
        servers,
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
            tracing::warn!(reason = %error, ?command, "agent.leader: reconciling a member failed");
        }
    }
}
