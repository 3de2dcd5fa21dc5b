//! Blocking-query wake-ups: readers register what their result depends on, and each applied
//! entry reports what it touched; the registry answers which readers to wake.
//!
//! The cost of a write must not grow with the number of unrelated readers (issue 5: 10,000
//! blocked readers, 100,000 keys). A written key wakes the readers of that key (one map
//! lookup) and the readers of every prefix of it (one lookup per prefix length), so a write
//! costs O(key length × log readers), whatever else is being watched. Catalog readers wait on
//! a service name or a node (one lookup each per name the write touched) or on a whole table
//! (every node list reader wakes on any node change, as its answer may have changed). Local
//! to each server: never replicated, never in a snapshot.

use std::collections::{BTreeMap, BTreeSet};

/// Names one registered reader.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WatchId(u64);

/// A table whose every change wakes its readers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Table {
    /// Catalog nodes (`/v1/catalog/nodes`).
    Nodes,
    /// Catalog services (`/v1/catalog/services`).
    Services,
    /// Health checks (`/v1/health/state/...`).
    Checks,
    /// Sessions (`/v1/session/list`, ...).
    Sessions,
    /// ACL tokens (`/v1/acl/tokens`, `/v1/acl/token/:id`).
    AclTokens,
    /// ACL policies (`/v1/acl/policies`, `/v1/acl/policy/:id`).
    AclPolicies,
}

/// What a reader's result depends on.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum WatchTarget {
    /// One key (present or not).
    Key(String),
    /// Every key under a prefix (`""` is the whole store).
    Prefix(String),
    /// A whole table.
    Table(Table),
    /// The instances of a service name, their checks and nodes (present or not).
    Service(String),
    /// A node, its services and checks (present or not).
    Node(String),
}

/// What one applied entry changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Touched {
    /// Keys written or deleted.
    pub keys: Vec<String>,
    /// Tables changed.
    pub tables: Vec<Table>,
    /// Service names whose instances, checks or nodes changed.
    pub services: Vec<String>,
    /// Nodes whose row, services or checks changed.
    pub nodes: Vec<String>,
    /// Sessions created or ended (the leader's TTL timers follow them).
    pub sessions: Vec<String>,
    /// The whole state was replaced (a restore): any answer may have changed, so every reader
    /// wakes, whatever else is listed.
    pub all: bool,
}

impl Touched {
    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        !self.all
            && self.keys.is_empty()
            && self.tables.is_empty()
            && self.services.is_empty()
            && self.nodes.is_empty()
            && self.sessions.is_empty()
    }

    /// Everything changed: the state was replaced.
    pub fn everything() -> Touched {
        Touched { all: true, ..Touched::default() }
    }

    /// Adds another entry's (or operation's) changes.
    pub fn merge(&mut self, other: Touched) {
        self.keys.extend(other.keys);
        for table in other.tables {
            if !self.tables.contains(&table) {
                self.tables.push(table);
            }
        }
        self.services.extend(other.services);
        self.nodes.extend(other.nodes);
        self.all |= other.all;
    }
}

/// The registry.
#[derive(Debug, Default)]
pub struct Watches {
    next: u64,
    keys: BTreeMap<String, BTreeSet<WatchId>>,
    prefixes: BTreeMap<String, BTreeSet<WatchId>>,
    /// Tables, services and nodes.
    others: BTreeMap<WatchTarget, BTreeSet<WatchId>>,
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
        match &target {
            WatchTarget::Key(key) => self.keys.entry(key.clone()).or_default().insert(id),
            WatchTarget::Prefix(prefix) => self.prefixes.entry(prefix.clone()).or_default().insert(id),
            other => self.others.entry(other.clone()).or_default().insert(id),
        };
        self.targets.insert(id, target);
        id
    }

    /// Forgets a reader that gave up (timed out); unknown ids are ignored.
    pub fn cancel(&mut self, id: WatchId) {
        let Some(target) = self.targets.remove(&id) else { return };
        match &target {
            WatchTarget::Key(key) => forget(&mut self.keys, key, id),
            WatchTarget::Prefix(prefix) => forget(&mut self.prefixes, prefix, id),
            other => forget(&mut self.others, other, id),
        }
    }

    /// The readers `touched` wakes, each once, in id order; they are unregistered.
    pub fn wake(&mut self, touched: &Touched) -> Vec<WatchId> {
        if touched.all {
            let woken: Vec<WatchId> = std::mem::take(&mut self.targets).into_keys().collect();
            self.keys.clear();
            self.prefixes.clear();
            self.others.clear();
            return woken;
        }
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
        if !self.others.is_empty() {
            let others = touched
                .tables
                .iter()
                .map(|table| WatchTarget::Table(*table))
                .chain(touched.services.iter().map(|name| WatchTarget::Service(name.clone())))
                .chain(touched.nodes.iter().map(|name| WatchTarget::Node(name.clone())));
            for target in others {
                if let Some(ids) = self.others.remove(&target) {
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

fn forget<K: Ord + ?Sized, Q: Ord + Clone + std::borrow::Borrow<K>>(
    map: &mut BTreeMap<Q, BTreeSet<WatchId>>,
    name: &K,
    id: WatchId,
) {
    if let Some(ids) = map.get_mut(name) {
        ids.remove(&id);
        if ids.is_empty() {
            map.remove(name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touched(keys: &[&str]) -> Touched {
        Touched { keys: keys.iter().map(|k| (*k).to_owned()).collect(), ..Touched::default() }
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

    #[test]
    fn catalog_readers_wake_on_their_service_node_or_table_only() {
        let mut watches = Watches::new();
        let web = watches.register(WatchTarget::Service("web".into()));
        let db = watches.register(WatchTarget::Service("db".into()));
        let node = watches.register(WatchTarget::Node("n1".into()));
        let nodes = watches.register(WatchTarget::Table(Table::Nodes));
        let key = watches.register(WatchTarget::Key("web".into()));
        let write = Touched {
            tables: vec![Table::Services],
            services: vec!["web".into()],
            nodes: vec!["n1".into()],
            ..Touched::default()
        };
        assert_eq!(watches.wake(&write), [web, node], "a service registered on n1");
        let node_change = Touched { tables: vec![Table::Nodes], ..Touched::default() };
        assert_eq!(watches.wake(&node_change), [nodes]);
        assert_eq!(watches.len(), 2, "db and the key still wait");
        watches.cancel(db);
        assert_eq!(watches.wake(&touched(&["web"])), [key], "a key named like a service is a key");
        assert!(watches.is_empty());
    }

    #[test]
    fn a_replaced_state_wakes_every_reader_once() {
        let mut watches = Watches::new();
        let key = watches.register(WatchTarget::Key("k".into()));
        let prefix = watches.register(WatchTarget::Prefix("p/".into()));
        let table = watches.register(WatchTarget::Table(Table::Sessions));
        let service = watches.register(WatchTarget::Service("web".into()));
        assert!(!Touched::everything().is_empty());
        assert_eq!(watches.wake(&Touched::everything()), [key, prefix, table, service]);
        assert!(watches.is_empty());
        assert_eq!(watches.wake(&Touched::everything()), []);
        let after = watches.register(WatchTarget::Key("k".into()));
        assert_eq!(watches.wake(&touched(&["k"])), [after], "the registry works on afterwards");
        let mut merged = touched(&["x"]);
        merged.merge(Touched::everything());
        assert!(merged.all);
    }
}
