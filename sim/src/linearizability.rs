//! A linearizability checker for histories of register operations (writes, reads,
//! compare-and-set), after Wing and Gong with Lowe's memoisation, the algorithm porcupine uses.
//!
//! Linearizability is compositional (Herlihy and Wing, 1990): a history over many keys is
//! linearizable exactly when each key's sub-history is, so keys are checked one at a time, and
//! each search stays small. An operation whose outcome the client never learned (a timeout, a
//! crashed server) may have taken effect at any point after it was invoked, or never: the search
//! may place it anywhere after its call, or leave it out.
//!
//! Written values are unique per register (the clients' contract), so an unanswered write whose
//! value no operation observed is dropped before the search: leaving it out is a valid choice
//! when nothing depends on it (nothing read its value), and keeping it would double the search
//! for nothing. A leader fault leaves dozens of such writes behind. A failed compare-and-set
//! does depend on it (the value was not the one expected, and such a write may be why), so the
//! writes invoked before the last failed one returned are kept.

use std::collections::{BTreeMap, BTreeSet};

/// A register's value; `None` before the first write.
pub type Value = Option<u64>;

/// What an operation did, as the client saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Set the value.
    Write(u64),
    /// Removed the value (a KV delete).
    Delete,
    /// Observed this value.
    Read(Value),
    /// Set `new` if the value was `expected`; `ok` says whether it did (unknown if the outcome
    /// is unknown).
    Cas {
        /// The value required.
        expected: Value,
        /// The value written when it matches.
        new: u64,
        /// Whether it matched.
        ok: bool,
    },
}

/// One operation of a client history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Op {
    /// The register.
    pub key: u64,
    /// When it was invoked (any monotonic unit).
    pub call: u64,
    /// When its result arrived; `None` if it never did, so it may or may not have happened.
    pub ret: Option<u64>,
    /// What it was.
    pub kind: Kind,
}

/// A history that is not linearizable (or too hard to decide): the key, and its operations in
/// call order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The register whose history has no valid order.
    pub key: u64,
    /// Its operations.
    pub ops: Vec<Op>,
    /// The search gave up after [`SEARCH_STATES_MAX`] states without deciding: not a proof of
    /// a bug, but a history the simulator must not produce (too many indeterminate operations).
    pub inconclusive: bool,
}

/// The most states one key's search visits before giving up as inconclusive.
pub const SEARCH_STATES_MAX: usize = 2_000_000;

/// The value every written value no operation observed stands for in the search.
const UNOBSERVED: u64 = u64::MAX;

/// The most operations on one key the search accepts; beyond, memoisation no longer keeps it
/// fast (the simulator spreads its clients over enough keys to stay below).
pub const OPS_PER_KEY_MAX: usize = 256;

/// Checks a whole history, key by key.
pub fn check(history: &[Op]) -> Result<(), Violation> {
    let mut by_key: BTreeMap<u64, Vec<Op>> = BTreeMap::new();
    for op in history {
        // A read whose answer never arrived says nothing.
        if op.ret.is_none() && matches!(op.kind, Kind::Read(_)) {
            continue;
        }
        by_key.entry(op.key).or_default().push(*op);
    }
    for (key, mut ops) in by_key {
        let observed: BTreeSet<u64> = ops
            .iter()
            .filter_map(|op| match op.kind {
                Kind::Read(seen) => seen,
                Kind::Cas { expected, .. } => expected,
                Kind::Write(_) | Kind::Delete => None,
            })
            .collect();
        // A failed comparison observes that the value was *not* what it expected, which an
        // unanswered write may be all that explains: such writes, invoked before it returned,
        // stay.
        let last_failed_cas = ops
            .iter()
            .filter(|op| matches!(op.kind, Kind::Cas { ok: false, .. }))
            .filter_map(|op| op.ret)
            .max();
        ops.retain(|op| {
            let explains_a_failure = last_failed_cas.is_some_and(|ret| op.call < ret);
            !matches!(op.kind, Kind::Write(v) if op.ret.is_none() && !observed.contains(&v) && !explains_a_failure)
        });
        // A value nobody observed matches no later read or comparison: any two such values are
        // the same state to the search, which then tries each order of those writes once.
        for op in &mut ops {
            match &mut op.kind {
                Kind::Write(v) | Kind::Cas { new: v, .. } if !observed.contains(v) => *v = UNOBSERVED,
                _ => {}
            }
        }
        assert!(ops.len() <= OPS_PER_KEY_MAX, "{} operations on key {key}: spread the load", ops.len());
        ops.sort_by_key(|op| (op.call, op.ret));
        match linearizable(&ops) {
            Some(true) => {}
            Some(false) => return Err(Violation { key, ops, inconclusive: false }),
            None => return Err(Violation { key, ops, inconclusive: true }),
        }
    }
    Ok(())
}

/// Applies `kind` to `value`: the value after, or `None` if the observed outcome is impossible.
fn step(value: Value, kind: Kind, outcome_known: bool) -> Option<Value> {
    match kind {
        Kind::Write(v) => Some(Some(v)),
        Kind::Delete => Some(None),
        Kind::Read(seen) => (seen == value).then_some(value),
        Kind::Cas { expected, new, ok } => {
            let matches = value == expected;
            if !outcome_known {
                return Some(if matches { Some(new) } else { value });
            }
            match (matches, ok) {
                (true, true) => Some(Some(new)),
                (false, false) => Some(value),
                _ => None,
            }
        }
    }
}

/// The search: a depth-first walk over orders consistent with real time, memoising (set of
/// operations placed, value) pairs already shown to lead nowhere. `None` if it gave up.
fn linearizable(ops: &[Op]) -> Option<bool> {
    let n = ops.len();
    let words = n.div_ceil(64);
    let returned = |op: &Op| op.ret.unwrap_or(u64::MAX);
    let mut seen: BTreeSet<(Vec<u64>, Value)> = BTreeSet::new();
    // Each frame: the set placed so far, the value, and the next candidate to try.
    let mut stack: Vec<(Vec<u64>, Value, usize)> = vec![(vec![0; words], None, 0)];
    while let Some((placed, value, next)) = stack.pop() {
        let is_placed = |i: usize| placed[i / 64] & (1 << (i % 64)) != 0;
        // Done when every operation that returned is placed; the others may never have happened.
        if (0..n).all(|i| is_placed(i) || ops[i].ret.is_none()) {
            return Some(true);
        }
        if seen.len() > SEARCH_STATES_MAX {
            return None;
        }
        // Only an operation invoked before every unplaced one returned can go next.
        let horizon = (0..n).filter(|&i| !is_placed(i)).map(|i| returned(&ops[i])).min().expect("unplaced");
        // An observer (a read, a compare-and-set known to have failed) leaves every state as it
        // is: if one can go next, some linearization places it next, if any does (moving it to
        // the front changes no state and only loosens the others' real-time bounds). Placing it
        // without branching keeps the orders of observers out of the search.
        if next == 0 {
            let observer = (0..n).find(|&i| {
                !is_placed(i)
                    && ops[i].call <= horizon
                    && ops[i].ret.is_some()
                    && matches!(ops[i].kind, Kind::Read(_) | Kind::Cas { ok: false, .. })
                    && step(value, ops[i].kind, true) == Some(value)
            });
            if let Some(i) = observer {
                let mut placed_after = placed.clone();
                placed_after[i / 64] |= 1 << (i % 64);
                if seen.insert((placed_after.clone(), value)) {
                    stack.push((placed_after, value, 0));
                }
                continue;
            }
        }
        let mut candidate = next;
        while candidate < n {
            let i = candidate;
            candidate += 1;
            if is_placed(i) || ops[i].call > horizon {
                continue;
            }
            let Some(after) = step(value, ops[i].kind, ops[i].ret.is_some()) else { continue };
            let mut placed_after = placed.clone();
            placed_after[i / 64] |= 1 << (i % 64);
            if !seen.insert((placed_after.clone(), after)) {
                continue;
            }
            // Come back for the remaining candidates of this frame after exploring this one.
            stack.push((placed, value, candidate));
            stack.push((placed_after, after, 0));
            break;
        }
    }
    Some(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(call: u64, ret: u64, kind: Kind) -> Op {
        Op { key: 1, call, ret: Some(ret), kind }
    }

    #[test]
    fn sequential_and_overlapping_histories_are_accepted() {
        let history = [
            op(0, 1, Kind::Write(1)),
            op(2, 3, Kind::Read(Some(1))),
            // Overlapping write and read: the read may see either value.
            op(4, 8, Kind::Write(2)),
            op(5, 6, Kind::Read(Some(1))),
            op(7, 9, Kind::Read(Some(2))),
            op(10, 11, Kind::Cas { expected: Some(2), new: 3, ok: true }),
            op(12, 13, Kind::Cas { expected: Some(2), new: 4, ok: false }),
            op(14, 15, Kind::Read(Some(3))),
        ];
        assert_eq!(check(&history), Ok(()));
    }

    #[test]
    fn a_stale_read_is_caught() {
        let history = [op(0, 1, Kind::Write(1)), op(2, 3, Kind::Write(2)), op(4, 5, Kind::Read(Some(1)))];
        let violation = check(&history).unwrap_err();
        assert_eq!(violation.key, 1);
        assert_eq!(violation.ops.len(), 3);
    }

    #[test]
    fn a_lost_acknowledged_write_is_caught_and_an_unknown_one_may_be_either() {
        let lost = [op(0, 1, Kind::Write(1)), op(2, 3, Kind::Read(None))];
        assert!(check(&lost).is_err());
        let unknown = Op { key: 1, call: 0, ret: None, kind: Kind::Write(1) };
        assert_eq!(check(&[unknown, op(2, 3, Kind::Read(None))]), Ok(()));
        assert_eq!(check(&[unknown, op(2, 3, Kind::Read(Some(1)))]), Ok(()));
        // ... but not before it was invoked.
        let late = Op { key: 1, call: 5, ret: None, kind: Kind::Write(1) };
        assert!(check(&[op(2, 3, Kind::Read(Some(1))), late]).is_err());
    }

    #[test]
    fn unanswered_writes_nobody_observed_cost_the_search_nothing() {
        // Sixty writes with no answer, overlapping each other and the reads: without the pruning
        // the search would try 2^60 subsets of them.
        let mut history: Vec<Op> =
            (0..60).map(|v| Op { key: 1, call: v, ret: None, kind: Kind::Write(100 + v) }).collect();
        history.push(op(0, 1, Kind::Write(1)));
        history.push(op(70, 71, Kind::Read(Some(1))));
        history.push(Op { key: 1, call: 72, ret: None, kind: Kind::Write(2) });
        history.push(op(80, 81, Kind::Read(Some(2))));
        assert_eq!(check(&history), Ok(()));
        // An observed one still counts: a read of 2 before 2 was written is caught.
        history.push(op(60, 61, Kind::Read(Some(2))));
        assert!(!check(&history).unwrap_err().inconclusive);
    }

    #[test]
    fn reads_and_failed_comparisons_among_late_writes_do_not_blow_up_the_search() {
        // After a leader change: fourteen writes nobody read, all committed at once (at 100),
        // overlapping fourteen reads of the value before them and eight compare-and-sets that
        // failed at the end. Without placing observers at once, the search ran out of states.
        let mut history = vec![op(0, 1, Kind::Write(1))];
        for i in 0..14 {
            history.push(op(10 + i, 100, Kind::Write(1000 + i)));
            history.push(op(10 + 2 * i, 11 + 2 * i, Kind::Read(Some(1))));
        }
        for i in 0..8 {
            history.push(op(20 + i, 100 + i, Kind::Cas { expected: Some(1), new: 2000 + i, ok: false }));
        }
        assert_eq!(check(&history), Ok(()));
        // A read of the old value once every write has returned is still caught, for sure.
        history.push(op(200, 201, Kind::Read(Some(1))));
        assert!(!check(&history).unwrap_err().inconclusive);
    }

    #[test]
    fn a_delete_empties_the_register_and_a_read_of_the_old_value_after_it_is_caught() {
        let history = [op(0, 1, Kind::Write(1)), op(2, 3, Kind::Delete), op(4, 5, Kind::Read(None))];
        assert_eq!(check(&history), Ok(()));
        let stale = [op(0, 1, Kind::Write(1)), op(2, 3, Kind::Delete), op(4, 5, Kind::Read(Some(1)))];
        assert!(check(&stale).is_err());
        let cas = Kind::Cas { expected: None, new: 2, ok: true };
        assert_eq!(check(&[op(0, 1, Kind::Write(1)), op(2, 3, Kind::Delete), op(4, 5, cas)]), Ok(()));
    }

    #[test]
    fn an_unanswered_write_may_be_why_a_comparison_failed() {
        // 1 stands, then a compare-and-set expecting 1 fails: only the unanswered write of 2
        // (which nobody read) can have changed it.
        let unknown = Op { key: 1, call: 2, ret: None, kind: Kind::Write(2) };
        let failed = op(4, 5, Kind::Cas { expected: Some(1), new: 3, ok: false });
        assert_eq!(check(&[op(0, 1, Kind::Write(1)), unknown, failed]), Ok(()));
        // Without it, the failure has no explanation.
        assert!(check(&[op(0, 1, Kind::Write(1)), failed]).is_err());
    }

    #[test]
    fn keys_are_independent() {
        let mut other = op(2, 3, Kind::Read(None));
        other.key = 2;
        assert_eq!(check(&[op(0, 1, Kind::Write(1)), other]), Ok(()));
    }
}
