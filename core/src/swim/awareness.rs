//! Local health awareness (Lifeguard §IV-A, memberlist's `awareness.go`).
//!
//! A node that misses acks may be the slow one. Its score rises when its probes fail without
//! the nacks that would prove its own network works, and when it has to refute a suspicion of
//! itself; it falls with each successful probe. Probe interval and timeout are multiplied by
//! `score + 1`, so a struggling node probes others less eagerly and gives them longer to answer,
//! instead of accusing healthy peers.

use std::time::Duration;

/// The health score, in `0..max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Awareness {
    score: u32,
    /// `AwarenessMaxMultiplier`: the score stays below it.
    max: u32,
}

impl Awareness {
    /// A healthy node (score 0) whose multiplier never exceeds `max`.
    pub(crate) fn new(max: u32) -> Awareness {
        assert!(max >= 1);
        Awareness { score: 0, max }
    }

    /// Adds `delta`, clamped to `0..max`.
    pub(crate) fn apply(&mut self, delta: i64) {
        let score = (i64::from(self.score) + delta).clamp(0, i64::from(self.max) - 1);
        self.score = score as u32;
    }

    /// `duration × (score + 1)`.
    pub(crate) fn scale(&self, duration: Duration) -> Duration {
        duration * (self.score + 1)
    }

    /// The current score.
    pub(crate) fn score(&self) -> u32 {
        self.score
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn score_is_clamped_and_scales_durations() {
        let mut awareness = Awareness::new(8);
        awareness.apply(-1);
        assert_eq!(awareness.score(), 0);
        awareness.apply(3);
        assert_eq!(awareness.scale(Duration::from_millis(500)), Duration::from_secs(2));
        awareness.apply(100);
        assert_eq!(awareness.score(), 7);
        assert_eq!(awareness.scale(Duration::from_secs(1)), Duration::from_secs(8));
    }
}
