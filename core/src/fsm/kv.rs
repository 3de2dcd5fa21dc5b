//! The KV store: entries with Consul's indexes, and tombstones so that deletes advance the
//! index of every prefix they touch (consul `agent/consul/state/kvs.go`, `graveyard.go`).

use std::collections::BTreeMap;

use bytes::Bytes;
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

/// Entries, tombstones and the table index.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Kv {
    pub(super) entries: BTreeMap<String, KvEntry>,
    /// Deleted keys and the index that deleted them, until reaped.
    pub(super) tombstones: BTreeMap<String, Index>,
    /// The highest index that wrote, deleted or reaped anything.
    pub(super) index: Index,
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

    fn under<'a, 'p>(
        &'a self,
        prefix: &'p str,
    ) -> impl Iterator<Item = (&'a String, &'a KvEntry)> + use<'a, 'p> {
        self.entries
            .range::<str, _>((std::ops::Bound::Included(prefix), std::ops::Bound::Unbounded))
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
            .range::<str, _>((std::ops::Bound::Included(prefix), std::ops::Bound::Unbounded))
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

    /// Writes `value` and `flags` at `key` (locks are not checked: Consul's plain PUT).
    pub(super) fn set(&mut self, index: Index, key: &str, value: Bytes, flags: u64) {
        self.index = index;
        match self.entries.get_mut(key) {
            Some(entry) => {
                entry.value = value;
                entry.flags = flags;
                entry.modify_index = index;
            }
            None => {
                let entry = KvEntry {
                    key: key.to_owned(),
                    value,
                    flags,
                    lock_index: 0,
                    session: None,
                    create_index: index,
                    modify_index: index,
                };
                self.entries.insert(key.to_owned(), entry);
            }
        }
    }

    /// The `ModifyIndex` of `key`, 0 if it is missing: what a check-and-set compares.
    pub(super) fn modify_index_of(&self, key: &str) -> Index {
        self.entries.get(key).map_or(0, |e| e.modify_index)
    }

    /// Deletes `key`, leaving a tombstone; `false` if it was missing.
    pub(super) fn delete(&mut self, index: Index, key: &str) -> bool {
        if self.entries.remove(key).is_none() {
            return false;
        }
        self.index = index;
        self.tombstones.insert(key.to_owned(), index);
        true
    }

    /// Deletes every key under `prefix`; returns the keys deleted.
    pub(super) fn delete_tree(&mut self, index: Index, prefix: &str) -> Vec<String> {
        let doomed: Vec<String> = self.under(prefix).map(|(key, _)| key.clone()).collect();
        for key in &doomed {
            self.delete(index, key);
        }
        doomed
    }

    /// Drops the tombstones at or below `up_to`; returns how many.
    pub(super) fn reap(&mut self, index: Index, up_to: Index) -> usize {
        let before = self.tombstones.len();
        self.tombstones.retain(|_, &mut deleted| deleted > up_to);
        let reaped = before - self.tombstones.len();
        if reaped > 0 {
            self.index = index;
        }
        reaped
    }

    #[cfg(any(test, feature = "invariants"))]
    pub(super) fn check(&self, applied: Index) {
        for (key, entry) in &self.entries {
            assert_eq!(*key, entry.key);
            assert!(entry.create_index <= entry.modify_index && entry.modify_index <= self.index);
            assert!(entry.value.len() <= VALUE_BYTES_MAX);
        }
        for &deleted in self.tombstones.values() {
            assert!(deleted <= self.index);
        }
        assert!(self.index <= applied);
    }
}
