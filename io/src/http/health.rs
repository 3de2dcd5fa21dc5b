//! The task that runs the agent's checks ([`crate::checks`] executes them; the core's
//! [`Runner`] says when, [`Damper`](muster_core::health::Damper) what a result means and
//! [`Reaper`] which services to drop) and applies each result to the agent's local state; and
//! the task that keeps alias checks in step with what they mirror.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use muster_core::agent::Rows;
use muster_core::deadlines::Deadlines;
use muster_core::fsm::CheckKind;
use muster_core::fsm::{Check, Health};
use muster_core::health::{
    alias_status, Reaper, Run, Runner, Schedule, Thresholds, CHECK_UPDATE_INTERVAL, REAP_INTERVAL,
};

use super::{Api, HttpError};

/// The agent's check schedule and reaper, shared by the task and the runs it starts.
#[derive(Debug)]
pub struct CheckRunner {
    inner: Mutex<Inner>,
    /// Wakes the task when a run ended (the next one's time is known only then).
    wake: tokio::sync::Notify,
    origin: tokio::time::Instant,
    /// How long an output-only change waits before it syncs (`check_update_interval`); zero
    /// syncs each at once.
    update_interval: std::time::Duration,
}

#[derive(Debug)]
struct Inner {
    runner: Runner,
    reaper: Reaper,
    /// When each check whose output-only change is held back from the catalog is due there.
    deferred: Deadlines,
    /// The rows the runner and reaper were set up from, to notice changes of definition (the
    /// rows are shared with the local state: this holds pointers, not copies).
    known: BTreeMap<String, Arc<Check>>,
}

impl CheckRunner {
    /// No checks; staggers drawn from `seed`.
    pub fn new(seed: u64) -> CheckRunner {
        let inner = Inner {
            runner: Runner::new(muster_core::Rng::from_seed(seed)),
            reaper: Reaper::new(),
            deferred: Deadlines::new(),
            known: BTreeMap::new(),
        };
        CheckRunner {
            inner: Mutex::new(inner),
            wake: tokio::sync::Notify::new(),
            origin: tokio::time::Instant::now(),
            update_interval: CHECK_UPDATE_INTERVAL,
        }
    }

    /// The same, with output-only changes held back for `interval` (Consul's
    /// `check_update_interval`) instead of [`CHECK_UPDATE_INTERVAL`]; zero syncs them at once.
    pub fn with_update_interval(mut self, interval: std::time::Duration) -> CheckRunner {
        self.update_interval = interval;
        self
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn now(&self) -> muster_core::Instant {
        crate::drive::core_now(self.origin)
    }

    /// Brings the runner and reaper in line with the local state's checks, from the rows that
    /// changed since `before`: new and changed ones (re)start, removed ones stop, and every
    /// changed check's status is observed.
    fn refresh(&self, before: &Rows<Check>, after: &Rows<Check>) {
        let now = self.now();
        let mut inner = self.lock();
        for (id, check) in muster_core::agent::changed_rows(before, after) {
            let Some(check) = check else {
                inner.known.remove(id);
                inner.runner.remove(id);
                inner.reaper.forget(id);
                continue;
            };
            let same = inner.known.get(id).is_some_and(|known| {
                known.kind == check.kind
                    && known.service_id == check.service_id
                    && known.definition == check.definition
            });
            if !same {
                inner.runner.remove(id);
                inner.reaper.forget(id);
                if crate::checks::is_runnable(check) {
                    let d = &check.definition;
                    let schedule = Schedule {
                        interval: std::time::Duration::from_nanos(d.interval_ns),
                        timeout: crate::checks::timeout_of(check),
                        thresholds: Thresholds {
                            success_before_passing: d.success_before_passing,
                            failures_before_warning: d.failures_before_warning,
                            failures_before_critical: d.failures_before_critical,
                        },
                    };
                    inner.runner.add(now, id, schedule);
                }
                let after =
                    std::time::Duration::from_nanos(check.definition.deregister_critical_service_after_ns);
                if !check.service_id.is_empty() && !after.is_zero() {
                    inner.reaper.watch(now, id, &check.service_id, after, check.status);
                }
            }
            // Kept current even when the definition is the same, so that the old row is freed.
            inner.known.insert(id.clone(), Arc::clone(check));
            inner.reaper.observe(now, id, check.status);
        }
    }
}

/// Runs the agent's checks for as long as it runs.
pub async fn run_checks(api: Arc<Api>) {
    let mut changes = api.local.subscribe();
    let mut reap = tokio::time::interval(REAP_INTERVAL);
    reap.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seen = None;
    let mut before = Rows::new();
    loop {
        // Only a change of the local state can add, change or remove a check: look then, and
        // only at the rows that changed (an agent with 10,000 checks changes one at a time).
        let version = *changes.borrow_and_update();
        if seen != Some(version) {
            seen = Some(version);
            let after = api.local.state().checks().clone();
            api.checks.refresh(&before, &after);
            before = after;
        }
        let (runs, due_outputs, next) = {
            let now = api.checks.now();
            let mut inner = api.checks.lock();
            let runs: Vec<Run> = std::iter::from_fn(|| inner.runner.poll_run(now)).collect();
            let due_outputs = inner.deferred.expired(now);
            let next = [inner.runner.poll_timeout(), inner.deferred.next()].into_iter().flatten().min();
            (runs, due_outputs, next)
        };
        for run in runs {
            tokio::spawn(run_one(api.clone(), run));
        }
        if !due_outputs.is_empty() {
            tokio::spawn(sync_deferred_outputs(api.clone(), due_outputs));
        }
        let sleep = async {
            match next {
                Some(due) => {
                    let at = api.checks.origin + std::time::Duration::from_nanos(due.as_nanos());
                    tokio::time::sleep_until(at).await;
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = sleep => {}
            () = api.checks.wake.notified() => {}
            changed = changes.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            _ = reap.tick() => reap_services(&api).await,
        }
    }
}

/// One run of one check, and what it changes.
async fn run_one(api: Arc<Api>, run: Run) {
    let Some(check) = api.local.state().checks().get(&run.check_id).cloned() else { return };
    let outcome = crate::checks::execute(&check, run.timeout).await;
    let status = {
        let now = api.checks.now();
        api.checks.lock().runner.on_result(now, &run, outcome.status)
    };
    api.checks.wake.notify_one();
    if let Some(status) = status {
        record(&api, run.check_id, status, outcome.output).await;
    }
}

/// Gives check `id` `status` and `output`: a status change is synced to the catalog at once
/// and persisted; an output-only change is kept here, and reaches the catalog after
/// [`CHECK_UPDATE_INTERVAL`] (with the first such change) or with the next status change.
pub(super) async fn record(api: &Api, id: String, status: Health, output: String) {
    let current = api.local.state().checks().get(&id).map(|c| (c.status, c.output.clone()));
    match current {
        None => {}
        Some((was, previous))
            if was != status || (api.checks.update_interval.is_zero() && previous != output) =>
        {
            // Consul's words for a status change (its checks' `StatusHandler`).
            match status {
                _ if was == status => {}
                Health::Critical => tracing::warn!(check = %id, "agent: Check is now critical"),
                _ => tracing::debug!(check = %id, status = status.as_str(), "agent: Check status updated"),
            }
            let row = muster_core::agent::Row::Check(id.clone());
            let update = |state: &mut muster_core::agent::LocalState| {
                state.update_check(&id, status, output).map(|_| ((), Some(vec![row])))
            };
            let result = super::agent::change_and_push(api, None, update).await;
            if let Err(error) = result.and_then(|()| super::agent::persist_check(api, &id)) {
                tracing::warn!(check = %id, reason = %error.reason, "agent: updating a check failed");
            }
        }
        Some((_, was)) if was != output => {
            let deferred_now = {
                let mut state = api.local.state();
                state.update_check(&id, status, output).is_ok() && state.defer_output(&id)
            };
            if deferred_now {
                let due = api.checks.now() + api.checks.update_interval;
                api.checks.lock().deferred.set(&id, due);
                api.checks.wake.notify_one();
            }
            api.local.bump();
        }
        Some(_) => {}
    }
}

/// Syncs the outputs held back for [`CHECK_UPDATE_INTERVAL`] (those whose status changed since
/// went with it already).
async fn sync_deferred_outputs(api: Arc<Api>, due: Vec<String>) {
    let rows: Vec<muster_core::agent::Row> = {
        let mut state = api.local.state();
        due.into_iter()
            .filter(|id| state.end_output_deferral(id))
            .map(muster_core::agent::Row::Check)
            .collect()
    };
    if rows.is_empty() {
        return;
    }
    let count = rows.len();
    if let Err(error) = super::agent::change_and_push(&api, None, |_| Ok(((), Some(rows)))).await {
        tracing::warn!(checks = count, reason = %error.reason, "agent: syncing check outputs failed");
    }
}

/// How often an alias of another node's service or health asks the catalog. Consul holds a
/// blocking query open instead; a poll costs one read of the node's rows.
const ALIAS_POLL_INTERVAL: Duration = Duration::from_secs(1);

/// Runs the agent's alias checks (`AliasService`, `AliasNode`): each mirrors the health of a
/// service or node ([`alias_status`]). An alias of this agent's own service follows the local
/// state as it changes; an alias naming a node reads that node's rows from the catalog every
/// [`ALIAS_POLL_INTERVAL`], and turns critical once two reads in a row fail.
pub async fn run_alias_checks(api: Arc<Api>) {
    let mut changes = api.local.subscribe();
    let mut poll = tokio::time::interval(ALIAS_POLL_INTERVAL);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failures: BTreeMap<String, u32> = BTreeMap::new();
    loop {
        let aliases: Vec<Arc<Check>> =
            api.local.state().checks().values().filter(|c| c.kind == CheckKind::Alias).cloned().collect();
        let mut remote: BTreeMap<String, Result<crate::rpc::NodeRows, HttpError>> = BTreeMap::new();
        for node in aliases.iter().map(|a| &a.definition.alias_node).filter(|n| !n.is_empty()) {
            if !remote.contains_key(node) {
                let rows = api.node_rows(node).await;
                let failed = failures.entry(node.clone()).or_default();
                *failed = if rows.is_ok() { 0 } else { failed.saturating_add(1) };
                remote.insert(node.clone(), rows);
            }
        }
        for alias in aliases {
            let d = &alias.definition;
            let (status, output) = if d.alias_node.is_empty() {
                let state = api.local.state();
                let exists = state.services().contains_key(&d.alias_service);
                let others = state.checks().values().filter(|c| c.check_id != alias.check_id);
                alias_status(others.map(AsRef::as_ref), "", &d.alias_service, exists)
            } else {
                match &remote[&d.alias_node] {
                    Ok(rows) => {
                        let exists = rows.services.iter().any(|s| s.id == d.alias_service);
                        let others = rows
                            .checks
                            .iter()
                            .filter(|c| c.node != alias.node || c.check_id != alias.check_id);
                        alias_status(others, &d.alias_node, &d.alias_service, exists)
                    }
                    Err(_) if failures.get(&d.alias_node).copied().unwrap_or(0) < 2 => continue,
                    Err(error) => (
                        Health::Critical,
                        format!("Failure checking aliased node or service: {}", error.reason),
                    ),
                }
            };
            record(&api, alias.check_id.clone(), status, output).await;
        }
        tokio::select! {
            changed = changes.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            _ = poll.tick() => {}
        }
    }
}

/// Deregisters the services whose check has been critical past its
/// `DeregisterCriticalServiceAfter`.
async fn reap_services(api: &Api) {
    let due = {
        let now = api.checks.now();
        api.checks.lock().reaper.reap(now)
    };
    for service in due {
        tracing::info!(service = %service, "agent: check critical for too long; deregistering service");
        if let Err(error) = super::agent::remove_service(api, &service).await {
            tracing::warn!(service = %service, reason = %error.reason, "agent: deregistering failed");
        }
    }
}
