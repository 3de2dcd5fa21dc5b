//! The replicated state machine: what every server applies from the Raft log, in order, with
//! Consul's semantics (`../shared/reference/consul-behaviour.md` §0.1, §1.1, §7).
//!
//! [`Fsm::apply`] takes a committed entry's index and bytes and returns the answer for the
//! proposer and what the entry touched (for [`Watches`]). It is a pure function of the state and
//! the entry: no clock (a leader stamps time into the commands that need it), no randomness,
//! no I/O, so every replica that applies the same log holds the same state, byte for byte in
//! its snapshot.
//!
//! Commands on the wire and in the log:
//!
//! ```text
//! command  = version:u8 type:u8 body       body = postcard encoding of the type's fields
//! type     < 0x80: must be understood; a server that does not know it stops applying (fatal)
//! type    >= 0x80: may be skipped by a server that does not know it (forward compatibility)
//! snapshot = "MFSM" version:u8 postcard(applied index, tables)
//! ```
//!
//! Slice 1 (this module today): the KV store with flags, check-and-set, deletes, delete-tree,
//! tombstones and their reaping, and the watch registry. Sessions, locks, transactions and the
//! catalog follow (issue 5).

pub mod kv;
#[cfg(test)]
mod tests;
pub mod watch;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

pub use self::kv::{Kv, KvEntry, VALUE_BYTES_MAX};
pub use self::watch::{Touched, WatchId, WatchTarget, Watches};

/// A Raft log index, as the state machine stamps it on what it writes.
pub type Index = u64;

/// The command encoding's version.
pub const COMMAND_VERSION: u8 = 1;

/// Command types at or above this may be skipped by servers that do not know them.
pub const IGNORABLE_TYPE_MIN: u8 = 0x80;

const SNAPSHOT_MAGIC: &[u8; 4] = b"MFSM";
const SNAPSHOT_VERSION: u8 = 1;

/// Writes `value` at `key` with `flags` (Consul's plain `PUT /v1/kv/<key>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvSet {
    /// The key.
    pub key: String,
    /// The value.
    pub value: Bytes,
    /// The flags (a plain PUT without `?flags` sets 0).
    pub flags: u64,
}

/// Writes only if the key's `ModifyIndex` is `index` (0: only if the key does not exist).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvCas {
    /// The write.
    pub set: KvSet,
    /// The expected `ModifyIndex`.
    pub index: Index,
}

/// Deletes one key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvDelete {
    /// The key.
    pub key: String,
}

/// Deletes one key only if its `ModifyIndex` is `index` (0 never deletes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvDeleteCas {
    /// The key.
    pub key: String,
    /// The expected `ModifyIndex`.
    pub index: Index,
}

/// Deletes every key under a prefix (`""`: everything).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvDeleteTree {
    /// The prefix.
    pub prefix: String,
}

/// Drops tombstones at or below an index (the leader proposes it once they are old enough).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TombstoneReap {
    /// The newest tombstone index to drop.
    pub up_to: Index,
}

/// What a log entry asks of the state machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// [`KvSet`].
    KvSet(KvSet),
    /// [`KvCas`].
    KvCas(KvCas),
    /// [`KvDelete`].
    KvDelete(KvDelete),
    /// [`KvDeleteCas`].
    KvDeleteCas(KvDeleteCas),
    /// [`KvDeleteTree`].
    KvDeleteTree(KvDeleteTree),
    /// [`TombstoneReap`].
    TombstoneReap(TombstoneReap),
}

impl Command {
    /// Its type code in the encoding.
    fn type_code(&self) -> u8 {
        match self {
            Command::KvSet(_) => 1,
            Command::KvCas(_) => 2,
            Command::KvDelete(_) => 3,
            Command::KvDeleteCas(_) => 4,
            Command::KvDeleteTree(_) => 5,
            Command::TombstoneReap(_) => 6,
        }
    }

    /// Its encoding, for a Raft proposal.
    pub fn encode(&self) -> Bytes {
        let mut out = vec![COMMAND_VERSION, self.type_code()];
        let body = match self {
            Command::KvSet(body) => postcard::to_extend(body, out),
            Command::KvCas(body) => postcard::to_extend(body, out),
            Command::KvDelete(body) => postcard::to_extend(body, out),
            Command::KvDeleteCas(body) => postcard::to_extend(body, out),
            Command::KvDeleteTree(body) => postcard::to_extend(body, out),
            Command::TombstoneReap(body) => postcard::to_extend(body, out),
        };
        out = body.expect("encoding into a Vec cannot fail");
        Bytes::from(out)
    }

    /// Decodes a command. `Ok(None)`: an ignorable type this server does not know.
    pub fn decode(bytes: &[u8]) -> Result<Option<Command>, DecodeError> {
        let [version, type_code, body @ ..] = bytes else {
            return Err(DecodeError::Truncated);
        };
        if *version != COMMAND_VERSION {
            return Err(DecodeError::UnsupportedVersion(*version));
        }
        let command = match type_code {
            1 => Command::KvSet(body_of(body)?),
            2 => Command::KvCas(body_of(body)?),
            3 => Command::KvDelete(body_of(body)?),
            4 => Command::KvDeleteCas(body_of(body)?),
            5 => Command::KvDeleteTree(body_of(body)?),
            6 => Command::TombstoneReap(body_of(body)?),
            &unknown if unknown >= IGNORABLE_TYPE_MIN => return Ok(None),
            &unknown => return Err(DecodeError::UnknownType(unknown)),
        };
        Ok(Some(command))
    }

    /// Refuses what no proposer should send, before it is proposed (and again when applied,
    /// so a bad entry changes nothing).
    pub fn validate(&self) -> Result<(), CommandError> {
        let set = match self {
            Command::KvSet(set) | Command::KvCas(KvCas { set, .. }) => set,
            Command::KvDelete(KvDelete { key }) | Command::KvDeleteCas(KvDeleteCas { key, .. }) => {
                return if key.is_empty() { Err(CommandError::MissingKey) } else { Ok(()) };
            }
            Command::KvDeleteTree(_) | Command::TombstoneReap(_) => return Ok(()),
        };
        if set.key.is_empty() {
            return Err(CommandError::MissingKey);
        }
        if set.value.len() > VALUE_BYTES_MAX {
            return Err(CommandError::ValueTooLarge {
                key: set.key.clone(),
                size: set.value.len(),
                max: VALUE_BYTES_MAX,
            });
        }
        Ok(())
    }
}

/// Decodes a whole body: trailing bytes are an error, so every command has one encoding.
fn body_of<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, DecodeError> {
    match postcard::take_from_bytes(body) {
        Ok((value, [])) => Ok(value),
        Ok((_, rest)) => Err(DecodeError::TrailingBytes(rest.len())),
        Err(error) => Err(DecodeError::Malformed(error.to_string())),
    }
}

/// Why bytes are not a command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Shorter than a header.
    #[error("command truncated")]
    Truncated,
    /// Written by an encoding this server does not know.
    #[error("unsupported command version {0}")]
    UnsupportedVersion(u8),
    /// A type that must be understood and is not.
    #[error("unknown command type {0} (not ignorable)")]
    UnknownType(u8),
    /// The body does not decode.
    #[error("malformed command: {0}")]
    Malformed(String),
    /// Bytes after the body.
    #[error("{0} bytes after the command")]
    TrailingBytes(usize),
}

/// Why a command was refused; nothing changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// A key is required.
    #[error("Missing key name")]
    MissingKey,
    /// The value is over [`VALUE_BYTES_MAX`].
    #[error("Value for key {key:?} is too large ({size} > {max} bytes)")]
    ValueTooLarge {
        /// The key.
        key: String,
        /// The value's size.
        size: usize,
        /// The limit.
        max: usize,
    },
}

/// What applying a command answers its proposer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// Consul's `true`/`false` (CAS and delete-CAS answer `false` on a mismatch).
    Bool(bool),
    /// How many tombstones a reap dropped.
    Reaped(usize),
    /// Refused; nothing changed.
    Rejected(CommandError),
    /// An ignorable command this server does not know; nothing changed.
    Ignored,
}

/// The outcome of one applied entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// The proposer's answer.
    pub response: Response,
    /// What changed, for [`Watches::wake`].
    pub touched: Touched,
}

/// The whole replicated state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fsm {
    kv: Kv,
    applied: Index,
}

/// Why a committed entry could not be applied. Fatal for the server: its state would diverge
/// from the others' if it skipped the entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot apply the entry at index {index}: {error}")]
pub struct ApplyError {
    /// The entry.
    pub index: Index,
    /// Why.
    pub error: DecodeError,
}

/// Why a snapshot could not be restored; the state is unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    /// Not a state machine snapshot, or of a version this server does not read.
    #[error("not a muster state snapshot of version {SNAPSHOT_VERSION}")]
    Format,
    /// It does not decode.
    #[error("malformed state snapshot: {0}")]
    Malformed(String),
    /// It decodes but breaks the state's rules.
    #[error("inconsistent state snapshot: {0}")]
    Inconsistent(&'static str),
}

#[derive(Serialize, Deserialize)]
struct SnapshotBody<T> {
    applied: Index,
    kv: T,
}

impl Fsm {
    /// An empty state.
    pub fn new() -> Fsm {
        Fsm::default()
    }

    /// The KV store.
    pub fn kv(&self) -> &Kv {
        &self.kv
    }

    /// The index of the last entry applied.
    pub fn applied(&self) -> Index {
        self.applied
    }

    /// Applies the committed entry at `index` (indexes only grow). An ignorable command this
    /// server does not know is skipped; any other undecodable entry is an error the caller must
    /// treat as fatal.
    pub fn apply(&mut self, index: Index, entry: &[u8]) -> Result<Applied, ApplyError> {
        match Command::decode(entry) {
            Ok(Some(command)) => Ok(self.apply_command(index, &command)),
            Ok(None) => {
                self.advance(index);
                Ok(Applied { response: Response::Ignored, touched: Touched::default() })
            }
            Err(error) => Err(ApplyError { index, error }),
        }
    }

    /// Applies a decoded command at `index`.
    pub fn apply_command(&mut self, index: Index, command: &Command) -> Applied {
        self.advance(index);
        let mut touched = Touched::default();
        if let Err(error) = command.validate() {
            return Applied { response: Response::Rejected(error), touched };
        }
        let response = match command {
            Command::KvSet(set) => {
                self.kv.set(index, &set.key, set.value.clone(), set.flags);
                touched.keys.push(set.key.clone());
                Response::Bool(true)
            }
            Command::KvCas(KvCas { set, index: expected }) => {
                let ok = self.kv.modify_index_of(&set.key) == *expected;
                if ok {
                    self.kv.set(index, &set.key, set.value.clone(), set.flags);
                    touched.keys.push(set.key.clone());
                }
                Response::Bool(ok)
            }
            Command::KvDelete(KvDelete { key }) => {
                if self.kv.delete(index, key) {
                    touched.keys.push(key.clone());
                }
                // Consul answers `true` whether or not the key existed.
                Response::Bool(true)
            }
            Command::KvDeleteCas(KvDeleteCas { key, index: expected }) => {
                let ok = *expected != 0 && self.kv.modify_index_of(key) == *expected;
                if ok {
                    self.kv.delete(index, key);
                    touched.keys.push(key.clone());
                }
                Response::Bool(ok)
            }
            Command::KvDeleteTree(KvDeleteTree { prefix }) => {
                touched.keys = self.kv.delete_tree(index, prefix);
                Response::Bool(true)
            }
            Command::TombstoneReap(TombstoneReap { up_to }) => Response::Reaped(self.kv.reap(index, *up_to)),
        };
        self.check_invariants();
        Applied { response, touched }
    }

    fn advance(&mut self, index: Index) {
        assert!(
            index > self.applied,
            "entries are applied once, in log order ({index} after {})",
            self.applied
        );
        self.applied = index;
    }

    /// The whole state, encoded: identical states give identical bytes.
    pub fn snapshot(&self) -> Bytes {
        let mut out = SNAPSHOT_MAGIC.to_vec();
        out.push(SNAPSHOT_VERSION);
        let body = SnapshotBody { applied: self.applied, kv: &self.kv };
        Bytes::from(postcard::to_extend(&body, out).expect("encoding into a Vec cannot fail"))
    }

    /// The state a snapshot holds, checked before it is accepted.
    pub fn restore(bytes: &[u8]) -> Result<Fsm, SnapshotError> {
        let body = bytes
            .strip_prefix(SNAPSHOT_MAGIC)
            .and_then(|rest| rest.strip_prefix(&[SNAPSHOT_VERSION]))
            .ok_or(SnapshotError::Format)?;
        let body: SnapshotBody<Kv> = match postcard::take_from_bytes(body) {
            Ok((body, [])) => body,
            Ok(_) => return Err(SnapshotError::Malformed("trailing bytes".into())),
            Err(error) => return Err(SnapshotError::Malformed(error.to_string())),
        };
        let fsm = Fsm { kv: body.kv, applied: body.applied };
        fsm.validate()?;
        Ok(fsm)
    }

    /// The state's rules, checked on what arrives from outside (a snapshot).
    fn validate(&self) -> Result<(), SnapshotError> {
        let kv = &self.kv;
        if kv.index > self.applied {
            return Err(SnapshotError::Inconsistent("the KV index is past the applied index"));
        }
        for (key, entry) in &kv.entries {
            if *key != entry.key {
                return Err(SnapshotError::Inconsistent("an entry is filed under another key"));
            }
            if entry.create_index > entry.modify_index || entry.modify_index > kv.index {
                return Err(SnapshotError::Inconsistent("an entry's indexes are out of order"));
            }
            if entry.value.len() > VALUE_BYTES_MAX {
                return Err(SnapshotError::Inconsistent("a value is over the size limit"));
            }
        }
        if kv.tombstones.values().any(|&deleted| deleted > kv.index) {
            return Err(SnapshotError::Inconsistent("a tombstone is past the KV index"));
        }
        Ok(())
    }

    /// Checks the state's invariants; a no-op outside test, simulation and fuzz builds.
    pub fn check_invariants(&self) {
        #[cfg(any(test, feature = "invariants"))]
        self.kv.check(self.applied);
    }
}
