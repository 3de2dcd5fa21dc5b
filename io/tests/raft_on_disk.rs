//! Raft over the real write-ahead log: three servers in one process, each persisting through
//! its own `Wal` on disk (appended and fdatasynced before being acknowledged), elect a leader
//! and commit commands; then every server stops at once and starts again from its directory.
//! A leader returns and every acknowledged command is there, in order, on every server.

use std::collections::VecDeque;
use std::path::PathBuf;

use bytes::Bytes;
use muster::wal::Wal;
use muster_core::raft::{Config, Entry, Payload, Raft, Role, ServerId, Transmit};
use muster_core::Instant;

struct Server {
    raft: Raft,
    wal: Wal,
    applied: Vec<Entry>,
}

fn dir(id: ServerId) -> PathBuf {
    std::env::temp_dir().join(format!("muster-raft-on-disk-{}-{id}", std::process::id()))
}

fn start(id: ServerId, now: Instant) -> Server {
    let (wal, restored) = Wal::open(dir(id)).expect("the log opens");
    let raft = Raft::new(Config::new(id, 1..=3, id), restored, now).expect("valid config");
    Server { raft, wal, applied: Vec::new() }
}

/// Persists (append + fdatasync, then acknowledge), applies and delivers until nothing moves.
fn settle(servers: &mut [Server], now: Instant) {
    let mut queue: VecDeque<(ServerId, Transmit)> = VecDeque::new();
    loop {
        for server in servers.iter_mut() {
            let mut newest = None;
            while let Some(persist) = server.raft.poll_persist() {
                server.wal.append(&persist).expect("append");
                newest = Some(persist.id);
            }
            if let Some(id) = newest {
                server.wal.sync().expect("fdatasync");
                server.raft.on_persisted(now, id);
            }
            while let Some(entry) = server.raft.poll_apply() {
                server.applied.push(entry);
            }
            while server.raft.poll_event().is_some() {}
            let from = server.raft.id();
            while let Some(transmit) = server.raft.poll_transmit() {
                queue.push_back((from, transmit));
            }
        }
        if queue.is_empty() {
            return;
        }
        while let Some((from, transmit)) = queue.pop_front() {
            servers[transmit.to as usize - 1].raft.handle_message(now, from, transmit.message);
        }
    }
}

/// Runs timers until a leader exists; returns it and the time reached.
fn elect(servers: &mut [Server], mut now: Instant) -> (usize, Instant) {
    for _ in 0..1000 {
        settle(servers, now);
        if let Some(leader) = servers.iter().position(|s| s.raft.role() == Role::Leader) {
            return (leader, now);
        }
        now = servers.iter().map(|s| s.raft.poll_timeout()).min().expect("servers").max(now);
        for server in servers.iter_mut() {
            if server.raft.poll_timeout() <= now {
                server.raft.handle_timeout(now);
            }
        }
    }
    panic!("no leader");
}

fn commands(entries: &[Entry]) -> Vec<Bytes> {
    entries
        .iter()
        .filter_map(|e| match &e.payload {
            Payload::Command(bytes) => Some(bytes.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn a_full_cluster_restart_from_disk_keeps_every_committed_command() {
    for id in 1..=3 {
        let _ = std::fs::remove_dir_all(dir(id));
    }
    let mut servers: Vec<Server> = (1..=3).map(|id| start(id, Instant::ZERO)).collect();
    let (leader, now) = elect(&mut servers, Instant::ZERO);
    let mut written = Vec::new();
    for i in 0..100u32 {
        let command = Bytes::from(format!("put k{i} v{i}"));
        servers[leader].raft.propose(now, command.clone()).expect("the leader takes proposals");
        written.push(command);
        if i % 10 == 9 {
            settle(&mut servers, now);
        }
    }
    settle(&mut servers, now);
    assert_eq!(commands(&servers[leader].applied), written, "committed before the restart");

    // Every server stops at once; nothing survives but the directories.
    drop(servers);
    let later = Instant::from_nanos(now.as_nanos() + 1_000_000_000);
    let mut servers: Vec<Server> = (1..=3).map(|id| start(id, later)).collect();
    for server in &servers {
        assert_eq!(
            commands(
                &(1..=server.raft.last_index())
                    .map(|i| server.raft.entry(i).unwrap().clone())
                    .collect::<Vec<_>>()
            ),
            written
        );
    }
    let (leader, now) = elect(&mut servers, later);
    servers[leader].raft.propose(now, Bytes::from_static(b"after")).expect("writes resume");
    settle(&mut servers, now);
    // The next heartbeat carries the new commit index to the followers.
    let heartbeat = servers[leader].raft.poll_timeout();
    for server in servers.iter_mut() {
        if server.raft.poll_timeout() <= heartbeat {
            server.raft.handle_timeout(heartbeat);
        }
    }
    settle(&mut servers, heartbeat);
    let mut expected = written.clone();
    expected.push(Bytes::from_static(b"after"));
    for server in &servers {
        assert_eq!(commands(&server.applied), expected, "server {}", server.raft.id());
    }
    for id in 1..=3 {
        let _ = std::fs::remove_dir_all(dir(id));
    }
}
