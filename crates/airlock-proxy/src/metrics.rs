//! `VersionMetrics`: what the proxy measured for one route name, and how a request's
//! outcome is recorded into it.

use std::time::Duration;

use crate::LatencyHistogram;

/// Cumulative measurements of one route name since the proxy started.
///
/// Invariants of every snapshot the proxy hands out (it records a request's whole outcome
/// under one per-route lock): `errors == status_5xx + connect_failures`,
/// `latency.count() == requests`, and every field is at least what an earlier snapshot of
/// the same name held. Requests the proxy refused before choosing a route (503 "no
/// backend") belong to no route and are not counted anywhere.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct VersionMetrics {
    /// Responses the proxy sent for requests routed to this backend, failures included.
    pub requests: u64,
    /// `status_5xx + connect_failures`.
    pub errors: u64,
    /// The backend answered with a 5xx status (passed on to the client as is).
    pub status_5xx: u64,
    /// The proxy could not get a response head from the backend (refused, reset, connect
    /// or response-head timeout) and answered 502 or 504 itself.
    pub connect_failures: u64,
    /// Time from the request head received to the response head sent, for every request
    /// counted in `requests`.
    pub latency: LatencyHistogram,
}

impl VersionMetrics {
    /// What happened between `earlier` and `self`, two snapshots of the same name: the
    /// field-wise difference, saturating at zero if `earlier` is in fact later.
    pub fn since(&self, earlier: &VersionMetrics) -> VersionMetrics {
        VersionMetrics {
            requests: self.requests.saturating_sub(earlier.requests),
            errors: self.errors.saturating_sub(earlier.errors),
            status_5xx: self.status_5xx.saturating_sub(earlier.status_5xx),
            connect_failures: self
                .connect_failures
                .saturating_sub(earlier.connect_failures),
            latency: self.latency.since(&earlier.latency),
        }
    }

    /// `errors / requests`, in `[0, 1]` for snapshots the proxy produced; `None` when no
    /// request was counted (no evidence either way).
    pub fn error_rate(&self) -> Option<f64> {
        (self.requests > 0).then(|| self.errors as f64 / self.requests as f64)
    }

    /// Records one response sent for a request routed here.
    pub(crate) fn record(&mut self, outcome: Outcome, latency: Duration) {
        self.requests = self.requests.saturating_add(1);
        self.latency.record(latency);
        match outcome {
            Outcome::Answered { server_error: true } => {
                self.status_5xx = self.status_5xx.saturating_add(1);
                self.errors = self.errors.saturating_add(1);
            }
            Outcome::BackendFailed => {
                self.connect_failures = self.connect_failures.saturating_add(1);
                self.errors = self.errors.saturating_add(1);
            }
            Outcome::Answered {
                server_error: false,
            }
            | Outcome::ClientFailed => {}
        }
    }
}

/// How one proxied request ended, as far as the backend's record is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The backend sent a response head; `server_error` when its status was 5xx.
    Answered { server_error: bool },
    /// No response head from the backend: refused, reset, timed out.
    BackendFailed,
    /// The client's request body failed while being forwarded: not the backend's fault.
    ClientFailed,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_keeps_the_invariants_and_since_subtracts() {
        let mut metrics = VersionMetrics::default();
        assert_eq!(metrics.error_rate(), None);
        let ms = Duration::from_millis;
        metrics.record(
            Outcome::Answered {
                server_error: false,
            },
            ms(1),
        );
        let earlier = metrics.clone();
        metrics.record(Outcome::Answered { server_error: true }, ms(2));
        metrics.record(Outcome::BackendFailed, ms(3));
        metrics.record(Outcome::ClientFailed, ms(4));
        assert_eq!((metrics.requests, metrics.errors), (4, 2));
        assert_eq!((metrics.status_5xx, metrics.connect_failures), (1, 1));
        assert_eq!(metrics.latency.count(), 4);
        assert_eq!(metrics.error_rate(), Some(0.5));

        let difference = metrics.since(&earlier);
        assert_eq!((difference.requests, difference.errors), (3, 2));
        assert_eq!(difference.latency.count(), 3);
        assert_eq!(difference.error_rate(), Some(2.0 / 3.0));
        assert_eq!(earlier.since(&metrics), VersionMetrics::default());
    }
}
