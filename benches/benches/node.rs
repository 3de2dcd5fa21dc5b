//! The core's cost per input, and the harness's simulated-time throughput.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use muster_core::wire::{Body, Message};
use muster_core::{Config, Instant, Node};
use muster_sim::harness::{Cluster, NetConfig};

fn booted_node() -> Node {
    let mut node = Node::new(
        Config::new("10.0.0.1:8301".parse().unwrap(), 1),
        None,
        Instant::ZERO,
    )
    .unwrap();
    let persist = node.poll_persist().unwrap();
    node.on_persisted(Instant::ZERO, persist.id);
    node
}

fn node(c: &mut Criterion) {
    let from = "10.0.0.2:8301".parse().unwrap();
    let ping = Message {
        sender: from,
        incarnation: 1,
        body: Body::Ping { seq: 1 },
    }
    .encode();
    let mut node = booted_node();
    // Discover the sender once, so the measured path is the steady state: decode, ack, queue.
    node.handle_datagram(Instant::ZERO, from, &ping);
    while node.poll_transmit().is_some() || node.poll_event().is_some() {}
    c.bench_function("node/ping_to_ack", |b| {
        b.iter(|| {
            node.handle_datagram(Instant::ZERO, from, black_box(&ping));
            black_box(node.poll_transmit().unwrap())
        })
    });

    // One probe round over 100 peers: 100 pings produced and drained.
    c.bench_function("node/probe_round_100_peers", |b| {
        b.iter_batched(
            || {
                let mut node = booted_node();
                for i in 0..100u16 {
                    let peer = std::net::SocketAddr::from(([10, 1, (i >> 8) as u8, i as u8], 8301));
                    node.handle_command(Instant::ZERO, muster_core::Command::Join { peer })
                        .unwrap();
                }
                node
            },
            |mut node| {
                let round = node.poll_timeout().unwrap();
                node.handle_timeout(round);
                let mut sent = 0;
                while node.poll_transmit().is_some() {
                    sent += 1;
                }
                assert_eq!(sent, 100);
            },
            BatchSize::SmallInput,
        )
    });
}

fn harness(c: &mut Criterion) {
    let mut group = c.benchmark_group("harness");
    group.sample_size(10);
    group.bench_function("star_20_nodes_60s_simulated", |b| {
        b.iter(|| {
            let mut cluster = Cluster::new(1, 20, NetConfig::lan());
            cluster.join_all_to(0);
            cluster.run_for(Duration::from_secs(60));
            black_box(cluster.stats())
        })
    });
    group.finish();
}

criterion_group!(benches, node, harness);
criterion_main!(benches);
