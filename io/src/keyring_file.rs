//! The gossip keyring on disk: `<pool dir>/local.keyring`, a JSON array of base64 keys with the
//! primary first, as Consul keeps `serf/local.keyring`. Written whenever the keys change
//! (an install, use or removal from `/v1/operator/keyring` on any member), read at start in
//! place of `-encrypt`, so a rotated key survives a restart.

use std::path::{Path, PathBuf};

use base64::Engine;
use bytes::Bytes;

/// The file's name in the pool's directory.
pub const KEYRING_FILE: &str = "local.keyring";

fn path(dir: &Path) -> PathBuf {
    dir.join(KEYRING_FILE)
}

/// Why the keyring file could not be read, or holds no keyring.
#[derive(Debug, thiserror::Error)]
#[error("Error reading keyring file {}: {reason}", path.display())]
pub struct KeyringFileError {
    /// The file.
    pub path: PathBuf,
    /// What went wrong.
    pub reason: KeyringFileReason,
}

/// What is wrong with the keyring file.
#[derive(Debug, thiserror::Error)]
pub enum KeyringFileReason {
    /// It could not be read.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// It is not a JSON array of strings.
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    /// A key is not base64.
    #[error(transparent)]
    Base64(#[from] base64::DecodeError),
    /// The array is empty.
    #[error("no keys")]
    NoKeys,
}

/// The keys the file holds, primary first; `None` when there is no file.
pub fn read(dir: &Path) -> Result<Option<Vec<Bytes>>, KeyringFileError> {
    let file = path(dir);
    match decode(&file) {
        Err(KeyringFileReason::Io(error)) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(reason) => Err(KeyringFileError { path: file, reason }),
        Ok(keys) => Ok(Some(keys)),
    }
}

fn decode(file: &Path) -> Result<Vec<Bytes>, KeyringFileReason> {
    let encoded: Vec<String> = serde_json::from_slice(&std::fs::read(file)?)?;
    let keys = encoded
        .iter()
        .map(|key| base64::engine::general_purpose::STANDARD.decode(key).map(Bytes::from))
        .collect::<Result<Vec<_>, _>>()?;
    if keys.is_empty() {
        return Err(KeyringFileReason::NoKeys);
    }
    Ok(keys)
}

/// Replaces the file with `keys` (atomically, fsynced).
pub fn write(dir: &Path, keys: &[Bytes]) -> std::io::Result<()> {
    let encoded: Vec<String> =
        keys.iter().map(|k| base64::engine::general_purpose::STANDARD.encode(k)).collect();
    let text = serde_json::to_vec(&encoded).expect("strings serialize");
    crate::storage::replace_file(&path(dir), &text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_primary_first() {
        let dir = std::env::temp_dir().join(format!("muster-keyring-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert_eq!(read(&dir).unwrap(), None);
        let keys = vec![Bytes::from(vec![1u8; 32]), Bytes::from(vec![2u8; 16])];
        write(&dir, &keys).unwrap();
        assert_eq!(read(&dir).unwrap(), Some(keys));
        std::fs::write(dir.join(KEYRING_FILE), "[\"not base64!\"]").unwrap();
        assert!(read(&dir).unwrap_err().to_string().contains("Error reading keyring file"));
        std::fs::write(dir.join(KEYRING_FILE), "[]").unwrap();
        assert!(read(&dir).unwrap_err().to_string().ends_with("no keys"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
