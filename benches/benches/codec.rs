//! Encode and decode cost of the messages on the hot path.

use std::hint::black_box;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use muster_core::wire::{decode_datagram, DatagramBuilder, Message, NodeAddr};
use muster_core::DATAGRAM_BYTES_TARGET;

fn codec(c: &mut Criterion) {
    let source = NodeAddr { name: "web-1".into(), addr: "10.0.0.1:8301".parse().unwrap() };
    let ping = Message::Ping { seq: 7, target: "web-2".into(), source: source.clone() };
    let alive = Message::Alive { incarnation: 1 << 32, node: source, meta: Bytes::from_static(b"role=node") };
    // A ping with a full load of piggybacked gossip, as sent in a busy cluster.
    let mut datagram = DatagramBuilder::new(DATAGRAM_BYTES_TARGET);
    datagram.push_entry(&ping.encode_entry());
    while datagram.push_entry(&alive.encode_entry()) {}
    let compound = datagram.finish();

    let mut group = c.benchmark_group("wire");
    group.bench_function("encode_ping_entry", |b| b.iter(|| black_box(&ping).encode_entry()));
    group.throughput(Throughput::Bytes(compound.len() as u64));
    group.bench_function("decode_full_datagram", |b| {
        b.iter(|| decode_datagram(black_box(&compound)).unwrap())
    });
    group.finish();
}

criterion_group!(benches, codec);
criterion_main!(benches);
