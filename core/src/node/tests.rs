use std::time::Duration;

use super::*;
use crate::wire::Body;

fn addr(last: u8) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, last], 8301))
}

fn joined_node(restored: Option<StableState>) -> Node {
    let mut node = Node::new(Config::new(addr(1), 5), restored, Instant::ZERO).unwrap();
    node.handle_command(Instant::ZERO, Command::Join { peer: addr(2) })
        .unwrap();
    node
}

#[test]
fn nothing_is_sent_before_the_boot_incarnation_is_durable() {
    let mut node = joined_node(None);
    let persist = node.poll_persist().expect("boot persist");
    assert_eq!(persist.state, StableState { incarnation: 1 });
    assert_eq!(node.poll_persist(), None);

    // The first round's ping is produced but held back.
    let round = node.poll_timeout().unwrap();
    node.handle_timeout(round);
    assert_eq!(node.poll_transmit(), None);

    node.on_persisted(round, persist.id);
    let ping = node
        .poll_transmit()
        .expect("released by the acknowledgement");
    assert_eq!(ping.dst, addr(2));
    assert_eq!(
        Message::decode(&ping.payload).unwrap(),
        Message {
            sender: addr(1),
            incarnation: 1,
            body: Body::Ping { seq: 0 }
        }
    );
    assert_eq!(node.poll_transmit(), None);
}

#[test]
fn a_restarted_node_takes_the_next_incarnation() {
    let mut node = joined_node(Some(StableState { incarnation: 41 }));
    assert_eq!(node.incarnation(), 42);
    assert_eq!(
        node.poll_persist().unwrap().state,
        StableState { incarnation: 42 }
    );
    let exhausted = Node::new(
        Config::new(addr(1), 5),
        Some(StableState {
            incarnation: u64::MAX,
        }),
        Instant::ZERO,
    );
    assert_eq!(exhausted.unwrap_err(), ConfigError::IncarnationExhausted);
}

#[test]
fn garbage_input_is_counted_and_changes_nothing() {
    let mut node = joined_node(None);
    let persist = node.poll_persist().unwrap();
    node.on_persisted(Instant::ZERO, persist.id);
    let deadline = node.poll_timeout();
    for garbage in [&b""[..], &[1], &[1, 1, 9, 9], &[0xFF; 100]] {
        node.handle_datagram(Instant::ZERO, addr(3), garbage);
        node.handle_stream_frame(Instant::ZERO, addr(3), garbage);
    }
    assert_eq!(node.stats().decode_errors, 8);
    assert_eq!(node.stats().messages_received, 8);
    assert_eq!(node.poll_transmit(), None);
    assert_eq!(node.poll_event(), None);
    assert_eq!(node.poll_timeout(), deadline);
    assert_eq!(
        node.peers().map(|(a, _, _)| a).collect::<Vec<_>>(),
        vec![addr(2)]
    );
}

#[test]
fn invalid_config_is_refused() {
    let mut config = Config::new(addr(1), 5);
    config.ping.ping_timeout = Duration::ZERO;
    assert!(matches!(
        Node::new(config, None, Instant::ZERO),
        Err(ConfigError::Ping(_))
    ));
}

#[test]
#[should_panic(expected = "time went backwards")]
fn time_going_backwards_is_a_driver_bug() {
    let mut node = joined_node(None);
    node.handle_timeout(Instant::from_millis(10));
    node.handle_timeout(Instant::from_millis(9));
}

#[test]
#[should_panic(expected = "acknowledged in order")]
fn acknowledging_a_persist_twice_is_a_driver_bug() {
    let mut node = joined_node(None);
    let persist = node.poll_persist().unwrap();
    node.on_persisted(Instant::ZERO, persist.id);
    node.on_persisted(Instant::ZERO, persist.id);
}
