//! Unit tests of the SWIM state machine alone: each asserts the exact messages sent and the
//! state reached.

use super::*;
use crate::wire::{decode_datagram, PushPullEvent, PushPullMember, SerfState};

fn node(name: &str) -> NodeAddr {
    let last = name.as_bytes()[0] - b'a' + 1;
    NodeAddr { name: name.to_owned(), addr: SocketAddr::from(([10, 0, 0, last], 8301)) }
}

fn at(millis: u64) -> Instant {
    Instant::from_millis(millis)
}

const INC_A: u64 = 1 << 32;

fn alive(name: &str, incarnation: u64) -> Message {
    Message::Alive { incarnation, node: node(name), meta: Bytes::new() }
}

/// Node "a" knowing `others`, all alive at incarnation 1 << 32, with its queues drained.
fn swim_with(others: &[&str]) -> Swim {
    swim_with_config(Config::lan(), others)
}

fn swim_with_config(config: Config, others: &[&str]) -> Swim {
    let mut swim =
        Swim::new(config, node("a"), Bytes::new(), INC_A, DATAGRAM_BYTES_TARGET, Rng::from_seed(3), at(0));
    for name in others {
        swim.handle_message(at(0), Channel::Datagram, alive(name, 1 << 32));
    }
    drain(&mut swim);
    // Forget the joins' broadcasts so tests see only what they cause.
    swim.broadcasts = BroadcastQueue::default();
    swim.check_invariants();
    swim
}

/// A transmit as (destination name, channel, messages).
type Sent = (String, Channel, Vec<Message>);

/// Every transmit, and every event.
fn drain(swim: &mut Swim) -> (Vec<Sent>, Vec<MemberEvent>) {
    swim.check_invariants();
    let mut sent = Vec::new();
    while let Some(t) = swim.poll_transmit() {
        let messages = match t.channel {
            Channel::Datagram => decode_datagram(&t.payload).unwrap(),
            Channel::Stream => vec![Message::decode_frame(&t.payload).unwrap()],
        };
        let name = ((t.dst.ip().to_string().rsplit('.').next().unwrap().parse::<u8>().unwrap() - 1 + b'a')
            as char)
            .to_string();
        sent.push((name, t.channel, messages));
    }
    let events = std::iter::from_fn(|| swim.poll_event()).collect();
    (sent, events)
}

/// Runs timers up to `now`, returning what they sent.
fn tick(swim: &mut Swim, now: Instant) -> (Vec<Sent>, Vec<MemberEvent>) {
    swim.handle_timeout(now);
    drain(swim)
}

fn pings_only(sent: Vec<Sent>) -> Vec<Sent> {
    sent.into_iter()
        .filter(|(_, _, m)| {
            !matches!(m[0], Message::Alive { .. } | Message::Suspect { .. } | Message::Dead { .. })
        })
        .collect()
}

#[test]
fn new_members_are_announced_with_a_join_event_and_gossiped() {
    let mut swim = Swim::new(
        Config::lan(),
        node("a"),
        Bytes::new(),
        INC_A,
        DATAGRAM_BYTES_TARGET,
        Rng::from_seed(3),
        at(0),
    );
    swim.handle_message(at(0), Channel::Datagram, alive("b", 5));
    let (sent, events) = drain(&mut swim);
    assert!(sent.is_empty());
    assert_eq!(events, vec![MemberEvent { kind: MemberEventKind::Join, node: node("b"), incarnation: 5 }]);
    assert!(swim.broadcasts.contains("b"), "the alive message is gossiped on");
    // The same news again is old news.
    swim.handle_message(at(0), Channel::Datagram, alive("b", 5));
    assert_eq!(drain(&mut swim), (vec![], vec![]));
}

#[test]
fn unanswered_probe_goes_indirect_and_over_the_stream_then_suspects() {
    // Reference: SWIM §4 (probe, ping-req) and memberlist's TCP fallback.
    let mut swim = swim_with(&["b", "c", "d", "e"]);
    let t0 = swim.timers.get(Timer::Probe).expect("probing is periodic");
    let (sent, _) = tick(&mut swim, t0);
    let probe = swim.probe.clone().expect("probing");
    let target = probe.target.clone();
    let seq = probe.seq;
    assert_eq!(
        pings_only(sent),
        vec![(
            target.clone(),
            Channel::Datagram,
            vec![Message::Ping { seq, target: target.clone(), source: node("a") }]
        )]
    );

    let (sent, _) = tick(&mut swim, t0 + Duration::from_millis(500));
    let indirect: Vec<_> = sent
        .iter()
        .filter(|(_, c, m)| *c == Channel::Datagram && matches!(m[0], Message::IndirectPing { .. }))
        .collect();
    assert_eq!(indirect.len(), 3, "indirect_checks relays");
    for (relay, _, messages) in &indirect {
        assert_ne!(*relay, target);
        assert_eq!(
            messages[0],
            Message::IndirectPing { seq, target: node(&target), nack: true, source: node("a") }
        );
    }
    let stream: Vec<_> = sent.iter().filter(|(_, c, _)| *c == Channel::Stream).collect();
    assert_eq!(
        stream,
        vec![&(
            target.clone(),
            Channel::Stream,
            vec![Message::Ping { seq, target: target.clone(), source: node("a") }]
        )]
    );

    // One relay nacks; the others are silent; the round ends.
    swim.handle_message(t0 + Duration::from_millis(700), Channel::Datagram, Message::Nack { seq });
    let (sent, _) = tick(&mut swim, t0 + Duration::from_secs(1));
    assert_eq!(swim.member(&target).unwrap().state, State::Suspect);
    assert_eq!(swim.stats().probes_failed, 1);
    assert_eq!(swim.awareness_score(), 2, "two of three expected nacks were missing");
    // The suspicion is gossiped, piggybacked on the next round's ping.
    let suspect = Message::Suspect { incarnation: 1 << 32, node: target.clone(), from: "a".into() };
    assert!(sent.iter().any(|(_, _, m)| m.contains(&suspect)), "{sent:?}");
}

#[test]
fn an_ack_ends_the_probe_and_improves_health() {
    let mut swim = swim_with(&["b"]);
    swim.awareness.apply(3);
    let t0 = swim.timers.get(Timer::Probe).expect("probing is periodic");
    tick(&mut swim, t0);
    let seq = swim.probe.as_ref().unwrap().seq;
    swim.handle_message(t0, Channel::Datagram, Message::Ack { seq });
    assert!(swim.probe.is_none());
    assert_eq!(swim.awareness_score(), 2);
    let next = swim.timers.get(Timer::Probe).expect("probing is periodic");
    assert_eq!(next, t0 + Duration::from_secs(4), "the round was scaled by the score at its start");
    tick(&mut swim, next);
    assert_eq!(swim.member("b").unwrap().state, State::Alive);
    assert_eq!(swim.stats().probes_failed, 0);
}

#[test]
fn suspicion_times_out_into_failed_unless_refuted() {
    let mut swim = swim_with(&["b", "c"]);
    swim.handle_message(
        at(10),
        Channel::Datagram,
        Message::Suspect { incarnation: 1 << 32, node: "b".into(), from: "c".into() },
    );
    assert_eq!(swim.member("b").unwrap().state, State::Suspect);
    // Three members: too few for confirmations (k = 0), so the timeout is the minimum:
    // 4 × max(1, log10(3)) × 1 s = 4 s.
    let deadline = swim.suspicion_deadlines.first().unwrap().0;
    assert_eq!(deadline, at(10) + Duration::from_secs(4));
    let (_, events) = tick(&mut swim, deadline);
    assert_eq!(
        events,
        vec![MemberEvent { kind: MemberEventKind::Failed, node: node("b"), incarnation: 1 << 32 }]
    );
    assert_eq!(swim.member("b").unwrap().state, State::Dead);
    assert_eq!(swim.stats().deaths_declared, 1);

    // A refutation cannot come back with the same incarnation; a higher one revives.
    swim.handle_message(deadline, Channel::Datagram, alive("b", 1 << 32));
    assert_eq!(swim.member("b").unwrap().state, State::Dead);
    swim.handle_message(deadline, Channel::Datagram, alive("b", (1 << 32) + 1));
    let (_, events) = drain(&mut swim);
    assert_eq!(
        events,
        vec![MemberEvent { kind: MemberEventKind::Join, node: node("b"), incarnation: (1 << 32) + 1 }]
    );
}

#[test]
fn independent_confirmations_shorten_the_suspicion() {
    // Reference: Lifeguard §IV-B. Six members, k = suspicion_mult - 2 = 2.
    let mut swim = swim_with(&["b", "c", "d", "e", "f"]);
    let suspect = |from: &str| Message::Suspect { incarnation: 1 << 32, node: "b".into(), from: from.into() };
    swim.handle_message(at(0), Channel::Datagram, suspect("c"));
    let first = swim.suspicion_deadlines.first().unwrap().0;
    assert_eq!(first, at(0) + Duration::from_secs(24), "max = 6 × min, min = 4 s");
    swim.handle_message(at(0), Channel::Datagram, suspect("c"));
    assert_eq!(
        swim.suspicion_deadlines.first().unwrap().0,
        first,
        "the same accuser again is not independent"
    );
    swim.handle_message(at(0), Channel::Datagram, suspect("d"));
    let second = swim.suspicion_deadlines.first().unwrap().0;
    assert!(second < first);
    swim.handle_message(at(0), Channel::Datagram, suspect("e"));
    assert_eq!(swim.suspicion_deadlines.first().unwrap().0, at(0) + Duration::from_secs(4));
}

#[test]
fn lifeguard_off_uses_the_fixed_minimum_timeout_and_no_awareness() {
    let config = Config { lifeguard: false, ..Config::lan() };
    let mut swim = swim_with_config(config, &["b", "c", "d", "e", "f"]);
    swim.handle_message(
        at(0),
        Channel::Datagram,
        Message::Suspect { incarnation: 1 << 32, node: "b".into(), from: "c".into() },
    );
    assert_eq!(swim.suspicion_deadlines.first().unwrap().0, at(0) + Duration::from_secs(4));
    swim.handle_message(
        at(0),
        Channel::Datagram,
        Message::Suspect { incarnation: INC_A, node: "a".into(), from: "c".into() },
    );
    assert_eq!(swim.awareness_score(), 0);
}

#[test]
fn a_node_refutes_suspicion_and_death_of_itself() {
    let mut swim = swim_with(&["b"]);
    swim.handle_message(
        at(0),
        Channel::Datagram,
        Message::Suspect { incarnation: INC_A, node: "a".into(), from: "b".into() },
    );
    assert_eq!(swim.incarnation(), INC_A + 1);
    assert_eq!(swim.stats().refutations, 1);
    assert_eq!(swim.awareness_score(), 1, "having to refute is a sign of poor health");
    swim.handle_message(
        at(0),
        Channel::Datagram,
        Message::Dead { incarnation: INC_A + 7, node: "a".into(), from: "b".into() },
    );
    assert_eq!(swim.incarnation(), INC_A + 8);
    // The refutation is gossiped on the next datagram.
    let t = swim.timers.get(Timer::Gossip).expect("gossip is periodic");
    let (sent, _) = tick(&mut swim, t);
    let refutation = alive("a", INC_A + 8);
    assert!(sent.iter().any(|(_, _, m)| m.contains(&refutation)), "{sent:?}");
}

#[test]
fn claims_about_a_later_life_of_this_node_are_not_refuted() {
    let mut swim = swim_with(&["b"]);
    for incarnation in [2 << 32, u64::MAX, INC_A | u64::from(u32::MAX)] {
        swim.handle_message(
            at(0),
            Channel::Datagram,
            Message::Suspect { incarnation, node: "a".into(), from: "b".into() },
        );
        swim.handle_message(
            at(0),
            Channel::Datagram,
            Message::Dead { incarnation, node: "a".into(), from: "b".into() },
        );
    }
    assert_eq!(swim.incarnation(), INC_A);
    assert_eq!(swim.stats().refutations, 0);
    assert_eq!(swim.stats().messages_ignored, 6);
}

#[test]
fn probing_a_suspect_tells_it_so_it_can_refute() {
    // Lifeguard's buddy system.
    let mut swim = swim_with(&["b"]);
    swim.handle_message(
        at(0),
        Channel::Datagram,
        Message::Suspect { incarnation: 1 << 32, node: "b".into(), from: "c".into() },
    );
    swim.broadcasts = BroadcastQueue::default();
    let next = swim.timers.get(Timer::Probe).expect("probing is periodic");
    let (sent, _) = tick(&mut swim, next);
    let seq = swim.probe.as_ref().unwrap().seq;
    assert_eq!(
        pings_only(sent),
        vec![(
            "b".to_owned(),
            Channel::Datagram,
            vec![
                Message::Ping { seq, target: "b".into(), source: node("a") },
                Message::Suspect { incarnation: 1 << 32, node: "b".into(), from: "a".into() },
            ]
        )]
    );
}

#[test]
fn relays_forward_acks_and_nack_on_timeout() {
    let mut swim = swim_with(&["b", "c"]);
    let request = Message::IndirectPing { seq: 77, target: node("c"), nack: true, source: node("b") };
    swim.handle_message(at(0), Channel::Datagram, request.clone());
    let (sent, _) = drain(&mut swim);
    let Message::Ping { seq: our_seq, .. } = sent[0].2[0] else { panic!("{sent:?}") };
    assert_eq!(sent[0].0, "c");
    swim.handle_message(at(100), Channel::Datagram, Message::Ack { seq: our_seq });
    let (sent, _) = drain(&mut swim);
    assert_eq!(sent[0].0, "b");
    assert_eq!(sent[0].2[0], Message::Ack { seq: 77 });

    swim.handle_message(at(200), Channel::Datagram, request);
    drain(&mut swim);
    let (sent, _) = tick(&mut swim, at(700));
    assert!(sent.iter().any(|(to, _, m)| to == "b" && m[0] == Message::Nack { seq: 77 }), "{sent:?}");
    assert_eq!(swim.stats().nacks_sent, 1);
}

#[test]
fn messages_claiming_to_come_from_this_node_are_ignored() {
    let mut swim = swim_with(&["b"]);
    let forged = [
        Message::Ping { seq: 1, target: "a".into(), source: node("a") },
        Message::IndirectPing { seq: 2, target: node("a"), nack: true, source: node("b") },
        Message::IndirectPing { seq: 3, target: node("b"), nack: true, source: node("a") },
        Message::PushPull {
            join: true,
            reply: false,
            source: node("a"),
            members: vec![],
            serf: SerfState::default(),
        },
    ];
    for message in forged {
        swim.handle_message(at(0), Channel::Datagram, message);
    }
    assert_eq!(drain(&mut swim), (vec![], vec![]));
    assert_eq!(swim.stats().messages_ignored, 4);
}

#[test]
fn pings_for_another_name_are_ignored() {
    let mut swim = swim_with(&["b"]);
    swim.handle_message(
        at(0),
        Channel::Datagram,
        Message::Ping { seq: 1, target: "z".into(), source: node("b") },
    );
    assert_eq!(drain(&mut swim), (vec![], vec![]));
    swim.handle_message(
        at(0),
        Channel::Stream,
        Message::Ping { seq: 2, target: "a".into(), source: node("b") },
    );
    let (sent, _) = drain(&mut swim);
    assert_eq!(sent, vec![("b".to_owned(), Channel::Stream, vec![Message::Ack { seq: 2 }])]);
}

#[test]
fn a_live_name_at_another_address_is_refused_but_a_dead_one_is_reclaimed_after_30_s() {
    let mut swim = swim_with(&["b"]);
    let impostor = NodeAddr { name: "b".into(), addr: SocketAddr::from(([10, 9, 9, 9], 8301)) };
    let claim = |inc| Message::Alive { incarnation: inc, node: impostor.clone(), meta: Bytes::new() };
    swim.handle_message(at(0), Channel::Datagram, claim(99 << 32));
    assert_eq!(swim.member("b").unwrap().node, node("b"));
    swim.handle_message(
        at(0),
        Channel::Datagram,
        Message::Dead { incarnation: 1 << 32, node: "b".into(), from: "c".into() },
    );
    swim.handle_message(at(29_000), Channel::Datagram, claim(1));
    assert_eq!(swim.member("b").unwrap().node, node("b"), "too soon");
    swim.handle_message(at(30_000), Channel::Datagram, claim(1));
    let view = swim.member("b").unwrap();
    assert_eq!((view.node, view.state), (impostor, State::Alive));
}

#[test]
fn force_leave_turns_failed_into_left_and_reaping_forgets() {
    let mut swim = swim_with(&["b", "c"]);
    assert!(!swim.trigger_force_leave(at(0), "b", false), "b is alive");
    swim.handle_message(
        at(0),
        Channel::Datagram,
        Message::Dead { incarnation: 1 << 32, node: "b".into(), from: "c".into() },
    );
    drain(&mut swim);
    assert!(swim.trigger_force_leave(at(1), "b", false));
    let (_, events) = drain(&mut swim);
    assert_eq!(
        events,
        vec![MemberEvent { kind: MemberEventKind::Leave, node: node("b"), incarnation: 1 << 32 }]
    );
    assert_eq!(swim.member("b").unwrap().state, State::Left);
    // Left members are kept as tombstones for 24 h, then reaped.
    let day = Duration::from_secs(24 * 3600);
    let mut now = at(1);
    while now < at(1) + day + REAP_INTERVAL {
        now = swim.poll_timeout().unwrap();
        swim.handle_timeout(now);
    }
    let (_, events) = drain(&mut swim);
    assert!(events.contains(&MemberEvent {
        kind: MemberEventKind::Reap,
        node: node("b"),
        incarnation: 1 << 32
    }));
    assert!(swim.member("b").is_none());
    assert!(swim.member("c").is_some());
}

#[test]
fn push_pull_merges_remote_state_preferring_suspicion_to_death() {
    let mut swim = swim_with(&["b", "c"]);
    let member = |name: &str, incarnation, state| PushPullMember {
        node: node(name),
        meta: Bytes::new(),
        incarnation,
        state,
    };
    let push = Message::PushPull {
        join: false,
        reply: false,
        source: node("d"),
        members: vec![
            member("b", 1 << 32, State::Dead),
            member("c", 1 << 32, State::Left),
            member("d", 3 << 32, State::Alive),
            member("e", 1 << 32, State::Dead),
        ],
        serf: SerfState::default(),
    };
    swim.handle_message(at(0), Channel::Stream, push);
    assert_eq!(swim.member("b").unwrap().state, State::Suspect, "remote death is only suspicion here");
    assert_eq!(swim.member("c").unwrap().state, State::Left);
    assert_eq!(swim.member("d").unwrap().incarnation, 3 << 32);
    assert!(swim.member("e").is_none(), "unknown dead members are not learned");
    let (sent, _) = drain(&mut swim);
    let reply = sent.iter().find(|(to, c, _)| to == "d" && *c == Channel::Stream).expect("a reply");
    let Message::PushPull { reply: true, members, .. } = &reply.2[0] else { panic!("{reply:?}") };
    assert_eq!(members.len(), 4, "b, c, d and a itself");
}

#[test]
fn gossip_goes_to_live_members_and_the_recently_dead_within_the_datagram_target() {
    let names: Vec<String> = (0..20).map(|i| ((b'b' + i) as char).to_string()).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut swim = swim_with(&refs);
    for name in &refs[..15] {
        swim.handle_message(
            at(0),
            Channel::Datagram,
            Message::Suspect { incarnation: 1 << 32, node: (*name).into(), from: "z".into() },
        );
    }
    let t = swim.timers.get(Timer::Gossip).expect("gossip is periodic");
    let (sent, _) = tick(&mut swim, t);
    let gossip: Vec<_> = sent.iter().filter(|(_, _, m)| matches!(m[0], Message::Suspect { .. })).collect();
    assert_eq!(gossip.len(), 3, "gossip_nodes datagrams");
    for (_, channel, messages) in &gossip {
        assert_eq!(*channel, Channel::Datagram);
        assert!(messages.len() >= 15, "all 15 suspicions fit one datagram");
    }
}

#[test]
fn config_validation_names_the_broken_setting() {
    assert_eq!(Config::lan().validate(), Ok(()));
    assert_eq!(Config::wan().validate(), Ok(()));
    assert_eq!(Config::dev().validate(), Ok(()));
    let slow = Config { probe_timeout: Duration::from_secs(2), ..Config::lan() };
    assert_eq!(
        slow.validate(),
        Err(ConfigError::ProbeTimeoutAboveInterval {
            timeout: Duration::from_secs(2),
            interval: Duration::from_secs(1)
        })
    );
    let zero = Config { gossip_nodes: 0, ..Config::lan() };
    assert_eq!(zero.validate(), Err(ConfigError::OutOfRange { name: "gossip_nodes", value: 0, max: 64 }));
    let fast = Config { gossip_interval: Duration::from_millis(1), ..Config::lan() };
    assert!(matches!(fast.validate(), Err(ConfigError::TooShort { name: "gossip_interval", .. })));
}

#[test]
fn push_pull_interval_scales_above_32_members() {
    let base = Duration::from_secs(30);
    assert_eq!(push_pull_scale(base, 32), base);
    assert_eq!(push_pull_scale(base, 33), base * 2);
    assert_eq!(push_pull_scale(base, 64), base * 2);
    assert_eq!(push_pull_scale(base, 1000), base * 6);
}

#[test]
fn user_events_are_delivered_once_stamped_by_a_lamport_clock_and_gossiped() {
    let mut swim = swim_with(&["b"]);
    swim.trigger_user_event("deploy".into(), Bytes::from_static(b"v1")).unwrap();
    assert_eq!(
        swim.poll_user_event(),
        Some(UserEvent { ltime: 0, name: "deploy".into(), payload: Bytes::from_static(b"v1") })
    );
    // A remote event at time 9 moves the clock past it: the next local event gets 10.
    let remote = Message::UserEvent { ltime: 9, name: "restart".into(), payload: Bytes::new() };
    swim.handle_message(at(0), Channel::Datagram, remote.clone());
    swim.handle_message(at(0), Channel::Datagram, remote.clone());
    assert_eq!(swim.poll_user_event().map(|e| e.ltime), Some(9));
    assert_eq!(swim.poll_user_event(), None, "the duplicate is dropped");
    swim.trigger_user_event("deploy".into(), Bytes::from_static(b"v2")).unwrap();
    assert_eq!(swim.poll_user_event().map(|e| e.ltime), Some(10));
    // Another event at the same time but with another payload is a different event.
    swim.handle_message(
        at(0),
        Channel::Datagram,
        Message::UserEvent { ltime: 9, name: "restart".into(), payload: Bytes::from_static(b"x") },
    );
    assert_eq!(swim.poll_user_event().map(|e| e.payload), Some(Bytes::from_static(b"x")));
    // All of them are gossiped on.
    let t = swim.timers.get(Timer::Gossip).expect("gossip is periodic");
    let (sent, _) = tick(&mut swim, t);
    let gossiped: Vec<u64> = sent
        .iter()
        .flat_map(|(_, _, m)| m)
        .filter_map(|m| match m {
            Message::UserEvent { ltime, .. } => Some(*ltime),
            _ => None,
        })
        .collect();
    for ltime in [0, 9, 10] {
        assert!(gossiped.contains(&ltime), "{gossiped:?}");
    }
}

#[test]
fn user_events_older_than_the_buffer_or_over_the_limit_are_refused() {
    let mut swim = swim_with(&["b"]);
    swim.handle_message(
        at(0),
        Channel::Datagram,
        Message::UserEvent { ltime: 1000, name: "e".into(), payload: Bytes::new() },
    );
    swim.poll_user_event();
    swim.handle_message(
        at(0),
        Channel::Datagram,
        Message::UserEvent { ltime: 100, name: "old".into(), payload: Bytes::new() },
    );
    assert_eq!(swim.poll_user_event(), None);
    assert_eq!(swim.stats().user_events_too_old, 1);
    assert_eq!(
        swim.trigger_user_event("big".into(), Bytes::from(vec![0u8; 510])),
        Err(FireError::TooLarge { size: 513, max: 512 })
    );
    assert_eq!(swim.poll_user_event(), None, "a refused event is not delivered");
    // A forged event at the end of time pins the clock; firing is refused, not wrapped.
    swim.handle_message(
        at(0),
        Channel::Datagram,
        Message::UserEvent { ltime: u64::MAX, name: "x".into(), payload: Bytes::new() },
    );
    assert_eq!(swim.trigger_user_event("e".into(), Bytes::new()), Err(FireError::ClockExhausted));
}

#[test]
fn a_suspicion_carrying_a_new_boot_epoch_reports_the_restart() {
    let mut swim = swim_with(&["b", "c"]);
    swim.handle_message(
        at(0),
        Channel::Datagram,
        Message::Suspect { incarnation: 2 << 32, node: "b".into(), from: "c".into() },
    );
    let (_, events) = drain(&mut swim);
    assert_eq!(
        events,
        vec![MemberEvent { kind: MemberEventKind::Restart, node: node("b"), incarnation: 2 << 32 }]
    );
    // Its refutation in the same epoch is then no news.
    swim.handle_message(at(1), Channel::Datagram, alive("b", (2 << 32) + 1));
    assert_eq!(drain(&mut swim).1, vec![]);
    assert_eq!(swim.member("b").unwrap().state, State::Alive);
}

fn event(ltime: u64, name: &str) -> PushPullEvent {
    PushPullEvent { ltime, name: name.into(), payload: Bytes::new() }
}

#[test]
fn a_join_takes_the_clusters_clocks_and_skips_the_events_before_it() {
    let mut swim = swim_with(&[]);
    swim.trigger_join(at(0), node("b").addr);
    drain(&mut swim);
    let reply = Message::PushPull {
        join: false,
        reply: true,
        source: node("b"),
        members: vec![PushPullMember {
            node: node("b"),
            meta: Bytes::new(),
            incarnation: 1 << 32,
            state: State::Alive,
        }],
        serf: SerfState { event_clock: 700, query_clock: 40, events: vec![event(699, "deploy")] },
    };
    swim.handle_message(at(1), Channel::Stream, reply);
    assert_eq!(swim.poll_user_event(), None, "an event from before the join is not delivered");
    // Gossip of the same old event is ignored too, but a newer one is delivered.
    let old = Message::UserEvent { ltime: 650, name: "old".into(), payload: Bytes::new() };
    swim.handle_message(at(2), Channel::Datagram, old);
    assert_eq!(swim.poll_user_event(), None);
    assert_eq!(swim.stats().user_events_too_old, 2);
    swim.trigger_user_event("restart".into(), Bytes::new()).unwrap();
    assert_eq!(swim.poll_user_event().map(|e| e.ltime), Some(700), "fired after everything seen");
    assert_eq!(swim.serf.query_clock, 40);
}

#[test]
fn a_periodic_push_pull_carries_recent_events_that_gossip_missed() {
    let mut swim = swim_with(&["b"]);
    swim.trigger_user_event("mine".into(), Bytes::new()).unwrap();
    assert_eq!(swim.poll_user_event().map(|e| e.ltime), Some(0));
    let push = Message::PushPull {
        join: false,
        reply: false,
        source: node("b"),
        members: vec![],
        serf: SerfState {
            event_clock: 5,
            query_clock: 0,
            events: vec![event(4, "missed"), event(0, "mine")],
        },
    };
    swim.handle_message(at(1), Channel::Stream, push);
    assert_eq!(swim.poll_user_event().map(|e| (e.ltime, e.name)), Some((4, "missed".to_owned())));
    assert_eq!(swim.poll_user_event(), None, "the event fired here is not delivered twice");
    // The reply carries both, newest first, and the witnessed clock.
    let (sent, _) = drain(&mut swim);
    let reply = sent.iter().find(|(to, c, _)| to == "b" && *c == Channel::Stream).expect("a reply");
    let Message::PushPull { reply: true, serf, .. } = &reply.2[0] else { panic!("{reply:?}") };
    assert_eq!(
        *serf,
        SerfState { event_clock: 5, query_clock: 0, events: vec![event(4, "missed"), event(0, "mine")] }
    );
}

#[test]
fn a_name_claimed_from_another_address_is_a_conflict_reported_once_and_ignored() {
    let mut swim = swim_with(&["b"]);
    let impostor = NodeAddr { name: "b".into(), addr: SocketAddr::from(([10, 0, 0, 99], 8301)) };
    let claim = Message::Alive { incarnation: 2 << 32, node: impostor.clone(), meta: Bytes::new() };
    swim.handle_message(at(1), Channel::Datagram, claim.clone());
    let (_, events) = drain(&mut swim);
    let conflict = MemberEvent { kind: MemberEventKind::Conflict, node: impostor, incarnation: 2 << 32 };
    assert_eq!(events, vec![conflict]);
    assert_eq!(swim.members["b"].addr, node("b").addr, "the live holder keeps its name");
    swim.handle_message(at(2), Channel::Datagram, claim);
    assert_eq!(drain(&mut swim).1, vec![], "reported once");

    // Another node using this node's own name is reported too.
    let double = NodeAddr { name: "a".into(), addr: SocketAddr::from(([10, 0, 0, 98], 8301)) };
    let claim = Message::Alive { incarnation: INC_A, node: double.clone(), meta: Bytes::new() };
    swim.handle_message(at(3), Channel::Datagram, claim);
    let (_, events) = drain(&mut swim);
    assert_eq!(
        events,
        vec![MemberEvent { kind: MemberEventKind::Conflict, node: double, incarnation: INC_A }]
    );
}
