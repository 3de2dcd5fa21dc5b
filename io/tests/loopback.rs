//! The drive loop over real sockets and a real data directory on loopback.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use muster::drive::{self, CommandRequest, Sockets};
use muster::storage::FileStorage;
use muster_core::wire::{frame_len, frame_prefix, Body, Message, FRAME_PREFIX_BYTES};
use muster_core::{Command, Config, Event, Instant, Node};
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
    Sockets {
        udp: UdpSocket::bind(addr).await.unwrap(),
        tcp: TcpListener::bind(addr).await.unwrap(),
    }
}

struct Running {
    commands: mpsc::Sender<CommandRequest>,
    events: mpsc::UnboundedReceiver<Event>,
    task: JoinHandle<std::io::Result<()>>,
}

fn start(sockets: Sockets, addr: SocketAddr, dir: &PathBuf) -> Running {
    let storage = FileStorage::open(dir).unwrap();
    let restored = storage.load().unwrap();
    let node = Node::new(Config::new(addr, 1), restored, Instant::ZERO).unwrap();
    let (commands, receiver) = mpsc::channel(8);
    let (event_tx, events) = mpsc::unbounded_channel();
    let origin = tokio::time::Instant::now();
    let task = tokio::spawn(drive::run(
        node,
        origin,
        sockets,
        storage,
        receiver,
        move |e| {
            let _ = event_tx.send(e);
        },
    ));
    Running {
        commands,
        events,
        task,
    }
}

async fn join(running: &Running, peer: SocketAddr) {
    let (reply, result) = oneshot::channel();
    running
        .commands
        .send((Command::Join { peer }, reply))
        .await
        .unwrap();
    result.await.unwrap().unwrap();
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
async fn two_agents_find_each_other_and_a_restart_is_seen_with_the_persisted_incarnation() {
    let (dir_a, dir_b) = (temp_dir("a"), temp_dir("b"));
    let (sockets_a, addr_a) = bind_pair().await;
    let (sockets_b, addr_b) = bind_pair().await;
    let mut a = start(sockets_a, addr_a, &dir_a);
    let mut b = start(sockets_b, addr_b, &dir_b);
    join(&b, addr_a).await;
    expect_event(
        &mut b,
        Event::PeerReachable {
            peer: addr_a,
            incarnation: 1,
        },
    )
    .await;
    expect_event(
        &mut a,
        Event::PeerReachable {
            peer: addr_b,
            incarnation: 1,
        },
    )
    .await;

    // Stop b cleanly and start it again from its data directory, on the same address.
    drop(b.commands);
    b.task.await.unwrap().unwrap();
    assert_eq!(
        FileStorage::open(&dir_b)
            .unwrap()
            .load()
            .unwrap()
            .unwrap()
            .incarnation,
        1
    );
    let mut b = start(bind_at(addr_b).await, addr_b, &dir_b);
    join(&b, addr_a).await;
    expect_event(
        &mut a,
        Event::PeerRestarted {
            peer: addr_b,
            incarnation: 2,
        },
    )
    .await;
    expect_event(
        &mut b,
        Event::PeerReachable {
            peer: addr_a,
            incarnation: 1,
        },
    )
    .await;
    assert_eq!(
        FileStorage::open(&dir_b)
            .unwrap()
            .load()
            .unwrap()
            .unwrap()
            .incarnation,
        2
    );

    drop(a.commands);
    drop(b.commands);
    a.task.await.unwrap().unwrap();
    b.task.await.unwrap().unwrap();
    std::fs::remove_dir_all(dir_a).unwrap();
    std::fs::remove_dir_all(dir_b).unwrap();
}

#[tokio::test(flavor = "current_thread")]
async fn a_ping_over_tcp_is_acked_over_tcp_and_a_bad_frame_only_closes_its_connection() {
    let dir = temp_dir("tcp");
    let (sockets, addr) = bind_pair().await;
    let mut node = start(sockets, addr, &dir);
    // No wait for start-up: the ack is held back until the boot incarnation is durable.

    // The test plays a peer whose advertise address is its own TCP listener.
    let (peer_sockets, peer_addr) = bind_pair().await;
    let ping = Message {
        sender: peer_addr,
        incarnation: 3,
        body: Body::Ping { seq: 99 },
    }
    .encode();

    // A frame announcing more than the limit is refused before any allocation; the node lives on.
    let mut bad = TcpStream::connect(addr).await.unwrap();
    bad.write_all(&u32::MAX.to_be_bytes()).await.unwrap();
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), bad.read_to_end(&mut rest)).await;
    assert!(
        matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
        "the node closes a connection with a bad frame"
    );

    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(&frame_prefix(ping.len())).await.unwrap();
    stream.write_all(&ping).await.unwrap();
    expect_event(&mut node, Event::PeerDiscovered { peer: peer_addr }).await;

    // The ack arrives on a connection the node opens to our advertise address.
    let (mut inbound, _) = tokio::time::timeout(Duration::from_secs(5), peer_sockets.tcp.accept())
        .await
        .unwrap()
        .unwrap();
    let mut prefix = [0u8; FRAME_PREFIX_BYTES];
    inbound.read_exact(&mut prefix).await.unwrap();
    let mut frame = vec![0u8; frame_len(prefix).unwrap()];
    inbound.read_exact(&mut frame).await.unwrap();
    assert_eq!(
        Message::decode(&frame).unwrap(),
        Message {
            sender: addr,
            incarnation: 1,
            body: Body::Ack { seq: 99 }
        }
    );

    drop(node.commands);
    node.task.await.unwrap().unwrap();
    std::fs::remove_dir_all(dir).unwrap();
}
