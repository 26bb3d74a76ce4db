//! The canary judge: compares a canary's counters with its reference's by a sequential,
//! anytime-valid test, and at every scrape says whether to continue, pass the step, wait
//! for data, or fail.
//!
//! No I/O, no clock, deterministic. The deployer scrapes cumulative counters every few
//! seconds, hands them to [`Judge::observe`] and acts on the [`Verdict`]; it calls
//! [`Judge::begin_step`] when it changes the traffic split. The judge keeps a
//! [`Recording`] of what it was given ([`Judge::recording`]), so that every decision can
//! be replayed ([`replay`]) and a judge rebuilt after a restart ([`Judge::resume`]).
//! Keeping the recording inside the judge, rather than beside it, means the recording
//! cannot miss an observation or keep a refused one.
//!
//! # One model for every metric
//! A metric counts events per unit of exposure: errors per request, requests slower than a
//! threshold per request, queries per request, misses per lookup. Events are Poisson with
//! mean rate × exposure, for the canary and for the reference. Conditional on a batch's
//! total of new events (the increases between two scrapes), the canary's share is
//! Binomial(e_c + e_r, p_t(θ)), p_t(θ) = θ·n_c / (θ·n_c + n_r), where θ is the canary's
//! rate over the reference's and n_c, n_r the batch's exposures. Only the two pairs of
//! counters are needed, and the rates themselves cancel: load, a diurnal swing or a noisy
//! dependency move them for both versions at once and leave the test exact; the split may
//! change from batch to batch and step to step, since p_t is per batch. What does break
//! the model is noise that hits one version and not the other (a bad node under the canary
//! alone): the canary's share is then over-dispersed. The tolerance absorbs some of it; the
//! benchmark's stress row measures it.
//!
//! The log-likelihood L(θ) = Σ_t e_c ln p_t(θ) + e_r ln(1 − p_t(θ)) is kept on a fixed grid
//! of 161 ratios log-spaced from 0.02 to 50 (5 % apart), and at the null boundary: one
//! `ln_1p` per grid point per scrape, computed as softplus so that no exposure ratio
//! overflows. The constants are in [`stats`].
//!
//! # Fail: a mixture e-process
//! For a higher-is-worse metric the null hypothesis is θ <= θ0 = 1 + tolerance. For each θ
//! beyond θ0, the likelihood ratio against the boundary, exp(L(θ) − L(θ0)), is a
//! nonnegative supermartingale under every θ' <= θ0: a batch multiplies it, in expectation,
//! by a function of p_t(θ') that is linear, increasing and 1 at p_t(θ0) (the family has a
//! monotone likelihood ratio). So the mixture E = Σ w(θ)·exp(L(θ) − L(θ0)) is an e-process
//! for the whole composite null, and by Ville's inequality the chance that E *ever*
//! reaches 1/α_m is at most α_m, however often it is looked at. (The ratio against the
//! null's best fit, max over θ' <= θ0, would not be a supermartingale; the boundary is
//! what makes the composite null work.) The metric fails when E reaches 1/α_m, where α_m
//! is α split evenly (Bonferroni) over the metrics that may act, advisory and enforcing;
//! shadow metrics are judged at the same level but never act, so they spend nothing.
//! Lower-is-worse metrics mirror in log scale: θ0 = 1/(1 + tolerance).
//!
//! The prior w is a normal density in ln θ centred on 4 with standard deviation 0.7, on
//! the grid points beyond θ0: most of its mass on large regressions (a 4× regression pays
//! about one nat, a tenth of the threshold, for its size not being known), enough on
//! 1.5–2× to catch those within a long step. The tolerance matters more than the prior's
//! shape. On the benchmark's traffic (errors only), a broad prior (centred on 3, sd 1)
//! detects the 4× regression one scrape later in the median and 1.5× 3 % sooner; a flat
//! one is a fifth slower on 4×; tolerances 0, 0.1 and 0.2 give medians of about 55, 60
//! and 70 s on 4× and 345, 470 and 650 s on 2×.
//!
//! # The confidence sequence and Pass
//! For any θ', M(θ') = Σ v(θ)·exp(L(θ) − L(θ')) is a martingale under θ' (here v is a
//! normal density in ln θ around 1, sd 1, over the whole grid), so {θ' : M(θ') < 1/α_m}
//! is a confidence sequence: it covers the true ratio at every time at once with
//! probability 1 − α_m. The numerator does not depend on θ', so the whole sequence costs
//! one log-sum-exp: θ' is inside when L(θ') > ln Σ v·e^L − ln(1/α_m). L is concave in
//! ln θ, so the set is an interval; it is widened by one grid point on each side so that
//! it contains the continuous set. A bound at the grid's edge means "unbounded".
//!
//! A metric passes the step when the step's canary exposure is at least `min_exposure`
//! and either the ratio's bound on the side of regression is within 1 + `pass_margin`,
//! or the canary's own rate is at most `absolute_margin` worse than the reference's. That
//! second condition uses an anytime bound on the canary's own rate (a gamma mixture of
//! Poisson likelihood ratios over s = μ/λ, in closed form) rather than
//! (θ_upper − 1) × reference rate: with few or no events θ is unbounded and that product
//! undefined, while the rate is bounded (no error in 2 000 requests bounds it below 0.4 %),
//! which is exactly the sparse case the condition is for. The reference's rate enters as
//! its point estimate; with a pooled reference it rests on far more data than the
//! canary's. Passing is not what α controls (a wrong pass lets a regression into the next
//! step, where the same test, with the evidence carried over and more traffic, meets it).
//!
//! # Defaults ([`MetricSpec::errors`], [`MetricSpec::slow_requests`], [`JudgeConfig`])
//! α = 0.01 for the rollout, 0.005 per metric. Errors: tolerance 0.1; slow requests:
//! tolerance 0.25 (the tail beyond a p99 varies more between pods). Both: pass margin 1
//! (the ratio is shown to be at most 2), absolute margin 0.01 (at most one point worse),
//! `min_exposure` 500 units. At 0.5 % errors and 10 canary requests per second, a healthy
//! canary passes its step in about four minutes (some 1 500 to 2 500 requests); at 1
//! request per second, in about half an hour, saying `InsufficientData` (below 500
//! requests) then `Continue` while it waits. Tighter margins would make quiet services wait for hours at 1 %; a regression
//! slipping through a step meets the same test, with more traffic, in the next one.
//!
//! # Missing, thin and odd data
//! A missing scrape (None) is skipped: the next scrape's increase covers the gap, as one
//! larger batch. A counter lower than before is a restart, and its value is the increase
//! since. The first scrape of a metric anchors its counters (a stable version's counters
//! have years in them). Events that arrive while a version has no exposure are held back
//! and merged into the next batch. Counts may be fractional (Prometheus `increase()`
//! extrapolates); the binomial likelihood extends to them. NaN, infinite, negative or
//! absurd (> 1e250) counters are refused with a message naming the metric, the version
//! and the field, and change nothing. Thin or missing data never fails a canary: it can
//! only leave the evidence where it is, and a step without `min_exposure` of canary
//! traffic is `InsufficientData`, not a failure.
//!
//! # The reference: baseline, or baseline and stable
//! The deployer passes either the baseline's counters (a fresh copy of the previous
//! version at the canary's share) or the baseline's and stable's summed. Pooling is what
//! makes a 4× regression at 10 % of 100 requests per second detectable within a minute:
//! against the baseline alone, each error's share carries less information (half the
//! events come from a reference as small as the canary) and no test at α_m = 0.005 can
//! reach its threshold in much under two minutes on average; the benchmark measures both
//! (about 60 s and 130 s median). The cost of pooling is that stable is warm and the
//! canary fresh: a cold-start difference that the baseline would cancel counts against
//! the canary. The tolerance covers a persistent difference of up to 10 %; a service
//! with larger warm-up effects should pass the baseline alone.
//!
//! # The simulation and the benchmark
//! [`sim`] generates seeded rollouts (Poisson arrivals, errors and lognormal latencies,
//! diurnal load, shared over-dispersion, missing scrapes, thin traffic, stepped splits)
//! and re-implements the published rules of Flagger, Argo Rollouts' analysis and
//! Kayenta's Mann-Whitney judge; `benches/canary.rs` runs every judge on the same
//! rollouts and prints detection times and false rollbacks side by side.

mod config;
mod error;
mod judge;
mod replay;
pub mod sim;
pub mod stats;

pub use config::{Direction, JudgeConfig, MAX_TOLERANCE, MetricSpec, Trust};
pub use error::JudgeError;
pub use judge::{
    Counter, Decision, Judge, MAX_COUNTER, MetricEvidence, MetricVerdict, Sample, Verdict,
};
pub use replay::{RecordedSample, RecordedStep, Recording, replay};
