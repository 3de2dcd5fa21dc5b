//! The state machine on arbitrary log entries: raw bytes (the command decoder must refuse or
//! decode, never panic) and well-formed command sequences (applied with invariants checked
//! after each, feature `invariants`). At the end, the snapshot restores to the same state and
//! re-encodes to the same bytes, and a snapshot read from the raw bytes never panics.

#![no_main]

use arbitrary::Arbitrary;
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use muster_core::fsm::{Command, Fsm, KvCas, KvDelete, KvDeleteCas, KvDeleteTree, KvSet, TombstoneReap};

#[derive(Debug, Arbitrary)]
enum Op {
    Raw(Vec<u8>),
    Set { key: String, value: Vec<u8>, flags: u64 },
    Cas { key: String, value: Vec<u8>, index: u8 },
    Delete(String),
    DeleteCas { key: String, index: u8 },
    DeleteTree(String),
    Reap(u8),
}

fuzz_target!(|ops: Vec<Op>| {
    let mut fsm = Fsm::new();
    let mut index = 0;
    for op in ops {
        index += 1;
        let command = match op {
            Op::Raw(bytes) => {
                let _ = Fsm::restore(&bytes);
                let _ = fsm.apply(index, &bytes);
                continue;
            }
            Op::Set { key, value, flags } => Command::KvSet(KvSet { key, value: Bytes::from(value), flags }),
            Op::Cas { key, value, index } => Command::KvCas(KvCas {
                set: KvSet { key, value: Bytes::from(value), flags: 0 },
                index: u64::from(index),
            }),
            Op::Delete(key) => Command::KvDelete(KvDelete { key }),
            Op::DeleteCas { key, index } => {
                Command::KvDeleteCas(KvDeleteCas { key, index: u64::from(index) })
            }
            Op::DeleteTree(prefix) => Command::KvDeleteTree(KvDeleteTree { prefix }),
            Op::Reap(up_to) => Command::TombstoneReap(TombstoneReap { up_to: u64::from(up_to) }),
        };
        let encoded = command.encode();
        assert_eq!(Command::decode(&encoded), Ok(Some(command)));
        fsm.apply(index, &encoded).expect("a well-formed command applies");
    }
    let snapshot = fsm.snapshot();
    let restored = Fsm::restore(&snapshot).expect("a snapshot restores");
    assert_eq!(restored.snapshot(), snapshot);
    assert_eq!(restored, fsm);
});
