//! Raft's write-ahead log on this machine's disk: appends with group commit, at several depths
//! of writes in flight (one client waiting for each write, up to many pipelined proposals).
//! Prints writes/s and fdatasyncs per 1,000 writes. Not criterion: the figure of merit is a
//! count of fsyncs, not a latency distribution.
//!
//! `cargo bench -p muster-benches --bench wal` (MUSTER_BENCH_DIR picks the disk; the default is
//! the target directory). With `-- --test` (as CI runs every bench) it writes a few records only.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use bytes::Bytes;
use muster::wal::{GroupCommit, Wal, Written};
use muster_core::raft::{Entry, Payload, Persist, PersistId};

const PAYLOAD_BYTES: usize = 128;

fn main() {
    let quick = std::env::args().any(|a| a == "--test");
    let writes: u64 = if quick { 64 } else { 4_000 };
    let dir = std::env::var_os("MUSTER_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/bench-wal"));
    println!(
        "WAL append + fdatasync with group commit, {writes} writes of {PAYLOAD_BYTES} B, in {}",
        dir.display()
    );
    println!(
        "{:>9} | {:>10} | {:>17} | {:>12}",
        "in flight", "writes/s", "fsyncs/1000 writes", "mean latency"
    );
    for depth in [1usize, 8, 64, 256] {
        let _ = std::fs::remove_dir_all(&dir);
        let (rate, syncs_per_1000, latency) = run(&dir, writes, depth);
        println!("{depth:>9} | {rate:>10.0} | {syncs_per_1000:>17.1} | {latency:>12.2?}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Writes `writes` one-entry persists keeping `depth` of them unacknowledged; returns writes/s,
/// fsyncs per 1,000 writes and the mean time from submission to acknowledgement.
fn run(dir: &PathBuf, writes: u64, depth: usize) -> (f64, f64, Duration) {
    let (wal, _) = Wal::open(dir).expect("open the log");
    // The writer the Raft server runs: its own thread, one fdatasync per round.
    let (persist_tx, mut written_rx) = GroupCommit::spawn(wal, "bench-wal".into()).expect("writer");
    let mut syncs = 0u64;
    let payload = Bytes::from(vec![7u8; PAYLOAD_BYTES]);
    let start = Instant::now();
    let mut submitted: VecDeque<(u64, Instant)> = VecDeque::new();
    let mut latency_total = Duration::ZERO;
    let mut next = 1;
    let mut acked = 0;
    while acked < writes {
        while next <= writes && submitted.len() < depth {
            let entry = Entry { index: next, term: 1, payload: Payload::Command(payload.clone()) };
            let persist = Persist {
                id: PersistId::from_raw(next),
                hard_state: None,
                snapshot: None,
                truncate_from: None,
                entries: vec![entry],
            };
            persist_tx.send(persist).expect("writer alive");
            submitted.push_back((next, Instant::now()));
            next += 1;
        }
        let durable = match written_rx.blocking_recv().expect("writer alive").expect("disk") {
            Written::Durable { newest, .. } => {
                syncs += 1;
                newest.get()
            }
            Written::Full(_) => continue,
        };
        while submitted.front().is_some_and(|&(id, _)| id <= durable) {
            let (_, at) = submitted.pop_front().expect("checked");
            latency_total += at.elapsed();
            acked += 1;
        }
    }
    let elapsed = start.elapsed();
    drop(persist_tx);
    (
        writes as f64 / elapsed.as_secs_f64(),
        syncs as f64 * 1000.0 / writes as f64,
        latency_total / writes as u32,
    )
}
