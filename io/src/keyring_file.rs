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

/// The keys the file holds, primary first; `None` when there is no file.
pub fn read(dir: &Path) -> Result<Option<Vec<Bytes>>, String> {
    let file = path(dir);
    let text = match std::fs::read(&file) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(format!("Error reading keyring file {}: {error}", file.display())),
    };
    let invalid = |reason: String| format!("Error reading keyring file {}: {reason}", file.display());
    let encoded: Vec<String> = serde_json::from_slice(&text).map_err(|e| invalid(e.to_string()))?;
    let keys = encoded
        .iter()
        .map(|key| base64::engine::general_purpose::STANDARD.decode(key).map(Bytes::from))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(e.to_string()))?;
    if keys.is_empty() {
        return Err(invalid("no keys".to_owned()));
    }
    Ok(Some(keys))
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
        assert!(read(&dir).unwrap_err().contains("Error reading keyring file"));
        std::fs::write(dir.join(KEYRING_FILE), "[]").unwrap();
        assert!(read(&dir).unwrap_err().ends_with("no keys"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
