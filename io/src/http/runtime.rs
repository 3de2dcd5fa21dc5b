//! `DebugConfig` of `/v1/agent/self`: the agent's runtime configuration as Consul's
//! `RuntimeConfig.Sanitized()` writes it (consul `agent/config/runtime.go`), for the settings
//! muster has, under Consul's field names. Sanitizing follows Consul's rules: a string field whose
//! name contains `key`, `token` or `secret` is `"hidden"` (set or not), durations are Go's
//! strings (`30s`, `10m0s`), an IP address is its text, a listener is `tcp://ip:port` (or
//! `udp://`), and a `key=value` part of a `retry_join` entry that looks secret is
//! `key=hidden`.
//!
//! The agent hands its settings over once at start ([`super::ConfigFiles::set_runtime`]); what
//! the API already holds (datacenter, node, server mode, script checks, query times) is read
//! from it.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use super::{Api, QueryTimes, ScriptChecks};

/// What the agent was started with, beyond what [`Api`] holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuntimeConfig {
    /// `-dev`.
    pub dev_mode: bool,
    /// `-bootstrap` (or `-bootstrap-expect=1`).
    pub bootstrap: bool,
    /// `-bootstrap-expect`.
    pub bootstrap_expect: usize,
    /// `-data-dir`.
    pub data_dir: Option<PathBuf>,
    /// `-bind`.
    pub bind_addr: Option<IpAddr>,
    /// The LAN address advertised.
    pub advertise_addr_lan: Option<IpAddr>,
    /// The WAN address advertised.
    pub advertise_addr_wan: Option<IpAddr>,
    /// `-client`.
    pub client_addrs: Vec<IpAddr>,
    /// The HTTP listeners.
    pub http_addrs: Vec<SocketAddr>,
    /// The DNS listeners (each serves UDP and TCP).
    pub dns_addrs: Vec<SocketAddr>,
    /// The ports, -1 for a listener turned off.
    pub ports: Ports,
    /// `-retry-join`.
    pub retry_join_lan: Vec<String>,
    /// `-retry-join-wan`.
    pub retry_join_wan: Vec<String>,
    /// `-retry-interval`.
    pub retry_join_interval_lan: Duration,
    /// `-retry-interval-wan`.
    pub retry_join_interval_wan: Duration,
    /// `-retry-max` (0: no limit).
    pub retry_join_max_attempts_lan: u32,
    /// `-retry-max-wan` (0: no limit).
    pub retry_join_max_attempts_wan: u32,
    /// `-log-level`, in Consul's upper case (`INFO`).
    pub log_level: String,
    /// `-log-json`.
    pub log_json: bool,
    /// `-node-meta`.
    pub node_meta: BTreeMap<String, String>,
    /// `-domain`, with its final dot (`consul.`).
    pub dns_domain: String,
    /// `-alt-domain`.
    pub dns_alt_domain: String,
    /// `-recursor`.
    pub dns_recursors: Vec<String>,
    /// `disable_remote_exec`.
    pub disable_remote_exec: bool,
    /// `leave_on_terminate`.
    pub leave_on_terminate: bool,
    /// `skip_leave_on_interrupt`.
    pub skip_leave_on_interrupt: bool,
    /// `-rejoin`.
    pub rejoin_after_leave: bool,
    /// `-disable-keyring-file`.
    pub disable_keyring_file: bool,
}

/// The agent's ports, Consul's `ports` block.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Ports {
    /// `ports.http`.
    pub http: i32,
    /// `ports.https`.
    pub https: i32,
    /// `ports.grpc`.
    pub grpc: i32,
    /// `ports.grpc_tls`.
    pub grpc_tls: i32,
    /// `ports.dns`.
    pub dns: i32,
    /// `ports.serf_lan`.
    pub serf_lan: i32,
    /// `ports.serf_wan`.
    pub serf_wan: i32,
    /// `ports.server`.
    pub server: i32,
}

/// `DebugConfig`: `runtime` with what `api` holds, sanitized as Consul sanitizes it.
pub(super) fn debug_config<'a>(api: &'a Api, runtime: &'a RuntimeConfig) -> DebugConfig<'a> {
    let settings = AgentSettings {
        datacenter: &api.datacenter,
        node_id: &api.node_id,
        node_name: &api.node_name,
        query_times: api.query_times,
        script_checks: api.script_checks,
        rpc_addr: api.consensus.as_ref().map(|consensus| consensus.rpc_addr),
    };
    DebugConfig::new(&settings, runtime)
}

/// What `DebugConfig` shows of what [`Api`] holds.
struct AgentSettings<'a> {
    datacenter: &'a str,
    node_id: &'a str,
    node_name: &'a str,
    query_times: QueryTimes,
    script_checks: ScriptChecks,
    /// A server's RPC address; `None` on a client agent.
    rpc_addr: Option<SocketAddr>,
}

/// `DebugConfig`: the settings of `runtime` and `api`, sanitized as Consul sanitizes them.
///
/// Consul builds it as a Go map, which its encoder writes with the keys sorted: the fields are
/// declared in that order (byte order, so `ACLTokens` before `ACLsEnabled`).
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct DebugConfig<'a> {
    #[serde(rename = "ACLTokens")]
    acl_tokens: AclTokens,
    #[serde(rename = "ACLsEnabled")]
    acls_enabled: bool,
    #[serde(rename = "AdvertiseAddrLAN")]
    advertise_addr_lan: String,
    #[serde(rename = "AdvertiseAddrWAN")]
    advertise_addr_wan: String,
    bind_addr: String,
    bootstrap: bool,
    bootstrap_expect: usize,
    client_addrs: Vec<String>,
    /// Each DNS listener twice, as `tcp://` and `udp://`.
    #[serde(rename = "DNSAddrs")]
    dns_addrs: Vec<String>,
    #[serde(rename = "DNSAltDomain")]
    dns_alt_domain: &'a str,
    #[serde(rename = "DNSDomain")]
    dns_domain: &'a str,
    #[serde(rename = "DNSPort")]
    dns_port: i32,
    #[serde(rename = "DNSRecursors")]
    dns_recursors: &'a [String],
    data_dir: String,
    datacenter: &'a str,
    default_query_time: String,
    dev_mode: bool,
    disable_keyring_file: bool,
    disable_remote_exec: bool,
    enable_local_script_checks: bool,
    enable_remote_script_checks: bool,
    encrypt_key: Hidden,
    #[serde(rename = "GRPCPort")]
    grpc_port: i32,
    #[serde(rename = "GRPCTLSPort")]
    grpc_tls_port: i32,
    #[serde(rename = "HTTPAddrs")]
    http_addrs: Vec<String>,
    #[serde(rename = "HTTPPort")]
    http_port: i32,
    #[serde(rename = "HTTPSPort")]
    https_port: i32,
    leave_on_term: bool,
    #[serde(rename = "LogJSON")]
    log_json: bool,
    log_level: &'a str,
    max_query_time: String,
    #[serde(rename = "NodeID")]
    node_id: &'a str,
    /// A Go map set from the flags: `{}` when empty, unlike the catalog's nil maps.
    node_meta: &'a BTreeMap<String, String>,
    node_name: &'a str,
    primary_datacenter: &'a str,
    #[serde(rename = "RPCAdvertiseAddr")]
    rpc_advertise_addr: String,
    #[serde(rename = "RPCBindAddr")]
    rpc_bind_addr: String,
    rejoin_after_leave: bool,
    #[serde(rename = "RetryJoinIntervalLAN")]
    retry_join_interval_lan: String,
    #[serde(rename = "RetryJoinIntervalWAN")]
    retry_join_interval_wan: String,
    #[serde(rename = "RetryJoinLAN")]
    retry_join_lan: Vec<String>,
    #[serde(rename = "RetryJoinMaxAttemptsLAN")]
    retry_join_max_attempts_lan: u32,
    #[serde(rename = "RetryJoinMaxAttemptsWAN")]
    retry_join_max_attempts_wan: u32,
    #[serde(rename = "RetryJoinWAN")]
    retry_join_wan: Vec<String>,
    revision: &'static str,
    #[serde(rename = "SerfAdvertiseAddrLAN")]
    serf_advertise_addr_lan: String,
    #[serde(rename = "SerfAdvertiseAddrWAN")]
    serf_advertise_addr_wan: String,
    #[serde(rename = "SerfBindAddrLAN")]
    serf_bind_addr_lan: String,
    #[serde(rename = "SerfBindAddrWAN")]
    serf_bind_addr_wan: String,
    #[serde(rename = "SerfPortLAN")]
    serf_port_lan: i32,
    #[serde(rename = "SerfPortWAN")]
    serf_port_wan: i32,
    server_mode: bool,
    server_port: i32,
    skip_leave_on_int: bool,
    version: &'static str,
    version_metadata: &'static str,
    version_prerelease: &'static str,
}

impl<'a> DebugConfig<'a> {
    fn new(api: &AgentSettings<'a>, runtime: &'a RuntimeConfig) -> DebugConfig<'a> {
        let ip = |addr: Option<IpAddr>| addr.map_or_else(String::new, |ip| ip.to_string());
        let listener = |addr: Option<SocketAddr>| addr.map_or_else(String::new, |a| format!("tcp://{a}"));
        let with_port = |ip: Option<IpAddr>, port: i32| {
            u16::try_from(port)
                .ok()
                .filter(|port| *port > 0)
                .and_then(|port| ip.map(|ip| SocketAddr::new(ip, port)))
        };
        let bind = runtime.bind_addr;
        let advertise_wan = runtime.advertise_addr_wan.or(runtime.advertise_addr_lan);
        let ports = runtime.ports;
        DebugConfig {
            acl_tokens: AclTokens::default(),
            acls_enabled: false,
            advertise_addr_lan: ip(runtime.advertise_addr_lan),
            advertise_addr_wan: ip(advertise_wan),
            bind_addr: ip(bind),
            bootstrap: runtime.bootstrap,
            bootstrap_expect: runtime.bootstrap_expect,
            client_addrs: runtime.client_addrs.iter().map(ToString::to_string).collect(),
            dns_addrs: runtime
                .dns_addrs
                .iter()
                .flat_map(|addr| [format!("tcp://{addr}"), format!("udp://{addr}")])
                .collect(),
            dns_alt_domain: &runtime.dns_alt_domain,
            dns_domain: &runtime.dns_domain,
            dns_port: ports.dns,
            dns_recursors: &runtime.dns_recursors,
            data_dir: runtime.data_dir.as_ref().map_or_else(String::new, |dir| dir.display().to_string()),
            datacenter: api.datacenter,
            default_query_time: go_duration(api.query_times.default),
            dev_mode: runtime.dev_mode,
            disable_keyring_file: runtime.disable_keyring_file,
            disable_remote_exec: runtime.disable_remote_exec,
            enable_local_script_checks: api.script_checks.from_files,
            enable_remote_script_checks: api.script_checks.from_api,
            encrypt_key: Hidden,
            grpc_port: ports.grpc,
            grpc_tls_port: ports.grpc_tls,
            http_addrs: runtime.http_addrs.iter().map(|a| format!("tcp://{a}")).collect(),
            http_port: ports.http,
            https_port: ports.https,
            leave_on_term: runtime.leave_on_terminate,
            log_json: runtime.log_json,
            log_level: &runtime.log_level,
            max_query_time: go_duration(api.query_times.max),
            node_id: api.node_id,
            node_meta: &runtime.node_meta,
            node_name: api.node_name,
            primary_datacenter: api.datacenter,
            rpc_advertise_addr: listener(api.rpc_addr),
            rpc_bind_addr: listener(with_port(bind, ports.server)),
            rejoin_after_leave: runtime.rejoin_after_leave,
            retry_join_interval_lan: go_duration(runtime.retry_join_interval_lan),
            retry_join_interval_wan: go_duration(runtime.retry_join_interval_wan),
            retry_join_lan: runtime.retry_join_lan.iter().map(|entry| clean_retry_join(entry)).collect(),
            retry_join_max_attempts_lan: runtime.retry_join_max_attempts_lan,
            retry_join_max_attempts_wan: runtime.retry_join_max_attempts_wan,
            retry_join_wan: runtime.retry_join_wan.iter().map(|entry| clean_retry_join(entry)).collect(),
            revision: crate::version::GIT_REVISION,
            serf_advertise_addr_lan: listener(with_port(runtime.advertise_addr_lan, ports.serf_lan)),
            serf_advertise_addr_wan: listener(with_port(advertise_wan, ports.serf_wan)),
            serf_bind_addr_lan: listener(with_port(bind, ports.serf_lan)),
            serf_bind_addr_wan: listener(with_port(bind, ports.serf_wan)),
            serf_port_lan: ports.serf_lan,
            serf_port_wan: ports.serf_wan,
            server_mode: api.rpc_addr.is_some(),
            server_port: ports.server,
            skip_leave_on_int: runtime.skip_leave_on_interrupt,
            version: crate::version::CONSUL_COMPATIBLE_VERSION,
            version_metadata: "",
            version_prerelease: "",
        }
    }
}

#[cfg(test)]
impl DebugConfig<'_> {
    /// A client agent's, started with `runtime`, for other modules' tests.
    pub(super) fn sample(runtime: &RuntimeConfig) -> DebugConfig<'_> {
        let settings = AgentSettings {
            datacenter: "dc1",
            node_id: "",
            node_name: "",
            query_times: QueryTimes::default(),
            script_checks: ScriptChecks::default(),
            rpc_addr: None,
        };
        DebugConfig::new(&settings, runtime)
    }
}

/// Consul's `ACLTokens`, every one hidden, set or not.
#[derive(Serialize, Default)]
struct AclTokens {
    #[serde(rename = "ACLAgentRecoveryToken")]
    agent_recovery: Hidden,
    #[serde(rename = "ACLAgentToken")]
    agent: Hidden,
    #[serde(rename = "ACLConfigFileRegistrationToken")]
    config_file_registration: Hidden,
    #[serde(rename = "ACLDNSToken")]
    dns: Hidden,
    #[serde(rename = "ACLDefaultToken")]
    default: Hidden,
    #[serde(rename = "ACLReplicationToken")]
    replication: Hidden,
}

/// A secret as Consul's sanitizing writes it, whatever its value: `"hidden"`.
#[derive(Default)]
struct Hidden;

impl Serialize for Hidden {
    fn serialize<S: serde::Serializer>(&self, out: S) -> Result<S::Ok, S::Error> {
        out.serialize_str("hidden")
    }
}

/// Go's `time.Duration.String()`.
fn go_duration(duration: Duration) -> String {
    if duration.is_zero() {
        return "0s".to_owned();
    }
    muster_core::duration::format(duration)
}

/// Consul's `cleanRetryJoin`: a go-discover entry's `key=value` parts whose key looks secret
/// are written `key=hidden`.
fn clean_retry_join(entry: &str) -> String {
    entry
        .split_whitespace()
        .map(|part| match part.split_once('=') {
            Some((key, _)) if is_secret(part) => format!("{key}=hidden"),
            None if is_secret(part) => format!("{part}=hidden"),
            _ => part.to_owned(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Consul's `isSecret`.
fn is_secret(name: &str) -> bool {
    let name = name.to_lowercase();
    name.contains("key") || name.contains("token") || name.contains("secret")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_join_secrets_are_hidden_as_consul_hides_them() {
        assert_eq!(
            clean_retry_join("provider=aws tag_key=consul tag_value=x secret_access_key=abc"),
            "provider=aws tag_key=hidden tag_value=x secret_access_key=hidden"
        );
        assert_eq!(clean_retry_join("10.0.0.1:8301"), "10.0.0.1:8301");
    }

    #[test]
    fn durations_are_gos() {
        assert_eq!(go_duration(Duration::from_secs(600)), "10m0s");
        assert_eq!(go_duration(Duration::from_secs(30)), "30s");
        assert_eq!(go_duration(Duration::ZERO), "0s");
    }

    /// `DebugConfig`'s bytes for a client and for a server with every setting given, pinned:
    /// Consul's names, sorted as Go sorts a map's keys, and its sanitized values.
    #[test]
    fn debug_config_keeps_consuls_names_and_values() {
        let client = AgentSettings {
            datacenter: "dc1",
            node_id: "0b6c4a5c-2f4c-4d43-9c55-0cd0b0b8f4a1",
            node_name: "web-1",
            query_times: QueryTimes::default(),
            script_checks: ScriptChecks::default(),
            rpc_addr: None,
        };
        let server = AgentSettings {
            script_checks: ScriptChecks { from_api: true, from_files: true },
            rpc_addr: Some("10.0.0.1:8300".parse().unwrap()),
            ..client
        };
        let full = RuntimeConfig {
            dev_mode: true,
            bootstrap: true,
            bootstrap_expect: 3,
            data_dir: Some("/var/lib/consul".into()),
            bind_addr: Some("0.0.0.0".parse().unwrap()),
            advertise_addr_lan: Some("10.0.0.1".parse().unwrap()),
            advertise_addr_wan: Some("192.0.2.1".parse().unwrap()),
            client_addrs: vec!["127.0.0.1".parse().unwrap()],
            http_addrs: vec!["127.0.0.1:8500".parse().unwrap()],
            dns_addrs: vec!["127.0.0.1:8600".parse().unwrap()],
            ports: Ports {
                http: 8500,
                https: -1,
                grpc: 8502,
                grpc_tls: -1,
                dns: 8600,
                serf_lan: 8301,
                serf_wan: 8302,
                server: 8300,
            },
            retry_join_lan: vec!["provider=aws tag_key=consul secret_access_key=s3cr3t".into()],
            retry_join_wan: vec!["10.1.0.1".into()],
            retry_join_interval_lan: Duration::from_secs(30),
            retry_join_interval_wan: Duration::from_secs(90),
            retry_join_max_attempts_lan: 3,
            retry_join_max_attempts_wan: 4,
            log_level: "INFO".into(),
            log_json: true,
            node_meta: [("env".to_owned(), "prod".to_owned())].into_iter().collect(),
            dns_domain: "consul.".into(),
            dns_alt_domain: "alt.".into(),
            dns_recursors: vec!["8.8.8.8".into()],
            disable_remote_exec: true,
            leave_on_terminate: true,
            skip_leave_on_interrupt: true,
            rejoin_after_leave: true,
            disable_keyring_file: true,
        };
        let lines = [DebugConfig::new(&client, &RuntimeConfig::default()), DebugConfig::new(&server, &full)]
            .map(|config| serde_json::to_string(&config).unwrap());
        super::super::shapes::assert_golden("debug_config.golden", &lines);
    }

    /// Go writes a map's keys sorted by their bytes; the struct's fields must be declared so.
    #[test]
    fn debug_config_fields_are_in_gos_map_order() {
        let runtime = RuntimeConfig::default();
        let value = serde_json::to_value(DebugConfig::sample(&runtime)).unwrap();
        for object in [&value, &value["ACLTokens"]] {
            let keys: Vec<&String> = object.as_object().unwrap().keys().collect();
            assert!(keys.windows(2).all(|pair| pair[0] < pair[1]), "{keys:?}");
        }
    }
}
