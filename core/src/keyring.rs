//! The gossip keyring: AES-GCM encryption of every datagram and stream frame (memberlist's
//! `keyring.go` and `security.go`, Consul's `encrypt`).
//!
//! A keyring holds one or more 16-, 24- or 32-byte keys (AES-128, -192, -256). The first is the
//! *primary*: it encrypts everything sent. Every installed key is tried on what is received, so a
//! new key can be rolled out cluster-wide (install everywhere, then use, then remove the old one)
//! without a moment in which two nodes cannot talk. The primary cannot be removed.
//!
//! ```text
//! envelope = version:u8 (1) | nonce[12] | ciphertext | tag[16]
//! ```
//!
//! Nonces are drawn from the node's seeded RNG: 96 random bits per message, as memberlist does.
//! The key bytes are never printed: `Debug` shows only how many keys there are.

use aes::Aes192;
use aes_gcm::aead::consts::U12;
use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes128Gcm, Aes256Gcm, AesGcm, Nonce};

/// Version byte of the envelope (memberlist's version 1: no padding).
pub const ENVELOPE_VERSION: u8 = 1;

/// Bytes the envelope adds to a message: version, nonce and tag.
pub const ENVELOPE_OVERHEAD_BYTES: usize = 1 + NONCE_BYTES + TAG_BYTES;

/// Bytes of an AES-GCM nonce.
pub const NONCE_BYTES: usize = 12;

/// Bytes of an AES-GCM tag.
const TAG_BYTES: usize = 16;

/// The most keys a keyring holds: enough for a rotation in progress and then some.
pub const KEYS_MAX: usize = 16;

/// An ordered set of keys; the first encrypts.
pub struct Keyring {
    keys: Vec<Key>,
}

struct Key {
    bytes: Vec<u8>,
    cipher: Cipher,
}

enum Cipher {
    Aes128(Box<Aes128Gcm>),
    Aes192(Box<AesGcm<Aes192, U12>>),
    Aes256(Box<Aes256Gcm>),
}

/// Why a keyring operation was refused. A refused operation changed nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyringError {
    /// Keys are 16, 24 or 32 bytes.
    #[error("key size must be 16, 24 or 32 bytes, not {0}")]
    InvalidKeySize(usize),
    /// The key is installed already.
    #[error("key is already installed")]
    AlreadyInstalled,
    /// The key is not installed.
    #[error("key is not in the keyring")]
    NotInstalled,
    /// The primary key encrypts everything sent; make another key primary first.
    #[error("removing the primary key is not allowed")]
    RemovePrimary,
    /// The keyring is full.
    #[error("a keyring holds at most {KEYS_MAX} keys")]
    Full,
}

/// Why a received envelope was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecryptError {
    /// Too short to hold a version, a nonce and a tag.
    #[error("encrypted message truncated")]
    Truncated,
    /// A version this build does not speak.
    #[error("unsupported encryption version {0}")]
    UnsupportedVersion(u8),
    /// No installed key authenticates it: a wrong key, or tampering.
    #[error("no installed key decrypts the message")]
    NoKey,
}

impl Keyring {
    /// A keyring with `primary` as its only key.
    pub fn new(primary: &[u8]) -> Result<Keyring, KeyringError> {
        Ok(Keyring { keys: vec![Key::new(primary)?] })
    }

    /// Adds `key` for decryption; it does not encrypt until [`Keyring::use_key`].
    pub fn install(&mut self, key: &[u8]) -> Result<(), KeyringError> {
        if self.position(key).is_some() {
            return Err(KeyringError::AlreadyInstalled);
        }
        if self.keys.len() >= KEYS_MAX {
            return Err(KeyringError::Full);
        }
        self.keys.push(Key::new(key)?);
        Ok(())
    }

    /// Makes the installed `key` the primary.
    pub fn use_key(&mut self, key: &[u8]) -> Result<(), KeyringError> {
        let at = self.position(key).ok_or(KeyringError::NotInstalled)?;
        let key = self.keys.remove(at);
        self.keys.insert(0, key);
        Ok(())
    }

    /// Removes a key other than the primary.
    pub fn remove(&mut self, key: &[u8]) -> Result<(), KeyringError> {
        match self.position(key) {
            None => Err(KeyringError::NotInstalled),
            Some(0) => Err(KeyringError::RemovePrimary),
            Some(at) => {
                self.keys.remove(at);
                Ok(())
            }
        }
    }

    /// Every installed key, the primary first.
    pub fn keys(&self) -> impl Iterator<Item = &[u8]> {
        self.keys.iter().map(|key| key.bytes.as_slice())
    }

    /// Seals `plaintext` with the primary key under `nonce`.
    pub fn encrypt(&self, plaintext: &[u8], nonce: [u8; NONCE_BYTES]) -> Vec<u8> {
        let sealed = self.keys[0].seal(&nonce, plaintext);
        let mut envelope = Vec::with_capacity(1 + NONCE_BYTES + sealed.len());
        envelope.push(ENVELOPE_VERSION);
        envelope.extend_from_slice(&nonce);
        envelope.extend_from_slice(&sealed);
        debug_assert_eq!(envelope.len(), plaintext.len() + ENVELOPE_OVERHEAD_BYTES);
        envelope
    }

    /// Opens an envelope with whichever installed key authenticates it.
    pub fn decrypt(&self, envelope: &[u8]) -> Result<Vec<u8>, DecryptError> {
        if envelope.len() < ENVELOPE_OVERHEAD_BYTES {
            return Err(DecryptError::Truncated);
        }
        if envelope[0] != ENVELOPE_VERSION {
            return Err(DecryptError::UnsupportedVersion(envelope[0]));
        }
        let nonce: [u8; NONCE_BYTES] = envelope[1..1 + NONCE_BYTES].try_into().expect("length checked");
        let sealed = &envelope[1 + NONCE_BYTES..];
        self.keys.iter().find_map(|key| key.open(&nonce, sealed)).ok_or(DecryptError::NoKey)
    }

    fn position(&self, key: &[u8]) -> Option<usize> {
        self.keys.iter().position(|k| k.bytes == key)
    }
}

impl Key {
    fn new(bytes: &[u8]) -> Result<Key, KeyringError> {
        let invalid = |_| KeyringError::InvalidKeySize(bytes.len());
        let cipher = match bytes.len() {
            16 => Cipher::Aes128(Box::new(Aes128Gcm::new_from_slice(bytes).map_err(invalid)?)),
            24 => Cipher::Aes192(Box::new(AesGcm::new_from_slice(bytes).map_err(invalid)?)),
            32 => Cipher::Aes256(Box::new(Aes256Gcm::new_from_slice(bytes).map_err(invalid)?)),
            other => return Err(KeyringError::InvalidKeySize(other)),
        };
        Ok(Key { bytes: bytes.to_vec(), cipher })
    }

    fn seal(&self, nonce: &[u8; NONCE_BYTES], plaintext: &[u8]) -> Vec<u8> {
        let nonce = Nonce::from_slice(nonce);
        let sealed = match &self.cipher {
            Cipher::Aes128(c) => c.encrypt(nonce, plaintext),
            Cipher::Aes192(c) => c.encrypt(nonce, plaintext),
            Cipher::Aes256(c) => c.encrypt(nonce, plaintext),
        };
        sealed.expect("AES-GCM encryption of a bounded message cannot fail")
    }

    fn open(&self, nonce: &[u8; NONCE_BYTES], sealed: &[u8]) -> Option<Vec<u8>> {
        let nonce = Nonce::from_slice(nonce);
        let opened = match &self.cipher {
            Cipher::Aes128(c) => c.decrypt(nonce, sealed),
            Cipher::Aes192(c) => c.decrypt(nonce, sealed),
            Cipher::Aes256(c) => c.decrypt(nonce, sealed),
        };
        opened.ok()
    }
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring").field("keys", &self.keys.len()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const K16: [u8; 16] = [1; 16];
    const K24: [u8; 24] = [2; 24];
    const K32: [u8; 32] = [3; 32];

    #[test]
    fn every_key_size_round_trips_and_the_envelope_has_the_documented_shape() {
        for key in [&K16[..], &K24[..], &K32[..]] {
            let ring = Keyring::new(key).unwrap();
            let envelope = ring.encrypt(b"hello", [7; 12]);
            assert_eq!(envelope.len(), 5 + ENVELOPE_OVERHEAD_BYTES);
            assert_eq!(envelope[0], 1);
            assert_eq!(&envelope[1..13], &[7; 12]);
            assert_eq!(ring.decrypt(&envelope).unwrap(), b"hello");
        }
        assert_eq!(Keyring::new(&[0; 15]).unwrap_err(), KeyringError::InvalidKeySize(15));
    }

    #[test]
    fn rotation_install_use_remove_keeps_old_messages_readable_until_removed() {
        let mut ring = Keyring::new(&K16).unwrap();
        let old = ring.encrypt(b"old", [1; 12]);
        ring.install(&K32).unwrap();
        assert_eq!(ring.install(&K32), Err(KeyringError::AlreadyInstalled));
        ring.use_key(&K32).unwrap();
        assert_eq!(ring.keys().collect::<Vec<_>>(), vec![&K32[..], &K16[..]]);
        assert_eq!(ring.remove(&K32), Err(KeyringError::RemovePrimary));
        assert_eq!(ring.decrypt(&old).unwrap(), b"old", "the old key still decrypts");
        ring.remove(&K16).unwrap();
        assert_eq!(ring.decrypt(&old), Err(DecryptError::NoKey));
        assert_eq!(ring.use_key(&K24), Err(KeyringError::NotInstalled));
        assert_eq!(format!("{ring:?}"), "Keyring { keys: 1 }", "keys are never printed");
    }

    #[test]
    fn tampering_wrong_keys_and_garbage_are_refused() {
        let ring = Keyring::new(&K16).unwrap();
        let mut envelope = ring.encrypt(b"payload", [9; 12]);
        let other = Keyring::new(&K24).unwrap();
        assert_eq!(other.decrypt(&envelope), Err(DecryptError::NoKey));
        *envelope.last_mut().unwrap() ^= 1;
        assert_eq!(ring.decrypt(&envelope), Err(DecryptError::NoKey));
        assert_eq!(ring.decrypt(&[1; 28]), Err(DecryptError::Truncated));
        assert_eq!(ring.decrypt(&[0; 40]), Err(DecryptError::UnsupportedVersion(0)));
    }
}
