//! Scenarios on the in-process harness (tier a): plain `cargo test`, no special build.
//!
//! Each test takes its seeds from `muster_sim::seed` and prints the command that replays a
//! failing one.

use std::ops::Range;
use std::time::Duration;

use bytes::Bytes;
use muster_core::gossip::{Command, Event};
use muster_core::swim::{MemberEventKind, State};
use muster_core::Rng;
use muster_sim::harness::{Cluster, NetConfig};
use muster_sim::seed::{for_each_seed, map_seeds, Replay};

const CARGO: &str = "cargo test -p muster-sim --test harness";

fn replay(test: &'static str) -> Replay {
    Replay { command: CARGO, test }
}

/// A cluster of `size` nodes on `net`, each joined to node 0, run until every node knows every
/// other.
fn converged_cluster(seed: u64, size: usize, net: NetConfig) -> Cluster {
    let mut cluster = Cluster::new(seed, size, net);
    cluster.join_all_to(0);
    cluster.run_until(Duration::from_secs(10), Cluster::converged).expect("converges");
    cluster
}

/// Whether every node of `observers` sees node `about` in `state` (`None`: forgotten).
fn all_see(cluster: &Cluster, mut observers: Range<usize>, about: usize, state: Option<State>) -> bool {
    observers.all(|i| cluster.state(i, about) == state)
}

fn member_events(cluster: &Cluster, observer: usize, kind: MemberEventKind, about: usize) -> usize {
    let name = cluster.name(about).to_owned();
    cluster
        .events(observer)
        .iter()
        .filter(|(_, e)| matches!(e, Event::Member(m) if m.kind == kind && m.node.name == name))
        .count()
}

#[test]
fn nodes_joined_to_one_seed_all_learn_each_other() {
    let mut took = Vec::new();
    for_each_seed(replay("nodes_joined_to_one_seed_all_learn_each_other"), 0..40, |seed| {
        let mut cluster = Cluster::new(seed, 8, NetConfig::lan());
        cluster.join_all_to(0);
        // Joins are immediate push/pulls with n0; later joiners reach earlier ones by gossip
        // (200 ms rounds, fan-out 3, each message sent 4 times per node), and the rare node that
        // gossip misses by the next periodic push/pull (every 30 s, first one staggered).
        took.push(cluster.run_until(Duration::from_secs(35), Cluster::converged).expect("converges"));
        for i in 1..8 {
            assert_eq!(member_events(&cluster, 0, MemberEventKind::Join, i), 1);
        }
        assert_eq!(cluster.node(0).unwrap().stats().decode_errors, 0);
    });
    took.sort();
    let median = took[took.len() / 2];
    println!("8-node join: median {median:?}, max {:?}", took.last().unwrap());
    // An aggregate over many seeds; a replay of one seed checks only the per-seed properties.
    if took.len() >= 10 {
        assert!(median <= Duration::from_secs(1), "gossip, not push/pull, does the usual work: {median:?}");
    }
}

#[test]
fn isolated_node_is_declared_failed_and_rejoins_by_itself_after_heal() {
    for_each_seed(
        replay("isolated_node_is_declared_failed_and_rejoins_by_itself_after_heal"),
        0..20,
        |seed| {
            let net = NetConfig { loss: 0.05, ..NetConfig::lan() };
            let mut cluster = converged_cluster(seed, 5, net);

            cluster.isolate(4);
            cluster
                .run_until(Duration::from_secs(60), |c| all_see(c, 0..4, 4, Some(State::Dead)))
                .expect("the isolated node is declared dead");
            assert_eq!(cluster.state(0, 1), Some(State::Alive), "the rest stays alive");
            assert!(cluster.stats().partitioned > 0);

            // No manual step: reconnects (every 30 s) and refutations bring it back.
            cluster.heal();
            cluster.run_until(Duration::from_secs(120), Cluster::converged).expect("heals");
            assert!(cluster.node(4).unwrap().stats().swim.refutations >= 1);
        },
    );
}

#[test]
fn leave_shows_left_crash_shows_failed_force_leave_and_restart_rejoins() {
    // Scenario 6 of the gossip issue: leave vs crash.
    for_each_seed(
        replay("leave_shows_left_crash_shows_failed_force_leave_and_restart_rejoins"),
        0..10,
        |seed| {
            let mut cluster = converged_cluster(seed, 5, NetConfig::lan());

            cluster.command(3, Command::Leave);
            cluster
                .run_until(Duration::from_secs(10), |c| {
                    c.node(3).unwrap().has_left() && all_see(c, 0..3, 3, Some(State::Left))
                })
                .expect("the leave completes and everyone sees it");
            assert_eq!(member_events(&cluster, 0, MemberEventKind::Failed, 3), 0, "a leave is not a failure");

            cluster.crash(4);
            cluster
                .run_until(Duration::from_secs(60), |c| all_see(c, 0..3, 4, Some(State::Dead)))
                .expect("failed");
            assert_eq!(member_events(&cluster, 0, MemberEventKind::Leave, 4), 0);

            cluster.command(0, Command::ForceLeave { name: cluster.name(4).to_owned(), prune: false });
            cluster
                .run_until(Duration::from_secs(10), |c| all_see(c, 0..3, 4, Some(State::Left)))
                .expect("force-left");

            // The crashed node restarts with the same name: a higher boot epoch outranks every claim
            // about its previous life, so it is alive again without waiting for any reclaim time.
            cluster.restart(4);
            cluster
                .run_until(Duration::from_secs(10), |c| all_see(c, 0..3, 4, Some(State::Alive)))
                .expect("rejoins alive");
            assert_eq!(cluster.view(0, 4).unwrap().incarnation >> 32, 2, "boot epoch 2");
        },
    );
}

#[test]
fn force_leave_with_prune_makes_every_member_forget_the_node_at_once() {
    for_each_seed(
        replay("force_leave_with_prune_makes_every_member_forget_the_node_at_once"),
        0..10,
        |seed| {
            let mut cluster = converged_cluster(seed, 5, NetConfig::lan());
            cluster.crash(4);
            cluster
                .run_until(Duration::from_secs(60), |c| all_see(c, 0..4, 4, Some(State::Dead)))
                .expect("failed");
            // Pruning a live member is refused, and changes nothing.
            let alive = cluster.name(3).to_owned();
            assert!(cluster.try_command(1, Command::ForceLeave { name: alive, prune: true }).is_err());
            cluster.command(1, Command::ForceLeave { name: cluster.name(4).to_owned(), prune: true });
            cluster
                .run_until(Duration::from_secs(10), |c| all_see(c, 0..4, 4, None))
                .expect("every live member forgets it, long before the reap");
            assert!(all_see(&cluster, 0..3, 3, Some(State::Alive)), "the others are untouched");
            assert_eq!(member_events(&cluster, 2, MemberEventKind::Reap, 4), 1, "reported as a reap");
        },
    );
}

#[test]
fn a_node_back_with_a_wiped_data_dir_is_alive_again_whether_or_not_it_was_failed() {
    // A container replaced under the same name and address, with an empty volume: it boots in
    // epoch 1, below the life its peers remember, and must adopt an epoch above that one.
    for_each_seed(
        replay("a_node_back_with_a_wiped_data_dir_is_alive_again_whether_or_not_it_was_failed"),
        0..10,
        |seed| {
            let mut cluster = converged_cluster(seed, 5, NetConfig::lan());
            // A plain restart first, so the remembered life (epoch 2) is above a fresh boot's.
            cluster.crash(4);
            cluster.restart(4);
            cluster.run_until(Duration::from_secs(30), Cluster::converged).expect("converges");
            for wait_for_failure in [false, true] {
                let remembered = cluster.view(0, 4).unwrap().incarnation >> 32;
                assert!(remembered >= 2);
                cluster.crash(4);
                if wait_for_failure {
                    cluster
                        .run_until(Duration::from_secs(60), |c| all_see(c, 0..4, 4, Some(State::Dead)))
                        .expect("failed");
                }
                cluster.wipe(4);
                cluster.restart(4);
                cluster
                    .run_until(Duration::from_secs(30), |c| {
                        (0..4).all(|i| {
                            c.view(i, 4)
                                .is_some_and(|v| v.state == State::Alive && v.incarnation >> 32 > remembered)
                        })
                    })
                    .expect("alive again in an epoch above the remembered one");
                assert_eq!(u64::from(cluster.node(4).unwrap().boot_epoch()), remembered + 1);
                cluster.run_until(Duration::from_secs(30), Cluster::converged).expect("converges");
            }
        },
    );
}

#[test]
fn crash_before_fsync_loses_the_new_boot_epoch_and_the_next_boot_reuses_it_safely() {
    // A restart persists boot epoch 2; the node crashes before the write is durable, so nothing
    // of epoch 2 was ever sent. The next boot takes epoch 2 again.
    for_each_seed(
        replay("crash_before_fsync_loses_the_new_boot_epoch_and_the_next_boot_reuses_it_safely"),
        0..10,
        |seed| {
            let slow_disk = Duration::from_millis(300);
            let net = NetConfig { fsync_min: slow_disk, fsync_max: slow_disk, ..NetConfig::lan() };
            let mut cluster = converged_cluster(seed, 3, net);

            cluster.crash(2);
            cluster.run_for(Duration::from_secs(1));
            cluster.restart(2);
            assert_eq!(cluster.node(2).unwrap().boot_epoch(), 2);
            cluster.run_for(Duration::from_millis(100));
            cluster.crash(2);
            assert_eq!(cluster.stats().writes_lost, 1, "the write of epoch 2 was still pending");
            cluster.restart(2);
            assert_eq!(cluster.node(2).unwrap().boot_epoch(), 2, "durable state still says 1");
            cluster
                .run_until(Duration::from_secs(60), Cluster::converged)
                .expect("converges after the restart");
        },
    );
}

#[test]
fn tag_updates_reach_everyone() {
    for_each_seed(replay("tag_updates_reach_everyone"), 0..10, |seed| {
        let mut cluster = converged_cluster(seed, 10, NetConfig::lan());
        let tags = Bytes::from_static(b"role=web");
        cluster.command(7, Command::UpdateMeta { meta: tags.clone() });
        cluster
            .run_until(Duration::from_secs(5), |c| {
                (0..10).filter(|&i| i != 7).all(|i| c.view(i, 7).unwrap().meta == tags)
            })
            .expect("the update spreads");
        assert_eq!(member_events(&cluster, 0, MemberEventKind::Update, 7), 1);
    });
}

#[test]
fn user_events_reach_every_node_exactly_once() {
    for_each_seed(replay("user_events_reach_every_node_exactly_once"), 0..10, |seed| {
        let net = NetConfig { loss: 0.1, ..NetConfig::lan() };
        let mut cluster = Cluster::new(seed, 10, net);
        cluster.join_all_to(0);
        cluster.run_until(Duration::from_secs(60), Cluster::converged).expect("converges");
        for (node, name) in [(3, "deploy"), (7, "restart"), (3, "deploy-again")] {
            cluster
                .command(node, Command::FireEvent { name: name.into(), payload: Bytes::from_static(b"v") });
        }
        let received = |c: &Cluster, i: usize| {
            let mut names: Vec<(u64, String)> = c
                .events(i)
                .iter()
                .filter_map(|(_, e)| match e {
                    Event::User(u) => Some((u.ltime, u.name.clone())),
                    _ => None,
                })
                .collect();
            names.sort();
            names
        };
        cluster
            .run_until(Duration::from_secs(10), |c| (0..10).all(|i| received(c, i).len() == 3))
            .expect("delivered");
        cluster.run_for(Duration::from_secs(10));
        let expected = received(&cluster, 3);
        assert_eq!(expected.iter().map(|(_, n)| n.as_str()).collect::<Vec<_>>().len(), 3);
        for i in 0..10 {
            assert_eq!(received(&cluster, i), expected, "node {i} got each event exactly once");
        }
    });
}

#[test]
fn lossy_network_without_partitions_never_declares_a_live_node_failed() {
    // Every probe's fallback goes over the reliable stream within the probe interval, so loss
    // alone never fails a probe: no suspicion, no failure.
    for_each_seed(
        replay("lossy_network_without_partitions_never_declares_a_live_node_failed"),
        0..10,
        |seed| {
            let net = NetConfig {
                loss: 0.3,
                duplicate: 0.1,
                latency_max: Duration::from_millis(100),
                ..NetConfig::lan()
            };
            let mut cluster = Cluster::new(seed, 8, net);
            cluster.join_all_to(0);
            cluster.run_for(Duration::from_secs(120));
            assert!(cluster.converged());
            assert!(cluster.stats().lost > 1000, "the network was lossy: {:?}", cluster.stats());
            for i in 0..8 {
                assert_eq!(cluster.node(i).unwrap().stats().swim.deaths_declared, 0, "node {i}");
                for peer in 0..8 {
                    assert_eq!(member_events(&cluster, i, MemberEventKind::Failed, peer), 0);
                }
            }
        },
    );
}

/// One run of randomized faults, VOPR-style: a swarm of parameters drawn from the seed, a
/// safety phase of crashes, restarts, partitions and slow nodes over a hostile network (the
/// oracle and every node's invariants checked at each step), then a liveness phase that heals
/// everything and requires every live node to see every other alive at its current incarnation.
/// Returns the trace hash and record count.
fn random_faults(seed: u64) -> (u64, u64) {
    let mut swarm = Rng::from_seed(seed ^ 0x5EED_5EED);
    let size = 3 + swarm.below(6) as usize;
    let net = NetConfig::hostile(&mut swarm);
    println!("swarm: size={size} {net:?}");
    let mut cluster = Cluster::new(seed, size, net);
    cluster.join_all_to(0);
    for _ in 0..swarm.below(size as u64) {
        let (a, b) = (swarm.below(size as u64) as usize, swarm.below(size as u64) as usize);
        if a != b {
            cluster.join(a, b);
        }
    }

    let safety_end = cluster.now() + Duration::from_secs(60);
    while cluster.now() < safety_end {
        cluster.run_for(swarm.duration_between(Duration::from_millis(100), Duration::from_secs(5)));
        let node = swarm.below(size as u64) as usize;
        match swarm.below(7) {
            0 if cluster.is_up(node) => cluster.crash(node),
            1 if !cluster.is_up(node) => cluster.restart(node),
            2 => cluster.isolate(node),
            3 => {
                let cut = 1 + swarm.below(size as u64 - 1) as usize;
                let (left, right): (Vec<usize>, Vec<usize>) = (0..size).partition(|&i| i < cut);
                cluster.partition(&[&left, &right]);
            }
            4 => cluster.block(node, swarm.below(size as u64) as usize),
            5 => cluster.slow(
                node,
                swarm.duration_between(Duration::from_secs(1), Duration::from_secs(10)),
                Duration::from_secs(1),
                Duration::from_secs(3),
            ),
            _ => cluster.heal(),
        }
    }

    cluster.heal();
    for node in 0..size {
        if !cluster.is_up(node) {
            cluster.restart(node);
        }
    }
    // Reconnects run every 30 s; a node may need two (one to refute, one to be heard), and
    // suspicions raised during the faults must run out (at most 6 × 4 s × log10 n).
    let liveness_bound = Duration::from_secs(180);
    cluster
        .run_until(liveness_bound, Cluster::converged)
        .unwrap_or_else(|stuck| panic!("not converged {stuck:?} after healing"));
    (cluster.trace().hash(), cluster.trace().records())
}

#[test]
fn random_faults_never_break_persistence_ordering_and_always_heal() {
    let ran =
        map_seeds(replay("random_faults_never_break_persistence_ordering_and_always_heal"), 0..32, |seed| {
            let (hash, records) = random_faults(seed);
            println!("seed={seed} trace={hash:016x} records={records}");
        })
        .len();
    println!("random_faults: {ran} seeds");
}

#[test]
fn same_seed_gives_the_same_trace_and_different_seeds_differ() {
    for_each_seed(replay("same_seed_gives_the_same_trace_and_different_seeds_differ"), 100..103, |seed| {
        let first = random_faults(seed);
        let second = random_faults(seed);
        assert_eq!(first, second, "seed {seed} is not deterministic");
        assert!(first.1 > 1000, "the run did something: {} records", first.1);
        assert_ne!(first.0, random_faults(seed + 1000).0, "seeds {seed} and {} collide", seed + 1000);
    });
}
