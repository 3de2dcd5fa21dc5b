//! Every decoder on arbitrary bytes: it may refuse them, but must not panic, and whatever it
//! accepts must re-encode to exactly the same bytes (the encoding is canonical).

#![no_main]

use libfuzzer_sys::fuzz_target;
use muster_core::wire::{frame_len, Message, FRAME_PREFIX_BYTES};

fuzz_target!(|data: &[u8]| {
    if let Ok(message) = Message::decode(data) {
        assert_eq!(
            &message.encode()[..],
            data,
            "decode accepted a non-canonical encoding"
        );
    }
    if let Some(prefix) = data.first_chunk::<FRAME_PREFIX_BYTES>() {
        if let Ok(len) = frame_len(*prefix) {
            assert_eq!(len, u32::from_be_bytes(*prefix) as usize);
        }
    }
});
