//! The madsim tier: nodes running the agent's own async drive loop over madsim's simulated UDP,
//! TCP, clock and scheduler. Compiled only with `--cfg madsim` (`cargo simtest`).
//!
//! Each simulated host binds real-looking sockets at 10.0.0.x:8301 and runs
//! [`muster::drive::run`], the exact loop the `muster` binary runs, with a [`SimDisk`] for
//! storage. madsim decides every latency, loss, wake-up order and random draw from its seed.
//!
//! Observation goes through the events each node reports: the world keeps every node's view of
//! its peers, folds every event into a [`Trace`], and checks an oracle on each event: an
//! incarnation a peer reports hearing must already be durable on its owner's disk.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use madsim::net::NetSim;
use madsim::rand::Rng as _;
use madsim::runtime::{Handle, NodeHandle, Runtime};
use muster::drive::{self, CommandRequest, Sockets, Storage};
use muster_core::gossip::{Command, Config, Event, StableState};
use muster_core::swim::State;
use muster_core::{Gossip, Instant};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::{mpsc, oneshot};

use crate::harness::Stuck;
use crate::trace::Trace;

/// How a world is set up.
#[derive(Debug, Clone)]
pub struct WorldConfig {
    /// Number of hosts.
    pub size: usize,
    /// One-way network latency range.
    pub latency: Range<Duration>,
    /// Probability that madsim drops a datagram.
    pub loss: f64,
    /// How long a write takes to become durable.
    pub fsync: Range<Duration>,
}

impl Default for WorldConfig {
    fn default() -> WorldConfig {
        WorldConfig {
            size: 3,
            latency: Duration::from_millis(1)..Duration::from_millis(10),
            loss: 0.0,
            fsync: Duration::from_millis(1)..Duration::from_millis(20),
        }
    }
}

/// Runs `scenario` in a fresh madsim runtime seeded with `seed` and returns the run's trace.
pub fn simulate<F, Fut>(seed: u64, config: WorldConfig, scenario: F) -> Trace
where
    F: FnOnce(World) -> Fut,
    Fut: Future<Output = World>,
{
    let mut madsim_config = madsim::Config::default();
    madsim_config.net.packet_loss_rate = config.loss;
    madsim_config.net.send_latency = config.latency.clone();
    let runtime = Runtime::with_seed_and_config(seed, madsim_config);
    runtime.block_on(async move {
        let world = World::start(config);
        let world = scenario(world).await;
        world.finish()
    })
}

/// A running simulated cluster, seen from the test's supervisor task.
pub struct World {
    handle: Handle,
    hosts: Vec<NodeHandle>,
    shared: Arc<Shared>,
    clogged_links: BTreeSet<(usize, usize)>,
    clogged_hosts: BTreeSet<usize>,
    /// Hosts not killed (or restarted since): the ones that should be up.
    up: Vec<bool>,
}

/// State shared between the supervisor and the simulated hosts: what survives a kill.
struct Shared {
    origin: std::time::Instant,
    /// Durable state per host; writes still in flight when a host is killed never land here.
    disks: Mutex<Vec<Option<StableState>>>,
    /// Each host's current life's view of its peers by name: a copy of its member table.
    views: Mutex<Vec<BTreeMap<String, (State, u64)>>>,
    /// Each host's boot epoch in its current life (0 while down).
    epochs: Mutex<Vec<u32>>,
    trace: Mutex<Trace>,
}

impl World {
    fn start(config: WorldConfig) -> World {
        let handle = Handle::current();
        let shared = Arc::new(Shared {
            origin: std::time::Instant::now(),
            disks: Mutex::new(vec![None; config.size]),
            views: Mutex::new(vec![BTreeMap::new(); config.size]),
            epochs: Mutex::new(vec![0; config.size]),
            trace: Mutex::new(Trace::default()),
        });
        let hosts = (0..config.size)
            .map(|index| {
                let shared = shared.clone();
                let fsync = config.fsync.clone();
                // A star: every host joins host 0.
                let joins = if index == 0 { vec![] } else { vec![addr(0)] };
                handle
                    .create_node()
                    .name(format!("n{index}"))
                    .ip(addr(index).ip())
                    .init(move || host_main(index, shared.clone(), fsync.clone(), joins.clone()))
                    .build()
            })
            .collect();
        let up = vec![true; config.size];
        World { handle, hosts, shared, clogged_links: BTreeSet::new(), clogged_hosts: BTreeSet::new(), up }
    }

    /// The advertise address of host `index`.
    pub fn addr(&self, index: usize) -> SocketAddr {
        addr(index)
    }

    /// Number of hosts.
    pub fn len(&self) -> usize {
        self.hosts.len()
    }

    /// Whether the world has no hosts.
    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty()
    }

    /// Host `observer`'s current view of host `peer`'s state.
    pub fn state(&self, observer: usize, peer: usize) -> Option<State> {
        self.shared.views.lock().unwrap()[observer].get(&name(peer)).map(|&(state, _)| state)
    }

    /// The incarnation host `observer` last heard from host `peer`.
    pub fn incarnation_seen(&self, observer: usize, peer: usize) -> Option<u64> {
        self.shared.views.lock().unwrap()[observer].get(&name(peer)).map(|&(_, inc)| inc)
    }

    /// Host `index`'s boot epoch in its current life (0 while down).
    pub fn boot_epoch(&self, index: usize) -> u32 {
        self.shared.epochs.lock().unwrap()[index]
    }

    /// Every host that should be up has booted and sees every other such host alive in its
    /// current life.
    pub fn converged(&self) -> bool {
        let epochs = self.shared.epochs.lock().unwrap().clone();
        let views = self.shared.views.lock().unwrap();
        let live: Vec<usize> = (0..self.len()).filter(|&i| self.up[i]).collect();
        if live.iter().any(|&i| epochs[i] == 0) {
            return false;
        }
        live.iter().all(|&observer| {
            live.iter().filter(|&&peer| peer != observer).all(|&peer| {
                views[observer].get(&name(peer)).is_some_and(|&(state, inc)| {
                    state == State::Alive && inc >> 32 == u64::from(epochs[peer])
                })
            })
        })
    }

    /// Every host's view, one line per host, for failure messages.
    pub fn describe(&self) -> String {
        let views = self.shared.views.lock().unwrap();
        let epochs = self.shared.epochs.lock().unwrap();
        let mut text = String::new();
        for (index, view) in views.iter().enumerate() {
            text += &format!("n{index} (epoch {}, up {}):", epochs[index], self.up[index]);
            for (name, (state, incarnation)) in view {
                text += &format!(" {name}={state:?}@{}.{}", incarnation >> 32, incarnation & 0xFFFF_FFFF);
            }
            text += "\n";
        }
        text
    }

    /// Sleeps `duration` of simulated time.
    pub async fn run_for(&self, duration: Duration) {
        madsim::time::sleep(duration).await;
    }

    /// Waits until `done` holds, checking every 10 ms of simulated time, for at most `limit`.
    pub async fn run_until(&self, limit: Duration, done: impl Fn(&World) -> bool) -> Result<Duration, Stuck> {
        let start = madsim::time::Instant::now();
        while !done(self) {
            if start.elapsed() >= limit {
                return Err(Stuck { waited: limit });
            }
            madsim::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(start.elapsed())
    }

    /// Kills host `index` (a crash: writes not yet durable are lost).
    pub fn kill(&mut self, index: usize) {
        self.handle.kill(self.hosts[index].id());
        self.up[index] = false;
        self.shared.views.lock().unwrap()[index].clear();
        self.shared.epochs.lock().unwrap()[index] = 0;
        self.shared.record(index, &"kill");
    }

    /// Restarts host `index`; it boots from its durable state.
    pub fn restart(&mut self, index: usize) {
        self.handle.restart(self.hosts[index].id());
        self.up[index] = true;
        self.shared.views.lock().unwrap()[index].clear();
        self.shared.record(index, &"restart");
    }

    /// Splits `left` from `right` both ways, except through `via`, which reaches both sides
    /// (a bridge: the two sides can only hear of each other through it).
    pub fn bridge(&mut self, left: &[usize], via: usize, right: &[usize]) {
        assert!(!left.contains(&via) && !right.contains(&via), "the bridge belongs to neither side");
        self.partition(&[left, right]);
    }

    /// Cuts host `index` off from everyone, both ways.
    pub fn isolate(&mut self, index: usize) {
        NetSim::current().clog_node(self.hosts[index].id());
        self.clogged_hosts.insert(index);
        self.shared.record(index, &"isolate");
    }

    /// Blocks every link between hosts of different groups, both ways.
    pub fn partition(&mut self, groups: &[&[usize]]) {
        for (from, to) in crate::links_across(groups) {
            self.block(from, to);
        }
    }

    /// Drops everything `from` sends to `to` (one direction).
    pub fn block(&mut self, from: usize, to: usize) {
        NetSim::current().clog_link(self.hosts[from].id(), self.hosts[to].id());
        self.clogged_links.insert((from, to));
        self.shared.record(from, &("block", to));
    }

    /// Removes every partition.
    pub fn heal(&mut self) {
        let net = NetSim::current();
        for (from, to) in std::mem::take(&mut self.clogged_links) {
            net.unclog_link(self.hosts[from].id(), self.hosts[to].id());
        }
        for index in std::mem::take(&mut self.clogged_hosts) {
            net.unclog_node(self.hosts[index].id());
        }
        self.shared.record(0, &"heal");
    }

    fn finish(self) -> Trace {
        self.shared.trace.lock().unwrap().clone()
    }
}

impl Shared {
    fn record(&self, index: usize, what: &impl std::fmt::Debug) {
        let at = u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.trace.lock().unwrap().record(at, index, what);
    }

    fn on_event(&self, index: usize, event: Event) {
        self.record(index, &event);
        let Event::Member(member) = event else { return };
        // The oracle: nobody hears an incarnation whose boot epoch its owner could still lose.
        let owner = index_of(member.node.addr);
        let durable = self.disks.lock().unwrap()[owner].map(|s| u64::from(s.boot_epoch));
        assert!(
            durable >= Some(member.incarnation >> 32),
            "host {index} heard incarnation {:#x} of host {owner}, whose disk holds epoch {durable:?}: \
             persistence ordering is broken",
            member.incarnation
        );
    }

    /// Copies host `index`'s member table after each of its steps: the world's views are the
    /// nodes' own tables, not a reconstruction from events (some changes, a refutation for one,
    /// raise no event).
    fn on_step(&self, index: usize, node: &Gossip) {
        let mut views = self.views.lock().unwrap();
        let view = &mut views[index];
        view.clear();
        for member in node.members() {
            view.insert(member.node.name, (member.state, member.incarnation));
        }
    }
}

/// The task each simulated host runs; madsim runs it again on every restart.
async fn host_main(index: usize, shared: Arc<Shared>, fsync: Range<Duration>, joins: Vec<SocketAddr>) {
    let me = addr(index);
    let udp = UdpSocket::bind(me).await.expect("bind udp");
    let tcp = TcpListener::bind(me).await.expect("bind tcp");
    let restored = shared.disks.lock().unwrap()[index];
    let seed = madsim::rand::thread_rng().gen::<u64>();
    let node =
        Gossip::new(Config::new(&name(index), me, seed), restored, Instant::ZERO).expect("valid config");
    shared.epochs.lock().unwrap()[index] = node.boot_epoch();
    shared.record(index, &("boot", node.boot_epoch()));

    let (commands, receiver) = mpsc::channel::<CommandRequest>(16);
    for peer in joins {
        let (reply, _) = oneshot::channel();
        commands.try_send((Command::Join { peer }, reply)).expect("room for the joins");
    }
    let storage = SimDisk { index, shared: shared.clone(), fsync };
    let events = shared.clone();
    let origin = tokio::time::Instant::now();
    let views = shared.clone();
    let on_event = move |event| events.on_event(index, event);
    let on_step = move |node: &Gossip| views.on_step(index, node);
    let result = drive::run(node, origin, Sockets { udp, tcp }, storage, receiver, on_event, on_step).await;
    drop(commands);
    panic!("host {index}'s drive loop ended: {result:?}");
}

/// A disk whose writes take a random time to become durable and are lost if the host is killed
/// first (madsim drops the host's tasks, and with them the write in progress).
struct SimDisk {
    index: usize,
    shared: Arc<Shared>,
    fsync: Range<Duration>,
}

impl Storage for SimDisk {
    async fn save(&mut self, state: StableState) -> io::Result<()> {
        let latency = madsim::rand::thread_rng().gen_range(self.fsync.clone());
        madsim::time::sleep(latency).await;
        self.shared.disks.lock().unwrap()[self.index] = Some(state);
        self.shared.record(self.index, &("durable", state.boot_epoch));
        Ok(())
    }
}

fn name(index: usize) -> String {
    format!("n{index}")
}

fn addr(index: usize) -> SocketAddr {
    assert!(index < 250, "10.0.0.x addresses up to 250 hosts");
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, index as u8 + 1)), 8301)
}

fn index_of(addr: SocketAddr) -> usize {
    match addr.ip() {
        IpAddr::V4(ip) => usize::from(ip.octets()[3]) - 1,
        IpAddr::V6(_) => unreachable!("the world only uses IPv4"),
    }
}
