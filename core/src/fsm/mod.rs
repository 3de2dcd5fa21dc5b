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
//! command  = version:u8 type:u8 now_ms:u64le body
//!            now_ms = the leader's clock (Unix ms) when it proposed the entry: the only time
//!                     `apply` knows (lock delays); body = postcard encoding of the type's fields
//! type     < 0x80: must be understood; a server that does not know it stops applying (fatal)
//! type    >= 0x80: may be skipped by a server that does not know it (forward compatibility)
//! snapshot = "MFSM" 3 postcard(applied index, kv, catalog, sessions)
//!          | "MFSM" 4 postcard(applied index, kv, catalog, sessions, staged restore)
//!          | "MFSM" 5 postcard((applied index, kv, catalog, sessions), staged?, autopilot)
//!          | "MFSM" 6 postcard((applied index, kv, catalog, sessions), staged?, autopilot?, acl)
//! ```
//! (Each snapshot is written in the oldest version that can hold it: 4 only while a restore is
//! staged, 5 once autopilot settings exist, 6 once the ACL state is not empty; so servers from
//! before each read what does not use it.)
//!
//! A [`Restore`] command carries a whole snapshot through the log (Consul's `PUT
//! /v1/snapshot`), so every server replaces its state at the same index. The snapshot may come
//! from another cluster whose indexes are ahead of ours, and every index in our state must stay
//! at or below the applied index: applying it lowers each index above the entry's to the
//! entry's. As one entry it is bounded by the Raft entry limit ([`RESTORE_BYTES_MAX`], just
//! under 4 MiB of encoded state); a larger state travels as [`RestoreChunk`]s, staged in order
//! in the replicated state (snapshots included, so every server holds the same pieces) until
//! the last one restores the whole, up to [`RESTORE_STAGED_BYTES_MAX`].
//!
//! The state: the KV store ([`kv`]), the catalog of nodes, services and checks ([`catalog`]),
//! sessions ([`session`]), ACL policies and tokens ([`acl`]); transactions over all of them
//! ([`txn`]); the watch registry that tells the shell which blocked readers an applied entry
//! wakes ([`watch`]); and the leader's timers that propose what time decides
//! (`SessionTimers`, [`TombstoneGc`]).

pub mod acl;
#[cfg(test)]
mod acl_tests;
pub mod catalog;
mod duties;
pub mod kv;
pub mod session;
#[cfg(test)]
mod tests;
pub mod tombstone_gc;
pub mod txn;
pub mod watch;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

pub use self::acl::{
    AclError, AclState, NodeIdentity, Policy, ResolveError, ResolvedToken, ServiceIdentity, Token,
    DESCRIPTION_BYTES_MAX,
};
pub use self::catalog::{
    Catalog, CatalogError, Check, CheckDefinition, CheckKind, Health, Instance, Node, Service,
    ServiceAddress, Weights,
};
pub use self::duties::LeaderDuties;
pub use self::kv::{Kv, KvEntry, LockError, VALUE_BYTES_MAX};
pub use self::session::{Behavior, Session, SessionError, SessionTimers, Sessions};
pub use self::tombstone_gc::TombstoneGc;
pub use self::txn::{
    CatalogVerb, KvOperand, KvVerb, Txn, TxnError, TxnOp, TxnOpError, TxnOutcome, TxnResult, TXN_OPS_MAX,
};
pub use self::watch::{Table, Touched, WatchId, WatchTarget, Watches};

use self::catalog::Changes;
use self::kv::Locked;
use crate::raft::ENTRY_BYTES_MAX;

/// A Raft log index, as the state machine stamps it on what it writes.
pub type Index = u64;

/// The command encoding's version.
pub const COMMAND_VERSION: u8 = 1;

/// Command types at or above this may be skipped by servers that do not know them.
pub const IGNORABLE_TYPE_MIN: u8 = 0x80;

/// The node-level check the leader keeps from gossip; a node whose `serfHealth` is not
/// critical keeps its name against a registration with another node ID.
pub const SERF_HEALTH: &str = "serfHealth";

/// The largest snapshot a [`Restore`] may carry: the whole command travels as one Raft entry,
/// so the command header and the state's length prefix must fit beside it in
/// [`ENTRY_BYTES_MAX`].
pub const RESTORE_BYTES_MAX: usize = ENTRY_BYTES_MAX - HEADER_BYTES - LENGTH_PREFIX_BYTES_MAX;

/// The most a [`RestoreChunk`] carries: its other fields (three varints) and the command header
/// must fit beside it in one entry.
pub const RESTORE_CHUNK_BYTES_MAX: usize = RESTORE_BYTES_MAX - 3 * VARINT_U64_BYTES_MAX;

/// The largest state a restore in [`RestoreChunk`]s may carry: every server stages it whole
/// beside its current state before the last piece swaps them.
pub const RESTORE_STAGED_BYTES_MAX: u64 = 512 << 20;

/// Postcard's varint of a `u64`, at its longest.
const VARINT_U64_BYTES_MAX: usize = 10;

const HEADER_BYTES: usize = 2 + 8;
/// Postcard's varint length prefix of a byte string shorter than 2^28 bytes.
const LENGTH_PREFIX_BYTES_MAX: usize = 4;
const SNAPSHOT_MAGIC: &[u8; 4] = b"MFSM";
/// A snapshot with ACL state (and autopilot's settings and a staged restore, if any).
const SNAPSHOT_VERSION: u8 = 6;
/// A snapshot with autopilot's settings (and a staged restore, if any) and no ACL state.
const SNAPSHOT_VERSION_AUTOPILOT: u8 = 5;
/// A snapshot with a staged restore and no autopilot settings.
const SNAPSHOT_VERSION_STAGED: u8 = 4;
/// A snapshot without one (as every snapshot was before staged restores).
const SNAPSHOT_VERSION_UNSTAGED: u8 = 3;

const _: () = assert!(ENTRY_BYTES_MAX < 1 << (7 * LENGTH_PREFIX_BYTES_MAX));

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

/// Takes `key`'s lock for a session and writes (Consul's `PUT ?acquire=`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvLock {
    /// The write.
    pub set: KvSet,
    /// The session.
    pub session: String,
}

/// Releases `key`'s lock held by a session and writes (Consul's `PUT ?release=`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvUnlock {
    /// The write.
    pub set: KvSet,
    /// The session.
    pub session: String,
}

/// Registers a node, and optionally a service and checks on it (Consul's
/// `PUT /v1/catalog/register`, and what agents sync).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Register {
    /// The node (its indexes are ignored).
    pub node: Node,
    /// Leave an existing node's row as it is.
    pub skip_node_update: bool,
    /// A service on the node.
    pub service: Option<Service>,
    /// Checks on the node (the HTTP layer folds `Check` into `Checks`).
    pub checks: Vec<Check>,
}

/// Deregisters a node with everything on it, or one service with its checks, or one check.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deregister {
    /// The node.
    pub node: String,
    /// Only this service (wins over `check_id`, as in Consul).
    pub service_id: Option<String>,
    /// Only this check.
    pub check_id: Option<String>,
}

/// Invalidates a session: destroyed by a client, or its TTL ran out on the leader.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionDestroy {
    /// The session.
    pub id: String,
}

/// Replaces the whole state with a snapshot's ([`Fsm::snapshot`] bytes; Consul's snapshot
/// restore). Refused, changing nothing, if the snapshot does not decode or breaks the state's
/// rules, and before it is proposed if it is over [`RESTORE_BYTES_MAX`]. Applied at index `i`,
/// every index in the restored state above `i` becomes `i` (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Restore {
    /// The snapshot.
    pub state: Bytes,
}

/// One piece of a snapshot too large for one entry: pieces of one restore (one `id`, chosen by
/// the proposer) come in order, are staged in the replicated state, and the last one restores
/// the whole as [`Restore`] does. A first piece (offset 0) drops whatever another restore had
/// staged; a piece that does not continue the staged bytes is refused and changes nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreChunk {
    /// The restore this piece belongs to.
    pub id: u64,
    /// Where the piece starts in the snapshot.
    pub offset: u64,
    /// The snapshot's whole size, at most [`RESTORE_STAGED_BYTES_MAX`].
    pub total: u64,
    /// The piece: not empty, at most [`RESTORE_CHUNK_BYTES_MAX`].
    pub bytes: Bytes,
}

/// Drops the pieces staged for restore `id`, if they are the ones staged (its proposer failed
/// part way; another restore's pieces stay).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreAbort {
    /// The restore.
    pub id: u64,
}

/// Sets autopilot's settings (Consul's `PUT /v1/operator/autopilot/configuration`, and the
/// first leader's write of the agent's `autopilot` block). With `cas`, only if the settings
/// stored have that `ModifyIndex`; none stored never matches, as in Consul.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AutopilotSet {
    /// The settings, whole.
    pub config: crate::autopilot::Config,
    /// The `ModifyIndex` expected.
    pub cas: Option<Index>,
}

/// What the leader proposes on taking office with ACLs on (Consul's `initializeACLs`): creates
/// the built-in policies (`global-management`, `builtin/global-read-only`) and the anonymous
/// token if they are missing, and puts back a built-in's rules if they are not this binary's.
/// Idempotent: answers whether it changed anything. The anonymous token's CreateTime is the
/// entry's stamp.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AclInitialize {}

/// The one-time bootstrap (Consul's `ACL.BootstrapTokens`): creates `token` (the proposer made
/// it: its IDs, `Bootstrap Token (Global Management)`, the `global-management` link, its
/// CreateTime) and marks the cluster bootstrapped at this entry's index. Refused once the
/// cluster is bootstrapped, unless `reset_index` names the index it was bootstrapped at (the
/// operator's `acl-bootstrap-reset` file).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AclBootstrap {
    /// The token to create.
    pub token: Token,
    /// The reset index the operator gave, if any.
    pub reset_index: Option<Index>,
}

/// Creates a token (`create`: its AccessorID and SecretID unused as either) or updates one
/// (which must exist and not have expired at the entry's stamp; an empty SecretID or a missing
/// ExpirationTime keeps the stored one; SecretID, Local and ExpirationTime cannot change, and
/// CreateTime and CreateIndex stay). Every policy link must resolve. Indexes in `token` are
/// ignored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AclTokenSet {
    /// The token, whole.
    pub token: Token,
    /// Create rather than update.
    pub create: bool,
}

/// Deletes a token by AccessorID (answers whether it existed); never the anonymous token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AclTokenDelete {
    /// The token.
    pub accessor_id: String,
}

/// Creates a policy (`create`: its ID and name unused) or updates one (which must exist; a new
/// name must be unused; a built-in's rules and datacenters cannot change). Its typed rules are
/// the proposer's parse of its text; indexes in `policy` are ignored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AclPolicySet {
    /// The policy, whole.
    pub policy: Policy,
    /// Create rather than update.
    pub create: bool,
}

/// Deletes a policy by ID, and every token's link to it (answers whether it existed); never a
/// built-in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AclPolicyDelete {
    /// The policy.
    pub id: String,
}

/// Autopilot's settings as the replicated state holds them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AutopilotEntry {
    /// The settings.
    pub config: crate::autopilot::Config,
    /// The index that first wrote them.
    pub create_index: Index,
    /// The index that last wrote them.
    pub modify_index: Index,
}

/// The pieces of a restore received so far.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct StagedRestore {
    id: u64,
    total: u64,
    /// In order; a persistent vector, so cloning the state stays O(1).
    pieces: imbl::Vector<Bytes>,
    /// Their summed length, always below `total` (the last piece restores and clears).
    staged: u64,
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
    /// [`KvLock`].
    KvLock(KvLock),
    /// [`KvUnlock`].
    KvUnlock(KvUnlock),
    /// [`Register`].
    Register(Box<Register>),
    /// [`Deregister`].
    Deregister(Deregister),
    /// Creates a session (its ID chosen by the proposer).
    SessionCreate(Session),
    /// [`SessionDestroy`].
    SessionDestroy(SessionDestroy),
    /// [`Txn`].
    Txn(Txn),
    /// [`Restore`].
    Restore(Restore),
    /// [`RestoreChunk`].
    RestoreChunk(RestoreChunk),
    /// [`RestoreAbort`].
    RestoreAbort(RestoreAbort),
    /// [`AutopilotSet`].
    AutopilotSet(AutopilotSet),
    /// [`AclInitialize`].
    AclInitialize(AclInitialize),
    /// [`AclBootstrap`].
    AclBootstrap(Box<AclBootstrap>),
    /// [`AclTokenSet`].
    AclTokenSet(Box<AclTokenSet>),
    /// [`AclTokenDelete`].
    AclTokenDelete(AclTokenDelete),
    /// [`AclPolicySet`].
    AclPolicySet(Box<AclPolicySet>),
    /// [`AclPolicyDelete`].
    AclPolicyDelete(AclPolicyDelete),
}

/// A command with the time its leader stamped on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stamped {
    /// The leader's clock at proposal, Unix milliseconds.
    pub now_ms: u64,
    /// The command.
    pub command: Command,
}

macro_rules! commands {
    ($($code:literal => $variant:ident),* $(,)?) => {
        impl Command {
            /// Its type code in the encoding.
            fn type_code(&self) -> u8 {
                match self {
                    $(Command::$variant(_) => $code,)*
                }
            }

            fn encode_body(&self, out: Vec<u8>) -> postcard::Result<Vec<u8>> {
                match self {
                    $(Command::$variant(body) => postcard::to_extend(body, out),)*
                }
            }

            fn decode_body(type_code: u8, body: &[u8]) -> Result<Option<Command>, DecodeError> {
                Ok(Some(match type_code {
                    $($code => Command::$variant(body_of(body)?),)*
                    unknown if unknown >= IGNORABLE_TYPE_MIN => return Ok(None),
                    unknown => return Err(DecodeError::UnknownType(unknown)),
                }))
            }
        }
    };
}

// Codes are forever: a code once used is never reused for another command.
commands! {
    1 => KvSet,
    2 => KvCas,
    3 => KvDelete,
    4 => KvDeleteCas,
    5 => KvDeleteTree,
    6 => TombstoneReap,
    7 => KvLock,
    8 => KvUnlock,
    9 => Register,
    10 => Deregister,
    11 => SessionCreate,
    12 => SessionDestroy,
    13 => Txn,
    14 => Restore,
    15 => RestoreChunk,
    16 => RestoreAbort,
    17 => AutopilotSet,
    18 => AclInitialize,
    19 => AclBootstrap,
    20 => AclTokenSet,
    21 => AclTokenDelete,
    22 => AclPolicySet,
    23 => AclPolicyDelete,
}

impl Command {
    /// Its encoding for a Raft proposal, stamped with the proposing leader's clock.
    pub fn encode(&self, now_ms: u64) -> Bytes {
        let mut out = Vec::with_capacity(64);
        out.extend_from_slice(&[COMMAND_VERSION, self.type_code()]);
        out.extend_from_slice(&now_ms.to_le_bytes());
        Bytes::from(self.encode_body(out).expect("encoding into a Vec cannot fail"))
    }

    /// Decodes a command. `Ok(None)`: an ignorable type this server does not know.
    pub fn decode(bytes: &[u8]) -> Result<Option<Stamped>, DecodeError> {
        if bytes.len() < HEADER_BYTES {
            return Err(DecodeError::Truncated);
        }
        let (header, body) = bytes.split_at(HEADER_BYTES);
        if header[0] != COMMAND_VERSION {
            return Err(DecodeError::UnsupportedVersion(header[0]));
        }
        let now_ms = u64::from_le_bytes(header[2..].try_into().expect("eight bytes"));
        Ok(Command::decode_body(header[1], body)?.map(|command| Stamped { now_ms, command }))
    }

    /// Refuses what no proposer should send, before it is proposed (and again when applied,
    /// so a bad entry changes nothing). State-dependent rules are checked when applied.
    pub fn validate(&self) -> Result<(), CommandError> {
        match self {
            Command::KvSet(set)
            | Command::KvCas(KvCas { set, .. })
            | Command::KvLock(KvLock { set, .. })
            | Command::KvUnlock(KvUnlock { set, .. }) => validate_write(&set.key, &set.value),
            Command::KvDelete(KvDelete { key }) | Command::KvDeleteCas(KvDeleteCas { key, .. }) => {
                if key.is_empty() {
                    Err(CommandError::MissingKey)
                } else {
                    Ok(())
                }
            }
            Command::KvDeleteTree(_) | Command::TombstoneReap(_) => Ok(()),
            Command::Register(register) if register.node.node.is_empty() => {
                Err(CommandError::Catalog(CatalogError::MissingNode))
            }
            Command::Deregister(Deregister { node, .. }) if node.is_empty() => {
                Err(CommandError::Catalog(CatalogError::MissingNode))
            }
            Command::Register(_) | Command::Deregister(_) => Ok(()),
            Command::SessionCreate(session) if session.id.is_empty() => {
                Err(CommandError::Session(SessionError::MissingId))
            }
            Command::SessionCreate(session) if session.node.is_empty() => {
                Err(CommandError::Session(SessionError::MissingNode))
            }
            Command::SessionCreate(session) => Ok(Session::check_ttl(&session.ttl)?),
            Command::SessionDestroy(SessionDestroy { id }) if id.is_empty() => {
                Err(CommandError::Session(SessionError::MissingId))
            }
            Command::SessionDestroy(_) => Ok(()),
            Command::Txn(Txn { ops }) => {
                if ops.len() > TXN_OPS_MAX {
                    return Err(CommandError::TooManyOps { count: ops.len(), max: TXN_OPS_MAX });
                }
                for op in ops {
                    if let TxnOp::Kv(_, operand) = op {
                        if operand.value.len() > VALUE_BYTES_MAX {
                            return Err(value_too_large(&operand.key, operand.value.len()));
                        }
                    }
                }
                Ok(())
            }
            Command::Restore(Restore { state }) if state.len() > RESTORE_BYTES_MAX => {
                Err(CommandError::SnapshotTooLarge { size: state.len(), max: RESTORE_BYTES_MAX })
            }
            Command::Restore(_) => Ok(()),
            Command::RestoreChunk(chunk) => {
                if chunk.total > RESTORE_STAGED_BYTES_MAX {
                    let size = usize::try_from(chunk.total).unwrap_or(usize::MAX);
                    let max = RESTORE_STAGED_BYTES_MAX as usize;
                    return Err(CommandError::SnapshotTooLarge { size, max });
                }
                let end = chunk.offset.checked_add(chunk.bytes.len() as u64);
                if chunk.bytes.is_empty()
                    || chunk.bytes.len() > RESTORE_CHUNK_BYTES_MAX
                    || end.is_none_or(|end| end > chunk.total)
                {
                    return Err(CommandError::RestoreChunkMalformed);
                }
                Ok(())
            }
            Command::RestoreAbort(_) | Command::AutopilotSet(_) | Command::AclInitialize(_) => Ok(()),
            Command::AclBootstrap(bootstrap) => Ok(bootstrap.token.validate(true)?),
            Command::AclTokenSet(set) => Ok(set.token.validate(set.create)?),
            Command::AclTokenDelete(AclTokenDelete { accessor_id }) if accessor_id.is_empty() => {
                Err(AclError::MissingAccessorId.into())
            }
            Command::AclPolicySet(set) => Ok(set.policy.validate()?),
            Command::AclPolicyDelete(AclPolicyDelete { id }) if id.is_empty() => {
                Err(AclError::MissingPolicyId.into())
            }
            Command::AclTokenDelete(_) | Command::AclPolicyDelete(_) => Ok(()),
        }
    }
}

fn validate_write(key: &str, value: &Bytes) -> Result<(), CommandError> {
    if key.is_empty() {
        return Err(CommandError::MissingKey);
    }
    if value.len() > VALUE_BYTES_MAX {
        return Err(value_too_large(key, value.len()));
    }
    Ok(())
}

fn value_too_large(key: &str, size: usize) -> CommandError {
    CommandError::ValueTooLarge { key: key.to_owned(), size, max: VALUE_BYTES_MAX }
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

/// Why a command was refused; nothing changed. Messages are Consul's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
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
    /// A transaction over [`TXN_OPS_MAX`].
    #[error("Transaction contains too many operations ({count} > {max})")]
    TooManyOps {
        /// Its operations.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// A lock or unlock without a live session.
    #[error(transparent)]
    Lock(#[from] LockError),
    /// A catalog write that breaks the catalog's rules.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// A session that cannot be created.
    #[error(transparent)]
    Session(#[from] SessionError),
    /// A [`Restore`] over [`RESTORE_BYTES_MAX`].
    #[error("State snapshot is too large ({size} > {max} bytes)")]
    SnapshotTooLarge {
        /// The snapshot's size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// A [`Restore`] whose snapshot does not decode or breaks the state's rules.
    #[error("failed to restore snapshot: {0}")]
    Restore(SnapshotError),
    /// A [`RestoreChunk`] that does not continue the restore staged.
    #[error(
        "failed to restore snapshot: a piece at offset {offset} does not follow the {staged} bytes staged \
         (another restore started, or a piece went missing)"
    )]
    RestoreOutOfOrder {
        /// The piece's offset.
        offset: u64,
        /// The bytes staged for its restore (0: none).
        staged: u64,
    },
    /// A [`RestoreChunk`] that is empty, too large, or past its total.
    #[error("failed to restore snapshot: malformed snapshot piece")]
    RestoreChunkMalformed,
    /// An ACL write that breaks the ACL rules.
    #[error(transparent)]
    Acl(#[from] AclError),
}

/// What applying a command answers its proposer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// Consul's `true`/`false` (CAS, delete-CAS, lock and unlock answer `false` when they do
    /// not happen).
    Bool(bool),
    /// How many tombstones a reap dropped.
    Reaped(usize),
    /// A transaction's results or errors.
    Txn(TxnOutcome),
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

/// How many indexes apart the whole state is checked in test, simulation and fuzz builds;
/// each step between checks only what it changed. Checking every entry at every step had the
/// simulator spend 40 % of its time re-reading what did not change.
#[cfg(any(test, feature = "invariants"))]
const FULL_CHECK_INDEXES: Index = 64;

/// The whole replicated state. Cloning it is O(1) (persistent maps): a snapshot can encode a
/// clone while the original goes on applying.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fsm {
    kv: Kv,
    catalog: Catalog,
    sessions: Sessions,
    applied: Index,
    /// A restore arriving in pieces ([`RestoreChunk`]).
    staged: Option<StagedRestore>,
    /// Autopilot's settings, once a leader wrote them.
    autopilot: Option<AutopilotEntry>,
    /// ACL policies and tokens.
    acl: AclState,
    /// A deliberately broken rule ([`crate::planted`]); not part of the state.
    #[cfg(any(test, feature = "invariants"))]
    planted_bug: Option<crate::planted::PlantedBug>,
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
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum SnapshotError {
    /// Not a state machine snapshot, or of a version this server does not read.
    #[error("not a muster state snapshot of version {SNAPSHOT_VERSION_UNSTAGED} to {SNAPSHOT_VERSION}")]
    Format,
    /// It does not decode.
    #[error("malformed state snapshot: {0}")]
    Malformed(String),
    /// It decodes but breaks the state's rules.
    #[error("inconsistent state snapshot: {0}")]
    Inconsistent(String),
}

#[derive(Serialize, Deserialize)]
struct SnapshotBody<K, C, S> {
    applied: Index,
    kv: K,
    catalog: C,
    sessions: S,
}

impl Fsm {
    /// An empty state.
    pub fn new() -> Fsm {
        Fsm::default()
    }

    /// Breaks a rule on purpose, to prove the simulator's checkers catch it (a restored state
    /// needs planting again).
    #[cfg(any(test, feature = "invariants"))]
    #[doc(hidden)]
    pub fn plant(&mut self, bug: Option<crate::planted::PlantedBug>) {
        self.planted_bug = bug;
    }

    fn bug(&self, bug: crate::planted::PlantedBug) -> bool {
        #[cfg(any(test, feature = "invariants"))]
        {
            self.planted_bug == Some(bug)
        }
        #[cfg(not(any(test, feature = "invariants")))]
        {
            let _ = bug;
            false
        }
    }

    /// The KV store.
    pub fn kv(&self) -> &Kv {
        &self.kv
    }

    /// The catalog.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// The sessions.
    pub fn sessions(&self) -> &Sessions {
        &self.sessions
    }

    /// Autopilot's settings, once a leader wrote them.
    pub fn autopilot(&self) -> Option<&AutopilotEntry> {
        self.autopilot.as_ref()
    }

    /// The ACL policies and tokens.
    pub fn acl(&self) -> &AclState {
        &self.acl
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
            Ok(Some(Stamped { now_ms, command })) => Ok(self.apply_command(index, now_ms, &command)),
            Ok(None) => {
                self.advance(index);
                Ok(Applied { response: Response::Ignored, touched: Touched::default() })
            }
            Err(error) => Err(ApplyError { index, error }),
        }
    }

    /// Applies a decoded command at `index`, proposed when the leader's clock read `now_ms`.
    pub fn apply_command(&mut self, index: Index, now_ms: u64, command: &Command) -> Applied {
        let before = self.applied;
        self.advance(index);
        let mut touched = Touched::default();
        if let Err(error) = command.validate() {
            return Applied { response: Response::Rejected(error), touched };
        }
        let response = match command {
            Command::KvSet(set) => {
                if self.kv.set(index, &set.key, set.value.clone(), set.flags) {
                    touched.keys.push(set.key.clone());
                }
                Response::Bool(true)
            }
            Command::KvCas(cas) => Response::Bool(self.kv_cas(index, cas, &mut touched)),
            Command::KvDelete(KvDelete { key }) => {
                if self.kv.delete(index, key) {
                    touched.keys.push(key.clone());
                }
                // Consul answers `true` whether or not the key existed.
                Response::Bool(true)
            }
            Command::KvDeleteCas(cas) => Response::Bool(self.kv_delete_cas(index, cas, &mut touched)),
            Command::KvDeleteTree(KvDeleteTree { prefix }) => {
                touched.keys = self.kv.delete_tree(index, prefix);
                Response::Bool(true)
            }
            Command::TombstoneReap(TombstoneReap { up_to }) => Response::Reaped(self.kv.reap(*up_to, now_ms)),
            Command::KvLock(KvLock { set, session }) => match self.session_of(session) {
                Err(error) => Response::Rejected(error.into()),
                Ok(_) => match self.kv.lock(index, now_ms, &set.key, set.value.clone(), set.flags, session) {
                    Locked::Held => {
                        touched.keys.push(set.key.clone());
                        Response::Bool(true)
                    }
                    Locked::HeldByOther | Locked::Delayed => Response::Bool(false),
                },
            },
            // A release names a session, but not necessarily a live one: one that expired or
            // never existed simply does not hold the lock (Consul's `kvsUnlockTxn`).
            Command::KvUnlock(KvUnlock { set, session }) => match session.is_empty() {
                true => Response::Rejected(LockError::MissingSession.into()),
                false => {
                    let ok = self.kv.unlock(index, &set.key, set.value.clone(), set.flags, session);
                    if ok {
                        touched.keys.push(set.key.clone());
                    }
                    Response::Bool(ok)
                }
            },
            Command::Register(register) => match self.register(index, now_ms, register, &mut touched) {
                Ok(()) => Response::Bool(true),
                Err(error) => Response::Rejected(error),
            },
            Command::Deregister(deregister) => {
                self.deregister(index, now_ms, deregister, &mut touched);
                Response::Bool(true)
            }
            Command::SessionCreate(session) => match self.create_session(index, session) {
                Ok(()) => {
                    touched.tables.push(Table::Sessions);
                    touched.sessions.push(session.id.clone());
                    Response::Bool(true)
                }
                Err(error) => Response::Rejected(error.into()),
            },
            Command::SessionDestroy(SessionDestroy { id }) => {
                self.invalidate_session(index, now_ms, id, &mut touched);
                Response::Bool(true)
            }
            Command::Txn(txn) => Response::Txn(self.apply_txn(index, now_ms, txn, &mut touched)),
            Command::Restore(Restore { state }) => self.restore_from(index, state, &mut touched),
            Command::RestoreChunk(chunk) => match self.stage(chunk) {
                Err(error) => Response::Rejected(error),
                Ok(None) => Response::Bool(true),
                Ok(Some(whole)) => self.restore_from(index, &whole, &mut touched),
            },
            Command::RestoreAbort(RestoreAbort { id }) => {
                if self.staged.as_ref().is_some_and(|staged| staged.id == *id) {
                    self.staged = None;
                }
                Response::Bool(true)
            }
            Command::AutopilotSet(set) => Response::Bool(self.set_autopilot(index, set)),
            Command::AclInitialize(_) => acl_changes(self.acl.initialize(index, now_ms), &mut touched),
            Command::AclBootstrap(bootstrap) => {
                let AclBootstrap { token, reset_index } = bootstrap.as_ref();
                let done = self.acl.bootstrap(index, token, *reset_index).map(|()| true);
                acl_response(done, Table::AclTokens, &mut touched)
            }
            Command::AclTokenSet(set) => {
                let done = self.acl.set_token(index, now_ms, &set.token, set.create).map(|()| true);
                acl_response(done, Table::AclTokens, &mut touched)
            }
            Command::AclTokenDelete(AclTokenDelete { accessor_id }) => {
                let done = self.acl.delete_token(index, accessor_id);
                acl_response(done, Table::AclTokens, &mut touched)
            }
            Command::AclPolicySet(set) => {
                let done = self.acl.set_policy(index, &set.policy, set.create).map(|()| true);
                acl_response(done, Table::AclPolicies, &mut touched)
            }
            Command::AclPolicyDelete(AclPolicyDelete { id }) => {
                acl_changes(self.acl.delete_policy(index, id), &mut touched)
            }
        };
        self.check_step(before, &touched);
        Applied { response, touched }
    }

    /// Sets the key if its `ModifyIndex` is the one expected; whether it did.
    fn kv_cas(&mut self, index: Index, cas: &KvCas, touched: &mut Touched) -> bool {
        let KvCas { set, index: expected } = cas;
        let ok = self.kv.modify_index_of(&set.key) == *expected
            || self.bug(crate::planted::PlantedBug::CasIgnoresIndex);
        if ok && self.kv.set(index, &set.key, set.value.clone(), set.flags) {
            touched.keys.push(set.key.clone());
        }
        ok
    }

    /// Deletes the key if its `ModifyIndex` is the one expected; whether it counts as deleted.
    /// A missing key does (Consul's `kvsDeleteCASTxn`); a present one never has ModifyIndex 0,
    /// so 0 never deletes it.
    fn kv_delete_cas(&mut self, index: Index, cas: &KvDeleteCas, touched: &mut Touched) -> bool {
        let KvDeleteCas { key, index: expected } = cas;
        let current = self.kv.modify_index_of(key);
        let ok = current == 0 || current == *expected;
        if current != 0 && ok {
            self.kv.delete(index, key);
            touched.keys.push(key.clone());
        }
        ok
    }

    /// Replaces the whole state with the snapshot `state` (`consul snapshot restore`); every
    /// table and key is touched.
    fn restore_from(&mut self, index: Index, state: &[u8], touched: &mut Touched) -> Response {
        match Fsm::restore(state) {
            Ok(restored) => {
                self.install(index, restored);
                *touched = Touched::everything();
                Response::Bool(true)
            }
            Err(error) => Response::Rejected(CommandError::Restore(error)),
        }
    }

    /// Stores autopilot's settings unless `set.cas` does not match; whether it stored them.
    fn set_autopilot(&mut self, index: Index, set: &AutopilotSet) -> bool {
        let stored = self.autopilot.as_ref();
        if set.cas.is_some_and(|cas| stored.is_none_or(|entry| entry.modify_index != cas)) {
            return false;
        }
        let create_index = stored.map_or(index, |entry| entry.create_index);
        self.autopilot =
            Some(AutopilotEntry { config: set.config.clone(), create_index, modify_index: index });
        true
    }

    /// Adds `chunk` to the restore staged: the whole snapshot when it was the last piece (the
    /// staging is then dropped), else `None`.
    fn stage(&mut self, chunk: &RestoreChunk) -> Result<Option<Vec<u8>>, CommandError> {
        if chunk.offset == 0 {
            self.staged = Some(StagedRestore {
                id: chunk.id,
                total: chunk.total,
                pieces: imbl::Vector::new(),
                staged: 0,
            });
        }
        let staged = match &mut self.staged {
            Some(staged)
                if staged.id == chunk.id && staged.total == chunk.total && staged.staged == chunk.offset =>
            {
                staged
            }
            other => {
                let staged = other.as_ref().filter(|s| s.id == chunk.id).map_or(0, |s| s.staged);
                return Err(CommandError::RestoreOutOfOrder { offset: chunk.offset, staged });
            }
        };
        staged.pieces.push_back(chunk.bytes.clone());
        staged.staged += chunk.bytes.len() as u64;
        if staged.staged < staged.total {
            return Ok(None);
        }
        let staged = self.staged.take().expect("matched above");
        let mut whole = Vec::with_capacity(usize::try_from(staged.total).unwrap_or(0));
        for piece in &staged.pieces {
            whole.extend_from_slice(piece);
        }
        Ok(Some(whole))
    }

    /// Replaces the state with a restored snapshot's as of entry `index`: every index above
    /// `index` is lowered to it, so the state never claims a change newer than what it applied
    /// (the snapshot may come from a cluster ahead of ours). Lowering every index by the same
    /// monotone rule keeps their order: `CreateIndex <= ModifyIndex`, rows at or below their
    /// table's index. Derived indexes hold names, not Raft indexes: `Fsm::restore` built them
    /// and the lowering leaves them right. Lock indexes count acquisitions and lock delays are
    /// leader time: neither is a Raft index, both stay.
    fn install(&mut self, index: Index, mut restored: Fsm) {
        assert_eq!(self.applied, index, "the restore's own entry was just applied");
        // A restore from a cluster caught mid-restore does not carry on that one.
        restored.staged = None;
        restored.kv.clamp(index);
        restored.catalog.clamp(index);
        restored.sessions.clamp(index);
        restored.acl.clamp(index);
        if let Some(entry) = &mut restored.autopilot {
            clamp_index(&mut entry.create_index, index);
            clamp_index(&mut entry.modify_index, index);
        }
        restored.applied = index;
        assert!(restored.kv.index() <= index, "KV index lowered");
        assert!(restored.catalog.index() <= index, "catalog indexes lowered");
        assert!(restored.sessions.index() <= index, "session index lowered");
        *self = restored;
    }

    fn advance(&mut self, index: Index) {
        assert!(
            index > self.applied,
            "entries are applied once, in log order ({index} after {})",
            self.applied
        );
        self.applied = index;
    }

    /// The live session `id`, as a lock needs it.
    fn session_of(&self, id: &str) -> Result<&Session, LockError> {
        if id.is_empty() {
            return Err(LockError::MissingSession);
        }
        self.sessions.get(id).ok_or_else(|| LockError::InvalidSession(id.to_owned()))
    }

    /// Registers (see [`Register`]); a refused registration changes nothing.
    fn register(
        &mut self,
        index: Index,
        now_ms: u64,
        register: &Register,
        touched: &mut Touched,
    ) -> Result<(), CommandError> {
        let renamed_from = self.catalog.check_register(register)?;
        let mut changes = Changes::default();
        if let Some(old_name) = renamed_from {
            // The node ID moved to a new name: the old node goes, with everything on it.
            self.catalog.deregister(
                index,
                &Deregister { node: old_name, ..Deregister::default() },
                &mut changes,
            );
        }
        self.catalog.register(index, register, &mut changes);
        self.settle(index, now_ms, changes, touched);
        Ok(())
    }

    /// Deregisters (see [`Deregister`]); what does not exist is not an error.
    fn deregister(&mut self, index: Index, now_ms: u64, deregister: &Deregister, touched: &mut Touched) {
        let mut changes = Changes::default();
        self.catalog.deregister(index, deregister, &mut changes);
        self.settle(index, now_ms, changes, touched);
    }

    /// Reports a catalog write's changes and invalidates the sessions it kills: those of
    /// deleted nodes, and those bound to checks deleted or now critical.
    fn settle(&mut self, index: Index, now_ms: u64, changes: Changes, touched: &mut Touched) {
        let mut doomed = std::collections::BTreeSet::new();
        for node in &changes.deleted_nodes {
            doomed.extend(self.sessions.of_node_ids(node));
        }
        for (node, check) in &changes.failed_checks {
            doomed.extend(self.sessions.bound_to_check(node, check));
        }
        for id in doomed {
            self.invalidate_session(index, now_ms, &id, touched);
        }
        for (changed, table) in [
            (changes.nodes_table, Table::Nodes),
            (changes.services_table, Table::Services),
            (changes.checks_table, Table::Checks),
        ] {
            if changed && !touched.tables.contains(&table) {
                touched.tables.push(table);
            }
        }
        touched.services.extend(changes.services);
        touched.nodes.extend(changes.nodes);
    }

    fn create_session(&mut self, index: Index, session: &Session) -> Result<(), SessionError> {
        if self.sessions.get(&session.id).is_some() {
            return Err(SessionError::IdTaken(session.id.clone()));
        }
        if self.catalog.node(&session.node).is_none() {
            return Err(SessionError::UnknownNode);
        }
        for check_id in session.node_checks.iter().chain(&session.service_checks) {
            let check = self
                .catalog
                .check(&session.node, check_id)
                .ok_or_else(|| SessionError::UnknownCheck(check_id.clone()))?;
            if check.status == Health::Critical {
                return Err(SessionError::CriticalCheck(check_id.clone()));
            }
        }
        self.sessions.insert(index, session.clone());
        Ok(())
    }

    /// Ends a session: its keys are released or deleted per its behavior and closed to new
    /// locks for its lock delay (at most a minute). An unknown session is a no-op.
    fn invalidate_session(&mut self, index: Index, now_ms: u64, id: &str, touched: &mut Touched) {
        let Some(session) = self.sessions.remove(index, id) else { return };
        touched.sessions.push(session.id.clone());
        let delay_ms = session.lock_delay_ms.min(session::LOCK_DELAY_MAX_MS);
        let until_ms = (delay_ms > 0).then(|| now_ms.saturating_add(delay_ms));
        let delete = session.behavior == Behavior::Delete;
        if self.bug(crate::planted::PlantedBug::LockSurvivesSessionExpiry) {
            return;
        }
        touched.keys.extend(self.kv.invalidate(index, id, delete, until_ms));
        if !touched.tables.contains(&Table::Sessions) {
            touched.tables.push(Table::Sessions);
        }
    }

    /// The whole state, encoded: identical states give identical bytes. It is written in the
    /// oldest version that can hold it (3: neither a staged restore nor autopilot settings nor
    /// ACL state; 4: a staged restore; 5: autopilot settings; 6: ACL state), so servers from
    /// before each read what does not use it.
    pub fn snapshot(&self) -> Bytes {
        let mut out = SNAPSHOT_MAGIC.to_vec();
        let body = SnapshotBody {
            applied: self.applied,
            kv: &self.kv,
            catalog: &self.catalog,
            sessions: &self.sessions,
        };
        if !self.acl.is_empty() {
            out.push(SNAPSHOT_VERSION);
            let encoded = postcard::to_extend(&(body, &self.staged, &self.autopilot, &self.acl), out);
            return Bytes::from(encoded.expect("encoding into a Vec cannot fail"));
        }
        let encoded = match (&self.staged, &self.autopilot) {
            (None, None) => {
                out.push(SNAPSHOT_VERSION_UNSTAGED);
                postcard::to_extend(&body, out)
            }
            (Some(staged), None) => {
                out.push(SNAPSHOT_VERSION_STAGED);
                postcard::to_extend(&(body, staged), out)
            }
            (staged, Some(autopilot)) => {
                out.push(SNAPSHOT_VERSION_AUTOPILOT);
                postcard::to_extend(&(body, staged, autopilot), out)
            }
        };
        Bytes::from(encoded.expect("encoding into a Vec cannot fail"))
    }

    /// This state without the pieces of a restore in progress (what a user's snapshot holds).
    pub fn without_staged_restore(&self) -> Fsm {
        Fsm { staged: None, ..self.clone() }
    }

    /// The state a snapshot holds, checked before it is accepted.
    pub fn restore(bytes: &[u8]) -> Result<Fsm, SnapshotError> {
        let (version, body) = match bytes.strip_prefix(SNAPSHOT_MAGIC) {
            Some([version, body @ ..]) => (*version, body),
            _ => return Err(SnapshotError::Format),
        };
        type Body = SnapshotBody<Kv, Catalog, Sessions>;
        type Parts = (Body, Option<StagedRestore>, Option<AutopilotEntry>, AclState);
        let (body, staged, autopilot, acl): Parts = match version {
            SNAPSHOT_VERSION => {
                let (body, staged, autopilot, acl): Parts = whole(body)?;
                if acl.is_empty() {
                    return Err(SnapshotError::Inconsistent("a version 6 snapshot without ACL state".into()));
                }
                (body, staged, autopilot, acl)
            }
            SNAPSHOT_VERSION_AUTOPILOT => {
                let (body, staged, autopilot) = whole(body)?;
                (body, staged, Some(autopilot), AclState::default())
            }
            SNAPSHOT_VERSION_STAGED => {
                let (body, staged) = whole(body)?;
                (body, Some(staged), None, AclState::default())
            }
            SNAPSHOT_VERSION_UNSTAGED => (whole(body)?, None, None, AclState::default()),
            _ => return Err(SnapshotError::Format),
        };
        if let Some(staged) = &staged {
            let summed: u64 = staged.pieces.iter().map(|piece| piece.len() as u64).sum();
            if summed != staged.staged
                || staged.staged >= staged.total
                || staged.total > RESTORE_STAGED_BYTES_MAX
            {
                return Err(SnapshotError::Inconsistent("a staged restore's pieces do not add up".into()));
            }
        }
        let mut fsm = Fsm {
            kv: body.kv,
            catalog: body.catalog,
            sessions: body.sessions,
            applied: body.applied,
            staged,
            autopilot,
            acl,
            #[cfg(any(test, feature = "invariants"))]
            planted_bug: None,
        };
        fsm.kv.rebuild();
        fsm.catalog.rebuild();
        fsm.sessions.rebuild();
        fsm.acl.rebuild();
        fsm.validate().map_err(|broken| SnapshotError::Inconsistent(broken.to_owned()))?;
        Ok(fsm)
    }

    /// The state's rules, checked on what arrives from outside (a snapshot).
    fn validate(&self) -> Result<(), &'static str> {
        self.kv.validate(self.applied)?;
        self.catalog.validate(self.applied)?;
        self.sessions.validate(self.applied)?;
        self.acl.validate(self.applied)?;
        self.validate_links()
    }

    /// The rules that tie the parts together: autopilot's indexes, sessions bound to what
    /// exists, locks held by sessions that exist.
    fn validate_links(&self) -> Result<(), &'static str> {
        if let Some(entry) = &self.autopilot {
            if entry.create_index > entry.modify_index || entry.modify_index > self.applied {
                return Err("autopilot settings' indexes out of order");
            }
        }
        for session in self.sessions.list().1 {
            if self.catalog.node(&session.node).is_none() {
                return Err("a session is bound to a missing node");
            }
            let checks = session.node_checks.iter().chain(&session.service_checks);
            if checks.into_iter().any(|check| self.catalog.check(&session.node, check).is_none()) {
                return Err("a session is bound to a missing check");
            }
        }
        for entry in self.kv.entries.values() {
            if entry.session.as_ref().is_some_and(|id| self.sessions.get(id).is_none()) {
                return Err("a key is locked by a missing session");
            }
        }
        Ok(())
    }

    /// Checks what a step from index `before` to the applied one changed (`touched`), and
    /// the whole state whenever the step crossed a multiple of [`FULL_CHECK_INDEXES`] or
    /// replaced it; a no-op outside test, simulation and fuzz builds.
    fn check_step(&self, before: Index, touched: &Touched) {
        #[cfg(any(test, feature = "invariants"))]
        {
            if touched.all || before / FULL_CHECK_INDEXES != self.applied / FULL_CHECK_INDEXES {
                self.check_invariants();
                return;
            }
            assert!(self.kv.index <= self.applied, "KV invariant: the KV index is past the applied index");
            if touched.tables.iter().any(|table| matches!(table, Table::AclTokens | Table::AclPolicies)) {
                self.acl.check(self.applied);
            }
            for key in &touched.keys {
                self.kv.check_key(key);
                let holder = self.kv.entries.get(key).and_then(|entry| entry.session.as_deref());
                let alive = holder.is_none_or(|id| self.sessions.get(id).is_some());
                assert!(alive, "state invariant: a key is locked by a missing session");
            }
            for id in &touched.sessions {
                match self.sessions.get(id) {
                    Some(session) => assert!(
                        self.catalog.node(&session.node).is_some(),
                        "state invariant: a session is bound to a missing node"
                    ),
                    None => assert!(
                        self.kv.held_by(id).next().is_none(),
                        "state invariant: a key is locked by a missing session"
                    ),
                }
            }
        }
        #[cfg(not(any(test, feature = "invariants")))]
        let _ = (before, touched);
    }

    /// Checks the state's invariants; a no-op outside test, simulation and fuzz builds.
    pub fn check_invariants(&self) {
        #[cfg(any(test, feature = "invariants"))]
        {
            if let Some(staged) = &self.staged {
                let summed: u64 = staged.pieces.iter().map(|piece| piece.len() as u64).sum();
                assert_eq!(summed, staged.staged, "staged restore: the count matches the pieces");
                assert!(staged.staged < staged.total, "staged restore: the last piece restores");
                assert!(staged.total <= RESTORE_STAGED_BYTES_MAX, "staged restore: within the limit");
            }
            self.kv.check(self.applied);
            self.catalog.check_invariants(self.applied);
            self.sessions.check(self.applied);
            self.acl.check(self.applied);
            // The parts' own rules were checked above.
            if let Err(broken) = self.validate_links() {
                panic!("state invariant: {broken}");
            }
        }
    }
}

/// An ACL command's answer: whether it changed something, with its table touched if it did; a
/// refusal changed nothing.
fn acl_response(done: Result<bool, AclError>, table: Table, touched: &mut Touched) -> Response {
    match done {
        Ok(changed) => {
            if changed {
                touched.tables.push(table);
            }
            Response::Bool(changed)
        }
        Err(error) => Response::Rejected(error.into()),
    }
}

/// The answer of an ACL command that may change both tables: whether it changed anything, with
/// the tables it changed touched; a refusal changed nothing.
fn acl_changes(changed: Result<(bool, bool), AclError>, touched: &mut Touched) -> Response {
    match changed {
        Ok((policies, tokens)) => {
            for (changed, table) in [(policies, Table::AclPolicies), (tokens, Table::AclTokens)] {
                if changed {
                    touched.tables.push(table);
                }
            }
            Response::Bool(policies || tokens)
        }
        Err(error) => Response::Rejected(error.into()),
    }
}

/// A whole snapshot body: trailing bytes are an error.
fn whole<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, SnapshotError> {
    match postcard::take_from_bytes(body) {
        Ok((value, [])) => Ok(value),
        Ok(_) => Err(SnapshotError::Malformed("trailing bytes".into())),
        Err(error) => Err(SnapshotError::Malformed(error.to_string())),
    }
}

/// Runs `lower` (which lowers a row's indexes and says whether it changed any) on a copy of
/// every row and keeps the copies that changed: a persistent map copies only what is written.
/// Returns whether any row changed.
fn clamp_rows<K: Ord + Clone, V: Clone>(
    rows: &mut imbl::OrdMap<K, V>,
    mut lower: impl FnMut(&mut V) -> bool,
) -> bool {
    let changed: Vec<(K, V)> = rows
        .iter()
        .filter_map(|(key, row)| {
            let mut row = row.clone();
            lower(&mut row).then(|| (key.clone(), row))
        })
        .collect();
    let any = !changed.is_empty();
    for (key, row) in changed {
        rows.insert(key, row);
    }
    any
}

/// Lowers `index` to `at` if it is above; whether it was.
fn clamp_index(index: &mut Index, at: Index) -> bool {
    let above = *index > at;
    if above {
        *index = at;
    }
    above
}
