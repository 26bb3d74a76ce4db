//! The absolute guards a canary must pass at every step, whatever the comparison with the
//! baseline says: an error-rate ceiling and a p99 latency ceiling, judged only over
//! enough requests.

use std::time::Duration;

use crate::Observed;

/// Absolute limits for one slot's window of traffic.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Guards {
    /// The highest acceptable share of failed requests (0.02 = 2 %). Default 0.02.
    pub max_error_rate: f64,
    /// The highest acceptable 99th-percentile latency. Default 500 ms.
    pub max_p99: Duration,
    /// Fewer requests than this say nothing either way. Default 100.
    pub min_requests: u64,
}

impl Default for Guards {
    fn default() -> Guards {
        Guards {
            max_error_rate: 0.02,
            max_p99: Duration::from_millis(500),
            min_requests: 100,
        }
    }
}

/// What the guards make of a window.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GuardVerdict {
    /// Every limit holds over enough requests.
    Healthy,
    /// A limit is exceeded; `reason` names the figures and the limits, for people.
    Unhealthy { reason: String },
    /// Too few requests to judge: wait for more traffic.
    InsufficientData { seen: u64, needed: u64 },
    /// Enough requests but no latency figure (no histogram, no p99 from the source): the
    /// window cannot be judged healthy, and a missing metric is no reason to roll back.
    MissingData { reason: String },
}

impl Guards {
    /// Judges one window (see [`Observed::since`]). An exceeded limit wins over a missing
    /// latency figure: an error rate too high is reason enough.
    pub fn judge(&self, window: &Observed) -> GuardVerdict {
        if window.requests < self.min_requests {
            return GuardVerdict::InsufficientData {
                seen: window.requests,
                needed: self.min_requests,
            };
        }
        let mut problems = Vec::new();
        // Counts far beyond 2^53 lose precision as f64, which a ratio does not mind.
        let error_rate = window.errors as f64 / window.requests as f64;
        if error_rate > self.max_error_rate {
            problems.push(format!(
                "error rate {} over {} requests exceeds {}",
                percent(error_rate),
                thousands(window.requests),
                percent(self.max_error_rate)
            ));
        }
        let p99 = window.p99();
        if let Some(p99) = p99
            && p99 > self.max_p99
        {
            problems.push(format!(
                "p99 latency {} over {} requests exceeds {}",
                milliseconds(p99),
                thousands(window.requests),
                milliseconds(self.max_p99)
            ));
        }
        if !problems.is_empty() {
            return GuardVerdict::Unhealthy {
                reason: problems.join("; "),
            };
        }
        if p99.is_none() {
            return GuardVerdict::MissingData {
                reason: format!(
                    "no p99 latency figure for {} requests: the source reports no latency",
                    thousands(window.requests)
                ),
            };
        }
        GuardVerdict::Healthy
    }
}

/// `0.041` → `4.1 %`, `0.02` → `2 %`, `0.0005` → `0.05 %`.
fn percent(ratio: f64) -> String {
    let value = ratio * 100.0;
    let decimals = if value != 0.0 && value.abs() < 0.1 {
        2
    } else {
        1
    };
    let text = format!("{value:.decimals$}");
    let text = if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.')
    } else {
        &text
    };
    format!("{text} %")
}

/// `1203` → `1,203`.
fn thousands(value: u64) -> String {
    let digits = value.to_string();
    let mut text = String::with_capacity(digits.len() + digits.len() / 3);
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index).is_multiple_of(3) {
            text.push(',');
        }
        text.push(digit);
    }
    text
}

/// `612.4 ms` → `612 ms`; below 10 ms one decimal.
fn milliseconds(duration: Duration) -> String {
    if duration == Duration::MAX {
        return "more than the largest histogram bucket".to_owned();
    }
    let value = duration.as_secs_f64() * 1000.0;
    if value < 10.0 {
        format!("{value:.1} ms")
    } else {
        format!("{} ms", thousands(value.round() as u64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_are_written_for_people() {
        assert_eq!(percent(0.041), "4.1 %");
        assert_eq!(percent(0.02), "2 %");
        assert_eq!(percent(0.0005), "0.05 %");
        assert_eq!(percent(0.0), "0 %");
        assert_eq!(thousands(1_203), "1,203");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000_000), "1,000,000");
        assert_eq!(milliseconds(Duration::from_micros(612_400)), "612 ms");
        assert_eq!(milliseconds(Duration::from_micros(2_500)), "2.5 ms");
    }
}
