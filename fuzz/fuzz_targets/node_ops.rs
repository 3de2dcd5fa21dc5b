//! A node driven by an arbitrary sequence of inputs: raw bytes and well-formed messages on both
//! channels, commands, timer expiries and persist acknowledgements. The node checks its
//! invariants after every step (feature `invariants`); the target checks the drive contract:
//! nothing is sent before the boot epoch is durable, and a node never sends to itself.

#![no_main]

use std::net::SocketAddr;
use std::time::Duration;

use arbitrary::Arbitrary;
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use muster_core::gossip::{Channel, Command, Config, KeyringOp, Persist, StableState};
use muster_core::wire::{
    decode_datagram, DatagramBuilder, MemberState, Message, NodeAddr, PushPullEvent, PushPullMember,
    SerfState,
};
use muster_core::{Gossip, Instant, DATAGRAM_BYTES_TARGET};

#[derive(Debug, Arbitrary)]
enum Op {
    RawDatagram(Vec<u8>),
    RawFrame(Vec<u8>),
    Message {
        stream: bool,
        message: Msg,
    },
    Join(u8),
    Leave,
    ForceLeave(u8, bool),
    UpdateMeta(Vec<u8>),
    FireEvent(u8, Vec<u8>),
    Keyring(u8, Vec<u8>),
    /// Advance time by this many milliseconds and run due timers.
    Tick(u16),
    /// Acknowledge the oldest outstanding persist.
    Persisted,
}

#[derive(Debug, Arbitrary)]
enum Msg {
    Ping {
        seq: u8,
        target: u8,
        source: u8,
    },
    IndirectPing {
        seq: u8,
        target: u8,
        nack: bool,
        source: u8,
    },
    Ack {
        seq: u8,
    },
    Nack {
        seq: u8,
    },
    Alive {
        incarnation: u64,
        node: u8,
        meta: Vec<u8>,
    },
    Suspect {
        incarnation: u64,
        node: u8,
        from: u8,
    },
    Dead {
        incarnation: u64,
        node: u8,
        from: u8,
    },
    Prune {
        incarnation: u64,
        node: u8,
    },
    PushPull {
        reply: bool,
        source: u8,
        members: Vec<(u8, u64, u8)>,
        event_clock: u64,
        query_clock: u64,
        events: Vec<(u64, u8, Vec<u8>)>,
    },
    UserEvent {
        ltime: u64,
        name: u8,
        payload: Vec<u8>,
    },
    Query {
        id: u8,
        ltime: u64,
        name: u8,
        payload: Vec<u8>,
        source: u8,
    },
    QueryResponse {
        id: u8,
        ltime: u64,
        from: u8,
        payload: Vec<u8>,
    },
}

/// Node 0 is the node under test; the others are peers it may hear of.
fn node(index: u8) -> NodeAddr {
    let index = index % 6;
    NodeAddr { name: format!("n{index}"), addr: SocketAddr::from(([10, 0, 0, index + 1], 8301)) }
}

fn to_message(msg: Msg) -> Message {
    match msg {
        Msg::Ping { seq, target, source } => {
            Message::Ping { seq: seq.into(), target: node(target).name, source: node(source) }
        }
        Msg::IndirectPing { seq, target, nack, source } => {
            Message::IndirectPing { seq: seq.into(), target: node(target), nack, source: node(source) }
        }
        Msg::Ack { seq } => Message::Ack { seq: seq.into() },
        Msg::Nack { seq } => Message::Nack { seq: seq.into() },
        Msg::Alive { incarnation, node: n, mut meta } => {
            meta.truncate(64);
            Message::Alive { incarnation, node: node(n), meta: Bytes::from(meta) }
        }
        Msg::Suspect { incarnation, node: n, from } => {
            Message::Suspect { incarnation, node: node(n).name, from: node(from).name }
        }
        Msg::Dead { incarnation, node: n, from } => {
            Message::Dead { incarnation, node: node(n).name, from: node(from).name }
        }
        Msg::Prune { incarnation, node: n } => Message::Prune { incarnation, node: node(n).name },
        Msg::UserEvent { ltime, name, mut payload } => {
            payload.truncate(600);
            Message::UserEvent { ltime, name: format!("event-{name}"), payload: Bytes::from(payload) }
        }
        Msg::Query { id, ltime, name, mut payload, source } => {
            payload.truncate(600);
            let names = [
                "_muster_keyring_install",
                "_muster_keyring_use",
                "_muster_keyring_remove",
                "_muster_keyring_list",
                "other",
            ];
            Message::Query {
                id: id.into(),
                ltime,
                name: names[usize::from(name % 5)].into(),
                payload: Bytes::from(payload),
                source: node(source),
                timeout_ms: 1000,
            }
        }
        Msg::QueryResponse { id, ltime, from, mut payload } => {
            payload.truncate(600);
            Message::QueryResponse {
                id: id.into(),
                ltime,
                from: node(from).name,
                payload: Bytes::from(payload),
            }
        }
        Msg::PushPull { reply, source, mut members, event_clock, query_clock, mut events } => {
            members.truncate(8);
            events.truncate(8);
            let events = events
                .into_iter()
                .map(|(ltime, name, mut payload)| {
                    payload.truncate(512);
                    PushPullEvent { ltime, name: format!("e{name}"), payload: Bytes::from(payload) }
                })
                .collect();
            let serf = SerfState { event_clock, query_clock, events };
            let members = members
                .into_iter()
                .map(|(n, incarnation, state)| PushPullMember {
                    node: node(n),
                    meta: Bytes::new(),
                    incarnation,
                    state: [MemberState::Alive, MemberState::Suspect, MemberState::Dead, MemberState::Left]
                        [usize::from(state % 4)],
                })
                .collect();
            Message::PushPull { join: false, reply, source: node(source), members, serf }
        }
    }
}

fuzz_target!(|ops: Vec<Op>| {
    let me = node(0);
    let mut now = Instant::ZERO;
    let Ok(mut subject) =
        Gossip::new(Config::new(&me.name, me.addr, 7), Some(StableState { boot_epoch: 3 }), now)
    else {
        return;
    };
    let mut unacked: Vec<Persist> = Vec::new();
    let mut durable_epoch = 3;
    // Nothing may leave before this life's first write (its boot epoch) is durable.
    let mut booted = false;
    for op in ops {
        match op {
            Op::RawDatagram(bytes) => subject.handle_datagram(now, node(1).addr, &bytes),
            Op::RawFrame(bytes) => subject.handle_stream_frame(now, node(1).addr, &bytes),
            Op::Message { stream, message } => {
                let message = to_message(message);
                if stream {
                    subject.handle_stream_frame(now, node(1).addr, &message.encode_frame());
                } else {
                    let mut datagram = DatagramBuilder::new(DATAGRAM_BYTES_TARGET);
                    if datagram.push_entry(&message.encode_entry()) {
                        subject.handle_datagram(now, node(1).addr, &datagram.finish());
                    }
                }
            }
            Op::Join(peer) => {
                let _ = subject.handle_command(now, Command::Join { peer: node(peer).addr });
            }
            Op::Leave => subject.handle_command(now, Command::Leave).expect("leave never fails"),
            Op::ForceLeave(peer, prune) => {
                let _ = subject.handle_command(now, Command::ForceLeave { name: node(peer).name, prune });
            }
            Op::UpdateMeta(meta) => {
                let _ = subject.handle_command(now, Command::UpdateMeta { meta: Bytes::from(meta) });
            }
            Op::FireEvent(name, payload) => {
                let command =
                    Command::FireEvent { name: format!("event-{name}"), payload: Bytes::from(payload) };
                let _ = subject.handle_command(now, command);
            }
            Op::Keyring(op, key) => {
                let op = [KeyringOp::Install, KeyringOp::Use, KeyringOp::Remove, KeyringOp::List]
                    [usize::from(op % 4)];
                let _ = subject.handle_command(now, Command::Keyring { op, key: Bytes::from(key) });
            }
            Op::Tick(millis) => {
                now = now + Duration::from_millis(millis.into());
                if subject.poll_timeout().is_some_and(|deadline| deadline <= now) {
                    subject.handle_timeout(now);
                }
            }
            Op::Persisted => {
                if !unacked.is_empty() {
                    let persist = unacked.remove(0);
                    durable_epoch = persist.state.boot_epoch;
                    booted = true;
                    subject.on_persisted(now, persist.id);
                }
            }
        }
        while let Some(persist) = subject.poll_persist() {
            unacked.push(persist);
        }
        while let Some(transmit) = subject.poll_transmit() {
            // Persistence ordering: no incarnation of this node leaves before its boot epoch is
            // durable (the node may adopt a later epoch than it booted with, see swim::refute).
            assert!(booted, "sent before the boot epoch was durable");
            let messages = match transmit.channel {
                Channel::Datagram => decode_datagram(&transmit.payload),
                Channel::Stream => Message::decode_frame(&transmit.payload).map(|m| vec![m]),
            }
            .expect("a node sends what it can decode");
            for message in messages {
                for incarnation in message.incarnations_of(&me.name) {
                    assert!(incarnation >> 32 <= u64::from(durable_epoch), "sent an epoch not yet durable");
                }
            }
            assert_ne!(transmit.dst, me.addr, "a node never sends to itself");
        }
        while subject.poll_event().is_some() {}
        assert_eq!(subject.incarnation() >> 32, u64::from(subject.boot_epoch()));
    }
});
