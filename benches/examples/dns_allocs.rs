//! What one DNS query costs the core's handler: heap allocations (counted by an instrumented
//! system allocator) and time per query, for the queries `benches/dns_vs_dnsmasq.sh` sends,
//! against a catalog holding them.
//!
//!   cargo run --release -p muster-benches --example dns_allocs

use std::alloc::System;
use std::time::Instant;

use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RecordType};
use muster_core::dns::{handle, Config, Handled, Transport};
use muster_core::fsm::{Command, Fsm, Node, Register, Service};
use muster_core::Rng;
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};

#[global_allocator]
static ALLOCATOR: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const QUERIES: u64 = 100_000;

fn main() {
    let mut fsm = Fsm::new();
    for n in 1..=3u64 {
        let command = Command::Register(Box::new(Register {
            node: Node { node: format!("n{n}"), address: format!("10.0.0.{n}"), ..Node::default() },
            skip_node_update: false,
            service: Some(Service {
                id: "web".into(),
                service: "web".into(),
                port: 80,
                ..Service::default()
            }),
            checks: vec![],
        }));
        fsm.apply_command(n, 0, &command);
    }
    let config = Config::default();
    let mut rng = Rng::from_seed(1);
    println!("| query (core handler, one thread) | allocations per query | bytes allocated per query | time per query |");
    println!("|---|---|---|---|");
    for (name, qtype) in [
        ("web.service.consul.", RecordType::A),
        ("web.service.consul.", RecordType::SRV),
        ("n1.node.consul.", RecordType::A),
    ] {
        let mut message = Message::new(1, MessageType::Query, OpCode::Query);
        message.add_query(Query::query(Name::from_ascii(name).expect("a name"), qtype));
        let packet = message.to_vec().expect("encodes");
        let region = Region::new(ALLOCATOR);
        let started = Instant::now();
        for _ in 0..QUERIES {
            let handled = handle(&packet, Transport::Udp, fsm.catalog(), &config, &mut rng, 0, None);
            assert!(matches!(handled, Handled::Answer(_)));
        }
        let elapsed = started.elapsed();
        let change = region.change();
        println!(
            "| {name} {qtype} | {:.1} | {:.0} | {:.2} µs |",
            change.allocations as f64 / QUERIES as f64,
            change.bytes_allocated as f64 / QUERIES as f64,
            elapsed.as_secs_f64() * 1e6 / QUERIES as f64
        );
    }
}
