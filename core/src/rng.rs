//! Seeded randomness.
//!
//! Every random choice in the core (probe order, jitter, later election timeouts and gossip
//! fan-out) is drawn from an [`Rng`] that its state machine owns. A state machine that creates
//! children gives each a generator [`fork`](Rng::fork)ed from its own, so one seed at the top
//! fixes every draw below it, and adding a child does not disturb its siblings' draws made before.

use std::time::Duration;

use rand::seq::SliceRandom;
use rand::{Rng as _, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// A deterministic random number generator (ChaCha with 8 rounds: fast, and its output is fixed
/// by the seed across platforms and releases of `rand_chacha`).
#[derive(Clone)]
pub struct Rng {
    inner: ChaCha8Rng,
}

impl Rng {
    /// A generator whose whole output is fixed by `seed`.
    pub fn from_seed(seed: u64) -> Rng {
        Rng { inner: ChaCha8Rng::seed_from_u64(seed) }
    }

    /// A child generator seeded from this one's output.
    pub fn fork(&mut self) -> Rng {
        let mut seed = [0u8; 32];
        self.inner.fill_bytes(&mut seed);
        Rng { inner: ChaCha8Rng::from_seed(seed) }
    }

    /// A uniformly distributed integer in `0..bound`. `bound` must be positive.
    pub fn below(&mut self, bound: u64) -> u64 {
        assert!(bound > 0, "Rng::below needs a positive bound");
        self.inner.gen_range(0..bound)
    }

    /// A uniformly distributed duration in `low..=high` (nanosecond resolution).
    pub fn duration_between(&mut self, low: Duration, high: Duration) -> Duration {
        assert!(low <= high, "empty range {low:?}..={high:?}");
        let low_nanos = u64::try_from(low.as_nanos()).unwrap_or(u64::MAX);
        let high_nanos = u64::try_from(high.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(self.inner.gen_range(low_nanos..=high_nanos))
    }

    /// `true` with probability `p` (clamped to `0.0..=1.0`).
    pub fn chance(&mut self, p: f64) -> bool {
        self.inner.gen_bool(p.clamp(0.0, 1.0))
    }

    /// A uniformly random 64-bit value.
    pub fn next_u64(&mut self) -> u64 {
        self.inner.next_u64()
    }

    /// Shuffles `items` in place (Fisher-Yates).
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        items.shuffle(&mut self.inner);
    }
}

impl std::fmt::Debug for Rng {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rng").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_draws_and_different_seeds_differ() {
        let draws = |seed| {
            let mut rng = Rng::from_seed(seed);
            (0..8).map(|_| rng.below(1_000_000)).collect::<Vec<_>>()
        };
        assert_eq!(draws(7), draws(7));
        assert_ne!(draws(7), draws(8));
    }

    #[test]
    fn forked_children_are_independent_of_later_parent_draws() {
        let mut parent_a = Rng::from_seed(1);
        let mut parent_b = Rng::from_seed(1);
        let mut child_a = parent_a.fork();
        let mut child_b = parent_b.fork();
        parent_b.next_u64();
        assert_eq!(child_a.next_u64(), child_b.next_u64());
        assert_ne!(parent_a.fork().next_u64(), child_a.next_u64());
    }

    #[test]
    fn duration_between_stays_in_range() {
        let mut rng = Rng::from_seed(3);
        let (low, high) = (Duration::from_millis(10), Duration::from_millis(20));
        for _ in 0..1000 {
            let d = rng.duration_between(low, high);
            assert!(low <= d && d <= high, "{d:?}");
        }
        assert_eq!(rng.duration_between(high, high), high);
    }
}
