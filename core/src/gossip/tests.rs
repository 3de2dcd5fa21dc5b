use std::time::Duration;

use super::*;
use crate::swim::{MemberEventKind, State, Status};
use crate::wire::DatagramBuilder;

fn addr(last: u8) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, last], 8301))
}

fn booted(name: &str, last: u8, restored: Option<StableState>) -> Gossip {
    let mut node =
        Gossip::new(Config::new(name, addr(last), u64::from(last)), restored, Instant::ZERO).unwrap();
    let persist = node.poll_persist().expect("boot persist");
    node.on_persisted(Instant::ZERO, persist.id);
    node
}

/// Delivers every transmit between `nodes` (indexed by the last address byte minus one) until
/// none is left.
fn exchange(now: Instant, nodes: &mut [Gossip]) {
    loop {
        let mut moved = false;
        for i in 0..nodes.len() {
            while let Some(t) = nodes[i].poll_transmit() {
                moved = true;
                let from = nodes[i].advertise();
                let to = nodes.iter().position(|n| n.advertise() == t.dst).expect("known destination");
                match t.channel {
                    Channel::Datagram => nodes[to].handle_datagram(now, from, &t.payload),
                    Channel::Stream => nodes[to].handle_stream_frame(now, from, &t.payload),
                }
            }
        }
        if !moved {
            return;
        }
    }
}

#[test]
fn nothing_is_sent_before_the_boot_epoch_is_durable() {
    let mut node = Gossip::new(Config::new("a", addr(1), 5), None, Instant::ZERO).unwrap();
    let persist = node.poll_persist().expect("boot persist");
    assert_eq!(persist.state, StableState { boot_epoch: 1 });
    assert_eq!(node.poll_persist(), None);

    node.handle_command(Instant::ZERO, Command::Join { peer: addr(2) }).unwrap();
    assert_eq!(node.poll_transmit(), None, "the join is held back");

    node.on_persisted(Instant::ZERO, persist.id);
    let join = node.poll_transmit().expect("released by the acknowledgement");
    assert_eq!((join.dst, join.channel), (addr(2), Channel::Stream));
    match Message::decode_frame(&join.payload).unwrap() {
        Message::PushPull { join: true, reply: false, source, members, serf } => {
            assert_eq!(serf, crate::wire::SerfState::default(), "no events yet, clocks at zero");
            assert_eq!(source, NodeAddr { name: "a".into(), addr: addr(1) });
            assert_eq!(members.len(), 1, "only itself");
            assert_eq!(members[0].incarnation, 1 << 32);
        }
        other => panic!("expected a push/pull, got {other:?}"),
    }
}

#[test]
fn a_restarted_node_takes_the_next_boot_epoch_and_outranks_its_past() {
    let node = booted("a", 1, Some(StableState { boot_epoch: 41 }));
    assert_eq!(node.boot_epoch(), 42);
    assert_eq!(node.incarnation(), 42 << 32);
    let exhausted =
        Gossip::new(Config::new("a", addr(1), 5), Some(StableState { boot_epoch: u32::MAX }), Instant::ZERO);
    assert_eq!(exhausted.unwrap_err(), ConfigError::BootEpochExhausted);
}

#[test]
fn a_node_back_with_a_fresh_data_dir_adopts_an_epoch_above_its_remembered_life() {
    // "a" lived in epoch 6 and comes back with no state: it boots in epoch 1, below what "b"
    // remembers. b's push/pull reply names a's old life at a's own address, so a adopts epoch 7,
    // persists it, and sends nothing more until that is durable.
    let mut a = booted("a", 1, None);
    let mut b = booted("b", 2, Some(StableState { boot_epoch: 2 }));
    let old_life = Message::Alive {
        incarnation: 6 << 32 | 3,
        node: NodeAddr { name: "a".into(), addr: addr(1) },
        meta: Bytes::new(),
    };
    let mut datagram = DatagramBuilder::new(DATAGRAM_BYTES_TARGET);
    datagram.push_entry(&old_life.encode_entry());
    b.handle_datagram(Instant::ZERO, addr(1), &datagram.finish());
    assert_eq!(b.member("a").unwrap().incarnation, 6 << 32 | 3);
    let _ = std::iter::from_fn(|| b.poll_transmit()).count();

    a.handle_command(Instant::ZERO, Command::Join { peer: addr(2) }).unwrap();
    let join = a.poll_transmit().unwrap();
    b.handle_stream_frame(Instant::ZERO, addr(1), &join.payload);
    let reply = b.poll_transmit().unwrap();
    a.handle_stream_frame(Instant::ZERO, addr(2), &reply.payload);

    assert_eq!(a.boot_epoch(), 7);
    assert_eq!(a.incarnation(), 7 << 32);
    let persist = a.poll_persist().expect("the adopted epoch is persisted");
    assert_eq!(persist.state, StableState { boot_epoch: 7 });
    a.handle_timeout(Instant::ZERO + Duration::from_secs(1));
    assert_eq!(a.poll_transmit(), None, "held until the epoch is durable");
    a.on_persisted(Instant::ZERO + Duration::from_secs(1), persist.id);
    let mut nodes = vec![a, b];
    exchange(Instant::ZERO + Duration::from_secs(1), &mut nodes);
    for _ in 0..10 {
        let now = Instant::ZERO + Duration::from_secs(2);
        nodes.iter_mut().for_each(|n| n.handle_timeout(now));
        exchange(now, &mut nodes);
    }
    let view = nodes[1].member("a").unwrap();
    assert_eq!((view.state, view.incarnation), (State::Alive, 7 << 32));
}

#[test]
fn a_later_epoch_claimed_for_another_address_is_ignored() {
    // Another node using our name, or a forgery: adopting its epoch would start an epoch race.
    let mut a = booted("a", 1, None);
    let impostor = Message::Alive {
        incarnation: 9 << 32,
        node: NodeAddr { name: "a".into(), addr: addr(9) },
        meta: Bytes::new(),
    };
    let mut datagram = DatagramBuilder::new(DATAGRAM_BYTES_TARGET);
    datagram.push_entry(&impostor.encode_entry());
    a.handle_datagram(Instant::ZERO, addr(9), &datagram.finish());
    assert_eq!((a.boot_epoch(), a.incarnation()), (1, 1 << 32));
    assert_eq!(a.poll_persist(), None);
}

#[test]
fn join_exchanges_state_both_ways() {
    let mut nodes = vec![booted("a", 1, None), booted("b", 2, None), booted("c", 3, None)];
    nodes[1].handle_command(Instant::ZERO, Command::Join { peer: addr(1) }).unwrap();
    exchange(Instant::ZERO, &mut nodes);
    nodes[2].handle_command(Instant::ZERO, Command::Join { peer: addr(1) }).unwrap();
    exchange(Instant::ZERO, &mut nodes);
    // c learned b from a's push/pull reply; b learns c by gossip later.
    let names = |n: &Gossip| n.members().map(|m| m.node.name).collect::<Vec<_>>();
    assert_eq!(names(&nodes[0]), ["b", "c"]);
    assert_eq!(names(&nodes[2]), ["a", "b"]);
    let events: Vec<_> = std::iter::from_fn(|| nodes[2].poll_event()).collect();
    assert_eq!(events.len(), 2);
    assert!(events.iter().all(|e| matches!(e, Event::Member(m) if m.kind == MemberEventKind::Join)));
}

#[test]
fn garbage_input_is_counted_and_changes_nothing() {
    let mut node = booted("a", 1, None);
    let deadline = node.poll_timeout();
    let mut empty = DatagramBuilder::new(64);
    empty.push_entry(&[3, 0, 4, 0, 0, 0, 1]);
    let valid_datagram = empty.finish();
    let mut truncated = valid_datagram.to_vec();
    truncated.pop();
    for garbage in [&b""[..], &[1], &[1, 1, 9, 9], &[0xFF; 100], &truncated] {
        node.handle_datagram(Instant::ZERO, addr(3), garbage);
        node.handle_stream_frame(Instant::ZERO, addr(3), garbage);
    }
    assert_eq!(node.stats().decode_errors, 10);
    assert_eq!(node.poll_transmit(), None);
    assert_eq!(node.poll_event(), None);
    assert_eq!(node.poll_timeout(), deadline);
    assert_eq!(node.members().count(), 0);
    // The valid one decodes (an unmatched ack) and is counted as such.
    node.handle_datagram(Instant::ZERO, addr(3), &valid_datagram);
    assert_eq!(node.stats().swim.acks_unmatched, 1);
}

#[test]
fn invalid_config_is_refused() {
    let mut config = Config::new("a", addr(1), 5);
    config.swim.probe_timeout = Duration::ZERO;
    assert!(matches!(Gossip::new(config, None, Instant::ZERO), Err(ConfigError::Swim(_))));
    let nameless = Config::new("", addr(1), 5);
    assert_eq!(
        Gossip::new(nameless, None, Instant::ZERO).unwrap_err(),
        ConfigError::NodeName { len: 0, max: 255 }
    );
    let mut fat = Config::new("a", addr(1), 5);
    fat.meta = Bytes::from(vec![0u8; 513]);
    assert_eq!(
        Gossip::new(fat, None, Instant::ZERO).unwrap_err(),
        ConfigError::MetaTooLarge { len: 513, max: 512 }
    );
}

#[test]
fn refused_commands_change_nothing() {
    let mut node = booted("a", 1, None);
    assert_eq!(
        node.handle_command(Instant::ZERO, Command::Join { peer: addr(1) }),
        Err(CommandError::IsSelf { peer: addr(1) })
    );
    assert_eq!(
        node.handle_command(Instant::ZERO, Command::ForceLeave { name: "ghost".into(), prune: false }),
        Err(CommandError::NotFailed { name: "ghost".into() })
    );
    assert_eq!(node.poll_transmit(), None);
    assert_eq!(node.poll_event(), None);
}

#[test]
fn leaving_alone_completes_at_once_and_the_node_goes_quiet() {
    let mut node = booted("a", 1, None);
    node.handle_command(Instant::ZERO, Command::Leave).unwrap();
    assert_eq!(node.poll_event(), Some(Event::Left));
    assert_eq!(node.poll_event(), None);
    assert!(node.has_left());
    assert_eq!(node.poll_timeout(), None);
}

#[test]
fn leave_is_gossiped_and_peers_see_left() {
    let mut nodes = vec![booted("a", 1, None), booted("b", 2, None)];
    nodes[1].handle_command(Instant::ZERO, Command::Join { peer: addr(1) }).unwrap();
    exchange(Instant::ZERO, &mut nodes);
    assert_eq!(nodes[1].status(), Status::Alive);
    nodes[1].handle_command(Instant::ZERO, Command::Leave).unwrap();
    assert_eq!(nodes[1].status(), Status::Leaving, "while the leave goes out");
    let mut now = Instant::ZERO;
    while !nodes[1].has_left() {
        now = nodes.iter().filter_map(Gossip::poll_timeout).min().unwrap();
        for node in nodes.iter_mut() {
            if node.poll_timeout().is_some_and(|t| t <= now) {
                node.handle_timeout(now);
            }
        }
        exchange(now, &mut nodes);
    }
    assert_eq!(nodes[0].member("b").unwrap().state, State::Left);
    assert_eq!(nodes[0].member("b").unwrap().status(), Status::Left);
    assert_eq!((Status::Left.as_str(), Status::Left.code()), ("left", 3));
    assert_eq!(nodes[1].status(), Status::Left);
    assert!(now < Instant::ZERO + Duration::from_secs(5), "left before the leave timeout: {now:?}");
}

#[test]
#[should_panic(expected = "time went backwards")]
fn time_going_backwards_is_a_driver_bug() {
    let mut node = booted("a", 1, None);
    node.handle_timeout(Instant::from_millis(10));
    node.handle_timeout(Instant::from_millis(9));
}

#[test]
#[should_panic(expected = "acknowledged in order")]
fn acknowledging_a_persist_twice_is_a_driver_bug() {
    let mut node = Gossip::new(Config::new("a", addr(1), 5), None, Instant::ZERO).unwrap();
    let persist = node.poll_persist().unwrap();
    node.on_persisted(Instant::ZERO, persist.id);
    node.on_persisted(Instant::ZERO, persist.id);
}

fn booted_with_keys(name: &str, last: u8, keys: &[&[u8]]) -> Gossip {
    let mut config = Config::new(name, addr(last), u64::from(last));
    config.encrypt_keys = keys.iter().map(|k| Bytes::copy_from_slice(k)).collect();
    let mut node = Gossip::new(config, None, Instant::ZERO).unwrap();
    let persist = node.poll_persist().unwrap();
    node.on_persisted(Instant::ZERO, persist.id);
    node
}

#[test]
fn encrypted_nodes_with_a_shared_key_join_and_a_wrong_key_cannot() {
    let key = [7u8; 32];
    let mut nodes = vec![booted_with_keys("a", 1, &[&key]), booted_with_keys("b", 2, &[&[9u8; 16], &key])];
    nodes[1].handle_command(Instant::ZERO, Command::Join { peer: addr(1) }).unwrap();
    // b encrypts with its primary, which a lacks: a drops the join.
    exchange(Instant::ZERO, &mut nodes);
    assert_eq!(nodes[0].stats().decrypt_failures, 1);
    assert_eq!(nodes[0].members().count(), 0);

    // Rotate b's primary to the shared key: now they talk. What b sent is sealed, not plain.
    nodes[1].handle_command(Instant::ZERO, Command::UseKey { key: Bytes::copy_from_slice(&key) }).unwrap();
    nodes[1].handle_command(Instant::ZERO, Command::Join { peer: addr(1) }).unwrap();
    let join = nodes[1].poll_transmit().unwrap();
    assert!(Message::decode_frame(&join.payload).is_err(), "encrypted on the wire");
    nodes[0].handle_stream_frame(Instant::ZERO, addr(2), &join.payload);
    exchange(Instant::ZERO, &mut nodes);
    assert_eq!(nodes[0].members().count(), 1);
    assert_eq!(nodes[1].members().count(), 1);
    assert_eq!(nodes[1].keys(), vec![Bytes::copy_from_slice(&key), Bytes::copy_from_slice(&[9u8; 16])]);

    // A plaintext node cannot talk to them either.
    let mut plain = [nodes.remove(0), booted("c", 3, None)];
    plain[1].handle_command(Instant::ZERO, Command::Join { peer: addr(1) }).unwrap();
    let join = plain[1].poll_transmit().unwrap();
    plain[0].handle_stream_frame(Instant::ZERO, addr(3), &join.payload);
    assert_eq!(plain[0].stats().decrypt_failures, 2);
    assert_eq!(
        plain[1].handle_command(Instant::ZERO, Command::InstallKey { key: Bytes::from_static(&[1; 16]) }),
        Err(CommandError::EncryptionDisabled)
    );
}

/// Runs every node's timers and deliveries up to `end`.
fn run_until(nodes: &mut [Gossip], mut now: Instant, end: Instant) -> Instant {
    while let Some(next) = nodes.iter().filter_map(Gossip::poll_timeout).min().filter(|t| *t <= end) {
        assert!(
            next >= now,
            "a deadline in the past: {next:?} < {now:?}: {:?}",
            nodes.iter().map(|n| n.poll_timeout()).collect::<Vec<_>>()
        );
        now = next;
        for node in nodes.iter_mut() {
            if node.poll_timeout().is_some_and(|t| t <= now) {
                node.handle_timeout(now);
            }
        }
        exchange(now, nodes);
    }
    end
}

#[test]
fn keyring_operations_reach_every_member_and_report_their_answers() {
    let (k1, k2) = ([1u8; 32], [2u8; 16]);
    let mut nodes: Vec<Gossip> = (1..=3).map(|i| booted_with_keys(&format!("n{i}"), i, &[&k1])).collect();
    for i in 1..3 {
        nodes[i].handle_command(Instant::ZERO, Command::Join { peer: addr(1) }).unwrap();
        exchange(Instant::ZERO, &mut nodes);
    }
    let mut now = run_until(&mut nodes, Instant::ZERO, Instant::from_millis(2000));
    for node in nodes.iter_mut() {
        while node.poll_event().is_some() {}
    }
    let keyring_events = |node: &mut Gossip| -> Vec<KeyringResult> {
        std::iter::from_fn(|| node.poll_event())
            .filter_map(|e| match e {
                Event::Keyring(result) => Some(result),
                _ => None,
            })
            .collect()
    };

    let install = Command::Keyring { op: KeyringOp::Install, key: Bytes::copy_from_slice(&k2) };
    nodes[0].handle_command(now, install).unwrap();
    now = run_until(&mut nodes, now, now + Duration::from_secs(5));
    let results = keyring_events(&mut nodes[0]);
    assert_eq!(results.len(), 1);
    assert_eq!((results[0].op, results[0].members, results[0].responses), (KeyringOp::Install, 3, 3));
    assert!(results[0].errors.is_empty(), "{:?}", results[0].errors);
    for node in &nodes {
        assert_eq!(node.keys().len(), 2, "{} has the new key", node.name());
    }

    // Installing it again: every member answers with the keyring's error.
    nodes[1]
        .handle_command(now, Command::Keyring { op: KeyringOp::Install, key: Bytes::copy_from_slice(&k2) })
        .unwrap();
    now = run_until(&mut nodes, now, now + Duration::from_secs(5));
    let results = keyring_events(&mut nodes[1]);
    assert_eq!(results[0].errors.len(), 3);
    assert_eq!(results[0].errors["n1"], "key is already installed");

    nodes[2].handle_command(now, Command::Keyring { op: KeyringOp::List, key: Bytes::new() }).unwrap();
    now = run_until(&mut nodes, now, now + Duration::from_secs(5));
    let results = keyring_events(&mut nodes[2]);
    let counts: Vec<(Bytes, usize)> = results[0].keys.clone().into_iter().collect();
    assert_eq!(counts, vec![(Bytes::copy_from_slice(&k1), 3), (Bytes::copy_from_slice(&k2), 3)]);
    assert_eq!(
        nodes[0]
            .handle_command(now, Command::Keyring { op: KeyringOp::Use, key: Bytes::from_static(b"short") }),
        Err(CommandError::Keyring(KeyringError::InvalidKeySize(5)))
    );
}

#[test]
fn full_state_is_never_accepted_over_a_datagram() {
    let mut node = booted("a", 1, None);
    let push = Message::PushPull {
        join: true,
        reply: false,
        source: NodeAddr { name: "b".into(), addr: addr(2) },
        members: vec![],
        serf: crate::wire::SerfState::default(),
    };
    let mut datagram = DatagramBuilder::new(1400);
    datagram.push_entry(&push.encode_entry());
    node.handle_datagram(Instant::ZERO, addr(2), &datagram.finish());
    assert_eq!(node.poll_transmit(), None, "no reply goes to an address a datagram named");
    assert_eq!(node.stats().decode_errors, 1);
}

#[test]
fn gossip_from_outside_the_allowed_sources_is_dropped_unread() {
    let mut config = Config::new("b", addr(2), 2);
    config.allowed_sources = vec![crate::cidr::Cidr::parse("10.0.0.0/30").unwrap()];
    let mut b = Gossip::new(config, None, Instant::ZERO).unwrap();
    let persist = b.poll_persist().expect("boot persist");
    b.on_persisted(Instant::ZERO, persist.id);
    let ping = |source: SocketAddr| {
        let mut datagram = DatagramBuilder::new(DATAGRAM_BYTES_TARGET);
        let source = NodeAddr { name: "a".into(), addr: source };
        datagram.push_entry(&Message::Ping { seq: 1, target: "b".into(), source }.encode_entry());
        datagram.finish()
    };
    // 10.0.0.9 is outside 10.0.0.0/30: no ack, counted.
    b.handle_datagram(Instant::ZERO, addr(9), &ping(addr(9)));
    assert_eq!(b.poll_transmit(), None);
    assert_eq!(b.stats().sources_refused, 1);
    // 10.0.0.1 is inside: acked.
    b.handle_datagram(Instant::ZERO, addr(1), &ping(addr(1)));
    let ack = b.poll_transmit().expect("an ack");
    assert_eq!(ack.dst, addr(1));
    assert_eq!(b.stats().sources_refused, 1);
}

#[test]
fn a_node_alone_is_not_woken_to_probe_or_gossip_and_probes_its_first_member_in_time() {
    let mut nodes = vec![booted("a", 1, None)];
    // Off the reaping grid (every 15 s), so the probe and gossip deadlines last set by a
    // wake-up are past when the first member arrives.
    let first_member_at = Instant::ZERO + Duration::from_millis(67_500);
    let mut wakeups = 0;
    while let Some(next) = nodes[0].poll_timeout().filter(|&t| t <= first_member_at) {
        nodes[0].handle_timeout(next);
        wakeups += 1;
    }
    // Push/pull, reconnect and reaping (each a few times a minute) may wake it; a probe each
    // second and a gossip round each 200 ms would make 360.
    assert!(wakeups <= 10, "a node alone woke {wakeups} times in a first_member_at");
    assert_eq!(nodes[0].stats().swim.pings_sent, 0);

    let mut b = Gossip::new(Config::new("b", addr(2), 2), None, first_member_at).unwrap();
    let persist = b.poll_persist().expect("boot persist");
    b.on_persisted(first_member_at, persist.id);
    nodes.push(b);
    nodes[1].handle_command(first_member_at, Command::Join { peer: addr(1) }).unwrap();
    exchange(first_member_at, &mut nodes);
    let probe_interval = Duration::from_secs(1);
    run_until(&mut nodes, first_member_at, first_member_at + probe_interval);
    assert!(nodes[0].stats().swim.pings_sent >= 1, "the first member is probed within a probe interval");
}
