use super::*;

fn addr(last: u8) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, last], 8301))
}

fn at(millis: u64) -> Instant {
    Instant::from_millis(millis)
}

/// A pinger for 10.0.0.1 with one peer, 10.0.0.2, and its first round due at `round_start`.
fn pinger_with_peer() -> (Pinger, Instant) {
    let mut pinger = Pinger::new(Config::default(), addr(1), 1, Rng::from_seed(9), at(0));
    pinger.add_peer(addr(2)).unwrap();
    let round_start = pinger.poll_timeout();
    assert!(
        round_start <= at(1000),
        "the first round starts within one interval"
    );
    (pinger, round_start)
}

fn drain(pinger: &mut Pinger) -> (Vec<(SocketAddr, Channel, Message)>, Vec<Event>) {
    let mut transmits = Vec::new();
    while let Some(t) = pinger.poll_transmit() {
        transmits.push((t.dst, t.channel, Message::decode(&t.payload).unwrap()));
    }
    let mut events = Vec::new();
    while let Some(e) = pinger.poll_event() {
        events.push(e);
    }
    pinger.check_invariants();
    (transmits, events)
}

fn ping(from: u8, incarnation: u64, seq: u32) -> Message {
    Message {
        sender: addr(from),
        incarnation,
        body: Body::Ping { seq },
    }
}

fn ack(from: u8, incarnation: u64, seq: u32) -> Message {
    Message {
        sender: addr(from),
        incarnation,
        body: Body::Ack { seq },
    }
}

#[test]
fn unanswered_probe_retries_then_falls_back_to_stream_then_reports_unreachable() {
    let (mut pinger, t0) = pinger_with_peer();
    let timeout = Duration::from_millis(500);

    pinger.handle_timeout(t0);
    assert_eq!(
        drain(&mut pinger),
        (vec![(addr(2), Channel::Datagram, ping(1, 1, 0))], vec![])
    );
    assert_eq!(pinger.poll_timeout(), t0 + timeout);

    pinger.handle_timeout(t0 + timeout);
    assert_eq!(
        drain(&mut pinger),
        (vec![(addr(2), Channel::Datagram, ping(1, 1, 0))], vec![])
    );

    // Reference: memberlist falls back to a TCP ping when UDP probes go unanswered.
    pinger.handle_timeout(t0 + timeout * 2);
    assert_eq!(
        drain(&mut pinger),
        (vec![(addr(2), Channel::Stream, ping(1, 1, 0))], vec![])
    );

    pinger.handle_timeout(t0 + timeout * 3);
    assert_eq!(
        drain(&mut pinger),
        (vec![], vec![Event::PeerUnreachable { peer: addr(2) }])
    );
    assert_eq!(pinger.stats().pings_sent, 3);
    assert_eq!(
        pinger.peers().collect::<Vec<_>>(),
        vec![(addr(2), Status::Unreachable, 0)]
    );

    // The round at t0 + 1 s found the probe still in flight and skipped the peer; the round
    // after probes again with a fresh sequence number.
    let t1 = pinger.poll_timeout();
    assert_eq!(t1, t0 + Duration::from_secs(2));
    pinger.handle_timeout(t1);
    assert_eq!(
        drain(&mut pinger).0,
        vec![(addr(2), Channel::Datagram, ping(1, 1, 1))]
    );
}

#[test]
fn matching_ack_marks_reachable_once_and_cancels_the_retry() {
    let (mut pinger, t0) = pinger_with_peer();
    pinger.handle_timeout(t0);
    drain(&mut pinger);

    pinger.handle_message(Channel::Datagram, ack(2, 4, 0));
    assert_eq!(
        drain(&mut pinger),
        (
            vec![],
            vec![Event::PeerReachable {
                peer: addr(2),
                incarnation: 4
            }]
        )
    );
    assert_eq!(
        pinger.poll_timeout(),
        t0 + Duration::from_secs(1),
        "no retry is pending"
    );

    // A duplicate of the same ack matches nothing and changes nothing.
    pinger.handle_message(Channel::Datagram, ack(2, 4, 0));
    assert_eq!(drain(&mut pinger), (vec![], vec![]));
    assert_eq!(pinger.stats().acks_unmatched, 1);

    // The next successful probe does not repeat the event.
    pinger.handle_timeout(t0 + Duration::from_secs(1));
    drain(&mut pinger);
    pinger.handle_message(Channel::Datagram, ack(2, 4, 1));
    assert_eq!(drain(&mut pinger), (vec![], vec![]));
    assert_eq!(
        pinger.peers().collect::<Vec<_>>(),
        vec![(addr(2), Status::Reachable, 4)]
    );
}

#[test]
fn ping_from_unknown_sender_is_discovered_and_acked_on_the_same_channel() {
    let (mut pinger, _) = pinger_with_peer();
    pinger.handle_message(Channel::Stream, ping(3, 7, 42));
    assert_eq!(
        drain(&mut pinger),
        (
            vec![(addr(3), Channel::Stream, ack(1, 1, 42))],
            vec![Event::PeerDiscovered { peer: addr(3) }]
        )
    );
    assert_eq!(pinger.stats().acks_sent, 1);
}

#[test]
fn restart_is_seen_as_a_higher_incarnation_and_late_messages_of_the_old_life_are_dropped() {
    let (mut pinger, _) = pinger_with_peer();
    pinger.handle_message(Channel::Datagram, ping(2, 1, 0));
    drain(&mut pinger);

    pinger.handle_message(Channel::Datagram, ping(2, 2, 0));
    let (transmits, events) = drain(&mut pinger);
    assert_eq!(transmits, vec![(addr(2), Channel::Datagram, ack(1, 1, 0))]);
    assert_eq!(
        events,
        vec![Event::PeerRestarted {
            peer: addr(2),
            incarnation: 2
        }]
    );

    pinger.handle_message(Channel::Datagram, ping(2, 1, 5));
    assert_eq!(drain(&mut pinger), (vec![], vec![]));
    assert_eq!(pinger.stats().messages_stale_incarnation, 1);
}

#[test]
fn messages_claiming_to_be_from_self_are_dropped() {
    let (mut pinger, _) = pinger_with_peer();
    pinger.handle_message(Channel::Datagram, ping(1, 9, 0));
    assert_eq!(drain(&mut pinger), (vec![], vec![]));
    assert_eq!(pinger.stats().messages_from_self, 1);
    assert_eq!(
        pinger.add_peer(addr(1)),
        Err(CommandError::IsSelf { peer: addr(1) })
    );
}

#[test]
fn forgetting_a_peer_cancels_its_probe() {
    let (mut pinger, t0) = pinger_with_peer();
    pinger.handle_timeout(t0);
    drain(&mut pinger);
    pinger.remove_peer(addr(2)).unwrap();
    pinger.check_invariants();
    assert_eq!(pinger.poll_timeout(), t0 + Duration::from_secs(1));
    assert_eq!(
        pinger.remove_peer(addr(2)),
        Err(CommandError::UnknownPeer { peer: addr(2) })
    );
}

#[test]
fn config_validation_names_the_broken_relation() {
    let base = Config::default();
    assert_eq!(base.validate(), Ok(()));
    let fast = Config {
        ping_interval: Duration::from_millis(1),
        ..base.clone()
    };
    assert_eq!(
        fast.validate(),
        Err(ConfigError::IntervalTooShort {
            interval: Duration::from_millis(1),
            min: PING_INTERVAL_MIN
        })
    );
    let slow = Config {
        ping_timeout: Duration::from_secs(2),
        ..base.clone()
    };
    assert!(matches!(
        slow.validate(),
        Err(ConfigError::TimeoutOutOfRange { .. })
    ));
    let none = Config {
        ping_attempts_max: 0,
        ..base
    };
    assert_eq!(
        none.validate(),
        Err(ConfigError::AttemptsOutOfRange {
            attempts: 0,
            max: 8
        })
    );
}
