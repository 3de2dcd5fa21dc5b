//! Convergence tests, after serf's `performance_test.go` and `phantom.go`: worlds whose true
//! RTTs are known (a line, a grid, two sites, a circle with a raised centre, a square that
//! drifts, and normally distributed random RTTs), driven for 1,000 cycles in which every node
//! probes one peer drawn from a seeded [`Rng`]. Each prints, per seed, the relative error of the
//! estimates and the median and 99th percentile of |estimate − truth| (run with `--nocapture`).
//!
//! What is asserted, and why not serf's bounds as they stand: serf asserts fixed bounds on one
//! run driven by Go's `math/rand` seeded with 1, and those bounds are that run's results with a
//! sliver of margin (its line world ends at avg 0.003033 against a bound of 0.0031). Run with
//! seeds 1 to 50, serf's own code meets its bounds in 28 (line), 27 (grid), 38 (two sites),
//! 9 (circle) and 49 (random) of 50 runs. Our draws come from another generator, so one run of
//! ours is one more sample of the same distribution, and serf's bounds would pass or fail by
//! luck. Instead each world runs seeds 1 to 10, and the median over seeds of each statistic
//! must be within [`MARGIN`] of the median serf's own code reaches over seeds 1 to 50 (the
//! `SERF_*` constants, measured with serf at commit a24f620 under Go 1.19 on amd64). Exact
//! agreement with serf, where no random draw is involved, is
//! `tests::trajectory_matches_serf_bit_for_bit`.

use super::*;

/// A world's true RTTs, `truth[i][j]`, symmetric with a zero diagonal.
type Truth = Vec<Vec<Duration>>;

fn truth_from(nodes: usize, mut rtt: impl FnMut(usize, usize) -> Duration) -> Truth {
    let mut truth = vec![vec![Duration::ZERO; nodes]; nodes];
    for (i, j) in (0..nodes).flat_map(|i| (i + 1..nodes).map(move |j| (i, j))) {
        // One draw per pair: `rtt` may be random.
        let pair_rtt = rtt(i, j);
        truth[i][j] = pair_rtt;
        truth[j][i] = pair_rtt;
    }
    truth
}

/// Nodes on a line, `spacing` apart (serf's `GenerateLine`).
fn line(nodes: usize, spacing: Duration) -> Truth {
    truth_from(nodes, |i, j| spacing * (j - i) as u32)
}

/// Nodes on a square grid, `spacing` apart (serf's `GenerateGrid`).
fn grid(nodes: usize, spacing: Duration) -> Truth {
    let side = (nodes as f64).sqrt() as usize;
    truth_from(nodes, |i, j| {
        let dx = (j % side) as f64 - (i % side) as f64;
        let dy = (j / side) as f64 - (i / side) as f64;
        duration_from_s((dx * dx + dy * dy).sqrt() * spacing.as_secs_f64())
    })
}

/// Two sites: `lan` within a site, `lan + wan` across (serf's `GenerateSplit`, whose first site
/// is nodes `0..=nodes/2`).
fn split(nodes: usize, lan: Duration, wan: Duration) -> Truth {
    let cut = nodes / 2;
    truth_from(nodes, |i, j| if (i <= cut) != (j <= cut) { lan + wan } else { lan })
}

/// Nodes on a circle of `radius`, except node 0, `2 · radius` from all of them: it can only be
/// placed at the centre with a height of about `radius` (serf's `GenerateCircle`).
fn circle(nodes: usize, radius: Duration) -> Truth {
    truth_from(nodes, |i, j| {
        if i == 0 {
            return radius * 2;
        }
        let angle = |k: usize| 2.0 * std::f64::consts::PI * k as f64 / nodes as f64;
        let (dx, dy) = (angle(j).cos() - angle(i).cos(), angle(j).sin() - angle(i).sin());
        duration_from_s((dx * dx + dy * dy).sqrt() * radius.as_secs_f64())
    })
}

/// Normally distributed RTTs (serf's `GenerateRandom`), from a fixed seed.
fn random(nodes: usize, mean: Duration, deviation: Duration) -> Truth {
    let mut rng = Rng::from_seed(1);
    let mut normal = move || {
        // Box-Muller; 1 - u keeps the logarithm's argument in (0, 1].
        let (u1, u2) = (1.0 - uniform_unit(&mut rng), uniform_unit(&mut rng));
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    };
    truth_from(nodes, |_, _| duration_from_s(normal() * deviation.as_secs_f64() + mean.as_secs_f64()))
}

fn clients(nodes: usize, config: &Config, seed: u64) -> Vec<Client> {
    let mut parent = Rng::from_seed(seed);
    (0..nodes).map(|_| Client::new(config.clone(), parent.fork()).expect("valid config")).collect()
}

/// `cycles` rounds in which each node probes one uniformly drawn node (itself: skipped, as in
/// serf) and observes the true RTT.
fn simulate(clients: &mut [Client], truth: &Truth, cycles: usize, rng: &mut Rng) {
    let nodes = clients.len();
    for _ in 0..cycles {
        for i in 0..nodes {
            let j = rng.below(nodes as u64) as usize;
            if j == i {
                continue;
            }
            let other = clients[j].coordinate().clone();
            clients[i].update(&format!("node_{j}"), &other, truth[i][j]).expect("valid sample");
        }
    }
}

/// How far the estimates are from the truth, over every pair.
#[derive(Debug, Clone, Copy)]
struct Stats {
    /// Mean of |estimate − truth| / truth.
    error_avg: f64,
    /// Largest |estimate − truth| / truth.
    error_max: f64,
    /// Median of |estimate − truth|, in seconds.
    absolute_p50_s: f64,
    /// 99th percentile of |estimate − truth|, in seconds.
    absolute_p99_s: f64,
}

impl Stats {
    fn print(&self, label: &str) {
        println!(
            "{label}: relative error avg={:.6} max={:.6}; |estimate - truth| p50={:.4} ms p99={:.4} ms",
            self.error_avg,
            self.error_max,
            self.absolute_p50_s * 1e3,
            self.absolute_p99_s * 1e3
        );
    }
}

fn evaluate(clients: &[Client], truth: &Truth) -> Stats {
    let mut relative = Vec::new();
    let mut absolute_s = Vec::new();
    for i in 0..clients.len() {
        for j in i + 1..clients.len() {
            let estimate_s = clients[i].distance_to(clients[j].coordinate()).as_secs_f64();
            let actual_s = truth[i][j].as_secs_f64();
            absolute_s.push((estimate_s - actual_s).abs());
            relative.push((estimate_s - actual_s).abs() / actual_s);
        }
    }
    Stats {
        error_avg: relative.iter().sum::<f64>() / relative.len() as f64,
        error_max: relative.iter().copied().fold(0.0, f64::max),
        absolute_p50_s: percentile(&mut absolute_s, 0.50),
        absolute_p99_s: percentile(&mut absolute_s, 0.99),
    }
}

/// The `p` quantile (nearest rank) of `values`.
fn percentile(values: &mut [f64], p: f64) -> f64 {
    values.sort_by(f64::total_cmp);
    values[((values.len() - 1) as f64 * p).round() as usize]
}

/// Runs `truth` for [`CYCLES`] from fresh clients, for each of [`SEEDS`]; returns each seed's
/// clients, and the median over seeds of each statistic.
fn sweep(name: &str, config: &Config, truth: &Truth) -> (Vec<Vec<Client>>, Stats) {
    let mut runs = Vec::new();
    let mut all = Vec::new();
    for seed in SEEDS {
        let mut clients = clients(truth.len(), config, seed);
        simulate(&mut clients, truth, CYCLES, &mut Rng::from_seed(seed));
        let stats = evaluate(&clients, truth);
        stats.print(&format!("{name} seed {seed}"));
        runs.push(clients);
        all.push(stats);
    }
    let median_of =
        |field: fn(&Stats) -> f64| percentile(&mut all.iter().map(field).collect::<Vec<_>>(), 0.5);
    let median = Stats {
        error_avg: median_of(|s| s.error_avg),
        error_max: median_of(|s| s.error_max),
        absolute_p50_s: median_of(|s| s.absolute_p50_s),
        absolute_p99_s: median_of(|s| s.absolute_p99_s),
    };
    median.print(&format!("{name} median over seeds"));
    (runs, median)
}

/// Our median over seeds against serf's median over seeds, `(error_avg, error_max)`.
fn assert_like_serf(median: &Stats, serf: (f64, f64)) {
    assert!(median.error_avg <= MARGIN * serf.0, "average error worse than serf's: {median:?} vs {serf:?}");
    assert!(median.error_max <= MARGIN * serf.1, "largest error worse than serf's: {median:?} vs {serf:?}");
}

#[test]
fn converges_on_a_line() {
    let (_, median) = sweep("line", &Config::default(), &line(10, Duration::from_millis(10)));
    assert_like_serf(&median, SERF_LINE);
}

#[test]
fn converges_on_a_grid() {
    let (_, median) = sweep("grid", &Config::default(), &grid(25, Duration::from_millis(10)));
    assert_like_serf(&median, SERF_GRID);
}

#[test]
fn converges_on_two_sites() {
    let truth = split(25, Duration::from_millis(1), Duration::from_millis(10));
    let (_, median) = sweep("split", &Config::default(), &truth);
    assert_like_serf(&median, SERF_SPLIT);
}

/// Reference: Vivaldi §5.4, height vectors. Node 0 is equidistant from the others at twice the
/// radius; in two dimensions the only fit puts it at the centre, raised by about one radius,
/// with everyone else in the plane. serf asserts the centre's height is at least 0.97 radius
/// and every other height at most 0.03 radius; we assert the first on the median over seeds,
/// and the second against serf's median of the largest rim height.
#[test]
fn height_lifts_the_centre_of_a_circle() {
    let radius = Duration::from_millis(100);
    let config = Config { dimensionality: 2, ..Config::default() };
    let (runs, median) = sweep("height", &config, &circle(25, radius));
    let mut centres_s: Vec<f64> = runs.iter().map(|clients| clients[0].coordinate().height).collect();
    let mut rims_s: Vec<f64> = runs
        .iter()
        .map(|clients| clients[1..].iter().map(|c| c.coordinate().height).fold(0.0, f64::max))
        .collect();
    let (centre_s, rim_s) = (percentile(&mut centres_s, 0.5), percentile(&mut rims_s, 0.5));
    println!("height: median centre height {centre_s:.6} s, median highest rim {rim_s:.6} s");
    assert!(centre_s >= 0.97 * radius.as_secs_f64(), "centre too low: {centres_s:?}");
    assert!(rim_s <= MARGIN * SERF_CIRCLE_RIM_HEIGHT_S, "rim too high: {rims_s:?}");
    assert_like_serf(&median, SERF_CIRCLE);
}

/// Reference: Ledlie et al. §5, gravity. Four nodes placed off-centre in a square: with the
/// true RTTs satisfied, only gravity moves the square, and it must bring the centre at least
/// 20% closer to the origin over 10,000 more cycles (serf's test and bound).
#[test]
fn gravity_pulls_a_drifting_square_toward_the_origin() {
    let side = Duration::from_millis(500);
    let config = Config { dimensionality: 2, ..Config::default() };
    let mut clients = clients(4, &config, 1);
    let side_s = side.as_secs_f64();
    // serf's placement, two nodes on one corner included.
    let corners = [[0.0, 0.0], [0.0, side_s], [side_s, side_s], [side_s, side_s]];
    for (client, corner) in clients.iter_mut().zip(corners) {
        let placed = Coordinate { vec: corner.to_vec(), ..client.coordinate().clone() };
        client.set_coordinate(placed).expect("valid coordinate");
    }
    // Laid out as 1-2 over 0-3: all sides `side`, the 0-2 diagonal √2 · side.
    let truth = truth_from(4, |i, j| {
        if i % 2 == 0 && j % 2 == 0 {
            duration_from_s(std::f64::consts::SQRT_2 * side_s)
        } else {
            side
        }
    });
    let mut rng = Rng::from_seed(1);
    simulate(&mut clients, &truth, 1_000, &mut rng);
    let baseline_s = centre_distance_s(&clients);
    simulate(&mut clients, &truth, 10_000, &mut rng);
    let drifted_s = centre_distance_s(&clients);
    println!("drift: centre {baseline_s:.6} s -> {drifted_s:.6} s from the origin");
    assert!(drifted_s <= 0.8 * baseline_s, "gravity out of serf's spec: {baseline_s:.6} -> {drifted_s:.6}");
}

/// How far from the origin the centre of the clients' bounding box is.
fn centre_distance_s(clients: &[Client]) -> f64 {
    let dimensions = clients[0].coordinate().vec.len();
    let centre: Vec<f64> = (0..dimensions)
        .map(|d| {
            let values = clients.iter().map(|c| c.coordinate().vec[d]);
            let low = values.clone().fold(f64::INFINITY, f64::min);
            let high = values.fold(f64::NEG_INFINITY, f64::max);
            low + (high - low) / 2.0
        })
        .collect();
    magnitude(&centre)
}

#[test]
fn converges_on_random_rtts() {
    let truth = random(25, Duration::from_millis(100), Duration::from_millis(10));
    let (_, median) = sweep("random", &Config::default(), &truth);
    assert_like_serf(&median, SERF_RANDOM);
}

/// A random world the size of a mid-sized Consul datacenter, for the printed figures. serf has
/// no such test: random RTTs embed worse as the world grows (each pair is sampled a quarter as
/// often), so the bound is twice serf's 25-node median, and no client may have reset.
#[test]
fn converges_on_random_rtts_with_a_hundred_nodes() {
    let truth = random(100, Duration::from_millis(100), Duration::from_millis(10));
    let mut clients = clients(truth.len(), &Config::default(), 1);
    simulate(&mut clients, &truth, CYCLES, &mut Rng::from_seed(1));
    let stats = evaluate(&clients, &truth);
    stats.print("random-100 seed 1");
    assert!(stats.error_avg <= 2.0 * SERF_RANDOM.0, "{stats:?}");
    assert!(clients.iter().all(|c| c.stats().resets == 0));
}

/// serf's cycles per world.
const CYCLES: usize = 1_000;

/// The seeds each world runs with: enough for a stable median, few enough to stay fast.
const SEEDS: std::ops::RangeInclusive<u64> = 1..=10;

/// How much worse than serf's median our median may be: our ten-seed medians land within ±13%
/// of serf's fifty-seed medians, and a real defect (a dropped term) costs far more.
const MARGIN: f64 = 1.25;

/// serf's median `(error_avg, error_max)` over seeds 1 to 50 for the line world.
const SERF_LINE: (f64, f64) = (0.002387, 0.012497);
/// The same for the grid.
const SERF_GRID: (f64, f64) = (0.001524, 0.011612);
/// The same for the two sites.
const SERF_SPLIT: (f64, f64) = (0.000055, 0.000356);
/// The same for the circle with a raised centre.
const SERF_CIRCLE: (f64, f64) = (0.003156, 0.057565);
/// serf's median, over seeds 1 to 50, of the largest height among the circle's rim nodes.
const SERF_CIRCLE_RIM_HEIGHT_S: f64 = 0.002778;
/// serf's median `(error_avg, error_max)` over seeds 1 to 50 for random RTTs.
const SERF_RANDOM: (f64, f64) = (0.050411, 0.249941);
