//! The agent's settings: the configuration files read, then the flags laid over them, each
//! value checked and turned into what the agent's parts take.

use std::net::{IpAddr, SocketAddr};

use muster::config;
use muster::http;

use super::error::{AgentError, FileAction};
use crate::cli;

/// What the configuration files gave the agent: where they are, and their services and checks.
pub(crate) struct FromFiles {
    pub(crate) sources: config::Sources,
    pub(crate) check_update_interval: Option<std::time::Duration>,
    pub(crate) dns: config::DnsConfig,
    pub(crate) definitions: http::Definitions,
    pub(crate) leave_on_terminate: Option<bool>,
    pub(crate) skip_leave_on_interrupt: Option<bool>,
    pub(crate) disable_remote_exec: Option<bool>,
    pub(crate) acl_default_policy: Option<String>,
    /// `acl.enabled`, `acl.tokens.initial_management`, `acl.tokens.default`.
    pub(crate) acl_enabled: bool,
    pub(crate) acl_token_persistence: bool,
    pub(crate) acl_initial_management: Option<String>,
    pub(crate) acl_default_token: Option<String>,
    pub(crate) acl_dns_token: Option<String>,
    pub(crate) response_headers: std::collections::BTreeMap<String, String>,
    pub(crate) block_endpoints: Vec<String>,
    pub(crate) raft_multiplier: Option<u8>,
    /// `limits.rpc_client_timeout`, `performance.rpc_hold_timeout`.
    pub(crate) rpc_client_timeout: Option<std::time::Duration>,
    pub(crate) rpc_hold_timeout: Option<std::time::Duration>,
    /// The `autopilot` block, over Consul's defaults.
    pub(crate) autopilot: muster_core::autopilot::Config,
    /// `watches`: the watch plans to run once the HTTP API is up.
    pub(crate) watches: Vec<serde_json::Value>,
    /// `tls.https` over `tls.defaults`: the HTTPS listener's TLS.
    pub(crate) tls_https: config::TlsStanza,
    /// `tls.internal_rpc` over `tls.defaults`: the server port's TLS.
    pub(crate) tls_internal_rpc: config::TlsStanza,
    /// `limits.https_handshake_timeout`.
    pub(crate) https_handshake_timeout: Option<std::time::Duration>,
    /// `addresses.http`, `addresses.https`, `addresses.dns`.
    pub(crate) addresses_http: Vec<IpAddr>,
    pub(crate) addresses_https: Vec<IpAddr>,
    pub(crate) addresses_dns: Vec<IpAddr>,
    /// Every address `client_addr` named in the files.
    pub(crate) client_addrs: Vec<IpAddr>,
    /// The `telemetry` block's settings.
    pub(crate) telemetry: muster::telemetry::TelemetryConfig,
    /// What the files and flags set that muster accepts but does not act on yet, to log at start.
    pub(crate) warnings: Vec<String>,
}

/// Reads the configuration files the flags name and fills in every setting the command line
/// left out (flags win over files, files over defaults; join lists are appended).
pub(crate) fn apply_config_files(
    args: &mut cli::AgentArgs,
    matches: Option<&clap::ArgMatches>,
) -> Result<FromFiles, AgentError> {
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
        acl_default_policy: file.acl_default_policy,
        acl_enabled: file.acl_enabled == Some(true),
        acl_token_persistence: file.acl_token_persistence == Some(true),
        acl_initial_management: file.acl_initial_management,
        acl_default_token: file.acl_default_token,
        acl_dns_token: file.acl_dns_token,
        response_headers: file.response_headers,
        block_endpoints: file.block_endpoints,
        raft_multiplier: file.raft_multiplier,
        rpc_client_timeout: file.rpc_client_timeout,
        rpc_hold_timeout: file.rpc_hold_timeout,
        autopilot: file.autopilot.clone(),
        watches: file.watches,
        tls_https: file.tls_https.over(&file.tls_defaults),
        tls_internal_rpc: file.tls_internal_rpc.over(&file.tls_defaults),
        https_handshake_timeout: file.https_handshake_timeout,
        addresses_http: file.addresses_http,
        addresses_https: file.addresses_https,
        addresses_dns: file.addresses_dns,
        client_addrs: file.client_addrs.clone(),
        telemetry,
        warnings,
    })
}

/// Fills in each setting the command line left out from the files (flags win over files; join
/// lists are appended), taking what it uses out of `file`.
pub(crate) fn flags_over_files(
    args: &mut cli::AgentArgs,
    file: &mut config::FileConfig,
    given: impl Fn(&str) -> bool,
) {
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
pub(crate) fn flag_warnings(args: &cli::AgentArgs) -> Result<Vec<String>, AgentError> {
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
    let scalars: [(&str, Option<Value>); 10] = [
        ("ui_config.enabled", args.ui.filter(|on| *on).map(Value::from)),
        ("check_output_max_size", args.check_output_max_size.map(Value::from)),
        ("ports.grpc", args.grpc_port.filter(|port| *port > 0).map(Value::from)),
        ("ports.grpc_tls", args.grpc_tls_port.filter(|port| *port > 0).map(Value::from)),
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

/// `-serf-lan-allowed-cidrs` and friends: each flag may hold several ranges, comma-separated.
pub(crate) fn parse_cidrs(texts: &[String], key: &str) -> Result<Vec<muster_core::cidr::Cidr>, AgentError> {
    texts
        .iter()
        .flat_map(|text| text.split(','))
        .filter(|part| !part.trim().is_empty())
        .map(|part| {
            muster_core::cidr::Cidr::parse(part)
                .map_err(|reason| AgentError::Setting(format!("{key}: {reason}")))
        })
        .collect()
}

/// `-node-meta key:value` pairs, checked as Consul checks them.
pub(crate) fn parse_node_meta(
    pairs: &[String],
) -> Result<std::collections::BTreeMap<String, String>, AgentError> {
    let mut meta = std::collections::BTreeMap::new();
    for pair in pairs {
        let (key, value) = pair.split_once(':').unwrap_or((pair.as_str(), ""));
        if key.is_empty() {
            return Err(AgentError::Setting(format!("Invalid node metadata {pair:?}: key cannot be blank")));
        }
        if key.len() > NODE_META_KEY_BYTES_MAX || value.len() > NODE_META_VALUE_BYTES_MAX {
            return Err(AgentError::Setting(format!(
                "Invalid node metadata {pair:?}: keys are at most {NODE_META_KEY_BYTES_MAX} bytes, values {NODE_META_VALUE_BYTES_MAX}"
            )));
        }
        if !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
            return Err(AgentError::Setting(format!(
                "Invalid node metadata {pair:?}: key contains invalid characters"
            )));
        }
        if key.starts_with("consul-") {
            return Err(AgentError::Setting(format!(
                "Invalid node metadata {pair:?}: key prefix \"consul-\" is reserved for internal use"
            )));
        }
        meta.insert(key.to_owned(), value.to_owned());
    }
    if meta.len() > NODE_META_PAIRS_MAX {
        return Err(AgentError::Setting(format!(
            "Node metadata cannot contain more than {NODE_META_PAIRS_MAX} key/value pairs"
        )));
    }
    Ok(meta)
}

/// This agent's node row, as it registers it in the catalog.
pub(crate) fn own_node(id: &str, name: &str, datacenter: &str, address: IpAddr) -> muster_core::fsm::Node {
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
pub(crate) fn node_id(data_dir: Option<&std::path::Path>) -> Result<String, AgentError> {
    let Some(dir) = data_dir else { return Ok(uuid::Uuid::new_v4().to_string()) };
    let path = dir.join("node-id");
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let id = text.trim().to_owned();
            muster_core::fsm::catalog::parse_uuid(&id)
                .map_err(|reason| AgentError::Damaged { path: path.clone(), reason: reason.to_string() })?;
            Ok(id)
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            let id = uuid::Uuid::new_v4().to_string();
            std::fs::create_dir_all(dir).map_err(AgentError::file(FileAction::Creating, dir))?;
            std::fs::write(&path, &id).map_err(AgentError::file(FileAction::Writing, &path))?;
            Ok(id)
        }
        Err(error) => Err(AgentError::file(FileAction::Reading, path)(error)),
    }
}

/// Decodes `-encrypt`: base64 of 16, 24 or 32 bytes, as Consul's `encrypt`.
pub(crate) fn decode_key(text: &str) -> Result<bytes::Bytes, AgentError> {
    use base64::Engine;
    let key = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map_err(|e| format!("Error decoding the encryption key: {e}"))?;
    if ![16, 24, 32].contains(&key.len()) {
        return Err(AgentError::Setting(format!(
            "Error: the encryption key must be 16, 24 or 32 bytes, not {}",
            key.len()
        )));
    }
    Ok(bytes::Bytes::from(key))
}

/// The DNS interface's settings from the flags and the files' `dns_config`.
pub(crate) fn dns_settings(
    args: &cli::AgentArgs,
    file: &config::DnsConfig,
) -> Result<muster::dns::Settings, AgentError> {
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
        return Err(AgentError::Setting("-domain must not be empty".to_owned()));
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

/// The most node metadata pairs, and the longest key and value (Consul's limits).
const NODE_META_PAIRS_MAX: usize = 64;
const NODE_META_KEY_BYTES_MAX: usize = 128;
const NODE_META_VALUE_BYTES_MAX: usize = 512;
