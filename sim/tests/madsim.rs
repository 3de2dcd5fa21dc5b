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

    use muster_core::ping::Status;
    use muster_sim::seed::{for_each_seed, Replay};
    use muster_sim::world::{simulate, WorldConfig};

    const CARGO: &str = "cargo simtest";

    fn replay(test: &'static str) -> Replay {
        Replay {
            command: CARGO,
            test,
        }
    }

    #[test]
    fn madsim_star_converges_over_real_drive_loop() {
        for_each_seed(
            replay("madsim_tier::madsim_star_converges_over_real_drive_loop"),
            0..8,
            |seed| {
                let config = WorldConfig {
                    size: 5,
                    ..WorldConfig::default()
                };
                simulate(seed, config, |world| async move {
                    let took = world
                        .run_until(Duration::from_secs(5), |w| w.star_converged())
                        .await
                        .expect("converges");
                    assert!(took <= Duration::from_millis(2100), "took {took:?}");
                    for i in 1..world.len() {
                        assert_eq!(world.incarnation_seen(0, i), Some(1));
                    }
                    world
                });
            },
        );
    }

    #[test]
    fn madsim_partitions_are_detected_and_heal() {
        for_each_seed(
            replay("madsim_tier::madsim_partitions_are_detected_and_heal"),
            0..8,
            |seed| {
                let config = WorldConfig {
                    size: 5,
                    loss: 0.05,
                    ..WorldConfig::default()
                };
                simulate(seed, config, |mut world| async move {
                    world
                        .run_until(Duration::from_secs(10), |w| w.star_converged())
                        .await
                        .expect("converges");

                    // Isolate one host.
                    world.isolate(4);
                    world
                        .run_until(Duration::from_secs(5), |w| {
                            w.status(0, 4) == Some(Status::Unreachable)
                                && w.status(4, 0) == Some(Status::Unreachable)
                        })
                        .await
                        .expect("isolation detected");
                    assert_eq!(world.status(0, 1), Some(Status::Reachable));
                    world.heal();
                    world
                        .run_until(Duration::from_secs(5), |w| w.star_converged())
                        .await
                        .expect("heals");

                    // Majority / minority.
                    world.partition(&[&[0, 1, 2], &[3, 4]]);
                    world
                        .run_until(Duration::from_secs(5), |w| {
                            [3, 4]
                                .iter()
                                .all(|&i| w.status(0, i) == Some(Status::Unreachable))
                                && [1, 2]
                                    .iter()
                                    .all(|&i| w.status(0, i) == Some(Status::Reachable))
                        })
                        .await
                        .expect("split detected");
                    world.heal();
                    world
                        .run_until(Duration::from_secs(5), |w| w.star_converged())
                        .await
                        .expect("heals");

                    // Asymmetric: 0 → 2 cut only. Both ends see it; nobody else does.
                    world.block(0, 2);
                    world
                        .run_until(Duration::from_secs(5), |w| {
                            w.status(0, 2) == Some(Status::Unreachable)
                                && w.status(2, 0) == Some(Status::Unreachable)
                        })
                        .await
                        .expect("asymmetric cut detected");
                    assert_eq!(world.status(0, 1), Some(Status::Reachable));
                    world.heal();
                    world
                        .run_until(Duration::from_secs(5), |w| w.star_converged())
                        .await
                        .expect("heals");
                    world
                });
            },
        );
    }

    #[test]
    fn madsim_killed_host_restarts_with_a_higher_incarnation() {
        for_each_seed(
            replay("madsim_tier::madsim_killed_host_restarts_with_a_higher_incarnation"),
            0..8,
            |seed| {
                simulate(seed, WorldConfig::default(), |mut world| async move {
                    world
                        .run_until(Duration::from_secs(5), |w| w.star_converged())
                        .await
                        .expect("converges");
                    world.kill(2);
                    world
                        .run_until(Duration::from_secs(5), |w| {
                            w.status(0, 2) == Some(Status::Unreachable)
                        })
                        .await
                        .expect("the dead host is detected");
                    world.restart(2);
                    world
                        .run_until(Duration::from_secs(5), |w| {
                            w.star_converged() && w.incarnation_seen(0, 2) == Some(2)
                        })
                        .await
                        .expect("the restarted host is seen with incarnation 2");
                    assert_eq!(world.incarnation(2), 2);
                    world
                });
            },
        );
    }

    #[test]
    fn madsim_kill_during_fsync_never_leaks_an_undurable_incarnation() {
        // Slow disks and kills at random moments: a host often dies with its new incarnation
        // still being written. The world's oracle fails the run if any peer ever hears an
        // incarnation that is not durable.
        for_each_seed(
            replay("madsim_tier::madsim_kill_during_fsync_never_leaks_an_undurable_incarnation"),
            0..8,
            |seed| {
                let config = WorldConfig {
                    size: 3,
                    fsync: Duration::from_millis(50)..Duration::from_millis(400),
                    ..WorldConfig::default()
                };
                simulate(seed, config, |mut world| async move {
                    for round in 0..10u64 {
                        world.kill(1 + (round % 2) as usize);
                        world
                            .run_for(Duration::from_millis(50 + round * 37 % 300))
                            .await;
                        world.restart(1 + (round % 2) as usize);
                        world.run_for(Duration::from_millis(round * 53 % 400)).await;
                    }
                    world
                        .run_until(Duration::from_secs(10), |w| {
                            w.star_converged()
                                && (1..3)
                                    .all(|i| w.incarnation_seen(0, i) == Some(w.incarnation(i)))
                        })
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
                WorldConfig {
                    size: 4,
                    loss: 0.1,
                    ..WorldConfig::default()
                },
                |mut world| async move {
                    world.run_for(Duration::from_secs(3)).await;
                    world.kill(3);
                    world.isolate(2);
                    world.run_for(Duration::from_secs(3)).await;
                    world.heal();
                    world.restart(3);
                    world.run_for(Duration::from_secs(3)).await;
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
                println!(
                    "seed={seed} trace={:016x} records={}",
                    first.hash(),
                    first.records()
                );
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
}
