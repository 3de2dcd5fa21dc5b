//! Consul's telemetry with Consul's names and kinds (`../shared/reference/consul-dialect.md` §6),
//! so that dashboards and alerts built for Consul work against muster unchanged.
//!
//! # Recording
//! Instrumented code calls [`incr_counter`], [`set_gauge`], [`add_sample`] or
//! [`measure_since`] with the name after the prefix (`"raft.apply"`, parts joined by `.`) and a
//! slice of labels: hashicorp/go-metrics' `IncrCounterWithLabels`, `SetGaugeWithLabels`,
//! `AddSampleWithLabels` and `MeasureSinceWithLabels`, values in float32 as there, timers in
//! milliseconds. [`METRICS`] lists every metric muster emits, with its kind and labels. One
//! process-wide registry keeps each series (kind, name, label values) in three shapes at once:
//! - go-metrics' in-memory sink (`NewInmemSink(10s, 1m)`): per 10-second interval, count, sum,
//!   min, max, mean, stddev and rate (sum / 10 s) of counters and samples, and the last value of
//!   gauges. `/v1/agent/metrics` shows the latest finished interval ([`metrics_json`]).
//! - go-metrics' Prometheus sink: cumulative counters, gauges, and samples as summaries with
//!   quantiles 0.5, 0.9 and 0.99 over a sliding 10-second window plus `_sum` and `_count`; a
//!   series not updated within `prometheus_retention_time` is dropped ([`prometheus_text`]).
//!   Consul declares its key metrics to Prometheus at start ([`Metric::declared`]): they are
//!   shown from the first scrape, at zero, and never expire.
//! - a queue for the statsd, statsite and dogstatsd sinks, flushed every 100 ms ([`start`]).
//!
//! # A small registry of our own, not the `metrics` facade
//! The `metrics` crate is the well-kept Rust facade, and a custom `Recorder` could implement
//! Consul's semantics behind it. It would buy little here: nothing in our dependency tree reports
//! through it, every sink (the interval view, the Prometheus view with Consul's declared series,
//! statsd's line format) would still be ours, and its keys would still be looked up per call.
//! go-metrics' model (a name, a label slice, three kinds) fits a few hundred lines, with one
//! dependency fewer and nothing to keep out of the simulator build. The hot path takes no
//! allocation once a series exists: a hash of the borrowed name and labels, a read lock on one
//! of 16 shard maps, and the series' own mutex for a few float operations; no lock is held
//! across an await.
//!
//! # Quantiles
//! client_golang's summaries (which go-metrics' sink uses) keep a CKMS stream per 2-second age
//! bucket, 5 buckets for the 10-second window. Here each age bucket keeps a uniform reservoir of
//! at most 128 observations (Vitter's algorithm R), and a quantile is read from the
//! live buckets' reservoirs, each observation weighted by its bucket's observed count over its
//! kept count. It is exact while a bucket sees no more than that (most
//! of Consul's timers fire far less often than 64 a second), bounded in memory (a summary holds
//! at most 2.5 KiB of observations), and needs no crate: the Rust CKMS implementations are
//! unmaintained, and an HDR histogram needs a value range fixed in advance, which timers in
//! milliseconds next to byte counts do not have.
//!
//! # Names
//! A series' name is the configured `metrics_prefix` (`consul`), then, for gauges only, the host
//! name, then the name given. As in Consul (`lib/telemetry.go configureSinks`), the host name is
//! inserted only when a sink besides the in-memory one is configured (statsd, statsite,
//! dogstatsd, or a positive `prometheus_retention_time`) and `disable_hostname` is false; so
//! with Prometheus on, `consul.autopilot.healthy` is `consul_<host>_autopilot_healthy` while the
//! declared `consul_autopilot_healthy` stays at zero, exactly as Consul shows it. Prometheus
//! names are mangled as go-metrics does (` .=-/` become `_`, case kept:
//! `consul_raft_commitTime`); label values are passed through. `prefix_filter` and
//! `filter_default` decide, by the longest matching prefix of the dotted name, whether a series
//! is recorded at all.
//!
//! # Deliberate differences from Consul
//! - `?format=prometheus` is served even without `prometheus_retention_time` (Consul answers
//!   415): series then expire after [`PROMETHEUS_RETENTION_DEFAULT`].
//! - The JSON view leaves out a gauge whose value is not finite (`autopilot.healthy` is NaN off
//!   the leader), where Go's encoder fails the whole answer with a 500.
//! - The Prometheus text has no `go_*` collectors (there is no Go runtime); on Linux it has the
//!   `process_*` ones, read from `/proc`.
//! - `runtime.*` stand for the Go runtime's: `alloc_bytes` is the anonymous resident memory
//!   (heap and stacks), `sys_bytes` the whole resident set, `num_goroutines` the Tokio runtime's
//!   alive tasks, `total_gc_pause_ns` and `total_gc_runs` zero (there is no collector); Go's
//!   `malloc_count`, `free_count` and `heap_objects` have no counterpart and are not emitted.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt::Write as _;
use std::future::Future;
use std::hash::{BuildHasher, Hash, Hasher, RandomState};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use muster_core::raft::Role;
use serde_json::Value;

use self::Kind::{Counter, Gauge, Sample};
use crate::http::{Api, Pool};

/// A label: its name (always a literal) and its value.
pub type Label<'a> = (&'static str, &'a str);

/// Adds `n` to a counter (go-metrics' `IncrCounterWithLabels`).
pub fn incr_counter(name: &str, labels: &[Label<'_>], n: f32) {
    global().record(Kind::Counter, name, labels, n, now_ns());
}

/// Sets a gauge (go-metrics' `SetGaugeWithLabels`).
pub fn set_gauge(name: &str, labels: &[Label<'_>], value: f32) {
    global().record(Kind::Gauge, name, labels, value, now_ns());
}

/// Adds an observation to a sample (go-metrics' `AddSampleWithLabels`).
pub fn add_sample(name: &str, labels: &[Label<'_>], value: f32) {
    global().record(Kind::Sample, name, labels, value, now_ns());
}

/// Adds the milliseconds since `start` to a timer, a sample (go-metrics' `MeasureSinceWithLabels`).
pub fn measure_since(name: &str, labels: &[Label<'_>], start: Instant) {
    add_sample(name, labels, elapsed_ms(start));
}

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

const fn metric(
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

/// The `telemetry` block's settings muster acts on (Consul's `lib.TelemetryConfig`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TelemetryConfig {
    /// Prefix of every name (`consul`).
    pub metrics_prefix: String,
    /// Never put the host name in gauge names.
    pub disable_hostname: bool,
    /// How long Prometheus keeps a series nobody updates; zero when not set (Consul then has no
    /// Prometheus sink; muster serves it anyway, see the module doc).
    pub prometheus_retention_time: Duration,
    /// Whether a metric no rule of `prefix_filter` names is recorded.
    pub filter_default: bool,
    /// Rules `+prefix` (record) and `-prefix` (do not), as written.
    pub prefix_filter: Vec<String>,
    /// A statsd server (UDP), `host:port`.
    pub statsd_address: Option<String>,
    /// A statsite server (TCP), `host:port`.
    pub statsite_address: Option<String>,
    /// A dogstatsd server (UDP), `host:port`.
    pub dogstatsd_addr: Option<String>,
    /// Tags (`name:value`) dogstatsd gets with every metric.
    pub dogstatsd_tags: Vec<String>,
}

impl Default for TelemetryConfig {
    /// Consul's defaults (`agent/config/default.go`).
    fn default() -> TelemetryConfig {
        TelemetryConfig {
            metrics_prefix: "consul".to_owned(),
            disable_hostname: false,
            prometheus_retention_time: Duration::ZERO,
            filter_default: true,
            prefix_filter: Vec::new(),
            statsd_address: None,
            statsite_address: None,
            dogstatsd_addr: None,
            dogstatsd_tags: Vec::new(),
        }
    }
}

impl TelemetryConfig {
    /// `prefix_filter` as Consul's builder splits it (`parsePrefixFilter`): the allowed
    /// prefixes, the blocked ones, and the warnings for rules that are neither. Unless a rule
    /// names it, `<prefix>.rpc.server.call` is blocked, as Consul blocks it by default (muster
    /// does not emit it; kept so the lists are Consul's).
    pub fn prefix_rules(&self) -> (Vec<String>, Vec<String>, Vec<String>) {
        let (mut allowed, mut blocked, mut warnings) = (Vec::new(), Vec::new(), Vec::new());
        let server_call = format!("{}.rpc.server.call", self.metrics_prefix);
        let mut named = false;
        for rule in &self.prefix_filter {
            match rule.as_bytes().first() {
                None => warnings.push("Cannot have empty filter rule in prefix_filter".to_owned()),
                Some(b'+') => {
                    named |= rule[1..] == server_call;
                    allowed.push(rule[1..].to_owned());
                }
                Some(b'-') => {
                    named |= rule[1..] == server_call;
                    blocked.push(rule[1..].to_owned());
                }
                Some(_) => warnings.push(format!("Filter rule must begin with either '+' or '-': {rule:?}")),
            }
        }
        if !named {
            blocked.push(server_call);
        }
        (allowed, blocked, warnings)
    }

    /// Whether a sink besides the in-memory one is configured: Consul inserts the host name into
    /// gauge names only then.
    fn has_external_sink(&self) -> bool {
        !self.prometheus_retention_time.is_zero()
            || self.statsd_address.is_some()
            || self.statsite_address.is_some()
            || self.dogstatsd_addr.is_some()
    }
}

/// A parsed `telemetry` block and what Consul warns about in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedTelemetry {
    /// The settings.
    pub config: TelemetryConfig,
    /// Warnings (`prefix_filter` rules Consul ignores).
    pub warnings: Vec<String>,
}

/// Reads a config file's `telemetry` object (keys as Consul spells them; `null` or absent keys
/// keep Consul's defaults) into its settings, with Consul's errors for values of the wrong type
/// (mapstructure's words, JSON's Go types) or a bad duration (the builder's). Keys muster does
/// not act on (`circonus_*`, `retry_failed_connection`, ...) are the config reader's to accept
/// or refuse; they are skipped here.
pub fn parse_config(telemetry: &Value) -> Result<ParsedTelemetry, Vec<String>> {
    let mut config = TelemetryConfig::default();
    let object = match telemetry {
        Value::Null => return Ok(ParsedTelemetry { config, warnings: Vec::new() }),
        Value::Object(object) => object,
        // HCL's one-element list of blocks (`HookWeakDecodeFromSlice`).
        Value::Array(items) if items.len() == 1 && items[0].is_object() => {
            items[0].as_object().expect("checked to be an object")
        }
        other => return Err(vec![format!("'telemetry' expected a map, got '{}'", go_kind(other))]),
    };
    let mut errors = Vec::new();
    for (key, value) in object {
        if value.is_null() {
            continue;
        }
        let at = format!("telemetry.{key}");
        // mapstructure matches field names case-insensitively.
        match key.to_ascii_lowercase().as_str() {
            "metrics_prefix" => {
                if let Some(text) = string_value(&at, value, &mut errors) {
                    config.metrics_prefix = text;
                }
            }
            "disable_hostname" => {
                if let Some(flag) = bool_value(&at, value, &mut errors) {
                    config.disable_hostname = flag;
                }
            }
            "filter_default" => {
                if let Some(flag) = bool_value(&at, value, &mut errors) {
                    config.filter_default = flag;
                }
            }
            "prometheus_retention_time" => {
                if let Some(text) = string_value(&at, value, &mut errors) {
                    match muster_core::duration::parse(&text) {
                        Ok(duration) => config.prometheus_retention_time = duration,
                        // Go takes a negative duration; it is not positive, so no Prometheus sink.
                        Err(muster_core::duration::DurationError::Negative(_)) => {
                            config.prometheus_retention_time = Duration::ZERO;
                        }
                        Err(error) => {
                            errors.push(format!(
                                "prometheus_retention_time: invalid duration: {text:?}: {error}"
                            ));
                        }
                    }
                }
            }
            "prefix_filter" => {
                if let Some(rules) = strings_value(&at, value, &mut errors) {
                    config.prefix_filter = rules;
                }
            }
            "dogstatsd_tags" => {
                if let Some(tags) = strings_value(&at, value, &mut errors) {
                    config.dogstatsd_tags = tags;
                }
            }
            "statsd_address" => config.statsd_address = address_value(&at, value, &mut errors),
            "statsite_address" => config.statsite_address = address_value(&at, value, &mut errors),
            "dogstatsd_addr" => config.dogstatsd_addr = address_value(&at, value, &mut errors),
            _ => {}
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let (_, _, warnings) = config.prefix_rules();
    Ok(ParsedTelemetry { config, warnings })
}

/// Applies `config` and starts what runs in the background: the runtime gauges every second,
/// expiry of idle series, and the statsd, statsite and dogstatsd sinks that are configured.
/// `host_name` is the machine's host name (Go's `os.Hostname`), which gauge names carry unless
/// `disable_hostname` (see the module doc). Call it once, at agent start; a later call only
/// changes the names and filters.
///
/// # Panics
/// Outside a Tokio runtime.
pub fn start(config: TelemetryConfig, host_name: String) {
    static STARTED: AtomicBool = AtomicBool::new(false);
    let registry = global();
    registry.configure(Settings::new(&config, host_name));
    if STARTED.swap(true, Ordering::SeqCst) {
        return;
    }
    tokio::spawn(run_runtime_gauges());
    let outputs: Vec<Output> = [
        (Protocol::Statsd, &config.statsd_address),
        (Protocol::Statsite, &config.statsite_address),
        (Protocol::Dogstatsd, &config.dogstatsd_addr),
    ]
    .into_iter()
    .filter_map(|(protocol, address)| address.clone().map(|address| Output::new(protocol, address)))
    .collect();
    if !outputs.is_empty() {
        registry.sink_on.store(true, Ordering::SeqCst);
        tokio::spawn(run_sinks(outputs));
    }
}

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
/// the agent runs; returns at once on a client agent. The integrator spawns it beside [`start`].
pub async fn run_usage_metrics(api: Arc<Api>) {
    if api.consensus.is_none() {
        return;
    }
    loop {
        refresh_server_gauges(&api).await;
        tokio::time::sleep(USAGE_INTERVAL).await;
    }
}

/// The `/v1/agent/metrics` JSON: the latest finished interval (the running one when it is the
/// only one), as go-metrics' `DisplayMetrics` shapes it; indented by four spaces with a final
/// newline when `pretty`.
pub fn metrics_json(pretty: bool) -> String {
    global().json(now_ns(), pretty)
}

/// The interval running now, in intervals of [`METRICS_INTERVAL`] since the epoch (begun in
/// the registry, as a record would begin it).
pub fn current_interval() -> u64 {
    let now = now_ns();
    global().begin_interval(now / INTERVAL_NS);
    now / INTERVAL_NS
}

/// The `/v1/agent/metrics` JSON of interval `interval` (as [`current_interval`] numbers them),
/// once it has finished: what `/v1/agent/metrics/stream` sends for it.
pub fn interval_json(interval: u64, pretty: bool) -> String {
    global().interval_json(interval, pretty)
}

/// How long each interval of the in-memory view lasts (go-metrics' `NewInmemSink(10s, 1m)`).
pub const METRICS_INTERVAL: Duration = INTERVAL;

/// The Prometheus text (format 0.0.4) of every live series, Consul's declared ones, and the
/// process collector's.
pub fn prometheus_text() -> String {
    let mut text = global().prometheus(now_ns());
    process_metrics(&mut text);
    text
}

/// The content type of [`prometheus_text`], as client_golang's handler sends it.
pub const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Whether a `/v1/agent/metrics` request asks for Prometheus text: `?format=prometheus`, or an
/// `Accept` naming `application/openmetrics-text`, or `text/plain; version=0.4.0` (Consul's
/// `enablePrometheusOutput`, which answers these in format 0.0.4 too).
pub fn prometheus_requested(format: Option<&str>, accept: Option<&str>) -> bool {
    if format == Some("prometheus") {
        return true;
    }
    accept.is_some_and(|accept| {
        accept.split(',').any(|media| {
            let mut parts = media.split(';');
            let mime = parts.next().unwrap_or_default().trim_matches(' ');
            mime.eq_ignore_ascii_case("application/openmetrics-text")
                || (mime.eq_ignore_ascii_case("text/plain")
                    && parts.next().is_some_and(|param| param.trim_matches(' ') == "version=0.4.0"))
        })
    })
}

/// Middleware timing each HTTP request the agent answers as `api.http`, labeled with its method
/// and its route as Consul names its mux patterns (`/v1/kv/` → `v1_kv_`, `/v1/agent/self` →
/// `v1_agent_self`: the pattern without its leading slash, `/` → `_`). Requests matching no
/// route (Consul's index handler) are not timed, nor requests answered for another agent's RPC
/// (those are that agent's HTTP requests, and this server's `rpc.request`).
pub async fn track_http(request: Request, next: Next) -> Response {
    if IN_RPC.try_with(|_| ()).is_ok() {
        return next.run(request).await;
    }
    let Some(matched) = request.extensions().get::<MatchedPath>().cloned() else {
        return next.run(request).await;
    };
    let method = request.method().clone();
    let start = Instant::now();
    let response = next.run(request).await;
    let elapsed = elapsed_ms(start);
    with_path_label(matched.as_str(), |path| {
        add_sample("api.http", &[("method", method.as_str()), ("path", path)], elapsed);
    });
    response
}

/// Middleware counting the reads of replicated state this server answers (`rpc.query`, each
/// one an RPC query in Consul), and setting `rpc.queries_blocking` when a blocking one (with an
/// `index`) begins, as Consul's `blockingquery.Query` does. It sits behind the forwarding to the
/// leader, so a read counts where it is answered.
pub async fn count_reads(request: Request, next: Next) -> Response {
    if request.method() != axum::http::Method::GET || !reads_state(request.uri().path()) {
        return next.run(request).await;
    }
    incr_counter("rpc.query", &[], 1.0);
    if !blocking_index(request.uri().query()) {
        return next.run(request).await;
    }
    let registry = global();
    let in_flight = registry.blocking.fetch_add(1, Ordering::SeqCst) + 1;
    set_gauge("rpc.queries_blocking", &[], in_flight as f32);
    let _done = BlockingQuery(registry);
    next.run(request).await
}

/// Runs `answer` as the answer to another agent's RPC: [`track_http`] leaves its HTTP requests
/// to the agent that received them.
pub async fn answering_rpc<F: Future>(answer: F) -> F::Output {
    IN_RPC.scope((), answer).await
}

/// Counts a gossip pool's event as serf does (`serf.member.*`, `serf.events`,
/// `serf.events.<name>`, labeled `network` `lan` or `wan` after the pool's logger name
/// `module`), and hands it back, so a logger can count inline:
/// `match telemetry::serf_event(&module, event) {`.
pub fn serf_event(module: &str, event: muster_core::gossip::Event) -> muster_core::gossip::Event {
    global().serf_event(module, &event, now_ns());
    event
}

/// Records a gossip pool's Lifeguard health score (`memberlist.health.score`, labeled
/// `network`), as memberlist does when it changes. Not yet called: the score lives in the
/// drive loop's node ([`muster_core::Gossip::health_score`]), whose step hook is where to call it.
pub fn memberlist_health_score(network: &str, score: u32) {
    set_gauge("memberlist.health.score", &[("network", network)], score as f32);
}

/// Times a DNS answer as Consul's DNS server does: `dns.ptr_query` for names under `arpa.`,
/// `dns.domain_query` for names in `domain` or `alt_domain`, nothing for others (recursed),
/// labeled with the agent's `node` name.
pub fn dns_answered(packet: &[u8], domain: &str, alt_domain: &str, node: &str, start: Instant) {
    if let Some(name) = dns_metric(packet, domain, alt_domain) {
        measure_since(name, &[("node", node)], start);
    }
}

/// Counts an RPC a client agent sent to a server, and its failure (`client.rpc`,
/// `client.rpc.failed` labeled with the server, here its address).
pub fn client_rpc(server: std::net::SocketAddr, failed: bool) {
    incr_counter("client.rpc", &[], 1.0);
    if failed {
        incr_counter("client.rpc.failed", &[("server", &server.to_string())], 1.0);
    }
}

// --- the registry ----------------------------------------------------------------------------

/// The process's registry.
fn global() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(Registry::new)
}

tokio::task_local! {
    /// Set while a server answers another agent's RPC.
    static IN_RPC: ();
}

/// Decrements the blocking queries in flight when one ends (or is dropped).
struct BlockingQuery(&'static Registry);

impl Drop for BlockingQuery {
    fn drop(&mut self) {
        self.0.blocking.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Every series, and what the views need besides.
#[derive(Debug)]
struct Registry {
    /// Series by the hash of (kind, name, labels); a chain for hashes that collide.
    shards: Vec<RwLock<HashMap<u64, Vec<Arc<Series>>>>>,
    /// Series held (bounded by [`SERIES_MAX`]).
    count: AtomicUsize,
    /// Records dropped for want of room for a new series.
    dropped: AtomicU64,
    settings: RwLock<Arc<Settings>>,
    /// Bumped whenever the settings change: series re-evaluate their filter.
    generation: AtomicU64,
    /// The intervals begun (their start, in intervals since the epoch), oldest first.
    intervals: Mutex<VecDeque<u64>>,
    /// The last of them.
    current: AtomicU64,
    /// Records waiting for the statsd, statsite and dogstatsd sinks.
    queue: Mutex<VecDeque<(Arc<Series>, f32)>>,
    /// Whether any of those sinks runs.
    sink_on: AtomicBool,
    /// Blocking queries in flight.
    blocking: AtomicU64,
    /// When members were last declared failed, by (network, name): a join soon after is a flap.
    failed: Mutex<HashMap<(&'static str, String), u64>>,
}

impl Registry {
    fn new() -> Registry {
        let registry = Registry {
            shards: (0..SHARDS).map(|_| RwLock::default()).collect(),
            count: AtomicUsize::new(0),
            dropped: AtomicU64::new(0),
            settings: RwLock::new(Arc::new(Settings::default())),
            generation: AtomicU64::new(1),
            intervals: Mutex::default(),
            current: AtomicU64::new(u64::MAX),
            queue: Mutex::default(),
            sink_on: AtomicBool::new(false),
            blocking: AtomicU64::new(0),
            failed: Mutex::default(),
        };
        // Consul's declared metrics exist from the start, unlabeled, and are never dropped.
        for metric in METRICS.iter().filter(|metric| metric.declared) {
            let hash = key_hash(metric.kind, metric.name, &[]);
            let series = Arc::new(Series::new(metric.kind, metric.name, &[], 0));
            write(&registry.shards[shard_of(hash)]).entry(hash).or_default().push(series);
            registry.count.fetch_add(1, Ordering::Relaxed);
        }
        registry
    }

    fn configure(&self, settings: Settings) {
        *write(&self.settings) = Arc::new(settings);
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    fn settings(&self) -> Arc<Settings> {
        read(&self.settings).clone()
    }

    /// One record: the series found (or made), filtered, updated, and queued for the sinks.
    fn record(&self, kind: Kind, name: &str, labels: &[Label<'_>], value: f32, now: u64) {
        self.begin_interval(now / INTERVAL_NS);
        self.with_series(kind, name, labels, now, |series| {
            if !series.allowed(self) {
                return;
            }
            lock(&series.state).record(kind, value, now);
            if self.sink_on.load(Ordering::Relaxed) {
                let mut queue = lock(&self.queue);
                // Dropped when the sinks fall behind, as go-metrics' statsd sink drops them.
                if queue.len() < SINK_QUEUE_MAX {
                    queue.push_back((series.clone(), value));
                }
            }
        });
    }

    /// Runs `f` on the series (kind, name, labels), made if new and there is room.
    fn with_series(
        &self,
        kind: Kind,
        name: &str,
        labels: &[Label<'_>],
        now: u64,
        f: impl FnOnce(&Arc<Series>),
    ) {
        let hash = key_hash(kind, name, labels);
        let shard = &self.shards[shard_of(hash)];
        {
            let map = read(shard);
            if let Some(series) =
                map.get(&hash).and_then(|chain| chain.iter().find(|s| s.is(kind, name, labels)))
            {
                f(series);
                return;
            }
        }
        let mut map = write(shard);
        if let Some(series) = map.get(&hash).and_then(|chain| chain.iter().find(|s| s.is(kind, name, labels)))
        {
            f(series);
            return;
        }
        if self.count.load(Ordering::Relaxed) >= SERIES_MAX {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let series = Arc::new(Series::new(kind, name, labels, now));
        map.entry(hash).or_default().push(series.clone());
        self.count.fetch_add(1, Ordering::Relaxed);
        drop(map);
        f(&series);
    }

    /// Notes that `interval` has begun (go-metrics' `getInterval`): the view keeps the last
    /// [`INTERVALS_KEPT`].
    fn begin_interval(&self, interval: u64) {
        if self.current.load(Ordering::Relaxed) == interval {
            return;
        }
        let mut intervals = lock(&self.intervals);
        // Another thread began it meanwhile, or the clock stepped back: nothing new.
        if intervals.back().is_some_and(|&last| last >= interval) {
            return;
        }
        intervals.push_back(interval);
        while intervals.len() > INTERVALS_KEPT {
            intervals.pop_front();
        }
        self.current.store(interval, Ordering::Relaxed);
    }

    /// Every series.
    fn all(&self) -> Vec<Arc<Series>> {
        let mut all = Vec::with_capacity(self.count.load(Ordering::Relaxed));
        for shard in &self.shards {
            all.extend(read(shard).values().flatten().cloned());
        }
        all
    }

    /// Forgets series nobody updated within the retention time nor the in-memory view's
    /// minute; declared ones stay.
    fn sweep(&self, now: u64) {
        let keep_ns =
            (self.settings().retention.as_nanos() as u64).max(INTERVAL_NS * (INTERVALS_KEPT as u64 + 1));
        let stale = |series: &Arc<Series>| {
            !series.pinned && now.saturating_sub(lock(&series.state).updated) > keep_ns
        };
        for shard in &self.shards {
            if !read(shard).values().flatten().any(stale) {
                continue;
            }
            let mut map = write(shard);
            let mut removed = 0;
            map.retain(|_, chain| {
                let before = chain.len();
                chain.retain(|series| !stale(series));
                removed += before - chain.len();
                !chain.is_empty()
            });
            self.count.fetch_sub(removed, Ordering::Relaxed);
        }
    }

    fn json(&self, now: u64, pretty: bool) -> String {
        // Asking begins the running interval, as go-metrics' `Data` does.
        self.begin_interval(now / INTERVAL_NS);
        let shown = {
            let intervals = lock(&self.intervals);
            match intervals.len() {
                0 | 1 => intervals.back().copied().unwrap_or(now / INTERVAL_NS),
                n => intervals[n - 2],
            }
        };
        self.interval_json(shown, pretty)
    }

    /// The JSON summary of interval `shown` (in intervals since the epoch).
    fn interval_json(&self, shown: u64, pretty: bool) -> String {
        let settings = self.settings();
        let (mut gauges, mut counters, mut samples) = (Vec::new(), Vec::new(), Vec::new());
        for series in self.all() {
            let Some(slot) = lock(&series.state).slot(shown) else { continue };
            let name = settings.full_name(series.kind, &series.name).replace(' ', "_");
            // go-metrics sorts by the key: the name, then `;label=value` for each label.
            let mut sort_key = name.clone();
            for (label, value) in series.labels.iter() {
                let _ = write!(sort_key, ";{label}={}", value.replace(' ', "_"));
            }
            let mut labels: Vec<(String, Json)> = series
                .labels
                .iter()
                .map(|(label, value)| ((*label).to_owned(), Json::Str(value.to_string())))
                .collect();
            labels.sort_by(|a, b| a.0.cmp(&b.0));
            labels.dedup_by(|a, b| a.0 == b.0);
            let labels = Json::Object(labels);
            match series.kind {
                Kind::Gauge if slot.gauge.is_finite() => gauges.push((
                    sort_key,
                    Json::object([
                        ("Name", Json::Str(name)),
                        ("Value", Json::Number(json_f32(slot.gauge))),
                        ("Labels", labels),
                    ]),
                )),
                Kind::Gauge => {}
                Kind::Counter | Kind::Sample => {
                    let entry = Json::object([
                        ("Name", Json::Str(name)),
                        ("Count", Json::Number(slot.count.to_string())),
                        ("Rate", Json::Number(json_f64(slot.sum / INTERVAL.as_secs_f64()))),
                        ("Sum", Json::Number(json_f64(slot.sum))),
                        ("Min", Json::Number(json_f64(slot.min))),
                        ("Max", Json::Number(json_f64(slot.max))),
                        ("Mean", Json::Number(json_f64(slot.mean()))),
                        ("Stddev", Json::Number(json_f64(slot.stddev()))),
                        ("Labels", labels),
                    ]);
                    if series.kind == Kind::Counter {
                        counters.push((sort_key, entry));
                    } else {
                        samples.push((sort_key, entry));
                    }
                }
            }
        }
        let sorted = |mut entries: Vec<(String, Json)>| {
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Json::Array(entries.into_iter().map(|(_, entry)| entry).collect())
        };
        let summary = Json::object([
            ("Timestamp", Json::Str(go_utc(shown * INTERVAL.as_secs()))),
            ("Gauges", sorted(gauges)),
            ("PrecisionGauges", Json::Array(Vec::new())),
            ("Points", Json::Array(Vec::new())),
            ("Counters", sorted(counters)),
            ("Samples", sorted(samples)),
        ]);
        let mut out = String::new();
        summary.render(&mut out, pretty.then_some(0));
        if pretty {
            out.push('\n');
        }
        out
    }

    fn prometheus(&self, now: u64) -> String {
        self.sweep(now);
        let settings = self.settings();
        let retention_ns = settings.retention.as_nanos() as u64;
        let mut families: BTreeMap<String, Family> = BTreeMap::new();
        for series in self.all() {
            let state = lock(&series.state);
            let live = state.recorded && now.saturating_sub(state.updated) <= retention_ns;
            let help = series.metric.filter(|metric| metric.declared).map(|metric| metric.help);
            let mut labels: Vec<(&'static str, &str)> =
                series.labels.iter().map(|(label, value)| (*label, &**value)).collect();
            labels.sort_by_key(|(label, _)| *label);
            let value = |state: &State| match series.kind {
                Kind::Counter => Sampled::Counter(state.total),
                Kind::Gauge => Sampled::Gauge(f64::from(state.gauge)),
                Kind::Sample => Sampled::Summary {
                    quantiles: state.window.as_ref().map_or([f64::NAN; 3], |window| window.quantiles(now)),
                    sum: state.total,
                    count: state.count,
                },
            };
            let plain = settings.full_name(Kind::Counter, &series.name);
            let named = settings.full_name(series.kind, &series.name);
            // go-metrics gives a series the help declared for its name, else the name itself.
            let mut add = |name: &str, help: Option<&str>, sampled: Sampled| {
                let name = prometheus_name(name);
                if !valid_prometheus_name(&name) {
                    return;
                }
                let family = families.entry(name.clone()).or_insert_with(|| Family {
                    kind: series.kind,
                    help: help.map_or_else(|| name.clone(), str::to_owned),
                    samples: Vec::new(),
                });
                // A counter and a gauge whose names mangle alike: the first one wins.
                if family.kind == series.kind {
                    family
                        .samples
                        .push((labels.iter().map(|(l, v)| (*l, (*v).to_owned())).collect(), sampled));
                }
            };
            if series.pinned && named != plain {
                // A declared gauge with the host name in live names: the declared one, unlabeled
                // and without the host name, keeps its initial zero (Consul shows both).
                add(&plain, help, Sampled::Gauge(0.0));
                if live && series.allowed(self) {
                    add(&named, None, value(&state));
                }
            } else if series.pinned || (live && series.allowed(self)) {
                add(&named, help, value(&state));
            }
        }
        let mut text = String::new();
        for (name, mut family) in families {
            family.samples.sort_by(|a, b| {
                a.0.len()
                    .cmp(&b.0.len())
                    .then_with(|| a.0.iter().map(|(_, v)| v).cmp(b.0.iter().map(|(_, v)| v)))
            });
            let _ = writeln!(text, "# HELP {name} {}", escape_help(&family.help));
            let _ = writeln!(text, "# TYPE {name} {}", family.kind.prometheus_type());
            for (labels, sampled) in &family.samples {
                match sampled {
                    Sampled::Counter(value) | Sampled::Gauge(value) => {
                        let _ = writeln!(text, "{name}{} {}", label_set(labels, None), go_float_g(*value));
                    }
                    Sampled::Summary { quantiles, sum, count } => {
                        for (quantile, value) in QUANTILES.iter().zip(quantiles) {
                            let _ = writeln!(
                                text,
                                "{name}{} {}",
                                label_set(labels, Some(*quantile)),
                                go_float_g(*value)
                            );
                        }
                        let _ = writeln!(text, "{name}_sum{} {}", label_set(labels, None), go_float_g(*sum));
                        let _ = writeln!(text, "{name}_count{} {count}", label_set(labels, None));
                    }
                }
            }
        }
        text
    }

    fn serf_event(&self, module: &str, event: &muster_core::gossip::Event, now: u64) {
        let network = if module.ends_with(".wan") { "wan" } else { "lan" };
        let labels = [("network", network)];
        match event {
            muster_core::gossip::Event::Member(member) => {
                use muster_core::swim::MemberEventKind;
                let key = (network, member.node.name.clone());
                let name = match member.kind {
                    MemberEventKind::Join => {
                        // serf's flap: back within its `FlapTimeout` of being declared failed.
                        let failed_at = lock(&self.failed).remove(&key);
                        if failed_at.is_some_and(|at| now.saturating_sub(at) < FLAP_TIMEOUT.as_nanos() as u64)
                        {
                            self.record(Kind::Counter, "serf.member.flap", &labels, 1.0, now);
                        }
                        "serf.member.join"
                    }
                    MemberEventKind::Failed => {
                        let mut failed = lock(&self.failed);
                        failed.retain(|_, at| now.saturating_sub(*at) < FLAP_TIMEOUT.as_nanos() as u64);
                        if failed.len() < FAILED_MEMBERS_MAX {
                            failed.insert(key, now);
                        }
                        "serf.member.failed"
                    }
                    MemberEventKind::Leave => "serf.member.left",
                    MemberEventKind::Update => "serf.member.update",
                    // serf has none of these: a restart before anyone noticed, a member
                    // forgotten, a name claimed twice.
                    MemberEventKind::Restart | MemberEventKind::Reap | MemberEventKind::Conflict => return,
                };
                self.record(Kind::Counter, name, &labels, 1.0, now);
            }
            muster_core::gossip::Event::User(user) => {
                self.record(Kind::Counter, "serf.events", &labels, 1.0, now);
                self.record(Kind::Counter, &format!("serf.events.{}", user.name), &labels, 1.0, now);
            }
            muster_core::gossip::Event::Keyring(_) | muster_core::gossip::Event::Left => {}
        }
    }

    fn take_queue(&self) -> VecDeque<(Arc<Series>, f32)> {
        std::mem::take(&mut *lock(&self.queue))
    }
}

/// How names are formed and filtered, from the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Settings {
    prefix: String,
    /// Inserted into gauge names after the prefix.
    host: Option<String>,
    filter_default: bool,
    allowed: Vec<String>,
    blocked: Vec<String>,
    retention: Duration,
    dogstatsd_tags: Vec<String>,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings::new(&TelemetryConfig::default(), String::new())
    }
}

impl Settings {
    fn new(config: &TelemetryConfig, host_name: String) -> Settings {
        let (allowed, blocked, _) = config.prefix_rules();
        let host = (!config.disable_hostname && config.has_external_sink() && !host_name.is_empty())
            .then_some(host_name);
        let retention = match config.prometheus_retention_time {
            retention if retention.is_zero() => PROMETHEUS_RETENTION_DEFAULT,
            retention => retention,
        };
        Settings {
            prefix: config.metrics_prefix.clone(),
            host,
            filter_default: config.filter_default,
            allowed,
            blocked,
            retention,
            dogstatsd_tags: config.dogstatsd_tags.clone(),
        }
    }

    /// The dotted name of a series of `kind` named `name`.
    fn full_name(&self, kind: Kind, name: &str) -> String {
        let host = self.host.as_deref().filter(|_| kind == Kind::Gauge);
        let mut full = String::with_capacity(self.prefix.len() + name.len() + 2 + host.map_or(0, str::len));
        for part in [Some(self.prefix.as_str()), host, Some(name)].into_iter().flatten() {
            if part.is_empty() {
                continue;
            }
            if !full.is_empty() {
                full.push('.');
            }
            full.push_str(part);
        }
        full
    }

    /// go-metrics' filter: the longest rule that is a prefix of the dotted name decides (a
    /// prefix both allowed and blocked is blocked); without one, `filter_default`.
    fn allows(&self, full_name: &str) -> bool {
        let longest = |rules: &[String]| {
            rules.iter().filter(|rule| full_name.starts_with(rule.as_str())).map(String::len).max()
        };
        match (longest(&self.allowed), longest(&self.blocked)) {
            (None, None) => self.filter_default,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some(allowed), Some(blocked)) => allowed > blocked,
        }
    }
}

/// One series: what is recorded for a (kind, name, label values).
#[derive(Debug)]
struct Series {
    kind: Kind,
    name: Box<str>,
    labels: Box<[(&'static str, Box<str>)]>,
    /// Its entry in [`METRICS`].
    metric: Option<&'static Metric>,
    /// Declared and unlabeled: shown from the start, never dropped.
    pinned: bool,
    /// The filter's decision (bit 0) and the settings generation it was made for (the rest).
    filter: AtomicU64,
    state: Mutex<State>,
}

impl Series {
    fn new(kind: Kind, name: &str, labels: &[Label<'_>], now: u64) -> Series {
        let metric = metric_named(name);
        Series {
            kind,
            name: name.into(),
            labels: labels.iter().map(|(label, value)| (*label, Box::from(*value))).collect(),
            metric,
            pinned: labels.is_empty() && metric.is_some_and(|metric| metric.declared && metric.kind == kind),
            filter: AtomicU64::new(0),
            state: Mutex::new(State::new(kind, now)),
        }
    }

    fn is(&self, kind: Kind, name: &str, labels: &[Label<'_>]) -> bool {
        self.kind == kind
            && *self.name == *name
            && self.labels.len() == labels.len()
            && self.labels.iter().zip(labels).all(|((a, x), (b, y))| a == b && **x == **y)
    }

    /// Whether the filter lets this series be recorded, under the current settings.
    fn allowed(&self, registry: &Registry) -> bool {
        let generation = registry.generation.load(Ordering::Acquire);
        let cached = self.filter.load(Ordering::Relaxed);
        if cached >> 1 == generation {
            return cached & 1 == 1;
        }
        let settings = registry.settings();
        let allowed = settings.allows(&settings.full_name(self.kind, &self.name));
        self.filter.store(generation << 1 | u64::from(allowed), Ordering::Relaxed);
        allowed
    }
}

/// A series' values.
#[derive(Debug)]
struct State {
    /// When it was last recorded (or made), nanoseconds since the epoch.
    updated: u64,
    /// Whether anything was recorded.
    recorded: bool,
    /// Its two latest intervals with records: the view shows one of them.
    latest: Slot,
    previous: Slot,
    /// The gauge's value.
    gauge: f32,
    /// The counter's total, or the sample's sum, since the series was made.
    total: f64,
    /// The sample's observations since the series was made.
    count: u64,
    /// The sample's recent observations, for quantiles.
    window: Option<Box<Window>>,
}

impl State {
    fn new(kind: Kind, now: u64) -> State {
        State {
            updated: now,
            recorded: false,
            latest: Slot::EMPTY,
            previous: Slot::EMPTY,
            gauge: 0.0,
            total: 0.0,
            count: 0,
            window: (kind == Kind::Sample).then(|| Box::new(Window::new(now))),
        }
    }

    fn record(&mut self, kind: Kind, value: f32, now: u64) {
        let interval = now / INTERVAL_NS;
        if self.latest.interval != interval {
            self.previous = self.latest;
            self.latest = Slot { interval, ..Slot::EMPTY };
        }
        let v = f64::from(value);
        match kind {
            Kind::Gauge => {
                self.latest.count += 1;
                self.latest.gauge = value;
                self.gauge = value;
            }
            Kind::Counter => {
                self.latest.ingest(v);
                // The Prometheus sink refuses a negative increment.
                if v >= 0.0 {
                    self.total += v;
                }
            }
            Kind::Sample => {
                self.latest.ingest(v);
                self.total += v;
                self.count += 1;
                if let Some(window) = &mut self.window {
                    window.observe(value, now);
                }
            }
        }
        self.updated = now;
        self.recorded = true;
    }

    /// Its aggregate for `interval`, if it has records there.
    fn slot(&self, interval: u64) -> Option<Slot> {
        [self.latest, self.previous].into_iter().find(|slot| slot.interval == interval && slot.count > 0)
    }
}

/// A series' aggregate over one interval (go-metrics' `AggregateSample`, and a gauge's value).
#[derive(Debug, Clone, Copy)]
struct Slot {
    interval: u64,
    count: u64,
    sum: f64,
    sum_sq: f64,
    min: f64,
    max: f64,
    gauge: f32,
}

impl Slot {
    const EMPTY: Slot =
        Slot { interval: u64::MAX, count: 0, sum: 0.0, sum_sq: 0.0, min: 0.0, max: 0.0, gauge: 0.0 };

    fn ingest(&mut self, value: f64) {
        self.count += 1;
        self.sum += value;
        self.sum_sq += value * value;
        if self.count == 1 || value < self.min {
            self.min = value;
        }
        if self.count == 1 || value > self.max {
            self.max = value;
        }
    }

    fn mean(&self) -> f64 {
        if self.count == 0 {
            return 0.0;
        }
        self.sum / self.count as f64
    }

    /// go-metrics' sample standard deviation.
    fn stddev(&self) -> f64 {
        let count = self.count as f64;
        let divisor = count * (count - 1.0);
        if divisor == 0.0 {
            return 0.0;
        }
        ((count * self.sum_sq - self.sum * self.sum) / divisor).sqrt()
    }
}

/// A summary's sliding window: [`SUMMARY_AGE_BUCKETS`] age buckets of 2 s, each a reservoir.
#[derive(Debug)]
struct Window {
    buckets: [Bucket; SUMMARY_AGE_BUCKETS],
    /// xorshift64* state for the reservoirs' replacement draws.
    rng: u64,
}

#[derive(Debug, Default)]
struct Bucket {
    /// Its age bucket (2-second periods since the epoch).
    epoch: u64,
    /// Observations made in it.
    seen: u64,
    /// A uniform sample of them.
    values: Vec<f32>,
}

impl Window {
    fn new(seed: u64) -> Window {
        Window { buckets: Default::default(), rng: seed | 1 }
    }

    fn observe(&mut self, value: f32, now: u64) {
        let epoch = now / SUMMARY_BUCKET_NS;
        let draw = self.next_random();
        let bucket = &mut self.buckets[(epoch % SUMMARY_AGE_BUCKETS as u64) as usize];
        if bucket.epoch != epoch {
            bucket.epoch = epoch;
            bucket.seen = 0;
            bucket.values.clear();
        }
        bucket.seen += 1;
        if bucket.values.len() < RESERVOIR_MAX {
            bucket.values.push(value);
        } else if let Some(kept) = bucket.values.get_mut((draw % bucket.seen) as usize) {
            *kept = value;
        }
    }

    /// The [`QUANTILES`] of the observations of the last 10 s; NaN without any.
    fn quantiles(&self, now: u64) -> [f64; 3] {
        let epoch = now / SUMMARY_BUCKET_NS;
        let mut weighted: Vec<(f32, f64)> = Vec::new();
        for bucket in &self.buckets {
            if bucket.values.is_empty()
                || bucket.epoch > epoch
                || epoch - bucket.epoch >= SUMMARY_AGE_BUCKETS as u64
            {
                continue;
            }
            let weight = bucket.seen as f64 / bucket.values.len() as f64;
            weighted.extend(bucket.values.iter().map(|&value| (value, weight)));
        }
        if weighted.is_empty() {
            return [f64::NAN; 3];
        }
        weighted.sort_by(|a, b| a.0.total_cmp(&b.0));
        let total: f64 = weighted.iter().map(|(_, weight)| weight).sum();
        QUANTILES.map(|quantile| {
            let target = quantile * total;
            let mut seen = 0.0;
            for &(value, weight) in &weighted {
                seen += weight;
                if seen >= target {
                    return f64::from(value);
                }
            }
            f64::from(weighted[weighted.len() - 1].0)
        })
    }

    fn next_random(&mut self) -> u64 {
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

/// A Prometheus metric family being written.
struct Family {
    kind: Kind,
    help: String,
    samples: Vec<(Vec<(&'static str, String)>, Sampled)>,
}

/// One series' values as Prometheus shows them.
enum Sampled {
    Counter(f64),
    Gauge(f64),
    Summary { quantiles: [f64; 3], sum: f64, count: u64 },
}

/// The table entry named `name`.
fn metric_named(name: &str) -> Option<&'static Metric> {
    static BY_NAME: OnceLock<HashMap<&'static str, &'static Metric>> = OnceLock::new();
    BY_NAME.get_or_init(|| METRICS.iter().map(|metric| (metric.name, metric)).collect()).get(name).copied()
}

fn key_hash(kind: Kind, name: &str, labels: &[Label<'_>]) -> u64 {
    // SipHash with this process's random keys: label values come from requests (service
    // names), so nobody can aim them at one chain.
    static KEYS: OnceLock<RandomState> = OnceLock::new();
    let mut hasher = KEYS.get_or_init(RandomState::new).build_hasher();
    kind.hash(&mut hasher);
    name.hash(&mut hasher);
    for (label, value) in labels {
        label.hash(&mut hasher);
        value.hash(&mut hasher);
    }
    hasher.finish()
}

fn shard_of(hash: u64) -> usize {
    (hash % SHARDS as u64) as usize
}

fn now_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |since| since.as_nanos() as u64)
}

/// Milliseconds since `start`, as go-metrics computes a timer (`float32(ns) / float32(1ms)`).
fn elapsed_ms(start: Instant) -> f32 {
    start.elapsed().as_nanos() as f32 / 1_000_000.0
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while recording leaves at worst one aggregate half-updated: still usable.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(PoisonError::into_inner)
}

// --- names and formats -------------------------------------------------------------------------

/// go-metrics' Prometheus name: ` `, `.`, `=`, `-` and `/` become `_`.
fn prometheus_name(dotted: &str) -> String {
    dotted.chars().map(|c| if matches!(c, ' ' | '.' | '=' | '-' | '/') { '_' } else { c }).collect()
}

/// Whether client_golang accepts `name` (`[a-zA-Z_:][a-zA-Z0-9_:]*`); it drops the others.
fn valid_prometheus_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// `{a="x",b="y"}` (label names sorted by the caller), the quantile last; empty without any.
fn label_set(labels: &[(&'static str, String)], quantile: Option<f64>) -> String {
    if labels.is_empty() && quantile.is_none() {
        return String::new();
    }
    let mut out = String::from("{");
    for (index, (label, value)) in labels.iter().enumerate() {
        if index > 0 {
            out.push(',');
        }
        let _ = write!(out, "{label}=\"");
        for c in value.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '"' => out.push_str("\\\""),
                '\n' => out.push_str("\\n"),
                c => out.push(c),
            }
        }
        out.push('"');
    }
    if let Some(quantile) = quantile {
        if !labels.is_empty() {
            out.push(',');
        }
        let _ = write!(out, "quantile=\"{}\"", go_float_g(quantile));
    }
    out.push('}');
    out
}

fn escape_help(help: &str) -> String {
    help.replace('\\', "\\\\").replace('\n', "\\n")
}

/// A float's shortest decimal digits and the position of the decimal point relative to them
/// (Go's `decimalSlice`: value = 0.digits × 10^point), from Rust's shortest scientific form.
fn shortest_digits(scientific: &str) -> (bool, String, i32) {
    let (negative, rest) = match scientific.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, scientific),
    };
    let (mantissa, exponent) = rest.split_once('e').unwrap_or((rest, "0"));
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    (negative, digits, exponent.parse::<i32>().unwrap_or(0) + 1)
}

/// Go's `%e` of shortest digits: `1.2345e+06`, `5e-05`.
fn format_e(negative: bool, digits: &str, point: i32) -> String {
    let mut out = String::new();
    if negative {
        out.push('-');
    }
    out.push_str(&digits[..1]);
    if digits.len() > 1 {
        out.push('.');
        out.push_str(&digits[1..]);
    }
    let exponent = point - 1;
    let _ = write!(out, "e{}{:02}", if exponent < 0 { '-' } else { '+' }, exponent.abs());
    out
}

/// Go's `%f` of shortest digits: `1234567`, `0.001`.
fn format_f(negative: bool, digits: &str, point: i32) -> String {
    let mut out = String::new();
    if negative {
        out.push('-');
    }
    if point <= 0 {
        out.push_str("0.");
        out.extend(std::iter::repeat_n('0', point.unsigned_abs() as usize));
        out.push_str(digits);
    } else if point as usize >= digits.len() {
        out.push_str(digits);
        out.extend(std::iter::repeat_n('0', point as usize - digits.len()));
    } else {
        out.push_str(&digits[..point as usize]);
        out.push('.');
        out.push_str(&digits[point as usize..]);
    }
    out
}

/// A float as Go's `strconv.FormatFloat(f, 'g', -1, 64)` writes it (client_golang's values).
fn go_float_g(value: f64) -> String {
    if value.is_nan() {
        return "NaN".to_owned();
    }
    if value.is_infinite() {
        return if value > 0.0 { "+Inf" } else { "-Inf" }.to_owned();
    }
    if value == 0.0 {
        return if value.is_sign_negative() { "-0" } else { "0" }.to_owned();
    }
    let (negative, digits, point) = shortest_digits(&format!("{value:e}"));
    let exponent = point - 1;
    if !(-4..GO_G_EXPONENT_MAX).contains(&exponent) {
        format_e(negative, &digits, point)
    } else {
        format_f(negative, &digits, point)
    }
}

/// A float64 as Go's `encoding/json` writes it.
fn json_f64(value: f64) -> String {
    json_float(value.abs(), format!("{value:e}"))
}

/// A float32 as Go's `encoding/json` writes it (its shortest digits are the float32's).
fn json_f32(value: f32) -> String {
    json_float(f64::from(value.abs()), format!("{value:e}"))
}

fn json_float(abs: f64, scientific: String) -> String {
    let (negative, digits, point) = shortest_digits(&scientific);
    if abs != 0.0 && !(1e-6..1e21).contains(&abs) {
        // `encoding/json` writes `1e-07` as `1e-7`.
        let e = format_e(negative, &digits, point);
        match e.rsplit_once("e-0") {
            Some((mantissa, last)) if last.len() == 1 => format!("{mantissa}e-{last}"),
            _ => e,
        }
    } else if abs == 0.0 {
        if negative { "-0" } else { "0" }.to_owned()
    } else {
        format_f(negative, &digits, point)
    }
}

/// Go's `Time.String()` of a UTC time (`2024-05-01 10:00:10 +0000 UTC`).
fn go_utc(unix_secs: u64) -> String {
    let time = UNIX_EPOCH + Duration::from_secs(unix_secs);
    let rfc3339 = humantime::format_rfc3339_seconds(time).to_string();
    format!("{} +0000 UTC", rfc3339.trim_end_matches('Z').replace('T', " "))
}

/// A JSON value written as Go's `encoding/json` writes it.
enum Json {
    /// A number, already formatted.
    Number(String),
    Str(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

impl Json {
    fn object<const N: usize>(fields: [(&str, Json); N]) -> Json {
        Json::Object(fields.into_iter().map(|(key, value)| (key.to_owned(), value)).collect())
    }

    /// Compact, or indented by four spaces per level from `indent` (Go's `MarshalIndent`).
    fn render(&self, out: &mut String, indent: Option<usize>) {
        let newline = |out: &mut String, level: usize| {
            out.push('\n');
            out.extend(std::iter::repeat_n(' ', level * 4));
        };
        match self {
            Json::Number(number) => out.push_str(number),
            Json::Str(text) => go_json_string(out, text),
            Json::Array(items) if items.is_empty() => out.push_str("[]"),
            Json::Object(fields) if fields.is_empty() => out.push_str("{}"),
            Json::Array(items) => {
                out.push('[');
                for (index, item) in items.iter().enumerate() {
                    if index > 0 {
                        out.push(',');
                    }
                    if let Some(level) = indent {
                        newline(out, level + 1);
                    }
                    item.render(out, indent.map(|level| level + 1));
                }
                if let Some(level) = indent {
                    newline(out, level);
                }
                out.push(']');
            }
            Json::Object(fields) => {
                out.push('{');
                for (index, (key, value)) in fields.iter().enumerate() {
                    if index > 0 {
                        out.push(',');
                    }
                    if let Some(level) = indent {
                        newline(out, level + 1);
                    }
                    go_json_string(out, key);
                    out.push(':');
                    if indent.is_some() {
                        out.push(' ');
                    }
                    value.render(out, indent.map(|level| level + 1));
                }
                if let Some(level) = indent {
                    newline(out, level);
                }
                out.push('}');
            }
        }
    }
}

/// A string as `encoding/json` escapes it (HTML characters and line separators included).
fn go_json_string(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '<' | '>' | '&' | '\u{0}'..='\u{1f}' => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            '\u{2028}' | '\u{2029}' => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Calls `f` with Consul's `path` label for the route `matched` (axum's pattern): the pattern
/// up to its first parameter (`/v1/kv/{*key}` is Consul's `/v1/kv/`), without the leading
/// slash, `/` made `_`. Written into a stack buffer: no allocation per request.
fn with_path_label<R>(matched: &str, f: impl FnOnce(&str) -> R) -> R {
    let pattern = &matched[..matched.find('{').unwrap_or(matched.len())];
    // muster also answers `/v1/kv` without the slash; Consul's pattern is `/v1/kv/`.
    let pattern = if pattern == "/v1/kv" { "/v1/kv/" } else { pattern };
    let pattern = pattern.strip_prefix('/').unwrap_or(pattern);
    let mut buffer = [0u8; PATH_LABEL_BYTES_MAX];
    if pattern.len() > buffer.len() {
        return f(&pattern.replace('/', "_"));
    }
    for (out, byte) in buffer.iter_mut().zip(pattern.bytes()) {
        *out = if byte == b'/' { b'_' } else { byte };
    }
    // Only ASCII `/` was replaced, by ASCII `_`: still the UTF-8 it was.
    f(std::str::from_utf8(&buffer[..pattern.len()]).expect("a str with `/` replaced by `_`"))
}

/// Whether a GET of `path` reads replicated state (an RPC query in Consul).
fn reads_state(path: &str) -> bool {
    const PREFIXES: [&str; 6] = [
        "/v1/kv/",
        "/v1/health/",
        "/v1/session/info/",
        "/v1/session/node/",
        "/v1/catalog/",
        "/v1/coordinate/nodes",
    ];
    (PREFIXES.iter().any(|prefix| path.starts_with(prefix)) && path != "/v1/catalog/datacenters")
        || path == "/v1/kv"
        || path == "/v1/session/list"
}

/// Whether the query string asks to block (`index` above 0).
fn blocking_index(query: Option<&str>) -> bool {
    query.is_some_and(|query| {
        query.split('&').any(|pair| {
            pair.strip_prefix("index=")
                .and_then(|index| index.parse::<u64>().ok())
                .is_some_and(|index| index > 0)
        })
    })
}

/// The DNS timer for the question in `packet`: PTR zone, the agent's domain, or neither.
fn dns_metric(packet: &[u8], domain: &str, alt_domain: &str) -> Option<&'static str> {
    // The first question's name, label by label (no compression in a question).
    if packet.len() < 12 || u16::from_be_bytes([packet[4], packet[5]]) == 0 {
        return None;
    }
    let mut labels: [&[u8]; DNS_LABELS_MAX] = [&[]; DNS_LABELS_MAX];
    let (mut count, mut at) = (0, 12);
    loop {
        let len = usize::from(*packet.get(at)?);
        if len == 0 {
            break;
        }
        if len & 0xc0 != 0 || count == DNS_LABELS_MAX {
            return None;
        }
        labels[count] = packet.get(at + 1..at + 1 + len)?;
        count += 1;
        at += 1 + len;
    }
    let labels = &labels[..count];
    let ends_with = |zone: &str| {
        !zone.is_empty() && {
            let mut name_labels = labels.iter().rev();
            zone.trim_end_matches('.').split('.').rev().all(|zone| {
                name_labels.next().is_some_and(|label| label.eq_ignore_ascii_case(zone.as_bytes()))
            })
        }
    };
    if ends_with("arpa") {
        Some("dns.ptr_query")
    } else if ends_with(domain) || ends_with(alt_domain) {
        Some("dns.domain_query")
    } else {
        None
    }
}

// --- config values -----------------------------------------------------------------------------

fn string_value(at: &str, value: &Value, errors: &mut Vec<String>) -> Option<String> {
    match value {
        Value::String(text) => Some(text.clone()),
        other => {
            errors.push(unconvertible(at, "string", other));
            None
        }
    }
}

fn bool_value(at: &str, value: &Value, errors: &mut Vec<String>) -> Option<bool> {
    match value {
        Value::Bool(flag) => Some(*flag),
        other => {
            errors.push(unconvertible(at, "bool", other));
            None
        }
    }
}

fn strings_value(at: &str, value: &Value, errors: &mut Vec<String>) -> Option<Vec<String>> {
    let Value::Array(items) = value else {
        errors.push(format!("'{at}': source data must be an array or slice, got {}", go_kind(value)));
        return None;
    };
    let mut out = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        match item {
            Value::String(text) => out.push(text.clone()),
            Value::Null => out.push(String::new()),
            other => errors.push(unconvertible(&format!("{at}[{index}]"), "string", other)),
        }
    }
    (out.len() == items.len()).then_some(out)
}

/// An address: empty means none, as in Consul.
fn address_value(at: &str, value: &Value, errors: &mut Vec<String>) -> Option<String> {
    string_value(at, value, errors).filter(|address| !address.is_empty())
}

/// mapstructure's error for a value of the wrong type.
fn unconvertible(at: &str, expected: &str, value: &Value) -> String {
    format!(
        "'{at}' expected type '{expected}', got unconvertible type '{}', value: '{}'",
        go_type(value),
        go_value(value)
    )
}

/// The Go type `encoding/json` decodes `value` into.
fn go_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "<nil>",
        Value::Bool(_) => "bool",
        Value::Number(_) => "float64",
        Value::String(_) => "string",
        Value::Array(_) => "[]interface {}",
        Value::Object(_) => "map[string]interface {}",
    }
}

/// Its `reflect.Kind`, as mapstructure names it in slice errors.
fn go_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "invalid",
        Value::Bool(_) => "bool",
        Value::Number(_) => "float64",
        Value::String(_) => "string",
        Value::Array(_) => "slice",
        Value::Object(_) => "map",
    }
}

/// `value` as Go's `%v` prints it.
fn go_value(value: &Value) -> String {
    match value {
        Value::Null => "<nil>".to_owned(),
        Value::Bool(flag) => flag.to_string(),
        Value::Number(number) => go_float_g(number.as_f64().unwrap_or_default()),
        Value::String(text) => text.clone(),
        Value::Array(items) => format!("[{}]", items.iter().map(go_value).collect::<Vec<_>>().join(" ")),
        Value::Object(map) => {
            let mut pairs: Vec<String> =
                map.iter().map(|(key, value)| format!("{key}:{}", go_value(value))).collect();
            pairs.sort();
            format!("map[{}]", pairs.join(" "))
        }
    }
}

// --- background tasks --------------------------------------------------------------------------

/// The `runtime.*` gauges every second (go-metrics' `collectStats`), and expiry of idle series.
async fn run_runtime_gauges() {
    let mut tick = tokio::time::interval(RUNTIME_POLL_INTERVAL);
    loop {
        tick.tick().await;
        emit_runtime_gauges();
        global().sweep(now_ns());
    }
}

fn emit_runtime_gauges() {
    if let Ok(handle) = tokio::runtime::Handle::try_current() {
        set_gauge("runtime.num_goroutines", &[], handle.metrics().num_alive_tasks() as f32);
    }
    if let Some(memory) = ProcStatus::read() {
        set_gauge("runtime.alloc_bytes", &[], memory.rss_anon_bytes as f32);
        set_gauge("runtime.sys_bytes", &[], memory.rss_bytes as f32);
    }
    set_gauge("runtime.total_gc_pause_ns", &[], 0.0);
    set_gauge("runtime.total_gc_runs", &[], 0.0);
}

/// What `/proc/self/status` says of the process's memory (Linux; `None` elsewhere).
struct ProcStatus {
    rss_bytes: u64,
    rss_anon_bytes: u64,
    virtual_bytes: u64,
}

impl ProcStatus {
    fn read() -> Option<ProcStatus> {
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let kib = |field: &str| {
            status.lines().find_map(|line| {
                let rest = line.strip_prefix(field)?.strip_prefix(':')?;
                rest.trim().trim_end_matches("kB").trim().parse::<u64>().ok().map(|kib| kib * 1024)
            })
        };
        Some(ProcStatus {
            rss_bytes: kib("VmRSS")?,
            rss_anon_bytes: kib("RssAnon")?,
            virtual_bytes: kib("VmSize")?,
        })
    }
}

/// client_golang's process collector, from `/proc` (Linux only; nothing elsewhere).
fn process_metrics(text: &mut String) {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else { return };
    // Fields after the command name (which may hold spaces), from field 3 (state) on.
    let Some(fields) = stat.rsplit_once(')').map(|(_, rest)| rest.split_whitespace().collect::<Vec<_>>())
    else {
        return;
    };
    let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<u64>().ok());
    let mut write_family = |name: &str, kind: &str, help: &str, value: f64| {
        let _ = writeln!(text, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {}", go_float_g(value));
    };
    if let (Some(user), Some(system)) = (field(14), field(15)) {
        write_family(
            "process_cpu_seconds_total",
            "counter",
            "Total user and system CPU time spent in seconds.",
            (user + system) as f64 / CLOCK_TICKS_PER_SECOND,
        );
    }
    if let Ok(limits) = std::fs::read_to_string("/proc/self/limits") {
        let max_fds = limits
            .lines()
            .find(|line| line.starts_with("Max open files"))
            .and_then(|line| line.split_whitespace().nth(3))
            .and_then(|soft| soft.parse::<f64>().ok());
        if let Some(max_fds) = max_fds {
            write_family("process_max_fds", "gauge", "Maximum number of open file descriptors.", max_fds);
        }
    }
    if let Ok(entries) = std::fs::read_dir("/proc/self/fd") {
        write_family("process_open_fds", "gauge", "Number of open file descriptors.", entries.count() as f64);
    }
    if let Some(memory) = ProcStatus::read() {
        write_family(
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory size in bytes.",
            memory.rss_bytes as f64,
        );
    }
    let boot_time = std::fs::read_to_string("/proc/stat").ok().and_then(|stat| {
        stat.lines().find_map(|line| line.strip_prefix("btime ")?.trim().parse::<u64>().ok())
    });
    if let (Some(boot_time), Some(start_ticks)) = (boot_time, field(22)) {
        let start = boot_time as f64 + start_ticks as f64 / CLOCK_TICKS_PER_SECOND;
        write_family(
            "process_start_time_seconds",
            "gauge",
            "Start time of the process since unix epoch in seconds.",
            start,
        );
    }
    if let Some(memory) = ProcStatus::read() {
        write_family(
            "process_virtual_memory_bytes",
            "gauge",
            "Virtual memory size in bytes.",
            memory.virtual_bytes as f64,
        );
    }
}

/// A sink's wire format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    /// go-metrics' statsd sink: `name:value|type` lines over UDP.
    Statsd,
    /// go-metrics' statsite sink: the same lines over TCP.
    Statsite,
    /// go-metrics' dogstatsd sink (datadog-go): tags instead of label parts, no host part.
    Dogstatsd,
}

/// One configured sink and its connection.
#[derive(Debug)]
struct Output {
    protocol: Protocol,
    address: String,
    udp: Option<tokio::net::UdpSocket>,
    tcp: Option<tokio::net::TcpStream>,
    /// After a failure, records are dropped until then, and the connection made anew.
    retry_at: Option<tokio::time::Instant>,
}

impl Output {
    fn new(protocol: Protocol, address: String) -> Output {
        Output { protocol, address, udp: None, tcp: None, retry_at: None }
    }

    async fn send(&mut self, batch: &VecDeque<(Arc<Series>, f32)>, settings: &Settings) {
        if self.retry_at.is_some_and(|at| tokio::time::Instant::now() < at) {
            return;
        }
        self.retry_at = None;
        let mut lines = String::new();
        for (series, value) in batch {
            line(&mut lines, self.protocol, series, *value, settings);
        }
        if let Err(error) = self.write(&lines).await {
            tracing::error!(%error, address = %self.address, "agent.telemetry: sending metrics failed; retrying in 5s");
            self.udp = None;
            self.tcp = None;
            self.retry_at = Some(tokio::time::Instant::now() + SINK_RETRY);
        }
    }

    async fn write(&mut self, lines: &str) -> std::io::Result<()> {
        use tokio::io::AsyncWriteExt;
        if self.protocol == Protocol::Statsite {
            if self.tcp.is_none() {
                self.tcp = Some(tokio::net::TcpStream::connect(&self.address).await?);
            }
            let stream = self.tcp.as_mut().expect("connected above");
            return stream.write_all(lines.as_bytes()).await;
        }
        if self.udp.is_none() {
            let target = tokio::net::lookup_host(&self.address)
                .await?
                .next()
                .ok_or_else(|| std::io::Error::other("the address resolves to nothing"))?;
            let local: std::net::SocketAddr =
                if target.is_ipv4() { ([0, 0, 0, 0], 0).into() } else { ([0u16; 8], 0).into() };
            let socket = tokio::net::UdpSocket::bind(local).await?;
            socket.connect(target).await?;
            self.udp = Some(socket);
        }
        let socket = self.udp.as_ref().expect("connected above");
        // Whole lines, at most a packet's worth each datagram.
        let mut packet = String::new();
        for line in lines.split_inclusive('\n') {
            if !packet.is_empty() && packet.len() + line.len() > SINK_PACKET_BYTES_MAX {
                socket.send(packet.as_bytes()).await?;
                packet.clear();
            }
            packet.push_str(line);
        }
        if !packet.is_empty() {
            socket.send(packet.as_bytes()).await?;
        }
        Ok(())
    }
}

/// One record as `protocol` writes it, newline included.
fn line(out: &mut String, protocol: Protocol, series: &Series, value: f32, settings: &Settings) {
    let sanitize = |text: &str| text.replace([':', ' '], "_");
    let kind = match series.kind {
        Kind::Counter => "c",
        Kind::Gauge => "g",
        Kind::Sample => "ms",
    };
    match protocol {
        Protocol::Statsd | Protocol::Statsite => {
            // Label values become name parts.
            let mut key = settings.full_name(series.kind, &series.name);
            for (_, label_value) in series.labels.iter() {
                key.push('.');
                key.push_str(label_value);
            }
            let _ = writeln!(out, "{}:{value:.6}|{kind}", sanitize(&key));
        }
        Protocol::Dogstatsd => {
            // The host name becomes the agent's host tag: spliced out of the name.
            let key = settings.full_name(Kind::Counter, &series.name);
            let value = match series.kind {
                Kind::Counter => format!("{}", value as i64),
                Kind::Gauge | Kind::Sample => format!("{}", f64::from(value)),
            };
            let tags: Vec<String> = settings
                .dogstatsd_tags
                .iter()
                .cloned()
                .chain(series.labels.iter().map(|(label, value)| match value.is_empty() {
                    true => sanitize(label),
                    false => format!("{}:{}", sanitize(label), sanitize(value)),
                }))
                .collect();
            let _ = write!(out, "{}:{value}|{kind}", sanitize(&key));
            if !tags.is_empty() {
                let _ = write!(out, "|#{}", tags.join(","));
            }
            out.push('\n');
        }
    }
}

/// Flushes the queued records to every sink each 100 ms (go-metrics' `flushInterval`).
async fn run_sinks(mut outputs: Vec<Output>) {
    let mut tick = tokio::time::interval(SINK_FLUSH_INTERVAL);
    loop {
        tick.tick().await;
        let batch = global().take_queue();
        if batch.is_empty() {
            continue;
        }
        let settings = global().settings();
        for output in &mut outputs {
            output.send(&batch, &settings).await;
        }
    }
}

// --- limits ------------------------------------------------------------------------------------

/// The in-memory view's interval (go-metrics' `NewInmemSink(10*time.Second, time.Minute)`).
const INTERVAL: Duration = Duration::from_secs(10);
const INTERVAL_NS: u64 = 10_000_000_000;
/// Intervals the in-memory view remembers: one minute of them.
const INTERVALS_KEPT: usize = 6;
/// Series held at most: a new series beyond this is not recorded (labels such as `service`
/// take values from requests; this bounds what a stream of made-up names can cost).
const SERIES_MAX: usize = 4096;
/// Locks the series are spread over, so that records of different series rarely meet.
const SHARDS: usize = 16;
/// A summary's window is this many age buckets (client_golang's default `AgeBuckets`)...
const SUMMARY_AGE_BUCKETS: usize = 5;
/// ... of 2 s each: the 10 s `MaxAge` go-metrics gives its summaries.
const SUMMARY_BUCKET_NS: u64 = 2_000_000_000;
/// Observations a summary keeps per age bucket: 5 × 128 × 4 bytes = 2.5 KiB per summary at
/// most; exact quantiles up to 64 observations a second.
const RESERVOIR_MAX: usize = 128;
/// The quantiles of summaries (go-metrics' objectives).
const QUANTILES: [f64; 3] = [0.5, 0.9, 0.99];
/// How long Prometheus keeps an idle series when `prometheus_retention_time` is not set
/// (go-metrics' `DefaultPrometheusOpts`).
pub const PROMETHEUS_RETENTION_DEFAULT: Duration = Duration::from_secs(60);
/// How often the runtime gauges are read (go-metrics' `ProfileInterval`).
const RUNTIME_POLL_INTERVAL: Duration = Duration::from_secs(1);
/// How often the servers' state gauges are refreshed (Consul's `MetricsReportingInterval`).
const USAGE_INTERVAL: Duration = Duration::from_secs(10);
/// A member back within this of failing has flapped (serf's default `FlapTimeout`).
const FLAP_TIMEOUT: Duration = Duration::from_secs(60);
/// Failed members remembered for flap detection.
const FAILED_MEMBERS_MAX: usize = 4096;
/// Records waiting for the statsd sinks (go-metrics' statsd queue).
const SINK_QUEUE_MAX: usize = 4096;
/// How often records go out to the sinks (go-metrics' `flushInterval`).
const SINK_FLUSH_INTERVAL: Duration = Duration::from_millis(100);
/// The largest statsd datagram (go-metrics' `statsdMaxLen`).
const SINK_PACKET_BYTES_MAX: usize = 1400;
/// How long a failed sink waits before connecting again (go-metrics').
const SINK_RETRY: Duration = Duration::from_secs(5);
/// How far behind the leader's log a healthy server may be (autopilot's `max_trailing_logs`).
const AUTOPILOT_TRAILING_LOGS_MAX: u64 = 250;
/// Route patterns longer than this get their label built on the heap.
const PATH_LABEL_BYTES_MAX: usize = 128;
/// Labels of a DNS name at most (a name is at most 255 bytes).
const DNS_LABELS_MAX: usize = 128;
/// Go's `%g` writes the shortest form with an exponent from this on (its `eprec` of 6).
const GO_G_EXPONENT_MAX: i32 = 6;
/// `/proc`'s clock ticks (`USER_HZ`, 100 on every Linux architecture muster runs on).
const CLOCK_TICKS_PER_SECOND: f64 = 100.0;

const _: () = assert!(INTERVAL_NS == INTERVAL.as_secs() * 1_000_000_000);
const _: () = assert!(SUMMARY_BUCKET_NS * SUMMARY_AGE_BUCKETS as u64 == INTERVAL_NS);

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_714_557_600 * 1_000_000_000; // 2024-05-01 10:00:00 UTC

    fn configured(config: TelemetryConfig, host: &str) -> Registry {
        let registry = Registry::new();
        registry.configure(Settings::new(&config, host.to_owned()));
        registry
    }

    fn prometheus_config() -> TelemetryConfig {
        TelemetryConfig { prometheus_retention_time: Duration::from_secs(60), ..TelemetryConfig::default() }
    }

    #[test]
    fn names_are_prefixed_and_gauges_carry_the_host_only_with_an_external_sink() {
        let plain = Settings::new(&TelemetryConfig::default(), "host1".into());
        assert_eq!(plain.full_name(Kind::Gauge, "runtime.alloc_bytes"), "consul.runtime.alloc_bytes");
        let with_sink = Settings::new(&prometheus_config(), "host1".into());
        assert_eq!(
            with_sink.full_name(Kind::Gauge, "runtime.alloc_bytes"),
            "consul.host1.runtime.alloc_bytes"
        );
        assert_eq!(with_sink.full_name(Kind::Counter, "raft.apply"), "consul.raft.apply");
        let disabled =
            Settings::new(&TelemetryConfig { disable_hostname: true, ..prometheus_config() }, "h".into());
        assert_eq!(disabled.full_name(Kind::Gauge, "autopilot.healthy"), "consul.autopilot.healthy");
        let unprefixed = Settings::new(
            &TelemetryConfig { metrics_prefix: String::new(), ..TelemetryConfig::default() },
            String::new(),
        );
        assert_eq!(unprefixed.full_name(Kind::Sample, "kvs.apply"), "kvs.apply");
        assert_eq!(prometheus_name("consul.raft.commitTime"), "consul_raft_commitTime");
        assert_eq!(
            prometheus_name("consul.serf.coordinate.adjustment-ms"),
            "consul_serf_coordinate_adjustment_ms"
        );
    }

    #[test]
    fn the_longest_matching_rule_decides_and_blocking_wins_a_tie() {
        let config = TelemetryConfig {
            prefix_filter: vec!["+consul.raft".into(), "-consul.raft.fsm".into(), "-consul.api".into()],
            filter_default: false,
            ..TelemetryConfig::default()
        };
        let settings = Settings::new(&config, String::new());
        assert!(settings.allows("consul.raft.apply"));
        assert!(!settings.allows("consul.raft.fsm.apply"));
        assert!(!settings.allows("consul.api.http"));
        assert!(!settings.allows("consul.kvs.apply"), "filter_default false");
        assert!(!settings.allows("consul.rpc.server.call"), "blocked by default");
        let tie = Settings::new(
            &TelemetryConfig { prefix_filter: vec!["+a".into(), "-a".into()], ..TelemetryConfig::default() },
            String::new(),
        );
        assert!(!tie.allows("a.b"));
        let registry = configured(config, "");
        registry.record(Kind::Sample, "api.http", &[("method", "GET")], 1.0, T0);
        registry.record(Kind::Counter, "raft.apply", &[], 1.0, T0);
        let text = registry.prometheus(T0);
        assert!(!text.contains("consul_api_http{method"), "{text}");
        assert!(text.contains("consul_raft_apply 1\n"), "{text}");
    }

    #[test]
    fn the_json_view_shows_the_last_finished_interval_sorted_with_go_numbers() {
        let registry = configured(TelemetryConfig::default(), "");
        registry.record(Kind::Counter, "raft.apply", &[], 1.0, T0 + 1);
        registry.record(Kind::Sample, "raft.commitTime", &[], 2.0, T0 + 2);
        registry.record(Kind::Sample, "raft.commitTime", &[], 4.0, T0 + 3);
        registry.record(Kind::Gauge, "runtime.alloc_bytes", &[], 12_000_000.0, T0 + 4);
        registry.record(Kind::Counter, "api.x", &[("b", "2"), ("a", "1")], 3.0, T0 + 5);
        // Only the running interval: shown.
        let running = registry.json(T0 + 6, false);
        assert!(running.starts_with(r#"{"Timestamp":"2024-05-01 10:00:00 +0000 UTC","Gauges":[{"Name":"consul.runtime.alloc_bytes","Value":12000000,"Labels":{}}],"PrecisionGauges":[],"Points":[],"Counters":[{"Name":"consul.api.x","Count":1,"Rate":0.3,"Sum":3,"Min":3,"Max":3,"Mean":3,"Stddev":0,"Labels":{"a":"1","b":"2"}},{"Name":"consul.raft.apply""#), "{running}");
        assert!(running.contains(r#"{"Name":"consul.raft.commitTime","Count":2,"Rate":0.6,"Sum":6,"Min":2,"Max":4,"Mean":3,"Stddev":1.4142135623730951,"Labels":{}}"#), "{running}");
        // A later interval begun: the finished one is shown.
        registry.record(Kind::Counter, "raft.apply", &[], 1.0, T0 + INTERVAL_NS);
        let finished = registry.json(T0 + INTERVAL_NS + 1, false);
        assert!(finished.contains("10:00:00 +0000 UTC"), "{finished}");
        assert!(finished.contains(r#""Count":2,"Rate":0.6"#), "{finished}");
        let pretty = registry.json(T0 + INTERVAL_NS + 1, true);
        assert!(
            pretty.starts_with(
                "{\n    \"Timestamp\": \"2024-05-01 10:00:00 +0000 UTC\",\n    \"Gauges\": [\n        {\n"
            ),
            "{pretty}"
        );
        assert!(pretty.contains("\"Points\": [],\n") && pretty.ends_with("}\n"), "{pretty}");
        // Two intervals on, the previous one is shown: nothing recorded in it.
        let later = registry.json(T0 + 2 * INTERVAL_NS, false);
        assert!(later.contains(r#""Counters":[{"Name":"consul.raft.apply","Count":1,"Rate":0.1"#), "{later}");
    }

    #[test]
    fn go_formats_floats_as_these_say() {
        assert_eq!(go_float_g(1.0), "1");
        assert_eq!(go_float_g(0.5), "0.5");
        assert_eq!(go_float_g(123_456.0), "123456");
        assert_eq!(go_float_g(1_234_567.0), "1.234567e+06");
        assert_eq!(go_float_g(12_000_000.0), "1.2e+07");
        assert_eq!(go_float_g(0.0001), "0.0001");
        assert_eq!(go_float_g(0.00001), "1e-05");
        assert_eq!(go_float_g(-2.5), "-2.5");
        assert_eq!(go_float_g(f64::NAN), "NaN");
        assert_eq!(go_float_g(f64::INFINITY), "+Inf");
        assert_eq!(json_f64(3.0), "3");
        assert_eq!(json_f64(0.3), "0.3");
        assert_eq!(json_f64(1e21), "1e+21");
        assert_eq!(json_f64(1e20), "100000000000000000000");
        assert_eq!(json_f64(1e-7), "1e-7");
        assert_eq!(json_f64(0.0), "0");
        assert_eq!(json_f32(0.1), "0.1");
        assert_eq!(json_f32(1.2e7), "12000000");
        let mut escaped = String::new();
        go_json_string(&mut escaped, "a<b>&\"\n\u{2028}");
        assert_eq!(escaped, r#""a\u003cb\u003e\u0026\"\n\u2028""#);
        assert_eq!(go_utc(1_714_557_610), "2024-05-01 10:00:10 +0000 UTC");
    }

    #[test]
    fn prometheus_has_types_help_summaries_and_declared_metrics() {
        let registry = configured(TelemetryConfig { disable_hostname: true, ..prometheus_config() }, "host1");
        for value in [2.0, 3.0, 4.0] {
            registry.record(Kind::Sample, "raft.commitTime", &[], value, T0);
        }
        registry.record(Kind::Sample, "api.http", &[("method", "GET"), ("path", "v1_kv_")], 1.5, T0);
        registry.record(Kind::Counter, "serf.member.join", &[("network", "lan")], 1.0, T0);
        let text = registry.prometheus(T0 + 1);
        assert!(text.contains("# TYPE consul_raft_commitTime summary\n"), "{text}");
        assert!(text.contains(
            "consul_raft_commitTime{quantile=\"0.5\"} 3\nconsul_raft_commitTime{quantile=\"0.9\"} 4\nconsul_raft_commitTime{quantile=\"0.99\"} 4\nconsul_raft_commitTime_sum 9\nconsul_raft_commitTime_count 3\n"
        ), "{text}");
        // Declared, labeled series beside the declared unlabeled one.
        assert!(text.contains("consul_api_http{quantile=\"0.5\"} NaN\n"), "{text}");
        assert!(
            text.contains("consul_api_http{method=\"GET\",path=\"v1_kv_\",quantile=\"0.99\"} 1.5\n"),
            "{text}"
        );
        assert!(text.contains("# HELP consul_raft_apply Entries proposed to Raft.\n# TYPE consul_raft_apply counter\nconsul_raft_apply 0\n"), "{text}");
        // Undeclared: its name is its help.
        assert!(text.contains("# HELP consul_serf_member_join consul_serf_member_join\n# TYPE consul_serf_member_join counter\nconsul_serf_member_join{network=\"lan\"} 1\n"), "{text}");
        // Quantiles slide out of the window; sum and count stay; undeclared series expire.
        let later = registry.prometheus(T0 + 11 * 1_000_000_000);
        assert!(later.contains("consul_raft_commitTime{quantile=\"0.5\"} NaN\n"), "{later}");
        assert!(later.contains("consul_raft_commitTime_count 3\n"), "{later}");
        let expired = registry.prometheus(T0 + 61 * 1_000_000_000);
        assert!(!expired.contains("consul_serf_member_join{"), "{expired}");
        assert!(expired.contains("consul_raft_commitTime_count 3\n"), "declared: never expired");
    }

    #[test]
    fn a_declared_gauge_with_the_host_name_shows_both_names() {
        let registry = configured(prometheus_config(), "host1");
        registry.record(Kind::Gauge, "autopilot.healthy", &[], 1.0, T0);
        let text = registry.prometheus(T0);
        assert!(text.contains("consul_autopilot_healthy 0\n"), "{text}");
        assert!(
            text.contains("# TYPE consul_host1_autopilot_healthy gauge\nconsul_host1_autopilot_healthy 1\n"),
            "{text}"
        );
    }

    #[test]
    fn quantiles_come_from_the_last_ten_seconds_and_stay_bounded() {
        let mut window = Window::new(7);
        for value in 1..=1000 {
            window.observe(value as f32, T0 + value * 1_000_000);
        }
        assert!(window.buckets.iter().all(|bucket| bucket.values.len() <= RESERVOIR_MAX));
        let [median, p90, p99] = window.quantiles(T0 + 1_000_000_000);
        assert!((400.0..600.0).contains(&median), "{median}");
        assert!((850.0..950.0).contains(&p90), "{p90}");
        assert!(p99 >= 950.0, "{p99}");
        assert!(window.quantiles(T0 + 12 * 1_000_000_000)[0].is_nan());
    }

    #[test]
    fn the_telemetry_block_parses_with_consuls_errors_and_warnings() {
        let parsed = parse_config(&serde_json::json!({
            "metrics_prefix": "muster",
            "disable_hostname": true,
            "prometheus_retention_time": "30s",
            "prefix_filter": ["+muster.raft", "", "nix"],
            "statsd_address": "127.0.0.1:8125",
            "dogstatsd_addr": "",
            "dogstatsd_tags": ["env:prod"],
            "circonus_api_token": "ignored here"
        }))
        .unwrap();
        assert_eq!(parsed.config.metrics_prefix, "muster");
        assert_eq!(parsed.config.prometheus_retention_time, Duration::from_secs(30));
        assert_eq!(parsed.config.statsd_address.as_deref(), Some("127.0.0.1:8125"));
        assert_eq!(parsed.config.dogstatsd_addr, None);
        assert_eq!(
            parsed.warnings,
            [
                "Cannot have empty filter rule in prefix_filter",
                "Filter rule must begin with either '+' or '-': \"nix\""
            ]
        );
        assert_eq!(parse_config(&Value::Null).unwrap().config, TelemetryConfig::default());
        let errors = parse_config(&serde_json::json!({
            "disable_hostname": "yes",
            "prometheus_retention_time": "60",
            "prefix_filter": "+consul",
            "dogstatsd_tags": [1],
        }))
        .unwrap_err();
        assert_eq!(
            errors,
            [
                "'telemetry.disable_hostname' expected type 'bool', got unconvertible type 'string', value: 'yes'",
                "prometheus_retention_time: invalid duration: \"60\": time: missing unit in duration \"60\"",
                "'telemetry.prefix_filter': source data must be an array or slice, got string",
                "'telemetry.dogstatsd_tags[0]' expected type 'string', got unconvertible type 'float64', value: '1'",
            ]
        );
    }

    #[test]
    fn sinks_write_go_metrics_lines() {
        let config = TelemetryConfig { dogstatsd_tags: vec!["env:prod".into()], ..prometheus_config() };
        let settings = Settings::new(&config, "host1".into());
        let counter = Series::new(Kind::Counter, "serf.member.join", &[("network", "lan")], T0);
        let gauge = Series::new(Kind::Gauge, "runtime.alloc_bytes", &[], T0);
        let timer = Series::new(Kind::Sample, "raft.commitTime", &[], T0);
        let mut out = String::new();
        line(&mut out, Protocol::Statsd, &counter, 1.0, &settings);
        line(&mut out, Protocol::Statsd, &gauge, 1024.0, &settings);
        line(&mut out, Protocol::Statsd, &timer, 0.25, &settings);
        assert_eq!(
            out,
            "consul.serf.member.join.lan:1.000000|c\nconsul.host1.runtime.alloc_bytes:1024.000000|g\nconsul.raft.commitTime:0.250000|ms\n"
        );
        out.clear();
        line(&mut out, Protocol::Dogstatsd, &counter, 1.0, &settings);
        line(&mut out, Protocol::Dogstatsd, &gauge, 0.1, &settings);
        assert_eq!(out, "consul.serf.member.join:1|c|#env:prod,network:lan\nconsul.runtime.alloc_bytes:0.10000000149011612|g|#env:prod\n");
    }

    #[tokio::test]
    async fn statsd_datagrams_hold_whole_lines_and_statsite_streams_them() {
        let settings = Settings::new(&TelemetryConfig::default(), String::new());
        let series = Arc::new(Series::new(Kind::Counter, "rpc.query", &[], T0));
        let batch: VecDeque<_> = (0..100).map(|_| (series.clone(), 1.0)).collect();
        let receiver = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let mut statsd = Output::new(Protocol::Statsd, receiver.local_addr().unwrap().to_string());
        statsd.send(&batch, &settings).await;
        let (mut lines, mut buf) = (0, [0u8; 2048]);
        while lines < 100 {
            let len = receiver.recv(&mut buf).await.unwrap();
            assert!(len <= SINK_PACKET_BYTES_MAX, "{len}");
            let text = std::str::from_utf8(&buf[..len]).unwrap();
            assert!(text.lines().all(|line| line == "consul.rpc.query:1.000000|c"), "{text}");
            lines += text.lines().count();
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut statsite = Output::new(Protocol::Statsite, listener.local_addr().unwrap().to_string());
        let (sent, accepted) = tokio::join!(statsite.send(&batch, &settings), listener.accept());
        let ((), (mut stream, _)) = (sent, accepted.unwrap());
        drop(statsite);
        let mut text = String::new();
        tokio::io::AsyncReadExt::read_to_string(&mut stream, &mut text).await.unwrap();
        assert_eq!(text.lines().count(), 100);
    }

    #[test]
    fn routes_become_consuls_path_labels() {
        let label = |matched: &str| with_path_label(matched, str::to_owned);
        assert_eq!(label("/v1/kv/{*key}"), "v1_kv_");
        assert_eq!(label("/v1/kv"), "v1_kv_");
        assert_eq!(label("/v1/agent/self"), "v1_agent_self");
        assert_eq!(label("/v1/catalog/service/{name}"), "v1_catalog_service_");
        assert_eq!(label("/v1/session/destroy/{id}"), "v1_session_destroy_");
        assert!(
            reads_state("/v1/kv/a")
                && reads_state("/v1/health/service/web")
                && !reads_state("/v1/catalog/datacenters")
        );
        assert!(
            blocking_index(Some("wait=1s&index=12"))
                && !blocking_index(Some("index=0"))
                && !blocking_index(None)
        );
        assert!(prometheus_requested(None, Some("text/plain; version=0.4.0")));
        assert!(prometheus_requested(
            None,
            Some("application/json, application/openmetrics-text; version=1.0.0")
        ));
        assert!(
            !prometheus_requested(None, Some("text/plain")) && prometheus_requested(Some("prometheus"), None)
        );
    }

    #[test]
    fn dns_questions_are_timed_by_zone() {
        let query = |name: &str| muster_core::dns::address_query(name, 7).unwrap();
        assert_eq!(dns_metric(&query("web.service.consul"), "consul", ""), Some("dns.domain_query"));
        assert_eq!(dns_metric(&query("WEB.service.Consul"), "consul", ""), Some("dns.domain_query"));
        assert_eq!(dns_metric(&query("web.service.example"), "consul", "example"), Some("dns.domain_query"));
        assert_eq!(dns_metric(&query("1.0.0.127.in-addr.arpa"), "consul", ""), Some("dns.ptr_query"));
        assert_eq!(dns_metric(&query("example.com"), "consul", ""), None);
        assert_eq!(dns_metric(&[0; 5], "consul", ""), None);
    }

    #[test]
    fn serf_flaps_are_joins_soon_after_failures() {
        use muster_core::swim::{MemberEvent, MemberEventKind};
        use muster_core::wire::NodeAddr;
        let registry = configured(TelemetryConfig::default(), "");
        let member = |kind| {
            muster_core::gossip::Event::Member(MemberEvent {
                kind,
                node: NodeAddr { name: "n2".into(), addr: "10.0.0.2:8301".parse().unwrap() },
                incarnation: 1,
            })
        };
        registry.serf_event("agent.server.serf.wan", &member(MemberEventKind::Failed), T0);
        registry.serf_event("agent.server.serf.wan", &member(MemberEventKind::Join), T0 + 1_000_000_000);
        registry.serf_event("agent.server.serf.lan", &member(MemberEventKind::Failed), T0);
        registry.serf_event("agent.server.serf.lan", &member(MemberEventKind::Join), T0 + 61_000_000_000);
        let text = registry.prometheus(T0 + 61_000_000_000);
        assert!(text.contains("consul_serf_member_flap{network=\"wan\"} 1\n"), "{text}");
        assert!(!text.contains("consul_serf_member_flap{network=\"lan\"}"), "{text}");
    }

    /// Cost of one counter increment and one labeled timer on an existing series (run with
    /// `cargo test -p muster --release --lib telemetry::tests::record_cost -- --ignored --nocapture`).
    #[test]
    #[ignore = "a measurement, not a check"]
    fn record_cost() {
        const ROUNDS: u32 = 1_000_000;
        let started = Instant::now();
        for _ in 0..ROUNDS {
            incr_counter("rpc.query", &[], 1.0);
        }
        println!("incr_counter: {:?} each", started.elapsed() / ROUNDS);
        let started = Instant::now();
        for _ in 0..ROUNDS {
            add_sample("api.http", &[("method", "GET"), ("path", "v1_kv_")], 0.2);
        }
        println!("add_sample with two labels: {:?} each", started.elapsed() / ROUNDS);
    }
}
