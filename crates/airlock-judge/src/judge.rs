//! The `Judge`: takes cumulative counters, keeps the evidence per metric, decides.

use serde::{Deserialize, Serialize};

use crate::stats::{self, RatioLikelihood};
use crate::{
    Direction, JudgeConfig, JudgeError, MetricSpec, RecordedSample, RecordedStep, Recording, Trust,
};

/// The largest counter value accepted: far beyond any real count, and far enough below
/// f64's range that the log-likelihood (a sum of counts times logarithms) cannot overflow.
pub const MAX_COUNTER: f64 = 1e250;

/// Cumulative counts of one version for one metric: events (errors, slow requests...) and
/// exposure (requests, lookups...). Non-integer values are fine (Prometheus `increase()`
/// extrapolates); both must be from 0 to [`MAX_COUNTER`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Counter {
    pub events: f64,
    pub exposure: f64,
}

/// One scrape of one metric: the canary's and the reference's cumulative counters.
///
/// The reference is the baseline (a fresh copy of the previous version at the canary's
/// traffic share), or the baseline pooled with stable (the same code, so the same rates):
/// pooling gives the reference many times the canary's exposure, which is what makes
/// large regressions detectable within a minute at modest traffic.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    pub canary: Counter,
    pub reference: Counter,
}

/// The overall decision.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Verdict {
    /// No conclusion yet: keep the step running.
    Continue,
    /// Every non-shadow metric passes the step: the deployer may advance.
    Pass,
    /// Some non-shadow metric has had too little canary exposure in this step to pass it.
    /// Never a reason to roll back.
    InsufficientData,
    /// An enforcing metric failed: roll back. Sticky for the rollout.
    Fail { metric: String },
    /// An advisory metric failed (and no enforcing one): pause for a human. Sticky.
    Hold { metric: String },
}

/// One metric's verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MetricVerdict {
    Continue,
    Pass,
    InsufficientData,
    /// Sticky for the rollout.
    Fail,
}

/// The judge's answer after an observation, with the evidence behind it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    /// The time of the observation it answers (0 before any).
    pub at_seconds: f64,
    /// The label of the current step.
    pub step: String,
    pub verdict: Verdict,
    /// One per configured metric, in configuration order.
    pub metrics: Vec<MetricEvidence>,
}

/// What one metric shows. Every number is finite, so the evidence serialises to JSON and
/// back unchanged.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MetricEvidence {
    pub name: String,
    pub trust: Trust,
    pub verdict: MetricVerdict,
    /// Totals over the rollout (every step), summed from the deltas the judge saw.
    pub canary: Counter,
    pub reference: Counter,
    /// The canary's exposure in the current step.
    pub step_canary_exposure: f64,
    pub min_exposure: f64,
    /// The canary's rate over the reference's, over the rollout; None while undefined
    /// (no reference events or no exposure).
    pub ratio: Option<f64>,
    /// The anytime-valid confidence sequence on the ratio at level 1 − α_m, clamped to
    /// the grid: a lower bound of 0 or an upper bound of 50 means unbounded on that side.
    pub ratio_lower: f64,
    pub ratio_upper: f64,
    /// ln E of the fail test, and ln(1/α_m): the metric fails when the first reaches the
    /// second.
    pub log_e_value: f64,
    pub log_bound: f64,
    /// α_m, this metric's share of the configured α.
    pub alpha: f64,
    pub tolerance: f64,
    pub pass_margin: f64,
    pub absolute_margin: f64,
    /// One sentence for a human: why this verdict, with the numbers (the rates, the
    /// ratio and its bounds, the evidence against its bound, and on a pass which margin
    /// was met).
    pub reasoning: String,
}

/// Events and exposures seen but not yet folded into the likelihood: a batch waits until
/// both versions have exposure (events without exposure carry no usable share).
#[derive(Clone, Copy, Debug, Default)]
struct PendingBatch {
    canary: Counter,
    reference: Counter,
}

/// Everything the judge keeps about one metric.
#[derive(Clone, Debug)]
struct MetricState {
    spec: MetricSpec,
    null_ratio: f64,
    fail_log_weights: Vec<f64>,
    likelihood: RatioLikelihood,
    last_canary: Option<Counter>,
    last_reference: Option<Counter>,
    pending: PendingBatch,
    canary_total: Counter,
    reference_total: Counter,
    step_canary_exposure: f64,
    /// The observation count at which the metric failed: the first failure names the
    /// verdict, and it never clears.
    failed_at_observation: Option<u64>,
    /// The statistics of the data so far, recomputed only when data arrives.
    statistics: Statistics,
}

/// A metric's test statistic and confidence sequences, as of its last data.
#[derive(Clone, Copy, Debug)]
struct Statistics {
    log_e_value: f64,
    bounds: stats::RatioBounds,
    canary_rate_lower: f64,
    canary_rate_upper: Option<f64>,
}

impl Statistics {
    fn of(
        likelihood: &RatioLikelihood,
        fail_log_weights: &[f64],
        canary_total: Counter,
        alpha: f64,
    ) -> Self {
        let (canary_rate_lower, canary_rate_upper) =
            stats::rate_confidence_bounds(canary_total.events, canary_total.exposure, alpha);
        Self {
            log_e_value: likelihood.log_e_value(fail_log_weights),
            bounds: likelihood.confidence_bounds(alpha),
            canary_rate_lower,
            canary_rate_upper,
        }
    }
}

/// The increase of a cumulative counter; a decrease of either value means the process
/// restarted and the counter began again from zero, so the new value is the increase.
fn counter_delta(previous: Option<Counter>, current: Counter) -> Option<Counter> {
    let previous = previous?;
    if current.events < previous.events || current.exposure < previous.exposure {
        Some(current)
    } else {
        Some(Counter {
            events: current.events - previous.events,
            exposure: current.exposure - previous.exposure,
        })
    }
}

impl MetricState {
    fn new(spec: MetricSpec, alpha: f64) -> Self {
        let null_ratio = match spec.direction {
            Direction::HigherIsWorse => 1.0 + spec.tolerance,
            Direction::LowerIsWorse => 1.0 / (1.0 + spec.tolerance),
        };
        let fail_log_weights = stats::fail_log_weights(null_ratio, spec.direction);
        let likelihood = RatioLikelihood::new(null_ratio);
        let statistics = Statistics::of(&likelihood, &fail_log_weights, Counter::default(), alpha);
        Self {
            fail_log_weights,
            likelihood,
            null_ratio,
            spec,
            last_canary: None,
            last_reference: None,
            pending: PendingBatch::default(),
            canary_total: Counter::default(),
            reference_total: Counter::default(),
            step_canary_exposure: 0.0,
            failed_at_observation: None,
            statistics,
        }
    }

    fn update_statistics(&mut self, alpha: f64) {
        self.statistics = Statistics::of(
            &self.likelihood,
            &self.fail_log_weights,
            self.canary_total,
            alpha,
        );
    }

    /// Takes one scrape: the first of each version anchors its counter; later ones add
    /// their increase to the rollout totals, the step's exposure and the pending batch.
    fn absorb(&mut self, sample: &Sample) {
        let canary_delta = counter_delta(self.last_canary, sample.canary);
        let reference_delta = counter_delta(self.last_reference, sample.reference);
        self.last_canary = Some(sample.canary);
        self.last_reference = Some(sample.reference);
        if let Some(delta) = canary_delta {
            self.canary_total.events += delta.events;
            self.canary_total.exposure += delta.exposure;
            self.step_canary_exposure += delta.exposure;
            self.pending.canary.events += delta.events;
            self.pending.canary.exposure += delta.exposure;
        }
        if let Some(delta) = reference_delta {
            self.reference_total.events += delta.events;
            self.reference_total.exposure += delta.exposure;
            self.pending.reference.events += delta.events;
            self.pending.reference.exposure += delta.exposure;
        }
        let PendingBatch { canary, reference } = self.pending;
        if canary.exposure > 0.0 && reference.exposure > 0.0 {
            self.likelihood.add_batch(
                canary.events,
                canary.exposure,
                reference.events,
                reference.exposure,
            );
            self.pending = PendingBatch::default();
        }
    }

    /// The metric's verdict and the numbers behind it, without the sentence.
    fn assess(&self) -> Assessment {
        let spec = &self.spec;
        let Statistics {
            bounds,
            canary_rate_lower: rate_lower,
            canary_rate_upper: rate_upper,
            ..
        } = self.statistics;
        let rate = |c: Counter| (c.exposure > 0.0).then(|| c.events / c.exposure);
        let canary_rate = rate(self.canary_total);
        let reference_rate = rate(self.reference_total);
        let ratio = match (canary_rate, reference_rate) {
            (Some(c), Some(r)) if r > 0.0 => Some(c / r),
            _ => None,
        };
        let (canary_rate_bound, ratio_within_margin, absolute_excess) = match spec.direction {
            Direction::HigherIsWorse => (
                rate_upper,
                bounds.upper_bounded && bounds.upper <= 1.0 + spec.pass_margin,
                rate_upper.zip(reference_rate).map(|(u, r)| u - r),
            ),
            Direction::LowerIsWorse => (
                (self.canary_total.exposure > 0.0).then_some(rate_lower),
                bounds.lower_bounded && bounds.lower >= 1.0 / (1.0 + spec.pass_margin),
                (self.canary_total.exposure > 0.0)
                    .then_some(rate_lower)
                    .zip(reference_rate)
                    .map(|(l, r)| r - l),
            ),
        };
        let absolute_within_margin = absolute_excess.is_some_and(|e| e <= spec.absolute_margin);
        let verdict = if self.failed_at_observation.is_some() {
            MetricVerdict::Fail
        } else if self.step_canary_exposure < spec.min_exposure {
            MetricVerdict::InsufficientData
        } else if ratio_within_margin || absolute_within_margin {
            MetricVerdict::Pass
        } else {
            MetricVerdict::Continue
        };
        Assessment {
            verdict,
            canary_rate,
            reference_rate,
            ratio,
            canary_rate_bound,
            absolute_excess,
            ratio_within_margin,
        }
    }

    fn evidence(&self, alpha: f64) -> MetricEvidence {
        let spec = &self.spec;
        let Statistics {
            log_e_value,
            bounds,
            ..
        } = self.statistics;
        let assessment = self.assess();
        let facts = Facts {
            spec,
            alpha,
            null_ratio: self.null_ratio,
            bounds,
            log_e_value,
            step_canary_exposure: self.step_canary_exposure,
            assessment: &assessment,
        };
        MetricEvidence {
            name: spec.name.clone(),
            trust: spec.trust,
            verdict: assessment.verdict,
            canary: self.canary_total,
            reference: self.reference_total,
            step_canary_exposure: self.step_canary_exposure,
            min_exposure: spec.min_exposure,
            ratio: assessment.ratio,
            ratio_lower: bounds.lower,
            ratio_upper: bounds.upper,
            log_e_value,
            log_bound: (1.0 / alpha).ln(),
            alpha,
            tolerance: spec.tolerance,
            pass_margin: spec.pass_margin,
            absolute_margin: spec.absolute_margin,
            reasoning: facts.reasoning(),
        }
    }
}

/// A metric's verdict and the derived numbers it rests on.
struct Assessment {
    verdict: MetricVerdict,
    canary_rate: Option<f64>,
    reference_rate: Option<f64>,
    ratio: Option<f64>,
    /// The canary rate's anytime bound on the side of regression (upper for
    /// higher-is-worse); None while unbounded.
    canary_rate_bound: Option<f64>,
    /// How much worse than the reference's rate the canary's may be, by that bound.
    absolute_excess: Option<f64>,
    ratio_within_margin: bool,
}

/// The numbers a metric's reasoning sentence is made of.
struct Facts<'a> {
    spec: &'a MetricSpec,
    alpha: f64,
    null_ratio: f64,
    bounds: stats::RatioBounds,
    log_e_value: f64,
    step_canary_exposure: f64,
    assessment: &'a Assessment,
}

fn percent(rate: f64) -> String {
    format!("{:.3} %", rate * 100.0)
}

/// The confidence level 1 − α in percent, without trailing zeros: "99.5".
fn level(alpha: f64) -> String {
    let text = format!("{:.3}", 100.0 * (1.0 - alpha));
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

impl Facts<'_> {
    /// "canary 2.113 % vs reference 0.498 % (ratio 4.24, 99.5 % bounds 2.61 to 7.39)"
    fn rates(&self) -> String {
        let a = self.assessment;
        let rate = |r: Option<f64>| r.map_or_else(|| "no data".to_owned(), percent);
        let ratio = a
            .ratio
            .map_or_else(|| "undefined".to_owned(), |r| format!("{r:.2}"));
        let lower = if self.bounds.lower_bounded {
            format!("{:.2}", self.bounds.lower)
        } else {
            "0".to_owned()
        };
        let upper = if self.bounds.upper_bounded {
            format!("{:.2}", self.bounds.upper)
        } else {
            "unbounded".to_owned()
        };
        format!(
            "canary {} vs reference {} (ratio {ratio}, {} % bounds {lower} to {upper})",
            rate(a.canary_rate),
            rate(a.reference_rate),
            level(self.alpha)
        )
    }

    /// "the evidence that the ratio exceeds 1.10 is e^2.0 of the e^5.3 needed to fail"
    fn evidence(&self) -> String {
        let side = match self.spec.direction {
            Direction::HigherIsWorse => "exceeds",
            Direction::LowerIsWorse => "is below",
        };
        format!(
            "the evidence that the ratio {side} {:.2} is e^{:.1} of the e^{:.1} needed to fail",
            self.null_ratio,
            self.log_e_value,
            (1.0 / self.alpha).ln()
        )
    }

    /// Where the pass conditions stand: the ratio's bound on the side of regression
    /// against its margin, and the canary rate's excess against the absolute margin.
    fn margins(&self) -> String {
        let (bound_name, bound, bounded, margin, worse) = match self.spec.direction {
            Direction::HigherIsWorse => (
                "upper",
                self.bounds.upper,
                self.bounds.upper_bounded,
                1.0 + self.spec.pass_margin,
                "above",
            ),
            Direction::LowerIsWorse => (
                "lower",
                self.bounds.lower,
                self.bounds.lower_bounded,
                1.0 / (1.0 + self.spec.pass_margin),
                "below",
            ),
        };
        let ratio = if bounded {
            format!("the ratio's {bound_name} bound {bound:.2} against the margin {margin:.2}")
        } else {
            format!("the ratio unbounded on the {bound_name} side (margin {margin:.2})")
        };
        let bound_side = match self.spec.direction {
            Direction::HigherIsWorse => "at most",
            Direction::LowerIsWorse => "at least",
        };
        let excess = match (
            self.assessment.canary_rate_bound,
            self.assessment.absolute_excess,
        ) {
            (Some(rate), Some(excess)) => format!(
                "the canary's rate {bound_side} {}, so at most {} {worse} the reference's, \
                 against the margin {}",
                percent(rate),
                percent(excess.max(0.0)),
                percent(self.spec.absolute_margin)
            ),
            _ => format!(
                "the canary's rate not yet bounded against the reference's (margin {})",
                percent(self.spec.absolute_margin)
            ),
        };
        format!("{ratio}, {excess}")
    }

    fn reasoning(&self) -> String {
        let name = &self.spec.name;
        let (rates, evidence) = (self.rates(), self.evidence());
        match self.assessment.verdict {
            MetricVerdict::Fail => format!(
                "{name} failed: {rates}; {evidence} and reached it (a failed metric stays failed \
                 for the rollout)."
            ),
            MetricVerdict::InsufficientData => format!(
                "{name}: {:.0} of the {:.0} units of canary exposure this step needs before it \
                 can pass; {rates}; {evidence}.",
                self.step_canary_exposure, self.spec.min_exposure
            ),
            MetricVerdict::Pass => {
                let which = if self.assessment.ratio_within_margin {
                    "the ratio is within its margin"
                } else {
                    "the canary's rate is within the absolute margin"
                };
                format!(
                    "{name} passes the step after {:.0} units of canary exposure: {rates}; {which} \
                     ({}).",
                    self.step_canary_exposure,
                    self.margins()
                )
            }
            MetricVerdict::Continue => format!(
                "{name}: no conclusion yet: {rates}; neither margin is met ({}); {evidence}.",
                self.margins()
            ),
        }
    }
}

/// The canary judge of one rollout: deterministic, no I/O, no clock (times come with the
/// observations).
///
/// Feed it cumulative counters every few seconds with [`Judge::observe`]; call
/// [`Judge::begin_step`] when the traffic split changes. Its false-alarm guarantee: if
/// every acting metric's canary rate is within its tolerance of the reference's, the
/// chance that any decision of the rollout is `Fail` or `Hold` is at most α, however
/// often the judge is asked and however the steps go. Missing or thin data never fails
/// a canary; it shows as `InsufficientData` or `Continue`.
///
/// The judge keeps its own [`Recording`] of every accepted observation, so a rollout can
/// be replayed ([`crate::replay`]) or the judge rebuilt after a restart
/// ([`Judge::resume`]).
#[derive(Clone, Debug)]
pub struct Judge {
    config: JudgeConfig,
    metric_alpha: f64,
    metrics: Vec<MetricState>,
    step: String,
    observations: u64,
    last_at_seconds: Option<f64>,
    recording: Recording,
}

impl Judge {
    /// A judge for one rollout, starting in an unlabelled step (`""`).
    ///
    /// Fails with [`JudgeError::InvalidConfig`] naming the first broken rule: alpha in
    /// (0, 0.5]; at least one metric; names non-empty and unique; tolerance in [0, 4];
    /// margins and min_exposure finite and >= 0.
    pub fn new(config: JudgeConfig) -> Result<Judge, JudgeError> {
        config.validate()?;
        let metric_alpha = config.metric_alpha();
        let metrics = config
            .metrics
            .iter()
            .map(|spec| MetricState::new(spec.clone(), metric_alpha))
            .collect();
        Ok(Judge {
            metric_alpha,
            metrics,
            step: String::new(),
            observations: 0,
            last_at_seconds: None,
            recording: Recording {
                config: config.clone(),
                steps: vec![RecordedStep {
                    label: String::new(),
                    samples: Vec::new(),
                }],
            },
            config,
        })
    }

    /// Rebuilds a judge from a recording (after a restart): the same state as the judge
    /// that made the recording. Fails like [`crate::replay`].
    pub fn resume(recording: &Recording) -> Result<Judge, JudgeError> {
        crate::replay::feed(recording, |_| {})
    }

    /// The configuration it was made with (validated).
    pub fn config(&self) -> &JudgeConfig {
        &self.config
    }

    /// Starts a rollout step (a new traffic split): each metric's step exposure restarts
    /// from zero, so each step must see `min_exposure` of canary traffic before it can
    /// pass. The evidence of the test carries on (α is spent once per rollout, not per
    /// step), and a failure stays. Counters are not re-anchored: the next scrape's increase
    /// counts, wholly, in the new step, so scrape right before changing the split.
    pub fn begin_step(&mut self, label: &str) {
        self.step = label.to_owned();
        for metric in &mut self.metrics {
            metric.step_canary_exposure = 0.0;
        }
        // A step that saw no observation leaves no trace: replaying the recording
        // reaches the same state either way.
        match self.recording.steps.last_mut() {
            Some(step) if step.samples.is_empty() => step.label = label.to_owned(),
            _ => self.recording.steps.push(RecordedStep {
                label: label.to_owned(),
                samples: Vec::new(),
            }),
        }
    }

    /// Takes one scrape and returns the decision with its evidence: `samples` holds one
    /// entry per configured metric, in configuration order, None for a missing scrape (the
    /// next scrape's increase covers the gap).
    ///
    /// A counter lower than the previous one is a restart: its new value is the increase
    /// since. Refused, with nothing changed, when the number of samples is wrong, a counter
    /// is NaN, infinite, negative or above [`MAX_COUNTER`], or `at_seconds` is not finite
    /// or goes back in time.
    pub fn observe(
        &mut self,
        at_seconds: f64,
        samples: &[Option<Sample>],
    ) -> Result<Decision, JudgeError> {
        self.observe_verdict(at_seconds, samples)?;
        Ok(self.decision())
    }

    /// [`Judge::observe`] without building the evidence: the same state change and the
    /// same verdict, for callers that ask often and read the evidence rarely (the
    /// simulation, a tight scrape loop).
    pub fn observe_verdict(
        &mut self,
        at_seconds: f64,
        samples: &[Option<Sample>],
    ) -> Result<Verdict, JudgeError> {
        self.check(at_seconds, samples)?;
        self.observations += 1;
        self.last_at_seconds = Some(at_seconds);
        let log_bound = (1.0 / self.metric_alpha).ln();
        for (metric, sample) in self.metrics.iter_mut().zip(samples) {
            if let Some(sample) = sample {
                metric.absorb(sample);
                metric.update_statistics(self.metric_alpha);
            }
            if metric.failed_at_observation.is_none() && metric.statistics.log_e_value >= log_bound
            {
                metric.failed_at_observation = Some(self.observations);
            }
        }
        if let Some(step) = self.recording.steps.last_mut() {
            step.samples.push(RecordedSample {
                at_seconds,
                metrics: samples.to_vec(),
            });
        }
        Ok(self.verdict())
    }

    /// Refuses an observation that breaks a rule, before anything changes.
    fn check(&self, at_seconds: f64, samples: &[Option<Sample>]) -> Result<(), JudgeError> {
        let previous_seconds = self.last_at_seconds.unwrap_or(f64::NEG_INFINITY);
        if !at_seconds.is_finite() || at_seconds < previous_seconds {
            return Err(JudgeError::InvalidTime {
                at_seconds,
                previous_seconds,
            });
        }
        if samples.len() != self.metrics.len() {
            return Err(JudgeError::WrongSampleCount {
                expected: self.metrics.len(),
                got: samples.len(),
                names: self
                    .config
                    .metrics
                    .iter()
                    .map(|m| m.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        for (metric, sample) in self.config.metrics.iter().zip(samples) {
            let Some(sample) = sample else { continue };
            for (version, counter) in [("canary", sample.canary), ("reference", sample.reference)] {
                for (field, value) in [("events", counter.events), ("exposure", counter.exposure)] {
                    if !(0.0..=MAX_COUNTER).contains(&value) {
                        return Err(JudgeError::InvalidCounter {
                            metric: metric.name.clone(),
                            version,
                            field,
                            value,
                        });
                    }
                }
            }
        }
        Ok(())
    }

    /// The decision as of the last observation (or step change), with every metric's
    /// evidence; before any observation, at time 0.
    pub fn decision(&self) -> Decision {
        Decision {
            at_seconds: self.last_at_seconds.unwrap_or(0.0),
            step: self.step.clone(),
            verdict: self.verdict(),
            metrics: self
                .metrics
                .iter()
                .map(|m| m.evidence(self.metric_alpha))
                .collect(),
        }
    }

    /// Every accepted observation so far, by step, with the configuration: replaying it
    /// reproduces every decision this judge made.
    pub fn recording(&self) -> Recording {
        self.recording.clone()
    }

    /// The overall verdict: the first enforcing failure, else the first advisory one
    /// (by the order they failed, then configuration order), else what the metrics that
    /// may act say together.
    fn verdict(&self) -> Verdict {
        let first_failed = |trust: Trust| {
            self.metrics
                .iter()
                .filter(|m| m.spec.trust == trust)
                .filter_map(|m| m.failed_at_observation.map(|at| (at, &m.spec.name)))
                .min_by_key(|(at, _)| *at)
                .map(|(_, name)| name.clone())
        };
        if let Some(metric) = first_failed(Trust::Enforcing) {
            return Verdict::Fail { metric };
        }
        if let Some(metric) = first_failed(Trust::Advisory) {
            return Verdict::Hold { metric };
        }
        let acting: Vec<MetricVerdict> = self
            .metrics
            .iter()
            .filter(|m| m.spec.trust != Trust::Shadow)
            .map(|m| m.assess().verdict)
            .collect();
        if acting.iter().all(|v| *v == MetricVerdict::Pass) {
            // With every metric in shadow the judge never stands in the way.
            Verdict::Pass
        } else if acting.contains(&MetricVerdict::InsufficientData) {
            Verdict::InsufficientData
        } else {
            Verdict::Continue
        }
    }
}
