//! The agent's local state ([`LocalState`]) on real parts: behind a lock for the HTTP handlers,
//! and, when the agent has a data directory, kept on disk so that what was registered through
//! `/v1/agent/...` survives a restart, as Consul keeps it (`<data-dir>/services`,
//! `<data-dir>/checks`, one JSON file per row, named by the row's ID in hex).
//!
//! Each file is replaced atomically ([`crate::storage::replace_file`]), so a crash leaves the
//! old row or the new one, never half of either. `-dev` keeps nothing.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use muster_core::agent::LocalState;
use muster_core::fsm::{Check, Node, Service};

/// The agent's local state and where it is kept.
#[derive(Debug)]
pub struct LocalAgent {
    state: Mutex<LocalState>,
    /// The data directory, or `None` under `-dev`.
    dir: Option<PathBuf>,
    /// Held across one change and the catalog sync that follows it, so that changes and syncs
    /// happen one at a time (a sync plans from the catalog as the previous one left it).
    serial: tokio::sync::Mutex<()>,
    /// Signalled when a change could not be synced; the anti-entropy task retries on it.
    pub changed: tokio::sync::Notify,
    /// Counts the changes made, for the readers that block until the state changes.
    version: tokio::sync::watch::Sender<u64>,
}

const SERVICES_DIR: &str = "services";
const CHECKS_DIR: &str = "checks";

impl LocalAgent {
    /// The local state for `node`: empty under `-dev` (`dir` is `None`), else what `dir` holds.
    /// A file that cannot be read is reported and skipped, not fatal: the agent starts with
    /// the rest, and the operator sees which registration was lost.
    pub fn open(node: Node, dir: Option<PathBuf>) -> std::io::Result<LocalAgent> {
        let mut state = LocalState::new(node);
        if let Some(dir) = &dir {
            std::fs::create_dir_all(dir.join(SERVICES_DIR))?;
            std::fs::create_dir_all(dir.join(CHECKS_DIR))?;
            for service in read_rows::<Service>(&dir.join(SERVICES_DIR))? {
                if let Err(error) = state.add_service(service, Vec::new()) {
                    tracing::warn!(%error, "agent: skipping a persisted service");
                }
            }
            for check in read_rows::<Check>(&dir.join(CHECKS_DIR))? {
                if let Err(error) = state.add_check(check) {
                    tracing::warn!(%error, "agent: skipping a persisted check");
                }
            }
        }
        Ok(LocalAgent {
            state: Mutex::new(state),
            dir,
            serial: tokio::sync::Mutex::new(()),
            changed: tokio::sync::Notify::new(),
            version: tokio::sync::watch::Sender::new(0),
        })
    }

    /// The state, to read or change. Keep the guard short: handlers and the sync share it.
    pub fn state(&self) -> MutexGuard<'_, LocalState> {
        // A panic while holding the lock is a bug elsewhere; the state itself stays whole
        // (every change checks before it writes), so go on with it.
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Wakes the readers blocked on the state: call after each change.
    pub fn bump(&self) {
        self.version.send_modify(|version| *version += 1);
    }

    /// A receiver that sees every later [`LocalAgent::bump`].
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.version.subscribe()
    }

    /// Waits for the turn to change the state and sync it.
    pub async fn serialize(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.serial.lock().await
    }

    /// Writes a service's row (and, through [`LocalAgent::save_check`], its checks') to disk.
    pub fn save_service(&self, service: &Service) -> std::io::Result<()> {
        self.write_row(SERVICES_DIR, &service.id, service)
    }

    /// Writes a check's row, state included (a TTL check keeps its last status).
    pub fn save_check(&self, check: &Check) -> std::io::Result<()> {
        self.write_row(CHECKS_DIR, &check.check_id, check)
    }

    /// Deletes a service's row.
    pub fn forget_service(&self, id: &str) -> std::io::Result<()> {
        self.remove_row(SERVICES_DIR, id)
    }

    /// Deletes a check's row.
    pub fn forget_check(&self, id: &str) -> std::io::Result<()> {
        self.remove_row(CHECKS_DIR, id)
    }

    fn write_row<T: serde::Serialize>(&self, kind: &str, id: &str, row: &T) -> std::io::Result<()> {
        let Some(dir) = &self.dir else { return Ok(()) };
        let body = serde_json::to_vec(row).map_err(std::io::Error::other)?;
        crate::storage::replace_file(&dir.join(kind).join(file_name(id)), &body)
    }

    fn remove_row(&self, kind: &str, id: &str) -> std::io::Result<()> {
        let Some(dir) = &self.dir else { return Ok(()) };
        match std::fs::remove_file(dir.join(kind).join(file_name(id))) {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => Err(error),
            _ => std::fs::File::open(dir.join(kind))?.sync_all(),
        }
    }
}

/// A row's file name: its ID in hex, so any ID is a safe name.
fn file_name(id: &str) -> String {
    let mut name: String = id.bytes().map(|b| format!("{b:02x}")).collect();
    name.push_str(".json");
    name
}

/// Every row in `dir`, in file-name order.
fn read_rows<T: serde::de::DeserializeOwned>(dir: &Path) -> std::io::Result<Vec<T>> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|e| e == "json"))
        .collect();
    paths.sort();
    let mut rows = Vec::with_capacity(paths.len());
    for path in paths {
        match std::fs::read(&path).map(|bytes| serde_json::from_slice::<T>(&bytes)) {
            Ok(Ok(row)) => rows.push(row),
            Ok(Err(error)) => {
                tracing::warn!(path = %path.display(), %error, "agent: skipping a malformed file")
            }
            Err(error) => {
                tracing::warn!(path = %path.display(), %error, "agent: skipping an unreadable file")
            }
        }
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use muster_core::fsm::{CheckKind, Health};

    fn node() -> Node {
        Node { node: "n1".into(), address: "127.0.0.1".into(), ..Node::default() }
    }

    #[test]
    fn rows_survive_a_reopen_and_forgotten_ones_do_not() {
        let dir = std::env::temp_dir().join(format!("muster-local-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let web = Service { id: "web/1".into(), service: "web".into(), port: 80, ..Service::default() };
        let db = Service { id: "db".into(), service: "db".into(), ..Service::default() };
        let check = Check {
            check_id: "web-ttl".into(),
            service_id: "web/1".into(),
            kind: CheckKind::Ttl,
            status: Health::Passing,
            ..Check::default()
        };
        {
            let agent = LocalAgent::open(node(), Some(dir.clone())).unwrap();
            let mut state = agent.state();
            state.add_service(web.clone(), vec![check.clone()]).unwrap();
            state.add_service(db.clone(), vec![]).unwrap();
            for service in state.services().values() {
                agent.save_service(service).unwrap();
            }
            agent.save_check(&state.checks()["web-ttl"]).unwrap();
            agent.forget_service("db").unwrap();
        }
        std::fs::write(dir.join(CHECKS_DIR).join("zz.json"), b"{not json").unwrap();
        let agent = LocalAgent::open(node(), Some(dir.clone())).unwrap();
        let state = agent.state();
        let ids: Vec<&String> = state.services().keys().collect();
        assert_eq!(ids, vec!["web/1"]);
        assert_eq!(state.services()["web/1"].port, 80);
        let restored = &state.checks()["web-ttl"];
        assert_eq!(
            (restored.status, restored.service_name.as_str(), restored.node.as_str()),
            (Health::Passing, "web", "n1")
        );
        drop(state);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
