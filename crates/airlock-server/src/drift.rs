//! Drift: a target's cumulative degradation across its last rollouts, each of which
//! passed the canary judge alone. Ten changes that each add 3 % to the p99 pass every
//! canary and still leave production a third slower; this compares the newest steady
//! state with the stable version's figures before the oldest rollout in the window.

use airlock_core::deploy::DriftConfig;
use airlock_judge::stats::rate_confidence_bounds;
use airlock_store::SteadyState;

/// The requests a figure needs before drift is judged on it.
const MIN_REQUESTS: i64 = 500;
/// The p99 must also grow by this much: sub-millisecond tails move by a third from one
/// run to the next on a busy machine, and no user notices them.
const MIN_P99_GROWTH_MS: f64 = 5.0;
/// The confidence of each error-rate bound.
const ALPHA: f64 = 0.01;

/// Drift beyond the budget across `states` (newest first), with the reason and the
/// evidence; None within budget or without enough data.
pub(crate) fn exceeded(
    states: &[SteadyState],
    config: &DriftConfig,
) -> Option<(String, serde_json::Value)> {
    let (newest, oldest) = (states.first()?, states.last()?);
    if newest.requests < MIN_REQUESTS || oldest.before_requests < MIN_REQUESTS {
        return None;
    }
    let evidence = serde_json::json!({
        "changes": states.iter().map(|s| s.change_id.as_str()).collect::<Vec<_>>(),
        "before": {
            "change": oldest.change_id.as_str(),
            "requests": oldest.before_requests,
            "errors": oldest.before_errors,
            "p99_ms": oldest.before_p99_ms,
        },
        "now": {
            "change": newest.change_id.as_str(),
            "requests": newest.requests,
            "errors": newest.errors,
            "p99_ms": newest.p99_ms,
        },
        "p99_budget": config.p99_budget,
        "error_budget": config.error_budget,
    });
    let count = states.len();
    if let (Some(now), Some(before)) = (newest.p99_ms, oldest.before_p99_ms)
        && before > 0.0
        && now > before * (1.0 + config.p99_budget)
        && now - before >= MIN_P99_GROWTH_MS
    {
        return Some((
            format!(
                "over the last {count} changes the p99 went from {before:.1} ms to {now:.1} ms (+{:.0} %, budget +{:.0} %), though each change passed alone",
                100.0 * (now / before - 1.0),
                100.0 * config.p99_budget
            ),
            evidence,
        ));
    }
    // Error rates are compared by bounds, not point figures: the newest at least, the
    // oldest at most, what their counts show with 99 % confidence.
    let (now_lower, _) =
        rate_confidence_bounds(newest.errors as f64, newest.requests as f64, ALPHA);
    let (_, before_upper) = rate_confidence_bounds(
        oldest.before_errors as f64,
        oldest.before_requests as f64,
        ALPHA,
    );
    let before_upper = before_upper?;
    if now_lower > before_upper * (1.0 + config.error_budget) {
        return Some((
            format!(
                "over the last {count} changes the error rate went from at most {:.3} % to at least {:.3} % (budget ×{:.2}), though each change passed alone",
                100.0 * before_upper,
                100.0 * now_lower,
                1.0 + config.error_budget
            ),
            evidence,
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(change: &str, now: (i64, i64, f64), before: (i64, i64, f64)) -> SteadyState {
        SteadyState {
            target: "production".to_owned(),
            change_id: change.parse().unwrap(),
            completed_ms: 0,
            requests: now.0,
            errors: now.1,
            p99_ms: Some(now.2),
            before_requests: before.0,
            before_errors: before.1,
            before_p99_ms: Some(before.2),
        }
    }

    const A: &str = "chg_01M85ZW5MNE58AD6A70WY69WXA";
    const B: &str = "chg_01M85ZW5MNE58AD6A70WY69WXB";
    const C: &str = "chg_01M85ZW5MNE58AD6A70WY69WXC";

    fn config() -> DriftConfig {
        DriftConfig {
            changes: 10,
            p99_budget: 0.25,
            error_budget: 1.0,
        }
    }

    #[test]
    fn small_steps_that_add_up_exceed_the_budget() {
        // Each change adds 10 % to the p99: within any canary's tolerance, +33 % in all.
        let newest_first = [
            state(C, (50_000, 50, 133.0), (50_000, 50, 121.0)),
            state(B, (50_000, 50, 121.0), (50_000, 50, 110.0)),
            state(A, (50_000, 50, 110.0), (50_000, 50, 100.0)),
        ];
        let (reason, evidence) = exceeded(&newest_first, &config()).expect("drift");
        assert!(
            reason.contains("from 100.0 ms to 133.0 ms (+33 %"),
            "{reason}"
        );
        assert_eq!(evidence["before"]["change"], A);
        // The two newest alone are within budget (+21 %).
        assert_eq!(exceeded(&newest_first[..2], &config()), None);
        // +34 % of a sub-millisecond p99 is noise, not drift.
        let tiny = [state(A, (50_000, 50, 0.8), (50_000, 50, 0.6))];
        assert_eq!(exceeded(&tiny, &config()), None);
    }

    #[test]
    fn error_rates_drift_only_beyond_what_their_counts_can_show() {
        // 0.1 % to 0.5 % on 100 000 requests each: beyond doubling, with confidence.
        let states = [
            state(B, (100_000, 500, 100.0), (100_000, 300, 100.0)),
            state(A, (100_000, 200, 100.0), (100_000, 100, 100.0)),
        ];
        let (reason, _) = exceeded(&states, &config()).expect("drift");
        assert!(reason.contains("error rate"), "{reason}");
        // 0.1 % to 0.15 %: within the budget.
        let within = [state(A, (100_000, 150, 100.0), (100_000, 100, 100.0))];
        assert_eq!(exceeded(&within, &config()), None);
        // The same rates on 2 000 requests are not evidence of anything.
        let thin = [
            state(B, (2_000, 6, 100.0), (2_000, 4, 100.0)),
            state(A, (2_000, 4, 100.0), (2_000, 2, 100.0)),
        ];
        assert_eq!(exceeded(&thin, &config()), None);
        // Too few requests to judge at all.
        let few = [state(A, (400, 50, 900.0), (400, 0, 100.0))];
        assert_eq!(exceeded(&few, &config()), None);
    }
}
