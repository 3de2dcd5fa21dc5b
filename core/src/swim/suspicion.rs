//! Suspicion timeouts that shrink with independent confirmations (Lifeguard §IV-B, memberlist's
//! `suspicion.go`).
//!
//! When a member is suspected, the timer starts at `max`. Every *independent* confirmation (a
//! suspect message from a node not heard from before) brings the deadline closer on a log
//! scale, reaching `min` after `k` confirmations:
//!
//! ```text
//! timeout(c) = max(min, max - (log(c + 1) / log(k + 1)) * (max - min))
//! ```
//!
//! The bounds come from the cluster size `n`:
//! `min = suspicion_mult * max(1, log10(n)) * probe_interval`, `max = max_mult * min`.
//! With `k = 0` (too few nodes to expect confirmations, or Lifeguard off) the timeout is `min`.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::Instant;

/// One member's suspicion: when it started and who has confirmed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Suspicion {
    /// The incarnation suspected; the timer only kills that incarnation.
    pub(crate) incarnation: u64,
    start: Instant,
    min: Duration,
    max: Duration,
    /// Confirmations that shrink the timeout.
    k: u32,
    /// Confirmations counted so far, at most `k`.
    confirmations: u32,
    /// Every node that accused, the first accuser included (it does not count towards `k`).
    accusers: BTreeSet<String>,
}

impl Suspicion {
    /// A suspicion of `incarnation` raised by `from` at `now`.
    pub(crate) fn new(
        incarnation: u64,
        from: String,
        k: u32,
        min: Duration,
        max: Duration,
        now: Instant,
    ) -> Suspicion {
        assert!(min <= max, "suspicion bounds {min:?} > {max:?}");
        Suspicion { incarnation, start: now, min, max, k, confirmations: 0, accusers: BTreeSet::from([from]) }
    }

    /// Records an accusation by `from`. Returns whether it was a new, counted confirmation (the
    /// caller then re-gossips the suspicion and moves the deadline).
    pub(crate) fn confirm(&mut self, from: &str) -> bool {
        if self.confirmations >= self.k || self.accusers.contains(from) {
            return false;
        }
        self.accusers.insert(from.to_owned());
        self.confirmations += 1;
        true
    }

    /// When the suspect is declared dead unless it refutes first.
    pub(crate) fn deadline(&self) -> Instant {
        self.start + timeout(self.confirmations, self.k, self.min, self.max)
    }
}

/// The total suspicion timeout after `confirmations` of `k` expected confirmations.
pub(crate) fn timeout(confirmations: u32, k: u32, min: Duration, max: Duration) -> Duration {
    if k == 0 {
        return min;
    }
    let fraction = f64::from(confirmations + 1).ln() / f64::from(k + 1).ln();
    let raw_secs = max.as_secs_f64() - fraction * (max.as_secs_f64() - min.as_secs_f64());
    // memberlist floors to whole milliseconds.
    let timeout = Duration::from_millis((raw_secs * 1000.0).floor().max(0.0) as u64);
    timeout.max(min)
}

/// The smallest suspicion timeout for a cluster of `nodes`: `mult * max(1, log10(nodes)) *
/// interval`, floored to milliseconds.
pub(crate) fn timeout_min(mult: u32, nodes: usize, interval: Duration) -> Duration {
    let node_scale = (nodes.max(1) as f64).log10().max(1.0);
    let millis = f64::from(mult) * node_scale * interval.as_millis() as f64;
    Duration::from_millis(millis.floor() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn bounds_match_memberlist_for_lan_defaults() {
        // Reference: consul-behaviour §6.3, "LAN N=100: min 8 s, max 48 s".
        let min = timeout_min(4, 100, SECOND);
        assert_eq!(min, Duration::from_secs(8));
        assert_eq!(min * 6, Duration::from_secs(48));
        // Small clusters never go below mult × interval.
        assert_eq!(timeout_min(4, 1, SECOND), Duration::from_secs(4));
        assert_eq!(timeout_min(4, 5, SECOND), Duration::from_secs(4));
        assert_eq!(timeout_min(4, 1000, SECOND), Duration::from_secs(12));
    }

    #[test]
    fn timeout_table_shrinks_on_a_log_scale() {
        // confirmations → timeout, for k = 3, min 8 s, max 48 s.
        let table = [(0, 48_000), (1, 28_000), (2, 16_300), (3, 8_000)];
        for (confirmations, millis) in table {
            assert_eq!(
                timeout(confirmations, 3, 8 * SECOND, 48 * SECOND),
                Duration::from_millis(millis),
                "{confirmations} confirmations"
            );
        }
        assert_eq!(timeout(0, 0, 8 * SECOND, 48 * SECOND), 8 * SECOND, "k = 0 means min");
    }

    #[test]
    fn only_new_accusers_count_and_only_up_to_k() {
        let now = Instant::from_millis(1000);
        let mut s = Suspicion::new(7, "a".into(), 2, 4 * SECOND, 24 * SECOND, now);
        assert_eq!(s.deadline(), now + 24 * SECOND);
        assert!(!s.confirm("a"), "the first accuser does not confirm itself");
        assert!(s.confirm("b"));
        assert!(!s.confirm("b"), "one confirmation per node");
        assert_eq!(s.deadline(), now + Duration::from_millis(11_381));
        assert!(s.confirm("c"));
        assert_eq!(s.deadline(), now + 4 * SECOND);
        assert!(!s.confirm("d"), "no more than k");
    }
}
