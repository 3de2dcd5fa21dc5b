//! The catalog's answers in Consul's shapes, as serde structs: `Node`, `NodeService`,
//! `ServiceNode`, `HealthCheck` and its `Definition`, and what is built of them (`NodeServices`,
//! `CheckServiceNode`, the agent's `AgentService`). Field order is Consul's (Go encodes a
//! struct's fields in declaration order, and so does serde), and so are its quirks: a Go map
//! without entries is `null`, a field tagged `omitempty` is left out when empty, and the
//! service mesh fields muster does not implement are their zero values.
//!
//! They borrow from the catalog's rows. The handlers turn them into a `Value` where `?filter`
//! applies, as it evaluates on values, and serialize them directly elsewhere. A shape only one
//! endpoint answers with is declared beside its handler instead (`DebugConfig` in `runtime.rs`,
//! `RaftConfiguration` in `operator.rs`, ...); each is pinned by a golden file in `testdata/`
//! through `assert_golden`.

use std::collections::BTreeMap;

use muster_core::duration;
use muster_core::fsm::{Check, CheckDefinition, Instance, Node, Service, ServiceAddress, Weights};
use serde::{Serialize, Serializer};
use serde_json::Value;

/// The fields that name a node, first in both `Node` and `ServiceNode`.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct NodeNameJson<'a> {
    #[serde(rename = "ID")]
    id: &'a str,
    node: &'a str,
    address: &'a str,
    datacenter: &'a str,
    #[serde(serialize_with = "map_or_null")]
    tagged_addresses: &'a BTreeMap<String, String>,
}

impl<'a> From<&'a Node> for NodeNameJson<'a> {
    fn from(node: &'a Node) -> NodeNameJson<'a> {
        NodeNameJson {
            id: &node.id,
            node: &node.node,
            address: &node.address,
            datacenter: &node.datacenter,
            tagged_addresses: &node.tagged_addresses,
        }
    }
}

/// Consul's `Node`.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct NodeJson<'a> {
    #[serde(flatten)]
    name: NodeNameJson<'a>,
    #[serde(serialize_with = "map_or_null")]
    meta: &'a BTreeMap<String, String>,
    create_index: u64,
    modify_index: u64,
}

impl<'a> From<&'a Node> for NodeJson<'a> {
    fn from(node: &'a Node) -> NodeJson<'a> {
        NodeJson {
            name: NodeNameJson::from(node),
            meta: &node.meta,
            create_index: node.create_index,
            modify_index: node.modify_index,
        }
    }
}

/// Consul's `NodeService` (`AgentService` in the agent endpoints).
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct NodeServiceJson<'a> {
    #[serde(skip_serializing_if = "str::is_empty")]
    kind: &'a str,
    #[serde(rename = "ID")]
    id: &'a str,
    service: &'a str,
    tags: &'a [String],
    address: &'a str,
    #[serde(skip_serializing_if = "BTreeMap::is_empty", serialize_with = "service_addresses")]
    tagged_addresses: &'a BTreeMap<String, ServiceAddress>,
    #[serde(serialize_with = "map_or_null")]
    meta: &'a BTreeMap<String, String>,
    port: u16,
    #[serde(skip_serializing_if = "str::is_empty")]
    socket_path: &'a str,
    weights: WeightsJson,
    enable_tag_override: bool,
    proxy: ProxyJson,
    connect: Empty,
    create_index: u64,
    modify_index: u64,
}

impl<'a> From<&'a Service> for NodeServiceJson<'a> {
    fn from(service: &'a Service) -> NodeServiceJson<'a> {
        NodeServiceJson {
            kind: &service.kind,
            id: &service.id,
            service: &service.service,
            tags: &service.tags,
            address: &service.address,
            tagged_addresses: &service.tagged_addresses,
            meta: &service.meta,
            port: service.port,
            socket_path: &service.socket_path,
            weights: service.weights.into(),
            enable_tag_override: service.enable_tag_override,
            proxy: ProxyJson::default(),
            connect: Empty {},
            create_index: service.create_index,
            modify_index: service.modify_index,
        }
    }
}

/// Consul's `AgentService`: a service as its own agent shows it (`/v1/agent/services`).
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct AgentServiceJson<'a> {
    #[serde(skip_serializing_if = "str::is_empty")]
    kind: &'a str,
    #[serde(rename = "ID")]
    id: &'a str,
    service: &'a str,
    tags: &'a [String],
    /// Not a Go map left nil here: the agent's copy always has one.
    meta: &'a BTreeMap<String, String>,
    port: u16,
    address: &'a str,
    #[serde(skip_serializing_if = "BTreeMap::is_empty", serialize_with = "service_addresses")]
    tagged_addresses: &'a BTreeMap<String, ServiceAddress>,
    weights: WeightsJson,
    enable_tag_override: bool,
    /// `/v1/agent/service/<id>`'s hash of the rest, for hash-based blocking; empty elsewhere.
    #[serde(skip_serializing_if = "String::is_empty")]
    content_hash: String,
    datacenter: &'a str,
}

impl<'a> AgentServiceJson<'a> {
    /// `service`, registered with the agent of `datacenter`.
    pub(super) fn new(service: &'a Service, datacenter: &'a str) -> AgentServiceJson<'a> {
        AgentServiceJson {
            kind: &service.kind,
            id: &service.id,
            service: &service.service,
            tags: &service.tags,
            meta: &service.meta,
            port: service.port,
            address: &service.address,
            tagged_addresses: &service.tagged_addresses,
            weights: service.weights.into(),
            enable_tag_override: service.enable_tag_override,
            content_hash: String::new(),
            datacenter,
        }
    }

    /// The same, with the hash of its content.
    pub(super) fn with_content_hash(self, content_hash: String) -> AgentServiceJson<'a> {
        AgentServiceJson { content_hash, ..self }
    }
}

/// Consul's `ServiceNode`: one instance flattened with its node (`/v1/catalog/service/...`).
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct ServiceNodeJson<'a> {
    #[serde(flatten)]
    node: NodeNameJson<'a>,
    #[serde(serialize_with = "map_or_null")]
    node_meta: &'a BTreeMap<String, String>,
    service_kind: &'a str,
    #[serde(rename = "ServiceID")]
    service_id: &'a str,
    service_name: &'a str,
    service_tags: &'a [String],
    service_address: &'a str,
    #[serde(skip_serializing_if = "BTreeMap::is_empty", serialize_with = "service_addresses")]
    service_tagged_addresses: &'a BTreeMap<String, ServiceAddress>,
    service_weights: WeightsJson,
    #[serde(serialize_with = "map_or_null")]
    service_meta: &'a BTreeMap<String, String>,
    service_port: u16,
    service_socket_path: &'a str,
    service_enable_tag_override: bool,
    service_proxy: ProxyJson,
    service_connect: Empty,
    create_index: u64,
    modify_index: u64,
}

impl<'a> ServiceNodeJson<'a> {
    /// `service` on `node`; the indexes are the service's.
    pub(super) fn new(node: &'a Node, service: &'a Service) -> ServiceNodeJson<'a> {
        ServiceNodeJson {
            node: NodeNameJson::from(node),
            node_meta: &node.meta,
            service_kind: &service.kind,
            service_id: &service.id,
            service_name: &service.service,
            service_tags: &service.tags,
            service_address: &service.address,
            service_tagged_addresses: &service.tagged_addresses,
            service_weights: service.weights.into(),
            service_meta: &service.meta,
            service_port: service.port,
            service_socket_path: &service.socket_path,
            service_enable_tag_override: service.enable_tag_override,
            service_proxy: ProxyJson::default(),
            service_connect: Empty {},
            create_index: service.create_index,
            modify_index: service.modify_index,
        }
    }
}

/// The fields that say which check it is and how it fares, first in `HealthCheck`, and all
/// that the agent's service health endpoints show of one.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct CheckNameJson<'a> {
    node: &'a str,
    #[serde(rename = "CheckID")]
    check_id: &'a str,
    name: &'a str,
    status: &'a str,
    notes: &'a str,
    output: &'a str,
    #[serde(rename = "ServiceID")]
    service_id: &'a str,
    service_name: &'a str,
    service_tags: &'a [String],
}

impl<'a> From<&'a Check> for CheckNameJson<'a> {
    fn from(check: &'a Check) -> CheckNameJson<'a> {
        CheckNameJson {
            node: &check.node,
            check_id: &check.check_id,
            name: &check.name,
            status: check.status.as_str(),
            notes: &check.notes,
            output: &check.output,
            service_id: &check.service_id,
            service_name: &check.service_name,
            service_tags: &check.service_tags,
        }
    }
}

/// Consul's `HealthCheck`.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct HealthCheckJson<'a> {
    #[serde(flatten)]
    name: CheckNameJson<'a>,
    #[serde(rename = "Type")]
    kind: &'a str,
    /// A Go duration, empty when unset (not `omitempty` in Consul).
    interval: String,
    timeout: String,
    /// Connect's exposed path port; muster exposes none.
    exposed_port: u16,
    definition: DefinitionJson<'a>,
    create_index: u64,
    modify_index: u64,
}

impl<'a> From<&'a Check> for HealthCheckJson<'a> {
    fn from(check: &'a Check) -> HealthCheckJson<'a> {
        HealthCheckJson {
            name: CheckNameJson::from(check),
            kind: check.kind.as_str(),
            interval: go_duration_or_empty(check.definition.interval_ns),
            timeout: go_duration_or_empty(check.definition.timeout_ns),
            exposed_port: 0,
            definition: DefinitionJson::from(&check.definition),
            create_index: check.create_index,
            modify_index: check.modify_index,
        }
    }
}

/// Consul's `HealthCheckDefinition`: only what is set (every field `omitempty`), durations as
/// Go strings.
#[derive(Serialize)]
pub(super) struct DefinitionJson<'a> {
    #[serde(rename = "HTTP", skip_serializing_if = "str::is_empty")]
    http: &'a str,
    #[serde(rename = "Method", skip_serializing_if = "str::is_empty")]
    method: &'a str,
    #[serde(rename = "Body", skip_serializing_if = "str::is_empty")]
    body: &'a str,
    #[serde(rename = "TLSServerName", skip_serializing_if = "str::is_empty")]
    tls_server_name: &'a str,
    #[serde(rename = "TCP", skip_serializing_if = "str::is_empty")]
    tcp: &'a str,
    #[serde(rename = "UDP", skip_serializing_if = "str::is_empty")]
    udp: &'a str,
    #[serde(rename = "GRPC", skip_serializing_if = "str::is_empty")]
    grpc: &'a str,
    #[serde(rename = "H2PING", skip_serializing_if = "str::is_empty")]
    h2ping: &'a str,
    #[serde(rename = "AliasNode", skip_serializing_if = "str::is_empty")]
    alias_node: &'a str,
    #[serde(rename = "AliasService", skip_serializing_if = "str::is_empty")]
    alias_service: &'a str,
    #[serde(rename = "Header", skip_serializing_if = "BTreeMap::is_empty")]
    header: &'a BTreeMap<String, Vec<String>>,
    #[serde(rename = "TLSSkipVerify", skip_serializing_if = "is_false")]
    tls_skip_verify: bool,
    #[serde(rename = "TCPUseTLS", skip_serializing_if = "is_false")]
    tcp_use_tls: bool,
    #[serde(rename = "GRPCUseTLS", skip_serializing_if = "is_false")]
    grpc_use_tls: bool,
    #[serde(rename = "H2PingUseTLS", skip_serializing_if = "is_false")]
    h2ping_use_tls: bool,
    #[serde(rename = "DisableRedirects", skip_serializing_if = "is_false")]
    disable_redirects: bool,
    #[serde(rename = "Interval", skip_serializing_if = "String::is_empty")]
    interval: String,
    #[serde(rename = "Timeout", skip_serializing_if = "String::is_empty")]
    timeout: String,
    #[serde(rename = "TTL", skip_serializing_if = "String::is_empty")]
    ttl: String,
    #[serde(rename = "DeregisterCriticalServiceAfter", skip_serializing_if = "String::is_empty")]
    deregister_critical_service_after: String,
}

impl<'a> From<&'a CheckDefinition> for DefinitionJson<'a> {
    fn from(definition: &'a CheckDefinition) -> DefinitionJson<'a> {
        DefinitionJson {
            http: &definition.http,
            method: &definition.method,
            body: &definition.body,
            tls_server_name: &definition.tls_server_name,
            tcp: &definition.tcp,
            udp: &definition.udp,
            grpc: &definition.grpc,
            h2ping: &definition.h2ping,
            alias_node: &definition.alias_node,
            alias_service: &definition.alias_service,
            header: &definition.header,
            tls_skip_verify: definition.tls_skip_verify,
            tcp_use_tls: definition.tcp_use_tls,
            grpc_use_tls: definition.grpc_use_tls,
            // Consul's default for an H2PING check; meaningless, and so not shown, without one.
            h2ping_use_tls: definition.h2ping_use_tls && !definition.h2ping.is_empty(),
            disable_redirects: definition.disable_redirects,
            interval: go_duration_or_empty(definition.interval_ns),
            timeout: go_duration_or_empty(definition.timeout_ns),
            ttl: go_duration_or_empty(definition.ttl_ns),
            deregister_critical_service_after: go_duration_or_empty(
                definition.deregister_critical_service_after_ns,
            ),
        }
    }
}

/// Consul's `NodeServices` (`/v1/catalog/node/<node>`, its services by ID) and
/// `NodeServiceList` (`/v1/catalog/node-services/<node>`, a list).
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct NodeServicesJson<'a> {
    node: NodeJson<'a>,
    /// A `Value`, the map or the list, because `?filter` applies to it.
    services: Value,
}

impl<'a> NodeServicesJson<'a> {
    /// `node` with its `services`, shaped.
    pub(super) fn new(node: &'a Node, services: Value) -> NodeServicesJson<'a> {
        NodeServicesJson { node: NodeJson::from(node), services }
    }
}

/// Consul's `CheckServiceNode`: an instance with its node and checks (`/v1/health/service/...`).
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct CheckServiceNodeJson<'a> {
    node: NodeJson<'a>,
    service: NodeServiceJson<'a>,
    checks: Vec<HealthCheckJson<'a>>,
}

impl<'a> From<Instance<'a>> for CheckServiceNodeJson<'a> {
    fn from(instance: Instance<'a>) -> CheckServiceNodeJson<'a> {
        CheckServiceNodeJson {
            node: NodeJson::from(instance.node),
            service: NodeServiceJson::from(instance.service),
            checks: instance.checks.into_iter().map(HealthCheckJson::from).collect(),
        }
    }
}

/// Consul's `Weights`.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct WeightsJson {
    passing: u32,
    warning: u32,
}

impl From<Weights> for WeightsJson {
    fn from(weights: Weights) -> WeightsJson {
        WeightsJson { passing: weights.passing, warning: weights.warning }
    }
}

/// Consul's `ServiceAddress`.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ServiceAddressJson<'a> {
    address: &'a str,
    port: u16,
}

/// A service's `Proxy` as Consul shows it for a service that is not a proxy: its zero value.
#[derive(Serialize, Default)]
#[serde(rename_all = "PascalCase")]
struct ProxyJson {
    mode: &'static str,
    mesh_gateway: Empty,
    expose: Empty,
}

/// A Go struct of zero values whose fields are all `omitempty`, or a Go map without entries
/// that is not nil: `{}`.
#[derive(Serialize, Default)]
pub(super) struct Empty {}

/// A `Value` of one of these shapes.
pub(super) fn to_value(shape: impl Serialize) -> Value {
    serde_json::to_value(shape).expect("the catalog's shapes serialize")
}

fn is_false(value: &bool) -> bool {
    !value
}

fn go_duration_or_empty(nanos: u64) -> String {
    if nanos == 0 {
        String::new()
    } else {
        duration::format(std::time::Duration::from_nanos(nanos))
    }
}

/// A Go map: `null` when it has no entries.
fn map_or_null<S: Serializer, V: Serialize>(map: &&BTreeMap<String, V>, out: S) -> Result<S::Ok, S::Error> {
    if map.is_empty() {
        out.serialize_none()
    } else {
        map.serialize(out)
    }
}

fn service_addresses<S: Serializer>(
    addresses: &&BTreeMap<String, ServiceAddress>,
    out: S,
) -> Result<S::Ok, S::Error> {
    out.collect_map(
        addresses.iter().map(|(name, a)| (name, ServiceAddressJson { address: &a.address, port: a.port })),
    )
}

/// Compares `lines` with the golden file `testdata/<name>`, or writes them there when
/// `MUSTER_BLESS` is set. The build's revision is written `<revision>`, so that a commit does not
/// change the file.
#[cfg(test)]
pub(super) fn assert_golden(name: &str, lines: &[String]) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/http/testdata").join(name);
    let mut got = lines.join("\n");
    if !crate::version::GIT_REVISION.is_empty() {
        got = got.replace(&format!("\"{}\"", crate::version::GIT_REVISION), "\"<revision>\"");
    }
    if std::env::var_os("MUSTER_BLESS").is_some() {
        std::fs::write(&path, &got).expect("the golden file is writable");
    }
    let want = std::fs::read_to_string(&path).unwrap_or_default();
    assert_eq!(got, want, "{} differs: MUSTER_BLESS=1 rewrites it", path.display());
}
