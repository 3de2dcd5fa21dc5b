//! The node's fixed timers in one table, as in quinn-proto's `connection/timer.rs`: a [`Timer`]
//! names each, and a [`TimerTable`] holds one optional deadline per name.
//!
//! Only timers of which there is at most one belong here. Deadlines there can be many of stay in
//! keyed sets ordered by (deadline, key), next to the state they belong to, so that a tie fires
//! in a fixed order: suspicions (`Swim::suspicion_deadlines`), relayed pings
//! (`Swim::relay_deadlines`) and pending queries (`Serf::query_deadlines`). Two single
//! deadlines also stay where they are, inside the state they time out: the direct ping's, in the
//! probe in flight, and the leave's, in `Leave::Leaving`; whatever ends that state ends its
//! deadline with it, with no timer to stop separately.

use crate::Instant;

/// One of the node's fixed timers. The discriminants index [`TimerTable`] and give the order in
/// which timers due at the same `handle_timeout` fire (see [`Timer::VALUES`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Timer {
    /// Ends the probe in flight and starts the next (every `probe_interval`, scaled by local
    /// health awareness).
    Probe = 0,
    /// Gossips queued broadcasts (every `gossip_interval`).
    Gossip = 1,
    /// Exchanges full state with a random live member (every `push_pull_interval`, scaled with
    /// the cluster size).
    PushPull = 2,
    /// Tries a push/pull with a random dead member (every `reconnect_interval`).
    Reconnect = 3,
    /// Sends the unanswered joins again (every `join_retry_interval`); stopped while no join
    /// waits for an answer.
    JoinRetry = 4,
    /// Forgets members dead or left for long enough (every `REAP_INTERVAL`).
    Reap = 5,
}

impl Timer {
    /// How many timers there are.
    pub(super) const COUNT: usize = 6;

    /// Every timer, in firing order. This is the order the hand-written checks had before the
    /// table, kept so that a simulation seed still means the same run: when several are due at
    /// once, each one's sends and random draws come in this order.
    pub(super) const VALUES: [Timer; Timer::COUNT] =
        [Timer::Probe, Timer::Gossip, Timer::PushPull, Timer::Reconnect, Timer::JoinRetry, Timer::Reap];
}

/// When each [`Timer`] is due next; `None` for a stopped timer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct TimerTable {
    /// By `Timer as usize`.
    deadlines: [Option<Instant>; Timer::COUNT],
}

impl TimerTable {
    /// Arms `timer` to be due at `deadline`, replacing any earlier setting.
    pub(super) fn set(&mut self, timer: Timer, deadline: Instant) {
        self.deadlines[timer as usize] = Some(deadline);
    }

    /// When `timer` is due, if armed.
    pub(super) fn get(&self, timer: Timer) -> Option<Instant> {
        self.deadlines[timer as usize]
    }

    /// Disarms `timer`.
    pub(super) fn stop(&mut self, timer: Timer) {
        self.deadlines[timer as usize] = None;
    }

    /// The earliest deadline of any armed timer.
    pub(super) fn next_timeout(&self) -> Option<Instant> {
        self.deadlines.iter().flatten().min().copied()
    }

    /// The earliest deadline of the armed timers other than `skipped`: those keep their
    /// deadlines, and fire at the first `handle_timeout` after they count again.
    pub(super) fn next_timeout_skipping(&self, skipped: &[Timer]) -> Option<Instant> {
        let counted = Timer::VALUES.into_iter().filter(|timer| !skipped.contains(timer));
        counted.filter_map(|timer| self.get(timer)).min()
    }

    /// Disarms `timer` if it is due at or before `now`, and returns whether it was: the caller
    /// then runs it (and re-arms it if it is periodic).
    ///
    /// One timer at a time, rather than quinn's "pop whichever is due": the caller walks
    /// [`Timer::VALUES`] once, so each timer fires at most once per `handle_timeout` even if a
    /// handler re-arms it at or before `now` (which a saturated [`Instant`] at the end of time
    /// would do), and due timers fire in a fixed order whatever their deadlines.
    pub(super) fn expire(&mut self, timer: Timer, now: Instant) -> bool {
        let due = self.get(timer).is_some_and(|deadline| deadline <= now);
        if due {
            self.stop(timer);
        }
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_list_every_timer_once_by_its_index() {
        for (index, timer) in Timer::VALUES.into_iter().enumerate() {
            assert_eq!(timer as usize, index);
        }
    }

    #[test]
    fn a_timer_expires_once_at_or_after_its_deadline() {
        let mut timers = TimerTable::default();
        assert_eq!(timers.next_timeout(), None);
        timers.set(Timer::Gossip, Instant::from_millis(200));
        timers.set(Timer::Reap, Instant::from_millis(100));
        assert_eq!(timers.next_timeout(), Some(Instant::from_millis(100)));
        assert!(!timers.expire(Timer::Gossip, Instant::from_millis(199)));
        assert!(timers.expire(Timer::Gossip, Instant::from_millis(200)));
        assert!(!timers.expire(Timer::Gossip, Instant::from_millis(200)), "stopped once expired");
        assert_eq!(timers.get(Timer::Gossip), None);
        timers.stop(Timer::Reap);
        assert_eq!(timers.next_timeout(), None);
    }
}
