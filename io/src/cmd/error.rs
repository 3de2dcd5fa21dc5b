//! Why a client command failed: one type for every command, each variant a kind of failure
//! that really occurs, its text Consul's. `main`'s `finish` is the one place that prints it
//! (to stderr) and exits 1, as Consul's commands do with `UI.Error` then `return 1`.

use std::path::PathBuf;

use muster_core::duration::DurationError;

use super::ClientError;

/// What a command ends with: its exit code, or why it failed (printed, then exit code 1).
pub(crate) type Outcome = Result<u8, CliError>;

/// Why a command failed, in Consul's words.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CliError {
    /// The command line is wrong: an argument missing or one too many, flags that do not go
    /// together, a value a flag does not take.
    #[error("{0}")]
    Usage(String),
    /// A flag's regular expression (`-status`, `-node`, `-service`, `-tag`) does not compile.
    #[error("Failed to compile {what} regexp: {source}")]
    Regex {
        /// The flag, as Consul's message names it (`status`, `node filter`).
        what: &'static str,
        source: regex::Error,
    },
    /// A duration flag that is not Go's syntax.
    #[error("Invalid -{flag} {text:?}: {source}")]
    Duration {
        /// The flag's name, without its dash.
        flag: &'static str,
        /// The value given.
        text: String,
        source: DurationError,
    },
    /// The agent could not be reached, or answered with an error.
    #[error("{doing}: {source}")]
    Client {
        /// Consul's words for what the command was doing (`Error listing datacenters`).
        doing: String,
        source: ClientError,
    },
    /// The agent answered, but not with what the command needed: a key that is not there, a
    /// check-and-set that lost, a join that reached nobody.
    #[error("{0}")]
    Refused(String),
    /// A data argument (`@file`, or `-` for stdin) could not be read.
    #[error("{prefix}{source}")]
    Data {
        /// What the command puts before the reason (`kv`'s `Error! `), separator included.
        prefix: &'static str,
        source: DataError,
    },
    /// Input that is not the JSON expected.
    #[error("{doing}: {source}")]
    Json {
        /// Consul's words for what the command was doing.
        doing: String,
        source: serde_json::Error,
    },
    /// Input that is not base64.
    #[error("{doing}: {source}")]
    Base64 {
        /// Consul's words for what the command was doing.
        doing: String,
        source: base64::DecodeError,
    },
    /// A file named by an argument could not be opened or read.
    #[error("{doing}: {source}")]
    File {
        /// Consul's words for what the command was doing.
        doing: &'static str,
        source: FileError,
    },
    /// Reading or writing failed other than at opening a file: a rename, a write, `/dev/urandom`.
    #[error("{doing}: {source}")]
    Io {
        /// Consul's words for what the command was doing.
        doing: &'static str,
        source: std::io::Error,
    },
    /// Configuration files, or the services and checks they define, are refused.
    #[error("{doing}: {source}")]
    Definitions {
        /// Consul's words for what the command was doing.
        doing: &'static str,
        source: muster::http::DefinitionError,
    },
    /// A snapshot archive that a restore would refuse.
    #[error("{doing}: {source}")]
    Archive {
        /// Consul's words for what the command was doing.
        doing: &'static str,
        source: muster::http::InspectError,
    },
    /// A `-tagged-address` that is not `host:port`.
    #[error("Invalid Tagged Address: {0}")]
    TaggedAddress(#[source] super::services::AddressError),
    /// A watch's handler could not be run, or failed.
    #[error(transparent)]
    Handler(#[from] HandlerError),
    /// A watch's first query failed: the agent cannot be reached at all.
    #[error("Error querying Consul agent: {0}")]
    Watch(#[source] super::watch::ViewError),
    /// `lock` could not take the lock (or a semaphore slot).
    #[error("Lock acquisition failed: {0}")]
    Lock(#[source] super::lock::LockError),
    /// `lock` gave up waiting: `-timeout` passed, or a signal came.
    #[error("Shutdown triggered or timeout during lock acquisition")]
    LockAbandoned,
    /// `debug` failed, in its own (`==> `-prefixed) words.
    #[error(transparent)]
    Debug(#[from] super::debug::DebugError),
}

impl CliError {
    /// A usage error in Consul's words.
    pub(crate) fn usage(text: impl Into<String>) -> CliError {
        CliError::Usage(text.into())
    }

    /// A refusal in Consul's words.
    pub(crate) fn refused(text: impl Into<String>) -> CliError {
        CliError::Refused(text.into())
    }

    /// For `map_err`: a failed request, after Consul's words for what the command was doing.
    pub(crate) fn client(doing: impl Into<String>) -> impl FnOnce(ClientError) -> CliError {
        let doing = doing.into();
        move |source| CliError::Client { doing, source }
    }

    /// For `map_err`: input that did not decode as JSON, after what the command was doing.
    pub(crate) fn json(doing: impl Into<String>) -> impl FnOnce(serde_json::Error) -> CliError {
        let doing = doing.into();
        move |source| CliError::Json { doing, source }
    }

    /// For `map_err`: input that did not decode as base64, after what the command was doing.
    pub(crate) fn base64(doing: impl Into<String>) -> impl FnOnce(base64::DecodeError) -> CliError {
        let doing = doing.into();
        move |source| CliError::Base64 { doing, source }
    }

    /// For `map_err`: an I/O failure, after what the command was doing.
    pub(crate) fn io(doing: &'static str) -> impl FnOnce(std::io::Error) -> CliError {
        move |source| CliError::Io { doing, source }
    }
}

/// A file that could not be opened or read, as Go's `os` package words it (`open x: no such
/// file or directory`), which Consul's messages embed.
#[derive(Debug, thiserror::Error)]
#[error("open {}: {}", path.display(), go_reason(source))]
pub(crate) struct FileError {
    /// The file, as given.
    pub(crate) path: PathBuf,
    pub(crate) source: std::io::Error,
}

impl FileError {
    /// For `map_err`: `path` could not be opened or read.
    pub(crate) fn at(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> FileError {
        let path = path.into();
        move |source| FileError { path, source }
    }
}

/// The reason of Go's `*PathError`: the errno's words for the common kinds.
fn go_reason(error: &std::io::Error) -> String {
    match error.kind() {
        std::io::ErrorKind::NotFound => "no such file or directory".to_owned(),
        std::io::ErrorKind::PermissionDenied => "permission denied".to_owned(),
        _ => error.to_string(),
    }
}

/// Why a data argument could not be read ([`super::data_argument`]).
#[derive(Debug, thiserror::Error)]
pub(crate) enum DataError {
    /// `@file`: the file.
    #[error("Failed to read file: {0}")]
    File(#[from] FileError),
    /// `-`: standard input.
    #[error("Failed to read stdin: {0}")]
    Stdin(#[source] std::io::Error),
}

/// Why a handler (`watch`'s, `lock`'s child) did not run to success.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HandlerError {
    /// It could not be started (`watch`).
    #[error("Error starting handler: {0}")]
    Start(#[source] std::io::Error),
    /// It could not be started (`lock`, which words it so) or waited for (`watch`).
    #[error("Error executing handler: {0}")]
    Execute(#[source] std::io::Error),
    /// Its status could not be read (`lock`).
    #[error("Error waiting for handler: {0}")]
    Wait(#[source] std::io::Error),
    /// It exited with a failure.
    #[error("Error executing handler: {}", super::watch::go_exit(.0))]
    Failed(std::process::ExitStatus),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_read_as_consuls() {
        let missing = std::io::Error::from(std::io::ErrorKind::NotFound);
        let file = FileError::at("a.json")(missing);
        assert_eq!(file.to_string(), "open a.json: no such file or directory");
        let data = CliError::Data { prefix: "Error! ", source: DataError::File(file) };
        assert_eq!(data.to_string(), "Error! Failed to read file: open a.json: no such file or directory");
        let status = ClientError::Status { status: 500, body: "boom".into() };
        assert_eq!(
            CliError::client("Error listing datacenters")(status).to_string(),
            "Error listing datacenters: Unexpected response code: 500 (boom)"
        );
    }
}
