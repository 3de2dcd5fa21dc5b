//! Vivaldi network coordinates, computed exactly as serf's `coordinate` package computes them
//! for Consul.
//!
//! Every node places itself at a point in an 8-dimensional Euclidean space plus a non-Euclidean
//! *height* (its access link), so that the distance between two nodes' coordinates estimates the
//! round-trip time between them. After each direct probe a node knows one true RTT and the other
//! node's coordinate; [`Client::update`] moves its own coordinate a little, like a spring
//! relaxing, so that the estimate for that pair gets closer to the measurement. Consul uses the
//! estimates to sort catalog and health answers by proximity (`?near=`) and for `consul rtt`.
//!
//! The algorithm (Dabek et al., "Vivaldi", SIGCOMM 2004, with the height vector of §5.4, the
//! latency filter and gravity of Ledlie et al., "Network Coordinates in the Wild", NSDI 2007, and
//! the adjustment term of Lee et al., IEEE/ACM ToN 18.1, 2010), as serf runs it:
//!
//! 1. the RTT goes through a per-peer moving median of the last three samples;
//! 2. the Vivaldi step weighs the sample by both nodes' confidence (`error`) and moves the
//!    coordinate along the line between the two by `cc · w · (rtt − estimate)`;
//! 3. an adjustment term (the mean of the last 20 `rtt − raw distance` residuals, halved)
//!    absorbs what the space cannot represent;
//! 4. a weak gravity pulls the coordinate toward the origin, so the whole system does not drift;
//! 5. a coordinate that became NaN or infinite is reset to the origin.
//!
//! All distances, heights and adjustments are in seconds (`f64`), as in serf and in Consul's
//! JSON; `error` is dimensionless.
//!
//! Where this departs from serf, and why:
//! - The RTT is a [`Duration`], so a negative RTT cannot be expressed; serf's "negative or over
//!   10 s" check becomes "over [`RTT_MAX`]". An RTT of zero is accepted, as serf accepts it, and
//!   counted in [`ClientStats::zero_rtts`] (serf increments a metric instead).
//! - When two coordinates coincide serf picks a random direction with Go's `math/rand`; here
//!   the draws come from the client's seeded [`Rng`], so a run is replayable. Same distribution,
//!   different numbers.
//! - Distances convert to [`Duration`] by truncation to whole nanoseconds, as Go's
//!   `time.Duration(seconds * 1e9)` does, and the Vivaldi and gravity steps use that truncated
//!   value as serf does. A distance Go would make negative (only possible with negative heights
//!   from a peer) becomes zero; NaN becomes zero; one beyond Go's range saturates.
//! - [`Config::validate`] checks every field (serf checks only `dimensionality > 0`; a latency
//!   filter of size 0 makes serf index an empty slice and panic).
//! - The per-peer latency filter holds at most [`crate::MEMBERS_MAX`] peers; serf has no bound.
//! - No mutex (the core is single-threaded) and no clone on read: [`Client::coordinate`]
//!   borrows.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::duration::GO_DURATION_MAX;
use crate::Rng;

#[cfg(test)]
mod performance_tests;
#[cfg(test)]
mod tests;

/// The tuning of the Vivaldi algorithm. [`Config::default`] is serf's `DefaultConfig()`, which
/// Consul uses unchanged for both its LAN and WAN pools.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Length of [`Coordinate::vec`]. More dimensions help up to a point; 8 (plus the height)
    /// is the choice of Ledlie et al.
    pub dimensionality: usize,
    /// The error of a fresh coordinate, and the cap on any error.
    pub vivaldi_error_max: f64,
    /// How much one observation can change the error (Vivaldi's `ce`).
    pub vivaldi_ce: f64,
    /// How much one observation can move the coordinate (Vivaldi's `cc`).
    pub vivaldi_cc: f64,
    /// How many residuals the adjustment term averages; 0 turns the term off.
    pub adjustment_window_size: usize,
    /// The height of a fresh coordinate and the floor of any height, in seconds. Must be
    /// non-negative; small next to real RTTs, since it adds to every estimate.
    pub height_min_s: f64,
    /// How many recent RTT samples per peer the median filter keeps.
    pub latency_filter_size: usize,
    /// Gravity's scale: at a distance `rho` from the origin the pull is one second per update.
    pub gravity_rho: f64,
}

impl Config {
    /// Checks every field against its meaningful range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.dimensionality == 0 {
            return Err(ConfigError::DimensionalityZero);
        }
        check_count("dimensionality", self.dimensionality, 1, DIMENSIONALITY_MAX)?;
        check_count("adjustment_window_size", self.adjustment_window_size, 0, ADJUSTMENT_WINDOW_SIZE_MAX)?;
        check_count("latency_filter_size", self.latency_filter_size, 1, LATENCY_FILTER_SIZE_MAX)?;
        check_real("vivaldi_error_max", self.vivaldi_error_max, f64::MIN_POSITIVE, f64::MAX)?;
        // Above 1 the error's decay factor `1 - ce·w` can turn negative.
        check_real("vivaldi_ce", self.vivaldi_ce, f64::MIN_POSITIVE, 1.0)?;
        check_real("vivaldi_cc", self.vivaldi_cc, f64::MIN_POSITIVE, 1.0)?;
        check_real("height_min_s", self.height_min_s, 0.0, f64::MAX)?;
        check_real("gravity_rho", self.gravity_rho, f64::MIN_POSITIVE, f64::MAX)?;
        Ok(())
    }
}

impl Default for Config {
    fn default() -> Config {
        Config {
            dimensionality: DIMENSIONALITY,
            vivaldi_error_max: VIVALDI_ERROR_MAX,
            vivaldi_ce: VIVALDI_CE,
            vivaldi_cc: VIVALDI_CC,
            adjustment_window_size: ADJUSTMENT_WINDOW_SIZE,
            height_min_s: HEIGHT_MIN_S,
            latency_filter_size: LATENCY_FILTER_SIZE,
            gravity_rho: GRAVITY_RHO,
        }
    }
}

/// Why a [`Config`] is unusable.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    /// No dimensions (serf's own check, and its words).
    #[error("dimensionality must be >0")]
    DimensionalityZero,
    /// A count outside its range.
    #[error("{field} must be in {min}..={max}, got {value}")]
    CountOutOfRange {
        /// The field's name.
        field: &'static str,
        /// Its value.
        value: usize,
        /// The smallest allowed.
        min: usize,
        /// The largest allowed.
        max: usize,
    },
    /// A real number outside its range, or not finite.
    #[error("{field} must be a finite number in {min}..={max}, got {value}")]
    RealOutOfRange {
        /// The field's name.
        field: &'static str,
        /// Its value.
        value: f64,
        /// The smallest allowed.
        min: f64,
        /// The largest allowed.
        max: f64,
    },
}

/// A node's estimated position. The field names on the wire are Consul's (`Vec`, `Error`,
/// `Adjustment`, `Height`); all but `error` are in seconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Coordinate {
    /// The Euclidean part, in seconds. A `Vec` and not an array because the dimensionality is
    /// configuration and arrives from peers, who may disagree
    /// (see [`Coordinate::is_compatible_with`]).
    pub vec: Vec<f64>,
    /// How little the node trusts this coordinate: from 0 (exact) to `vivaldi_error_max`.
    pub error: f64,
    /// An offset, in seconds, learned from recent residuals; added to distances when the sum
    /// with the other node's adjustment keeps the distance positive.
    pub adjustment: f64,
    /// The access-link delay, in seconds, that no position in the Euclidean space can express.
    pub height: f64,
}

impl Coordinate {
    /// A coordinate at the origin, with the largest error and the smallest height.
    pub fn new(config: &Config) -> Coordinate {
        Coordinate {
            vec: vec![0.0; config.dimensionality],
            error: config.vivaldi_error_max,
            adjustment: 0.0,
            height: config.height_min_s,
        }
    }

    /// This coordinate pushed by `force_s` seconds directly away from `other` (toward it when
    /// the force is negative). The height moves in proportion; it never drops below
    /// `config.height_min_s`. When the two coincide the direction is drawn from `rng` and the
    /// height is left alone.
    ///
    /// # Panics
    /// If the dimensionalities differ (check [`Coordinate::is_compatible_with`] first).
    pub fn apply_force(
        &self,
        config: &Config,
        force_s: f64,
        other: &Coordinate,
        rng: &mut Rng,
    ) -> Coordinate {
        self.assert_compatible_with(other);
        let (unit, magnitude_s) = unit_vector_at(&self.vec, &other.vec, || uniform_unit(rng));
        let mut moved = self.clone();
        for (component, direction) in moved.vec.iter_mut().zip(&unit) {
            *component += direction * force_s;
        }
        if magnitude_s > ZERO_THRESHOLD_S {
            let height = (moved.height + other.height) * force_s / magnitude_s + moved.height;
            moved.height = go_max(height, config.height_min_s);
        }
        moved
    }

    /// Whether every component is finite (neither NaN nor infinite).
    pub fn is_valid(&self) -> bool {
        self.vec.iter().all(|c| c.is_finite())
            && self.error.is_finite()
            && self.adjustment.is_finite()
            && self.height.is_finite()
    }

    /// Whether the two have the same dimensionality, so that distances between them exist.
    pub fn is_compatible_with(&self, other: &Coordinate) -> bool {
        self.vec.len() == other.vec.len()
    }

    /// The estimated RTT to `other`: the Euclidean distance plus both heights, plus both
    /// adjustments when that sum stays positive. Truncated to whole nanoseconds as serf's
    /// `DistanceTo` is.
    ///
    /// # Panics
    /// If the dimensionalities differ (check [`Coordinate::is_compatible_with`] first).
    pub fn distance_to(&self, other: &Coordinate) -> Duration {
        self.assert_compatible_with(other);
        let raw_s = self.raw_distance_s(other);
        let adjusted_s = raw_s + self.adjustment + other.adjustment;
        // A negative sum of adjustments could make the estimate meaningless; serf then ignores
        // both adjustments rather than clamp.
        duration_from_s(if adjusted_s > 0.0 { adjusted_s } else { raw_s })
    }

    /// The distance to `other` in seconds without the adjustments: the Euclidean distance plus
    /// both heights.
    ///
    /// # Panics
    /// If the dimensionalities differ.
    pub fn raw_distance_s(&self, other: &Coordinate) -> f64 {
        self.assert_compatible_with(other);
        magnitude(&difference(&self.vec, &other.vec)) + self.height + other.height
    }

    fn assert_compatible_with(&self, other: &Coordinate) {
        assert!(
            self.is_compatible_with(other),
            "coordinate dimensionality does not match: {} vs {}",
            self.vec.len(),
            other.vec.len()
        );
    }
}

/// Why [`Client::update`] or [`Client::set_coordinate`] refused its input. A refused call
/// changes nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CoordinateError {
    /// The coordinate has another dimensionality than ours (serf's words).
    #[error("dimensions aren't compatible")]
    DimensionsIncompatible {
        /// Our dimensionality.
        ours: usize,
        /// The offered coordinate's.
        theirs: usize,
    },
    /// The coordinate has a NaN or infinite component (serf's words).
    #[error("coordinate is invalid")]
    Invalid,
    /// The RTT is over [`RTT_MAX`]. The text is serf's, trailing space included; Go prints a
    /// duration as `1m0.5s`.
    #[error(
        "round trip time not in valid range, duration {} is not a positive value less than {} ",
        crate::duration::format(*rtt),
        crate::duration::format(RTT_MAX)
    )]
    RttOutOfRange {
        /// The refused RTT.
        rtt: Duration,
    },
    /// A sample from one more peer than [`crate::MEMBERS_MAX`] (the caller forgets departed
    /// peers with [`Client::forget_node`]).
    #[error("latency filter is full: {peers} peers tracked")]
    TooManyPeers {
        /// Peers tracked.
        peers: usize,
    },
}

/// Counters of what [`Client::update`] did that its callers cannot see in its result.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClientStats {
    /// Times the coordinate became NaN or infinite and was reset to the origin.
    pub resets: u64,
    /// Accepted samples with an RTT of exactly zero (coarse clocks produce them).
    pub zero_rtts: u64,
}

/// One node's Vivaldi state: its coordinate and what it remembers of recent samples (serf's
/// `coordinate.Client`).
#[derive(Debug, Clone)]
pub struct Client {
    config: Config,
    coord: Coordinate,
    /// A fresh coordinate, the anchor gravity pulls toward.
    origin: Coordinate,
    /// A ring of the last `adjustment_window_size` residuals (`rtt − raw distance`, seconds);
    /// it starts full of zeros, as serf's does, so the adjustment grows in gradually.
    adjustment_samples_s: Vec<f64>,
    /// The ring slot the next residual overwrites.
    adjustment_index: usize,
    /// Each peer's last `latency_filter_size` RTTs in seconds, oldest first. A `BTreeMap` so
    /// that nothing about the client depends on hash order.
    latency_samples_s: BTreeMap<String, VecDeque<f64>>,
    stats: ClientStats,
    /// Directions for coordinates that coincide.
    rng: Rng,
}

impl Client {
    /// A client at the origin.
    pub fn new(config: Config, rng: Rng) -> Result<Client, ConfigError> {
        config.validate()?;
        let client = Client {
            coord: Coordinate::new(&config),
            origin: Coordinate::new(&config),
            adjustment_samples_s: vec![0.0; config.adjustment_window_size],
            adjustment_index: 0,
            latency_samples_s: BTreeMap::new(),
            stats: ClientStats::default(),
            rng,
            config,
        };
        client.check_invariants();
        Ok(client)
    }

    /// Learns from one probe: `node`, whose coordinate is `other`, answered after `rtt`.
    /// Returns our updated coordinate. A refused sample changes nothing.
    pub fn update(
        &mut self,
        node: &str,
        other: &Coordinate,
        rtt: Duration,
    ) -> Result<Coordinate, CoordinateError> {
        self.check_coordinate(other)?;
        if rtt > RTT_MAX {
            return Err(CoordinateError::RttOutOfRange { rtt });
        }
        let peers = self.latency_samples_s.len();
        if peers >= crate::MEMBERS_MAX && !self.latency_samples_s.contains_key(node) {
            return Err(CoordinateError::TooManyPeers { peers });
        }
        if rtt.is_zero() {
            self.stats.zero_rtts += 1;
        }
        let rtt_s = self.update_latency_filter(node, rtt.as_secs_f64());
        self.update_vivaldi(other, rtt_s);
        self.update_adjustment(other, rtt_s);
        self.update_gravity();
        if !self.coord.is_valid() {
            self.stats.resets += 1;
            self.coord = Coordinate::new(&self.config);
        }
        self.check_invariants();
        Ok(self.coord.clone())
    }

    /// Replaces our coordinate, for example with one saved before a restart.
    pub fn set_coordinate(&mut self, coord: Coordinate) -> Result<(), CoordinateError> {
        self.check_coordinate(&coord)?;
        self.coord = coord;
        self.check_invariants();
        Ok(())
    }

    /// Drops the latency samples of `node` (it left the cluster).
    pub fn forget_node(&mut self, node: &str) {
        self.latency_samples_s.remove(node);
    }

    /// Our current coordinate.
    pub fn coordinate(&self) -> &Coordinate {
        &self.coord
    }

    /// The estimated RTT from us to `other`.
    ///
    /// # Panics
    /// If the dimensionalities differ (check [`Coordinate::is_compatible_with`] first).
    pub fn distance_to(&self, other: &Coordinate) -> Duration {
        self.coord.distance_to(other)
    }

    /// What updates did that their results do not show.
    pub fn stats(&self) -> ClientStats {
        self.stats
    }

    /// The tuning this client runs with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    fn check_coordinate(&self, coord: &Coordinate) -> Result<(), CoordinateError> {
        if !self.coord.is_compatible_with(coord) {
            return Err(CoordinateError::DimensionsIncompatible {
                ours: self.coord.vec.len(),
                theirs: coord.vec.len(),
            });
        }
        if !coord.is_valid() {
            return Err(CoordinateError::Invalid);
        }
        Ok(())
    }

    /// Adds a sample to the peer's window and returns the window's median, `sorted[len / 2]`
    /// (so of two samples, the larger): one slow reply among three never reaches Vivaldi.
    fn update_latency_filter(&mut self, node: &str, rtt_s: f64) -> f64 {
        let samples = self.latency_samples_s.entry(node.to_owned()).or_default();
        samples.push_back(rtt_s);
        if samples.len() > self.config.latency_filter_size {
            samples.pop_front();
        }
        let mut sorted: Vec<f64> = samples.iter().copied().collect();
        sorted.sort_by(f64::total_cmp);
        sorted[sorted.len() / 2]
    }

    /// The Vivaldi step: updates the error, then moves the coordinate along the line to
    /// `other`, both weighted by how much of the pair's total error is ours.
    fn update_vivaldi(&mut self, other: &Coordinate, rtt_s: f64) {
        // serf reads the estimate back through time.Duration, truncating to nanoseconds; so do
        // we, so that the arithmetic matches.
        let distance_s = self.coord.distance_to(other).as_secs_f64();
        // A zero RTT would divide by zero; serf floors it.
        let rtt_s = if rtt_s < ZERO_THRESHOLD_S { ZERO_THRESHOLD_S } else { rtt_s };
        let wrongness = (distance_s - rtt_s).abs() / rtt_s;

        let mut error_total = self.coord.error + other.error;
        if error_total < ZERO_THRESHOLD_S {
            error_total = ZERO_THRESHOLD_S;
        }
        let weight = self.coord.error / error_total;

        let ce = self.config.vivaldi_ce;
        self.coord.error = ce * weight * wrongness + self.coord.error * (1.0 - ce * weight);
        if self.coord.error > self.config.vivaldi_error_max {
            self.coord.error = self.config.vivaldi_error_max;
        }

        let force_s = self.config.vivaldi_cc * weight * (rtt_s - distance_s);
        self.coord = self.coord.apply_force(&self.config, force_s, other, &mut self.rng);
    }

    /// Records the residual the Euclidean model (without adjustments) leaves for this sample,
    /// and sets the adjustment to half the window's mean: each end of a pair carries half.
    fn update_adjustment(&mut self, other: &Coordinate, rtt_s: f64) {
        let window = self.config.adjustment_window_size;
        if window == 0 {
            return;
        }
        let residual_s = rtt_s - self.coord.raw_distance_s(other);
        self.adjustment_samples_s[self.adjustment_index] = residual_s;
        self.adjustment_index = (self.adjustment_index + 1) % window;
        let sum_s: f64 = self.adjustment_samples_s.iter().sum();
        self.coord.adjustment = sum_s / (2.0 * window as f64);
    }

    /// Pulls the coordinate toward the origin with a force growing as the square of the
    /// distance, so that the coordinate system as a whole does not drift away.
    fn update_gravity(&mut self) {
        let distance_s = self.origin.distance_to(&self.coord).as_secs_f64();
        let ratio = distance_s / self.config.gravity_rho;
        let force_s = -(ratio * ratio);
        self.coord = self.coord.apply_force(&self.config, force_s, &self.origin, &mut self.rng);
    }

    /// Checks what every step must keep, in test, simulation and fuzz builds.
    fn check_invariants(&self) {
        if !crate::INVARIANT_CHECKS {
            return;
        }
        assert!(self.coord.is_valid(), "client coordinate invalid: {:?}", self.coord);
        assert_eq!(self.coord.vec.len(), self.config.dimensionality);
        assert_eq!(self.origin, Coordinate::new(&self.config), "the origin moved");
        assert_eq!(self.adjustment_samples_s.len(), self.config.adjustment_window_size);
        assert!(self.adjustment_index < self.config.adjustment_window_size.max(1));
        assert!(self.latency_samples_s.len() <= crate::MEMBERS_MAX);
        for samples in self.latency_samples_s.values() {
            assert!(!samples.is_empty(), "an empty latency window is kept");
            assert!(samples.len() <= self.config.latency_filter_size);
        }
    }
}

/// The unit vector pointing from `to` toward `from`, and the distance between them. When they
/// are closer than [`ZERO_THRESHOLD_S`] the direction is random (each component `draw() - 0.5`,
/// normalised, with `draw` uniform in `[0, 1)`) and the distance is reported as zero; if even the
/// draws are degenerate, the first axis.
fn unit_vector_at(from: &[f64], to: &[f64], mut draw: impl FnMut() -> f64) -> (Vec<f64>, f64) {
    let mut direction = difference(from, to);
    let length = magnitude(&direction);
    if length > ZERO_THRESHOLD_S {
        return (scale(&direction, 1.0 / length), length);
    }
    for component in direction.iter_mut() {
        *component = draw() - 0.5;
    }
    let length = magnitude(&direction);
    if length > ZERO_THRESHOLD_S {
        return (scale(&direction, 1.0 / length), 0.0);
    }
    let mut axis = vec![0.0; direction.len()];
    axis[0] = 1.0;
    (axis, 0.0)
}

/// A uniform draw from `[0, 1)` with 53 random bits (the resolution of Go's `Float64`).
fn uniform_unit(rng: &mut Rng) -> f64 {
    (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
}

fn difference(a: &[f64], b: &[f64]) -> Vec<f64> {
    debug_assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| x - y).collect()
}

fn scale(vector: &[f64], factor: f64) -> Vec<f64> {
    vector.iter().map(|x| x * factor).collect()
}

fn magnitude(vector: &[f64]) -> f64 {
    vector.iter().map(|x| x * x).sum::<f64>().sqrt()
}

/// Go's `math.Max`: NaN if either is NaN (Rust's `f64::max` would drop the NaN, and hide a
/// broken coordinate from the reset check).
fn go_max(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else {
        a.max(b)
    }
}

/// Seconds to a duration as Go's `time.Duration(seconds * 1e9)` converts: truncated to whole
/// nanoseconds. What Go cannot hold either saturates: below zero (and NaN) to zero, above its
/// range to [`GO_DURATION_MAX`].
fn duration_from_s(seconds: f64) -> Duration {
    let nanos = seconds * NANOS_PER_S;
    if nanos.is_nan() || nanos <= 0.0 {
        return Duration::ZERO;
    }
    if nanos >= GO_DURATION_MAX.as_nanos() as f64 {
        return GO_DURATION_MAX;
    }
    // In range and positive: `as` truncates toward zero, as Go's conversion does.
    Duration::from_nanos(nanos as u64)
}

fn check_count(field: &'static str, value: usize, min: usize, max: usize) -> Result<(), ConfigError> {
    if (min..=max).contains(&value) {
        return Ok(());
    }
    Err(ConfigError::CountOutOfRange { field, value, min, max })
}

fn check_real(field: &'static str, value: f64, min: f64, max: f64) -> Result<(), ConfigError> {
    if value.is_finite() && (min..=max).contains(&value) {
        return Ok(());
    }
    Err(ConfigError::RealOutOfRange { field, value, min, max })
}

/// serf's dimensionality: 8 Euclidean dimensions plus the height, per Ledlie et al.
pub const DIMENSIONALITY: usize = 8;

/// serf's starting and largest error: a fresh coordinate is fully distrusted.
pub const VIVALDI_ERROR_MAX: f64 = 1.5;

/// serf's `VivaldiCE`, Vivaldi's recommended error gain.
pub const VIVALDI_CE: f64 = 0.25;

/// serf's `VivaldiCC`, Vivaldi's recommended movement gain.
pub const VIVALDI_CC: f64 = 0.25;

/// serf's adjustment window: 20 residuals.
pub const ADJUSTMENT_WINDOW_SIZE: usize = 20;

/// serf's smallest height, 10 µs: positive, and negligible next to any real RTT.
pub const HEIGHT_MIN_S: f64 = 10.0e-6;

/// serf's latency filter: the median of 3 rides out one outlier without delaying a real change
/// for long (each peer is probed only every few seconds).
pub const LATENCY_FILTER_SIZE: usize = 3;

/// serf's gravity scale, 150.
pub const GRAVITY_RHO: f64 = 150.0;

/// The largest RTT an update accepts (serf's `maxRTT`): anything slower is a broken clock or a
/// stalled process, not the network.
pub const RTT_MAX: Duration = Duration::from_secs(10);

/// The largest dimensionality a configuration may ask for: it bounds every coordinate's size.
pub const DIMENSIONALITY_MAX: usize = 64;

/// The largest adjustment window a configuration may ask for (memory per client).
pub const ADJUSTMENT_WINDOW_SIZE_MAX: usize = 1_024;

/// The largest latency filter a configuration may ask for (memory per peer).
pub const LATENCY_FILTER_SIZE_MAX: usize = 64;

/// Below this, in seconds, two positions coincide, an RTT counts as zero and an error total as
/// none (serf's `zeroThreshold`).
const ZERO_THRESHOLD_S: f64 = 1.0e-6;

const NANOS_PER_S: f64 = 1.0e9;

const _: () = assert!(DIMENSIONALITY >= 1 && DIMENSIONALITY <= DIMENSIONALITY_MAX);
const _: () = assert!(ADJUSTMENT_WINDOW_SIZE <= ADJUSTMENT_WINDOW_SIZE_MAX);
const _: () = assert!(LATENCY_FILTER_SIZE >= 1 && LATENCY_FILTER_SIZE <= LATENCY_FILTER_SIZE_MAX);
