//! The core's cost per input, and the harness's simulated-time throughput.

use std::hint::black_box;
use std::net::SocketAddr;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use muster_core::gossip::Config;
use muster_core::wire::{DatagramBuilder, Message, NodeAddr};
use muster_core::{Gossip, Instant, DATAGRAM_BYTES_TARGET};
use muster_sim::harness::{Cluster, NetConfig};

fn booted_node() -> Gossip {
    let mut node =
        Gossip::new(Config::new("n0", "10.0.0.1:8301".parse().unwrap(), 1), None, Instant::ZERO).unwrap();
    let persist = node.poll_persist().unwrap();
    node.on_persisted(Instant::ZERO, persist.id);
    node
}

/// A node that knows `members` alive peers.
fn node_with_members(members: u32) -> Gossip {
    let mut node = booted_node();
    let mut datagram = DatagramBuilder::new(muster_core::DATAGRAM_BYTES_MAX);
    for i in 0..members {
        let addr = SocketAddr::from(([10, 1, (i >> 8) as u8, i as u8], 8301));
        let alive = Message::Alive {
            incarnation: 1 << 32,
            node: NodeAddr { name: format!("m{i}"), addr },
            meta: Default::default(),
        };
        datagram.push_entry(&alive.encode_entry());
    }
    node.handle_datagram(Instant::ZERO, "10.0.0.2:8301".parse().unwrap(), &datagram.finish());
    while node.poll_transmit().is_some() || node.poll_event().is_some() {}
    node
}

fn node(c: &mut Criterion) {
    let from = NodeAddr { name: "n1".into(), addr: "10.0.0.2:8301".parse().unwrap() };
    let mut ping = DatagramBuilder::new(DATAGRAM_BYTES_TARGET);
    ping.push_entry(&Message::Ping { seq: 1, target: "n0".into(), source: from.clone() }.encode_entry());
    let ping = ping.finish();
    let mut node = node_with_members(100);
    c.bench_function("node/ping_to_ack", |b| {
        b.iter(|| {
            node.handle_datagram(Instant::ZERO, from.addr, black_box(&ping));
            black_box(node.poll_transmit().unwrap())
        })
    });

    // The CPU cost of one probe round per member: run a node that knows 1,000 members through
    // one simulated second of timers (a probe, five gossip rounds) and drain what it sends.
    c.bench_function("node/one_second_of_timers_1000_members", |b| {
        b.iter_batched(
            || node_with_members(1000),
            |mut node| {
                let end = Instant::ZERO + Duration::from_secs(1);
                while let Some(deadline) = node.poll_timeout().filter(|d| *d <= end) {
                    node.handle_timeout(deadline);
                    while node.poll_transmit().is_some() {}
                }
            },
            BatchSize::LargeInput,
        )
    });
}

fn harness(c: &mut Criterion) {
    let mut group = c.benchmark_group("harness");
    group.sample_size(10);
    group.bench_function("20_nodes_60s_simulated", |b| {
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
