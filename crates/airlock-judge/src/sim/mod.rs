//! A seeded simulation of canary rollouts, shared by the tests and the benchmark: the
//! same synthetic scrapes go through airlock's judge and through re-implementations of
//! its peers' published rules.
//!
//! Deterministic: a scenario and a seed give the same traffic, and every judge is
//! deterministic. Time is simulated; nothing sleeps. Pure code without dependencies; the
//! library exports it so that the integration tests and the benchmark share one harness.
//!
//! What makes the comparison fair:
//! - every judge sees the same scrapes: airlock the cumulative counters of each tick,
//!   Flagger and Argo their windowed queries over the same counts, Kayenta its 1-minute
//!   points of them;
//! - a missing scrape is missing for everyone: airlock gets None, a Flagger or Argo query
//!   at that moment returns no value, a Kayenta point is NaN;
//! - a "noisy" service is noisy for every version alike: the over-dispersion is a
//!   condition of the moment (traffic mix, a dependency), and a healthy canary runs the
//!   baseline's code under the same conditions. Noise that hits each pod on its own is a
//!   separate stress scenario, since it breaks airlock's model;
//! - each peer runs its documented defaults (see each rule's documentation); where a
//!   default would not act within the simulated half hour (Kayenta's 30-minute analysis
//!   interval, Argo's measurement at second zero), the more favourable setting is used.

mod peers;
mod random;
mod traffic;

pub use peers::{
    ArgoRule, Classification, FlaggerRule, KayentaRule, MannWhitneyShift, histogram_quantile,
    mann_whitney,
};
pub use random::{Random, normal_cdf, normal_quantile};
pub use traffic::{
    LATENCY_BUCKET_BOUNDS, LATENCY_BUCKETS, SLOW_THRESHOLD_SECONDS, Scenario, StepPlan, Tick,
    VersionCounts, generate,
};

use crate::{Counter, Judge, JudgeConfig, JudgeError, Sample, Verdict};

/// What airlock's judge compares the canary with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reference {
    /// The baseline alone: as much traffic as the canary.
    Baseline,
    /// Baseline and stable pooled: the same code, and most of the traffic.
    BaselineAndStable,
}

/// The judges the benchmark compares.
#[derive(Clone, Debug, PartialEq)]
pub enum JudgeKind {
    Airlock(Reference),
    Flagger(FlaggerRule),
    Argo(ArgoRule),
    Kayenta(KayentaRule),
}

impl JudgeKind {
    /// Every judge, with default settings.
    pub fn all() -> Vec<JudgeKind> {
        vec![
            JudgeKind::Airlock(Reference::BaselineAndStable),
            JudgeKind::Airlock(Reference::Baseline),
            JudgeKind::Flagger(FlaggerRule::default()),
            JudgeKind::Argo(ArgoRule::default()),
            JudgeKind::Kayenta(KayentaRule::default()),
        ]
    }

    pub fn name(&self) -> &'static str {
        match self {
            JudgeKind::Airlock(Reference::BaselineAndStable) => "airlock (baseline+stable)",
            JudgeKind::Airlock(Reference::Baseline) => "airlock (baseline)",
            JudgeKind::Flagger(_) => "flagger",
            JudgeKind::Argo(_) => "argo",
            JudgeKind::Kayenta(_) => "kayenta",
        }
    }
}

/// How one simulated rollout ended for one judge.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct RunOutcome {
    /// When the judge rolled the canary back (airlock: its first `Fail`), if it did.
    pub rollback_at_seconds: Option<f64>,
    /// When airlock's judge first said `Pass` (None for the peers, which have no such
    /// answer before their fixed schedule ends).
    pub first_pass_at_seconds: Option<f64>,
}

/// Runs one judge over one simulated rollout.
pub fn run(judge: &JudgeKind, scenario: &Scenario, ticks: &[Tick]) -> RunOutcome {
    match judge {
        JudgeKind::Airlock(reference) => {
            run_airlock(&JudgeConfig::default(), scenario, ticks, *reference)
                .expect("the default configuration takes the simulation's two metrics")
        }
        JudgeKind::Flagger(rule) => RunOutcome {
            rollback_at_seconds: rule.rollback_at(ticks),
            first_pass_at_seconds: None,
        },
        JudgeKind::Argo(rule) => RunOutcome {
            rollback_at_seconds: rule.rollback_at(ticks),
            first_pass_at_seconds: None,
        },
        JudgeKind::Kayenta(rule) => RunOutcome {
            rollback_at_seconds: rule.rollback_at(ticks),
            first_pass_at_seconds: None,
        },
    }
}

/// The cumulative samples of the `errors` and `slow_requests` metrics, as a deployer
/// would scrape them, for each tick (None where the scrape is missing), preceded by the
/// all-zero scrape at time 0 that anchors the counters.
pub fn airlock_samples(ticks: &[Tick], reference: Reference) -> Vec<(f64, Vec<Option<Sample>>)> {
    let mut canary = VersionCounts::default();
    let mut pooled = VersionCounts::default();
    let mut samples = vec![(0.0, vec![Some(Sample::default()); 2])];
    for tick in ticks {
        canary.add(&tick.canary);
        pooled.add(&tick.baseline);
        if reference == Reference::BaselineAndStable {
            pooled.add(&tick.stable);
        }
        let metric = |events: fn(&VersionCounts) -> f64| Sample {
            canary: Counter {
                events: events(&canary),
                exposure: canary.requests,
            },
            reference: Counter {
                events: events(&pooled),
                exposure: pooled.requests,
            },
        };
        let scrape = if tick.missing {
            vec![None, None]
        } else {
            vec![
                Some(metric(|c| c.errors)),
                Some(metric(VersionCounts::slow)),
            ]
        };
        samples.push((tick.at_seconds, scrape));
    }
    samples
}

/// Runs airlock's judge over one simulated rollout, starting a step wherever the
/// scenario's split changes. The configuration's metrics get, in order, the `errors`
/// samples and the `slow_requests` samples (a one-metric configuration gets errors only).
/// Fails if the configuration is invalid or has more than those two metrics.
pub fn run_airlock(
    config: &JudgeConfig,
    scenario: &Scenario,
    ticks: &[Tick],
    reference: Reference,
) -> Result<RunOutcome, JudgeError> {
    let mut judge = Judge::new(config.clone())?;
    let mut outcome = RunOutcome::default();
    let mut step: Option<&StepPlan> = None;
    for (at_seconds, scrape) in airlock_samples(ticks, reference) {
        // The tick ending at `at_seconds` ran under the step in force during it.
        let current = scenario.step_at((at_seconds - 0.5 * scenario.tick_seconds).max(0.0));
        if current != step {
            if let Some(current) = current {
                judge.begin_step(&current.label);
            }
            step = current;
        }
        let scrape = &scrape[..config.metrics.len().min(scrape.len())];
        let verdict = judge.observe_verdict(at_seconds, scrape)?;
        match verdict {
            Verdict::Fail { .. } => {
                outcome.rollback_at_seconds = Some(at_seconds);
                break;
            }
            Verdict::Pass if outcome.first_pass_at_seconds.is_none() => {
                outcome.first_pass_at_seconds = Some(at_seconds);
            }
            _ => {}
        }
    }
    Ok(outcome)
}
