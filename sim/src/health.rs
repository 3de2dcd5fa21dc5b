//! Simulated health checking: one agent's checks against seeded targets, on a virtual clock.
//!
//! The agent is the core's pieces, composed as the io shell composes them
//! (`io/src/tasks/checks.rs` and the TTL timers of `io/src/tasks/check_ttl.rs`): [`Runner`] starts
//! runs, [`Damper`](muster_core::health::Damper) (inside the runner) judges results, [`Reaper`]
//! deregisters services critical for too long, [`Deadlines`] expires TTL checks, and
//! [`LocalState::push`] syncs each status change into the catalog's state machine ([`Fsm`]),
//! which stands in for the servers (consensus is simulated elsewhere). A target answers each run
//! after a seeded latency, with the status its [`Behaviour`] gives at that time; a run slower
//! than its timeout is critical, as in the shell.
//!
//! Everything the catalog sees is recorded ([`HealthSim::catalog_changes`]) with every result
//! each check produced ([`HealthSim::results`]), so that tests can hold the catalog's history to
//! the rules; runs are summarised by a [`Trace`] hash.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use muster_core::agent::{LocalState, Row};
use muster_core::deadlines::Deadlines;
use muster_core::fsm::{Check, Command, Fsm, Health, Node, Service};
use muster_core::health::{ttl_expired_output, Reaper, Run, Runner, Schedule, Thresholds, REAP_INTERVAL};
use muster_core::{Instant, Rng};

use crate::trace::Trace;

/// What a check's target answers, as a function of time and of the run.
#[derive(Debug, Clone, PartialEq)]
pub enum Behaviour {
    /// Always this.
    Steady(Health),
    /// Passing and critical by turns, one run each, starting with passing.
    Alternating,
    /// Critical with this probability per run, else passing.
    Flaky { critical_probability: f64 },
    /// `before` until `at`, then `after`.
    Turns { at: Duration, before: Health, after: Health },
    /// Critical from `from` until `to`, passing outside.
    Outage { from: Duration, to: Duration },
}

/// A check's target: its behaviour and how long it takes to answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    /// What it answers.
    pub behaviour: Behaviour,
    /// The shortest time it takes.
    pub latency_min: Duration,
    /// The longest time it takes (past the check's timeout, the run is critical).
    pub latency_max: Duration,
}

impl Target {
    /// A target answering at once-ish (1 to 50 ms).
    pub fn quick(behaviour: Behaviour) -> Target {
        Target { behaviour, latency_min: Duration::from_millis(1), latency_max: Duration::from_millis(50) }
    }
}

/// One agent and the catalog.
#[derive(Debug)]
pub struct HealthSim {
    rng: Rng,
    origin: Instant,
    now: Instant,
    local: LocalState,
    fsm: Fsm,
    index: u64,
    runner: Runner,
    reaper: Reaper,
    ttl: Deadlines,
    targets: BTreeMap<String, Target>,
    /// Runs in flight: when each ends, and the status it ends with.
    in_flight: BTreeMap<(Instant, String), (Run, Health)>,
    runs: BTreeMap<String, u64>,
    next_reap: Instant,
    results: BTreeMap<String, Vec<(Instant, Health)>>,
    catalog_changes: Vec<(Instant, String, Option<Health>)>,
    trace: Trace,
}

impl HealthSim {
    /// An agent for node `node` with nothing registered, its randomness from `seed`.
    pub fn new(seed: u64, node: &str) -> HealthSim {
        let mut rng = Rng::from_seed(seed);
        let runner = Runner::new(Rng::from_seed(rng.next_u64()));
        let origin = Instant::from_millis(1_000);
        let row = Node {
            node: node.into(),
            address: "10.0.0.1".into(),
            datacenter: "dc1".into(),
            ..Node::default()
        };
        let mut sim = HealthSim {
            rng,
            origin,
            now: origin,
            local: LocalState::new(row),
            fsm: Fsm::new(),
            index: 0,
            runner,
            reaper: Reaper::new(),
            ttl: Deadlines::new(),
            targets: BTreeMap::new(),
            in_flight: BTreeMap::new(),
            runs: BTreeMap::new(),
            next_reap: origin + REAP_INTERVAL,
            results: BTreeMap::new(),
            catalog_changes: Vec::new(),
            trace: Trace::default(),
        };
        sim.full_sync();
        sim
    }

    /// Time since the simulation started.
    pub fn elapsed(&self) -> Duration {
        self.now.saturating_duration_since(self.origin)
    }

    /// Registers `service` with `checks`, each run against its target (TTL checks have none).
    pub fn add_service(&mut self, service: Service, checks: Vec<(Check, Option<Target>)>) {
        let (checks, targets): (Vec<Check>, Vec<Option<Target>>) = checks.into_iter().unzip();
        let ids: Vec<String> = checks.iter().map(|c| c.check_id.clone()).collect();
        let id = service.id.clone();
        self.local.add_service(service, checks).expect("a valid registration");
        self.push(&Row::Service(id));
        for (id, target) in ids.iter().zip(targets) {
            self.start(id, target);
        }
    }

    /// Registers a check, run against `target` (`None` for a TTL check).
    pub fn add_check(&mut self, check: Check, target: Option<Target>) {
        let id = check.check_id.clone();
        self.local.add_check(check).expect("a valid registration");
        self.push(&Row::Check(id.clone()));
        self.start(&id, target);
    }

    /// A TTL update (`/v1/agent/check/pass` and friends): the status and output, and the TTL
    /// counts again from now.
    pub fn ttl_update(&mut self, id: &str, status: Health, output: &str) {
        let ttl = Duration::from_nanos(self.local.checks()[id].definition.ttl_ns);
        self.ttl.set(id, self.now + ttl);
        self.record(id, status, output.to_owned());
    }

    /// Runs until `elapsed()` reaches `until`.
    pub fn run_until(&mut self, until: Duration) {
        let end = self.origin + until;
        loop {
            let next = [
                self.runner.poll_timeout(),
                self.in_flight.keys().next().map(|(at, _)| *at),
                self.ttl.next(),
                Some(self.next_reap),
            ]
            .into_iter()
            .flatten()
            .min()
            .expect("the reaper is always due");
            if next > end {
                self.now = end;
                return;
            }
            assert!(next >= self.now, "time runs forwards");
            self.now = next;
            self.step();
        }
    }

    /// What the catalog says of check `id`: its status, or `None` when it has no such check.
    pub fn catalog_status(&self, id: &str) -> Option<Health> {
        self.fsm.catalog().check(self.local.node().node.as_str(), id).map(|c| c.status)
    }

    /// The catalog's output for check `id`.
    pub fn catalog_output(&self, id: &str) -> Option<String> {
        self.fsm.catalog().check(self.local.node().node.as_str(), id).map(|c| c.output.clone())
    }

    /// Whether the catalog has service `id` on this node.
    pub fn catalog_has_service(&self, id: &str) -> bool {
        self.fsm.catalog().service(self.local.node().node.as_str(), id).is_some()
    }

    /// Every change of a check's status the catalog saw: when (since the start), which check, and
    /// its status (`None`: removed).
    pub fn catalog_changes(&self) -> Vec<(Duration, String, Option<Health>)> {
        self.catalog_changes
            .iter()
            .map(|(at, id, status)| (at.saturating_duration_since(self.origin), id.clone(), *status))
            .collect()
    }

    /// Every result check `id` produced, in order: when (since the start) and what.
    pub fn results(&self, id: &str) -> Vec<(Duration, Health)> {
        let results = self.results.get(id).map_or(&[][..], Vec::as_slice);
        results.iter().map(|(at, health)| (at.saturating_duration_since(self.origin), *health)).collect()
    }

    /// How many runs of check `id` started.
    pub fn runs(&self, id: &str) -> u64 {
        self.runs.get(id).copied().unwrap_or(0)
    }

    /// The run's trace.
    pub fn trace(&self) -> &Trace {
        &self.trace
    }

    fn start(&mut self, id: &str, target: Option<Target>) {
        let check = self.local.checks()[id].clone();
        let d = &check.definition;
        if let Some(target) = target {
            assert!(d.interval_ns > 0, "a check with a target runs on an interval");
            let schedule = Schedule {
                interval: Duration::from_nanos(d.interval_ns),
                timeout: Duration::from_nanos(d.timeout_ns.max(1)),
                thresholds: Thresholds {
                    success_before_passing: d.success_before_passing,
                    failures_before_warning: d.failures_before_warning,
                    failures_before_critical: d.failures_before_critical,
                },
            };
            self.runner.add(self.now, id, schedule);
            self.targets.insert(id.to_owned(), target);
        }
        if d.ttl_ns > 0 {
            self.ttl.set(id, self.now + Duration::from_nanos(d.ttl_ns));
        }
        let after = Duration::from_nanos(d.deregister_critical_service_after_ns);
        if !check.service_id.is_empty() && !after.is_zero() {
            self.reaper.watch(self.now, id, &check.service_id, after, check.status);
        }
    }

    fn step(&mut self) {
        let now = self.now;
        // Runs that end now.
        while let Some(entry) = self.in_flight.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let (run, result) = entry.remove();
            self.results.entry(run.check_id.clone()).or_default().push((now, result));
            self.trace.record(now.as_nanos(), 0, &("result", &run.check_id, result));
            if let Some(status) = self.runner.on_result(now, &run, result) {
                self.record(&run.check_id, status, format!("{result:?}"));
            }
        }
        // Runs that start now.
        while let Some(run) = self.runner.poll_run(now) {
            let target = self.targets[&run.check_id].clone();
            let count = self.runs.entry(run.check_id.clone()).or_default();
            *count += 1;
            let nth = *count;
            let latency = self.rng.duration_between(target.latency_min, target.latency_max);
            let (ends, result) = if latency > run.timeout {
                (now + run.timeout, Health::Critical)
            } else {
                let ends = now + latency;
                (ends, self.answer(&target.behaviour, ends, nth))
            };
            self.in_flight.insert((ends, run.check_id.clone()), (run, result));
        }
        // TTLs that ran out.
        for id in self.ttl.expired(now) {
            let Some(check) = self.local.checks().get(&id) else { continue };
            let output = ttl_expired_output(&check.output);
            self.record(&id, Health::Critical, output);
        }
        if now >= self.next_reap {
            self.next_reap = now + REAP_INTERVAL;
            for service in self.reaper.reap(now) {
                self.trace.record(now.as_nanos(), 0, &("reaped", &service));
                let checks = self.local.remove_service(&service).expect("a watched service exists");
                for id in &checks {
                    self.runner.remove(id);
                    self.ttl.remove(id);
                    self.targets.remove(id);
                }
                self.push(&Row::Service(service));
            }
        }
    }

    fn answer(&mut self, behaviour: &Behaviour, at: Instant, nth: u64) -> Health {
        let elapsed = at.saturating_duration_since(self.origin);
        match behaviour {
            Behaviour::Steady(health) => *health,
            Behaviour::Alternating if nth % 2 == 1 => Health::Passing,
            Behaviour::Alternating => Health::Critical,
            Behaviour::Flaky { critical_probability } => {
                let draw = self.rng.next_u64() as f64 / u64::MAX as f64;
                if draw < *critical_probability {
                    Health::Critical
                } else {
                    Health::Passing
                }
            }
            Behaviour::Turns { at, before, after } => {
                if elapsed < *at {
                    *before
                } else {
                    *after
                }
            }
            Behaviour::Outage { from, to } if elapsed >= *from && elapsed < *to => Health::Critical,
            Behaviour::Outage { .. } => Health::Passing,
        }
    }

    /// A check's new status and output, as the shell applies one: a status change goes to the
    /// catalog at once; an output-only change stays local (anti-entropy carries it later).
    fn record(&mut self, id: &str, status: Health, output: String) {
        let Some(was) = self.local.checks().get(id).map(|c| c.status) else { return };
        self.local.update_check(id, status, output).expect("the check exists");
        self.reaper.observe(self.now, id, status);
        if was != status {
            self.push(&Row::Check(id.to_owned()));
        }
    }

    /// Writes `row` to the catalog, and records what changed there.
    fn push(&mut self, row: &Row) {
        let command = self.local.push(row);
        self.apply(&command);
    }

    fn full_sync(&mut self) {
        let name = self.local.node().node.clone();
        let catalog = self.fsm.catalog();
        let services: Vec<Service> =
            catalog.node_services(&name).1.map(|(_, s)| s.into_iter().cloned().collect()).unwrap_or_default();
        let checks: Vec<Check> = catalog.node_checks(&name).1.into_iter().cloned().collect();
        let plan = self.local.plan(catalog.node(&name), &services, &checks);
        for command in plan {
            self.apply(&command);
        }
    }

    /// The catalog's status of each of this node's checks.
    fn catalog_statuses(&self) -> BTreeMap<String, Health> {
        let name = &self.local.node().node;
        self.fsm.catalog().node_checks(name).1.into_iter().map(|c| (c.check_id.clone(), c.status)).collect()
    }

    fn apply(&mut self, command: &Command) {
        let before = self.catalog_statuses();
        self.index += 1;
        let now_ms = self.now.as_nanos() / 1_000_000;
        let applied = self.fsm.apply_command(self.index, now_ms, command);
        self.trace.record(self.now.as_nanos(), 0, &applied);
        let after = self.catalog_statuses();
        let ids: BTreeSet<&String> = before.keys().chain(after.keys()).collect();
        for id in ids {
            if before.get(id) != after.get(id) {
                self.catalog_changes.push((self.now, id.clone(), after.get(id).copied()));
            }
        }
    }
}
