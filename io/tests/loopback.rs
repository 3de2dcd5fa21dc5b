//! The drive loop over real sockets and a real data directory on loopback.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use muster::drive::{self, CommandRequest, Sockets};
use muster::storage::FileStorage;
use muster_core::gossip::{Command, Config, Event};
use muster_core::swim::{self, MemberEvent, MemberEventKind};
use muster_core::wire::{frame_len, frame_prefix, Message, NodeAddr, FRAME_PREFIX_BYTES};
use muster_core::{Gossip, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// Binds UDP and TCP on the same free loopback port.
async fn bind_pair() -> (Sockets, SocketAddr) {
    for _ in 0..20 {
        let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = udp.local_addr().unwrap();
        if let Ok(tcp) = TcpListener::bind(addr).await {
            return (Sockets { udp, tcp }, addr);
        }
    }
    panic!("no free port pair on loopback");
}

async fn bind_at(addr: SocketAddr) -> Sockets {
    Sockets { udp: UdpSocket::bind(addr).await.unwrap(), tcp: TcpListener::bind(addr).await.unwrap() }
}

struct Running {
    commands: mpsc::Sender<CommandRequest>,
    events: mpsc::UnboundedReceiver<Event>,
    task: JoinHandle<std::io::Result<()>>,
}

fn start(name: &str, sockets: Sockets, addr: SocketAddr, dir: &PathBuf) -> Running {
    start_with(name, sockets, addr, dir, |_| {})
}

/// Starts a node with Consul's -dev timings (failure detection within a second), restored from
/// `dir`, after `configure` has had its say.
fn start_with(
    name: &str,
    sockets: Sockets,
    addr: SocketAddr,
    dir: &PathBuf,
    configure: impl FnOnce(&mut Config),
) -> Running {
    let storage = FileStorage::open(dir).unwrap();
    let restored = storage.load().unwrap();
    let mut config = Config::new(name, addr, 1);
    config.swim = swim::Config::dev();
    configure(&mut config);
    let node = Gossip::new(config, restored, Instant::ZERO).unwrap();
    let (commands, receiver) = mpsc::channel(8);
    let (event_tx, events) = mpsc::unbounded_channel();
    let origin = tokio::time::Instant::now();
    let on_event = move |e| {
        let _ = event_tx.send(e);
    };
    let task = tokio::spawn(drive::run(node, origin, sockets, storage, receiver, on_event, |_| {}));
    Running { commands, events, task }
}

async fn command(running: &Running, command: Command) {
    let (reply, result) = oneshot::channel();
    running.commands.send((command, reply)).await.unwrap();
    result.await.unwrap().unwrap();
}

fn member(kind: MemberEventKind, name: &str, addr: SocketAddr, boot_epoch: u64) -> Event {
    Event::Member(MemberEvent {
        kind,
        node: NodeAddr { name: name.into(), addr },
        incarnation: boot_epoch << 32,
    })
}

async fn expect_event(running: &mut Running, wanted: Event) {
    let wait = async {
        while let Some(event) = running.events.recv().await {
            if event == wanted {
                return;
            }
        }
        panic!("event stream ended before {wanted:?}");
    };
    tokio::time::timeout(Duration::from_secs(10), wait)
        .await
        .unwrap_or_else(|_| panic!("no {wanted:?} within 10 s"));
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("muster-loopback-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

#[tokio::test(flavor = "current_thread")]
async fn agents_join_leave_and_rejoin_with_a_higher_incarnation_from_the_data_dir() {
    let (dir_a, dir_b) = (temp_dir("a"), temp_dir("b"));
    let (sockets_a, addr_a) = bind_pair().await;
    let (sockets_b, addr_b) = bind_pair().await;
    let mut a = start("a", sockets_a, addr_a, &dir_a);
    let mut b = start("b", sockets_b, addr_b, &dir_b);
    command(&b, Command::Join { peer: addr_a }).await;
    expect_event(&mut b, member(MemberEventKind::Join, "a", addr_a, 1)).await;
    expect_event(&mut a, member(MemberEventKind::Join, "b", addr_b, 1)).await;

    // b leaves gracefully, stops, and starts again from its data directory.
    command(&b, Command::Leave).await;
    expect_event(&mut b, Event::Left).await;
    expect_event(&mut a, member(MemberEventKind::Leave, "b", addr_b, 1)).await;
    drop(b.commands);
    b.task.await.unwrap().unwrap();
    assert_eq!(FileStorage::open(&dir_b).unwrap().load().unwrap().unwrap().boot_epoch, 1);
    let b = start("b", bind_at(addr_b).await, addr_b, &dir_b);
    command(&b, Command::Join { peer: addr_a }).await;
    expect_event(&mut a, member(MemberEventKind::Join, "b", addr_b, 2)).await;
    assert_eq!(FileStorage::open(&dir_b).unwrap().load().unwrap().unwrap().boot_epoch, 2);

    drop(a.commands);
    drop(b.commands);
    a.task.await.unwrap().unwrap();
    b.task.await.unwrap().unwrap();
    std::fs::remove_dir_all(dir_a).unwrap();
    std::fs::remove_dir_all(dir_b).unwrap();
}

#[tokio::test(flavor = "current_thread")]
async fn three_agents_detect_a_crashed_one_and_force_leave_it() {
    let names = ["a", "b", "c"];
    let mut agents = Vec::new();
    let mut addrs = Vec::new();
    let mut dirs = Vec::new();
    for name in names {
        let dir = temp_dir(&format!("crash-{name}"));
        let (sockets, addr) = bind_pair().await;
        agents.push(start(name, sockets, addr, &dir));
        addrs.push(addr);
        dirs.push(dir);
    }
    command(&agents[1], Command::Join { peer: addrs[0] }).await;
    command(&agents[2], Command::Join { peer: addrs[0] }).await;
    expect_event(&mut agents[1], member(MemberEventKind::Join, "c", addrs[2], 1)).await;
    expect_event(&mut agents[2], member(MemberEventKind::Join, "b", addrs[1], 1)).await;

    // Crash c: its task and sockets vanish without a word.
    let c = agents.pop().unwrap();
    c.task.abort();
    let _ = c.task.await;
    for agent in agents.iter_mut() {
        expect_event(agent, member(MemberEventKind::Failed, "c", addrs[2], 1)).await;
    }
    command(&agents[0], Command::ForceLeave { name: "c".into(), prune: false }).await;
    for agent in agents.iter_mut() {
        expect_event(agent, member(MemberEventKind::Leave, "c", addrs[2], 1)).await;
    }
    // Pruned (force-leave -prune): both agents forget it now, not at the reap hours later.
    command(&agents[1], Command::ForceLeave { name: "c".into(), prune: true }).await;
    for agent in agents.iter_mut() {
        expect_event(agent, member(MemberEventKind::Reap, "c", addrs[2], 1)).await;
    }
    for agent in agents {
        drop(agent.commands);
        agent.task.await.unwrap().unwrap();
    }
    for dir in dirs {
        std::fs::remove_dir_all(dir).unwrap();
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_ping_over_tcp_is_acked_over_tcp_and_a_bad_frame_only_closes_its_connection() {
    let dir = temp_dir("tcp");
    let (sockets, addr) = bind_pair().await;
    let mut node = start("a", sockets, addr, &dir);
    // No wait for start-up: the ack is held back until the boot incarnation is durable.

    // The test plays a peer whose advertise address is its own TCP listener.
    let (peer_sockets, peer_addr) = bind_pair().await;
    let me = NodeAddr { name: "tester".into(), addr: peer_addr };
    let ping = Message::Ping { seq: 99, target: "a".into(), source: me }.encode_frame();

    // A frame announcing more than the limit is refused before any allocation; the node lives on.
    let mut bad = TcpStream::connect(addr).await.unwrap();
    bad.write_all(&u32::MAX.to_be_bytes()).await.unwrap();
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), bad.read_to_end(&mut rest)).await;
    assert!(matches!(closed, Ok(Ok(0)) | Ok(Err(_))), "the node closes a connection with a bad frame");

    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(&frame_prefix(ping.len())).await.unwrap();
    stream.write_all(&ping).await.unwrap();

    // The ack arrives on a connection the node opens to our advertise address.
    let (mut inbound, _) =
        tokio::time::timeout(Duration::from_secs(5), peer_sockets.tcp.accept()).await.unwrap().unwrap();
    let mut prefix = [0u8; FRAME_PREFIX_BYTES];
    inbound.read_exact(&mut prefix).await.unwrap();
    let mut frame = vec![0u8; frame_len(prefix).unwrap()];
    inbound.read_exact(&mut frame).await.unwrap();
    assert_eq!(Message::decode_frame(&frame).unwrap(), Message::Ack { seq: 99 });
    assert!(node.events.try_recv().is_err(), "a ping alone changes no membership");

    drop(node.commands);
    node.task.await.unwrap().unwrap();
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test(flavor = "current_thread")]
async fn with_encryption_on_a_node_holding_the_wrong_key_cannot_join() {
    let keyed = |name: &str, key: u8, sockets: Sockets, addr: SocketAddr, dir: &PathBuf| {
        start_with(name, sockets, addr, dir, |config| {
            config.encrypt_keys = vec![bytes::Bytes::from(vec![key; 32])]
        })
    };
    let dirs: Vec<PathBuf> = ["ka", "kb", "kc"].iter().map(|n| temp_dir(n)).collect();
    let (sockets_a, addr_a) = bind_pair().await;
    let (sockets_b, addr_b) = bind_pair().await;
    let (sockets_c, addr_c) = bind_pair().await;
    let mut a = keyed("a", 1, sockets_a, addr_a, &dirs[0]);
    let b = keyed("b", 1, sockets_b, addr_b, &dirs[1]);
    let mut c = keyed("c", 2, sockets_c, addr_c, &dirs[2]);
    command(&b, Command::Join { peer: addr_a }).await;
    expect_event(&mut a, member(MemberEventKind::Join, "b", addr_b, 1)).await;
    command(&c, Command::Join { peer: addr_a }).await;
    // Give the wrong-key join ample time; a must never learn of c, nor c of anyone.
    tokio::time::sleep(Duration::from_millis(500)).await;
    while let Ok(event) = a.events.try_recv() {
        assert!(!matches!(&event, Event::Member(m) if m.node.name == "c"), "{event:?}");
    }
    assert!(c.events.try_recv().is_err(), "c joined nobody");
    for agent in [a, b, c] {
        drop(agent.commands);
        agent.task.await.unwrap().unwrap();
    }
    for dir in dirs {
        std::fs::remove_dir_all(dir).unwrap();
    }
}

#[tokio::test(flavor = "current_thread")]
async fn one_source_cannot_hold_more_than_its_share_of_inbound_streams() {
    let dir = temp_dir("per-source");
    let (sockets, addr) = bind_pair().await;
    let node = start("a", sockets, addr, &dir);
    // Idle connections up to the cap are kept open...
    let mut held = Vec::new();
    for _ in 0..drive::STREAMS_PER_SOURCE_MAX {
        held.push(TcpStream::connect(addr).await.unwrap());
    }
    // ... the next one from the same address is closed at once, and the node serves on.
    let mut extra = TcpStream::connect(addr).await.unwrap();
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), extra.read_to_end(&mut rest)).await;
    assert!(matches!(closed, Ok(Ok(0)) | Ok(Err(_))), "the extra stream is closed: {closed:?}");
    let mut first = held.remove(0);
    let mut probe = [0u8; 1];
    let still_open = tokio::time::timeout(Duration::from_millis(200), first.read(&mut probe)).await;
    assert!(still_open.is_err(), "streams within the cap stay open (idle, nothing to read)");
    // Once one closes, a new one is accepted again.
    drop(first);
    // The place is free once the node has seen the close: tried again until then (5 s).
    let mut accepted = false;
    for _ in 0..25 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut again = TcpStream::connect(addr).await.unwrap();
        let waiting = tokio::time::timeout(Duration::from_millis(200), again.read(&mut probe)).await;
        if waiting.is_err() {
            accepted = true;
            held.push(again);
            break;
        }
    }
    assert!(accepted, "a new stream is accepted and kept open once one closed");
    drop(held);
    drop(node.commands);
    node.task.await.unwrap().unwrap();
    std::fs::remove_dir_all(dir).unwrap();
}
