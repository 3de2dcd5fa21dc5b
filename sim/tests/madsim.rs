//! The madsim tier (tier b): hosts running the agent's real async drive loop over madsim's
//! simulated network, clock and scheduler. Run with `cargo simtest`.
//!
//! This target is built only with the `simulation` feature, and its tests exist only under
//! `--cfg madsim`. If the feature is on but the cfg is not (a `RUSTFLAGS` variable replaces the
//! alias's `build.rustflags`), the guard test below fails rather than letting zero simulations
//! pass.

#[cfg(not(madsim))]
#[test]
fn madsim_tier_requires_cfg_madsim() {
    panic!(
        "the madsim tier was compiled without `--cfg madsim`. Run it with `cargo simtest`, and \
         unset RUSTFLAGS: it replaces the alias's build.rustflags"
    );
}

#[cfg(madsim)]
mod madsim_tier {
    use std::time::Duration;

    use muster_core::swim::State;
    use muster_sim::seed::{first_seed, for_each_seed, map_seeds, planted_bug, Replay};
    use muster_sim::servers::catalog_scale::{simulate_catalog_scale, ScaleConfig};
    use muster_sim::servers::{
        disk_error_stops_the_server, leaping_follower_breaks_the_lease, simulate_servers,
        write_without_quorum_times_out, ClockFaults, DiskError, ServersConfig, Workload,
    };

    /// Seeds within which clocks past the lease's bound are caught.
    const SEEDS_PAST_THE_BOUND: u64 = 100;

    /// Seeds in which clocks past the lease's bound break nothing that rests on no clock.
    const SEEDS_CLOCK_FREE: u64 = 20;
    use muster_sim::world::{simulate, World, WorldConfig};

    const CARGO: &str = "cargo simtest";

    fn replay(test: &'static str) -> Replay {
        Replay { command: CARGO, test }
    }

    fn all_see(world: &World, peer: usize, state: State) -> bool {
        (0..world.len())
            .filter(|&i| i != peer && world.boot_epoch(i) > 0)
            .all(|i| world.state(i, peer) == Some(state))
    }

    #[test]
    fn madsim_cluster_converges_over_the_real_drive_loop() {
        for_each_seed(
            replay("madsim_tier::madsim_cluster_converges_over_the_real_drive_loop"),
            0..8,
            |seed| {
                let config = WorldConfig { size: 5, ..WorldConfig::default() };
                simulate(seed, config, |world| async move {
                    world.run_until(Duration::from_secs(35), World::converged).await.expect("converges");
                    for i in 1..world.len() {
                        assert_eq!(world.incarnation_seen(0, i), Some(1 << 32));
                    }
                    world
                });
            },
        );
    }

    #[test]
    fn madsim_partitions_are_detected_and_heal_without_a_manual_step() {
        for_each_seed(
            replay("madsim_tier::madsim_partitions_are_detected_and_heal_without_a_manual_step"),
            0..6,
            |seed| {
                let config = WorldConfig { size: 5, loss: 0.05, ..WorldConfig::default() };
                simulate(seed, config, |mut world| async move {
                    // A join lost to packet loss is retried after 30 s (Consul's retry_interval).
                    world.run_until(Duration::from_secs(95), World::converged).await.expect("converges");

                    // Isolate one host: everyone else declares it dead.
                    world.isolate(4);
                    world
                        .run_until(Duration::from_secs(60), |w| all_see(w, 4, State::Dead))
                        .await
                        .expect("isolation detected");
                    assert_eq!(world.state(0, 1), Some(State::Alive));
                    world.heal();
                    world.run_until(Duration::from_secs(120), World::converged).await.expect("heals");

                    // Majority / minority.
                    world.partition(&[&[0, 1, 2], &[3, 4]]);
                    world
                        .run_until(Duration::from_secs(60), |w| {
                            [3, 4].iter().all(|&i| w.state(0, i) == Some(State::Dead))
                                && [0, 1, 2].iter().all(|&i| w.state(3, i) == Some(State::Dead))
                        })
                        .await
                        .expect("split detected on both sides");
                    world.heal();
                    world.run_until(Duration::from_secs(120), World::converged).await.expect("heals");

                    // A bridge: {0, 1} and {3, 4} reach each other only through 2. Probes across
                    // succeed when the bridge relays them; a member suspected or even declared dead
                    // on the way refutes through the bridge, so the bridge sees everyone alive again.
                    // A member declared dead that misses the gossip to the dead hears of it only from
                    // a reconnect or push/pull through the bridge (serf's odds: dead/live per 30 s),
                    // which can take minutes.
                    world.bridge(&[0, 1], 2, &[3, 4]);
                    world.run_for(Duration::from_secs(30)).await;
                    world
                        .run_until(Duration::from_secs(300), |w| {
                            (0..5).filter(|&i| i != 2).all(|i| w.state(2, i) == Some(State::Alive))
                        })
                        .await
                        .unwrap_or_else(|stuck| {
                            panic!("not all alive in the bridge's view ({stuck:?}):\n{}", world.describe())
                        });
                    world.heal();
                    world.run_until(Duration::from_secs(120), World::converged).await.expect("heals");

                    // Asymmetric: 0 → 2 cut only. Indirect probes through the others usually keep
                    // both alive; a probe whose relays are all lost too leads to a suspicion, which
                    // the accused refutes through the others: with the cut still in place, every
                    // view returns to all-alive.
                    world.block(0, 2);
                    world.run_for(Duration::from_secs(30)).await;
                    world
                        .run_until(Duration::from_secs(60), World::converged)
                        .await
                        .expect("all alive again despite the one-way cut");
                    world.heal();
                    world
                });
            },
        );
    }

    #[test]
    fn madsim_killed_host_is_failed_and_restarts_with_a_higher_boot_epoch() {
        for_each_seed(
            replay("madsim_tier::madsim_killed_host_is_failed_and_restarts_with_a_higher_boot_epoch"),
            0..8,
            |seed| {
                simulate(seed, WorldConfig::default(), |mut world| async move {
                    world.run_until(Duration::from_secs(35), World::converged).await.expect("converges");
                    world.kill(2);
                    world
                        .run_until(Duration::from_secs(60), |w| all_see(w, 2, State::Dead))
                        .await
                        .expect("detected");
                    world.restart(2);
                    world.run_until(Duration::from_secs(60), World::converged).await.expect("rejoins");
                    assert_eq!(world.boot_epoch(2), 2);
                    assert_eq!(world.incarnation_seen(0, 2).map(|inc| inc >> 32), Some(2));
                    world
                });
            },
        );
    }

    #[test]
    fn madsim_kill_during_fsync_never_leaks_an_undurable_boot_epoch() {
        // Slow disks and kills at random moments: a host often dies with its new boot epoch
        // still being written. The world's oracle fails the run if any peer ever hears an
        // incarnation whose epoch is not durable.
        for_each_seed(
            replay("madsim_tier::madsim_kill_during_fsync_never_leaks_an_undurable_boot_epoch"),
            0..8,
            |seed| {
                let config = WorldConfig {
                    size: 3,
                    fsync: Duration::from_millis(50)..Duration::from_millis(400),
                    ..WorldConfig::default()
                };
                simulate(seed, config, |mut world| async move {
                    for round in 0..10u64 {
                        let host = 1 + (round % 2) as usize;
                        world.kill(host);
                        world.run_for(Duration::from_millis(50 + round * 37 % 300)).await;
                        world.restart(host);
                        world.run_for(Duration::from_millis(round * 53 % 400)).await;
                    }
                    world
                        .run_until(Duration::from_secs(120), World::converged)
                        .await
                        .expect("converges after the kills");
                    world
                });
            },
        );
    }

    #[test]
    fn madsim_same_seed_gives_the_same_trace_and_different_seeds_differ() {
        let scenario = |seed| {
            simulate(
                seed,
                WorldConfig { size: 4, loss: 0.1, ..WorldConfig::default() },
                |mut world| async move {
                    // Converge first, so the faults below act on a formed cluster and the trace
                    // has events to compare. A join lost to the 10 % loss is sent again every
                    // 30 s: 155 s allow six tries, so a joiner is left out only if all six are
                    // lost (10^-6; with four, 10^-4 a joiner, some seed of the pinned sweep
                    // lost all of them: seed 1788 did).
                    world.run_until(Duration::from_secs(155), World::converged).await.expect("converges");
                    world.kill(3);
                    world.isolate(2);
                    world.run_for(Duration::from_secs(20)).await;
                    world.heal();
                    world.restart(3);
                    world.run_for(Duration::from_secs(20)).await;
                    world
                },
            )
        };
        for_each_seed(
            replay("madsim_tier::madsim_same_seed_gives_the_same_trace_and_different_seeds_differ"),
            0..3,
            |seed| {
                let first = scenario(seed);
                let second = scenario(seed);
                println!("seed={seed} trace={:016x} records={}", first.hash(), first.records());
                assert!(first.records() > 20, "the run did something");
                assert_eq!(
                    (first.hash(), first.records()),
                    (second.hash(), second.records()),
                    "seed {seed} is not deterministic"
                );
                assert_ne!(first.hash(), scenario(seed + 1000).hash());
            },
        );
    }

    /// The production server under the nemesis: 3 and 5 servers (even and odd seeds), ten
    /// clients through the consensus facade, every history linearizable and the cluster live
    /// once healed. With `MUSTER_PLANTED_BUG` set, the bug is planted in every server and the
    /// failure names the checker that caught it.
    #[test]
    fn madsim_servers_stay_linearizable_under_the_nemesis() {
        let bug = planted_bug();
        let reports = map_seeds(
            replay("madsim_tier::madsim_servers_stay_linearizable_under_the_nemesis"),
            0..16,
            |seed| {
                let servers = if seed % 2 == 0 { 3 } else { 5 };
                let config = ServersConfig { bug, ..ServersConfig::new(servers) };
                let wall = std::time::Instant::now();
                match simulate_servers(seed, config) {
                    Ok(report) => (report, wall.elapsed()),
                    Err(failure) => panic!("seed {seed}: caught by {}: {failure}", failure.checker()),
                }
            },
        );
        let ops: usize = reports.iter().map(|(r, _)| r.ops).sum();
        let completed: usize = reports.iter().map(|(r, _)| r.completed).sum();
        let faults: usize = reports.iter().map(|(r, _)| r.faults).sum();
        let locks: usize = reports.iter().map(|(r, _)| r.locks_taken).sum();
        let stale: usize = reports.iter().map(|(r, _)| r.stale_reads_checked).sum();
        let simulated: Duration = reports.iter().map(|(r, _)| r.simulated).sum();
        let wall: Duration = reports.iter().map(|(_, w)| *w).sum();
        println!(
            "servers under the nemesis: {} seeds, {faults} faults, {ops} operations ({completed} answered), \
             linearizable; {stale} ?stale reads no older than their contact; the lock taken {locks} \
             times, never by two; {:.0} simulated s in {:.1} wall s \
             ({:.0}x real time per thread)",
            reports.len(),
            simulated.as_secs_f64(),
            wall.as_secs_f64(),
            simulated.as_secs_f64() / wall.as_secs_f64().max(1e-9),
        );
        // Refusals (no leader yet, a server down) count as unanswered: under this nemesis about
        // half the operations are answered; a quarter is the floor of a run that did real work.
        assert!(completed * 4 > ops, "a quarter of the operations were answered: {completed} of {ops}");
    }

    /// Each bug planted in the production server is caught within a bounded number of seeds,
    /// by the checker that should catch it, never by the liveness check. The seed each was
    /// first caught at when the bound was set is in the comment; the bound leaves room for
    /// schedules to shift as the code changes.
    #[test]
    fn madsim_every_planted_server_bug_is_caught_by_its_checker() {
        use muster_core::planted::PlantedBug::{self, *};
        // Not here: `vote_before_fsync`. Its double vote needs two candidates in one term, which this
        // tier's faults (pre-vote on) almost never produce: no catch in 1,000 seeds, even with a
        // voter crashed during an election. The in-process tier's election fault catches it.
        const LINEARIZABILITY: &[&str] = &["linearizability"];
        const INVARIANTS: &[&str] = &["invariants"];
        let matrix: [(PlantedBug, &[&str], u64); 12] = [
            (CommitWithoutQuorum, LINEARIZABILITY, 40),   // seed 1
            (CasIgnoresIndex, LINEARIZABILITY, 40),       // seed 0
            (ApplyOutOfOrder, INVARIANTS, 40),            // seed 0
            (VoteTwiceInTerm, INVARIANTS, 50),            // seed 1
            (ReadWithoutReadIndex, LINEARIZABILITY, 300), // seed 178
            (KeepConflictingSuffix, LINEARIZABILITY, 70), // seed 12
            // A deposed leader also renews sessions on its stale lease, so the real leader's
            // timer ends a session whose locker still holds the lock; and it reports no
            // contact lost on the `?stale` reads it serves.
            (StaleLeaseRead, &["linearizability", "locks", "staleness"], 150), // seed 59
            (AckBeforeFsync, LINEARIZABILITY, 150),                            // seed 66
            (AcceptStaleTermAppend, INVARIANTS, 100),                          // seed 20
            (LockSurvivesSessionExpiry, INVARIANTS, 40),                       // seed 0
            (SessionExpiresEarly, &["locks"], 40),                             // seed 0
            (ContactWithoutCatchingUp, &["staleness"], 40),                    // seed 1
        ];
        for (bug, checkers, within) in matrix {
            // A run the bug only stalled is not a catch: liveness never counts for a safety bug.
            let caught = first_seed(0..within, |seed| {
                let servers = if seed % 2 == 0 { 3 } else { 5 };
                let config = ServersConfig { bug: Some(bug), ..ServersConfig::new(servers) };
                simulate_servers(seed, config).err().filter(|failure| failure.checker() != "liveness")
            });
            let Some((seed, failure)) = caught else {
                panic!("{bug} went uncaught in seeds 0..{within}");
            };
            println!("{bug}: caught by {} at seed {seed}", failure.checker());
            assert!(
                checkers.contains(&failure.checker()),
                "{bug} at seed {seed}, expected {checkers:?} (replay: MUSTER_PLANTED_BUG={bug} MUSTER_SEED={seed} {CARGO} -- \
                 madsim_tier::madsim_servers_stay_linearizable_under_the_nemesis --exact): {failure}"
            );
        }
    }

    /// The default mode's documented edge: its lease trusts the clocks. The nemesis test runs
    /// every server's clock within ±20 % (the fastest at most 1.5 times the slowest, inside the
    /// lease's bound of 2), leaps leaders' clocks ahead, and holds default reads linearizable.
    /// Past the bound (a cut-off leader's clock slowed to a twentieth), the deposed leader's
    /// lease outlives the election of the next, and what it serves on it (a default read, a
    /// session renewal, a `?stale` read claiming fresh contact) is stale: caught within a
    /// bounded number of seeds by a checker of what the lease vouches for, never by the
    /// invariants (Raft's safety does not rest on clocks) and never by liveness alone.
    #[test]
    fn madsim_default_reads_go_stale_once_clocks_break_the_lease_bound() {
        let caught = first_seed(0..SEEDS_PAST_THE_BOUND, |seed| {
            let servers = if seed % 2 == 0 { 3 } else { 5 };
            let config =
                ServersConfig { clients: 30, clocks: ClockFaults::SlowLeader, ..ServersConfig::new(servers) };
            simulate_servers(seed, config).err().filter(|failure| failure.checker() != "liveness")
        });
        let (seed, failure) =
            caught.unwrap_or_else(|| panic!("no stale read within seeds 0..{SEEDS_PAST_THE_BOUND}"));
        println!("a slow leader's clock: caught by {} at seed {seed}: {failure}", failure.checker());
        assert!(
            ["linearizability", "locks", "staleness"].contains(&failure.checker()),
            "seed {seed}: {failure}"
        );
    }

    /// A clock that leaps breaks the lease too, but only for what is left of it (under half a
    /// second), which random clients seldom hit: shown step by step instead. The deposed
    /// leader serves the overwritten value in the default mode; `?consistent` asks a quorum,
    /// which it no longer has, and never answers the old value.
    #[test]
    fn madsim_a_leaping_follower_breaks_default_reads_not_consistent_ones() {
        for_each_seed(
            replay("madsim_tier::madsim_a_leaping_follower_breaks_default_reads_not_consistent_ones"),
            0..4,
            |seed| {
                let reads = leaping_follower_breaks_the_lease(seed)
                    .unwrap_or_else(|why| panic!("seed {seed}: {why}"));
                println!("seed {seed}: the deposed leader answered {reads:?}");
                assert_eq!(
                    reads.default,
                    Ok(Some(1)),
                    "seed {seed}: the default read is stale within the lease"
                );
                assert!(reads.consistent.is_err(), "seed {seed}: a consistent read needs the quorum it lost");
            },
        );
    }

    /// What rests on no clock stays safe past the lease's bound: with the clocks broken as
    /// above, writes and `?consistent` reads stay linearizable.
    #[test]
    fn madsim_consistent_reads_stay_linearizable_past_the_lease_bound() {
        for clocks in [ClockFaults::SlowLeader, ClockFaults::LeapingFollower] {
            for_each_seed(
                replay("madsim_tier::madsim_consistent_reads_stay_linearizable_past_the_lease_bound"),
                0..SEEDS_CLOCK_FREE,
                |seed| {
                    let servers = if seed % 2 == 0 { 3 } else { 5 };
                    let config = ServersConfig {
                        clients: 30,
                        clocks,
                        workload: Workload::ClockFree,
                        ..ServersConfig::new(servers)
                    };
                    if let Err(failure) = simulate_servers(seed, config) {
                        panic!("{clocks:?}, seed {seed}: caught by {}: {failure}", failure.checker());
                    }
                },
            );
        }
    }

    /// An I/O error under the log stops its server, follower or leader, append or fsync; the
    /// others go on; restarted, it catches up.
    #[test]
    fn madsim_a_failed_append_or_fsync_stops_the_server() {
        for (error, leader) in [
            (DiskError::Append, false),
            (DiskError::Append, true),
            (DiskError::Sync, false),
            (DiskError::Sync, true),
        ] {
            let who = if leader { "leader" } else { "follower" };
            for_each_seed(
                replay("madsim_tier::madsim_a_failed_append_or_fsync_stops_the_server"),
                0..2,
                |seed| match disk_error_stops_the_server(seed, error, leader) {
                    Ok(after) => println!("{error:?} on the {who}: stopped after {after:?}"),
                    Err(why) => panic!("{error:?} on the {who}, seed {seed}: {why}"),
                },
            );
        }
    }

    #[test]
    fn madsim_a_write_without_a_quorum_times_out() {
        for_each_seed(replay("madsim_tier::madsim_a_write_without_a_quorum_times_out"), 0..2, |seed| {
            match write_without_quorum_times_out(seed) {
                Ok(waited) => println!("seed {seed}: timed out after {waited:?}"),
                Err(why) => panic!("seed {seed}: {why}"),
            }
        });
    }

    /// A seed replays the same run in any thread and after any other run in the same thread
    /// (an unbiased `select!` once drew its order from a thread-local generator, and a seed
    /// that failed in a sweep passed alone).
    #[test]
    fn madsim_servers_replay_the_same_run_from_the_same_seed() {
        let run = |seed| simulate_servers(seed, ServersConfig::new(5)).expect("no fault breaks it");
        let first = run(1);
        assert_eq!(run(1), first, "seed 1 replays");
        assert_eq!(run(1), first, "seed 1 replays again");
        assert_ne!(run(2), first, "seed 2 differs");
    }

    /// Consul's Global Scale Benchmark, scaled to CI: 5 servers, 1,000 nodes × 10 instances
    /// registered through the leader, 100 blocking queries on each server; every one of 20
    /// changes must reach every watcher within a second of simulated time (the benchmark's
    /// claim). `MUSTER_SCALE_NODES` sets the nodes (`benches/catalog_scale_sim.sh` runs the
    /// curve to 10,000).
    #[test]
    fn madsim_catalog_changes_are_seen_on_every_server_within_a_second() {
        let nodes = std::env::var("MUSTER_SCALE_NODES").ok().and_then(|n| n.parse().ok()).unwrap_or(1_000);
        // One seed, `MUSTER_SEED` or 0: a sweep's MUSTER_SEEDS does not multiply it.
        let seed = std::env::var("MUSTER_SEED").ok().and_then(|seed| seed.parse().ok()).unwrap_or(0);
        let wall = std::time::Instant::now();
        let report = simulate_catalog_scale(seed, ScaleConfig::new(nodes)).unwrap_or_else(|error| {
            panic!(
                "seed {seed}: {error}\nreplay with: MUSTER_SEED={seed} {CARGO} -- \
                 madsim_tier::madsim_catalog_changes_are_seen_on_every_server_within_a_second --exact --nocapture"
            )
        });
        let (p50, p99, max) =
            (report.seen_quantile(0.5), report.seen_quantile(0.99), report.seen_quantile(1.0));
        println!(
            "catalog at scale (seed {seed}): 5 servers, {} instances loaded in {:.1} simulated s; \
             {} changes seen by all 500 watchers: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; {} wakes; {:.1} wall s",
            report.instances,
            report.loaded_in.as_secs_f64(),
            report.seen_everywhere.len(),
            p50.as_secs_f64() * 1e3,
            p99.as_secs_f64() * 1e3,
            max.as_secs_f64() * 1e3,
            report.wakes,
            wall.elapsed().as_secs_f64(),
        );
        assert!(
            max < Duration::from_secs(1),
            "seed {seed}: a change took {max:?} to be seen everywhere\nreplay with: MUSTER_SEED={seed} {CARGO} -- \
             madsim_tier::madsim_catalog_changes_are_seen_on_every_server_within_a_second --exact --nocapture"
        );
    }

    /// The speed figure: 5 servers and 50 clients under the nemesis, seeds 0 and 1
    /// (fixed: a sweep's MUSTER_SEEDS does not multiply it). Prints simulated seconds per wall
    /// second; checks the run as the nemesis test does.
    #[test]
    fn madsim_servers_speed_with_50_clients() {
        let mut simulated = Duration::ZERO;
        let wall = std::time::Instant::now();
        for seed in 0..2 {
            let config = ServersConfig { clients: 50, ..ServersConfig::new(5) };
            match simulate_servers(seed, config) {
                Ok(report) => simulated += report.simulated,
                Err(failure) => panic!(
                    "seed {seed}: caught by {}: {failure}\nreplay with: {CARGO} -- \
                     madsim_tier::madsim_servers_speed_with_50_clients --exact --nocapture",
                    failure.checker()
                ),
            }
        }
        println!(
            "5 servers, 50 clients: {:.0} simulated s in {:.1} wall s ({:.0}x real time)",
            simulated.as_secs_f64(),
            wall.elapsed().as_secs_f64(),
            simulated.as_secs_f64() / wall.elapsed().as_secs_f64().max(1e-9)
        );
    }
}
