//! Consul's reserved ACL objects and the policies it synthesizes.
//!
//! - The built-in policies `global-management` and `builtin/global-read-only`: their IDs,
//!   names, descriptions, rules text (what the API shows) and typed rules (what is enforced).
//! - The anonymous token's reserved AccessorID and SecretID.
//! - Synthetic policies: a token's service identity, node identity or `builtin/dns` templated
//!   policy stands for rules rendered from a template (`agent/structs/acl*.go`,
//!   `acltemplatedpolicy/policies/ce/*.hcl`); [`SyntheticPolicy`] holds them with Consul's
//!   ID, name and description.
//! - The name checks Consul applies to identities and policies (`acl/validation.go`).
//!
//! The rules texts are kept byte for byte (tabs included): a synthetic policy's ID is derived
//! from its text.

use super::access::AccessLevel;
use super::rules::{Match, Rules, ServiceAccess};
use crate::go_quote;

/// A policy Consul makes up for an identity or a templated policy, never stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntheticPolicy {
    /// Derived from the rules text; see [`synthetic_policy_id`].
    pub id: String,
    /// `synthetic-policy-<id>`.
    pub name: String,
    /// Says what the policy stands for.
    pub description: String,
    /// The rendered template, as the API shows it.
    pub rules_text: String,
    /// The rules, as they are enforced.
    pub rules: Rules,
}

impl SyntheticPolicy {
    /// The policy of a service identity (`builtin/service` renders the same): write on the
    /// service and its sidecar proxy, read on every service and node. Call
    /// [`is_valid_service_identity_name`] first; Consul refuses other names before it renders.
    pub fn service_identity(service: &str) -> SyntheticPolicy {
        let rules_text = format!(
            "\nservice \"{service}\" {{\n\tpolicy = \"write\"\n}}\nservice \"{service}-sidecar-proxy\" {{\n\tpolicy = \"write\"\n}}\nservice_prefix \"\" {{\n\tpolicy = \"read\"\n}}\nnode_prefix \"\" {{\n\tpolicy = \"read\"\n}}"
        );
        let description = format!("synthetic policy for service identity {}", go_quote::quote(service));
        SyntheticPolicy::new(rules_text, description, service_identity_rules(service))
    }

    /// The policy of a node identity (`builtin/node` renders the same): write on the node, read
    /// on every service. Consul scopes it to the identity's datacenter, which is the resolver's
    /// business.
    pub fn node_identity(node: &str) -> SyntheticPolicy {
        let rules_text = format!(
            "\nnode \"{node}\" {{\n\tpolicy = \"write\"\n}}\nservice_prefix \"\" {{\n\tpolicy = \"read\"\n}}"
        );
        let description = format!("synthetic policy for node identity {}", go_quote::quote(node));
        SyntheticPolicy::new(rules_text, description, node_identity_rules(node))
    }

    /// The policy of the `builtin/dns` templated policy, meant for `acl.tokens.dns`: read on
    /// every node, service and prepared query.
    pub fn templated_dns() -> SyntheticPolicy {
        let description =
            format!("synthetic policy generated from templated policy: {DNS_TEMPLATED_POLICY_NAME}");
        SyntheticPolicy::new(DNS_TEMPLATED_POLICY_RULES.to_owned(), description, dns_rules())
    }

    fn new(rules_text: String, description: String, rules: Rules) -> SyntheticPolicy {
        let id = synthetic_policy_id(&rules_text);
        SyntheticPolicy { name: format!("synthetic-policy-{id}"), id, description, rules_text, rules }
    }
}

/// The rules of `global-management`: write on everything, intentions included.
pub fn global_management() -> Rules {
    everything(AccessLevel::Write)
}

/// The rules of `builtin/global-read-only`: read on everything, intentions included.
pub fn global_read_only() -> Rules {
    everything(AccessLevel::Read)
}

/// The rules of a service identity for `service`.
pub fn service_identity_rules(service: &str) -> Rules {
    let mut rules = Rules::default();
    rules.service.insert(Match::Exact, service, ServiceAccess::new(AccessLevel::Write));
    rules.service.insert(
        Match::Exact,
        format!("{service}-sidecar-proxy"),
        ServiceAccess::new(AccessLevel::Write),
    );
    rules.service.insert(Match::Prefix, "", ServiceAccess::new(AccessLevel::Read));
    rules.node.insert(Match::Prefix, "", AccessLevel::Read);
    rules
}

/// The rules of a node identity for `node`.
pub fn node_identity_rules(node: &str) -> Rules {
    let mut rules = Rules::default();
    rules.node.insert(Match::Exact, node, AccessLevel::Write);
    rules.service.insert(Match::Prefix, "", ServiceAccess::new(AccessLevel::Read));
    rules
}

/// The rules of the `builtin/dns` templated policy.
pub fn dns_rules() -> Rules {
    let mut rules = Rules::default();
    rules.node.insert(Match::Prefix, "", AccessLevel::Read);
    rules.service.insert(Match::Prefix, "", ServiceAccess::new(AccessLevel::Read));
    rules.query.insert(Match::Prefix, "", AccessLevel::Read);
    rules
}

/// A synthetic policy's ID, as Consul computes it: `fmt.Sprintf("%x", fnv.New128a().Sum(rules))`.
/// Go's `Sum(b)` appends the hash of what was written (nothing) to `b`, so the ID is the rules
/// text in hex followed by FNV-128a's offset basis, not a hash of the text.
pub fn synthetic_policy_id(rules_text: &str) -> String {
    let mut id = String::with_capacity(2 * rules_text.len() + FNV128A_OFFSET_BASIS_HEX.len());
    for byte in rules_text.bytes() {
        id.push_str(&format!("{byte:02x}"));
    }
    id.push_str(FNV128A_OFFSET_BASIS_HEX);
    id
}

/// Whether `id` is in the range Consul reserves for built-in objects.
pub fn is_reserved_id(id: &str) -> bool {
    id.starts_with(RESERVED_ID_PREFIX)
}

/// Whether `name` may be a service identity's ServiceName: 1 to 256 bytes of lowercase letters,
/// digits, `-` and `_`, starting and ending with a letter or digit.
pub fn is_valid_service_identity_name(name: &str) -> bool {
    is_identity_name(name, SERVICE_IDENTITY_NAME_BYTES_MAX)
}

/// Whether `name` may be a node identity's NodeName: the same rule as for services.
pub fn is_valid_node_identity_name(name: &str) -> bool {
    is_identity_name(name, NODE_IDENTITY_NAME_BYTES_MAX)
}

/// Whether `name` may name a policy: 1 to 128 bytes of letters, digits, `-` and `_`, with at most
/// one `/` that is not first, and not in the reserved `builtin/` namespace.
pub fn is_valid_policy_name(name: &str) -> bool {
    if name.is_empty() || name.len() > POLICY_NAME_BYTES_MAX {
        return false;
    }
    if name.starts_with('/') || name.starts_with(RESERVED_BUILTIN_PREFIX) {
        return false;
    }
    let word = |part: &str| part.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    match name.split_once('/') {
        Some((namespace, rest)) => !namespace.is_empty() && word(namespace) && word(rest),
        None => word(name),
    }
}

/// The identity-name pattern `^[a-z0-9]([a-z0-9\-_]*[a-z0-9])?$`, bounded in length.
fn is_identity_name(name: &str, bytes_max: usize) -> bool {
    let bytes = name.as_bytes();
    let edge = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let inner = |b: &u8| edge(b) || *b == b'-' || *b == b'_';
    match (bytes.first(), bytes.last()) {
        (Some(first), Some(last)) => {
            bytes.len() <= bytes_max && edge(first) && edge(last) && bytes.iter().all(inner)
        }
        _ => false,
    }
}

/// The same level on every resource, as the two global built-in policies grant.
fn everything(level: AccessLevel) -> Rules {
    let mut rules = Rules {
        acl: Some(level),
        keyring: Some(level),
        operator: Some(level),
        mesh: Some(level),
        peering: Some(level),
        ..Rules::default()
    };
    for labelled in [
        &mut rules.agent,
        &mut rules.event,
        &mut rules.key,
        &mut rules.node,
        &mut rules.query,
        &mut rules.session,
    ] {
        labelled.insert(Match::Prefix, "", level);
    }
    rules.service.insert(Match::Prefix, "", ServiceAccess::with_intentions(level, level));
    rules
}

/// The ID of `global-management`.
pub const GLOBAL_MANAGEMENT_POLICY_ID: &str = "00000000-0000-0000-0000-000000000001";
/// The name `global-management` carries until renamed.
pub const GLOBAL_MANAGEMENT_POLICY_NAME: &str = "global-management";
/// The description of `global-management`.
pub const GLOBAL_MANAGEMENT_POLICY_DESCRIPTION: &str = "Builtin Policy that grants unlimited access";
/// The rules text of `global-management`, which can't be changed.
pub const GLOBAL_MANAGEMENT_POLICY_RULES: &str = "\nacl = \"write\"\nagent_prefix \"\" {\n\tpolicy = \"write\"\n}\nevent_prefix \"\" {\n\tpolicy = \"write\"\n}\nkey_prefix \"\" {\n\tpolicy = \"write\"\n}\nkeyring = \"write\"\nnode_prefix \"\" {\n\tpolicy = \"write\"\n}\noperator = \"write\"\nmesh = \"write\"\npeering = \"write\"\nquery_prefix \"\" {\n\tpolicy = \"write\"\n}\nservice_prefix \"\" {\n\tpolicy = \"write\"\n\tintentions = \"write\"\n}\nsession_prefix \"\" {\n\tpolicy = \"write\"\n}";

/// The ID of `builtin/global-read-only` (Consul 1.16+).
pub const GLOBAL_READ_ONLY_POLICY_ID: &str = "00000000-0000-0000-0000-000000000002";
/// The name of the global read-only policy.
pub const GLOBAL_READ_ONLY_POLICY_NAME: &str = "builtin/global-read-only";
/// The description of the global read-only policy.
pub const GLOBAL_READ_ONLY_POLICY_DESCRIPTION: &str =
    "Builtin Policy that grants unlimited read-only access to all components";
/// The rules text of the global read-only policy.
pub const GLOBAL_READ_ONLY_POLICY_RULES: &str = "\nacl = \"read\"\nagent_prefix \"\" {\n\tpolicy = \"read\"\n}\nevent_prefix \"\" {\n\tpolicy = \"read\"\n}\nkey_prefix \"\" {\n\tpolicy = \"read\"\n}\nkeyring = \"read\"\nnode_prefix \"\" {\n\tpolicy = \"read\"\n}\noperator = \"read\"\nmesh = \"read\"\npeering = \"read\"\nquery_prefix \"\" {\n\tpolicy = \"read\"\n}\nservice_prefix \"\" {\n\tpolicy = \"read\"\n\tintentions = \"read\"\n}\nsession_prefix \"\" {\n\tpolicy = \"read\"\n}";

/// The ID of the `builtin/service` templated policy.
pub const SERVICE_TEMPLATED_POLICY_ID: &str = "00000000-0000-0000-0000-000000000003";
/// The name of the templated policy a service identity is an instance of.
pub const SERVICE_TEMPLATED_POLICY_NAME: &str = "builtin/service";
/// The ID of the `builtin/node` templated policy.
pub const NODE_TEMPLATED_POLICY_ID: &str = "00000000-0000-0000-0000-000000000004";
/// The name of the templated policy a node identity is an instance of.
pub const NODE_TEMPLATED_POLICY_NAME: &str = "builtin/node";
/// The ID of the `builtin/dns` templated policy.
pub const DNS_TEMPLATED_POLICY_ID: &str = "00000000-0000-0000-0000-000000000005";
/// The name of the templated policy for DNS tokens.
pub const DNS_TEMPLATED_POLICY_NAME: &str = "builtin/dns";
/// The rules text `builtin/dns` renders (it takes no variables).
pub const DNS_TEMPLATED_POLICY_RULES: &str =
    "\nnode_prefix \"\" {\n\tpolicy = \"read\"\n}\nservice_prefix \"\" {\n\tpolicy = \"read\"\n}\nquery_prefix \"\" {\n\tpolicy = \"read\"\n}";

/// The anonymous token's AccessorID: used for requests that carry no token.
pub const ANONYMOUS_TOKEN_ACCESSOR_ID: &str = "00000000-0000-0000-0000-000000000002";
/// The anonymous token's SecretID.
pub const ANONYMOUS_TOKEN_SECRET_ID: &str = "anonymous";
/// The anonymous token's description.
pub const ANONYMOUS_TOKEN_DESCRIPTION: &str = "Anonymous Token";

/// Every ID starting with this is reserved for built-in objects.
pub const RESERVED_ID_PREFIX: &str = "00000000-0000-0000-0000-0000000000";
/// Policy names in this namespace are Consul's own.
pub const RESERVED_BUILTIN_PREFIX: &str = "builtin/";

/// The longest service identity name, in bytes (Consul's `ServiceIdentityNameMaxLength`).
pub const SERVICE_IDENTITY_NAME_BYTES_MAX: usize = 256;
/// The longest node identity name, in bytes (Consul's `NodeIdentityNameMaxLength`).
pub const NODE_IDENTITY_NAME_BYTES_MAX: usize = 256;
/// The longest policy name, in bytes (Consul's `PolicyNameMaxLength`).
pub const POLICY_NAME_BYTES_MAX: usize = 128;

/// FNV-128a's offset basis in hex: the "hash" of nothing, which Consul's synthetic IDs end in.
const FNV128A_OFFSET_BASIS_HEX: &str = "6c62272e07bb014262b821756295c58d";
