//! Blocking-query wake-ups: readers register what their result depends on, and each applied
//! entry reports what it touched; the registry answers which readers to wake.
//!
//! The cost of a write must not grow with the number of unrelated readers (issue 5: 10,000
//! blocked readers, 100,000 keys). A written key wakes the readers of that key (one map
//! lookup) and the readers of every prefix of it (one lookup per prefix length), so a write
//! costs O(key length × log readers), whatever else is being watched. Local to each server:
//! never replicated, never in a snapshot.

use std::collections::{BTreeMap, BTreeSet};

/// Names one registered reader.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WatchId(u64);

/// What a reader's result depends on.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum WatchTarget {
    /// One key (present or not).
    Key(String),
    /// Every key under a prefix (`""` is the whole store).
    Prefix(String),
}

/// What one applied entry changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Touched {
    /// Keys written or deleted.
    pub keys: Vec<String>,
}

impl Touched {
    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// The registry.
#[derive(Debug, Default)]
pub struct Watches {
    next: u64,
    keys: BTreeMap<String, BTreeSet<WatchId>>,
    prefixes: BTreeMap<String, BTreeSet<WatchId>>,
    targets: BTreeMap<WatchId, WatchTarget>,
}

impl Watches {
    /// An empty registry.
    pub fn new() -> Watches {
        Watches::default()
    }

    /// Registers a reader; it is woken (once) by the next change to `target`.
    pub fn register(&mut self, target: WatchTarget) -> WatchId {
        self.next += 1;
        let id = WatchId(self.next);
        let map = match &target {
            WatchTarget::Key(key) => self.keys.entry(key.clone()),
            WatchTarget::Prefix(prefix) => self.prefixes.entry(prefix.clone()),
        };
        map.or_default().insert(id);
        self.targets.insert(id, target);
        id
    }

    /// Forgets a reader that gave up (timed out); unknown ids are ignored.
    pub fn cancel(&mut self, id: WatchId) {
        let Some(target) = self.targets.remove(&id) else { return };
        let (map, name) = match &target {
            WatchTarget::Key(key) => (&mut self.keys, key),
            WatchTarget::Prefix(prefix) => (&mut self.prefixes, prefix),
        };
        if let Some(ids) = map.get_mut(name) {
            ids.remove(&id);
            if ids.is_empty() {
                map.remove(name);
            }
        }
    }

    /// The readers `touched` wakes, each once, in id order; they are unregistered.
    pub fn wake(&mut self, touched: &Touched) -> Vec<WatchId> {
        let mut woken = BTreeSet::new();
        for key in &touched.keys {
            if let Some(ids) = self.keys.remove(key.as_str()) {
                woken.extend(ids);
            }
            if self.prefixes.is_empty() {
                continue;
            }
            for end in (0..=key.len()).filter(|&end| key.is_char_boundary(end)) {
                if let Some(ids) = self.prefixes.remove(&key[..end]) {
                    woken.extend(ids);
                }
            }
        }
        for id in &woken {
            self.targets.remove(id);
        }
        woken.into_iter().collect()
    }

    /// Readers registered.
    pub fn len(&self) -> usize {
        self.targets.len()
    }

    /// Whether no reader is registered.
    pub fn is_empty(&self) -> bool {
        self.targets.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touched(keys: &[&str]) -> Touched {
        Touched { keys: keys.iter().map(|k| (*k).to_owned()).collect() }
    }

    #[test]
    fn a_write_wakes_its_key_and_every_prefix_of_it_and_nothing_else() {
        let mut watches = Watches::new();
        let key = watches.register(WatchTarget::Key("web/a".into()));
        let other_key = watches.register(WatchTarget::Key("web/b".into()));
        let root = watches.register(WatchTarget::Prefix(String::new()));
        let web = watches.register(WatchTarget::Prefix("web/".into()));
        let db = watches.register(WatchTarget::Prefix("db/".into()));
        let longer = watches.register(WatchTarget::Prefix("web/a/".into()));
        assert_eq!(watches.wake(&touched(&["web/a"])), [key, root, web]);
        assert_eq!(watches.len(), 3, "woken readers are gone");
        assert_eq!(watches.wake(&touched(&["web/a"])), []);
        watches.cancel(other_key);
        assert_eq!(watches.wake(&touched(&["web/b"])), []);
        assert_eq!(watches.wake(&touched(&["web/a/x", "db/1"])), [db, longer]);
        assert!(watches.is_empty());
    }
}
