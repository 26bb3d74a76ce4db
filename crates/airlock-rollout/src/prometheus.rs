//! Per-slot measurements from Prometheus: the operator's PromQL templates, filled with a
//! slot's name and commit, evaluated as instant queries.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use crate::types::validate_commit;
use crate::{Observed, RolloutError, Slot};

/// The PromQL templates, with `{version}` (the slot's commit) and `{slot}` (`stable`,
/// `baseline`, `canary`) placeholders, usually inside label matchers:
/// `sum(http_requests_total{version="{version}",slot="{slot}"})`.
///
/// Each query must return one sample (a scalar, or a vector of one series: aggregate with
/// `sum`). `requests` and `errors` are cumulative counts; a query that returns no series
/// is [`RolloutError::NoData`], never zero, since a missing metric must not pass for a
/// slot without errors. When "no 5xx series yet" does mean zero, say so in the query:
/// `sum(x{code=~"5.."}) or (0 * sum(x))` is 0 while `x` exists and nothing when it does
/// not. `latency_p99`, in seconds, is optional; no series or NaN (no traffic in its
/// window) gives `p99: None`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrometheusQueries {
    pub requests: String,
    pub errors: String,
    pub latency_p99: Option<String>,
}

impl Default for PrometheusQueries {
    /// Templates for the conventional `http_requests_total{code}` counter and
    /// `http_request_duration_seconds` histogram, labelled with `version` and `slot`.
    fn default() -> PrometheusQueries {
        let selector = r#"version="{version}",slot="{slot}""#;
        PrometheusQueries {
            requests: format!("sum(http_requests_total{{{selector}}})"),
            errors: format!(
                r#"sum(http_requests_total{{{selector},code=~"5.."}}) or (0 * sum(http_requests_total{{{selector}}}))"#
            ),
            latency_p99: Some(format!(
                "histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket{{{selector}}}[1m])))"
            )),
        }
    }
}

/// Reads per-slot measurements from a Prometheus server's HTTP API
/// (`GET BASE_URL/api/v1/query`), directly: `HTTP_PROXY` and the like are ignored, so the
/// server's environment cannot redirect its metrics.
///
/// Values substituted into templates are checked (commits are hexadecimal, slots are the
/// three fixed names) and escaped as PromQL string contents all the same, so no value can
/// change a query's shape.
#[derive(Clone, Debug)]
pub struct PrometheusSource {
    /// `http://host:port` (a path prefix is allowed), without a trailing `/api/...`.
    pub base_url: String,
    pub queries: PrometheusQueries,
    /// The limit for one query, connection included. Default 10 s.
    pub timeout: Duration,
}

/// The JSON envelope of `/api/v1/query`.
#[derive(Deserialize)]
struct Envelope {
    status: String,
    #[serde(default)]
    data: Option<QueryData>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
struct QueryData {
    #[serde(rename = "resultType")]
    result_type: String,
    result: serde_json::Value,
}

#[derive(Deserialize)]
struct VectorSample {
    value: (f64, String),
}

impl PrometheusSource {
    /// A source for `base_url` with the default timeout. Fails if the URL is not
    /// `http://` or `https://`.
    pub fn new(
        base_url: impl Into<String>,
        queries: PrometheusQueries,
    ) -> Result<PrometheusSource, RolloutError> {
        let base_url = base_url.into();
        if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
            return Err(RolloutError::InvalidOption {
                what: "Prometheus base URL",
                value: base_url,
                accepted: "an http:// or https:// URL such as http://127.0.0.1:9090",
            });
        }
        Ok(PrometheusSource {
            base_url,
            queries,
            timeout: Duration::from_secs(10),
        })
    }

    /// Evaluates `promql` now and returns its one value, `None` when it returned no
    /// series. Fails when it returned several series (aggregate them), a range vector or
    /// a string, or when Prometheus refuses it or cannot be reached.
    pub fn query(&self, promql: &str) -> Result<Option<f64>, RolloutError> {
        self.query_with(&self.agent(), promql)
    }

    /// An HTTP client for one round of queries: no redirects, no proxy, the timeout.
    fn agent(&self) -> ureq::Agent {
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .proxy(None)
            .timeout_global(Some(self.timeout))
            .build()
            .into()
    }

    fn query_with(&self, agent: &ureq::Agent, promql: &str) -> Result<Option<f64>, RolloutError> {
        let url = format!("{}/api/v1/query", self.base_url.trim_end_matches('/'));
        let transport = |message: String| RolloutError::PrometheusTransport {
            url: url.clone(),
            message,
        };
        let mut response = agent
            .get(&url)
            .query("query", promql)
            .call()
            .map_err(|error| transport(error.to_string()))?;
        let status = response.status().as_u16();
        let body = response
            .body_mut()
            .with_config()
            .limit(16 << 20)
            .read_to_vec()
            .map_err(|error| transport(error.to_string()))?;
        let refused = |message: String| RolloutError::PrometheusQuery {
            query: promql.to_owned(),
            message,
        };
        let envelope: Envelope = serde_json::from_slice(&body).map_err(|error| {
            transport(format!(
                "HTTP {status} with an answer that is not the query API's JSON ({error}): {}",
                String::from_utf8_lossy(&body[..body.len().min(300)])
            ))
        })?;
        if envelope.status != "success" {
            return Err(refused(envelope.error.unwrap_or_else(|| {
                format!("status `{}` (HTTP {status})", envelope.status)
            })));
        }
        let Some(data) = envelope.data else {
            return Err(refused("the answer has no data".to_owned()));
        };
        let unexpected = |error: serde_json::Error| refused(format!("unexpected result: {error}"));
        let value = match data.result_type.as_str() {
            "scalar" => {
                let (_, value): (f64, String) =
                    serde_json::from_value(data.result).map_err(unexpected)?;
                value
            }
            "vector" => {
                let mut samples: Vec<VectorSample> =
                    serde_json::from_value(data.result).map_err(unexpected)?;
                match samples.len() {
                    0 => return Ok(None),
                    1 => samples.remove(0).value.1,
                    count => {
                        return Err(refused(format!(
                            "it returned {count} series where one is needed; aggregate them, e.g. with sum(...)"
                        )));
                    }
                }
            }
            other => {
                return Err(refused(format!(
                    "it returned a {other} where an instant vector or a scalar is needed"
                )));
            }
        };
        parse_sample_value(&value)
            .map(Some)
            .ok_or_else(|| refused(format!("its value `{value}` is not a number")))
    }

    /// The value of a counter query `template` for `slot` running `commit`: a finite
    /// number ≥ 0. A query without data is [`RolloutError::NoData`], never zero.
    pub fn count(&self, template: &str, slot: Slot, commit: &str) -> Result<f64, RolloutError> {
        self.count_with(&self.agent(), template, slot, commit)
    }

    fn count_with(
        &self,
        agent: &ureq::Agent,
        template: &str,
        slot: Slot,
        commit: &str,
    ) -> Result<f64, RolloutError> {
        validate_commit(commit)?;
        let query = fill(template, slot, commit);
        match self.query_with(agent, &query)? {
            None => Err(RolloutError::NoData { slot, query }),
            Some(value) if value.is_finite() && value >= 0.0 => Ok(value),
            Some(value) => Err(RolloutError::PrometheusQuery {
                query,
                message: format!("a count must be a finite number ≥ 0, not {value}"),
            }),
        }
    }

    /// The cumulative requests and errors, and the p99 latency if a query is configured,
    /// of each `(slot, commit)`. Fails on the first query that fails; a requests or errors
    /// query without data is [`RolloutError::NoData`].
    pub fn observe(
        &self,
        slots: &[(Slot, &str)],
    ) -> Result<BTreeMap<Slot, Observed>, RolloutError> {
        let agent = self.agent();
        let mut observed = BTreeMap::new();
        for &(slot, commit) in slots {
            // Counters are whole; `as` saturates for absurd values.
            let count = |template: &str| -> Result<u64, RolloutError> {
                Ok(self.count_with(&agent, template, slot, commit)?.round() as u64)
            };
            let requests = count(&self.queries.requests)?;
            let errors = count(&self.queries.errors)?;
            let p99 = match &self.queries.latency_p99 {
                None => None,
                Some(template) => {
                    let query = fill(template, slot, commit);
                    match self.query_with(&agent, &query)? {
                        Some(seconds) if seconds.is_finite() && seconds >= 0.0 => {
                            Duration::try_from_secs_f64(seconds).ok()
                        }
                        // NaN: no requests in the query's window; +Inf: beyond the last bucket.
                        Some(seconds) if seconds == f64::INFINITY => Some(Duration::MAX),
                        _ => None,
                    }
                }
            };
            observed.insert(
                slot,
                Observed {
                    requests,
                    errors,
                    latency: None,
                    p99,
                },
            );
        }
        Ok(observed)
    }
}

/// Prometheus's sample value text: a float, `NaN`, `+Inf` or `-Inf`.
fn parse_sample_value(value: &str) -> Option<f64> {
    match value {
        "NaN" => Some(f64::NAN),
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        other => other.parse().ok(),
    }
}

/// Fills a template's `{slot}` and `{version}` placeholders.
fn fill(template: &str, slot: Slot, commit: &str) -> String {
    template
        .replace("{slot}", &escape_label_value(slot.as_str()))
        .replace("{version}", &escape_label_value(commit))
}

/// Escapes text for the inside of a double-quoted PromQL string.
fn escape_label_value(value: &str) -> String {
    let mut escaped = String::with_capacity(value.len());
    for character in value.chars() {
        match character {
            '\\' => escaped.push_str("\\\\"),
            '"' => escaped.push_str("\\\""),
            '\'' => escaped.push_str("\\'"),
            '`' => escaped.push_str("\\`"),
            '\n' => escaped.push_str("\\n"),
            '\r' => escaped.push_str("\\r"),
            '\t' => escaped.push_str("\\t"),
            other => escaped.push(other),
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_are_filled_with_escaped_values() {
        let template = r#"sum(x{version="{version}",slot="{slot}"})"#;
        assert_eq!(
            fill(template, Slot::Canary, "abc123"),
            r#"sum(x{version="abc123",slot="canary"})"#
        );
        assert_eq!(escape_label_value(r#"a"b\c"#), r#"a\"b\\c"#);
    }

    #[test]
    fn a_commit_that_is_not_hex_is_refused_before_any_query() {
        let source = PrometheusSource::new("http://127.0.0.1:1", PrometheusQueries::default())
            .expect("valid URL");
        let error = source
            .observe(&[(Slot::Canary, r#"x"} or vector(1) or {a=""#)])
            .expect_err("refused");
        assert!(
            matches!(error, RolloutError::InvalidCommit { .. }),
            "{error}"
        );
    }

    #[test]
    fn sample_values_include_prometheus_specials() {
        assert_eq!(parse_sample_value("12"), Some(12.0));
        assert!(parse_sample_value("NaN").is_some_and(f64::is_nan));
        assert_eq!(parse_sample_value("+Inf"), Some(f64::INFINITY));
        assert_eq!(parse_sample_value("x"), None);
    }
}
