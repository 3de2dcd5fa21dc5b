//! Three Raft servers over real TCP on loopback, each with its write-ahead log on disk: they
//! elect a leader and commit pipelined proposals; the leader is killed and the other two carry
//! on; it comes back from its directory and catches up by the leader's snapshot over the wire.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use muster::raft_net::RaftTransport;
use muster::raft_server::{self, RaftHandle, StateMachine};
use muster_core::raft::{Config, Index, Role, ServerId};

mod common;

/// The commands applied, shared with the test.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<Bytes>>>);

impl StateMachine for Log {
    type Output = usize;

    fn apply(&mut self, _index: Index, command: &Bytes) -> usize {
        let mut log = self.0.lock().unwrap();
        log.push(command.clone());
        log.len()
    }

    fn snapshot(&self) -> Bytes {
        let log = self.0.lock().unwrap();
        Bytes::from(log.iter().map(|c| std::str::from_utf8(c).unwrap()).collect::<Vec<_>>().join("\n"))
    }

    fn restore(&mut self, snapshot: &muster_core::raft::Snapshot) {
        let commands = match &snapshot.data[..] {
            [] => Vec::new(),
            data => data.split(|&b| b == b'\n').map(Bytes::copy_from_slice).collect(),
        };
        *self.0.lock().unwrap() = commands;
    }
}

fn dir(test: &str, id: ServerId) -> PathBuf {
    std::env::temp_dir().join(format!("muster-raft-tcp-{test}-{}-{id}", std::process::id()))
}

async fn start(test: &str, id: ServerId, addrs: &[SocketAddr], log: Log) -> RaftHandle<usize> {
    let (mut transport, inbound) = RaftTransport::bind(id, addrs[id as usize - 1]).await.expect("bind");
    for (i, &addr) in addrs.iter().enumerate() {
        transport.set_peer(i as ServerId + 1, addr);
    }
    let mut config = Config::new(id, 1..=3, id);
    config.snapshot_threshold = 64;
    config.snapshot_trailing = 8;
    config.snapshot_chunk_bytes = 256;
    raft_server::start(config, dir(test, id), transport, inbound, log).expect("start")
}

/// Free loopback ports, from below the ephemeral range (see [`common::free_port`]).
fn free_addrs(n: usize) -> Vec<SocketAddr> {
    (0..n).map(|_| SocketAddr::from(([127, 0, 0, 1], common::free_port()))).collect()
}

async fn leader_of(handles: &[Option<RaftHandle<usize>>]) -> usize {
    for _ in 0..200 {
        for (i, handle) in handles.iter().enumerate() {
            if handle.as_ref().is_some_and(|h| h.status().role == Role::Leader) {
                return i;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no leader within 10 s");
}

#[tokio::test(flavor = "current_thread")]
async fn three_servers_over_tcp_survive_the_loss_of_their_leader() {
    for id in 1..=3 {
        let _ = std::fs::remove_dir_all(dir("loss", id));
    }
    let addrs = free_addrs(3);
    let logs: Vec<Log> = (0..3).map(|_| Log::default()).collect();
    let mut handles = Vec::new();
    for id in 1..=3 {
        handles.push(Some(start("loss", id, &addrs, logs[id as usize - 1].clone()).await));
    }
    let leader = leader_of(&handles).await;
    // 200 proposals in flight at once: pipelined appends, group-committed fsyncs.
    let client = handles[leader].as_ref().unwrap().client();
    let mut proposals = tokio::task::JoinSet::new();
    for i in 0..200 {
        let client = client.clone();
        proposals.spawn(async move { client.propose(Bytes::from(format!("a{i}"))).await });
    }
    let mut outputs: Vec<usize> =
        proposals.join_all().await.into_iter().map(|r| r.expect("committed")).collect();
    outputs.sort_unstable();
    assert_eq!(outputs, (1..=200).collect::<Vec<_>>(), "each applied once");
    let mut first: Vec<Bytes> = logs[leader].0.lock().unwrap().clone();
    first.sort_unstable();
    let mut expected_first: Vec<Bytes> = (0..200).map(|i| Bytes::from(format!("a{i}"))).collect();
    expected_first.sort_unstable();
    assert_eq!(first, expected_first);
    handles[leader].as_ref().unwrap().read_barrier().await.expect("a consistent read");

    // Kill the leader; the other two elect one of their own and carry on.
    handles[leader].take().unwrap().stop().await;
    let next = leader_of(&handles).await;
    assert_ne!(next, leader);
    for i in 200..300 {
        handles[next].as_ref().unwrap().propose(Bytes::from(format!("a{i}"))).await.expect("committed");
    }
    // The old leader returns from its directory; the log it missed was compacted behind a
    // snapshot, which reaches it in chunks.
    let back = start("loss", leader as ServerId + 1, &addrs, logs[leader].clone()).await;
    handles[leader] = Some(back);
    let mut expected = logs[next].0.lock().unwrap().clone();
    assert_eq!(expected.len(), 300);
    expected.truncate(200);
    expected.extend((200..300).map(|i| Bytes::from(format!("a{i}"))));
    for _ in 0..200 {
        if logs.iter().all(|log| *log.0.lock().unwrap() == expected) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for (i, log) in logs.iter().enumerate() {
        assert_eq!(*log.0.lock().unwrap(), expected, "server {}", i + 1);
    }
    let returned = handles[leader].as_ref().unwrap().status();
    assert_eq!(returned.stats.snapshots_installed, 1, "{returned:?}");
    for handle in handles.into_iter().flatten() {
        handle.stop().await;
    }
    for id in 1..=3 {
        let _ = std::fs::remove_dir_all(dir("loss", id));
    }
}

/// The operator's tools on a live cluster: a follower is removed from the configuration (Consul's
/// `operator raft remove-peer`) and the two left go on committing; leadership is then handed to
/// the other one (`operator raft transfer-leader`); what the core refuses comes back as errors.
#[tokio::test(flavor = "current_thread")]
async fn a_peer_is_removed_and_leadership_is_handed_over() {
    use muster::raft_server::WriteError;
    use muster_core::raft::{MembershipChange, ProposeError};
    for id in 1..=3 {
        let _ = std::fs::remove_dir_all(dir("peers", id));
    }
    let addrs = free_addrs(3);
    let mut handles = Vec::new();
    for id in 1..=3 {
        handles.push(Some(start("peers", id, &addrs, Log::default()).await));
    }
    let leader = leader_of(&handles).await;
    let client = handles[leader].as_ref().unwrap().client();
    client.propose(Bytes::from_static(b"first")).await.expect("committed");
    let removed = (leader + 1) % 3;
    let kept = (leader + 2) % 3;
    client.change_membership(MembershipChange::Remove(removed as ServerId + 1)).await.expect("removed");
    let voters: Vec<ServerId> = client.membership().voters.into_iter().collect();
    let mut expected = vec![leader as ServerId + 1, kept as ServerId + 1];
    expected.sort_unstable();
    assert_eq!(voters, expected);
    // The removed server is gone for good: stopping it costs the cluster nothing.
    handles[removed].take().unwrap().stop().await;
    client.propose(Bytes::from_static(b"after")).await.expect("two of two commit");
    assert_eq!(
        client.change_membership(MembershipChange::Remove(removed as ServerId + 1)).await,
        Err(WriteError::Refused(ProposeError::Membership("not a member")))
    );
    assert_eq!(
        client.transfer_leadership(leader as ServerId + 1).await,
        Err(WriteError::Refused(ProposeError::NotAVoter(leader as ServerId + 1)))
    );
    client.transfer_leadership(kept as ServerId + 1).await.expect("transfer started");
    let mut next = handles[kept].as_ref().unwrap().client();
    let status = tokio::time::timeout(Duration::from_secs(10), next.wait_for(|s| s.role == Role::Leader))
        .await
        .expect("the transfer completes within 10 s")
        .unwrap();
    assert_eq!(status.leader, Some(kept as ServerId + 1));
    next.propose(Bytes::from_static(b"new leader")).await.expect("committed");
    for handle in handles.into_iter().flatten() {
        handle.stop().await;
    }
    for id in 1..=3 {
        let _ = std::fs::remove_dir_all(dir("peers", id));
    }
}
