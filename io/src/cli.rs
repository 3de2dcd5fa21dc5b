//! The command line, in Consul's dialect.
//!
//! Consul's flags are Go-style: one dash for long names (`-dev`, `-http-addr=...`), with two
//! dashes accepted too. clap speaks GNU style, so [`normalize`] rewrites the command line into
//! clap's canonical form first ([`crate::goflag`], which the fuzz crate compiles in alone).

use std::ffi::OsString;
use std::net::IpAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::cmd;

/// The `muster` command.
#[derive(Debug, Parser)]
#[command(
    name = "muster",
    about = "Consul-compatible service discovery and configuration",
    disable_version_flag = true,
    // Go's flag package: a flag given twice takes its last value (lists keep every one).
    args_override_self = true
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Subcommands,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Subcommands {
    /// Runs a muster agent.
    Agent(Box<AgentArgs>),
    /// Prints the muster version.
    Version(cmd::version::VersionArgs),
    /// Generates a new 32-byte gossip encryption key, base64 encoded.
    Keygen,
    /// Checks configuration files (and directories of them) without starting an agent.
    Validate(ValidateArgs),
    /// Lists the members of the gossip pool.
    Members(cmd::cluster::MembersArgs),
    /// Prints the agent's statistics, by section.
    Info(cmd::cluster::InfoArgs),
    /// Tells the agent to join others.
    Join(cmd::cluster::JoinArgs),
    /// Makes the agent leave its pools gracefully and stop.
    Leave(cmd::cluster::LeaveArgs),
    /// Marks a failed node as left.
    ForceLeave(cmd::cluster::ForceLeaveArgs),
    /// Makes the agent read its configuration files again.
    Reload(cmd::cluster::ReloadArgs),
    /// Streams the agent's log.
    Monitor(cmd::monitor::MonitorArgs),
    /// Puts the node or a service into maintenance mode, takes it out, or lists what is in it.
    Maint(cmd::cluster::MaintArgs),
    /// Fires a user event.
    Event(cmd::cluster::EventArgs),
    /// Lists, installs, uses and removes gossip encryption keys on every member.
    Keyring(cmd::keyring::KeyringArgs),
    /// Reads and writes the key/value store.
    #[command(subcommand)]
    Kv(cmd::kv::KvCommand),
    /// Lists the catalog's datacenters, nodes and services.
    #[command(subcommand)]
    Catalog(cmd::catalog::CatalogCommand),
    /// Operator tools: Raft's peers and leadership, Autopilot.
    #[command(subcommand)]
    Operator(cmd::catalog::OperatorCommand),
    /// Saves, restores and inspects snapshots of the servers' state.
    #[command(subcommand)]
    Snapshot(cmd::snapshot::SnapshotCommand),
    /// Runs a handler each time a view of the cluster changes (or prints the view once).
    Watch(cmd::watch::WatchArgs),
    /// Runs a command while holding a lock, or one of -n semaphore slots, in the KV store.
    Lock(cmd::lock::LockArgs),
    /// Runs a command on the nodes (agents with `disable_remote_exec = false`).
    Exec(cmd::exec::ExecArgs),
    /// Records a debugging archive of an agent for operators.
    Debug(cmd::debug::DebugArgs),
    /// Registers and deregisters services of the local agent.
    #[command(subcommand)]
    Services(cmd::services::ServicesCommand),
    /// Renders consul-template templates from the catalog and KV, again at every change.
    Template(cmd::template::TemplateArgs),
    /// Manages ACLs: the bootstrap, tokens and policies.
    #[command(subcommand)]
    Acl(cmd::acl::AclCommand),
    /// Builtin helpers for creating CAs and certificates.
    #[command(subcommand, after_help = cmd::tls::TLS_EXAMPLES)]
    Tls(cmd::tls::TlsCommand),
}

/// Arguments of `muster validate`.
#[derive(Debug, Args)]
pub(crate) struct ValidateArgs {
    /// Files (`*.json`, `*.hcl`) and directories of them.
    #[arg(required = true)]
    pub(crate) paths: Vec<PathBuf>,
    /// Prints nothing on success.
    #[arg(long)]
    pub(crate) quiet: bool,
    /// The format of the files whatever their extension: json or hcl.
    #[arg(long = "config-format")]
    pub(crate) config_format: Option<String>,
}

/// Flags of `muster agent`, named as Consul names them.
#[derive(Debug, Args)]
pub(crate) struct AgentArgs {
    /// Development mode: binds to 127.0.0.1 and keeps all state in memory.
    #[arg(long)]
    pub(crate) dev: bool,
    /// The node's name; defaults to the host name.
    #[arg(long = "node")]
    pub(crate) node: Option<String>,
    /// The address gossip binds to.
    #[arg(long = "bind", value_parser = muster::config::resolve_address)]
    pub(crate) bind: Option<IpAddr>,
    /// The address advertised to other nodes; defaults to the bind address.
    #[arg(long = "advertise", value_parser = muster::config::resolve_address)]
    pub(crate) advertise: Option<IpAddr>,
    /// The LAN gossip port.
    #[arg(long = "serf-lan-port", default_value_t = 8301)]
    pub(crate) serf_lan_port: u16,
    /// The WAN gossip port (servers only); -1 keeps the server out of the WAN pool.
    #[arg(long = "serf-wan-port", default_value_t = 8302, allow_negative_numbers = true)]
    pub(crate) serf_wan_port: i32,
    /// Server mode: also joins the WAN pool of servers across datacenters. -dev implies it.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub(crate) server: Option<bool>,
    /// The datacenter this agent belongs to.
    #[arg(long = "datacenter", default_value = "dc1")]
    pub(crate) datacenter: String,
    /// Where durable state lives. Required unless -dev.
    #[arg(long = "data-dir")]
    pub(crate) data_dir: Option<PathBuf>,
    /// An agent to join at start (host:port, or an IP for the default port). Repeatable. Joins
    /// are retried every 30 s until one is answered, as with Consul's -retry-join.
    #[arg(long = "join", alias = "retry-join")]
    pub(crate) join: Vec<String>,
    /// How long before a join that found nobody is tried again (a Go duration; Consul's
    /// default is 30s).
    #[arg(long = "retry-interval")]
    pub(crate) retry_interval: Option<String>,
    /// How long before a WAN join that found nobody is tried again (Consul's default: 30s).
    #[arg(long = "retry-interval-wan")]
    pub(crate) retry_interval_wan: Option<String>,
    /// How many join attempts before the agent gives up and exits 1 (0: for ever, the default).
    #[arg(long = "retry-max")]
    pub(crate) retry_max: Option<u32>,
    /// A server to join in the WAN pool at start (host:port, or an IP for the default WAN
    /// port). Repeatable; retried like -join.
    #[arg(long = "join-wan", alias = "retry-join-wan")]
    pub(crate) join_wan: Vec<String>,
    /// The gossip encryption key: 16, 24 or 32 bytes, base64 encoded (`muster keygen` makes one).
    #[arg(long = "encrypt")]
    pub(crate) encrypt: Option<String>,
    /// Bootstrap mode: this server elects itself and forms a one-server cluster. -dev implies
    /// it.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub(crate) bootstrap: Option<bool>,
    /// Servers to wait for before starting Raft together: once gossip shows this many servers
    /// of the datacenter, all expecting the same number, they bootstrap as one cluster.
    #[arg(long = "bootstrap-expect", default_value_t = 0)]
    pub(crate) bootstrap_expect: usize,
    /// The address the HTTP API (and later DNS) binds to.
    #[arg(long = "client", value_parser = muster::config::resolve_address)]
    pub(crate) client: Option<IpAddr>,
    /// The HTTP API's port; -1 disables it.
    #[arg(long = "http-port", default_value_t = 8500, allow_negative_numbers = true)]
    pub(crate) http_port: i32,
    /// The DNS interface's port (UDP and TCP); -1 disables it.
    #[arg(long = "dns-port", default_value_t = 8600, allow_negative_numbers = true)]
    pub(crate) dns_port: i32,
    /// The domain DNS answers for.
    #[arg(long = "domain", default_value = "consul.")]
    pub(crate) domain: String,
    /// A second domain DNS answers for.
    #[arg(long = "alt-domain")]
    pub(crate) alt_domain: Option<String>,
    /// An upstream DNS server for names outside the domain (`ip` or `ip:port`). Repeatable.
    #[arg(long = "recursor")]
    pub(crate) recursor: Vec<String>,
    /// The port servers serve Raft (and later RPC) on.
    #[arg(long = "server-port", default_value_t = 8300)]
    pub(crate) server_port: u16,
    /// Accepts script checks from the HTTP API and configuration files (a script check is code
    /// any API client can make the agent run: off by default, as in Consul).
    #[arg(long = "enable-script-checks", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub(crate) enable_script_checks: Option<bool>,
    /// Accepts script checks from configuration files only.
    #[arg(long = "enable-local-script-checks", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub(crate) enable_local_script_checks: Option<bool>,
    /// Ignores a previous graceful leave and joins the members it knew again at start.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub(crate) rejoin: Option<bool>,
    /// A configuration file (`*.json` or `*.hcl`). Repeatable; read in order with the
    /// -config-dir directories.
    #[arg(long = "config-file")]
    pub(crate) config_file: Vec<PathBuf>,
    /// A directory whose `*.json` and `*.hcl` files are read in lexical order. Repeatable.
    #[arg(long = "config-dir")]
    pub(crate) config_dir: Vec<PathBuf>,
    /// Reads the configuration files again whenever one is added, removed or written.
    #[arg(long = "auto-reload-config", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub(crate) auto_reload_config: Option<bool>,
    /// The format of -config-file files whatever their extension: json or hcl.
    #[arg(long = "config-format")]
    pub(crate) config_format: Option<String>,
    /// A fragment of HCL configuration, read after the files. Repeatable.
    #[arg(long = "hcl")]
    pub(crate) hcl: Vec<String>,
    /// The log level: trace, debug, info, warn or error (MUSTER_LOG, a tracing filter, wins).
    #[arg(long = "log-level")]
    pub(crate) log_level: Option<String>,
    /// Logs JSON lines instead of text.
    #[arg(long = "log-json", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub(crate) log_json: Option<bool>,
    /// Also appends the log to this file (a path ending in `/` is a directory, in which the
    /// file is `muster-<Unix seconds>.log`).
    #[arg(long = "log-file")]
    pub(crate) log_file: Option<PathBuf>,
    /// Rotates the log file once it holds this many bytes (0: no limit).
    #[arg(long = "log-rotate-bytes")]
    pub(crate) log_rotate_bytes: Option<u64>,
    /// Rotates the log file once it has been open this long (default 24h).
    #[arg(long = "log-rotate-duration")]
    pub(crate) log_rotate_duration: Option<String>,
    /// Rotated log files to keep: 0 keeps all, -1 none.
    #[arg(long = "log-rotate-max-files", allow_negative_numbers = true)]
    pub(crate) log_rotate_max_files: Option<i64>,
    /// Also sends the log to the local syslog daemon.
    #[arg(long = "syslog", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub(crate) syslog: Option<bool>,
    /// The syslog facility (`syslog_facility` in files; LOCAL0 by default).
    #[arg(skip = String::from("LOCAL0"))]
    pub(crate) syslog_facility: String,
    /// Writes the agent's process ID to this file, removed at exit.
    #[arg(long = "pid-file")]
    pub(crate) pid_file: Option<PathBuf>,
    /// Node metadata, `key:value`, in the catalog and DNS TXT records. Repeatable.
    #[arg(long = "node-meta")]
    pub(crate) node_meta: Vec<String>,
    /// The node's ID (a UUID); random, and kept in the data directory, when absent.
    #[arg(long = "node-id")]
    pub(crate) node_id: Option<String>,
    /// The address the WAN pool advertises; defaults to -advertise.
    #[arg(long = "advertise-wan", value_parser = muster::config::resolve_address)]
    pub(crate) advertise_wan: Option<IpAddr>,
    /// The address the LAN pool binds to; defaults to -bind.
    #[arg(long = "serf-lan-bind", value_parser = muster::config::resolve_address)]
    pub(crate) serf_lan_bind: Option<IpAddr>,
    /// The address the WAN pool binds to; defaults to -bind.
    #[arg(long = "serf-wan-bind", value_parser = muster::config::resolve_address)]
    pub(crate) serf_wan_bind: Option<IpAddr>,
    /// Takes LAN gossip only from these ranges (`10.0.0.0/8`); repeatable.
    #[arg(long = "serf-lan-allowed-cidrs")]
    pub(crate) serf_lan_allowed_cidrs: Vec<String>,
    /// Takes WAN gossip only from these ranges; repeatable.
    #[arg(long = "serf-wan-allowed-cidrs")]
    pub(crate) serf_wan_allowed_cidrs: Vec<String>,
    /// Neither reads nor writes the gossip keyring file in the data directory.
    #[arg(long = "disable-keyring-file", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub(crate) disable_keyring_file: Option<bool>,
    /// Consul's web UI: muster has none yet, and says so.
    #[arg(long = "ui", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub(crate) ui: Option<bool>,
    /// Where the web UI is served (accepted; muster has no web UI yet).
    #[arg(long = "ui-content-path")]
    pub(crate) ui_content_path: Option<String>,
    /// Consul's gRPC (xDS) port: muster serves none yet; -1 is accepted quietly.
    #[arg(long = "grpc-port", allow_negative_numbers = true)]
    pub(crate) grpc_port: Option<i32>,
    /// Consul's HTTPS port: muster serves plain HTTP only yet; -1 is accepted quietly.
    #[arg(long = "https-port", allow_negative_numbers = true)]
    pub(crate) https_port: Option<i32>,
    /// The Raft protocol version; only 3 is spoken.
    #[arg(long = "raft-protocol")]
    pub(crate) raft_protocol: Option<u8>,
    /// The gossip protocol version to speak (muster speaks 2 to 3 whatever is asked).
    #[arg(long = "protocol")]
    pub(crate) protocol: Option<u8>,
    /// How long a blocking query waits without `?wait` (Consul's default: 300s).
    #[arg(long = "default-query-time")]
    pub(crate) default_query_time: Option<String>,
    /// The most a blocking query's `?wait` may ask (Consul's default: 600s).
    #[arg(long = "max-query-time")]
    pub(crate) max_query_time: Option<String>,
    /// Accepts writes over HTTP only from these ranges (`http_config.allow_write_http_from`).
    /// Repeatable.
    #[arg(long = "allow-write-http-from")]
    pub(crate) allow_write_http_from: Vec<String>,
    /// The most bytes of a check's output kept (`check_output_max_size`; Consul's 4096).
    #[arg(long = "check_output_max_size", allow_negative_numbers = true)]
    pub(crate) check_output_max_size: Option<i64>,
    /// Consul's gRPC-over-TLS port (`ports.grpc_tls`).
    #[arg(long = "grpc-tls-port", allow_negative_numbers = true)]
    pub(crate) grpc_tls_port: Option<i32>,
    /// Consul Enterprise's read replicas (`read_replica`; `-non-voting-server` is its old name).
    #[arg(long = "read-replica", alias = "non-voting-server", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub(crate) read_replica: Option<bool>,
    /// Mesh gateways of the primary datacenter (`primary_gateways`). Repeatable.
    #[arg(long = "primary-gateway")]
    pub(crate) primary_gateway: Vec<String>,
    /// WAN join attempts before the agent gives up (`retry_max_wan`; 0: for ever).
    #[arg(long = "retry-max-wan")]
    pub(crate) retry_max_wan: Option<u32>,
    /// Consul Enterprise's network segment (`segment`).
    #[arg(long = "segment")]
    pub(crate) segment: Option<String>,
    /// A directory of web UI assets to serve instead of the built-in ones (`ui_config.dir`).
    #[arg(long = "ui-dir")]
    pub(crate) ui_dir: Option<String>,
    /// Accepted for Consul's scripts: muster never derives the node ID from the host.
    #[arg(long = "disable-host-node-id", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub(crate) disable_host_node_id: Option<bool>,
}

pub(crate) use crate::goflag::FlagError;
#[cfg(test)]
use crate::goflag::{find_flag, kind, FlagKind};

/// Rewrites a command line as Go's `flag` package reads it, for muster's commands
/// ([`crate::goflag::normalize`]).
pub(crate) fn normalize(args: impl IntoIterator<Item = OsString>) -> Result<Vec<OsString>, FlagError> {
    let mut root = <Cli as clap::CommandFactory>::command();
    // Built, so that the generated `-h`/`-help` flags are among each command's arguments.
    root.build();
    crate::goflag::normalize(&root, args)
}

/// What Consul prints for a value Go's `flag` package refuses, if clap refused one: `invalid
/// value "abc" for flag -http-port: parse error`.
pub(crate) fn consul_usage_error(error: &clap::Error) -> Option<String> {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    if !matches!(error.kind(), ErrorKind::InvalidValue | ErrorKind::ValueValidation) {
        return None;
    }
    let Some(ContextValue::String(arg)) = error.get(ContextKind::InvalidArg) else { return None };
    let Some(ContextValue::String(value)) = error.get(ContextKind::InvalidValue) else { return None };
    let name = arg.trim_start_matches('-').split(['=', ' ', '<']).next().unwrap_or_default();
    // A flag of Consul's own `flag.Value` types says why; Go's built-in types say `parse error`.
    let why = std::error::Error::source(error)
        .and_then(|source| source.downcast_ref::<GoSetError>())
        .map_or("parse error", |set| set.0.as_str());
    Some(format!("invalid value {value:?} for flag -{name}: {why}"))
}

/// Why a Consul `flag.Value`'s `Set` refused a value, in its words (`Missing "=" value in
/// argument: x`), for [`consul_usage_error`] to print instead of `parse error`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub(crate) struct GoSetError(pub(crate) String);

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(args: &[&str]) -> Result<Vec<String>, FlagError> {
        let out = normalize(args.iter().map(OsString::from))?;
        Ok(out.into_iter().map(|a| a.into_string().unwrap()).collect())
    }

    #[test]
    fn every_go_form_of_a_flag_becomes_one_canonical_form() {
        for form in [
            &["muster", "agent", "-node", "a"][..],
            &["muster", "agent", "--node", "a"],
            &["muster", "agent", "-node=a"],
            &["muster", "agent", "--node=a"],
        ] {
            assert_eq!(norm(form).unwrap(), ["muster", "agent", "--node=a"], "{form:?}");
        }
        // A value is the next argument whatever it looks like.
        assert_eq!(
            norm(&["muster", "agent", "-http-port", "-1"]).unwrap(),
            ["muster", "agent", "--http-port=-1"]
        );
        assert_eq!(norm(&["muster", "agent", "-node="]).unwrap(), ["muster", "agent", "--node="]);
        // An alias is found as its flag is (the space form every Consul guide writes).
        assert_eq!(
            norm(&["muster", "agent", "-retry-join", "127.0.0.12", "-dev"]).unwrap(),
            ["muster", "agent", "--join=127.0.0.12", "--dev"]
        );
    }

    #[test]
    fn booleans_never_take_the_next_argument_and_read_every_go_spelling() {
        assert_eq!(norm(&["muster", "agent", "-dev"]).unwrap(), ["muster", "agent", "--dev"]);
        for on in ["1", "t", "T", "TRUE", "true", "True"] {
            assert_eq!(
                norm(&["muster", "agent", &format!("-dev={on}")]).unwrap(),
                ["muster", "agent", "--dev"]
            );
            assert_eq!(
                norm(&["muster", "agent", &format!("--server={on}")]).unwrap(),
                ["muster", "agent", "--server=true"]
            );
        }
        for off in ["0", "f", "F", "FALSE", "false", "False"] {
            assert_eq!(norm(&["muster", "agent", &format!("-dev={off}")]).unwrap(), ["muster", "agent"]);
            assert_eq!(
                norm(&["muster", "agent", &format!("-server={off}")]).unwrap(),
                ["muster", "agent", "--server=false"]
            );
        }
        // `-server false`: Go sets the flag and takes `false` as the first positional argument.
        assert_eq!(
            norm(&["muster", "agent", "-server", "false"]).unwrap(),
            ["muster", "agent", "--server=true", "--", "false"]
        );
    }

    #[test]
    fn flag_parsing_ends_at_the_first_positional_argument_as_in_go() {
        assert_eq!(
            norm(&["muster", "lock", "-n", "2", "-verbose", "app", "./run", "-verbose", "--x"]).unwrap(),
            ["muster", "lock", "--n=2", "--verbose", "--", "app", "./run", "-verbose", "--x"]
        );
        assert_eq!(
            norm(&["muster", "lock", "-n=2", "app", "x"]).unwrap(),
            ["muster", "lock", "--n=2", "--", "app", "x"]
        );
        assert_eq!(
            norm(&["muster", "watch", "-type", "key", "-key=a", "-shell=false", "cat", "-n"]).unwrap(),
            ["muster", "watch", "--type=key", "--key=a", "--shell=false", "--", "cat", "-n"]
        );
        assert_eq!(
            norm(&["muster", "watch", "-type=key", "--", "cat"]).unwrap(),
            ["muster", "watch", "--type=key", "--", "cat"]
        );
        // Subcommand words are walked through; a value is taken as it stands.
        assert_eq!(
            norm(&["muster", "kv", "put", "-flags", "42", "k", "-Xmx512m"]).unwrap(),
            ["muster", "kv", "put", "--flags=42", "--", "k", "-Xmx512m"]
        );
        assert_eq!(
            norm(&["muster", "operator", "raft", "list-peers", "-stale"]).unwrap(),
            ["muster", "operator", "raft", "list-peers", "--stale"]
        );
        assert_eq!(
            norm(&["muster", "kv", "get", "-recurse", "redis"]).unwrap(),
            ["muster", "kv", "get", "--recurse", "--", "redis"]
        );
        assert_eq!(norm(&["muster", "agent", "-h"]).unwrap(), ["muster", "agent", "--help"]);
        assert_eq!(norm(&["muster", "agent", "-help"]).unwrap(), ["muster", "agent", "--help"]);
    }

    #[test]
    fn bad_command_lines_are_refused_in_gos_words() {
        let refused = |args: &[&str]| norm(args).unwrap_err().to_string();
        assert_eq!(refused(&["muster", "agent", "-bogus"]), "flag provided but not defined: -bogus");
        assert_eq!(refused(&["muster", "agent", "--bogus=3"]), "flag provided but not defined: -bogus");
        assert_eq!(refused(&["muster", "event", "-name=x", "-foo"]), "flag provided but not defined: -foo");
        assert_eq!(refused(&["muster", "agent", "-node"]), "flag needs an argument: -node");
        assert_eq!(refused(&["muster", "agent", "---dev"]), "bad flag syntax: ---dev");
        assert_eq!(refused(&["muster", "agent", "-=x"]), "bad flag syntax: -=x");
        assert_eq!(
            refused(&["muster", "agent", "-server=yes"]),
            "invalid boolean value \"yes\" for -server: parse error"
        );
        assert_eq!(
            refused(&["muster", "agent", "-dev=2"]),
            "invalid boolean value \"2\" for -dev: parse error"
        );

        let error =
            Cli::try_parse_from(norm(&["muster", "agent", "-http-port", "abc"]).unwrap()).unwrap_err();
        assert_eq!(
            consul_usage_error(&error).as_deref(),
            Some("invalid value \"abc\" for flag -http-port: parse error")
        );
    }

    /// Every flag of `consul agent -h` (Consul 1.20; `../shared/reference/consul-dialect.md`
    /// §1.2): its name, whether it is a boolean, and a value muster's parsers take.
    const CONSUL_AGENT_FLAGS: &[(&str, Option<&str>)] = &[
        ("advertise", Some("10.0.0.1")),
        ("advertise-wan", Some("10.0.0.2")),
        ("allow-write-http-from", Some("10.0.0.0/8")),
        ("alt-domain", Some("example.")),
        ("auto-reload-config", None),
        ("bind", Some("127.0.0.1")),
        ("bootstrap", None),
        ("bootstrap-expect", Some("3")),
        ("check_output_max_size", Some("8192")),
        ("client", Some("127.0.0.1")),
        ("config-dir", Some("/etc/consul.d")),
        ("config-file", Some("/etc/consul.json")),
        ("config-format", Some("hcl")),
        ("data-dir", Some("/var/lib/consul")),
        ("datacenter", Some("east")),
        ("default-query-time", Some("300s")),
        ("dev", None),
        ("disable-host-node-id", None),
        ("disable-keyring-file", None),
        ("dns-port", Some("-1")),
        ("domain", Some("consul.")),
        ("enable-local-script-checks", None),
        ("enable-script-checks", None),
        ("encrypt", Some("pUqJrVyVRj5jsiYEkM/tFQYfWyJIv4s3XkvDwy7Cu5s=")),
        ("grpc-port", Some("-1")),
        ("grpc-tls-port", Some("-1")),
        ("hcl", Some("log_level = \"warn\"")),
        ("http-port", Some("8500")),
        ("https-port", Some("-1")),
        ("join", Some("10.0.0.3")),
        ("join-wan", Some("10.0.0.4")),
        ("log-file", Some("/var/log/consul/")),
        ("log-json", None),
        ("log-level", Some("debug")),
        ("log-rotate-bytes", Some("1048576")),
        ("log-rotate-duration", Some("24h")),
        ("log-rotate-max-files", Some("-1")),
        ("max-query-time", Some("600s")),
        ("node", Some("n1")),
        ("node-id", Some("adf4238a-882b-9ddc-4a9d-5b6758e4159e")),
        ("node-meta", Some("rack:r1")),
        ("non-voting-server", None),
        ("pid-file", Some("/run/consul.pid")),
        ("primary-gateway", Some("10.0.0.5:8443")),
        ("protocol", Some("2")),
        ("raft-protocol", Some("3")),
        ("read-replica", None),
        ("recursor", Some("8.8.8.8")),
        ("rejoin", None),
        ("retry-interval", Some("5s")),
        ("retry-interval-wan", Some("5s")),
        ("retry-join", Some("10.0.0.6")),
        ("retry-join-wan", Some("10.0.0.7")),
        ("retry-max", Some("3")),
        ("retry-max-wan", Some("3")),
        ("segment", Some("alpha")),
        ("serf-lan-allowed-cidrs", Some("10.0.0.0/8")),
        ("serf-lan-bind", Some("127.0.0.1")),
        ("serf-lan-port", Some("8301")),
        ("serf-wan-allowed-cidrs", Some("10.0.0.0/8")),
        ("serf-wan-bind", Some("127.0.0.1")),
        ("serf-wan-port", Some("8302")),
        ("server", None),
        ("server-port", Some("8300")),
        ("syslog", None),
        ("ui", None),
        ("ui-content-path", Some("/ui/")),
        ("ui-dir", Some("/usr/share/consul-ui")),
    ];

    /// Each form a Consul user may write for one flag.
    fn forms(name: &str, value: Option<&str>) -> Vec<Vec<String>> {
        let owned = |parts: &[&str]| parts.iter().map(|p| (*p).to_owned()).collect::<Vec<_>>();
        match value {
            None => ["-", "--"]
                .iter()
                .flat_map(|dash| {
                    ["", "=true", "=1", "=T", "=false", "=0", "=F"]
                        .map(|v| owned(&[&format!("{dash}{name}{v}")]))
                })
                .collect(),
            Some(value) => ["-", "--"]
                .iter()
                .flat_map(|dash| {
                    [owned(&[&format!("{dash}{name}"), value]), owned(&[&format!("{dash}{name}={value}")])]
                })
                .collect(),
        }
    }

    #[test]
    fn every_consul_agent_flag_parses_in_every_form() {
        let agent = <Cli as clap::CommandFactory>::command();
        let agent = agent.find_subcommand("agent").unwrap();
        for (name, value) in CONSUL_AGENT_FLAGS {
            let id =
                find_flag(agent, name).unwrap_or_else(|| panic!("-{name} is not defined")).get_id().clone();
            for form in forms(name, *value) {
                let argv = ["muster", "agent"].into_iter().map(str::to_owned).chain(form.iter().cloned());
                let normalized =
                    normalize(argv.map(OsString::from)).unwrap_or_else(|e| panic!("{form:?}: {e}"));
                let matches = <Cli as clap::CommandFactory>::command()
                    .try_get_matches_from(&normalized)
                    .unwrap_or_else(|e| panic!("{form:?} -> {normalized:?}: {e}"));
                let agent = matches.subcommand_matches("agent").unwrap();
                let off = form
                    .last()
                    .is_some_and(|f| f.ends_with("=false") || f.ends_with("=0") || f.ends_with("=F"));
                let given = agent.value_source(id.as_str()) == Some(clap::parser::ValueSource::CommandLine);
                // A switch turned off is as if never given; every other form reaches its flag.
                let switch_off = off && kind(find_flag(agent_command(), name).unwrap()) == FlagKind::Switch;
                assert_eq!(given, !switch_off, "{form:?} -> {normalized:?}");
                if let Some(value) = value {
                    let raw: Vec<_> = agent.get_raw(id.as_str()).unwrap().collect();
                    assert_eq!(raw, [OsString::from(value).as_os_str()], "{form:?}");
                }
            }
        }
    }

    fn agent_command() -> &'static clap::Command {
        static AGENT: std::sync::OnceLock<clap::Command> = std::sync::OnceLock::new();
        AGENT.get_or_init(|| {
            <Cli as clap::CommandFactory>::command().find_subcommand("agent").unwrap().clone()
        })
    }

    #[test]
    fn repeatable_flags_keep_every_occurrence_in_order() {
        let cli = Cli::try_parse_from(
            norm(&[
                "muster",
                "agent",
                "-retry-join",
                "a",
                "-join=b",
                "--retry-join",
                "c",
                "-node-meta",
                "k:v",
            ])
            .unwrap(),
        )
        .unwrap();
        let Subcommands::Agent(agent) = cli.command else { panic!("not agent") };
        assert_eq!(agent.join, ["a", "b", "c"]);
        assert_eq!(agent.node_meta, ["k:v"]);
        // A flag given twice that is not a list: the last one wins, as in Go.
        let cli = Cli::try_parse_from(
            norm(&["muster", "agent", "-node=a", "-node", "b", "-server=false", "-server"]).unwrap(),
        )
        .unwrap();
        let Subcommands::Agent(agent) = cli.command else { panic!("not agent") };
        assert_eq!((agent.node.as_deref(), agent.server), (Some("b"), Some(true)));
    }

    /// The shared flags of Consul's HTTP commands (`command/flags/http.go`): `ClientFlags`.
    const CLIENT: &[(&str, Option<&str>)] = &[
        ("http-addr", Some("127.0.0.1:8500")),
        ("token", Some("secret")),
        ("token-file", Some("/etc/consul.token")),
        ("ca-file", Some("/etc/ca.pem")),
        ("ca-path", Some("/etc/ca")),
        ("client-cert", Some("/etc/cert.pem")),
        ("client-key", Some("/etc/key.pem")),
        ("tls-server-name", Some("consul.example")),
    ];
    /// `ServerFlags`.
    const SERVER: &[(&str, Option<&str>)] = &[("datacenter", Some("dc2")), ("stale", None)];
    /// `MultiTenancyFlags` (Enterprise namespaces and partitions; Consul CE defines them too).
    const TENANCY: &[(&str, Option<&str>)] = &[("namespace", Some("ns")), ("partition", Some("part"))];
    /// `PartitionFlag`.
    const PARTITION: &[(&str, Option<&str>)] = &[("partition", Some("part"))];

    /// One command of Consul 1.20 that muster has: its words, the groups of shared flags it
    /// merges, its own flags (a value muster's parsers take, or `None` for a boolean), and the
    /// positional arguments a parse needs.
    struct Flags {
        path: &'static [&'static str],
        shared: &'static [&'static [(&'static str, Option<&'static str>)]],
        own: &'static [(&'static str, Option<&'static str>)],
        tail: &'static [&'static str],
    }

    const KEY: &str = "pUqJrVyVRj5jsiYEkM/tFQYfWyJIv4s3XkvDwy7Cu5s=";

    /// Every client command muster has, with Consul 1.20's flags for it: the shared groups from
    /// `command/flags/http.go`; each command's own from its `command/<path>` source
    /// (`../shared/reference/consul-behaviour.md` §4 lists them).
    const CONSUL_COMMANDS: &[Flags] = &[
        Flags {
            path: &["members"],
            shared: &[CLIENT, SERVER, PARTITION],
            own: &[
                ("detailed", None),
                ("wan", None),
                ("status", Some("alive")),
                ("segment", Some("alpha")),
                ("filter", Some("Name == x")),
            ],
            tail: &[],
        },
        Flags { path: &["info"], shared: &[CLIENT, SERVER], own: &[], tail: &[] },
        Flags { path: &["join"], shared: &[CLIENT, SERVER, PARTITION], own: &[("wan", None)], tail: &[] },
        Flags { path: &["leave"], shared: &[CLIENT, SERVER], own: &[], tail: &[] },
        Flags {
            path: &["force-leave"],
            shared: &[CLIENT, SERVER, PARTITION],
            own: &[("prune", None), ("wan", None)],
            tail: &[],
        },
        Flags { path: &["reload"], shared: &[CLIENT, SERVER], own: &[], tail: &[] },
        Flags {
            path: &["monitor"],
            shared: &[CLIENT, SERVER],
            own: &[("log-level", Some("debug")), ("log-json", None)],
            tail: &[],
        },
        Flags {
            path: &["maint"],
            shared: &[CLIENT, SERVER],
            own: &[
                ("enable", None),
                ("disable", None),
                ("reason", Some("upgrade")),
                ("service", Some("web")),
            ],
            tail: &[],
        },
        Flags {
            path: &["event"],
            shared: &[CLIENT, SERVER],
            own: &[
                ("name", Some("deploy")),
                ("node", Some("n1")),
                ("service", Some("web")),
                ("tag", Some("v1")),
            ],
            tail: &[],
        },
        Flags {
            path: &["keyring"],
            shared: &[CLIENT, SERVER],
            own: &[
                ("install", Some(KEY)),
                ("use", Some(KEY)),
                ("remove", Some(KEY)),
                ("list", None),
                ("list-primary", None),
                ("relay-factor", Some("2")),
                ("local-only", None),
            ],
            tail: &[],
        },
        Flags {
            path: &["kv", "get"],
            shared: &[CLIENT, SERVER, TENANCY],
            own: &[
                ("base64", None),
                ("detailed", None),
                ("keys", None),
                ("recurse", None),
                ("separator", Some("/")),
            ],
            tail: &[],
        },
        Flags {
            path: &["kv", "put"],
            shared: &[CLIENT, SERVER, TENANCY],
            own: &[
                ("acquire", None),
                ("base64", None),
                ("cas", None),
                ("flags", Some("42")),
                ("modify-index", Some("3")),
                ("release", None),
                ("session", Some("s1")),
            ],
            tail: &[],
        },
        Flags {
            path: &["kv", "delete"],
            shared: &[CLIENT, SERVER, TENANCY],
            own: &[("cas", None), ("modify-index", Some("3")), ("recurse", None)],
            tail: &[],
        },
        Flags { path: &["kv", "export"], shared: &[CLIENT, SERVER, TENANCY], own: &[], tail: &[] },
        Flags {
            path: &["kv", "import"],
            shared: &[CLIENT, SERVER, TENANCY],
            own: &[("prefix", Some("app/"))],
            tail: &[],
        },
        Flags { path: &["catalog", "datacenters"], shared: &[CLIENT, SERVER], own: &[], tail: &[] },
        Flags {
            path: &["catalog", "nodes"],
            shared: &[CLIENT, SERVER, PARTITION],
            own: &[
                ("detailed", None),
                ("filter", Some("Node == x")),
                ("near", Some("_agent")),
                ("node-meta", Some("rack:r1")),
                ("service", Some("web")),
            ],
            tail: &[],
        },
        Flags {
            path: &["catalog", "services"],
            shared: &[CLIENT, SERVER, TENANCY],
            own: &[("node", Some("n1")), ("node-meta", Some("rack:r1")), ("tags", None)],
            tail: &[],
        },
        Flags { path: &["operator", "raft", "list-peers"], shared: &[CLIENT, SERVER], own: &[], tail: &[] },
        Flags {
            path: &["operator", "raft", "remove-peer"],
            shared: &[CLIENT, SERVER],
            own: &[("address", Some("10.0.0.1:8300")), ("id", Some("abc"))],
            tail: &[],
        },
        Flags {
            path: &["operator", "raft", "transfer-leader"],
            shared: &[CLIENT, SERVER],
            own: &[("id", Some("abc"))],
            tail: &[],
        },
        Flags {
            path: &["operator", "autopilot", "get-config"],
            shared: &[CLIENT, SERVER],
            own: &[],
            tail: &[],
        },
        Flags {
            path: &["operator", "autopilot", "set-config"],
            shared: &[CLIENT, SERVER],
            own: &[
                ("cleanup-dead-servers", None),
                ("max-trailing-logs", Some("250")),
                ("min-quorum", Some("3")),
                ("last-contact-threshold", Some("200ms")),
                ("server-stabilization-time", Some("10s")),
                ("redundancy-zone-tag", Some("zone")),
                ("disable-upgrade-migration", None),
                ("upgrade-version-tag", Some("build")),
            ],
            tail: &[],
        },
        Flags {
            path: &["operator", "autopilot", "state"],
            shared: &[CLIENT, SERVER],
            own: &[("format", Some("json"))],
            tail: &[],
        },
        Flags {
            path: &["snapshot", "save"],
            shared: &[CLIENT, SERVER],
            own: &[("append-filename", Some("version,dc"))],
            tail: &[],
        },
        Flags { path: &["snapshot", "restore"], shared: &[CLIENT, SERVER], own: &[], tail: &[] },
        Flags {
            path: &["snapshot", "inspect"],
            shared: &[],
            own: &[
                ("kvdetails", None),
                ("kvdepth", Some("2")),
                ("kvfilter", Some("app")),
                ("format", Some("json")),
            ],
            tail: &[],
        },
        Flags {
            path: &["watch"],
            shared: &[CLIENT, SERVER, TENANCY],
            own: &[
                ("type", Some("key")),
                ("key", Some("a")),
                ("prefix", Some("a/")),
                ("service", Some("web")),
                ("tag", Some("v1")),
                ("passingonly", Some("true")),
                ("state", Some("passing")),
                ("name", Some("deploy")),
                ("filter", Some("Node == x")),
                ("shell", None),
            ],
            tail: &[],
        },
        Flags {
            path: &["lock"],
            shared: &[CLIENT, SERVER],
            own: &[
                ("n", Some("2")),
                ("name", Some("job")),
                ("pass-stdin", None),
                ("shell", None),
                ("timeout", Some("10s")),
                ("monitor-retry", Some("3")),
                ("try", Some("5s")),
                ("verbose", None),
                ("child-exit-code", None),
            ],
            tail: &[],
        },
        Flags {
            path: &["exec"],
            shared: &[CLIENT, SERVER],
            own: &[
                ("node", Some("n1")),
                ("service", Some("web")),
                ("tag", Some("v1")),
                ("prefix", Some("_rexec")),
                ("shell", None),
                ("wait", Some("2s")),
                ("wait-repl", Some("200ms")),
                ("verbose", None),
            ],
            tail: &[],
        },
        Flags {
            path: &["services", "register"],
            shared: &[CLIENT, SERVER, TENANCY],
            own: &[
                ("id", Some("web-1")),
                ("name", Some("web")),
                ("address", Some("10.0.0.1")),
                ("port", Some("8080")),
                ("socket", Some("/run/web.sock")),
                ("meta", Some("a=b")),
                ("tag", Some("v1")),
                ("tagged-address", Some("lan=10.0.0.1:80")),
                ("kind", Some("connect-proxy")),
            ],
            tail: &[],
        },
        Flags {
            path: &["services", "deregister"],
            shared: &[CLIENT, SERVER, TENANCY],
            own: &[("id", Some("web-1"))],
            tail: &[],
        },
        Flags {
            path: &["debug"],
            shared: &[CLIENT],
            own: &[
                ("capture", Some("agent")),
                ("interval", Some("30s")),
                ("duration", Some("2m")),
                ("archive", None),
                ("output", Some("/tmp/out")),
            ],
            tail: &[],
        },
        Flags {
            path: &["validate"],
            shared: &[],
            own: &[("quiet", None), ("config-format", Some("json"))],
            tail: &["consul.d"],
        },
        Flags { path: &["version"], shared: &[], own: &[("format", Some("json"))], tail: &[] },
        Flags { path: &["keygen"], shared: &[], own: &[], tail: &[] },
        Flags {
            path: &["tls", "ca", "create"],
            shared: &[],
            own: &[
                ("days", Some("365")),
                ("domain", Some("foo")),
                ("name-constraint", None),
                ("additional-name-constraint", Some("example.test")),
                ("cluster-id", Some("uuid")),
                ("common-name", Some("foo")),
            ],
            tail: &[],
        },
        Flags {
            path: &["tls", "cert", "create"],
            shared: &[],
            own: &[
                ("server", None),
                ("client", None),
                ("cli", None),
                ("node", Some("n1")),
                ("dc", Some("dc2")),
                ("domain", Some("nomad")),
                ("days", Some("30")),
                ("additional-dnsname", Some("x.example")),
                ("additional-ipaddress", Some("10.0.0.9")),
                ("ca", Some("my-ca.pem")),
                ("key", Some("my-ca-key.pem")),
            ],
            tail: &[],
        },
    ];

    /// The flags of Consul 1.20 muster lacks, by command (`"kv get -namespace"`): none now. A
    /// flag that goes missing fails the test until it is listed here.
    const LACKING: &[&str] = &[];

    /// Parses `-name` in each form under `path`: `Err(())` if muster has no such flag there.
    fn parse_every_form(command: &Flags, name: &str, value: Option<&str>) -> Result<(), ()> {
        let mut sub = <Cli as clap::CommandFactory>::command();
        sub.build();
        let mut sub = &sub;
        for word in command.path {
            sub = sub.find_subcommand(word).unwrap_or_else(|| panic!("muster has no {word}"));
        }
        let arg = find_flag(sub, name).ok_or(())?;
        let id = arg.get_id().clone();
        let switch = kind(arg) == FlagKind::Switch;
        for form in forms(name, value) {
            let argv: Vec<String> = std::iter::once("muster")
                .chain(command.path.iter().copied())
                .map(str::to_owned)
                .chain(form.iter().cloned())
                .chain(command.tail.iter().map(|t| (*t).to_owned()))
                .collect();
            let normalized =
                normalize(argv.iter().map(OsString::from)).unwrap_or_else(|e| panic!("{argv:?}: {e}"));
            let matches = <Cli as clap::CommandFactory>::command()
                .try_get_matches_from(&normalized)
                .unwrap_or_else(|e| panic!("{argv:?} -> {normalized:?}: {e}"));
            let mut matches = &matches;
            for word in command.path {
                matches = matches.subcommand_matches(word).expect("the path parsed");
            }
            let off =
                form.last().is_some_and(|f| f.ends_with("=false") || f.ends_with("=0") || f.ends_with("=F"));
            let given = matches.value_source(id.as_str()) == Some(clap::parser::ValueSource::CommandLine);
            assert_eq!(given, !(off && switch), "{argv:?} -> {normalized:?}");
            if let Some(value) = value {
                let raw: Vec<_> = matches.get_raw(id.as_str()).expect("a value").collect();
                assert_eq!(raw, [OsString::from(value).as_os_str()], "{argv:?}");
            }
        }
        Ok(())
    }

    #[test]
    fn every_consul_flag_of_every_command_parses_in_every_form() {
        let mut lacking = std::collections::BTreeSet::new();
        let mut pairs = 0;
        for command in CONSUL_COMMANDS {
            let flags = command.shared.iter().flat_map(|group| group.iter()).chain(command.own);
            for &(name, value) in flags {
                pairs += 1;
                if parse_every_form(command, name, value).is_err() {
                    lacking.insert(format!("{} -{name}", command.path.join(" ")));
                }
            }
        }
        println!(
            "{} Consul commands, {pairs} of their flags, each parsed in every form",
            CONSUL_COMMANDS.len()
        );
        assert_eq!(lacking.iter().map(String::as_str).collect::<Vec<_>>(), LACKING);
        // Enterprise's flags are where Consul has them and nowhere else: `-namespace` only with
        // `MultiTenancyFlags`, `-partition` only with those or `PartitionFlag`.
        for command in CONSUL_COMMANDS {
            for (name, group) in [("namespace", TENANCY), ("partition", PARTITION)] {
                let consul_has = command.shared.iter().any(|shared| shared.iter().any(|flag| flag.0 == name))
                    || (name == "partition" && command.shared.contains(&group));
                let muster_has = parse_every_form(command, name, Some("x")).is_ok();
                assert_eq!(muster_has, consul_has, "{:?} -{name}", command.path);
            }
        }
    }

    #[test]
    fn every_flag_has_a_long_name() {
        // `normalize` writes each flag as `--long`: a flag with only a short name would be lost.
        fn walk(command: &clap::Command, path: &str) {
            for arg in command.get_arguments().filter(|arg| !arg.is_positional()) {
                assert!(arg.get_long().is_some(), "{path}: {:?} has no long name", arg.get_id());
            }
            for sub in command.get_subcommands() {
                walk(sub, &format!("{path} {}", sub.get_name()));
            }
        }
        let mut root = <Cli as clap::CommandFactory>::command();
        root.build();
        walk(&root, "muster");
    }
}
