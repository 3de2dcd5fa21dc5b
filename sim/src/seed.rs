//! Seeds: which to run, and how to replay one that failed.
//!
//! A test names a default seed range. `MUSTER_SEED=n` runs only seed `n`; `MUSTER_SEEDS=a..b`
//! runs that range instead (CI pins one). Every seed is printed as it starts, and a failing seed
//! prints the exact command that replays it before the panic carries on.

use std::ops::Range;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};

/// How to re-run one test of one test target.
#[derive(Debug, Clone, Copy)]
pub struct Replay {
    /// The cargo invocation before the test filter, e.g. `cargo test -p muster-sim --test harness`.
    pub command: &'static str,
    /// The test's name, as the test harness filters it.
    pub test: &'static str,
}

impl Replay {
    /// The shell command that replays `seed`.
    pub fn command_for(&self, seed: u64) -> String {
        format!("MUSTER_SEED={seed} {} -- {} --exact --nocapture", self.command, self.test)
    }
}

/// The seeds to run: `MUSTER_SEED`, else `MUSTER_SEEDS`, else `default`.
pub fn seeds(default: Range<u64>) -> Range<u64> {
    if let Some(seed) = env_u64("MUSTER_SEED") {
        return seed..seed + 1;
    }
    match std::env::var("MUSTER_SEEDS") {
        Ok(text) => {
            parse_range(&text).unwrap_or_else(|| panic!("MUSTER_SEEDS={text:?} is not of the form a..b"))
        }
        Err(_) => default,
    }
}

/// Runs `body` for each seed, printing each and the replay command for the first that fails.
/// Returns how many seeds ran.
pub fn for_each_seed(replay: Replay, default: Range<u64>, mut body: impl FnMut(u64)) -> u64 {
    let range = seeds(default);
    let count = range.end.saturating_sub(range.start);
    for seed in range {
        println!("[{}] seed={seed}", replay.test);
        if let Err(panic) = catch_unwind(AssertUnwindSafe(|| body(seed))) {
            eprintln!("\n[{}] FAILED at seed={seed}", replay.test);
            eprintln!("replay with:\n    {}\n", replay.command_for(seed));
            resume_unwind(panic);
        }
    }
    count
}

fn env_u64(name: &str) -> Option<u64> {
    let text = std::env::var(name).ok()?;
    Some(text.trim().parse().unwrap_or_else(|_| panic!("{name}={text:?} is not a number")))
}

fn parse_range(text: &str) -> Option<Range<u64>> {
    let (start, end) = text.trim().split_once("..")?;
    let range = start.trim().parse().ok()?..end.trim().parse().ok()?;
    (range.start < range.end).then_some(range)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_parse_and_replay_commands_are_exact() {
        assert_eq!(parse_range("3..7"), Some(3..7));
        assert_eq!(parse_range("7..3"), None);
        assert_eq!(parse_range("x"), None);
        let replay = Replay { command: "cargo test -p muster-sim --test harness", test: "sweep" };
        assert_eq!(
            replay.command_for(42),
            "MUSTER_SEED=42 cargo test -p muster-sim --test harness -- sweep --exact --nocapture"
        );
    }
}
