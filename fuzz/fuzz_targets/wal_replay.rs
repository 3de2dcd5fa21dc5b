//! Raft's write-ahead log records on arbitrary bytes (what a damaged disk can hold): replay may
//! refuse them but must not panic, and whatever prefix it accepts as valid must replay the same
//! way again as a complete older segment. With the second flag bit set, the bytes are read as
//! a snapshot file instead: refused or decoded, and a decoded one re-encodes to the same bytes.

#![no_main]

use libfuzzer_sys::fuzz_target;
use muster_core::raft::journal::{decode_snapshot, encode_snapshot, replay};
use muster_core::raft::Restored;

fuzz_target!(|data: &[u8]| {
    let Some((&flags, bytes)) = data.split_first() else { return };
    if flags & 2 == 2 {
        if let Ok(snapshot) = decode_snapshot(bytes) {
            assert_eq!(&encode_snapshot(&snapshot)[..], bytes);
        }
        return;
    }
    let is_last = flags & 1 == 1;
    let mut restored = Restored::default();
    if let Ok(valid) = replay(bytes, is_last, &mut restored) {
        let valid = usize::try_from(valid).expect("fits");
        assert!(valid <= bytes.len());
        let mut again = Restored::default();
        assert_eq!(replay(&bytes[..valid], false, &mut again), Ok(valid as u64));
        assert_eq!(again, restored);
    }
});
