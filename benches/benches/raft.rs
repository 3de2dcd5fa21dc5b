//! Raft's in-process cost: three servers, instant in-memory storage, messages delivered
//! directly, so what is measured is the state machines alone. `commit 1000 entries` proposes
//! 1,000 entries of 128 B, all at once (batched into appends and writes), and runs until the
//! leader has committed them: divide by 1,000 for the cost per committed entry. `commit one
//! entry` is one proposal's round trip to a majority. Each runs for muster and for tikv's
//! raft-rs through the same kind of driver, so the ratio compares the state machines.

use std::collections::VecDeque;
use std::hint::black_box;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use muster_core::raft::{Config, Raft, Restored, Role, ServerId, Transmit};
use muster_core::Instant;
use raft::storage::MemStorage;

struct Cluster {
    servers: Vec<Raft>,
    now: Instant,
    queue: VecDeque<(ServerId, Transmit)>,
}

impl Cluster {
    fn new() -> Cluster {
        let servers = (1..=3)
            .map(|id| Raft::new(Config::new(id, 1..=3, id), Restored::default(), Instant::ZERO).unwrap())
            .collect();
        let mut cluster = Cluster { servers, now: Instant::ZERO, queue: VecDeque::new() };
        // Elect server 1: its timer first.
        let deadline = cluster.servers[0].poll_timeout();
        cluster.now = deadline;
        cluster.servers[0].handle_timeout(deadline);
        cluster.settle();
        while cluster.servers[0].role() != Role::Leader {
            cluster.now = Instant::from_nanos(cluster.now.as_nanos() + 1_000_000);
            let now = cluster.now;
            for server in &mut cluster.servers {
                if server.poll_timeout() <= now {
                    server.handle_timeout(now);
                }
            }
            cluster.settle();
        }
        cluster
    }

    /// Persists at once, applies, and delivers every message until nothing moves.
    fn settle(&mut self) {
        let now = self.now;
        loop {
            for server in &mut self.servers {
                while let Some(persist) = server.poll_persist() {
                    server.on_persisted(now, persist.id);
                }
                while server.poll_apply().is_some() {}
                while server.poll_event().is_some() {}
                let from = server.id();
                while let Some(transmit) = server.poll_transmit() {
                    self.queue.push_back((from, transmit));
                }
            }
            let Some((from, transmit)) = self.queue.pop_front() else { return };
            self.servers[transmit.to as usize - 1].handle_message(now, from, transmit.message);
            while let Some((from, transmit)) = self.queue.pop_front() {
                self.servers[transmit.to as usize - 1].handle_message(now, from, transmit.message);
            }
        }
    }
}

/// The same three servers in tikv's raft-rs, driven through its `RawNode`/`Ready` loop with
/// its in-memory storage: the comparison the issue asks for.
struct RsCluster {
    nodes: Vec<raft::RawNode<MemStorage>>,
    queue: VecDeque<raft::prelude::Message>,
}

impl RsCluster {
    fn new() -> RsCluster {
        let logger = slog::Logger::root(slog::Discard, slog::o!());
        let nodes = (1..=3u64)
            .map(|id| {
                let storage =
                    MemStorage::new_with_conf_state(raft::prelude::ConfState::from((vec![1, 2, 3], vec![])));
                let config = raft::Config {
                    id,
                    election_tick: 10,
                    heartbeat_tick: 1,
                    max_size_per_msg: 1 << 20,
                    max_inflight_msgs: 64,
                    ..Default::default()
                };
                raft::RawNode::new(&config, storage, &logger).unwrap()
            })
            .collect();
        let mut cluster = RsCluster { nodes, queue: VecDeque::new() };
        cluster.nodes[0].campaign().unwrap();
        cluster.settle();
        assert_eq!(cluster.nodes[0].raft.state, raft::StateRole::Leader);
        cluster
    }

    fn settle(&mut self) {
        loop {
            for node in &mut self.nodes {
                if !node.has_ready() {
                    continue;
                }
                let mut ready = node.ready();
                self.queue.extend(ready.take_messages());
                let _ = ready.take_committed_entries();
                node.mut_store().wl().append(ready.entries()).unwrap();
                if let Some(hs) = ready.hs() {
                    node.mut_store().wl().set_hardstate(hs.clone());
                }
                self.queue.extend(ready.take_persisted_messages());
                let mut light = node.advance(ready);
                if let Some(commit) = light.commit_index() {
                    node.mut_store().wl().mut_hard_state().set_commit(commit);
                }
                self.queue.extend(light.take_messages());
                let _ = light.take_committed_entries();
                node.advance_apply();
            }
            if self.queue.is_empty() {
                return;
            }
            while let Some(message) = self.queue.pop_front() {
                let to = message.to as usize - 1;
                let _ = self.nodes[to].step(message);
            }
        }
    }

    fn commit_index(&self) -> u64 {
        self.nodes[0].raft.raft_log.committed
    }
}

fn raft(c: &mut Criterion) {
    let payload = Bytes::from(vec![7u8; 128]);
    let mut group = c.benchmark_group("raft");
    group.throughput(Throughput::Elements(1000));
    group.bench_function("commit 1000 entries, 3 servers", |b| {
        // A fresh cluster per batch keeps the (never compacted) log from growing without bound.
        b.iter_batched(
            Cluster::new,
            |mut cluster| {
                let now = cluster.now;
                let mut last = 0;
                for _ in 0..1000 {
                    last = cluster.servers[0].propose(now, payload.clone()).unwrap().0;
                }
                cluster.settle();
                assert!(cluster.servers[0].commit_index() >= last);
                black_box(cluster)
            },
            BatchSize::LargeInput,
        )
    });
    group.bench_function("raft-rs: commit 1000 entries, 3 servers", |b| {
        b.iter_batched(
            RsCluster::new,
            |mut cluster| {
                for _ in 0..1000 {
                    cluster.nodes[0].propose(vec![], payload.to_vec()).unwrap();
                }
                cluster.settle();
                assert!(cluster.commit_index() >= 1001);
                black_box(cluster)
            },
            BatchSize::LargeInput,
        )
    });
    group.throughput(Throughput::Elements(1));
    group.bench_function("commit one entry, 3 servers", |b| {
        let mut cluster = Cluster::new();
        b.iter(|| {
            let now = cluster.now;
            let (index, _) = cluster.servers[0].propose(now, payload.clone()).unwrap();
            cluster.settle();
            assert!(cluster.servers[0].commit_index() >= index);
        })
    });
    group.bench_function("raft-rs: commit one entry, 3 servers", |b| {
        let mut cluster = RsCluster::new();
        b.iter(|| {
            let before = cluster.commit_index();
            cluster.nodes[0].propose(vec![], payload.to_vec()).unwrap();
            cluster.settle();
            assert!(cluster.commit_index() > before);
        })
    });
    group.finish();
}

criterion_group!(benches, raft);
criterion_main!(benches);
