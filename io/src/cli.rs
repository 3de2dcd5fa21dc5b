//! The command line, in Consul's dialect.
//!
//! Consul's flags are Go-style: one dash for long names (`-dev`, `-http-addr=...`), with two
//! dashes accepted too. clap speaks GNU style, so [`normalize`] rewrites a single-dash long flag
//! into its two-dash form before clap sees it; `-h` stays the short help flag.

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
    disable_version_flag = true
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
    Version,
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
    /// Operator tools: Raft's peers and leadership.
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
    /// The WAN gossip port (servers only).
    #[arg(long = "serf-wan-port", default_value_t = 8302)]
    pub(crate) serf_wan_port: u16,
    /// Server mode: also joins the WAN pool of servers across datacenters. -dev implies it.
    #[arg(long)]
    pub(crate) server: bool,
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
    #[arg(long)]
    pub(crate) bootstrap: bool,
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
    #[arg(long = "enable-script-checks")]
    pub(crate) enable_script_checks: bool,
    /// Accepts script checks from configuration files only.
    #[arg(long = "enable-local-script-checks")]
    pub(crate) enable_local_script_checks: bool,
    /// Ignores a previous graceful leave and joins the members it knew again at start.
    #[arg(long)]
    pub(crate) rejoin: bool,
    /// A configuration file (`*.json` or `*.hcl`). Repeatable; read in order with the
    /// -config-dir directories.
    #[arg(long = "config-file")]
    pub(crate) config_file: Vec<PathBuf>,
    /// A directory whose `*.json` and `*.hcl` files are read in lexical order. Repeatable.
    #[arg(long = "config-dir")]
    pub(crate) config_dir: Vec<PathBuf>,
    /// Reads the configuration files again whenever one is added, removed or written.
    #[arg(long = "auto-reload-config")]
    pub(crate) auto_reload_config: bool,
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
    #[arg(long = "log-json")]
    pub(crate) log_json: bool,
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
    #[arg(long = "syslog")]
    pub(crate) syslog: bool,
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
    #[arg(long = "disable-keyring-file")]
    pub(crate) disable_keyring_file: bool,
    /// Consul's web UI: muster has none yet, and says so.
    #[arg(long = "ui")]
    pub(crate) ui: bool,
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
    /// Accepted for Consul's scripts: muster never derives the node ID from the host.
    #[arg(long = "disable-host-node-id", num_args = 0..=1, default_missing_value = "true")]
    pub(crate) disable_host_node_id: Option<bool>,
}

/// Rewrites Consul's single-dash long flags (`-dev`, `-data-dir=x`) to clap's `--dev`,
/// `--data-dir=x`, and ends flag parsing where Go's does: at the first positional argument of
/// the command, before which a `--` goes, so that what follows is taken as it stands
/// (`muster kv put k -Xmx512m` stores `-Xmx512m`; `muster lock app ./run -verbose` passes
/// `-verbose` to `./run`). Which flags take a value, and which words are subcommands, comes
/// from the clap definition itself. `-h` stays the short help flag.
pub(crate) fn normalize(args: impl IntoIterator<Item = OsString>) -> Vec<OsString> {
    let root = <Cli as clap::CommandFactory>::command();
    let mut command = &root;
    let mut out = Vec::new();
    let mut passthrough = false;
    let mut value_next = false;
    for (position, arg) in args.into_iter().enumerate() {
        let text = arg.to_str();
        if position == 0 || passthrough {
            out.push(arg);
            continue;
        }
        if value_next {
            value_next = false;
            out.push(arg);
            continue;
        }
        match text {
            Some("--") => {
                passthrough = true;
                out.push(arg);
            }
            Some(flag) if flag.starts_with('-') && flag.len() > 1 => {
                let bare = flag.trim_start_matches('-');
                let (name, inline_value) = match bare.split_once('=') {
                    Some((name, _)) => (name, true),
                    None => (bare, false),
                };
                value_next = !inline_value && takes_separate_value(command, name);
                if is_single_dash_long(flag) {
                    out.push(format!("-{flag}").into());
                } else {
                    out.push(arg);
                }
            }
            Some(word) if command.find_subcommand(word).is_some() => {
                command = command.find_subcommand(word).expect("just found");
                out.push(arg);
            }
            // The command's first positional argument: flag parsing ends here.
            _ => {
                passthrough = true;
                out.push("--".into());
                out.push(arg);
            }
        }
    }
    out
}

/// Whether `command`'s flag `name` takes its value from the next argument (`-type key`); Go's
/// boolean flags, and the ones written here with an optional value (`-shell`, `-shell=false`),
/// never do.
fn takes_separate_value(command: &clap::Command, name: &str) -> bool {
    let found = command.get_arguments().find(|arg| {
        arg.get_long() == Some(name) || (name.len() == 1 && arg.get_short() == name.chars().next())
    });
    match found {
        None => false,
        Some(arg) => {
            let optional = arg.get_num_args().is_some_and(|range| range.min_values() == 0);
            arg.get_action().takes_values() && !optional
        }
    }
}

fn is_single_dash_long(text: &str) -> bool {
    let Some(rest) = text.strip_prefix('-') else {
        return false;
    };
    let name = rest.split('=').next().unwrap_or("");
    // `-n=2` is Go's long flag `n` too; only a bare one-letter flag (`-h`, `-n 2`) stays short.
    let long = name.len() > 1 || rest.contains('=');
    !rest.starts_with('-') && long && name.starts_with(|c: char| c.is_ascii_alphabetic())
}

/// What Consul prints for a usage error it shares with Go's flag package, if this is one: an
/// undefined flag reads `flag provided but not defined: -bogus` (one dash, however it was typed).
pub(crate) fn consul_usage_error(error: &clap::Error) -> Option<String> {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    if error.kind() != ErrorKind::UnknownArgument {
        return None;
    }
    let Some(ContextValue::String(arg)) = error.get(ContextKind::InvalidArg) else { return None };
    let name = arg.trim_start_matches('-').split('=').next().unwrap_or_default();
    Some(format!("flag provided but not defined: -{name}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(args: &[&str]) -> Vec<String> {
        normalize(args.iter().map(OsString::from)).into_iter().map(|a| a.into_string().unwrap()).collect()
    }

    #[test]
    fn single_dash_long_flags_become_double_dash() {
        assert_eq!(
            norm(&["muster", "agent", "-dev", "-data-dir=/tmp/x", "--node", "a", "-h", "-5", "--", "-raw"]),
            ["muster", "agent", "--dev", "--data-dir=/tmp/x", "--node", "a", "-h", "-5", "--", "-raw"]
        );
    }

    #[test]
    fn flag_parsing_ends_at_the_first_positional_argument_as_in_go() {
        assert_eq!(
            norm(&["muster", "lock", "-n", "2", "-verbose", "app", "./run", "-verbose", "--x"]),
            ["muster", "lock", "-n", "2", "--verbose", "--", "app", "./run", "-verbose", "--x"]
        );
        assert_eq!(
            norm(&["muster", "lock", "-n=2", "app", "x"]),
            ["muster", "lock", "--n=2", "--", "app", "x"]
        );
        assert_eq!(
            norm(&["muster", "watch", "-type", "key", "-key=a", "-shell=false", "cat", "-n"]),
            ["muster", "watch", "--type", "key", "--key=a", "--shell=false", "--", "cat", "-n"]
        );
        assert_eq!(
            norm(&["muster", "watch", "-type=key", "--", "cat"]),
            ["muster", "watch", "--type=key", "--", "cat"]
        );
        // Subcommand words are walked through; a value is taken as it stands.
        assert_eq!(
            norm(&["muster", "kv", "put", "-flags", "42", "k", "-Xmx512m"]),
            ["muster", "kv", "put", "--flags", "42", "--", "k", "-Xmx512m"]
        );
        assert_eq!(
            norm(&["muster", "operator", "raft", "list-peers", "-stale"]),
            ["muster", "operator", "raft", "list-peers", "--stale"]
        );
        assert_eq!(
            norm(&["muster", "kv", "get", "-recurse", "redis"]),
            ["muster", "kv", "get", "--recurse", "--", "redis"]
        );
        assert_eq!(norm(&["muster", "event", "-name=x", "-foo"]), ["muster", "event", "--name=x", "--foo"]);
    }

    #[test]
    fn consul_style_agent_flags_parse() {
        let cli = Cli::try_parse_from(normalize(
            ["muster", "agent", "-dev", "-node=n1", "-bind", "127.0.0.2", "-join=127.0.0.3:8301"]
                .map(OsString::from),
        ))
        .unwrap();
        let Subcommands::Agent(agent) = cli.command else { panic!("not agent") };
        assert!(agent.dev);
        assert_eq!(agent.node.as_deref(), Some("n1"));
        assert_eq!(agent.bind, Some("127.0.0.2".parse().unwrap()));
        assert_eq!(agent.join, ["127.0.0.3:8301"]);
        assert_eq!(agent.serf_lan_port, 8301);
        assert_eq!((agent.serf_wan_port, agent.server, agent.datacenter.as_str()), (8302, false, "dc1"));

        let cli = Cli::try_parse_from(normalize(
            [
                "muster",
                "agent",
                "-server",
                "-datacenter=east",
                "-join-wan",
                "10.0.0.9",
                "-serf-wan-port=9302",
            ]
            .map(OsString::from),
        ))
        .unwrap();
        let Subcommands::Agent(agent) = cli.command else { panic!("not agent") };
        assert!(agent.server);
        assert_eq!((agent.datacenter.as_str(), agent.serf_wan_port), ("east", 9302));
        assert_eq!(agent.join_wan, ["10.0.0.9"]);
    }

    #[test]
    fn unknown_flags_are_refused() {
        let error =
            Cli::try_parse_from(normalize(["muster", "agent", "-bogus"].map(OsString::from))).unwrap_err();
        assert_eq!(consul_usage_error(&error).as_deref(), Some("flag provided but not defined: -bogus"));
        let error =
            Cli::try_parse_from(normalize(["muster", "agent", "--bogus=3"].map(OsString::from))).unwrap_err();
        assert_eq!(consul_usage_error(&error).as_deref(), Some("flag provided but not defined: -bogus"));
    }
}
