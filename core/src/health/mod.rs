//! Health-check timing, sans-IO (issue 8; `../shared/reference/consul-behaviour.md` §3).
//!
//! Today: the TTL check timers an agent keeps. A TTL check is passed, warned or failed by its
//! application; if no update arrives within its TTL, the agent marks it critical with Consul's
//! "TTL expired" output. The shell resets a check's timer on each update, sleeps until the next
//! deadline and applies what [`TtlTimers::expired`] returns.

use std::time::Duration;

use crate::deadlines::Deadlines;
use crate::time::Instant;

/// The output Consul gives a TTL check that expired, keeping the last output it had.
pub fn ttl_expired_output(last_output: &str) -> String {
    if last_output.is_empty() {
        "TTL expired".to_owned()
    } else {
        format!("TTL expired (last output before timeout follows): {last_output}")
    }
}

/// Deadlines of TTL checks, by check ID.
#[derive(Debug, Default)]
pub struct TtlTimers {
    deadlines: Deadlines,
}

impl TtlTimers {
    /// No timers.
    pub fn new() -> TtlTimers {
        TtlTimers::default()
    }

    /// (Re)starts a check's timer: it expires `ttl` after `now` unless reset again.
    pub fn reset(&mut self, check_id: &str, ttl: Duration, now: Instant) {
        self.deadlines.set(check_id, now + ttl);
    }

    /// Stops a check's timer (deregistered); unknown IDs are ignored.
    pub fn remove(&mut self, check_id: &str) {
        self.deadlines.remove(check_id);
    }

    /// The earliest deadline, for the shell's sleep.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.deadlines.next()
    }

    /// The checks whose deadline is at or before `now`, earliest first; their timers stop
    /// (an expired check waits for its next update).
    pub fn expired(&mut self, now: Instant) -> Vec<String> {
        self.deadlines.expired(now)
    }

    /// How many timers run.
    pub fn len(&self) -> usize {
        self.deadlines.len()
    }

    /// Whether none runs.
    pub fn is_empty(&self) -> bool {
        self.deadlines.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_check_not_updated_within_its_ttl_expires_once_and_an_update_restarts_it() {
        let mut timers = TtlTimers::new();
        let at = Instant::from_millis;
        timers.reset("web", Duration::from_secs(10), at(0));
        timers.reset("db", Duration::from_secs(30), at(0));
        timers.reset("web", Duration::from_secs(10), at(5_000));
        assert_eq!(timers.next_deadline(), Some(at(15_000)));
        assert_eq!(timers.expired(at(14_999)), Vec::<String>::new());
        assert_eq!(timers.expired(at(15_000)), ["web"]);
        assert_eq!(timers.expired(at(20_000)), Vec::<String>::new(), "expired once");
        timers.remove("db");
        assert!(timers.is_empty());
        assert_eq!(ttl_expired_output(""), "TTL expired");
        assert_eq!(ttl_expired_output("ok"), "TTL expired (last output before timeout follows): ok");
    }
}
