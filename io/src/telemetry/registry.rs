//! The process-wide registry: the sharded series map, each series' state per interval, the
//! settings that name and filter series, and gossip flap detection.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, Hash, Hasher, RandomState};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::config::TelemetryConfig;
use super::metrics::{metric_named, Kind, Metric, METRICS};
use super::window::Window;
use super::{
    Label, FAILED_MEMBERS_MAX, FLAP_TIMEOUT, INTERVALS_KEPT, INTERVAL_NS, PROMETHEUS_RETENTION_DEFAULT,
    SERIES_MAX, SHARDS, SINK_QUEUE_MAX,
};

/// Every series, and what the views need besides.
#[derive(Debug)]
pub(super) struct Registry {
    /// Series by the hash of (kind, name, labels); a chain for hashes that collide.
    shards: Vec<RwLock<HashMap<u64, Vec<Arc<Series>>>>>,
    /// Series held (bounded by [`SERIES_MAX`]).
    pub(super) count: AtomicUsize,
    /// Records dropped for want of room for a new series.
    dropped: AtomicU64,
    pub(super) settings: RwLock<Arc<Settings>>,
    /// Bumped whenever the settings change: series re-evaluate their filter.
    generation: AtomicU64,
    /// The intervals begun (their start, in intervals since the epoch), oldest first.
    pub(super) intervals: Mutex<VecDeque<u64>>,
    /// The last of them.
    current: AtomicU64,
    /// Records waiting for the statsd, statsite and dogstatsd sinks.
    queue: Mutex<VecDeque<(Arc<Series>, f32)>>,
    /// Whether any of those sinks runs.
    pub(super) sink_on: AtomicBool,
    /// Blocking queries in flight.
    pub(super) blocking: AtomicU64,
    /// When members were last declared failed, by (network, name): a join soon after is a flap.
    pub(super) failed: Mutex<HashMap<(&'static str, String), u64>>,
}

impl Registry {
    pub(super) fn new() -> Registry {
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

    pub(super) fn configure(&self, settings: Settings) {
        *write(&self.settings) = Arc::new(settings);
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    pub(super) fn settings(&self) -> Arc<Settings> {
        read(&self.settings).clone()
    }

    /// One record: the series found (or made), filtered, updated, and queued for the sinks.
    pub(super) fn record(&self, kind: Kind, name: &str, labels: &[Label<'_>], value: f32, now: u64) {
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
    pub(super) fn begin_interval(&self, interval: u64) {
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
    pub(super) fn all(&self) -> Vec<Arc<Series>> {
        let mut all = Vec::with_capacity(self.count.load(Ordering::Relaxed));
        for shard in &self.shards {
            all.extend(read(shard).values().flatten().cloned());
        }
        all
    }

    /// Forgets series nobody updated within the retention time nor the in-memory view's
    /// minute; declared ones stay.
    pub(super) fn sweep(&self, now: u64) {
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
}

impl Registry {
    pub(super) fn serf_event(&self, module: &str, event: &muster_core::gossip::Event, now: u64) {
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

    pub(super) fn take_queue(&self) -> VecDeque<(Arc<Series>, f32)> {
        std::mem::take(&mut *lock(&self.queue))
    }
}

/// How names are formed and filtered, from the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Settings {
    prefix: String,
    /// Inserted into gauge names after the prefix.
    host: Option<String>,
    pub(super) filter_default: bool,
    pub(super) allowed: Vec<String>,
    blocked: Vec<String>,
    pub(super) retention: Duration,
    pub(super) dogstatsd_tags: Vec<String>,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings::new(&TelemetryConfig::default(), String::new())
    }
}

impl Settings {
    pub(super) fn new(config: &TelemetryConfig, host_name: String) -> Settings {
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
    pub(super) fn full_name(&self, kind: Kind, name: &str) -> String {
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
pub(super) struct Series {
    pub(super) kind: Kind,
    pub(super) name: Box<str>,
    pub(super) labels: Box<[(&'static str, Box<str>)]>,
    /// Its entry in [`METRICS`].
    pub(super) metric: Option<&'static Metric>,
    /// Declared and unlabeled: shown from the start, never dropped.
    pub(super) pinned: bool,
    /// The filter's decision (bit 0) and the settings generation it was made for (the rest).
    pub(super) filter: AtomicU64,
    pub(super) state: Mutex<State>,
}

impl Series {
    pub(super) fn new(kind: Kind, name: &str, labels: &[Label<'_>], now: u64) -> Series {
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
    pub(super) fn allowed(&self, registry: &Registry) -> bool {
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
pub(super) struct State {
    /// When it was last recorded (or made), nanoseconds since the epoch.
    pub(super) updated: u64,
    /// Whether anything was recorded.
    pub(super) recorded: bool,
    /// Its two latest intervals with records: the view shows one of them.
    latest: Slot,
    previous: Slot,
    /// The gauge's value.
    pub(super) gauge: f32,
    /// The counter's total, or the sample's sum, since the series was made.
    pub(super) total: f64,
    /// The sample's observations since the series was made.
    pub(super) count: u64,
    /// The sample's recent observations, for quantiles.
    pub(super) window: Option<Box<Window>>,
}

impl State {
    pub(super) fn new(kind: Kind, now: u64) -> State {
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

    pub(super) fn record(&mut self, kind: Kind, value: f32, now: u64) {
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
    pub(super) fn slot(&self, interval: u64) -> Option<Slot> {
        [self.latest, self.previous].into_iter().find(|slot| slot.interval == interval && slot.count > 0)
    }
}

/// A series' aggregate over one interval (go-metrics' `AggregateSample`, and a gauge's value).
#[derive(Debug, Clone, Copy)]
pub(super) struct Slot {
    pub(super) interval: u64,
    pub(super) count: u64,
    pub(super) sum: f64,
    sum_sq: f64,
    pub(super) min: f64,
    pub(super) max: f64,
    pub(super) gauge: f32,
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

    pub(super) fn mean(&self) -> f64 {
        if self.count == 0 {
            return 0.0;
        }
        self.sum / self.count as f64
    }

    /// go-metrics' sample standard deviation.
    pub(super) fn stddev(&self) -> f64 {
        let count = self.count as f64;
        let divisor = count * (count - 1.0);
        if divisor == 0.0 {
            return 0.0;
        }
        ((count * self.sum_sq - self.sum * self.sum) / divisor).sqrt()
    }
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

pub(super) fn now_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |since| since.as_nanos() as u64)
}

/// Milliseconds since `start`, as go-metrics computes a timer (`float32(ns) / float32(1ms)`).
pub(super) fn elapsed_ms(start: Instant) -> f32 {
    start.elapsed().as_nanos() as f32 / 1_000_000.0
}

pub(super) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while recording leaves at worst one aggregate half-updated: still usable.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

pub(super) fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

pub(super) fn write<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(PoisonError::into_inner)
}

/// The process's registry.
pub(super) fn global() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(Registry::new)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::render::prometheus_name;
    use crate::telemetry::tests::{configured, prometheus_config, T0};

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
}
