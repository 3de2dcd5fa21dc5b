//! A checker for `?stale` reads: an answer is never older than the contact it reports.
//!
//! A stale read is served by any server from its own state, with `X-Consul-LastContact`: how
//! long ago that server's state last held everything its leader had committed. So a read
//! called at `call` that reports `last_contact` must reflect every write that completed before
//! `call − last_contact`, less a margin for what a sound server cannot see: a deposed leader
//! that has not stepped down yet still sends appends, and still answers with no contact to
//! report, until its quorum check lapses (the margin covers that, see
//! [`crate::servers`]). Values are unique, so a read that returns `v` names the write of `v`;
//! the answer is too old when another change to the key was called after that write had
//! returned and itself returned before the bound (it follows the write of `v` in every order).
//! An absent value is too old when a write returned before the bound and no delete may follow
//! it.

use crate::linearizability::{Kind, Op};

/// One `?stale` read, as the client saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StaleRead {
    /// The register.
    pub key: u64,
    /// When it was invoked, in the history's unit (nanoseconds).
    pub call: u64,
    /// The contact the server reported, in nanoseconds.
    pub last_contact_ns: u64,
    /// What it found.
    pub value: Option<u64>,
    /// The server that answered.
    pub server: usize,
}

/// A stale read older than it said, and the change it missed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TooOld {
    /// The read.
    pub read: StaleRead,
    /// A change that completed before the read's bound, and that its answer does not reflect.
    pub missed: Op,
}

/// Checks every read in `reads` against the changes in `history`, allowing `margin_ns`;
/// the number of reads with a bound to check.
pub fn check(history: &[Op], reads: &[StaleRead], margin_ns: u64) -> Result<usize, TooOld> {
    let mut checked = 0;
    for read in reads {
        let Some(bound) = read.call.checked_sub(read.last_contact_ns.saturating_add(margin_ns)) else {
            continue;
        };
        checked += 1;
        let on_key = || history.iter().filter(move |op| op.key == read.key);
        let missed = match read.value {
            Some(value) => {
                // The write of `value`; one whose outcome the client never learned bounds
                // nothing.
                let Some(written) =
                    on_key().find_map(|op| (writes(op) == Some(value)).then_some(op.ret)).flatten()
                else {
                    continue;
                };
                on_key().find(|op| changes(op) && op.call > written && op.ret.is_some_and(|ret| ret < bound))
            }
            None => on_key().find(|op| {
                writes(op).is_some()
                    && op.ret.is_some_and(|ret| ret < bound)
                    && !on_key().any(|delete| {
                        delete.kind == Kind::Delete && delete.ret.is_none_or(|ret| ret > op.call)
                    })
            }),
        };
        if let Some(&missed) = missed {
            return Err(TooOld { read: *read, missed });
        }
    }
    Ok(checked)
}

/// The value `op` set, if it set one (a check-and-set whose outcome is unknown may have).
fn writes(op: &Op) -> Option<u64> {
    match op.kind {
        Kind::Write(value) => Some(value),
        Kind::Cas { new, ok, .. } if ok || op.ret.is_none() => Some(new),
        _ => None,
    }
}

/// Whether `op` is known to have changed the key (when it returned).
fn changes(op: &Op) -> bool {
    match op.kind {
        Kind::Write(_) | Kind::Delete => true,
        Kind::Cas { ok, .. } => ok,
        Kind::Read(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(call: u64, ret: Option<u64>, kind: Kind) -> Op {
        Op { key: 1, call, ret, kind }
    }

    fn read(call: u64, last_contact_ns: u64, value: Option<u64>) -> StaleRead {
        StaleRead { key: 1, call, last_contact_ns, value, server: 0 }
    }

    #[test]
    fn a_read_may_miss_what_completed_within_its_contact_and_margin() {
        let history = [op(0, Some(10), Kind::Write(1)), op(20, Some(30), Kind::Write(2))];
        // The bound is 100 − 50 − 10 = 40: the write of 2 completed before it.
        assert!(check(&history, &[read(100, 50, Some(1))], 10).is_err());
        // The bound is 100 − 70 − 10 = 20: the write of 2 had not.
        assert_eq!(check(&history, &[read(100, 70, Some(1))], 10), Ok(1));
        assert_eq!(check(&history, &[read(100, 50, Some(2))], 10), Ok(1));
    }

    #[test]
    fn a_read_older_than_its_contact_is_caught_with_the_write_it_missed() {
        let history = [op(0, Some(10), Kind::Write(1)), op(20, Some(30), Kind::Delete)];
        let too_old = check(&history, &[read(100, 0, Some(1))], 0).unwrap_err();
        assert_eq!(too_old.missed.kind, Kind::Delete);
        // Absent, though the write completed long before and no delete may follow it.
        let history = [op(0, Some(10), Kind::Write(1))];
        assert!(check(&history, &[read(100, 0, None)], 0).is_err());
        let deleted = [op(0, Some(10), Kind::Write(1)), op(5, None, Kind::Delete)];
        assert_eq!(check(&deleted, &[read(100, 0, None)], 0), Ok(1));
    }

    #[test]
    fn concurrent_changes_and_unbounded_reads_are_not_violations() {
        // The write of 2 was called before the write of 1 returned: either order is valid.
        let history = [op(0, Some(10), Kind::Write(1)), op(5, Some(30), Kind::Write(2))];
        assert_eq!(check(&history, &[read(100, 0, Some(1))], 0), Ok(1));
        // A server that never caught up reports Go's largest duration: nothing to bound.
        assert_eq!(check(&history, &[read(100, u64::MAX, None)], 0), Ok(0));
        // A failed check-and-set changed nothing.
        let cas = Kind::Cas { expected: Some(7), new: 3, ok: false };
        let history = [op(0, Some(10), Kind::Write(1)), op(20, Some(30), cas)];
        assert_eq!(check(&history, &[read(100, 0, Some(1))], 0), Ok(1));
    }
}
