//! The metrics muster emits ([`METRICS`]), each with its kind, labels and help text.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::OnceLock;

use super::metrics::Kind::{Counter, Gauge, Sample};

/// A metric's kind, as go-metrics has them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// `IncrCounter`: summed per interval; a cumulative Prometheus counter.
    Counter,
    /// `SetGauge`: the last value; a Prometheus gauge; its name may carry the host name.
    Gauge,
    /// `AddSample` and `MeasureSince` (timers): aggregated per interval; a Prometheus summary.
    Sample,
}

impl Kind {
    /// Its Prometheus type, as `# TYPE` names it.
    pub fn prometheus_type(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Sample => "summary",
        }
    }
}

/// One metric muster emits.
#[derive(Debug, Clone, Copy)]
pub struct Metric {
    /// Its name after the prefix; `<name>` stands for a part taken from what is counted.
    pub name: &'static str,
    /// Its kind.
    pub kind: Kind,
    /// Its labels' names.
    pub labels: &'static [&'static str],
    /// Consul declares it to its Prometheus sink at start (`agent/setup.go getPrometheusDefs`):
    /// shown unlabeled from the first scrape, at zero, with its help text, and never expired.
    pub declared: bool,
    /// What it measures (the `# HELP` text of a declared metric; our words).
    pub help: &'static str,
}

pub(super) const fn metric(
    name: &'static str,
    kind: Kind,
    labels: &'static [&'static str],
    declared: bool,
    help: &'static str,
) -> Metric {
    Metric { name, kind, labels, declared, help }
}

/// Every metric muster emits, by name.
pub const METRICS: &[Metric] = &[
    metric(
        "api.http",
        Sample,
        &["method", "path"],
        true,
        "Time to answer an HTTP API request, by method and route.",
    ),
    metric(
        "autopilot.failure_tolerance",
        Gauge,
        &[],
        true,
        "Voting servers the cluster can lose and keep a quorum.",
    ),
    metric("autopilot.healthy", Gauge, &[], true, "1 when every server is healthy, 0 when one is not."),
    metric("catalog.deregister", Sample, &[], true, "Time to apply a catalog deregistration."),
    metric("catalog.register", Sample, &[], true, "Time to apply a catalog registration."),
    metric("catalog.service.query", Counter, &["service"], true, "Catalog queries for a service."),
    metric(
        "catalog.service.query-tag",
        Counter,
        &["service", "tag"],
        true,
        "Catalog queries for a service by tag.",
    ),
    metric("client.rpc", Counter, &[], true, "RPC requests this client agent sent to a server."),
    metric(
        "client.rpc.failed",
        Counter,
        &["server"],
        true,
        "RPC requests this client agent sent that failed.",
    ),
    metric("dns.domain_query", Sample, &["node"], false, "Time to answer a DNS query in the agent's domain."),
    metric("dns.ptr_query", Sample, &["node"], false, "Time to answer a reverse DNS query."),
    metric("health.service.query", Counter, &["service"], false, "Health queries for a service."),
    metric(
        "health.service.query-tag",
        Counter,
        &["service", "tag"],
        false,
        "Health queries for a service by tag.",
    ),
    metric("kvs.apply", Sample, &[], true, "Time to apply a KV write through Raft."),
    metric("members.clients", Gauge, &["datacenter"], true, "Client agents alive in the LAN pool."),
    metric("members.servers", Gauge, &["datacenter"], true, "Servers alive in the LAN pool."),
    metric("raft.applied_index", Gauge, &[], true, "The index last applied to the state machine."),
    metric("raft.apply", Counter, &[], true, "Entries proposed to Raft."),
    metric("raft.commitTime", Sample, &[], true, "Time from a leader's proposal to its commit."),
    metric("raft.fsm.apply", Sample, &[], false, "Time to apply a committed entry to the state machine."),
    metric(
        "raft.fsm.lastRestoreDuration",
        Gauge,
        &[],
        true,
        "Milliseconds the last state machine restore took.",
    ),
    metric("raft.last_index", Gauge, &[], true, "The last index in the Raft log."),
    metric("raft.leader.lastContact", Sample, &[], true, "Age of the leader's last contact with each voter."),
    metric("raft.state.candidate", Counter, &[], true, "Elections this server started."),
    metric("raft.state.follower", Counter, &[], false, "Times this server became a follower."),
    metric("raft.state.leader", Counter, &[], true, "Times this server became the leader."),
    metric("rpc.accept_conn", Counter, &[], true, "RPC connections this server accepted."),
    metric("rpc.consistentRead", Sample, &[], true, "Time to confirm the leadership for a read."),
    metric("rpc.queries_blocking", Gauge, &[], true, "Blocking queries in flight when the last one began."),
    metric("rpc.query", Counter, &[], true, "Read queries this server answered."),
    metric("rpc.request", Counter, &[], true, "RPC requests this server answered."),
    metric("rpc.request_error", Counter, &[], true, "RPC requests this server could not answer."),
    metric("runtime.alloc_bytes", Gauge, &[], false, "Anonymous resident memory (heap and stacks)."),
    metric("runtime.num_goroutines", Gauge, &[], false, "Alive tasks of the async runtime."),
    metric("runtime.sys_bytes", Gauge, &[], false, "Resident memory."),
    metric("runtime.total_gc_pause_ns", Gauge, &[], false, "Always 0: there is no garbage collector."),
    metric("runtime.total_gc_runs", Gauge, &[], false, "Always 0: there is no garbage collector."),
    metric("serf.events", Counter, &["network"], false, "User events received."),
    metric("serf.events.<name>", Counter, &["network"], false, "User events received, by event name."),
    metric("serf.member.failed", Counter, &["network"], false, "Members declared failed."),
    metric("serf.member.flap", Counter, &["network"], false, "Members back within a minute of failing."),
    metric("serf.member.join", Counter, &["network"], false, "Members joined."),
    metric("serf.member.left", Counter, &["network"], false, "Members left gracefully."),
    metric("serf.member.update", Counter, &["network"], false, "Members whose tags changed."),
    metric("server.isLeader", Gauge, &[], true, "1 while this server leads."),
    metric("session.apply", Sample, &[], true, "Time to apply a session creation or destruction."),
    metric("session.renew", Sample, &[], true, "Time to renew a session."),
    metric("session_ttl.active", Gauge, &[], true, "Sessions with a TTL the leader is timing."),
    metric("session_ttl.invalidate", Sample, &[], true, "Time to invalidate a session whose TTL ran out."),
    metric("state.kv_entries", Gauge, &["datacenter"], true, "Entries in the KV store."),
    metric("state.nodes", Gauge, &["datacenter"], true, "Nodes in the catalog."),
    metric("state.peerings", Gauge, &["datacenter"], true, "Cluster peerings (always 0)."),
    metric("state.service_instances", Gauge, &["datacenter"], true, "Service instances in the catalog."),
    metric("state.services", Gauge, &["datacenter"], true, "Service names in the catalog."),
    metric("txn.apply", Sample, &[], true, "Time to apply a transaction with writes."),
    metric("txn.read", Sample, &[], true, "Time to answer a read-only transaction."),
    metric(
        "version",
        Gauge,
        &["version", "pre_release"],
        false,
        "1, labeled with the Consul version muster speaks.",
    ),
];

/// The table entry named `name`.
pub(super) fn metric_named(name: &str) -> Option<&'static Metric> {
    static BY_NAME: OnceLock<HashMap<&'static str, &'static Metric>> = OnceLock::new();
    BY_NAME.get_or_init(|| METRICS.iter().map(|metric| (metric.name, metric)).collect()).get(name).copied()
}
