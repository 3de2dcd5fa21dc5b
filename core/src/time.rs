//! Time as the core sees it.
//!
//! The core never reads a clock. Every input that depends on time carries `now`, an [`Instant`]
//! counted in nanoseconds from an origin the driver chooses (the io shell uses the moment it
//! started; the simulator uses zero). Because it is a plain integer, tests can build any instant,
//! fuzzers can generate them, and nothing in the core can reach the operating system's clock.
//!
//! Time must never go backwards across the inputs of one state machine; [`Monotonic`] asserts it.

use std::fmt;
use std::ops::Add;
use std::time::Duration;

/// A point in time, in nanoseconds since an origin chosen by the driver.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Instant {
    nanos: u64,
}

impl Instant {
    /// The driver's origin.
    pub const ZERO: Instant = Instant { nanos: 0 };

    /// The end of time: the deadline of a timer that is not armed.
    pub const NEVER: Instant = Instant { nanos: u64::MAX };

    /// The instant `nanos` nanoseconds after the origin.
    pub const fn from_nanos(nanos: u64) -> Instant {
        Instant { nanos }
    }

    /// The instant `millis` milliseconds after the origin.
    pub const fn from_millis(millis: u64) -> Instant {
        Instant { nanos: millis.saturating_mul(1_000_000) }
    }

    /// Nanoseconds since the origin.
    pub const fn as_nanos(self) -> u64 {
        self.nanos
    }

    /// `self + duration`, clamped at the largest representable instant (about 584 years).
    pub fn saturating_add(self, duration: Duration) -> Instant {
        let nanos = u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX);
        Instant { nanos: self.nanos.saturating_add(nanos) }
    }

    /// The time elapsed from `earlier` to `self`, or `None` if `earlier` is later.
    pub fn checked_duration_since(self, earlier: Instant) -> Option<Duration> {
        self.nanos.checked_sub(earlier.nanos).map(Duration::from_nanos)
    }

    /// The time elapsed from `earlier` to `self`, or zero if `earlier` is later.
    pub fn saturating_duration_since(self, earlier: Instant) -> Duration {
        Duration::from_nanos(self.nanos.saturating_sub(earlier.nanos))
    }
}

impl Add<Duration> for Instant {
    type Output = Instant;

    /// Saturating: a deadline past the end of time is simply never reached.
    fn add(self, duration: Duration) -> Instant {
        self.saturating_add(duration)
    }
}

impl fmt::Debug for Instant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:09}s", self.nanos / 1_000_000_000, self.nanos % 1_000_000_000)
    }
}

impl fmt::Display for Instant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// Remembers the latest `now` a state machine was given and asserts that time never goes back.
///
/// A driver that feeds an earlier `now` after a later one has a bug (for instance it mixed two
/// clocks), and every timer computed from it would be wrong, so this is an assertion, not an
/// error.
#[derive(Debug, Clone, Copy)]
pub struct Monotonic {
    last: Instant,
}

impl Monotonic {
    /// Starts at `now`.
    pub fn new(now: Instant) -> Monotonic {
        Monotonic { last: now }
    }

    /// Records `now`, asserting that it is not earlier than any instant seen before.
    pub fn advance(&mut self, now: Instant) {
        assert!(now >= self.last, "time went backwards: {now:?} after {:?}", self.last);
        self.last = now;
    }

    /// The latest instant seen.
    pub fn last(&self) -> Instant {
        self.last
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_saturates_instead_of_wrapping() {
        let end = Instant::from_nanos(u64::MAX - 1);
        assert_eq!(end + Duration::from_secs(1), Instant::from_nanos(u64::MAX));
        assert_eq!(Instant::ZERO.checked_duration_since(end), None);
        assert_eq!(Instant::ZERO.saturating_duration_since(end), Duration::ZERO);
        assert_eq!(
            Instant::from_millis(1500).checked_duration_since(Instant::from_millis(500)),
            Some(Duration::from_secs(1))
        );
        assert_eq!(format!("{:?}", Instant::from_millis(1500)), "1.500000000s");
    }

    #[test]
    fn monotonic_accepts_equal_and_later_instants() {
        let mut clock = Monotonic::new(Instant::from_millis(5));
        clock.advance(Instant::from_millis(5));
        clock.advance(Instant::from_millis(6));
        assert_eq!(clock.last(), Instant::from_millis(6));
    }

    #[test]
    #[should_panic(expected = "time went backwards")]
    fn monotonic_rejects_time_going_backwards() {
        let mut clock = Monotonic::new(Instant::from_millis(5));
        clock.advance(Instant::from_millis(4));
    }
}
