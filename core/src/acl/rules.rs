//! The typed rules of a policy: what its HCL or JSON says, checked and keyed by resource.
//!
//! A [`Rules`] value is what the FSM will store next to a policy's text, so it is plain data
//! (serde, canonical order, one entry per label). Rules for the same resource kind, match kind
//! and label merge by Consul's precedence (deny > write > list > read), whether they come from
//! one policy that repeats a block or from several policies of one token ([`Rules::merge`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::access::{merge_optional, AccessLevel};

/// Whether a labelled rule governs exactly its label (`key "a"`) or every name that starts with
/// it (`key_prefix "a"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Match {
    /// The name equals the label.
    Exact,
    /// The name starts with the label; the empty label matches every name.
    Prefix,
}

/// A service rule's grant: on the service itself, and on intentions whose destination it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ServiceAccess {
    /// The `policy` of the rule.
    pub policy: AccessLevel,
    /// The `intentions` of the rule, if it says; see [`ServiceAccess::intentions_or_default`].
    pub intentions: Option<AccessLevel>,
}

/// A grant that merges with another for the same label by Consul's precedence.
pub trait Grant: Copy {
    /// The grant that stands after `incoming` meets `self` for one label.
    fn merge(self, incoming: Self) -> Self;
}

/// The rules of one labelled resource kind: each label once per match kind, in label order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabelledRules<G> {
    exact: BTreeMap<String, G>,
    prefix: BTreeMap<String, G>,
}

/// A policy's rules, by resource. `None` and empty sets mean the policy says nothing there.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rules {
    /// `acl`: the ACL API; write is also needed for snapshots.
    pub acl: Option<AccessLevel>,
    /// `keyring`: gossip keyring operations.
    pub keyring: Option<AccessLevel>,
    /// `operator`: `/v1/operator/*` but the keyring; also what `mesh` and `peering` fall back
    /// to when a policy names neither.
    pub operator: Option<AccessLevel>,
    /// `mesh`: mesh-wide configuration.
    pub mesh: Option<AccessLevel>,
    /// `peering`: cluster peering.
    pub peering: Option<AccessLevel>,
    /// `agent` and `agent_prefix`, by node name.
    pub agent: LabelledRules<AccessLevel>,
    /// `event` and `event_prefix`, by event name.
    pub event: LabelledRules<AccessLevel>,
    /// `key` and `key_prefix`, by KV path.
    pub key: LabelledRules<AccessLevel>,
    /// `node` and `node_prefix`, by node name.
    pub node: LabelledRules<AccessLevel>,
    /// `query` and `query_prefix`, by prepared-query name.
    pub query: LabelledRules<AccessLevel>,
    /// `service` and `service_prefix`, by service name, with their intentions grant.
    pub service: LabelledRules<ServiceAccess>,
    /// `session` and `session_prefix`, by node name.
    pub session: LabelledRules<AccessLevel>,
}

impl ServiceAccess {
    /// A grant on the service with no word on intentions.
    pub fn new(policy: AccessLevel) -> ServiceAccess {
        ServiceAccess { policy, intentions: None }
    }

    /// A grant on the service and on its intentions.
    pub fn with_intentions(policy: AccessLevel, intentions: AccessLevel) -> ServiceAccess {
        ServiceAccess { policy, intentions: Some(intentions) }
    }

    /// The intentions grant: as written, else read for a read or write rule and deny otherwise
    /// (Consul's `loadRules`).
    pub fn intentions_or_default(self) -> AccessLevel {
        self.intentions.unwrap_or(match self.policy {
            AccessLevel::Read | AccessLevel::Write => AccessLevel::Read,
            AccessLevel::Deny | AccessLevel::List => AccessLevel::Deny,
        })
    }
}

impl Grant for AccessLevel {
    fn merge(self, incoming: AccessLevel) -> AccessLevel {
        AccessLevel::merge(self, incoming)
    }
}

impl Grant for ServiceAccess {
    /// The policy and the intentions merge each on their own, and a written intentions grant
    /// beats an unwritten one (Consul's merger keeps `Intentions` as a string, `""` losing).
    fn merge(self, incoming: ServiceAccess) -> ServiceAccess {
        ServiceAccess {
            policy: self.policy.merge(incoming.policy),
            intentions: merge_optional(self.intentions, incoming.intentions),
        }
    }
}

impl<G: Grant> LabelledRules<G> {
    /// Adds a rule; one already there for the same match kind and label merges with it.
    pub fn insert(&mut self, matching: Match, label: impl Into<String>, grant: G) {
        let rules = self.by_match_mut(matching);
        let label = label.into();
        let merged = match rules.get(&label) {
            Some(&present) => present.merge(grant),
            None => grant,
        };
        rules.insert(label, merged);
    }

    /// Adds every rule of `other`, merging per label.
    pub fn merge(&mut self, other: &LabelledRules<G>) {
        for (matching, label, grant) in other.iter() {
            self.insert(matching, label, grant);
        }
    }

    /// The rule for exactly this match kind and label.
    pub fn get(&self, matching: Match, label: &str) -> Option<G> {
        self.by_match(matching).get(label).copied()
    }

    /// Every rule: exact ones in label order, then prefix ones in label order.
    pub fn iter(&self) -> impl Iterator<Item = (Match, &str, G)> + '_ {
        let exact = self.exact.iter().map(|(label, &grant)| (Match::Exact, label.as_str(), grant));
        let prefix = self.prefix.iter().map(|(label, &grant)| (Match::Prefix, label.as_str(), grant));
        exact.chain(prefix)
    }

    /// How many rules there are, exact and prefix.
    pub fn len(&self) -> usize {
        self.exact.len() + self.prefix.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn by_match(&self, matching: Match) -> &BTreeMap<String, G> {
        match matching {
            Match::Exact => &self.exact,
            Match::Prefix => &self.prefix,
        }
    }

    fn by_match_mut(&mut self, matching: Match) -> &mut BTreeMap<String, G> {
        match matching {
            Match::Exact => &mut self.exact,
            Match::Prefix => &mut self.prefix,
        }
    }
}

// A derived `Default` would demand `G: Default`, which a grant has no meaning for.
impl<G> Default for LabelledRules<G> {
    fn default() -> Self {
        LabelledRules { exact: BTreeMap::new(), prefix: BTreeMap::new() }
    }
}

impl Rules {
    /// The rules of several policies merged into one (Consul's `MergePolicies`), as a token
    /// with all of them is authorized.
    pub fn merged<'a>(policies: impl IntoIterator<Item = &'a Rules>) -> Rules {
        let mut merged = Rules::default();
        for rules in policies {
            merged.merge(rules);
        }
        merged
    }

    /// Adds every rule of `other`: per resource, per match kind and label, by precedence.
    pub fn merge(&mut self, other: &Rules) {
        self.acl = merge_optional(self.acl, other.acl);
        self.keyring = merge_optional(self.keyring, other.keyring);
        self.operator = merge_optional(self.operator, other.operator);
        self.mesh = merge_optional(self.mesh, other.mesh);
        self.peering = merge_optional(self.peering, other.peering);
        self.agent.merge(&other.agent);
        self.event.merge(&other.event);
        self.key.merge(&other.key);
        self.node.merge(&other.node);
        self.query.merge(&other.query);
        self.service.merge(&other.service);
        self.session.merge(&other.session);
    }

    /// Whether the policy grants or denies nothing at all (an empty rules text).
    pub fn is_empty(&self) -> bool {
        self == &Rules::default()
    }
}
