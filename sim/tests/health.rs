//! Health checking under simulation: the health issue's four scenarios, each over many seeds.
//!
//! - a flapping check behind thresholds never flaps the catalog (beside an undamped control
//!   that does, so the test can fail), and a flaky one changes the catalog only after a full
//!   streak of agreeing results;
//! - a TTL check expires exactly one TTL after its last update, and recovers on the next;
//! - the reaper deregisters a service critical past its limit within one reap interval, and
//!   spares one whose outage was shorter;
//! - a crashed node's services leave `?passing` within the failure-detection bound, while the
//!   rest stay.
//!
//! Run one with `--nocapture` to see its figures; a failing seed prints its replay command.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use muster_core::fsm::CheckKind;
use muster_core::fsm::{Check, CheckDefinition, Command, Fsm, Health, Node, Register, Service};
use muster_core::health::{DEREGISTER_AFTER_MIN, REAP_INTERVAL};
use muster_core::reconcile::{reconcile, GossipMember};
use muster_core::swim;
use muster_sim::harness::{Cluster, NetConfig};
use muster_sim::health::{Behaviour, HealthSim, Target};
use muster_sim::seed::{map_seeds, Replay};

const CARGO: &str = "cargo test -p muster-sim --test health";

fn replay(test: &'static str) -> Replay {
    Replay { command: CARGO, test }
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn service(id: &str) -> Service {
    Service { id: id.into(), service: id.into(), port: 80, ..Service::default() }
}

/// A check run every `interval` with timeout 1 s and thresholds (success, failures before
/// warning, failures before critical).
fn run_check(id: &str, interval: Duration, thresholds: (u32, u32, u32)) -> Check {
    Check {
        check_id: id.into(),
        name: id.into(),
        kind: CheckKind::Script,
        status: Health::Critical,
        definition: CheckDefinition {
            interval_ns: interval.as_nanos() as u64,
            timeout_ns: secs(1).as_nanos() as u64,
            success_before_passing: thresholds.0,
            failures_before_warning: thresholds.1,
            failures_before_critical: thresholds.2,
            ..CheckDefinition::default()
        },
        ..Check::default()
    }
}

/// The catalog's status changes of check `id` (registration included).
fn changes_of(sim: &HealthSim, id: &str) -> Vec<(Duration, Option<Health>)> {
    sim.catalog_changes().into_iter().filter(|(_, c, _)| c == id).map(|(at, _, s)| (at, s)).collect()
}

/// The `n` results of `id` up to and including time `at`, last first.
fn last_results(sim: &HealthSim, id: &str, at: Duration, n: usize) -> Vec<Health> {
    sim.results(id).into_iter().rev().filter(|(t, _)| *t <= at).take(n).map(|(_, h)| h).collect()
}

#[test]
fn a_flapping_check_behind_thresholds_never_flaps_the_catalog() {
    let controls =
        map_seeds(replay("a_flapping_check_behind_thresholds_never_flaps_the_catalog"), 0..40, |seed| {
            let mut sim = HealthSim::new(seed, "agent-one");
            let interval = Duration::from_millis(1_000 + seed % 9 * 1_000);
            sim.add_check(
                run_check("damped", interval, (2, 2, 2)),
                Some(Target::quick(Behaviour::Alternating)),
            );
            sim.add_check(
                run_check("control", interval, (0, 0, 0)),
                Some(Target::quick(Behaviour::Alternating)),
            );
            let flaky = Target {
                behaviour: Behaviour::Flaky { critical_probability: 0.3 },
                latency_min: Duration::from_millis(1),
                // Now and then slower than the 1 s timeout: critical too.
                latency_max: Duration::from_millis(1_100),
            };
            sim.add_check(run_check("flaky", interval, (3, 3, 3)), Some(flaky));
            sim.run_until(secs(600));

            // Registered critical; the first result applies at once (passing); then nothing.
            let damped = changes_of(&sim, "damped");
            let runs = sim.runs("damped");
            assert!(runs >= 600 / (interval.as_secs() + 1), "{runs} runs");
            assert_eq!(damped.len(), 2, "{damped:?}");
            assert_eq!((damped[0].1, damped[1].1), (Some(Health::Critical), Some(Health::Passing)));
            assert_eq!(sim.catalog_status("damped"), Some(Health::Passing));
            // The control, undamped, flaps the catalog on every run: the property is not vacuous.
            let control = changes_of(&sim, "control");
            assert!(control.len() as u64 >= sim.runs("control") - 1, "{} changes", control.len());

            // Flaky: every change follows a full streak of results that agree with it...
            let flaky = changes_of(&sim, "flaky");
            for &(at, status) in &flaky[2..] {
                let (streak, wanted) = match status {
                    Some(Health::Critical) => (3, Health::Critical),
                    Some(Health::Passing) => (3, Health::Passing),
                    other => panic!("flaky turned {other:?} at {at:?}"),
                };
                let last = last_results(&sim, "flaky", at, streak);
                assert_eq!(last, vec![wanted; streak], "change to {status:?} at {at:?}");
            }
            // ...and every full streak is followed by its change (the damper holds nothing back
            // for ever).
            let results = sim.results("flaky");
            for window in results.windows(3) {
                let status = window[0].1;
                if window.iter().all(|(_, h)| *h == status) {
                    let at = window[2].0;
                    let shown = flaky.iter().rev().find(|(t, _)| *t <= at).map(|(_, s)| *s);
                    assert_eq!(
                        shown,
                        Some(Some(status)),
                        "three {status:?} results by {at:?}, catalog shows {shown:?}"
                    );
                }
            }
            control.len()
        });
    let (ran, control_changes) = (controls.len(), controls.iter().sum::<usize>());
    println!("flapping: {ran} seeds, 10 simulated minutes each; damped checks changed the catalog once after registration, the undamped controls {control_changes} times in all");
}

#[test]
fn ttl_checks_expire_exactly_one_ttl_after_their_last_update() {
    let ran = map_seeds(replay("ttl_checks_expire_exactly_one_ttl_after_their_last_update"), 0..40, |seed| {
        let mut sim = HealthSim::new(seed, "agent-one");
        let ttl = secs(30);
        let check = Check {
            check_id: "service:web".into(),
            name: "web heartbeat".into(),
            kind: CheckKind::Ttl,
            status: Health::Critical,
            definition: CheckDefinition { ttl_ns: ttl.as_nanos() as u64, ..CheckDefinition::default() },
            ..Check::default()
        };
        sim.add_service(service("web"), vec![(check, None)]);
        // Heartbeats at seeded gaps shorter than the TTL, then silence.
        let mut rng = muster_core::Rng::from_seed(seed);
        let beats = 1 + rng.next_u64() % 20;
        let mut at = Duration::ZERO;
        for beat in 0..beats {
            at += rng.duration_between(secs(1), ttl - Duration::from_millis(1));
            sim.run_until(at);
            sim.ttl_update("service:web", Health::Passing, &format!("beat {beat}"));
            assert_eq!(sim.catalog_status("service:web"), Some(Health::Passing), "beat {beat} at {at:?}");
        }
        let last = at;
        sim.run_until(last + ttl - Duration::from_nanos(1));
        assert_eq!(sim.catalog_status("service:web"), Some(Health::Passing), "alive until the TTL runs out");
        sim.run_until(last + ttl);
        assert_eq!(
            sim.catalog_status("service:web"),
            Some(Health::Critical),
            "expired one TTL after {last:?}"
        );
        assert_eq!(
            sim.catalog_output("service:web").as_deref(),
            Some(format!("TTL expired (last output before timeout follows): beat {}", beats - 1).as_str())
        );
        let changes = changes_of(&sim, "service:web");
        assert_eq!(changes.last(), Some(&(last + ttl, Some(Health::Critical))));
        assert_eq!(changes.len(), 3, "registered, first beat, expiry: {changes:?}");
        // An update after expiry revives it, and the TTL counts again from then.
        sim.run_until(last + ttl + secs(5));
        sim.ttl_update("service:web", Health::Warning, "back");
        assert_eq!(sim.catalog_status("service:web"), Some(Health::Warning));
        sim.run_until(last + ttl * 2 + secs(5));
        assert_eq!(sim.catalog_status("service:web"), Some(Health::Critical));
    })
    .len();
    println!("TTL: {ran} seeds; every check expired exactly one TTL after its last heartbeat");
}

#[test]
fn the_reaper_deregisters_a_service_critical_past_its_limit_and_spares_a_shorter_outage() {
    let mut lateness = map_seeds(
        replay("the_reaper_deregisters_a_service_critical_past_its_limit_and_spares_a_shorter_outage"),
        0..40,
        |seed| {
            let mut sim = HealthSim::new(seed, "agent-one");
            let mut rng = muster_core::Rng::from_seed(seed ^ 0x5eed);
            // Limits below the minimum are raised to it.
            let limit = [secs(10), secs(90), secs(120)][(seed % 3) as usize];
            let effective = limit.max(DEREGISTER_AFTER_MIN);
            let breaks = rng.duration_between(secs(10), secs(60));
            let interval = Duration::from_millis(1_000 + rng.next_u64() % 9_000);
            let reaped = |id: &str| Check {
                definition: CheckDefinition {
                    deregister_critical_service_after_ns: limit.as_nanos() as u64,
                    ..run_check(id, interval, (0, 0, 0)).definition
                },
                ..run_check(id, interval, (0, 0, 0))
            };
            let turns = Behaviour::Turns { at: breaks, before: Health::Passing, after: Health::Critical };
            sim.add_service(service("web"), vec![(reaped("web-check"), Some(Target::quick(turns)))]);
            // Down for less than the limit, twice: never reaped.
            let outage = effective - secs(20);
            let first = Behaviour::Outage { from: secs(30), to: secs(30) + outage };
            sim.add_service(service("api"), vec![(reaped("api-check"), Some(Target::quick(first)))]);
            sim.run_until(secs(900));

            let critical_since = changes_of(&sim, "web-check")
                .iter()
                .rev()
                .find(|(_, s)| *s == Some(Health::Critical))
                .map(|(at, _)| *at)
                .expect("web turned critical");
            let removed = changes_of(&sim, "web-check").last().copied().expect("changes");
            assert_eq!(removed.1, None, "web's check left the catalog with its service");
            assert!(!sim.catalog_has_service("web"));
            let late = removed.0 - critical_since;
            assert!(late > effective, "reaped after {late:?} critical, limit {effective:?}");
            assert!(
                late <= effective + REAP_INTERVAL,
                "reaped {late:?} after turning critical (limit {effective:?})"
            );
            assert!(sim.catalog_has_service("api"), "api's outage was shorter than its limit");
            assert_eq!(sim.catalog_status("api-check"), Some(Health::Passing));
            late - effective
        },
    );
    let ran = lateness.len();
    lateness.sort();
    println!(
        "reaper: {ran} seeds; services reaped between {:?} and {:?} past their limit (reap interval {REAP_INTERVAL:?})",
        lateness[0],
        lateness.last().unwrap()
    );
}

/// A crashed node's services leave `?passing` once the leader's gossip marks it failed: the
/// leader (n0) reconciles its view of the LAN pool into the catalog every 100 ms (it does so on
/// every member event in the agent), and `serfHealth` critical takes every service on the node
/// out. The bound is the failure detector's (`failure_detection_50_nodes` in
/// `gossip_scenarios.rs`): no sooner than the minimum suspicion timeout, 4 × max(1, log10 n) s,
/// and no later than six times that plus 5 s to fail a probe and spread the news.
#[test]
fn a_crashed_nodes_services_turn_critical_within_the_detection_bound() {
    const NODES: usize = 8;
    const CRASHED: usize = 5;
    let min = Duration::from_secs(4);
    let mut detection = map_seeds(
        replay("a_crashed_nodes_services_turn_critical_within_the_detection_bound"),
        0..12,
        |seed| {
            let mut cluster = Cluster::new(seed, NODES, NetConfig::lan());
            cluster.join_all_to(0);
            cluster.run_until(secs(60), Cluster::converged).expect("converges");
            let mut fsm = Fsm::new();
            let mut index = 0;
            let mut apply = |fsm: &mut Fsm, command: &Command| {
                index += 1;
                fsm.apply_command(index, 0, command);
            };
            for n in 0..NODES {
                let name = cluster.name(n).to_owned();
                let node = Node { node: name, address: cluster.addr(n).ip().to_string(), ..Node::default() };
                let register =
                    Register { node, skip_node_update: false, service: Some(service("web")), checks: vec![] };
                apply(&mut fsm, &Command::Register(Box::new(register)));
            }
            let reconcile_once =
                |cluster: &Cluster, fsm: &mut Fsm, apply: &mut dyn FnMut(&mut Fsm, &Command)| {
                    let members: Vec<GossipMember> = (0..NODES)
                        .map(|n| {
                            let view = if n == 0 { None } else { cluster.view(0, n) };
                            let status = view.map_or(swim::Status::Alive, |v| v.status());
                            let addr: IpAddr = cluster.addr(n).ip();
                            let tags = BTreeMap::from([("dc".to_owned(), "dc1".to_owned())]);
                            GossipMember { name: cluster.name(n).to_owned(), addr, tags, status }
                        })
                        .collect();
                    for command in reconcile("dc1", cluster.name(0), &members, fsm.catalog()) {
                        apply(fsm, &command);
                    }
                };
            let passing = |fsm: &Fsm| -> Vec<String> {
                fsm.catalog().health_service("web", &[], true).1.iter().map(|i| i.node.node.clone()).collect()
            };
            reconcile_once(&cluster, &mut fsm, &mut apply);
            assert_eq!(passing(&fsm).len(), NODES, "every instance passing before the crash");

            cluster.crash(CRASHED);
            let crashed = cluster.name(CRASHED).to_owned();
            let mut took = None;
            for step in 1..=600u32 {
                cluster.run_for(Duration::from_millis(100));
                reconcile_once(&cluster, &mut fsm, &mut apply);
                let up = passing(&fsm);
                assert!(up.len() >= NODES - 1, "a live node's instance left ?passing: {up:?}");
                if !up.contains(&crashed) {
                    took = Some(Duration::from_millis(100) * step);
                    break;
                }
            }
            let took = took.expect("the crashed node's service left ?passing within 60 s");
            assert!(took >= min, "after {took:?}, below the minimum suspicion timeout");
            assert!(took <= min * 6 + secs(5), "after {took:?}");
            // Its data stays in the catalog (until reaped or force-left), critical.
            let all = fsm.catalog().health_service("web", &[], false).1.len();
            assert_eq!(all, NODES);
            let serf = fsm.catalog().check(&crashed, muster_core::fsm::SERF_HEALTH).expect("serfHealth");
            assert_eq!(
                (serf.status, serf.output.as_str()),
                (Health::Critical, "Agent not live or unreachable")
            );
            took
        },
    );
    let ran = detection.len();
    detection.sort();
    println!(
        "node crash, {NODES} nodes, {ran} seeds: the crashed node's service left ?passing after {:?} (min) to {:?} (max); bound {:?} to {:?}",
        detection[0],
        detection.last().unwrap(),
        min,
        min * 6 + secs(5)
    );
}

/// Two runs of one seed give the same trace.
#[test]
fn the_same_seed_gives_the_same_health_trace() {
    let run = |seed| {
        let mut sim = HealthSim::new(seed, "agent-one");
        let flaky = Target {
            behaviour: Behaviour::Flaky { critical_probability: 0.4 },
            latency_min: Duration::from_millis(1),
            latency_max: Duration::from_millis(1_500),
        };
        sim.add_check(run_check("flaky", secs(2), (2, 1, 3)), Some(flaky));
        sim.run_until(secs(300));
        (sim.trace().hash(), sim.trace().records())
    };
    assert_eq!(run(7), run(7));
    assert_ne!(run(7).0, run(8).0, "different seeds, different runs");
}
