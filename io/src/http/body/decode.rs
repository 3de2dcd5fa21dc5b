//! Request bodies decoded into the core's types, with nothing of HTTP in sight: JSON objects as
//! Consul's lenient decoder reads them ([`Object`]), the catalog's service and check shapes, the
//! agent's service and check definitions (`/v1/agent/service/register`,
//! `/v1/agent/check/register` and configuration files), and `/v1/txn` operations.
//!
//! A refused body is a [`Refusal`]: the status Consul answers with and its reason, a plain type
//! that `super` turns into the HTTP error. Nothing here depends on more than serde_json, base64,
//! bytes and the core, so the fuzz crate compiles this file by path (`fuzz_targets/http_body.rs`).

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use muster_core::fsm::catalog::ServiceAddress;
use muster_core::fsm::CheckKind;
use muster_core::fsm::{
    CatalogVerb, Check, CheckDefinition, Health, KvOperand, KvVerb, Node, Service, TxnOp, Weights,
    VALUE_BYTES_MAX,
};
use serde_json::{Map, Value};

/// Why a body is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The status Consul answers with.
    pub status: Status,
    /// The reason (the whole body of the answer).
    pub reason: String,
}

/// The statuses a refused body is answered with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// 400: the body is malformed or names something invalid.
    BadRequest,
    /// 413: a value in the body is over its limit.
    PayloadTooLarge,
}

impl Refusal {
    /// 400 with `reason`.
    pub fn bad_request(reason: impl Into<String>) -> Refusal {
        Refusal { status: Status::BadRequest, reason: reason.into() }
    }
}

/// Consul's refusal of a body it cannot decode.
pub fn decode_failed(reason: impl std::fmt::Display) -> Refusal {
    Refusal::bad_request(format!("Request decode failed: {reason}"))
}

// --- objects ------------------------------------------------------------------------------------

/// A decoded JSON object: keys match case-insensitively and with or without underscores
/// (`Node`, `node`, `NodeChecks`, `node_checks`); unknown keys are ignored, as Consul's decoder
/// ignores them.
#[derive(Debug, Clone, Default)]
pub struct Object {
    fields: Map<String, Value>,
}

impl Object {
    /// Decodes a body; an empty body is an empty object.
    pub fn parse(body: &[u8]) -> Result<Object, Refusal> {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Object::default());
        }
        match serde_json::from_slice::<Value>(body).map_err(decode_failed)? {
            Value::Object(fields) => Ok(Object { fields }),
            Value::Null => Ok(Object::default()),
            other => Err(decode_failed(format!("expected a JSON object, got {}", kind(&other)))),
        }
    }

    /// An object nested in a field.
    pub fn from_value(value: &Value, field: &str) -> Result<Object, Refusal> {
        match value {
            Value::Object(fields) => Ok(Object { fields: fields.clone() }),
            Value::Null => Ok(Object::default()),
            other => Err(decode_failed(format!("{field}: expected an object, got {}", kind(other)))),
        }
    }

    /// The field named `name` in any of Consul's spellings.
    pub fn get(&self, name: &str) -> Option<&Value> {
        let wanted = normalize(name);
        self.fields
            .iter()
            .find(|(key, _)| normalize(key) == wanted)
            .map(|(_, value)| value)
            .filter(|v| !v.is_null())
    }

    /// Whether the field is present (even as `null`).
    pub fn has(&self, name: &str) -> bool {
        let wanted = normalize(name);
        self.fields.keys().any(|key| normalize(key) == wanted)
    }

    /// A string field (`""` when absent).
    pub fn string(&self, name: &str) -> Result<String, Refusal> {
        match self.get(name) {
            None => Ok(String::new()),
            Some(Value::String(text)) => Ok(text.clone()),
            Some(other) => Err(decode_failed(format!("{name}: expected a string, got {}", kind(other)))),
        }
    }

    /// A list of strings (empty when absent).
    pub fn strings(&self, name: &str) -> Result<Vec<String>, Refusal> {
        match self.get(name) {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .map(|item| match item {
                    Value::String(text) => Ok(text.clone()),
                    other => Err(decode_failed(format!("{name}: expected strings, got {}", kind(other)))),
                })
                .collect(),
            Some(other) => Err(decode_failed(format!("{name}: expected a list, got {}", kind(other)))),
        }
    }
}

/// Why a JSON value is not a duration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationValueError {
    /// A string that is not Go's syntax.
    #[error(transparent)]
    Syntax(#[from] muster_core::duration::DurationError),
    /// A number that is not a non-negative integer.
    #[error("invalid duration {0}: expected a non-negative integer of nanoseconds")]
    Nanoseconds(serde_json::Number),
    /// Neither a string nor a number (the kind it is).
    #[error("expected a duration, got {0}")]
    Kind(&'static str),
}

/// A JSON value as a duration: Go's syntax, or integer nanoseconds.
pub fn duration(value: &Value) -> Result<Duration, DurationValueError> {
    match value {
        Value::String(text) => Ok(muster_core::duration::parse(text)?),
        Value::Number(number) => number
            .as_u64()
            .map(Duration::from_nanos)
            .ok_or_else(|| DurationValueError::Nanoseconds(number.clone())),
        other => Err(DurationValueError::Kind(kind(other))),
    }
}

/// A map of strings (empty when absent).
pub fn string_map(object: &Object, name: &str) -> Result<BTreeMap<String, String>, Refusal> {
    match object.get(name) {
        None => Ok(BTreeMap::new()),
        Some(Value::Object(map)) => map
            .iter()
            .map(|(key, value)| match value {
                Value::String(text) => Ok((key.clone(), text.clone())),
                _ => Err(decode_failed(format!("{name}.{key}: expected a string"))),
            })
            .collect(),
        Some(_) => Err(decode_failed(format!("{name}: expected an object"))),
    }
}

/// An HTTP check's `Header`: each name with its list of values.
pub fn header_map(object: &Object, what: &str) -> Result<BTreeMap<String, Vec<String>>, Refusal> {
    match object.get("Header") {
        None => Ok(BTreeMap::new()),
        Some(value) => {
            serde_json::from_value(value.clone()).map_err(|e| decode_failed(format!("{what}: {e}")))
        }
    }
}

/// A boolean field (`false` when absent).
pub fn boolean(object: &Object, name: &str) -> Result<bool, Refusal> {
    match object.get(name) {
        None => Ok(false),
        Some(Value::Bool(set)) => Ok(*set),
        Some(_) => Err(decode_failed(format!("{name}: expected a boolean"))),
    }
}

/// An unsigned integer field that fits `T`.
pub fn integer<T: TryFrom<u64>>(object: &Object, name: &str) -> Result<Option<T>, Refusal> {
    match object.get(name) {
        None => Ok(None),
        Some(Value::Number(number)) => number
            .as_u64()
            .and_then(|n| T::try_from(n).ok())
            .map(Some)
            .ok_or_else(|| decode_failed(format!("{name}: {number} is out of range"))),
        Some(_) => Err(decode_failed(format!("{name}: expected a number"))),
    }
}

/// A duration field in nanoseconds (0 when absent; saturating).
pub fn duration_ns(object: &Object, name: &str) -> Result<u64, Refusal> {
    match object.get(name) {
        None => Ok(0),
        Some(v) => duration(v)
            .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
            .map_err(|reason| decode_failed(format!("{name}: {reason}"))),
    }
}

// --- the catalog's shapes -----------------------------------------------------------------------

/// A `Service` object of a registration.
pub fn parse_service(object: &Object) -> Result<Service, Refusal> {
    let tagged_addresses = match object.get("TaggedAddresses") {
        None => BTreeMap::new(),
        Some(Value::Object(map)) => map
            .iter()
            .map(|(name, value)| {
                let address = Object::from_value(value, "TaggedAddresses")?;
                let entry = ServiceAddress {
                    address: address.string("Address")?,
                    port: integer(&address, "Port")?.unwrap_or(0),
                };
                Ok((name.clone(), entry))
            })
            .collect::<Result<_, Refusal>>()?,
        Some(_) => return Err(decode_failed("TaggedAddresses: expected an object")),
    };
    let weights = match object.get("Weights") {
        None => Weights::default(),
        Some(value) => {
            let weights = Object::from_value(value, "Weights")?;
            Weights {
                passing: integer(&weights, "Passing")?.unwrap_or(1),
                warning: integer(&weights, "Warning")?.unwrap_or(1),
            }
        }
    };
    Ok(Service {
        kind: object.string("Kind")?,
        id: object.string("ID")?,
        service: object.string("Service")?,
        tags: object.strings("Tags")?,
        address: object.string("Address")?,
        tagged_addresses,
        meta: string_map(object, "Meta")?,
        port: integer(object, "Port")?.unwrap_or(0),
        socket_path: object.string("SocketPath")?,
        weights,
        enable_tag_override: boolean(object, "EnableTagOverride")?,
        ..Service::default()
    })
}

/// A `Check` object of a registration: its status must be one of Consul's three (critical
/// when absent).
pub fn parse_check(object: &Object) -> Result<Check, Refusal> {
    let status = match object.string("Status")?.as_str() {
        "" => Health::Critical,
        text => Health::parse(text)
            .ok_or_else(|| Refusal::bad_request(format!("Invalid check status: '{text}'")))?,
    };
    let definition = match object.get("Definition") {
        None => CheckDefinition::default(),
        Some(value) => {
            let d = Object::from_value(value, "Definition")?;
            let header = header_map(&d, "Definition.Header")?;
            CheckDefinition {
                http: d.string("HTTP")?,
                method: d.string("Method")?,
                header,
                body: d.string("Body")?,
                disable_redirects: boolean(&d, "DisableRedirects")?,
                tls_server_name: d.string("TLSServerName")?,
                tls_skip_verify: boolean(&d, "TLSSkipVerify")?,
                tcp: d.string("TCP")?,
                tcp_use_tls: boolean(&d, "TCPUseTLS")?,
                udp: d.string("UDP")?,
                grpc: d.string("GRPC")?,
                grpc_use_tls: boolean(&d, "GRPCUseTLS")?,
                h2ping: d.string("H2PING")?,
                h2ping_use_tls: boolean(&d, "H2PingUseTLS")?,
                alias_node: d.string("AliasNode")?,
                alias_service: d.string("AliasService")?,
                interval_ns: duration_ns(&d, "Interval")?,
                timeout_ns: duration_ns(&d, "Timeout")?,
                ttl_ns: duration_ns(&d, "TTL")?,
                deregister_critical_service_after_ns: duration_ns(&d, "DeregisterCriticalServiceAfter")?,
                // The catalog keeps what the agent runs; it never runs a check itself.
                ..CheckDefinition::default()
            }
        }
    };
    Ok(Check {
        node: object.string("Node")?,
        check_id: object.string("CheckID")?,
        name: object.string("Name")?,
        status,
        notes: object.string("Notes")?,
        output: object.string("Output")?,
        service_id: object.string("ServiceID")?,
        kind: CheckKind::from(object.string("Type")?),
        definition,
        ..Check::default()
    })
}

// --- the agent's definitions --------------------------------------------------------------------

/// A service definition as the agent takes one, from `/v1/agent/service/register` or a
/// configuration file: the service and its own checks, with Consul's defaults (ID from the
/// name; checks `service:<id>` or `service:<id>:<n>`, named `Service '<name>' check`).
pub fn service_definition(object: &Object, scripts: bool) -> Result<(Service, Vec<Check>), Refusal> {
    let name = object.string("Name")?;
    if name.is_empty() {
        return Err(Refusal::bad_request("Missing service name"));
    }
    // The agent API names the service `Name`; the catalog's shape calls it `Service`.
    let mut service = parse_service(object)?;
    service.service = name.clone();
    if service.id.is_empty() {
        service.id = name.clone();
    }
    if let Some(weights) = object.get("Weights") {
        let weights = Object::from_value(weights, "Weights")?;
        if integer::<u32>(&weights, "Passing")?.unwrap_or(1) == 0 {
            return Err(Refusal::bad_request("Passing must be greater than 0"));
        }
    }
    let mut definitions = Vec::new();
    if let Some(check) = object.get("Check") {
        definitions.push(Object::from_value(check, "Check")?);
    }
    match object.get("Checks") {
        None => {}
        Some(Value::Array(items)) => {
            for item in items {
                definitions.push(Object::from_value(item, "Checks")?);
            }
        }
        Some(_) => return Err(decode_failed("Checks: expected a list")),
    }
    let several = definitions.len() > 1;
    let mut checks = Vec::new();
    for (n, definition) in definitions.iter().enumerate() {
        let mut check = parse_agent_check(definition, scripts)?;
        // Consul's generated IDs and name for a service's own checks.
        if check.check_id.is_empty() {
            check.check_id = if several {
                format!("service:{}:{}", service.id, n + 1)
            } else {
                format!("service:{}", service.id)
            };
        }
        if check.name.is_empty() {
            check.name = format!("Service '{name}' check");
        }
        check.service_id = service.id.clone();
        checks.push(check);
    }
    Ok((service, checks))
}

/// A check definition as the agent takes one, from `/v1/agent/check/register` or a
/// configuration file (ID from the name).
pub fn check_definition(object: &Object, scripts: bool) -> Result<Check, Refusal> {
    let mut check = parse_agent_check(object, scripts)?;
    if check.name.is_empty() {
        return Err(Refusal::bad_request("Missing check name"));
    }
    if check.check_id.is_empty() {
        check.check_id = check.name.clone();
    }
    Ok(check)
}

/// A check definition from a configuration file: as [`check_definition`], except that a name
/// is not required where an ID is given (Consul asks for a name only over HTTP; its own
/// documentation defines `{"check": {"id": "web-alias", "alias_service": "web"}}`).
pub fn file_check_definition(object: &Object, scripts: bool) -> Result<Check, Refusal> {
    let check = parse_agent_check(object, scripts)?;
    if check.name.is_empty() && check.check_id.is_empty() {
        return Err(Refusal::bad_request("Missing check name"));
    }
    if check.check_id.is_empty() {
        return Ok(Check { check_id: check.name.clone(), ..check });
    }
    Ok(check)
}

/// A check definition as the agent API takes one (Consul's `CheckType`). Script checks are
/// refused unless `scripts` allows them (`enable_script_checks`, or for configuration files
/// also `enable_local_script_checks`).
fn parse_agent_check(object: &Object, scripts: bool) -> Result<Check, Refusal> {
    let mut args = object.strings("Args")?;
    if args.is_empty() {
        args = object.strings("ScriptArgs")?;
    }
    let shell = object.string("Script")?;
    if args.is_empty() && !shell.is_empty() {
        // The legacy form: one command line, run by the shell.
        args = vec!["/bin/sh".to_owned(), "-c".to_owned(), shell];
    }
    if !args.is_empty() && !scripts {
        return Err(Refusal::bad_request(
            "Scripts are disabled on this agent; to enable, configure 'enable_script_checks' or \
             'enable_local_script_checks' to true",
        ));
    }
    let duration = |name: &str| duration_ns(object, name);
    let threshold = |name: &str| integer::<u32>(object, name).map(Option::unwrap_or_default);
    let failures_before_critical = threshold("FailuresBeforeCritical")?;
    let definition = CheckDefinition {
        args,
        success_before_passing: threshold("SuccessBeforePassing")?,
        failures_before_critical,
        // Consul: unset, it is the same as FailuresBeforeCritical.
        failures_before_warning: integer::<u32>(object, "FailuresBeforeWarning")?
            .unwrap_or(failures_before_critical),
        http: object.string("HTTP")?,
        method: object.string("Method")?,
        header: header_map(object, "Header")?,
        body: object.string("Body")?,
        disable_redirects: boolean(object, "DisableRedirects")?,
        tls_server_name: object.string("TLSServerName")?,
        tls_skip_verify: boolean(object, "TLSSkipVerify")?,
        tcp: object.string("TCP")?,
        tcp_use_tls: boolean(object, "TCPUseTLS")?,
        udp: object.string("UDP")?,
        grpc: object.string("GRPC")?,
        grpc_use_tls: boolean(object, "GRPCUseTLS")?,
        h2ping: object.string("H2PING")?,
        // Consul: unset, an H2PING check uses TLS.
        h2ping_use_tls: !object.has("H2PingUseTLS") || boolean(object, "H2PingUseTLS")?,
        alias_node: object.string("AliasNode")?,
        alias_service: object.string("AliasService")?,
        interval_ns: duration("Interval")?,
        timeout_ns: duration("Timeout")?,
        ttl_ns: duration("TTL")?,
        deregister_critical_service_after_ns: duration("DeregisterCriticalServiceAfter")?,
    };
    let kind = if definition.ttl_ns > 0 {
        CheckKind::Ttl
    } else if !definition.args.is_empty() {
        CheckKind::Script
    } else if !definition.http.is_empty() {
        CheckKind::Http
    } else if !definition.tcp.is_empty() {
        CheckKind::Tcp
    } else if !definition.udp.is_empty() {
        CheckKind::Udp
    } else if !definition.grpc.is_empty() {
        CheckKind::Grpc
    } else if !definition.h2ping.is_empty() {
        CheckKind::H2ping
    } else if !definition.alias_service.is_empty() || !definition.alias_node.is_empty() {
        CheckKind::Alias
    } else {
        return Err(Refusal::bad_request(
            "Invalid check: TTL or Script/HTTP/TCP/UDP/GRPC/H2PING/alias must be set",
        ));
    };
    if !matches!(kind, CheckKind::Ttl | CheckKind::Alias) && definition.interval_ns == 0 {
        return Err(Refusal::bad_request(
            "Interval must be > 0 for Script, HTTP, H2PING, TCP, UDP or GRPC checks",
        ));
    }
    let status = match object.string("Status")?.as_str() {
        "" => Health::Critical,
        text => Health::parse(text)
            .ok_or_else(|| Refusal::bad_request(format!("Invalid check status: '{text}'")))?,
    };
    let id = match object.string("CheckID")? {
        id if id.is_empty() => object.string("ID")?,
        id => id,
    };
    Ok(Check {
        check_id: id,
        name: object.string("Name")?,
        status,
        notes: object.string("Notes")?,
        service_id: object.string("ServiceID")?,
        kind,
        definition,
        ..Check::default()
    })
}

// --- transactions -------------------------------------------------------------------------------

/// Why a `/v1/txn` operation names nothing muster can run, in Consul's words: an error reported
/// at the operation's position (the transaction then answers 409), not a refusal of the body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TxnOpInvalid {
    /// A KV operation with a verb Consul does not know.
    #[error("unknown KV verb {0:?}")]
    KvVerb(String),
    /// A node, service or check operation with a verb Consul does not know.
    #[error("unknown {kind} verb {verb:?}")]
    CatalogVerb {
        /// `Node`, `Service` or `Check`.
        kind: &'static str,
        /// The verb given.
        verb: String,
    },
    /// An operation of no kind Consul knows (or of none).
    #[error("no operation specified")]
    NoOperation,
}

/// One `/v1/txn` operation: `Ok(Err(invalid))` is an error Consul reports at the operation's
/// position (the transaction then answers 409); `Err` refuses the whole body.
pub fn txn_op(item: &Value) -> Result<Result<TxnOp, TxnOpInvalid>, Refusal> {
    let op = Object::from_value(item, "operation").map_err(|e| txn_parse_failed(e.reason))?;
    if let Some(kv) = op.get("KV") {
        let kv = Object::from_value(kv, "KV").map_err(|e| txn_parse_failed(e.reason))?;
        let verb_text = kv.string("Verb").map_err(|e| txn_parse_failed(e.reason))?;
        let Some(verb) = KvVerb::parse(&verb_text) else {
            return Ok(Err(TxnOpInvalid::KvVerb(verb_text)));
        };
        let value = match kv.string("Value").map_err(|e| txn_parse_failed(e.reason))? {
            text if text.is_empty() => Bytes::new(),
            text => Bytes::from(
                base64::engine::general_purpose::STANDARD
                    .decode(text)
                    .map_err(|e| txn_parse_failed(format!("Value: {e}")))?,
            ),
        };
        let key = kv.string("Key").map_err(|e| txn_parse_failed(e.reason))?;
        if value.len() > VALUE_BYTES_MAX {
            return Err(Refusal {
                status: Status::PayloadTooLarge,
                reason: format!(
                    "Value for key {key:?} is too large ({} > {VALUE_BYTES_MAX} bytes)",
                    value.len()
                ),
            });
        }
        let operand = KvOperand {
            key,
            value,
            flags: integer(&kv, "Flags").map_err(|e| txn_parse_failed(e.reason))?.unwrap_or(0),
            index: integer(&kv, "Index").map_err(|e| txn_parse_failed(e.reason))?.unwrap_or(0),
            session: kv.string("Session").map_err(|e| txn_parse_failed(e.reason))?,
        };
        return Ok(Ok(TxnOp::Kv(verb, operand)));
    }
    let catalog_verb =
        |object: &Object, kind: &'static str| -> Result<Result<CatalogVerb, TxnOpInvalid>, Refusal> {
            let text = object.string("Verb").map_err(|e| txn_parse_failed(e.reason))?;
            Ok(CatalogVerb::parse(&text).ok_or(TxnOpInvalid::CatalogVerb { kind, verb: text }))
        };
    if let Some(node_op) = op.get("Node") {
        let node_op = Object::from_value(node_op, "Node").map_err(|e| txn_parse_failed(e.reason))?;
        let verb = match catalog_verb(&node_op, "Node")? {
            Ok(verb) => verb,
            Err(error) => return Ok(Err(error)),
        };
        let node = Object::from_value(node_op.get("Node").unwrap_or(&Value::Null), "Node.Node")
            .map_err(|e| txn_parse_failed(e.reason))?;
        let parsed = Node {
            id: node.string("ID").map_err(|e| txn_parse_failed(e.reason))?,
            node: node.string("Node").map_err(|e| txn_parse_failed(e.reason))?,
            address: node.string("Address").map_err(|e| txn_parse_failed(e.reason))?,
            datacenter: node.string("Datacenter").map_err(|e| txn_parse_failed(e.reason))?,
            tagged_addresses: string_map(&node, "TaggedAddresses").map_err(|e| txn_parse_failed(e.reason))?,
            meta: string_map(&node, "Meta").map_err(|e| txn_parse_failed(e.reason))?,
            modify_index: integer(&node, "ModifyIndex").map_err(|e| txn_parse_failed(e.reason))?.unwrap_or(0),
            ..Node::default()
        };
        return Ok(Ok(TxnOp::Node(verb, Box::new(parsed))));
    }
    if let Some(service_op) = op.get("Service") {
        let service_op = Object::from_value(service_op, "Service").map_err(|e| txn_parse_failed(e.reason))?;
        let verb = match catalog_verb(&service_op, "Service")? {
            Ok(verb) => verb,
            Err(error) => return Ok(Err(error)),
        };
        let node = service_op.string("Node").map_err(|e| txn_parse_failed(e.reason))?;
        let service =
            Object::from_value(service_op.get("Service").unwrap_or(&Value::Null), "Service.Service")
                .map_err(|e| txn_parse_failed(e.reason))?;
        let mut parsed = parse_service(&service).map_err(|e| txn_parse_failed(e.reason))?;
        parsed.modify_index =
            integer(&service, "ModifyIndex").map_err(|e| txn_parse_failed(e.reason))?.unwrap_or(0);
        return Ok(Ok(TxnOp::Service(verb, node, Box::new(parsed))));
    }
    if let Some(check_op) = op.get("Check") {
        let check_op = Object::from_value(check_op, "Check").map_err(|e| txn_parse_failed(e.reason))?;
        let verb = match catalog_verb(&check_op, "Check")? {
            Ok(verb) => verb,
            Err(error) => return Ok(Err(error)),
        };
        let check = Object::from_value(check_op.get("Check").unwrap_or(&Value::Null), "Check.Check")
            .map_err(|e| txn_parse_failed(e.reason))?;
        let mut parsed = parse_check(&check)?;
        parsed.modify_index =
            integer(&check, "ModifyIndex").map_err(|e| txn_parse_failed(e.reason))?.unwrap_or(0);
        return Ok(Ok(TxnOp::Check(verb, Box::new(parsed))));
    }
    Ok(Err(TxnOpInvalid::NoOperation))
}

/// Consul's refusal of a transaction body it cannot decode.
pub fn txn_parse_failed(reason: impl std::fmt::Display) -> Refusal {
    Refusal::bad_request(format!("Failed to parse body: {reason}"))
}

fn normalize(key: &str) -> String {
    key.chars().filter(|c| *c != '_').flat_map(char::to_lowercase).collect()
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_match_in_any_of_consuls_spellings_and_durations_in_either_form() {
        let object =
            Object::parse(br#"{"node_checks": ["a"], "LOCKDELAY": "15s", "ttl": 30000000000}"#).unwrap();
        assert_eq!(object.strings("NodeChecks").unwrap(), ["a"]);
        assert_eq!(duration(object.get("LockDelay").unwrap()), Ok(Duration::from_secs(15)));
        assert_eq!(duration(object.get("TTL").unwrap()), Ok(Duration::from_secs(30)));
        assert!(object.has("nodechecks") && !object.has("Behavior"));
        assert_eq!(Object::parse(b"  ").unwrap().string("Name").unwrap(), "");
        let refused = Object::parse(b"[1]").unwrap_err();
        assert_eq!(refused.reason, "Request decode failed: expected a JSON object, got a list");
        assert!(Object::parse(b"{").unwrap_err().reason.starts_with("Request decode failed: EOF"));
        assert!(object.string("ttl").is_err(), "a number is not a string");
    }
}
