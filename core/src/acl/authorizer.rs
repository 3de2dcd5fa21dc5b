//! Authorizers: from a token's merged rules, and from the agent's default policy, chained.
//!
//! A check is a [`Permission`] (resource, level, name). A [`PolicyAuthorizer`] compiled from a
//! token's rules answers `Allow`, `Deny` or `Default`; the [`DefaultPolicy`] answers whatever
//! the rules leave open; an [`Authorizer`] chains the two and gives the final yes or no, or the
//! [`PermissionDenied`] error to send back.
//!
//! ```text
//!   Permission ──▶ PolicyAuthorizer (token's policies, roles, identities merged)
//!                     │ Allow / Deny: final
//!                     ▼ Default
//!                  DefaultPolicy: allow → everything but acl:read, acl:write, snapshot
//!                                 deny  → nothing
//! ```

use std::fmt;

use super::access::{decide, AccessLevel, Decision};
use super::error::PermissionDenied;
use super::rules::{Rules, ServiceAccess};
use super::tree::RuleTree;

/// A resource kind as named in a denial (`lacks permission 'key:read'`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Resource {
    /// `acl`: the ACL API and snapshots.
    Acl,
    /// `agent`: the agent's own endpoints, by node name.
    Agent,
    /// `event`: user events.
    Event,
    /// `intention`: service intentions, by destination service.
    Intention,
    /// `key`: the KV store.
    Key,
    /// `keyring`: the gossip keyring.
    Keyring,
    /// `node`: catalog nodes.
    Node,
    /// `operator`: operator endpoints.
    Operator,
    /// `mesh`: mesh-wide configuration.
    Mesh,
    /// `query`: prepared queries.
    Query,
    /// `service`: catalog services.
    Service,
    /// `session`: sessions, by node name.
    Session,
    /// `peering`: cluster peering.
    Peering,
}

/// One check an authorizer answers: a resource, the access needed, and the name checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Permission<'a> {
    /// List or read ACL objects.
    AclRead,
    /// Change ACL objects; see any SecretID.
    AclWrite,
    /// Read an agent's endpoints, by node name.
    AgentRead(&'a str),
    /// Change an agent (join, leave, reload…), by node name.
    AgentWrite(&'a str),
    /// List a user event.
    EventRead(&'a str),
    /// Fire a user event.
    EventWrite(&'a str),
    /// Read intentions whose destination is this service; [`WILDCARD`] asks whether any may be
    /// read.
    IntentionRead(&'a str),
    /// Change intentions whose destination is this service; [`WILDCARD`] asks whether all may
    /// be changed.
    IntentionWrite(&'a str),
    /// Read one key.
    KeyRead(&'a str),
    /// List the keys under a prefix (when `acl.enable_key_list_policy` is on).
    KeyList(&'a str),
    /// Write one key.
    KeyWrite(&'a str),
    /// Write everything under a prefix: a recursive delete.
    KeyWritePrefix(&'a str),
    /// Read the gossip keyring.
    KeyringRead,
    /// Change the gossip keyring.
    KeyringWrite,
    /// Read mesh-wide configuration.
    MeshRead,
    /// Change mesh-wide configuration.
    MeshWrite,
    /// Read a catalog node.
    NodeRead(&'a str),
    /// Read every catalog node.
    NodeReadAll,
    /// Register or change a catalog node.
    NodeWrite(&'a str),
    /// Use read-only operator endpoints.
    OperatorRead,
    /// Use state-changing operator endpoints.
    OperatorWrite,
    /// Read peerings.
    PeeringRead,
    /// Change peerings.
    PeeringWrite,
    /// Read a prepared query's definition.
    QueryRead(&'a str),
    /// Create, change or delete a prepared query.
    QueryWrite(&'a str),
    /// Read (discover) a service.
    ServiceRead(&'a str),
    /// Read every service.
    ServiceReadAll,
    /// Register or change a service.
    ServiceWrite(&'a str),
    /// Write at least one service: the token belongs to some workload.
    ServiceWriteAny,
    /// Read sessions on a node.
    SessionRead(&'a str),
    /// Create sessions on a node.
    SessionWrite(&'a str),
    /// Take or restore a snapshot.
    Snapshot,
}

/// A token's policies compiled: each labelled resource's rules in a tree, the rest as levels.
/// Its answers are three-way; [`Authorizer`] turns them into a final one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicyAuthorizer {
    acl: Option<AccessLevel>,
    keyring: Option<AccessLevel>,
    operator: Option<AccessLevel>,
    mesh: Option<AccessLevel>,
    peering: Option<AccessLevel>,
    agent: RuleTree,
    event: RuleTree,
    intention: RuleTree,
    key: RuleTree,
    node: RuleTree,
    query: RuleTree,
    service: RuleTree,
    session: RuleTree,
}

/// What the agent's `acl.default_policy` decides when no rule of the token does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DefaultPolicy {
    /// Denylist mode: everything not denied is allowed, but for ACL management and snapshots
    /// (Consul's `AllowAll`, which never grants `acl:read`, `acl:write` or snapshot).
    Allow,
    /// Allowlist mode: nothing is allowed unless a rule allows it (Consul's `DenyAll`).
    Deny,
}

/// The final word on a token's requests: its rules first, then the default policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorizer {
    policies: PolicyAuthorizer,
    default_policy: DefaultPolicy,
}

impl Resource {
    /// Consul's name for the resource.
    pub fn as_str(self) -> &'static str {
        match self {
            Resource::Acl => "acl",
            Resource::Agent => "agent",
            Resource::Event => "event",
            Resource::Intention => "intention",
            Resource::Key => "key",
            Resource::Keyring => "keyring",
            Resource::Node => "node",
            Resource::Operator => "operator",
            Resource::Mesh => "mesh",
            Resource::Query => "query",
            Resource::Service => "service",
            Resource::Session => "session",
            Resource::Peering => "peering",
        }
    }
}

impl fmt::Display for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Permission<'_> {
    /// The resource a denial names. A snapshot is an ACL write, as Consul reports it.
    pub fn resource(&self) -> Resource {
        use Permission::*;
        match self {
            AclRead | AclWrite | Snapshot => Resource::Acl,
            AgentRead(_) | AgentWrite(_) => Resource::Agent,
            EventRead(_) | EventWrite(_) => Resource::Event,
            IntentionRead(_) | IntentionWrite(_) => Resource::Intention,
            KeyRead(_) | KeyList(_) | KeyWrite(_) | KeyWritePrefix(_) => Resource::Key,
            KeyringRead | KeyringWrite => Resource::Keyring,
            MeshRead | MeshWrite => Resource::Mesh,
            NodeRead(_) | NodeReadAll | NodeWrite(_) => Resource::Node,
            OperatorRead | OperatorWrite => Resource::Operator,
            PeeringRead | PeeringWrite => Resource::Peering,
            QueryRead(_) | QueryWrite(_) => Resource::Query,
            ServiceRead(_) | ServiceReadAll | ServiceWrite(_) | ServiceWriteAny => Resource::Service,
            SessionRead(_) | SessionWrite(_) => Resource::Session,
        }
    }

    /// The access the check needs: read, list or write.
    pub fn level(&self) -> AccessLevel {
        use Permission::*;
        match self {
            KeyList(_) => AccessLevel::List,
            AclWrite | AgentWrite(_) | EventWrite(_) | IntentionWrite(_) | KeyWrite(_)
            | KeyWritePrefix(_) | KeyringWrite | MeshWrite | NodeWrite(_) | OperatorWrite | PeeringWrite
            | QueryWrite(_) | ServiceWrite(_) | ServiceWriteAny | SessionWrite(_) | Snapshot => {
                AccessLevel::Write
            }
            AclRead | AgentRead(_) | EventRead(_) | IntentionRead(_) | KeyRead(_) | KeyringRead
            | MeshRead | NodeRead(_) | NodeReadAll | OperatorRead | PeeringRead | QueryRead(_)
            | ServiceRead(_) | ServiceReadAll | SessionRead(_) => AccessLevel::Read,
        }
    }

    /// What a denial says the check was on; empty for checks on no name. The "all"/"any"
    /// checks carry Consul's phrases.
    pub fn subject(&self) -> &str {
        use Permission::*;
        match *self {
            AgentRead(name) | AgentWrite(name) | EventRead(name) | EventWrite(name) | IntentionRead(name)
            | IntentionWrite(name) | KeyRead(name) | KeyList(name) | KeyWrite(name)
            | KeyWritePrefix(name) | NodeRead(name) | NodeWrite(name) | QueryRead(name)
            | QueryWrite(name) | ServiceRead(name) | ServiceWrite(name) | SessionRead(name)
            | SessionWrite(name) => name,
            NodeReadAll => "all nodes",
            ServiceReadAll => "all services",
            ServiceWriteAny => "any service",
            AclRead | AclWrite | KeyringRead | KeyringWrite | MeshRead | MeshWrite | OperatorRead
            | OperatorWrite | PeeringRead | PeeringWrite | Snapshot => "",
        }
    }
}

impl PolicyAuthorizer {
    /// Compiles one set of rules (already merged, if it came from several policies).
    pub fn new(rules: &Rules) -> PolicyAuthorizer {
        PolicyAuthorizer {
            acl: rules.acl,
            keyring: rules.keyring,
            operator: rules.operator,
            mesh: rules.mesh,
            peering: rules.peering,
            agent: RuleTree::compile(&rules.agent, |level| level),
            event: RuleTree::compile(&rules.event, |level| level),
            intention: RuleTree::compile(&rules.service, ServiceAccess::intentions_or_default),
            key: RuleTree::compile(&rules.key, |level| level),
            node: RuleTree::compile(&rules.node, |level| level),
            query: RuleTree::compile(&rules.query, |level| level),
            service: RuleTree::compile(&rules.service, |access| access.policy),
            session: RuleTree::compile(&rules.session, |level| level),
        }
    }

    /// Merges the rules of several policies (a token's own, its roles', its identities') and
    /// compiles the result, as Consul's `NewPolicyAuthorizer` does.
    pub fn from_policies<'a>(policies: impl IntoIterator<Item = &'a Rules>) -> PolicyAuthorizer {
        PolicyAuthorizer::new(&Rules::merged(policies))
    }

    /// What the rules decide: `Allow` or `Deny` if a rule speaks to the check, else `Default`.
    pub fn decide(&self, permission: Permission<'_>) -> Decision {
        use Permission::*;
        let required = permission.level();
        match permission {
            AclRead | AclWrite | Snapshot => decide(self.acl, required),
            AgentRead(node) | AgentWrite(node) => self.agent.decide(node, required),
            EventRead(name) | EventWrite(name) => self.event.decide(name, required),
            IntentionRead(WILDCARD) => self.intention.any_allowed(required),
            IntentionWrite(WILDCARD) => self.intention.all_allowed(required),
            IntentionRead(service) | IntentionWrite(service) => self.intention.decide(service, required),
            KeyRead(key) | KeyList(key) | KeyWrite(key) => self.key.decide(key, required),
            KeyWritePrefix(prefix) => self.key.write_prefix(prefix),
            KeyringRead | KeyringWrite => decide(self.keyring, required),
            // Without a rule of their own, mesh and peering follow operator (Consul 1.11+, 1.13+).
            MeshRead | MeshWrite => decide(self.mesh.or(self.operator), required),
            PeeringRead | PeeringWrite => decide(self.peering.or(self.operator), required),
            NodeRead(node) | NodeWrite(node) => self.node.decide(node, required),
            NodeReadAll => self.node.all_allowed(required),
            OperatorRead | OperatorWrite => decide(self.operator, required),
            QueryRead(name) | QueryWrite(name) => self.query.decide(name, required),
            ServiceRead(service) | ServiceWrite(service) => self.service.decide(service, required),
            ServiceReadAll => self.service.all_allowed(required),
            ServiceWriteAny => self.service.any_allowed(required),
            SessionRead(node) | SessionWrite(node) => self.session.decide(node, required),
        }
    }
}

impl DefaultPolicy {
    /// The policy `acl.default_policy` names: `allow` or `deny`.
    pub fn parse(text: &str) -> Option<DefaultPolicy> {
        match text {
            "allow" => Some(DefaultPolicy::Allow),
            "deny" => Some(DefaultPolicy::Deny),
            _ => None,
        }
    }

    /// Consul's spelling, as the `X-Consul-Default-ACL-Policy` header carries it.
    pub fn as_str(self) -> &'static str {
        match self {
            DefaultPolicy::Allow => "allow",
            DefaultPolicy::Deny => "deny",
        }
    }

    /// What the policy decides for a check no rule spoke to: never `Default`.
    pub fn decide(self, permission: Permission<'_>) -> Decision {
        let management =
            matches!(permission, Permission::AclRead | Permission::AclWrite | Permission::Snapshot);
        match self {
            DefaultPolicy::Allow if !management => Decision::Allow,
            DefaultPolicy::Allow | DefaultPolicy::Deny => Decision::Deny,
        }
    }
}

impl Authorizer {
    /// The authorizer of a token whose merged rules are compiled in `policies`.
    pub fn new(policies: PolicyAuthorizer, default_policy: DefaultPolicy) -> Authorizer {
        Authorizer { policies, default_policy }
    }

    /// The authorizer of a token holding these policies' rules.
    pub fn from_policies<'a>(
        policies: impl IntoIterator<Item = &'a Rules>,
        default_policy: DefaultPolicy,
    ) -> Authorizer {
        Authorizer::new(PolicyAuthorizer::from_policies(policies), default_policy)
    }

    /// The default policy this authorizer falls back to.
    pub fn default_policy(&self) -> DefaultPolicy {
        self.default_policy
    }

    /// The final decision: the token's rules, else the default policy. Never `Default`.
    pub fn decide(&self, permission: Permission<'_>) -> Decision {
        let decision = match self.policies.decide(permission) {
            Decision::Default => self.default_policy.decide(permission),
            decided => decided,
        };
        assert_ne!(decision, Decision::Default, "the default policy decides everything left open");
        decision
    }

    /// Whether the check passes.
    pub fn allowed(&self, permission: Permission<'_>) -> bool {
        self.decide(permission) == Decision::Allow
    }

    /// The check, as an error to return when it fails; `accessor_id` is the token's, for the
    /// message.
    ///
    /// # Errors
    ///
    /// [`PermissionDenied::Lacks`] naming the resource, level and subject of the check.
    pub fn check(&self, permission: Permission<'_>, accessor_id: &str) -> Result<(), PermissionDenied> {
        if self.allowed(permission) {
            return Ok(());
        }
        Err(PermissionDenied::Lacks {
            accessor_id: accessor_id.to_owned(),
            resource: permission.resource(),
            level: permission.level(),
            subject: permission.subject().to_owned(),
        })
    }

    /// `acl:read`.
    pub fn acl_read(&self) -> bool {
        self.allowed(Permission::AclRead)
    }

    /// `acl:write`.
    pub fn acl_write(&self) -> bool {
        self.allowed(Permission::AclWrite)
    }

    /// `agent:read` on a node.
    pub fn agent_read(&self, node: &str) -> bool {
        self.allowed(Permission::AgentRead(node))
    }

    /// `agent:write` on a node.
    pub fn agent_write(&self, node: &str) -> bool {
        self.allowed(Permission::AgentWrite(node))
    }

    /// `event:read` on an event name.
    pub fn event_read(&self, name: &str) -> bool {
        self.allowed(Permission::EventRead(name))
    }

    /// `event:write` on an event name.
    pub fn event_write(&self, name: &str) -> bool {
        self.allowed(Permission::EventWrite(name))
    }

    /// `intention:read` on a destination service ([`WILDCARD`]: on any).
    pub fn intention_read(&self, service: &str) -> bool {
        self.allowed(Permission::IntentionRead(service))
    }

    /// `intention:write` on a destination service ([`WILDCARD`]: on all).
    pub fn intention_write(&self, service: &str) -> bool {
        self.allowed(Permission::IntentionWrite(service))
    }

    /// `key:read` on a key.
    pub fn key_read(&self, key: &str) -> bool {
        self.allowed(Permission::KeyRead(key))
    }

    /// `key:list` on a prefix.
    pub fn key_list(&self, prefix: &str) -> bool {
        self.allowed(Permission::KeyList(prefix))
    }

    /// `key:write` on a key.
    pub fn key_write(&self, key: &str) -> bool {
        self.allowed(Permission::KeyWrite(key))
    }

    /// `key:write` on everything under a prefix (a recursive delete).
    pub fn key_write_prefix(&self, prefix: &str) -> bool {
        self.allowed(Permission::KeyWritePrefix(prefix))
    }

    /// `keyring:read`.
    pub fn keyring_read(&self) -> bool {
        self.allowed(Permission::KeyringRead)
    }

    /// `keyring:write`.
    pub fn keyring_write(&self) -> bool {
        self.allowed(Permission::KeyringWrite)
    }

    /// `mesh:read`.
    pub fn mesh_read(&self) -> bool {
        self.allowed(Permission::MeshRead)
    }

    /// `mesh:write`.
    pub fn mesh_write(&self) -> bool {
        self.allowed(Permission::MeshWrite)
    }

    /// `node:read` on a node.
    pub fn node_read(&self, node: &str) -> bool {
        self.allowed(Permission::NodeRead(node))
    }

    /// `node:read` on every node.
    pub fn node_read_all(&self) -> bool {
        self.allowed(Permission::NodeReadAll)
    }

    /// `node:write` on a node.
    pub fn node_write(&self, node: &str) -> bool {
        self.allowed(Permission::NodeWrite(node))
    }

    /// `operator:read`.
    pub fn operator_read(&self) -> bool {
        self.allowed(Permission::OperatorRead)
    }

    /// `operator:write`.
    pub fn operator_write(&self) -> bool {
        self.allowed(Permission::OperatorWrite)
    }

    /// `peering:read`.
    pub fn peering_read(&self) -> bool {
        self.allowed(Permission::PeeringRead)
    }

    /// `peering:write`.
    pub fn peering_write(&self) -> bool {
        self.allowed(Permission::PeeringWrite)
    }

    /// `query:read` on a prepared query name.
    pub fn query_read(&self, name: &str) -> bool {
        self.allowed(Permission::QueryRead(name))
    }

    /// `query:write` on a prepared query name.
    pub fn query_write(&self, name: &str) -> bool {
        self.allowed(Permission::QueryWrite(name))
    }

    /// `service:read` on a service.
    pub fn service_read(&self, service: &str) -> bool {
        self.allowed(Permission::ServiceRead(service))
    }

    /// `service:read` on every service.
    pub fn service_read_all(&self) -> bool {
        self.allowed(Permission::ServiceReadAll)
    }

    /// `service:write` on a service.
    pub fn service_write(&self, service: &str) -> bool {
        self.allowed(Permission::ServiceWrite(service))
    }

    /// `service:write` on at least one service.
    pub fn service_write_any(&self) -> bool {
        self.allowed(Permission::ServiceWriteAny)
    }

    /// `session:read` on a node.
    pub fn session_read(&self, node: &str) -> bool {
        self.allowed(Permission::SessionRead(node))
    }

    /// `session:write` on a node.
    pub fn session_write(&self, node: &str) -> bool {
        self.allowed(Permission::SessionWrite(node))
    }

    /// Snapshot save and restore, which needs `acl:write`.
    pub fn snapshot(&self) -> bool {
        self.allowed(Permission::Snapshot)
    }
}

/// The intention name that asks about every destination at once (Consul's
/// `structs.WildcardSpecifier`).
pub const WILDCARD: &str = "*";
