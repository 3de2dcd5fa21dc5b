//! Unit tests, ported case by case from serf's `coordinate_test.go` and `client_test.go` with
//! serf's numbers and its tolerance (1e-6, `verifyEqualFloats`), plus checks of what the port
//! adds (typed errors that leave state untouched, seeded determinism, Consul's field names).

use super::*;

/// serf's `zeroThreshold` in `verifyEqualFloats`.
const TOLERANCE: f64 = 1.0e-6;

fn assert_close(actual: f64, expected: f64) {
    assert!((actual - expected).abs() <= TOLERANCE, "{actual:.9} != {expected:.9}");
}

fn assert_close_vec(actual: &[f64], expected: &[f64]) {
    assert_eq!(actual.len(), expected.len(), "{actual:?} vs {expected:?}");
    for (a, e) in actual.iter().zip(expected) {
        assert_close(*a, *e);
    }
}

fn config_3d() -> Config {
    Config { dimensionality: 3, ..Config::default() }
}

/// serf's distance tests run in 3 dimensions with no height floor.
fn config_3d_flat() -> Config {
    Config { height_min_s: 0.0, ..config_3d() }
}

fn coordinate_at(config: &Config, vec: &[f64]) -> Coordinate {
    Coordinate { vec: vec.to_vec(), ..Coordinate::new(config) }
}

fn client(config: Config) -> Client {
    Client::new(config, Rng::from_seed(1)).expect("valid config")
}

fn seconds(duration: Duration) -> f64 {
    duration.as_secs_f64()
}

// ---- Config ----

#[test]
fn default_config_is_serfs() {
    let config = Config::default();
    assert_eq!(config.dimensionality, 8);
    assert_eq!(config.vivaldi_error_max, 1.5);
    assert_eq!(config.vivaldi_ce, 0.25);
    assert_eq!(config.vivaldi_cc, 0.25);
    assert_eq!(config.adjustment_window_size, 20);
    assert_eq!(config.height_min_s, 10.0e-6);
    assert_eq!(config.latency_filter_size, 3);
    assert_eq!(config.gravity_rho, 150.0);
    assert_eq!(config.validate(), Ok(()));
}

#[test]
fn validate_rejects_each_field_out_of_range() {
    let base = Config::default();
    let cases: Vec<(&str, Config)> = vec![
        ("dimensionality", Config { dimensionality: DIMENSIONALITY_MAX + 1, ..base.clone() }),
        ("adjustment_window_size", Config { adjustment_window_size: 1_025, ..base.clone() }),
        ("latency_filter_size", Config { latency_filter_size: 0, ..base.clone() }),
        ("vivaldi_error_max", Config { vivaldi_error_max: 0.0, ..base.clone() }),
        ("vivaldi_ce", Config { vivaldi_ce: 1.5, ..base.clone() }),
        ("vivaldi_cc", Config { vivaldi_cc: f64::NAN, ..base.clone() }),
        ("height_min_s", Config { height_min_s: -1.0e-6, ..base.clone() }),
        ("gravity_rho", Config { gravity_rho: f64::INFINITY, ..base.clone() }),
    ];
    for (field, config) in cases {
        let error = config.validate().expect_err(field);
        assert!(error.to_string().starts_with(field), "{field}: {error}");
        assert!(Client::new(config, Rng::from_seed(1)).is_err(), "{field}");
    }
    // serf's own tests run with no height floor and with the adjustment term off.
    let edges = [Config { height_min_s: 0.0, ..base.clone() }, Config { adjustment_window_size: 0, ..base }];
    for config in edges {
        assert_eq!(config.validate(), Ok(()), "{config:?}");
    }
}

// ---- Coordinate (coordinate_test.go) ----

#[test]
fn new_coordinate_is_the_origin_with_max_error_and_min_height() {
    let config = Config::default();
    let origin = Coordinate::new(&config);
    assert_eq!(origin.vec, vec![0.0; 8]);
    assert_eq!(origin.error, 1.5);
    assert_eq!(origin.adjustment, 0.0);
    assert_eq!(origin.height, 1.0e-5);
}

#[test]
fn is_valid_rejects_nan_and_infinity_in_every_field() {
    let fresh = Coordinate::new(&Config::default());
    let fields = fresh.vec.len() + 3;
    for i in 0..fields {
        for (value, valid) in
            [(f64::NAN, false), (0.0, true), (f64::INFINITY, false), (f64::NEG_INFINITY, false), (-3.0, true)]
        {
            let mut c = fresh.clone();
            set_field(&mut c, i, value);
            assert_eq!(c.is_valid(), valid, "field {i} = {value}");
        }
    }
}

/// Sets field `i` in serf's order: each of `vec`, then error, adjustment, height.
fn set_field(c: &mut Coordinate, i: usize, value: f64) {
    let dimensions = c.vec.len();
    match i.checked_sub(dimensions) {
        None => c.vec[i] = value,
        Some(0) => c.error = value,
        Some(1) => c.adjustment = value,
        _ => c.height = value,
    }
}

#[test]
fn is_compatible_with_compares_dimensionality() {
    let c1 = Coordinate::new(&config_3d());
    let c2 = Coordinate::new(&config_3d());
    let alien = Coordinate::new(&Config { dimensionality: 2, ..Config::default() });
    let cases =
        [(&c1, &c1, true), (&c2, &c2, true), (&alien, &alien, true), (&c1, &c2, true), (&c2, &c1, true)];
    for (a, b, compatible) in cases {
        assert_eq!(a.is_compatible_with(b), compatible);
    }
    for other in [&c1, &c2] {
        assert!(!other.is_compatible_with(&alien));
        assert!(!alien.is_compatible_with(other));
    }
}

#[test]
fn apply_force_normalises_direction_and_scales_by_force() {
    let config = config_3d_flat();
    let mut rng = Rng::from_seed(1);
    let origin = Coordinate::new(&config);
    let above = coordinate_at(&config, &[0.0, 0.0, 2.9]);
    let right = coordinate_at(&config, &[3.4, 0.0, -5.3]);

    let pushed = origin.apply_force(&config, 5.3, &above, &mut rng);
    assert_close_vec(&pushed.vec, &[0.0, 0.0, -5.3]);

    // Nothing is special about the origin.
    let pushed_again = pushed.apply_force(&config, 2.0, &right, &mut rng);
    assert_close_vec(&pushed_again.vec, &[-2.0, 0.0, -5.3]);

    // Coinciding points move one unit in a random direction, without dividing by zero.
    let scattered = origin.apply_force(&config, 1.0, &origin, &mut rng);
    assert_close(seconds(origin.distance_to(&scattered)), 1.0);
}

#[test]
fn apply_force_moves_height_and_keeps_it_above_min() {
    let config = config_3d();
    let mut rng = Rng::from_seed(1);
    let origin = Coordinate::new(&config);
    // serf built `above` before raising the floor, so its height is zero.
    let above = Coordinate { height: 0.0, ..coordinate_at(&config, &[0.0, 0.0, 2.9]) };
    let height_min = config.height_min_s;

    let away = origin.apply_force(&config, 5.3, &above, &mut rng);
    assert_close_vec(&away.vec, &[0.0, 0.0, -5.3]);
    assert_close(away.height, height_min + 5.3 * height_min / 2.9);

    let toward = origin.apply_force(&config, -5.3, &above, &mut rng);
    assert_close_vec(&toward.vec, &[0.0, 0.0, 5.3]);
    assert_close(toward.height, height_min);
}

#[test]
#[should_panic(expected = "dimensionality does not match")]
fn apply_force_panics_on_dimension_mismatch() {
    let config = config_3d();
    let c = Coordinate::new(&config);
    let bad = Coordinate { vec: vec![0.0; 4], ..c.clone() };
    c.apply_force(&config, 1.0, &bad, &mut Rng::from_seed(1));
}

/// serf's reference distance between (-0.5, 1.3, 2.4) and (1.2, -2.3, 3.4).
const DISTANCE_S: f64 = 4.104875150354758;

fn pair_3d() -> (Coordinate, Coordinate) {
    let config = config_3d_flat();
    (coordinate_at(&config, &[-0.5, 1.3, 2.4]), coordinate_at(&config, &[1.2, -2.3, 3.4]))
}

#[test]
fn distance_to_adds_heights_and_positive_adjustments() {
    let (c1, c2) = pair_3d();
    assert_close(seconds(c1.distance_to(&c1)), 0.0);
    assert_close(seconds(c1.distance_to(&c2)), seconds(c2.distance_to(&c1)));

    // (c1 adjustment, c2 adjustment, c1 height, c2 height, expected seconds)
    let cases = [
        (0.0, 0.0, 0.0, 0.0, DISTANCE_S),
        // A negative sum of adjustments is ignored, not clamped.
        (-1.0e6, 0.0, 0.0, 0.0, DISTANCE_S),
        (0.1, 0.2, 0.0, 0.0, DISTANCE_S + 0.3),
        (0.1, 0.2, 0.7, 0.1, DISTANCE_S + 0.3 + 0.8),
    ];
    for (adjustment1, adjustment2, height1, height2, expected_s) in cases {
        let a = Coordinate { adjustment: adjustment1, height: height1, ..c1.clone() };
        let b = Coordinate { adjustment: adjustment2, height: height2, ..c2.clone() };
        assert_close(seconds(a.distance_to(&b)), expected_s);
    }
}

#[test]
#[should_panic(expected = "dimensionality does not match")]
fn distance_to_panics_on_dimension_mismatch() {
    let (c1, _) = pair_3d();
    let bad = Coordinate { vec: vec![0.0; 4], ..c1.clone() };
    let _ = c1.distance_to(&bad);
}

/// serf's documentation example (`dist` in coordinate_test.go), written out independently: the
/// formula Consul documents for computing RTTs from `/v1/coordinate/nodes` by hand.
#[test]
fn distance_to_matches_the_documented_formula() {
    let config = Config::default();
    let a = Coordinate { adjustment: 0.1, height: 0.7, ..coordinate_at(&config, &[-0.5, 1.3, 2.4]) };
    let b = Coordinate { adjustment: 0.2, height: 0.1, ..coordinate_at(&config, &[1.2, -2.3, 3.4]) };
    let a = Coordinate { vec: a.vec[..3].to_vec(), ..a };
    let b = Coordinate { vec: b.vec[..3].to_vec(), ..b };
    let sum_squares: f64 = a.vec.iter().zip(&b.vec).map(|(x, y)| (x - y) * (x - y)).sum();
    let mut rtt_s = sum_squares.sqrt() + a.height + b.height;
    let adjusted_s = rtt_s + a.adjustment + b.adjustment;
    if adjusted_s > 0.0 {
        rtt_s = adjusted_s;
    }
    assert_close(seconds(a.distance_to(&b)), rtt_s);
}

#[test]
fn raw_distance_adds_heights_but_not_adjustments() {
    let (c1, c2) = pair_3d();
    assert_close(c1.raw_distance_s(&c1), 0.0);
    assert_close(c1.raw_distance_s(&c2), c2.raw_distance_s(&c1));
    assert_close(c1.raw_distance_s(&c2), DISTANCE_S);
    let adjusted = Coordinate { adjustment: 1.0e6, ..c1.clone() };
    assert_close(adjusted.raw_distance_s(&c2), DISTANCE_S);
    let high = Coordinate { height: 0.7, ..adjusted };
    let high2 = Coordinate { height: 0.1, ..c2 };
    assert_close(high.raw_distance_s(&high2), DISTANCE_S + 0.8);
}

#[test]
fn vector_helpers() {
    let v1 = [1.0, -3.0, 3.0];
    let v2 = [-4.0, 5.0, 6.0];
    assert_close_vec(&difference(&v1, &v2), &[5.0, -8.0, -3.0]);
    assert_close_vec(&difference(&v1, &[0.0; 3]), &v1);
    assert_close(magnitude(&[0.0; 3]), 0.0);
    assert_close(magnitude(&[1.0, -2.0, 3.0]), 3.7416573867739413);
}

#[test]
fn unit_vector_at_normalises_or_draws_a_random_direction() {
    let v1 = [1.0, 2.0, 3.0];
    let v2 = [0.5, 0.6, 0.7];
    let mut rng = Rng::from_seed(1);
    let (unit, length) = unit_vector_at(&v1, &v2, || uniform_unit(&mut rng));
    assert_close_vec(&unit, &[0.18257418583505536, 0.511207720338155, 0.8398412548412546]);
    assert_close(magnitude(&unit), 1.0);
    assert_close(length, magnitude(&difference(&v1, &v2)));

    // Equal positions: a random unit vector, and a distance of zero.
    let (unit, length) = unit_vector_at(&v1, &v1, || uniform_unit(&mut rng));
    assert_close(magnitude(&unit), 1.0);
    assert_eq!(length, 0.0);

    // serf could not reach its last resort "without heroics"; draws of exactly 0.5 do.
    let (unit, length) = unit_vector_at(&v1, &v1, || 0.5);
    assert_eq!(unit, vec![1.0, 0.0, 0.0]);
    assert_eq!(length, 0.0);
}

#[test]
fn uniform_unit_stays_in_half_open_unit_interval() {
    let mut rng = Rng::from_seed(9);
    let draws: Vec<f64> = (0..10_000).map(|_| uniform_unit(&mut rng)).collect();
    assert!(draws.iter().all(|d| (0.0..1.0).contains(d)));
    let mean = draws.iter().sum::<f64>() / draws.len() as f64;
    assert!((mean - 0.5).abs() < 0.01, "{mean}");
}

#[test]
fn duration_from_s_truncates_like_go_and_saturates() {
    let cases = [
        (12.345, Duration::from_nanos((12.345f64 * 1e9) as u64)),
        (1.5e-9, Duration::from_nanos(1)),
        (0.0, Duration::ZERO),
        (-1.0, Duration::ZERO),
        (f64::NAN, Duration::ZERO),
        (1.0e12, GO_DURATION_MAX),
    ];
    for (seconds_in, expected) in cases {
        assert_eq!(duration_from_s(seconds_in), expected, "{seconds_in}");
    }
}

#[test]
fn field_names_on_the_wire_are_consuls() {
    assert_eq!(probe_field_names::<Coordinate>(), ["Vec", "Error", "Adjustment", "Height"]);
    let c = Coordinate { adjustment: -0.25, height: 0.5, ..coordinate_at(&config_3d(), &[1.0, 2.0, 3.0]) };
    let bytes = postcard::to_allocvec(&c).expect("encodes");
    assert_eq!(postcard::from_bytes::<Coordinate>(&bytes).expect("decodes"), c);
}

/// The field names a type asks a deserializer for (after renames), learned by a deserializer
/// that records them and stops: core has no JSON crate to look at the names with.
fn probe_field_names<T: serde::de::DeserializeOwned>() -> Vec<&'static str> {
    use std::cell::Cell;

    use serde::de::{Error as _, Visitor};
    use serde::forward_to_deserialize_any;

    struct Probe<'a>(&'a Cell<&'static [&'static str]>);
    impl<'de> serde::Deserializer<'de> for Probe<'_> {
        type Error = serde::de::value::Error;
        fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, Self::Error> {
            Err(Self::Error::custom("not a struct"))
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _name: &'static str,
            fields: &'static [&'static str],
            _visitor: V,
        ) -> Result<V::Value, Self::Error> {
            self.0.set(fields);
            Err(Self::Error::custom("probe done"))
        }
        forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
            option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
            ignored_any
        }
    }
    let fields = Cell::new(&[][..]);
    let _ = T::deserialize(Probe(&fields));
    fields.get().to_vec()
}

// ---- Client (client_test.go) ----

#[test]
fn new_client_rejects_zero_dimensions_and_starts_at_the_origin() {
    let error = Client::new(Config { dimensionality: 0, ..Config::default() }, Rng::from_seed(1))
        .expect_err("zero dimensions");
    assert_eq!(error.to_string(), "dimensionality must be >0");

    let config = Config { dimensionality: 7, ..Config::default() };
    let client = client(config.clone());
    assert_eq!(client.coordinate(), &Coordinate::new(&config));
    assert_eq!(client.stats(), ClientStats::default());
}

#[test]
fn update_moves_away_from_a_node_that_is_farther_than_estimated() {
    let config = config_3d();
    let mut client = client(config.clone());
    assert_close_vec(&client.coordinate().vec, &[0.0, 0.0, 0.0]);

    // A node right above the client, with an RTT twice the distance the client expects.
    let other = coordinate_at(&config, &[0.0, 0.0, 0.001]);
    let rtt = duration_from_s(2.0 * other.vec[2]);
    let mut moved = client.update("node", &other, rtt).expect("valid sample");
    assert!(moved.vec[2] < 0.0, "client z {} should be < 0", moved.vec[2]);
    assert_eq!(&moved, client.coordinate());

    moved.vec[2] = 99.0;
    client.set_coordinate(moved).expect("valid coordinate");
    assert_close(client.coordinate().vec[2], 99.0);
}

#[test]
fn update_rejects_rtts_over_ten_seconds_and_changes_nothing() {
    let config = config_3d();
    let mut client = client(config.clone());
    let other = coordinate_at(&config, &[0.0, 0.0, 0.001]);
    let distance = client.distance_to(&other);

    // serf's cases are i64::MAX seconds (overflowing to a negative duration in Go), -35 s and
    // 11 s; a Rust Duration cannot be negative, so the largest ones stand in.
    let cases = [
        (Duration::MAX, "2562047h47m16.854775807s"),
        (GO_DURATION_MAX, "2562047h47m16.854775807s"),
        (Duration::from_secs(11), "11s"),
        (RTT_MAX + Duration::from_nanos(1), "10.000000001s"),
    ];
    for (rtt, printed) in cases {
        let error = client.update("node", &other, rtt).expect_err("out of range");
        assert_eq!(error, CoordinateError::RttOutOfRange { rtt });
        assert_eq!(
            error.to_string(),
            format!(
                "round trip time not in valid range, duration {printed} is not a positive value less than 10s "
            )
        );
        assert_eq!(client.distance_to(&other), distance);
        assert!(client.latency_samples_s.is_empty(), "a refused sample reached the filter");
    }

    // The bounds themselves are accepted; zero is counted.
    client.update("node", &other, RTT_MAX).expect("10 s is in range");
    client.update("node", &other, Duration::ZERO).expect("zero is in range");
    assert_eq!(client.stats().zero_rtts, 1);
}

#[test]
fn client_distance_to_is_the_coordinate_distance() {
    let config = config_3d_flat();
    let client = client(config.clone());
    let other = coordinate_at(&config, &[0.0, 0.0, 12.345]);
    assert_eq!(client.distance_to(&other), Duration::from_nanos((12.345f64 * 1e9) as u64));
}

#[test]
fn latency_filter_returns_the_median_of_the_last_three_per_node() {
    let mut client = client(Config::default());
    // (node, sample, expected median); `None` forgets alice.
    let steps: [(Option<&str>, f64, f64); 10] = [
        (Some("alice"), 0.201, 0.201),
        // Of two samples the median is the larger.
        (Some("alice"), 0.200, 0.201),
        (Some("alice"), 0.207, 0.201),
        // This glitch is filtered out and never seen by Vivaldi.
        (Some("alice"), 1.9, 0.207),
        (Some("alice"), 0.203, 0.207),
        (Some("alice"), 0.199, 0.203),
        (Some("alice"), 0.211, 0.203),
        // Different nodes are not coupled.
        (Some("bob"), 0.310, 0.310),
        (None, 0.0, 0.0),
        // A forgotten node starts over.
        (Some("alice"), 0.888, 0.888),
    ];
    for (node, sample, expected) in steps {
        match node {
            Some(node) => assert_close(client.update_latency_filter(node, sample), expected),
            None => client.forget_node("alice"),
        }
    }
}

#[test]
fn nan_and_incompatible_coordinates_are_refused_and_a_poisoned_client_resets() {
    let config = config_3d();
    let mut client = client(config.clone());
    let rtt = Duration::from_millis(250);

    let mut bad = Coordinate::new(&config);
    bad.vec[0] = f64::NAN;
    assert!(!bad.is_valid());
    let refusals = [
        (bad.clone(), "coordinate is invalid"),
        (Coordinate { vec: vec![0.0; 6], ..bad }, "dimensions aren't compatible"),
    ];
    for (offered, message) in refusals {
        let before = client.clone();
        let error = client.update("node", &offered, rtt).expect_err(message);
        assert_eq!(error.to_string(), message);
        let error = client.set_coordinate(offered).expect_err(message);
        assert_eq!(error.to_string(), message);
        assert!(client.coordinate().is_valid());
        assert_eq!(client.coordinate(), before.coordinate());
        assert_eq!(client.latency_samples_s, before.latency_samples_s);
    }

    // Poison the internal state: the next update resets to the origin and counts it.
    client.coord.vec[0] = f64::NAN;
    let reset = client.update("node", &Coordinate::new(&config), rtt).expect("valid sample");
    assert!(reset.is_valid());
    assert_eq!(reset, Coordinate::new(&config));
    assert_eq!(client.stats().resets, 1);
}

#[test]
fn latency_filter_is_bounded_by_members_max() {
    let config = config_3d();
    let mut client = client(config.clone());
    let other = Coordinate::new(&config);
    for i in 0..crate::MEMBERS_MAX {
        client.latency_samples_s.insert(format!("node-{i}"), VecDeque::from([0.01]));
    }
    let error = client.update("newcomer", &other, Duration::from_millis(10)).expect_err("full");
    assert_eq!(error, CoordinateError::TooManyPeers { peers: crate::MEMBERS_MAX });
    client.update("node-0", &other, Duration::from_millis(10)).expect("known peer");
    client.forget_node("node-1");
    client.update("newcomer", &other, Duration::from_millis(10)).expect("room again");
}

#[test]
fn same_seed_same_coordinates() {
    let run = |seed| {
        let config = config_3d();
        let mut client = Client::new(config.clone(), Rng::from_seed(seed)).expect("valid");
        // Both at the origin: the first move's direction is drawn from the Rng.
        client.update("b", &Coordinate::new(&config), Duration::from_millis(20)).expect("valid")
    };
    assert_eq!(run(5), run(5));
    assert_ne!(run(5).vec, run(6).vec);
    let moved = run(5);
    assert_close(magnitude(&moved.vec), magnitude(&run(6).vec));
}

/// One step checked against serf's arithmetic done by hand: both at the origin is the random
/// case, so take a peer 10 ms away on the x axis, and an RTT of 30 ms.
#[test]
fn one_update_matches_serfs_arithmetic() {
    let config = config_3d();
    let mut client = client(config.clone());
    let other = coordinate_at(&config, &[0.010, 0.0, 0.0]);
    let rtt_s = 0.030;
    let moved = client.update("b", &other, duration_from_s(rtt_s)).expect("valid");

    let h = config.height_min_s;
    // Vivaldi: distance 10 ms + 2h; equal errors so w = 1/2.
    let distance_s = duration_from_s(0.010 + 2.0 * h).as_secs_f64();
    let weight = 0.5;
    let error = 0.25 * weight * ((distance_s - rtt_s).abs() / rtt_s) + 1.5 * (1.0 - 0.25 * weight);
    let force_s = 0.25 * weight * (rtt_s - distance_s);
    let x = -force_s; // pushed away from +x
    let height = ((h + h) * force_s / 0.010 + h).max(h);
    // Adjustment: one residual in a window of 20 zeros.
    let raw_s = (0.010 - x) + height + h;
    let adjustment = (rtt_s - raw_s) / 40.0;
    // Gravity toward the origin (same direction, so only the x axis and the height change).
    let gravity_distance_s = duration_from_s(x.abs() + h + height + adjustment).as_secs_f64();
    let gravity_s = -(gravity_distance_s / 150.0).powi(2);
    let x_final = x - gravity_s; // the unit vector is -x
    let height_final = ((height + h) * gravity_s / x.abs() + height).max(h);

    assert_close_vec(&moved.vec, &[x_final, 0.0, 0.0]);
    assert_close(moved.error, error);
    assert_close(moved.adjustment, adjustment);
    assert_close(moved.height, height_final);
    // Tighter than serf's tolerance: the port does the same operations in the same order.
    assert!((moved.vec[0] - x_final).abs() < 1e-15, "{} vs {x_final}", moved.vec[0]);
    assert!((moved.height - height_final).abs() < 1e-15);
}

/// Bit for bit against serf: five 3-dimensional clients placed apart (so that no random
/// direction is ever drawn) exchange 2,000 samples on a fixed schedule, zero RTTs included; the
/// final coordinates were printed by serf's own `coordinate` package (commit a24f620, Go 1.19,
/// amd64) running the same schedule.
#[test]
fn trajectory_matches_serf_bit_for_bit() {
    const NODES: usize = 5;
    let config = config_3d();
    let mut clients: Vec<Client> = (0..NODES).map(|_| client(config.clone())).collect();
    for (i, client) in clients.iter_mut().enumerate() {
        let x = i as f64;
        let vec = vec![0.001 * (x + 1.0), -0.002 * (i % 3) as f64, 0.0005 * (i * i) as f64];
        client.set_coordinate(coordinate_at(&config, &vec)).expect("valid");
    }
    for k in 0..2_000usize {
        let (i, j) = (k % NODES, (k * 3 + k / 5 + 1) % NODES);
        if i == j {
            continue;
        }
        let (low, high) = (i.min(j), i.max(j));
        let mut rtt_ns = (1_000_000 * (high - low) * (low + 2) + (k * 37) % 11 * 100_000) as u64;
        if k % 97 == 0 {
            rtt_ns = 0;
        }
        let other = clients[j].coordinate().clone();
        clients[i].update(&format!("node_{j}"), &other, Duration::from_nanos(rtt_ns)).expect("valid");
    }
    // (vec, error, adjustment, height) as IEEE-754 bits.
    let serf: [([u64; 3], u64, u64, u64); NODES] = [
        (
            [0x3f40a6fc20a5812d, 0xbf4b4549d05d46fc, 0x3f5447ec5d7578d8],
            0x3fa84a589b680818,
            0x3f334537a235c06e,
            0x3ef47289a9af4e14,
        ),
        (
            [0x3f545ed31aa40176, 0xbf5e74ec843b7a80, 0xbf038dcbb5a22e98],
            0x3fac3774030c008a,
            0x3f317fdbdfd19e4e,
            0x3efe6e286fd2ab6f,
        ),
        (
            [0x3f6e79fc1df86dcf, 0xbf690161ff82f707, 0x3f4acef1d749375e],
            0x3fb0e6527e1ba58b,
            0x3f2ed1f0b5104eed,
            0x3ee57e7de71150a7,
        ),
        (
            [0x3f77b2ff5483554e, 0xbf57e6cda6d5bfd8, 0x3f70094c2fb70064],
            0x3fa8fa7d99cb8a9e,
            0x3f32bdcc0ab06294,
            0x3efc16cbcd9ca793,
        ),
        (
            [0x3f702a99b6e1f676, 0xbf553b0be91ed234, 0x3f8146ccde5c345b],
            0x3fa5cb8f09f60648,
            0x3f34d87203971e78,
            0x3ef20f4880ff899b,
        ),
    ];
    for (i, (client, (vec, error, adjustment, height))) in clients.iter().zip(serf).enumerate() {
        let expected = Coordinate {
            vec: vec.iter().map(|bits| f64::from_bits(*bits)).collect(),
            error: f64::from_bits(error),
            adjustment: f64::from_bits(adjustment),
            height: f64::from_bits(height),
        };
        assert_eq!(client.coordinate(), &expected, "client {i}");
    }
    assert_eq!(clients[0].distance_to(clients[1].coordinate()), Duration::from_nanos(2_404_162));
    assert!(clients.iter().map(|c| c.stats().zero_rtts).sum::<u64>() > 0, "the schedule has zero RTTs");
}
