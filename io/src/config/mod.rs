//! Configuration files, as Consul reads them (`../shared/reference/consul-behaviour.md` §5):
//! JSON (`*.json`) and HCL (`*.hcl`, HCL version 1 as Consul reads it: [`hcl1`]), from `-config-file` and `-config-dir`
//! (a directory's `*.json` and `*.hcl` files in lexical order; other files are skipped).
//! Later files override earlier ones key by key; lists (`retry_join`, services, checks) are
//! appended. Command-line flags override files (the caller applies them). A key this agent
//! does not know is an error naming the file and the key: a misspelt setting must not be
//! silently ignored.
//!
//! Services and checks (`service`, `services`, `check`, `checks`) are kept as the JSON objects
//! the files hold; the agent reads them with the same decoder as `/v1/agent/service/register`.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

mod error;
pub mod hcl1;
pub mod keys;
pub mod sockaddr;

pub use error::{AddressError, ConfigError, ValueError};

/// Where configuration comes from: `-config-file` and `-config-dir`, in the order given, then
/// the `-hcl` fragments.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sources {
    /// Files and directories, in order.
    pub paths: Vec<Source>,
    /// `-hcl` fragments, read after every file (as Consul reads them).
    pub fragments: Vec<String>,
    /// `-config-format`: the format of `-config-file` files whatever their extension.
    pub format: Option<Format>,
}

/// One `-config-file` or `-config-dir`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A file (its format from its extension).
    File(PathBuf),
    /// A directory of `*.json` and `*.hcl` files.
    Dir(PathBuf),
}

/// The agent's ports (`ports { ... }`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ports {
    /// `http` (-1 disables).
    pub http: Option<i32>,
    /// `serf_lan`.
    pub serf_lan: Option<u16>,
    /// `serf_wan` (-1 keeps a server out of the WAN pool).
    pub serf_wan: Option<i32>,
    /// `server`.
    pub server: Option<u16>,
    /// `dns` (-1 disables).
    pub dns: Option<i32>,
    /// `grpc` (-1: none; muster serves no gRPC API yet).
    pub grpc: Option<i32>,
    /// `https` (-1: none).
    pub https: Option<i32>,
}

/// One stanza of the `tls` block (`defaults`, `https`): what the files set in it. A listener's
/// settings are its own stanza over `defaults` ([`TlsStanza::over`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsStanza {
    /// `ca_file`: the certificate authorities that sign clients' certificates.
    pub ca_file: Option<String>,
    /// `ca_path`: a directory of them (`ca_file` wins when both are set, as in Consul).
    pub ca_path: Option<String>,
    /// `cert_file`: the agent's certificate chain, PEM.
    pub cert_file: Option<String>,
    /// `key_file`: its private key, PEM.
    pub key_file: Option<String>,
    /// `tls_min_version` (`TLSv1_2`, or the pre-1.12 `tls12`).
    pub tls_min_version: Option<String>,
    /// `tls_cipher_suites`, comma-separated.
    pub tls_cipher_suites: Option<String>,
    /// `verify_incoming`: clients must present a certificate a CA here signed.
    pub verify_incoming: Option<bool>,
    /// `verify_outgoing` (server RPC): connections this agent opens use TLS.
    pub verify_outgoing: Option<bool>,
    /// `verify_server_hostname` (server RPC): a server's certificate must name
    /// `server.<datacenter>.<domain>`.
    pub verify_server_hostname: Option<bool>,
}

impl TlsStanza {
    /// This stanza's settings, each one it leaves unset taken from `defaults`.
    pub fn over(&self, defaults: &TlsStanza) -> TlsStanza {
        let pick = |own: &Option<String>, default: &Option<String>| own.clone().or_else(|| default.clone());
        TlsStanza {
            ca_file: pick(&self.ca_file, &defaults.ca_file),
            ca_path: pick(&self.ca_path, &defaults.ca_path),
            cert_file: pick(&self.cert_file, &defaults.cert_file),
            key_file: pick(&self.key_file, &defaults.key_file),
            tls_min_version: pick(&self.tls_min_version, &defaults.tls_min_version),
            tls_cipher_suites: pick(&self.tls_cipher_suites, &defaults.tls_cipher_suites),
            verify_incoming: self.verify_incoming.or(defaults.verify_incoming),
            verify_outgoing: self.verify_outgoing.or(defaults.verify_outgoing),
            verify_server_hostname: self.verify_server_hostname.or(defaults.verify_server_hostname),
        }
    }

    /// Lays what `file` sets over what earlier files set.
    fn merge(&mut self, stanza: &str, file: Map<String, Value>) -> Result<(), ValueError> {
        for (name, value) in file {
            let key = format!("tls.{stanza}.{name}");
            let field = match name.as_str() {
                "ca_file" => &mut self.ca_file,
                "ca_path" => &mut self.ca_path,
                "cert_file" => &mut self.cert_file,
                "key_file" => &mut self.key_file,
                "tls_min_version" => &mut self.tls_min_version,
                "tls_cipher_suites" => &mut self.tls_cipher_suites,
                "verify_incoming" | "verify_outgoing" | "verify_server_hostname" => {
                    let flag = Some(boolean(&key, &value)?);
                    match name.as_str() {
                        "verify_incoming" => self.verify_incoming = flag,
                        "verify_outgoing" => self.verify_outgoing = flag,
                        _ => self.verify_server_hostname = flag,
                    }
                    continue;
                }
                _ => continue,
            };
            *field = Some(string(&key, &value)?);
        }
        Ok(())
    }
}

/// `dns_config`: what the files set.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DnsConfig {
    /// `only_passing`.
    pub only_passing: Option<bool>,
    /// `udp_answer_limit`.
    pub udp_answer_limit: Option<usize>,
    /// `a_record_limit`.
    pub a_record_limit: Option<usize>,
    /// `enable_truncate`.
    pub enable_truncate: Option<bool>,
    /// `enable_additional_node_meta_txt`.
    pub node_meta_txt: Option<bool>,
    /// `node_ttl`, seconds.
    pub node_ttl_secs: Option<u32>,
    /// `service_ttl`, seconds, by name, `prefix*` or `*`.
    pub service_ttl_secs: std::collections::BTreeMap<String, u32>,
    /// `soa` (`refresh`, `retry`, `expire`, `min_ttl`), seconds.
    pub soa: std::collections::BTreeMap<String, u32>,
    /// `recursor_strategy`: `sequential` or `random`.
    pub recursor_strategy: Option<String>,
    /// `recursor_timeout`.
    pub recursor_timeout: Option<std::time::Duration>,
}

/// What the files set; `None` is "not set by any file".
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FileConfig {
    /// `datacenter`.
    pub datacenter: Option<String>,
    /// `data_dir`.
    pub data_dir: Option<PathBuf>,
    /// `node_name`.
    pub node_name: Option<String>,
    /// `server`.
    pub server: Option<bool>,
    /// `bootstrap`.
    pub bootstrap: Option<bool>,
    /// `bootstrap_expect`.
    pub bootstrap_expect: Option<usize>,
    /// `bind_addr`.
    pub bind_addr: Option<IpAddr>,
    /// `advertise_addr`.
    pub advertise_addr: Option<IpAddr>,
    /// `client_addr` (the first of them).
    pub client_addr: Option<IpAddr>,
    /// `client_addr`: every address it names (the HTTP and DNS listeners bind each).
    pub client_addrs: Vec<IpAddr>,
    /// `encrypt`.
    pub encrypt: Option<String>,
    /// `start_join` and `retry_join`, appended.
    pub retry_join: Vec<String>,
    /// `start_join_wan` and `retry_join_wan`, appended.
    pub retry_join_wan: Vec<String>,
    /// `ports`.
    pub ports: Ports,
    /// `domain`.
    pub domain: Option<String>,
    /// `alt_domain`.
    pub alt_domain: Option<String>,
    /// `recursors`, appended.
    pub recursors: Vec<String>,
    /// `dns_config`.
    pub dns: DnsConfig,
    /// `leave_on_terminate`.
    pub leave_on_terminate: Option<bool>,
    /// `skip_leave_on_interrupt`.
    pub skip_leave_on_interrupt: Option<bool>,
    /// `rejoin_after_leave`.
    pub rejoin_after_leave: Option<bool>,
    /// `enable_script_checks`.
    pub enable_script_checks: Option<bool>,
    /// `enable_local_script_checks`.
    pub enable_local_script_checks: Option<bool>,
    /// `check_update_interval`.
    pub check_update_interval: Option<std::time::Duration>,
    /// `retry_interval`: how long before an unanswered join is tried again (Go duration text;
    /// the agent checks it as it checks `-retry-interval`).
    pub retry_interval: Option<String>,
    /// `retry_interval_wan` (Go duration text).
    pub retry_interval_wan: Option<String>,
    /// `retry_max`.
    pub retry_max: Option<u32>,
    /// `log_level`.
    pub log_level: Option<String>,
    /// `log_json`.
    pub log_json: Option<bool>,
    /// `log_file`.
    pub log_file: Option<PathBuf>,
    /// `pid_file`.
    pub pid_file: Option<PathBuf>,
    /// `enable_syslog`.
    pub enable_syslog: Option<bool>,
    /// `syslog_facility`.
    pub syslog_facility: Option<String>,
    /// `log_rotate_bytes`.
    pub log_rotate_bytes: Option<u64>,
    /// `log_rotate_duration` (Go duration text).
    pub log_rotate_duration: Option<String>,
    /// `log_rotate_max_files` (-1 keeps none).
    pub log_rotate_max_files: Option<i64>,
    /// `node_meta`, merged key by key.
    pub node_meta: std::collections::BTreeMap<String, String>,
    /// `node_id`.
    pub node_id: Option<String>,
    /// `advertise_addr_wan`.
    pub advertise_addr_wan: Option<IpAddr>,
    /// `serf_lan`: the LAN pool's bind address.
    pub serf_lan: Option<IpAddr>,
    /// `serf_wan`: the WAN pool's bind address.
    pub serf_wan: Option<IpAddr>,
    /// `disable_keyring_file`.
    pub disable_keyring_file: Option<bool>,
    /// `serf_lan_allowed_cidrs`, appended.
    pub serf_lan_allowed_cidrs: Vec<String>,
    /// `serf_wan_allowed_cidrs`, appended.
    pub serf_wan_allowed_cidrs: Vec<String>,
    /// `ui` or `ui_config.enabled` (muster has no web UI yet; the agent says so).
    pub ui: Option<bool>,
    /// `watches`: the watch plans the agent runs, each as written.
    pub watches: Vec<Value>,
    /// `tls.defaults` (and the pre-1.12 top-level keys, read as its keys).
    pub tls_defaults: TlsStanza,
    /// `tls.https`.
    pub tls_https: TlsStanza,
    /// `tls.internal_rpc` (server RPC and Raft, port 8300).
    pub tls_internal_rpc: TlsStanza,
    /// `addresses.https`.
    pub addresses_https: Vec<IpAddr>,
    /// `limits.https_handshake_timeout`.
    pub https_handshake_timeout: Option<std::time::Duration>,
    /// `acl.default_policy` (or `acl_default_policy`): reported in every answer's
    /// `X-Consul-Default-ACL-Policy`, ACLs on or off, as Consul reports it.
    pub acl_default_policy: Option<String>,
    /// `acl.enabled` (or an old key that implies it).
    pub acl_enabled: Option<bool>,
    /// `acl.enable_token_persistence`.
    pub acl_token_persistence: Option<bool>,
    /// `acl.tokens.initial_management` (or `acl_master_token`, `acl.tokens.master`).
    pub acl_initial_management: Option<String>,
    /// `acl.tokens.default` (or `acl_token`).
    pub acl_default_token: Option<String>,
    /// `acl.tokens.dns`.
    pub acl_dns_token: Option<String>,
    /// `http_config.response_headers`: added to every HTTP answer, later files over earlier.
    pub response_headers: std::collections::BTreeMap<String, String>,
    /// `http_config.block_endpoints`: path prefixes every request to which is refused.
    pub block_endpoints: Vec<String>,
    /// `raft_protocol` (only 3 is spoken).
    pub raft_protocol: Option<u8>,
    /// `auto_reload_config`.
    pub auto_reload_config: Option<bool>,
    /// `disable_remote_exec` (true unless a file says otherwise, as in Consul).
    pub disable_remote_exec: Option<bool>,
    /// `default_query_time` (Go duration text).
    pub default_query_time: Option<String>,
    /// `max_query_time` (Go duration text).
    pub max_query_time: Option<String>,
    /// `addresses.http`: where the HTTP API listens instead of `client_addr`.
    pub addresses_http: Vec<IpAddr>,
    /// `addresses.dns`: where DNS listens instead of `client_addr`.
    pub addresses_dns: Vec<IpAddr>,
    /// `telemetry`, merged key by key (read by `telemetry::parse_config`).
    pub telemetry: Map<String, Value>,
    /// `performance.raft_multiplier`: Raft's timings scaled, 1 (fastest) to 10.
    pub raft_multiplier: Option<u8>,
    /// `performance.rpc_hold_timeout`: how long a server holds a call for the leader while
    /// none is known.
    pub rpc_hold_timeout: Option<std::time::Duration>,
    /// `limits.rpc_client_timeout`: how long a write waits for its outcome (0: no bound).
    pub rpc_client_timeout: Option<std::time::Duration>,
    /// The `autopilot` block over Consul's defaults: what the first leader stores.
    pub autopilot: muster_core::autopilot::Config,
    /// What the table of keys had to say about keys muster accepts but does not act on yet
    /// (and Consul's deprecation warnings), each naming its source: logged once at start.
    pub warnings: Vec<String>,
    /// Service definitions, each with the file it came from.
    pub services: Vec<(PathBuf, Value)>,
    /// Check definitions, each with the file it came from.
    pub checks: Vec<(PathBuf, Value)>,
}

/// Reads every file the sources name, in order, into one configuration. Each source is first
/// checked against Consul's table of keys ([`keys`]): a key Consul does not know, a value of the
/// wrong type or a value asking for protection muster does not give is refused in Consul's
/// words; a key muster does not act on yet is kept as a warning for the agent to log.
pub fn load(sources: &Sources) -> Result<FileConfig, ConfigError> {
    let mut config = FileConfig::default();
    for file in files(sources)? {
        let (map, origin) = read(&file, sources.format)?;
        let name = file.display().to_string();
        fold(&mut config, &name, &file, map, origin)?;
    }
    for (index, fragment) in sources.fragments.iter().enumerate() {
        // Consul names each -hcl fragment as a source of its own.
        let name = format!("flags-{index}.hcl");
        let map = hcl1::parse(fragment).map_err(|source| ConfigError::Hcl { file: name.clone(), source })?;
        fold(&mut config, &name, Path::new(&name), map, keys::Origin::Hcl)?;
    }
    Ok(config)
}

/// Checks one source named `name` (read from `file`) against the table and folds it into
/// `config`, its warnings prefixed with its name.
fn fold(
    config: &mut FileConfig,
    name: &str,
    file: &Path,
    map: Map<String, Value>,
    origin: keys::Origin,
) -> Result<(), ConfigError> {
    let checked = checked(name, map, origin)?;
    config.warnings.extend(checked.warnings.into_iter().map(|warning| format!("{name}: {warning}")));
    merge(config, file, checked.config)
        .map_err(|source| ConfigError::Value { file: name.to_owned(), source: Box::new(source) })
}

/// One source checked against the table, its errors in Consul's words: `failed to parse
/// <source>: 1 error occurred:` and one `* <error>` line each (go-multierror's format).
pub fn checked(
    name: &str,
    map: Map<String, Value>,
    origin: keys::Origin,
) -> Result<keys::Checked, ConfigError> {
    keys::check_from(map, origin).map_err(|errors| ConfigError::Keys { file: name.to_owned(), errors })
}

/// go-multierror's text for a list of errors.
pub fn multierror(errors: &[String]) -> String {
    let count = match errors.len() {
        1 => "1 error occurred:".to_owned(),
        n => format!("{n} errors occurred:"),
    };
    let lines: String = errors.iter().map(|error| format!("\n\t* {error}")).collect();
    format!("{count}{lines}\n\n")
}

/// What the configuration looks like on disk: each file's path, length and modification time,
/// in reading order. Two fingerprints differ when a file was added, removed or written
/// (`-auto-reload-config` polls this).
pub fn fingerprint(sources: &Sources) -> Vec<(PathBuf, u64, Option<std::time::SystemTime>)> {
    let found = files(sources).unwrap_or_default();
    found
        .into_iter()
        .map(|path| {
            let meta = std::fs::metadata(&path).ok();
            let (len, modified) = meta.map_or((0, None), |m| (m.len(), m.modified().ok()));
            (path, len, modified)
        })
        .collect()
}

/// The files the sources name, directories expanded.
fn files(sources: &Sources) -> Result<Vec<PathBuf>, ConfigError> {
    let mut files = Vec::new();
    for source in &sources.paths {
        match source {
            Source::File(path) => {
                if format_of(path).or(sources.format).is_none() {
                    return Err(ConfigError::UnknownExtension { path: path.clone() });
                }
                files.push(path.clone());
            }
            Source::Dir(dir) => files.extend(dir_files(dir)?),
        }
    }
    Ok(files)
}

/// A `-config-dir`'s `*.json` and `*.hcl` files, in lexical order.
fn dir_files(dir: &Path) -> Result<Vec<PathBuf>, ConfigError> {
    let unreadable = |source| ConfigError::Read { path: dir.to_owned(), source };
    let mut found: Vec<PathBuf> = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(unreadable)? {
        let path = entry.map_err(unreadable)?.path();
        if path.is_file() && format_of(&path).is_some() {
            found.push(path);
        } else if path.is_file() {
            tracing::warn!(file = %path.display(), "agent.config: skipping a file: its extension must be .json or .hcl");
        }
    }
    found.sort();
    Ok(found)
}

/// A configuration file's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// JSON.
    Json,
    /// HCL.
    Hcl,
}

impl Format {
    /// `-config-format`'s value: `json` or `hcl`.
    pub fn parse(text: &str) -> Result<Format, ConfigError> {
        match text {
            "json" => Ok(Format::Json),
            "hcl" => Ok(Format::Hcl),
            other => Err(ConfigError::UnknownFormat(other.to_owned())),
        }
    }
}

fn format_of(path: &Path) -> Option<Format> {
    match path.extension().and_then(|e| e.to_str()) {
        Some("json") => Some(Format::Json),
        Some("hcl") => Some(Format::Hcl),
        _ => None,
    }
}

/// A file's contents as a JSON object, and which parser read it.
fn read(path: &Path, forced: Option<Format>) -> Result<(Map<String, Value>, keys::Origin), ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
    let file = path.display().to_string();
    match format_of(path).or(forced) {
        Some(Format::Json) => match serde_json::from_str::<Value>(&text) {
            Ok(Value::Object(map)) => Ok((map, keys::Origin::Json)),
            Ok(_) => Err(ConfigError::NotAnObject { file }),
            Err(source) => Err(ConfigError::Json { file, source }),
        },
        Some(Format::Hcl) => match hcl1::parse(&text) {
            Ok(map) => Ok((map, keys::Origin::Hcl)),
            Err(source) => Err(ConfigError::Hcl { file, source }),
        },
        None => unreachable!("only .json and .hcl files, or those of -config-format, are read"),
    }
}

/// Folds one file's keys into `config`.
fn merge(config: &mut FileConfig, file: &Path, map: Map<String, Value>) -> Result<(), ValueError> {
    for (key, value) in map {
        match key.as_str() {
            "datacenter" => config.datacenter = Some(string(&key, &value)?),
            "data_dir" => config.data_dir = Some(PathBuf::from(string(&key, &value)?)),
            "node_name" => config.node_name = Some(string(&key, &value)?),
            "server" => config.server = Some(boolean(&key, &value)?),
            "leave_on_terminate" => config.leave_on_terminate = Some(boolean(&key, &value)?),
            "skip_leave_on_interrupt" => config.skip_leave_on_interrupt = Some(boolean(&key, &value)?),
            "rejoin_after_leave" => config.rejoin_after_leave = Some(boolean(&key, &value)?),
            "enable_script_checks" => config.enable_script_checks = Some(boolean(&key, &value)?),
            "enable_local_script_checks" => config.enable_local_script_checks = Some(boolean(&key, &value)?),
            "check_update_interval" => config.check_update_interval = Some(duration(&key, &value)?),
            "retry_interval" => config.retry_interval = Some(string(&key, &value)?),
            "retry_interval_wan" => config.retry_interval_wan = Some(string(&key, &value)?),
            "retry_max" => config.retry_max = Some(number(&key, &value)?),
            "bootstrap" => config.bootstrap = Some(boolean(&key, &value)?),
            "bootstrap_expect" => config.bootstrap_expect = Some(number(&key, &value)?),
            "bind_addr" => {
                let bind = optional_address(&key, &value)?;
                config.bind_addr = Some(bind.ok_or(ValueError::Empty { key })?);
            }
            "advertise_addr" => config.advertise_addr = optional_address(&key, &value)?,
            "client_addr" => {
                let all = addresses(&key, &string(&key, &value)?)?;
                config.client_addr = all.first().copied();
                config.client_addrs = all;
            }
            "encrypt" => config.encrypt = Some(string(&key, &value)?),
            "start_join" | "retry_join" => config.retry_join.extend(strings(&key, &value)?),
            "start_join_wan" | "retry_join_wan" => config.retry_join_wan.extend(strings(&key, &value)?),
            "ports" => merge_ports(&mut config.ports, &value)?,
            "log_level" => config.log_level = Some(string(&key, &value)?),
            "log_json" => config.log_json = Some(boolean(&key, &value)?),
            "log_file" => config.log_file = Some(PathBuf::from(string(&key, &value)?)),
            "pid_file" => config.pid_file = Some(PathBuf::from(string(&key, &value)?)),
            "enable_syslog" => config.enable_syslog = Some(boolean(&key, &value)?),
            "syslog_facility" => config.syslog_facility = Some(string(&key, &value)?),
            "log_rotate_bytes" => config.log_rotate_bytes = Some(number(&key, &value)?),
            "log_rotate_duration" => config.log_rotate_duration = Some(string(&key, &value)?),
            "log_rotate_max_files" => {
                let count = value.as_i64().filter(|n| *n >= -1);
                config.log_rotate_max_files = Some(count.ok_or(ValueError::BelowMinusOne { key })?);
            }
            "node_meta" => {
                for (name, text) in object(&key, value)? {
                    config.node_meta.insert(name.clone(), string(&format!("node_meta.{name}"), &text)?);
                }
            }
            "node_id" => config.node_id = Some(string(&key, &value)?),
            "advertise_addr_wan" => config.advertise_addr_wan = optional_address(&key, &value)?,
            "serf_lan" | "serf_lan_bind" => config.serf_lan = optional_address(&key, &value)?,
            "serf_wan" | "serf_wan_bind" => config.serf_wan = optional_address(&key, &value)?,
            "disable_keyring_file" => config.disable_keyring_file = Some(boolean(&key, &value)?),
            "serf_lan_allowed_cidrs" => config.serf_lan_allowed_cidrs.extend(strings(&key, &value)?),
            "serf_wan_allowed_cidrs" => config.serf_wan_allowed_cidrs.extend(strings(&key, &value)?),
            "disable_remote_exec" => config.disable_remote_exec = Some(boolean(&key, &value)?),
            "auto_reload_config" => config.auto_reload_config = Some(boolean(&key, &value)?),
            "ui" => config.ui = Some(boolean(&key, &value)?),
            "ui_config" => merge_ui_config(config, value)?,
            "watches" => config.watches.extend(objects(&key, value)?),
            "acl" => merge_acl(config, value)?,
            "tls" => merge_tls(config, value)?,
            "http_config" => merge_http_config(config, value)?,
            "raft_protocol" => config.raft_protocol = Some(number(&key, &value)?),
            "default_query_time" => config.default_query_time = Some(string(&key, &value)?),
            "max_query_time" => config.max_query_time = Some(string(&key, &value)?),
            // Accepted for Consul's files: muster's node IDs are random (never from the host),
            // and it speaks gossip protocol 2 to 3 whatever is asked.
            "disable_host_node_id" => {
                boolean(&key, &value)?;
            }
            "protocol" => {
                number::<u8>(&key, &value)?;
            }
            "domain" => config.domain = Some(string(&key, &value)?),
            "alt_domain" => config.alt_domain = Some(string(&key, &value)?),
            "recursors" | "recursor" => config.recursors.extend(strings(&key, &value)?),
            "dns_config" => merge_dns(&mut config.dns, &value)?,
            "performance" => merge_performance(config, &value)?,
            "limits" => merge_limits(config, &value)?,
            "autopilot" => merge_autopilot(&mut config.autopilot, &value)?,
            "addresses" => merge_addresses(config, &value)?,
            "telemetry" => config.telemetry.extend(object(&key, value)?),
            "service" | "services" => {
                config.services.extend(objects(&key, value)?.into_iter().map(|v| (file.to_owned(), v)))
            }
            "check" | "checks" => {
                config.checks.extend(objects(&key, value)?.into_iter().map(|v| (file.to_owned(), v)))
            }
            // Every other key was checked against the table already: accepted, and either not
            // acted on yet (the table's warning says so) or read elsewhere.
            _ => {}
        }
    }
    Ok(())
}

fn merge_ports(ports: &mut Ports, value: &Value) -> Result<(), ValueError> {
    for (key, value) in object_ref("ports", value)? {
        let name = format!("ports.{key}");
        match key.as_str() {
            "http" => ports.http = Some(port_or_off(name, value)?),
            "serf_lan" => ports.serf_lan = Some(number(&name, value)?),
            "serf_wan" => ports.serf_wan = Some(port_or_off(name, value)?),
            "server" => ports.server = Some(number(&name, value)?),
            "https" => ports.https = Some(port_or_off(name, value)?),
            "grpc" | "grpc_tls" => ports.grpc = Some(port_or_off(name, value)?),
            "dns" => ports.dns = Some(port_or_off(name, value)?),
            _ => {}
        }
    }
    Ok(())
}

/// A port, or -1 for a listener turned off.
fn port_or_off(key: String, value: &Value) -> Result<i32, ValueError> {
    let port = value.as_i64().filter(|p| (-1..=65535).contains(p)).ok_or(ValueError::NotAPort { key })?;
    Ok(i32::try_from(port).expect("bounded above"))
}

/// `addresses { http, dns }`: each a space-separated list of IPs or go-sockaddr templates, as
/// `client_addr`. A `unix://` socket is refused: muster serves none yet, and serving the API on
/// TCP instead would expose it wider than the file asks.
fn merge_addresses(config: &mut FileConfig, value: &Value) -> Result<(), ValueError> {
    let map = object_ref("addresses", value)?;
    let targets = [
        ("http", &mut config.addresses_http),
        ("https", &mut config.addresses_https),
        ("dns", &mut config.addresses_dns),
    ];
    for (key, target) in targets {
        let Some(text) = map.get(key).and_then(Value::as_str) else { continue };
        let name = format!("addresses.{key}");
        if text.contains("unix://") {
            return Err(ValueError::UnixSocket { key: name });
        }
        *target = addresses(&name, text)?;
    }
    Ok(())
}

/// A space-separated list of addresses, each an IP or a template.
fn addresses(key: &str, text: &str) -> Result<Vec<IpAddr>, ValueError> {
    resolve_addresses(text).map_err(|source| ValueError::Address { key: key.to_owned(), source })
}

/// The largest `performance.raft_multiplier` Consul takes.
pub const RAFT_MULTIPLIER_MAX: u8 = 10;

fn merge_performance(config: &mut FileConfig, value: &Value) -> Result<(), ValueError> {
    let map = object_ref("performance", value)?;
    if let Some(hold) = map.get("rpc_hold_timeout") {
        config.rpc_hold_timeout = Some(duration("performance.rpc_hold_timeout", hold)?);
    }
    if let Some(multiplier) = map.get("raft_multiplier") {
        let key = "performance.raft_multiplier".to_owned();
        let multiplier = multiplier.as_i64().ok_or(ValueError::NotANumber { key })?;
        let in_range = u8::try_from(multiplier).ok().filter(|m| (1..=RAFT_MULTIPLIER_MAX).contains(m));
        config.raft_multiplier = Some(in_range.ok_or(ValueError::RaftMultiplier(multiplier))?);
    }
    Ok(())
}

/// `ui_config`: `enabled`, and the paths (checked, not acted on yet); the table accepted the
/// rest.
fn merge_ui_config(config: &mut FileConfig, value: Value) -> Result<(), ValueError> {
    for (field, field_value) in object("ui_config", value)? {
        let name = format!("ui_config.{field}");
        match field.as_str() {
            "enabled" => config.ui = Some(boolean(&name, &field_value)?),
            "content_path" | "dir" => {
                string(&name, &field_value)?;
            }
            _ => {}
        }
    }
    Ok(())
}

/// `http_config`: only what muster acts on; the table accepted the rest.
fn merge_http_config(config: &mut FileConfig, value: Value) -> Result<(), ValueError> {
    for (field, field_value) in object("http_config", value)? {
        if field == "block_endpoints" {
            config.block_endpoints.extend(strings("http_config.block_endpoints", &field_value)?);
            continue;
        }
        if field != "response_headers" {
            continue;
        }
        for (name, text) in object("http_config.response_headers", field_value)? {
            let key = format!("http_config.response_headers.{name}");
            // A name or value HTTP cannot carry is left out, with a warning, when the agent
            // starts: Consul starts with it.
            config.response_headers.insert(name, string(&key, &text)?);
        }
    }
    Ok(())
}

/// `tls`: the stanzas muster acts on (the table warns of the rest).
fn merge_tls(config: &mut FileConfig, value: Value) -> Result<(), ValueError> {
    for (stanza, fields) in object("tls", value)? {
        let target = match stanza.as_str() {
            "defaults" => &mut config.tls_defaults,
            "https" => &mut config.tls_https,
            "internal_rpc" => &mut config.tls_internal_rpc,
            _ => continue,
        };
        target.merge(&stanza, object(&format!("tls.{stanza}"), fields)?)?;
    }
    Ok(())
}

/// `acl`: only what muster acts on (the table warns of the rest).
fn merge_acl(config: &mut FileConfig, value: Value) -> Result<(), ValueError> {
    for (field, field_value) in object("acl", value)? {
        match field.as_str() {
            "default_policy" => config.acl_default_policy = Some(string("acl.default_policy", &field_value)?),
            "enabled" => config.acl_enabled = Some(boolean("acl.enabled", &field_value)?),
            "enable_token_persistence" => {
                config.acl_token_persistence = Some(boolean("acl.enable_token_persistence", &field_value)?);
            }
            "tokens" => {
                for (name, token) in object("acl.tokens", field_value)? {
                    match name.as_str() {
                        "initial_management" => {
                            config.acl_initial_management =
                                Some(string("acl.tokens.initial_management", &token)?);
                        }
                        "default" => config.acl_default_token = Some(string("acl.tokens.default", &token)?),
                        "dns" => config.acl_dns_token = Some(string("acl.tokens.dns", &token)?),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// `limits`: only what muster acts on; the table accepted the rest.
fn merge_limits(config: &mut FileConfig, value: &Value) -> Result<(), ValueError> {
    let map = object_ref("limits", value)?;
    if let Some(timeout) = map.get("rpc_client_timeout") {
        config.rpc_client_timeout = Some(duration("limits.rpc_client_timeout", timeout)?);
    }
    if let Some(timeout) = map.get("https_handshake_timeout") {
        config.https_handshake_timeout = Some(duration("limits.https_handshake_timeout", timeout)?);
    }
    Ok(())
}

/// A duration in Go's notation (`"60s"`, `"1m30s"`).
fn duration(key: &str, value: &Value) -> Result<std::time::Duration, ValueError> {
    muster_core::duration::parse(&string(key, value)?)
        .map_err(|source| ValueError::Duration { key: key.to_owned(), source })
}

fn merge_autopilot(autopilot: &mut muster_core::autopilot::Config, value: &Value) -> Result<(), ValueError> {
    for (key, value) in object_ref("autopilot", value)? {
        let name = format!("autopilot.{key}");
        match key.as_str() {
            "cleanup_dead_servers" => autopilot.cleanup_dead_servers = boolean(&name, value)?,
            "last_contact_threshold" => autopilot.last_contact_threshold = duration(&name, value)?,
            "max_trailing_logs" => autopilot.max_trailing_logs = number(&name, value)?,
            "min_quorum" => autopilot.min_quorum = number(&name, value)?,
            "server_stabilization_time" => autopilot.server_stabilization = duration(&name, value)?,
            "redundancy_zone_tag" => autopilot.redundancy_zone_tag = string(&name, value)?,
            "disable_upgrade_migration" => autopilot.disable_upgrade_migration = boolean(&name, value)?,
            "upgrade_version_tag" => autopilot.upgrade_version_tag = string(&name, value)?,
            _ => {}
        }
    }
    Ok(())
}

fn merge_dns(dns: &mut DnsConfig, value: &Value) -> Result<(), ValueError> {
    for (key, value) in object_ref("dns_config", value)? {
        let name = format!("dns_config.{key}");
        match key.as_str() {
            "only_passing" => dns.only_passing = Some(boolean(&name, value)?),
            "udp_answer_limit" => dns.udp_answer_limit = Some(number(&name, value)?),
            "a_record_limit" => dns.a_record_limit = Some(number(&name, value)?),
            "enable_truncate" => dns.enable_truncate = Some(boolean(&name, value)?),
            "enable_additional_node_meta_txt" => dns.node_meta_txt = Some(boolean(&name, value)?),
            "node_ttl" => dns.node_ttl_secs = Some(seconds(&name, value)?),
            "service_ttl" => {
                for (service, ttl) in object_ref(&name, value)? {
                    dns.service_ttl_secs.insert(service.clone(), seconds(&format!("{name}.{service}"), ttl)?);
                }
            }
            "soa" => {
                for (field, number_value) in object_ref(&name, value)? {
                    dns.soa.insert(field.clone(), number(&format!("{name}.{field}"), number_value)?);
                }
            }
            "recursor_strategy" => {
                let strategy = string(&name, value)?;
                if !matches!(strategy.as_str(), "sequential" | "random") {
                    return Err(ValueError::RecursorStrategy { key: name, strategy });
                }
                dns.recursor_strategy = Some(strategy);
            }
            "recursor_timeout" => dns.recursor_timeout = Some(duration(&name, value)?),
            // muster always answers from the local replica (Consul's default allow_stale), so
            // these are accepted and have nothing to change.
            "allow_stale" => {
                boolean(&name, value)?;
            }
            "max_stale" => {
                string(&name, value)?;
            }
            _ => {}
        }
    }
    Ok(())
}

/// A Go duration string, whole seconds.
fn seconds(key: &str, value: &Value) -> Result<u32, ValueError> {
    let duration = duration(key, value)?;
    u32::try_from(duration.as_secs()).map_err(|_| ValueError::TooLong { key: key.to_owned() })
}

fn string(key: &str, value: &Value) -> Result<String, ValueError> {
    value.as_str().map(str::to_owned).ok_or_else(|| ValueError::NotAString { key: key.to_owned() })
}

fn boolean(key: &str, value: &Value) -> Result<bool, ValueError> {
    value.as_bool().ok_or_else(|| ValueError::NotABool { key: key.to_owned() })
}

fn number<T: TryFrom<u64>>(key: &str, value: &Value) -> Result<T, ValueError> {
    let fitting = value.as_u64().and_then(|n| T::try_from(n).ok());
    fitting.ok_or_else(|| ValueError::NumberOutOfRange { key: key.to_owned() })
}

/// An object's fields, taken.
fn object(key: &str, value: Value) -> Result<Map<String, Value>, ValueError> {
    match value {
        Value::Object(fields) => Ok(fields),
        _ => Err(ValueError::NotAnObject { key: key.to_owned() }),
    }
}

/// An object's fields, borrowed.
fn object_ref<'v>(key: &str, value: &'v Value) -> Result<&'v Map<String, Value>, ValueError> {
    value.as_object().ok_or_else(|| ValueError::NotAnObject { key: key.to_owned() })
}

/// One address, or none when a template yields nothing (Consul's `expandOptionalAddr`: an
/// `advertise_addr` of `{{ GetInterfaceIP "en0" }}` on a machine without en0 is as if unset).
fn optional_address(key: &str, value: &Value) -> Result<Option<IpAddr>, ValueError> {
    let text = string(key, value)?;
    let invalid = |source| ValueError::Address { key: key.to_owned(), source };
    match resolve_addresses(&text).map_err(invalid)?.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some(*one)),
        _ => resolve_address(&text).map(Some).map_err(invalid),
    }
}

/// One address as Consul's `bind_addr`, `advertise_addr` and `serf_lan` take it: an IP, or a
/// go-sockaddr template ([`sockaddr`]) that yields exactly one, with Consul's words otherwise.
pub fn resolve_address(text: &str) -> Result<IpAddr, AddressError> {
    match resolve_addresses(text)?.as_slice() {
        [one] => Ok(*one),
        [] => Err(AddressError::NoneFound(text.trim().to_owned())),
        many => Err(AddressError::Multiple(many.to_vec())),
    }
}

/// Addresses as `client_addr` and `addresses.*` take them: IPs or go-sockaddr templates,
/// separated by spaces (a template may itself yield several).
pub fn resolve_addresses(text: &str) -> Result<Vec<IpAddr>, AddressError> {
    let rendered = if text.contains("{{") {
        let interfaces = sockaddr::system_interfaces().map_err(AddressError::Interfaces)?;
        sockaddr::render(text, &interfaces)
            .map_err(|source| AddressError::Template { template: text.trim().to_owned(), source })?
    } else {
        text.to_owned()
    };
    rendered
        .split_whitespace()
        .map(|one| one.parse().map_err(|_| AddressError::NotAnAddress(one.to_owned())))
        .collect()
}

/// This machine's interface addresses, by interface name.
pub fn interfaces() -> Result<Vec<(String, IpAddr)>, AddressError> {
    let found = if_addrs::get_if_addrs().map_err(AddressError::Interfaces)?;
    Ok(found.into_iter().map(|interface| (interface.name.clone(), interface.ip())).collect())
}

/// The one private IPv4 address among `interfaces` (RFC 1918 and RFC 6598, as go-sockaddr's
/// `GetPrivateIP`), which Consul advertises when bound to 0.0.0.0; an error in Consul's words
/// when there is none or more than one.
pub fn private_ipv4(interfaces: &[(String, IpAddr)]) -> Result<std::net::Ipv4Addr, AddressError> {
    let mut private: Vec<std::net::Ipv4Addr> = interfaces
        .iter()
        .filter_map(|(_, ip)| match ip {
            IpAddr::V4(v4)
                if v4.is_private() || (v4.octets()[0] == 100 && (64..128).contains(&v4.octets()[1])) =>
            {
                Some(*v4)
            }
            _ => None,
        })
        .collect();
    private.sort();
    private.dedup();
    match private.as_slice() {
        [] => Err(AddressError::NoPrivateIpv4),
        [one] => Ok(*one),
        _ => Err(AddressError::MultiplePrivateIpv4),
    }
}

fn strings(key: &str, value: &Value) -> Result<Vec<String>, ValueError> {
    match value {
        Value::String(one) => Ok(vec![one.clone()]),
        Value::Array(items) => items.iter().map(|item| string(key, item)).collect(),
        _ => Err(ValueError::NotStrings { key: key.to_owned() }),
    }
}

/// One object or a list of them (`service { }` once, twice, or `services = [...]`).
fn objects(key: &str, value: Value) -> Result<Vec<Value>, ValueError> {
    match value {
        Value::Object(_) => Ok(vec![value]),
        Value::Array(items) if items.iter().all(Value::is_object) => Ok(items),
        _ => Err(ValueError::NotObjects { key: key.to_owned() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str, files: &[(&str, &str)]) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("muster-config-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for (file, text) in files {
            std::fs::write(dir.join(file), text).unwrap();
        }
        dir
    }

    /// `docs/config-keys.md` is the table of keys as [`keys::markdown`] renders it; run with
    /// `MUSTER_BLESS=1` to write it anew after changing the table.
    #[test]
    fn the_config_key_reference_is_the_table() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/config-keys.md");
        let rendered = keys::markdown();
        if std::env::var_os("MUSTER_BLESS").is_some() {
            std::fs::write(&path, &rendered).unwrap();
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == rendered,
            "docs/config-keys.md is stale: run MUSTER_BLESS=1 cargo test -p muster --lib config"
        );
    }

    #[test]
    fn files_merge_in_lexical_order_and_lists_append() {
        let dir = dir(
            "merge",
            &[
                ("10-base.json", r#"{"datacenter": "east", "retry_join": ["10.0.0.1"], "ports": {"http": 8501}}"#),
                (
                    "20-web.hcl",
                    "datacenter = \"west\"\nretry_join = [\"10.0.0.2\"]\nservice {\n  name = \"web\"\n  tags = [\"rails\"]\n  port = 80\n}\n",
                ),
                ("30-db.json", r#"{"services": [{"name": "db", "port": 5432}, {"name": "cache"}]}"#),
                ("40-two.hcl", "services {\n  name = \"a\"\n}\nservices {\n  name = \"b\"\n  check {\n    ttl = \"30s\"\n  }\n}\n"),
                ("notes.txt", "not configuration"),
            ],
        );
        let config = load(&Sources { paths: vec![Source::Dir(dir.clone())], ..Sources::default() }).unwrap();
        assert_eq!(config.datacenter.as_deref(), Some("west"), "the later file wins");
        assert_eq!(config.retry_join, vec!["10.0.0.1".to_owned(), "10.0.0.2".to_owned()]);
        assert_eq!(config.ports.http, Some(8501));
        let names: Vec<&str> = config.services.iter().map(|(_, s)| s["name"].as_str().unwrap()).collect();
        assert_eq!(names, vec!["web", "db", "cache", "a", "b"], "repeated `services` blocks are a list");
        assert_eq!(config.services[4].1["check"]["ttl"], "30s");
        assert_eq!(config.services[0].1["tags"], serde_json::json!(["rails"]));
        assert_eq!(config.services[0].0, dir.join("20-web.hcl"));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn agent_settings_hcl_fragments_and_a_forced_format_are_read() {
        let dir = dir(
            "agent",
            &[(
                "agent.conf",
                "{\"log_level\": \"debug\", \"log_json\": true, \"pid_file\": \"/run/m.pid\",\n\
                 \"node_meta\": {\"rack\": \"r1\"}, \"node_id\": \"11111111-2222-3333-4444-555555555555\",\n\
                 \"advertise_addr_wan\": \"10.0.0.9\", \"serf_lan\": \"10.0.0.1\", \"ui_config\": {\"enabled\": true},\n\
                 \"ports\": {\"grpc\": 8502, \"https\": -1}, \"raft_protocol\": 3, \"disable_keyring_file\": true,\n\
                 \"retry_interval\": \"5s\"}",
            )],
        );
        let file = Source::File(dir.join("agent.conf"));
        let refused =
            load(&Sources { paths: vec![file.clone()], ..Sources::default() }).unwrap_err().to_string();
        assert!(refused.contains("config file must have a .json or .hcl extension"), "{refused}");
        let sources = Sources {
            paths: vec![file],
            fragments: vec!["node_meta {\n  zone = \"a\"\n}\nlog_level = \"warn\"".to_owned()],
            format: Some(Format::Json),
        };
        let config = load(&sources).unwrap();
        assert_eq!(
            (config.log_level.as_deref(), config.log_json),
            (Some("warn"), Some(true)),
            "the fragment wins"
        );
        assert_eq!(config.pid_file, Some(PathBuf::from("/run/m.pid")));
        assert_eq!(
            config.node_meta.into_iter().collect::<Vec<_>>(),
            [("rack".to_owned(), "r1".to_owned()), ("zone".to_owned(), "a".to_owned())]
        );
        assert_eq!(config.node_id.as_deref(), Some("11111111-2222-3333-4444-555555555555"));
        assert_eq!(
            (config.advertise_addr_wan, config.serf_lan),
            (Some([10, 0, 0, 9].into()), Some([10, 0, 0, 1].into()))
        );
        assert_eq!((config.ui, config.ports.grpc, config.ports.https), (Some(true), Some(8502), Some(-1)));
        assert_eq!((config.raft_protocol, config.disable_keyring_file), (Some(3), Some(true)));
        assert_eq!(config.retry_interval.as_deref(), Some("5s"));
        let bad = Sources { fragments: vec!["node_meta = 3".to_owned()], ..Sources::default() };
        assert_eq!(
            load(&bad).unwrap_err().to_string(),
            "failed to parse flags-0.hcl: 1 error occurred:\n\t* 'node_meta' expected a map, got 'int'\n\n"
        );
        assert_eq!(
            Format::parse("yaml").unwrap_err().to_string(),
            "Invalid config format \"yaml\": must be json or hcl"
        );
    }

    #[test]
    fn the_private_address_is_the_only_rfc1918_or_rfc6598_one() {
        let list =
            |ips: &[&str]| ips.iter().map(|ip| ("eth0".to_owned(), ip.parse().unwrap())).collect::<Vec<_>>();
        assert_eq!(
            private_ipv4(&list(&["127.0.0.1", "10.1.2.3", "192.0.2.2", "fe80::1"])).unwrap(),
            std::net::Ipv4Addr::new(10, 1, 2, 3)
        );
        assert_eq!(private_ipv4(&list(&["100.64.0.7"])).unwrap(), std::net::Ipv4Addr::new(100, 64, 0, 7));
        assert_eq!(
            private_ipv4(&list(&["127.0.0.1", "192.0.2.2"])).unwrap_err().to_string(),
            "No private IPv4 address found"
        );
        assert!(private_ipv4(&list(&["10.0.0.1", "192.168.1.1"]))
            .unwrap_err()
            .to_string()
            .starts_with("Multiple private IPv4"));
        assert_eq!(resolve_address(" 10.0.0.9 ").unwrap(), IpAddr::from([10, 0, 0, 9]));
        // go-sockaddr's templates: loopback is not forwardable, so GetInterfaceIP finds nothing
        // on lo; a filter finds it.
        assert_eq!(
            resolve_address("{{ GetAllInterfaces | include \"flags\" \"loopback\" | include \"type\" \"ipv4\" | attr \"address\" }}").unwrap(),
            IpAddr::from([127, 0, 0, 1])
        );
        assert!(resolve_address("{{ GetInterfaceIP \"lo\" }}")
            .unwrap_err()
            .to_string()
            .starts_with("no address found"));
        assert!(resolve_address("{{ Bogus }}").unwrap_err().to_string().starts_with("error parsing"));
        assert!(resolve_address("127.0.0.1 127.0.0.2")
            .unwrap_err()
            .to_string()
            .starts_with("multiple addresses found"));
        assert!(resolve_address("nonsense").unwrap_err().to_string().starts_with("expected an IP address"));
    }

    #[test]
    fn the_rpc_timeouts_are_read_and_a_malformed_one_is_refused() {
        let text =
            "limits {\n  rpc_client_timeout = \"1m30s\"\n}\nperformance {\n  rpc_hold_timeout = \"3s\"\n}\n";
        let good = dir("rpc_timeouts", &[("a.hcl", text)]);
        let config = load(&Sources { paths: vec![Source::Dir(good)], ..Sources::default() }).unwrap();
        assert_eq!(config.rpc_client_timeout, Some(std::time::Duration::from_secs(90)));
        assert_eq!(config.rpc_hold_timeout, Some(std::time::Duration::from_secs(3)));
        let bad = dir("rpc_timeouts_bad", &[("a.json", r#"{"limits": {"rpc_client_timeout": "soon"}}"#)]);
        let error =
            load(&Sources { paths: vec![Source::Dir(bad)], ..Sources::default() }).unwrap_err().to_string();
        assert!(error.contains("limits.rpc_client_timeout"), "{error}");
        // The other format of each: JSON read, HCL refused.
        let json =
            r#"{"limits": {"rpc_client_timeout": "0s"}, "performance": {"rpc_hold_timeout": "500ms"}}"#;
        let good = dir("rpc_timeouts_json", &[("a.json", json)]);
        let config = load(&Sources { paths: vec![Source::Dir(good)], ..Sources::default() }).unwrap();
        assert_eq!(config.rpc_client_timeout, Some(std::time::Duration::ZERO));
        assert_eq!(config.rpc_hold_timeout, Some(std::time::Duration::from_millis(500)));
        let bad =
            dir("rpc_timeouts_bad_hcl", &[("a.hcl", "performance {\n  rpc_hold_timeout = \"later\"\n}\n")]);
        let error =
            load(&Sources { paths: vec![Source::Dir(bad)], ..Sources::default() }).unwrap_err().to_string();
        assert!(error.contains("performance.rpc_hold_timeout"), "{error}");
    }

    #[test]
    fn dns_settings_and_the_check_update_interval_are_read() {
        let dir = dir(
            "dns",
            &[(
                "a.hcl",
                "check_update_interval = \"0s\"\ndomain = \"example.\"\nrecursors = [\"1.1.1.1\"]\n\
                 ports {\n  dns = -1\n}\ndns_config {\n  only_passing = true\n  node_ttl = \"30s\"\n\
                 service_ttl = {\n    \"*\" = \"5s\"\n  }\n  soa {\n    min_ttl = 60\n  }\n\
                 recursor_strategy = \"random\"\n  recursor_timeout = \"500ms\"\n\
                 enable_additional_node_meta_txt = false\n}\n",
            )],
        );
        let config = load(&Sources { paths: vec![Source::Dir(dir.clone())], ..Sources::default() }).unwrap();
        assert_eq!(config.check_update_interval, Some(std::time::Duration::ZERO));
        assert_eq!(
            (config.domain.as_deref(), config.recursors.as_slice()),
            (Some("example."), &["1.1.1.1".to_owned()][..])
        );
        assert_eq!(config.ports.dns, Some(-1));
        assert_eq!((config.dns.only_passing, config.dns.node_ttl_secs), (Some(true), Some(30)));
        assert_eq!(config.dns.service_ttl_secs.get("*"), Some(&5));
        assert_eq!(config.dns.soa.get("min_ttl"), Some(&60));
        assert_eq!(config.dns.recursor_strategy.as_deref(), Some("random"));
        assert_eq!(config.dns.recursor_timeout, Some(std::time::Duration::from_millis(500)));
        assert_eq!(config.dns.node_meta_txt, Some(false));
        std::fs::write(dir.join("b.json"), r#"{"dns_config": {"only_passin": true}}"#).unwrap();
        let refused = load(&Sources { paths: vec![Source::File(dir.join("b.json"))], ..Sources::default() })
            .unwrap_err()
            .to_string();
        assert!(refused.ends_with("* invalid config key dns_config.only_passin\n\n"), "{refused}");
        std::fs::write(dir.join("c.json"), r#"{"dns_config": {"recursor_strategy": "fastest"}}"#).unwrap();
        let refused = load(&Sources { paths: vec![Source::File(dir.join("c.json"))], ..Sources::default() })
            .unwrap_err()
            .to_string();
        assert!(
            refused.ends_with(
                r#"dns_config.recursor_strategy: expected "sequential" or "random", not "fastest""#
            ),
            "{refused}"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn unknown_keys_and_bad_values_name_the_file() {
        let dir = dir(
            "bad",
            &[
                ("a.json", r#"{"datacentre": "east"}"#),
                ("b.json", r#"{"ports": {"htp": 1}}"#),
                ("c.hcl", "server = \"yes\""),
            ],
        );
        let one = |file: &str| {
            load(&Sources { paths: vec![Source::File(dir.join(file))], ..Sources::default() })
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            one("a.json"),
            format!(
                "failed to parse {}: 1 error occurred:\n\t* invalid config key datacentre\n\n",
                dir.join("a.json").display()
            )
        );
        assert_eq!(
            one("b.json"),
            format!(
                "failed to parse {}: 1 error occurred:\n\t* invalid config key ports.htp\n\n",
                dir.join("b.json").display()
            )
        );
        assert_eq!(
            one("c.hcl"),
            format!(
                "failed to parse {}: 1 error occurred:\n\t* 'server' expected type 'bool', got unconvertible type 'string', value: 'yes'\n\n",
                dir.join("c.hcl").display()
            )
        );
        std::fs::write(dir.join("d.json"), "{not json").unwrap();
        assert!(one("d.json").starts_with(&format!("failed to parse {}: ", dir.join("d.json").display())));
        std::fs::write(dir.join("e.yaml"), "a: b").unwrap();
        assert_eq!(
            one("e.yaml"),
            format!(
                "Error loading {}: config file must have a .json or .hcl extension",
                dir.join("e.yaml").display()
            )
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
