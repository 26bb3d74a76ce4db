//! Re-implementations of the published decision rules of Flagger, Argo Rollouts' analysis
//! and Kayenta's Mann-Whitney judge, fed the same simulated scrapes as airlock's judge.

use super::random::normal_quantile;
use super::traffic::{LATENCY_BUCKET_BOUNDS, LATENCY_BUCKETS, Tick, VersionCounts};

/// Sums the counts of the ticks in (end − window, end]; None when the scrape at `end` is
/// missing (the query returns no data).
fn window(
    ticks: &[Tick],
    end: f64,
    window_seconds: f64,
    version: impl Fn(&Tick) -> &VersionCounts,
) -> Option<VersionCounts> {
    let last = ticks.iter().find(|t| (t.at_seconds - end).abs() < 1e-9)?;
    if last.missing {
        return None;
    }
    let mut total = VersionCounts::default();
    for tick in ticks
        .iter()
        .filter(|t| t.at_seconds > end - window_seconds + 1e-9 && t.at_seconds <= end + 1e-9)
    {
        total.add(version(tick));
    }
    Some(total)
}

/// Prometheus' `histogram_quantile(q, ...)` over non-cumulative bucket counts: the bucket
/// holding rank q·total, interpolated linearly (from 0 for the first bucket); in the +Inf
/// bucket, the largest finite bound. NaN when there are no observations.
pub fn histogram_quantile(q: f64, buckets: &[f64; LATENCY_BUCKETS]) -> f64 {
    let total: f64 = buckets.iter().sum();
    if total <= 0.0 {
        return f64::NAN;
    }
    let rank = q * total;
    let mut below = 0.0;
    for (i, count) in buckets.iter().enumerate() {
        if below + count >= rank && *count > 0.0 {
            if i == LATENCY_BUCKETS - 1 {
                return LATENCY_BUCKET_BOUNDS[LATENCY_BUCKET_BOUNDS.len() - 1];
            }
            let start = if i == 0 {
                0.0
            } else {
                LATENCY_BUCKET_BOUNDS[i - 1]
            };
            let end = LATENCY_BUCKET_BOUNDS[i];
            return start + (end - start) * (rank - below) / count;
        }
        below += count;
    }
    LATENCY_BUCKET_BOUNDS[LATENCY_BUCKET_BOUNDS.len() - 1]
}

/// Flagger's canary analysis with its documented defaults
/// (<https://docs.flagger.app/usage/metrics>, `pkg/controller/scheduler.go`): every
/// `interval` (60 s) the builtin checks run on the canary alone over the last minute,
/// request-success-rate >= 99 % and request-duration p99 <= 500 ms; a failed check,
/// including a query with no values (NaN), increments the failed-checks counter, which
/// nothing resets during the analysis; at the start of each interval, a counter that
/// has reached `threshold` (5) rolls the canary back.
#[derive(Clone, Debug, PartialEq)]
pub struct FlaggerRule {
    pub interval_seconds: f64,
    pub threshold: u32,
    pub min_success_rate_percent: f64,
    pub max_p99_milliseconds: f64,
}

impl Default for FlaggerRule {
    fn default() -> Self {
        Self {
            interval_seconds: 60.0,
            threshold: 5,
            min_success_rate_percent: 99.0,
            max_p99_milliseconds: 500.0,
        }
    }
}

impl FlaggerRule {
    /// When the canary is rolled back, if within the ticks.
    pub fn rollback_at(&self, ticks: &[Tick]) -> Option<f64> {
        let horizon = ticks.last()?.at_seconds;
        let mut failed_checks = 0;
        let mut t = self.interval_seconds;
        while t <= horizon + 1e-9 {
            if failed_checks >= self.threshold {
                return Some(t);
            }
            let passed = window(ticks, t, self.interval_seconds, |t| &t.canary).is_some_and(|c| {
                let success = 100.0 * (c.requests - c.errors) / c.requests;
                let p99_milliseconds = 1000.0 * histogram_quantile(0.99, &c.buckets);
                // NaN (no requests) compares false: the check fails, as a missing value does.
                success >= self.min_success_rate_percent
                    && p99_milliseconds <= self.max_p99_milliseconds
            });
            if !passed {
                failed_checks += 1;
            }
            t += self.interval_seconds;
        }
        None
    }
}

/// An Argo Rollouts background analysis as in its documentation
/// (<https://argoproj.github.io/argo-rollouts/features/analysis/>): a Prometheus
/// success-rate measurement of the canary every `interval` (5 min) over that interval,
/// `successCondition: result[0] >= 0.99` (so a NaN from zero traffic is a failed
/// measurement), `failureLimit: 3` (the run fails when failed measurements, counted over
/// the whole run, exceed it). An empty result (a missing scrape) makes `result[0]` an
/// evaluation error: an Error measurement, and more than `consecutiveErrorLimit` (default
/// 4) in a row errors the run, which aborts the rollout too. With a success condition
/// only, no measurement is Inconclusive (that needs both conditions, neither met). The
/// first measurement waits one interval (`initialDelay: 5m`), since a measurement at the
/// canary's first second would see no traffic.
#[derive(Clone, Debug, PartialEq)]
pub struct ArgoRule {
    pub interval_seconds: f64,
    pub min_success_rate: f64,
    pub failure_limit: u32,
    pub consecutive_error_limit: u32,
}

impl Default for ArgoRule {
    fn default() -> Self {
        Self {
            interval_seconds: 300.0,
            min_success_rate: 0.99,
            failure_limit: 3,
            consecutive_error_limit: 4,
        }
    }
}

impl ArgoRule {
    pub fn rollback_at(&self, ticks: &[Tick]) -> Option<f64> {
        let horizon = ticks.last()?.at_seconds;
        let (mut failed, mut consecutive_errors) = (0, 0);
        let mut t = self.interval_seconds;
        while t <= horizon + 1e-9 {
            match window(ticks, t, self.interval_seconds, |t| &t.canary) {
                None => {
                    consecutive_errors += 1;
                    if consecutive_errors > self.consecutive_error_limit {
                        return Some(t);
                    }
                }
                Some(c) => {
                    consecutive_errors = 0;
                    let success = (c.requests - c.errors) / c.requests;
                    // NaN (no traffic: 0/0) meets no condition: a failed measurement.
                    let successful = success >= self.min_success_rate;
                    if !successful {
                        failed += 1;
                        if failed > self.failure_limit {
                            return Some(t);
                        }
                    }
                }
            }
            t += self.interval_seconds;
        }
        None
    }
}

/// Kayenta's default judge, NetflixACAJudge with its Mann-Whitney classifier
/// (`kayenta-judge`, `NetflixACAJudge.scala`, `MannWhitneyClassifier.scala`,
/// `WeightedSumScorer.scala`), on 1-minute points of canary and baseline: the error rate
/// and the p99 latency (both with direction "increase").
///
/// Per metric: NaN points replaced by 0 (the default NaN strategy), outliers removed
/// (IQR detector, factor 3, reduced sensitivity), then High when the 98 % confidence
/// interval of the Hodges–Lehmann shift (Wilcoxon rank-sum, normal approximation with tie
/// and continuity corrections) lies above 25 % of the estimate's magnitude and the mean
/// ratio is >= 1. The score is the share of metrics classified Pass; below the marginal
/// threshold (75) the canary fails. Kayenta enforces no minimum number of points (its
/// documentation recommends 50 per metric, which means runs of hours); each analysis
/// judges every point since the start, every `analysis_interval` (10 min here, shorter
/// than the recommended 30 so that it can act within the simulated half hour).
#[derive(Clone, Debug, PartialEq)]
pub struct KayentaRule {
    pub analysis_interval_seconds: f64,
    pub point_seconds: f64,
    pub confidence_level: f64,
    pub tolerance: f64,
    pub marginal_score: f64,
}

impl Default for KayentaRule {
    fn default() -> Self {
        Self {
            analysis_interval_seconds: 600.0,
            point_seconds: 60.0,
            confidence_level: 0.98,
            tolerance: 0.25,
            marginal_score: 75.0,
        }
    }
}

/// A Kayenta metric classification.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Classification {
    Pass,
    High,
    Low,
    Nodata,
    Error,
}

impl KayentaRule {
    pub fn rollback_at(&self, ticks: &[Tick]) -> Option<f64> {
        let horizon = ticks.last()?.at_seconds;
        let mut t = self.analysis_interval_seconds;
        while t <= horizon + 1e-9 {
            if self.score(ticks, t) < self.marginal_score {
                return Some(t);
            }
            t += self.analysis_interval_seconds;
        }
        None
    }

    /// The canary score (0 to 100) of an analysis at time `end` over every point since 0.
    pub fn score(&self, ticks: &[Tick], end: f64) -> f64 {
        let points = (end / self.point_seconds).round() as usize;
        let series = |version: fn(&Tick) -> &VersionCounts, value: fn(&VersionCounts) -> f64| {
            (1..=points)
                .map(|m| {
                    window(
                        ticks,
                        m as f64 * self.point_seconds,
                        self.point_seconds,
                        version,
                    )
                    .map_or(f64::NAN, |c| value(&c))
                })
                .collect::<Vec<f64>>()
        };
        let error_rate = |c: &VersionCounts| c.errors / c.requests;
        let p99 = |c: &VersionCounts| histogram_quantile(0.99, &c.buckets);
        let classifications = [
            self.classify(
                &series(|t| &t.baseline, error_rate),
                &series(|t| &t.canary, error_rate),
            ),
            self.classify(&series(|t| &t.baseline, p99), &series(|t| &t.canary, p99)),
        ];
        let count = |c: Classification| classifications.iter().filter(|x| **x == c).count();
        if count(Classification::Nodata) * 2 >= classifications.len() {
            return 0.0;
        }
        let counted =
            count(Classification::Pass) + count(Classification::High) + count(Classification::Low);
        if counted == 0 {
            return 100.0;
        }
        100.0 * count(Classification::Pass) as f64 / counted as f64
    }

    /// The Mann-Whitney classification of one metric, direction "increase".
    pub fn classify(&self, control: &[f64], experiment: &[f64]) -> Classification {
        let control = remove_outliers(replace_nans(control));
        let experiment = remove_outliers(replace_nans(experiment));
        if control.is_empty() || experiment.is_empty() {
            return Classification::Nodata;
        }
        let sorted = |v: &[f64]| {
            let mut v = v.to_vec();
            v.sort_by(f64::total_cmp);
            v
        };
        if sorted(&control) == sorted(&experiment) {
            return Classification::Pass;
        }
        let mut union: Vec<f64> = control.iter().chain(&experiment).copied().collect();
        union.sort_by(f64::total_cmp);
        union.dedup();
        if union.len() == 1 {
            return Classification::Pass;
        }
        let distinct = |v: &[f64]| {
            let mut v = sorted(v);
            v.dedup();
            v.len()
        };
        let (control, experiment) = if distinct(&control) == 1 && distinct(&experiment) == 1 {
            // Kayenta adds Gaussian noise of relative scale 1e-5 to break the ties; a fixed
            // pseudo-random sequence here keeps the simulation deterministic.
            (jitter(&control, 1), jitter(&experiment, 2))
        } else {
            (control, experiment)
        };
        let Some(test) = mann_whitney(&experiment, &control, self.confidence_level) else {
            return Classification::Error;
        };
        let critical = self.tolerance * test.estimate.abs();
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        let deviation = if mean(&control) == 0.0 {
            1.0
        } else {
            mean(&experiment) / mean(&control)
        };
        if test.lower > critical && deviation >= 1.0 {
            Classification::High
        } else {
            Classification::Pass
        }
    }
}

fn replace_nans(values: &[f64]) -> Vec<f64> {
    values
        .iter()
        .map(|v| if v.is_nan() { 0.0 } else { *v })
        .collect()
}

fn jitter(values: &[f64], seed: u64) -> Vec<f64> {
    let mut random = super::random::Random::seed_from_u64(seed);
    values
        .iter()
        .map(|v| v + random.normal() * v * 1e-5)
        .collect()
}

/// Apache Commons Math's default (legacy) percentile: position p(n + 1)/100, linear
/// interpolation between neighbours, clamped to the extremes.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    let n = sorted.len();
    let position = p * (n as f64 + 1.0) / 100.0;
    if position < 1.0 {
        return sorted[0];
    }
    if position >= n as f64 {
        return sorted[n - 1];
    }
    let floor = position.floor();
    let lower = sorted[floor as usize - 1];
    let upper = sorted[floor as usize];
    lower + (position - floor) * (upper - lower)
}

/// Kayenta's IQRDetector(factor = 3, reduceSensitivity = true): fences at the wider of
/// Q1 − 3·IQR and p1, and of Q3 + 3·IQR and p99.
fn remove_outliers(values: Vec<f64>) -> Vec<f64> {
    if values.is_empty() {
        return values;
    }
    let mut sorted = values.clone();
    sorted.sort_by(f64::total_cmp);
    let (q1, q3) = (percentile(&sorted, 25.0), percentile(&sorted, 75.0));
    let iqr = q3 - q1;
    let lower = (q1 - 3.0 * iqr).min(percentile(&sorted, 1.0));
    let upper = (q3 + 3.0 * iqr).max(percentile(&sorted, 99.0));
    values
        .into_iter()
        .filter(|v| *v >= lower && *v <= upper)
        .collect()
}

/// The shift confidence interval and Hodges–Lehmann estimate of Kayenta's MannWhitney.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MannWhitneyShift {
    pub lower: f64,
    pub upper: f64,
    pub estimate: f64,
}

/// Average ranks (1-based) with ties sharing their mean rank.
fn average_ranks(values: &[f64]) -> (Vec<f64>, f64) {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|a, b| values[*a].total_cmp(&values[*b]));
    let mut ranks = vec![0.0; values.len()];
    let mut tie_correction = 0.0;
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && values[order[j + 1]] == values[order[i]] {
            j += 1;
        }
        let rank = (i + j) as f64 / 2.0 + 1.0;
        for k in &order[i..=j] {
            ranks[*k] = rank;
        }
        let tied = (j - i + 1) as f64;
        tie_correction += tied * tied * tied - tied;
        i = j + 1;
    }
    (ranks, tie_correction)
}

/// Kayenta's `wilcoxonDiff`: the continuity-corrected, tie-corrected standardised
/// rank-sum statistic of x − mu against y, minus `quantile`; None when every observation
/// is tied (Kayenta throws, and the metric is classified Error).
fn wilcoxon_diff(mu: f64, quantile: f64, x: &[f64], y: &[f64]) -> Option<f64> {
    let (nx, ny) = (x.len() as f64, y.len() as f64);
    let combined: Vec<f64> = x.iter().map(|v| v - mu).chain(y.iter().copied()).collect();
    let (ranks, ties) = average_ranks(&combined);
    let dz = ranks[..x.len()].iter().sum::<f64>() - nx * (nx + 1.0) / 2.0 - nx * ny / 2.0;
    let correction = dz.signum() * if dz == 0.0 { 0.0 } else { 0.5 };
    let sigma =
        ((nx * ny / 12.0) * ((nx + ny + 1.0) - ties / ((nx + ny) * (nx + ny - 1.0)))).sqrt();
    if sigma == 0.0 || sigma.is_nan() {
        return None;
    }
    Some((dz - correction) / sigma - quantile)
}

/// The root of a non-increasing step function between `low` and `high` by bisection
/// (Kayenta uses Brent's method; both land on the same jump).
fn find_root(f: impl Fn(f64) -> Option<f64>, mut low: f64, mut high: f64) -> Option<f64> {
    for _ in 0..100 {
        let middle = 0.5 * (low + high);
        if f(middle)? > 0.0 {
            low = middle;
        } else {
            high = middle;
        }
        if high - low <= 1e-12 * (low.abs() + high.abs()).max(1e-300) {
            break;
        }
    }
    Some(0.5 * (low + high))
}

/// Kayenta's `MannWhitney.calculateConfidenceInterval` (R's `wilcox.test(conf.int =
/// TRUE)` with the normal approximation): the confidence interval of the shift of x
/// (experiment) over y (control), and the Hodges–Lehmann estimate.
pub fn mann_whitney(x: &[f64], y: &[f64], confidence_level: f64) -> Option<MannWhitneyShift> {
    let min = |v: &[f64]| v.iter().copied().fold(f64::INFINITY, f64::min);
    let max = |v: &[f64]| v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let (mu_min, mu_max) = (min(x) - max(y), max(x) - min(y));
    let z = normal_quantile((1.0 - confidence_level) / 2.0);
    let root = |zq: f64| -> Option<f64> {
        let f = |mu: f64| wilcoxon_diff(mu, zq, x, y);
        let (f_lower, f_upper) = (f(mu_min)?, f(mu_max)?);
        if f_lower <= 0.0 {
            Some(mu_min)
        } else if f_upper >= 0.0 {
            Some(mu_max)
        } else {
            find_root(f, mu_min, mu_max)
        }
    };
    Some(MannWhitneyShift {
        lower: root(-z)?,
        upper: root(z)?,
        estimate: root(0.0)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_quantile_interpolates_like_prometheus() {
        let mut buckets = [0.0; LATENCY_BUCKETS];
        buckets[0] = 50.0; // (0, 0.05]
        buckets[1] = 50.0; // (0.05, 0.1]
        assert!((histogram_quantile(0.5, &buckets) - 0.05).abs() < 1e-12);
        assert!((histogram_quantile(0.75, &buckets) - 0.075).abs() < 1e-12);
        buckets[LATENCY_BUCKETS - 1] = 100.0;
        assert_eq!(histogram_quantile(0.99, &buckets), 2.5);
        assert!(histogram_quantile(0.5, &[0.0; LATENCY_BUCKETS]).is_nan());
    }

    #[test]
    fn mann_whitney_finds_a_clear_shift() {
        let y: Vec<f64> = (0..30).map(|i| i as f64).collect();
        let x: Vec<f64> = y.iter().map(|v| v + 100.0).collect();
        let shift = mann_whitney(&x, &y, 0.98).unwrap();
        assert!((shift.estimate - 100.0).abs() < 1e-6, "{}", shift.estimate);
        assert!(shift.lower > 80.0 && shift.upper < 120.0);
        let rule = KayentaRule::default();
        assert_eq!(rule.classify(&y, &x), Classification::High);
        assert_eq!(rule.classify(&y, &y), Classification::Pass);
    }
}
