//! Small clusters of [`Server`]s driven by hand over a perfect network and instant disks: each
//! test asserts which caller got which answer. The randomized, fault-injecting runs of the same
//! type live in `muster-sim`.

use std::collections::BTreeSet;

use super::*;
use crate::raft::{Restored, Snapshot};

fn at(millis: u64) -> Instant {
    Instant::from_millis(millis)
}

/// A state machine that keeps every command applied; a snapshot is them joined by newlines.
#[derive(Debug, Default)]
struct Journal {
    applied: Vec<Bytes>,
    restores: u64,
}

impl StateMachine for Journal {
    type Output = usize;

    fn apply(&mut self, _index: Index, command: &Bytes) -> usize {
        self.applied.push(command.clone());
        self.applied.len()
    }

    fn snapshot(&self) -> Bytes {
        Bytes::from(self.applied.iter().map(|c| String::from_utf8_lossy(c)).collect::<Vec<_>>().join("\n"))
    }

    fn restore(&mut self, snapshot: &Snapshot) {
        self.restores += 1;
        self.applied = snapshot
            .data
            .split(|&b| b == b'\n')
            .filter(|c| !c.is_empty())
            .map(Bytes::copy_from_slice)
            .collect();
    }
}

/// Each caller is a number; a reply names it.
type Caller = u32;

struct Net {
    servers: Vec<Server<Journal, Caller>>,
    /// Every reply, in the order the servers gave them: (server, reply).
    replies: Vec<(ServerId, Reply<Caller, usize>)>,
    roles: Vec<(ServerId, RoleChange)>,
    now: Instant,
    blocked: BTreeSet<ServerId>,
    /// What each server made durable, as Raft restores it.
    disks: Vec<Restored>,
}

impl Net {
    fn new(n: u64, adjust: impl Fn(&mut Config)) -> Net {
        let servers = (1..=n)
            .map(|id| {
                let mut config = Config::new(id, 1..=n, id);
                adjust(&mut config);
                Server::new(config, Restored::default(), Journal::default(), at(0)).unwrap()
            })
            .collect();
        let disks = (1..=n).map(|_| Restored::default()).collect();
        Net { servers, replies: Vec::new(), roles: Vec::new(), now: at(0), blocked: BTreeSet::new(), disks }
    }

    fn server(&mut self, id: ServerId) -> &mut Server<Journal, Caller> {
        &mut self.servers[id as usize - 1]
    }

    /// Delivers every output until none is left.
    fn settle(&mut self) {
        let now = self.now;
        loop {
            let mut moved = false;
            for i in 0..self.servers.len() {
                let id = i as ServerId + 1;
                while let Some(persist) = self.servers[i].poll_persist() {
                    moved = true;
                    write(&mut self.disks[i], &persist);
                    self.servers[i].on_persisted(now, persist.id);
                }
                while let Some(transmit) = self.servers[i].poll_transmit() {
                    moved = true;
                    if !self.blocked.contains(&id) && !self.blocked.contains(&transmit.to) {
                        self.server(transmit.to).handle_message(now, id, transmit.message);
                    }
                }
                while let Some(reply) = self.servers[i].poll_reply() {
                    self.replies.push((id, reply));
                }
                while let Some(change) = self.servers[i].poll_role() {
                    self.roles.push((id, change));
                }
            }
            if !moved {
                break;
            }
        }
    }

    /// Advances the clock by `millis`, firing every timer due on the way.
    fn run(&mut self, millis: u64) {
        let until = self.now + Duration::from_millis(millis);
        while self.now < until {
            self.now = self.now + Duration::from_millis(1);
            for i in 0..self.servers.len() {
                if self.servers[i].poll_timeout() <= self.now {
                    let now = self.now;
                    self.servers[i].handle_timeout(now);
                }
            }
            self.settle();
        }
    }

    fn leader(&self) -> Option<ServerId> {
        self.servers.iter().find(|s| s.raft().role() == Role::Leader).map(|s| s.raft().id())
    }

    fn elect(&mut self) -> ServerId {
        for _ in 0..100 {
            if let Some(leader) = self.leader() {
                return leader;
            }
            self.run(50);
        }
        panic!("no leader elected")
    }

    /// The replies given to `caller`.
    fn answers(&self, caller: Caller) -> Vec<&Result<Done<usize>, WriteError>> {
        self.replies.iter().filter(|(_, r)| r.waiter == caller).map(|(_, r)| &r.outcome).collect()
    }
}

/// What a disk holds after `persist`.
fn write(disk: &mut Restored, persist: &Persist) {
    if let Some(snapshot) = &persist.snapshot {
        disk.snapshot = Some(snapshot.clone());
    }
    if let Some(hard) = persist.hard_state {
        disk.hard_state = hard;
    }
    if let Some(from) = persist.truncate_from {
        disk.entries.retain(|e| e.index < from);
    }
    disk.entries.extend(persist.entries.iter().cloned());
}

#[test]
fn a_proposal_at_the_leader_is_answered_once_with_what_the_state_machine_said() {
    let mut net = Net::new(3, |_| {});
    let leader = net.elect();
    let now = net.now;
    net.server(leader).propose(now, Bytes::from_static(b"a"), 1);
    net.server(leader).propose(now, Bytes::from_static(b"b"), 2);
    net.settle();
    let (Ok(Done::Applied { index: first, output: 1 }), Ok(Done::Applied { index: second, output: 2 })) =
        (net.answers(1)[0], net.answers(2)[0])
    else {
        panic!("both applied in order: {:?}", net.replies);
    };
    assert_eq!(*second, first + 1);
    assert_eq!(net.answers(1).len(), 1, "one answer per caller");
    // Every server applied both, and no waiter is left anywhere.
    net.run(200);
    for server in &net.servers {
        assert_eq!(server.state_machine().applied, [Bytes::from_static(b"a"), Bytes::from_static(b"b")]);
        assert_eq!(server.waiting(), 0);
    }
}

#[test]
fn a_follower_refuses_with_the_leader_it_knows() {
    let mut net = Net::new(3, |_| {});
    let leader = net.elect();
    net.run(200);
    let follower = if leader == 1 { 2 } else { 1 };
    let now = net.now;
    net.server(follower).propose(now, Bytes::from_static(b"a"), 7);
    net.server(follower).read(now, 8);
    net.settle();
    let refused = Err(WriteError::Refused(ProposeError::NotLeader { leader_hint: Some(leader) }));
    assert_eq!(net.answers(7), [&refused]);
    assert_eq!(net.answers(8), [&refused]);
}

#[test]
fn a_read_is_answered_with_an_index_covering_every_acknowledged_write() {
    let mut net = Net::new(3, |_| {});
    let leader = net.elect();
    let now = net.now;
    net.server(leader).propose(now, Bytes::from_static(b"a"), 1);
    net.settle();
    let Ok(Done::Applied { index: written, .. }) = net.answers(1)[0] else { panic!("applied") };
    let written = *written;
    let now = net.now;
    net.server(leader).read(now, 2);
    net.run(100);
    let [&Ok(Done::Read { index })] = net.answers(2)[..] else { panic!("read: {:?}", net.replies) };
    assert!(index >= written);
    assert!(net.server(leader).applied() >= index, "the read index is applied when answered");
}

#[test]
fn a_write_whose_entry_another_leader_replaced_is_answered_lost() {
    let mut net = Net::new(3, |_| {});
    let old = net.elect();
    net.run(200);
    net.blocked.insert(old);
    let now = net.now;
    // The first orphan's index goes to the new leader's no-op, the second's to a command.
    net.server(old).propose(now, Bytes::from_static(b"orphan"), 1);
    net.server(old).propose(now, Bytes::from_static(b"orphan"), 3);
    net.settle();
    // The others elect a leader of their own and commit over the orphan's index.
    let mut new = None;
    for _ in 0..100 {
        net.run(50);
        new = net
            .servers
            .iter()
            .map(|s| s.raft())
            .find(|r| r.role() == Role::Leader && r.id() != old)
            .map(|r| r.id());
        if new.is_some() {
            break;
        }
    }
    let new = new.expect("a new leader");
    let now = net.now;
    net.server(new).propose(now, Bytes::from_static(b"kept"), 2);
    net.settle();
    net.blocked.clear();
    net.run(2000);
    assert_eq!(net.answers(1), [&Err(WriteError::Lost)]);
    assert_eq!(net.answers(3), [&Err(WriteError::Lost)], "not the answer to the command at its index");
    assert!(matches!(net.answers(2)[..], [Ok(Done::Applied { .. })]));
    assert!(net
        .roles
        .iter()
        .any(|(id, c)| *id == old && c.previous == Role::Leader && c.role != Role::Leader));
    assert!(!net.server(old).state_machine().applied.contains(&Bytes::from_static(b"orphan")));
}

#[test]
fn the_server_snapshots_its_state_machine_when_raft_asks_and_restores_it_on_restart() {
    let mut net = Net::new(1, |config| {
        config.snapshot_threshold = 4;
        config.snapshot_trailing = 1;
    });
    net.elect();
    for caller in 0..6 {
        let now = net.now;
        net.server(1).propose(now, Bytes::from(format!("c{caller}")), caller);
        net.settle();
    }
    let snapshot_index = net.server(1).raft().snapshot_index();
    assert!(snapshot_index >= 4, "a snapshot was taken: {snapshot_index}");
    let disk = std::mem::take(&mut net.disks[0]);
    assert!(disk.snapshot.as_ref().is_some_and(|s: &Snapshot| s.meta.index == snapshot_index));
    let restarted =
        Server::<Journal, Caller>::new(Config::new(1, [1], 1), disk, Journal::default(), net.now).unwrap();
    let state = restarted.state_machine();
    assert_eq!(state.restores, 1, "restored from the snapshot");
    assert_eq!(restarted.applied(), snapshot_index);
    assert_eq!(
        state.applied.len() as u64,
        snapshot_index - 1,
        "the snapshot holds every command before it (1 is the no-op)"
    );
}
