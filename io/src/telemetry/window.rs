//! The quantile reservoirs of summaries: a uniform reservoir per 2-second age bucket (see the
//! module doc's "Quantiles").

use super::{QUANTILES, RESERVOIR_MAX, SUMMARY_AGE_BUCKETS, SUMMARY_BUCKET_NS};

/// A summary's sliding window: [`SUMMARY_AGE_BUCKETS`] age buckets of 2 s, each a reservoir.
#[derive(Debug)]
pub(super) struct Window {
    buckets: [Bucket; SUMMARY_AGE_BUCKETS],
    /// xorshift64* state for the reservoirs' replacement draws.
    rng: u64,
}

#[derive(Debug, Default)]
struct Bucket {
    /// Its age bucket (2-second periods since the epoch).
    epoch: u64,
    /// Observations made in it.
    seen: u64,
    /// A uniform sample of them.
    pub(super) values: Vec<f32>,
}

impl Window {
    pub(super) fn new(seed: u64) -> Window {
        Window { buckets: Default::default(), rng: seed | 1 }
    }

    pub(super) fn observe(&mut self, value: f32, now: u64) {
        let epoch = now / SUMMARY_BUCKET_NS;
        let draw = self.next_random();
        let bucket = &mut self.buckets[(epoch % SUMMARY_AGE_BUCKETS as u64) as usize];
        if bucket.epoch != epoch {
            bucket.epoch = epoch;
            bucket.seen = 0;
            bucket.values.clear();
        }
        bucket.seen += 1;
        if bucket.values.len() < RESERVOIR_MAX {
            bucket.values.push(value);
        } else if let Some(kept) = bucket.values.get_mut((draw % bucket.seen) as usize) {
            *kept = value;
        }
    }

    /// The [`QUANTILES`] of the observations of the last 10 s; NaN without any.
    pub(super) fn quantiles(&self, now: u64) -> [f64; 3] {
        let epoch = now / SUMMARY_BUCKET_NS;
        let mut weighted: Vec<(f32, f64)> = Vec::new();
        for bucket in &self.buckets {
            if bucket.values.is_empty()
                || bucket.epoch > epoch
                || epoch - bucket.epoch >= SUMMARY_AGE_BUCKETS as u64
            {
                continue;
            }
            let weight = bucket.seen as f64 / bucket.values.len() as f64;
            weighted.extend(bucket.values.iter().map(|&value| (value, weight)));
        }
        if weighted.is_empty() {
            return [f64::NAN; 3];
        }
        weighted.sort_by(|a, b| a.0.total_cmp(&b.0));
        let total: f64 = weighted.iter().map(|(_, weight)| weight).sum();
        QUANTILES.map(|quantile| {
            let target = quantile * total;
            let mut seen = 0.0;
            for &(value, weight) in &weighted {
                seen += weight;
                if seen >= target {
                    return f64::from(value);
                }
            }
            f64::from(weighted[weighted.len() - 1].0)
        })
    }

    fn next_random(&mut self) -> u64 {
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::tests::T0;

    #[test]
    fn quantiles_come_from_the_last_ten_seconds_and_stay_bounded() {
        let mut window = Window::new(7);
        for value in 1..=1000 {
            window.observe(value as f32, T0 + value * 1_000_000);
        }
        assert!(window.buckets.iter().all(|bucket| bucket.values.len() <= RESERVOIR_MAX));
        let [median, p90, p99] = window.quantiles(T0 + 1_000_000_000);
        assert!((400.0..600.0).contains(&median), "{median}");
        assert!((850.0..950.0).contains(&p90), "{p90}");
        assert!(p99 >= 950.0, "{p99}");
        assert!(window.quantiles(T0 + 12 * 1_000_000_000)[0].is_nan());
    }
}
