//! `muster services register|deregister`: services of the local agent, from flags or from
//! service definitions in configuration files, as Consul 1.20's `command/services/register` and
//! `command/services/deregister` make them.
//!
//! A file argument is read as the agent reads its configuration files (`config::load`, then the
//! agent's own decoding of each definition, which refuses what the agent would refuse), and each
//! of its services is sent to `PUT /v1/agent/service/register` as the file spells it: the agent
//! reads every spelling of a key (`enable_tag_override`, `EnableTagOverride`). When files are
//! given, the flags describing a service are ignored, as in Consul 1.20.

use std::collections::BTreeMap;
use std::path::PathBuf;

use clap::{Args, Subcommand};
use muster::config;
use serde_json::{Map, Value};

use super::{CliError, Client, HttpArgs, Outcome};
use crate::cli::GoSetError;

/// `muster services <subcommand>`.
#[derive(Debug, Subcommand)]
pub(crate) enum ServicesCommand {
    /// Registers services with the local agent, from flags or files.
    Register(RegisterArgs),
    /// Deregisters services from the local agent, by -id or from files.
    Deregister(DeregisterArgs),
}

#[derive(Debug, Args)]
pub(crate) struct RegisterArgs {
    #[command(flatten)]
    http: HttpArgs,
    #[command(flatten)]
    tenancy: super::TenancyArgs,
    /// The service's ID; defaults to -name.
    #[arg(long, default_value = "")]
    id: String,
    /// The service's name.
    #[arg(long, default_value = "")]
    name: String,
    /// The service's address; empty means the node's.
    #[arg(long, default_value = "")]
    address: String,
    /// The service's port.
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    port: i64,
    /// A Unix domain socket path instead of an address and port.
    #[arg(long, default_value = "")]
    socket: String,
    /// Metadata, `key=value`. Repeatable.
    #[arg(long, value_parser = key_value)]
    meta: Vec<(String, String)>,
    /// A tag. Repeatable.
    #[arg(long)]
    tag: Vec<String>,
    /// A tagged address, `name=host:port`. Repeatable.
    #[arg(long = "tagged-address", value_parser = key_value)]
    tagged_address: Vec<(String, String)>,
    /// The service's kind (`connect-proxy`, `mesh-gateway`, ...).
    #[arg(long, default_value = "")]
    kind: String,
    /// Configuration files (JSON or HCL) holding service definitions.
    files: Vec<PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct DeregisterArgs {
    #[command(flatten)]
    http: HttpArgs,
    #[command(flatten)]
    tenancy: super::TenancyArgs,
    /// The ID of the service to deregister; not with file arguments.
    #[arg(long, default_value = "")]
    id: String,
    /// Configuration files (JSON or HCL) holding the service definitions to deregister.
    files: Vec<PathBuf>,
}

pub(crate) fn run(command: ServicesCommand) -> Outcome {
    match command {
        ServicesCommand::Register(args) => register(&args),
        ServicesCommand::Deregister(args) => deregister(&args),
    }
}

fn register(args: &RegisterArgs) -> Outcome {
    // Consul checks the tagged addresses first, then the arguments.
    let tagged_addresses = args
        .tagged_address
        .iter()
        .cloned()
        .collect::<BTreeMap<_, _>>()
        .into_iter()
        .map(|(name, address)| {
            let (host, port) = parse_service_address(&address).map_err(CliError::TaggedAddress)?;
            Ok((name, serde_json::json!({ "Address": host, "Port": port })))
        })
        .collect::<Result<Map<String, Value>, CliError>>()?;
    if args.files.is_empty() && args.name.is_empty() {
        return Err(CliError::usage("Service registration requires at least one argument or flags."));
    }
    if !args.files.is_empty() && !args.name.is_empty() {
        return Err(CliError::usage("Service registration requires arguments or -id, not both."));
    }
    let services = if args.files.is_empty() {
        vec![(args.name.clone(), from_flags(args, tagged_addresses))]
    } else {
        services_from_files(&args.files)?.into_iter().map(|s| (s.name, s.definition)).collect()
    };
    let client = Client::new(&args.http.in_tenancy(&args.tenancy))?;
    for (name, definition) in services {
        let body = serde_json::to_vec(&definition).expect("a JSON value serializes");
        client
            .put("/v1/agent/service/register", &[], &body)
            .and_then(|reply| reply.ok())
            .map_err(CliError::client(format!("Error registering service {name:?}")))?;
        println!("Registered service: {name}");
    }
    Ok(0)
}

/// The registration the flags describe, as Consul's `api.AgentServiceRegistration` encodes it:
/// its fields in that order, the empty ones left out.
fn from_flags(args: &RegisterArgs, tagged_addresses: Map<String, Value>) -> Value {
    let mut body = Map::new();
    let mut text = |key: &str, value: &str| {
        if !value.is_empty() {
            body.insert(key.to_owned(), Value::from(value));
        }
    };
    text("Kind", &args.kind);
    text("ID", &args.id);
    text("Name", &args.name);
    if !args.tag.is_empty() {
        body.insert("Tags".into(), Value::from(args.tag.clone()));
    }
    if args.port != 0 {
        body.insert("Port".into(), Value::from(args.port));
    }
    let mut text = |key: &str, value: &str| {
        if !value.is_empty() {
            body.insert(key.to_owned(), Value::from(value));
        }
    };
    text("Address", &args.address);
    text("SocketPath", &args.socket);
    if !tagged_addresses.is_empty() {
        body.insert("TaggedAddresses".into(), Value::Object(tagged_addresses));
    }
    // A key given twice keeps its last value, as Go's map does.
    let meta: BTreeMap<&str, &str> = args.meta.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    if !meta.is_empty() {
        body.insert("Meta".into(), serde_json::json!(meta));
    }
    Value::Object(body)
}

fn deregister(args: &DeregisterArgs) -> Outcome {
    if args.files.is_empty() && args.id.is_empty() {
        return Err(CliError::usage("Service deregistration requires at least one argument or -id."));
    }
    if !args.files.is_empty() && !args.id.is_empty() {
        return Err(CliError::usage("Service deregistration requires arguments or -id, not both."));
    }
    // (name, ID): the name only words an error, as in Consul (empty for -id).
    let services: Vec<(String, String)> = if args.files.is_empty() {
        vec![(String::new(), args.id.clone())]
    } else {
        services_from_files(&args.files)?.into_iter().map(|s| (s.name, s.id)).collect()
    };
    let client = Client::new(&args.http.in_tenancy(&args.tenancy))?;
    for (name, id) in services {
        if id.is_empty() {
            continue;
        }
        client
            .put(&format!("/v1/agent/service/deregister/{id}"), &[], &[])
            .and_then(|reply| reply.ok())
            .map_err(CliError::client(format!("Error deregistering service {name:?}")))?;
        println!("Deregistered service: {id}");
    }
    Ok(0)
}

/// A service definition read from a file.
struct FileService {
    /// Its name.
    name: String,
    /// Its ID (the name when the file gives none).
    id: String,
    /// The definition as the file holds it.
    definition: Value,
}

/// Every service the files (or directories of them) define, in order, read and checked as the
/// agent reads its configuration; the warnings go to stderr, as Consul's `ui.Warn`.
fn services_from_files(paths: &[PathBuf]) -> Result<Vec<FileService>, CliError> {
    let sources = config::Sources {
        paths: paths
            .iter()
            .map(
                |p| if p.is_dir() { config::Source::Dir(p.clone()) } else { config::Source::File(p.clone()) },
            )
            .collect(),
        ..config::Sources::default()
    };
    let refused = |source: muster::http::DefinitionError| CliError::Definitions { doing: "Error", source };
    let file = config::load(&sources).map_err(|error| refused(error.into()))?;
    for warning in &file.warnings {
        eprintln!("{warning}");
    }
    // Script checks are the agent's to refuse: the definitions are checked as if allowed.
    let (decoded, _checks) = muster::http::definitions(&file, true).map_err(refused)?;
    assert_eq!(decoded.len(), file.services.len(), "one decoded service per definition");
    Ok(decoded
        .into_iter()
        .zip(&file.services)
        .map(|((service, _), (_, definition))| FileService {
            name: service.service,
            id: service.id,
            definition: definition.clone(),
        })
        .collect())
}

/// A `key=value` flag (Consul's `FlagMapValue`): split at the first `=`.
pub(crate) fn key_value(text: &str) -> Result<(String, String), GoSetError> {
    match text.split_once('=') {
        Some((key, value)) => Ok((key.to_owned(), value.to_owned())),
        None => Err(GoSetError(format!("Missing \"=\" value in argument: {text}"))),
    }
}

/// Why a service address is not `host:port`, in Go's words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum AddressError {
    /// `net.SplitHostPort` refused it.
    #[error("address {text}: {why}")]
    Split {
        /// The address.
        text: String,
        /// Go's reason (`missing port in address`).
        why: &'static str,
    },
    /// `strconv.Atoi` refused the port.
    #[error("strconv.Atoi: parsing {port:?}: {why}")]
    Port {
        /// The port's text.
        port: String,
        /// Go's reason (`invalid syntax`, `value out of range`).
        why: &'static str,
    },
}

/// Consul's `api.ParseServiceAddr`: `host:port` split as Go's `net.SplitHostPort` splits it,
/// the port read by `strconv.Atoi`; the error in Go's words.
fn parse_service_address(text: &str) -> Result<(String, i64), AddressError> {
    let (host, port) =
        split_host_port(text).map_err(|why| AddressError::Split { text: text.to_owned(), why })?;
    let port = port.parse::<i64>().map_err(|error| {
        let why = match error.kind() {
            std::num::IntErrorKind::PosOverflow | std::num::IntErrorKind::NegOverflow => "value out of range",
            _ => "invalid syntax",
        };
        AddressError::Port { port: port.to_owned(), why }
    })?;
    Ok((host.to_owned(), port))
}

/// Go's `net.SplitHostPort`: the host (brackets removed) and the port, or why not.
fn split_host_port(text: &str) -> Result<(&str, &str), &'static str> {
    const MISSING_PORT: &str = "missing port in address";
    const TOO_MANY_COLONS: &str = "too many colons in address";
    let Some(colon) = text.rfind(':') else { return Err(MISSING_PORT) };
    let (host, host_end) = if text.starts_with('[') {
        let Some(end) = text.find(']') else { return Err("missing ']' in address") };
        if end + 1 == text.len() {
            return Err(MISSING_PORT);
        }
        if end + 1 != colon {
            return Err(if text.as_bytes()[end + 1] == b':' { TOO_MANY_COLONS } else { MISSING_PORT });
        }
        (&text[1..end], end + 1)
    } else {
        let host = &text[..colon];
        if host.contains(':') {
            return Err(TOO_MANY_COLONS);
        }
        (host, 0)
    };
    let host_start = usize::from(text.starts_with('['));
    if text[host_start..].contains('[') {
        return Err("unexpected '[' in address");
    }
    if text[host_end..].contains(']') {
        return Err("unexpected ']' in address");
    }
    Ok((host, &text[colon + 1..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tagged_addresses_split_as_go_splits_them() {
        assert_eq!(parse_service_address("10.0.0.1:80"), Ok(("10.0.0.1".to_owned(), 80)));
        assert_eq!(parse_service_address("[::1]:8080"), Ok(("::1".to_owned(), 8080)));
        assert_eq!(
            parse_service_address("10.0.0.1").unwrap_err().to_string(),
            "address 10.0.0.1: missing port in address"
        );
        assert_eq!(
            parse_service_address("a:b:1").unwrap_err().to_string(),
            "address a:b:1: too many colons in address"
        );
        assert_eq!(
            parse_service_address("[::1").unwrap_err().to_string(),
            "address [::1: missing ']' in address"
        );
        assert_eq!(
            parse_service_address("[::1]").unwrap_err().to_string(),
            "address [::1]: missing port in address"
        );
        assert_eq!(
            parse_service_address("h:x").unwrap_err().to_string(),
            "strconv.Atoi: parsing \"x\": invalid syntax"
        );
        assert_eq!(
            parse_service_address("h:").unwrap_err().to_string(),
            "strconv.Atoi: parsing \"\": invalid syntax"
        );
    }

    #[test]
    fn meta_needs_an_equals_sign() {
        assert_eq!(key_value("a=b=c").unwrap(), ("a".to_owned(), "b=c".to_owned()));
        assert_eq!(key_value("a=").unwrap(), ("a".to_owned(), String::new()));
        assert_eq!(key_value("ab").unwrap_err().0, "Missing \"=\" value in argument: ab");
    }
}
