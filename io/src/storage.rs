//! Durable state on a real file system.
//!
//! The stable state is small and replaced whole, so it is written the classic atomic way: write
//! a temporary file, fsync it, rename it over the old one, fsync the directory. A crash at any
//! point leaves either the old state or the new one, never a mix. A CRC32C over the contents
//! turns silent corruption into a clear error at start-up instead of a wrong incarnation.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use muster_core::gossip::StableState;

use crate::drive::Storage;

/// Stable state kept in `<data-dir>/node-state`.
#[derive(Debug, Clone)]
pub struct FileStorage {
    dir: PathBuf,
}

impl FileStorage {
    /// Storage in `dir`, created if missing.
    pub fn open(dir: impl Into<PathBuf>) -> io::Result<FileStorage> {
        let dir = dir.into();
        fs::create_dir_all(&dir)?;
        Ok(FileStorage { dir })
    }

    /// The state saved last, or `None` in a fresh data directory.
    pub fn load(&self) -> io::Result<Option<StableState>> {
        match fs::read(self.dir.join(STATE_FILE)) {
            Ok(bytes) => decode(&bytes).map(Some),
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(error),
        }
    }

    fn save_blocking(dir: &Path, state: StableState) -> io::Result<()> {
        replace_file(&dir.join(STATE_FILE), &encode(state))
    }
}

/// Replaces the file at `path` with `bytes` atomically and durably: a temporary file beside it,
/// fsynced, renamed over it, and the directory fsynced. A crash leaves the old contents or the
/// new ones, never a mix.
pub fn replace_file(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut file = fs::File::create(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    fs::rename(&tmp, path)?;
    // The rename is durable only once the directory entry is.
    fs::File::open(path.parent().unwrap_or(Path::new(".")))?.sync_all()
}

impl Storage for FileStorage {
    async fn save(&mut self, state: StableState) -> io::Result<()> {
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || FileStorage::save_blocking(&dir, state))
            .await
            .map_err(io::Error::other)?
    }
}

/// Storage for `-dev` agents, which keep all state in memory by design, as Consul's do.
#[derive(Debug, Clone, Default)]
pub struct MemoryStorage {
    state: Option<StableState>,
}

impl MemoryStorage {
    /// The state saved last.
    pub fn state(&self) -> Option<StableState> {
        self.state
    }
}

impl Storage for MemoryStorage {
    async fn save(&mut self, state: StableState) -> io::Result<()> {
        self.state = Some(state);
        Ok(())
    }
}

fn encode(state: StableState) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(STATE_BYTES);
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&state.boot_epoch.to_be_bytes());
    let crc = crc32c::crc32c(&bytes);
    bytes.extend_from_slice(&crc.to_be_bytes());
    assert_eq!(bytes.len(), STATE_BYTES);
    bytes
}

fn decode(bytes: &[u8]) -> io::Result<StableState> {
    let corrupt =
        |why: &str| io::Error::new(io::ErrorKind::InvalidData, format!("{STATE_FILE} is corrupt: {why}"));
    if bytes.len() != STATE_BYTES {
        return Err(corrupt(&format!("{} bytes, expected {STATE_BYTES}", bytes.len())));
    }
    let (body, crc) = bytes.split_at(STATE_BYTES - 4);
    if crc32c::crc32c(body).to_be_bytes() != crc {
        return Err(corrupt("checksum mismatch"));
    }
    if &body[..MAGIC.len()] != MAGIC {
        return Err(corrupt("unknown format"));
    }
    let boot_epoch = u32::from_be_bytes(body[MAGIC.len()..].try_into().expect("4 bytes"));
    Ok(StableState { boot_epoch })
}

const STATE_FILE: &str = "node-state";
#[cfg(test)]
const STATE_FILE_TMP: &str = "node-state.tmp";
/// Format tag and version of the state file.
const MAGIC: &[u8; 8] = b"MUSTER\x00\x01";
const STATE_BYTES: usize = MAGIC.len() + 4 + 4;

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("muster-storage-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[tokio::test(flavor = "current_thread")]
    async fn saved_state_survives_reopening() {
        let dir = temp_dir("reopen");
        let mut storage = FileStorage::open(&dir).unwrap();
        assert_eq!(storage.load().unwrap(), None);
        storage.save(StableState { boot_epoch: 7 }).await.unwrap();
        storage.save(StableState { boot_epoch: 8 }).await.unwrap();
        let reopened = FileStorage::open(&dir).unwrap();
        assert_eq!(reopened.load().unwrap(), Some(StableState { boot_epoch: 8 }));
        assert!(!dir.join(STATE_FILE_TMP).exists());
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn corruption_is_a_clear_error() {
        let dir = temp_dir("corrupt");
        let storage = FileStorage::open(&dir).unwrap();
        let mut bytes = encode(StableState { boot_epoch: 3 });
        bytes[10] ^= 0x40;
        fs::write(dir.join(STATE_FILE), &bytes).unwrap();
        let error = storage.load().unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
        assert_eq!(error.to_string(), "node-state is corrupt: checksum mismatch");
        fs::write(dir.join(STATE_FILE), &bytes[..5]).unwrap();
        assert_eq!(storage.load().unwrap_err().to_string(), "node-state is corrupt: 5 bytes, expected 16");
        fs::remove_dir_all(dir).unwrap();
    }
}

/// The agent's storage: in memory under `-dev`, on disk otherwise.
#[derive(Debug, Clone)]
pub enum AgentStorage {
    /// `-dev`.
    Memory(MemoryStorage),
    /// `-data-dir`.
    File(FileStorage),
}

impl Storage for AgentStorage {
    async fn save(&mut self, state: StableState) -> io::Result<()> {
        match self {
            AgentStorage::Memory(storage) => storage.save(state).await,
            AgentStorage::File(storage) => storage.save(state).await,
        }
    }
}
