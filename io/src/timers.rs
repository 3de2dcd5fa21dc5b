//! The clock side of the core's timers (the leader's duties, TTL checks): the timers behind a
//! lock, read against this process's monotonic clock, with a wait that ends at the earliest
//! deadline or when a change brings it closer.

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use muster_core::deadlines::Deadlines;
use muster_core::fsm::{Command, LeaderDuties};
use muster_core::Instant;
use tokio::sync::Notify;

/// Timers that know their earliest deadline and give up what fell due.
pub trait Expiring {
    /// What falls due.
    type Due;
    /// The earliest deadline.
    fn next_deadline(&self) -> Option<Instant>;
    /// What fell due at or before `now`; those timers stop.
    fn expire(&mut self, now: Instant) -> Vec<Self::Due>;
}

impl Expiring for LeaderDuties {
    /// Commands for the leader to propose.
    type Due = Command;

    fn next_deadline(&self) -> Option<Instant> {
        LeaderDuties::next_deadline(self)
    }

    fn expire(&mut self, now: Instant) -> Vec<Command> {
        self.due(now)
    }
}

impl Expiring for Deadlines {
    /// The names of the checks whose TTL ran out.
    type Due = String;

    fn next_deadline(&self) -> Option<Instant> {
        self.next()
    }

    fn expire(&mut self, now: Instant) -> Vec<String> {
        self.expired(now)
    }
}

/// How long a timer task sleeps when nothing is due (a change wakes it sooner).
const IDLE_WAIT: Duration = Duration::from_secs(3600);

/// Core timers on the real clock.
#[derive(Debug)]
pub struct Clocked<T> {
    timers: Mutex<T>,
    changed: Notify,
    origin: tokio::time::Instant,
}

impl<T: Default> Default for Clocked<T> {
    fn default() -> Clocked<T> {
        Clocked::new(T::default())
    }
}

impl<T> Clocked<T> {
    /// `timers` on the clock, which starts now.
    pub fn new(timers: T) -> Clocked<T> {
        Clocked { timers: Mutex::new(timers), changed: Notify::new(), origin: tokio::time::Instant::now() }
    }
}

impl<T: Expiring> Clocked<T> {
    fn now(&self) -> Instant {
        Instant::from_nanos(u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX))
    }

    fn lock(&self) -> MutexGuard<'_, T> {
        self.timers.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Changes the timers (given the time now), and wakes the waiting task if the change
    /// brought the earliest deadline closer (a later one it finds when it wakes: the leader's
    /// timers follow every write, which must not wake it each time).
    pub fn update<R>(&self, change: impl FnOnce(&mut T, Instant) -> R) -> R {
        let now = self.now();
        let mut timers = self.lock();
        let before = timers.next_deadline();
        let result = change(&mut timers, now);
        let after = timers.next_deadline();
        drop(timers);
        if after.is_some_and(|after| before.is_none_or(|before| after < before)) {
            self.changed.notify_one();
        }
        result
    }

    /// Reads the timers.
    pub fn read<R>(&self, read: impl FnOnce(&T) -> R) -> R {
        read(&self.lock())
    }

    /// Waits for the earliest deadline, or a change, and returns what expired by then (often
    /// nothing after a change).
    pub async fn expired(&self) -> Vec<T::Due> {
        let next = self.lock().next_deadline();
        let sleep = match next {
            Some(deadline) => Duration::from_nanos(deadline.as_nanos()).saturating_sub(self.origin.elapsed()),
            None => IDLE_WAIT,
        };
        // Biased: an unbiased select draws its order from tokio's thread-local generator,
        // seeded from a process-wide counter, and when both are ready the order decides whether
        // a change's wake-up is spent now or later; in the simulator that made a seed's run
        // depend on the runs before it in the process.
        tokio::select! {
            biased;
            () = tokio::time::sleep(sleep) => {}
            () = self.changed.notified() => {}
        }
        let now = self.now();
        self.lock().expire(now)
    }
}
