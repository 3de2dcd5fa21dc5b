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

use serde_json::{json as value, Value};

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
pub(super) fn debug_config(api: &Api, runtime: &RuntimeConfig) -> Value {
    let settings = AgentSettings {
        datacenter: &api.datacenter,
        node_id: &api.node_id,
        node_name: &api.node_name,
        query_times: api.query_times,
        script_checks: api.script_checks,
        rpc_addr: api.consensus.as_ref().map(|consensus| consensus.rpc_addr),
    };
    debug_config_of(&settings, runtime)
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

fn debug_config_of(api: &AgentSettings<'_>, runtime: &RuntimeConfig) -> Value {
    let mut fields: Vec<(&str, Value)> = vec![
        (
            "ACLTokens",
            value!({
                "ACLAgentRecoveryToken": "hidden",
                "ACLAgentToken": "hidden",
                "ACLConfigFileRegistrationToken": "hidden",
                "ACLDNSToken": "hidden",
                "ACLDefaultToken": "hidden",
                "ACLReplicationToken": "hidden",
            }),
        ),
        ("ACLsEnabled", value!(false)),
        ("Bootstrap", value!(runtime.bootstrap)),
        ("BootstrapExpect", value!(runtime.bootstrap_expect)),
        ("DNSAltDomain", value!(runtime.dns_alt_domain)),
        ("DNSDomain", value!(runtime.dns_domain)),
        ("DNSPort", value!(runtime.ports.dns)),
        ("DNSRecursors", value!(runtime.dns_recursors)),
        (
            "DataDir",
            value!(runtime.data_dir.as_ref().map_or_else(String::new, |dir| dir.display().to_string())),
        ),
        ("Datacenter", value!(api.datacenter)),
        ("DefaultQueryTime", value!(go_duration(api.query_times.default))),
        ("DevMode", value!(runtime.dev_mode)),
        ("DisableKeyringFile", value!(runtime.disable_keyring_file)),
        ("DisableRemoteExec", value!(runtime.disable_remote_exec)),
        ("EnableLocalScriptChecks", value!(api.script_checks.from_files)),
        ("EnableRemoteScriptChecks", value!(api.script_checks.from_api)),
        ("EncryptKey", value!("hidden")),
        ("GRPCPort", value!(runtime.ports.grpc)),
        ("GRPCTLSPort", value!(runtime.ports.grpc_tls)),
        ("HTTPPort", value!(runtime.ports.http)),
        ("HTTPSPort", value!(runtime.ports.https)),
        ("LeaveOnTerm", value!(runtime.leave_on_terminate)),
        ("LogJSON", value!(runtime.log_json)),
        ("LogLevel", value!(runtime.log_level)),
        ("MaxQueryTime", value!(go_duration(api.query_times.max))),
        ("NodeID", value!(api.node_id)),
        ("NodeMeta", value!(runtime.node_meta)),
        ("NodeName", value!(api.node_name)),
        ("PrimaryDatacenter", value!(api.datacenter)),
        ("RejoinAfterLeave", value!(runtime.rejoin_after_leave)),
        ("RetryJoinIntervalLAN", value!(go_duration(runtime.retry_join_interval_lan))),
        ("RetryJoinIntervalWAN", value!(go_duration(runtime.retry_join_interval_wan))),
        (
            "RetryJoinLAN",
            value!(runtime.retry_join_lan.iter().map(|entry| clean_retry_join(entry)).collect::<Vec<_>>()),
        ),
        ("RetryJoinMaxAttemptsLAN", value!(runtime.retry_join_max_attempts_lan)),
        ("RetryJoinMaxAttemptsWAN", value!(runtime.retry_join_max_attempts_wan)),
        (
            "RetryJoinWAN",
            value!(runtime.retry_join_wan.iter().map(|entry| clean_retry_join(entry)).collect::<Vec<_>>()),
        ),
        ("Revision", value!(crate::version::GIT_REVISION)),
        ("SerfPortLAN", value!(runtime.ports.serf_lan)),
        ("SerfPortWAN", value!(runtime.ports.serf_wan)),
        ("ServerMode", value!(api.rpc_addr.is_some())),
        ("ServerPort", value!(runtime.ports.server)),
        ("SkipLeaveOnInt", value!(runtime.skip_leave_on_interrupt)),
        ("Version", value!(crate::version::CONSUL_COMPATIBLE_VERSION)),
        ("VersionMetadata", value!("")),
        ("VersionPrerelease", value!("")),
    ];
    fields.extend(addresses(api, runtime));
    // Consul's order: by name.
    fields.sort_by_key(|(name, _)| *name);
    Value::Object(fields.into_iter().map(|(name, field)| (name.to_owned(), field)).collect())
}

/// The addresses `DebugConfig` shows, with their schemes as Consul writes them.
fn addresses(api: &AgentSettings<'_>, runtime: &RuntimeConfig) -> Vec<(&'static str, Value)> {
    let ip = |addr: Option<IpAddr>| addr.map_or_else(String::new, |ip| ip.to_string());
    let listener =
        |scheme: &str, addr: Option<SocketAddr>| addr.map_or_else(String::new, |a| format!("{scheme}://{a}"));
    let with_port = |ip: Option<IpAddr>, port: i32| {
        u16::try_from(port)
            .ok()
            .filter(|port| *port > 0)
            .and_then(|port| ip.map(|ip| SocketAddr::new(ip, port)))
    };
    let bind = runtime.bind_addr;
    let dns_addrs: Vec<String> = runtime
        .dns_addrs
        .iter()
        .flat_map(|addr| [format!("tcp://{addr}"), format!("udp://{addr}")])
        .collect();
    vec![
        ("AdvertiseAddrLAN", value!(ip(runtime.advertise_addr_lan))),
        ("AdvertiseAddrWAN", value!(ip(runtime.advertise_addr_wan.or(runtime.advertise_addr_lan)))),
        ("BindAddr", value!(ip(bind))),
        ("ClientAddrs", value!(runtime.client_addrs.iter().map(ToString::to_string).collect::<Vec<_>>())),
        ("DNSAddrs", value!(dns_addrs)),
        ("HTTPAddrs", value!(runtime.http_addrs.iter().map(|a| format!("tcp://{a}")).collect::<Vec<_>>())),
        ("RPCAdvertiseAddr", value!(listener("tcp", api.rpc_addr))),
        ("RPCBindAddr", value!(listener("tcp", with_port(bind, runtime.ports.server)))),
        (
            "SerfAdvertiseAddrLAN",
            value!(listener("tcp", with_port(runtime.advertise_addr_lan, runtime.ports.serf_lan))),
        ),
        (
            "SerfAdvertiseAddrWAN",
            value!(listener(
                "tcp",
                with_port(runtime.advertise_addr_wan.or(runtime.advertise_addr_lan), runtime.ports.serf_wan)
            )),
        ),
        ("SerfBindAddrLAN", value!(listener("tcp", with_port(bind, runtime.ports.serf_lan)))),
        ("SerfBindAddrWAN", value!(listener("tcp", with_port(bind, runtime.ports.serf_wan)))),
    ]
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
        let lines = [debug_config_of(&client, &RuntimeConfig::default()), debug_config_of(&server, &full)]
            .map(|config| serde_json::to_string(&config).unwrap());
        super::super::shapes::assert_golden("debug_config.golden", &lines);
    }
}
