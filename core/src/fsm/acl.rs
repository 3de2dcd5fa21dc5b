//! ACL state: policies, tokens and the bootstrap marker, as every server holds them
//! (`../shared/reference/consul-wave2.md` §1.2, §1.3, §1.7–1.9; consul
//! `agent/consul/state/acl.go`, `agent/consul/auth/token_writer.go`, `agent/consul/acl_endpoint.go`,
//! `agent/consul/leader.go` `initializeACLs`).
//!
//! A policy is stored with its rules twice: the text a client wrote (what the API shows) and the
//! typed [`Rules`] the proposer parsed from it before proposing (what is enforced). `apply`
//! never parses: core has no HCL parser, and a parse at apply would make every replica's state
//! depend on its parser's version. Built-in policies are the exception: their typed rules are
//! the binary's own ([`global_management`], [`global_read_only`]), whatever a proposer sent.
//!
//! A token links policies by ID only (the proposer resolves names before proposing, as Consul's
//! token writer does), and carries service and node identities that stand for synthetic
//! policies ([`SyntheticPolicy`]). Its `CreateTime` and `ExpirationTime` are Unix milliseconds
//! stamped by the leader that proposed it: apply compares them with the entry's own stamp, never
//! with a clock.
//!
//! Every rule that depends on the state is checked at apply, so it holds whatever raced with
//! the proposal; a refused command changes nothing. Consul checks most of them in its endpoint
//! before Raft, against a state that may change before the entry applies.
//!
//! Where muster departs from Consul:
//! - Deleting a policy removes its links from the tokens that held them. Consul keeps the stale
//!   link in the row and hides it on every read (`fixupTokenPolicyLinks`); what a client reads
//!   is the same, ModifyIndex included, and here every stored link resolves.
//! - Descriptions are bounded ([`DESCRIPTION_BYTES_MAX`]); Consul bounds them only by its
//!   entry size.
//! - A create whose ID is already taken is refused ([`AclError::PolicyIdTaken`]); Consul's
//!   endpoints never propose one (they generate the ID), and its state store would overwrite.
//!
//! Roles, auth methods and binding rules come later: each is one more table here beside
//! `policies` and `tokens` (rows by ID, a derived name index, a table index), its own
//! [`super::Table`] variant, and a field in the snapshot's ACL part.

use imbl::OrdMap;
use serde::{Deserialize, Serialize};

use super::Index;
use crate::acl::{
    global_management, global_read_only, is_valid_node_identity_name, is_valid_policy_name,
    is_valid_service_identity_name, Authorizer, DefaultPolicy, PolicyAuthorizer, Rules, SyntheticPolicy,
    ANONYMOUS_TOKEN_ACCESSOR_ID, ANONYMOUS_TOKEN_DESCRIPTION, ANONYMOUS_TOKEN_SECRET_ID,
    GLOBAL_MANAGEMENT_POLICY_DESCRIPTION, GLOBAL_MANAGEMENT_POLICY_ID, GLOBAL_MANAGEMENT_POLICY_NAME,
    GLOBAL_MANAGEMENT_POLICY_RULES, GLOBAL_READ_ONLY_POLICY_DESCRIPTION, GLOBAL_READ_ONLY_POLICY_ID,
    GLOBAL_READ_ONLY_POLICY_NAME, GLOBAL_READ_ONLY_POLICY_RULES, RESERVED_ID_PREFIX,
};
use crate::go_quote;

/// A policy, as Consul's `ACLPolicy` (without its hash, which the API layer computes).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    /// Its UUID, chosen by the proposer (or a built-in's reserved one).
    pub id: String,
    /// Unique among policies.
    pub name: String,
    /// Free text, at most [`DESCRIPTION_BYTES_MAX`].
    pub description: String,
    /// The rules as the client wrote them (HCL or JSON).
    pub rules_text: String,
    /// The rules parsed from `rules_text` by the proposer.
    pub rules: Rules,
    /// The datacenters it applies in; empty for all.
    pub datacenters: Vec<String>,
    /// The index that created it.
    pub create_index: Index,
    /// The index that last changed it.
    pub modify_index: Index,
}

/// A service identity: the token may act as this service ([`SyntheticPolicy::service_identity`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceIdentity {
    /// The service.
    pub service_name: String,
    /// The datacenters it applies in; empty for all (none on a local token).
    pub datacenters: Vec<String>,
}

/// A node identity: the token may act as this node, in one datacenter
/// ([`SyntheticPolicy::node_identity`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeIdentity {
    /// The node.
    pub node_name: String,
    /// The only datacenter it applies in.
    pub datacenter: String,
}

/// A token, as Consul's `ACLToken` (roles, auth method and hash to come).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Token {
    /// Names the token in the API; never a credential.
    pub accessor_id: String,
    /// The credential clients present.
    pub secret_id: String,
    /// Free text, at most [`DESCRIPTION_BYTES_MAX`].
    pub description: String,
    /// The IDs of the policies it holds, each once, in the order given.
    pub policies: Vec<String>,
    /// Its service identities.
    pub service_identities: Vec<ServiceIdentity>,
    /// Its node identities.
    pub node_identities: Vec<NodeIdentity>,
    /// Kept in this datacenter only, never replicated.
    pub local: bool,
    /// When it was created, Unix milliseconds, as the proposing leader's clock read.
    pub create_time_ms: u64,
    /// When it stops resolving, Unix milliseconds; never for `None`.
    pub expiration_time_ms: Option<u64>,
    /// The index that created it.
    pub create_index: Index,
    /// The index that last changed it.
    pub modify_index: Index,
}

/// What a resolved secret may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedToken {
    /// The token's AccessorID, for denials and logs.
    pub accessor_id: String,
    /// Its policies and identities merged, falling back to the default policy.
    pub authorizer: Authorizer,
    /// Whether it holds `global-management`.
    pub management: bool,
}

/// Why a secret does not resolve. Messages are Consul's (`acl/errors.go`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// No such token, or it expired: Consul's `acl.ErrNotFound` (HTTP 403).
    #[error("ACL not found")]
    NotFound,
    /// `allow`, `deny` or `manage`, the legacy root names: Consul's `acl.ErrRootDenied`.
    #[error("Cannot resolve root ACL")]
    RootDenied,
}

/// Why an ACL write was refused; nothing changed. Messages are Consul's unless said otherwise.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum AclError {
    /// A token without an AccessorID (`state.ErrMissingACLTokenAccessor`).
    #[error("Missing ACL Token AccessorID")]
    MissingAccessorId,
    /// A token without a SecretID (`state.ErrMissingACLTokenSecret`).
    #[error("Missing ACL Token SecretID")]
    MissingSecretId,
    /// A new token's ID that is not a UUID or is reserved (the token writer's `Create`).
    #[error("Invalid Token: {field} - {reason}")]
    InvalidTokenId {
        /// `AccessorID` or `SecretID`.
        field: String,
        /// Why.
        reason: String,
    },
    /// An update naming a token by something that is not a UUID.
    #[error("AccessorID is not a valid UUID")]
    InvalidAccessorId,
    /// An ID already used by a token, as an AccessorID or a SecretID.
    #[error("Invalid Token: {field} is already in use")]
    TokenIdInUse {
        /// `AccessorID` or `SecretID`.
        field: String,
    },
    /// An update of a token whose SecretID is a legacy root name (a permission denial).
    #[error("Cannot modify root ACL")]
    ModifyRootToken,
    /// An update of a token that does not exist, or expired.
    #[error("Cannot find token {}", go_quote::quote(.0))]
    TokenNotFound(String),
    /// An update with another SecretID.
    #[error("Changing a token's SecretID is not permitted")]
    SecretIdChanged,
    /// An update that flips `Local`.
    #[error("Cannot toggle local mode of {0}")]
    LocalChanged(String),
    /// An update with another ExpirationTime.
    #[error("Cannot change expiration time of {0}")]
    ExpirationChanged(String),
    /// A token expiring before it is created.
    #[error("ExpirationTime cannot be before CreateTime")]
    ExpirationBeforeCreation,
    /// A link to a policy that does not exist.
    #[error("No such ACL policy with ID {}", go_quote::quote(.0))]
    UnknownPolicy(String),
    /// A service identity without a name.
    #[error("Service identity is missing the service name field on this token")]
    MissingServiceName,
    /// A service identity scoped to datacenters on a local token.
    #[error("Service identity {} cannot specify a list of datacenters on a local token", go_quote::quote(.0))]
    LocalServiceIdentityDatacenters(String),
    /// A service identity whose name breaks the identity-name rule.
    #[error(
        "Service identity {} has an invalid name. Only lowercase alphanumeric characters, '-' and '_' are allowed",
        go_quote::quote(.0)
    )]
    InvalidServiceName(String),
    /// A node identity without a name.
    #[error("Node identity is missing the node name field on this token")]
    MissingNodeName,
    /// A node identity without a datacenter.
    #[error("Node identity is missing the datacenter field on this token")]
    MissingNodeDatacenter,
    /// A node identity whose name breaks the identity-name rule.
    #[error(
        "Node identity has an invalid name. Only lowercase alphanumeric characters, '-' and '_' are allowed"
    )]
    InvalidNodeName,
    /// The anonymous token cannot be deleted (Consul's `TokenDelete`).
    #[error("Delete operation not permitted on the anonymous token")]
    DeleteAnonymousToken,
    /// A bootstrap after the cluster was bootstrapped at `reset_index` (a permission denial).
    #[error("ACL bootstrap no longer allowed (reset index: {reset_index})")]
    BootstrapNotAllowed {
        /// The index the cluster was bootstrapped at; naming it allows one more bootstrap.
        reset_index: Index,
    },
    /// A bootstrap naming the wrong reset index.
    #[error("Invalid bootstrap reset index (specified {specified}, reset index: {reset_index})")]
    BootstrapResetIndexInvalid {
        /// The index given.
        specified: Index,
        /// The index the cluster was bootstrapped at.
        reset_index: Index,
    },
    /// A policy without an ID (`state.ErrMissingACLPolicyID`).
    #[error("Missing ACL Policy ID")]
    MissingPolicyId,
    /// A policy ID that is not a UUID.
    #[error("Policy ID invalid UUID")]
    InvalidPolicyId,
    /// A policy without a name.
    #[error("Invalid Policy: no Name is set")]
    MissingPolicyName,
    /// A policy name that breaks the policy-name rule.
    #[error("Invalid Policy: invalid Name. Only alphanumeric characters, '-' and '_' are allowed")]
    InvalidPolicyName,
    /// A new policy whose name is taken.
    #[error("Invalid Policy: A Policy with Name {} already exists", go_quote::quote(.0))]
    PolicyNameTaken(String),
    /// A policy renamed to a name that is taken (Consul's update wording, lower case).
    #[error("Invalid Policy: A policy with name {} already exists", go_quote::quote(.0))]
    PolicyRenameTaken(String),
    /// A new policy whose ID is taken (muster's words: Consul never proposes one).
    #[error("Invalid Policy: A Policy with ID {} already exists", go_quote::quote(.0))]
    PolicyIdTaken(String),
    /// An update of a policy that does not exist.
    #[error("cannot find policy {0}")]
    PolicyNotFound(String),
    /// An update of a built-in policy's rules (its canonical name in the message).
    #[error("Changing the Rules for the builtin {0} policy is not permitted")]
    BuiltinRulesChanged(String),
    /// An update scoping a built-in policy to datacenters.
    #[error("Changing the Datacenters of the builtin {0} policy is not permitted")]
    BuiltinDatacentersChanged(String),
    /// A delete of a built-in policy.
    #[error("Delete operation not permitted on the builtin {0} policy")]
    DeleteBuiltinPolicy(String),
    /// A description over [`DESCRIPTION_BYTES_MAX`] (muster's limit and words).
    #[error("Description is too long ({size} > {max} bytes)")]
    DescriptionTooLong {
        /// Its size.
        size: usize,
        /// The limit.
        max: usize,
    },
}

impl AclError {
    /// Whether Consul answers it as a permission denial (HTTP 403, `Permission denied: <text>`);
    /// every other refusal is a plain RPC error, HTTP 500.
    pub fn is_permission_denied(&self) -> bool {
        matches!(self, AclError::BootstrapNotAllowed { .. } | AclError::ModifyRootToken)
    }
}

/// The ACL tables.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AclState {
    /// By ID.
    policies: OrdMap<String, Policy>,
    /// By AccessorID.
    tokens: OrdMap<String, Token>,
    /// The index of the last policy write (Consul's `acl-policies` table index).
    policies_index: Index,
    /// The index of the last token write (Consul's `acl-tokens` table index).
    tokens_index: Index,
    /// The index the cluster was bootstrapped at (Consul's `acl-token-bootstrap` index entry,
    /// its "reset index"); `None` while `/v1/acl/bootstrap` is allowed.
    bootstrapped: Option<Index>,
    /// Derived: policy name → ID.
    #[serde(skip)]
    policy_by_name: OrdMap<String, String>,
    /// Derived: SecretID → AccessorID.
    #[serde(skip)]
    token_by_secret: OrdMap<String, String>,
}

/// A built-in policy as the binary defines it.
struct Builtin {
    id: &'static str,
    name: &'static str,
    description: &'static str,
    rules_text: &'static str,
    rules: fn() -> Rules,
}

impl Token {
    /// Consul's `IsExpired`: expired once its expiration time is strictly before `now_ms`.
    pub fn is_expired(&self, now_ms: u64) -> bool {
        self.expiration_time_ms.is_some_and(|expires_ms| expires_ms < now_ms)
    }

    /// The checks Consul's token writer makes on the IDs a client chose for a new token: each
    /// a UUID outside the reserved range. For the HTTP layer before it proposes; the state
    /// machine does not repeat them, so a leader may still write a configured
    /// `initial_management` secret that is not a UUID, as Consul allows.
    pub fn check_new_ids(&self) -> Result<(), AclError> {
        for (field, id) in [("AccessorID", &self.accessor_id), ("SecretID", &self.secret_id)] {
            let reason = if id.starts_with(RESERVED_ID_PREFIX) {
                format!("UUIDs with the prefix {} are reserved", go_quote::quote(RESERVED_ID_PREFIX))
            } else if super::catalog::parse_uuid(id).is_err() {
                "not a valid UUID".to_owned()
            } else {
                continue;
            };
            return Err(AclError::InvalidTokenId { field: field.to_owned(), reason });
        }
        Ok(())
    }

    /// The rules that need no state: IDs present, identities well formed, times in order.
    pub(super) fn validate(&self, create: bool) -> Result<(), AclError> {
        if self.accessor_id.is_empty() {
            return Err(AclError::MissingAccessorId);
        }
        if create && self.secret_id.is_empty() {
            return Err(AclError::MissingSecretId);
        }
        if !create && super::catalog::parse_uuid(&self.accessor_id).is_err() {
            return Err(AclError::InvalidAccessorId);
        }
        if !create && ROOT_NAMES.contains(&self.secret_id.as_str()) {
            return Err(AclError::ModifyRootToken);
        }
        check_description(&self.description)?;
        if self.expiration_time_ms.is_some_and(|expires_ms| expires_ms < self.create_time_ms) {
            return Err(AclError::ExpirationBeforeCreation);
        }
        self.validate_identities()
    }

    fn validate_identities(&self) -> Result<(), AclError> {
        for identity in &self.service_identities {
            let name = &identity.service_name;
            if name.is_empty() {
                return Err(AclError::MissingServiceName);
            }
            if self.local && !identity.datacenters.is_empty() {
                return Err(AclError::LocalServiceIdentityDatacenters(name.clone()));
            }
            if !is_valid_service_identity_name(name) {
                return Err(AclError::InvalidServiceName(name.clone()));
            }
        }
        for identity in &self.node_identities {
            if identity.node_name.is_empty() {
                return Err(AclError::MissingNodeName);
            }
            if identity.datacenter.is_empty() {
                return Err(AclError::MissingNodeDatacenter);
            }
            if !is_valid_node_identity_name(&identity.node_name) {
                return Err(AclError::InvalidNodeName);
            }
        }
        Ok(())
    }

    /// Links and identities each once, in first-seen order; a service named twice gets the
    /// union of its datacenters (Consul's `Deduplicate`).
    fn deduplicated(mut self) -> Token {
        let mut seen = std::collections::BTreeSet::new();
        self.policies.retain(|id| seen.insert(id.clone()));
        let mut services: Vec<ServiceIdentity> = Vec::with_capacity(self.service_identities.len());
        for identity in self.service_identities {
            match services.iter_mut().find(|kept| kept.service_name == identity.service_name) {
                Some(kept) => {
                    for datacenter in identity.datacenters {
                        if !kept.datacenters.contains(&datacenter) {
                            kept.datacenters.push(datacenter);
                        }
                    }
                }
                None => services.push(identity),
            }
        }
        self.service_identities = services;
        let mut nodes: Vec<NodeIdentity> = Vec::with_capacity(self.node_identities.len());
        for identity in self.node_identities {
            if !nodes.contains(&identity) {
                nodes.push(identity);
            }
        }
        self.node_identities = nodes;
        self
    }
}

impl Policy {
    /// The rules that need no state: ID and name present and well formed.
    pub(super) fn validate(&self) -> Result<(), AclError> {
        if self.id.is_empty() {
            return Err(AclError::MissingPolicyId);
        }
        if super::catalog::parse_uuid(&self.id).is_err() {
            return Err(AclError::InvalidPolicyId);
        }
        if self.name.is_empty() {
            return Err(AclError::MissingPolicyName);
        }
        // A built-in keeps its own name even where it is reserved (`builtin/...`).
        let own_name = builtin(&self.id).is_some_and(|builtin| builtin.name == self.name);
        if !own_name && !is_valid_policy_name(&self.name) {
            return Err(AclError::InvalidPolicyName);
        }
        check_description(&self.description)
    }
}

impl AclState {
    /// A policy by ID.
    pub fn policy(&self, id: &str) -> Option<&Policy> {
        self.policies.get(id)
    }

    /// A policy by name.
    pub fn policy_by_name(&self, name: &str) -> Option<&Policy> {
        self.policy_by_name.get(name).map(|id| &self.policies[id])
    }

    /// Every policy, by ID, and the policy table's index.
    pub fn policies(&self) -> (Index, Vec<&Policy>) {
        (self.policies_index, self.policies.values().collect())
    }

    /// A token by AccessorID, expired or not.
    pub fn token(&self, accessor_id: &str) -> Option<&Token> {
        self.tokens.get(accessor_id)
    }

    /// A token by SecretID, expired or not.
    pub fn token_by_secret(&self, secret_id: &str) -> Option<&Token> {
        self.token_by_secret.get(secret_id).map(|accessor| &self.tokens[accessor])
    }

    /// Every token, by AccessorID (Consul's list order), and the token table's index.
    pub fn tokens(&self) -> (Index, Vec<&Token>) {
        (self.tokens_index, self.tokens.values().collect())
    }

    /// The policy table's index.
    pub fn policies_index(&self) -> Index {
        self.policies_index
    }

    /// The token table's index.
    pub fn tokens_index(&self) -> Index {
        self.tokens_index
    }

    /// The index the cluster was bootstrapped at (the reset index), if it was.
    pub fn bootstrapped(&self) -> Option<Index> {
        self.bootstrapped
    }

    /// Whether nothing was ever written (a snapshot then leaves the ACL part out).
    pub fn is_empty(&self) -> bool {
        self.policies.is_empty()
            && self.tokens.is_empty()
            && self.bootstrapped.is_none()
            && self.policies_index == 0
            && self.tokens_index == 0
    }

    /// What the token with `secret_id` may do in `datacenter` at `now_ms`: its policies (those
    /// scoped to this datacenter or to none) and its identities' synthetic policies (service
    /// identities scoped likewise, node identities only in their own datacenter), merged, with
    /// `default_policy` for what they leave open. An empty secret is the anonymous token's, as
    /// in Consul's resolver.
    pub fn resolve(
        &self,
        secret_id: &str,
        now_ms: u64,
        datacenter: &str,
        default_policy: DefaultPolicy,
    ) -> Result<ResolvedToken, ResolveError> {
        if ROOT_NAMES.contains(&secret_id) {
            return Err(ResolveError::RootDenied);
        }
        let secret_id = if secret_id.is_empty() { ANONYMOUS_TOKEN_SECRET_ID } else { secret_id };
        let token = self.token_by_secret(secret_id).ok_or(ResolveError::NotFound)?;
        if token.is_expired(now_ms) {
            return Err(ResolveError::NotFound);
        }
        let in_scope =
            |datacenters: &[String]| datacenters.is_empty() || datacenters.iter().any(|dc| dc == datacenter);
        let mut synthetic = Vec::new();
        for identity in token.service_identities.iter().filter(|identity| in_scope(&identity.datacenters)) {
            synthetic.push(SyntheticPolicy::service_identity(&identity.service_name).rules);
        }
        for identity in token.node_identities.iter().filter(|identity| identity.datacenter == datacenter) {
            synthetic.push(SyntheticPolicy::node_identity(&identity.node_name).rules);
        }
        let policies = token
            .policies
            .iter()
            .map(|id| self.policies.get(id).expect("state invariant: every policy link resolves"))
            .filter(|policy| in_scope(&policy.datacenters));
        let management = token.policies.iter().any(|id| id == GLOBAL_MANAGEMENT_POLICY_ID);
        let rules = policies.map(|policy| &policy.rules).chain(&synthetic);
        Ok(ResolvedToken {
            accessor_id: token.accessor_id.clone(),
            authorizer: Authorizer::new(PolicyAuthorizer::from_policies(rules), default_policy),
            management,
        })
    }

    /// Creates the built-in policies that are missing, restores a built-in's rules if they are
    /// not the binary's (an upgrade; its name and description stay), and creates the anonymous
    /// token if it is missing (Consul's `initializeACLs`). Whether policies, and whether
    /// tokens, changed; refused, changing nothing, if a built-in's name is taken by another
    /// policy.
    pub(super) fn initialize(&mut self, index: Index, now_ms: u64) -> Result<(bool, bool), AclError> {
        for builtin in &BUILTINS {
            let holder = self.policy_by_name.get(builtin.name);
            if self.policies.get(builtin.id).is_none() && holder.is_some() {
                return Err(AclError::PolicyNameTaken(builtin.name.to_owned()));
            }
        }
        let mut policies_changed = false;
        for builtin in &BUILTINS {
            let stored = self.policies.get(builtin.id);
            if stored.is_some_and(|policy| policy.rules_text == builtin.rules_text) {
                continue;
            }
            let (name, description, create_index) = match stored {
                Some(policy) => (policy.name.clone(), policy.description.clone(), policy.create_index),
                None => (builtin.name.to_owned(), builtin.description.to_owned(), index),
            };
            let policy =
                Policy { id: builtin.id.to_owned(), name, description, create_index, ..Policy::default() };
            self.put_policy(index, self.with_builtin_rules(policy));
            policies_changed = true;
        }
        let tokens_changed = self.tokens.get(ANONYMOUS_TOKEN_ACCESSOR_ID).is_none();
        if tokens_changed {
            assert!(
                self.token_by_secret.get(ANONYMOUS_TOKEN_SECRET_ID).is_none(),
                "the anonymous secret is not a UUID: no other token can hold it"
            );
            let anonymous = Token {
                accessor_id: ANONYMOUS_TOKEN_ACCESSOR_ID.to_owned(),
                secret_id: ANONYMOUS_TOKEN_SECRET_ID.to_owned(),
                description: ANONYMOUS_TOKEN_DESCRIPTION.to_owned(),
                create_time_ms: now_ms,
                ..Token::default()
            };
            self.put_token(index, anonymous);
        }
        Ok((policies_changed, tokens_changed))
    }

    /// The one-time bootstrap: `token` is created (as [`AclState::set_token`] creates) unless
    /// the cluster was bootstrapped already, in which case only the reset index it was
    /// bootstrapped at lets it through again.
    pub(super) fn bootstrap(
        &mut self,
        index: Index,
        token: &Token,
        reset_index: Option<Index>,
    ) -> Result<(), AclError> {
        if let Some(bootstrapped) = self.bootstrapped {
            match reset_index {
                None => return Err(AclError::BootstrapNotAllowed { reset_index: bootstrapped }),
                Some(specified) if specified != bootstrapped => {
                    return Err(AclError::BootstrapResetIndexInvalid { specified, reset_index: bootstrapped })
                }
                Some(_) => {}
            }
        }
        self.create_token(index, token.clone())?;
        self.bootstrapped = Some(index);
        Ok(())
    }

    /// Creates or updates a token (see [`super::AclTokenSet`]); `now_ms` is the entry's stamp.
    pub(super) fn set_token(
        &mut self,
        index: Index,
        now_ms: u64,
        token: &Token,
        create: bool,
    ) -> Result<(), AclError> {
        if create {
            self.create_token(index, token.clone())
        } else {
            self.update_token(index, now_ms, token.clone())
        }
    }

    /// Deletes a token; whether it existed.
    pub(super) fn delete_token(&mut self, index: Index, accessor_id: &str) -> Result<bool, AclError> {
        if accessor_id == ANONYMOUS_TOKEN_ACCESSOR_ID {
            return Err(AclError::DeleteAnonymousToken);
        }
        let Some(token) = self.tokens.remove(accessor_id) else { return Ok(false) };
        let removed = self.token_by_secret.remove(&token.secret_id);
        assert_eq!(removed.as_deref(), Some(accessor_id), "the secret index names the token it indexes");
        self.tokens_index = index;
        Ok(true)
    }

    /// Creates or updates a policy (see [`super::AclPolicySet`]).
    pub(super) fn set_policy(&mut self, index: Index, policy: &Policy, create: bool) -> Result<(), AclError> {
        let holder = self.policy_by_name.get(&policy.name).filter(|id| **id != policy.id);
        let policy = match (create, self.policies.get(&policy.id)) {
            (true, Some(_)) => return Err(AclError::PolicyIdTaken(policy.id.clone())),
            (true, None) if holder.is_some() => return Err(AclError::PolicyNameTaken(policy.name.clone())),
            (true, None) => {
                check_builtin_update(policy)?;
                Policy { create_index: index, ..self.with_builtin_rules(policy.clone()) }
            }
            (false, None) => return Err(AclError::PolicyNotFound(policy.id.clone())),
            (false, Some(_)) if holder.is_some() => {
                return Err(AclError::PolicyRenameTaken(policy.name.clone()))
            }
            (false, Some(stored)) => {
                check_builtin_update(policy)?;
                Policy { create_index: stored.create_index, ..self.with_builtin_rules(policy.clone()) }
            }
        };
        self.put_policy(index, policy);
        Ok(())
    }

    /// Deletes a policy and every token's link to it; whether the policy existed, and whether
    /// a token lost a link. Such a token keeps its ModifyIndex, as Consul shows it (Consul
    /// leaves the row alone and hides the link on reads), but the token table's index moves,
    /// so readers of tokens wake to a newer index (Consul's does not move).
    pub(super) fn delete_policy(&mut self, index: Index, id: &str) -> Result<(bool, bool), AclError> {
        if let Some(builtin) = builtin(id) {
            return Err(AclError::DeleteBuiltinPolicy(builtin.name.to_owned()));
        }
        let Some(policy) = self.policies.remove(id) else { return Ok((false, false)) };
        let removed = self.policy_by_name.remove(&policy.name);
        assert_eq!(removed.as_deref(), Some(id), "the name index names the policy it indexes");
        let unlinked = super::clamp_rows(&mut self.tokens, |token| {
            let before = token.policies.len();
            token.policies.retain(|link| link != id);
            token.policies.len() != before
        });
        self.policies_index = index;
        if unlinked {
            self.tokens_index = index;
        }
        Ok((true, unlinked))
    }

    fn create_token(&mut self, index: Index, token: Token) -> Result<(), AclError> {
        self.check_id_unused(&token.accessor_id, "AccessorID")?;
        self.check_id_unused(&token.secret_id, "SecretID")?;
        self.check_links(&token)?;
        self.put_token(index, Token { create_index: index, ..token });
        Ok(())
    }

    fn update_token(&mut self, index: Index, now_ms: u64, mut token: Token) -> Result<(), AclError> {
        let stored = match self.tokens.get(&token.accessor_id) {
            Some(stored) if !stored.is_expired(now_ms) => stored,
            _ => return Err(AclError::TokenNotFound(token.accessor_id)),
        };
        if token.secret_id.is_empty() {
            token.secret_id = stored.secret_id.clone();
        } else if token.secret_id != stored.secret_id {
            return Err(AclError::SecretIdChanged);
        }
        if token.local != stored.local {
            return Err(AclError::LocalChanged(token.accessor_id));
        }
        match token.expiration_time_ms {
            None => token.expiration_time_ms = stored.expiration_time_ms,
            Some(_) if token.expiration_time_ms != stored.expiration_time_ms => {
                return Err(AclError::ExpirationChanged(token.accessor_id))
            }
            Some(_) => {}
        }
        token.create_time_ms = stored.create_time_ms;
        token.create_index = stored.create_index;
        self.check_links(&token)?;
        self.put_token(index, token);
        Ok(())
    }

    /// An ID a new token may take: no token uses it as its AccessorID or its SecretID.
    fn check_id_unused(&self, id: &str, field: &str) -> Result<(), AclError> {
        if self.tokens.contains_key(id) || self.token_by_secret.contains_key(id) {
            return Err(AclError::TokenIdInUse { field: field.to_owned() });
        }
        Ok(())
    }

    fn check_links(&self, token: &Token) -> Result<(), AclError> {
        match token.policies.iter().find(|id| !self.policies.contains_key(id.as_str())) {
            Some(unknown) => Err(AclError::UnknownPolicy(unknown.clone())),
            None => Ok(()),
        }
    }

    /// Stores a checked token at `index` (its create index already set) and indexes its secret.
    fn put_token(&mut self, index: Index, token: Token) {
        let token = Token { modify_index: index, ..token.deduplicated() };
        assert!(token.create_index <= token.modify_index, "a token is created before it changes");
        if let Some(old) = self.tokens.get(&token.accessor_id) {
            assert_eq!(old.secret_id, token.secret_id, "a token's SecretID never changes");
        }
        self.token_by_secret.insert(token.secret_id.clone(), token.accessor_id.clone());
        self.tokens.insert(token.accessor_id.clone(), token);
        self.tokens_index = index;
    }

    /// Stores a checked policy at `index` (its create index already set) and indexes its name.
    fn put_policy(&mut self, index: Index, policy: Policy) {
        let policy = Policy { modify_index: index, ..policy };
        assert!(policy.create_index <= policy.modify_index, "a policy is created before it changes");
        if let Some(old) = self.policies.get(&policy.id) {
            self.policy_by_name.remove(&old.name);
        }
        self.policy_by_name.insert(policy.name.clone(), policy.id.clone());
        self.policies.insert(policy.id.clone(), policy);
        self.policies_index = index;
    }

    /// A built-in's typed rules are the binary's, whatever the proposer parsed.
    fn with_builtin_rules(&self, policy: Policy) -> Policy {
        match builtin(&policy.id) {
            Some(builtin) => {
                Policy { rules_text: builtin.rules_text.to_owned(), rules: (builtin.rules)(), ..policy }
            }
            None => policy,
        }
    }

    /// Lowers every index above `at` to `at` (a restore at entry `at`).
    pub(super) fn clamp(&mut self, at: Index) {
        super::clamp_rows(&mut self.policies, |policy| {
            super::clamp_index(&mut policy.create_index, at)
                | super::clamp_index(&mut policy.modify_index, at)
        });
        super::clamp_rows(&mut self.tokens, |token| {
            super::clamp_index(&mut token.create_index, at) | super::clamp_index(&mut token.modify_index, at)
        });
        super::clamp_index(&mut self.policies_index, at);
        super::clamp_index(&mut self.tokens_index, at);
        if let Some(bootstrapped) = &mut self.bootstrapped {
            super::clamp_index(bootstrapped, at);
        }
    }

    /// Rebuilds the derived indexes after a restore.
    pub(super) fn rebuild(&mut self) {
        self.policy_by_name = self.policies.values().map(|p| (p.name.clone(), p.id.clone())).collect();
        self.token_by_secret =
            self.tokens.values().map(|t| (t.secret_id.clone(), t.accessor_id.clone())).collect();
    }

    /// The tables' rules, checked on a restored snapshot (after [`AclState::rebuild`]).
    pub(super) fn validate(&self, applied: Index) -> Result<(), &'static str> {
        if self.policies_index > applied || self.tokens_index > applied {
            return Err("an ACL table index is past the applied index");
        }
        if self.bootstrapped.is_some_and(|bootstrapped| bootstrapped > applied) {
            return Err("the ACL bootstrap index is past the applied index");
        }
        for (id, policy) in &self.policies {
            let indexes =
                policy.create_index <= policy.modify_index && policy.modify_index <= self.policies_index;
            if *id != policy.id || !indexes || policy.validate().is_err() {
                return Err("an ACL policy row is inconsistent");
            }
        }
        if self.policy_by_name.len() != self.policies.len() {
            return Err("two ACL policies share a name");
        }
        for (accessor_id, token) in &self.tokens {
            let indexes = token.create_index <= token.modify_index && token.modify_index <= self.tokens_index;
            if *accessor_id != token.accessor_id || !indexes || token.validate(true).is_err() {
                return Err("an ACL token row is inconsistent");
            }
            if self.check_links(token).is_err() {
                return Err("an ACL token links a missing policy");
            }
        }
        if self.token_by_secret.len() != self.tokens.len() {
            return Err("two ACL tokens share a SecretID");
        }
        Ok(())
    }

    /// Checks the tables' rules and that the derived indexes agree with the tables.
    #[cfg(any(test, feature = "invariants"))]
    pub(super) fn check(&self, applied: Index) {
        if let Err(broken) = self.validate(applied) {
            panic!("ACL invariant: {broken}");
        }
        for (name, id) in &self.policy_by_name {
            assert_eq!(
                self.policies.get(id).map(|p| &p.name),
                Some(name),
                "ACL invariant: the name index agrees"
            );
        }
        for (secret, accessor) in &self.token_by_secret {
            let token = self.tokens.get(accessor).map(|t| &t.secret_id);
            assert_eq!(token, Some(secret), "ACL invariant: the secret index agrees");
        }
    }
}

/// The built-in policy with this ID, if it is one.
fn builtin(id: &str) -> Option<&'static Builtin> {
    BUILTINS.iter().find(|builtin| builtin.id == id)
}

/// A built-in policy may be renamed and described, nothing else (Consul's `aclPolicySetTxn`,
/// which compares with the binary's rules, not the stored ones, so an upgrade can change them).
/// A create with a built-in's ID (before [`AclState::initialize`] made it) follows the same rule.
fn check_builtin_update(policy: &Policy) -> Result<(), AclError> {
    let Some(builtin) = builtin(&policy.id) else { return Ok(()) };
    if policy.rules_text != builtin.rules_text {
        return Err(AclError::BuiltinRulesChanged(builtin.name.to_owned()));
    }
    if !policy.datacenters.is_empty() {
        return Err(AclError::BuiltinDatacentersChanged(builtin.name.to_owned()));
    }
    Ok(())
}

fn check_description(description: &str) -> Result<(), AclError> {
    if description.len() > DESCRIPTION_BYTES_MAX {
        return Err(AclError::DescriptionTooLong { size: description.len(), max: DESCRIPTION_BYTES_MAX });
    }
    Ok(())
}

/// The longest token or policy description, in bytes. Not Consul's (it has none but its entry
/// size): 8 KiB holds any sentence a person writes, and bounds what every read of a list copies.
pub const DESCRIPTION_BYTES_MAX: usize = 8 << 10;

/// Consul's `ACLBuiltinPolicies` (1.16+): created by [`AclState::initialize`], their rules
/// fixed, never deleted.
const BUILTINS: [Builtin; 2] = [
    Builtin {
        id: GLOBAL_MANAGEMENT_POLICY_ID,
        name: GLOBAL_MANAGEMENT_POLICY_NAME,
        description: GLOBAL_MANAGEMENT_POLICY_DESCRIPTION,
        rules_text: GLOBAL_MANAGEMENT_POLICY_RULES,
        rules: global_management,
    },
    Builtin {
        id: GLOBAL_READ_ONLY_POLICY_ID,
        name: GLOBAL_READ_ONLY_POLICY_NAME,
        description: GLOBAL_READ_ONLY_POLICY_DESCRIPTION,
        rules_text: GLOBAL_READ_ONLY_POLICY_RULES,
        rules: global_read_only,
    },
];

/// The legacy root policy names no token may resolve to or be updated as.
const ROOT_NAMES: [&str; 3] = ["allow", "deny", "manage"];
