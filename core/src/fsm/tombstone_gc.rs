//! The leader's tombstone collector (Consul's `TombstoneGC`), sans-IO.
//!
//! Tombstones keep a deleted key's index alive so blocked readers see the delete; once no
//! reader can still be waiting on one (Consul waits [`TOMBSTONE_TTL`]), the leader proposes a
//! `TombstoneReap` up to the newest index old enough. The leader hints the index of every entry
//! it applies; hints are bucketed by expiry time at [`GRANULARITY`], so the collector holds one
//! index per bucket however many writes there are, and at most one reap is proposed per bucket.

use std::collections::BTreeMap;
use std::time::Duration;

use super::Index;
use crate::time::Instant;

/// How long a tombstone is kept (Consul's `tombstone_ttl`).
pub const TOMBSTONE_TTL: Duration = Duration::from_secs(15 * 60);

/// The width of the expiry buckets (Consul's `tombstone_ttl_granularity`).
pub const GRANULARITY: Duration = Duration::from_secs(30);

/// Expiry buckets: the end of each bucket → the newest index hinted into it.
#[derive(Debug)]
pub struct TombstoneGc {
    buckets: BTreeMap<Instant, Index>,
    ttl: Duration,
    granularity: Duration,
}

impl Default for TombstoneGc {
    fn default() -> TombstoneGc {
        TombstoneGc::new()
    }
}

impl TombstoneGc {
    /// Nothing to collect, with Consul's [`TOMBSTONE_TTL`] and [`GRANULARITY`].
    pub fn new() -> TombstoneGc {
        TombstoneGc::with_ttl(TOMBSTONE_TTL)
    }

    /// Nothing to collect, keeping tombstones `ttl` in buckets of a thirtieth of it (Consul's
    /// ratio; tests shorten the wait this way).
    pub fn with_ttl(ttl: Duration) -> TombstoneGc {
        let granularity = (ttl / 30).max(Duration::from_millis(1));
        TombstoneGc { buckets: BTreeMap::new(), ttl, granularity }
    }

    /// Records that the entry at `index` was applied at `now`: tombstones at or below it may
    /// go once the TTL has passed (rounded up to the bucket's end).
    pub fn hint(&mut self, index: Index, now: Instant) {
        let expiry = now + self.ttl;
        let granularity = self.granularity.as_nanos() as u64;
        let bucket = Instant::from_nanos(expiry.as_nanos().div_ceil(granularity).saturating_mul(granularity));
        let newest = self.buckets.entry(bucket).or_insert(index);
        *newest = (*newest).max(index);
    }

    /// When the next bucket expires, for the shell's sleep.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.buckets.keys().next().copied()
    }

    /// The newest index whose tombstones may be reaped at `now`, if any bucket expired; the
    /// expired buckets are dropped.
    pub fn expired(&mut self, now: Instant) -> Option<Index> {
        let mut reap = None;
        while let Some(entry) = self.buckets.first_entry() {
            if *entry.key() > now {
                break;
            }
            let index = entry.remove();
            reap = reap.max(Some(index));
        }
        reap
    }

    /// Forgets everything (leadership lost: the next leader starts its own).
    pub fn reset(&mut self) {
        self.buckets.clear();
    }

    /// How many buckets are waiting.
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hints_reap_after_the_ttl_rounded_up_to_the_bucket_and_one_bucket_holds_many_writes() {
        let mut gc = TombstoneGc::new();
        let at = |secs: u64| Instant::from_millis(secs * 1000);
        gc.hint(5, at(1));
        gc.hint(9, at(20)); // same bucket: expiries 901 s and 920 s both end at 930 s
        gc.hint(12, at(31)); // next bucket: 931 s → 960 s
        assert_eq!(gc.len(), 2);
        assert_eq!(gc.next_deadline(), Some(at(930)));
        assert_eq!(gc.expired(at(929)), None);
        assert_eq!(gc.expired(at(930)), Some(9));
        assert_eq!(gc.expired(at(961)), Some(12));
        assert!(gc.is_empty());
        gc.hint(20, at(1000));
        gc.hint(21, at(1040));
        assert_eq!(gc.expired(at(5000)), Some(21), "several expired buckets: the newest index");
        gc.hint(30, at(5000));
        gc.reset();
        assert_eq!(gc.next_deadline(), None);
    }

    #[test]
    fn consuls_ttl_has_consuls_granularity() {
        let gc = TombstoneGc::new();
        assert_eq!((gc.ttl, gc.granularity), (TOMBSTONE_TTL, GRANULARITY));
    }
}
