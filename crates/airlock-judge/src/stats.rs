//! The judge's statistics: the conditional likelihood of the rate ratio on a fixed grid,
//! the mixture e-value of the fail test, the confidence sequence on the ratio, and the
//! confidence sequence on the canary's own rate.
//!
//! Public so that tests can hold these numbers against an independent computation; the
//! constants below are the whole specification (see the crate documentation for why).

use std::sync::OnceLock;

use crate::Direction;

/// The smallest rate ratio θ on the grid.
pub const GRID_MIN: f64 = 0.02;
/// The largest rate ratio θ on the grid. Bounds at an edge mean "unbounded".
pub const GRID_MAX: f64 = 50.0;
/// Grid points, log-spaced from [`GRID_MIN`] to [`GRID_MAX`]; odd, so θ = 1 is the middle
/// point, and 5 % apart.
pub const GRID_POINTS: usize = 161;
/// The fail test's prior over regressions is a normal density in ln θ centred on this
/// ratio (mirrored, 1/4, for lower-is-worse metrics)...
pub const FAIL_PRIOR_CENTER: f64 = 4.0;
/// ...with this standard deviation in ln θ, restricted to the alternative side of the
/// null boundary and normalised there.
pub const FAIL_PRIOR_LOG_SD: f64 = 0.7;
/// The confidence sequence's prior: a normal density in ln θ centred on θ = 1 with this
/// standard deviation, over the whole grid.
pub const INTERVAL_PRIOR_LOG_SD: f64 = 1.0;
/// The shape (and rate) of the gamma prior, mean 1, over s = μ/λ in the canary's rate
/// confidence sequence.
pub const RATE_PRIOR_SHAPE: f64 = 1.0;

/// The grid and the confidence sequence's normalised log weights, built once.
struct RatioGrid {
    ratios: Vec<f64>,
    log_ratios: Vec<f64>,
    interval_log_weights: Vec<f64>,
}

fn grid() -> &'static RatioGrid {
    static GRID: OnceLock<RatioGrid> = OnceLock::new();
    GRID.get_or_init(|| {
        let (low, high) = (GRID_MIN.ln(), GRID_MAX.ln());
        let step = (high - low) / (GRID_POINTS - 1) as f64;
        let log_ratios: Vec<f64> = (0..GRID_POINTS)
            .map(|k| {
                // The middle point is exactly ln 1 = 0, whatever the rounding of `step`.
                if k == GRID_POINTS / 2 {
                    0.0
                } else {
                    low + step * k as f64
                }
            })
            .collect();
        let ratios = log_ratios.iter().map(|u| u.exp()).collect();
        let interval_log_weights = normalise(
            log_ratios
                .iter()
                .map(|u| -u * u / (2.0 * INTERVAL_PRIOR_LOG_SD * INTERVAL_PRIOR_LOG_SD))
                .collect(),
        );
        RatioGrid {
            ratios,
            log_ratios,
            interval_log_weights,
        }
    })
}

/// The grid of rate ratios θ, ascending.
pub fn ratio_grid() -> &'static [f64] {
    &grid().ratios
}

/// `ln Σ exp(values)`, stable for any finite or −∞ values; −∞ for an empty or all −∞ input.
pub fn log_sum_exp(values: impl Iterator<Item = f64> + Clone) -> f64 {
    let max = values.clone().fold(f64::NEG_INFINITY, f64::max);
    if max == f64::NEG_INFINITY {
        return f64::NEG_INFINITY;
    }
    // Terms more than 50 below the maximum add less than 2e-22 relative: skipping their
    // exp() changes nothing visible and halves the cost on a peaked likelihood.
    let sum: f64 = values
        .map(|v| v - max)
        .filter(|d| *d > -50.0)
        .map(f64::exp)
        .sum();
    max + sum.ln()
}

fn normalise(mut log_weights: Vec<f64>) -> Vec<f64> {
    let total = log_sum_exp(log_weights.iter().copied());
    if total == f64::NEG_INFINITY {
        return log_weights;
    }
    for weight in &mut log_weights {
        *weight -= total;
    }
    log_weights
}

/// The fail test's normalised log prior weights on the grid: a normal density in ln θ
/// around [`FAIL_PRIOR_CENTER`] (or its inverse), on the points strictly beyond the null
/// boundary `null_ratio` in the direction of regression; −∞ elsewhere (everywhere, if
/// no grid point is beyond the boundary; the judge's tolerance limit rules that out).
pub fn fail_log_weights(null_ratio: f64, direction: Direction) -> Vec<f64> {
    let grid = grid();
    let center = match direction {
        Direction::HigherIsWorse => FAIL_PRIOR_CENTER.ln(),
        Direction::LowerIsWorse => -FAIL_PRIOR_CENTER.ln(),
    };
    normalise(
        grid.ratios
            .iter()
            .zip(&grid.log_ratios)
            .map(|(&ratio, &u)| {
                let alternative = match direction {
                    Direction::HigherIsWorse => ratio > null_ratio,
                    Direction::LowerIsWorse => ratio < null_ratio,
                };
                if alternative {
                    -(u - center) * (u - center) / (2.0 * FAIL_PRIOR_LOG_SD * FAIL_PRIOR_LOG_SD)
                } else {
                    f64::NEG_INFINITY
                }
            })
            .collect(),
    )
}

/// `ln(1 + e^x)` without overflow or loss for any finite x.
fn softplus(x: f64) -> f64 {
    if x > 0.0 {
        x + (-x).exp().ln_1p()
    } else {
        x.exp().ln_1p()
    }
}

/// The log-likelihood of the rate ratio θ = canary rate / reference rate, on the grid and
/// at one extra point (the fail test's null boundary), accumulated batch by batch.
///
/// Each batch contributes the binomial log-likelihood of the canary's share of the
/// batch's events, `e_c ln p + e_r ln(1 − p)` with `p = θ n_c / (θ n_c + n_r)`, without
/// the binomial coefficient (it cancels in every ratio used here). The rates themselves
/// cancel, so they may change from batch to batch (load, noise shared by both versions)
/// as long as their ratio does not.
#[derive(Clone, Debug)]
pub struct RatioLikelihood {
    grid_log_likelihood: Vec<f64>,
    null_ratio: f64,
    null_log_likelihood: f64,
}

impl RatioLikelihood {
    /// A likelihood with no data (zero everywhere), tracking `null_ratio` besides the
    /// grid. `null_ratio` must be finite and > 0.
    pub fn new(null_ratio: f64) -> Self {
        Self {
            grid_log_likelihood: vec![0.0; GRID_POINTS],
            null_ratio,
            null_log_likelihood: 0.0,
        }
    }

    /// Adds one batch of finite counts >= 0. A batch with no events carries no
    /// information and changes nothing; neither does one where a version has no exposure
    /// (the share is then undefined; the judge holds such batches back and merges them
    /// into the next).
    pub fn add_batch(
        &mut self,
        canary_events: f64,
        canary_exposure: f64,
        reference_events: f64,
        reference_exposure: f64,
    ) {
        let total_events = canary_events + reference_events;
        if !(total_events > 0.0 && canary_exposure > 0.0 && reference_exposure > 0.0) {
            return;
        }
        // With x = ln(θ n_c / n_r): ln p = x − softplus(x) and ln(1 − p) = −softplus(x),
        // where softplus(x) = ln(1 + θ r), r = n_c / n_r: one ln_1p per point.
        let exposure_ratio = canary_exposure / reference_exposure;
        let log_exposure_ratio = canary_exposure.ln() - reference_exposure.ln();
        let contribution = |ratio: f64, log_ratio: f64| {
            let x = log_ratio + log_exposure_ratio;
            let scaled = ratio * exposure_ratio;
            let softplus = if scaled.is_finite() && scaled > 0.0 {
                scaled.ln_1p()
            } else {
                softplus(x)
            };
            canary_events * x - total_events * softplus
        };
        let grid = grid();
        for ((value, &ratio), &u) in self
            .grid_log_likelihood
            .iter_mut()
            .zip(&grid.ratios)
            .zip(&grid.log_ratios)
        {
            *value += contribution(ratio, u);
        }
        self.null_log_likelihood += contribution(self.null_ratio, self.null_ratio.ln());
    }

    /// The log-likelihood at every grid point, in grid order.
    pub fn grid_log_likelihood(&self) -> &[f64] {
        &self.grid_log_likelihood
    }

    /// The log-likelihood at the tracked null boundary.
    pub fn null_log_likelihood(&self) -> f64 {
        self.null_log_likelihood
    }

    /// `ln E` of the fail test: E = Σ_θ w(θ) · exp(L(θ) − L(θ0)) over the alternatives,
    /// with `log_weights` from [`fail_log_weights`] for the tracked null boundary θ0.
    ///
    /// For this one-parameter family (monotone likelihood ratio in the canary's share),
    /// each term is a nonnegative supermartingale under every θ on the null side, so E is
    /// an e-process for the composite null, and Ville's inequality bounds the chance that
    /// it ever reaches 1/α by α.
    pub fn log_e_value(&self, log_weights: &[f64]) -> f64 {
        log_sum_exp(
            log_weights
                .iter()
                .zip(&self.grid_log_likelihood)
                .map(|(w, l)| w + l),
        ) - self.null_log_likelihood
    }

    /// The anytime-valid confidence sequence on θ at level 1 − α, from the mixture
    /// martingale M(θ') = Σ_θ v(θ) exp(L(θ) − L(θ')): the grid points where
    /// M < 1/α, widened by one grid point on each side (L is concave in ln θ, so the
    /// true set ends within that point). A side that reaches the grid's edge is unbounded.
    pub fn confidence_bounds(&self, alpha: f64) -> RatioBounds {
        let grid = grid();
        let log_mixture = log_sum_exp(
            grid.interval_log_weights
                .iter()
                .zip(&self.grid_log_likelihood)
                .map(|(w, l)| w + l),
        );
        let threshold = log_mixture - (1.0 / alpha).ln();
        let inside = |k: &usize| self.grid_log_likelihood[*k] > threshold;
        // The maximum of L is always inside (the mixture is at most the maximum), so
        // both searches find a point.
        let first = (0..GRID_POINTS).find(inside).unwrap_or(GRID_POINTS / 2);
        let last = (0..GRID_POINTS)
            .rev()
            .find(inside)
            .unwrap_or(GRID_POINTS / 2);
        RatioBounds {
            lower: if first == 0 {
                0.0
            } else {
                grid.ratios[first - 1]
            },
            upper: if last == GRID_POINTS - 1 {
                GRID_MAX
            } else {
                grid.ratios[last + 1]
            },
            lower_bounded: first > 0,
            upper_bounded: last < GRID_POINTS - 1,
        }
    }
}

/// An anytime-valid interval for the rate ratio θ.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RatioBounds {
    /// 0 when unbounded below.
    pub lower: f64,
    /// [`GRID_MAX`] when unbounded above.
    pub upper: f64,
    pub lower_bounded: bool,
    pub upper_bounded: bool,
}

/// `ln Γ(x)` for x > 0 (Lanczos, g = 7, 9 terms; about 15 significant digits).
pub fn ln_gamma(x: f64) -> f64 {
    const COEFFICIENTS: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        // Reflection: Γ(x) Γ(1 − x) = π / sin(πx).
        let pi = std::f64::consts::PI;
        return (pi / (pi * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut sum = COEFFICIENTS[0];
    for (i, c) in COEFFICIENTS.iter().enumerate().skip(1) {
        sum += c / (x + i as f64);
    }
    let t = x + 7.5;
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + sum.ln()
}

/// `ln E(λ)` of the canary-rate mixture at `expected = λ · exposure`: with μ = sλ and s ~
/// Gamma(a, a), E(λ) = e^x · a^a Γ(a + e) / (Γ(a) (x + a)^(a + e)), a martingale under the
/// rate λ (a Poisson process with a fixed mixture of alternatives).
fn rate_log_e_value(events: f64, expected: f64, log_gamma_ratio: f64) -> f64 {
    let a = RATE_PRIOR_SHAPE;
    expected + a * a.ln() + log_gamma_ratio - (a + events) * (expected + a).ln()
}

/// The anytime-valid confidence sequence, at level 1 − α, on the canary's own rate
/// (events per unit of exposure) after `events` in `exposure`: `(lower, upper)`, with
/// `upper` = None when there is no exposure (unbounded). Inputs finite and >= 0.
///
/// The interval is {λ : E(λ) < 1/α}; ln E is convex in λ with its minimum (<= 0) at the
/// observed rate, so both ends are found by Newton's method from outside, to 1e-12
/// relative, and err on the wide side.
pub fn rate_confidence_bounds(events: f64, exposure: f64, alpha: f64) -> (f64, Option<f64>) {
    if exposure <= 0.0 {
        return (0.0, None);
    }
    let a = RATE_PRIOR_SHAPE;
    let target = (1.0 / alpha).ln();
    let log_gamma_ratio = ln_gamma(a + events) - ln_gamma(a);
    let f = |expected: f64| rate_log_e_value(events, expected, log_gamma_ratio) - target;
    let slope = |expected: f64| 1.0 - (a + events) / (expected + a);
    // f is convex with its minimum (< 0) at `events`: Newton's method started outside a
    // root moves towards it monotonically and stays outside, so every iterate is a
    // conservative bound; it stops when a step is below 1e-12 relative.
    let newton = |mut x: f64| {
        for _ in 0..100 {
            let step = f(x) / slope(x);
            if !step.is_finite() {
                break;
            }
            x -= step;
            if step.abs() <= 1e-12 * x.abs().max(1e-300) {
                break;
            }
        }
        x
    };
    let mut outside = events + (2.0 * target * events.max(1.0)).sqrt() + 2.0 * target;
    while f(outside) < 0.0 {
        outside *= 2.0;
    }
    let upper_expected = newton(outside);
    let lower_expected = if f(0.0) < 0.0 { 0.0 } else { newton(0.0) };
    (lower_expected / exposure, Some(upper_expected / exposure))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_is_log_spaced_with_one_in_the_middle() {
        let grid = ratio_grid();
        assert_eq!(grid.len(), GRID_POINTS);
        assert_eq!(grid[GRID_POINTS / 2], 1.0);
        assert!((grid[0] - GRID_MIN).abs() < 1e-12);
        assert!((grid[GRID_POINTS - 1] - GRID_MAX).abs() < 1e-9);
    }

    #[test]
    fn ln_gamma_matches_factorials() {
        let mut factorial = 1.0_f64;
        for n in 1..30 {
            factorial *= n as f64;
            let expected = factorial.ln();
            assert!(
                (ln_gamma(n as f64 + 1.0) - expected).abs() <= 1e-12 * expected.max(1.0),
                "ln Γ({}) = {} vs {expected}",
                n + 1,
                ln_gamma(n as f64 + 1.0)
            );
        }
        assert!((ln_gamma(0.5) - std::f64::consts::PI.sqrt().ln()).abs() < 1e-13);
    }

    #[test]
    fn rate_bounds_contain_the_observed_rate() {
        for (events, exposure) in [(0.0, 100.0), (3.0, 1000.0), (250.5, 5e4), (1e7, 1e9)] {
            let (lower, upper) = rate_confidence_bounds(events, exposure, 0.005);
            let upper = upper.unwrap();
            let rate = events / exposure;
            assert!(lower <= rate && rate <= upper, "{lower} {rate} {upper}");
        }
        assert_eq!(rate_confidence_bounds(1.0, 0.0, 0.01), (0.0, None));
    }
}
