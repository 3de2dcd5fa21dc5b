//! Anti-entropy: keeps the catalog's rows for this agent's node equal to its local state
//! ([`crate::local::LocalAgent`], the authority for the node), as Consul's `agent/ae` and
//! `local.State.SyncChanges` do.
//!
//! Feeds: catalog writes ([`Api::write`], through Raft on the leader). Drains: the local
//! state's change signal (`local.changed`) and the catalog's rows for the node. Each change is
//! pushed at once ([`change_and_push`], called by the HTTP handlers and the check tasks); the
//! task [`run_anti_entropy`] compares the whole node every [`ANTI_ENTROPY_INTERVAL`] and
//! fixes any drift.

use std::sync::Arc;

use muster_core::agent::{LocalError, LocalState, Row};

use crate::http::{Api, HttpError};

/// How often the agent compares its whole node in the catalog with its local state and fixes
/// any drift (Consul's 1 minute for clusters up to 128 nodes).
pub const ANTI_ENTROPY_INTERVAL: std::time::Duration = std::time::Duration::from_secs(60);
/// How soon a failed sync is tried again (Consul's 15 seconds).
const SYNC_RETRY: std::time::Duration = std::time::Duration::from_secs(15);

/// Makes the catalog's rows for this agent's node match its local state. The caller holds the
/// local agent's turn ([`crate::local::LocalAgent::serialize`]).
async fn sync_local(api: &Api) -> Result<(), HttpError> {
    let rows = api.node_rows(&api.node_name).await?;
    let plan = api.local.state().plan(rows.node.as_ref(), &rows.services, &rows.checks);
    for command in plan {
        write_logged(api, &command).await?;
    }
    Ok(())
}

/// Writes one sync command and logs it in the words Consul's anti-entropy uses
/// (`agent: Synced service: service=web`), so operators' greps keep working.
async fn write_logged(api: &Api, command: &muster_core::fsm::Command) -> Result<(), HttpError> {
    use muster_core::fsm::Command;
    api.write(command).await?;
    match command {
        Command::Register(register) => match &register.service {
            Some(service) => tracing::info!(service = %service.id, "agent: Synced service"),
            None if register.checks.is_empty() => tracing::info!("agent: Synced node info"),
            None => {
                for check in &register.checks {
                    tracing::info!(check = %check.check_id, "agent: Synced check");
                }
            }
        },
        Command::Deregister(deregister) => match (&deregister.service_id, &deregister.check_id) {
            (Some(service), _) => tracing::info!(service = %service, "agent: Deregistered service"),
            (None, Some(check)) => tracing::info!(check = %check, "agent: Deregistered check"),
            (None, None) => {}
        },
        _ => {}
    }
    Ok(())
}

/// Anti-entropy: a full sync at start (once there is a leader), then every
/// [`ANTI_ENTROPY_INTERVAL`] (plus up to as much again at random, so agents started together
/// spread out), sooner after a change whose own sync failed.
pub async fn run_anti_entropy(api: Arc<Api>) {
    api.wait_for_route().await;
    loop {
        let result = {
            let _turn = api.local.serialize().await;
            sync_local(&api).await
        };
        let pause = match result {
            Ok(()) => ANTI_ENTROPY_INTERVAL + crate::consensus::jitter(ANTI_ENTROPY_INTERVAL),
            Err(error) => {
                tracing::warn!(reason = %error.reason, "agent: failed to sync remote state");
                SYNC_RETRY + crate::consensus::jitter(SYNC_RETRY)
            }
        };
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            () = api.local.changed.notified() => {}
        }
    }
}

/// Applies one change to the local state and syncs the whole node into the catalog (a full
/// plan), one change at a time; see [`change_and_push`].
pub(crate) async fn change_and_sync<R>(
    api: &Api,
    undo: Option<LocalState>,
    change: impl FnOnce(&mut LocalState) -> Result<R, LocalError>,
) -> Result<R, HttpError> {
    change_and_push(api, undo, |state| change(state).map(|changed| (changed, None))).await
}

/// Applies one change to the local state and syncs it into the catalog, one change at a time:
/// by writing just the rows the change names (Consul's partial sync: one write, whatever the
/// number of services and checks the agent has), or, when it names none or a write of them
/// fails, by a full plan. If the catalog refuses the full sync too (bad input it alone can
/// judge), the state goes back to `undo` (taken before the change) and the refusal is the
/// answer; if the sync fails for want of a leader, the change stands and anti-entropy syncs it
/// later, as Consul does.
pub(crate) async fn change_and_push<R>(
    api: &Api,
    undo: Option<LocalState>,
    change: impl FnOnce(&mut LocalState) -> Result<(R, Option<Vec<Row>>), LocalError>,
) -> Result<R, HttpError> {
    let _turn = api.local.serialize().await;
    let (changed, rows) = change(&mut api.local.state()).map_err(crate::http::local_error)?;
    api.local.bump();
    if !api.has_route() {
        // Nothing to sync with yet: anti-entropy syncs once there is a leader. Waiting here
        // would hold the caller (an HTTP client, or the agent starting) for no purpose.
        api.local.changed.notify_one();
        return Ok(changed);
    }
    let pushed = match rows {
        Some(rows) => push_rows(api, &rows).await,
        None => Err(HttpError::internal("no rows named")),
    };
    let synced = match pushed {
        Ok(()) => Ok(()),
        // The catalog may lack what a row depends on (a check's service): the full plan
        // writes everything in order.
        Err(_) => sync_local(api).await,
    };
    match synced {
        Ok(()) => Ok(changed),
        Err(refused) if refused.status.is_client_error() && undo.is_some() => {
            *api.local.state() = undo.expect("checked");
            api.local.bump();
            if let Err(error) = sync_local(api).await {
                tracing::warn!(reason = %error.reason, "agent: failed to sync remote state");
            }
            Err(refused)
        }
        Err(error) => {
            tracing::warn!(reason = %error.reason, "agent: failed to sync remote state; retrying");
            api.local.changed.notify_one();
            Ok(changed)
        }
    }
}

/// Writes each of `rows` as the agent has it now.
async fn push_rows(api: &Api, rows: &[Row]) -> Result<(), HttpError> {
    let commands: Vec<muster_core::fsm::Command> = {
        let state = api.local.state();
        rows.iter().map(|row| state.push(row)).collect()
    };
    for command in commands {
        write_logged(api, &command).await?;
    }
    Ok(())
}
