//! The `[[audit.sinks]]` tables of airlock.toml, in two phases: `SinkConfig` as written
//! (serde refuses unknown keys), `validate_sinks` into `SinkSpec` without any I/O, then
//! `SinkSpec::open` (which reads the webhook secret from the environment) and
//! `SinkSpec::start`.
//!
//! ```toml
//! [[audit.sinks]]
//! name = "mirror"
//! kind = "jsonl"
//! path = "/var/log/airlock/audit.jsonl"
//!
//! [[audit.sinks]]
//! name = "siem"
//! kind = "syslog"
//! address = "logs.internal:6514"
//! protocol = "tcp"            # or "udp"
//! facility = "local0"         # default
//! severity = "notice"         # default
//!
//! [[audit.sinks]]
//! name = "hook"
//! kind = "webhook"
//! url = "http://collector.internal:8080/airlock"
//! secret_env = "AIRLOCK_WEBHOOK_SECRET"   # the secret itself never goes in the file
//! batch_size = 100
//! timeout = "10s"
//!
//! [[audit.sinks]]
//! name = "reviews"
//! kind = "webhook"
//! # Slack's https:// URL, through a local proxy that adds TLS (see below).
//! url = "http://127.0.0.1:8443/services/T000/B000/XXXX"
//! secret_env = "AIRLOCK_NOTIFY_SECRET"
//! format = "slack"
//! kinds = ["notifications", "deploy.*"]
//! ```
//!
//! Durations are written as in the rest of airlock.toml (`"500ms"`, `"10s"`, `"2m"`,
//! `"1h"`), sizes as a byte count or with a unit (`65536`, `"64KiB"`, `"1MiB"`).
//!
//! # Filtering by kind: `kinds`
//!
//! Every sink kind takes an optional `kinds` list; the sink then gets only the entries
//! whose top-level `kind` field matches one of its patterns (an entry without a string
//! `kind` matches none). A pattern is
//!
//! - an exact kind: `"review.requested"` (two or more dot-separated words of lowercase
//!   letters, digits, `_` and `-`);
//! - a prefix ending in `.*`: `"review.*"` matches `review.requested` and
//!   `review.x.y`, not `review` or `reviews.x`;
//! - the preset `"notifications"`: the kinds a person may have to act on,
//!   `review.requested`, `review.reminder`, `review.escalated`, `review.rejected`,
//!   `review.expired`, `change.break_glass`, `post_review.overdue`, `staging.failed`,
//!   `deploy.failed`, `rollback.started`, `rollback.completed` and `rollback.escalated`.
//!
//! Without `kinds` a sink gets every entry. Entries left out still move the sink's
//! cursor: it is a position in the log, not a count of deliveries. What a filtered sink
//! receives keeps index order, with gaps where entries were left out; a JSONL mirror
//! with `kinds` holds only those kinds.
//!
//! # Webhook bodies: `format`
//!
//! - `"entries"` (the default): batches of entries, embedded byte for byte (see the
//!   crate documentation).
//! - `"slack"`: a Slack incoming-webhook message, `{"text":"…"}`, one request per entry
//!   (Slack takes one message per request; a failure repeats only that message): a
//!   short line such as `[airlock] review.requested chg_01… by agent bot: needs 2
//!   approvals; missing: 1 from @payments`, built from the entry's `kind`, `change_id`,
//!   `actor`, `decision.summary`, `approval` and `details.summary`, `details.reason`
//!   and `details.missing`. Agent-written text is escaped for Slack (`&`, `<`, `>`), so
//!   it cannot mention `<!channel>` or disguise a link, and the text is capped at 3000
//!   characters. Requests carry the same signature headers (Slack ignores them).
//!   `max_batch_bytes` does not apply. Slack's URLs are `https://`, which this build
//!   cannot send to: point `url` at a proxy on the same host that forwards over TLS
//!   (for example an nginx `location` that `proxy_pass`es to
//!   `https://hooks.slack.com/services/…`), which may also check the signature.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::filter::KindFilter;
use crate::jsonl::JsonlSink;
use crate::runner::{RetryPolicy, RunnerConfig, SinkRunner};
use crate::source::{AppendSignal, EntrySource};
use crate::syslog::{
    Facility, MAX_DATAGRAM_BYTES, MIN_DATAGRAM_BYTES, Severity, SyslogConfig, SyslogProtocol,
    SyslogSink,
};
use crate::webhook::{WebhookConfig, WebhookFormat, WebhookSecret, WebhookSink};
use crate::{Sink, SinkError};

/// One `[[audit.sinks]]` table as written. Which keys apply depends on `kind`; a key of
/// another kind is an error, not ignored.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinkConfig {
    /// Unique; letters, digits, `-` and `_`. Names the cursor file and the status.
    pub name: String,
    /// `"jsonl"`, `"syslog"` or `"webhook"`.
    pub kind: String,
    /// Entries per delivery, 1 to 10000.
    pub batch_size: Option<i64>,
    /// First wait after a failure (default `"500ms"`).
    pub retry_initial: Option<String>,
    /// Longest wait between attempts (default `"1m"`).
    pub retry_max: Option<String>,
    /// Deliver only entries of these kinds: exact kinds (`"review.requested"`), prefixes
    /// (`"review.*"`) or the preset `"notifications"`. Default: every entry.
    pub kinds: Option<Vec<String>>,

    /// jsonl: the mirror file.
    pub path: Option<PathBuf>,

    /// syslog: `host:port`.
    pub address: Option<String>,
    /// syslog: `"udp"` or `"tcp"`; required, because only TCP notices a lost receiver.
    pub protocol: Option<String>,
    /// syslog: default `"local0"`.
    pub facility: Option<String>,
    /// syslog: default `"notice"`.
    pub severity: Option<String>,
    /// syslog: the HOSTNAME field; default the machine's host name.
    pub hostname: Option<String>,
    /// syslog over UDP: the largest datagram, 1024 to 65507 bytes (default 2048).
    pub max_datagram_bytes: Option<SizeValue>,

    /// webhook: an `http://` URL.
    pub url: Option<String>,
    /// webhook: the name of the environment variable that holds the HMAC secret.
    pub secret_env: Option<String>,
    /// webhook: the largest request body (default `"1MiB"`; format `"entries"` only).
    pub max_batch_bytes: Option<SizeValue>,
    /// webhook: `"entries"` (default) or `"slack"`.
    pub format: Option<String>,

    /// syslog and webhook: connect, write and (webhook) answer timeout (default `"10s"`).
    pub timeout: Option<String>,
}

/// A size written as a byte count or as text with a unit.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum SizeValue {
    Bytes(i64),
    Text(String),
}

/// A validated sink: everything checked that can be checked without I/O.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkSpec {
    pub name: String,
    /// Where it was written, `audit.sinks[N]`, for errors of the open phase.
    pub origin: String,
    pub batch_size: usize,
    pub retry: RetryPolicy,
    pub target: SinkTarget,
    /// Only entries of these kinds are delivered; `None`: every entry.
    pub kinds: Option<KindFilter>,
}

/// What a validated sink sends to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SinkTarget {
    /// A path as written; a relative one is relative to the server's working directory
    /// unless the caller resolves it first.
    Jsonl {
        path: PathBuf,
    },
    Syslog(SyslogConfig),
    Webhook {
        url: String,
        /// Read by `SinkSpec::open`, not before.
        secret_env: String,
        timeout: Duration,
        max_batch_bytes: usize,
        format: WebhookFormat,
    },
}

const KINDS: &str = "\"jsonl\", \"syslog\", \"webhook\"";
const COMMON_KEYS: &[&str] = &[
    "name",
    "kind",
    "batch_size",
    "retry_initial",
    "retry_max",
    "kinds",
];
const JSONL_KEYS: &[&str] = &["path"];
const SYSLOG_KEYS: &[&str] = &[
    "address",
    "protocol",
    "facility",
    "severity",
    "hostname",
    "max_datagram_bytes",
    "timeout",
];
const WEBHOOK_KEYS: &[&str] = &["url", "secret_env", "max_batch_bytes", "timeout", "format"];
/// Webhook secrets shorter than this are refused: an HMAC is only as strong as its key.
const MIN_SECRET_BYTES: usize = 16;

/// Validates every `[[audit.sinks]]` table, in order; names must be unique, and so must
/// JSONL paths (two sinks appending to one file would interleave and confuse each
/// other's recovery).
pub fn validate_sinks(configs: &[SinkConfig]) -> Result<Vec<SinkSpec>, SinkError> {
    let mut specs: Vec<SinkSpec> = Vec::with_capacity(configs.len());
    for (position, config) in configs.iter().enumerate() {
        let spec = config.validate(position)?;
        if let Some(earlier) = specs.iter().find(|earlier| earlier.name == spec.name) {
            return Err(invalid(
                &spec.origin,
                "name",
                format!(
                    "`{}` is already the name of {}; accepted: a name no other sink has",
                    spec.name, earlier.origin
                ),
            ));
        }
        if let SinkTarget::Jsonl { path } = &spec.target
            && let Some(earlier) = specs
                .iter()
                .find(|earlier| matches!(&earlier.target, SinkTarget::Jsonl { path: other } if other == path))
        {
            return Err(invalid(
                &spec.origin,
                "path",
                format!(
                    "{} is already the file of {}; accepted: a file no other sink writes",
                    path.display(),
                    earlier.origin
                ),
            ));
        }
        specs.push(spec);
    }
    Ok(specs)
}

impl SinkConfig {
    /// Validates this table, the `position`-th of `[[audit.sinks]]` (for error keys).
    pub fn validate(&self, position: usize) -> Result<SinkSpec, SinkError> {
        let origin = format!("audit.sinks[{position}]");
        let error = |key: &str, message: String| invalid(&origin, key, message);
        validate_name(&self.name).map_err(|message| error("name", message))?;
        let kind_keys = match self.kind.as_str() {
            "jsonl" => JSONL_KEYS,
            "syslog" => SYSLOG_KEYS,
            "webhook" => WEBHOOK_KEYS,
            other => {
                return Err(error(
                    "kind",
                    format!("`{other}` is not a sink kind; accepted: {KINDS}"),
                ));
            }
        };
        for (key, present) in self.kind_specific_keys() {
            if present && !kind_keys.contains(&key) {
                let accepted: Vec<&str> = COMMON_KEYS.iter().chain(kind_keys).copied().collect();
                return Err(error(
                    key,
                    format!(
                        "does not apply to kind = \"{}\"; accepted keys: {}",
                        self.kind,
                        accepted.join(", ")
                    ),
                ));
            }
        }

        let batch_size = match self.batch_size {
            None => match self.kind.as_str() {
                "jsonl" => 500,
                _ => 100,
            },
            Some(n) if (1..=10_000).contains(&n) => n as usize,
            Some(n) => {
                return Err(error(
                    "batch_size",
                    format!("{n} is out of range; accepted: 1 to 10000"),
                ));
            }
        };
        let defaults = RetryPolicy::default();
        let retry_initial = optional_duration(self.retry_initial.as_deref(), defaults.initial)
            .map_err(|message| error("retry_initial", message))?;
        let retry_max = optional_duration(self.retry_max.as_deref(), defaults.max)
            .map_err(|message| error("retry_max", message))?;
        if retry_max < retry_initial {
            return Err(error(
                "retry_max",
                "is shorter than retry_initial; accepted: a duration at least as long".to_owned(),
            ));
        }
        let retry = RetryPolicy {
            initial: retry_initial,
            max: retry_max,
        };
        let timeout = optional_duration(self.timeout.as_deref(), Duration::from_secs(10))
            .map_err(|message| error("timeout", message))?;
        let kinds = self
            .kinds
            .as_deref()
            .map(KindFilter::parse)
            .transpose()
            .map_err(|message| error("kinds", message))?;

        let target = match self.kind.as_str() {
            "jsonl" => {
                let path = required(
                    &self.path,
                    "a file path such as \"/var/log/airlock/audit.jsonl\"",
                )
                .map_err(|message| error("path", message))?;
                if path.as_os_str().is_empty() || path.file_name().is_none() {
                    return Err(error(
                        "path",
                        "is not a file path; accepted: a file path such as \"/var/log/airlock/audit.jsonl\""
                            .to_owned(),
                    ));
                }
                SinkTarget::Jsonl { path: path.clone() }
            }
            "syslog" => SinkTarget::Syslog(self.syslog(timeout, &error)?),
            _ => self.webhook(timeout, &error)?,
        };
        Ok(SinkSpec {
            name: self.name.clone(),
            origin,
            batch_size,
            retry,
            target,
            kinds,
        })
    }

    fn kind_specific_keys(&self) -> [(&'static str, bool); 12] {
        [
            ("path", self.path.is_some()),
            ("address", self.address.is_some()),
            ("protocol", self.protocol.is_some()),
            ("facility", self.facility.is_some()),
            ("severity", self.severity.is_some()),
            ("hostname", self.hostname.is_some()),
            ("max_datagram_bytes", self.max_datagram_bytes.is_some()),
            ("url", self.url.is_some()),
            ("secret_env", self.secret_env.is_some()),
            ("max_batch_bytes", self.max_batch_bytes.is_some()),
            ("timeout", self.timeout.is_some()),
            ("format", self.format.is_some()),
        ]
    }

    fn syslog(
        &self,
        timeout: Duration,
        error: &dyn Fn(&str, String) -> SinkError,
    ) -> Result<SyslogConfig, SinkError> {
        let address = required(&self.address, "HOST:PORT such as \"logs.internal:514\"")
            .map_err(|message| error("address", message))?;
        validate_host_port(address).map_err(|message| error("address", message))?;
        let protocol = match self.protocol.as_deref() {
            Some("udp") => SyslogProtocol::Udp,
            Some("tcp") => SyslogProtocol::Tcp,
            Some(other) => {
                return Err(error(
                    "protocol",
                    format!("`{other}` is not a protocol; accepted: \"udp\", \"tcp\""),
                ));
            }
            None => {
                return Err(error(
                    "protocol",
                    "is missing; accepted: \"udp\", \"tcp\" (only TCP notices a lost receiver)"
                        .to_owned(),
                ));
            }
        };
        let mut config = SyslogConfig::new(address.clone(), protocol);
        config.timeout = timeout;
        if let Some(name) = &self.facility {
            config.facility = Facility::from_name(name).ok_or_else(|| {
                error(
                    "facility",
                    format!(
                        "`{name}` is not a facility; accepted: {}",
                        Facility::names().join(", ")
                    ),
                )
            })?;
        }
        if let Some(name) = &self.severity {
            config.severity = Severity::from_name(name).ok_or_else(|| {
                error(
                    "severity",
                    format!(
                        "`{name}` is not a severity; accepted: {}",
                        Severity::names().join(", ")
                    ),
                )
            })?;
        }
        if let Some(hostname) = &self.hostname {
            if hostname.is_empty()
                || hostname.len() > 255
                || !hostname.bytes().all(|b| b.is_ascii_graphic())
            {
                return Err(error(
                    "hostname",
                    format!(
                        "`{hostname}` is not a syslog HOSTNAME; accepted: 1 to 255 printable ASCII characters without spaces"
                    ),
                ));
            }
            config.hostname = Some(hostname.clone());
        }
        if let Some(value) = &self.max_datagram_bytes {
            if protocol == SyslogProtocol::Tcp {
                return Err(error(
                    "max_datagram_bytes",
                    "applies to protocol = \"udp\" only; TCP frames have no size limit".to_owned(),
                ));
            }
            config.max_datagram_bytes = size(value, MIN_DATAGRAM_BYTES, MAX_DATAGRAM_BYTES)
                .map_err(|message| error("max_datagram_bytes", message))?;
        }
        Ok(config)
    }

    fn webhook(
        &self,
        timeout: Duration,
        error: &dyn Fn(&str, String) -> SinkError,
    ) -> Result<SinkTarget, SinkError> {
        let url = required(
            &self.url,
            "an http:// URL such as \"http://collector.internal:8080/airlock\"",
        )
        .map_err(|message| error("url", message))?;
        validate_url(url).map_err(|message| error("url", message))?;
        let secret_env = required(
            &self.secret_env,
            "an environment variable name such as \"AIRLOCK_WEBHOOK_SECRET\"",
        )
        .map_err(|message| error("secret_env", message))?;
        if !is_env_name(secret_env) {
            // The value is not echoed: a secret pasted here by mistake must not reach a log.
            return Err(error(
                "secret_env",
                "is not an environment variable name; it names the variable that holds the \
                 secret, never the secret itself; accepted: letters, digits and '_', not \
                 starting with a digit, such as \"AIRLOCK_WEBHOOK_SECRET\""
                    .to_owned(),
            ));
        }
        let format = match self.format.as_deref() {
            None => WebhookFormat::default(),
            Some(name) => WebhookFormat::from_name(name).ok_or_else(|| {
                error(
                    "format",
                    format!(
                        "`{}` is not a webhook format; accepted: \"entries\" (batches of \
                         entries, the default), \"slack\" (a Slack message per entry)",
                        name.escape_debug()
                    ),
                )
            })?,
        };
        let max_batch_bytes = match &self.max_batch_bytes {
            None => 1 << 20,
            Some(_) if format == WebhookFormat::Slack => {
                return Err(error(
                    "max_batch_bytes",
                    "applies to format = \"entries\" only; Slack messages go one per request"
                        .to_owned(),
                ));
            }
            Some(value) => {
                size(value, 1024, 64 << 20).map_err(|message| error("max_batch_bytes", message))?
            }
        };
        Ok(SinkTarget::Webhook {
            url: url.clone(),
            secret_env: secret_env.clone(),
            timeout,
            max_batch_bytes,
            format,
        })
    }
}

impl SinkSpec {
    /// Builds the sink. Reads the webhook secret from its environment variable; opens no
    /// file and no connection (the first delivery does, so a receiver that is down is a
    /// status, not a startup failure).
    pub fn open(&self) -> Result<Box<dyn Sink>, SinkError> {
        Ok(match &self.target {
            SinkTarget::Jsonl { path } => {
                let sink = JsonlSink::new(path.clone());
                Box::new(if self.kinds.is_some() {
                    sink.expect_gaps()
                } else {
                    sink
                })
            }
            SinkTarget::Syslog(config) => Box::new(SyslogSink::new(config.clone())),
            SinkTarget::Webhook {
                url,
                secret_env,
                timeout,
                max_batch_bytes,
                format,
            } => {
                let secret = std::env::var_os(secret_env)
                    .filter(|secret| secret.len() >= MIN_SECRET_BYTES)
                    .ok_or_else(|| {
                        invalid(
                            &self.origin,
                            "secret_env",
                            format!(
                                "the environment variable `{secret_env}` is not set or shorter than \
                                 {MIN_SECRET_BYTES} bytes; accepted: a random secret such as the \
                                 output of `openssl rand -hex 32`"
                            ),
                        )
                    })?;
                let mut config = WebhookConfig::new(
                    url.clone(),
                    WebhookSecret::new(secret.into_encoded_bytes()),
                );
                config.timeout = *timeout;
                config.max_batch_bytes = *max_batch_bytes;
                config.format = *format;
                Box::new(WebhookSink::new(config))
            }
        })
    }

    /// The runner settings, with the cursor at `<cursor_directory>/<name>.cursor`.
    pub fn runner_config(&self, cursor_directory: &Path) -> RunnerConfig {
        let mut config = RunnerConfig::new(
            self.name.clone(),
            cursor_directory.join(format!("{}.cursor", self.name)),
        );
        config.batch_size = self.batch_size;
        config.retry = self.retry;
        config.kinds = self.kinds.clone();
        config
    }

    /// Opens the sink and starts its runner.
    pub fn start(
        &self,
        source: Arc<dyn EntrySource>,
        signal: AppendSignal,
        cursor_directory: &Path,
    ) -> Result<SinkRunner, SinkError> {
        SinkRunner::start(
            self.open()?,
            source,
            signal,
            self.runner_config(cursor_directory),
        )
    }
}

fn invalid(origin: &str, key: &str, message: String) -> SinkError {
    SinkError::Config {
        key: format!("{origin}.{key}"),
        message,
    }
}

fn required<'a, T>(value: &'a Option<T>, accepted: &str) -> Result<&'a T, String> {
    value
        .as_ref()
        .ok_or_else(|| format!("is missing; accepted: {accepted}"))
}

fn validate_name(name: &str) -> Result<(), String> {
    let well_formed = (1..=64).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if well_formed {
        Ok(())
    } else {
        Err(format!(
            "`{name}` is not a sink name; accepted: 1 to 64 letters, digits, '-' and '_', \
             starting with a letter or digit, such as \"siem\""
        ))
    }
}

fn validate_host_port(address: &str) -> Result<(), String> {
    let accepted = "accepted: HOST:PORT such as \"logs.internal:514\" or \"[::1]:514\"";
    let Some((host, port)) = address.rsplit_once(':') else {
        return Err(format!("`{address}` has no port; {accepted}"));
    };
    let host_ok = if let Some(inner) = host.strip_prefix('[') {
        inner
            .strip_suffix(']')
            .is_some_and(|ip| ip.parse::<std::net::Ipv6Addr>().is_ok())
    } else {
        !host.is_empty() && !host.contains(':') && !host.contains(char::is_whitespace)
    };
    let port_ok = port.parse::<u16>().is_ok_and(|port| port != 0);
    if host_ok && port_ok {
        Ok(())
    } else {
        Err(format!("`{address}` is not HOST:PORT; {accepted}"))
    }
}

fn validate_url(url: &str) -> Result<(), String> {
    if url
        .get(..8)
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case("https://"))
    {
        return Err(format!(
            "`{url}` needs TLS, which this build does not include; accepted: an http:// URL \
             (put a TLS-terminating proxy on the same host in front of an https endpoint)"
        ));
    }
    let parsed = url.parse::<ureq::http::Uri>().ok();
    let valid = parsed.as_ref().is_some_and(|uri| {
        uri.scheme_str() == Some("http") && uri.host().is_some_and(|host| !host.is_empty())
    });
    if valid {
        Ok(())
    } else {
        Err(format!(
            "`{url}` is not an http:// URL; accepted: a URL such as \"http://collector.internal:8080/airlock\""
        ))
    }
}

fn is_env_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A duration as written elsewhere in airlock.toml: `<whole number><ms|s|m|h>`, positive,
/// at most an hour (no sink setting needs more).
fn optional_duration(text: Option<&str>, default: Duration) -> Result<Duration, String> {
    let Some(text) = text else {
        return Ok(default);
    };
    let accepted = "accepted: a whole number followed by ms, s, m or h, from 1ms to 1h, such as \"500ms\" or \"10s\"";
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(split);
    let millis_per_unit: u64 = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => return Err(format!("`{text}` is not a duration; {accepted}")),
    };
    let millis = number
        .parse::<u64>()
        .ok()
        .and_then(|value| value.checked_mul(millis_per_unit))
        .filter(|millis| (1..=3_600_000).contains(millis))
        .ok_or_else(|| format!("`{text}` is out of range or not a duration; {accepted}"))?;
    Ok(Duration::from_millis(millis))
}

/// A size as written elsewhere in airlock.toml: a byte count, or a whole number with
/// B, KiB, MiB (powers of 1024) or KB, MB (powers of 1000); between `min` and `max`.
fn size(value: &SizeValue, min: usize, max: usize) -> Result<usize, String> {
    let accepted = format!("accepted: {min} to {max} bytes, as a number or such as \"64KiB\"");
    let bytes = match value {
        SizeValue::Bytes(bytes) => u64::try_from(*bytes).ok(),
        SizeValue::Text(text) => {
            let trimmed = text.trim();
            let split = trimmed
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(trimmed.len());
            let (number, unit) = trimmed.split_at(split);
            let factor: Option<u64> = match unit.trim() {
                "" | "B" => Some(1),
                "KiB" => Some(1 << 10),
                "MiB" => Some(1 << 20),
                "KB" => Some(1_000),
                "MB" => Some(1_000_000),
                _ => None,
            };
            factor.and_then(|factor| number.parse::<u64>().ok()?.checked_mul(factor))
        }
    };
    let shown = match value {
        SizeValue::Bytes(bytes) => bytes.to_string(),
        SizeValue::Text(text) => format!("`{text}`"),
    };
    bytes
        .and_then(|bytes| usize::try_from(bytes).ok())
        .filter(|bytes| (min..=max).contains(bytes))
        .ok_or_else(|| format!("{shown} is not a size in range; {accepted}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct File {
        audit: Audit,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Audit {
        sinks: Vec<SinkConfig>,
    }

    fn parse(text: &str) -> Result<Vec<SinkSpec>, String> {
        let file: File = toml::from_str(text).map_err(|error| error.to_string())?;
        validate_sinks(&file.audit.sinks).map_err(|error| error.to_string())
    }

    /// `text` is one `[[audit.sinks]]` body; the error must contain every fragment.
    fn check_error(body: &str, fragments: &[&str]) {
        let text = format!("[[audit.sinks]]\n{body}");
        let message = parse(&text).expect_err(body);
        for fragment in fragments {
            assert!(
                message.contains(fragment),
                "{body:?}: {message:?} lacks {fragment:?}"
            );
        }
    }

    #[test]
    fn the_documented_example_is_valid() {
        let example = include_str!("config.rs")
            .lines()
            .skip_while(|line| !line.starts_with("//! ```toml"))
            .skip(1)
            .take_while(|line| !line.starts_with("//! ```"))
            .map(|line| line.strip_prefix("//!").unwrap_or(line).trim_start())
            .collect::<Vec<_>>()
            .join("\n");
        let specs = parse(&example).unwrap();
        assert_eq!(specs.len(), 4);
        assert_eq!(
            specs[0].target,
            SinkTarget::Jsonl {
                path: "/var/log/airlock/audit.jsonl".into()
            }
        );
        assert_eq!(specs[0].batch_size, 500);
        let SinkTarget::Syslog(syslog) = &specs[1].target else {
            panic!("{:?}", specs[1]);
        };
        assert_eq!(syslog.protocol, SyslogProtocol::Tcp);
        assert_eq!(syslog.facility, Facility::LOCAL0);
        assert_eq!(syslog.severity, Severity::NOTICE);
        assert_eq!(
            specs[2].target,
            SinkTarget::Webhook {
                url: "http://collector.internal:8080/airlock".into(),
                secret_env: "AIRLOCK_WEBHOOK_SECRET".into(),
                timeout: Duration::from_secs(10),
                max_batch_bytes: 1 << 20,
                format: WebhookFormat::Entries,
            }
        );
        assert_eq!(specs[2].retry, RetryPolicy::default());
        assert!(specs[..3].iter().all(|spec| spec.kinds.is_none()));
        assert_eq!(
            specs[3].target,
            SinkTarget::Webhook {
                url: "http://127.0.0.1:8443/services/T000/B000/XXXX".into(),
                secret_env: "AIRLOCK_NOTIFY_SECRET".into(),
                timeout: Duration::from_secs(10),
                max_batch_bytes: 1 << 20,
                format: WebhookFormat::Slack,
            }
        );
        let kinds = specs[3].kinds.as_ref().unwrap();
        assert!(kinds.matches("review.requested") && kinds.matches("post_review.overdue"));
        assert!(kinds.matches("deploy.paused") && !kinds.matches("review.approved"));
        assert_eq!(
            specs[3].runner_config(Path::new("/s")).kinds.as_ref(),
            Some(kinds)
        );
    }

    #[test]
    fn optional_keys_are_read() {
        let specs = parse(
            "[[audit.sinks]]\nname='s'\nkind='syslog'\naddress='[::1]:514'\nprotocol='udp'\n\
             facility='auth'\nseverity='info'\nhostname='gate-1'\nmax_datagram_bytes='8KiB'\n\
             timeout='250ms'\nbatch_size=7\nretry_initial='10ms'\nretry_max='2s'\n",
        )
        .unwrap();
        let SinkTarget::Syslog(syslog) = &specs[0].target else {
            panic!();
        };
        assert_eq!(syslog.facility, Facility::from_name("auth").unwrap());
        assert_eq!(syslog.severity, Severity::from_name("info").unwrap());
        assert_eq!(syslog.hostname.as_deref(), Some("gate-1"));
        assert_eq!(syslog.max_datagram_bytes, 8192);
        assert_eq!(syslog.timeout, Duration::from_millis(250));
        assert_eq!(specs[0].batch_size, 7);
        assert_eq!(
            specs[0].retry,
            RetryPolicy {
                initial: Duration::from_millis(10),
                max: Duration::from_secs(2)
            }
        );
    }

    #[test]
    fn errors_name_the_key_and_what_is_accepted() {
        let jsonl = "name='m'\nkind='jsonl'\n";
        let syslog = "name='s'\nkind='syslog'\naddress='h:514'\n";
        let webhook = "name='w'\nkind='webhook'\nurl='http://h/x'\n";
        check_error(
            "name='m'\nkind='kafka'\n",
            &[
                "audit.sinks[0].kind",
                "kafka",
                "\"jsonl\", \"syslog\", \"webhook\"",
            ],
        );
        check_error("kind='jsonl'\npath='x'\n", &["missing field `name`"]);
        check_error(
            "name='m'\nkind='jsonl'\npath='x'\nsecret='s'\n",
            &["unknown field `secret`", "secret_env"],
        );
        check_error(
            "name='a b'\nkind='jsonl'\npath='x'\n",
            &["audit.sinks[0].name", "letters, digits"],
        );
        check_error(
            "name=''\nkind='jsonl'\npath='x'\n",
            &["audit.sinks[0].name"],
        );
        check_error(jsonl, &["audit.sinks[0].path", "missing", "file path"]);
        check_error(
            &format!("{jsonl}path='x'\nurl='http://h/'\n"),
            &[
                "audit.sinks[0].url",
                "kind = \"jsonl\"",
                "accepted keys: name, kind, batch_size, retry_initial, retry_max, kinds, path",
            ],
        );
        check_error(
            &format!("{jsonl}path='x'\nbatch_size=0\n"),
            &["audit.sinks[0].batch_size", "1 to 10000"],
        );
        check_error(
            &format!("{jsonl}path='x'\nretry_initial='5'\n"),
            &["audit.sinks[0].retry_initial", "ms, s, m or h"],
        );
        check_error(
            &format!("{jsonl}path='x'\nretry_initial='2s'\nretry_max='1s'\n"),
            &["audit.sinks[0].retry_max", "retry_initial"],
        );
        check_error(
            &format!("{jsonl}path='x'\nretry_max='0s'\n"),
            &["audit.sinks[0].retry_max", "1ms to 1h"],
        );
        check_error(
            syslog,
            &["audit.sinks[0].protocol", "missing", "\"udp\", \"tcp\""],
        );
        check_error(
            &format!("{syslog}protocol='sctp'\n"),
            &["audit.sinks[0].protocol", "sctp", "\"udp\", \"tcp\""],
        );
        check_error(
            &format!("{syslog}protocol='udp'\nfacility='local9'\n"),
            &["audit.sinks[0].facility", "local9", "local0", "daemon"],
        );
        check_error(
            &format!("{syslog}protocol='udp'\nseverity='loud'\n"),
            &["audit.sinks[0].severity", "notice", "warning"],
        );
        check_error(
            &format!("{syslog}protocol='udp'\nhostname='a b'\n"),
            &["audit.sinks[0].hostname", "printable"],
        );
        check_error(
            &format!("{syslog}protocol='udp'\nmax_datagram_bytes=100\n"),
            &["audit.sinks[0].max_datagram_bytes", "1024 to 65507"],
        );
        check_error(
            &format!("{syslog}protocol='tcp'\nmax_datagram_bytes=2048\n"),
            &["audit.sinks[0].max_datagram_bytes", "udp"],
        );
        check_error(
            "name='s'\nkind='syslog'\naddress='logs'\nprotocol='udp'\n",
            &["audit.sinks[0].address", "HOST:PORT"],
        );
        check_error(
            "name='s'\nkind='syslog'\naddress='h:0'\nprotocol='udp'\n",
            &["audit.sinks[0].address"],
        );
        check_error(
            "name='s'\nkind='syslog'\naddress='::1:514'\nprotocol='udp'\n",
            &["audit.sinks[0].address", "[::1]:514"],
        );
        check_error(
            "name='s'\nkind='syslog'\nprotocol='udp'\n",
            &["audit.sinks[0].address", "missing"],
        );
        check_error(
            webhook,
            &[
                "audit.sinks[0].secret_env",
                "missing",
                "AIRLOCK_WEBHOOK_SECRET",
            ],
        );
        check_error(
            "name='w'\nkind='webhook'\nurl='https://h/x'\nsecret_env='S'\n",
            &["audit.sinks[0].url", "TLS", "http://"],
        );
        check_error(
            "name='w'\nkind='webhook'\nurl='ftp://h/x'\nsecret_env='S'\n",
            &["audit.sinks[0].url", "http://"],
        );
        check_error(
            "name='w'\nkind='webhook'\nurl='http://'\nsecret_env='S'\n",
            &["audit.sinks[0].url"],
        );
        check_error(
            &format!("{webhook}secret_env='MY_SECRET'\nmax_batch_bytes='1GB'\n"),
            &["audit.sinks[0].max_batch_bytes", "1024 to"],
        );
        check_error(
            &format!("{webhook}secret_env='MY_SECRET'\ntimeout='forever'\n"),
            &["audit.sinks[0].timeout"],
        );
        check_error(
            &format!("{webhook}secret_env='MY_SECRET'\naddress='h:1'\n"),
            &["audit.sinks[0].address", "kind = \"webhook\""],
        );
        check_error(
            &format!("{webhook}secret_env='MY_SECRET'\nformat='teams'\n"),
            &[
                "audit.sinks[0].format",
                "`teams`",
                "\"entries\"",
                "\"slack\"",
            ],
        );
        check_error(
            &format!("{webhook}secret_env='S'\nformat='slack'\nmax_batch_bytes='2MiB'\n"),
            &["audit.sinks[0].max_batch_bytes", "format = \"entries\""],
        );
        check_error(
            &format!("{jsonl}path='x'\nformat='slack'\n"),
            &["audit.sinks[0].format", "kind = \"jsonl\""],
        );
        check_error(
            &format!("{syslog}protocol='udp'\nkinds=['review*']\n"),
            &[
                "audit.sinks[0].kinds",
                "`review*`",
                "\"review.requested\"",
                "\"review.*\"",
                "\"notifications\"",
            ],
        );
        check_error(
            &format!("{jsonl}path='x'\nkinds=[]\n"),
            &["audit.sinks[0].kinds", "is empty"],
        );
        check_error(
            &format!("{jsonl}path='x'\nkinds='notifications'\n"),
            &["kinds", "sequence"],
        );
    }

    #[test]
    fn a_secret_pasted_into_secret_env_is_not_echoed() {
        let message = parse(
            "[[audit.sinks]]\nname='w'\nkind='webhook'\nurl='http://h/'\nsecret_env='s3cr3t-value!'\n",
        )
        .unwrap_err();
        assert!(message.contains("audit.sinks[0].secret_env"), "{message}");
        assert!(!message.contains("s3cr3t"), "{message}");
    }

    #[test]
    fn names_and_jsonl_paths_are_unique() {
        let message = parse(
            "[[audit.sinks]]\nname='a'\nkind='jsonl'\npath='x'\n\
             [[audit.sinks]]\nname='a'\nkind='jsonl'\npath='y'\n",
        )
        .unwrap_err();
        assert!(
            message.contains("audit.sinks[1].name") && message.contains("audit.sinks[0]"),
            "{message}"
        );
        let message = parse(
            "[[audit.sinks]]\nname='a'\nkind='jsonl'\npath='x'\n\
             [[audit.sinks]]\nname='b'\nkind='jsonl'\npath='x'\n",
        )
        .unwrap_err();
        assert!(message.contains("audit.sinks[1].path"), "{message}");
    }

    #[test]
    fn open_reads_the_secret_from_the_environment_only_then() {
        let spec = parse(
            "[[audit.sinks]]\nname='w'\nkind='webhook'\nurl='http://h/'\n\
             secret_env='AIRLOCK_SINKS_TEST_UNSET_SECRET'\n",
        )
        .unwrap()
        .remove(0);
        let error = spec.open().err().expect("the variable is not set");
        let message = error.to_string();
        assert!(message.contains("audit.sinks[0].secret_env"), "{message}");
        assert!(
            message.contains("AIRLOCK_SINKS_TEST_UNSET_SECRET"),
            "{message}"
        );
        assert_eq!(
            spec.runner_config(Path::new("/state/sinks")).cursor_path,
            Path::new("/state/sinks/w.cursor")
        );
    }
}
