//! The question of Consul's Global Scale Benchmark (5 servers, 10,000 nodes, 172,000 service
//! instances, "changes seen everywhere in under a second"), asked of the servers the binary
//! runs: a catalog of `nodes` × `services_per_node` instances is registered through the leader,
//! as the catalog API does; blocking queries then wait on every server for the services'
//! instances, as consul-template and sidecars do; and each change (one more instance) is timed
//! from the write's start until the last watcher on every server has seen it.
//!
//! The watchers read with `?stale`, each from its own server's state, so what is timed is
//! replication, apply and wake-up on all five, not a forward to the leader. Time is madsim's:
//! network latency (1–5 ms a message) and fsync delays are simulated; computation takes no
//! simulated time, so the figure is the protocol's, and the run's wall-clock time says what the
//! state costs to build and serve on this machine.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use muster::consensus::{Consensus, Consistency};
use muster_core::fsm::{Command, Fsm, Node, Register, Service, WatchTarget};

use super::{Cluster, ServersConfig};

/// How a scale run is set up.
#[derive(Debug, Clone)]
pub struct ScaleConfig {
    /// Servers (voters).
    pub servers: usize,
    /// Nodes registered.
    pub nodes: usize,
    /// Service instances on each node, one of each service name.
    pub services_per_node: usize,
    /// Registrations in flight at once (the load generator's connections).
    pub writers: usize,
    /// Blocking queries waiting on each server.
    pub watchers_per_server: usize,
    /// Changes timed once the catalog is loaded.
    pub changes: usize,
}

impl ScaleConfig {
    /// Five servers, `nodes` nodes with ten instances each, as in the benchmark's shape.
    pub fn new(nodes: usize) -> ScaleConfig {
        ScaleConfig {
            servers: 5,
            nodes,
            services_per_node: 10,
            writers: 64,
            watchers_per_server: 100,
            changes: 20,
        }
    }
}

/// What a scale run measured.
#[derive(Debug, Clone)]
pub struct ScaleReport {
    /// Service instances in the catalog once loaded.
    pub instances: usize,
    /// Simulated time the registrations took.
    pub loaded_in: Duration,
    /// For each change, from its write's start until every watcher of its service, on every
    /// server, had seen it; sorted.
    pub seen_everywhere: Vec<Duration>,
    /// Watchers woken by the changes, in all.
    pub wakes: usize,
}

impl ScaleReport {
    /// The `q`-quantile of [`ScaleReport::seen_everywhere`].
    pub fn seen_quantile(&self, q: f64) -> Duration {
        let last = self.seen_everywhere.len().saturating_sub(1);
        self.seen_everywhere.get((last as f64 * q).round() as usize).copied().unwrap_or_default()
    }
}

/// Why a scale run failed.
#[derive(Debug, thiserror::Error)]
pub enum ScaleError {
    /// The calm cluster elected no leader.
    #[error("no leader in a calm cluster")]
    NoLeader,
    /// A registration or change was not acknowledged.
    #[error("write {what}: {reason}")]
    Write {
        /// Which.
        what: String,
        /// Why.
        reason: String,
    },
    /// Some watcher had not seen a change by the limit.
    #[error("change {change} was not seen by every watcher within {SEEN_LIMIT:?} ({seen} of {watchers})")]
    NotSeen {
        /// Which change.
        change: usize,
        /// Watchers that saw it.
        seen: usize,
        /// Watchers of its service.
        watchers: usize,
    },
}

/// A change not seen everywhere by then fails the run.
const SEEN_LIMIT: Duration = Duration::from_secs(5);

/// How long a watcher's blocking query waits before it asks again (Consul's default).
const WATCH_WAIT: Duration = Duration::from_secs(300);

/// Between two changes: long enough for the previous one to settle.
const CHANGE_GAP: Duration = Duration::from_millis(200);

/// What the watchers saw: per watcher (server, service), the index and time of each wake.
type Sightings = Arc<Mutex<BTreeMap<(usize, usize), Vec<(u64, madsim::time::Instant)>>>>;

/// Runs one seed of the scale scenario.
pub fn simulate_catalog_scale(seed: u64, config: ScaleConfig) -> Result<ScaleReport, ScaleError> {
    let mut madsim_config = madsim::Config::default();
    madsim_config.net.send_latency = Duration::from_millis(1)..Duration::from_millis(5);
    madsim::runtime::Runtime::with_seed_and_config(seed, madsim_config).block_on(run(config))
}

async fn run(config: ScaleConfig) -> Result<ScaleReport, ScaleError> {
    let servers = ServersConfig {
        clients: 0,
        faults: false,
        snapshot_threshold: muster_core::raft::Config::new(1, [1], 1).snapshot_threshold,
        ..ServersConfig::new(config.servers)
    };
    let cluster = Cluster::start(&servers);
    let leader = cluster.wait_for_leader().await.ok_or(ScaleError::NoLeader)?;
    let leader = cluster.facades.get(leader).ok_or(ScaleError::NoLeader)?;

    let started = madsim::time::Instant::now();
    load(&leader, &config).await?;
    let loaded_in = started.elapsed();

    let sightings = Sightings::default();
    let watchers = start_watchers(&cluster, &config, &sightings).await;
    let mut seen_everywhere = Vec::with_capacity(config.changes);
    for change in 0..config.changes {
        madsim::time::sleep(CHANGE_GAP).await;
        seen_everywhere.push(time_change(&leader, &config, change, &sightings).await?);
    }
    for watcher in watchers {
        watcher.abort();
    }
    seen_everywhere.sort_unstable();
    let wakes = sightings.lock().unwrap().values().map(|seen| seen.len().saturating_sub(1)).sum();
    Ok(ScaleReport { instances: config.nodes * config.services_per_node, loaded_in, seen_everywhere, wakes })
}

/// Registers every instance through the leader, `writers` at a time.
async fn load(leader: &Arc<Consensus>, config: &ScaleConfig) -> Result<(), ScaleError> {
    let total = config.nodes * config.services_per_node;
    let writers: Vec<_> = (0..config.writers)
        .map(|writer| {
            let (leader, config) = (leader.clone(), config.clone());
            madsim::task::spawn(async move {
                for instance in (writer..total).step_by(config.writers) {
                    let (node, service) =
                        (instance / config.services_per_node, instance % config.services_per_node);
                    let command = registration(
                        node,
                        &service_name(service),
                        &format!("{}-{node}", service_name(service)),
                    );
                    write(&leader, &command, &format!("instance {instance}")).await?;
                }
                Ok(())
            })
        })
        .collect();
    for writer in writers {
        writer.await.expect("a writer ends on its own")?;
    }
    Ok(())
}

/// Starts the blocking queries: on every server, watchers spread over the service names, each
/// first reading the current index, then waiting past it again and again.
async fn start_watchers(
    cluster: &Cluster,
    config: &ScaleConfig,
    sightings: &Sightings,
) -> Vec<madsim::task::JoinHandle<()>> {
    let mut watchers = Vec::new();
    for server in 0..config.servers {
        let facade = cluster.facades.get(server).expect("a calm cluster's servers all run");
        for watcher in 0..config.watchers_per_server {
            let service = watcher % config.services_per_node;
            let (facade, sightings) = (facade.clone(), sightings.clone());
            let key = (server * config.watchers_per_server + watcher, service);
            watchers.push(madsim::task::spawn(watch(facade, service, key, sightings)));
        }
    }
    // Every watcher has read once and waits.
    while sightings.lock().unwrap().len() < watchers.len() {
        madsim::time::sleep(Duration::from_millis(1)).await;
    }
    watchers
}

/// One watcher: a blocking query on a service's instances, from its server's own state.
async fn watch(facade: Arc<Consensus>, service: usize, key: (usize, usize), sightings: Sightings) {
    let name = service_name(service);
    let mut index = 0;
    loop {
        let targets = || vec![WatchTarget::Service(name.clone())];
        let read = |fsm: &Fsm| (fsm.catalog().service_index(&name), ());
        let Ok((seen, ())) = facade.read(Consistency::Stale, Some((index, WATCH_WAIT)), targets, read).await
        else {
            return;
        };
        if seen > index || index == 0 {
            sightings.lock().unwrap().entry(key).or_default().push((seen, madsim::time::Instant::now()));
        }
        index = seen;
    }
}

/// Adds one instance of a watched service and returns how long until its every watcher, on
/// every server, had seen it.
async fn time_change(
    leader: &Arc<Consensus>,
    config: &ScaleConfig,
    change: usize,
    sightings: &Sightings,
) -> Result<Duration, ScaleError> {
    let service = change % config.services_per_node;
    let name = service_name(service);
    let started = madsim::time::Instant::now();
    let command = registration(config.nodes + change, &name, &format!("{name}-change-{change}"));
    write(leader, &command, &format!("change {change}")).await?;
    let index = leader.store.read(|fsm| fsm.catalog().service_index(&name));
    let deadline = started + SEEN_LIMIT;
    loop {
        let (seen, watchers, last) = seen_by(sightings, service, index);
        if seen == watchers {
            return Ok(last.map_or(Duration::ZERO, |at| at.duration_since(started)));
        }
        if madsim::time::Instant::now() >= deadline {
            return Err(ScaleError::NotSeen { change, seen, watchers });
        }
        madsim::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Of the watchers of `service`: how many have seen `index` or later, how many there are, and
/// when the last of those that saw it first did.
fn seen_by(
    sightings: &Sightings,
    service: usize,
    index: u64,
) -> (usize, usize, Option<madsim::time::Instant>) {
    let sightings = sightings.lock().unwrap();
    let mut seen = 0;
    let mut watchers = 0;
    let mut last = None;
    for (_, wakes) in sightings.iter().filter(|((_, watched), _)| *watched == service) {
        watchers += 1;
        if let Some(&(_, at)) = wakes.iter().find(|(woken_at, _)| *woken_at >= index) {
            seen += 1;
            last = last.max(Some(at));
        }
    }
    (seen, watchers, last)
}

async fn write(leader: &Arc<Consensus>, command: &Command, what: &str) -> Result<(), ScaleError> {
    leader
        .write(command)
        .await
        .map(drop)
        .map_err(|error| ScaleError::Write { what: what.to_owned(), reason: error.to_string() })
}

/// Node `node` (its row as the catalog API writes it) with one instance of `service`.
fn registration(node: usize, service: &str, id: &str) -> Command {
    let name = format!("node-{node}");
    let address = format!("10.{}.{}.{}", (node >> 16) & 0xff, (node >> 8) & 0xff, node & 0xff);
    Command::Register(Box::new(Register {
        node: Node { node: name, address: address.clone(), datacenter: "dc1".into(), ..Node::default() },
        skip_node_update: false,
        service: Some(Service {
            id: id.to_owned(),
            service: service.to_owned(),
            address,
            port: 8080,
            ..Service::default()
        }),
        checks: Vec::new(),
    }))
}

fn service_name(service: usize) -> String {
    format!("web-{service}")
}
