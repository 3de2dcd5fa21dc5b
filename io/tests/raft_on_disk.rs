//! Raft over the real write-ahead log: three servers in one process, each persisting through
//! its own `Wal` on disk (snapshot files written and renamed, records appended and fdatasynced,
//! before being acknowledged), elect a leader and commit commands while snapshots compact the
//! log; one server, down meanwhile, catches up by the leader's snapshot; then every server
//! stops at once and starts again from its directory. A leader returns and every acknowledged
//! command is there, in order, on every server.

use std::collections::VecDeque;
use std::path::PathBuf;

use bytes::Bytes;
use muster::wal::Wal;
use muster_core::raft::{Apply, Config, Event, Payload, Raft, Role, ServerId, Transmit};
use muster_core::Instant;

/// Small segments and a low snapshot threshold, so a hundred commands rotate, snapshot and
/// delete segments.
const SEGMENT_BYTES: u64 = 1024;

struct Server {
    raft: Raft,
    wal: Wal,
    /// The state machine: the commands applied, in order.
    state: Vec<Bytes>,
    applied: u64,
}

fn dir(id: ServerId) -> PathBuf {
    std::env::temp_dir().join(format!("muster-raft-on-disk-{}-{id}", std::process::id()))
}

fn start(id: ServerId, now: Instant) -> Server {
    let (wal, restored) = Wal::open_with_segment_size(dir(id), SEGMENT_BYTES).expect("the log opens");
    let mut config = Config::new(id, 1..=3, id);
    config.snapshot_threshold = 16;
    config.snapshot_trailing = 4;
    config.snapshot_chunk_bytes = 64;
    let raft = Raft::new(config, restored, now).expect("the stored state is consistent");
    Server { raft, wal, state: Vec::new(), applied: 0 }
}

/// Persists (snapshot, append + fdatasync, then acknowledge), applies, snapshots when asked and
/// delivers until nothing moves. Messages to servers that are down are lost.
fn settle(servers: &mut [Option<Server>], now: Instant) {
    let mut queue: VecDeque<(ServerId, Transmit)> = VecDeque::new();
    loop {
        for server in servers.iter_mut().flatten() {
            let mut newest = None;
            while let Some(persist) = server.raft.poll_persist() {
                server.wal.append(&persist).expect("append");
                newest = Some(persist.id);
            }
            if let Some(id) = newest {
                server.wal.sync().expect("fdatasync");
                server.raft.on_persisted(now, id);
            }
            while let Some(apply) = server.raft.poll_apply() {
                match apply {
                    Apply::Entry(entry) => {
                        server.applied = entry.index;
                        if let Payload::Command(command) = entry.payload {
                            server.state.push(command);
                        }
                    }
                    Apply::Snapshot(snapshot) => {
                        server.applied = snapshot.meta.index;
                        server.state = decode_state(&snapshot.data);
                    }
                }
            }
            while let Some(event) = server.raft.poll_event() {
                if let Event::SnapshotDue { .. } = event {
                    let data = encode_state(&server.state);
                    server.raft.snapshot_taken(now, server.applied, data).expect("nothing newer is held");
                }
            }
            let from = server.raft.id();
            while let Some(transmit) = server.raft.poll_transmit() {
                queue.push_back((from, transmit));
            }
        }
        if queue.is_empty() {
            return;
        }
        while let Some((from, transmit)) = queue.pop_front() {
            if let Some(to) = &mut servers[transmit.to as usize - 1] {
                to.raft.handle_message(now, from, transmit.message);
            }
        }
    }
}

/// Runs timers until `until` (or, with `until_leader`, until a leader exists); returns the
/// leader, if any, and the time reached.
fn run(
    servers: &mut [Option<Server>],
    mut now: Instant,
    until: Instant,
    until_leader: bool,
) -> (Option<usize>, Instant) {
    loop {
        settle(servers, now);
        let leader = servers.iter().position(|s| s.as_ref().is_some_and(|s| s.raft.role() == Role::Leader));
        if (until_leader && leader.is_some()) || now >= until {
            return (leader, now);
        }
        let next = servers.iter().flatten().map(|s| s.raft.poll_timeout()).min().expect("servers");
        now = next.max(now).min(until);
        for server in servers.iter_mut().flatten() {
            if server.raft.poll_timeout() <= now {
                server.raft.handle_timeout(now);
            }
        }
    }
}

fn seconds(now: Instant, seconds: u64) -> Instant {
    Instant::from_nanos(now.as_nanos() + seconds * 1_000_000_000)
}

fn encode_state(commands: &[Bytes]) -> Bytes {
    Bytes::from(commands.iter().map(|c| std::str::from_utf8(c).unwrap()).collect::<Vec<_>>().join("\n"))
}

fn decode_state(data: &[u8]) -> Vec<Bytes> {
    match data {
        [] => Vec::new(),
        data => data.split(|&b| b == b'\n').map(Bytes::copy_from_slice).collect(),
    }
}

fn files(id: ServerId, prefix: &str) -> usize {
    std::fs::read_dir(dir(id))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name().to_str().unwrap().starts_with(prefix))
        .count()
}

#[test]
fn a_full_cluster_restart_from_disk_keeps_every_committed_command() {
    for id in 1..=3 {
        let _ = std::fs::remove_dir_all(dir(id));
    }
    // Server 3 is down while the commands are written: it will need the leader's snapshot.
    let mut servers: Vec<Option<Server>> =
        vec![Some(start(1, Instant::ZERO)), Some(start(2, Instant::ZERO)), None];
    let (leader, now) = run(&mut servers, Instant::ZERO, seconds(Instant::ZERO, 30), true);
    let leader = leader.expect("a leader");
    let mut written = Vec::new();
    for i in 0..100u32 {
        let command = Bytes::from(format!("put k{i} v{i}"));
        servers[leader]
            .as_mut()
            .unwrap()
            .raft
            .propose(now, command.clone())
            .expect("the leader takes proposals");
        written.push(command);
        settle(&mut servers, now);
    }
    let (_, now) = run(&mut servers, now, seconds(now, 1), false);
    for server in servers.iter().flatten() {
        assert_eq!(server.state, written, "committed before the restart");
        assert!(server.raft.snapshot_index() >= 96, "snapshots every 16 entries");
        assert_eq!(files(server.raft.id(), "snapshot-"), 2, "the newest two snapshots are kept");
        assert!(
            server.wal.segments() < 4,
            "segments behind the snapshot were deleted: {}",
            server.wal.segments()
        );
    }

    servers[2] = Some(start(3, now));
    let (_, now) = run(&mut servers, now, seconds(now, 3), false);
    let behind = servers[2].as_ref().unwrap();
    assert_eq!(behind.raft.stats().snapshots_installed, 1, "caught up by the snapshot");
    assert_eq!(behind.state, written);

    // Every server stops at once; nothing survives but the directories.
    drop(servers);
    let later = seconds(now, 1);
    let mut servers: Vec<Option<Server>> = (1..=3).map(|id| Some(start(id, later))).collect();
    settle(&mut servers, later);
    for server in servers.iter().flatten() {
        // The snapshot is loaded at once; the entries after it wait for a leader's commit.
        let restored = server.state.len();
        assert!(
            restored >= 80 && written.starts_with(&server.state),
            "server {}: {restored}",
            server.raft.id()
        );
    }
    let (leader, now) = run(&mut servers, later, seconds(later, 30), true);
    let leader = leader.expect("a leader returns");
    servers[leader].as_mut().unwrap().raft.propose(now, Bytes::from_static(b"after")).expect("writes resume");
    let (_, _) = run(&mut servers, now, seconds(now, 1), false);
    let mut expected = written.clone();
    expected.push(Bytes::from_static(b"after"));
    for server in servers.iter().flatten() {
        assert_eq!(server.state, expected, "server {}", server.raft.id());
    }
    for id in 1..=3 {
        let _ = std::fs::remove_dir_all(dir(id));
    }
}
