//! The `muster` binary.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::sync::Arc;

use muster::config;
use muster::drive::{self, CommandRequest, Sockets};
use muster::http;
use muster::local;
use muster::raft_server::RaftHandle;
use muster::storage::{AgentStorage, FileStorage, MemoryStorage};
use muster::store::{self, Store};
use muster::version;
use muster_core::raft;
use muster_core::tags::Tags;
use muster_core::{swim, Command, Config, Event, Instant, Node};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::{mpsc, oneshot};

/// mimalloc rather than glibc's malloc: with 10,000 checks glibc kept from 38 to 92 MiB
/// resident by chance, mimalloc a steady 37 MiB (`benches/checks_load.sh`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod agent;
mod cli;
mod cmd;
mod goflag;

fn main() -> ExitCode {
    let args = match cli::normalize(std::env::args_os()) {
        Ok(args) => args,
        Err(error) => {
            // Go's flag package prints its error, then the command's usage; Consul exits 1.
            eprintln!("{error}");
            return ExitCode::from(1);
        }
    };
    let parsed =
        <cli::Cli as clap::CommandFactory>::command().try_get_matches_from(args).and_then(|matches| {
            <cli::Cli as clap::FromArgMatches>::from_arg_matches(&matches).map(|cli| (cli, matches))
        });
    let (cli, matches) = match parsed {
        Ok(parsed) => parsed,
        Err(error) => {
            match cli::consul_usage_error(&error) {
                // Consul's words for what its scripts match on, then the usage clap prints.
                Some(message) => eprintln!(
                    "{message}\n{}",
                    error
                        .render()
                        .to_string()
                        .lines()
                        .filter(|l| l.starts_with("Usage:"))
                        .collect::<Vec<_>>()
                        .join("\n")
                ),
                None => {
                    let _ = error.print();
                }
            }
            // Consul exits 1 on a usage error; help itself is a success.
            return if error.use_stderr() { ExitCode::from(1) } else { ExitCode::SUCCESS };
        }
    };
    match cli.command {
        cli::Subcommands::Version(args) => finish(cmd::version::version(&args)),
        cli::Subcommands::Keygen => match keygen() {
            Ok(key) => {
                println!("{key}");
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("Error reading random data: {error}");
                ExitCode::from(1)
            }
        },
        cli::Subcommands::Validate(args) => validate(&args),
        cli::Subcommands::Members(args) => finish(cmd::cluster::members(&args)),
        cli::Subcommands::Info(args) => finish(cmd::cluster::info(&args)),
        cli::Subcommands::Join(args) => finish(cmd::cluster::join(&args)),
        cli::Subcommands::Leave(args) => finish(cmd::cluster::leave(&args)),
        cli::Subcommands::ForceLeave(args) => finish(cmd::cluster::force_leave(&args)),
        cli::Subcommands::Reload(args) => finish(cmd::cluster::reload(&args)),
        cli::Subcommands::Maint(args) => finish(cmd::cluster::maint(&args)),
        cli::Subcommands::Monitor(args) => finish(cmd::monitor::monitor(&args)),
        cli::Subcommands::Event(args) => finish(cmd::cluster::event(&args)),
        cli::Subcommands::Keyring(args) => finish(cmd::keyring::keyring(&args)),
        cli::Subcommands::Kv(command) => finish(cmd::kv::run(command)),
        cli::Subcommands::Catalog(command) => finish(cmd::catalog::run(command)),
        cli::Subcommands::Operator(command) => finish(cmd::catalog::operator(command)),
        cli::Subcommands::Snapshot(command) => finish(cmd::snapshot::run(command)),
        cli::Subcommands::Watch(args) => finish(cmd::watch::watch(&args)),
        cli::Subcommands::Lock(args) => finish(cmd::lock::lock(&args)),
        cli::Subcommands::Exec(args) => finish(cmd::exec::exec(&args)),
        cli::Subcommands::Services(command) => finish(cmd::services::run(command)),
        cli::Subcommands::Debug(args) => finish(cmd::debug::debug(&args)),
        cli::Subcommands::Agent(mut args) => {
            match apply_config_files(&mut args, matches.subcommand_matches("agent")) {
                Err(message) => {
                    eprintln!("==> {message}");
                    ExitCode::from(1)
                }
                Ok(files) => match agent::agent(*args, files) {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(message) => {
                        eprintln!("==> {message}");
                        ExitCode::from(1)
                    }
                },
            }
        }
    }
}

/// A client command's exit: its code, or its message on stderr and 1 (Consul's `UI.Error`).
fn finish(outcome: cmd::Outcome) -> ExitCode {
    match outcome {
        Ok(code) => ExitCode::from(code),
        Err(message) => {
            eprintln!("{message}");
            ExitCode::from(1)
        }
    }
}

/// What the configuration files gave the agent: where they are, and their services and checks.
struct FromFiles {
    sources: config::Sources,
    check_update_interval: Option<std::time::Duration>,
    dns: config::DnsConfig,
    definitions: http::Definitions,
    leave_on_terminate: Option<bool>,
    skip_leave_on_interrupt: Option<bool>,
    disable_remote_exec: Option<bool>,
    raft_multiplier: Option<u8>,
    /// `limits.rpc_client_timeout`, `performance.rpc_hold_timeout`.
    rpc_client_timeout: Option<std::time::Duration>,
    rpc_hold_timeout: Option<std::time::Duration>,
    /// The `autopilot` block, over Consul's defaults.
    autopilot: muster_core::autopilot::Config,
    /// `addresses.http`, `addresses.dns`.
    addresses_http: Vec<IpAddr>,
    addresses_dns: Vec<IpAddr>,
    /// Every address `client_addr` named in the files.
    client_addrs: Vec<IpAddr>,
    /// The `telemetry` block's settings.
    telemetry: muster::telemetry::TelemetryConfig,
    /// What the files and flags set that muster accepts but does not act on yet, to log at start.
    warnings: Vec<String>,
}

/// Reads the configuration files the flags name and fills in every setting the command line
/// left out (flags win over files, files over defaults; join lists are appended).
fn apply_config_files(
    args: &mut cli::AgentArgs,
    matches: Option<&clap::ArgMatches>,
) -> Result<FromFiles, String> {
    let given =
        |id: &str| matches.and_then(|m| m.value_source(id)) == Some(clap::parser::ValueSource::CommandLine);
    // -config-file and -config-dir are read in the order they were given, as Consul does.
    let mut ordered: Vec<(usize, config::Source)> = Vec::new();
    if let Some(m) = matches {
        let indices = |id: &str| m.indices_of(id).map(Iterator::collect::<Vec<_>>).unwrap_or_default();
        ordered.extend(
            indices("config_file")
                .into_iter()
                .zip(&args.config_file)
                .map(|(i, p)| (i, config::Source::File(p.clone()))),
        );
        ordered.extend(
            indices("config_dir")
                .into_iter()
                .zip(&args.config_dir)
                .map(|(i, p)| (i, config::Source::Dir(p.clone()))),
        );
    }
    ordered.sort_by_key(|(index, _)| *index);
    let format = args.config_format.as_deref().map(config::Format::parse).transpose()?;
    let sources = config::Sources {
        paths: ordered.into_iter().map(|(_, source)| source).collect(),
        fragments: args.hcl.clone(),
        format,
    };
    let mut file = config::load(&sources)?;
    let mut warnings = std::mem::take(&mut file.warnings);
    warnings.extend(flag_warnings(args)?);
    let telemetry =
        muster::telemetry::parse_config(&serde_json::Value::Object(std::mem::take(&mut file.telemetry)))
            .map_err(|errors| format!("failed to parse telemetry: {}", config::multierror(&errors)))?;
    warnings.extend(telemetry.warnings);
    let telemetry = telemetry.config;
    // Flags win over files; `enable_local_script_checks` follows `enable_script_checks` unless
    // set, as in Consul.
    args.enable_script_checks = args.enable_script_checks.or(file.enable_script_checks);
    args.enable_local_script_checks =
        args.enable_local_script_checks.or(file.enable_local_script_checks).or(args.enable_script_checks);
    let definitions = http::definitions(&file, args.enable_local_script_checks == Some(true))?;
    flags_over_files(args, &mut file, given);
    Ok(FromFiles {
        sources,
        check_update_interval: file.check_update_interval,
        dns: file.dns,
        definitions,
        leave_on_terminate: file.leave_on_terminate,
        skip_leave_on_interrupt: file.skip_leave_on_interrupt,
        disable_remote_exec: file.disable_remote_exec,
        raft_multiplier: file.raft_multiplier,
        rpc_client_timeout: file.rpc_client_timeout,
        rpc_hold_timeout: file.rpc_hold_timeout,
        autopilot: file.autopilot.clone(),
        addresses_http: file.addresses_http,
        addresses_dns: file.addresses_dns,
        client_addrs: file.client_addrs.clone(),
        telemetry,
        warnings,
    })
}

/// Fills in each setting the command line left out from the files (flags win over files; join
/// lists are appended), taking what it uses out of `file`.
fn flags_over_files(args: &mut cli::AgentArgs, file: &mut config::FileConfig, given: impl Fn(&str) -> bool) {
    if !given("datacenter") {
        args.datacenter = file.datacenter.take().unwrap_or(args.datacenter.clone());
    }
    args.data_dir = args.data_dir.take().or(file.data_dir.take());
    args.node = args.node.take().or(file.node_name.take());
    args.bind = args.bind.or(file.bind_addr.take());
    args.advertise = args.advertise.or(file.advertise_addr.take());
    args.client = args.client.or(file.client_addr.take());
    args.encrypt = args.encrypt.take().or(file.encrypt.take());
    args.server = args.server.or(file.server.take());
    args.bootstrap = args.bootstrap.or(file.bootstrap.take());
    if !given("bootstrap_expect") {
        args.bootstrap_expect = file.bootstrap_expect.take().unwrap_or(args.bootstrap_expect);
    }
    if !given("http_port") {
        args.http_port = file.ports.http.take().unwrap_or(args.http_port);
    }
    if !given("serf_lan_port") {
        args.serf_lan_port = file.ports.serf_lan.take().unwrap_or(args.serf_lan_port);
    }
    if !given("serf_wan_port") {
        args.serf_wan_port = file.ports.serf_wan.take().unwrap_or(args.serf_wan_port);
    }
    if !given("server_port") {
        args.server_port = file.ports.server.take().unwrap_or(args.server_port);
    }
    if !given("dns_port") {
        args.dns_port = file.ports.dns.take().unwrap_or(args.dns_port);
    }
    if !given("domain") {
        args.domain = file.domain.take().unwrap_or(args.domain.clone());
    }
    args.alt_domain = args.alt_domain.take().or(file.alt_domain.take());
    args.recursor.extend(std::mem::take(&mut file.recursors));
    args.rejoin = args.rejoin.or(file.rejoin_after_leave.take());
    args.retry_interval = args.retry_interval.take().or(file.retry_interval.take());
    args.auto_reload_config = args.auto_reload_config.or(file.auto_reload_config.take());
    args.retry_interval_wan = args.retry_interval_wan.take().or(file.retry_interval_wan.take());
    args.retry_max = args.retry_max.or(file.retry_max.take());
    args.log_level = args.log_level.take().or(file.log_level.take());
    args.log_json = args.log_json.or(file.log_json.take());
    args.log_file = args.log_file.take().or(file.log_file.take());
    args.syslog = args.syslog.or(file.enable_syslog.take());
    if let Some(facility) = file.syslog_facility.take() {
        args.syslog_facility = facility;
    }
    args.log_rotate_bytes = args.log_rotate_bytes.or(file.log_rotate_bytes.take());
    args.log_rotate_duration = args.log_rotate_duration.take().or(file.log_rotate_duration.take());
    args.log_rotate_max_files = args.log_rotate_max_files.or(file.log_rotate_max_files.take());
    args.pid_file = args.pid_file.take().or(file.pid_file.take());
    args.node_id = args.node_id.take().or(file.node_id.take());
    args.advertise_wan = args.advertise_wan.or(file.advertise_addr_wan.take());
    args.serf_lan_bind = args.serf_lan_bind.or(file.serf_lan.take());
    args.serf_wan_bind = args.serf_wan_bind.or(file.serf_wan.take());
    args.disable_keyring_file = args.disable_keyring_file.or(file.disable_keyring_file.take());
    args.serf_lan_allowed_cidrs.extend(std::mem::take(&mut file.serf_lan_allowed_cidrs));
    args.serf_wan_allowed_cidrs.extend(std::mem::take(&mut file.serf_wan_allowed_cidrs));
    args.ui = args.ui.or(file.ui.take());
    args.grpc_port = args.grpc_port.or(file.ports.grpc.take());
    args.https_port = args.https_port.or(file.ports.https.take());
    args.raft_protocol = args.raft_protocol.or(file.raft_protocol.take());
    args.default_query_time = args.default_query_time.take().or(file.default_query_time.take());
    args.max_query_time = args.max_query_time.take().or(file.max_query_time.take());
    // Flags after files: a -node-meta key given on the command line wins.
    let flag_meta = std::mem::take(&mut args.node_meta);
    args.node_meta = file.node_meta.iter().map(|(k, v)| format!("{k}:{v}")).chain(flag_meta).collect();
    args.join.extend(std::mem::take(&mut file.retry_join));
    args.join_wan.extend(std::mem::take(&mut file.retry_join_wan));
}

/// The agent flags muster accepts but does not act on yet, checked as the config keys they set
/// (`-grpc-port` is `ports.grpc`), so a flag draws the same warning as its key in a file, and
/// one asking for protection muster does not give (`-allow-write-http-from`) stops the agent.
fn flag_warnings(args: &cli::AgentArgs) -> Result<Vec<String>, String> {
    use serde_json::{json, Map, Value};
    let mut keys = Map::new();
    let mut set = |path: &str, value: Value| {
        let (block, key) = path.split_once('.').map_or((None, path), |(block, key)| (Some(block), key));
        let target = match block {
            None => &mut keys,
            Some(block) => {
                keys.entry(block).or_insert_with(|| json!({})).as_object_mut().expect("blocks are objects")
            }
        };
        target.insert(key.to_owned(), value);
    };
    if !args.allow_write_http_from.is_empty() {
        set("http_config.allow_write_http_from", json!(args.allow_write_http_from));
    }
    if !args.primary_gateway.is_empty() {
        set("primary_gateways", json!(args.primary_gateway));
    }
    let scalars: [(&str, Option<Value>); 11] = [
        ("ui_config.enabled", args.ui.filter(|on| *on).map(Value::from)),
        ("check_output_max_size", args.check_output_max_size.map(Value::from)),
        ("ports.grpc", args.grpc_port.filter(|port| *port > 0).map(Value::from)),
        ("ports.grpc_tls", args.grpc_tls_port.filter(|port| *port > 0).map(Value::from)),
        ("ports.https", args.https_port.filter(|port| *port > 0).map(Value::from)),
        ("read_replica", args.read_replica.map(Value::from)),
        ("retry_max_wan", args.retry_max_wan.map(Value::from)),
        ("segment", args.segment.clone().map(Value::from)),
        ("ui_config.dir", args.ui_dir.clone().map(Value::from)),
        ("ui_config.content_path", args.ui_content_path.clone().map(Value::from)),
        ("protocol", args.protocol.map(Value::from)),
    ];
    for (path, value) in scalars {
        if let Some(value) = value {
            set(path, value);
        }
    }
    let checked = config::checked("the command line", keys, config::keys::Origin::Json)?;
    Ok(checked.warnings.into_iter().map(|warning| format!("command line: {warning}")).collect())
}

/// `muster validate`: reads the files as the agent would and says whether they are usable.
fn validate(args: &cli::ValidateArgs) -> ExitCode {
    let paths = args
        .paths
        .iter()
        .map(|p| if p.is_dir() { config::Source::Dir(p.clone()) } else { config::Source::File(p.clone()) })
        .collect();
    let format = args.config_format.as_deref().map(config::Format::parse).transpose();
    let checked = format
        .and_then(|format| config::load(&config::Sources { paths, format, ..config::Sources::default() }));
    let checked = checked.and_then(|file| {
        let scripts =
            file.enable_script_checks.unwrap_or(false) || file.enable_local_script_checks.unwrap_or(false);
        Ok((file.warnings.clone(), http::definitions(&file, scripts)?))
    });
    match checked {
        Ok((warnings, _)) => {
            // Consul's validate: each warning on stderr, then the verdict.
            for warning in warnings {
                eprintln!("{warning}");
            }
            if !args.quiet {
                println!("Configuration is valid!");
            }
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("Config validation failed: {message}");
            ExitCode::from(1)
        }
    }
}

/// How often `-auto-reload-config` looks at the configuration files.
const AUTO_RELOAD_POLL: std::time::Duration = std::time::Duration::from_secs(1);

/// `-auto-reload-config`: the files are read again whenever one is added, removed or written
/// (polled: a file's length and modification time, every second).
async fn auto_reload(api: Arc<http::Api>) {
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
async fn reload_on_sighup(api: Arc<http::Api>) {
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

/// The tracing subscriber: `-log-level` (or `MUSTER_LOG`, a full tracing filter, which wins),
/// text or `-log-json` lines, on stdout and, with `-log-file`, appended to a file too.
fn init_logging(args: &cli::AgentArgs) -> Result<(), String> {
    use tracing_subscriber::fmt::writer::MakeWriterExt;
    let level = match args.log_level.as_deref().map(str::to_ascii_lowercase).as_deref() {
        None => "info",
        Some(level @ ("trace" | "debug" | "info" | "warn" | "error")) => match level {
            "trace" => "trace",
            "debug" => "debug",
            "info" => "info",
            "warn" => "warn",
            _ => "error",
        },
        Some("err") => "error",
        Some(_) => {
            return Err(format!(
                "Invalid log level: {:?}. Valid log levels are: [TRACE DEBUG INFO WARN ERR]",
                args.log_level.as_deref().unwrap_or_default()
            ))
        }
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("MUSTER_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let file = match &args.log_file {
        None => None,
        Some(path) => {
            let path = if path.as_os_str().to_string_lossy().ends_with('/') {
                let secs = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs());
                path.join(format!("muster-{secs}.log"))
            } else {
                path.clone()
            };
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|e| format!("Error creating {}: {e}", dir.display()))?;
            }
            let rotation = log_rotation(args)?;
            let file = muster::logfile::RotatingFile::open(&path, rotation)
                .map_err(|e| format!("Error opening log file {}: {e}", path.display()))?;
            Some(std::sync::Mutex::new(file))
        }
    };
    // The agent's own log at its level; `/v1/agent/monitor`'s watchers, at the levels they ask
    // (more verbose than the agent's too, as Consul's monitor), through a layer of their own.
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;
    type Boxed = Box<dyn Layer<tracing_subscriber::Registry> + Send + Sync>;
    let format = muster::log_format::ConsulFormat { json: args.log_json == Some(true), time: true };
    let fmt: Boxed = match file {
        None => tracing_subscriber::fmt::layer().event_format(format).with_filter(filter).boxed(),
        Some(file) => tracing_subscriber::fmt::layer()
            .event_format(format)
            .with_writer(std::io::stdout.and(file))
            .with_filter(filter)
            .boxed(),
    };
    // -syslog: the same lines, at the agent's level, to the local syslog daemon.
    let syslog: Option<Boxed> = match args.syslog == Some(true) {
        false => None,
        true => {
            let syslog = muster::syslog::Syslog::connect(muster::syslog::facility(&args.syslog_facility)?)?;
            let filter = tracing_subscriber::EnvFilter::try_from_env("MUSTER_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
            Some(
                tracing_subscriber::fmt::layer()
                    .event_format(muster::log_format::ConsulFormat { json: false, time: false })
                    .with_writer(syslog)
                    .with_filter(filter)
                    .boxed(),
            )
        }
    };
    let monitor = muster::monitor::layer()
        .with_filter(tracing_subscriber::filter::filter_fn(|meta| muster::monitor::wanted(*meta.level())))
        .boxed();
    tracing_subscriber::registry()
        .with(std::iter::once(fmt).chain(syslog).chain([monitor]).collect::<Vec<_>>())
        .init();
    Ok(())
}

/// `-log-rotate-bytes`, `-log-rotate-duration` and `-log-rotate-max-files`.
fn log_rotation(args: &cli::AgentArgs) -> Result<muster::logfile::Rotation, String> {
    let mut rotation = muster::logfile::Rotation::default();
    if let Some(bytes) = args.log_rotate_bytes {
        rotation.max_bytes = bytes;
    }
    if let Some(text) = &args.log_rotate_duration {
        rotation.max_age =
            muster_core::duration::parse(text).ok().filter(|d| !d.is_zero()).ok_or_else(|| {
                format!("Invalid -log-rotate-duration {text:?}: want a positive duration such as 24h")
            })?;
    }
    if let Some(files) = args.log_rotate_max_files {
        if files < -1 {
            return Err(format!(
                "Invalid -log-rotate-max-files {files}: want -1 (keep none), 0 (keep all) or more"
            ));
        }
        rotation.max_files = files;
    }
    Ok(rotation)
}

/// `-pid-file`: the process ID, written at start and removed when the agent stops.
struct PidFile(std::path::PathBuf);

impl PidFile {
    fn write(path: &std::path::Path) -> Result<PidFile, String> {
        std::fs::write(path, std::process::id().to_string())
            .map_err(|e| format!("Could not write PID file {}: {e}", path.display()))?;
        Ok(PidFile(path.to_owned()))
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// `-serf-lan-allowed-cidrs` and friends: each flag may hold several ranges, comma-separated.
fn parse_cidrs(texts: &[String], key: &str) -> Result<Vec<muster_core::cidr::Cidr>, String> {
    texts
        .iter()
        .flat_map(|text| text.split(','))
        .filter(|part| !part.trim().is_empty())
        .map(|part| muster_core::cidr::Cidr::parse(part).map_err(|reason| format!("{key}: {reason}")))
        .collect()
}

/// The most node metadata pairs, and the longest key and value (Consul's limits).
const NODE_META_PAIRS_MAX: usize = 64;
const NODE_META_KEY_BYTES_MAX: usize = 128;
const NODE_META_VALUE_BYTES_MAX: usize = 512;

/// `-node-meta key:value` pairs, checked as Consul checks them.
fn parse_node_meta(pairs: &[String]) -> Result<std::collections::BTreeMap<String, String>, String> {
    let mut meta = std::collections::BTreeMap::new();
    for pair in pairs {
        let (key, value) = pair.split_once(':').unwrap_or((pair.as_str(), ""));
        if key.is_empty() {
            return Err(format!("Invalid node metadata {pair:?}: key cannot be blank"));
        }
        if key.len() > NODE_META_KEY_BYTES_MAX || value.len() > NODE_META_VALUE_BYTES_MAX {
            return Err(format!(
                "Invalid node metadata {pair:?}: keys are at most {NODE_META_KEY_BYTES_MAX} bytes, values {NODE_META_VALUE_BYTES_MAX}"
            ));
        }
        if !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
            return Err(format!("Invalid node metadata {pair:?}: key contains invalid characters"));
        }
        if key.starts_with("consul-") {
            return Err(format!(
                "Invalid node metadata {pair:?}: key prefix \"consul-\" is reserved for internal use"
            ));
        }
        meta.insert(key.to_owned(), value.to_owned());
    }
    if meta.len() > NODE_META_PAIRS_MAX {
        return Err(format!("Node metadata cannot contain more than {NODE_META_PAIRS_MAX} key/value pairs"));
    }
    Ok(meta)
}

/// This agent's node row, as it registers it in the catalog.
fn own_node(id: &str, name: &str, datacenter: &str, address: IpAddr) -> muster_core::fsm::Node {
    let address = address.to_string();
    let tagged = ["lan", "lan_ipv4", "wan", "wan_ipv4"];
    muster_core::fsm::Node {
        id: id.to_owned(),
        node: name.to_owned(),
        address: address.clone(),
        datacenter: datacenter.to_owned(),
        tagged_addresses: tagged.iter().map(|k| ((*k).to_owned(), address.clone())).collect(),
        meta: [("consul-network-segment".to_owned(), String::new())].into_iter().collect(),
        ..muster_core::fsm::Node::default()
    }
}

/// The node's ID: a random UUID, kept in `<data-dir>/node-id` so it survives restarts (Consul's
/// file and format); -dev makes a new one each run.
fn node_id(data_dir: Option<&std::path::Path>) -> Result<String, String> {
    let Some(dir) = data_dir else { return Ok(uuid::Uuid::new_v4().to_string()) };
    let path = dir.join("node-id");
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let id = text.trim().to_owned();
            muster_core::fsm::catalog::parse_uuid(&id)
                .map_err(|reason| format!("Error reading {}: {reason}", path.display()))?;
            Ok(id)
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            let id = uuid::Uuid::new_v4().to_string();
            std::fs::create_dir_all(dir).map_err(|e| format!("Error creating {}: {e}", dir.display()))?;
            std::fs::write(&path, &id).map_err(|e| format!("Error writing {}: {e}", path.display()))?;
            Ok(id)
        }
        Err(error) => Err(format!("Error reading {}: {error}", path.display())),
    }
}

/// How this server starts Raft.
struct ServerPlan {
    dev: bool,
    /// -bootstrap (or -dev): a cluster of this one server.
    bootstrap: bool,
    /// -bootstrap-expect (0: none, or one, which is bootstrap mode).
    expect: usize,
    raft_id: raft::ServerId,
    bind: SocketAddr,
    dir: std::path::PathBuf,
    datacenter: String,
    /// `performance.raft_multiplier`.
    raft_multiplier: u8,
}

/// muster's `performance.raft_multiplier` when none is set: 1, the value Consul's documentation
/// recommends for production, where Consul's own default of 5 is tuned for the smallest cloud
/// instances. A user who sets it gets Consul's scaling.
const RAFT_MULTIPLIER_DEFAULT: u8 = 1;

/// Where a server that bootstrapped with others keeps the voters it started with: the first
/// configuration is implied by every server's starting voters (not written to the log), so a
/// restart must start from the same set.
const BOOTSTRAP_VOTERS_FILE: &str = "bootstrap-voters";

/// Starts this server's Raft over its log and the state machine it applies to. A lone
/// bootstrapper is its only voter. A server with -bootstrap-expect and no Raft data waits for
/// the expected servers in gossip, then starts with them as voters; with Raft data it starts
/// from its log (and the voters it bootstrapped with). Any other server starts with no voters
/// and waits to be added by a leader. Every server follows gossip for its peers' addresses.
async fn start_consensus(
    plan: ServerPlan,
    members: Arc<http::Members>,
) -> Result<(RaftHandle<http::Output>, Arc<Store>, Option<mpsc::Receiver<RpcConnection>>), String> {
    use muster::raft_server;
    let mut config = raft::Config::new(plan.raft_id, [], seed_from_os());
    if plan.dev {
        // Consul's dev timings are tens of milliseconds: a leader at once, and nothing else to
        // wait for with one server.
        config.election_timeout = std::time::Duration::from_millis(100);
        config.heartbeat_interval = std::time::Duration::from_millis(20);
        config.leader_lease = std::time::Duration::from_millis(50);
    } else {
        // hashicorp/raft's timings at multiplier 1 (a 1 s election timeout, a 500 ms lease;
        // heartbeats at a tenth of the timeout), scaled as Consul scales them.
        let multiplier = u32::from(plan.raft_multiplier);
        config.election_timeout = std::time::Duration::from_secs(1) * multiplier;
        config.heartbeat_interval = std::time::Duration::from_millis(100) * multiplier;
        config.leader_lease = std::time::Duration::from_millis(500) * multiplier;
    }
    // RPC shares the server port with Raft: connections opening with the RPC byte come here.
    let (rpc_tx, rpc_rx) = mpsc::channel(RPC_ACCEPT_QUEUE);
    let (transport, inbound) =
        muster::raft_net::RaftTransport::bind_with_rpc(plan.raft_id, plan.bind, Some(rpc_tx))
            .await
            .map_err(|e| format!("Error binding the server port {}: {e}", plan.bind))?;
    let opened = raft_server::open(&plan.dir)
        .map_err(|e| format!("Error opening Raft in {}: {e}", plan.dir.display()))?;
    let voters_file = plan.dir.join(BOOTSTRAP_VOTERS_FILE);
    let store = Store::new();
    let machine = store::StoreMachine(store.clone());
    let has_data = opened.has_data();
    let (handle, configure) = raft_server::start_opened(opened, transport, inbound, machine);
    tokio::spawn(follow_server_addresses(members.clone(), handle.client(), plan.raft_id));
    if plan.bootstrap {
        config.voters = [plan.raft_id].into_iter().collect();
        let _ = configure.send(config);
    } else if has_data || plan.expect == 0 {
        if has_data && plan.expect > 0 {
            tracing::info!("agent.server.raft: Raft data found, disabling bootstrap mode");
        }
        config.voters = read_voters(&voters_file)?;
        let _ = configure.send(config);
    } else {
        tokio::spawn(await_bootstrap(members, plan, config, voters_file, configure));
    }
    Ok((handle, store, Some(rpc_rx)))
}

/// An RPC connection the server port handed over.
type RpcConnection = (tokio::net::TcpStream, SocketAddr);

/// RPC connections waiting for their handler task.
const RPC_ACCEPT_QUEUE: usize = 256;

/// Waits until gossip shows the expected servers, then starts Raft with them as voters.
async fn await_bootstrap(
    members: Arc<http::Members>,
    plan: ServerPlan,
    mut config: raft::Config,
    voters_file: std::path::PathBuf,
    configure: oneshot::Sender<raft::Config>,
) {
    use muster_core::servers::{bootstrap, Bootstrap};
    let mut published = members.subscribe();
    let mut seen_before = None;
    loop {
        match bootstrap(plan.expect, &plan.datacenter, &members.alive_lan_servers()) {
            Bootstrap::Wait { seen } => {
                if seen_before != Some(seen) {
                    tracing::info!("agent: waiting for {} servers to bootstrap, {seen} seen", plan.expect);
                    seen_before = Some(seen);
                }
            }
            Bootstrap::Refuse(reason) => {
                // The server stays up without voters: an operator can still add it to a cluster.
                tracing::error!("agent: {reason}");
                let _ = configure.send(config);
                return;
            }
            Bootstrap::Ready(servers) => {
                let voters: std::collections::BTreeSet<raft::ServerId> =
                    servers.iter().map(|s| s.raft_id).collect();
                match existing_voters(&servers, plan.raft_id).await {
                    Err(unreachable) => {
                        // Every server must have answered before deciding; ask again shortly.
                        tracing::info!("agent: cannot ask {unreachable} for its Raft configuration yet");
                        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                        continue;
                    }
                    Ok(Some(existing)) if existing != voters => {
                        // A cluster exists that this server is not a founder of: bootstrapping
                        // would make a second one. It waits, without voters, to be added.
                        tracing::info!(
                            "agent: a server already has a Raft configuration; disabling bootstrap mode"
                        );
                        let _ = configure.send(config);
                        return;
                    }
                    // Nobody has one yet, or the others bootstrapped this very set a moment ago.
                    Ok(_) => {}
                }
                let names: Vec<String> =
                    servers.iter().map(|s| format!("{} ({})", s.name, s.rpc_addr)).collect();
                tracing::info!(
                    "agent: found expected number of peers, attempting bootstrap: {}",
                    names.join(", ")
                );
                config.voters = servers.iter().map(|s| s.raft_id).collect();
                if let Err(error) = write_voters(&voters_file, &config.voters) {
                    tracing::error!(%error, "agent: cannot record the bootstrap voters; not bootstrapping");
                    return;
                }
                let _ = configure.send(config);
                return;
            }
        }
        if published.changed().await.is_err() {
            return;
        }
    }
}

/// The voters of the Raft configuration another of `servers` already has, if one has any
/// (Consul asks its peers the same before bootstrapping); `Err` names a server that did not
/// answer.
async fn existing_voters(
    servers: &[muster_core::servers::ServerInfo],
    me: raft::ServerId,
) -> Result<Option<std::collections::BTreeSet<raft::ServerId>>, String> {
    use muster::rpc::{Call, HttpRequest, Pool, Reply, Request};
    let pool = Pool::default();
    for server in servers.iter().filter(|s| s.raft_id != me) {
        let ask = Request::Leader(Call::Http(HttpRequest {
            method: "GET".into(),
            uri: "/v1/operator/raft/configuration?stale".into(),
            headers: Vec::new(),
            body: bytes::Bytes::new(),
        }));
        let body = match pool.call(server.rpc_addr, &ask).await {
            Ok(Reply::Http(reply)) if reply.status == 200 => reply.body,
            _ => return Err(server.name.clone()),
        };
        let configuration: serde_json::Value =
            serde_json::from_slice(&body).map_err(|_| server.name.clone())?;
        let ids: std::collections::BTreeSet<raft::ServerId> = configuration["Servers"]
            .as_array()
            .map(|servers| {
                servers
                    .iter()
                    .filter_map(|s| s["ID"].as_str())
                    .filter_map(|id| {
                        muster_core::servers::raft_id(id).or_else(|| u64::from_str_radix(id, 16).ok())
                    })
                    .collect()
            })
            .unwrap_or_default();
        if !ids.is_empty() {
            return Ok(Some(ids));
        }
    }
    Ok(None)
}

/// Points Raft at every server gossip shows, as their addresses become known or change.
async fn follow_server_addresses(
    members: Arc<http::Members>,
    raft: muster::raft_server::RaftClient<http::Output>,
    me: raft::ServerId,
) {
    let mut published = members.subscribe();
    loop {
        for server in members.alive_lan_servers().into_iter().filter(|s| s.raft_id != me) {
            if raft.set_peer(server.raft_id, server.rpc_addr).await.is_err() {
                return;
            }
        }
        if published.changed().await.is_err() {
            return;
        }
    }
}

/// The voters a server bootstrapped with (none if it never bootstrapped with others).
fn read_voters(path: &std::path::Path) -> Result<std::collections::BTreeSet<raft::ServerId>, String> {
    match std::fs::read_to_string(path) {
        Ok(text) => text
            .split_whitespace()
            .map(|id| u64::from_str_radix(id, 16))
            .collect::<Result<_, _>>()
            .map_err(|e| format!("Error reading {}: {e}", path.display())),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(Default::default()),
        Err(error) => Err(format!("Error reading {}: {error}", path.display())),
    }
}

/// Records the bootstrap voters durably before Raft starts with them.
fn write_voters(
    path: &std::path::Path,
    voters: &std::collections::BTreeSet<raft::ServerId>,
) -> std::io::Result<()> {
    let text: Vec<String> = voters.iter().map(|id| format!("{id:016x}")).collect();
    muster::storage::replace_file(path, text.join("\n").as_bytes())
}

fn pool_of(plan: &PoolPlan) -> http::Pool {
    if plan.label == "serf.wan" {
        http::Pool::Wan
    } else {
        http::Pool::Lan
    }
}

/// One gossip pool the agent runs: the LAN pool always, the WAN pool on servers.
struct PoolPlan {
    label: &'static str,
    name: String,
    port: u16,
    /// Joins given as DNS names, with the port to use when a name gives none.
    join_names: Vec<(String, u16)>,
    /// The address to bind, when not -bind's (-serf-lan-bind, -serf-wan-bind).
    bind: Option<IpAddr>,
    /// The address to advertise, when not -advertise's (-advertise-wan).
    advertise: Option<IpAddr>,
    /// The sources gossip is taken from (-serf-lan-allowed-cidrs); empty: any.
    allowed: Vec<muster_core::cidr::Cidr>,
    joins: Vec<SocketAddr>,
    swim: swim::Config,
    dir: Option<std::path::PathBuf>,
}

/// The tags every member learns about this agent, as Consul sets them.
/// What an agent's gossip tags say about it.
struct TagPlan<'a> {
    server: bool,
    datacenter: &'a str,
    node_id: &'a str,
    server_port: u16,
    expect: usize,
    bootstrap: bool,
}

/// The agent's LAN and WAN tags, as Consul's: `role`, `dc`, `vsn`, `build`, `id`, and for a
/// server its RPC `port`, with `expect` or `bootstrap` when it was started with them.
fn node_tags(plan: &TagPlan<'_>) -> bytes::Bytes {
    let mut tags = Tags::default()
        .with("role", if plan.server { "consul" } else { "node" })
        .with("dc", plan.datacenter)
        .with("vsn", version::PROTOCOL_DEFAULT.to_string())
        .with("build", format!("{}:muster", version::CONSUL_COMPATIBLE_VERSION))
        .with("id", plan.node_id);
    if plan.server {
        tags = tags.with("port", plan.server_port.to_string());
        if plan.expect > 0 {
            tags = tags.with("expect", plan.expect.to_string());
        }
        if plan.bootstrap {
            tags = tags.with("bootstrap", "1");
        }
    }
    tags.encode().expect("the agent's own tags are small")
}

/// Logs a pool's events as serf and memberlist word them, under Consul's logger name for the pool
/// (`agent.server.serf.lan`, `agent.client.serf.lan`, `agent.server.serf.wan`).
fn event_logger(module: String, me: String, left: mpsc::Sender<()>) -> impl FnMut(Event) {
    move |event: Event| match muster::telemetry::serf_event(&module, event) {
        // serf's and memberlist's words: names must be unique, and the claim is ignored.
        Event::Member(member) if member.kind == muster_core::swim::MemberEventKind::Conflict => {
            if member.node.name == me {
                tracing::error!(
                    "{module}: memberlist: Node name conflicts with another node at {}. Names must be unique!",
                    member.node.addr
                );
            } else {
                tracing::error!(
                    "{module}: memberlist: Name conflict for '{}': another node at {} claims it. Names must be unique!",
                    member.node.name,
                    member.node.addr
                );
            }
        }
        Event::Member(member) => tracing::info!(
            "{module}: serf: EventMember{:?}: {} {}",
            member.kind,
            member.node.name,
            member.node.addr.ip()
        ),
        Event::User(user) => {
            tracing::info!(
                "{module}: serf: EventUser: {} (ltime {}, {} bytes)",
                user.name,
                user.ltime,
                user.payload.len()
            )
        }
        Event::Keyring(result) => tracing::info!(
            "{module}: serf: keyring {:?}: {} of {} members answered, {} errors",
            result.op,
            result.responses,
            result.members,
            result.errors.len()
        ),
        Event::Left => {
            tracing::info!("{module}: serf: graceful leave complete");
            let _ = left.try_send(());
        }
    }
}

/// The joins given as addresses (`ip`, `ip:port`, `[v6]:port`); names are [`join_names`]'s.
fn parse_joins(texts: &[String], default_port: u16, flag: &str) -> Result<Vec<SocketAddr>, String> {
    // The names, and their errors (cloud auto-join among them), are join_names's to report.
    join_names(texts, default_port, flag)?;
    texts
        .iter()
        .filter(|text| join_name(text, default_port).is_none())
        .map(|text| parse_join(text, default_port, flag))
        .collect()
}

/// The joins given as DNS names (`consul.example.com`, `name:port`), checked; Consul's cloud
/// auto-join (`provider=aws ...`) is refused with a reason.
fn join_names(texts: &[String], default_port: u16, flag: &str) -> Result<Vec<(String, u16)>, String> {
    let mut names = Vec::new();
    for text in texts {
        if text.contains("provider=") {
            return Err(format!(
                "Error parsing {flag} address {text:?}: cloud auto-join is not supported; give the servers' addresses or DNS names"
            ));
        }
        if let Some(name) = join_name(text, default_port) {
            names.push(name?);
        }
    }
    Ok(names)
}

/// `text` as a DNS name and port, if it is not an address: `None` for an address.
fn join_name(text: &str, default_port: u16) -> Option<Result<(String, u16), String>> {
    if text.parse::<SocketAddr>().is_ok() || text.parse::<IpAddr>().is_ok() || text.contains("provider=") {
        return None;
    }
    let (host, port) = match text.rsplit_once(':') {
        Some((host, port)) => match port.parse::<u16>() {
            Ok(port) => (host, port),
            Err(_) => return Some(Err(format!("Error parsing join address {text:?}: bad port"))),
        },
        None => (text, default_port),
    };
    let valid = !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    Some(if valid {
        Ok((host.to_owned(), port))
    } else {
        Err(format!("Error parsing join address {text:?}: expected an IP, IP:port or a DNS name"))
    })
}

/// Resolves each name, trying again every `retry` until it resolves, and joins every address
/// it gives.
async fn join_by_name(
    commands: mpsc::Sender<CommandRequest>,
    names: Vec<(String, u16)>,
    retry: std::time::Duration,
    pool: &'static str,
    members: Arc<http::Members>,
) {
    for (host, port) in names {
        let peers = loop {
            match tokio::net::lookup_host((host.as_str(), port)).await {
                Ok(found) => {
                    let peers: Vec<SocketAddr> = found.collect();
                    if !peers.is_empty() {
                        break peers;
                    }
                    tracing::warn!("agent: {pool}: {host} resolves to no address; trying again in {retry:?}");
                }
                Err(error) => {
                    tracing::warn!("agent: {pool}: resolving {host}: {error}; trying again in {retry:?}")
                }
            }
            tokio::time::sleep(retry).await;
        };
        join_all(commands.clone(), peers, pool, members.clone()).await;
    }
}

/// The signals that stop an agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Signal {
    /// SIGINT (Ctrl-C).
    Interrupt,
    /// SIGTERM.
    Terminate,
}

async fn wait_for_signal() -> Signal {
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

/// How long after its last attempt a join is given to be answered before -retry-max gives up
/// (a push/pull's TCP timeout).
const RETRY_MAX_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// How long a leaving agent waits for its leave to go out (Consul: a 5 s broadcast timeout).
const LEAVE_GRACE: std::time::Duration = std::time::Duration::from_secs(6);

/// Joins `peers` and logs it in Consul's words: `Joining cluster...`, `(LAN) joining`, then,
/// once gossip shows another member, `(LAN) joined` and `Join cluster completed`.
async fn join_all(
    commands: mpsc::Sender<CommandRequest>,
    peers: Vec<SocketAddr>,
    pool: &'static str,
    members: Arc<http::Members>,
) {
    if peers.is_empty() {
        return;
    }
    let (cluster, which) = match pool {
        "serf.wan" => ("WAN", http::Pool::Wan),
        _ => ("LAN", http::Pool::Lan),
    };
    let addresses = format!("[{}]", peers.iter().map(ToString::to_string).collect::<Vec<_>>().join(" "));
    tracing::info!(cluster, "agent: Joining cluster...");
    match which {
        http::Pool::Wan => tracing::info!(wan_addresses = %addresses, "agent: (WAN) joining"),
        http::Pool::Lan => tracing::info!(lan_addresses = %addresses, "agent: (LAN) joining"),
    }
    let mut requested = 0;
    for peer in peers {
        let (reply_tx, reply_rx) = oneshot::channel();
        if commands.send((Command::Join { peer }, reply_tx)).await.is_err() {
            return;
        }
        match reply_rx.await {
            Ok(Ok(())) => requested += 1,
            Ok(Err(error)) => tracing::warn!(%peer, %error, "agent: {pool}: join refused"),
            Err(_) => return,
        }
    }
    if requested == 0 {
        return;
    }
    // A join is a gossip exchange: it is done when the pool shows someone else.
    let mut published = members.subscribe();
    let joined = tokio::time::timeout(JOIN_REPORT_WAIT, async {
        loop {
            let count = members.list(which).len();
            if count > 1 {
                return count;
            }
            if published.changed().await.is_err() {
                return count;
            }
        }
    });
    if let Ok(count) = joined.await {
        let others = count - 1;
        tracing::info!(number_of_nodes = others, "agent: ({cluster}) joined");
        tracing::info!(
            cluster,
            num_agents = others,
            "agent: Join cluster completed. Synced with initial agents"
        );
    }
}

/// How long a join's outcome is watched for, to report it (the join goes on regardless).
const JOIN_REPORT_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// Decodes `-encrypt`: base64 of 16, 24 or 32 bytes, as Consul's `encrypt`.
fn decode_key(text: &str) -> Result<bytes::Bytes, String> {
    use base64::Engine;
    let key = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map_err(|e| format!("Error decoding the encryption key: {e}"))?;
    if ![16, 24, 32].contains(&key.len()) {
        return Err(format!("Error: the encryption key must be 16, 24 or 32 bytes, not {}", key.len()));
    }
    Ok(bytes::Bytes::from(key))
}

/// `muster keygen`: 32 random bytes from the operating system, base64 encoded.
fn keygen() -> std::io::Result<String> {
    use base64::Engine;
    use std::io::Read;
    let mut key = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut key)?;
    Ok(base64::engine::general_purpose::STANDARD.encode(key))
}

fn parse_join(text: &str, default_port: u16, flag: &str) -> Result<SocketAddr, String> {
    text.parse::<SocketAddr>()
        .or_else(|_| text.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, default_port)))
        .map_err(|_| format!("Error parsing {flag} address {text:?}: expected IP or IP:port"))
}

fn hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}

/// The DNS interface's settings from the flags and the files' `dns_config`.
fn dns_settings(args: &cli::AgentArgs, file: &config::DnsConfig) -> Result<muster::dns::Settings, String> {
    let domain_of = |text: &str| text.trim_end_matches('.').to_ascii_lowercase();
    let defaults = muster_core::dns::Config::default();
    let soa = |field: &str, default: u32| file.soa.get(field).copied().unwrap_or(default);
    let answers = muster_core::dns::Config {
        domain: domain_of(&args.domain),
        alt_domain: args.alt_domain.as_deref().map(domain_of).unwrap_or_default(),
        datacenter: args.datacenter.to_ascii_lowercase(),
        node_ttl_secs: file.node_ttl_secs.unwrap_or(0),
        service_ttl_secs: file.service_ttl_secs.clone(),
        only_passing: file.only_passing.unwrap_or(false),
        udp_answer_limit: file.udp_answer_limit.unwrap_or(defaults.udp_answer_limit),
        a_record_limit: file.a_record_limit.unwrap_or(0),
        enable_truncate: file.enable_truncate.unwrap_or(false),
        node_meta_txt: file.node_meta_txt.unwrap_or(defaults.node_meta_txt),
        recursion: !args.recursor.is_empty(),
        soa: muster_core::dns::Soa {
            refresh: soa("refresh", defaults.soa.refresh),
            retry: soa("retry", defaults.soa.retry),
            expire: soa("expire", defaults.soa.expire),
            min_ttl: soa("min_ttl", defaults.soa.min_ttl),
        },
    };
    if answers.domain.is_empty() {
        return Err("-domain must not be empty".to_owned());
    }
    let recursors = args
        .recursor
        .iter()
        .map(|text| {
            text.parse::<SocketAddr>()
                .or_else(|_| text.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, 53)))
                .map_err(|_| format!("Invalid recursor address {text:?}: expected an IP, or IP:port"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let strategy = match file.recursor_strategy.as_deref() {
        Some("random") => muster::dns::RecursorStrategy::Random,
        _ => muster::dns::RecursorStrategy::Sequential,
    };
    Ok(muster::dns::Settings {
        answers,
        recursors,
        strategy,
        recursor_timeout: file.recursor_timeout.unwrap_or(std::time::Duration::from_secs(2)),
    })
}

/// The agent's randomness is seeded from the OS once, here at the edge; the core only ever sees
/// the seed. Logged so a surprising run can be reasoned about.
fn seed_from_os() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    let seed = RandomState::new().hash_one(std::process::id());
    tracing::debug!(seed, "agent: rng seed");
    seed
}
