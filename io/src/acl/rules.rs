//! A policy's rules text, read as Consul reads it (`acl.NewPolicyFromSource`): HCL or JSON,
//! decoded into the rule language's resources, each level checked, with Consul's error words.
//!
//! ```text
//! key_prefix "" { policy = "deny" }                      labelled: <resource> "<label>" { policy = "<level>" }
//! service "web" { policy = "write" intentions = "read" }
//! operator = "read"                                      unlabelled: <resource> = "<level>"
//! {"key": {"foo/": {"policy": "write"}}}                 JSON: the same, as objects
//! ```
//!
//! Consul decodes the text into a Go struct with HCL1's decoder and then validates it, in the
//! struct's field order (`acl`, `agent`, `agent_prefix`, `key`, … `peering`). This module does
//! the same in three passes over what [`hcl1::parse`] gives: decode every resource (shape errors,
//! `Failed to parse ACL rules: ...`), validate every level (`Invalid key policy: ...`, naming the
//! rule as Go's `%#v` prints it), then build the typed [`Rules`]. As in Consul:
//!
//! - Empty text is a valid policy that grants nothing.
//! - Keys that name no resource are ignored, at the top level and inside a rule (Consul's
//!   decoder reports no unused keys), so `namespace "x" {}` or a misspelt `polcy` is inert.
//! - Resource and field names match without regard to ASCII case (`KEY`, `Policy`), and levels
//!   too (`WRITE`), though see below.
//! - `list` is valid only on `key` and `key_prefix`; a missing `policy` is an invalid one.
//! - A number is read as its digits (`policy = 1` is the invalid policy `"1"`); a bool or a
//!   float is a decode error.
//! - Rules repeated for one label merge by precedence, as rules from several policies do.
//!
//! Where this differs from Consul:
//!
//! - Decode errors carry no `At line:col:` position ([`hcl1::parse`] returns values without
//!   positions); the words after it are HCL1's.
//! - [`hcl1::parse`] gives a repeated scalar key its last value, so a document with
//!   `policy = "read"` twice in one block is accepted. The newest Consul releases refuse it
//!   (`The argument "policy" at L:C was already set. Each argument can only be defined once`).
//! - A list of objects (`key = [{...}]`) is read as JSON's list of labelled objects; HCL1's
//!   decoder refuses it in HCL syntax, and a block with two labels (`key "a" "b" {...}`),
//!   which HCL1 reads as label `a`, is read here as label `a` with no policy.
//! - A level spelt in other than lower case: Consul accepts it but its merger compares spellings
//!   exactly. On `acl`, `keyring`, `operator`, `mesh` and `peering` that makes it inert, and so
//!   it is here. On a labelled rule Consul enforces it but lets any lower-case rule for the same
//!   label replace it, and a `WRITE` service rule's intentions default to deny; here such a rule
//!   is simply the level it names.

use muster_core::acl::{AccessLevel, LabelledRules, Match, Rules, ServiceAccess};
use muster_core::go_quote;
use serde_json::{Map, Value};

use crate::config::hcl1;

/// Why a rules text is not a valid policy, in Consul's words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RulesError {
    /// The text is neither HCL nor JSON, or a resource has a shape the decoder refuses.
    #[error("Failed to parse ACL rules: {0}")]
    Parse(String),
    /// A rule's level is not one its resource takes.
    #[error("Invalid {resource} policy: {rule}")]
    Invalid {
        /// What was checked: the resource key (`key_prefix`), or `service intentions`.
        resource: String,
        /// The offending rule as Go's `%#v` prints it: `"nope"` for an unlabelled resource,
        /// `&acl.KeyRule{Prefix:"foo", Policy:"nope", EnterpriseRule:acl.EnterpriseRule{}}`
        /// for a labelled one.
        rule: String,
    },
}

/// Reads a policy's rules text into typed rules.
///
/// # Errors
///
/// [`RulesError::Parse`] for text that is not HCL or JSON or a resource of the wrong shape,
/// [`RulesError::Invalid`] for a level its resource does not take. The first error in Consul's
/// order is reported.
pub fn parse(text: &str) -> Result<Rules, RulesError> {
    // Consul's hot path: no text, no rules.
    if text.is_empty() {
        return Ok(Rules::default());
    }
    let document = hcl1::parse(text).map_err(|error| RulesError::Parse(error.to_string()))?;
    let decoded = decode(&document)?;
    for (resource, value) in &decoded {
        validate(resource, value)?;
    }
    let mut rules = Rules::default();
    for (resource, value) in &decoded {
        add(&mut rules, resource, value);
    }
    Ok(rules)
}

/// A resource of the rule language, as Consul's `PolicyRules` declares it.
struct Resource {
    /// The key in the text (and in the struct's `hcl` tag).
    key: &'static str,
    shape: Shape,
}

/// How a resource is written.
#[derive(Clone, Copy)]
enum Shape {
    /// `acl = "write"`: one level for all of it.
    Unlabelled(Unlabelled),
    /// `key "a" { policy = "read" }`: rules by label.
    Labelled(Labelled, Match),
}

#[derive(Clone, Copy)]
enum Unlabelled {
    Acl,
    Keyring,
    Operator,
    Mesh,
    Peering,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Labelled {
    Agent,
    Event,
    Key,
    Node,
    Query,
    Service,
    Session,
}

/// A resource's value as decoded, before validation: strings as written.
enum Decoded {
    /// An unlabelled resource's level, if the text sets it.
    Level(Option<String>),
    /// A labelled resource's rules, in the text's order.
    Rules(Vec<RawRule>),
}

/// One labelled rule as written (Consul's `KeyRule`, `ServiceRule`, …).
struct RawRule {
    label: String,
    /// Empty when the rule has no `policy`.
    policy: String,
    /// Empty when the rule has no `intentions` (service rules only).
    intentions: String,
}

/// Every resource, in `PolicyRules` field order, which is the order Consul decodes and validates
/// them in, and so decides which error a text with several gets.
const RESOURCES: [Resource; 19] = [
    Resource { key: "acl", shape: Shape::Unlabelled(Unlabelled::Acl) },
    Resource { key: "agent", shape: Shape::Labelled(Labelled::Agent, Match::Exact) },
    Resource { key: "agent_prefix", shape: Shape::Labelled(Labelled::Agent, Match::Prefix) },
    Resource { key: "key", shape: Shape::Labelled(Labelled::Key, Match::Exact) },
    Resource { key: "key_prefix", shape: Shape::Labelled(Labelled::Key, Match::Prefix) },
    Resource { key: "node", shape: Shape::Labelled(Labelled::Node, Match::Exact) },
    Resource { key: "node_prefix", shape: Shape::Labelled(Labelled::Node, Match::Prefix) },
    Resource { key: "service", shape: Shape::Labelled(Labelled::Service, Match::Exact) },
    Resource { key: "service_prefix", shape: Shape::Labelled(Labelled::Service, Match::Prefix) },
    Resource { key: "session", shape: Shape::Labelled(Labelled::Session, Match::Exact) },
    Resource { key: "session_prefix", shape: Shape::Labelled(Labelled::Session, Match::Prefix) },
    Resource { key: "event", shape: Shape::Labelled(Labelled::Event, Match::Exact) },
    Resource { key: "event_prefix", shape: Shape::Labelled(Labelled::Event, Match::Prefix) },
    Resource { key: "query", shape: Shape::Labelled(Labelled::Query, Match::Exact) },
    Resource { key: "query_prefix", shape: Shape::Labelled(Labelled::Query, Match::Prefix) },
    Resource { key: "keyring", shape: Shape::Unlabelled(Unlabelled::Keyring) },
    Resource { key: "operator", shape: Shape::Unlabelled(Unlabelled::Operator) },
    Resource { key: "mesh", shape: Shape::Unlabelled(Unlabelled::Mesh) },
    Resource { key: "peering", shape: Shape::Unlabelled(Unlabelled::Peering) },
];

/// The first pass: every resource the document sets, decoded as Consul's struct decoder would.
fn decode(document: &Map<String, Value>) -> Result<Vec<(&'static Resource, Decoded)>, RulesError> {
    let mut decoded = Vec::new();
    for resource in &RESOURCES {
        let values: Vec<&Value> = fields(document, resource.key).collect();
        if values.is_empty() {
            continue;
        }
        let value = match resource.shape {
            Shape::Unlabelled(_) => Decoded::Level(decode_level(resource.key, &values)?),
            Shape::Labelled(..) => Decoded::Rules(decode_rules(resource.key, &values)?),
        };
        decoded.push((resource, value));
    }
    Ok(decoded)
}

/// The values of every key of `object` that names `field`: HCL1's decoder matches names
/// without regard to case (`strings.EqualFold`; here ASCII case).
fn fields<'a>(object: &'a Map<String, Value>, field: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
    object.iter().filter(move |(key, _)| key.eq_ignore_ascii_case(field)).map(|(_, value)| value)
}

/// An unlabelled resource's level; the last one written stands.
fn decode_level(key: &str, values: &[&Value]) -> Result<Option<String>, RulesError> {
    let mut level = None;
    for value in values {
        level = Some(decode_string(&format!("root.{key}"), value)?);
    }
    Ok(level)
}

/// A labelled resource's rules: an object from label to rule body, or (JSON) a list of them.
fn decode_rules(key: &str, values: &[&Value]) -> Result<Vec<RawRule>, RulesError> {
    let mut rules = Vec::new();
    for value in values {
        match value {
            Value::Object(by_label) => decode_labels(key, by_label, &mut rules)?,
            Value::Array(items) => {
                for item in items {
                    let Value::Object(by_label) = item else {
                        let at = format!("root.{key}[{}]", rules.len());
                        return Err(parse_error(format!(
                            "{at}: not an object type for struct ({})",
                            go_ast_type(item)
                        )));
                    };
                    decode_labels(key, by_label, &mut rules)?;
                }
            }
            scalar => return Err(parse_error(format!("unknown slice type: {}", go_ast_type(scalar)))),
        }
    }
    Ok(rules)
}

/// The rules of one object from label to body. A label given twice in HCL comes as a list of
/// bodies; a body that is no object has no `policy` (so is an invalid rule, as in Consul).
fn decode_labels(
    key: &str,
    by_label: &Map<String, Value>,
    rules: &mut Vec<RawRule>,
) -> Result<(), RulesError> {
    for (label, body) in by_label {
        let bodies = match body {
            Value::Array(bodies) => bodies.iter().collect(),
            body => vec![body],
        };
        for body in bodies {
            let at = format!("root.{key}[{}]", rules.len());
            rules.push(decode_body(&at, label, body)?);
        }
    }
    Ok(())
}

/// One rule's body: its `policy` and `intentions`, the last of each standing.
fn decode_body(at: &str, label: &str, body: &Value) -> Result<RawRule, RulesError> {
    let mut rule = RawRule { label: label.to_owned(), policy: String::new(), intentions: String::new() };
    let Value::Object(body) = body else {
        return Ok(rule);
    };
    for value in fields(body, "Policy") {
        rule.policy = decode_string(&format!("{at}.Policy"), value)?;
    }
    for value in fields(body, "Intentions") {
        rule.intentions = decode_string(&format!("{at}.Intentions"), value)?;
    }
    Ok(rule)
}

/// A string field's value. HCL1's decoder takes a string, or an integer as its digits, and
/// refuses anything else.
fn decode_string(at: &str, value: &Value) -> Result<String, RulesError> {
    match value {
        Value::String(text) => Ok(text.clone()),
        Value::Number(number) if !number.is_f64() => Ok(number.to_string()),
        other => Err(parse_error(format!("{at}: unknown type for string {}", go_ast_type(other)))),
    }
}

/// The HCL1 syntax-tree type Consul's error names for a value of this kind.
fn go_ast_type(value: &Value) -> &'static str {
    match value {
        Value::Object(_) => "*ast.ObjectList",
        Value::Array(_) => "*ast.ListType",
        Value::String(_) | Value::Number(_) | Value::Bool(_) | Value::Null => "*ast.LiteralType",
    }
}

fn parse_error(message: String) -> RulesError {
    RulesError::Parse(message)
}

/// The second pass: every level must be one its resource takes. Unlabelled ones may be empty.
fn validate(resource: &Resource, value: &Decoded) -> Result<(), RulesError> {
    match (resource.shape, value) {
        (Shape::Unlabelled(_), Decoded::Level(Some(level))) if !level.is_empty() && !valid(level, false) => {
            Err(RulesError::Invalid { resource: resource.key.to_owned(), rule: go_quote::quote(level) })
        }
        (Shape::Labelled(kind, _), Decoded::Rules(rules)) => {
            for rule in rules {
                validate_rule(resource.key, kind, rule)?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

fn validate_rule(key: &str, kind: Labelled, rule: &RawRule) -> Result<(), RulesError> {
    let invalid = |what: String| RulesError::Invalid { resource: what, rule: go_syntax(kind, rule) };
    if !valid(&rule.policy, kind == Labelled::Key) {
        return Err(invalid(key.to_owned()));
    }
    if kind == Labelled::Service && !rule.intentions.is_empty() && !valid(&rule.intentions, false) {
        return Err(invalid(format!("{key} intentions")));
    }
    Ok(())
}

/// Whether `level` names a level, `list` only where allowed (Consul's `isPolicyValid`).
fn valid(level: &str, list_allowed: bool) -> bool {
    match AccessLevel::parse(level) {
        Some(AccessLevel::List) => list_allowed,
        Some(_) => true,
        None => false,
    }
}

/// A rule as Go's `%#v` prints Consul's pointer to it.
fn go_syntax(kind: Labelled, rule: &RawRule) -> String {
    let (type_name, label_field) = match kind {
        Labelled::Agent => ("AgentRule", "Node"),
        Labelled::Event => ("EventRule", "Event"),
        Labelled::Key => ("KeyRule", "Prefix"),
        Labelled::Node => ("NodeRule", "Name"),
        Labelled::Query => ("PreparedQueryRule", "Prefix"),
        Labelled::Service => ("ServiceRule", "Name"),
        Labelled::Session => ("SessionRule", "Node"),
    };
    let mut fields = vec![
        format!("{label_field}:{}", go_quote::quote(&rule.label)),
        format!("Policy:{}", go_quote::quote(&rule.policy)),
    ];
    if kind == Labelled::Service {
        fields.push(format!("Intentions:{}", go_quote::quote(&rule.intentions)));
    }
    // Key, node and service rules embed Consul Enterprise's (in CE, empty) rule.
    if matches!(kind, Labelled::Key | Labelled::Node | Labelled::Service) {
        fields.push("EnterpriseRule:acl.EnterpriseRule{}".to_owned());
    }
    format!("&acl.{type_name}{{{}}}", fields.join(", "))
}

/// The third pass: a validated resource into the typed rules.
fn add(rules: &mut Rules, resource: &Resource, value: &Decoded) {
    match (resource.shape, value) {
        (Shape::Unlabelled(which), Decoded::Level(level)) => {
            let slot = match which {
                Unlabelled::Acl => &mut rules.acl,
                Unlabelled::Keyring => &mut rules.keyring,
                Unlabelled::Operator => &mut rules.operator,
                Unlabelled::Mesh => &mut rules.mesh,
                Unlabelled::Peering => &mut rules.peering,
            };
            *slot = level.as_deref().and_then(effective_unlabelled);
        }
        (Shape::Labelled(Labelled::Service, matching), Decoded::Rules(raw)) => {
            for rule in raw {
                let access = ServiceAccess {
                    policy: level(&rule.policy),
                    intentions: AccessLevel::parse(&rule.intentions),
                };
                rules.service.insert(matching, rule.label.clone(), access);
            }
        }
        (Shape::Labelled(kind, matching), Decoded::Rules(raw)) => {
            let labelled = labelled_mut(rules, kind);
            for rule in raw {
                labelled.insert(matching, rule.label.clone(), level(&rule.policy));
            }
        }
        (Shape::Unlabelled(_), Decoded::Rules(_)) | (Shape::Labelled(..), Decoded::Level(_)) => {
            unreachable!("decode gives each shape its own kind of value")
        }
    }
}

/// An unlabelled resource's level as Consul's merger leaves it: only a lower-case spelling
/// takes effect (its `takesPrecedenceOver` compares strings, and `"WRITE"` beats not even `""`).
fn effective_unlabelled(level: &str) -> Option<AccessLevel> {
    AccessLevel::parse(level).filter(|parsed| parsed.as_str() == level)
}

/// A validated rule's level.
fn level(text: &str) -> AccessLevel {
    AccessLevel::parse(text).expect("validation passed every rule's level")
}

fn labelled_mut(rules: &mut Rules, kind: Labelled) -> &mut LabelledRules<AccessLevel> {
    match kind {
        Labelled::Agent => &mut rules.agent,
        Labelled::Event => &mut rules.event,
        Labelled::Key => &mut rules.key,
        Labelled::Node => &mut rules.node,
        Labelled::Query => &mut rules.query,
        Labelled::Session => &mut rules.session,
        Labelled::Service => unreachable!("service rules carry intentions and are added on their own"),
    }
}

#[cfg(test)]
mod tests {
    //! Tables from Consul's `acl/policy_test.go` (its "Bad Policy" cases), the rules docs
    //! (`website/content/docs/security/acl/rules.mdx`) and the reference (consul-wave2.md §1.4).

    use muster_core::acl::{
        dns_rules, global_management, global_read_only, SyntheticPolicy, DNS_TEMPLATED_POLICY_RULES,
        GLOBAL_MANAGEMENT_POLICY_RULES, GLOBAL_READ_ONLY_POLICY_RULES,
    };

    use super::*;

    use AccessLevel::{Deny, List, Read, Write};

    /// Rules built by hand: the expected side of the tables.
    fn expected(build: impl FnOnce(&mut Rules)) -> Rules {
        let mut rules = Rules::default();
        build(&mut rules);
        rules
    }

    #[test]
    fn valid_texts() {
        let table: Vec<(&str, &str, Rules)> = vec![
            ("empty text", "", Rules::default()),
            ("only blanks and a comment", "  \n# nothing\n", Rules::default()),
            ("a catch-all deny", r#"key_prefix "" { policy = "deny" }"#, expected(|r| r.key.insert(Match::Prefix, "", Deny))),
            (
                "service with intentions",
                r#"service "web" { policy = "write" intentions = "read" }"#,
                expected(|r| r.service.insert(Match::Exact, "web", ServiceAccess::with_intentions(Write, Read))),
            ),
            (
                "service without intentions",
                r#"service_prefix "" { policy = "read" }"#,
                expected(|r| r.service.insert(Match::Prefix, "", ServiceAccess::new(Read))),
            ),
            ("an unlabelled resource", r#"operator = "read""#, expected(|r| r.operator = Some(Read))),
            ("list on a key", r#"key "foo" { policy = "list" }"#, expected(|r| r.key.insert(Match::Exact, "foo", List))),
            (
                "the rules docs' KV example",
                "key_prefix \"\" {\n  policy = \"read\"\n}\nkey_prefix \"foo/\" {\n  policy = \"write\"\n}\nkey_prefix \"foo/private/\" {\n  policy = \"deny\"\n}\noperator = \"read\"\n",
                expected(|r| {
                    r.key.insert(Match::Prefix, "", Read);
                    r.key.insert(Match::Prefix, "foo/", Write);
                    r.key.insert(Match::Prefix, "foo/private/", Deny);
                    r.operator = Some(Read);
                }),
            ),
            (
                "every unlabelled resource",
                "acl = \"write\"\nkeyring = \"read\"\noperator = \"deny\"\nmesh = \"write\"\npeering = \"read\"",
                expected(|r| {
                    r.acl = Some(Write);
                    r.keyring = Some(Read);
                    r.operator = Some(Deny);
                    r.mesh = Some(Write);
                    r.peering = Some(Read);
                }),
            ),
            (
                "every labelled resource",
                "agent \"a\" { policy = \"read\" }\nagent_prefix \"\" { policy = \"deny\" }\nevent_prefix \"deploy-\" { policy = \"write\" }\nnode \"n1\" { policy = \"write\" }\nquery_prefix \"\" { policy = \"read\" }\nsession \"n1\" { policy = \"write\" }\nevent \"x\" { policy = \"deny\" }",
                expected(|r| {
                    r.agent.insert(Match::Exact, "a", Read);
                    r.agent.insert(Match::Prefix, "", Deny);
                    r.event.insert(Match::Prefix, "deploy-", Write);
                    r.event.insert(Match::Exact, "x", Deny);
                    r.node.insert(Match::Exact, "n1", Write);
                    r.query.insert(Match::Prefix, "", Read);
                    r.session.insert(Match::Exact, "n1", Write);
                }),
            ),
            (
                "JSON",
                r#"{"key": {"foo/": {"policy": "write"}, "": {"policy": "read"}}, "operator": "read", "service": {"web": {"policy": "write", "intentions": "deny"}}}"#,
                expected(|r| {
                    r.key.insert(Match::Exact, "foo/", Write);
                    r.key.insert(Match::Exact, "", Read);
                    r.operator = Some(Read);
                    r.service.insert(Match::Exact, "web", ServiceAccess::with_intentions(Write, Deny));
                }),
            ),
            (
                "JSON with a list of labelled objects",
                r#"{"key_prefix": [{"a/": {"policy": "read"}}, {"b/": {"policy": "write"}}]}"#,
                expected(|r| {
                    r.key.insert(Match::Prefix, "a/", Read);
                    r.key.insert(Match::Prefix, "b/", Write);
                }),
            ),
            (
                "an object assigned instead of blocks",
                r#"key = { foo = { policy = "read" } }"#,
                expected(|r| r.key.insert(Match::Exact, "foo", Read)),
            ),
            (
                "unknown resources and fields are ignored",
                "foo = \"bar\"\nnamespace \"x\" { policy = \"write\" }\nidentity \"w\" { policy = \"write\" }\nkey \"a\" { policy = \"read\" polcy = \"write\" sentinel { code = \"x\" } }",
                expected(|r| r.key.insert(Match::Exact, "a", Read)),
            ),
            (
                "names match in any case",
                r#"KEY "a" { Policy = "read" } Key_Prefix "b" { POLICY = "write" }"#,
                expected(|r| {
                    r.key.insert(Match::Exact, "a", Read);
                    r.key.insert(Match::Prefix, "b", Write);
                }),
            ),
            (
                "a label repeated merges by precedence",
                "key \"a\" { policy = \"write\" }\nkey \"a\" { policy = \"read\" }\nkey \"b\" { policy = \"read\" }\nkey \"b\" { policy = \"deny\" }",
                expected(|r| {
                    r.key.insert(Match::Exact, "a", Write);
                    r.key.insert(Match::Exact, "b", Deny);
                }),
            ),
            (
                "exact and prefix rules with one label stay apart",
                "node \"web\" { policy = \"write\" }\nnode_prefix \"web\" { policy = \"read\" }",
                expected(|r| {
                    r.node.insert(Match::Exact, "web", Write);
                    r.node.insert(Match::Prefix, "web", Read);
                }),
            ),
            ("an empty unlabelled level sets nothing", r#"acl = """#, Rules::default()),
            (
                "levels in upper case: inert when unlabelled, enforced when labelled",
                "operator = \"WRITE\"\nkey \"a\" { policy = \"WRITE\" }",
                expected(|r| r.key.insert(Match::Exact, "a", Write)),
            ),
            ("a labelled resource with no labels", "key {}", Rules::default()),
        ];
        for (why, text, rules) in table {
            assert_eq!(parse(text), Ok(rules), "{why}: {text}");
        }
    }

    #[test]
    fn invalid_levels() {
        let table: [(&str, &str); 22] = [
            (r#"acl = "nope""#, r#"Invalid acl policy: "nope""#),
            (r#"acl = "list""#, r#"Invalid acl policy: "list""#),
            (
                r#"agent "foo" { policy = "nope" }"#,
                r#"Invalid agent policy: &acl.AgentRule{Node:"foo", Policy:"nope"}"#,
            ),
            (
                r#"agent_prefix "foo" { policy = "list" }"#,
                r#"Invalid agent_prefix policy: &acl.AgentRule{Node:"foo", Policy:"list"}"#,
            ),
            (
                r#"key "foo" { policy = "nope" }"#,
                r#"Invalid key policy: &acl.KeyRule{Prefix:"foo", Policy:"nope", EnterpriseRule:acl.EnterpriseRule{}}"#,
            ),
            (
                r#"key_prefix "foo" { policy = "nope" }"#,
                r#"Invalid key_prefix policy: &acl.KeyRule{Prefix:"foo", Policy:"nope", EnterpriseRule:acl.EnterpriseRule{}}"#,
            ),
            (
                r#"node "foo" { policy = "list" }"#,
                r#"Invalid node policy: &acl.NodeRule{Name:"foo", Policy:"list", EnterpriseRule:acl.EnterpriseRule{}}"#,
            ),
            (
                r#"node_prefix "foo" { policy = "nope" }"#,
                r#"Invalid node_prefix policy: &acl.NodeRule{Name:"foo", Policy:"nope", EnterpriseRule:acl.EnterpriseRule{}}"#,
            ),
            (
                r#"service "foo" { policy = "nope" }"#,
                r#"Invalid service policy: &acl.ServiceRule{Name:"foo", Policy:"nope", Intentions:"", EnterpriseRule:acl.EnterpriseRule{}}"#,
            ),
            (
                r#"service "foo" { policy = "read" intentions = "list" }"#,
                r#"Invalid service intentions policy: &acl.ServiceRule{Name:"foo", Policy:"read", Intentions:"list", EnterpriseRule:acl.EnterpriseRule{}}"#,
            ),
            (
                r#"service_prefix "" { policy = "write" intentions = "nope" }"#,
                r#"Invalid service_prefix intentions policy: &acl.ServiceRule{Name:"", Policy:"write", Intentions:"nope", EnterpriseRule:acl.EnterpriseRule{}}"#,
            ),
            (
                r#"session "foo" { policy = "list" }"#,
                r#"Invalid session policy: &acl.SessionRule{Node:"foo", Policy:"list"}"#,
            ),
            (
                r#"session_prefix "" { policy = "nope" }"#,
                r#"Invalid session_prefix policy: &acl.SessionRule{Node:"", Policy:"nope"}"#,
            ),
            (
                r#"event "foo" { policy = "nope" }"#,
                r#"Invalid event policy: &acl.EventRule{Event:"foo", Policy:"nope"}"#,
            ),
            (
                r#"event_prefix "" { policy = "list" }"#,
                r#"Invalid event_prefix policy: &acl.EventRule{Event:"", Policy:"list"}"#,
            ),
            (
                r#"query "foo" { policy = "nope" }"#,
                r#"Invalid query policy: &acl.PreparedQueryRule{Prefix:"foo", Policy:"nope"}"#,
            ),
            (
                r#"query_prefix "" { policy = "list" }"#,
                r#"Invalid query_prefix policy: &acl.PreparedQueryRule{Prefix:"", Policy:"list"}"#,
            ),
            (r#"keyring = "list""#, r#"Invalid keyring policy: "list""#),
            (r#"operator = "nope""#, r#"Invalid operator policy: "nope""#),
            (r#"mesh = "list""#, r#"Invalid mesh policy: "list""#),
            (r#"peering = "nope""#, r#"Invalid peering policy: "nope""#),
            (
                r#"key "foo" {}"#,
                r#"Invalid key policy: &acl.KeyRule{Prefix:"foo", Policy:"", EnterpriseRule:acl.EnterpriseRule{}}"#,
            ),
        ];
        for (text, message) in table {
            let error = parse(text).expect_err(text);
            assert!(matches!(error, RulesError::Invalid { .. }), "{text}: {error:?}");
            assert_eq!(error.to_string(), message, "{text}");
        }
    }

    #[test]
    fn invalid_odd_values() {
        let table: [(&str, &str, &str); 5] = [
            ("a number is its digits", r#"key "a" { policy = 1 }"#, r#"Invalid key policy: &acl.KeyRule{Prefix:"a", Policy:"1", EnterpriseRule:acl.EnterpriseRule{}}"#),
            ("a label's body that is no object has no policy", r#"{"key": {"a": "read"}}"#, r#"Invalid key policy: &acl.KeyRule{Prefix:"a", Policy:"", EnterpriseRule:acl.EnterpriseRule{}}"#),
            ("labels are quoted as Go quotes them", "key \"a\\tb\" { policy = \"x\" }", "Invalid key policy: &acl.KeyRule{Prefix:\"a\\tb\", Policy:\"x\", EnterpriseRule:acl.EnterpriseRule{}}"),
            ("a level given twice: the last stands", "operator = \"read\"\noperator = \"nope\"", r#"Invalid operator policy: "nope""#),
            (
                "errors come in Consul's field order, not the text's",
                "peering = \"nope\"\nkey \"k\" { policy = \"nope\" }\nacl = \"list\"",
                r#"Invalid acl policy: "list""#,
            ),
        ];
        for (why, text, message) in table {
            assert_eq!(
                parse(text).map_err(|error| error.to_string()),
                Err(message.to_owned()),
                "{why}: {text}"
            );
        }
    }

    #[test]
    fn undecodable_texts() {
        let table: [(&str, &str); 8] = [
            (r#"key "foo" { policy = }"#, "Failed to parse ACL rules: At 1:23: object expected closing RBRACE got: EOF"),
            ("key \"foo\"", "Failed to parse ACL rules: At 1:10: key 'key \"foo\"' expected start of object ('{') or assignment ('=')"),
            (r#"operator { policy = "read" }"#, "Failed to parse ACL rules: root.operator: unknown type for string *ast.ObjectList"),
            (r#"operator = ["read"]"#, "Failed to parse ACL rules: root.operator: unknown type for string *ast.ListType"),
            (r#"acl = true"#, "Failed to parse ACL rules: root.acl: unknown type for string *ast.LiteralType"),
            (r#"key = "read""#, "Failed to parse ACL rules: unknown slice type: *ast.LiteralType"),
            (r#"key "foo" { policy = true }"#, "Failed to parse ACL rules: root.key[0].Policy: unknown type for string *ast.LiteralType"),
            (
                r#"{"service": {"a": {"policy": "read"}, "b": {"policy": "read", "intentions": 1.5}}}"#,
                "Failed to parse ACL rules: root.service[1].Intentions: unknown type for string *ast.LiteralType",
            ),
        ];
        for (text, message) in table {
            let error = parse(text).expect_err(text);
            assert!(matches!(error, RulesError::Parse(_)), "{text}: {error:?}");
            assert_eq!(error.to_string(), message, "{text}");
        }
        // Shape errors come before any level is checked, as Consul decodes before it validates.
        let error = parse("acl = \"nope\"\noperator = true").expect_err("both are wrong");
        assert!(matches!(error, RulesError::Parse(_)), "{error:?}");
    }

    #[test]
    fn builtin_texts_read_as_their_typed_rules() {
        let table: [(&str, String, Rules); 6] = [
            ("global-management", GLOBAL_MANAGEMENT_POLICY_RULES.to_owned(), global_management()),
            ("builtin/global-read-only", GLOBAL_READ_ONLY_POLICY_RULES.to_owned(), global_read_only()),
            ("builtin/dns", DNS_TEMPLATED_POLICY_RULES.to_owned(), dns_rules()),
            (
                "service identity",
                SyntheticPolicy::service_identity("web").rules_text,
                SyntheticPolicy::service_identity("web").rules,
            ),
            (
                "node identity",
                SyntheticPolicy::node_identity("n-1").rules_text,
                SyntheticPolicy::node_identity("n-1").rules,
            ),
            (
                "dns synthetic",
                SyntheticPolicy::templated_dns().rules_text,
                SyntheticPolicy::templated_dns().rules,
            ),
        ];
        for (why, text, rules) in table {
            assert_eq!(parse(&text), Ok(rules), "{why}");
        }
    }
}
