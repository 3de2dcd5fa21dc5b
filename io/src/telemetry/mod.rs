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

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use self::process::{process_metrics, run_runtime_gauges};
use self::registry::{elapsed_ms, global, now_ns, Settings};
use self::sinks::{run_sinks, Output, Protocol};

mod config;
mod http;
mod metrics;
mod process;
mod registry;
mod render;
mod sinks;
mod usage;
mod window;

pub use self::config::{parse_config, ParsedTelemetry, TelemetryConfig};
pub use self::http::{answering_rpc, count_read, HttpTiming, ReadInFlight};
pub use self::metrics::{Kind, Metric, METRICS};
pub use self::usage::{refresh_server_gauges, run_usage_metrics};

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
    use super::registry::Registry;
    use super::*;

    pub(super) const T0: u64 = 1_714_557_600 * 1_000_000_000; // 2024-05-01 10:00:00 UTC

    pub(super) fn configured(config: TelemetryConfig, host: &str) -> Registry {
        let registry = Registry::new();
        registry.configure(Settings::new(&config, host.to_owned()));
        registry
    }

    pub(super) fn prometheus_config() -> TelemetryConfig {
        TelemetryConfig { prometheus_retention_time: Duration::from_secs(60), ..TelemetryConfig::default() }
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
