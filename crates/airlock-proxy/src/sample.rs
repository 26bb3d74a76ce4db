//! A small HTTP service with configurable errors and latency, put behind the proxy by
//! airlock's demo and deployment tests (`airlock sample-service`).
//!
//! Endpoints:
//! - `/` (any method): after the configured latency, 200 `ok <version>\n`, or 500
//!   `error <version>\n` for a deterministic share `error_rate` of requests: the n-th
//!   request (from 0) fails when `floor((n + 1) * rate) > floor(n * rate)`, so the first
//!   `N` requests hold exactly `floor(N * rate)` failures (0.5 fails every second one).
//! - `/metrics`: Prometheus text exposition format 0.0.4 for the requests to `/`:
//!   `sample_requests_total{version, code}` (codes 200 and 500, always present) and the
//!   histogram `sample_request_duration_seconds{version}` with the standard buckets.
//! - `/healthz`: always 200 `ok\n`, no latency.
//! - anything else: 404.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hyper::body::{Body, Bytes, Frame, Incoming, SizeHint};
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response, StatusCode};
use tokio::runtime::Handle;

use crate::server::Server;
use crate::{ProxyError, lock};

/// How the sample service misbehaves. `Default` is a perfect service (no errors, no
/// added latency).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SampleBehaviour {
    /// Share of requests to `/` answered 500, in `[0, 1]`, chosen deterministically (see
    /// the module documentation).
    pub error_rate: f64,
    /// Delay added before answering each request to `/`.
    pub latency: Duration,
    /// `error_rate` applies only this long after the service started: a regression that
    /// shows in production after the rollout (a leak, a cache that fills).
    pub errors_after: Duration,
}

const ACCEPTED_KEYS: &str = "accepted keys are `error_rate`, `latency_ms` and `errors_after_ms`";
const ACCEPTED_ERROR_RATE: &str = "a number from 0 to 1, e.g. `0.05`";
const ACCEPTED_LATENCY_MS: &str = "a whole number of milliseconds from 0 to 3600000, e.g. `50`";
/// An hour: more is a typo, and would outlast any timeout in front of the service.
const MAX_LATENCY_MS: u64 = 3_600_000;

impl SampleBehaviour {
    /// Parses the `key = value` text format: one setting per line, keys `error_rate`
    /// (a number in `[0, 1]`), `latency_ms` and `errors_after_ms` (how long after the
    /// start errors begin; both whole milliseconds, at most an hour);
    /// blank lines and lines starting with `#` are ignored; a key left out keeps its
    /// default (0).
    ///
    /// Fails with [`ProxyError::InvalidSampleBehaviour`] naming the line, the key and what
    /// is accepted, on an unknown key, a repeated key, a line without `=`, or a bad value.
    ///
    /// ```text
    /// # canary: one request in ten fails, each takes 50 ms more
    /// error_rate = 0.1
    /// latency_ms = 50
    /// ```
    pub fn parse(text: &str) -> Result<SampleBehaviour, ProxyError> {
        parse_from(text, "sample behaviour")
    }

    /// Reads and parses the file at `path` (format of [`SampleBehaviour::parse`]); errors
    /// name the file. Fails with [`ProxyError::ReadSampleBehaviour`] if it cannot be read.
    pub fn read(path: &Path) -> Result<SampleBehaviour, ProxyError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ProxyError::ReadSampleBehaviour {
                path: path.to_owned(),
                source,
            })?;
        parse_from(&text, &path.display().to_string())
    }

    /// Checks the fields that the parser checks, for values built in code.
    fn validate(&self) -> Result<(), ProxyError> {
        if !(0.0..=1.0).contains(&self.error_rate) {
            return Err(ProxyError::InvalidSampleBehaviour {
                origin: "sample behaviour".to_owned(),
                key: Some("error_rate".to_owned()),
                problem: format!(
                    "`error_rate` is {}; accepted: {ACCEPTED_ERROR_RATE}",
                    self.error_rate
                ),
            });
        }
        Ok(())
    }

    /// Whether the `n`-th request to `/` (from 0) fails.
    fn fails(&self, n: u64) -> bool {
        // Differences of floors telescope: the first N requests hold exactly
        // floor(N * rate) failures, evenly spread. Exact in f64 for n < 2^53.
        (n.saturating_add(1) as f64 * self.error_rate).floor()
            > (n as f64 * self.error_rate).floor()
    }
}

fn parse_from(text: &str, origin: &str) -> Result<SampleBehaviour, ProxyError> {
    let mut behaviour = SampleBehaviour::default();
    let mut seen_error_rate = false;
    let mut seen_latency = false;
    let mut seen_errors_after = false;
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let invalid = |key: Option<&str>, problem: String| ProxyError::InvalidSampleBehaviour {
            origin: format!("{origin} line {}", index + 1),
            key: key.map(str::to_owned),
            problem,
        };
        let Some((key, value)) = line.split_once('=') else {
            return Err(invalid(
                None,
                format!("expected `key = value`, found {line:?}; {ACCEPTED_KEYS}"),
            ));
        };
        let (key, value) = (key.trim(), value.trim());
        let seen = match key {
            "error_rate" => &mut seen_error_rate,
            "latency_ms" => &mut seen_latency,
            "errors_after_ms" => &mut seen_errors_after,
            _ => {
                return Err(invalid(
                    Some(key),
                    format!("unknown key {key:?}; {ACCEPTED_KEYS}"),
                ));
            }
        };
        if std::mem::replace(seen, true) {
            return Err(invalid(
                Some(key),
                format!("`{key}` is set twice; set it once"),
            ));
        }
        match key {
            "error_rate" => match value.parse::<f64>() {
                Ok(rate) if (0.0..=1.0).contains(&rate) => behaviour.error_rate = rate,
                _ => {
                    return Err(invalid(
                        Some(key),
                        format!("`error_rate` is {value:?}; accepted: {ACCEPTED_ERROR_RATE}"),
                    ));
                }
            },
            _ => match value.parse::<u64>() {
                Ok(ms) if ms <= MAX_LATENCY_MS => {
                    let duration = Duration::from_millis(ms);
                    if key == "latency_ms" {
                        behaviour.latency = duration;
                    } else {
                        behaviour.errors_after = duration;
                    }
                }
                _ => {
                    return Err(invalid(
                        Some(key),
                        format!("`{key}` is {value:?}; accepted: {ACCEPTED_LATENCY_MS}"),
                    ));
                }
            },
        }
    }
    Ok(behaviour)
}

/// A running sample service; its tasks end on [`SampleService::shutdown`] or drop.
#[derive(Debug)]
pub struct SampleService {
    server: Server,
}

impl SampleService {
    /// The address the service listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// Stops accepting and ends the serving tasks (requests in flight are cut off).
    /// Idempotent; also done on drop.
    pub fn shutdown(&self) {
        self.server.shutdown();
    }
}

/// Serves the sample service on `listener` (already bound) from tasks spawned on
/// `runtime`, reporting itself as `version`.
///
/// Fails if `behaviour.error_rate` is outside `[0, 1]`
/// ([`ProxyError::InvalidSampleBehaviour`]) or the listener cannot be registered with
/// the runtime ([`ProxyError::Listener`]).
pub fn serve(
    listener: std::net::TcpListener,
    behaviour: SampleBehaviour,
    version: String,
    runtime: &Handle,
) -> Result<SampleService, ProxyError> {
    behaviour.validate()?;
    let state = Arc::new(SampleState {
        behaviour,
        version,
        next_request: AtomicU64::new(0),
        stats: Mutex::new(Stats::default()),
        started: Instant::now(),
    });
    let (shutdown, _) = tokio::sync::watch::channel(false);
    let server = Server::start(listener, runtime, shutdown, move |request, _client| {
        answer(Arc::clone(&state), request)
    })?;
    Ok(SampleService { server })
}

/// Serves the sample service on `listener` on a runtime of its own, blocking the calling
/// thread for as long as the process lives (the CLI's `airlock sample-service`).
///
/// Returns only on failure to start: the runtime ([`ProxyError::Runtime`]) or as
/// [`serve`].
pub fn run(
    listener: std::net::TcpListener,
    behaviour: SampleBehaviour,
    version: String,
) -> Result<(), ProxyError> {
    // One thread is plenty: the latency is a timer, not work.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(ProxyError::Runtime)?;
    let _service = serve(listener, behaviour, version, runtime.handle())?;
    runtime.block_on(std::future::pending::<()>());
    Ok(())
}

struct SampleState {
    behaviour: SampleBehaviour,
    version: String,
    /// Number of the next request to `/`, which decides whether it fails.
    next_request: AtomicU64,
    stats: Mutex<Stats>,
    started: Instant,
}

/// The Prometheus histogram's standard buckets (`le` values, in seconds), as the
/// official client libraries define them.
const DURATION_BUCKETS: [(f64, &str); 11] = [
    (0.005, "0.005"),
    (0.01, "0.01"),
    (0.025, "0.025"),
    (0.05, "0.05"),
    (0.1, "0.1"),
    (0.25, "0.25"),
    (0.5, "0.5"),
    (1.0, "1"),
    (2.5, "2.5"),
    (5.0, "5"),
    (10.0, "10"),
];

/// What `/metrics` reports, updated under one lock per request so a scrape is consistent
/// (the counters sum to the histogram's count).
#[derive(Default)]
struct Stats {
    ok: u64,
    failed: u64,
    /// Non-cumulative counts per bucket of `DURATION_BUCKETS`; the rest is `+Inf` only.
    buckets: [u64; 11],
    sum_seconds: f64,
    count: u64,
}

async fn answer(state: Arc<SampleState>, request: Request<Incoming>) -> Response<TextBody> {
    match request.uri().path() {
        "/" => {
            let started = Instant::now();
            let n = state.next_request.fetch_add(1, Ordering::Relaxed);
            if !state.behaviour.latency.is_zero() {
                tokio::time::sleep(state.behaviour.latency).await;
            }
            let fails =
                state.started.elapsed() >= state.behaviour.errors_after && state.behaviour.fails(n);
            let seconds = started.elapsed().as_secs_f64();
            {
                let mut stats = lock(&state.stats);
                if fails {
                    stats.failed += 1;
                } else {
                    stats.ok += 1;
                }
                if let Some(bucket) = DURATION_BUCKETS
                    .iter()
                    .position(|&(le, _)| seconds <= le)
                    .and_then(|bucket| stats.buckets.get_mut(bucket))
                {
                    *bucket += 1;
                }
                stats.sum_seconds += seconds;
                stats.count += 1;
            }
            if fails {
                text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("error {}\n", state.version),
                )
            } else {
                text(StatusCode::OK, format!("ok {}\n", state.version))
            }
        }
        "/metrics" => {
            let mut response = text(StatusCode::OK, exposition(&state));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            response
        }
        "/healthz" => text(StatusCode::OK, "ok\n".to_owned()),
        _ => text(StatusCode::NOT_FOUND, "not found\n".to_owned()),
    }
}

/// The `/metrics` page.
fn exposition(state: &SampleState) -> String {
    let version = escape_label_value(&state.version);
    let (ok, failed, buckets, sum_seconds, count) = {
        let stats = lock(&state.stats);
        (
            stats.ok,
            stats.failed,
            stats.buckets,
            stats.sum_seconds,
            stats.count,
        )
    };
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = writeln!(
        out,
        "# HELP sample_requests_total Requests to / answered, by status code."
    );
    let _ = writeln!(out, "# TYPE sample_requests_total counter");
    let _ = writeln!(
        out,
        "sample_requests_total{{version=\"{version}\",code=\"200\"}} {ok}"
    );
    let _ = writeln!(
        out,
        "sample_requests_total{{version=\"{version}\",code=\"500\"}} {failed}"
    );
    let _ = writeln!(
        out,
        "# HELP sample_request_duration_seconds Time to answer requests to /, added latency included."
    );
    let _ = writeln!(out, "# TYPE sample_request_duration_seconds histogram");
    let mut cumulative = 0u64;
    for ((_, le), count_in_bucket) in DURATION_BUCKETS.iter().zip(buckets) {
        cumulative += count_in_bucket;
        let _ = writeln!(
            out,
            "sample_request_duration_seconds_bucket{{version=\"{version}\",le=\"{le}\"}} {cumulative}"
        );
    }
    let _ = writeln!(
        out,
        "sample_request_duration_seconds_bucket{{version=\"{version}\",le=\"+Inf\"}} {count}"
    );
    let _ = writeln!(
        out,
        "sample_request_duration_seconds_sum{{version=\"{version}\"}} {sum_seconds}"
    );
    let _ = writeln!(
        out,
        "sample_request_duration_seconds_count{{version=\"{version}\"}} {count}"
    );
    out
}

/// Escapes a label value as the text format requires (backslash, double quote, newline).
fn escape_label_value(value: &str) -> String {
    let mut escaped = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => escaped.push_str("\\\\"),
            '"' => escaped.push_str("\\\""),
            '\n' => escaped.push_str("\\n"),
            c => escaped.push(c),
        }
    }
    escaped
}

fn text(status: StatusCode, body: String) -> Response<TextBody> {
    let mut response = Response::new(TextBody(Some(Bytes::from(body))));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// A body of one chunk, known in full.
struct TextBody(Option<Bytes>);

impl Body for TextBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        _context: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        std::task::Poll::Ready(self.get_mut().0.take().map(|bytes| Ok(Frame::data(bytes))))
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.0.as_ref().map_or(0, |bytes| bytes.len() as u64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str, expected: Result<SampleBehaviour, &str>) {
        match (SampleBehaviour::parse(text), expected) {
            (Ok(parsed), Ok(expected)) => assert_eq!(parsed, expected, "{text:?}"),
            (Err(error), Err(expected)) => assert_eq!(error.to_string(), expected, "{text:?}"),
            (parsed, expected) => panic!("{text:?}: got {parsed:?}, expected {expected:?}"),
        }
    }

    fn behaviour(error_rate: f64, latency_ms: u64) -> Result<SampleBehaviour, &'static str> {
        Ok(SampleBehaviour {
            error_rate,
            latency: Duration::from_millis(latency_ms),
            errors_after: Duration::ZERO,
        })
    }

    #[test]
    fn parse_accepts_the_documented_format() {
        check("", behaviour(0.0, 0));
        check("error_rate = 0.5\nlatency_ms = 50\n", behaviour(0.5, 50));
        check("  latency_ms=7  ", behaviour(0.0, 7));
        check("# comment\n\nerror_rate = 1\r\n", behaviour(1.0, 0));
        check("error_rate = 0", behaviour(0.0, 0));
        check("latency_ms = 3600000", behaviour(0.0, 3_600_000));
        check(
            "errors_after_ms = 1500\nerror_rate = 1",
            Ok(SampleBehaviour {
                errors_after: Duration::from_millis(1500),
                ..behaviour(1.0, 0).unwrap()
            }),
        );
    }

    #[test]
    fn parse_errors_name_the_line_the_key_and_what_is_accepted() {
        check(
            "error_rate = 0.5\nlatency = 5",
            Err(
                "sample behaviour line 2: unknown key \"latency\"; accepted keys are `error_rate`, `latency_ms` and `errors_after_ms`",
            ),
        );
        check(
            "error_rate = 1.5",
            Err(
                "sample behaviour line 1: `error_rate` is \"1.5\"; accepted: a number from 0 to 1, e.g. `0.05`",
            ),
        );
        check(
            "error_rate = NaN",
            Err(
                "sample behaviour line 1: `error_rate` is \"NaN\"; accepted: a number from 0 to 1, e.g. `0.05`",
            ),
        );
        check(
            "error_rate = -0.1",
            Err(
                "sample behaviour line 1: `error_rate` is \"-0.1\"; accepted: a number from 0 to 1, e.g. `0.05`",
            ),
        );
        check(
            "latency_ms = 1.5",
            Err(
                "sample behaviour line 1: `latency_ms` is \"1.5\"; accepted: a whole number of milliseconds from 0 to 3600000, e.g. `50`",
            ),
        );
        check(
            "latency_ms = 3600001",
            Err(
                "sample behaviour line 1: `latency_ms` is \"3600001\"; accepted: a whole number of milliseconds from 0 to 3600000, e.g. `50`",
            ),
        );
        check(
            "latency_ms =",
            Err(
                "sample behaviour line 1: `latency_ms` is \"\"; accepted: a whole number of milliseconds from 0 to 3600000, e.g. `50`",
            ),
        );
        check(
            "\n\nerror_rate 0.5",
            Err(
                "sample behaviour line 3: expected `key = value`, found \"error_rate 0.5\"; accepted keys are `error_rate`, `latency_ms` and `errors_after_ms`",
            ),
        );
        check(
            "latency_ms = 1\nlatency_ms = 2",
            Err("sample behaviour line 2: `latency_ms` is set twice; set it once"),
        );
    }

    #[test]
    fn read_names_the_file() {
        let missing = Path::new("/nonexistent/airlock-sample-behaviour");
        let error = SampleBehaviour::read(missing).expect_err("missing file");
        assert!(matches!(&error, ProxyError::ReadSampleBehaviour { path, .. } if path == missing));
        assert_eq!(
            error.to_string(),
            "could not read the sample behaviour file /nonexistent/airlock-sample-behaviour"
        );
    }

    #[test]
    fn failures_are_exactly_the_rate_over_every_prefix() {
        for rate in [0.0, 0.01, 0.1, 0.25, 1.0 / 3.0, 0.5, 0.9, 1.0] {
            let behaviour = SampleBehaviour {
                error_rate: rate,
                latency: Duration::ZERO,
                ..SampleBehaviour::default()
            };
            let mut failures = 0u64;
            for n in 0..1000u64 {
                failures += u64::from(behaviour.fails(n));
                assert_eq!(
                    failures,
                    ((n + 1) as f64 * rate).floor() as u64,
                    "rate {rate}, n {n}"
                );
            }
        }
        let half = SampleBehaviour {
            error_rate: 0.5,
            latency: Duration::ZERO,
            ..SampleBehaviour::default()
        };
        let pattern: Vec<bool> = (0..4).map(|n| half.fails(n)).collect();
        assert_eq!(pattern, [false, true, false, true]);
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape_label_value("v1"), "v1");
        assert_eq!(escape_label_value("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
