//! Transactions: up to [`TXN_OPS_MAX`] KV, node, service and check operations applied all or
//! nothing (`../shared/reference/consul-behaviour.md` §1.2; consul `agent/consul/state/txn.go`).
//!
//! Every operation runs, in order, each seeing the ones before it; every failure is collected
//! with its operation's position. If any failed, the state goes back to what it was before
//! the first (the tables are persistent maps, so keeping that state is one O(1) clone) and the
//! answer is the errors; otherwise it is one result per operation that yields one.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::catalog::{Check, Node, Service};
use super::kv::{KvEntry, LockError, Locked};

/// The most operations one transaction may carry (Consul's `maxTxnOps`).
pub const TXN_OPS_MAX: usize = 128;

/// A KV operation's verb.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum KvVerb {
    /// Write.
    Set,
    /// Write if `ModifyIndex` matches (0: create only).
    Cas,
    /// Take the lock for a session and write.
    Lock,
    /// Release the session's lock and write.
    Unlock,
    /// Read; fails if missing.
    Get,
    /// Read; an empty entry if missing.
    GetOrEmpty,
    /// Read a prefix.
    GetTree,
    /// Fail unless `ModifyIndex` matches.
    CheckIndex,
    /// Fail unless the lock holder matches.
    CheckSession,
    /// Fail if the key exists.
    CheckNotExists,
    /// Delete.
    Delete,
    /// Delete a prefix.
    DeleteTree,
    /// Delete if `ModifyIndex` matches.
    DeleteCas,
}

impl KvVerb {
    /// Every verb.
    pub const ALL: [KvVerb; 13] = [
        KvVerb::Set,
        KvVerb::Cas,
        KvVerb::Lock,
        KvVerb::Unlock,
        KvVerb::Get,
        KvVerb::GetOrEmpty,
        KvVerb::GetTree,
        KvVerb::CheckIndex,
        KvVerb::CheckSession,
        KvVerb::CheckNotExists,
        KvVerb::Delete,
        KvVerb::DeleteTree,
        KvVerb::DeleteCas,
    ];

    /// Consul's spelling (`get-tree`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            KvVerb::Set => "set",
            KvVerb::Cas => "cas",
            KvVerb::Lock => "lock",
            KvVerb::Unlock => "unlock",
            KvVerb::Get => "get",
            KvVerb::GetOrEmpty => "get-or-empty",
            KvVerb::GetTree => "get-tree",
            KvVerb::CheckIndex => "check-index",
            KvVerb::CheckSession => "check-session",
            KvVerb::CheckNotExists => "check-not-exists",
            KvVerb::Delete => "delete",
            KvVerb::DeleteTree => "delete-tree",
            KvVerb::DeleteCas => "delete-cas",
        }
    }

    /// Parses Consul's spelling.
    pub fn parse(text: &str) -> Option<KvVerb> {
        KvVerb::ALL.into_iter().find(|verb| verb.as_str() == text)
    }

    /// Whether the verb only reads.
    pub fn reads_only(self) -> bool {
        matches!(
            self,
            KvVerb::Get
                | KvVerb::GetOrEmpty
                | KvVerb::GetTree
                | KvVerb::CheckIndex
                | KvVerb::CheckSession
                | KvVerb::CheckNotExists
        )
    }
}

/// A node, service or check operation's verb.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CatalogVerb {
    /// Register (or update).
    Set,
    /// Register if `ModifyIndex` matches (0: create only).
    Cas,
    /// Read; fails if missing.
    Get,
    /// Deregister (missing is not an error).
    Delete,
    /// Deregister if `ModifyIndex` matches (missing is an error).
    DeleteCas,
}

impl CatalogVerb {
    /// Every verb.
    pub const ALL: [CatalogVerb; 5] =
        [CatalogVerb::Set, CatalogVerb::Cas, CatalogVerb::Get, CatalogVerb::Delete, CatalogVerb::DeleteCas];

    /// Consul's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            CatalogVerb::Set => "set",
            CatalogVerb::Cas => "cas",
            CatalogVerb::Get => "get",
            CatalogVerb::Delete => "delete",
            CatalogVerb::DeleteCas => "delete-cas",
        }
    }

    /// Parses Consul's spelling.
    pub fn parse(text: &str) -> Option<CatalogVerb> {
        CatalogVerb::ALL.into_iter().find(|verb| verb.as_str() == text)
    }
}

/// One KV operation's operands (Consul's `TxnKVOp` without the verb).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvOperand {
    /// The key (the prefix for tree verbs).
    pub key: String,
    /// The value to write.
    pub value: Bytes,
    /// The flags to write.
    pub flags: u64,
    /// The `ModifyIndex` CAS and check verbs compare.
    pub index: u64,
    /// The session lock verbs and `check-session` use.
    pub session: String,
}

/// One operation of a transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxnOp {
    /// On a key.
    Kv(KvVerb, KvOperand),
    /// On a node (found by ID when it has one, else by name); `modify_index` is what CAS
    /// verbs compare.
    Node(CatalogVerb, Box<Node>),
    /// On a service of a node (`Service.ID` defaults to its name).
    Service(CatalogVerb, String, Box<Service>),
    /// On a check (`Check.Node` names the node; `CheckID` defaults to its name).
    Check(CatalogVerb, Box<Check>),
}

impl TxnOp {
    /// Whether the operation only reads.
    pub fn reads_only(&self) -> bool {
        match self {
            TxnOp::Kv(verb, _) => verb.reads_only(),
            TxnOp::Node(verb, _) | TxnOp::Service(verb, _, _) | TxnOp::Check(verb, _) => {
                *verb == CatalogVerb::Get
            }
        }
    }
}

/// A transaction: its operations, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Txn {
    /// The operations.
    pub ops: Vec<TxnOp>,
}

/// One result of a committed transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxnResult {
    /// A KV entry (its value is empty unless the verb read it).
    Kv(KvEntry),
    /// A node.
    Node(Box<Node>),
    /// A service and the node it is on.
    Service(String, Box<Service>),
    /// A check.
    Check(Box<Check>),
}

/// Why one operation failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnError {
    /// The operation's position in the transaction.
    pub op_index: usize,
    /// Consul's message.
    pub what: String,
}

/// Why one operation of a transaction failed, in Consul's words: the `What` of its
/// [`TxnError`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TxnOpError {
    /// A KV operation other than `delete-tree` without a key.
    #[error("Must provide key")]
    MissingKey,
    /// A node operation without a node name.
    #[error("Must provide node")]
    MissingNode,
    /// A `cas` or `delete-cas` whose index is not the key's.
    #[error("failed to {action} key {key:?}, index is stale")]
    StaleKey {
        /// `set` or `delete`.
        action: &'static str,
        /// The key.
        key: String,
    },
    /// A `lock` on a key another session holds.
    #[error("failed to lock key {0:?}, lock is already held")]
    LockHeld(String),
    /// A `lock` within the lock delay of the key's last release.
    #[error("failed to lock key {0:?} due to lock delay")]
    LockDelayed(String),
    /// An `unlock` by a session that does not hold the lock.
    #[error("failed to unlock key {0:?}, lock isn't held, or is held by another session")]
    NotHolder(String),
    /// A `get` of a missing key.
    #[error("key {0:?} doesn't exist")]
    NoKey(String),
    /// A `check-index` or `check-session` of a missing key.
    #[error("failed to check {check}, key {key:?} doesn't exist")]
    NoKeyToCheck {
        /// `index` or `session`.
        check: &'static str,
        /// The key.
        key: String,
    },
    /// A `check-index` that found another index.
    #[error("failed index check for key {key:?}, current modify index {current} != {given}")]
    IndexMismatch {
        /// The key.
        key: String,
        /// Its modify index.
        current: u64,
        /// The operation's.
        given: u64,
    },
    /// A `check-session` that found another holder.
    #[error("failed session check for key {key:?}, current session {current:?} != {given:?}")]
    SessionMismatch {
        /// The key.
        key: String,
        /// Its holder, empty when unlocked.
        current: String,
        /// The operation's.
        given: String,
    },
    /// A `check-not-exists` of a key that exists.
    #[error("key {0:?} exists")]
    KeyExists(String),
    /// A catalog `get` of a row that is not there; names the row (`node "a"`).
    #[error("{0} doesn't exist")]
    NoRow(String),
    /// A catalog `cas` or `delete-cas` whose index is not the row's.
    #[error("failed to {action} {row}, index is stale")]
    StaleRow {
        /// `set` or `delete`.
        action: &'static str,
        /// The row (`service "web" on node "a"`).
        row: String,
    },
    /// A service or check on a node the catalog does not have.
    #[error("Missing node registration")]
    NoNodeRegistration,
    /// A lock operation's session is missing or unknown.
    #[error(transparent)]
    Lock(#[from] LockError),
    /// The catalog refused the registration.
    #[error(transparent)]
    Register(#[from] super::CommandError),
}

/// A transaction's outcome: every result, or every error (and nothing changed).
pub type TxnOutcome = Result<Vec<TxnResult>, Vec<TxnError>>;

/// What every operation of one transaction shares: the Raft index and time it runs at, and
/// where its results and the rows it touches (for watches) are gathered.
struct TxnRun<'a> {
    index: u64,
    now_ms: u64,
    results: &'a mut Vec<TxnResult>,
    touched: &'a mut super::Touched,
}

impl super::Fsm {
    /// Runs a transaction at `index` (already advanced to), rolling everything back if any
    /// operation fails.
    pub(super) fn apply_txn(
        &mut self,
        index: u64,
        now_ms: u64,
        txn: &Txn,
        touched: &mut super::Touched,
    ) -> TxnOutcome {
        let before = self.clone();
        let mut results = Vec::new();
        let mut errors = Vec::new();
        let mut effects = super::Touched::default();
        let mut run = TxnRun { index, now_ms, results: &mut results, touched: &mut effects };
        for (op_index, op) in txn.ops.iter().enumerate() {
            if let Err(error) = self.txn_op(&mut run, op) {
                errors.push(TxnError { op_index, what: error.to_string() });
            }
        }
        if !errors.is_empty() {
            *self = before;
            return Err(errors);
        }
        touched.merge(effects);
        Ok(results)
    }

    /// Answers a transaction of reads only without changing anything; `None` if an operation
    /// would write (that needs the log).
    pub fn read_txn(&self, txn: &Txn) -> Option<TxnOutcome> {
        if !txn.ops.iter().all(TxnOp::reads_only) {
            return None;
        }
        let mut scratch = self.clone();
        let mut results = Vec::new();
        let mut errors = Vec::new();
        let mut effects = super::Touched::default();
        let mut run =
            TxnRun { index: self.applied + 1, now_ms: 0, results: &mut results, touched: &mut effects };
        for (op_index, op) in txn.ops.iter().enumerate() {
            if let Err(error) = scratch.txn_op(&mut run, op) {
                errors.push(TxnError { op_index, what: error.to_string() });
            }
        }
        debug_assert!(effects.is_empty(), "reads change nothing");
        Some(if errors.is_empty() { Ok(results) } else { Err(errors) })
    }

    fn txn_op(&mut self, run: &mut TxnRun<'_>, op: &TxnOp) -> Result<(), TxnOpError> {
        match op {
            TxnOp::Kv(verb, operand) => self.txn_kv(run, *verb, operand),
            TxnOp::Node(verb, node) => self.txn_node(run, *verb, node),
            TxnOp::Service(verb, node, service) => self.txn_service(run, *verb, node, service),
            TxnOp::Check(verb, check) => self.txn_check(run, *verb, check),
        }
    }

    fn txn_kv(&mut self, run: &mut TxnRun<'_>, verb: KvVerb, op: &KvOperand) -> Result<(), TxnOpError> {
        let key = op.key.as_str();
        if key.is_empty() && verb != KvVerb::DeleteTree {
            return Err(TxnOpError::MissingKey);
        }
        let stripped = |entry: &KvEntry| TxnResult::Kv(KvEntry { value: Bytes::new(), ..entry.clone() });
        let stored = |fsm: &super::Fsm| fsm.kv.get(key).1.cloned();
        match verb {
            KvVerb::Set => {
                if self.kv.set(run.index, key, op.value.clone(), op.flags) {
                    run.touched.keys.push(key.to_owned());
                }
                run.results.push(stripped(&stored(self).expect("just written")));
            }
            KvVerb::Cas => {
                if self.kv.modify_index_of(key) != op.index {
                    return Err(TxnOpError::StaleKey { action: "set", key: key.to_owned() });
                }
                if self.kv.set(run.index, key, op.value.clone(), op.flags) {
                    run.touched.keys.push(key.to_owned());
                }
                run.results.push(stripped(&stored(self).expect("just written")));
            }
            KvVerb::Lock => {
                self.session_of(&op.session)?;
                match self.kv.lock(run.index, run.now_ms, key, op.value.clone(), op.flags, &op.session) {
                    Locked::Held => run.touched.keys.push(key.to_owned()),
                    Locked::HeldByOther => return Err(TxnOpError::LockHeld(key.to_owned())),
                    Locked::Delayed => return Err(TxnOpError::LockDelayed(key.to_owned())),
                }
                run.results.push(stripped(&stored(self).expect("just written")));
            }
            KvVerb::Unlock => {
                if op.session.is_empty() {
                    return Err(LockError::MissingSession.into());
                }
                if !self.kv.unlock(run.index, key, op.value.clone(), op.flags, &op.session) {
                    return Err(TxnOpError::NotHolder(key.to_owned()));
                }
                run.touched.keys.push(key.to_owned());
                run.results.push(stripped(&stored(self).expect("just written")));
            }
            KvVerb::Get => {
                let entry = stored(self).ok_or_else(|| TxnOpError::NoKey(key.to_owned()))?;
                run.results.push(TxnResult::Kv(entry));
            }
            KvVerb::GetOrEmpty => {
                run.results.push(TxnResult::Kv(stored(self).unwrap_or_else(|| missing_entry(op))));
            }
            KvVerb::GetTree => {
                run.results.extend(self.kv.list(key).1.into_iter().map(|entry| TxnResult::Kv(entry.clone())));
            }
            KvVerb::CheckIndex => {
                let entry = stored(self)
                    .ok_or_else(|| TxnOpError::NoKeyToCheck { check: "index", key: key.to_owned() })?;
                if entry.modify_index != op.index {
                    let (current, given) = (entry.modify_index, op.index);
                    return Err(TxnOpError::IndexMismatch { key: key.to_owned(), current, given });
                }
                run.results.push(stripped(&entry));
            }
            KvVerb::CheckSession => {
                let entry = stored(self)
                    .ok_or_else(|| TxnOpError::NoKeyToCheck { check: "session", key: key.to_owned() })?;
                let holder = entry.session.as_deref().unwrap_or("");
                if holder != op.session {
                    let (current, given) = (holder.to_owned(), op.session.clone());
                    return Err(TxnOpError::SessionMismatch { key: key.to_owned(), current, given });
                }
                run.results.push(stripped(&entry));
            }
            KvVerb::CheckNotExists => {
                if stored(self).is_some() {
                    return Err(TxnOpError::KeyExists(key.to_owned()));
                }
            }
            KvVerb::Delete => {
                if self.kv.delete(run.index, key) {
                    run.touched.keys.push(key.to_owned());
                }
            }
            KvVerb::DeleteTree => run.touched.keys.extend(self.kv.delete_tree(run.index, key)),
            KvVerb::DeleteCas => {
                // A missing key is already deleted: success, as in Consul.
                if let Some(entry) = stored(self) {
                    if entry.modify_index != op.index {
                        return Err(TxnOpError::StaleKey { action: "delete", key: key.to_owned() });
                    }
                    self.kv.delete(run.index, key);
                    run.touched.keys.push(key.to_owned());
                }
            }
        }
        Ok(())
    }

    fn txn_node(&mut self, run: &mut TxnRun<'_>, verb: CatalogVerb, node: &Node) -> Result<(), TxnOpError> {
        let existing = if node.id.is_empty() {
            self.catalog.node(&node.node).cloned()
        } else {
            self.catalog.node_by_id(&node.id).cloned()
        };
        let what = || format!("node {:?}", node.node);
        if verb == CatalogVerb::Get {
            run.results.push(TxnResult::Node(Box::new(found(existing, what)?)));
            return Ok(());
        }
        if node.node.is_empty() {
            return Err(TxnOpError::MissingNode);
        }
        // A `Cas` compares with the row of that name, the one it writes; a delete with the row
        // found, by ID when the op gives one.
        let current =
            if verb == CatalogVerb::Cas { self.catalog.node(&node.node) } else { existing.as_ref() };
        check_cas(verb, current.map(|n| n.modify_index), node.modify_index, what)?;
        match verb {
            CatalogVerb::Get => unreachable!("answered above"),
            CatalogVerb::Set | CatalogVerb::Cas => {
                let register = super::Register { node: node.clone(), ..super::Register::default() };
                self.register(run.index, run.now_ms, &register, run.touched)?;
                run.results.push(TxnResult::Node(Box::new(
                    self.catalog.node(&node.node).expect("registered").clone(),
                )));
            }
            CatalogVerb::Delete | CatalogVerb::DeleteCas => {
                let deregister =
                    super::Deregister { node: node.node.clone(), ..super::Deregister::default() };
                self.deregister(run.index, run.now_ms, &deregister, run.touched);
            }
        }
        Ok(())
    }

    fn txn_service(
        &mut self,
        run: &mut TxnRun<'_>,
        verb: CatalogVerb,
        node: &str,
        service: &Service,
    ) -> Result<(), TxnOpError> {
        let id = super::catalog::service_id(service).to_owned();
        let existing = self.catalog.service(node, &id).cloned();
        let what = || format!("service {id:?} on node {node:?}");
        check_cas(verb, existing.as_ref().map(|s| s.modify_index), service.modify_index, what)?;
        match verb {
            CatalogVerb::Get => {
                run.results.push(TxnResult::Service(node.to_owned(), Box::new(found(existing, what)?)))
            }
            CatalogVerb::Set | CatalogVerb::Cas => {
                self.register_on_node(run, node, Some(service.clone()), Vec::new())?;
                let stored = self.catalog.service(node, &id).expect("registered").clone();
                run.results.push(TxnResult::Service(node.to_owned(), Box::new(stored)));
            }
            CatalogVerb::Delete | CatalogVerb::DeleteCas => {
                let deregister =
                    super::Deregister { node: node.to_owned(), service_id: Some(id), check_id: None };
                self.deregister(run.index, run.now_ms, &deregister, run.touched);
            }
        }
        Ok(())
    }

    fn txn_check(
        &mut self,
        run: &mut TxnRun<'_>,
        verb: CatalogVerb,
        check: &Check,
    ) -> Result<(), TxnOpError> {
        let id = super::catalog::check_id(check).to_owned();
        let node = check.node.as_str();
        let existing = self.catalog.check(node, &id).cloned();
        let what = || format!("check {id:?} on node {node:?}");
        check_cas(verb, existing.as_ref().map(|c| c.modify_index), check.modify_index, what)?;
        match verb {
            CatalogVerb::Get => run.results.push(TxnResult::Check(Box::new(found(existing, what)?))),
            CatalogVerb::Set | CatalogVerb::Cas => {
                self.register_on_node(run, node, None, vec![check.clone()])?;
                run.results.push(TxnResult::Check(Box::new(
                    self.catalog.check(node, &id).expect("registered").clone(),
                )));
            }
            CatalogVerb::Delete | CatalogVerb::DeleteCas => {
                let deregister =
                    super::Deregister { node: node.to_owned(), service_id: None, check_id: Some(id) };
                self.deregister(run.index, run.now_ms, &deregister, run.touched);
            }
        }
        Ok(())
    }

    /// Registers `service` or `checks` on `node`, which a transaction needs registered already;
    /// the node's own row is left as it is.
    fn register_on_node(
        &mut self,
        run: &mut TxnRun<'_>,
        node: &str,
        service: Option<Service>,
        checks: Vec<Check>,
    ) -> Result<(), TxnOpError> {
        let Some(found) = self.catalog.node(node).cloned() else {
            return Err(TxnOpError::NoNodeRegistration);
        };
        let register = super::Register { node: found, skip_node_update: true, service, checks };
        Ok(self.register(run.index, run.now_ms, &register, run.touched)?)
    }
}

/// The row a transaction's `Get` read, or Consul's error naming it (`what`) when there is none.
fn found<T>(existing: Option<T>, what: impl Fn() -> String) -> Result<T, TxnOpError> {
    existing.ok_or_else(|| TxnOpError::NoRow(what()))
}

/// Refuses a `Cas` or `DeleteCas` op whose index is not the stored row's. `current` is that
/// row's modify index (`None`: no row), `given` the op's, `what` names the row in the error. A
/// `Cas` on no row expects index 0 (it creates); a `DeleteCas` needs the row.
fn check_cas(
    verb: CatalogVerb,
    current: Option<u64>,
    given: u64,
    what: impl Fn() -> String,
) -> Result<(), TxnOpError> {
    let (stale, action) = match verb {
        CatalogVerb::Cas => (current.unwrap_or(0) != given, "set"),
        CatalogVerb::DeleteCas => (current != Some(given), "delete"),
        CatalogVerb::Get | CatalogVerb::Set | CatalogVerb::Delete => return Ok(()),
    };
    if stale {
        return Err(TxnOpError::StaleRow { action, row: what() });
    }
    Ok(())
}

/// What `get-or-empty` answers for a missing key (Consul's `KVGetOrEmpty`): an empty entry
/// carrying the operation's flags and index.
fn missing_entry(op: &KvOperand) -> KvEntry {
    KvEntry {
        key: op.key.clone(),
        value: Bytes::new(),
        flags: op.flags,
        lock_index: 0,
        session: None,
        create_index: 0,
        modify_index: op.index,
    }
}
