//! The KV store: entries with Consul's indexes, locks held by sessions, and tombstones so that
//! deletes advance the index of every prefix they touch (consul `agent/consul/state/kvs.go`,
//! `graveyard.go`, `delay.go`).
//!
//! Lock delays are state here, not a server's memory as in Consul: the time they end is the
//! leader's clock stamped into the entry that invalidated the session, and a lock attempt
//! compares it with the time stamped into its own entry, so every replica agrees and a new
//! leader keeps honouring them.

use std::ops::Bound;

use bytes::Bytes;
use imbl::{OrdMap, OrdSet};
use serde::{Deserialize, Serialize};

use super::Index;

/// The largest value a key may hold: Consul's `kv_max_value_size` (raft's suggested maximum
/// entry size).
pub const VALUE_BYTES_MAX: usize = 512 * 1024;

/// One key, as Consul's `DirEntry`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvEntry {
    /// The key.
    pub key: String,
    /// The value (empty is a value: Consul answers `null`).
    pub value: Bytes,
    /// Opaque to Consul; clients use it for metadata.
    pub flags: u64,
    /// How many times a session acquired the key.
    pub lock_index: u64,
    /// The session holding its lock, if any.
    pub session: Option<String>,
    /// The Raft index that created it.
    pub create_index: Index,
    /// The Raft index that last wrote it.
    pub modify_index: Index,
}

/// Entries, tombstones, lock delays and the table index.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Kv {
    pub(super) entries: OrdMap<String, KvEntry>,
    /// Deleted keys (or delete-tree prefixes) and the index that deleted them, until reaped.
    pub(super) tombstones: OrdMap<String, Index>,
    /// Keys whose lock may not be taken before a time (leader clock, Unix milliseconds).
    pub(super) lock_delays: OrdMap<String, u64>,
    /// The highest index that wrote or deleted anything.
    pub(super) index: Index,
    /// Derived: session → the keys it holds.
    #[serde(skip)]
    pub(super) held: OrdMap<String, OrdSet<String>>,
}

/// Why a lock operation failed with an error rather than `false`. Messages are Consul's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum LockError {
    /// No session given.
    #[error("missing session")]
    MissingSession,
    /// The session does not exist.
    #[error("invalid session {0:?}")]
    InvalidSession(String),
}

/// How a lock attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Locked {
    /// The session holds the key.
    Held,
    /// Another session holds it.
    HeldByOther,
    /// The key is in its lock delay.
    Delayed,
}

impl Kv {
    /// The entry at `key` and the index that answers for it: its `ModifyIndex`, or the table
    /// index when it is missing (so a reader can block until it appears).
    pub fn get(&self, key: &str) -> (Index, Option<&KvEntry>) {
        match self.entries.get(key) {
            Some(entry) => (entry.modify_index, Some(entry)),
            None => (self.index, None),
        }
    }

    /// Every entry under `prefix`, in key order, and the index of the result: the highest
    /// `ModifyIndex` or tombstone under the prefix (the table index for the empty prefix, or
    /// when nothing is there).
    pub fn list(&self, prefix: &str) -> (Index, Vec<&KvEntry>) {
        let entries: Vec<&KvEntry> = self.under(prefix).map(|(_, e)| e).collect();
        let newest = entries.iter().map(|e| e.modify_index).max().unwrap_or(0);
        (self.prefix_index(prefix, newest), entries)
    }

    /// The keys under `prefix`; with a separator, each is cut after the first separator that
    /// follows the prefix, and repeats are dropped (`web/a`, `web/sub/x` → `web/a`, `web/sub/`).
    pub fn keys(&self, prefix: &str, separator: Option<&str>) -> (Index, Vec<String>) {
        let mut keys: Vec<String> = Vec::new();
        let mut newest = 0;
        for (key, entry) in self.under(prefix) {
            newest = newest.max(entry.modify_index);
            let cut = separator
                .filter(|s| !s.is_empty())
                .and_then(|s| key[prefix.len()..].find(s).map(|at| &key[..prefix.len() + at + s.len()]))
                .unwrap_or(key);
            if keys.last().map(String::as_str) != Some(cut) {
                keys.push(cut.to_owned());
            }
        }
        (self.prefix_index(prefix, newest), keys)
    }

    /// The table index: the highest index that changed the store.
    pub fn index(&self) -> Index {
        self.index
    }

    /// How many keys it holds.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether it holds no key.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// How many tombstones wait to be reaped.
    pub fn tombstones(&self) -> usize {
        self.tombstones.len()
    }

    /// The keys `session` holds.
    pub fn held_by(&self, session: &str) -> impl Iterator<Item = &String> + '_ {
        self.held.get(session).into_iter().flatten()
    }

    /// When the lock delay on `key` ends (leader clock, Unix ms), if one was ever set.
    pub fn lock_delay(&self, key: &str) -> Option<u64> {
        self.lock_delays.get(key).copied()
    }

    fn under<'a, 'p>(
        &'a self,
        prefix: &'p str,
    ) -> impl Iterator<Item = (&'a String, &'a KvEntry)> + use<'a, 'p> {
        self.entries
            .range::<_, str>((Bound::Included(prefix), Bound::Unbounded))
            .take_while(move |(key, _)| key.starts_with(prefix))
    }

    /// Consul's rule: the newest entry or tombstone under a non-empty prefix, else the table
    /// index.
    fn prefix_index(&self, prefix: &str, newest_entry: Index) -> Index {
        if prefix.is_empty() {
            return self.index;
        }
        let tombstone = self
            .tombstones
            .range::<_, str>((Bound::Included(prefix), Bound::Unbounded))
            .take_while(|(key, _)| key.starts_with(prefix))
            .map(|(_, &index)| index)
            .max()
            .unwrap_or(0);
        match newest_entry.max(tombstone) {
            0 => self.index,
            newest => newest,
        }
    }

    // --- writes, called by `Fsm::apply` with the entry's index ---------------------------------

    /// Writes `value` and `flags` at `key` as Consul's plain PUT: the lock holder stays, the
    /// lock index is reset (Consul takes it from the request, which carries 0), and a write
    /// that changes nothing moves no index. Returns whether anything changed.
    pub(super) fn set(&mut self, index: Index, key: &str, value: Bytes, flags: u64) -> bool {
        let existing = self.entries.get(key);
        let session = existing.and_then(|e| e.session.clone());
        self.write(index, key, value, flags, 0, session)
    }

    /// Writes an entry with every field given; `false` if it equals the stored one.
    fn write(
        &mut self,
        index: Index,
        key: &str,
        value: Bytes,
        flags: u64,
        lock_index: u64,
        session: Option<String>,
    ) -> bool {
        match self.entries.get_mut(key) {
            Some(entry) => {
                if entry.value == value
                    && entry.flags == flags
                    && entry.lock_index == lock_index
                    && entry.session == session
                {
                    return false;
                }
                entry.value = value;
                entry.flags = flags;
                entry.lock_index = lock_index;
                entry.session = session;
                entry.modify_index = index;
            }
            None => {
                let entry = KvEntry {
                    key: key.to_owned(),
                    value,
                    flags,
                    lock_index,
                    session,
                    create_index: index,
                    modify_index: index,
                };
                self.entries.insert(key.to_owned(), entry);
            }
        }
        self.index = index;
        true
    }

    /// The `ModifyIndex` of `key`, 0 if it is missing: what a check-and-set compares.
    pub(super) fn modify_index_of(&self, key: &str) -> Index {
        self.entries.get(key).map_or(0, |e| e.modify_index)
    }

    /// Takes the lock on `key` for `session` (which the caller found to exist) and writes the
    /// value, unless another session holds it or its lock delay runs past `now_ms`. A new
    /// holder increments `LockIndex`; the holder taking it again does not.
    pub(super) fn lock(
        &mut self,
        index: Index,
        now_ms: u64,
        key: &str,
        value: Bytes,
        flags: u64,
        session: &str,
    ) -> Locked {
        if let Some(&until_ms) = self.lock_delays.get(key) {
            if until_ms > now_ms {
                return Locked::Delayed;
            }
            self.lock_delays.remove(key);
        }
        let existing = self.entries.get(key);
        let lock_index = match existing {
            Some(entry) if entry.session.as_deref() == Some(session) => entry.lock_index,
            Some(entry) if entry.session.is_some() => return Locked::HeldByOther,
            Some(entry) => entry.lock_index + 1,
            None => 1,
        };
        self.write(index, key, value, flags, lock_index, Some(session.to_owned()));
        self.held.entry(session.to_owned()).or_default().insert(key.to_owned());
        Locked::Held
    }

    /// Releases `key` held by `session`, writing the value; `false` if the key is missing or
    /// `session` does not hold it.
    pub(super) fn unlock(
        &mut self,
        index: Index,
        key: &str,
        value: Bytes,
        flags: u64,
        session: &str,
    ) -> bool {
        let Some(entry) = self.entries.get(key) else { return false };
        if entry.session.as_deref() != Some(session) {
            return false;
        }
        let lock_index = entry.lock_index;
        self.write(index, key, value, flags, lock_index, None);
        self.unhold(session, key);
        true
    }

    /// What a session's invalidation does to each key it holds: released (`ModifyIndex`
    /// moves, `LockIndex` stays) or deleted, and closed to new locks until `delay_until_ms`
    /// (when there is a delay). Returns the keys touched.
    pub(super) fn invalidate(
        &mut self,
        index: Index,
        session: &str,
        delete: bool,
        delay_until_ms: Option<u64>,
    ) -> Vec<String> {
        let keys: Vec<String> =
            self.held.remove(session).map(|keys| keys.into_iter().collect()).unwrap_or_default();
        for key in &keys {
            if delete {
                self.delete(index, key);
            } else {
                let entry = self.entries.get_mut(key).expect("held keys exist");
                entry.session = None;
                entry.modify_index = index;
                self.index = index;
            }
            if let Some(until_ms) = delay_until_ms {
                self.lock_delays.insert(key.clone(), until_ms);
            }
        }
        keys
    }

    /// Deletes `key`, leaving a tombstone; `false` if it was missing.
    pub(super) fn delete(&mut self, index: Index, key: &str) -> bool {
        let Some(entry) = self.entries.remove(key) else { return false };
        if let Some(session) = &entry.session {
            self.unhold(session, key);
        }
        self.index = index;
        self.tombstones.insert(key.to_owned(), index);
        true
    }

    /// Deletes every key under `prefix`, leaving one tombstone for the prefix (none for the
    /// empty prefix, whose index is the table's); returns the keys deleted.
    pub(super) fn delete_tree(&mut self, index: Index, prefix: &str) -> Vec<String> {
        let doomed: Vec<String> = self.under(prefix).map(|(key, _)| key.clone()).collect();
        for key in &doomed {
            let entry = self.entries.remove(key).expect("listed above");
            if let Some(session) = &entry.session {
                self.unhold(session, key);
            }
        }
        if !doomed.is_empty() {
            self.index = index;
            if !prefix.is_empty() {
                self.tombstones.insert(prefix.to_owned(), index);
            }
        }
        doomed
    }

    fn unhold(&mut self, session: &str, key: &str) {
        if let Some(keys) = self.held.get_mut(session) {
            keys.remove(key);
            if keys.is_empty() {
                self.held.remove(session);
            }
        }
    }

    /// Drops the tombstones at or below `up_to`, and lock delays over by `now_ms`; returns
    /// how many tombstones. The table index does not move (Consul's rule): a prefix whose
    /// tombstone goes answers with its entries' or the table's index.
    pub(super) fn reap(&mut self, up_to: Index, now_ms: u64) -> usize {
        let doomed: Vec<String> = self
            .tombstones
            .iter()
            .filter(|(_, &deleted)| deleted <= up_to)
            .map(|(key, _)| key.clone())
            .collect();
        for key in &doomed {
            self.tombstones.remove(key);
        }
        let over: Vec<String> = self
            .lock_delays
            .iter()
            .filter(|(_, &until)| until <= now_ms)
            .map(|(key, _)| key.clone())
            .collect();
        for key in &over {
            self.lock_delays.remove(key);
        }
        doomed.len()
    }

    /// Lowers every Raft index above `at` to `at` (a restore at entry `at`); lock indexes and
    /// lock delays are not Raft indexes and stay.
    pub(super) fn clamp(&mut self, at: Index) {
        super::clamp_rows(&mut self.entries, |entry| {
            super::clamp_index(&mut entry.create_index, at) | super::clamp_index(&mut entry.modify_index, at)
        });
        super::clamp_rows(&mut self.tombstones, |deleted| super::clamp_index(deleted, at));
        super::clamp_index(&mut self.index, at);
    }

    /// Rebuilds the derived indexes after a restore.
    pub(super) fn rebuild(&mut self) {
        self.held = OrdMap::new();
        for (key, entry) in &self.entries {
            if let Some(session) = &entry.session {
                self.held.entry(session.clone()).or_default().insert(key.clone());
            }
        }
    }

    /// The store's rules, checked on a restored snapshot (after `rebuild`).
    pub(super) fn validate(&self, applied: Index) -> Result<(), &'static str> {
        if self.index > applied {
            return Err("the KV index is past the applied index");
        }
        for (key, entry) in &self.entries {
            if *key != entry.key {
                return Err("an entry is filed under another key");
            }
            if entry.create_index > entry.modify_index || entry.modify_index > self.index {
                return Err("an entry's indexes are out of order");
            }
            if entry.value.len() > VALUE_BYTES_MAX {
                return Err("a value is over the size limit");
            }
        }
        if self.tombstones.values().any(|&deleted| deleted > self.index) {
            return Err("a tombstone is past the KV index");
        }
        Ok(())
    }

    /// [`Kv::validate`]'s rules for the one key `key`, and its lock's bookkeeping: what a step
    /// that wrote or deleted it must leave.
    #[cfg(any(test, feature = "invariants"))]
    pub(super) fn check_key(&self, key: &str) {
        let deleted = self.tombstones.get(key).copied().unwrap_or_default();
        assert!(deleted <= self.index, "KV invariant: a tombstone is past the KV index");
        let Some(entry) = self.entries.get(key) else { return };
        assert_eq!(entry.key, key, "KV invariant: an entry is filed under another key");
        assert!(
            entry.create_index <= entry.modify_index && entry.modify_index <= self.index,
            "KV invariant: an entry's indexes are out of order"
        );
        assert!(entry.value.len() <= VALUE_BYTES_MAX, "KV invariant: a value is over the size limit");
        if let Some(session) = &entry.session {
            let filed = self.held.get(session).is_some_and(|keys| keys.contains(key));
            assert!(filed, "KV invariant: a locked key is not filed under its session");
        }
    }

    #[cfg(any(test, feature = "invariants"))]
    pub(super) fn check(&self, applied: Index) {
        if let Err(broken) = self.validate(applied) {
            panic!("KV invariant: {broken}");
        }
        let mut held = 0;
        for (session, keys) in &self.held {
            for key in keys {
                assert_eq!(self.entries[key].session.as_deref(), Some(session.as_str()));
                held += 1;
            }
        }
        assert_eq!(held, self.entries.values().filter(|e| e.session.is_some()).count());
    }
}
