//! Three Raft servers in this process over real TCP on loopback, each with its write-ahead log
//! fdatasynced on this machine's disk: proposals through the leader at several numbers of
//! concurrent clients (each waits for its write to be applied before sending the next).
//! Prints writes/s and latency percentiles. Not criterion: throughput under concurrency is the
//! figure, as etcd's `benchmark put --clients` reports it.
//!
//! `cargo bench -p muster-benches --bench raft_tcp` (MUSTER_BENCH_DIR picks the disk; the
//! default is the target directory). With `-- --test` (as CI runs every bench) it writes a few
//! hundred entries only.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use bytes::Bytes;
use muster::raft_net::RaftTransport;
use muster::raft_server::{self, RaftHandle, StateMachine};
use muster_core::raft::{Config, Index, Role, ServerId};

const PAYLOAD_BYTES: usize = 128;

/// Counts what it applies; snapshots are the count.
struct Counter(u64);

impl StateMachine for Counter {
    type Output = u64;

    fn apply(&mut self, _index: Index, _command: &Bytes) -> u64 {
        self.0 += 1;
        self.0
    }

    fn snapshot(&self) -> Bytes {
        Bytes::copy_from_slice(&self.0.to_be_bytes())
    }

    fn restore(&mut self, snapshot: &muster_core::raft::Snapshot) {
        self.0 = u64::from_be_bytes(snapshot.data[..8].try_into().expect("8 bytes"));
    }
}

fn main() {
    let quick = std::env::args().any(|a| a == "--test");
    let writes: usize = if quick { 200 } else { 20_000 };
    let dir = std::env::var_os("MUSTER_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/bench-raft-tcp"));
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    runtime.block_on(async {
        println!(
            "3 Raft servers over TCP on loopback, WAL fdatasync in {}, {writes} writes of {PAYLOAD_BYTES} B",
            dir.display()
        );
        println!("{:>7} | {:>10} | {:>9} | {:>9} | {:>9}", "clients", "writes/s", "p50", "p99", "max");
        for clients in [1usize, 16, 128] {
            let _ = std::fs::remove_dir_all(&dir);
            let (rate, mut latencies) = run(&dir, writes, clients).await;
            latencies.sort_unstable();
            let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize];
            println!(
                "{clients:>7} | {rate:>10.0} | {:>9.2?} | {:>9.2?} | {:>9.2?}",
                at(0.5),
                at(0.99),
                latencies[latencies.len() - 1]
            );
        }
        let _ = std::fs::remove_dir_all(&dir);
    });
}

async fn run(dir: &std::path::Path, writes: usize, clients: usize) -> (f64, Vec<Duration>) {
    let listeners: Vec<_> = (0..3).map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap()).collect();
    let addrs: Vec<SocketAddr> = listeners.iter().map(|l| l.local_addr().unwrap()).collect();
    drop(listeners);
    let mut servers: Vec<RaftHandle<u64>> = Vec::new();
    for id in 1..=3 as ServerId {
        let (mut transport, inbound) = RaftTransport::bind(id, addrs[id as usize - 1]).await.expect("bind");
        for (i, &addr) in addrs.iter().enumerate() {
            transport.set_peer(i as ServerId + 1, addr);
        }
        let config = Config::new(id, 1..=3, id);
        let server = raft_server::start(config, dir.join(id.to_string()), transport, inbound, Counter(0))
            .expect("start");
        servers.push(server);
    }
    let leader = loop {
        if let Some(leader) = servers.iter().find(|s| s.status().role == Role::Leader) {
            break leader.client();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let payload = Bytes::from(vec![7u8; PAYLOAD_BYTES]);
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for client in 0..clients {
        let (leader, payload) = (leader.clone(), payload.clone());
        let count = writes / clients + usize::from(client < writes % clients);
        tasks.spawn(async move {
            let mut latencies = Vec::with_capacity(count);
            for _ in 0..count {
                let sent = Instant::now();
                leader.propose(payload.clone()).await.expect("committed");
                latencies.push(sent.elapsed());
            }
            latencies
        });
    }
    let latencies: Vec<Duration> = tasks.join_all().await.into_iter().flatten().collect();
    let rate = writes as f64 / start.elapsed().as_secs_f64();
    for server in servers {
        server.stop().await;
    }
    (rate, latencies)
}
