//! Named deadlines: restart one, drop one, find the earliest, take every one that has passed.
//! What the leader's session TTLs and the agent's TTL checks are built on.

use std::collections::{BTreeMap, BTreeSet};

use crate::time::Instant;

/// A deadline per name, ordered by time.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Deadlines {
    by_name: BTreeMap<String, Instant>,
    by_time: BTreeSet<(Instant, String)>,
}

impl Deadlines {
    /// None.
    pub fn new() -> Deadlines {
        Deadlines::default()
    }

    /// Sets `name`'s deadline, replacing any earlier one.
    pub fn set(&mut self, name: &str, deadline: Instant) {
        self.remove(name);
        self.by_name.insert(name.to_owned(), deadline);
        self.by_time.insert((deadline, name.to_owned()));
    }

    /// Drops `name`'s deadline; unknown names are ignored.
    pub fn remove(&mut self, name: &str) {
        if let Some(deadline) = self.by_name.remove(name) {
            self.by_time.remove(&(deadline, name.to_owned()));
        }
    }

    /// Whether `name` has a deadline.
    pub fn contains(&self, name: &str) -> bool {
        self.by_name.contains_key(name)
    }

    /// The earliest deadline.
    pub fn next(&self) -> Option<Instant> {
        self.by_time.first().map(|(deadline, _)| *deadline)
    }

    /// The names whose deadline is at or before `now`, earliest first; their deadlines go.
    pub fn expired(&mut self, now: Instant) -> Vec<String> {
        let mut out = Vec::new();
        while self.by_time.first().is_some_and(|(deadline, _)| *deadline <= now) {
            let (_, name) = self.by_time.pop_first().expect("just seen");
            self.by_name.remove(&name);
            out.push(name);
        }
        out
    }

    /// How many there are.
    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// Drops every deadline.
    pub fn clear(&mut self) {
        self.by_name.clear();
        self.by_time.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_expire_in_time_order_once_and_a_reset_replaces_the_old_one() {
        let mut deadlines = Deadlines::new();
        let at = Instant::from_millis;
        deadlines.set("a", at(30));
        deadlines.set("b", at(10));
        deadlines.set("b", at(20));
        assert_eq!((deadlines.next(), deadlines.len()), (Some(at(20)), 2));
        assert_eq!(deadlines.expired(at(19)), Vec::<String>::new());
        assert_eq!(deadlines.expired(at(30)), ["b", "a"]);
        assert!(deadlines.is_empty() && deadlines.expired(at(99)).is_empty());
        deadlines.set("c", at(5));
        deadlines.remove("c");
        deadlines.remove("unknown");
        assert!(!deadlines.contains("c") && deadlines.next().is_none());
    }
}
