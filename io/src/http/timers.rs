//! The clock side of the core's timers (session TTLs, TTL checks): the timers behind a lock,
//! read against this process's monotonic clock, with a wait that ends at the earliest deadline
//! or when a timer changes.

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use muster_core::deadlines::Deadlines;
use muster_core::fsm::SessionTimers;
use muster_core::Instant;
use tokio::sync::Notify;

/// Timers that know their earliest deadline and give up the names that passed.
pub trait Expiring {
    /// The earliest deadline.
    fn next_deadline(&self) -> Option<Instant>;
    /// The names whose deadline is at or before `now`; their timers stop.
    fn expire(&mut self, now: Instant) -> Vec<String>;
}

impl Expiring for SessionTimers {
    fn next_deadline(&self) -> Option<Instant> {
        SessionTimers::next_deadline(self)
    }

    fn expire(&mut self, now: Instant) -> Vec<String> {
        self.expired(now)
    }
}

impl Expiring for Deadlines {
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
        Clocked { timers: Mutex::default(), changed: Notify::new(), origin: tokio::time::Instant::now() }
    }
}

impl<T: Expiring> Clocked<T> {
    fn now(&self) -> Instant {
        Instant::from_nanos(u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX))
    }

    fn lock(&self) -> MutexGuard<'_, T> {
        self.timers.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Changes the timers (given the time now) and wakes the waiting task.
    pub fn update<R>(&self, change: impl FnOnce(&mut T, Instant) -> R) -> R {
        let now = self.now();
        let result = change(&mut self.lock(), now);
        self.changed.notify_one();
        result
    }

    /// Waits for the earliest deadline, or a change, and returns what expired by then (often
    /// nothing after a change).
    pub async fn expired(&self) -> Vec<String> {
        let next = self.lock().next_deadline();
        let sleep = match next {
            Some(deadline) => Duration::from_nanos(deadline.as_nanos()).saturating_sub(self.origin.elapsed()),
            None => IDLE_WAIT,
        };
        tokio::select! {
            () = tokio::time::sleep(sleep) => {}
            () = self.changed.notified() => {}
        }
        let now = self.now();
        self.lock().expire(now)
    }
}
