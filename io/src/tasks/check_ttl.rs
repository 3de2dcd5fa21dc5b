//! The agent's TTL check timers: each TTL check turns critical, with Consul's "TTL expired"
//! output, once its TTL passes without an update.
//!
//! Feeds: the local state (a check's status) and, through anti-entropy, the catalog. Drains:
//! the timers ([`CheckTtl`]), which the HTTP handlers reset on every registration and update.

use std::sync::Arc;

use muster_core::agent::{LocalState, Row};
use muster_core::deadlines::Deadlines;
use muster_core::fsm::{Check, CheckKind, Health};
use muster_core::health::ttl_expired_output;

use super::anti_entropy::change_and_push;
use crate::http::{persist_check, Api};
use crate::timers::Clocked;

/// The agent's TTL check timers: reset by every registration and update of a TTL check; a
/// check not updated within its TTL turns critical with Consul's "TTL expired" output.
pub type CheckTtl = Clocked<Deadlines>;

/// Restarts the timer of each TTL check among `checks`.
pub(crate) fn reset_timers(api: &Api, checks: &[Check]) {
    api.check_ttl.update(|timers, now| {
        for check in checks.iter().filter(|c| c.kind == CheckKind::Ttl && c.definition.ttl_ns > 0) {
            timers.set(&check.check_id, now + std::time::Duration::from_nanos(check.definition.ttl_ns));
        }
    });
}

/// Runs the agent's TTL timers: starts one for every TTL check it has, then marks each check
/// critical once its TTL passes without an update.
pub async fn run_check_ttl_timers(api: Arc<Api>) {
    let existing: Vec<Check> = api.local.state().checks().values().map(|c| Check::clone(c)).collect();
    reset_timers(&api, &existing);
    loop {
        for id in api.check_ttl.expired().await {
            tracing::warn!(check = %id, "agent: Check missed TTL, is now critical");
            let expire = |state: &mut LocalState| {
                let output = state.checks().get(&id).map(|c| ttl_expired_output(&c.output));
                let rows = Some(vec![Row::Check(id.clone())]);
                match output {
                    Some(output) => state.update_check(&id, Health::Critical, output).map(|_| ((), rows)),
                    None => Ok(((), None)),
                }
            };
            let marked = change_and_push(&api, None, expire).await.and_then(|()| persist_check(&api, &id));
            if let Err(error) = marked {
                tracing::warn!(check = %id, reason = %error.reason, "agent: marking an expired check failed");
            }
        }
    }
}
