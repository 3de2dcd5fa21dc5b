//! The encrypted envelope decoder on arbitrary bytes: it may refuse them but must not panic;
//! and any payload sealed under a key opens again to exactly itself.

#![no_main]

use libfuzzer_sys::fuzz_target;
use muster_core::keyring::{Keyring, NONCE_BYTES};

fuzz_target!(|data: &[u8]| {
    let ring = Keyring::new(&[7; 32]).expect("a 32-byte key");
    let _ = ring.decrypt(data);
    let mut nonce = [0u8; NONCE_BYTES];
    let n = data.len().min(NONCE_BYTES);
    nonce[..n].copy_from_slice(&data[..n]);
    let sealed = ring.encrypt(data, nonce);
    assert_eq!(ring.decrypt(&sealed).expect("opens under its own key"), data);
});
