//! Levels 3 and 4 as configuration and pure rules: the `[deploy]` section of
//! `airlock.toml`: provider, staging, rollout steps, guards, metrics.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use airlock_judge::{Direction, Judge, JudgeConfig, MetricSpec, Trust};
use serde::{Deserialize, Serialize};

use crate::config::{positive_duration, validate_branch};
use crate::ids::printable;

/// Which provider shifts traffic and runs versions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProviderKind {
    /// Versions run as local processes behind airlock's built-in weighted proxy.
    Local,
    /// Versions run as local processes; HAProxy's runtime API sets the weights.
    Haproxy,
    /// An operator's script does both (Kubernetes, cloud load balancers, ...).
    Command,
}

impl ProviderKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::Local => "local",
            ProviderKind::Haproxy => "haproxy",
            ProviderKind::Command => "command",
        }
    }
}

/// The validated `[deploy]` section. Without it, approved changes stay `approved`.
#[derive(Clone, Debug, PartialEq)]
pub struct DeployConfig {
    pub provider: ProviderKind,
    /// The deployment target's name: one queue and one lease per target.
    pub target: String,
    /// Where commits land: None for the repository airlock serves, else a path or URL.
    pub repository: Option<String>,
    pub branch: String,
    /// Run once in each version's files before it starts (`sh -c`).
    pub build: Option<String>,
    pub build_timeout: Duration,
    /// Starts one instance of the service (`sh -c`, with `$PORT`); local and haproxy.
    pub start: Option<String>,
    pub ready_timeout: Duration,
    /// When set, an instance is ready once `GET health_path` answers 2xx.
    pub health_path: Option<String>,
    /// Where the built-in proxy takes production traffic (local provider).
    pub listen: String,
    pub staging: StagingConfig,
    /// Canary percentages, ascending, ending at 100.
    pub steps: Vec<u32>,
    /// How long each step is watched before the next.
    pub soak: Duration,
    /// How often metrics are read during a step.
    pub poll: Duration,
    pub guards: GuardConfig,
    pub haproxy: Option<HaproxyConfig>,
    pub command: Option<CommandConfig>,
    pub prometheus: Option<PrometheusConfig>,
    pub judge: JudgeSettings,
    pub watch: WatchConfig,
    pub drift: DriftConfig,
}

/// `[deploy.drift]`: the cumulative degradation of a target across its last `changes`
/// rollouts, each of which passed alone. Beyond a budget, deployments pause.
#[derive(Clone, Debug, PartialEq)]
pub struct DriftConfig {
    pub changes: u32,
    /// The p99 may grow by at most this fraction across the window (0.25: +25 %)...
    pub p99_budget: f64,
    /// ...and the error rate by at most this fraction (1.0: doubled).
    pub error_budget: f64,
}

/// `[deploy.watch]`: after a rollout reaches 100 %, production is compared with the
/// stable version's measurements from before the rollout for `period`.
#[derive(Clone, Debug, PartialEq)]
pub struct WatchConfig {
    pub period: Duration,
    /// A regression: the error rate above this multiple of the one before...
    pub error_ratio: f64,
    /// ...or more than 1 % of requests slower than the p99 before × (1 + this).
    pub latency_increase: f64,
    /// Roll the change back on a regression (when its revert applies; otherwise the
    /// rollback escalates to a person). Off: alert only.
    pub rollback: bool,
}

/// `[deploy.judge]`: how the canary is compared with the baseline beside it.
#[derive(Clone, Debug, PartialEq)]
pub struct JudgeSettings {
    /// The false-alarm rate of a whole rollout, split across the metrics.
    pub alpha: f64,
    /// What a failed comparison of errors or latency does.
    pub trust: Trust,
    /// A request slower than this is slow; `None`: slower than the stable version's p99
    /// before the rollout began.
    pub latency_threshold: Option<Duration>,
    /// Whether errors are compared with the baseline and the stable version together
    /// (the same code, so the same error rate, and many times the canary's traffic:
    /// faster detection) or with the baseline alone. Latency and custom metrics are
    /// always compared with the baseline alone: it is as fresh as the canary, and fresh
    /// processes are slower than warm ones.
    pub pool_stable: bool,
    /// Further metrics, read from Prometheus.
    pub metrics: Vec<CustomMetric>,
    /// Requests airlock sends to production while a step lacks data; None: the step waits.
    pub synthetic_load: Option<SyntheticLoadConfig>,
}

/// `[deploy.judge.synthetic_load]`: when a step still lacks data after its soak (a quiet
/// service, a quiet hour), airlock sends GET requests to the production entry itself, so
/// the traffic split applies and the metrics source counts them, until the step is
/// decided or `max_duration` has passed. Opt-in: the paths must be safe to request at
/// any rate (idempotent reads), which only the service's owners can say.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyntheticLoadConfig {
    /// Where the requests go: the production entry on this machine (loopback only; by
    /// default the local proxy's `listen`, or HAProxy's `url`).
    pub address: SocketAddr,
    /// Requested in turn; each starts with '/' and holds only visible ASCII.
    pub paths: Vec<String>,
    /// Requests per second.
    pub rate: u32,
    /// The longest it runs in one step.
    pub max_duration: Duration,
}

/// The most paths synthetic load takes, and the longest one.
const MAX_SYNTHETIC_PATHS: usize = 16;
const MAX_SYNTHETIC_PATH_BYTES: usize = 1024;

/// A metric from Prometheus judged like errors: events per unit of exposure.
#[derive(Clone, Debug, PartialEq)]
pub struct CustomMetric {
    pub spec: MetricSpec,
    /// PromQL templates of cumulative counters; `{version}` and `{slot}` are replaced.
    pub events: String,
    pub exposure: String,
}

/// The names the built-in metrics take in the judge's evidence.
pub const ERRORS_METRIC: &str = "errors";
pub const LATENCY_METRIC: &str = "slow_requests";

impl JudgeSettings {
    /// The judge's configuration: errors, then slow requests when `latency` (the source
    /// measures latency per request), then the custom metrics.
    pub fn judge_config(&self, latency: bool) -> JudgeConfig {
        let mut metrics = vec![MetricSpec {
            trust: self.trust,
            ..MetricSpec::errors()
        }];
        if latency {
            metrics.push(MetricSpec {
                trust: self.trust,
                ..MetricSpec::slow_requests()
            });
        }
        metrics.extend(self.metrics.iter().map(|m| m.spec.clone()));
        JudgeConfig {
            alpha: self.alpha,
            metrics,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StagingConfig {
    pub enabled: bool,
    /// The integration tests, run with `AIRLOCK_STAGING_URL` (`sh -c`).
    pub test: Option<String>,
    pub timeout: Duration,
}

/// The absolute guards: the second line behind the baseline comparison.
#[derive(Clone, Debug, PartialEq)]
pub struct GuardConfig {
    pub max_error_rate: f64,
    pub max_p99: Duration,
    /// Requests a step must see before its guards can call it healthy.
    pub min_requests: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HaproxyConfig {
    /// The runtime API: a unix socket path, or `IP:PORT`.
    pub socket: String,
    pub backend: String,
    pub staging_backend: Option<String>,
    /// Where production traffic enters HAProxy (a frontend), for status output.
    pub url: Option<String>,
    /// Where staging traffic enters HAProxy: what integration tests get.
    pub staging_url: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommandConfig {
    /// Relative to the repository root, or absolute.
    pub program: String,
    pub timeout: Duration,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrometheusConfig {
    pub url: String,
    /// PromQL templates; `{version}` and `{slot}` are replaced.
    pub requests: String,
    pub errors: String,
    pub latency_p99: Option<String>,
    pub timeout: Duration,
}

pub const DEFAULT_STEPS: [u32; 5] = [1, 5, 25, 50, 100];

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDeploy {
    provider: Option<ProviderKind>,
    target: Option<String>,
    repository: Option<String>,
    branch: Option<String>,
    build: Option<String>,
    build_timeout: Option<String>,
    start: Option<String>,
    ready_timeout: Option<String>,
    health_path: Option<String>,
    listen: Option<String>,
    steps: Option<Vec<i64>>,
    soak: Option<String>,
    poll: Option<String>,
    #[serde(default)]
    staging: RawStaging,
    #[serde(default)]
    guards: RawGuards,
    haproxy: Option<RawHaproxy>,
    command: Option<RawCommand>,
    prometheus: Option<RawPrometheus>,
    #[serde(default)]
    judge: RawJudge,
    #[serde(default)]
    watch: RawWatch,
    #[serde(default)]
    drift: RawDrift,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawDrift {
    changes: Option<i64>,
    p99_budget: Option<f64>,
    error_budget: Option<f64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawWatch {
    period: Option<String>,
    error_ratio: Option<f64>,
    latency_increase: Option<f64>,
    rollback: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawJudge {
    alpha: Option<f64>,
    trust: Option<Trust>,
    latency_threshold: Option<String>,
    reference: Option<Reference>,
    #[serde(default)]
    metrics: Vec<RawMetric>,
    synthetic_load: Option<RawSyntheticLoad>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSyntheticLoad {
    paths: Option<Vec<String>>,
    rate: Option<i64>,
    max_duration: Option<String>,
    url: Option<String>,
}

/// What the canary is compared with.
#[derive(Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Reference {
    Baseline,
    BaselineAndStable,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMetric {
    name: String,
    events: String,
    exposure: String,
    direction: Direction,
    tolerance: Option<f64>,
    pass_margin: Option<f64>,
    absolute_margin: Option<f64>,
    min_exposure: Option<f64>,
    trust: Option<Trust>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawStaging {
    enabled: Option<bool>,
    test: Option<String>,
    timeout: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawGuards {
    max_error_rate: Option<f64>,
    max_p99: Option<String>,
    min_requests: Option<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHaproxy {
    socket: String,
    backend: String,
    staging_backend: Option<String>,
    url: Option<String>,
    staging_url: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCommand {
    program: String,
    timeout: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPrometheus {
    url: String,
    requests: String,
    errors: String,
    latency_p99: Option<String>,
    timeout: Option<String>,
}

fn duration(value: Option<String>, key: &str, default: Duration) -> Result<Duration, String> {
    match value {
        None => Ok(default),
        Some(text) => positive_duration(&text).map_err(|m| format!("key `deploy.{key}`: {m}")),
    }
}

fn non_empty(value: Option<String>, key: &str, example: &str) -> Result<Option<String>, String> {
    match value {
        Some(text) if text.trim().is_empty() => Err(format!(
            "key `deploy.{key}`: empty; accepted: {example}, or leave the key out"
        )),
        other => Ok(other),
    }
}

/// A name for a target, backend or server: what HAProxy and a queue accept.
fn simple_name(value: &str, key: &str) -> Result<(), String> {
    let ok = !value.is_empty()
        && value.len() <= 64
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "key `deploy.{key}`: `{}` is not a name; accepted: 1 to 64 letters, digits, '-', '_' or '.'",
            printable(value)
        ))
    }
}

impl RawDeploy {
    pub(crate) fn validate(mut self, target_branch: &str) -> Result<DeployConfig, String> {
        let provider = self.provider.unwrap_or(ProviderKind::Local);
        let target = self.target.unwrap_or_else(|| "production".to_owned());
        simple_name(&target, "target")?;
        let branch = self.branch.unwrap_or_else(|| target_branch.to_owned());
        validate_branch(&branch).map_err(|m| format!("key `deploy.branch`: {m}"))?;
        let repository = non_empty(
            self.repository,
            "repository",
            "a path or URL `git push` understands",
        )?
        .filter(|r| r != ".");
        if let Some(repository) = &repository
            && (repository.starts_with('-') || repository.chars().any(char::is_control))
        {
            return Err(format!(
                "key `deploy.repository`: `{}` is not a repository; accepted: a path or a URL such as \"ssh://git@host/repo.git\"",
                printable(repository)
            ));
        }
        let build = non_empty(
            self.build,
            "build",
            "a shell command such as \"make build\"",
        )?;
        let start = non_empty(
            self.start,
            "start",
            "a shell command such as \"exec ./server --port $PORT\"",
        )?;
        if start.is_none() && provider != ProviderKind::Command {
            return Err(format!(
                "key `deploy.start`: missing; the {} provider runs the service itself and needs the command that starts it, such as \"exec ./server --port $PORT\"",
                provider.as_str()
            ));
        }
        let health_path = non_empty(
            self.health_path,
            "health_path",
            "a path such as \"/healthz\"",
        )?;
        if let Some(path) = &health_path
            && (!path.starts_with('/') || path.chars().any(|c| c.is_whitespace() || c.is_control()))
        {
            return Err(format!(
                "key `deploy.health_path`: `{}` is not a path; accepted: a path starting with '/', such as \"/healthz\"",
                printable(path)
            ));
        }
        let listen = self.listen.unwrap_or_else(|| "127.0.0.1:8080".to_owned());
        if listen.parse::<std::net::SocketAddr>().is_err() {
            return Err(format!(
                "key `deploy.listen`: `{}` is not an address; accepted: IP:PORT such as \"127.0.0.1:8080\"",
                printable(&listen)
            ));
        }
        let steps = match self.steps {
            None => DEFAULT_STEPS.to_vec(),
            Some(steps) => validate_steps(&steps)?,
        };
        let guards = GuardConfig {
            max_error_rate: match self.guards.max_error_rate {
                None => 0.02,
                Some(rate) if rate > 0.0 && rate <= 1.0 => rate,
                Some(rate) => {
                    return Err(format!(
                        "key `deploy.guards.max_error_rate`: {rate} is out of range; accepted: a fraction above 0 and at most 1, such as 0.02 for 2 %"
                    ));
                }
            },
            max_p99: duration(
                self.guards.max_p99,
                "guards.max_p99",
                Duration::from_millis(500),
            )?,
            min_requests: match self.guards.min_requests {
                None => 100,
                Some(n) if (1..=100_000_000).contains(&n) => n as u64,
                Some(n) => {
                    return Err(format!(
                        "key `deploy.guards.min_requests`: {n} is out of range; accepted: 1 to 100000000"
                    ));
                }
            },
        };
        let haproxy = match self.haproxy {
            None if provider == ProviderKind::Haproxy => {
                return Err("key `deploy.haproxy`: missing; the haproxy provider needs `socket` (the runtime API) and `backend`".into());
            }
            None => None,
            Some(raw) => {
                if raw.socket.trim().is_empty() {
                    return Err("key `deploy.haproxy.socket`: empty; accepted: a unix socket path or IP:PORT".into());
                }
                simple_name(&raw.backend, "haproxy.backend")?;
                if let Some(staging) = &raw.staging_backend {
                    simple_name(staging, "haproxy.staging_backend")?;
                }
                for (key, url) in [("url", &raw.url), ("staging_url", &raw.staging_url)] {
                    if let Some(url) = url
                        && !url.starts_with("http://")
                        && !url.starts_with("https://")
                    {
                        return Err(format!(
                            "key `deploy.haproxy.{key}`: `{}` is not an HTTP URL; accepted: a URL such as \"http://127.0.0.1:8081\"",
                            printable(url)
                        ));
                    }
                }
                Some(HaproxyConfig {
                    socket: raw.socket,
                    backend: raw.backend,
                    staging_backend: raw.staging_backend,
                    url: raw.url,
                    staging_url: raw.staging_url,
                })
            }
        };
        let command = match self.command {
            None if provider == ProviderKind::Command => {
                return Err("key `deploy.command`: missing; the command provider needs `program`, the script it calls".into());
            }
            None => None,
            Some(raw) => {
                if raw.program.trim().is_empty() {
                    return Err(
                        "key `deploy.command.program`: empty; accepted: a path to an executable"
                            .into(),
                    );
                }
                Some(CommandConfig {
                    program: raw.program,
                    timeout: duration(raw.timeout, "command.timeout", Duration::from_secs(300))?,
                })
            }
        };
        let prometheus = match self.prometheus {
            None => None,
            Some(raw) => {
                if !(raw.url.starts_with("http://") || raw.url.starts_with("https://")) {
                    return Err(format!(
                        "key `deploy.prometheus.url`: `{}` is not an HTTP URL; accepted: a URL such as \"http://127.0.0.1:9090\"",
                        printable(&raw.url)
                    ));
                }
                for (key, query) in [("requests", &raw.requests), ("errors", &raw.errors)] {
                    if !query.contains("{version}") && !query.contains("{slot}") {
                        return Err(format!(
                            "key `deploy.prometheus.{key}`: the query names neither `{{version}}` nor `{{slot}}`, so it cannot tell the canary from the baseline"
                        ));
                    }
                }
                Some(PrometheusConfig {
                    url: raw.url,
                    requests: raw.requests,
                    errors: raw.errors,
                    latency_p99: raw.latency_p99,
                    timeout: duration(raw.timeout, "prometheus.timeout", Duration::from_secs(5))?,
                })
            }
        };
        let synthetic_load = self.judge.synthetic_load.take();
        let mut judge = self.judge.validate(prometheus.is_some())?;
        judge.synthetic_load = match synthetic_load {
            None => None,
            Some(raw) => Some(raw.validate(provider, &listen, haproxy.as_ref())?),
        };
        let watch = WatchConfig {
            period: duration(
                self.watch.period,
                "watch.period",
                Duration::from_secs(24 * 3600),
            )?,
            error_ratio: match self.watch.error_ratio {
                None => 1.5,
                Some(ratio) if ratio.is_finite() && ratio > 1.0 && ratio <= 100.0 => ratio,
                Some(ratio) => {
                    return Err(format!(
                        "key `deploy.watch.error_ratio`: {ratio} is out of range; accepted: a multiple above 1 and at most 100, such as 1.5"
                    ));
                }
            },
            latency_increase: match self.watch.latency_increase {
                None => 0.2,
                Some(increase) if increase.is_finite() && increase > 0.0 && increase <= 10.0 => {
                    increase
                }
                Some(increase) => {
                    return Err(format!(
                        "key `deploy.watch.latency_increase`: {increase} is out of range; accepted: a fraction above 0 and at most 10, such as 0.2 for +20 %"
                    ));
                }
            },
            rollback: self.watch.rollback.unwrap_or(false),
        };
        let budget = |value: Option<f64>, key: &str, default: f64| match value {
            None => Ok(default),
            Some(v) if v.is_finite() && v > 0.0 && v <= 100.0 => Ok(v),
            Some(v) => Err(format!(
                "key `deploy.drift.{key}`: {v} is out of range; accepted: a fraction above 0 and at most 100, such as 0.25 for +25 %"
            )),
        };
        let drift = DriftConfig {
            changes: match self.drift.changes {
                None => 10,
                Some(n) if (2..=1000).contains(&n) => n as u32,
                Some(n) => {
                    return Err(format!(
                        "key `deploy.drift.changes`: {n} is out of range; accepted: 2 to 1000"
                    ));
                }
            },
            p99_budget: budget(self.drift.p99_budget, "p99_budget", 0.25)?,
            error_budget: budget(self.drift.error_budget, "error_budget", 1.0)?,
        };
        Ok(DeployConfig {
            provider,
            target,
            repository,
            branch,
            build,
            build_timeout: duration(
                self.build_timeout,
                "build_timeout",
                Duration::from_secs(600),
            )?,
            start,
            ready_timeout: duration(self.ready_timeout, "ready_timeout", Duration::from_secs(30))?,
            health_path,
            listen,
            staging: StagingConfig {
                enabled: self.staging.enabled.unwrap_or(true),
                test: non_empty(
                    self.staging.test,
                    "staging.test",
                    "a shell command such as \"./integration-tests.sh\"",
                )?,
                timeout: duration(
                    self.staging.timeout,
                    "staging.timeout",
                    Duration::from_secs(300),
                )?,
            },
            steps,
            soak: duration(self.soak, "soak", Duration::from_secs(30))?,
            poll: duration(self.poll, "poll", Duration::from_secs(1))?,
            guards,
            haproxy,
            command,
            prometheus,
            judge,
            watch,
            drift,
        })
    }
}

impl RawJudge {
    fn validate(self, prometheus: bool) -> Result<JudgeSettings, String> {
        let trust = self.trust.unwrap_or(Trust::Enforcing);
        let latency_threshold = match self.latency_threshold.as_deref() {
            None | Some("baseline") => None,
            Some(text) => Some(positive_duration(text).map_err(|m| {
                format!("key `deploy.judge.latency_threshold`: {m}; or \"baseline\" for the stable version's p99")
            })?),
        };
        if !self.metrics.is_empty() && !prometheus {
            return Err("key `deploy.judge.metrics`: custom metrics are read from Prometheus; add a [deploy.prometheus] section".into());
        }
        let mut metrics = Vec::with_capacity(self.metrics.len());
        for (index, raw) in self.metrics.into_iter().enumerate() {
            let key = format!("deploy.judge.metrics[{index}]");
            simple_name(&raw.name, &format!("judge.metrics[{index}].name"))?;
            if [ERRORS_METRIC, LATENCY_METRIC].contains(&raw.name.as_str()) {
                return Err(format!(
                    "key `{key}.name`: `{}` is a built-in metric; choose another name",
                    raw.name
                ));
            }
            for (field, query) in [("events", &raw.events), ("exposure", &raw.exposure)] {
                if !query.contains("{version}") && !query.contains("{slot}") {
                    return Err(format!(
                        "key `{key}.{field}`: the query names neither `{{version}}` nor `{{slot}}`, so it cannot tell the canary from the baseline"
                    ));
                }
            }
            let defaults = MetricSpec::errors();
            metrics.push(CustomMetric {
                spec: MetricSpec {
                    name: raw.name,
                    direction: raw.direction,
                    tolerance: raw.tolerance.unwrap_or(0.2),
                    pass_margin: raw.pass_margin.unwrap_or(defaults.pass_margin),
                    absolute_margin: raw.absolute_margin.unwrap_or(0.0),
                    min_exposure: raw.min_exposure.unwrap_or(defaults.min_exposure),
                    trust: raw.trust.unwrap_or(trust),
                },
                events: raw.events,
                exposure: raw.exposure,
            });
        }
        let settings = JudgeSettings {
            alpha: self.alpha.unwrap_or(0.01),
            trust,
            latency_threshold,
            pool_stable: !matches!(self.reference, Some(Reference::Baseline)),
            metrics,
            synthetic_load: None,
        };
        // The judge's own checks (α's range, margins, unique names) name what is wrong.
        Judge::new(settings.judge_config(true)).map_err(|e| format!("key `deploy.judge`: {e}"))?;
        Ok(settings)
    }
}

impl RawSyntheticLoad {
    /// Validates the section; the address defaults to where the provider takes
    /// production traffic, and must be on this machine either way.
    fn validate(
        self,
        provider: ProviderKind,
        listen: &str,
        haproxy: Option<&HaproxyConfig>,
    ) -> Result<SyntheticLoadConfig, String> {
        const KEY: &str = "deploy.judge.synthetic_load";
        let paths_accepted = format!(
            "accepted: a list of 1 to {MAX_SYNTHETIC_PATHS} paths such as [\"/healthz\", \"/\"], each starting with '/' and without spaces or control characters"
        );
        let paths = match self.paths {
            None => {
                return Err(format!(
                    "key `{KEY}.paths`: missing; synthetic load requests only paths named here; {paths_accepted}"
                ));
            }
            Some(paths) if paths.is_empty() || paths.len() > MAX_SYNTHETIC_PATHS => {
                return Err(format!(
                    "key `{KEY}.paths`: {} paths; {paths_accepted}",
                    paths.len()
                ));
            }
            Some(paths) => paths,
        };
        for path in &paths {
            let visible = path.bytes().all(|b| b.is_ascii_graphic());
            if !path.starts_with('/') || !visible || path.len() > MAX_SYNTHETIC_PATH_BYTES {
                return Err(format!(
                    "key `{KEY}.paths`: `{}` is not a path; {paths_accepted}",
                    printable(path)
                ));
            }
        }
        let rate = match self.rate {
            None => 10,
            Some(rate) if (1..=1000).contains(&rate) => rate as u32,
            Some(rate) => {
                return Err(format!(
                    "key `{KEY}.rate`: {rate} is out of range; accepted: 1 to 1000 requests per second"
                ));
            }
        };
        let max_duration = match self.max_duration {
            None => Duration::from_secs(600),
            Some(text) => {
                let duration = positive_duration(&text)
                    .map_err(|m| format!("key `{KEY}.max_duration`: {m}"))?;
                if duration > Duration::from_secs(24 * 3600) {
                    return Err(format!(
                        "key `{KEY}.max_duration`: `{text}` is too long; accepted: a positive duration of at most 24h, such as \"10m\""
                    ));
                }
                duration
            }
        };
        let address = match (self.url, provider) {
            (Some(url), _) => loopback_url(&url).ok_or_else(|| {
                format!(
                    "key `{KEY}.url`: `{}` is not an address on this machine; accepted: http://127.0.0.1:PORT, http://[::1]:PORT or http://localhost:PORT (synthetic load never leaves the machine)",
                    printable(&url)
                )
            })?,
            (None, ProviderKind::Local) => {
                // `listen` was validated as an address already.
                let listen: SocketAddr = listen.parse().map_err(|_| format!("key `deploy.listen`: `{listen}` is not an address"))?;
                let ip = match listen.ip() {
                    IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
                    IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
                    ip if ip.is_loopback() => ip,
                    _ => {
                        return Err(format!(
                            "key `{KEY}`: the local proxy listens on {listen}, not on this machine's loopback; synthetic load never leaves the machine: set `{KEY}.url` to a loopback address such as \"http://127.0.0.1:8080\""
                        ));
                    }
                };
                SocketAddr::new(ip, listen.port())
            }
            (None, ProviderKind::Haproxy) => haproxy
                .and_then(|h| h.url.as_deref())
                .and_then(loopback_url)
                .ok_or_else(|| {
                    format!(
                        "key `{KEY}`: synthetic load goes to `deploy.haproxy.url`, which is not set to an address on this machine; set it, or `{KEY}.url`, to one such as \"http://127.0.0.1:8081\""
                    )
                })?,
            (None, ProviderKind::Command) => {
                return Err(format!(
                    "key `{KEY}.url`: missing; the command provider does not say where production traffic enters; accepted: http://127.0.0.1:PORT, http://[::1]:PORT or http://localhost:PORT"
                ));
            }
        };
        Ok(SyntheticLoadConfig {
            address,
            paths,
            rate,
            max_duration,
        })
    }
}

/// The address of `http://HOST:PORT[/]` when HOST is a loopback address or `localhost`.
fn loopback_url(url: &str) -> Option<SocketAddr> {
    let rest = url.strip_prefix("http://")?;
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    let authority = match authority.strip_prefix("localhost:") {
        Some(port) => format!("127.0.0.1:{port}"),
        None => authority.to_owned(),
    };
    let address: SocketAddr = authority.parse().ok()?;
    (address.ip().is_loopback() && address.port() != 0).then_some(address)
}

/// Steps are canary percentages: strictly ascending, each 1 to 100, the last 100.
pub fn validate_steps(steps: &[i64]) -> Result<Vec<u32>, String> {
    let accepted =
        "accepted: ascending percentages from 1 to 100 ending at 100, such as [1, 5, 25, 50, 100]";
    if steps.is_empty() || steps.len() > 20 {
        return Err(format!(
            "key `deploy.steps`: {} steps; {accepted}",
            steps.len()
        ));
    }
    let mut previous = 0;
    for &step in steps {
        if !(1..=100).contains(&step) || step <= previous {
            return Err(format!(
                "key `deploy.steps`: {step} after {previous}; {accepted}"
            ));
        }
        previous = step;
    }
    if previous != 100 {
        return Err(format!(
            "key `deploy.steps`: ends at {previous}; {accepted}"
        ));
    }
    Ok(steps.iter().map(|&s| s as u32).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synthetic_load_goes_to_this_machine_only() {
        let at = |url: &str| loopback_url(url).map(|a| a.to_string());
        assert_eq!(
            at("http://127.0.0.1:8080"),
            Some("127.0.0.1:8080".to_owned())
        );
        assert_eq!(at("http://localhost:81/"), Some("127.0.0.1:81".to_owned()));
        assert_eq!(at("http://[::1]:8080"), Some("[::1]:8080".to_owned()));
        for elsewhere in [
            "http://10.0.0.1:8080",
            "https://127.0.0.1:8080",
            "http://example.com:80",
            "http://127.0.0.1",
            "http://127.0.0.1:0",
            "http://127.0.0.1:8080/path",
        ] {
            assert_eq!(at(elsewhere), None, "{elsewhere}");
        }
    }

    #[test]
    fn steps_are_ascending_percentages_ending_at_100() {
        assert_eq!(
            validate_steps(&[1, 5, 25, 50, 100]).unwrap(),
            vec![1, 5, 25, 50, 100]
        );
        assert_eq!(validate_steps(&[100]).unwrap(), vec![100]);
        for bad in [
            &[][..],
            &[0, 100],
            &[5, 5, 100],
            &[50, 25, 100],
            &[1, 50],
            &[1, 101],
        ] {
            let error = validate_steps(bad).unwrap_err();
            assert!(error.contains("accepted"), "{error}");
        }
    }
}
