//! Snapshot archives (io/src/http/snapshot/archive.rs): arbitrary bytes as the body of
//! `PUT /v1/snapshot` and as the file `muster snapshot inspect` reads. Properties:
//! - reading never panics, with a restore's bounds and with small ones (which inputs of a few
//!   kilobytes reach: a compression bomb, a member over its bound);
//! - a refused archive is refused with one of Consul's texts: a 400 for what is malformed or
//!   damaged, a 413 only for what is over a bound;
//! - decompression never passes its bound: what is accepted unpacks within it, and what is
//!   refused for unpacking past it does unpack past it;
//! - an accepted archive's `SHA256SUMS` (read here with the tar crate alone) lists both other
//!   members with their sums, and its metadata agrees with its `state.bin`; the small bounds
//!   accept nothing the restore's refuse, and accept it the same;
//! - an accepted `state.bin` restores (`Fsm::restore`) or is refused, and `inspect_archive`
//!   answers exactly that; what restores snapshots to a state that restores the same;
//! - an accepted archive written again (`write_archive`) reads back the same.
//!
//! The module is compiled in by path: it needs only serde, serde_json, postcard, tar, flate2,
//! sha2, bytes and the core.

#![no_main]

use std::io::Read;

use flate2::read::MultiGzDecoder;
use libfuzzer_sys::fuzz_target;
use muster_core::fsm::Fsm;
use sha2::{Digest, Sha256};

#[path = "../../io/src/http/snapshot/archive.rs"]
mod archive;

use archive::{Limits, Meta, Refusal, Status};

/// Bounds small enough for inputs of a few kilobytes to pass (deflate packs up to about 1000:1).
const SMALL: Limits = Limits {
    unpacked_bytes_max: 32 << 10,
    state_bytes_max: 16 << 10,
    meta_bytes_max: 512,
    sums_bytes_max: 256,
};

fuzz_target!(|data: &[u8]| {
    let restore = archive::read_archive(data, Limits::RESTORE);
    let small = archive::read_archive(data, SMALL);
    checked(data, &restore, Limits::RESTORE);
    checked(data, &small, SMALL);
    if let Ok(accepted) = &small {
        assert_eq!(restore.as_ref().ok(), Some(accepted), "the small bounds accept what a restore accepts");
    }
    let inspected = archive::inspect_archive(data);
    match &restore {
        Err(refusal) => {
            assert_eq!(inspected.as_ref().err(), Some(&archive::InspectError::Archive(refusal.clone())))
        }
        Ok((meta, state)) => {
            let restored = Fsm::restore(state);
            match (&inspected, &restored) {
                (Ok(info), Ok(_)) => {
                    assert_eq!((&info.id, info.index, info.term), (&meta.id, meta.index, meta.term));
                    assert_eq!((info.size_bytes, info.version), (meta.size, meta.version));
                }
                (Err(reason), Err(error)) => {
                    assert_eq!(reason, &archive::InspectError::State(error.clone()));
                    assert_eq!(reason.to_string(), format!("failed to decode the state: {error}"));
                }
                _ => panic!("inspect {inspected:?} disagrees with the restore {restored:?}"),
            }
            if let Ok(fsm) = restored {
                let again = Fsm::restore(&fsm.snapshot()).expect("a state's own snapshot restores");
                assert!(again == fsm, "a restored state snapshots to the same state");
            }
            let written = archive::write_archive(meta, state, 0).expect("an archive is written");
            let reread =
                archive::read_archive(&written, Limits::RESTORE).expect("its own archive reads back");
            assert_eq!((&reread.0, &reread.1), (meta, state));
        }
    }
});

/// One reading's answer checked against the input, read here without the module.
fn checked(data: &[u8], read: &Result<(Meta, bytes::Bytes), Refusal>, limits: Limits) {
    let unpacked = unpacked_len(data, limits.unpacked_bytes_max + 1);
    match read {
        Err(refusal) => {
            consuls(refusal);
            // The archive's own bytes may be quoted in a refusal's text: only the bound's
            // refusal starts with its words.
            if refusal.reason.starts_with("failed to read snapshot file: the archive unpacks to over ") {
                assert!(unpacked > limits.unpacked_bytes_max, "refused at {unpacked} unpacked bytes");
            }
        }
        Ok((meta, state)) => {
            assert!(unpacked <= limits.unpacked_bytes_max, "accepted {unpacked} unpacked bytes");
            assert!(state.len() <= limits.state_bytes_max);
            assert_eq!(meta.version, 1);
            assert_eq!(meta.size, state.len() as u64);
            summed(data, state);
        }
    }
}

/// Consul's texts (consul's `snapshot/archive.go` and the restore endpoint), with the status
/// each comes with.
fn consuls(refusal: &Refusal) {
    let reason = &refusal.reason;
    match refusal.status {
        Status::BadRequest => {
            let remain = reason
                .strip_suffix(" unread uncompressed bytes remain")
                .is_some_and(|count| count.parse::<usize>().is_ok_and(|count| count > 0));
            assert!(
                remain
                    || reason.starts_with("failed to decompress snapshot: ")
                    || reason.starts_with("failed to read snapshot file: ")
                    || reason.starts_with("Raft error when restoring snapshot: "),
                "{refusal:?}"
            );
        }
        Status::PayloadTooLarge => {
            let over = reason.starts_with("failed to read snapshot file: the archive unpacks to over ")
                || (reason.starts_with("failed to read snapshot file: state.bin is over ")
                    && reason.ends_with(" bytes, the most a restore can carry"));
            assert!(over, "{refusal:?}");
        }
    }
}

/// How many bytes `data` decompresses to, counting up to `cap` (where the stream breaks off,
/// what came before it).
fn unpacked_len(data: &[u8], cap: u64) -> u64 {
    let mut decoder = MultiGzDecoder::new(data).take(cap);
    let mut buf = [0u8; 8192];
    let mut total = 0;
    while let Ok(read @ 1..) = decoder.read(&mut buf) {
        total += read as u64;
    }
    total
}

/// `SHA256SUMS`, read with the tar crate alone, lists `state` and `meta.json` with their sums.
fn summed(data: &[u8], state: &[u8]) {
    let mut members = std::collections::BTreeMap::new();
    let mut tar = tar::Archive::new(MultiGzDecoder::new(data));
    for entry in tar.entries().expect("an accepted archive is a tar") {
        let mut entry = entry.expect("an accepted archive's members read");
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).expect("an accepted member reads");
        assert!(members.insert(name, bytes).is_none(), "no member twice");
    }
    assert_eq!(members.get("state.bin").map(Vec::as_slice), Some(state));
    let sums = std::str::from_utf8(&members["SHA256SUMS"]).expect("sums are text");
    for name in ["meta.json", "state.bin"] {
        let sum = format!("{:x}", Sha256::digest(&members[name]));
        let listed = sums.lines().any(|line| {
            let mut fields = line.split_whitespace();
            fields.next().is_some_and(|listed| listed.eq_ignore_ascii_case(&sum))
                && fields.next() == Some(name)
        });
        assert!(listed, "{name}'s sum {sum} is not in {sums:?}");
    }
}
