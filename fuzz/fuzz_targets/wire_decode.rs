//! Every decoder on arbitrary bytes: it may refuse them, but must not panic, and whatever it
//! accepts must re-encode to exactly the same bytes (the encoding is canonical).

#![no_main]

use libfuzzer_sys::fuzz_target;
use muster_core::raft;
use muster_core::tags::Tags;
use muster_core::wire::{decode_datagram, frame_len, DatagramBuilder, Message, FRAME_PREFIX_BYTES};
use muster_core::DATAGRAM_BYTES_MAX;

fuzz_target!(|data: &[u8]| {
    if let Ok(messages) = decode_datagram(data) {
        let mut datagram = DatagramBuilder::new(DATAGRAM_BYTES_MAX);
        for message in &messages {
            assert!(datagram.push_entry(&message.encode_entry()));
        }
        assert_eq!(&datagram.finish()[..], data, "decode accepted a non-canonical datagram");
    }
    if let Ok(message) = Message::decode_frame(data) {
        assert_eq!(&message.encode_frame()[..], data, "decode accepted a non-canonical frame");
    }
    // Empty meta means no tags; any other accepted tag set is in canonical form.
    if let (false, Ok(tags)) = (data.is_empty(), Tags::decode(data)) {
        assert_eq!(&tags.encode().expect("decoded tags fit")[..], data, "non-canonical tags");
    }
    if let Ok((from, message)) = raft::wire::decode(data) {
        assert_eq!(&raft::wire::encode(from, &message)[..], data, "non-canonical raft frame");
    }
    if let Some(prefix) = data.first_chunk::<FRAME_PREFIX_BYTES>() {
        if let Ok(len) = frame_len(*prefix) {
            assert_eq!(len, u32::from_be_bytes(*prefix) as usize);
        }
    }
});
