use super::*;

fn node(name: &str, last: u8) -> NodeAddr {
    NodeAddr { name: name.to_owned(), addr: SocketAddr::from(([10, 0, 0, last], 8301)) }
}

fn every_kind() -> Vec<Message> {
    vec![
        Message::Ping { seq: 7, target: "b".into(), source: node("a", 1) },
        Message::IndirectPing { seq: 8, target: node("c", 3), nack: true, source: node("a", 1) },
        Message::Ack { seq: 9 },
        Message::Nack { seq: 10 },
        Message::Alive {
            incarnation: 1 << 32,
            node: NodeAddr { name: "v6".into(), addr: "[2001:db8::1]:8301".parse().unwrap() },
            meta: Bytes::from_static(b"role=consul"),
        },
        Message::Suspect { incarnation: 3, node: "b".into(), from: "a".into() },
        Message::Dead { incarnation: 4, node: "b".into(), from: "b".into() },
        Message::Prune { incarnation: 4, node: "b".into() },
        Message::UserEvent { ltime: 42, name: "deploy".into(), payload: Bytes::from_static(b"v2") },
        Message::Query {
            id: 3,
            ltime: 8,
            name: "_muster_keyring_list".into(),
            payload: Bytes::new(),
            source: node("a", 1),
            timeout_ms: 3200,
        },
        Message::QueryResponse { id: 3, ltime: 8, from: "b".into(), payload: Bytes::from_static(b"\x00") },
        Message::PushPull {
            join: true,
            reply: false,
            source: node("a", 1),
            members: vec![
                PushPullMember {
                    node: node("a", 1),
                    meta: Bytes::new(),
                    incarnation: 2,
                    state: MemberState::Alive,
                },
                PushPullMember {
                    node: node("b", 2),
                    meta: Bytes::from_static(b"x"),
                    incarnation: 5,
                    state: MemberState::Left,
                },
            ],
            serf: SerfState {
                event_clock: 9,
                query_clock: 3,
                events: vec![PushPullEvent {
                    ltime: 8,
                    name: "deploy".into(),
                    payload: Bytes::from_static(b"v2"),
                }],
            },
        },
    ]
}

#[test]
fn ping_entry_has_the_documented_layout() {
    let entry = Message::Ping { seq: 0x0102_0304, target: "b".into(), source: node("a", 1) }.encode_entry();
    assert_eq!(
        &entry[..],
        &[
            1, 0, 15, // kind, body length
            1, 2, 3, 4, // seq
            1, b'b', // target
            1, b'a', 4, 10, 0, 0, 1, 0x20, 0x6D, // source: name, family, ip, port 8301
        ]
    );
}

#[test]
fn every_message_round_trips_as_a_frame_and_all_together_as_one_datagram() {
    let mut datagram = DatagramBuilder::new(DATAGRAM_BYTES_MAX);
    for message in every_kind() {
        assert_eq!(Message::decode_frame(&message.encode_frame()), Ok(message.clone()));
        assert!(datagram.push_entry(&message.encode_entry()));
    }
    assert_eq!(decode_datagram(&datagram.finish()), Ok(every_kind()));
}

#[test]
fn builder_refuses_entries_beyond_its_budget() {
    let entry = Message::Ack { seq: 1 }.encode_entry();
    let mut datagram = DatagramBuilder::new(1 + 2 * entry.len());
    assert!(datagram.push_entry(&entry));
    assert!(datagram.push_entry(&entry));
    assert_eq!(datagram.remaining(), 0);
    assert!(!datagram.push_entry(&entry));
    assert_eq!(decode_datagram(&datagram.finish()).unwrap().len(), 2);
}

#[test]
fn every_truncation_is_an_error_not_a_panic() {
    for message in every_kind() {
        let frame = message.encode_frame();
        for len in 0..frame.len() {
            assert!(Message::decode_frame(&frame[..len]).is_err(), "{message:?} cut at {len}");
        }
        let mut datagram = DatagramBuilder::new(DATAGRAM_BYTES_MAX);
        datagram.push_entry(&message.encode_entry());
        let datagram = datagram.finish();
        for len in 0..datagram.len() {
            assert!(decode_datagram(&datagram[..len]).is_err(), "{message:?} cut at {len}");
        }
    }
}

#[test]
fn malformed_inputs_are_named() {
    let ack = Message::Ack { seq: 1 }.encode_frame().to_vec();
    let with = |i: usize, b: u8| {
        let mut v = ack.clone();
        v[i] = b;
        Message::decode_frame(&v)
    };
    assert_eq!(with(0, 9), Err(DecodeError::UnsupportedVersion(9)));
    assert_eq!(with(1, 99), Err(DecodeError::UnknownKind(99)));
    let mut long = ack.clone();
    long.push(0);
    assert_eq!(Message::decode_frame(&long), Err(DecodeError::TrailingBytes(1)));
    assert_eq!(decode_datagram(&[WIRE_VERSION]), Err(DecodeError::Empty));
    // An entry whose length claims one byte more than its body: the extra byte is trailing.
    assert_eq!(decode_datagram(&[WIRE_VERSION, 3, 0, 5, 0, 0, 0, 1, 0]), Err(DecodeError::TrailingBytes(1)));
    let bad_name = [WIRE_VERSION, 6, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0xFF, 0];
    assert_eq!(Message::decode_frame(&bad_name), Err(DecodeError::InvalidName));
    let bad_nack = [WIRE_VERSION, 2, 0, 0, 0, 1, 1, b'c', 4, 10, 0, 0, 3, 0, 1, 2];
    assert_eq!(Message::decode_frame(&bad_nack), Err(DecodeError::InvalidFlags(2)));
    let bad_flags = [WIRE_VERSION, 8, 4];
    assert_eq!(Message::decode_frame(&bad_flags), Err(DecodeError::InvalidFlags(4)));
    let bad_family = [WIRE_VERSION, 1, 0, 0, 0, 1, 0, 0, 9];
    assert_eq!(Message::decode_frame(&bad_family), Err(DecodeError::UnknownAddressFamily(9)));
    let huge = vec![0u8; DATAGRAM_BYTES_MAX + 1];
    assert_eq!(
        decode_datagram(&huge),
        Err(DecodeError::TooLarge {
            what: "datagram",
            size: DATAGRAM_BYTES_MAX + 1,
            max: DATAGRAM_BYTES_MAX
        })
    );
}

#[test]
fn push_pull_counts_the_input_cannot_hold_are_refused_before_allocating() {
    let mut frame = vec![WIRE_VERSION, 8, 0];
    frame.extend_from_slice(&[1, b'a', 4, 10, 0, 0, 1, 0x20, 0x6D]);
    frame.extend_from_slice(&60_000u32.to_be_bytes());
    assert!(matches!(Message::decode_frame(&frame), Err(DecodeError::Truncated { .. })));
    let mut over = frame.clone();
    over.truncate(over.len() - 4);
    over.extend_from_slice(&(MEMBERS_MAX as u32 + 1).to_be_bytes());
    assert_eq!(
        Message::decode_frame(&over),
        Err(DecodeError::TooLarge { what: "push/pull member list", size: MEMBERS_MAX + 1, max: MEMBERS_MAX })
    );
}

#[test]
fn frame_prefix_round_trips_and_oversized_frames_are_refused() {
    assert_eq!(frame_len(frame_prefix(300)), Ok(300));
    let over = (STREAM_FRAME_BYTES_MAX as u32 + 1).to_be_bytes();
    assert_eq!(
        frame_len(over),
        Err(DecodeError::TooLarge {
            what: "frame",
            size: STREAM_FRAME_BYTES_MAX + 1,
            max: STREAM_FRAME_BYTES_MAX
        })
    );
}

#[test]
fn a_datagram_carries_at_most_255_messages() {
    let entry = Message::Ack { seq: 1 }.encode_entry();
    let mut datagram = DatagramBuilder::new(DATAGRAM_BYTES_MAX);
    for _ in 0..DATAGRAM_MESSAGES_MAX {
        datagram.push_entry(&entry);
    }
    let full = datagram.finish();
    assert_eq!(decode_datagram(&full).unwrap().len(), 255);
    let mut over = full.to_vec();
    over.extend_from_slice(&entry);
    assert_eq!(
        decode_datagram(&over),
        Err(DecodeError::TooLarge { what: "messages in a datagram", size: 256, max: 255 })
    );
}
