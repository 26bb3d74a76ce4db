//! The canary judge inside a rollout: turns each poll's per-slot measurements into the
//! judge's counters and keeps the judge, from the rollout's first step to its last.
//!
//! One judge serves the whole rollout, so α is spent once however many steps there are.
//! Counters are taken relative to an anchor read when the rollout's slots have started,
//! so the stable version's history before the rollout never enters the comparison.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use airlock_core::deploy::{CustomMetric, ERRORS_METRIC, JudgeSettings, LATENCY_METRIC};
use airlock_judge::{Counter, Decision, Judge, Recording, Sample};
use airlock_rollout::{Observed, Slot};

/// The lowest "slow" the stable version's p99 can set. Below it, slow requests come in
/// bursts (a scheduler hiccup or a pause slows every request in flight on one process at
/// once), which breaks the count test's independence and would fail healthy canaries;
/// and a tail under 10 ms is not what users notice. An explicit
/// `deploy.judge.latency_threshold` is taken as given.
const MIN_SLOW_THRESHOLD: Duration = Duration::from_millis(10);

/// One poll's readings: the per-slot measurements (None when the source had none) and
/// each custom metric's sample (None when Prometheus had no data for it).
#[derive(Debug, Default)]
pub(crate) struct Reading {
    pub(crate) slots: Option<BTreeMap<Slot, Observed>>,
    pub(crate) custom: Vec<Option<Sample>>,
}

/// The judge of one rollout.
#[derive(Debug)]
pub(crate) struct Canary {
    judge: Judge,
    /// A request slower than this is slow; None when latency is not judged.
    latency_threshold: Option<Duration>,
    /// Whether the reference pools the stable version with the baseline.
    pool_stable: bool,
    /// The first full reading of the rollout: counters are taken relative to it.
    anchor: Option<BTreeMap<Slot, Observed>>,
    began: Instant,
}

impl Canary {
    /// A judge for a rollout, or the judge of a rollout under way when `resumed` is its
    /// recording (and the configuration has not changed). `stable_before` is the stable version's cumulative
    /// measurement before the rollout: its p99 is the slow-request threshold unless the
    /// configuration names one. Latency is judged only when the source measures it per
    /// request (a histogram): a p99 alone cannot be compared count by count.
    pub(crate) fn new(
        settings: &JudgeSettings,
        stable_before: Option<&Observed>,
        resumed: Option<&Recording>,
    ) -> Result<Canary, String> {
        let measured = stable_before.and_then(|o| o.latency.as_ref()).is_some();
        let latency_threshold = if measured {
            settings.latency_threshold.or_else(|| {
                stable_before
                    .and_then(Observed::p99)
                    .map(|p99| p99.max(MIN_SLOW_THRESHOLD))
            })
        } else {
            None
        };
        let config = settings.judge_config(latency_threshold.is_some());
        // After a restart, the judge carries on from the recording of the steps already
        // judged: the evidence (and α) is the rollout's, not the process's.
        let judge = match resumed {
            Some(recording) if recording.config == config => {
                Judge::resume(recording).map_err(|e| e.to_string())?
            }
            _ => Judge::new(config).map_err(|e| e.to_string())?,
        };
        Ok(Canary {
            judge,
            latency_threshold,
            pool_stable: settings.pool_stable,
            anchor: None,
            began: Instant::now(),
        })
    }

    /// A new step: the judge needs fresh canary exposure in it before it may pass.
    pub(crate) fn begin_step(&mut self, percent: u32) {
        self.judge.begin_step(&format!("{percent}%"));
    }

    /// Feeds one poll to the judge and returns its decision.
    pub(crate) fn observe(&mut self, reading: &Reading) -> Result<Decision, String> {
        let mut samples = self.builtin_samples(reading.slots.as_ref());
        samples.extend(reading.custom.iter().copied());
        let at = self.began.elapsed().as_secs_f64();
        self.judge.observe(at, &samples).map_err(|e| e.to_string())
    }

    /// Everything the judge saw, for `airlock canary replay`.
    pub(crate) fn recording(&self) -> Recording {
        self.judge.recording()
    }

    /// The errors sample and, when latency is judged, the slow-requests sample.
    fn builtin_samples(&mut self, slots: Option<&BTreeMap<Slot, Observed>>) -> Vec<Option<Sample>> {
        let count = 1 + usize::from(self.latency_threshold.is_some());
        let Some(slots) = slots else {
            return vec![None; count];
        };
        let (Some(canary), Some(baseline)) = (slots.get(&Slot::Canary), slots.get(&Slot::Baseline))
        else {
            return vec![None; count];
        };
        let anchor = self.anchor.get_or_insert_with(|| slots.clone());
        let since = |slot: Slot, now: &Observed| match anchor.get(&slot) {
            Some(anchor) => now.since(anchor),
            None => now.clone(),
        };
        let canary = since(Slot::Canary, canary);
        let reference = since(Slot::Baseline, baseline);
        let stable = match slots.get(&Slot::Stable) {
            Some(stable) if self.pool_stable => Some(since(Slot::Stable, stable)),
            _ => None,
        };
        let mut samples = vec![Some(Sample {
            canary: Counter {
                events: canary.errors as f64,
                exposure: canary.requests as f64,
            },
            reference: Counter {
                events: (reference.errors + stable.as_ref().map_or(0, |s| s.errors)) as f64,
                exposure: (reference.requests + stable.as_ref().map_or(0, |s| s.requests)) as f64,
            },
        })];
        if let Some(threshold) = self.latency_threshold {
            let slow = |observed: &Observed| {
                observed.latency.as_ref().map(|h| Counter {
                    events: h.count_above(threshold) as f64,
                    exposure: h.count() as f64,
                })
            };
            // Latency is compared with the baseline alone, whatever the errors' reference:
            // a fresh process answers its first requests slower than a warm one (caches,
            // connection pools, JIT), and the canary is as fresh as the baseline, never as
            // warm as stable.
            samples.push(match (slow(&canary), slow(&reference)) {
                (Some(canary), Some(reference)) => Some(Sample { canary, reference }),
                _ => None,
            });
        }
        samples
    }
}

/// Reads the custom metrics of a rollout from Prometheus: one sample per metric, None
/// for a metric any of whose queries had no data or failed (a missing scrape).
pub(crate) fn read_custom(
    prometheus: &airlock_rollout::PrometheusSource,
    metrics: &[CustomMetric],
    canary: &str,
    baseline: &str,
) -> Vec<Option<Sample>> {
    metrics
        .iter()
        .map(|metric| {
            let counter = |slot: Slot, commit: &str| -> Option<Counter> {
                Some(Counter {
                    events: prometheus.count(&metric.events, slot, commit).ok()?,
                    exposure: prometheus.count(&metric.exposure, slot, commit).ok()?,
                })
            };
            Some(Sample {
                canary: counter(Slot::Canary, canary)?,
                reference: counter(Slot::Baseline, baseline)?,
            })
        })
        .collect()
}

/// Why the judge failed (or held) the canary on `metric`, for the verdict and the alert.
pub(crate) fn failure_reason(decision: &Decision, metric: &str) -> String {
    let what = match metric {
        ERRORS_METRIC => "error rate",
        LATENCY_METRIC => "share of slow requests",
        other => other,
    };
    match decision.metrics.iter().find(|m| m.name == metric) {
        Some(evidence) => format!(
            "the canary's {what} is worse than the baseline's: {}",
            evidence.reasoning
        ),
        None => format!("the canary's {what} is worse than the baseline's"),
    }
}
