//! What a gossip pool remembers across restarts so that an agent comes back on its own (Consul
//! keeps the same in serf's snapshot file): the addresses of the members it last saw alive,
//! and whether it left gracefully. A restarted agent joins those members again, unless it had
//! left (then only `-rejoin`, Consul's `rejoin_after_leave`, brings it back).
//!
//! The file, `<pool dir>/peers`, is a first line `alive` or `left` and one `ip:port` per line
//! after it, replaced atomically ([`crate::storage::replace_file`]).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::http::{Members, Pool};

/// The file's name in the pool's data directory.
pub const PEERS_FILE: &str = "peers";

/// The most members remembered: enough to find the cluster again, small enough to write often.
const REMEMBERED_MAX: usize = 64;

/// What a pool remembers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Remembered {
    /// It left gracefully.
    pub left: bool,
    /// The members it last saw alive.
    pub peers: Vec<SocketAddr>,
}

/// Why what a pool remembers could not be read.
#[derive(Debug, thiserror::Error)]
pub enum RememberedError {
    /// The file could not be read.
    #[error("Error reading {}: {source}", path.display())]
    Read {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A first line muster never writes: it is `left` or `alive`.
    #[error("Error reading {}: unexpected {line:?}", path.display())]
    BadState {
        /// The file.
        path: std::path::PathBuf,
        /// The line.
        line: String,
    },
    /// A later line that is not a member's address.
    #[error("Error reading {}: bad address {line:?}", path.display())]
    BadAddress {
        /// The file.
        path: std::path::PathBuf,
        /// The line.
        line: String,
    },
}

/// Reads what the pool in `dir` remembers (nothing, if it never wrote).
pub fn read(dir: &Path) -> Result<Remembered, RememberedError> {
    let path = dir.join(PEERS_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Remembered::default()),
        Err(source) => return Err(RememberedError::Read { path, source }),
    };
    let mut lines = text.lines();
    let left = match lines.next() {
        Some("left") => true,
        Some("alive") | None => false,
        Some(other) => return Err(RememberedError::BadState { path, line: other.to_owned() }),
    };
    let bad_address = |line: &str| RememberedError::BadAddress { path: path.clone(), line: line.to_owned() };
    let peers = lines.map(|line| line.parse().map_err(|_| bad_address(line))).collect::<Result<_, _>>()?;
    Ok(Remembered { left, peers })
}

/// Replaces what the pool in `dir` remembers.
pub fn write(dir: &Path, remembered: &Remembered) -> std::io::Result<()> {
    let mut text = String::from(if remembered.left { "left" } else { "alive" });
    for peer in &remembered.peers {
        text.push('\n');
        text.push_str(&peer.to_string());
    }
    crate::storage::replace_file(&dir.join(PEERS_FILE), text.as_bytes())
}

/// Keeps the file up to date with the pool's alive members (other than `me`) while the agent
/// runs; the agent aborts it before recording a leave.
pub async fn remember(members: Arc<Members>, pool: Pool, me: String, dir: PathBuf) {
    let mut published = members.subscribe();
    let mut last = None;
    loop {
        let mut peers: Vec<SocketAddr> = members
            .list(pool)
            .into_iter()
            .filter(|m| m.status == muster_core::swim::Status::Alive && m.name != me)
            .map(|m| m.addr)
            .collect();
        peers.truncate(REMEMBERED_MAX);
        // An empty list says nothing new (the agent just started, or is cut off): keep the old.
        if !peers.is_empty() && last.as_ref() != Some(&peers) {
            let remembered = Remembered { left: false, peers: peers.clone() };
            let dir = dir.clone();
            match tokio::task::spawn_blocking(move || write(&dir, &remembered)).await {
                Ok(Ok(())) => last = Some(peers),
                Ok(Err(error)) => tracing::warn!(%error, "agent: cannot record the known members"),
                Err(_) => return,
            }
        }
        if published.changed().await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_written_is_read_back_and_damage_is_an_error() {
        let dir = std::env::temp_dir().join(format!("muster-rejoin-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert_eq!(read(&dir).unwrap(), Remembered::default(), "nothing written: nothing remembered");
        let remembered = Remembered {
            left: true,
            peers: vec!["127.0.0.1:8301".parse().unwrap(), "[::1]:8301".parse().unwrap()],
        };
        write(&dir, &remembered).unwrap();
        assert_eq!(read(&dir).unwrap(), remembered);
        std::fs::write(dir.join(PEERS_FILE), "alive\nnot-an-address").unwrap();
        assert!(read(&dir).unwrap_err().to_string().contains("bad address \"not-an-address\""));
        std::fs::write(dir.join(PEERS_FILE), "gone").unwrap();
        assert!(read(&dir).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
