//! `LatencyHistogram`: fixed log-linear latency buckets, so snapshots subtract exactly.
//!
//! Latencies are truncated to whole microseconds. Below 32 µs every microsecond has its
//! own bucket; from 32 µs up each power of two is split into 32 equal buckets, so a
//! bucket's width is at most 1/32 of its lower bound. Everything from 2^27 µs (about
//! 134 s, beyond any response-head timeout in use) lands in one overflow bucket. The
//! layout is fixed, so two snapshots of the same counter subtract bucket by bucket with
//! no interpolation.

use std::time::Duration;

/// Buckets per power of two, and the number of one-microsecond buckets below 32 µs.
const SUB_BUCKETS: u64 = 32;
/// log2 of `SUB_BUCKETS`.
const SUB_BITS: u32 = 5;
/// log2 of the first latency (in µs) that overflows.
const OVERFLOW_BITS: u32 = 27;
/// Latencies of this many microseconds and more land in the overflow bucket.
const OVERFLOW_MICROS: u64 = 1 << OVERFLOW_BITS;
/// The linear range, then 32 buckets for each octave from 2^5 µs to 2^27 µs.
const FINITE_BUCKETS: usize = (SUB_BUCKETS * (1 + (OVERFLOW_BITS - SUB_BITS) as u64)) as usize;
/// All buckets: the finite ones and the overflow bucket.
const BUCKETS: usize = FINITE_BUCKETS + 1;

/// Cumulative latency counts in fixed log-linear buckets.
///
/// Precision: for the observation `x` at the q-quantile,
/// `x < quantile(q) <= x * (1 + 1/32) + 1 µs` (relative error at most
/// [`LatencyHistogram::RELATIVE_ERROR`], plus the microsecond truncation), unless `x`
/// is in the overflow bucket (2^27 µs ≈ 134 s and more), where `quantile` answers
/// `Duration::MAX`.
///
/// Invariant: `count()` equals the sum of the buckets; every histogram has the same
/// bucket layout, so `since` is exact.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LatencyHistogram {
    counts: Vec<u64>,
    total: u64,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        LatencyHistogram {
            counts: vec![0; BUCKETS],
            total: 0,
        }
    }
}

impl LatencyHistogram {
    /// The largest relative width of a bucket at or above 32 µs: a reported quantile
    /// exceeds the true one by at most this fraction (plus one microsecond).
    pub const RELATIVE_ERROR: f64 = 1.0 / SUB_BUCKETS as f64;

    /// Latencies at or above this land in the overflow bucket.
    pub const OVERFLOW: Duration = Duration::from_micros(OVERFLOW_MICROS);

    /// Counts one observation. Never fails; counters saturate at `u64::MAX`.
    pub fn record(&mut self, latency: Duration) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        let index = bucket_index(micros);
        if let Some(count) = self.counts.get_mut(index) {
            *count = count.saturating_add(1);
            self.total = self.total.saturating_add(1);
        }
    }

    /// How many observations were recorded.
    pub fn count(&self) -> u64 {
        self.total
    }

    /// The upper bound of the bucket holding the q-quantile: the observation of rank
    /// `max(1, ceil(q * count))`, so `quantile(0.5)` of 10 observations is the 5th.
    /// Conservative: never below the true quantile, above it by at most
    /// [`Self::RELATIVE_ERROR`] plus 1 µs. `q` is clamped to `[0, 1]`.
    /// `None` when empty or when `q` is NaN; `Duration::MAX` when the quantile lies in
    /// the overflow bucket.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        if self.total == 0 || q.is_nan() {
            return None;
        }
        let q = q.clamp(0.0, 1.0);
        // ceil(q * total) in floating point is exact enough: a rank off by one only for
        // counts beyond 2^53, where it moves the answer by less than one observation.
        let rank = ((q * self.total as f64).ceil() as u64).clamp(1, self.total);
        let mut seen = 0u64;
        for (index, &count) in self.counts.iter().enumerate() {
            seen = seen.saturating_add(count);
            if seen >= rank {
                return Some(match bucket_upper_micros(index) {
                    Some(upper) => Duration::from_micros(upper),
                    None => Duration::MAX,
                });
            }
        }
        // Unreachable while the invariant holds (total is the sum of the buckets); the
        // conservative answer if it did not.
        Some(Duration::MAX)
    }

    /// How many observations lie in buckets whose lower bound is at or above
    /// `threshold`. Rounding is conservative: every observation counted took at least
    /// `threshold`; observations just above it (in the bucket that straddles
    /// `threshold`) are not counted; everything at or above
    /// `threshold * (1 + 1/32) + 1 µs` is.
    pub fn count_above(&self, threshold: Duration) -> u64 {
        self.counts
            .iter()
            .enumerate()
            .filter(|&(index, _)| Duration::from_micros(bucket_lower_micros(index)) >= threshold)
            .fold(0u64, |sum, (_, &count)| sum.saturating_add(count))
    }

    /// The observations recorded after `earlier` was taken from the same counter:
    /// bucket-wise differences, saturating at zero if `earlier` is in fact later.
    pub fn since(&self, earlier: &LatencyHistogram) -> LatencyHistogram {
        let counts: Vec<u64> = self
            .counts
            .iter()
            .zip(earlier.counts.iter().chain(std::iter::repeat(&0)))
            .map(|(now, before)| now.saturating_sub(*before))
            .collect();
        let total = counts
            .iter()
            .fold(0u64, |sum, &count| sum.saturating_add(count));
        LatencyHistogram { counts, total }
    }
}

/// The bucket of a latency in whole microseconds.
fn bucket_index(micros: u64) -> usize {
    if micros >= OVERFLOW_MICROS {
        return FINITE_BUCKETS;
    }
    if micros < SUB_BUCKETS {
        return micros as usize;
    }
    // micros >= 32, so its highest set bit is at position 5 or more.
    let highest_bit = 63 - micros.leading_zeros();
    let shift = highest_bit - SUB_BITS;
    let sub_bucket = (micros >> shift) - SUB_BUCKETS; // 0..32
    (SUB_BUCKETS + u64::from(shift) * SUB_BUCKETS + sub_bucket) as usize
}

/// The smallest latency, in microseconds, that lands in bucket `index`.
fn bucket_lower_micros(index: usize) -> u64 {
    let index = index as u64;
    if index < SUB_BUCKETS {
        return index;
    }
    if index >= FINITE_BUCKETS as u64 {
        return OVERFLOW_MICROS;
    }
    let octave = (index - SUB_BUCKETS) / SUB_BUCKETS;
    let sub_bucket = (index - SUB_BUCKETS) % SUB_BUCKETS;
    (SUB_BUCKETS + sub_bucket) << octave
}

/// The first latency, in microseconds, beyond bucket `index`; `None` for the overflow bucket.
fn bucket_upper_micros(index: usize) -> Option<u64> {
    (index < FINITE_BUCKETS).then(|| bucket_lower_micros(index + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn micros(value: u64) -> Duration {
        Duration::from_micros(value)
    }

    fn histogram(latencies: &[Duration]) -> LatencyHistogram {
        let mut histogram = LatencyHistogram::default();
        for &latency in latencies {
            histogram.record(latency);
        }
        histogram
    }

    #[test]
    fn buckets_are_contiguous_and_no_wider_than_the_stated_error() {
        assert_eq!(bucket_lower_micros(0), 0);
        for index in 0..FINITE_BUCKETS {
            let lower = bucket_lower_micros(index);
            let upper = bucket_upper_micros(index).expect("finite bucket");
            assert!(upper > lower, "bucket {index}");
            assert_eq!(bucket_index(lower), index, "lower bound of bucket {index}");
            assert_eq!(
                bucket_index(upper - 1),
                index,
                "last value of bucket {index}"
            );
            if lower >= SUB_BUCKETS {
                assert!(
                    (upper - lower) as f64 <= lower as f64 * LatencyHistogram::RELATIVE_ERROR,
                    "bucket {index} [{lower}, {upper}) is too wide"
                );
            } else {
                assert_eq!(upper - lower, 1);
            }
        }
        assert_eq!(
            bucket_upper_micros(FINITE_BUCKETS - 1),
            Some(OVERFLOW_MICROS)
        );
        assert_eq!(bucket_index(OVERFLOW_MICROS), FINITE_BUCKETS);
        assert_eq!(bucket_index(u64::MAX), FINITE_BUCKETS);
        assert!(LatencyHistogram::OVERFLOW > Duration::from_secs(60));
    }

    #[test]
    fn quantile_is_an_upper_bound_within_the_stated_error() {
        // Many magnitudes, including bucket edges and sub-microsecond parts.
        let mut value = Duration::from_nanos(300);
        while value < Duration::from_secs(100) {
            for latency in [value, value + Duration::from_nanos(999), value * 3 / 2] {
                let reported = histogram(&[latency])
                    .quantile(0.5)
                    .expect("one observation");
                if latency >= LatencyHistogram::OVERFLOW {
                    assert_eq!(reported, Duration::MAX, "{latency:?}");
                    continue;
                }
                let limit = latency.mul_f64(1.0 + LatencyHistogram::RELATIVE_ERROR) + micros(1);
                assert!(reported > latency, "{latency:?} reported as {reported:?}");
                assert!(
                    reported <= limit,
                    "{latency:?} reported as {reported:?} > {limit:?}"
                );
            }
            value = value * 17 / 16 + Duration::from_nanos(1);
        }
    }

    #[test]
    fn quantile_picks_the_rank_ceil_q_times_count() {
        let latencies: Vec<Duration> = (1..=10).map(|ms| Duration::from_millis(ms * 10)).collect();
        let histogram = histogram(&latencies);
        let check = |q: f64, expected_ms: u64| {
            let reported = histogram.quantile(q).expect("not empty");
            let expected = Duration::from_millis(expected_ms);
            assert!(
                reported > expected
                    && reported <= expected.mul_f64(1.0 + LatencyHistogram::RELATIVE_ERROR),
                "q={q}: {reported:?} for {expected:?}"
            );
        };
        check(0.0, 10);
        check(-1.0, 10);
        check(0.1, 10);
        check(0.11, 20);
        check(0.5, 50);
        check(0.51, 60);
        check(0.9, 90);
        check(0.99, 100);
        check(1.0, 100);
        check(7.0, 100);
        assert_eq!(histogram.quantile(f64::NAN), None);
        assert_eq!(LatencyHistogram::default().quantile(0.5), None);
    }

    #[test]
    fn overflow_is_reported_as_max() {
        let histogram = histogram(&[micros(5), Duration::from_secs(200)]);
        assert_eq!(histogram.quantile(1.0), Some(Duration::MAX));
        assert_eq!(histogram.quantile(0.5), Some(micros(6)));
        assert_eq!(histogram.count_above(Duration::from_secs(100)), 1);
        assert_eq!(histogram.count_above(Duration::MAX), 0);
    }

    #[test]
    fn count_above_never_counts_faster_observations() {
        let check = |latencies: &[Duration], threshold: Duration, expected: u64| {
            assert_eq!(
                histogram(latencies).count_above(threshold),
                expected,
                "{latencies:?} above {threshold:?}"
            );
        };
        let ms = Duration::from_millis;
        check(&[], ms(10), 0);
        check(&[ms(1), ms(5), ms(20), ms(30)], ms(10), 2);
        check(&[ms(1), ms(5), ms(20), ms(30)], Duration::ZERO, 4);
        // 10 ms is the lower bound of its bucket: an observation equal to the threshold counts.
        assert_eq!(bucket_lower_micros(bucket_index(10_240)), 10_240);
        check(&[micros(10_240)], micros(10_240), 1);
        // Just below the threshold, in the same bucket: never counted.
        check(&[micros(10_240)], micros(10_241), 0);
        // Within one bucket above the threshold: may be missed (this one is).
        check(&[micros(10_300)], micros(10_241), 0);
        // At threshold * (1 + 1/32) + 1 µs and beyond: always counted.
        let threshold = micros(10_241);
        let sure = threshold.mul_f64(1.0 + LatencyHistogram::RELATIVE_ERROR) + micros(1);
        check(&[sure, sure * 2], threshold, 2);
    }

    #[test]
    fn count_above_bounds_hold_at_many_thresholds() {
        let latencies: Vec<Duration> = (0..2000u64)
            .map(|i| micros(i * i * 37 % 5_000_000 + i))
            .collect();
        let histogram = histogram(&latencies);
        for threshold in (0..200u64).map(|i| micros(i * i * 131 + 7)) {
            let counted = histogram.count_above(threshold);
            let at_least_threshold = latencies.iter().filter(|&&l| l >= threshold).count() as u64;
            let sure = threshold.mul_f64(1.0 + LatencyHistogram::RELATIVE_ERROR) + micros(1);
            let surely_counted = latencies.iter().filter(|&&l| l >= sure).count() as u64;
            assert!(
                counted <= at_least_threshold,
                "{threshold:?}: {counted} > {at_least_threshold}"
            );
            assert!(
                counted >= surely_counted,
                "{threshold:?}: {counted} < {surely_counted}"
            );
        }
    }

    #[test]
    fn since_subtracts_exactly_and_saturates() {
        let ms = Duration::from_millis;
        let earlier = histogram(&[ms(1), ms(50)]);
        let mut later = earlier.clone();
        for latency in [ms(50), ms(50), ms(400)] {
            later.record(latency);
        }
        let difference = later.since(&earlier);
        assert_eq!(difference, histogram(&[ms(50), ms(50), ms(400)]));
        assert_eq!(difference.count(), 3);
        assert_eq!(later.since(&LatencyHistogram::default()), later);
        assert_eq!(earlier.since(&later), LatencyHistogram::default());
        assert_eq!(earlier.since(&later).count(), 0);
    }
}
