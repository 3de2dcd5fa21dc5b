//! The nemesis: three real `muster` servers on loopback, clients writing and reading registers
//! through all of them, and a seeded schedule of faults (kill -9 of the leader or of a
//! follower, each restarted from its data directory; the leader paused with SIGSTOP and
//! resumed, cut off meanwhile as a partition would). The history is then checked for
//! linearizability by the simulator's checker (`muster_sim::linearizability`).
//!
//! `bash benches/nemesis.sh [--seed N] [--rounds N]` builds the release binary and runs this.
//! The fault schedule follows the seed; the processes' timing does not, so a failure prints
//! the seed and its schedule, and the history that broke.
//!
//! Writes that got no answer, or an error, may or may not have taken effect: the checker may
//! place them anywhere after their call, or nowhere. Reads that failed are left out. Reads use
//! the default consistency mode (the leader's lease), the one Consul clients use.

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use muster_core::Rng;
use muster_sim::linearizability::{check, Kind, Op};

/// Registers the clients share at any one time.
const KEYS: u64 = 4;
/// Operations per register before the clients move on to fresh ones, to keep each register's
/// history within what the checker searches ([`muster_sim::linearizability::OPS_PER_KEY_MAX`]).
const OPS_PER_KEY: u64 = 150;
/// Client threads.
const WORKERS: usize = 6;
/// How long one request may take before its outcome counts as unknown.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);

struct Server {
    name: String,
    paused: bool,
    ports: [u16; 4],
    dir: std::path::PathBuf,
    child: Option<Child>,
}

impl Server {
    fn start(&mut self, bin: &str, join: u16) {
        let [lan, wan, http, rpc] = self.ports;
        let child = Command::new(bin)
            .args(["agent", "-server", "-bootstrap-expect=3", "-bind=127.0.0.1", "-dns-port=-1"])
            .arg(format!("-node={}", self.name))
            .arg(format!("-data-dir={}", self.dir.display()))
            .args([format!("-serf-lan-port={lan}"), format!("-serf-wan-port={wan}")])
            .args([format!("-http-port={http}"), format!("-server-port={rpc}")])
            .arg(format!("-retry-join=127.0.0.1:{join}"))
            .arg("-retry-interval=1s")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the muster binary starts");
        self.child = Some(child);
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn signal(&self, signal: &str) {
        if let Some(child) = &self.child {
            let _ = Command::new("kill").args([signal, &child.id().to_string()]).status();
        }
    }

    fn http(&self) -> u16 {
        self.ports[2]
    }

    fn rpc_addr(&self) -> String {
        format!("127.0.0.1:{}", self.ports[3])
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.signal("-CONT");
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A loopback port free for TCP and UDP, never handed out before by this process, from below
/// Linux's ephemeral range (32768-60999): a port `bind(0)` offered can be taken as the local
/// end of any outgoing connection before the server binds it, and that server then never
/// starts (one run in six never formed its cluster that way). The scan starts at an offset
/// from the process ID so that runs one after another do not meet each other's lingering
/// sockets.
fn free_port() -> u16 {
    const FIRST: u16 = 20_000;
    const COUNT: u16 = 12_000;
    static NEXT: AtomicU64 = AtomicU64::new(u64::MAX);
    let start = match NEXT.load(Ordering::Relaxed) {
        u64::MAX => u64::from(std::process::id() % u32::from(COUNT)),
        next => next,
    };
    for step in 0..u64::from(COUNT) {
        let offset = (start + step) % u64::from(COUNT);
        let port = FIRST + u16::try_from(offset).expect("below COUNT");
        let tcp = std::net::TcpListener::bind(("127.0.0.1", port));
        if tcp.is_ok() && std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            NEXT.store(offset + 1, Ordering::Relaxed);
            return port;
        }
    }
    panic!("no free loopback port between {FIRST} and {}", FIRST + COUNT);
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(REQUEST_TIMEOUT))
        .build()
        .into()
}

/// The leader's RPC address as the server on `port` reports it.
fn leader_of(http: &ureq::Agent, port: u16) -> Option<String> {
    let mut response = http.get(&format!("http://127.0.0.1:{port}/v1/status/leader")).call().ok()?;
    let leader: String = serde_json::from_str(&response.body_mut().read_to_string().ok()?).ok()?;
    (!leader.is_empty()).then_some(leader)
}

/// The index of the server that leads and takes a write, waiting up to a minute.
fn leader(servers: &[Server], http: &ureq::Agent) -> Option<usize> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        // A paused server would hold each request until it times out.
        for server in servers.iter().filter(|s| s.child.is_some() && !s.paused) {
            if let Some(addr) = leader_of(http, server.http()) {
                if let Some(i) = servers.iter().position(|s| s.rpc_addr() == addr && s.child.is_some()) {
                    let url = format!("http://127.0.0.1:{}/v1/kv/nemesis/probe", servers[i].http());
                    if http.put(&url).send("1").is_ok_and(|r| r.status() == 200) {
                        return Some(i);
                    }
                }
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

fn micros(origin: Instant) -> u64 {
    u64::try_from(origin.elapsed().as_micros()).unwrap_or(u64::MAX)
}

/// One client: random registers, writes and reads through random servers, until `stop`.
fn client(
    id: usize,
    seed: u64,
    ports: Vec<u16>,
    stop: Arc<AtomicBool>,
    next_value: Arc<AtomicU64>,
    ops: Arc<AtomicU64>,
    origin: Instant,
) -> Vec<Op> {
    let http = agent();
    let mut draw = Rng::from_seed(seed ^ (id as u64).wrapping_mul(0x2545_f491_4f6c_dd1d));
    let mut history = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let window = ops.fetch_add(1, Ordering::Relaxed) / (KEYS * OPS_PER_KEY);
        let key = window * KEYS + draw.below(KEYS);
        let port = ports[usize::try_from(draw.below(ports.len() as u64)).unwrap_or(0)];
        let url = format!("http://127.0.0.1:{port}/v1/kv/nemesis/{key}");
        let call = micros(origin);
        if draw.below(2) == 0 {
            let value = next_value.fetch_add(1, Ordering::Relaxed);
            let answer = http.put(&url).send(value.to_string());
            let ok = match answer {
                Ok(mut response) => {
                    response.status() == 200
                        && response.body_mut().read_to_string().is_ok_and(|b| b == "true")
                }
                Err(_) => false,
            };
            let ret = ok.then(|| micros(origin));
            history.push(Op { key, call, ret, kind: Kind::Write(value) });
            if !ok {
                std::thread::sleep(Duration::from_millis(20));
            }
        } else {
            let answer = http.get(&format!("{url}?raw")).call();
            let observed = match answer {
                Ok(mut response) if response.status() == 200 => {
                    response.body_mut().read_to_string().ok().and_then(|b| b.parse().ok()).map(Some)
                }
                Ok(response) if response.status() == 404 => Some(None),
                _ => None,
            };
            match observed {
                Some(value) => {
                    history.push(Op { key, call, ret: Some(micros(origin)), kind: Kind::Read(value) })
                }
                None => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }
    history
}

fn main() -> std::process::ExitCode {
    // Run in a function of its own so that every server is stopped (dropped) before exiting.
    run()
}

fn run() -> std::process::ExitCode {
    let mut seed = 1u64;
    let mut rounds = 10u32;
    let mut bin = String::from("target/release/muster");
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().expect("a value after the flag");
        match arg.as_str() {
            "--seed" => seed = value().parse().expect("a number"),
            "--rounds" => rounds = value().parse().expect("a number"),
            "--bin" => bin = value(),
            other => panic!("unknown argument {other}; use --seed N --rounds N --bin PATH"),
        }
    }
    let replay = format!("bash benches/nemesis.sh --seed {seed} --rounds {rounds}");
    // The fault schedule follows the seed alone (the project's seeded generator).
    let mut draw = Rng::from_seed(seed);
    let run = format!("muster-nemesis-{}", std::process::id());
    let mut servers: Vec<Server> = (1..=3)
        .map(|n| Server {
            name: format!("s{n}"),
            paused: false,
            ports: [free_port(), free_port(), free_port(), free_port()],
            dir: std::env::temp_dir().join(format!("{run}-s{n}")),
            child: None,
        })
        .collect();
    let seed_port = servers[0].ports[0];
    for server in &mut servers {
        server.start(&bin, seed_port);
    }
    let http = agent();
    leader(&servers, &http).expect("the cluster forms");

    let origin = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let next_value = Arc::new(AtomicU64::new(1));
    let ops = Arc::new(AtomicU64::new(0));
    let ports: Vec<u16> = servers.iter().map(Server::http).collect();
    let workers: Vec<_> = (0..WORKERS)
        .map(|id| {
            let (stop, next_value, ops, ports) =
                (stop.clone(), next_value.clone(), ops.clone(), ports.clone());
            std::thread::spawn(move || client(id, seed, ports, stop, next_value, ops, origin))
        })
        .collect();

    let schedule = Arc::new(Mutex::new(Vec::new()));
    let mut recoveries = Vec::new();
    for round in 0..rounds {
        std::thread::sleep(Duration::from_millis(500 + draw.below(1500)));
        let Some(leader_index) = leader(&servers, &http) else {
            eprintln!("no leader within a minute after round {round}; replay: {replay}");
            return std::process::ExitCode::FAILURE;
        };
        let fault = draw.below(3);
        let follower = (leader_index + 1 + usize::try_from(draw.below(2)).unwrap_or(0)) % 3;
        let hold = Duration::from_millis(1000 + draw.below(3000));
        let started = Instant::now();
        let what = match fault {
            0 => {
                servers[leader_index].kill();
                let next = leader(&servers, &http);
                recoveries.push(started.elapsed());
                std::thread::sleep(hold.saturating_sub(started.elapsed()));
                let join = servers[follower].ports[0];
                servers[leader_index].start(&bin, join);
                format!(
                    "kill -9 leader {}, new leader {:?}",
                    servers[leader_index].name,
                    next.map(|i| &servers[i].name)
                )
            }
            1 => {
                servers[leader_index].signal("-STOP");
                servers[leader_index].paused = true;
                let next = leader(&servers, &http);
                recoveries.push(started.elapsed());
                std::thread::sleep(hold.saturating_sub(started.elapsed()));
                servers[leader_index].signal("-CONT");
                servers[leader_index].paused = false;
                format!(
                    "pause leader {} for {hold:?}, new leader {:?}",
                    servers[leader_index].name,
                    next.map(|i| &servers[i].name)
                )
            }
            _ => {
                servers[follower].kill();
                std::thread::sleep(hold);
                let join = servers[leader_index].ports[0];
                servers[follower].start(&bin, join);
                format!("kill -9 follower {} for {hold:?}", servers[follower].name)
            }
        };
        println!("round {round}: {what}");
        schedule.lock().unwrap().push(what);
    }
    let healed = leader(&servers, &http).is_some();
    std::thread::sleep(Duration::from_secs(1));
    stop.store(true, Ordering::Relaxed);
    let history: Vec<Op> = workers.into_iter().flat_map(|w| w.join().expect("a client thread")).collect();
    let writes = history.iter().filter(|op| matches!(op.kind, Kind::Write(_))).count();
    let unknown = history.iter().filter(|op| op.ret.is_none()).count();
    let reads = history.len() - writes;
    recoveries.sort();
    println!();
    println!("seed {seed}, {rounds} rounds, {} s of history", origin.elapsed().as_secs());
    println!("operations: {} ({writes} writes, {unknown} of them unanswered; {reads} reads)", history.len());
    if let (Some(first), Some(last)) = (recoveries.first(), recoveries.last()) {
        let median = recoveries[recoveries.len() / 2];
        println!(
            "leader loss to first accepted write: min {first:?}, median {median:?}, max {last:?} ({} faults)",
            recoveries.len()
        );
    }
    match check(&history) {
        Ok(()) if healed => {
            println!("linearizable: yes");
            std::process::ExitCode::SUCCESS
        }
        Ok(()) => {
            println!("linearizable: yes, but the cluster had no leader at the end; replay: {replay}");
            std::process::ExitCode::FAILURE
        }
        Err(violation) => {
            println!(
                "linearizable: NO ({}) on key {}",
                if violation.inconclusive { "inconclusive" } else { "violation" },
                violation.key
            );
            for op in &violation.ops {
                println!("  {op:?}");
            }
            println!("replay: {replay}");
            std::process::ExitCode::FAILURE
        }
    }
}
