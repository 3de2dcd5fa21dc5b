//! The gossip scenarios of the membership issue, each printing its figures.
//!
//! They run under plain `cargo test` with small seed counts; `.ci/run` runs them again in release
//! with the full counts (`MUSTER_SEEDS`). Run one with `--nocapture` to see its table.

use std::collections::BTreeSet;
use std::time::Duration;

use bytes::Bytes;
use muster_core::gossip::{Command, Event};
use muster_core::swim::{self, MemberEventKind, State};
use muster_core::Instant;
use muster_sim::harness::{Cluster, NetConfig};
use muster_sim::seed::{for_each_seed, map_seeds, Replay};

const CARGO: &str = "cargo test -p muster-sim --test gossip_scenarios";

fn replay(test: &'static str) -> Replay {
    Replay { command: CARGO, test }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Everyone joins everyone: full membership from the start, so a scenario measures only what
/// it is about.
fn full_mesh(seed: u64, size: usize, net: NetConfig, config: swim::Config) -> Cluster {
    let mut cluster = Cluster::with_swim_config(seed, size, net, config);
    for a in 0..size {
        for b in 0..size {
            if a != b {
                cluster.join(a, b);
            }
        }
    }
    cluster
}

/// Scenario 1, the gossip fan-out example: 16 nodes, fan-out 3, a 1 s gossip period, and node 1
/// holding a new update (a tag change). Probing and push/pull are switched off so that only
/// gossip spreads it.
///
/// The derived bound. In synchronous rounds every infected node sends the update to 3 of its 15
/// peers, until it has sent it `retransmit_mult × ⌈log10(n + 1)⌉ = 8` times (⌈8 / 3⌉ = 3
/// rounds), so infection at most quadruples per round and reaching 16 takes at least
/// ⌈log4 16⌉ = 2 rounds. In the mean-field model an uninfected node escapes a round with
/// probability (1 − 3/15)^s, s the nodes still sending; iterating it gives the synchronous curve
/// printed beside the measurement: 3 rounds to reach 15.5 of 16 on average. Real timers are
/// staggered, not synchronous: a node infected early in its peers' period passes the update on
/// within the same second, so the measured spread must be at least as fast as that model, which
/// is what is asserted. A node every sender misses (about (14/15)^120 ≈ 2.5e-4 per node per run)
/// is left to push/pull, switched off here: such runs are counted, not failed.
#[test]
fn fan_out_example_16_nodes() {
    let config = swim::Config {
        gossip_interval: Duration::from_secs(1),
        gossip_nodes: 3,
        probe_interval: Duration::from_secs(3600),
        push_pull_interval: Duration::from_secs(3600),
        reconnect_interval: Duration::from_secs(3600),
        join_retry_interval: Duration::from_secs(3600),
        ..swim::Config::lan()
    };
    let rounds_max = 12;
    let curves: Vec<Vec<usize>> = map_seeds(replay("fan_out_example_16_nodes"), 0..100, |seed| {
        let mut cluster = full_mesh(seed, 16, NetConfig::lan(), config.clone());
        // Let the join chatter drain from every broadcast queue.
        cluster.run_for(Duration::from_secs(30));
        let tags = Bytes::from_static(b"version=2");
        cluster.command(1, Command::UpdateMeta { meta: tags.clone() });
        let mut curve = vec![1];
        for _ in 0..rounds_max {
            cluster.run_for(Duration::from_secs(1));
            let infected =
                1 + (0..16).filter(|&i| i != 1 && cluster.view(i, 1).is_some_and(|v| v.meta == tags)).count();
            curve.push(infected);
        }
        curve
    });
    let ran = curves.len() as u64;
    let mut rounds_to_all: Vec<usize> =
        curves.iter().filter_map(|curve| curve.iter().position(|&n| n == 16)).collect();
    // Mean-field expectation: s_r senders, each active for 3 rounds after infection.
    let mut expected = vec![1.0f64];
    let mut new_by_round = vec![1.0f64];
    for round in 1..=rounds_max {
        let senders: f64 = new_by_round.iter().rev().take(3).sum();
        let infected = *expected.last().unwrap();
        let escape = (1.0 - 3.0 / 15.0f64).powf(senders);
        let next = infected + (16.0 - infected) * (1.0 - escape);
        new_by_round.push(next - infected);
        expected.push(next);
        assert!(round <= rounds_max);
    }
    println!("fan-out example, {ran} seeds: infected nodes after each 1 s round");
    println!("round  mean-measured  mean-field  min  max");
    for round in 0..=rounds_max.min(8) {
        let column: Vec<usize> = curves.iter().map(|c| c[round]).collect();
        let mean = column.iter().sum::<usize>() as f64 / column.len() as f64;
        println!(
            "{round:>5}  {mean:>13.2}  {:>10.2}  {:>3}  {:>3}",
            expected[round],
            column.iter().min().unwrap(),
            column.iter().max().unwrap()
        );
    }
    rounds_to_all.sort();
    let synchronous_rounds = expected.iter().position(|&e| e >= 15.5).expect("the model converges");
    assert_eq!(synchronous_rounds, 3);
    for curve in &curves {
        assert!(curve.windows(2).all(|w| w[0] <= w[1]), "infection never recedes: {curve:?}");
        assert!(curve[rounds_max] >= 15, "gossip alone misses at most one node: {curve:?}");
    }
    // Aggregates over many seeds; a replay of one seed checks only the per-seed properties above.
    if ran >= 10 {
        let median = rounds_to_all[rounds_to_all.len() / 2];
        let max = *rounds_to_all.last().unwrap();
        println!(
            "rounds to all 16: median {median}, max {max}; {} of {ran} runs reached all 16 by gossip alone",
            rounds_to_all.len()
        );
        assert!(
            median <= synchronous_rounds,
            "median {median} rounds, synchronous model {synchronous_rounds}"
        );
        for (round, &model) in expected.iter().enumerate().take(6) {
            let mean = curves.iter().map(|c| c[round]).sum::<usize>() as f64 / curves.len() as f64;
            assert!(
                mean + 0.5 >= model,
                "round {round}: measured {mean:.2} behind the synchronous model {model:.2}"
            );
        }
        assert!(rounds_to_all.len() as u64 * 100 >= ran * 95, "almost every run reaches everyone");
    }
}

/// Scenario 2, failure detection: 50 nodes, one crashes; how long until every live member marks
/// it failed, beside the formula. With n = 50 the suspicion timeout runs from
/// max = 6 × min = 40.8 s down to min = 4 × log10(50) × 1 s = 6.8 s once k = 2 independent
/// confirmations arrive; the first failed probe comes within about one probe interval plus the
/// interval it takes to fail; the dead message then needs a few 200 ms gossip rounds.
#[test]
fn failure_detection_50_nodes() {
    let mut detection = map_seeds(replay("failure_detection_50_nodes"), 0..6, |seed| {
        let mut cluster = full_mesh(seed, 50, NetConfig::lan(), swim::Config::lan());
        cluster.run_until(Duration::from_secs(60), Cluster::converged).expect("converges");
        cluster.run_for(Duration::from_secs(5));
        cluster.crash(17);
        let took = cluster
            .run_until(Duration::from_secs(120), |c| {
                (0..50).filter(|&i| i != 17).all(|i| c.state(i, 17) == Some(State::Dead))
            })
            .expect("detected");
        // Never faster than the minimum suspicion timeout, never slower than the maximum plus
        // the time to fail a probe and spread the news.
        let min = swim_timeout_min(50);
        assert!(took >= min, "detected after {took:?}, below the minimum suspicion timeout {min:?}");
        assert!(took <= min * 6 + Duration::from_secs(5), "detected after {took:?}");
        // Nobody else was declared dead, and each node declared n17 dead at most once.
        for i in (0..50).filter(|&i| i != 17) {
            let failed: Vec<&str> = cluster
                .events(i)
                .iter()
                .filter_map(|(_, e)| match e {
                    Event::Member(m) if m.kind == MemberEventKind::Failed => Some(m.node.name.as_str()),
                    _ => None,
                })
                .collect();
            assert_eq!(failed, ["n17"], "node {i}");
            assert!(cluster.node(i).unwrap().stats().swim.deaths_declared <= 1);
        }
        took
    });
    let ran = detection.len();
    detection.sort();
    let min = swim_timeout_min(50);
    println!(
        "failure detection, 50 nodes, {ran} seeds: every live member marks the crashed one failed after"
    );
    println!(
        "  median {:?}, p99 {:?}, max {:?}; formula: suspicion {:?} (k = 2 confirmations) to {:?} (none), plus about 1-2 s to the first failed probe",
        percentile(&detection, 0.5),
        percentile(&detection, 0.99),
        detection.last().unwrap(),
        min,
        min * 6
    );
    assert!(percentile(&detection, 0.5) >= min, "never faster than the minimum suspicion timeout");
    assert!(
        *detection.last().unwrap() <= min * 6 + Duration::from_secs(5),
        "within the maximum suspicion timeout"
    );
}

fn swim_timeout_min(nodes: usize) -> Duration {
    let scale = (nodes as f64).log10().max(1.0);
    Duration::from_millis((4.0 * scale * 1000.0).floor() as u64)
}

/// Scenario 3, Lifeguard: 100 nodes, 5 % of them slowed for 60 s (each message they receive is
/// processed late and each they send leaves late), with Lifeguard on and off over the same seeds.
/// Every node stays alive, so every failed probe is a false accusation and every `failed` a false
/// positive. The headline is false failures of *healthy* nodes, the ones Lifeguard protects: a
/// node too slow to answer within the suspicion timeout is declared failed either way.
#[test]
fn lifeguard_cuts_false_failures_of_slow_nodes() {
    const SLOWED: [usize; 5] = [3, 23, 43, 63, 83];
    let delays = [(1, 3), (4, 8)];
    // [delay][lifeguard on, off] = (healthy failed, slow failed, false suspicions)
    let mut totals = vec![[(0u64, 0u64, 0u64); 2]; delays.len()];
    let ran = for_each_seed(replay("lifeguard_cuts_false_failures_of_slow_nodes"), 0..2, |seed| {
        for (d, &(low, high)) in delays.iter().enumerate() {
            for (slot, lifeguard) in [(0, true), (1, false)] {
                let config = swim::Config { lifeguard, ..swim::Config::lan() };
                let mut cluster = full_mesh(seed, 100, NetConfig::lan(), config);
                cluster.run_until(Duration::from_secs(120), Cluster::converged).expect("converges");
                let suspicions_before = probes_failed(&cluster);
                let events_before: Vec<usize> = (0..100).map(|i| cluster.events(i).len()).collect();
                for slow in SLOWED {
                    cluster.slow(
                        slow,
                        Duration::from_secs(60),
                        Duration::from_secs(low),
                        Duration::from_secs(high),
                    );
                }
                cluster.run_for(Duration::from_secs(90));
                let (mut healthy, mut slow) = (0, 0);
                for (observer, &seen_before) in events_before.iter().enumerate() {
                    for (_, event) in &cluster.events(observer)[seen_before..] {
                        let Event::Member(m) = event else { continue };
                        if m.kind != MemberEventKind::Failed {
                            continue;
                        }
                        let subject: usize = m.node.name[1..].parse().unwrap();
                        if SLOWED.contains(&subject) {
                            slow += 1;
                        } else {
                            healthy += 1;
                        }
                    }
                }
                let suspicions = probes_failed(&cluster) - suspicions_before;
                let total = &mut totals[d][slot];
                *total = (total.0 + healthy, total.1 + slow, total.2 + suspicions);
                println!(
                    "seed {seed} delay {low}-{high} s lifeguard={lifeguard}: failed marks of healthy nodes {healthy}, of slowed nodes {slow}; false suspicions {suspicions}"
                );
            }
        }
    });
    println!("lifeguard, 100 nodes, 5 slowed for 60 s, {ran} seeds (counts are failed marks summed over observers):");
    println!("delay   healthy failed on/off   slowed failed on/off   false suspicions on/off");
    for (d, &(low, high)) in delays.iter().enumerate() {
        let [on, off] = totals[d];
        println!(
            "{low}-{high} s  {:>8} / {:<8}      {:>7} / {:<7}       {:>7} / {:<7}",
            on.0, off.0, on.1, off.1, on.2, off.2
        );
    }
    let suspicions_on: u64 = totals.iter().map(|t| t[0].2).sum();
    let suspicions_off: u64 = totals.iter().map(|t| t[1].2).sum();
    let healthy_on: u64 = totals.iter().map(|t| t[0].0).sum();
    let healthy_off: u64 = totals.iter().map(|t| t[1].0).sum();
    assert!(
        suspicions_on * 2 < suspicions_off,
        "Lifeguard must cut false suspicions: {suspicions_on} vs {suspicions_off}"
    );
    assert!(healthy_on <= healthy_off, "Lifeguard must not add false failures of healthy nodes");
    let [on, off] = totals[1];
    assert!(off.0 > 0 && on.0 * 50 <= off.0, "4-8 s: healthy nodes failed on={} off={}", on.0, off.0);
}

fn probes_failed(cluster: &Cluster) -> u64 {
    (0..cluster.len()).filter_map(|i| cluster.node(i)).map(|node| node.stats().swim.probes_failed).sum()
}

/// Scenario 4, partition and heal: 20 nodes split 12 / 8 for 60 s, then healed; everyone
/// converges back to alive with no manual step (reconnects every 30 s, refutations).
#[test]
fn partition_12_8_for_60_s_heals_by_itself() {
    let mut heal = Vec::new();
    let ran = for_each_seed(replay("partition_12_8_for_60_s_heals_by_itself"), 0..6, |seed| {
        let mut cluster = full_mesh(seed, 20, NetConfig::lan(), swim::Config::lan());
        cluster.run_until(Duration::from_secs(60), Cluster::converged).expect("converges");
        let majority: Vec<usize> = (0..12).collect();
        let minority: Vec<usize> = (12..20).collect();
        cluster.partition(&[&majority, &minority]);
        cluster.run_for(Duration::from_secs(60));
        assert!(
            majority.iter().all(|&a| minority.iter().all(|&b| cluster.state(a, b) != Some(State::Alive))),
            "the split was seen"
        );
        cluster.heal();
        let start: Instant = cluster.now();
        let took = cluster.run_until(Duration::from_secs(180), Cluster::converged).expect("heals");
        assert_eq!(cluster.now().saturating_duration_since(start), took);
        heal.push(took);
    });
    heal.sort();
    println!(
        "partition 12/8 for 60 s, {ran} seeds: back to all-alive after median {:?}, max {:?} (reconnect interval 30 s)",
        percentile(&heal, 0.5),
        heal.last().unwrap()
    );
}

/// Scenario 5, scale (issue 23): 1,000 nodes with LAN settings, in four phases, each printing its
/// figures and one `scale-row:` line that `benches/gossip_scale.sh` collects into its table.
///
/// 1. A join storm: every node boots at time zero and joins through node 0 at once (999
///    push/pulls to one node within the first fsync). Converged means every node sees every
///    other alive at its current incarnation.
/// 2. Steady state: the bytes each member sends per second, over one scaled push/pull period.
/// 3. One node changes its tags: how many 200 ms gossip rounds until 99.99 % have them, beside
///    Serf's convergence model (fan-out 3: about 10.8 rounds at 1,000 nodes, 12.3 at 10,000).
/// 4. A tenth of the nodes crash at once: how long until each crashed node is declared dead, and
///    until every live node sees every crashed one dead, beside Lifeguard's suspicion timeouts;
///    no live node may be declared dead, and the bytes sent meanwhile are printed.
///
/// `MUSTER_SCALE_NODES=5000` runs it at another size; `benches/gossip_scale.sh` runs it in
/// release at several and prints the table (with why 10,000 does not fit in this harness).
#[test]
fn scale_1000_nodes() {
    let size: usize =
        std::env::var("MUSTER_SCALE_NODES").ok().and_then(|v| v.parse().ok()).unwrap_or(SCALE_NODES_DEFAULT);
    assert!(size >= 100, "a tenth must crash: at least 100 nodes");
    let ran = for_each_seed(replay("scale_1000_nodes"), 0..1, |seed| {
        let mut cluster = Cluster::new(seed, size, NetConfig::lan());
        // Joins are N × (N − 1) events that nothing here reads.
        cluster.keep_events(|event| !matches!(event, Event::Member(m) if m.kind == MemberEventKind::Join));
        let join = scale_join_storm(&mut cluster);
        let steady_bytes_per_member_s = scale_steady_bytes(&mut cluster);
        let rounds = scale_update_rounds(&mut cluster);
        let failure = scale_crash_a_tenth(&mut cluster);
        let model = serf_model_rounds(size);
        println!(
            "scale-row: nodes={size} join_s={:.0} detect_median_s={:.1} detect_max_s={:.1} all_dead_s={:.1} \
             false_positives={} steady_bytes_per_member_s={steady_bytes_per_member_s:.0} \
             failure_bytes_per_member_s={:.0} rounds={rounds} serf_model_rounds={model:.1}",
            join.as_secs_f64(),
            failure.detect_median.as_secs_f64(),
            failure.detect_max.as_secs_f64(),
            failure.all_dead.as_secs_f64(),
            failure.false_positives,
            failure.bytes_per_member_s,
        );
    });
    assert_eq!(ran, 1);
}

/// The scale scenario's size in CI: the N² of membership tables shows, and a run takes about
/// a minute in either profile (the simulator's crates are optimised in test builds too).
const SCALE_NODES_DEFAULT: usize = 1000;

/// Every `SCALE_CRASH_STRIDE`th node crashes in the failure phase: a tenth, as the issue asks.
/// Which ones does not matter: every node probes in its own random order.
const SCALE_CRASH_STRIDE: usize = 10;

/// The share of nodes an update must reach, as in Serf's convergence simulator.
const SCALE_INFECTED_SHARE: f64 = 0.9999;

/// Phase 1: every node joins through node 0 at the same instant. Returns the simulated time
/// until converged, to the second (a whole-cluster check costs N² lookups, so it runs once a
/// simulated second).
///
/// Bound: one scaled push/pull interval. Each joiner gets node 0's table at once and gossip
/// carries the rest in O(log N) rounds per member; even if gossip dropped some, by then every
/// node has exchanged full state with a random peer that knows about everyone.
fn scale_join_storm(cluster: &mut Cluster) -> Duration {
    let size = cluster.len();
    cluster.join_all_to(0);
    let bound = push_pull_interval_scaled(size);
    let mut took = Duration::ZERO;
    while !cluster.converged() {
        assert!(took < bound, "{size} nodes not converged after {took:?} (bound {bound:?})");
        cluster.run_for(Duration::from_secs(1));
        took += Duration::from_secs(1);
    }
    println!("scale: {size} nodes joined through one seed at once (a join storm) converged within {took:?}");
    took
}

/// Phase 2: the bytes each member sends per second once the join traffic has drained, over one
/// scaled push/pull period so that every node's full-state exchange is counted once.
///
/// Bound: two probe datagrams a second (a ping out, an ack for someone else's ping) of at most
/// [`PROBE_DATAGRAM_BYTES_MAX`], plus a full state exchange each way per push/pull period of
/// at most [`PUSH_PULL_ENTRY_BYTES_MAX`] per member. Gossip itself is idle: nothing changes.
fn scale_steady_bytes(cluster: &mut Cluster) -> f64 {
    let size = cluster.len();
    // The storm queued every member's alive message at every node: let the retransmits drain.
    cluster.run_for(Duration::from_secs(60));
    let window = push_pull_interval_scaled(size);
    let bytes_before = cluster.stats().bytes_sent;
    cluster.run_for(window);
    let per_member = (cluster.stats().bytes_sent - bytes_before) as f64 / size as f64 / window.as_secs_f64();
    let bound = 2.0 * PROBE_DATAGRAM_BYTES_MAX
        + 2.0 * (size * PUSH_PULL_ENTRY_BYTES_MAX) as f64 / window.as_secs_f64();
    println!(
        "scale: steady state {per_member:.0} bytes/s sent per member (over {window:?}; bound {bound:.0})"
    );
    assert!(per_member < bound, "{per_member:.0} bytes/s per member, bound {bound:.0}");
    per_member
}

/// An allowance for one steady-state ping or ack datagram (a header, a name, an address, a
/// seq: a few dozen bytes), with room to spare.
const PROBE_DATAGRAM_BYTES_MAX: f64 = 128.0;

/// An allowance for one member's entry in a push/pull (a name like the harness's, an address,
/// an incarnation, a state, no tags: about 20 bytes), with room to spare. Steady state at
/// 1,000 and 2,000 members measured 37 % and 41 % of the bound this makes.
const PUSH_PULL_ENTRY_BYTES_MAX: usize = 48;

/// Phase 3: node 1 changes its tags. Returns the 200 ms gossip rounds until 99.99 % of the
/// nodes have them.
///
/// Bound: Serf's convergence model, rounded up. The model halves each contact's chance of
/// infecting (a pessimistic allowance for staggered timers and duplicates), so a node that
/// gossips as memberlist does is never slower.
fn scale_update_rounds(cluster: &mut Cluster) -> usize {
    const ROUNDS_MAX: usize = 60;
    const UPDATER: usize = 1;
    let size = cluster.len();
    let tags = Bytes::from_static(b"version=2");
    cluster.command(UPDATER, Command::UpdateMeta { meta: tags.clone() });
    let target = (size as f64 * SCALE_INFECTED_SHARE).ceil() as usize;
    let mut curve = Vec::new();
    let mut rounds_to_target = None;
    for round in 1..=ROUNDS_MAX {
        cluster.run_for(Duration::from_millis(200));
        let infected = 1
            + (0..size)
                .filter(|&i| i != UPDATER && cluster.view(i, UPDATER).is_some_and(|v| v.meta == tags))
                .count();
        curve.push(infected);
        if infected >= target {
            rounds_to_target = Some(round);
            break;
        }
    }
    println!("scale: infected per 200 ms round: {curve:?}");
    let rounds = rounds_to_target.expect("the update reaches 99.99 % within 60 rounds");
    let model = serf_model_rounds(size);
    println!("scale: 99.99 % ({target} of {size}) reached after {rounds} rounds; Serf's model: {model:.1}");
    assert!(rounds as f64 <= model.ceil(), "{rounds} rounds, Serf's model {model:.1}");
    rounds
}

/// Serf's convergence model (its website's simulator) for fan-out 3 and no loss: the infected
/// share after x rounds is 1 / (1 + (n + 1) e^(−c x)), with c = fan-out × ½ contacts a round;
/// solved for the round at which it reaches [`SCALE_INFECTED_SHARE`].
fn serf_model_rounds(nodes: usize) -> f64 {
    let fan_out = f64::from(swim::Config::lan().gossip_nodes);
    let share = SCALE_INFECTED_SHARE;
    ((nodes as f64 + 1.0) * share / (1.0 - share)).ln() / (fan_out * 0.5)
}

/// memberlist's `pushPullScale`: beyond 32 members the push/pull interval grows by one interval
/// per doubling, so that full-state traffic stays bounded as the cluster grows.
fn push_pull_interval_scaled(nodes: usize) -> Duration {
    const SCALE_THRESHOLD: f64 = 32.0;
    let interval = swim::Config::lan().push_pull_interval;
    if nodes as f64 <= SCALE_THRESHOLD {
        return interval;
    }
    let multiplier = ((nodes as f64).log2() - SCALE_THRESHOLD.log2()).ceil() as u32 + 1;
    interval * multiplier
}

/// What the failure phase measured.
struct ScaleFailure {
    /// Median, over the crashed nodes, of the time from the crash to the first node declaring
    /// it dead.
    detect_median: Duration,
    /// The same, the slowest crashed node.
    detect_max: Duration,
    /// From the crash until every live node had marked every crashed node failed.
    all_dead: Duration,
    /// Live nodes that any node marked failed.
    false_positives: usize,
    /// Bytes each live member sent per second from the crash until `all_dead`.
    bytes_per_member_s: f64,
}

/// Phase 4: a tenth of the nodes crash at once. Timings come from the events each live node
/// reports, so they are exact; the loop only looks once a simulated second whether it is done.
///
/// Bounds (Lifeguard's suspicion, memberlist's defaults: probe every 1 s, suspicion_mult 4,
/// suspicion_max_timeout_mult 6, k = suspicion_mult − 2 = 2 confirmations):
/// - Nobody declares a crashed node dead before the minimum suspicion timeout,
///   `4 × log10(n) × 1 s` with n at least the 90 % still alive, has passed since the crash.
/// - The median crashed node is declared dead within that minimum plus
///   [`SCALE_DETECT_SLACK_PROBES`] probe intervals: each live node probes one member a second,
///   so about 0.9 probes a second reach a crashed node; the first suspects it (a probe fails
///   within one interval), the next two confirm it long before the minimum elapses, and the
///   timeout shrinks to the minimum.
/// - Everyone sees every crashed node dead within the maximum suspicion timeout (6 × the
///   minimum: no confirmation at all) after its first failed probe, plus the gossip rounds the
///   dead message takes to reach everyone. A crashed node escapes all probers for
///   [`SCALE_FIRST_PROBE_INTERVALS_MAX`] intervals with probability about e^(−0.9 × 20) each.
fn scale_crash_a_tenth(cluster: &mut Cluster) -> ScaleFailure {
    let size = cluster.len();
    let crashed: Vec<usize> = (SCALE_CRASH_STRIDE / 2..size).step_by(SCALE_CRASH_STRIDE).collect();
    let live: Vec<usize> = (0..size).filter(|i| !crashed.contains(i)).collect();
    let config = swim::Config::lan();
    let timeout_min = suspicion_timeout_min(live.len());
    let timeout_max = suspicion_timeout_min(size) * config.suspicion_max_timeout_mult;
    let spread = config.gossip_interval * SCALE_SPREAD_ROUNDS_MAX;
    let all_dead_bound = config.probe_interval * SCALE_FIRST_PROBE_INTERVALS_MAX + timeout_max + spread;

    let events_before: Vec<usize> = (0..size).map(|i| cluster.events(i).len()).collect();
    let bytes_before = cluster.stats().bytes_sent;
    let crash_at = cluster.now();
    for &index in &crashed {
        cluster.crash(index);
    }
    let failed_since_crash = |cluster: &Cluster, observer: usize| {
        cluster.events(observer)[events_before[observer]..]
            .iter()
            .filter_map(|(at, event)| match event {
                Event::Member(m) if m.kind == MemberEventKind::Failed => {
                    let subject: usize = m.node.name[1..].parse().expect("harness names are n<index>");
                    Some((at.saturating_duration_since(crash_at), subject))
                }
                _ => None,
            })
            .collect::<Vec<(Duration, usize)>>()
    };
    let mut waited = Duration::ZERO;
    loop {
        cluster.run_for(Duration::from_secs(1));
        waited += Duration::from_secs(1);
        // Each crashed node fails once per observer (asserted below), so counts suffice here.
        if live.iter().all(|&i| failed_since_crash(cluster, i).len() >= crashed.len()) {
            break;
        }
        assert!(
            waited <= all_dead_bound,
            "not every crashed node seen dead after {waited:?} (bound {all_dead_bound:?})"
        );
    }
    let bytes_per_member_s =
        (cluster.stats().bytes_sent - bytes_before) as f64 / live.len() as f64 / waited.as_secs_f64();

    // For each crashed node: when it was first declared dead, and when the last live node saw it.
    let mut first = vec![Duration::MAX; size];
    let mut last = vec![Duration::ZERO; size];
    let mut falsely_failed = BTreeSet::new();
    for &observer in &live {
        let failed = failed_since_crash(cluster, observer);
        let subjects: BTreeSet<usize> = failed.iter().map(|&(_, subject)| subject).collect();
        assert_eq!(subjects.len(), failed.len(), "node {observer} marked a node failed twice");
        for (at, subject) in failed {
            if crashed.contains(&subject) {
                first[subject] = first[subject].min(at);
                last[subject] = last[subject].max(at);
            } else {
                falsely_failed.insert(subject);
            }
        }
    }
    let mut detected: Vec<Duration> = crashed.iter().map(|&c| first[c]).collect();
    detected.sort();
    let mut everywhere: Vec<Duration> = crashed.iter().map(|&c| last[c]).collect();
    everywhere.sort();
    let spread_max = crashed.iter().map(|&c| last[c] - first[c]).max().expect("some crashed");
    let all_dead = *everywhere.last().expect("some crashed");
    let failure = ScaleFailure {
        detect_median: percentile(&detected, 0.5),
        detect_max: *detected.last().expect("some crashed"),
        all_dead,
        false_positives: falsely_failed.len(),
        bytes_per_member_s,
    };
    println!(
        "scale: {} of {size} crashed at once; first declared dead after median {:?}, max {:?}; seen dead \
         everywhere after median {:?}; all by {all_dead:?} (spread from first to last observer at most {spread_max:?})",
        crashed.len(),
        failure.detect_median,
        failure.detect_max,
        percentile(&everywhere, 0.5),
    );
    println!(
        "scale: Lifeguard's suspicion timeout {timeout_min:?} (k = 2 confirmations) to {timeout_max:?} (none); \
         live nodes marked failed: {}; {bytes_per_member_s:.0} bytes/s sent per live member meanwhile",
        failure.false_positives
    );

    assert_eq!(failure.false_positives, 0, "live nodes marked failed: {falsely_failed:?}");
    assert!(
        detected[0] >= timeout_min,
        "declared dead after {:?}, before the minimum suspicion timeout {timeout_min:?}",
        detected[0]
    );
    let median_bound = timeout_min + config.probe_interval * SCALE_DETECT_SLACK_PROBES;
    assert!(
        failure.detect_median <= median_bound,
        "median {:?}, bound {median_bound:?}",
        failure.detect_median
    );
    assert!(all_dead <= all_dead_bound, "all seen dead after {all_dead:?}, bound {all_dead_bound:?}");
    assert!(spread_max <= spread, "a dead message took {spread_max:?} to reach everyone (bound {spread:?})");
    // The views agree with the events, and the live nodes still see each other alive.
    for &observer in &live {
        for &peer in &crashed {
            assert_eq!(cluster.state(observer, peer), Some(State::Dead), "n{observer} on n{peer}");
        }
    }
    assert!(cluster.converged(), "the live nodes see each other alive at their incarnations");
    failure
}

/// Probe intervals beyond the minimum suspicion timeout within which the median crashed node is
/// declared dead: one to be probed, one for the probe to fail, and room for the confirmations.
const SCALE_DETECT_SLACK_PROBES: u32 = 5;

/// Probe intervals within which every crashed node has been probed once (see
/// [`scale_crash_a_tenth`]).
const SCALE_FIRST_PROBE_INTERVALS_MAX: u32 = 20;

/// Gossip rounds a dead message may take to reach every live node: Serf's model at 10,000
/// nodes is 12.3 rounds; twice that, for the queue the failure fills (a suspect and a dead
/// message per crashed node, sent newest first, about 28 to a datagram).
const SCALE_SPREAD_ROUNDS_MAX: u32 = 25;

/// memberlist's minimum suspicion timeout for `nodes` live members, LAN settings.
fn suspicion_timeout_min(nodes: usize) -> Duration {
    let config = swim::Config::lan();
    let scale = (nodes as f64).log10().max(1.0);
    Duration::from_millis(
        (f64::from(config.suspicion_mult) * scale * config.probe_interval.as_millis() as f64).floor() as u64,
    )
}
