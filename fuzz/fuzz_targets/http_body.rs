//! Request bodies (io/src/http/body/decode.rs): arbitrary bytes as the body of
//! `PUT /v1/agent/service/register`, `PUT /v1/agent/check/register` (and the same definitions
//! from a configuration file) and `PUT /v1/txn`. Properties:
//! - decoding never panics; a refusal is a 400 (a 413 only for a transaction's oversized
//!   value), and a body or transaction refused whole carries Consul's prefix;
//! - keys match in any spelling: the object with its keys lower-cased and without underscores
//!   decodes the same;
//! - allowing scripts never refuses what was accepted without them, and decodes it the same;
//! - what is accepted is well formed (a service has a name and an ID; each check an ID, a name,
//!   its service's ID and a kind) and goes into the agent's state (`LocalState`, its invariants
//!   checked) and through the catalog's own checks (`Command::validate`, then applied to a
//!   state machine) without a panic; where the state or the catalog refuses it, nothing changed;
//! - what the agent keeps round-trips through the JSON it persists (io/src/local.rs);
//! - transaction operations that decode validate as a command, encode and decode back to the
//!   same command, and apply; a transaction refused (409) changes nothing.
//!
//! The decoding module is compiled in by path: it needs only serde_json, base64, bytes and the
//! core.

#![no_main]

use libfuzzer_sys::fuzz_target;
use muster_core::agent::LocalState;
use muster_core::fsm::{
    Check, CheckKind, Command, Fsm, KvSet, Node, Register, Response, Service, Txn, TxnOp, TXN_OPS_MAX,
};
use serde_json::{Map, Value};

#[path = "../../io/src/http/body/decode.rs"]
#[allow(dead_code)]
mod decode;

use decode::{Object, Refusal, Status};

/// The leader's clock stamped into the commands applied here.
const NOW_MS: u64 = 1_700_000_000_000;

fuzz_target!(|data: &[u8]| {
    let object = match Object::parse(data) {
        Ok(object) => Some(object),
        Err(refusal) => {
            assert_eq!(refusal.status, Status::BadRequest);
            assert!(refusal.reason.starts_with("Request decode failed: "), "{refusal:?}");
            None
        }
    };
    let value = serde_json::from_slice::<Value>(data).ok();
    if let (Some(object), Some(Value::Object(fields))) = (object, &value) {
        let respelled = respell(fields)
            .map(|fields| Object::from_value(&Value::Object(fields), "body").expect("an object decodes"));
        service(&object, respelled.as_ref());
        check(&object, respelled.as_ref());
    }
    if let Some(Value::Array(items)) = &value {
        txn(items);
    }
});

/// `PUT /v1/agent/service/register`.
fn service(object: &Object, respelled: Option<&Object>) {
    let strict = decode::service_definition(object, false);
    let lenient = decode::service_definition(object, true);
    if let Some(respelled) = respelled {
        assert_eq!(decode::service_definition(respelled, false), strict, "keys match in any spelling");
    }
    if strict.is_ok() {
        assert_eq!(&lenient, &strict, "scripts allowed change nothing else");
    }
    let (service, checks) = match lenient {
        Ok(definition) => definition,
        Err(refusal) => return refused(&refusal),
    };
    assert!(!service.service.is_empty() && !service.id.is_empty(), "{service:?}");
    for check in &checks {
        well_formed(check);
        assert_eq!(check.service_id, service.id);
    }
    round_trip(&service);
    let mut state = LocalState::new(node());
    let before = state.clone();
    match state.add_service(service.clone(), checks.clone()) {
        Ok(dropped) => {
            assert!(dropped.is_empty(), "a new service drops nothing");
            assert!(state.services().contains_key(&service.id));
            for check in &checks {
                round_trip(state.checks().get(&check.check_id).expect("its checks are kept").as_ref());
            }
        }
        Err(_) => assert!(state == before, "a refused service changes nothing"),
    }
    register(Some(service), checks);
}

/// `PUT /v1/agent/check/register`, and a check from a configuration file.
fn check(object: &Object, respelled: Option<&Object>) {
    let api = decode::check_definition(object, true);
    if let Some(respelled) = respelled {
        assert_eq!(decode::check_definition(respelled, true), api, "keys match in any spelling");
    }
    let file = decode::file_check_definition(object, true);
    if let Ok(check) = &api {
        assert_eq!(file.as_ref(), Ok(check), "a file takes what the API takes");
    }
    let check = match file {
        Ok(check) => check,
        Err(refusal) => return refused(&refusal),
    };
    assert!(!check.check_id.is_empty() && check.kind != CheckKind::Unset, "{check:?}");
    round_trip(&check);
    let mut state = LocalState::new(node());
    let before = state.clone();
    match state.add_check(check.clone()) {
        Ok(()) => round_trip(state.checks().get(&check.check_id).expect("kept").as_ref()),
        Err(_) => assert!(state == before, "a refused check changes nothing"),
    }
    register(None, vec![check]);
}

/// `PUT /v1/txn`.
fn txn(items: &[Value]) {
    if items.len() > TXN_OPS_MAX {
        return;
    }
    let mut ops = Vec::new();
    for item in items {
        match decode::txn_op(item) {
            Ok(Ok(op)) => ops.push(op),
            Ok(Err(invalid)) => assert!(!invalid.to_string().is_empty()),
            Err(refusal) => {
                let prefixed = refusal.reason.starts_with("Failed to parse body: ")
                    || refusal.reason.starts_with("Request decode failed: ")
                    || refusal.reason.starts_with("Invalid check status: ");
                match refusal.status {
                    Status::BadRequest => assert!(prefixed, "{refusal:?}"),
                    Status::PayloadTooLarge => assert!(refusal.reason.starts_with("Value for key ")),
                }
                return;
            }
        }
    }
    if ops.len() < items.len() {
        return;
    }
    let command = Command::Txn(Txn { ops });
    command.validate().expect("decoded operations validate");
    let mut fsm = seeded();
    let before = fsm.clone();
    if let Command::Txn(txn) = &command {
        if txn.ops.iter().all(TxnOp::reads_only) {
            let _ = fsm.read_txn(txn);
            assert!(fsm == before, "a read changes nothing");
        }
    }
    let applied = apply(&mut fsm, &command);
    match applied {
        Response::Txn(Ok(_)) => {}
        Response::Txn(Err(_)) | Response::Rejected(_) => unchanged(&fsm, &before),
        other => panic!("a transaction answered {other:?}"),
    }
}

/// The agent's anti-entropy: the definition written into the catalog as a registration.
fn register(service: Option<Service>, checks: Vec<Check>) {
    let command =
        Command::Register(Box::new(Register { node: node(), skip_node_update: false, service, checks }));
    let mut fsm = seeded();
    let before = fsm.clone();
    if let Response::Rejected(_) = apply(&mut fsm, &command) {
        unchanged(&fsm, &before);
    }
}

/// Encodes, decodes and applies `command` as the log would, after the seeded entries.
fn apply(fsm: &mut Fsm, command: &Command) -> Response {
    let encoded = command.encode(NOW_MS);
    let decoded = Command::decode(&encoded).expect("our own encoding decodes").expect("a known command");
    assert_eq!(&decoded.command, command, "a command round-trips through its encoding");
    fsm.apply(fsm.applied() + 1, &encoded).expect("a well-formed command applies").response
}

/// A state with a node, a service with a check, and a key, for operations to meet.
fn seeded() -> Fsm {
    let mut fsm = Fsm::new();
    let service = Service { id: "web".into(), service: "web".into(), port: 80, ..Service::default() };
    let check = Check {
        node: "node-1".into(),
        check_id: "service:web".into(),
        name: "web check".into(),
        service_id: "web".into(),
        ..Check::default()
    };
    let commands = [
        Command::Register(Box::new(Register {
            node: node(),
            skip_node_update: false,
            service: Some(service),
            checks: vec![check],
        })),
        Command::KvSet(KvSet { key: "a".into(), value: "x".into(), flags: 0 }),
    ];
    for (index, command) in (1..).zip(commands) {
        fsm.apply(index, &command.encode(NOW_MS)).expect("the seed applies");
    }
    fsm
}

fn node() -> Node {
    Node { node: "node-1".into(), address: "10.0.0.1".into(), datacenter: "dc1".into(), ..Node::default() }
}

/// A refused state machine entry changed nothing but the applied index.
fn unchanged(fsm: &Fsm, before: &Fsm) {
    assert!(fsm.kv() == before.kv(), "a refused entry changed the KV store");
    assert!(fsm.catalog() == before.catalog(), "a refused entry changed the catalog");
    assert!(fsm.sessions() == before.sessions(), "a refused entry changed the sessions");
}

fn well_formed(check: &Check) {
    assert!(!check.check_id.is_empty() && !check.name.is_empty(), "{check:?}");
    assert!(check.kind != CheckKind::Unset, "{check:?}");
}

fn refused(refusal: &Refusal) {
    assert_eq!(refusal.status, Status::BadRequest, "{refusal:?}");
    assert!(!refusal.reason.is_empty());
}

/// What io/src/local.rs persists and reads back.
fn round_trip<T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug>(row: &T) {
    let bytes = serde_json::to_vec(row).expect("a row serializes");
    let back: T = serde_json::from_slice(&bytes).expect("a persisted row reads back");
    assert_eq!(&back, row, "a row round-trips through its JSON");
}

/// The top-level keys lower-cased and without underscores (`None` where two keys would
/// collide, as then which one is read depends on the spelling).
fn respell(fields: &Map<String, Value>) -> Option<Map<String, Value>> {
    let mut out = Map::new();
    for (key, value) in fields {
        let plain: String = key.chars().filter(|c| *c != '_').flat_map(char::to_lowercase).collect();
        if out.insert(plain, value.clone()).is_some() {
            return None;
        }
    }
    Some(out)
}
