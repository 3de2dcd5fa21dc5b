//! Seeds: which to run, and how to replay one that failed.
//!
//! A test names a default seed range. `MUSTER_SEED=n` runs only seed `n`; `MUSTER_SEEDS=a..b`
//! runs that range instead (CI pins one). Every seed is printed as it starts, and a failing seed
//! prints the exact command that replays it before the panic carries on.

use std::ops::Range;
use std::panic::resume_unwind;

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
        // A planted bug is part of what is replayed.
        let bug = planted_bug().map(|bug| format!("MUSTER_PLANTED_BUG={bug} ")).unwrap_or_default();
        format!("{bug}MUSTER_SEED={seed} {} -- {} --exact --nocapture", self.command, self.test)
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

/// Runs `run` on a thread of its own and returns what it gave, or its panic.
///
/// Each seed runs so, alone or in a sweep, because a thread keeps state from one run to the
/// next that a run can observe: std's `RandomState` draws its keys once per thread and then
/// counts up, so the iteration order of every `HashMap` a run builds depends on how many the
/// thread built before. A sweep deals seeds to threads as they free up, by wall time; without a
/// fresh thread, a seed that failed in a sweep could pass alone, and a change that only moved
/// wall times changed what the seeds of a sweep did.
pub fn on_fresh_thread<T: Send>(run: impl FnOnce() -> T + Send) -> std::thread::Result<T> {
    std::thread::scope(|scope| scope.spawn(run).join())
}

/// Runs `body` for each seed, printing each and the replay command for the first that fails.
/// Returns how many seeds ran.
pub fn for_each_seed(replay: Replay, default: Range<u64>, mut body: impl FnMut(u64) + Send) -> u64 {
    let range = seeds(default);
    let count = range.end.saturating_sub(range.start);
    for seed in range {
        println!("[{}] seed={seed}", replay.test);
        if let Err(panic) = on_fresh_thread(|| body(seed)) {
            eprintln!("\n[{}] FAILED at seed={seed}", replay.test);
            eprintln!("replay with:\n    {}\n", replay.command_for(seed));
            resume_unwind(panic);
        }
    }
    count
}

/// Runs `body` for each seed on every core (seeds dealt out in turn, one worker a core, each
/// seed on a fresh thread), and returns what each gave, in seed order: each seed's run is
/// deterministic on its own, so the workers change only the wall time. The first failure found stops the others from taking
/// new seeds; its seed and replay command are printed before the panic carries on.
pub fn map_seeds<T: Send>(replay: Replay, default: Range<u64>, body: impl Fn(u64) -> T + Sync) -> Vec<T> {
    let range = seeds(default);
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    let next = std::sync::atomic::AtomicU64::new(range.start);
    let failed = std::sync::atomic::AtomicBool::new(false);
    let mut results: Vec<(u64, T)> = Vec::new();
    let mut panics = Vec::new();
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut done = Vec::new();
                    while !failed.load(std::sync::atomic::Ordering::Relaxed) {
                        let seed = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        if seed >= range.end {
                            break;
                        }
                        println!("[{}] seed={seed}", replay.test);
                        match on_fresh_thread(|| body(seed)) {
                            Ok(result) => done.push((seed, result)),
                            Err(panic) => {
                                failed.store(true, std::sync::atomic::Ordering::Relaxed);
                                return Err((seed, panic));
                            }
                        }
                    }
                    Ok(done)
                })
            })
            .collect();
        for worker in workers {
            match worker.join().expect("a seed's panic is caught in its thread") {
                Ok(done) => results.extend(done),
                Err(failure) => panics.push(failure),
            }
        }
    });
    if let Some((seed, panic)) = panics.into_iter().min_by_key(|(seed, _)| *seed) {
        eprintln!("\n[{}] FAILED at seed={seed}", replay.test);
        eprintln!("replay with:\n    {}\n", replay.command_for(seed));
        resume_unwind(panic);
    }
    results.sort_by_key(|(seed, _)| *seed);
    results.into_iter().map(|(_, result)| result).collect()
}

/// The lowest seed of `range` for which `find` finds something, with what it found, searched
/// on every core, each seed on a fresh thread (each seed's run is deterministic on its own, so the answer does not depend
/// on the threads: a seed is skipped only once a lower one has been found).
pub fn first_seed<T: Send>(range: Range<u64>, find: impl Fn(u64) -> Option<T> + Sync) -> Option<(u64, T)> {
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    let next = std::sync::atomic::AtomicU64::new(range.start);
    let best: std::sync::Mutex<Option<(u64, T)>> = std::sync::Mutex::new(None);
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| loop {
                let seed = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let beaten = || best.lock().unwrap().as_ref().is_some_and(|(found, _)| *found < seed);
                if seed >= range.end || beaten() {
                    return;
                }
                let found = on_fresh_thread(|| find(seed)).unwrap_or_else(|panic| resume_unwind(panic));
                if let Some(found) = found {
                    let mut best = best.lock().unwrap();
                    if best.as_ref().is_none_or(|(lowest, _)| seed < *lowest) {
                        *best = Some((seed, found));
                    }
                }
            });
        }
    });
    best.into_inner().unwrap()
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

/// The bug `MUSTER_PLANTED_BUG` names, if set (see [`muster_core::planted`]).
///
/// # Panics
/// If it names no planted bug: the run would otherwise pass without the bug it was asked for.
pub fn planted_bug() -> Option<muster_core::planted::PlantedBug> {
    let name = std::env::var("MUSTER_PLANTED_BUG").ok().filter(|name| !name.is_empty())?;
    Some(name.parse().unwrap_or_else(|unknown| panic!("MUSTER_PLANTED_BUG: {unknown}")))
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::panic::catch_unwind;

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

    #[test]
    fn seeds_mapped_on_every_core_come_back_in_seed_order_and_a_failure_names_its_seed() {
        let replay = Replay { command: "cargo test", test: "map" };
        assert_eq!(map_seeds(replay, 0..50, |seed| seed * 2), (0..50).map(|s| s * 2).collect::<Vec<_>>());
        let failed = catch_unwind(|| map_seeds(replay, 0..50, |seed| assert!(seed != 17, "seed 17 fails")));
        let message = failed.unwrap_err();
        assert_eq!(message.downcast_ref::<&str>(), Some(&"seed 17 fails"));
    }

    #[test]
    fn every_seed_starts_on_a_thread_that_ran_nothing_before() {
        thread_local!(static RUNS_BEFORE: Cell<u32> = const { Cell::new(0) });
        let runs_before = |_| RUNS_BEFORE.with(|runs| runs.replace(runs.get() + 1));
        let replay = Replay { command: "cargo test", test: "fresh" };
        assert_eq!(map_seeds(replay, 0..20, runs_before), vec![0; 20]);
        let mut seen = Vec::new();
        for_each_seed(replay, 0..5, |seed| seen.push(runs_before(seed)));
        assert_eq!(seen, vec![0; 5]);
        assert_eq!(first_seed(0..20, |seed| (runs_before(seed) > 0).then_some(seed)), None);
    }
}
