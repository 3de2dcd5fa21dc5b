//! The agent as a process: the signals that stop or reload it, `-auto-reload-config` and the
//! PID file.

use std::sync::Arc;

use super::error::{AgentError, FileAction};
use muster::config;
use muster::http;

/// How often `-auto-reload-config` looks at the configuration files.
pub(crate) const AUTO_RELOAD_POLL: std::time::Duration = std::time::Duration::from_secs(1);

/// `-auto-reload-config`: the files are read again whenever one is added, removed or written
/// (polled: a file's length and modification time, every second).
pub(crate) async fn auto_reload(api: Arc<http::Api>) {
    let mut seen = config::fingerprint(&api.config.sources);
    loop {
        tokio::time::sleep(AUTO_RELOAD_POLL).await;
        let now = config::fingerprint(&api.config.sources);
        if now == seen {
            continue;
        }
        seen = now;
        match http::reload(&api).await {
            Ok(()) => tracing::info!("agent: configuration files changed; reloaded them"),
            Err(reason) => {
                tracing::error!("agent: configuration files changed, but reloading failed: {reason}")
            }
        }
    }
}

/// SIGHUP reads the configuration files again, as Consul's does.
pub(crate) async fn reload_on_sighup(api: Arc<http::Api>) {
    let Ok(mut hangups) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else {
        return;
    };
    while hangups.recv().await.is_some() {
        match http::reload(&api).await {
            Ok(()) => tracing::info!("agent: reloaded the configuration files"),
            Err(reason) => tracing::error!("agent: failed reloading config: {reason}"),
        }
    }
}

/// `-pid-file`: the process ID, written at start and removed when the agent stops.
pub(crate) struct PidFile(std::path::PathBuf);

impl PidFile {
    pub(crate) fn write(path: &std::path::Path) -> Result<PidFile, AgentError> {
        std::fs::write(path, std::process::id().to_string())
            .map_err(AgentError::file(FileAction::Writing, path))?;
        Ok(PidFile(path.to_owned()))
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The signals that stop an agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Signal {
    /// SIGINT (Ctrl-C).
    Interrupt,
    /// SIGTERM.
    Terminate,
}

pub(crate) async fn wait_for_signal() -> Signal {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut terminate) = signal(SignalKind::terminate()) else {
        let _ = tokio::signal::ctrl_c().await;
        return Signal::Interrupt;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => Signal::Interrupt,
        _ = terminate.recv() => Signal::Terminate,
    }
}
