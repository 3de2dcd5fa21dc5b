//! The state machine on arbitrary log entries: raw bytes (the command decoder must refuse or
//! decode, never panic) and well-formed command sequences over KV, locks, sessions, the
//! catalog, ACL policies and tokens, and transactions (applied with invariants checked after each, feature
//! `invariants`). Names come from small alphabets so operations collide. Restores through the
//! log replace the state with a snapshot saved earlier (`Save`, then `Restore`: indexes behind
//! ours), with the state of a twin that applies the same commands 1,000 indexes ahead
//! (`Restore` with `ahead`: indexes lowered to the entry's), or with raw bytes (`RestoreRaw`:
//! refused). `Piece` applies one piece of a saved snapshot as a `RestoreChunk` (any piece, of
//! any of four restore IDs, so pieces arrive in order, out of order and interleaved: refused
//! or staged, and the last one in order restores); `Abort` drops one restore ID's pieces. At
//! the end, the snapshot (a staged restore included) restores to the same state and re-encodes
//! to the same bytes, and a snapshot read from raw bytes never panics.

#![no_main]

use arbitrary::Arbitrary;
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use muster_core::acl::{Rules, GLOBAL_MANAGEMENT_POLICY_ID, GLOBAL_READ_ONLY_POLICY_ID};
use muster_core::fsm::{
    AclBootstrap, AclInitialize, AclPolicyDelete, AclPolicySet, AclTokenDelete, AclTokenSet, AutopilotSet,
    Behavior, CatalogVerb, Check, Command, Deregister, Fsm, Health, KvCas, KvDelete, KvDeleteCas,
    KvDeleteTree, KvLock, KvOperand, KvSet, KvUnlock, KvVerb, Node, Policy, Register, Response, Restore,
    RestoreAbort, RestoreChunk, Service, ServiceIdentity, Session, SessionDestroy, Stamped, Token,
    TombstoneReap, Txn, TxnOp,
};

const NAMES: [&str; 4] = ["a", "a/b", "b", "serfHealth"];

/// How far ahead of ours the twin state's indexes run.
const AHEAD: u64 = 1_000;

/// Snapshots kept for later restores.
const SAVED_MAX: usize = 4;

/// ACL object IDs: a few of muster's own and the built-ins' (whose changes are refused).
const ACL_IDS: [&str; 5] = [
    "5f1b2c3d-0000-4000-8000-000000000001",
    "5f1b2c3d-0000-4000-8000-000000000002",
    "5f1b2c3d-0000-4000-8000-000000000003",
    GLOBAL_MANAGEMENT_POLICY_ID,
    GLOBAL_READ_ONLY_POLICY_ID, // also the anonymous token's AccessorID
];

fn acl_id(n: u8) -> String {
    ACL_IDS[usize::from(n) % ACL_IDS.len()].to_owned()
}

fn name(n: u8) -> String {
    NAMES[usize::from(n) % NAMES.len()].to_owned()
}

fn health(n: u8) -> Health {
    [Health::Passing, Health::Warning, Health::Critical][usize::from(n) % 3]
}

#[derive(Debug, Arbitrary)]
enum Op {
    Raw(Vec<u8>),
    Set {
        key: String,
        value: Vec<u8>,
        flags: u64,
    },
    Cas {
        key: String,
        value: Vec<u8>,
        index: u8,
    },
    Delete(String),
    DeleteCas {
        key: String,
        index: u8,
    },
    DeleteTree(String),
    Reap(u8),
    Lock {
        key: u8,
        session: u8,
        value: u8,
    },
    Unlock {
        key: u8,
        session: u8,
    },
    SessionCreate {
        id: u8,
        node: u8,
        delete: bool,
        lock_delay_ms: u8,
        check: Option<u8>,
    },
    SessionDestroy(u8),
    Register {
        node: u8,
        address: bool,
        service: Option<(u8, u8)>,
        check: Option<(u8, bool, u8)>,
        skip: bool,
    },
    Deregister {
        node: u8,
        service: Option<u8>,
        check: Option<u8>,
    },
    Txn(Vec<TxnPart>),
    Save,
    Restore {
        slot: u8,
        ahead: bool,
    },
    RestoreRaw(Vec<u8>),
    Piece {
        slot: u8,
        id: u8,
        piece_bytes: u8,
        nth: u8,
    },
    Abort(u8),
    Autopilot {
        cleanup: bool,
        trailing: u8,
        cas: Option<u8>,
    },
    AclInit,
    AclBootstrap {
        accessor: u8,
        secret: u8,
        reset: Option<u8>,
    },
    AclTokenSet {
        accessor: u8,
        secret: u8,
        policies: Vec<u8>,
        service: Option<u8>,
        create: bool,
        expires: Option<u8>,
    },
    AclTokenDelete(u8),
    AclPolicySet {
        id: u8,
        name: u8,
        create: bool,
    },
    AclPolicyDelete(u8),
}

#[derive(Debug, Arbitrary)]
enum TxnPart {
    Kv { verb: u8, key: u8, index: u8, session: u8 },
    Node { verb: u8, node: u8, index: u8 },
    Service { verb: u8, node: u8, service: u8, index: u8 },
    Check { verb: u8, node: u8, check: u8, status: u8, index: u8 },
}

fn txn_op(part: TxnPart) -> TxnOp {
    match part {
        TxnPart::Kv { verb, key, index, session } => TxnOp::Kv(
            KvVerb::ALL[usize::from(verb) % KvVerb::ALL.len()],
            KvOperand {
                key: name(key),
                value: Bytes::from_static(b"t"),
                flags: 0,
                index: u64::from(index),
                session: name(session),
            },
        ),
        TxnPart::Node { verb, node, index } => TxnOp::Node(
            CatalogVerb::ALL[usize::from(verb) % CatalogVerb::ALL.len()],
            Box::new(Node {
                node: name(node),
                address: "10.0.0.1".into(),
                modify_index: u64::from(index),
                ..Node::default()
            }),
        ),
        TxnPart::Service { verb, node, service, index } => TxnOp::Service(
            CatalogVerb::ALL[usize::from(verb) % CatalogVerb::ALL.len()],
            name(node),
            Box::new(Service {
                service: name(service),
                modify_index: u64::from(index),
                ..Service::default()
            }),
        ),
        TxnPart::Check { verb, node, check, status, index } => TxnOp::Check(
            CatalogVerb::ALL[usize::from(verb) % CatalogVerb::ALL.len()],
            Box::new(Check {
                node: name(node),
                check_id: name(check),
                status: health(status),
                modify_index: u64::from(index),
                ..Check::default()
            }),
        ),
    }
}

fuzz_target!(|ops: Vec<Op>| {
    let mut fsm = Fsm::new();
    let mut ahead = Fsm::new();
    let mut saved: Vec<Bytes> = Vec::new();
    let mut index = 0;
    for (step, op) in ops.into_iter().enumerate() {
        index += 1;
        let now_ms = step as u64 * 5;
        let command = match op {
            Op::Raw(bytes) => {
                let _ = Fsm::restore(&bytes);
                let _ = fsm.apply(index, &bytes);
                continue;
            }
            Op::Set { key, value, flags } => Command::KvSet(KvSet { key, value: Bytes::from(value), flags }),
            Op::Cas { key, value, index } => Command::KvCas(KvCas {
                set: KvSet { key, value: Bytes::from(value), flags: 0 },
                index: u64::from(index),
            }),
            Op::Delete(key) => Command::KvDelete(KvDelete { key }),
            Op::DeleteCas { key, index } => {
                Command::KvDeleteCas(KvDeleteCas { key, index: u64::from(index) })
            }
            Op::DeleteTree(prefix) => Command::KvDeleteTree(KvDeleteTree { prefix }),
            Op::Reap(up_to) => Command::TombstoneReap(TombstoneReap { up_to: u64::from(up_to) }),
            Op::Lock { key, session, value } => Command::KvLock(KvLock {
                set: KvSet { key: name(key), value: Bytes::from(vec![value]), flags: 0 },
                session: name(session),
            }),
            Op::Unlock { key, session } => Command::KvUnlock(KvUnlock {
                set: KvSet { key: name(key), value: Bytes::new(), flags: 0 },
                session: name(session),
            }),
            Op::SessionCreate { id, node, delete, lock_delay_ms, check } => Command::SessionCreate(Session {
                id: name(id),
                node: name(node),
                behavior: if delete { Behavior::Delete } else { Behavior::Release },
                lock_delay_ms: u64::from(lock_delay_ms),
                node_checks: check.map(name).into_iter().collect(),
                ..Session::default()
            }),
            Op::SessionDestroy(id) => Command::SessionDestroy(SessionDestroy { id: name(id) }),
            Op::Register { node, address, service, check, skip } => Command::Register(Box::new(Register {
                node: Node {
                    node: name(node),
                    address: if address { "10.0.0.1".into() } else { String::new() },
                    ..Node::default()
                },
                skip_node_update: skip,
                service: service.map(|(id, service)| Service {
                    id: name(id),
                    service: name(service),
                    ..Service::default()
                }),
                checks: check
                    .map(|(id, bound, status)| Check {
                        check_id: name(id),
                        service_id: if bound { name(id) } else { String::new() },
                        status: health(status),
                        ..Check::default()
                    })
                    .into_iter()
                    .collect(),
            })),
            Op::Deregister { node, service, check } => Command::Deregister(Deregister {
                node: name(node),
                service_id: service.map(name),
                check_id: check.map(name),
            }),
            Op::Txn(parts) => Command::Txn(Txn { ops: parts.into_iter().map(txn_op).collect() }),
            Op::Save => {
                if saved.len() == SAVED_MAX {
                    saved.remove(0);
                }
                saved.push(fsm.snapshot());
                continue;
            }
            Op::Restore { slot, ahead: from_ahead } => {
                let state = if from_ahead {
                    ahead.snapshot()
                } else {
                    saved
                        .get(usize::from(slot) % saved.len().max(1))
                        .cloned()
                        .unwrap_or_else(|| Fsm::new().snapshot())
                };
                let command = Command::Restore(Restore { state });
                let applied = fsm.apply(index, &command.encode(now_ms)).expect("a restore decodes");
                assert_eq!(applied.response, Response::Bool(true), "a snapshot of a valid state restores");
                assert!(applied.touched.all);
                assert_eq!(fsm.applied(), index);
                continue;
            }
            Op::RestoreRaw(bytes) => Command::Restore(Restore { state: Bytes::from(bytes) }),
            Op::Abort(id) => Command::RestoreAbort(RestoreAbort { id: u64::from(id % 4) }),
            Op::Autopilot { cleanup, trailing, cas } => Command::AutopilotSet(AutopilotSet {
                config: muster_core::autopilot::Config {
                    cleanup_dead_servers: cleanup,
                    max_trailing_logs: u64::from(trailing),
                    ..Default::default()
                },
                cas: cas.map(u64::from),
            }),
            Op::AclInit => Command::AclInitialize(AclInitialize {}),
            Op::AclBootstrap { accessor, secret, reset } => Command::AclBootstrap(Box::new(AclBootstrap {
                token: Token {
                    accessor_id: acl_id(accessor),
                    secret_id: name(secret),
                    policies: vec![GLOBAL_MANAGEMENT_POLICY_ID.to_owned()],
                    create_time_ms: now_ms,
                    ..Token::default()
                },
                reset_index: reset.map(u64::from),
            })),
            Op::AclTokenSet { accessor, secret, policies, service, create, expires } => {
                Command::AclTokenSet(Box::new(AclTokenSet {
                    token: Token {
                        accessor_id: acl_id(accessor),
                        secret_id: name(secret),
                        policies: policies.into_iter().take(4).map(acl_id).collect(),
                        service_identities: service
                            .map(|s| ServiceIdentity { service_name: name(s), datacenters: Vec::new() })
                            .into_iter()
                            .collect(),
                        create_time_ms: now_ms,
                        expiration_time_ms: expires.map(|ms| now_ms + u64::from(ms)),
                        ..Token::default()
                    },
                    create,
                }))
            }
            Op::AclTokenDelete(accessor) => {
                Command::AclTokenDelete(AclTokenDelete { accessor_id: acl_id(accessor) })
            }
            Op::AclPolicySet { id, name: policy_name, create } => {
                Command::AclPolicySet(Box::new(AclPolicySet {
                    policy: Policy {
                        id: acl_id(id),
                        name: format!("p{}", policy_name % 3),
                        rules_text: String::new(),
                        rules: Rules::default(),
                        ..Policy::default()
                    },
                    create,
                }))
            }
            Op::AclPolicyDelete(id) => Command::AclPolicyDelete(AclPolicyDelete { id: acl_id(id) }),
            Op::Piece { slot, id, piece_bytes, nth } => {
                let state = saved
                    .get(usize::from(slot) % saved.len().max(1))
                    .cloned()
                    .unwrap_or_else(|| Fsm::new().snapshot());
                let size = (usize::from(piece_bytes) + 1) * 8;
                let offset = (usize::from(nth) % state.len().div_ceil(size)) * size;
                let end = (offset + size).min(state.len());
                Command::RestoreChunk(RestoreChunk {
                    id: u64::from(id % 4),
                    offset: offset as u64,
                    total: state.len() as u64,
                    bytes: state.slice(offset..end),
                })
            }
        };
        // A CAS on autopilot's settings and a bootstrap's reset index compare indexes, which
        // differ in the twin.
        let twin = !matches!(
            command,
            Command::Restore(_)
                | Command::RestoreChunk(_)
                | Command::RestoreAbort(_)
                | Command::AutopilotSet(_)
                | Command::AclBootstrap(_)
        );
        let encoded = command.encode(now_ms);
        assert_eq!(Command::decode(&encoded), Ok(Some(Stamped { now_ms, command })));
        fsm.apply(index, &encoded).expect("a well-formed command applies");
        if twin {
            ahead.apply(index + AHEAD, &encoded).expect("a well-formed command applies");
        }
    }
    let snapshot = fsm.snapshot();
    let restored = Fsm::restore(&snapshot).expect("a snapshot restores");
    assert_eq!(restored.snapshot(), snapshot);
    assert_eq!(restored, fsm);
});
