//! The watch after a rollout: for `deploy.watch.period` after a change reaches 100 %,
//! production is compared with what the stable version measured before the rollout. A
//! regression (error rate above `error_ratio` times the one before; more than 1 % of
//! requests slower than the p99 before × (1 + `latency_increase`)) alerts and, when
//! configured, rolls the change back.
//!
//! Each comparison is an anytime-valid lower confidence bound (the judge's gamma-mixture
//! bound on a rate), so checking it at every poll for a day does not inflate false
//! alarms: at most α = 1 % over the whole watch, split between errors and latency.

use std::time::Duration;

use airlock_core::deploy::WatchConfig;
use airlock_core::ids::ChangeId;
use airlock_judge::stats::rate_confidence_bounds;
use airlock_rollout::Observed;

/// The false-alarm rate of one watch, both comparisons together.
const ALPHA: f64 = 0.01;
/// A pre-deployment baseline needs this many requests to be one.
const MIN_BASELINE_REQUESTS: u64 = 100;
/// A slow request is also at least this much slower than the p99 before: a tail under
/// a millisecond moves by a third between runs on a busy machine, unnoticed by users.
const MIN_LATENCY_INCREASE: Duration = Duration::from_millis(5);
/// The lowest error rate a regression must exceed, so that a stable version with no
/// errors at all does not make the first error a regression.
const MIN_ERROR_RATE: f64 = 0.001;

/// What the stable version measured before the rollout, as recorded in the
/// `rollout.completed` event.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Before {
    pub(crate) requests: u64,
    pub(crate) errors: u64,
    pub(crate) p99: Option<Duration>,
}

impl Before {
    pub(crate) fn of(observed: &Observed) -> Before {
        Before {
            requests: observed.requests,
            errors: observed.errors,
            p99: observed.p99(),
        }
    }

    pub(crate) fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "requests": self.requests,
            "errors": self.errors,
            "p99_ms": self.p99.map(|p| p.as_secs_f64() * 1000.0),
        })
    }

    fn from_json(value: &serde_json::Value) -> Option<Before> {
        Some(Before {
            requests: value["requests"].as_u64()?,
            errors: value["errors"].as_u64()?,
            p99: value["p99_ms"]
                .as_f64()
                .and_then(|ms| Duration::try_from_secs_f64(ms / 1000.0).ok()),
        })
    }
}

/// The watch of the change production runs.
#[derive(Debug)]
pub(crate) struct Watch {
    pub(crate) change: ChangeId,
    /// The production commit, for metrics sources that query by version.
    pub(crate) commit: String,
    until_ms: i64,
    /// None: nothing to compare with (no baseline) or the watch has ended.
    before: Option<Before>,
    /// Production's measurement at the watch's first look: the window starts there.
    anchor: Option<Observed>,
}

/// What one look at production found.
#[derive(Debug, PartialEq)]
pub(crate) enum Look {
    Quiet,
    Regressed {
        reason: String,
        evidence: serde_json::Value,
    },
    Completed {
        evidence: serde_json::Value,
    },
}

impl Watch {
    /// The watch of `change`, rolled out at `completed_at_ms` with the `rollout.completed`
    /// event `data`; an ended watch when `ended` (its regression or completion is
    /// recorded) or when the rollout recorded no usable baseline.
    pub(crate) fn new(
        change: ChangeId,
        commit: String,
        completed_at_ms: i64,
        data: &serde_json::Value,
        config: &WatchConfig,
        ended: bool,
    ) -> Watch {
        let before = Before::from_json(&data["before"])
            .filter(|before| !ended && before.requests >= MIN_BASELINE_REQUESTS);
        Watch {
            change,
            commit,
            until_ms: completed_at_ms.saturating_add(config.period.as_millis() as i64),
            before,
            anchor: None,
        }
    }

    pub(crate) fn active(&self) -> bool {
        self.before.is_some()
    }

    /// Compares production's cumulative measurement `now` with the baseline. A
    /// regression or the end of the period ends the watch.
    pub(crate) fn look(&mut self, now: &Observed, now_ms: i64, config: &WatchConfig) -> Look {
        let Some(before) = self.before.clone() else {
            return Look::Quiet;
        };
        let anchor = self.anchor.get_or_insert_with(|| now.clone());
        let window = now.since(anchor);
        let rate_before = before.errors as f64 / before.requests as f64;
        let allowed_error_rate = (rate_before * config.error_ratio).max(MIN_ERROR_RATE);
        let (error_rate_lower, _) =
            rate_confidence_bounds(window.errors as f64, window.requests as f64, ALPHA / 2.0);
        let slow = match (before.p99, window.latency.as_ref()) {
            (Some(p99), Some(histogram)) if histogram.count() > 0 => {
                let threshold = p99
                    .mul_f64(1.0 + config.latency_increase)
                    .max(p99 + MIN_LATENCY_INCREASE);
                let slow = histogram.count_above(threshold);
                let (lower, _) =
                    rate_confidence_bounds(slow as f64, histogram.count() as f64, ALPHA / 2.0);
                Some((threshold, slow, histogram.count(), lower))
            }
            _ => None,
        };
        let evidence = serde_json::json!({
            "before": before.to_json(),
            "since_rollout": {
                "requests": window.requests,
                "errors": window.errors,
                "p99_ms": window.p99().map(|p| p.as_secs_f64() * 1000.0),
            },
            "error_rate_lower_bound": error_rate_lower,
            "allowed_error_rate": allowed_error_rate,
            "slow": slow.map(|(threshold, slow, count, lower)| serde_json::json!({
                "threshold_ms": threshold.as_secs_f64() * 1000.0,
                "slow": slow,
                "requests": count,
                "share_lower_bound": lower,
                "allowed_share": 0.01,
            })),
            "alpha": ALPHA,
        });
        if error_rate_lower > allowed_error_rate {
            self.before = None;
            return Look::Regressed {
                reason: format!(
                    "after the rollout, production's error rate is {:.2} % ({} of {}), at least {:.2} % with {:.1} % confidence, above {} × the {:.2} % before it",
                    100.0 * window.errors as f64 / window.requests.max(1) as f64,
                    window.errors,
                    window.requests,
                    100.0 * error_rate_lower,
                    100.0 * (1.0 - ALPHA / 2.0),
                    config.error_ratio,
                    100.0 * rate_before,
                ),
                evidence,
            };
        }
        if let Some((threshold, slow, count, lower)) = slow
            && lower > 0.01
        {
            self.before = None;
            return Look::Regressed {
                reason: format!(
                    "after the rollout, {slow} of {count} requests took longer than {:.1} ms (the p99 before it + {:.0} %, at least 5 ms more): at least {:.2} % with {:.1} % confidence, where 1 % is allowed",
                    threshold.as_secs_f64() * 1000.0,
                    100.0 * config.latency_increase,
                    100.0 * lower,
                    100.0 * (1.0 - ALPHA / 2.0),
                ),
                evidence,
            };
        }
        if now_ms >= self.until_ms {
            self.before = None;
            return Look::Completed { evidence };
        }
        Look::Quiet
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use airlock_proxy::LatencyHistogram;

    fn config() -> WatchConfig {
        WatchConfig {
            period: Duration::from_secs(60),
            error_ratio: 1.5,
            latency_increase: 0.2,
            rollback: true,
        }
    }

    fn watch(before: serde_json::Value) -> Watch {
        let data = serde_json::json!({ "before": before });
        Watch::new(
            "chg_01M85ZW5MNE58AD6A70WY69WXS".parse().unwrap(),
            "a".repeat(40),
            1_000,
            &data,
            &config(),
            false,
        )
    }

    /// `requests` answered in `latency` each, `errors` of them failed.
    fn observed(requests: u64, errors: u64, latency: Duration) -> Observed {
        let mut histogram = LatencyHistogram::default();
        for _ in 0..requests {
            histogram.record(latency);
        }
        Observed {
            requests,
            errors,
            latency: Some(histogram),
            p99: None,
        }
    }

    fn before() -> serde_json::Value {
        serde_json::json!({ "requests": 100_000, "errors": 500, "p99_ms": 20.0 })
    }

    #[test]
    fn a_healthy_production_is_quiet_until_the_period_ends() {
        let mut watch = watch(before());
        let start = observed(1_000, 5, Duration::from_millis(10));
        assert_eq!(watch.look(&start, 2_000, &config()), Look::Quiet);
        // 0.5 % errors, as before; every request well under the p99 before.
        let later = observed(21_000, 105, Duration::from_millis(10));
        assert_eq!(watch.look(&later, 30_000, &config()), Look::Quiet);
        assert!(matches!(
            watch.look(&later, 61_000, &config()),
            Look::Completed { .. }
        ));
        assert!(!watch.active(), "a completed watch looks no more");
        assert_eq!(watch.look(&later, 62_000, &config()), Look::Quiet);
    }

    #[test]
    fn errors_above_the_ratio_and_slow_requests_are_regressions() {
        let mut errors = watch(before());
        errors.look(&observed(0, 0, Duration::ZERO), 2_000, &config());
        // 2 % errors against 0.5 % before, with ×1.5 allowed.
        let look = errors.look(
            &observed(10_000, 200, Duration::from_millis(10)),
            3_000,
            &config(),
        );
        let Look::Regressed { reason, .. } = look else {
            panic!("{look:?}");
        };
        assert!(reason.contains("error rate is 2.00 %"), "{reason}");

        let mut slow = watch(before());
        slow.look(&observed(0, 0, Duration::ZERO), 2_000, &config());
        // Every request takes 30 ms; the p99 before was 20 ms, +20 % (at least 5 ms)
        // allowed.
        let look = slow.look(
            &observed(2_000, 10, Duration::from_millis(30)),
            3_000,
            &config(),
        );
        let Look::Regressed { reason, .. } = look else {
            panic!("{look:?}");
        };
        assert!(reason.contains("longer than 25.0 ms"), "{reason}");
    }

    #[test]
    fn a_few_errors_are_not_yet_evidence_and_no_baseline_means_no_watch() {
        let mut watch = watch(before());
        watch.look(&observed(0, 0, Duration::ZERO), 2_000, &config());
        // 2 errors in 100 requests: 2 %, but far from enough to be sure it exceeds 0.75 %.
        let look = watch.look(
            &observed(100, 2, Duration::from_millis(10)),
            3_000,
            &config(),
        );
        assert_eq!(look, Look::Quiet);
        let thin = serde_json::json!({ "requests": 10, "errors": 0, "p99_ms": 20.0 });
        assert!(!self::watch(thin).active());
        assert!(!self::watch(serde_json::Value::Null).active());
    }
}
