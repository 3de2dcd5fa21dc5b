//! The replicated state machine (issue 5): apply cost per command type, reads at 100,000 keys,
//! and the cost of one write's wake-ups with 10,000 blocked readers on unrelated keys.

use std::hint::black_box;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use muster_core::fsm::{Command, Fsm, KvCas, KvDelete, KvDeleteTree, KvSet, Touched, WatchTarget, Watches};

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
        fsm.apply(i as u64 + 1, &command.encode()).unwrap();
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
            black_box(fsm.apply(next, &command.encode()).unwrap())
        })
    });
    group.bench_function("cas_success", |b| {
        b.iter(|| {
            let expected = fsm.kv().get(&key(4242)).0;
            next += 1;
            let set = KvSet { key: key(4242), value: value.clone(), flags: 0 };
            black_box(fsm.apply(next, &Command::KvCas(KvCas { set, index: expected }).encode()).unwrap())
        })
    });
    group.bench_function("create_then_delete", |b| {
        b.iter(|| {
            next += 2;
            let set = Command::KvSet(KvSet { key: "fresh/key".into(), value: value.clone(), flags: 0 });
            fsm.apply(next - 1, &set.encode()).unwrap();
            black_box(
                fsm.apply(next, &Command::KvDelete(KvDelete { key: "fresh/key".into() }).encode()).unwrap(),
            )
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
                    fsm.apply(next, &set.encode()).unwrap();
                }
                next += 1;
                let tree = Command::KvDeleteTree(KvDeleteTree { prefix: "tree/".into() }).encode();
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
    let touched = Touched { keys: vec![key(99_999)] };
    c.bench_function("wake_one_write_10k_unrelated_watchers", |b| {
        b.iter(|| black_box(watches.wake(black_box(&touched))))
    });
}

criterion_group!(benches, apply, reads, wake);
criterion_main!(benches);
