//! Health-check timing and judgement, sans-IO (`../shared/reference/consul-behaviour.md` §3).
//!
//! The agent runs each check (a script, an HTTP request, a TCP connect...) in the io shell;
//! everything about *when* and *what it means* is here, driven by `now`:
//! - [`Runner`]: when each check runs. The first run comes after a random stagger within one
//!   interval (so checks registered together spread out), then one run every interval, counted
//!   from the end of the previous run; never two runs of one check at once; never more often
//!   than [`INTERVAL_MIN`].
//! - [`Damper`]: flap damping (`SuccessBeforePassing`, `FailuresBeforeWarning`,
//!   `FailuresBeforeCritical`): a result changes the check's status only once enough results
//!   in a row agree. The counters start satisfied, so the first result applies at once.
//! - [`Reaper`]: `DeregisterCriticalServiceAfter`: a service whose check has been critical
//!   longer than that (at least [`DEREGISTER_AFTER_MIN`]) is deregistered, checked every
//!   [`REAP_INTERVAL`].
//! - What an expired TTL check says ([`ttl_expired_output`]).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::fsm::{Check, CheckKind, Health};
use crate::{Instant, Rng};

/// The shortest interval a check runs at; shorter ones are raised to it (Consul's
/// `MinInterval`).
pub const INTERVAL_MIN: Duration = Duration::from_secs(1);
/// How long a run may take by default (Consul's default for HTTP, TCP, UDP and gRPC checks).
pub const TIMEOUT_DEFAULT: Duration = Duration::from_secs(10);
/// How long a script may run by default.
pub const SCRIPT_TIMEOUT_DEFAULT: Duration = Duration::from_secs(30);
/// How often the agent looks for services to deregister (Consul's `check_reap_interval`).
pub const REAP_INTERVAL: Duration = Duration::from_secs(30);
/// The shortest `DeregisterCriticalServiceAfter` (Consul's `check_deregister_interval_min`);
/// shorter ones are raised to it.
pub const DEREGISTER_AFTER_MIN: Duration = Duration::from_secs(60);
/// How long a check's output may differ from the catalog's while its status does not (Consul's
/// `check_update_interval`): output-only changes wait this long, then sync together, sparing
/// the Raft log a write per run of every check whose output changes each time.
pub const CHECK_UPDATE_INTERVAL: Duration = Duration::from_secs(300);
/// Runs start on multiples of this: checks due within one tick start together, so an agent
/// running thousands of checks wakes at most once per tick instead of once per check (a run
/// starts at most this much late).
pub const RUN_TICK: Duration = Duration::from_millis(10);
/// The most output a check keeps (Consul's default `OutputMaxSize`).
pub const OUTPUT_BYTES_MAX: usize = 4096;

/// The output Consul gives a TTL check that expired, keeping the last output it had.
pub fn ttl_expired_output(last_output: &str) -> String {
    if last_output.is_empty() {
        "TTL expired".to_owned()
    } else {
        format!("TTL expired (last output before timeout follows): {last_output}")
    }
}

/// What an alias check says (Consul's `CheckAlias.processChecks`), from `checks`: the checks of
/// the node it watches (named `node`; empty for this agent's own). Node-level checks count, and
/// those of `service` (with no `service`, node-level checks only); any critical makes it
/// critical, else any warning warning, else passing. A `service` that has no checks must exist
/// (`service_exists`), or the alias is critical.
///
/// Node-level alias checks are left out (a departure from Consul, which counts them): two of
/// them on one node would each mirror the other, and stay critical forever once either was. An
/// alias bound to a service (a sidecar's, say) still counts for an alias of that service.
pub fn alias_status<'a>(
    checks: impl IntoIterator<Item = &'a Check>,
    node: &str,
    service: &str,
    service_exists: bool,
) -> (Health, String) {
    let mut health = Health::Passing;
    let mut output = "No checks found.".to_owned();
    let mut service_found = false;
    for check in checks {
        let matches = check.service_id == service;
        let node_level_alias = check.service_id.is_empty() && check.kind == CheckKind::Alias;
        if (!check.service_id.is_empty() && !matches) || node_level_alias {
            continue;
        }
        service_found |= matches;
        match check.status {
            Health::Critical | Health::Warning => {
                health = check.status;
                output = format!("Aliased check {:?} failing: {}", check.name, check.output);
                if check.status == Health::Critical {
                    break;
                }
            }
            Health::Passing if health == Health::Passing => output = "All checks passing.".to_owned(),
            Health::Passing => {}
        }
    }
    if !service_found && !service_exists {
        return (Health::Critical, format!("Service {service} could not be found on node {node}"));
    }
    (health, output)
}

/// `output` cut to [`OUTPUT_BYTES_MAX`] bytes (at a character boundary), with Consul's note
/// of how much was kept when it was cut.
pub fn capped_output(output: &str) -> String {
    if output.len() <= OUTPUT_BYTES_MAX {
        return output.to_owned();
    }
    let mut end = OUTPUT_BYTES_MAX;
    while !output.is_char_boundary(end) {
        end -= 1;
    }
    format!("Captured {end} of {} bytes\n...\n{}", output.len(), &output[..end])
}

/// How many results in a row change a check's status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Thresholds {
    /// Successes (passing or warning) in a row before the status follows one.
    pub success_before_passing: u32,
    /// Failures in a row before the status turns warning (Consul: defaults to
    /// `failures_before_critical`).
    pub failures_before_warning: u32,
    /// Failures in a row before the status turns critical.
    pub failures_before_critical: u32,
}

/// Flap damping for one check (Consul's `StatusHandler`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damper {
    thresholds: Thresholds,
    successes: u32,
    failures: u32,
}

impl Damper {
    /// A damper whose counters start satisfied: the first result applies at once.
    pub fn new(thresholds: Thresholds) -> Damper {
        Damper {
            thresholds,
            successes: thresholds.success_before_passing,
            failures: thresholds.failures_before_critical,
        }
    }

    /// The status `result` gives the check, or `None` while the thresholds hold it back.
    pub fn observe(&mut self, result: Health) -> Option<Health> {
        if matches!(result, Health::Passing | Health::Warning) {
            self.successes = self.successes.saturating_add(1);
            self.failures = 0;
            return (self.successes >= self.thresholds.success_before_passing).then_some(result);
        }
        self.failures = self.failures.saturating_add(1);
        self.successes = 0;
        if self.failures >= self.thresholds.failures_before_critical {
            Some(result)
        } else if self.failures >= self.thresholds.failures_before_warning {
            Some(Health::Warning)
        } else {
            None
        }
    }
}

/// How one check runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    /// Time between the end of one run and the start of the next.
    pub interval: Duration,
    /// How long one run may take.
    pub timeout: Duration,
    /// Its flap damping.
    pub thresholds: Thresholds,
}

/// A run the agent must start now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    /// The check.
    pub check_id: String,
    /// Which registration of it this run belongs to: a result for an older one is stale.
    pub generation: u64,
    /// How long the run may take.
    pub timeout: Duration,
}

#[derive(Debug, Clone)]
struct Entry {
    schedule: Schedule,
    damper: Damper,
    generation: u64,
    /// When the next run is due; `None` while one runs.
    due: Option<Instant>,
}

/// When each of an agent's checks runs, and what each result means for its status.
#[derive(Debug)]
pub struct Runner {
    checks: BTreeMap<String, Entry>,
    due: BTreeSet<(Instant, String)>,
    generation_next: u64,
    rng: Rng,
}

impl Runner {
    /// No checks; staggers drawn from `rng`.
    pub fn new(rng: Rng) -> Runner {
        Runner { checks: BTreeMap::new(), due: BTreeSet::new(), generation_next: 1, rng }
    }

    /// Starts running `check_id` (replacing any earlier registration of it: its run in flight,
    /// if any, no longer counts), first after a random stagger within one interval.
    pub fn add(&mut self, now: Instant, check_id: &str, mut schedule: Schedule) {
        self.remove(check_id);
        schedule.interval = schedule.interval.max(INTERVAL_MIN);
        let stagger = self.rng.duration_between(Duration::ZERO, schedule.interval);
        let due = now + stagger;
        let generation = self.generation_next;
        self.generation_next += 1;
        let entry = Entry { schedule, damper: Damper::new(schedule.thresholds), generation, due: Some(due) };
        self.checks.insert(check_id.to_owned(), entry);
        self.due.insert((due, check_id.to_owned()));
        self.check_invariants();
    }

    /// Stops running `check_id`; unknown IDs are ignored.
    pub fn remove(&mut self, check_id: &str) {
        if let Some(entry) = self.checks.remove(check_id) {
            if let Some(due) = entry.due {
                self.due.remove(&(due, check_id.to_owned()));
            }
        }
        self.check_invariants();
    }

    /// The checks it runs.
    pub fn len(&self) -> usize {
        self.checks.len()
    }

    /// Whether it runs none.
    pub fn is_empty(&self) -> bool {
        self.checks.is_empty()
    }

    /// When the next run is due: the first due time, rounded up to a multiple of [`RUN_TICK`].
    pub fn poll_timeout(&self) -> Option<Instant> {
        let tick = RUN_TICK.as_nanos() as u64;
        self.due
            .first()
            .map(|(due, _)| Instant::from_nanos(due.as_nanos().div_ceil(tick).saturating_mul(tick)))
    }

    /// The next run due at `now`, if any; the check counts as running until its result.
    pub fn poll_run(&mut self, now: Instant) -> Option<Run> {
        let (due, check_id) = self.due.first()?.clone();
        if due > now {
            return None;
        }
        self.due.pop_first();
        let entry = self.checks.get_mut(&check_id).expect("a due check is registered");
        entry.due = None;
        let run = Run { check_id, generation: entry.generation, timeout: entry.schedule.timeout };
        self.check_invariants();
        Some(run)
    }

    /// A run's result: the next run is due one interval from `now`, and the status the result
    /// gives the check is returned (`None` while flap damping holds it back, or for a stale
    /// run of a check since replaced or removed).
    pub fn on_result(&mut self, now: Instant, run: &Run, result: Health) -> Option<Health> {
        let entry = self.checks.get_mut(&run.check_id)?;
        if entry.generation != run.generation || entry.due.is_some() {
            return None;
        }
        let due = now + entry.schedule.interval;
        entry.due = Some(due);
        let status = entry.damper.observe(result);
        self.due.insert((due, run.check_id.clone()));
        self.check_invariants();
        status
    }

    /// Checks the runner's rules; a no-op outside test, simulation and fuzz builds.
    pub fn check_invariants(&self) {
        #[cfg(any(test, feature = "invariants"))]
        {
            let scheduled: BTreeSet<(Instant, String)> =
                self.checks.iter().filter_map(|(id, e)| Some((e.due?, id.clone()))).collect();
            assert_eq!(scheduled, self.due, "every idle check is due once, and only those");
            assert!(self.checks.values().all(|e| e.schedule.interval >= INTERVAL_MIN));
            assert!(self.checks.values().all(|e| e.generation < self.generation_next));
        }
    }
}

/// `DeregisterCriticalServiceAfter`: since when each such check has been critical.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Reaper {
    /// By check: its service, its limit, and since when it has been critical (if it is).
    checks: BTreeMap<String, (String, Duration, Option<Instant>)>,
}

impl Reaper {
    /// Nothing to reap.
    pub fn new() -> Reaper {
        Reaper::default()
    }

    /// Watches `check_id` of `service_id`, deregistered after `after` critical (raised to
    /// [`DEREGISTER_AFTER_MIN`]); `status` is its status now.
    pub fn watch(&mut self, now: Instant, check_id: &str, service_id: &str, after: Duration, status: Health) {
        let since = (status == Health::Critical).then_some(now);
        let after = after.max(DEREGISTER_AFTER_MIN);
        self.checks.insert(check_id.to_owned(), (service_id.to_owned(), after, since));
    }

    /// Forgets `check_id`.
    pub fn forget(&mut self, check_id: &str) {
        self.checks.remove(check_id);
    }

    /// Records a status change of a watched check (others are ignored).
    pub fn observe(&mut self, now: Instant, check_id: &str, status: Health) {
        if let Some((_, _, since)) = self.checks.get_mut(check_id) {
            match (status, *since) {
                (Health::Critical, None) => *since = Some(now),
                (Health::Critical, Some(_)) => {}
                (_, _) => *since = None,
            }
        }
    }

    /// The services to deregister at `now`: those with a check critical for longer than its
    /// limit. Their checks are forgotten.
    pub fn reap(&mut self, now: Instant) -> Vec<String> {
        let due: BTreeSet<String> = self
            .checks
            .values()
            .filter(|(_, after, since)| {
                since.is_some_and(|since| now.saturating_duration_since(since) > *after)
            })
            .map(|(service, _, _)| service.clone())
            .collect();
        self.checks.retain(|_, (service, _, _)| !due.contains(service));
        due.into_iter().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(millis: u64) -> Instant {
        Instant::from_millis(millis)
    }

    #[test]
    fn an_expired_check_says_so_and_keeps_its_last_output() {
        assert_eq!(ttl_expired_output(""), "TTL expired");
        assert_eq!(ttl_expired_output("ok"), "TTL expired (last output before timeout follows): ok");
    }

    #[test]
    fn an_alias_mirrors_the_worst_of_its_service_and_node_checks() {
        let check = |id: &str, service: &str, status: Health| Check {
            check_id: id.into(),
            name: id.into(),
            service_id: service.into(),
            status,
            output: format!("{id} says so"),
            ..Check::default()
        };
        let passing = [check("serfHealth", "", Health::Passing), check("web-up", "web", Health::Passing)];
        assert_eq!(
            alias_status(&passing, "n1", "web", true),
            (Health::Passing, "All checks passing.".into())
        );
        let warned = [check("web-slow", "web", Health::Warning), check("web-up", "web", Health::Passing)];
        assert_eq!(
            alias_status(&warned, "n1", "web", true),
            (Health::Warning, "Aliased check \"web-slow\" failing: web-slow says so".into()),
            "a later passing check does not hide a warning"
        );
        let other_down = [check("db-down", "db", Health::Critical), check("web-up", "web", Health::Passing)];
        assert_eq!(
            alias_status(&other_down, "n1", "web", true).0,
            Health::Passing,
            "another service's check"
        );
        let node_down = [check("serfHealth", "", Health::Critical), check("web-up", "web", Health::Passing)];
        assert_eq!(
            alias_status(&node_down, "n1", "web", true),
            (Health::Critical, "Aliased check \"serfHealth\" failing: serfHealth says so".into())
        );
        assert_eq!(alias_status(&[], "n1", "web", true), (Health::Passing, "No checks found.".into()));
        assert_eq!(
            alias_status(&[], "n1", "web", false),
            (Health::Critical, "Service web could not be found on node n1".into())
        );
        // Node-level aliases do not feed each other.
        let aliases = [
            Check { kind: CheckKind::Alias, ..check("other-alias", "", Health::Critical) },
            check("web-up", "web", Health::Passing),
        ];
        assert_eq!(alias_status(&aliases, "n1", "web", true).0, Health::Passing);
        // A node alias: its node-level checks only.
        let node_only =
            [check("serfHealth", "", Health::Passing), check("web-down", "web", Health::Critical)];
        assert_eq!(alias_status(&node_only, "n1", "", false).0, Health::Passing);
    }

    #[test]
    fn long_output_is_cut_with_consuls_note() {
        assert_eq!(capped_output("short"), "short");
        let long = "é".repeat(3000); // 6000 bytes
        let capped = capped_output(&long);
        assert!(capped.starts_with("Captured 4096 of 6000 bytes\n...\n"), "{}", &capped[..40]);
        assert_eq!(capped.len(), "Captured 4096 of 6000 bytes\n...\n".len() + 4096);
    }

    #[test]
    fn thresholds_hold_back_flaps_and_the_first_result_applies_at_once() {
        let mut damper = Damper::new(Thresholds {
            success_before_passing: 2,
            failures_before_warning: 1,
            failures_before_critical: 3,
        });
        assert_eq!(damper.observe(Health::Critical), Some(Health::Critical), "first result applies");
        assert_eq!(damper.observe(Health::Passing), None, "one success of two");
        assert_eq!(damper.observe(Health::Passing), Some(Health::Passing));
        assert_eq!(damper.observe(Health::Critical), Some(Health::Warning), "one failure: warning");
        assert_eq!(damper.observe(Health::Critical), Some(Health::Warning));
        assert_eq!(damper.observe(Health::Critical), Some(Health::Critical), "three: critical");
        // Alternating results never reach either threshold.
        let mut flapping = Damper::new(Thresholds {
            success_before_passing: 2,
            failures_before_warning: 2,
            failures_before_critical: 2,
        });
        assert_eq!(flapping.observe(Health::Passing), Some(Health::Passing));
        for _ in 0..10 {
            assert_eq!(flapping.observe(Health::Critical), None);
            assert_eq!(flapping.observe(Health::Passing), None);
        }
        // No thresholds: every result applies.
        let mut plain = Damper::new(Thresholds::default());
        assert_eq!(plain.observe(Health::Warning), Some(Health::Warning));
        assert_eq!(plain.observe(Health::Critical), Some(Health::Critical));
    }

    #[test]
    fn checks_run_after_a_stagger_then_every_interval_from_the_end_of_the_last_run() {
        let mut runner = Runner::new(Rng::from_seed(1));
        let schedule = Schedule {
            interval: Duration::from_secs(10),
            timeout: TIMEOUT_DEFAULT,
            thresholds: Thresholds::default(),
        };
        runner.add(at(0), "web", schedule);
        let first = runner.poll_timeout().expect("scheduled");
        assert!(first < at(10_000), "staggered within one interval: {first:?}");
        assert_eq!(runner.poll_run(at(0)).filter(|_| first > at(0)), None, "not yet");
        let run = runner.poll_run(first).expect("due");
        assert_eq!((run.check_id.as_str(), run.timeout), ("web", TIMEOUT_DEFAULT));
        assert_eq!(runner.poll_timeout(), None, "never two runs at once");
        let end = first + Duration::from_secs(3);
        assert_eq!(runner.on_result(end, &run, Health::Passing), Some(Health::Passing));
        assert_eq!(runner.poll_timeout(), Some(end + Duration::from_secs(10)));
    }

    #[test]
    fn checks_due_within_one_tick_start_together() {
        let mut runner = Runner::new(Rng::from_seed(3));
        let schedule = Schedule {
            interval: Duration::from_secs(10),
            timeout: TIMEOUT_DEFAULT,
            thresholds: Thresholds::default(),
        };
        for n in 0..1000 {
            runner.add(at(0), &format!("c{n}"), schedule);
        }
        let mut wakes = 0;
        let mut started = 0;
        while let Some(wake) = runner.poll_timeout() {
            assert_eq!(wake.as_nanos() % RUN_TICK.as_nanos() as u64, 0, "on a tick");
            let runs: Vec<Run> = std::iter::from_fn(|| runner.poll_run(wake)).collect();
            assert!(!runs.is_empty(), "a wake starts what is due");
            wakes += 1;
            started += runs.len();
        }
        assert_eq!(started, 1000);
        assert!(wakes <= 1000, "at most one wake per tick of the 10 s interval: {wakes}");
        assert!(wakes < 700, "1,000 staggers over 1,000 ticks share ticks: {wakes}");
    }

    #[test]
    fn a_replaced_or_removed_check_ignores_its_old_run_and_short_intervals_are_raised() {
        let mut runner = Runner::new(Rng::from_seed(2));
        let fast = Schedule {
            interval: Duration::from_millis(10),
            timeout: TIMEOUT_DEFAULT,
            thresholds: Thresholds::default(),
        };
        runner.add(at(0), "db", fast);
        let due = runner.poll_timeout().unwrap();
        assert!(due < at(1000), "raised to one second");
        let run = runner.poll_run(due).unwrap();
        runner.add(due, "db", fast);
        assert_eq!(runner.on_result(due, &run, Health::Critical), None, "the old registration's run");
        assert_eq!(runner.len(), 1);
        let again = runner.poll_run(runner.poll_timeout().unwrap()).unwrap();
        runner.remove("db");
        assert_eq!(runner.on_result(due, &again, Health::Critical), None);
        assert_eq!(runner.poll_timeout(), None);
        assert!(runner.is_empty());
    }

    #[test]
    fn a_service_critical_past_its_limit_is_reaped_and_a_recovery_resets_the_clock() {
        let mut reaper = Reaper::new();
        reaper.watch(at(0), "web-check", "web", Duration::from_secs(1), Health::Critical);
        reaper.watch(at(0), "db-check", "db", Duration::from_secs(120), Health::Passing);
        assert_eq!(reaper.reap(at(59_000)), Vec::<String>::new(), "raised to one minute");
        reaper.observe(at(30_000), "web-check", Health::Passing);
        reaper.observe(at(40_000), "web-check", Health::Critical);
        assert_eq!(reaper.reap(at(90_000)), Vec::<String>::new(), "critical since 40 s only");
        reaper.observe(at(50_000), "db-check", Health::Critical);
        assert_eq!(reaper.reap(at(100_001)), vec!["web".to_owned()]);
        assert_eq!(reaper.reap(at(160_000)), Vec::<String>::new(), "web is forgotten; db waits to 170 s");
        assert_eq!(reaper.reap(at(170_001)), vec!["db".to_owned()]);
    }
}
