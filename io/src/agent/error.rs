//! Why the agent did not start, or stopped: one type for every step of start-up, printed by
//! [`super::main`] after Consul's `==> ` with exit code 1.

use std::net::SocketAddr;
use std::path::PathBuf;

/// Why the agent did not start, or stopped.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AgentError {
    /// A setting the agent cannot run with: a flag, a file's key, or how they combine, in
    /// Consul's words where it has them.
    #[error("{0}")]
    Setting(String),
    /// A configuration file, fragment or format the agent cannot read, in Consul's words.
    #[error(transparent)]
    Config(#[from] muster::config::ConfigError),
    /// An address setting that names no usable address (a template, `0.0.0.0` without a
    /// private IPv4 address), in Consul's words.
    #[error(transparent)]
    Address(#[from] muster::config::AddressError),
    /// The files' services and checks could not be registered, in the agent API's words.
    #[error(transparent)]
    Definitions(#[from] muster::http::DefinitionError),
    /// What a gossip pool remembers of its last life could not be read.
    #[error(transparent)]
    Remembered(#[from] muster::rejoin::RememberedError),
    /// A gossip pool's keyring file could not be read.
    #[error(transparent)]
    Keyring(#[from] muster::keyring_file::KeyringFileError),
    /// `-syslog` was asked for and cannot be had.
    #[error(transparent)]
    Syslog(#[from] muster::syslog::SyslogError),
    /// A file or directory the agent keeps could not be read, written or created.
    #[error("Error {action} {}: {source}", path.display())]
    File {
        /// What the agent was doing with it.
        action: FileAction,
        /// Which file.
        path: PathBuf,
        /// Why it failed.
        source: std::io::Error,
    },
    /// A file the agent keeps holds what the agent never writes.
    #[error("Error reading {}: {reason}", path.display())]
    Damaged {
        /// Which file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A listener could not be bound.
    #[error("Error binding {listener} {addr}: {source}")]
    Bind {
        /// Which listener.
        listener: Listener,
        /// Where.
        addr: SocketAddr,
        /// Why it failed (in use, not permitted, no such address).
        source: std::io::Error,
    },
    /// State kept on disk could not be opened: Raft's, or a gossip pool's.
    #[error("Error opening {what}: {reason}")]
    Storage {
        /// Which state, and where.
        what: String,
        /// Why.
        reason: String,
    },
    /// The async runtime did not start.
    #[error("Error starting runtime: {0}")]
    Runtime(#[source] std::io::Error),
    /// A task the agent runs failed, or gave up (`-retry-max`).
    #[error("agent stopped: {0}")]
    Stopped(String),
}

/// What the agent was doing with a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FileAction {
    Reading,
    Writing,
    Creating,
    Opening,
}

impl std::fmt::Display for FileAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FileAction::Reading => "reading",
            FileAction::Writing => "writing",
            FileAction::Creating => "creating",
            FileAction::Opening => "opening",
        })
    }
}

/// The agent's listeners, as its errors name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Listener {
    /// A gossip pool's UDP socket.
    GossipUdp,
    /// A gossip pool's TCP listener (push/pull and large messages).
    GossipTcp,
    /// The server port: Raft and RPC.
    Server,
    /// The HTTP API.
    Http,
    /// The HTTPS API.
    Https,
    /// The DNS interface over UDP.
    DnsUdp,
    /// The DNS interface over TCP.
    DnsTcp,
}

impl std::fmt::Display for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Listener::GossipUdp => "UDP",
            Listener::GossipTcp => "TCP",
            Listener::Server => "the server port",
            Listener::Http => "HTTP",
            Listener::Https => "HTTPS",
            Listener::DnsUdp => "DNS (udp)",
            Listener::DnsTcp => "DNS (tcp)",
        })
    }
}

impl AgentError {
    /// A file error, for `map_err`.
    pub(crate) fn file(
        action: FileAction,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> AgentError {
        let path = path.into();
        move |source| AgentError::File { action, path, source }
    }

    /// A bind error, for `map_err`.
    pub(crate) fn bind(listener: Listener, addr: SocketAddr) -> impl FnOnce(std::io::Error) -> AgentError {
        move |source| AgentError::Bind { listener, addr, source }
    }
}

/// A message in Consul's words about a setting.
impl From<String> for AgentError {
    fn from(message: String) -> AgentError {
        AgentError::Setting(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The line after `==> ` names the listener, the address and the operating system's reason,
    /// and a file error the action and the path, as the agent printed them before they had types.
    #[test]
    fn errors_print_what_failed_where() {
        let addr: SocketAddr = "127.0.0.1:8600".parse().unwrap();
        let in_use = std::io::Error::new(std::io::ErrorKind::AddrInUse, "Address already in use");
        assert_eq!(
            AgentError::bind(Listener::DnsUdp, addr)(in_use).to_string(),
            "Error binding DNS (udp) 127.0.0.1:8600: Address already in use"
        );
        let denied = std::io::Error::new(std::io::ErrorKind::PermissionDenied, "Permission denied");
        assert_eq!(
            AgentError::file(FileAction::Writing, "/run/muster.pid")(denied).to_string(),
            "Error writing /run/muster.pid: Permission denied"
        );
        assert_eq!(
            AgentError::Stopped("serf.lan: Retry join failed after 2 attempts".into()).to_string(),
            "agent stopped: serf.lan: Retry join failed after 2 attempts"
        );
    }
}
