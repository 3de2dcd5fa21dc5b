//! A running summary of everything that happened in a simulation.
//!
//! Each delivery, send, persist, crash and event is folded into a 64-bit FNV-1a hash (fixed
//! constants, so the value is the same in every process and on every platform). Two runs with
//! the same seed must give the same hash; that is how determinism is tested. With
//! `MUSTER_TRACE=1` every record is also printed, to diff two runs line by line.

use std::fmt::Debug;

/// The hash of a run, and optionally its lines.
#[derive(Debug, Clone)]
pub struct Trace {
    hash: u64,
    records: u64,
    print: bool,
}

impl Default for Trace {
    fn default() -> Trace {
        Trace { hash: FNV_OFFSET, records: 0, print: std::env::var_os("MUSTER_TRACE").is_some() }
    }
}

impl Trace {
    /// Folds one record in. `what` is rendered with `Debug`, which is deterministic for the
    /// plain data recorded here (no maps with random order, no pointers).
    pub fn record(&mut self, at_nanos: u64, node: usize, what: &impl Debug) {
        let line = format!("{at_nanos} n{node} {what:?}");
        if self.print {
            println!("trace: {line}");
        }
        for byte in line.bytes().chain([b'\n']) {
            self.hash = (self.hash ^ u64::from(byte)).wrapping_mul(FNV_PRIME);
        }
        self.records += 1;
    }

    /// The hash so far.
    pub fn hash(&self) -> u64 {
        self.hash
    }

    /// How many records were folded in.
    pub fn records(&self) -> u64 {
        self.records
    }
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_depends_on_content_and_order() {
        let run = |records: &[(u64, usize, &str)]| {
            let mut trace = Trace::default();
            for (at, node, what) in records {
                trace.record(*at, *node, what);
            }
            trace.hash()
        };
        let a = run(&[(1, 0, "x"), (2, 1, "y")]);
        assert_eq!(a, run(&[(1, 0, "x"), (2, 1, "y")]));
        assert_ne!(a, run(&[(2, 1, "y"), (1, 0, "x")]));
        assert_ne!(a, run(&[(1, 0, "x"), (2, 1, "z")]));
        assert_eq!(run(&[]), FNV_OFFSET);
    }
}
