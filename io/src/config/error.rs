//! What can go wrong reading the configuration. Each error displays in Consul's words (or, where
//! Consul has none, muster's own, in the same style): the agent, `muster validate` and the
//! reload endpoint print them as they are, and the tests compare the text.

use std::net::IpAddr;
use std::path::PathBuf;

use muster_core::duration::DurationError;

use super::{hcl1, multierror, sockaddr, RAFT_MULTIPLIER_MAX};

/// A configuration source that cannot be used: unreadable, unparsable, or holding a key or a
/// value that is refused. Every variant names the file (or `-hcl` fragment) it is about.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A `-config-file` whose extension says neither JSON nor HCL, with no `-config-format`.
    #[error("Error loading {}: config file must have a .json or .hcl extension", path.display())]
    UnknownExtension {
        /// The file named.
        path: PathBuf,
    },
    /// A file or directory that cannot be read.
    #[error("Error reading {}: {source}", path.display())]
    Read {
        /// The file or directory.
        path: PathBuf,
        /// Why the operating system refused.
        source: std::io::Error,
    },
    /// A `.json` file that is not JSON.
    #[error("failed to parse {file}: {source}")]
    Json {
        /// The file.
        file: String,
        /// serde_json's complaint, with its position.
        source: serde_json::Error,
    },
    /// A `.json` file whose top level is not an object.
    #[error("failed to parse {file}: the top level must be an object")]
    NotAnObject {
        /// The file.
        file: String,
    },
    /// An `.hcl` file or `-hcl` fragment that is not HCL.
    #[error("failed to parse {file}: {source}")]
    Hcl {
        /// The file, or `flags-<n>.hcl` for the n-th `-hcl` fragment.
        file: String,
        /// Where and what, as HCL1 says it.
        source: hcl1::ParseError,
    },
    /// Keys the table refused ([`super::keys`]): unknown ones, values of the wrong type, or
    /// values asking for protection muster does not give; go-multierror's list of them.
    #[error("failed to parse {file}: {}", multierror(errors))]
    Keys {
        /// The source, as Consul names it.
        file: String,
        /// One line each, in Consul's words.
        errors: Vec<String>,
    },
    /// A value the table let through that muster cannot use.
    #[error("failed to parse {file}: {source}")]
    Value {
        /// The source, as Consul names it.
        file: String,
        /// Which key, and what is wrong with its value (boxed: it is the largest error here,
        /// and every `Result` of the loader would carry its size).
        source: Box<ValueError>,
    },
    /// A `-config-format` other than `json` or `hcl`.
    #[error("Invalid config format {0:?}: must be json or hcl")]
    UnknownFormat(String),
}

/// One key's value that cannot be used; `key` is its dotted path (`ports.http`).
#[derive(Debug, thiserror::Error)]
pub enum ValueError {
    /// A string was expected.
    #[error("{key}: expected a string")]
    NotAString {
        /// The key.
        key: String,
    },
    /// A bool was expected.
    #[error("{key}: expected true or false")]
    NotABool {
        /// The key.
        key: String,
    },
    /// A number was expected.
    #[error("{key}: expected a number")]
    NotANumber {
        /// The key.
        key: String,
    },
    /// A whole number that fits the setting was expected.
    #[error("{key}: expected a number in range")]
    NumberOutOfRange {
        /// The key.
        key: String,
    },
    /// A count of at least -1 (-1 meaning none) was expected.
    #[error("{key}: expected -1 or more")]
    BelowMinusOne {
        /// The key.
        key: String,
    },
    /// A port number, or -1 to turn the listener off, was expected.
    #[error("{key}: expected a port or -1")]
    NotAPort {
        /// The key.
        key: String,
    },
    /// A string or a list of strings was expected.
    #[error("{key}: expected a list of strings")]
    NotStrings {
        /// The key.
        key: String,
    },
    /// An object was expected.
    #[error("{key}: expected an object")]
    NotAnObject {
        /// The key.
        key: String,
    },
    /// An object or a list of objects was expected (`service`, `checks`, ...).
    #[error("{key}: expected an object or a list of objects")]
    NotObjects {
        /// The key.
        key: String,
    },
    /// A setting that must name something names nothing (a template that yields no address).
    #[error("{key} cannot be empty")]
    Empty {
        /// The key.
        key: String,
    },
    /// A Go duration that does not parse.
    #[error("{key}: {source}")]
    Duration {
        /// The key.
        key: String,
        /// Why it does not parse.
        source: DurationError,
    },
    /// A duration in whole seconds beyond `u32::MAX`.
    #[error("{key}: too long")]
    TooLong {
        /// The key.
        key: String,
    },
    /// An address, list of addresses or go-sockaddr template that does not resolve.
    #[error("{key}: {source}")]
    Address {
        /// The key.
        key: String,
        /// Why it does not resolve.
        source: AddressError,
    },
    /// A `unix://` listener: muster serves none, and TCP instead would expose the API wider.
    #[error(
        "{key}: muster does not serve on unix sockets yet, and serving on TCP instead would expose it wider \
         than asked; muster will not run less secure than this configuration asks"
    )]
    UnixSocket {
        /// The key.
        key: String,
    },
    /// `performance.raft_multiplier` outside 1 to [`RAFT_MULTIPLIER_MAX`].
    #[error("performance.raft_multiplier cannot be {0}. Must be between 1 and {RAFT_MULTIPLIER_MAX}")]
    RaftMultiplier(i64),
    /// `dns_config.recursor_strategy` other than `sequential` or `random`.
    #[error("{key}: expected \"sequential\" or \"random\", not {strategy:?}")]
    RecursorStrategy {
        /// The key.
        key: String,
        /// What the file asked for.
        strategy: String,
    },
}

/// An address setting that does not give the address(es) it must, in Consul's words.
#[derive(Debug, thiserror::Error)]
pub enum AddressError {
    /// This machine's interfaces cannot be listed (a template needs them).
    #[error("Error reading the network interfaces: {0}")]
    Interfaces(#[source] std::io::Error),
    /// A go-sockaddr template that does not parse or execute.
    #[error("error parsing {template:?}: {source}")]
    Template {
        /// The template, trimmed.
        template: String,
        /// go-sockaddr's complaint.
        source: sockaddr::TemplateError,
    },
    /// A word that is neither an IP address nor a template.
    #[error("expected an IP address or a template, not {0:?}")]
    NotAnAddress(String),
    /// A template that yields no address where one is needed.
    #[error("no address found in {0:?}")]
    NoneFound(String),
    /// Several addresses where one is needed.
    #[error("multiple addresses found: {}", spaced(.0))]
    Multiple(Vec<IpAddr>),
    /// No private IPv4 address to advertise when bound to every address.
    #[error("No private IPv4 address found")]
    NoPrivateIpv4,
    /// Several private IPv4 addresses, and Consul will not guess which to advertise.
    #[error("Multiple private IPv4 addresses found. Please configure one with 'bind' and/or 'advertise'.")]
    MultiplePrivateIpv4,
}

fn spaced(addresses: &[IpAddr]) -> String {
    addresses.iter().map(ToString::to_string).collect::<Vec<_>>().join(" ")
}
