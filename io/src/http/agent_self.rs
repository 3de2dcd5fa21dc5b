//! `GET /v1/agent/self` (consul `agent/agent_endpoint.go` `AgentSelf`): the agent's identity
//! (`Config`), its sanitized runtime configuration (`DebugConfig`, built in [`super::runtime`]),
//! its own LAN member, and the `Stats` that `consul info` prints.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Response};
use muster_core::fsm::CheckKind;
use muster_core::raft::Role;
use muster_core::swim::Status;
use serde::Serialize;

use super::members::{MemberBody, Pool};
use super::runtime::DebugConfig;
use super::{json, Api, Consensus, Query};
use crate::raft_server::Status as RaftStatus;

pub(super) async fn agent_self(State(api): State<Arc<Api>>, RawQuery(raw): RawQuery) -> Response {
    let query = Query::parse(raw.as_deref());
    let runtime = api.config.runtime();
    let body = AgentSelf {
        config: AgentConfig {
            datacenter: &api.datacenter,
            primary_datacenter: &api.datacenter,
            node_name: &api.node_name,
            node_id: &api.node_id,
            server: api.consensus.is_some(),
            revision: crate::version::GIT_REVISION,
            version: crate::version::CONSUL_COMPATIBLE_VERSION,
            build_date: super::host::BUILD_DATE,
        },
        debug_config: super::runtime::debug_config(&api, &runtime),
        coord: (),
        // The agent's own LAN member, as `/v1/agent/members` shows it, so a client finds itself
        // there by equality.
        member: api
            .members
            .list(Pool::Lan)
            .into_iter()
            .find(|m| m.name == api.node_name)
            .map(MemberBody::from),
        stats: stats(&api),
        meta: api.local.state().node().meta.clone(),
    };
    json(&query, &body).into_response()
}

/// Consul's `Self`.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct AgentSelf<'a> {
    config: AgentConfig<'a>,
    debug_config: DebugConfig<'a>,
    /// The agent's network coordinate: `null`, as none is computed.
    coord: (),
    member: Option<MemberBody>,
    stats: Stats,
    /// The agent's node meta (`node_meta` and Consul's `consul-network-segment`), as its
    /// catalog node carries it. Consul's `xDS` section follows only where an xDS server runs;
    /// muster runs none, so it is left out.
    meta: std::collections::BTreeMap<String, String>,
}

/// `Config` of `/v1/agent/self`: who the agent is.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct AgentConfig<'a> {
    datacenter: &'a str,
    primary_datacenter: &'a str,
    node_name: &'a str,
    #[serde(rename = "NodeID")]
    node_id: &'a str,
    server: bool,
    revision: &'static str,
    version: &'static str,
    build_date: &'static str,
}

/// `Stats` of `/v1/agent/self`, what `muster info` prints: every section and key `consul info`
/// prints on a Consul 1.20 server (`agent`, `build`, `consul`, `raft`, `runtime`, `serf_lan`,
/// `serf_wan`) or client (`agent`, `build`, `consul`, `runtime`, `serf_lan`), every value a
/// string (`../shared/reference/consul-behaviour.md` §4.2). Values muster does not track (serf's
/// queues and Lamport clocks, memberlist's health score, a follower's last contact) are the ones
/// an idle, healthy agent shows.
///
/// Consul's is a map of maps of strings, which Go writes with the keys sorted: each struct here
/// declares its fields in that order, under the keys' own (snake case) names.
#[derive(Serialize)]
struct Stats {
    agent: AgentStats,
    build: BuildStats,
    consul: ConsulStats,
    /// On a server only.
    #[serde(skip_serializing_if = "Option::is_none")]
    raft: Option<RaftStats>,
    runtime: RuntimeStats,
    serf_lan: SerfStats,
    /// On a server in a WAN pool only.
    #[serde(skip_serializing_if = "Option::is_none")]
    serf_wan: Option<SerfStats>,
}

/// The agent's services and checks, counted.
#[derive(Serialize)]
struct AgentStats {
    check_monitors: String,
    check_ttls: String,
    checks: String,
    services: String,
}

/// The build.
#[derive(Serialize)]
struct BuildStats {
    prerelease: &'static str,
    revision: &'static str,
    version: &'static str,
    version_metadata: &'static str,
}

/// The `consul` section: a client's or a server's keys.
#[derive(Serialize)]
#[serde(untagged)]
enum ConsulStats {
    Client {
        acl: &'static str,
        known_servers: String,
        server: &'static str,
    },
    Server {
        acl: &'static str,
        bootstrap: String,
        known_datacenters: String,
        leader: String,
        leader_addr: String,
        server: &'static str,
    },
}

/// hashicorp/raft's `Stats()`.
#[derive(Serialize)]
struct RaftStats {
    applied_index: String,
    commit_index: String,
    fsm_pending: &'static str,
    /// "0" on the leader, "never", or how long ago.
    last_contact: String,
    last_log_index: String,
    last_log_term: String,
    last_snapshot_index: String,
    last_snapshot_term: &'static str,
    latest_configuration: String,
    latest_configuration_index: &'static str,
    num_peers: String,
    protocol_version: &'static str,
    protocol_version_max: &'static str,
    protocol_version_min: &'static str,
    snapshot_version_max: &'static str,
    snapshot_version_min: &'static str,
    state: &'static str,
    term: String,
}

/// Consul's `runtimeStats()`.
#[derive(Serialize)]
struct RuntimeStats {
    arch: &'static str,
    cpu_count: String,
    goroutines: String,
    max_procs: String,
    os: &'static str,
    version: &'static str,
}

/// serf's `Stats()` for a pool.
#[derive(Serialize)]
struct SerfStats {
    coordinate_resets: &'static str,
    encrypted: String,
    event_queue: &'static str,
    event_time: String,
    failed: String,
    health_score: &'static str,
    intent_queue: &'static str,
    left: String,
    member_time: &'static str,
    members: String,
    query_queue: &'static str,
    query_time: &'static str,
}

/// Consul's `Stats()`: what `consul info` prints.
fn stats(api: &Api) -> Stats {
    let build = BuildStats {
        prerelease: "",
        revision: crate::version::GIT_REVISION,
        version: crate::version::CONSUL_COMPATIBLE_VERSION,
        version_metadata: "",
    };
    let Some(consensus) = &api.consensus else {
        let known_servers =
            api.members.alive_lan_servers().iter().filter(|s| s.datacenter == api.datacenter).count();
        return Stats {
            agent: agent_stats(api),
            build,
            consul: ConsulStats::Client {
                acl: "disabled",
                known_servers: known_servers.to_string(),
                server: "false",
            },
            raft: None,
            runtime: runtime_stats(),
            serf_lan: serf_stats(api, Pool::Lan),
            serf_wan: None,
        };
    };
    let status = consensus.raft.status();
    let leader_addr =
        status.leader.and_then(|id| api.servers().get(&id).map(|s| s.addr.to_string())).unwrap_or_default();
    let datacenters: BTreeSet<String> = api
        .members
        .list(Pool::Wan)
        .into_iter()
        .filter_map(|member| member.tags.get("dc").cloned())
        .chain(std::iter::once(api.datacenter.clone()))
        .collect();
    let in_wan = api.gossip.pools.iter().any(|(pool, _, _)| *pool == Pool::Wan)
        || !api.members.list(Pool::Wan).is_empty();
    Stats {
        agent: agent_stats(api),
        build,
        consul: ConsulStats::Server {
            acl: "disabled",
            bootstrap: api.config.runtime().bootstrap.to_string(),
            known_datacenters: datacenters.len().to_string(),
            leader: (status.role == Role::Leader).to_string(),
            leader_addr,
            server: "true",
        },
        raft: Some(raft_stats(api, consensus, &status)),
        runtime: runtime_stats(),
        serf_lan: serf_stats(api, Pool::Lan),
        serf_wan: in_wan.then(|| serf_stats(api, Pool::Wan)),
    }
}

/// The agent's services and checks, counted.
fn agent_stats(api: &Api) -> AgentStats {
    let local = api.local.state();
    let checks = local.checks();
    let kind = |wanted: CheckKind| checks.values().filter(|c| c.kind == wanted).count().to_string();
    AgentStats {
        check_monitors: kind(CheckKind::Script),
        check_ttls: kind(CheckKind::Ttl),
        checks: checks.len().to_string(),
        services: local.services().len().to_string(),
    }
}

/// hashicorp/raft's `Stats()` for this server, whose Raft status is `status`.
fn raft_stats(api: &Api, consensus: &Consensus, status: &RaftStatus) -> RaftStats {
    let membership = consensus.raft.membership();
    let servers = api.servers();
    let configuration: Vec<String> = membership
        .voters
        .iter()
        .map(|id| (id, "Voter"))
        .chain(membership.learners.iter().map(|id| (id, "Nonvoter")))
        .map(|(id, suffrage)| {
            let (node_id, addr) = servers
                .get(id)
                .map_or((format!("{id:016x}"), String::new()), |s| (s.node_id.clone(), s.addr.to_string()));
            format!("{{Suffrage:{suffrage} ID:{node_id} Address:{addr}}}")
        })
        .collect();
    // hashicorp/raft counts the other voters, and none when this server is not one of them.
    let num_peers =
        if membership.voters.contains(&consensus.raft_id) { membership.voters.len() - 1 } else { 0 };
    // The leader's log ends at its commit index once its term's first entry is committed; a
    // follower's log may run past its commit index by what it has not heard committed yet.
    let last_log_index = status.commit.max(status.applied);
    RaftStats {
        applied_index: status.applied.to_string(),
        commit_index: status.commit.to_string(),
        fsm_pending: "0",
        last_contact: match consensus.raft.last_leader_contact() {
            _ if status.role == Role::Leader => "0".to_owned(),
            None => "never".to_owned(),
            Some(ago) => muster_core::duration::format(ago),
        },
        last_log_index: last_log_index.to_string(),
        last_log_term: status.term.to_string(),
        last_snapshot_index: status.snapshot_index.to_string(),
        last_snapshot_term: "0",
        latest_configuration: format!("[{}]", configuration.join(" ")),
        latest_configuration_index: "0",
        num_peers: num_peers.to_string(),
        protocol_version: "3",
        protocol_version_max: "3",
        protocol_version_min: "0",
        snapshot_version_max: "1",
        snapshot_version_min: "0",
        state: match status.role {
            Role::Leader => "Leader",
            Role::Follower => "Follower",
            Role::PreCandidate | Role::Candidate => "Candidate",
        },
        term: status.term.to_string(),
    }
}

/// serf's `Stats()` for a pool.
fn serf_stats(api: &Api, pool: Pool) -> SerfStats {
    let members = api.members.list(pool);
    let count = |status: Status| members.iter().filter(|m| m.status == status).count().to_string();
    // serf's event clock stands one past the newest event it witnessed (user events travel
    // on the LAN pool only).
    let event_time = match pool {
        Pool::Lan => api.gossip.events_after(None).iter().map(|e| e.ltime + 1).max().unwrap_or(1),
        Pool::Wan => 1,
    };
    SerfStats {
        coordinate_resets: "0",
        encrypted: api.gossip.encrypted.to_string(),
        event_queue: "0",
        event_time: event_time.to_string(),
        failed: count(Status::Failed),
        health_score: "0",
        intent_queue: "0",
        left: count(Status::Left),
        member_time: "1",
        members: members.len().to_string(),
        query_queue: "0",
        query_time: "1",
    }
}

/// Consul's `runtimeStats()`, for this process: Go's names for the architecture, the tasks alive
/// on the runtime (Go's goroutines) and its worker threads (`GOMAXPROCS`). There is no Go
/// runtime, so `version` is empty.
fn runtime_stats() -> RuntimeStats {
    let (tasks, workers) = tokio::runtime::Handle::try_current()
        .map_or((0, 1), |handle| (handle.metrics().num_alive_tasks(), handle.metrics().num_workers()));
    RuntimeStats {
        // Go's names for the architectures, as Consul reports them.
        arch: match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "386",
            other => other,
        },
        cpu_count: std::thread::available_parallelism().map_or(1, |n| n.get()).to_string(),
        goroutines: tasks.to_string(),
        max_procs: workers.to_string(),
        os: std::env::consts::OS,
        version: "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serf_sample(encrypted: bool) -> SerfStats {
        SerfStats {
            coordinate_resets: "0",
            encrypted: encrypted.to_string(),
            event_queue: "0",
            event_time: "3".into(),
            failed: "1".into(),
            health_score: "0",
            intent_queue: "0",
            left: "0".into(),
            member_time: "1",
            members: "2".into(),
            query_queue: "0",
            query_time: "1",
        }
    }

    /// The answer's bytes for a client and a server, pinned: Consul's sections and keys, in the
    /// order Go writes a map's, every value a string.
    #[test]
    fn agent_self_keeps_consuls_shape() {
        let runtime = super::super::RuntimeConfig::default();
        let member = super::super::members::Member {
            name: "web-1".into(),
            addr: "10.0.0.1:8301".parse().unwrap(),
            tags: [("dc".to_owned(), "dc1".to_owned())].into_iter().collect(),
            status: Status::Alive,
        };
        let agent = || AgentStats {
            check_monitors: "0".into(),
            check_ttls: "1".into(),
            checks: "2".into(),
            services: "3".into(),
        };
        let build = || BuildStats {
            prerelease: "",
            revision: crate::version::GIT_REVISION,
            version: crate::version::CONSUL_COMPATIBLE_VERSION,
            version_metadata: "",
        };
        let runtime_stats = || RuntimeStats {
            arch: "amd64",
            cpu_count: "2".into(),
            goroutines: "9".into(),
            max_procs: "2".into(),
            os: "linux",
            version: "",
        };
        let client = Stats {
            agent: agent(),
            build: build(),
            consul: ConsulStats::Client { acl: "disabled", known_servers: "3".into(), server: "false" },
            raft: None,
            runtime: runtime_stats(),
            serf_lan: serf_sample(false),
            serf_wan: None,
        };
        let server = Stats {
            agent: agent(),
            build: build(),
            consul: ConsulStats::Server {
                acl: "disabled",
                bootstrap: "true".into(),
                known_datacenters: "1".into(),
                leader: "true".into(),
                leader_addr: "10.0.0.1:8300".into(),
                server: "true",
            },
            raft: Some(RaftStats {
                applied_index: "7".into(),
                commit_index: "7".into(),
                fsm_pending: "0",
                last_contact: "0".into(),
                last_log_index: "7".into(),
                last_log_term: "2".into(),
                last_snapshot_index: "0".into(),
                last_snapshot_term: "0",
                latest_configuration: "[{Suffrage:Voter ID:abc Address:10.0.0.1:8300}]".into(),
                latest_configuration_index: "0",
                num_peers: "0".into(),
                protocol_version: "3",
                protocol_version_max: "3",
                protocol_version_min: "0",
                snapshot_version_max: "1",
                snapshot_version_min: "0",
                state: "Leader",
                term: "2".into(),
            }),
            runtime: runtime_stats(),
            serf_lan: serf_sample(true),
            serf_wan: Some(serf_sample(true)),
        };
        let lines = [(false, client), (true, server)].map(|(is_server, stats)| {
            let answer = AgentSelf {
                config: AgentConfig {
                    datacenter: "dc1",
                    primary_datacenter: "dc1",
                    node_name: "web-1",
                    node_id: "0b6c4a5c-2f4c-4d43-9c55-0cd0b0b8f4a1",
                    server: is_server,
                    revision: crate::version::GIT_REVISION,
                    version: crate::version::CONSUL_COMPATIBLE_VERSION,
                    build_date: super::super::host::BUILD_DATE,
                },
                debug_config: DebugConfig::sample(&runtime),
                coord: (),
                member: Some(MemberBody::from(member.clone())),
                stats,
                meta: runtime.node_meta.clone(),
            };
            let mut value = serde_json::to_value(answer).unwrap();
            let stats = &value["Stats"];
            for object in std::iter::once(stats).chain(stats.as_object().unwrap().values()) {
                let keys: Vec<&String> = object.as_object().unwrap().keys().collect();
                assert!(keys.windows(2).all(|pair| pair[0] < pair[1]), "in Go's map order: {keys:?}");
            }
            // DebugConfig has its own golden file.
            value["DebugConfig"] = serde_json::Value::Null;
            serde_json::to_string(&value).unwrap()
        });
        super::super::shapes::assert_golden("agent_self.golden", &lines);
    }
}
