//! The replicated state machine (issue 5): apply cost per command type, reads at 100,000 keys,
//! the cost of one write's wake-ups with 10,000 blocked readers on unrelated keys, and the
//! catalog at 10,000 instances of one service (health queries, a check flapping, a
//! registration).

use std::hint::black_box;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use muster_core::fsm::{
    Check, Command, Deregister, Fsm, Health, KvCas, KvDelete, KvDeleteTree, KvLock, KvOperand, KvSet,
    KvUnlock, KvVerb, Node, Register, Service, Session, SessionDestroy, Table, Touched, Txn, TxnOp,
    WatchTarget, Watches,
};

const KEYS: usize = 100_000;

fn key(i: usize) -> String {
    format!("service/web-{:03}/config/{i:06}", i % 100)
}

/// A store of `KEYS` keys under 100 prefixes of 1,000 keys each, values of 128 bytes.
fn store() -> Fsm {
    let mut fsm = Fsm::new();
    let value = Bytes::from(vec![b'v'; 128]);
    for i in 0..KEYS {
        let command = Command::KvSet(KvSet { key: key(i), value: value.clone(), flags: 0 });
        fsm.apply(i as u64 + 1, &command.encode(0)).unwrap();
    }
    fsm
}

fn apply(c: &mut Criterion) {
    let mut fsm = store();
    let mut next = KEYS as u64;
    let value = Bytes::from(vec![b'w'; 128]);
    let mut group = c.benchmark_group("fsm_apply_at_100k_keys");
    // Each command is encoded as a leader would, then applied from its bytes.
    group.bench_function("set_existing", |b| {
        b.iter(|| {
            next += 1;
            let command = Command::KvSet(KvSet { key: key(4242), value: value.clone(), flags: 1 });
            black_box(fsm.apply(next, &command.encode(0)).unwrap())
        })
    });
    group.bench_function("cas_success", |b| {
        b.iter(|| {
            let expected = fsm.kv().get(&key(4242)).0;
            next += 1;
            let set = KvSet { key: key(4242), value: value.clone(), flags: 0 };
            black_box(fsm.apply(next, &Command::KvCas(KvCas { set, index: expected }).encode(0)).unwrap())
        })
    });
    group.bench_function("create_then_delete", |b| {
        b.iter(|| {
            next += 2;
            let set = Command::KvSet(KvSet { key: "fresh/key".into(), value: value.clone(), flags: 0 });
            fsm.apply(next - 1, &set.encode(0)).unwrap();
            black_box(
                fsm.apply(next, &Command::KvDelete(KvDelete { key: "fresh/key".into() }).encode(0)).unwrap(),
            )
        })
    });
    // Sessions and locks need a node to live on.
    next += 1;
    let node = Node { node: "n1".into(), address: "10.0.0.1".into(), ..Node::default() };
    let register = Command::Register(Box::new(Register { node, ..Register::default() }));
    fsm.apply(next, &register.encode(0)).unwrap();
    next += 1;
    let session = Session { id: "s-bench".into(), node: "n1".into(), ..Session::default() };
    fsm.apply(next, &Command::SessionCreate(session).encode(0)).unwrap();
    group.bench_function("lock_then_unlock", |b| {
        b.iter(|| {
            next += 2;
            let set = KvSet { key: key(4242), value: value.clone(), flags: 0 };
            let lock = Command::KvLock(KvLock { set: set.clone(), session: "s-bench".into() });
            fsm.apply(next - 1, &lock.encode(0)).unwrap();
            let unlock = Command::KvUnlock(KvUnlock { set, session: "s-bench".into() });
            black_box(fsm.apply(next, &unlock.encode(0)).unwrap())
        })
    });
    group.bench_function("session_create_then_destroy", |b| {
        b.iter(|| {
            next += 2;
            let session =
                Session { id: "s-churn".into(), node: "n1".into(), ttl: "30s".into(), ..Session::default() };
            fsm.apply(next - 1, &Command::SessionCreate(session).encode(0)).unwrap();
            let destroy = Command::SessionDestroy(SessionDestroy { id: "s-churn".into() });
            black_box(fsm.apply(next, &destroy.encode(0)).unwrap())
        })
    });
    group.bench_function("txn_4_ops", |b| {
        b.iter(|| {
            next += 1;
            let operand = |verb: KvVerb, k: usize| {
                TxnOp::Kv(verb, KvOperand { key: key(k), value: value.clone(), ..KvOperand::default() })
            };
            let txn = Txn {
                ops: vec![
                    operand(KvVerb::Set, 1),
                    operand(KvVerb::Set, 2),
                    operand(KvVerb::Get, 3),
                    operand(KvVerb::Delete, 99_999_999),
                ],
            };
            black_box(fsm.apply(next, &Command::Txn(txn).encode(0)).unwrap())
        })
    });
    group.bench_function("delete_tree_1000", |b| {
        b.iter_custom(|iterations| {
            let mut total = std::time::Duration::ZERO;
            for _ in 0..iterations {
                for i in 0..1000 {
                    next += 1;
                    let set =
                        Command::KvSet(KvSet { key: format!("tree/{i:04}"), value: value.clone(), flags: 0 });
                    fsm.apply(next, &set.encode(0)).unwrap();
                }
                next += 1;
                let tree = Command::KvDeleteTree(KvDeleteTree { prefix: "tree/".into() }).encode(0);
                let start = std::time::Instant::now();
                black_box(fsm.apply(next, &tree).unwrap());
                total += start.elapsed();
            }
            total
        })
    });
    group.finish();
}

fn reads(c: &mut Criterion) {
    let fsm = store();
    let mut group = c.benchmark_group("fsm_read_at_100k_keys");
    group.bench_function("get", |b| b.iter(|| black_box(fsm.kv().get(black_box(&key(4242))))));
    group.bench_function("recurse_1000", |b| {
        b.iter(|| black_box(fsm.kv().list(black_box("service/web-042/"))))
    });
    group.bench_function("keys_separator_root", |b| {
        b.iter(|| black_box(fsm.kv().keys(black_box(""), Some("/"))))
    });
    group.finish();
}

fn wake(c: &mut Criterion) {
    let mut watches = Watches::new();
    for i in 0..10_000 {
        let target =
            if i % 2 == 0 { WatchTarget::Key(key(i)) } else { WatchTarget::Prefix(format!("other/{i}/")) };
        watches.register(target);
    }
    let touched = Touched { keys: vec![key(99_999)], ..Touched::default() };
    c.bench_function("wake_one_write_10k_unrelated_watchers", |b| {
        b.iter(|| black_box(watches.wake(black_box(&touched))))
    });
}

const INSTANCES: usize = 10_000;

fn registration(i: usize, web_status: Health) -> Command {
    let node = format!("node-{i:05}");
    Command::Register(Box::new(Register {
        node: Node {
            node: node.clone(),
            address: format!("10.{}.{}.{}", i >> 16, (i >> 8) & 255, i & 255),
            ..Node::default()
        },
        skip_node_update: false,
        service: Some(Service {
            id: "web".into(),
            service: "web".into(),
            tags: vec![if i.is_multiple_of(2) { "rails".into() } else { "django".into() }],
            port: 80,
            ..Service::default()
        }),
        checks: vec![
            Check {
                check_id: "serfHealth".into(),
                name: "Serf Health Status".into(),
                status: Health::Passing,
                ..Check::default()
            },
            Check {
                check_id: "web-http".into(),
                name: "web".into(),
                service_id: "web".into(),
                status: web_status,
                ..Check::default()
            },
        ],
    }))
}

/// `web` on 10,000 nodes, each with `serfHealth` and an HTTP check; one in ten critical.
fn catalog() -> Fsm {
    let mut fsm = Fsm::new();
    for i in 0..INSTANCES {
        let status = if i % 10 == 0 { Health::Critical } else { Health::Passing };
        fsm.apply(i as u64 + 1, &registration(i, status).encode(0)).unwrap();
    }
    fsm
}

fn catalog_queries(c: &mut Criterion) {
    let mut fsm = catalog();
    let mut group = c.benchmark_group("catalog_10k_instances");
    group.bench_function("health_service_passing", |b| {
        b.iter(|| black_box(fsm.catalog().health_service(black_box("web"), &[], true).1.len()))
    });
    group.bench_function("health_service_tag_rails", |b| {
        b.iter(|| black_box(fsm.catalog().health_service(black_box("web"), &["rails"], false).1.len()))
    });
    group.bench_function("catalog_services", |b| b.iter(|| black_box(fsm.catalog().services().1.len())));
    let mut next = INSTANCES as u64;
    let mut flip = false;
    // One check flapping on one node: the write a health-checking agent sends most.
    group.bench_function("check_status_change", |b| {
        b.iter(|| {
            next += 1;
            flip = !flip;
            let status = if flip { Health::Critical } else { Health::Passing };
            black_box(fsm.apply(next, &registration(4242, status).encode(0)).unwrap())
        })
    });
    group.bench_function("deregister_then_register_instance", |b| {
        let deregister = Command::Deregister(Deregister {
            node: "node-04244".into(),
            service_id: Some("web".into()),
            check_id: None,
        })
        .encode(0);
        let register = registration(4244, Health::Passing).encode(0);
        b.iter(|| {
            next += 2;
            fsm.apply(next - 1, &deregister).unwrap();
            black_box(fsm.apply(next, &register).unwrap())
        })
    });
    group.bench_function("reregister_unchanged", |b| {
        let same = registration(4243, Health::Passing).encode(0);
        b.iter(|| {
            next += 1;
            black_box(fsm.apply(next, &same).unwrap())
        })
    });
    group.finish();
}

fn wake_catalog(c: &mut Criterion) {
    let mut watches = Watches::new();
    for i in 0..10_000 {
        let target = match i % 3 {
            0 => WatchTarget::Service(format!("svc-{i}")),
            1 => WatchTarget::Node(format!("node-{i}")),
            _ => WatchTarget::Key(key(i)),
        };
        watches.register(target);
    }
    // A check flapping on a node nobody watches, of a service nobody watches.
    let touched = Touched {
        tables: vec![Table::Checks],
        services: vec!["web".into()],
        nodes: vec!["node-unwatched".into()],
        ..Touched::default()
    };
    c.bench_function("wake_one_catalog_write_10k_unrelated_watchers", |b| {
        b.iter(|| black_box(watches.wake(black_box(&touched))))
    });
}

criterion_group!(benches, apply, reads, wake, wake_catalog, catalog_queries);
criterion_main!(benches);
