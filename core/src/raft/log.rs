//! The in-memory image of the Raft log: every entry after the snapshot point, and how far the
//! entries are durable.

use super::{Entry, Index, Membership, Payload, Term};

/// Entries `first_index()..=last_index()`, contiguous. Index 0 with term 0 is the empty log's
/// sentinel (and, once snapshots exist, the snapshot's last entry stands there).
#[derive(Debug, Clone, Default)]
pub(crate) struct Log {
    entries: Vec<Entry>,
    /// The index and term just before the first entry held.
    base: (Index, Term),
}

impl Log {
    /// A log whose entries follow `base` (the snapshot's last entry, or `(0, 0)`).
    pub(crate) fn with_base(base: (Index, Term), entries: Vec<Entry>) -> Log {
        let log = Log { entries, base };
        log.check_all();
        log
    }

    /// The index and term just before the first entry held: what a snapshot covers.
    pub(crate) fn base(&self) -> (Index, Term) {
        self.base
    }

    pub(crate) fn last_index(&self) -> Index {
        self.base.0 + self.entries.len() as Index
    }

    pub(crate) fn last_term(&self) -> Term {
        self.entries.last().map_or(self.base.1, |e| e.term)
    }

    /// The term of the entry at `index`, if the log holds it (or it is the base).
    pub(crate) fn term_at(&self, index: Index) -> Option<Term> {
        if index == self.base.0 {
            return Some(self.base.1);
        }
        self.get(index).map(|e| e.term)
    }

    pub(crate) fn get(&self, index: Index) -> Option<&Entry> {
        let offset = index.checked_sub(self.base.0 + 1)?;
        self.entries.get(usize::try_from(offset).ok()?)
    }

    /// Up to `count_max` entries from `from`, cut to `bytes_max` payload bytes (at least one
    /// entry when any is there, so an oversized entry still travels).
    pub(crate) fn slice(&self, from: Index, count_max: usize, bytes_max: usize) -> Vec<Entry> {
        let mut out = Vec::new();
        let mut bytes = 0;
        let mut index = from;
        while out.len() < count_max {
            let Some(entry) = self.get(index) else { break };
            bytes += entry.payload_len();
            if !out.is_empty() && bytes > bytes_max {
                break;
            }
            out.push(entry.clone());
            index += 1;
        }
        out
    }

    /// The first index of the run of entries with term `term` that contains `index`.
    pub(crate) fn first_index_of_term_at(&self, index: Index) -> Index {
        let term = self.term_at(index).expect("the caller holds the entry");
        let mut first = index;
        while first > self.base.0 + 1 && self.term_at(first - 1) == Some(term) {
            first -= 1;
        }
        first
    }

    /// The last index whose entry has term `term`, if any entry does.
    pub(crate) fn last_index_of_term(&self, term: Term) -> Option<Index> {
        self.entries.iter().rev().find(|e| e.term == term).map(|e| e.index)
    }

    /// The last membership entry held, with its index.
    pub(crate) fn last_membership(&self) -> Option<(Membership, Index)> {
        self.membership_at(self.last_index())
    }

    /// The last membership entry held at or before `index`, with its index.
    pub(crate) fn membership_at(&self, index: Index) -> Option<(Membership, Index)> {
        let held = usize::try_from(index.saturating_sub(self.base.0)).unwrap_or(usize::MAX);
        self.entries[..held.min(self.entries.len())].iter().rev().find_map(|e| match &e.payload {
            Payload::Membership(membership) => Some((membership.clone(), e.index)),
            _ => None,
        })
    }

    /// Drops the entries through `index`, which a snapshot now covers; `index` becomes the base.
    pub(crate) fn compact_through(&mut self, index: Index) {
        let term = self.term_at(index).expect("compaction stops at an entry held");
        let drop = usize::try_from(index - self.base.0).expect("in memory");
        self.entries.drain(..drop);
        self.base = (index, term);
    }

    /// Drops every entry: the log now continues a snapshot ending at `base`.
    pub(crate) fn reset(&mut self, base: (Index, Term)) {
        self.entries.clear();
        self.base = base;
    }

    /// Appends entries that continue the log.
    pub(crate) fn append(&mut self, entries: &[Entry]) {
        for entry in entries {
            assert_eq!(entry.index, self.last_index() + 1, "entries are appended in order");
            assert!(entry.term >= self.last_term(), "terms never decrease along the log");
            self.entries.push(entry.clone());
        }
    }

    /// Drops every entry from `index` on.
    pub(crate) fn truncate_from(&mut self, index: Index) {
        assert!(index > self.base.0, "the base is committed and never truncated");
        let keep = usize::try_from(index - self.base.0 - 1).expect("in memory");
        self.entries.truncate(keep);
    }

    /// Whether a log ending at (`last_index`, `last_term`) is at least as up to date as this
    /// one (Raft §5.4.1).
    pub(crate) fn is_up_to_date(&self, last_index: Index, last_term: Term) -> bool {
        (last_term, last_index) >= (self.last_term(), self.last_index())
    }

    #[cfg(any(test, feature = "invariants"))]
    /// Checks the log's shape in O(1): `append` and `with_base` check each entry's index and
    /// term as it arrives, so the ends are all that can drift.
    pub(crate) fn check(&self) {
        if let (Some(first), Some(last)) = (self.entries.first(), self.entries.last()) {
            assert_eq!(first.index, self.base.0 + 1, "the log starts right after its base");
            assert_eq!(last.index, self.last_index(), "indexes are contiguous");
            assert!(first.term >= self.base.1 && last.term >= first.term, "terms never decrease");
        }
    }

    fn check_all(&self) {
        let mut previous = self.base;
        for entry in &self.entries {
            assert_eq!(entry.index, previous.0 + 1, "indexes are contiguous");
            assert!(entry.term >= previous.1, "terms never decrease along the log");
            previous = (entry.index, entry.term);
        }
    }
}
