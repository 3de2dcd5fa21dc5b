//! A node driven by an arbitrary sequence of inputs: raw and well-formed messages on both
//! channels, commands, timer expiries and persist acknowledgements. The node checks its
//! invariants after every step (feature `invariants`); the target checks the drive contract.

#![no_main]

use std::net::SocketAddr;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use muster_core::wire::{Body, Message};
use muster_core::{Command, Config, Instant, Node, Persist};

#[derive(Debug, Arbitrary)]
enum Op {
    RawDatagram(Vec<u8>),
    RawFrame(Vec<u8>),
    Message {
        stream: bool,
        sender: u8,
        incarnation: u8,
        ack: bool,
        seq: u8,
    },
    Join(u8),
    Forget(u8),
    /// Advance time by this many milliseconds and run due timers.
    Tick(u16),
    /// Acknowledge the oldest outstanding persist.
    Persisted,
}

fn addr(last: u8) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, last], 8301))
}

fuzz_target!(|ops: Vec<Op>| {
    let me = addr(0);
    let mut now = Instant::ZERO;
    let Ok(mut node) = Node::new(Config::new(me, 7), None, now) else {
        return;
    };
    let mut unacked: Vec<Persist> = Vec::new();
    let mut durable_incarnation = 0;
    for op in ops {
        match op {
            Op::RawDatagram(bytes) => node.handle_datagram(now, addr(1), &bytes),
            Op::RawFrame(bytes) => node.handle_stream_frame(now, addr(1), &bytes),
            Op::Message {
                stream,
                sender,
                incarnation,
                ack,
                seq,
            } => {
                let body = if ack {
                    Body::Ack { seq: seq.into() }
                } else {
                    Body::Ping { seq: seq.into() }
                };
                let message = Message {
                    sender: addr(sender % 8),
                    incarnation: incarnation.into(),
                    body,
                };
                let bytes = message.encode();
                if stream {
                    node.handle_stream_frame(now, addr(1), &bytes);
                } else {
                    node.handle_datagram(now, addr(1), &bytes);
                }
            }
            Op::Join(peer) => {
                let _ = node.handle_command(
                    now,
                    Command::Join {
                        peer: addr(peer % 8),
                    },
                );
            }
            Op::Forget(peer) => {
                let _ = node.handle_command(
                    now,
                    Command::Forget {
                        peer: addr(peer % 8),
                    },
                );
            }
            Op::Tick(millis) => {
                now = now + std::time::Duration::from_millis(millis.into());
                if node.poll_timeout().is_some_and(|deadline| deadline <= now) {
                    node.handle_timeout(now);
                }
            }
            Op::Persisted => {
                if !unacked.is_empty() {
                    let persist = unacked.remove(0);
                    durable_incarnation = persist.state.incarnation;
                    node.on_persisted(now, persist.id);
                }
            }
        }
        while let Some(persist) = node.poll_persist() {
            unacked.push(persist);
        }
        while let Some(transmit) = node.poll_transmit() {
            let message =
                Message::decode(&transmit.payload).expect("the node sends what it can decode");
            assert_eq!(message.sender, me);
            assert!(
                message.incarnation <= durable_incarnation,
                "sent before durable"
            );
            assert_ne!(transmit.dst, me, "a node never sends to itself");
        }
        while node.poll_event().is_some() {}
        assert!(
            node.poll_timeout().is_some(),
            "a node always has its next round scheduled"
        );
    }
});
