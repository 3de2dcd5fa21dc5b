//! Three of the agent's Raft servers (`muster_core::server::Server`, the type the binary and the
//! simulator run), with the fuzzer as the scheduler: which message is delivered, dropped or
//! duplicated, whose timer fires, whose write becomes durable, who crashes and restarts (losing
//! what was not durable), and what clients propose and read.
//!
//! Every message is one a server really sent, so every assertion reached is a bug, not a lie
//! from a peer: each server checks its invariants after every step (feature `invariants`), and
//! the target checks election safety (one leader per term), that every server applies the same
//! command at each index, and that each caller is answered at most once.

#![no_main]

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use arbitrary::Arbitrary;
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use muster_core::raft::{Config, Entry, Index, Message, Persist, Restored, ServerId, Snapshot, Term};
use muster_core::server::{Server, StateMachine};
use muster_core::Instant;

const SERVERS: usize = 3;

#[derive(Debug, Arbitrary)]
enum Op {
    /// Delivers the in-flight message at this position (modulo their number).
    Deliver(u8),
    /// Loses it.
    Drop(u8),
    /// Delivers it and keeps a copy in flight.
    Duplicate(u8),
    /// Advances the clock by this many milliseconds and fires every timer due.
    Tick(u16),
    /// Makes a server's oldest pending write durable.
    Persist(u8),
    Crash(u8),
    Restart(u8),
    Propose(u8, u8),
    Read(u8),
    Transfer(u8, u8),
}

/// Every command applied, by index; a snapshot holds them.
#[derive(Debug, Default)]
struct Journal {
    applied: BTreeMap<Index, Bytes>,
    /// Every entry applied since boot, in order (commands and Raft's own).
    fresh: Vec<Entry>,
}

impl StateMachine for Journal {
    type Output = ();

    fn apply(&mut self, index: Index, command: &Bytes) {
        self.applied.insert(index, command.clone());
    }

    fn snapshot(&self) -> Bytes {
        let mut out = Vec::new();
        for (index, command) in &self.applied {
            out.extend_from_slice(&index.to_be_bytes());
            out.extend_from_slice(&(command.len() as u32).to_be_bytes());
            out.extend_from_slice(command);
        }
        Bytes::from(out)
    }

    fn restore(&mut self, snapshot: &Snapshot) {
        self.applied.clear();
        let mut data = &snapshot.data[..];
        while data.len() >= 12 {
            let index = u64::from_be_bytes(data[..8].try_into().unwrap());
            let len = u32::from_be_bytes(data[8..12].try_into().unwrap()) as usize;
            self.applied.insert(index, Bytes::copy_from_slice(&data[12..12 + len]));
            data = &data[12 + len..];
        }
    }

    fn applying(&mut self, entry: &Entry) {
        self.fresh.push(entry.clone());
    }
}

struct Node {
    server: Option<Server<Journal, u32>>,
    disk: Restored,
    pending: VecDeque<Persist>,
    boots: u64,
    /// How many of its journal's fresh entries the target has checked.
    seen: usize,
}

struct Cluster {
    nodes: Vec<Node>,
    in_flight: Vec<(ServerId, ServerId, Message)>,
    now: Instant,
    next_caller: u32,
    answered: BTreeSet<u32>,
    leaders: BTreeMap<Term, ServerId>,
    /// The entry first applied at each index, anywhere.
    applied: BTreeMap<Index, Entry>,
}

fn config(id: ServerId, seed: u64) -> Config {
    let mut config = Config::new(id, 1..=SERVERS as ServerId, seed);
    // Small enough that snapshots are taken, sent and installed within a short input.
    config.snapshot_threshold = 8;
    config.snapshot_trailing = 2;
    config.snapshot_chunk_bytes = 64;
    config
}

impl Cluster {
    fn new() -> Cluster {
        let mut cluster = Cluster {
            nodes: Vec::new(),
            in_flight: Vec::new(),
            now: Instant::ZERO,
            next_caller: 0,
            answered: BTreeSet::new(),
            leaders: BTreeMap::new(),
            applied: BTreeMap::new(),
        };
        for _ in 0..SERVERS {
            cluster.nodes.push(Node {
                server: None,
                disk: Restored::default(),
                pending: VecDeque::new(),
                boots: 0,
                seen: 0,
            });
        }
        for i in 0..SERVERS {
            cluster.boot(i);
        }
        cluster
    }

    fn boot(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        node.boots += 1;
        node.seen = 0;
        let id = i as ServerId + 1;
        let server = Server::new(config(id, node.boots), node.disk.clone(), Journal::default(), self.now)
            .expect("a valid configuration");
        node.server = Some(server);
        self.drain(i);
    }

    fn drain(&mut self, i: usize) {
        let id = i as ServerId + 1;
        let node = &mut self.nodes[i];
        let Some(server) = node.server.as_mut() else { return };
        while let Some(persist) = server.poll_persist() {
            node.pending.push_back(persist);
        }
        while let Some(transmit) = server.poll_transmit() {
            assert_ne!(transmit.to, id, "a server never sends to itself");
            self.in_flight.push((id, transmit.to, transmit.message));
        }
        while let Some(reply) = server.poll_reply() {
            assert!(self.answered.insert(reply.waiter), "caller {} answered twice", reply.waiter);
        }
        while let Some(change) = server.poll_role() {
            if change.role == muster_core::raft::Role::Leader {
                let first = *self.leaders.entry(change.term).or_insert(id);
                assert_eq!(first, id, "two leaders in term {}", change.term);
            }
        }
        let fresh = server.state_machine().fresh[node.seen..].to_vec();
        node.seen += fresh.len();
        for entry in fresh {
            match self.applied.get(&entry.index) {
                Some(known) => {
                    assert_eq!(known, &entry, "servers applied different entries at {}", entry.index)
                }
                None => {
                    self.applied.insert(entry.index, entry);
                }
            }
        }
    }

    fn step(&mut self, op: Op) {
        let pick = |n: u8| n as usize % SERVERS;
        match op {
            Op::Deliver(k) | Op::Drop(k) | Op::Duplicate(k) if !self.in_flight.is_empty() => {
                let at = k as usize % self.in_flight.len();
                let (from, to, message) = match op {
                    Op::Duplicate(_) => self.in_flight[at].clone(),
                    _ => self.in_flight.swap_remove(at),
                };
                if matches!(op, Op::Drop(_)) {
                    return;
                }
                let i = to as usize - 1;
                if let Some(server) = self.nodes[i].server.as_mut() {
                    server.handle_message(self.now, from, message);
                    self.drain(i);
                }
            }
            Op::Deliver(_) | Op::Drop(_) | Op::Duplicate(_) => {}
            Op::Tick(millis) => {
                self.now = self.now + Duration::from_millis(u64::from(millis));
                for i in 0..SERVERS {
                    let now = self.now;
                    if let Some(server) = self.nodes[i].server.as_mut() {
                        if server.poll_timeout() <= now {
                            server.handle_timeout(now);
                            self.drain(i);
                        }
                    }
                }
            }
            Op::Persist(n) => {
                let i = pick(n);
                let Some(persist) = self.nodes[i].pending.pop_front() else { return };
                write(&mut self.nodes[i].disk, &persist);
                if let Some(server) = self.nodes[i].server.as_mut() {
                    server.on_persisted(self.now, persist.id);
                    self.drain(i);
                }
            }
            Op::Crash(n) => {
                let i = pick(n);
                self.nodes[i].server = None;
                self.nodes[i].pending.clear();
            }
            Op::Restart(n) => {
                let i = pick(n);
                if self.nodes[i].server.is_none() {
                    self.boot(i);
                }
            }
            Op::Propose(n, byte) => {
                let i = pick(n);
                let caller = self.caller();
                if let Some(server) = self.nodes[i].server.as_mut() {
                    server.propose(self.now, Bytes::from(vec![byte]), caller);
                    self.drain(i);
                }
            }
            Op::Read(n) => {
                let i = pick(n);
                let caller = self.caller();
                if let Some(server) = self.nodes[i].server.as_mut() {
                    server.read(self.now, caller);
                    self.drain(i);
                }
            }
            Op::Transfer(n, to) => {
                let i = pick(n);
                if let Some(server) = self.nodes[i].server.as_mut() {
                    let _ = server.transfer_leadership(self.now, pick(to) as ServerId + 1);
                    self.drain(i);
                }
            }
        }
    }

    fn caller(&mut self) -> u32 {
        self.next_caller += 1;
        self.next_caller
    }
}

/// What a disk holds after `persist`.
fn write(disk: &mut Restored, persist: &Persist) {
    if let Some(snapshot) = &persist.snapshot {
        disk.snapshot = Some(snapshot.clone());
        disk.entries.retain(|e| e.index > snapshot.meta.index);
    }
    if let Some(hard) = persist.hard_state {
        disk.hard_state = hard;
    }
    if let Some(from) = persist.truncate_from {
        disk.entries.retain(|e| e.index < from);
    }
    disk.entries.extend(persist.entries.iter().cloned());
}

fuzz_target!(|ops: Vec<Op>| {
    let mut cluster = Cluster::new();
    for op in ops.into_iter().take(4096) {
        cluster.step(op);
    }
});
