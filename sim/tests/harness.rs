//! Scenarios on the in-process harness (tier a): plain `cargo test`, no special build.
//!
//! Each test takes its seeds from `muster_sim::seed` and prints the command that replays a
//! failing one.

use std::time::Duration;

use muster_core::ping::Status;
use muster_core::{Event, Rng};
use muster_sim::harness::{Cluster, NetConfig};
use muster_sim::seed::{for_each_seed, Replay};

const CARGO: &str = "cargo test -p muster-sim --test harness";

fn replay(test: &'static str) -> Replay {
    Replay {
        command: CARGO,
        test,
    }
}

/// Every node joined to node 0 (a star): node 0 sees everyone, everyone sees node 0.
fn star_converged(cluster: &Cluster) -> bool {
    (1..cluster.len()).all(|i| {
        cluster.status(0, i) == Some(Status::Reachable)
            && cluster.status(i, 0) == Some(Status::Reachable)
    })
}

/// The longest a probe can take to reach a verdict after the network changes: the next round
/// starts within one interval, or a probe already in flight ends within its three attempts, plus
/// a round trip. Defaults: 1 s interval, 3 attempts of 500 ms.
fn verdict_bound(net: &NetConfig) -> Duration {
    Duration::from_millis(1000 + 3 * 500) + net.latency_max * 2
}

#[test]
fn nodes_joined_to_one_seed_all_become_reachable() {
    for_each_seed(
        replay("nodes_joined_to_one_seed_all_become_reachable"),
        0..20,
        |seed| {
            let mut cluster = Cluster::new(seed, 5, NetConfig::lan());
            cluster.join_all_to(0);
            let took = cluster
                .run_until(Duration::from_secs(5), star_converged)
                .expect("converges");
            // A node's first round starts within one interval of boot; node 0 learns of it from its
            // ping and probes it in node 0's next round, within another interval; then a round trip.
            assert!(
                took <= Duration::from_millis(2 * 1000 + 2 * 2 + 5),
                "took {took:?}"
            );
            for i in 1..5 {
                assert_eq!(cluster.incarnation_seen(0, i), Some(1));
                let discovered = Event::PeerDiscovered {
                    peer: cluster.addr(i),
                };
                assert_eq!(
                    cluster
                        .events(0)
                        .iter()
                        .filter(|(_, e)| *e == discovered)
                        .count(),
                    1
                );
            }
            assert_eq!(cluster.stats().lost, 0);
            assert_eq!(cluster.node(0).unwrap().stats().decode_errors, 0);
        },
    );
}

#[test]
fn isolated_node_is_reported_unreachable_and_reachable_again_after_heal() {
    for_each_seed(
        replay("isolated_node_is_reported_unreachable_and_reachable_again_after_heal"),
        0..20,
        |seed| {
            let net = NetConfig {
                loss: 0.05,
                ..NetConfig::lan()
            };
            let bound = verdict_bound(&net);
            let mut cluster = Cluster::new(seed, 4, net);
            cluster.join_all_to(0);
            cluster
                .run_until(Duration::from_secs(10), star_converged)
                .expect("converges");

            cluster.isolate(3);
            let took = cluster
                .run_until(bound * 2, |c| {
                    c.status(0, 3) == Some(Status::Unreachable)
                        && c.status(3, 0) == Some(Status::Unreachable)
                })
                .expect("isolation is detected");
            assert!(took <= bound, "detected after {took:?}, bound {bound:?}");
            assert_eq!(
                cluster.status(0, 1),
                Some(Status::Reachable),
                "the rest stays reachable"
            );
            assert!(cluster.stats().partitioned > 0);

            cluster.heal();
            let took = cluster.run_until(bound * 2, star_converged).expect("heals");
            assert!(took <= bound, "recovered after {took:?}, bound {bound:?}");
        },
    );
}

#[test]
fn majority_and_minority_sides_of_a_partition_each_see_the_other_unreachable() {
    for_each_seed(
        replay("majority_and_minority_sides_of_a_partition_each_see_the_other_unreachable"),
        0..10,
        |seed| {
            let mut cluster = Cluster::new(seed, 5, NetConfig::lan());
            for a in 0..5 {
                for b in 0..5 {
                    if a != b {
                        cluster.join(a, b);
                    }
                }
            }
            let all_pairs = |c: &Cluster, want: &dyn Fn(usize, usize) -> Status| {
                (0..5).all(|a| {
                    (0..5)
                        .filter(|&b| b != a)
                        .all(|b| c.status(a, b) == Some(want(a, b)))
                })
            };
            cluster
                .run_until(Duration::from_secs(5), |c| {
                    all_pairs(c, &|_, _| Status::Reachable)
                })
                .expect("converges");
            cluster.partition(&[&[0, 1, 2], &[3, 4]]);
            let side = |i: usize| i < 3;
            let split = |a: usize, b: usize| {
                if side(a) == side(b) {
                    Status::Reachable
                } else {
                    Status::Unreachable
                }
            };
            cluster
                .run_until(Duration::from_secs(5), |c| all_pairs(c, &split))
                .expect("both sides see the split");
            cluster.heal();
            cluster
                .run_until(Duration::from_secs(5), |c| {
                    all_pairs(c, &|_, _| Status::Reachable)
                })
                .expect("heals");
        },
    );
}

#[test]
fn asymmetric_link_loss_is_seen_from_both_ends() {
    // 0 → 1 is cut, 1 → 0 works: 0's pings never arrive, and 1's pings arrive but 0's acks do
    // not. Both therefore see the other unreachable, while node 2 sees both reachable.
    for_each_seed(
        replay("asymmetric_link_loss_is_seen_from_both_ends"),
        0..10,
        |seed| {
            let mut cluster = Cluster::new(seed, 3, NetConfig::lan());
            for (a, b) in [(0, 1), (1, 0), (0, 2), (2, 0), (1, 2), (2, 1)] {
                cluster.join(a, b);
            }
            cluster
                .run_until(Duration::from_secs(5), |c| {
                    c.status(0, 1) == Some(Status::Reachable)
                })
                .expect("converges");
            cluster.block(0, 1);
            cluster
                .run_until(Duration::from_secs(5), |c| {
                    c.status(0, 1) == Some(Status::Unreachable)
                        && c.status(1, 0) == Some(Status::Unreachable)
                        && c.status(2, 0) == Some(Status::Reachable)
                        && c.status(2, 1) == Some(Status::Reachable)
                })
                .expect("the cut is seen from both ends only");
        },
    );
}

#[test]
fn crash_before_fsync_loses_the_new_incarnation_and_the_next_boot_reuses_it_safely() {
    // A restart persists incarnation 2; the node crashes before the write is durable, so nothing
    // claiming incarnation 2 was ever sent. The next boot takes incarnation 2 again, and peers
    // see exactly one restart.
    for_each_seed(
        replay("crash_before_fsync_loses_the_new_incarnation_and_the_next_boot_reuses_it_safely"),
        0..10,
        |seed| {
            let slow_disk = Duration::from_millis(300);
            let net = NetConfig {
                fsync_min: slow_disk,
                fsync_max: slow_disk,
                ..NetConfig::lan()
            };
            let mut cluster = Cluster::new(seed, 3, net);
            cluster.join_all_to(0);
            cluster
                .run_until(Duration::from_secs(5), star_converged)
                .expect("converges");

            cluster.crash(2);
            cluster.run_for(Duration::from_secs(1));
            cluster.restart(2);
            assert_eq!(cluster.node(2).unwrap().incarnation(), 2);
            cluster.run_for(Duration::from_millis(100));
            cluster.crash(2);
            assert_eq!(
                cluster.stats().writes_lost,
                1,
                "the write of incarnation 2 was still pending"
            );
            cluster.restart(2);
            assert_eq!(
                cluster.node(2).unwrap().incarnation(),
                2,
                "durable state still says 1"
            );

            cluster
                .run_until(Duration::from_secs(5), |c| {
                    c.incarnation_seen(0, 2) == Some(2) && star_converged(c)
                })
                .expect("peers learn the restart");
            let restarts: Vec<_> = cluster
                .events(0)
                .iter()
                .filter(|(_, e)| matches!(e, Event::PeerRestarted { .. }))
                .map(|(_, e)| *e)
                .collect();
            assert_eq!(
                restarts,
                vec![Event::PeerRestarted {
                    peer: cluster.addr(2),
                    incarnation: 2
                }]
            );
        },
    );
}

/// One run of randomized faults, VOPR-style: a swarm of parameters drawn from the seed, a
/// safety phase of crashes, restarts and partitions over a hostile network (the oracle and every
/// node's invariants checked at each step), then a liveness phase that heals everything and
/// requires the star to converge with every restart seen. Returns the trace hash.
fn random_faults(seed: u64) -> (u64, u64) {
    let mut swarm = Rng::from_seed(seed ^ 0x5EED_5EED);
    let size = 3 + swarm.below(5) as usize;
    let net = NetConfig::hostile(&mut swarm);
    println!("swarm: size={size} {net:?}");
    let mut cluster = Cluster::new(seed, size, net.clone());
    cluster.join_all_to(0);
    for _ in 0..swarm.below(size as u64) {
        let (a, b) = (
            swarm.below(size as u64) as usize,
            swarm.below(size as u64) as usize,
        );
        if a != b {
            cluster.join(a, b);
        }
    }

    let safety_end = cluster.now() + Duration::from_secs(60);
    while cluster.now() < safety_end {
        cluster.run_for(swarm.duration_between(Duration::from_millis(100), Duration::from_secs(4)));
        let node = swarm.below(size as u64) as usize;
        match swarm.below(6) {
            0 if cluster.is_up(node) => cluster.crash(node),
            1 if !cluster.is_up(node) => cluster.restart(node),
            2 => cluster.isolate(node),
            3 => {
                let cut = 1 + swarm.below(size as u64 - 1) as usize;
                let (left, right): (Vec<usize>, Vec<usize>) = (0..size).partition(|&i| i < cut);
                cluster.partition(&[&left, &right]);
            }
            4 => cluster.block(node, swarm.below(size as u64) as usize),
            _ => cluster.heal(),
        }
    }

    cluster.heal();
    for node in 0..size {
        if !cluster.is_up(node) {
            cluster.restart(node);
        }
    }
    let liveness_bound = Duration::from_secs(10);
    cluster
        .run_until(liveness_bound, |c| {
            star_converged(c)
                && (1..size)
                    .all(|i| c.incarnation_seen(0, i) == Some(c.node(i).unwrap().incarnation()))
        })
        .unwrap_or_else(|stuck| panic!("not converged {stuck:?} after healing"));
    (cluster.trace().hash(), cluster.trace().records())
}

#[test]
fn random_faults_never_break_persistence_ordering_and_always_heal() {
    let ran = for_each_seed(
        replay("random_faults_never_break_persistence_ordering_and_always_heal"),
        0..64,
        |seed| {
            let (hash, records) = random_faults(seed);
            println!("seed={seed} trace={hash:016x} records={records}");
        },
    );
    println!("random_faults: {ran} seeds");
}

#[test]
fn same_seed_gives_the_same_trace_and_different_seeds_differ() {
    for_each_seed(
        replay("same_seed_gives_the_same_trace_and_different_seeds_differ"),
        100..104,
        |seed| {
            let first = random_faults(seed);
            let second = random_faults(seed);
            assert_eq!(first, second, "seed {seed} is not deterministic");
            assert!(first.1 > 200, "the run did something: {} records", first.1);
            assert_ne!(
                first.0,
                random_faults(seed + 1000).0,
                "seeds {seed} and {} collide",
                seed + 1000
            );
        },
    );
}

#[test]
fn lossy_network_without_partitions_never_reports_a_live_node_unreachable() {
    // The last attempt of every probe goes over the reliable stream, and a round trip is shorter
    // than the probe timeout, so datagram loss alone never fails a probe.
    for_each_seed(
        replay("lossy_network_without_partitions_never_reports_a_live_node_unreachable"),
        0..20,
        |seed| {
            let net = NetConfig {
                loss: 0.3,
                duplicate: 0.1,
                latency_max: Duration::from_millis(100),
                ..NetConfig::lan()
            };
            let mut cluster = Cluster::new(seed, 6, net);
            cluster.join_all_to(0);
            cluster.run_for(Duration::from_secs(120));
            assert!(star_converged(&cluster));
            assert!(
                cluster.stats().lost > 100,
                "the network was lossy: {:?}",
                cluster.stats()
            );
            for i in 0..6 {
                let unreachable = cluster
                    .events(i)
                    .iter()
                    .filter(|(_, e)| matches!(e, Event::PeerUnreachable { .. }))
                    .count();
                assert_eq!(unreachable, 0, "node {i} reported a live peer unreachable");
            }
        },
    );
}
