//! Synthetic traffic: scenarios, and the per-tick counts of the canary, baseline and
//! stable versions they generate.

use super::random::{Random, normal_cdf};

/// Upper bounds (seconds) of the simulated latency histogram's finite buckets, as a
/// Prometheus histogram's `le` labels; a last bucket (+Inf) follows.
pub const LATENCY_BUCKET_BOUNDS: [f64; 11] =
    [0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5];
/// Buckets including +Inf.
pub const LATENCY_BUCKETS: usize = LATENCY_BUCKET_BOUNDS.len() + 1;
/// The slow-request threshold: the stable version's p99 in every scenario, and a bucket
/// bound, so "slow requests" is an exact sum of buckets (the query a deployer would write).
pub const SLOW_THRESHOLD_SECONDS: f64 = 0.3;

/// One rollout step of a scenario: from `starts_at_seconds`, the canary and the baseline
/// each get `canary_share` of the traffic, stable the rest.
#[derive(Clone, Debug, PartialEq)]
pub struct StepPlan {
    pub label: String,
    pub starts_at_seconds: f64,
    pub canary_share: f64,
}

/// A synthetic rollout: traffic, the versions' error rates and latencies, and the ways the
/// data goes wrong.
///
/// Baseline and stable run the same code: same error rate, same latency. Noise and load
/// are conditions of the moment (traffic mix, a dependency's hiccups), so they are shared
/// by every version, canary included: the canary of a healthy change is the same code as
/// the baseline under the same conditions, and differs only by Poisson chance.
#[derive(Clone, Debug, PartialEq)]
pub struct Scenario {
    pub name: String,
    /// Whether the canary is worse (the judges should roll it back) or healthy (they should
    /// not).
    pub regression: bool,
    /// Total requests per second at mean load.
    pub requests_per_second: f64,
    pub steps: Vec<StepPlan>,
    /// Error probability of stable and baseline.
    pub error_rate: f64,
    pub canary_error_rate: f64,
    /// Coefficient of variation of a per-minute error-rate multiplier (lognormal, mean 1)
    /// shared by every version: an over-dispersed, "noisy" service. 0 = plain Poisson.
    pub error_noise: f64,
    /// Coefficient of variation of a per-minute error-rate multiplier drawn independently
    /// for each version: pods that differ (a bad node, a noisy neighbour). This breaks the
    /// judge's model (the canary's share of errors is then over-dispersed): a stress test,
    /// not a fair healthy case.
    pub version_noise: f64,
    /// Latency is lognormal: this median (seconds) and log standard deviation.
    pub latency_median_seconds: f64,
    pub latency_log_sd: f64,
    /// The canary's latencies are this many times the others' (1.5 = p99 +50 %).
    pub canary_latency_factor: f64,
    /// Load multiplier 1 + amplitude · sin(2πt / period), shared by every version.
    pub diurnal_amplitude: f64,
    pub diurnal_period_seconds: f64,
    /// Whether the error probability rises and falls with load (×load), for every version.
    pub errors_follow_load: bool,
    /// Fraction of scrapes that return nothing (the judges get None or NaN for that tick).
    pub missing_scrapes: f64,
    pub horizon_seconds: f64,
    /// The scrape interval.
    pub tick_seconds: f64,
}

impl Scenario {
    /// The benchmark's base case: 100 requests per second, the canary and the baseline at
    /// 10 % each, 0.5 % errors, latency median 100 ms and p99 300 ms, 5-second scrapes,
    /// 30 minutes.
    pub fn healthy(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            regression: false,
            requests_per_second: 100.0,
            steps: vec![StepPlan {
                label: "10%".to_owned(),
                starts_at_seconds: 0.0,
                canary_share: 0.10,
            }],
            error_rate: 0.005,
            canary_error_rate: 0.005,
            error_noise: 0.0,
            version_noise: 0.0,
            latency_median_seconds: 0.1,
            // p99 = median · e^(2.326 σ) = 300 ms.
            latency_log_sd: 3.0_f64.ln() / 2.326_347_874_040_841,
            canary_latency_factor: 1.0,
            diurnal_amplitude: 0.0,
            diurnal_period_seconds: 1200.0,
            errors_follow_load: false,
            missing_scrapes: 0.0,
            horizon_seconds: 1800.0,
            tick_seconds: 5.0,
        }
    }

    /// The scenarios the benchmark reports, healthy ones first.
    pub fn benchmark_set() -> Vec<Scenario> {
        let healthy = Scenario::healthy;
        vec![
            healthy("healthy 0.5%"),
            Scenario {
                error_rate: 0.009,
                canary_error_rate: 0.009,
                error_noise: 0.5,
                ..healthy("healthy, stable 0.9% noisy")
            },
            Scenario {
                missing_scrapes: 0.2,
                ..healthy("healthy, 20% scrapes missing")
            },
            Scenario {
                requests_per_second: 1.0,
                ..healthy("healthy, thin 1 req/s")
            },
            Scenario {
                diurnal_amplitude: 0.5,
                errors_follow_load: true,
                ..healthy("healthy, diurnal load")
            },
            Scenario {
                version_noise: 0.3,
                ..healthy("stress: per-pod noise cv 0.3")
            },
            Scenario {
                regression: true,
                canary_error_rate: 0.02,
                ..healthy("4x errors 0.5%->2%")
            },
            Scenario {
                regression: true,
                canary_error_rate: 0.01,
                ..healthy("2x errors 0.5%->1%")
            },
            Scenario {
                regression: true,
                canary_latency_factor: 1.5,
                ..healthy("latency p99 +50%")
            },
        ]
    }

    /// The canary's share at time `t` (the last step started at or before it).
    pub fn canary_share_at(&self, t: f64) -> f64 {
        self.step_at(t).map_or(0.0, |s| s.canary_share)
    }

    /// The step in force at time `t`.
    pub fn step_at(&self, t: f64) -> Option<&StepPlan> {
        self.steps.iter().rev().find(|s| s.starts_at_seconds <= t)
    }

    fn bucket_probabilities(&self, factor: f64) -> [f64; LATENCY_BUCKETS] {
        let median = self.latency_median_seconds * factor;
        let cdf = |bound: f64| normal_cdf((bound / median).ln() / self.latency_log_sd);
        let mut probabilities = [0.0; LATENCY_BUCKETS];
        let mut below = 0.0;
        for (i, bound) in LATENCY_BUCKET_BOUNDS.iter().enumerate() {
            let at_or_below = cdf(*bound);
            probabilities[i] = at_or_below - below;
            below = at_or_below;
        }
        probabilities[LATENCY_BUCKETS - 1] = 1.0 - below;
        probabilities
    }
}

/// One version's counts during one tick (increases, not cumulative).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct VersionCounts {
    pub requests: f64,
    pub errors: f64,
    /// Requests per latency bucket (non-cumulative), the last one above 2.5 s.
    pub buckets: [f64; LATENCY_BUCKETS],
}

impl VersionCounts {
    /// Requests slower than [`SLOW_THRESHOLD_SECONDS`].
    pub fn slow(&self) -> f64 {
        let first_slow = LATENCY_BUCKET_BOUNDS
            .iter()
            .position(|b| *b > SLOW_THRESHOLD_SECONDS)
            .unwrap_or(LATENCY_BUCKETS - 1);
        self.buckets[first_slow..].iter().sum()
    }

    pub fn add(&mut self, other: &VersionCounts) {
        self.requests += other.requests;
        self.errors += other.errors;
        for (mine, theirs) in self.buckets.iter_mut().zip(&other.buckets) {
            *mine += theirs;
        }
    }
}

/// The scrape at the end of one tick: what each version served during (at − tick, at].
#[derive(Clone, Debug, PartialEq)]
pub struct Tick {
    pub at_seconds: f64,
    /// The scrape failed: every judge gets no data at this tick.
    pub missing: bool,
    pub canary: VersionCounts,
    pub baseline: VersionCounts,
    pub stable: VersionCounts,
}

/// Generates a scenario's ticks from a seed: the same seed gives the same traffic, which
/// every judge then sees.
///
/// Arrivals are Poisson; each request independently errs and lands in a latency bucket,
/// so each (error, bucket) cell of each version is an independent Poisson count
/// (thinning), with the version's share of the load-modulated rate.
pub fn generate(scenario: &Scenario, seed: u64) -> Vec<Tick> {
    let mut random = Random::seed_from_u64(seed);
    let ticks = (scenario.horizon_seconds / scenario.tick_seconds).round() as usize;
    let minutes = (scenario.horizon_seconds / 60.0).ceil() as usize + 1;
    let noise: Vec<f64> = (0..minutes)
        .map(|_| random.lognormal_multiplier(scenario.error_noise))
        .collect();
    // Per minute, the canary's, the baseline's and the stable's own multipliers (no draws
    // at all when there is no such noise, so other scenarios keep their streams).
    let version_noise: Vec<[f64; 3]> = (0..minutes)
        .map(|_| [(); 3].map(|_| random.lognormal_multiplier(scenario.version_noise)))
        .collect();
    let stable_buckets = scenario.bucket_probabilities(1.0);
    let canary_buckets = scenario.bucket_probabilities(scenario.canary_latency_factor);
    (0..ticks)
        .map(|i| {
            let start = i as f64 * scenario.tick_seconds;
            let at_seconds = start + scenario.tick_seconds;
            let middle = start + 0.5 * scenario.tick_seconds;
            let load = 1.0
                + scenario.diurnal_amplitude
                    * (2.0 * std::f64::consts::PI * middle / scenario.diurnal_period_seconds).sin();
            let minute = (middle / 60.0) as usize;
            let error_multiplier = noise[minute]
                * if scenario.errors_follow_load {
                    load
                } else {
                    1.0
                };
            let [canary_noise, baseline_noise, stable_noise] = version_noise[minute];
            let share = scenario.canary_share_at(middle);
            let requests = scenario.requests_per_second * load * scenario.tick_seconds;
            let mut version = |share: f64, error_rate: f64, buckets: &[f64; LATENCY_BUCKETS]| {
                let error_probability = (error_rate * error_multiplier).min(1.0);
                let mut counts = VersionCounts::default();
                for (b, probability) in buckets.iter().enumerate() {
                    let mean = requests * share * probability;
                    let errors = random.poisson(mean * error_probability);
                    let successes = random.poisson(mean * (1.0 - error_probability));
                    counts.buckets[b] = errors + successes;
                    counts.errors += errors;
                    counts.requests += errors + successes;
                }
                counts
            };
            let canary = version(
                share,
                scenario.canary_error_rate * canary_noise,
                &canary_buckets,
            );
            let baseline = version(share, scenario.error_rate * baseline_noise, &stable_buckets);
            let stable = version(
                1.0 - 2.0 * share,
                scenario.error_rate * stable_noise,
                &stable_buckets,
            );
            let missing = random.uniform() < scenario.missing_scrapes;
            Tick {
                at_seconds,
                missing,
                canary,
                baseline,
                stable,
            }
        })
        .collect()
}
