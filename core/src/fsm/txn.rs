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

/// A transaction's outcome: every result, or every error (and nothing changed).
pub type TxnOutcome = Result<Vec<TxnResult>, Vec<TxnError>>;

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
        for (op_index, op) in txn.ops.iter().enumerate() {
            if let Err(what) = self.txn_op(index, now_ms, op, &mut results, &mut effects) {
                errors.push(TxnError { op_index, what });
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
        for (op_index, op) in txn.ops.iter().enumerate() {
            if let Err(what) = scratch.txn_op(self.applied + 1, 0, op, &mut results, &mut effects) {
                errors.push(TxnError { op_index, what });
            }
        }
        debug_assert!(effects.is_empty(), "reads change nothing");
        Some(if errors.is_empty() { Ok(results) } else { Err(errors) })
    }

    fn txn_op(
        &mut self,
        index: u64,
        now_ms: u64,
        op: &TxnOp,
        results: &mut Vec<TxnResult>,
        touched: &mut super::Touched,
    ) -> Result<(), String> {
        match op {
            TxnOp::Kv(verb, operand) => self.txn_kv(index, now_ms, *verb, operand, results, touched),
            TxnOp::Node(verb, node) => self.txn_node(index, now_ms, *verb, node, results, touched),
            TxnOp::Service(verb, node, service) => {
                self.txn_service(index, now_ms, *verb, node, service, results, touched)
            }
            TxnOp::Check(verb, check) => self.txn_check(index, now_ms, *verb, check, results, touched),
        }
    }

    fn txn_kv(
        &mut self,
        index: u64,
        now_ms: u64,
        verb: KvVerb,
        op: &KvOperand,
        results: &mut Vec<TxnResult>,
        touched: &mut super::Touched,
    ) -> Result<(), String> {
        let key = op.key.as_str();
        if key.is_empty() && verb != KvVerb::DeleteTree {
            return Err("Must provide key".into());
        }
        let stripped = |entry: &KvEntry| TxnResult::Kv(KvEntry { value: Bytes::new(), ..entry.clone() });
        let stored = |fsm: &super::Fsm| fsm.kv.get(key).1.cloned();
        match verb {
            KvVerb::Set => {
                if self.kv.set(index, key, op.value.clone(), op.flags) {
                    touched.keys.push(key.to_owned());
                }
                results.push(stripped(&stored(self).expect("just written")));
            }
            KvVerb::Cas => {
                if self.kv.modify_index_of(key) != op.index {
                    return Err(format!("failed to set key {key:?}, index is stale"));
                }
                if self.kv.set(index, key, op.value.clone(), op.flags) {
                    touched.keys.push(key.to_owned());
                }
                results.push(stripped(&stored(self).expect("just written")));
            }
            KvVerb::Lock => {
                self.session_of(&op.session).map_err(|error| error.to_string())?;
                match self.kv.lock(index, now_ms, key, op.value.clone(), op.flags, &op.session) {
                    Locked::Held => touched.keys.push(key.to_owned()),
                    Locked::HeldByOther => {
                        return Err(format!("failed to lock key {key:?}, lock is already held"))
                    }
                    Locked::Delayed => return Err(format!("failed to lock key {key:?} due to lock delay")),
                }
                results.push(stripped(&stored(self).expect("just written")));
            }
            KvVerb::Unlock => {
                if op.session.is_empty() {
                    return Err(LockError::MissingSession.to_string());
                }
                if !self.kv.unlock(index, key, op.value.clone(), op.flags, &op.session) {
                    return Err(format!(
                        "failed to unlock key {key:?}, lock isn't held, or is held by another session"
                    ));
                }
                touched.keys.push(key.to_owned());
                results.push(stripped(&stored(self).expect("just written")));
            }
            KvVerb::Get => {
                let entry = stored(self).ok_or_else(|| format!("key {key:?} doesn't exist"))?;
                results.push(TxnResult::Kv(entry));
            }
            KvVerb::GetOrEmpty => {
                let entry = stored(self).unwrap_or_else(|| KvEntry {
                    key: key.to_owned(),
                    value: Bytes::new(),
                    flags: op.flags,
                    lock_index: 0,
                    session: None,
                    create_index: 0,
                    modify_index: op.index,
                });
                results.push(TxnResult::Kv(entry));
            }
            KvVerb::GetTree => {
                results.extend(self.kv.list(key).1.into_iter().map(|entry| TxnResult::Kv(entry.clone())));
            }
            KvVerb::CheckIndex => {
                let entry = stored(self)
                    .ok_or_else(|| format!("failed to check index, key {key:?} doesn't exist"))?;
                if entry.modify_index != op.index {
                    return Err(format!(
                        "failed index check for key {key:?}, current modify index {} != {}",
                        entry.modify_index, op.index
                    ));
                }
                results.push(stripped(&entry));
            }
            KvVerb::CheckSession => {
                let entry = stored(self)
                    .ok_or_else(|| format!("failed to check session, key {key:?} doesn't exist"))?;
                let holder = entry.session.as_deref().unwrap_or("");
                if holder != op.session {
                    return Err(format!(
                        "failed session check for key {key:?}, current session {holder:?} != {:?}",
                        op.session
                    ));
                }
                results.push(stripped(&entry));
            }
            KvVerb::CheckNotExists => {
                if stored(self).is_some() {
                    return Err(format!("key {key:?} exists"));
                }
            }
            KvVerb::Delete => {
                if self.kv.delete(index, key) {
                    touched.keys.push(key.to_owned());
                }
            }
            KvVerb::DeleteTree => touched.keys.extend(self.kv.delete_tree(index, key)),
            KvVerb::DeleteCas => {
                // A missing key is already deleted: success, as in Consul.
                if let Some(entry) = stored(self) {
                    if entry.modify_index != op.index {
                        return Err(format!("failed to delete key {key:?}, index is stale"));
                    }
                    self.kv.delete(index, key);
                    touched.keys.push(key.to_owned());
                }
            }
        }
        Ok(())
    }

    fn txn_node(
        &mut self,
        index: u64,
        now_ms: u64,
        verb: CatalogVerb,
        node: &Node,
        results: &mut Vec<TxnResult>,
        touched: &mut super::Touched,
    ) -> Result<(), String> {
        let existing = if node.id.is_empty() {
            self.catalog.node(&node.node).cloned()
        } else {
            self.catalog.node_by_id(&node.id).cloned()
        };
        let what = || format!("node {:?}", node.node);
        if verb == CatalogVerb::Get {
            results.push(TxnResult::Node(Box::new(found(existing, what)?)));
            return Ok(());
        }
        if node.node.is_empty() {
            return Err("Must provide node".into());
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
                self.register(index, now_ms, &register, touched).map_err(|error| error.to_string())?;
                results.push(TxnResult::Node(Box::new(
                    self.catalog.node(&node.node).expect("registered").clone(),
                )));
            }
            CatalogVerb::Delete | CatalogVerb::DeleteCas => {
                let deregister =
                    super::Deregister { node: node.node.clone(), ..super::Deregister::default() };
                self.deregister(index, now_ms, &deregister, touched);
            }
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn txn_service(
        &mut self,
        index: u64,
        now_ms: u64,
        verb: CatalogVerb,
        node: &str,
        service: &Service,
        results: &mut Vec<TxnResult>,
        touched: &mut super::Touched,
    ) -> Result<(), String> {
        let id = super::catalog::service_id(service).to_owned();
        let existing = self.catalog.service(node, &id).cloned();
        let what = || format!("service {id:?} on node {node:?}");
        check_cas(verb, existing.as_ref().map(|s| s.modify_index), service.modify_index, what)?;
        match verb {
            CatalogVerb::Get => {
                results.push(TxnResult::Service(node.to_owned(), Box::new(found(existing, what)?)))
            }
            CatalogVerb::Set | CatalogVerb::Cas => {
                self.register_on_node(index, now_ms, node, Some(service.clone()), Vec::new(), touched)?;
                let stored = self.catalog.service(node, &id).expect("registered").clone();
                results.push(TxnResult::Service(node.to_owned(), Box::new(stored)));
            }
            CatalogVerb::Delete | CatalogVerb::DeleteCas => {
                let deregister =
                    super::Deregister { node: node.to_owned(), service_id: Some(id), check_id: None };
                self.deregister(index, now_ms, &deregister, touched);
            }
        }
        Ok(())
    }

    fn txn_check(
        &mut self,
        index: u64,
        now_ms: u64,
        verb: CatalogVerb,
        check: &Check,
        results: &mut Vec<TxnResult>,
        touched: &mut super::Touched,
    ) -> Result<(), String> {
        let id = super::catalog::check_id(check).to_owned();
        let node = check.node.as_str();
        let existing = self.catalog.check(node, &id).cloned();
        let what = || format!("check {id:?} on node {node:?}");
        check_cas(verb, existing.as_ref().map(|c| c.modify_index), check.modify_index, what)?;
        match verb {
            CatalogVerb::Get => results.push(TxnResult::Check(Box::new(found(existing, what)?))),
            CatalogVerb::Set | CatalogVerb::Cas => {
                self.register_on_node(index, now_ms, node, None, vec![check.clone()], touched)?;
                results.push(TxnResult::Check(Box::new(
                    self.catalog.check(node, &id).expect("registered").clone(),
                )));
            }
            CatalogVerb::Delete | CatalogVerb::DeleteCas => {
                let deregister =
                    super::Deregister { node: node.to_owned(), service_id: None, check_id: Some(id) };
                self.deregister(index, now_ms, &deregister, touched);
            }
        }
        Ok(())
    }

    /// Registers `service` or `checks` on `node`, which a transaction needs registered already;
    /// the node's own row is left as it is.
    fn register_on_node(
        &mut self,
        index: u64,
        now_ms: u64,
        node: &str,
        service: Option<Service>,
        checks: Vec<Check>,
        touched: &mut super::Touched,
    ) -> Result<(), String> {
        let Some(found) = self.catalog.node(node).cloned() else {
            return Err("Missing node registration".into());
        };
        let register = super::Register { node: found, skip_node_update: true, service, checks };
        self.register(index, now_ms, &register, touched).map_err(|error| error.to_string())
    }
}

/// The row a transaction's `Get` read, or Consul's error naming it (`what`) when there is none.
fn found<T>(existing: Option<T>, what: impl Fn() -> String) -> Result<T, String> {
    existing.ok_or_else(|| format!("{} doesn't exist", what()))
}

/// Refuses a `Cas` or `DeleteCas` op whose index is not the stored row's. `current` is that
/// row's modify index (`None`: no row), `given` the op's, `what` names the row in the error. A
/// `Cas` on no row expects index 0 (it creates); a `DeleteCas` needs the row.
fn check_cas(
    verb: CatalogVerb,
    current: Option<u64>,
    given: u64,
    what: impl Fn() -> String,
) -> Result<(), String> {
    let (stale, action) = match verb {
        CatalogVerb::Cas => (current.unwrap_or(0) != given, "set"),
        CatalogVerb::DeleteCas => (current != Some(given), "delete"),
        CatalogVerb::Get | CatalogVerb::Set | CatalogVerb::Delete => return Ok(()),
    };
    if stale {
        return Err(format!("failed to {action} {}, index is stale", what()));
    }
    Ok(())
}
