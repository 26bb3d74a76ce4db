//! What the judge is told: the metrics to compare, their margins, trust levels and α.

use serde::{Deserialize, Serialize};

use crate::JudgeError;

/// Which way a metric regresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// More events per unit of exposure is worse (errors per request, slow requests per
    /// request, queries per request).
    HigherIsWorse,
    /// Fewer events per unit of exposure is worse (cache hits per lookup, conversions per
    /// visit). Everything mirrors in log scale: a tolerance of 0.25 means a ratio below
    /// 1/1.25 = 0.8 is a regression.
    LowerIsWorse,
}

/// What the deployer may do with a metric's failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trust {
    /// Judge and record, never act: a failure shows in the evidence only.
    Shadow,
    /// A failure pauses the rollout for a human ([`crate::Verdict::Hold`]).
    Advisory,
    /// A failure rolls the canary back ([`crate::Verdict::Fail`]).
    Enforcing,
}

/// One metric the judge compares: a count of events per unit of exposure, for the canary
/// and for the reference.
///
/// Invariants (checked by [`crate::Judge::new`]): a non-empty unique name; `tolerance` in
/// [0, 4]; `pass_margin`, `absolute_margin` and `min_exposure` finite and >= 0.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MetricSpec {
    /// Unique, non-empty; it names the metric in verdicts and evidence.
    pub name: String,
    pub direction: Direction,
    /// The relative regression that is tolerated: the judge fails the canary only on
    /// evidence that its rate exceeds the reference's by more than this factor
    /// (θ > 1 + tolerance; mirrored for [`Direction::LowerIsWorse`]). The false-alarm
    /// guarantee holds for every canary within it, so it also absorbs small systematic
    /// differences between the canary's pods and the reference's.
    pub tolerance: f64,
    /// A step passes when the confidence sequence shows the ratio is at most
    /// 1 + pass_margin (the regression is bounded)...
    pub pass_margin: f64,
    /// ...or when the canary's own rate is, with the same confidence, at most this much
    /// above the reference's rate (events per unit of exposure, e.g. 0.01 = one
    /// percentage point of errors). This is what lets sparse metrics pass: with no events
    /// at all the ratio is unbounded but the rate is not.
    pub absolute_margin: f64,
    /// The canary exposure a step needs before the metric may pass it; below it the
    /// metric reports insufficient data (it can still fail on strong evidence).
    pub min_exposure: f64,
    pub trust: Trust,
}

impl MetricSpec {
    /// Errors per request, enforcing: fail on evidence of more than 10 % more errors than
    /// the reference; pass a step after 500 canary requests once the canary is shown to
    /// have at most twice the reference's error rate, or at most one point more (0.5 % →
    /// 1.5 %).
    ///
    /// The 10 % tolerance absorbs small systematic differences between the canary's pods
    /// and the reference's. On the benchmark's traffic it costs one scrape on a 4×
    /// regression (a median of 60 s instead of 55 s without tolerance) and a third on a
    /// 2× one (470 s instead of 345 s); 20 % would give 70 s and 650 s. The margins let a
    /// healthy canary at 0.5 % errors and 10 requests per second pass a step in about four
    /// minutes; a margin under a point would keep the 1 % step of a quiet service waiting
    /// for hours, and a regression that slips through a step still meets the same test,
    /// with more traffic, in the next.
    pub fn errors() -> Self {
        Self {
            name: "errors".to_owned(),
            direction: Direction::HigherIsWorse,
            tolerance: 0.1,
            pass_margin: 1.0,
            absolute_margin: 0.01,
            min_exposure: 500.0,
            trust: Trust::Enforcing,
        }
    }

    /// Requests slower than a latency threshold, per request (the threshold is in the
    /// deployer's query: the SLO, or the stable version's p99), enforcing. As
    /// [`MetricSpec::errors`] but with a 25 % tolerance: the tail beyond a p99 differs
    /// more between pods (nodes, neighbours) than error rates do. With the threshold at
    /// the stable's p99, about 1 % of requests are slow; if every latency is 1.5× longer
    /// (p99 +50 %), about 7 % are.
    pub fn slow_requests() -> Self {
        Self {
            name: "slow_requests".to_owned(),
            tolerance: 0.25,
            ..Self::errors()
        }
    }
}

/// The judge's configuration: the false-alarm rate and the metrics.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JudgeConfig {
    /// The probability, over the whole rollout (every step, every look), that a canary
    /// within tolerance on every metric is failed or held. In (0, 0.5]. It is split
    /// evenly (Bonferroni) over the metrics that may act (advisory and enforcing).
    pub alpha: f64,
    /// At least one. `observe` takes one sample per metric, in this order.
    pub metrics: Vec<MetricSpec>,
}

impl Default for JudgeConfig {
    /// α = 0.01 over `errors` and `slow_requests`.
    fn default() -> Self {
        Self {
            alpha: 0.01,
            metrics: vec![MetricSpec::errors(), MetricSpec::slow_requests()],
        }
    }
}

/// The largest tolerance accepted: the null boundary 1 + tolerance must leave room in the
/// ratio grid (up to 50) for the alternatives the test mixes over.
pub const MAX_TOLERANCE: f64 = 4.0;

impl JudgeConfig {
    /// Checks every rule and names the first one broken.
    pub(crate) fn validate(&self) -> Result<(), JudgeError> {
        let invalid = |reason: String| Err(JudgeError::InvalidConfig { reason });
        if !(self.alpha > 0.0 && self.alpha <= 0.5) {
            return invalid(format!(
                "alpha is {}; accepted: a probability in (0, 0.5], e.g. 0.01",
                self.alpha
            ));
        }
        if self.metrics.is_empty() {
            return invalid(
                "metrics is empty; accepted: at least one metric, e.g. MetricSpec::errors()"
                    .to_owned(),
            );
        }
        for (index, metric) in self.metrics.iter().enumerate() {
            if metric.name.trim().is_empty() {
                return invalid(format!(
                    "metric {index} has an empty name; accepted: a non-empty unique name"
                ));
            }
            if self.metrics[..index].iter().any(|m| m.name == metric.name) {
                return invalid(format!(
                    "metric name `{}` appears twice; accepted: unique names",
                    metric.name
                ));
            }
            if !(metric.tolerance >= 0.0 && metric.tolerance <= MAX_TOLERANCE) {
                return invalid(format!(
                    "metric `{}`: tolerance is {}; accepted: a relative regression from 0 to {MAX_TOLERANCE} (0.2 = 20 %)",
                    metric.name, metric.tolerance
                ));
            }
            for (key, value) in [
                ("pass_margin", metric.pass_margin),
                ("absolute_margin", metric.absolute_margin),
                ("min_exposure", metric.min_exposure),
            ] {
                if !(value.is_finite() && value >= 0.0) {
                    return invalid(format!(
                        "metric `{}`: {key} is {value}; accepted: a finite number >= 0",
                        metric.name
                    ));
                }
            }
        }
        Ok(())
    }

    /// The false-alarm budget of each metric: α over the number of metrics that may act
    /// (shadow metrics are judged at the same level but spend nothing, since they never
    /// act).
    pub fn metric_alpha(&self) -> f64 {
        let acting = self
            .metrics
            .iter()
            .filter(|m| m.trust != Trust::Shadow)
            .count()
            .max(1);
        self.alpha / acting as f64
    }
}
