//! Encode and decode cost of one message.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use muster_core::wire::{Body, Message};

fn codec(c: &mut Criterion) {
    let message = Message {
        sender: "10.0.0.1:8301".parse().unwrap(),
        incarnation: 12,
        body: Body::Ping { seq: 7 },
    };
    let bytes = message.encode();
    let mut group = c.benchmark_group("wire");
    group.throughput(Throughput::Bytes(bytes.len() as u64));
    group.bench_function("encode_ping", |b| b.iter(|| black_box(&message).encode()));
    group.bench_function("decode_ping", |b| {
        b.iter(|| Message::decode(black_box(&bytes)).unwrap())
    });
    group.finish();
}

criterion_group!(benches, codec);
criterion_main!(benches);
