//! The catalog: nodes, the services on them and the health checks of both, with Consul's
//! register/deregister rules (`../shared/reference/consul-behaviour.md` §1.3, §1.4; consul
//! `agent/consul/state/catalog.go`).
//!
//! Tables are persistent maps (`imbl`): cloning the catalog is O(1), which is what lets a
//! transaction roll back by keeping the state it started from, and a snapshot encode a frozen
//! copy while the server goes on applying.
//!
//! Indexes, as Consul keeps them: each row carries the Raft index that created it and the one
//! that last changed it; each table (`nodes`, `services`, `checks`) carries the index of its
//! last change; and each service name carries the index of the last change to anything a
//! health query on it returns: an instance, a check bound to one, the node under one or a
//! node-level check there. A write that changes nothing (re-registering the same thing) moves
//! no index, so blocked readers are not woken for nothing.

use std::collections::{BTreeMap, BTreeSet};

use imbl::{OrdMap, OrdSet};
use serde::{Deserialize, Serialize};

use super::Index;

/// How many services and checks one node may carry: a registration past it is refused (Consul
/// has no limit; one runaway registrar must not grow a node without bound).
pub const NODE_ROWS_MAX: usize = 32_768;

/// A node, as Consul's `Node`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    /// Its UUID (may be empty for nodes registered through the catalog API).
    pub id: String,
    /// Its name, unique in the datacenter.
    pub node: String,
    /// Its address.
    pub address: String,
    /// The datacenter it was registered in.
    pub datacenter: String,
    /// Named addresses (`lan`, `wan`, ...).
    pub tagged_addresses: BTreeMap<String, String>,
    /// Free-form metadata.
    pub meta: BTreeMap<String, String>,
    /// The index that created it.
    pub create_index: Index,
    /// The index that last changed it.
    pub modify_index: Index,
}

impl Node {
    /// Whether two nodes hold the same fields (indexes aside).
    fn same_as(&self, other: &Node) -> bool {
        self.id == other.id
            && self.address == other.address
            && self.datacenter == other.datacenter
            && self.tagged_addresses == other.tagged_addresses
            && self.meta == other.meta
    }
}

/// Load-balancing weights for DNS SRV answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Weights {
    /// The weight while every check passes.
    pub passing: u32,
    /// The weight while some check warns.
    pub warning: u32,
}

impl Default for Weights {
    /// Consul's `{Passing: 1, Warning: 1}` for a service registered without weights.
    fn default() -> Weights {
        Weights { passing: 1, warning: 1 }
    }
}

/// One named address of a service.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceAddress {
    /// The address.
    pub address: String,
    /// The port.
    pub port: u16,
}

/// A service instance on a node, as Consul's `NodeService`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Service {
    /// `""` for a typical service, else `connect-proxy`, `mesh-gateway`, ...
    pub kind: String,
    /// Its ID, unique on the node (defaults to the name).
    pub id: String,
    /// Its name (Consul's `Service`).
    pub service: String,
    /// Tags, in the order given.
    pub tags: Vec<String>,
    /// Its address; empty means the node's.
    pub address: String,
    /// Named addresses.
    pub tagged_addresses: BTreeMap<String, ServiceAddress>,
    /// Free-form metadata.
    pub meta: BTreeMap<String, String>,
    /// Its port.
    pub port: u16,
    /// A Unix socket path instead of an address.
    pub socket_path: String,
    /// DNS SRV weights.
    pub weights: Weights,
    /// Whether the catalog's tags win over the agent's in anti-entropy.
    pub enable_tag_override: bool,
    /// The index that created it.
    pub create_index: Index,
    /// The index that last changed it.
    pub modify_index: Index,
}

impl Service {
    fn same_as(&self, other: &Service) -> bool {
        Service { create_index: 0, modify_index: 0, ..self.clone() }
            == Service { create_index: 0, modify_index: 0, ..other.clone() }
    }
}

/// A check's state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Health {
    /// `passing`.
    Passing,
    /// `warning`.
    Warning,
    /// `critical`: the default of a new check, so nothing is routed to it before it passes.
    #[default]
    Critical,
}

impl Health {
    /// Consul's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Passing => "passing",
            Health::Warning => "warning",
            Health::Critical => "critical",
        }
    }

    /// Parses Consul's spelling.
    pub fn parse(text: &str) -> Option<Health> {
        match text {
            "passing" => Some(Health::Passing),
            "warning" => Some(Health::Warning),
            "critical" => Some(Health::Critical),
            _ => None,
        }
    }

    /// The worst of a set of checks (passing when there are none), as DNS and the agent's
    /// aggregate health see an instance.
    pub fn worst<'a>(checks: impl IntoIterator<Item = &'a Check>) -> Health {
        checks.into_iter().map(|check| check.status).fold(Health::Passing, |worst, status| {
            match (worst, status) {
                (Health::Critical, _) | (_, Health::Critical) => Health::Critical,
                (Health::Warning, _) | (_, Health::Warning) => Health::Warning,
                _ => Health::Passing,
            }
        })
    }
}

/// How a check is run, kept as data: the catalog never runs checks (the agent that registered
/// them does). Rows an older agent kept on disk lack the later fields; they read as empty.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CheckDefinition {
    /// A script check's command and arguments (no shell).
    pub args: Vec<String>,
    /// Results passing in a row before the status follows (flap damping).
    pub success_before_passing: u32,
    /// Results failing in a row before the status turns warning.
    pub failures_before_warning: u32,
    /// Results failing in a row before the status turns critical.
    pub failures_before_critical: u32,
    /// HTTP URL.
    pub http: String,
    /// HTTP method.
    pub method: String,
    /// HTTP headers.
    pub header: BTreeMap<String, Vec<String>>,
    /// HTTP body.
    pub body: String,
    /// Do not follow redirects.
    pub disable_redirects: bool,
    /// TLS server name.
    pub tls_server_name: String,
    /// Skip TLS verification.
    pub tls_skip_verify: bool,
    /// TCP `host:port`.
    pub tcp: String,
    /// TCP with TLS.
    pub tcp_use_tls: bool,
    /// UDP `host:port`.
    pub udp: String,
    /// gRPC `host:port[/service]`.
    pub grpc: String,
    /// gRPC with TLS.
    pub grpc_use_tls: bool,
    /// Alias of a node's health.
    pub alias_node: String,
    /// Alias of a service's health.
    pub alias_service: String,
    /// Time between runs, nanoseconds.
    pub interval_ns: u64,
    /// Time a run may take, nanoseconds.
    pub timeout_ns: u64,
    /// TTL, nanoseconds.
    pub ttl_ns: u64,
    /// Deregister the service after this long critical, nanoseconds (0: never).
    pub deregister_critical_service_after_ns: u64,
    /// H2PING `host:port`: an HTTP/2 connection's PING.
    pub h2ping: String,
    /// H2PING over TLS (Consul's default) rather than cleartext HTTP/2.
    pub h2ping_use_tls: bool,
}

/// A check's type, Consul's `Type`: how the agent that owns it runs it. Stored and sent as
/// Consul's string, so the catalog keeps whatever type a client registers, known or not.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum CheckKind {
    /// No type: the gossip pool's `serfHealth`, and checks registered through the catalog
    /// without one.
    #[default]
    Unset,
    /// Passing while its owner reports within the TTL (`ttl`).
    Ttl,
    /// An HTTP request's status (`http`).
    Http,
    /// A TCP connection (`tcp`).
    Tcp,
    /// A UDP datagram answered (`udp`).
    Udp,
    /// A script's exit code (`script`).
    Script,
    /// The gRPC health protocol (`grpc`).
    Grpc,
    /// An HTTP/2 PING (`h2ping`).
    H2ping,
    /// Another check's or service's health (`alias`).
    Alias,
    /// A command inside a container (`docker`).
    Docker,
    /// An operating-system service's state (`os_service`).
    OsService,
    /// A node or service put into maintenance (`maintenance`).
    Maintenance,
    /// A type muster does not know, kept as given.
    Other(String),
}

impl CheckKind {
    /// Consul's name for it.
    pub fn as_str(&self) -> &str {
        match self {
            CheckKind::Unset => "",
            CheckKind::Ttl => "ttl",
            CheckKind::Http => "http",
            CheckKind::Tcp => "tcp",
            CheckKind::Udp => "udp",
            CheckKind::Script => "script",
            CheckKind::Grpc => "grpc",
            CheckKind::H2ping => "h2ping",
            CheckKind::Alias => "alias",
            CheckKind::Docker => "docker",
            CheckKind::OsService => "os_service",
            CheckKind::Maintenance => "maintenance",
            CheckKind::Other(other) => other,
        }
    }
}

impl From<&str> for CheckKind {
    fn from(name: &str) -> CheckKind {
        match name {
            "" => CheckKind::Unset,
            "ttl" => CheckKind::Ttl,
            "http" => CheckKind::Http,
            "tcp" => CheckKind::Tcp,
            "udp" => CheckKind::Udp,
            "script" => CheckKind::Script,
            "grpc" => CheckKind::Grpc,
            "h2ping" => CheckKind::H2ping,
            "alias" => CheckKind::Alias,
            "docker" => CheckKind::Docker,
            "os_service" => CheckKind::OsService,
            "maintenance" => CheckKind::Maintenance,
            other => CheckKind::Other(other.to_owned()),
        }
    }
}

impl From<String> for CheckKind {
    fn from(name: String) -> CheckKind {
        CheckKind::from(name.as_str())
    }
}

impl From<CheckKind> for String {
    fn from(kind: CheckKind) -> String {
        kind.as_str().to_owned()
    }
}

impl std::fmt::Display for CheckKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A health check, as Consul's `HealthCheck`: node-level when `service_id` is empty.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    /// The node it is on.
    pub node: String,
    /// Its ID, unique on the node (defaults to the name).
    pub check_id: String,
    /// Its name.
    pub name: String,
    /// Its state.
    pub status: Health,
    /// Human-readable notes.
    pub notes: String,
    /// The last run's output.
    pub output: String,
    /// The service it belongs to; empty for a node-level check.
    pub service_id: String,
    /// That service's name (filled in by the catalog).
    pub service_name: String,
    /// That service's tags (filled in by the catalog).
    pub service_tags: Vec<String>,
    /// How it runs (Consul's `Type`).
    pub kind: CheckKind,
    /// How it runs.
    pub definition: CheckDefinition,
    /// The index that created it.
    pub create_index: Index,
    /// The index that last changed it.
    pub modify_index: Index,
}

impl Check {
    fn same_as(&self, other: &Check) -> bool {
        Check { create_index: 0, modify_index: 0, ..self.clone() }
            == Check { create_index: 0, modify_index: 0, ..other.clone() }
    }
}

/// Why a catalog write was refused; nothing changed. Messages are Consul's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum CatalogError {
    /// No node name.
    #[error("Must provide node")]
    MissingNode,
    /// No address for a node that must be created or updated.
    #[error("Must provide address if SkipNodeUpdate is not set")]
    MissingAddress,
    /// A service without a name.
    #[error("Must provide service name (Service.Service) when service ID is provided")]
    MissingServiceName,
    /// A node ID that is not a UUID.
    #[error("Bad node ID: {0}")]
    BadNodeId(String),
    /// The node's name belongs to a live node with another ID.
    #[error("failed inserting node: {0}")]
    NodeNameReserved(String),
    /// A check without an ID or name.
    #[error("Must provide check ID or name")]
    MissingCheckId,
    /// A check for a service that is not registered on the node.
    #[error("failed inserting check on node {node:?}: Missing service registration")]
    MissingService {
        /// The node.
        node: String,
    },
    /// A check registered onto a different node than the registration's.
    #[error("check node {check_node:?} does not match node {node:?}")]
    CheckOnOtherNode {
        /// The check's node.
        check_node: String,
        /// The registration's node.
        node: String,
    },
    /// The node does not exist (for writes that need it).
    #[error("node {0:?} doesn't exist")]
    UnknownNode(String),
    /// Over [`NODE_ROWS_MAX`].
    #[error("node {node:?} would carry more than {max} services and checks")]
    NodeFull {
        /// The node.
        node: String,
        /// The limit.
        max: usize,
    },
}

/// The catalog's tables.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Catalog {
    nodes: OrdMap<String, Node>,
    /// node → service ID → service.
    services: OrdMap<String, OrdMap<String, Service>>,
    /// node → check ID → check.
    checks: OrdMap<String, OrdMap<String, Check>>,
    /// Service name → the index of the last change a health query on it would see.
    service_indexes: OrdMap<String, Index>,
    nodes_index: Index,
    services_index: Index,
    checks_index: Index,
    /// Derived: service name → (node, service ID) of every instance.
    #[serde(skip)]
    by_name: OrdMap<String, OrdSet<(String, String)>>,
    /// Derived: node ID → node name, for nodes that have one.
    #[serde(skip)]
    node_ids: OrdMap<String, String>,
}

/// One instance of a service with its node and checks (node-level ones first), as a health
/// query returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance<'a> {
    /// The node.
    pub node: &'a Node,
    /// The service.
    pub service: &'a Service,
    /// The node's checks, then the service's.
    pub checks: Vec<&'a Check>,
}

/// What a catalog write changed, for the watch registry and for session invalidation.
#[derive(Debug, Default)]
pub(super) struct Changes {
    pub nodes_table: bool,
    pub services_table: bool,
    pub checks_table: bool,
    /// Nodes whose row, services or checks changed.
    pub nodes: BTreeSet<String>,
    /// Service names whose health query result changed.
    pub services: BTreeSet<String>,
    /// Checks that were deleted or turned critical: `(node, check ID)`; sessions linked to
    /// them are invalidated.
    pub failed_checks: BTreeSet<(String, String)>,
    /// Nodes that were deleted; their sessions are invalidated.
    pub deleted_nodes: BTreeSet<String>,
}

impl Catalog {
    // --- queries ----------------------------------------------------------------------------

    /// A node by name.
    pub fn node(&self, name: &str) -> Option<&Node> {
        self.nodes.get(name)
    }

    /// Every node, by name, and the `nodes` table index.
    pub fn nodes(&self) -> (Index, Vec<&Node>) {
        (self.nodes_index, self.nodes.values().collect())
    }

    /// Every service name with the union of its instances' tags, and the `services` table
    /// index.
    pub fn services(&self) -> (Index, BTreeMap<&str, BTreeSet<&str>>) {
        // Every instance, walked where it is stored: through `by_name`, each one would cost two
        // lookups by string key.
        let mut names: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
        for service in self.services.values().flat_map(OrdMap::values) {
            names
                .entry(service.service.as_str())
                .or_default()
                .extend(service.tags.iter().map(String::as_str));
        }
        (self.services_index, names)
    }

    /// The index that answers for queries on service `name`: its own, or the `services`
    /// table's when it has no instance (so a reader can block until one appears).
    pub fn service_index(&self, name: &str) -> Index {
        self.service_indexes.get(name).copied().unwrap_or(self.services_index)
    }

    /// The instances of service `name` carrying every tag in `tags` (case-insensitively), by
    /// node and ID.
    pub fn service_nodes(&self, name: &str, tags: &[&str]) -> (Index, Vec<(&Node, &Service)>) {
        (self.service_index(name), self.instances(name, tags))
    }

    /// The instances of service `name` with their checks; with `passing_only`, those whose
    /// every check (node-level ones too) passes.
    pub fn health_service(
        &self,
        name: &str,
        tags: &[&str],
        passing_only: bool,
    ) -> (Index, Vec<Instance<'_>>) {
        let mut out = Vec::new();
        for (node, service) in self.instances(name, tags) {
            let on_node = self.checks.get(&node.node);
            let node_level =
                || on_node.into_iter().flat_map(OrdMap::values).filter(|c| c.service_id.is_empty());
            let service_level =
                || on_node.into_iter().flat_map(OrdMap::values).filter(|c| c.service_id == service.id);
            if passing_only && node_level().chain(service_level()).any(|c| c.status != Health::Passing) {
                continue;
            }
            // Node-level checks first, as Consul lists them.
            let checks = node_level().chain(service_level()).collect();
            out.push(Instance { node, service, checks });
        }
        (self.service_index(name), out)
    }

    /// A node and its services, and the index of both tables.
    pub fn node_services(&self, name: &str) -> (Index, Option<(&Node, Vec<&Service>)>) {
        let index = self.nodes_index.max(self.services_index);
        let found = self.nodes.get(name).map(|node| (node, self.services_of(name).collect()));
        (index, found)
    }

    /// A node's checks (node-level and service-level), and the `checks` table index.
    pub fn node_checks(&self, name: &str) -> (Index, Vec<&Check>) {
        (self.checks_index, self.checks_of(name).collect())
    }

    /// Every check bound to an instance of service `name`, and the `checks` table index.
    pub fn service_checks(&self, name: &str) -> (Index, Vec<&Check>) {
        let checks = self
            .by_name
            .get(name)
            .into_iter()
            .flatten()
            .flat_map(|(node, id)| self.checks_of(node).filter(move |check| check.service_id == *id))
            .collect();
        (self.checks_index, checks)
    }

    /// Every check in `state` (`None`: any), by node and ID, and the `checks` table index.
    pub fn checks_in_state(&self, state: Option<Health>) -> (Index, Vec<&Check>) {
        let checks = self
            .checks
            .values()
            .flat_map(OrdMap::values)
            .filter(|check| state.is_none_or(|state| check.status == state))
            .collect();
        (self.checks_index, checks)
    }

    /// One check.
    pub fn check(&self, node: &str, check_id: &str) -> Option<&Check> {
        self.checks.get(node)?.get(check_id)
    }

    /// One service instance.
    pub fn service(&self, node: &str, service_id: &str) -> Option<&Service> {
        self.services.get(node)?.get(service_id)
    }

    /// The highest index any catalog table carries.
    pub fn index(&self) -> Index {
        self.nodes_index.max(self.services_index).max(self.checks_index)
    }

    fn services_of<'a>(&'a self, node: &str) -> impl Iterator<Item = &'a Service> + use<'a> {
        self.services.get(node).into_iter().flat_map(OrdMap::values)
    }

    fn checks_of<'a>(&'a self, node: &str) -> impl Iterator<Item = &'a Check> + use<'a> {
        self.checks.get(node).into_iter().flat_map(OrdMap::values)
    }

    fn instances(&self, name: &str, tags: &[&str]) -> Vec<(&Node, &Service)> {
        let instances = self.by_name.get(name).into_iter().flatten();
        instances
            .filter_map(|(node, id)| {
                let service = &self.services[node][id];
                let tagged =
                    tags.iter().all(|want| service.tags.iter().any(|tag| tag.eq_ignore_ascii_case(want)));
                tagged.then(|| (&self.nodes[node], service))
            })
            .collect()
    }

    // --- writes, called by `Fsm` with the entry's index --------------------------------------

    /// Checks a registration against the current state without changing it. `Some(name)`:
    /// the node's ID belongs to the node `name`, which must go first (a rename).
    pub(super) fn check_register(&self, register: &super::Register) -> Result<Option<String>, CatalogError> {
        let node = &register.node;
        if node.node.is_empty() {
            return Err(CatalogError::MissingNode);
        }
        let existing = self.nodes.get(&node.node);
        let updates_node = existing.is_none() || !register.skip_node_update;
        if updates_node && node.address.is_empty() {
            return Err(CatalogError::MissingAddress);
        }
        let renamed_from = if updates_node { self.check_node_identity(node)? } else { None };
        let mut services: BTreeSet<&str> =
            self.services.get(&node.node).into_iter().flat_map(OrdMap::keys).map(String::as_str).collect();
        let mut rows = services.len() + self.checks.get(&node.node).map_or(0, OrdMap::len);
        if let Some(service) = &register.service {
            if service.service.is_empty() {
                return Err(CatalogError::MissingServiceName);
            }
            rows += usize::from(services.insert(service_id(service)));
        }
        for check in &register.checks {
            if check.check_id.is_empty() && check.name.is_empty() {
                return Err(CatalogError::MissingCheckId);
            }
            if !check.node.is_empty() && check.node != node.node {
                return Err(CatalogError::CheckOnOtherNode {
                    check_node: check.node.clone(),
                    node: node.node.clone(),
                });
            }
            if !check.service_id.is_empty() && !services.contains(check.service_id.as_str()) {
                return Err(CatalogError::MissingService { node: node.node.clone() });
            }
            rows += usize::from(self.check(&node.node, check_id(check)).is_none());
        }
        if rows > NODE_ROWS_MAX {
            return Err(CatalogError::NodeFull { node: node.node.clone(), max: NODE_ROWS_MAX });
        }
        Ok(renamed_from)
    }

    /// Consul's rules for node IDs: an ID is a UUID; an ID known under another name renames
    /// that node; and a name held by a node with another ID is taken over only if that node
    /// is not alive by its `serfHealth` check (a live node keeps its name).
    fn check_node_identity(&self, node: &Node) -> Result<Option<String>, CatalogError> {
        if node.id.is_empty() {
            return Ok(None);
        }
        if let Err(reason) = parse_uuid(&node.id) {
            return Err(CatalogError::BadNodeId(reason.to_owned()));
        }
        let owner = self.node_ids.get(&node.id.to_ascii_lowercase());
        if owner == Some(&node.node) {
            return Ok(None);
        }
        if let Some(holder) = self.nodes.get(&node.node) {
            let alive = self
                .check(&holder.node, super::SERF_HEALTH)
                .is_some_and(|check| check.status != Health::Critical);
            // A rename may not take a live node's name; a new ID may take a name held
            // without an ID.
            let reserved = alive && !(owner.is_none() && holder.id.is_empty()) && holder.id != node.id;
            if reserved {
                let inner = format!(
                    "Node name {} is reserved by node {} with name {} ({})",
                    node.node, holder.id, holder.node, holder.address
                );
                return Err(CatalogError::NodeNameReserved(match owner {
                    Some(_) => {
                        format!("Error while renaming Node ID: {:?} ({}): {inner}", node.id, node.address)
                    }
                    None => format!("Error while renaming Node ID: {:?}: {inner}", node.id),
                }));
            }
        }
        Ok(owner.cloned())
    }

    /// The node with ID `id` (any case).
    pub fn node_by_id(&self, id: &str) -> Option<&Node> {
        self.nodes.get(self.node_ids.get(&id.to_ascii_lowercase())?)
    }

    /// Registers a node, and optionally a service and checks on it (`check_register` passed).
    pub(super) fn register(&mut self, index: Index, register: &super::Register, changes: &mut Changes) {
        let name = &register.node.node;
        if !(register.skip_node_update && self.nodes.contains_key(name)) {
            self.ensure_node(index, &register.node, changes);
        }
        if let Some(service) = &register.service {
            self.ensure_service(index, name, service, changes);
        }
        for check in &register.checks {
            self.ensure_check(index, name, check, changes);
        }
    }

    fn ensure_node(&mut self, index: Index, node: &Node, changes: &mut Changes) {
        let mut row = Node { create_index: index, modify_index: index, ..node.clone() };
        if let Some(existing) = self.nodes.get(&node.node) {
            if existing.same_as(node) {
                return;
            }
            row.create_index = existing.create_index;
            if !existing.id.is_empty() {
                self.node_ids.remove(&existing.id.to_ascii_lowercase());
            }
        }
        if !row.id.is_empty() {
            self.node_ids.insert(row.id.to_ascii_lowercase(), row.node.clone());
        }
        self.nodes.insert(row.node.clone(), row);
        self.nodes_index = index;
        changes.nodes_table = true;
        self.touch_node(index, &node.node, changes);
    }

    fn ensure_service(&mut self, index: Index, node: &str, service: &Service, changes: &mut Changes) {
        let id = service_id(service).to_owned();
        let mut row = Service { id: id.clone(), create_index: index, modify_index: index, ..service.clone() };
        let existing = self.service(node, &id).cloned();
        if let Some(existing) = &existing {
            if existing.same_as(&row) {
                return;
            }
            row.create_index = existing.create_index;
            if existing.service != row.service {
                self.unlink_instance(index, &existing.service, node, &id, changes);
            }
        }
        self.by_name.entry(row.service.clone()).or_default().insert((node.to_owned(), id.clone()));
        self.bump_service(index, &row.service, changes);
        self.services.entry(node.to_owned()).or_default().insert(id.clone(), row.clone());
        self.services_index = index;
        changes.services_table = true;
        changes.nodes.insert(node.to_owned());
        // The service's checks carry its name and tags.
        let bound: Vec<String> = self
            .checks_of(node)
            .filter(|check| check.service_id == id)
            .map(|check| check.check_id.clone())
            .collect();
        for check_id in bound {
            let check =
                self.checks.get_mut(node).and_then(|checks| checks.get_mut(&check_id)).expect("listed above");
            if check.service_name != row.service || check.service_tags != row.tags {
                check.service_name = row.service.clone();
                check.service_tags = row.tags.clone();
                check.modify_index = index;
                self.checks_index = index;
                changes.checks_table = true;
            }
        }
    }

    fn ensure_check(&mut self, index: Index, node: &str, check: &Check, changes: &mut Changes) {
        let id = check_id(check).to_owned();
        let mut row = Check {
            node: node.to_owned(),
            check_id: id.clone(),
            create_index: index,
            modify_index: index,
            ..check.clone()
        };
        match self.service(node, &row.service_id) {
            Some(service) => {
                row.service_name = service.service.clone();
                row.service_tags = service.tags.clone();
            }
            None => {
                row.service_name.clear();
                row.service_tags.clear();
            }
        }
        let existing = self.check(node, &id).cloned();
        if let Some(existing) = &existing {
            if existing.same_as(&row) {
                return;
            }
            row.create_index = existing.create_index;
            if existing.service_id != row.service_id {
                // Moved between services (or to the node): the old owner's readers see it go.
                self.touch_check_owner(index, node, &existing.service_id, changes);
            }
        }
        if row.status == Health::Critical {
            changes.failed_checks.insert((node.to_owned(), id.clone()));
        }
        self.touch_check_owner(index, node, &row.service_id, changes);
        self.checks.entry(node.to_owned()).or_default().insert(id, row);
        self.checks_index = index;
        changes.checks_table = true;
    }

    /// Deregisters a node (with everything on it), one service (with its checks) or one check.
    /// Deregistering what does not exist changes nothing and is not an error.
    pub(super) fn deregister(&mut self, index: Index, deregister: &super::Deregister, changes: &mut Changes) {
        let node = &deregister.node;
        if !self.nodes.contains_key(node) {
            return;
        }
        match (&deregister.service_id, &deregister.check_id) {
            (Some(service_id), _) => self.delete_service(index, node, service_id, changes),
            (None, Some(check_id)) => self.delete_check(index, node, check_id, changes),
            (None, None) => self.delete_node(index, node, changes),
        }
    }

    fn delete_node(&mut self, index: Index, node: &str, changes: &mut Changes) {
        let service_ids: Vec<String> = self.services_of(node).map(|s| s.id.clone()).collect();
        for id in service_ids {
            self.delete_service(index, node, &id, changes);
        }
        let check_ids: Vec<String> = self.checks_of(node).map(|c| c.check_id.clone()).collect();
        for id in check_ids {
            self.delete_check(index, node, &id, changes);
        }
        self.touch_node(index, node, changes);
        let removed = self.nodes.remove(node).expect("the caller found it");
        if !removed.id.is_empty() {
            self.node_ids.remove(&removed.id.to_ascii_lowercase());
        }
        self.services.remove(node);
        self.checks.remove(node);
        self.nodes_index = index;
        changes.nodes_table = true;
        changes.deleted_nodes.insert(node.to_owned());
    }

    fn delete_service(&mut self, index: Index, node: &str, id: &str, changes: &mut Changes) {
        let Some(service) = self.services.get_mut(node).and_then(|services| services.remove(id)) else {
            return;
        };
        let bound: Vec<String> = self
            .checks_of(node)
            .filter(|check| check.service_id == id)
            .map(|check| check.check_id.clone())
            .collect();
        for check_id in bound {
            self.delete_check(index, node, &check_id, changes);
        }
        self.unlink_instance(index, &service.service, node, id, changes);
        if self.services.get(node).is_some_and(OrdMap::is_empty) {
            self.services.remove(node);
        }
        self.services_index = index;
        changes.services_table = true;
        changes.nodes.insert(node.to_owned());
    }

    fn delete_check(&mut self, index: Index, node: &str, id: &str, changes: &mut Changes) {
        let Some(check) = self.checks.get_mut(node).and_then(|checks| checks.remove(id)) else {
            return;
        };
        if self.checks.get(node).is_some_and(OrdMap::is_empty) {
            self.checks.remove(node);
        }
        self.touch_check_owner(index, node, &check.service_id, changes);
        self.checks_index = index;
        changes.checks_table = true;
        changes.failed_checks.insert((node.to_owned(), id.to_owned()));
    }

    /// Removes an instance from its name's set; the name's index goes with its last instance
    /// (readers then block on the `services` table index, which this write moves).
    fn unlink_instance(&mut self, index: Index, name: &str, node: &str, id: &str, changes: &mut Changes) {
        self.bump_service(index, name, changes);
        if let Some(instances) = self.by_name.get_mut(name) {
            instances.remove(&(node.to_owned(), id.to_owned()));
            if instances.is_empty() {
                self.by_name.remove(name);
                self.service_indexes.remove(name);
            }
        }
    }

    /// A check changed: the readers of its service, or of every service on the node for a
    /// node-level check, see it.
    fn touch_check_owner(&mut self, index: Index, node: &str, service_id: &str, changes: &mut Changes) {
        changes.nodes.insert(node.to_owned());
        if service_id.is_empty() {
            self.touch_node(index, node, changes);
        } else if let Some(name) = self.service(node, service_id).map(|s| s.service.clone()) {
            self.bump_service(index, &name, changes);
        }
    }

    /// The node's row or a node-level check changed: every service on it is seen to change.
    fn touch_node(&mut self, index: Index, node: &str, changes: &mut Changes) {
        changes.nodes.insert(node.to_owned());
        let names: BTreeSet<String> = self.services_of(node).map(|s| s.service.clone()).collect();
        for name in names {
            self.bump_service(index, &name, changes);
        }
    }

    fn bump_service(&mut self, index: Index, name: &str, changes: &mut Changes) {
        self.service_indexes.insert(name.to_owned(), index);
        changes.services.insert(name.to_owned());
    }

    /// Lowers every index above `at` to `at` (a restore at entry `at`).
    pub(super) fn clamp(&mut self, at: Index) {
        use super::{clamp_index, clamp_rows};
        clamp_rows(&mut self.nodes, |node| {
            clamp_index(&mut node.create_index, at) | clamp_index(&mut node.modify_index, at)
        });
        clamp_rows(&mut self.services, |services| {
            clamp_rows(services, |service| {
                clamp_index(&mut service.create_index, at) | clamp_index(&mut service.modify_index, at)
            })
        });
        clamp_rows(&mut self.checks, |checks| {
            clamp_rows(checks, |check| {
                clamp_index(&mut check.create_index, at) | clamp_index(&mut check.modify_index, at)
            })
        });
        clamp_rows(&mut self.service_indexes, |index| clamp_index(index, at));
        clamp_index(&mut self.nodes_index, at);
        clamp_index(&mut self.services_index, at);
        clamp_index(&mut self.checks_index, at);
    }

    /// Rebuilds the derived indexes after a restore.
    pub(super) fn rebuild(&mut self) {
        self.by_name = OrdMap::new();
        self.node_ids = OrdMap::new();
        for (node, services) in &self.services {
            for (id, service) in services {
                self.by_name.entry(service.service.clone()).or_default().insert((node.clone(), id.clone()));
            }
        }
        for node in self.nodes.values().filter(|node| !node.id.is_empty()) {
            self.node_ids.insert(node.id.to_ascii_lowercase(), node.node.clone());
        }
    }

    /// The catalog's rules, checked on a restored snapshot (after `rebuild`).
    pub(super) fn validate(&self, applied: Index) -> Result<(), &'static str> {
        if self.index() > applied {
            return Err("a catalog table index is past the applied index");
        }
        if self.node_ids.len() != self.nodes.values().filter(|node| !node.id.is_empty()).count() {
            return Err("two nodes share an ID");
        }
        for (name, node) in &self.nodes {
            if *name != node.node
                || node.create_index > node.modify_index
                || node.modify_index > self.nodes_index
            {
                return Err("a node row is inconsistent");
            }
        }
        for (node, services) in &self.services {
            if !self.nodes.contains_key(node) || services.is_empty() {
                return Err("services are filed under a missing node");
            }
            for (id, service) in services {
                if *id != service.id
                    || service.create_index > service.modify_index
                    || service.modify_index > self.services_index
                {
                    return Err("a service row is inconsistent");
                }
            }
        }
        for (node, checks) in &self.checks {
            if !self.nodes.contains_key(node) || checks.is_empty() {
                return Err("checks are filed under a missing node");
            }
            for (id, check) in checks {
                if *id != check.check_id || check.node != *node || check.modify_index > self.checks_index {
                    return Err("a check row is inconsistent");
                }
                if !check.service_id.is_empty() && self.service(node, &check.service_id).is_none() {
                    return Err("a check belongs to a missing service");
                }
            }
        }
        if self.service_indexes.keys().ne(self.by_name.keys()) {
            return Err("service indexes do not match the services");
        }
        Ok(())
    }

    #[cfg(any(test, feature = "invariants"))]
    pub(super) fn check_invariants(&self, applied: Index) {
        if let Err(broken) = self.validate(applied) {
            panic!("catalog invariant: {broken}");
        }
        let instances: usize = self.by_name.values().map(OrdSet::len).sum();
        assert_eq!(instances, self.services.values().map(OrdMap::len).sum::<usize>());
        for checks in self.checks.values() {
            for check in checks.values() {
                if let Some(service) = self.service(&check.node, &check.service_id) {
                    assert_eq!((&check.service_name, &check.service_tags), (&service.service, &service.tags));
                }
            }
        }
    }
}

/// A service's ID: its `ID`, else its name.
pub(super) fn service_id(service: &Service) -> &str {
    if service.id.is_empty() {
        &service.service
    } else {
        &service.id
    }
}

/// A check's ID: its `CheckID`, else its name.
pub(super) fn check_id(check: &Check) -> &str {
    if check.check_id.is_empty() {
        &check.name
    } else {
        &check.check_id
    }
}

/// Checks that `text` is a UUID in its 8-4-4-4-12 hex form, with hashicorp/go-uuid's reasons.
pub fn parse_uuid(text: &str) -> Result<(), &'static str> {
    let bytes = text.as_bytes();
    if bytes.len() != 36 {
        return Err("uuid string is wrong length");
    }
    let formed = bytes.iter().enumerate().all(|(at, byte)| match at {
        8 | 13 | 18 | 23 => *byte == b'-',
        _ => byte.is_ascii_hexdigit(),
    });
    if formed {
        Ok(())
    } else {
        Err("uuid is improperly formatted")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A check's type travels as Consul's string: every name, known or not, comes back as it
    /// went, and the stored bytes are those of the string, so logs and snapshots written
    /// before the type was an enum still decode.
    #[test]
    fn check_kinds_travel_as_consuls_strings() {
        let names = [
            "",
            "ttl",
            "http",
            "tcp",
            "udp",
            "script",
            "grpc",
            "h2ping",
            "alias",
            "docker",
            "os_service",
            "maintenance",
            "something-new",
        ];
        for name in names {
            let kind = CheckKind::from(name);
            assert_eq!(kind.as_str(), name);
            let stored = postcard::to_allocvec(&kind).unwrap();
            assert_eq!(stored, postcard::to_allocvec(&name.to_owned()).unwrap(), "{name}");
            assert_eq!(postcard::from_bytes::<CheckKind>(&stored).unwrap(), kind);
        }
        assert_eq!(CheckKind::from("ttl"), CheckKind::Ttl);
        assert_eq!(CheckKind::from("Ttl"), CheckKind::Other("Ttl".into()), "Consul's types are lower case");
    }
}
