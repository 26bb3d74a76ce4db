//! `airlock.toml`: the raw form as written (parsed strictly: unknown keys are errors) and
//! the validated form the rest of airlock uses. Opening databases and repositories named
//! here is the caller's job; this module only reads text.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;

use crate::units::{parse_duration, parse_size};

/// The file name airlock looks for at the root of a repository.
pub const FILE_NAME: &str = "airlock.toml";

/// How check commands are isolated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SandboxMode {
    /// bubblewrap must be present; without it every check fails with a message naming the package.
    Required,
    /// bubblewrap when present, otherwise unsandboxed (recorded with the verdict).
    BestEffort,
    /// Never sandboxed. For repositories whose checks need the network or the host.
    Off,
}

impl SandboxMode {
    pub fn as_str(self) -> &'static str {
        match self {
            SandboxMode::Required => "required",
            SandboxMode::BestEffort => "best-effort",
            SandboxMode::Off => "off",
        }
    }
}

/// One Level 1 check command, run with `sh -c` in the change's workspace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckCommand {
    pub name: String,
    pub run: String,
    pub timeout: Duration,
}

/// The validated configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    pub target_branch: String,
    pub checks: Vec<CheckCommand>,
    pub check_timeout: Duration,
    pub output_limit: usize,
    pub sandbox: SandboxMode,
    /// Names of environment variables passed through to check commands; all others are scrubbed.
    pub pass_env: Vec<String>,
    pub limits: Limits,
    pub server: ServerConfig,
    pub scan: ScanConfig,
    pub audit: AuditConfig,
    pub review: ReviewConfig,
    /// Levels 3 and 4; None when `[deploy]` is absent (approved changes stay approved).
    pub deploy: Option<crate::deploy::DeployConfig>,
}

/// Level 2: the policy, the review SLA and break-glass.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReviewConfig {
    /// The Rego policy, relative to the repository root.
    pub policy: String,
    /// Longest a policy evaluation may take; beyond it the change fails closed.
    pub policy_timeout: Duration,
    /// Time to a decision: reminder at half, escalation at the end.
    pub sla: Duration,
    /// Per-risk SLAs overriding `sla`.
    pub sla_by_risk: std::collections::BTreeMap<crate::review::Risk, Duration>,
    /// When set, a review still open this long after it was requested rejects the change
    /// as expired.
    pub expire_after: Option<Duration>,
    /// The SLA of the mandatory review that follows a break-glass deployment.
    pub post_review_sla: Duration,
}

impl ReviewConfig {
    pub fn sla_for(&self, risk: crate::review::Risk) -> Duration {
        self.sla_by_risk.get(&risk).copied().unwrap_or(self.sla)
    }
}

/// The tamper-evident audit log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditConfig {
    /// How often a signed checkpoint is published while the log grows.
    pub checkpoint_interval: Duration,
    /// Where entries are forwarded (JSONL mirror, syslog, webhook), validated.
    pub sinks: Vec<airlock_sinks::SinkSpec>,
    /// Payloads (test output) of entries older than this are deleted; the entries stay.
    /// None keeps them forever.
    pub payload_retention: Option<Duration>,
}

/// The dangerous-change scan that opens Level 1.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScanConfig {
    pub enabled: bool,
    /// Findings at or above this severity reject the change.
    pub blocking: airlock_scan::Severity,
    /// Extra rule files (TOML, the built-in format), relative to the repository root.
    pub rule_files: Vec<String>,
    /// Severity overrides by rule id.
    pub severity: std::collections::BTreeMap<String, airlock_scan::Severity>,
    pub allow_paths: Vec<String>,
    /// Rule ids or category names whose findings never block.
    pub allow_rules: Vec<String>,
    pub allow_fingerprints: Vec<String>,
    /// None keeps the scanner's defaults (migrations/, db/migrate/, alembic/versions, ...).
    pub migration_dirs: Option<Vec<String>>,
    pub mass_deletion: airlock_scan::MassDeletionThresholds,
}

/// Bounds on what one change may contain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    pub max_change_bytes: u64,
    pub max_files: usize,
    pub allow_binary: bool,
    /// Changes one agent may have in flight (not yet approved, rejected, expired or failed).
    pub agent_changes_in_flight: usize,
    /// Proposals (new changes and revisions) one agent may make per hour.
    pub agent_proposals_per_hour: usize,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerConfig {
    pub listen: String,
    pub workers: usize,
    /// Relative paths are relative to the repository root.
    pub database: String,
    pub workspaces: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config::parse("", FILE_NAME).expect("the empty file is a valid configuration")
    }
}

/// A configuration error: the file, the key and what is accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}: {message}")]
pub struct ConfigError {
    pub file: String,
    pub message: String,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    repository: RawRepository,
    #[serde(default)]
    checks: RawChecks,
    #[serde(default)]
    limits: RawLimits,
    #[serde(default)]
    server: RawServer,
    #[serde(default)]
    scan: RawScan,
    #[serde(default)]
    audit: RawAudit,
    #[serde(default)]
    review: RawReview,
    deploy: Option<crate::deploy::RawDeploy>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawReview {
    policy: Option<String>,
    policy_timeout: Option<String>,
    sla: Option<String>,
    #[serde(default)]
    sla_by_risk: std::collections::BTreeMap<String, String>,
    expire_after: Option<String>,
    post_review_sla: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawAudit {
    checkpoint_interval: Option<String>,
    payload_retention: Option<String>,
    #[serde(default)]
    sinks: Vec<airlock_sinks::SinkConfig>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawScan {
    enabled: Option<bool>,
    blocking: Option<airlock_scan::Severity>,
    #[serde(default)]
    rules: Vec<String>,
    #[serde(default)]
    severity: std::collections::BTreeMap<String, airlock_scan::Severity>,
    #[serde(default)]
    allow_paths: Vec<String>,
    #[serde(default)]
    allow_rules: Vec<String>,
    #[serde(default)]
    allow_fingerprints: Vec<String>,
    migration_dirs: Option<Vec<String>>,
    #[serde(default)]
    mass_deletion: RawMassDeletion,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawMassDeletion {
    min_deleted_files: Option<i64>,
    min_deleted_source_files: Option<i64>,
    min_deleted_source_lines: Option<i64>,
    min_removed_lines: Option<i64>,
    min_removed_percent: Option<i64>,
    min_files: Option<i64>,
    min_gutted_lines: Option<i64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawRepository {
    target_branch: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawChecks {
    #[serde(default)]
    commands: Vec<RawCommand>,
    timeout: Option<String>,
    output_limit: Option<SizeValue>,
    sandbox: Option<SandboxMode>,
    #[serde(default)]
    pass_env: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCommand {
    name: String,
    run: String,
    timeout: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    max_change_bytes: Option<SizeValue>,
    max_files: Option<i64>,
    allow_binary: Option<bool>,
    agent_changes_in_flight: Option<i64>,
    agent_proposals_per_hour: Option<i64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawServer {
    listen: Option<String>,
    workers: Option<i64>,
    database: Option<String>,
    workspaces: Option<i64>,
}

/// Sizes may be written as a number of bytes or as text with a unit.
#[derive(Deserialize)]
#[serde(untagged)]
enum SizeValue {
    Bytes(i64),
    Text(String),
}

impl Config {
    /// Parses and validates the text of `airlock.toml`. `file` names it in errors.
    pub fn parse(text: &str, file: &str) -> Result<Config, ConfigError> {
        let error = |message: String| ConfigError {
            file: file.to_owned(),
            message,
        };
        let raw: RawConfig = toml::from_str(text).map_err(|e| error(describe_toml_error(&e)))?;

        let target_branch = raw
            .repository
            .target_branch
            .unwrap_or_else(|| "main".to_owned());
        validate_branch(&target_branch)
            .map_err(|m| error(format!("key `repository.target_branch`: {m}")))?;

        let check_timeout = match raw.checks.timeout {
            Some(text) => {
                positive_duration(&text).map_err(|m| error(format!("key `checks.timeout`: {m}")))?
            }
            None => Duration::from_secs(600),
        };
        let mut checks = Vec::with_capacity(raw.checks.commands.len());
        for (index, command) in raw.checks.commands.into_iter().enumerate() {
            let key = format!("checks.commands[{index}]");
            crate::ids::validate_name(&command.name)
                .map_err(|m| error(format!("key `{key}.name`: {m}")))?;
            if checks.iter().any(|c: &CheckCommand| c.name == command.name) {
                return Err(error(format!(
                    "key `{key}.name`: `{}` is used by two commands; names must be unique",
                    command.name
                )));
            }
            if command.run.trim().is_empty() {
                return Err(error(format!(
                    "key `{key}.run`: empty command; accepted: a shell command line such as \"cargo test\""
                )));
            }
            let timeout = match command.timeout {
                Some(text) => positive_duration(&text)
                    .map_err(|m| error(format!("key `{key}.timeout`: {m}")))?,
                None => check_timeout,
            };
            checks.push(CheckCommand {
                name: command.name,
                run: command.run,
                timeout,
            });
        }

        let output_limit = size(
            raw.checks.output_limit,
            64 << 10,
            "checks.output_limit",
            1 << 30,
        )
        .map_err(error)?;
        for name in &raw.checks.pass_env {
            let ok =
                !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
            if !ok {
                return Err(error(format!(
                    "key `checks.pass_env`: `{}` is not an environment variable name; accepted: letters, digits and '_'",
                    crate::ids::printable(name)
                )));
            }
        }

        let mass_deletion = {
            let raw = &raw.scan.mass_deletion;
            let default = airlock_scan::MassDeletionThresholds::default();
            let key = |name: &str| format!("scan.mass_deletion.{name}");
            airlock_scan::MassDeletionThresholds {
                min_deleted_files: count(
                    raw.min_deleted_files,
                    default.min_deleted_files,
                    &key("min_deleted_files"),
                    1_000_000,
                )
                .map_err(error)?,
                min_deleted_source_files: count(
                    raw.min_deleted_source_files,
                    default.min_deleted_source_files,
                    &key("min_deleted_source_files"),
                    1_000_000,
                )
                .map_err(error)?,
                min_deleted_source_lines: count(
                    raw.min_deleted_source_lines,
                    default.min_deleted_source_lines,
                    &key("min_deleted_source_lines"),
                    100_000_000,
                )
                .map_err(error)?,
                min_removed_lines: count(
                    raw.min_removed_lines,
                    default.min_removed_lines,
                    &key("min_removed_lines"),
                    100_000_000,
                )
                .map_err(error)?,
                min_removed_percent: count(
                    raw.min_removed_percent,
                    usize::from(default.min_removed_percent),
                    &key("min_removed_percent"),
                    100,
                )
                .map_err(error)? as u8,
                min_files: count(
                    raw.min_files,
                    default.min_files,
                    &key("min_files"),
                    1_000_000,
                )
                .map_err(error)?,
                min_gutted_lines: count(
                    raw.min_gutted_lines,
                    default.min_gutted_lines,
                    &key("min_gutted_lines"),
                    100_000_000,
                )
                .map_err(error)?,
            }
        };

        let limits = Limits {
            max_change_bytes: size(
                raw.limits.max_change_bytes,
                10 << 20,
                "limits.max_change_bytes",
                1 << 30,
            )
            .map_err(error)? as u64,
            max_files: count(raw.limits.max_files, 2_000, "limits.max_files", 1_000_000)
                .map_err(error)?,
            allow_binary: raw.limits.allow_binary.unwrap_or(false),
            agent_changes_in_flight: count(
                raw.limits.agent_changes_in_flight,
                20,
                "limits.agent_changes_in_flight",
                100_000,
            )
            .map_err(error)?,
            agent_proposals_per_hour: count(
                raw.limits.agent_proposals_per_hour,
                120,
                "limits.agent_proposals_per_hour",
                1_000_000,
            )
            .map_err(error)?,
        };

        let listen = raw
            .server
            .listen
            .unwrap_or_else(|| "127.0.0.1:7070".to_owned());
        if listen.parse::<std::net::SocketAddr>().is_err() {
            return Err(error(format!(
                "key `server.listen`: `{}` is not an address; accepted: IP:PORT such as \"127.0.0.1:7070\"",
                crate::ids::printable(&listen)
            )));
        }
        let server = ServerConfig {
            listen,
            workers: count(raw.server.workers, 2, "server.workers", 256).map_err(error)?,
            database: raw
                .server
                .database
                .unwrap_or_else(|| ".airlock/airlock.db".to_owned()),
            workspaces: count(raw.server.workspaces, 4, "server.workspaces", 1024)
                .map_err(error)?,
        };
        if server.database.trim().is_empty() {
            return Err(error("key `server.database`: empty path; accepted: a file path such as \".airlock/airlock.db\"".into()));
        }

        let checkpoint_interval = match &raw.audit.checkpoint_interval {
            None => Duration::from_secs(10),
            Some(text) => positive_duration(text)
                .map_err(|e| error(format!("key `audit.checkpoint_interval`: {e}")))?,
        };

        let payload_retention = raw
            .audit
            .payload_retention
            .as_deref()
            .map(positive_duration)
            .transpose()
            .map_err(|e| error(format!("key `audit.payload_retention`: {e}")))?;
        let sinks =
            airlock_sinks::validate_sinks(&raw.audit.sinks).map_err(|e| error(e.to_string()))?;
        let review = review_config(raw.review).map_err(error)?;
        let deploy = raw
            .deploy
            .map(|deploy| deploy.validate(&target_branch))
            .transpose()
            .map_err(error)?;

        Ok(Config {
            target_branch,
            checks,
            check_timeout,
            output_limit: output_limit as usize,
            sandbox: raw.checks.sandbox.unwrap_or(SandboxMode::Required),
            pass_env: raw.checks.pass_env,
            limits,
            server,
            scan: ScanConfig {
                enabled: raw.scan.enabled.unwrap_or(true),
                blocking: raw.scan.blocking.unwrap_or(airlock_scan::Severity::High),
                rule_files: raw.scan.rules,
                severity: raw.scan.severity,
                allow_paths: raw.scan.allow_paths,
                allow_rules: raw.scan.allow_rules,
                allow_fingerprints: raw.scan.allow_fingerprints,
                migration_dirs: raw.scan.migration_dirs,
                mass_deletion,
            },
            audit: AuditConfig {
                checkpoint_interval,
                sinks,
                payload_retention,
            },
            review,
            deploy,
        })
    }
}

fn review_config(raw: RawReview) -> Result<ReviewConfig, String> {
    let duration = |value: Option<String>, key: &str, default: Duration| match value {
        None => Ok(default),
        Some(text) => positive_duration(&text).map_err(|m| format!("key `review.{key}`: {m}")),
    };
    let policy = raw
        .policy
        .unwrap_or_else(|| ".airlock/policy.rego".to_owned());
    if policy.trim().is_empty() {
        return Err(
            "key `review.policy`: empty path; accepted: a file path such as \".airlock/policy.rego\""
                .into(),
        );
    }
    let policy_timeout = duration(raw.policy_timeout, "policy_timeout", Duration::from_secs(2))?;
    if policy_timeout > Duration::from_secs(60) {
        return Err("key `review.policy_timeout`: longer than 60s; accepted: up to \"60s\"".into());
    }
    let mut sla_by_risk = std::collections::BTreeMap::new();
    for (risk, text) in raw.sla_by_risk {
        let risk: crate::review::Risk = risk
            .parse()
            .map_err(|m| format!("key `review.sla_by_risk`: {m}"))?;
        let sla = positive_duration(&text)
            .map_err(|m| format!("key `review.sla_by_risk.{risk}`: {m}"))?;
        sla_by_risk.insert(risk, sla);
    }
    Ok(ReviewConfig {
        policy,
        policy_timeout,
        sla: duration(raw.sla, "sla", Duration::from_secs(4 * 3600))?,
        sla_by_risk,
        expire_after: raw
            .expire_after
            .map(|text| {
                positive_duration(&text).map_err(|m| format!("key `review.expire_after`: {m}"))
            })
            .transpose()?,
        post_review_sla: duration(
            raw.post_review_sla,
            "post_review_sla",
            Duration::from_secs(24 * 3600),
        )?,
    })
}

/// toml's messages already quote the offending line and, for unknown keys and enum
/// values, list what is expected; this keeps them and drops the trailing newline.
fn describe_toml_error(error: &toml::de::Error) -> String {
    error.to_string().trim_end().to_owned()
}

pub(crate) fn positive_duration(text: &str) -> Result<Duration, String> {
    let duration = parse_duration(text)?;
    if duration.is_zero() {
        return Err(format!(
            "`{text}` is zero; accepted: a positive duration such as \"10m\""
        ));
    }
    Ok(duration)
}

fn size(value: Option<SizeValue>, default: u64, key: &str, max: u64) -> Result<u64, String> {
    let bytes = match value {
        None => return Ok(default),
        Some(SizeValue::Bytes(n)) if n > 0 => n as u64,
        Some(SizeValue::Bytes(n)) => {
            return Err(format!(
                "key `{key}`: {n} is not positive; accepted: a size such as 65536 or \"64KiB\""
            ));
        }
        Some(SizeValue::Text(text)) => {
            parse_size(&text).map_err(|m| format!("key `{key}`: {m}"))?
        }
    };
    if bytes == 0 || bytes > max {
        return Err(format!(
            "key `{key}`: {bytes} bytes is out of range; accepted: 1 byte to {max} bytes"
        ));
    }
    Ok(bytes)
}

fn count(value: Option<i64>, default: usize, key: &str, max: i64) -> Result<usize, String> {
    match value {
        None => Ok(default),
        Some(n) if (1..=max).contains(&n) => Ok(n as usize),
        Some(n) => Err(format!(
            "key `{key}`: {n} is out of range; accepted: 1 to {max}"
        )),
    }
}

/// Accepts the branch names git accepts, minus the ones that would be read as options or ranges.
pub(crate) fn validate_branch(name: &str) -> Result<(), String> {
    let bad = name.is_empty()
        || name.starts_with('-')
        || name.starts_with('/')
        || name.ends_with('/')
        || name.ends_with(".lock")
        || name.contains("..")
        || name.contains("//")
        || name.contains("@{")
        || name
            .bytes()
            .any(|b| b.is_ascii_control() || b" ~^:?*[\\".contains(&b));
    if bad {
        Err(format!(
            "`{}` is not a branch name; accepted: a git branch name such as \"main\" or \"release/1.x\"",
            crate::ids::printable(name)
        ))
    } else {
        Ok(())
    }
}

impl fmt::Display for SandboxMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The text `airlock init` writes: every key with its default, commented. `checks` is
/// the list of commands detected for the repository (may be empty).
pub fn default_file_text(target_branch: &str, checks: &[(&str, &str)]) -> String {
    let mut commands = String::new();
    if checks.is_empty() {
        commands.push_str(
            "# No test command was detected; add yours, for example:\n\
             # commands = [\n\
             #   { name = \"test\", run = \"make test\" },\n\
             #   { name = \"lint\", run = \"make lint\", timeout = \"2m\" },\n\
             # ]\n\
             commands = []\n",
        );
    } else {
        commands.push_str("commands = [\n");
        for (name, run) in checks {
            commands.push_str(&format!(
                "  {{ name = {}, run = {} }},\n",
                toml_string(name),
                toml_string(run)
            ));
        }
        commands.push_str("]\n");
    }
    format!(
        r#"# airlock configuration. Every change an agent proposes is checked against this file.
# Keys left out take the defaults shown here. Unknown keys are errors.

[repository]
# The branch that approved changes are committed to, and the default base of proposals.
target_branch = {branch}

[checks]
# Level 1 commands, run in order with `sh -c` in an isolated workspace holding the base
# commit plus the change. They are trusted: written by you, never by an agent. The first
# one that fails rejects the change, and its output tail is sent back to the agent.
# Each entry: name, run, and optionally its own timeout.
{commands}
# Time limit of each command ("ms", "s", "m", "h"). On expiry the whole process group is killed.
timeout = "10m"
# How much of each command's output is kept: the tail, where errors usually are.
output_limit = "64KiB"
# Isolation of check commands:
#   "required"    bubblewrap (Debian package `bubblewrap`): no network, read-only root,
#                 only the workspace and a private /tmp writable; checks fail without it.
#   "best-effort" bubblewrap when installed, otherwise unsandboxed (recorded with the verdict).
#   "off"         never sandboxed.
sandbox = "required"
# Environment variables passed to check commands; every other variable is removed.
pass_env = []

[limits]
# Largest change accepted, as the size of its diff ("KiB", "MiB" or a byte count).
max_change_bytes = "10MiB"
# Most files one change may touch.
max_files = 2000
# Whether binary file changes are accepted.
allow_binary = false
# Per agent: changes in flight at once, and proposals (new changes and revisions) per
# hour. Beyond them the API answers 429 with Retry-After.
agent_changes_in_flight = 20
agent_proposals_per_hour = 120

[scan]
# The dangerous-change scan (secrets, injections, destructive operations, CI and gate
# tampering, weakened tests, ...) runs first in Level 1, before any check command.
enabled = true
# Findings at or above this severity reject the change: "low", "medium", "high", "critical".
blocking = "high"
# Extra rule files (same TOML format as the built-in rules), relative to this file.
rules = []
# Findings never blocking: by path glob, by rule id or category, by finding fingerprint.
allow_paths = []
allow_rules = []
allow_fingerprints = []
# Directories whose files are migrations (a schema change with its migration is no
# finding). Unset: migrations/, db/migrate/, alembic/versions/, prisma/migrations/, ...
# migration_dirs = ["db/migrations/"]
# Severity overrides by rule id, e.g. "dependency.manifest-changed" = "medium".
[scan.severity]

[scan.mass_deletion]
# mass-deletion.files: this many files deleted (lockfiles, vendored and generated files
# not counted).
min_deleted_files = 5
# mass-deletion.lines: this many lines removed, making up this percentage of the lines
# changed, across this many files.
min_removed_lines = 300
min_removed_percent = 90
min_files = 3
# mass-deletion.file-gutted: one file kept with this many lines removed and at most a
# tenth as many added, while the change does not add the code elsewhere.
min_gutted_lines = 200

[audit]
# Every event goes to a Merkle-tree log under .airlock/audit; a signed checkpoint of it
# is published this often while it grows (and on demand: `airlock audit checkpoint`).
checkpoint_interval = "10s"
# Delete kept payloads (test output) of entries older than this; the entries, and every
# proof, stay. Unset: keep them. Also on demand: `airlock audit purge`.
# payload_retention = "365d"
# Forward every entry to central logging; each sink keeps its own durable cursor, and a
# slow or dead one never blocks the log. Kinds: "jsonl", "syslog" (udp|tcp), "webhook".
# [[audit.sinks]]
# name = "mirror"
# kind = "jsonl"
# path = "/var/log/airlock/audit.jsonl"

[review]
# Level 2. After Level 1 passes, the Rego policy below decides the change's risk and the
# approvals it needs (see the comments in the file `airlock init` writes). A change that
# touches airlock.toml, a policy or CODEOWNERS always needs an admin's approval.
policy = ".airlock/policy.rego"
# Longest a policy evaluation may take; beyond it the change fails closed.
policy_timeout = "2s"
# Time to a decision: reviewers are reminded at half of it and it is escalated at the end.
sla = "4h"
# Per-risk SLAs, e.g. {{ high = "2h", critical = "1h" }}.
sla_by_risk = {{}}
# Uncomment to reject, as expired, a change whose review is still open after this long.
# expire_after = "72h"
# After a break-glass deployment, a review of what was done is due within this time.
post_review_sla = "24h"

[server]
# Address of the HTTP API. Keep it on loopback unless a proxy with TLS fronts it.
listen = "127.0.0.1:7070"
# Changes checked at the same time.
workers = 2
# Reusable workspaces kept warm under .airlock/workspaces.
workspaces = 4
# SQLite database, relative to the repository root.
database = ".airlock/airlock.db"

# Levels 3 and 4: staging, the serial deployment queue, the commit, the canary rollout
# and rollback. Without this section, approved changes stay `approved`.
# [deploy]
# "local" (processes behind airlock's built-in proxy), "haproxy" (processes, weights
# through HAProxy's runtime API) or "command" (your script does both).
# provider = "local"
# target = "production"
# Where commits land: "." (this repository) or a path or URL `git push` accepts.
# repository = "."
# branch = "main"
# build = "make build"              # once per version, in its files
# start = "exec ./server --port $PORT"
# ready_timeout = "30s"
# health_path = "/healthz"
# listen = "127.0.0.1:8080"         # local provider: where production traffic enters
# steps = [1, 5, 25, 50, 100]       # canary percentages; a baseline runs beside it
# soak = "30s"                      # per step
# [deploy.staging]
# test = "./integration-tests.sh"   # gets AIRLOCK_STAGING_URL; 5 minutes by default
# timeout = "5m"
# [deploy.judge]                   # the canary against the baseline, by a sequential test
# alpha = 0.01                      # false-alarm rate of a whole rollout
# trust = "enforcing"               # or "advisory" (hold for a human), "shadow" (record only)
# reference = "baseline_and_stable" # errors; or "baseline" alone (latency: always baseline)
# latency_threshold = "baseline"    # slow = slower than stable's p99; or e.g. "250ms"
# [[deploy.judge.metrics]]          # any counter pair from Prometheus
# name = "db_queries"
# events = 'sum(db_queries_total{{version="{{version}}",slot="{{slot}}"}})'
# exposure = 'sum(http_requests_total{{version="{{version}}",slot="{{slot}}"}})'
# direction = "higher_is_worse"     # or "lower_is_worse"
# tolerance = 0.2                   # fail only beyond +20 %
# [deploy.judge.synthetic_load]    # thin traffic: after the soak, airlock itself sends
# paths = ["/healthz"]              # GETs (safe to repeat) to production until the step
# rate = 10                         # is decided: requests per second
# max_duration = "10m"              # per step
# url = "http://127.0.0.1:8080"     # default: `listen` (local), haproxy.url; loopback only
# [deploy.watch]                   # after 100 %: production against the stable before it
# period = "24h"
# error_ratio = 1.5                 # error rate ×1.5
# latency_increase = 0.2            # p99 +20 %
# rollback = false                  # true: roll back (a conflicting revert escalates)
# [deploy.drift]                   # across the last changes, each of which passed alone
# changes = 10
# p99_budget = 0.25                 # p99 +25 % in all pauses this target's deployments
# error_budget = 1.0                # so does a doubled error rate
# [deploy.guards]                   # absolute limits: the second line
# max_error_rate = 0.02
# max_p99 = "500ms"
# min_requests = 100
# [deploy.haproxy]
# socket = "/run/haproxy/admin.sock"
# backend = "app"                   # servers named stable, baseline, canary
# [deploy.command]
# program = "deploy/airlock-provider.sh"
# [deploy.prometheus]
# url = "http://127.0.0.1:9090"
# requests = 'sum(http_requests_total{{version="{{version}}",slot="{{slot}}"}})'
# errors = 'sum(http_requests_total{{version="{{version}}",slot="{{slot}}",code=~"5.."}})'
"#,
        branch = toml_string(target_branch),
    )
}

fn toml_string(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_error(text: &str, expected: &[&str]) {
        let error = Config::parse(text, "airlock.toml").unwrap_err().to_string();
        for part in expected {
            assert!(error.contains(part), "error {error:?} lacks {part:?}");
        }
        assert!(error.starts_with("airlock.toml: "), "{error}");
    }

    #[test]
    fn deploy_section_defaults_and_errors() {
        assert_eq!(Config::default().deploy, None);
        let config =
            Config::parse("[deploy]\nstart = 'exec ./serve $PORT'\n", "airlock.toml").unwrap();
        let deploy = config.deploy.unwrap();
        assert_eq!(deploy.provider, crate::deploy::ProviderKind::Local);
        assert_eq!(
            (deploy.target.as_str(), deploy.branch.as_str()),
            ("production", "main")
        );
        assert_eq!(deploy.steps, vec![1, 5, 25, 50, 100]);
        assert_eq!(deploy.staging.timeout, Duration::from_secs(300));
        assert_eq!(deploy.guards.max_error_rate, 0.02);
        assert_eq!(deploy.guards.max_p99, Duration::from_millis(500));
        assert_eq!(deploy.repository, None);

        check_error("[deploy]\n", &["deploy.start", "missing"]);
        check_error(
            "[deploy]\nstart = 'x'\nsteps = [5, 1, 100]\n",
            &["deploy.steps", "ascending"],
        );
        check_error(
            "[deploy]\nstart = 'x'\nsteps = [1, 50]\n",
            &["deploy.steps", "ends at 50"],
        );
        check_error(
            "[deploy]\nstart = 'x'\nprovider = 'k8s'\n",
            &["provider", "local", "haproxy", "command"],
        );
        check_error(
            "[deploy]\nprovider = 'haproxy'\nstart = 'x'\n",
            &["deploy.haproxy", "socket"],
        );
        check_error(
            "[deploy]\nprovider = 'command'\n",
            &["deploy.command", "program"],
        );
        check_error(
            "[deploy]\nstart = 'x'\ntarget = 'prod/eu'\n",
            &["deploy.target", "letters"],
        );
        check_error(
            "[deploy]\nstart = 'x'\nlisten = 'everywhere'\n",
            &["deploy.listen", "IP:PORT"],
        );
        check_error(
            "[deploy]\nstart = 'x'\n[deploy.guards]\nmax_error_rate = 2\n",
            &["max_error_rate", "fraction"],
        );
        check_error(
            "[deploy]\nstart = 'x'\n[deploy.staging]\ntimeout = 'soon'\n",
            &["deploy.staging.timeout"],
        );
        check_error(
            "[deploy]\nstart = 'x'\nrepository = '--upload-pack=evil'\n",
            &["deploy.repository"],
        );
        check_error(
            "[deploy]\nstart = 'x'\nsoak = '0s'\n",
            &["deploy.soak", "positive"],
        );
        check_error("[deploy]\nstart = 'x'\nsurprise = 1\n", &["surprise"]);
        check_error(
            "[deploy]\nstart = 'x'\n[deploy.prometheus]\nurl = 'http://p'\nrequests = 'sum(x)'\nerrors = 'sum(y)'\n",
            &["deploy.prometheus.requests", "canary"],
        );
        // The watch after the rollout.
        assert_eq!(deploy.watch.period, Duration::from_secs(24 * 3600));
        assert_eq!(deploy.watch.error_ratio, 1.5);
        assert!(!deploy.watch.rollback);
        check_error(
            "[deploy]\nstart = 'x'\n[deploy.watch]\nerror_ratio = 0.5\n",
            &["deploy.watch.error_ratio", "above 1"],
        );
        check_error(
            "[deploy]\nstart = 'x'\n[deploy.watch]\nperiod = 'forever'\n",
            &["deploy.watch.period"],
        );
        // Drift across changes.
        assert_eq!(deploy.drift.changes, 10);
        assert_eq!(deploy.drift.p99_budget, 0.25);
        check_error(
            "[deploy]\nstart = 'x'\n[deploy.drift]\nchanges = 1\n",
            &["deploy.drift.changes", "2 to 1000"],
        );
        check_error(
            "[deploy]\nstart = 'x'\n[deploy.drift]\np99_budget = -1\n",
            &["deploy.drift.p99_budget", "above 0"],
        );
        // The canary judge.
        assert_eq!(deploy.judge.alpha, 0.01);
        assert!(deploy.judge.pool_stable);
        assert_eq!(deploy.judge.latency_threshold, None);
        let judge = |section: &str| format!("[deploy]\nstart = 'x'\n[deploy.judge]\n{section}");
        check_error(&judge("alpha = 0.9\n"), &["deploy.judge", "alpha"]);
        check_error(&judge("trust = 'maybe'\n"), &["maybe", "enforcing"]);
        check_error(&judge("reference = 'stable'\n"), &["stable", "baseline"]);
        check_error(
            &judge("latency_threshold = 'fast'\n"),
            &["deploy.judge.latency_threshold", "baseline"],
        );
        let metric = "[[deploy.judge.metrics]]\nname = 'db'\nevents = 'sum(q{slot=\"{slot}\"})'\nexposure = 'sum(r{slot=\"{slot}\"})'\ndirection = 'higher_is_worse'\n";
        check_error(&judge(metric), &["deploy.judge.metrics", "Prometheus"]);
        let prometheus = "[deploy.prometheus]\nurl = 'http://p'\nrequests = 'sum(x{slot=\"{slot}\"})'\nerrors = 'sum(y{slot=\"{slot}\"})'\n";
        let parsed = Config::parse(&format!("{}{prometheus}", judge(metric)), "airlock.toml")
            .unwrap()
            .deploy
            .unwrap();
        assert_eq!(parsed.judge.metrics[0].spec.name, "db");
        assert_eq!(parsed.judge.metrics[0].spec.tolerance, 0.2);
        assert_eq!(parsed.judge.judge_config(true).metrics.len(), 3);
        check_error(
            &format!("{}{prometheus}", judge(&metric.replace("'db'", "'errors'"))),
            &["name", "built-in"],
        );
        check_error(
            &format!(
                "{}{prometheus}",
                judge(&metric.replace("slot=\"{slot}\"", "job=\"x\""))
            ),
            &["events", "canary"],
        );
        check_error(
            &format!(
                "{}{prometheus}",
                judge(&metric.replace("higher_is_worse", "up"))
            ),
            &["up", "higher_is_worse"],
        );
        // Synthetic load on thin traffic: opt-in, and to this machine only.
        assert_eq!(deploy.judge.synthetic_load, None);
        let load = |deploy: &str, section: &str| {
            format!("[deploy]\nstart = 'x'\n{deploy}[deploy.judge.synthetic_load]\n{section}")
        };
        let parsed = Config::parse(&load("", "paths = ['/healthz']\n"), "airlock.toml")
            .unwrap()
            .deploy
            .unwrap()
            .judge
            .synthetic_load
            .unwrap();
        assert_eq!(parsed.address.to_string(), "127.0.0.1:8080");
        assert_eq!(
            (parsed.rate, parsed.max_duration),
            (10, Duration::from_secs(600))
        );
        let everywhere = load("listen = '0.0.0.0:9000'\n", "paths = ['/']\nrate = 50\n");
        let parsed = Config::parse(&everywhere, "airlock.toml")
            .unwrap()
            .deploy
            .unwrap();
        let parsed = parsed.judge.synthetic_load.unwrap();
        assert_eq!(
            (parsed.address.to_string(), parsed.rate),
            ("127.0.0.1:9000".to_owned(), 50)
        );
        check_error(
            &load("", ""),
            &["deploy.judge.synthetic_load.paths", "missing"],
        );
        check_error(
            &load("", "paths = []\n"),
            &["synthetic_load.paths", "1 to 16"],
        );
        check_error(
            &load("", "paths = ['healthz']\n"),
            &["synthetic_load.paths", "`healthz`", "starting with '/'"],
        );
        check_error(
            &load("", "paths = ['/a b']\n"),
            &["synthetic_load.paths", "without spaces"],
        );
        check_error(
            &load("", "paths = ['/']\nrate = 0\n"),
            &["synthetic_load.rate", "1 to 1000"],
        );
        check_error(
            &load("", "paths = ['/']\nmax_duration = '2d'\n"),
            &["synthetic_load.max_duration", "24h"],
        );
        check_error(
            &load("", "paths = ['/']\nurl = 'http://10.1.2.3:80'\n"),
            &["synthetic_load.url", "this machine", "127.0.0.1"],
        );
        check_error(
            &load("listen = '10.1.2.3:80'\n", "paths = ['/']\n"),
            &["synthetic_load", "loopback", "synthetic_load.url"],
        );
        check_error(&load("", "paths = ['/']\nspeed = 3\n"), &["speed"]);
    }

    #[test]
    fn defaults() {
        let config = Config::default();
        assert_eq!(config.target_branch, "main");
        assert_eq!(config.check_timeout, Duration::from_secs(600));
        assert_eq!(config.output_limit, 64 << 10);
        assert_eq!(config.sandbox, SandboxMode::Required);
        assert_eq!(
            config.limits,
            Limits {
                max_change_bytes: 10 << 20,
                max_files: 2_000,
                allow_binary: false,
                agent_changes_in_flight: 20,
                agent_proposals_per_hour: 120,
            }
        );
        assert_eq!(config.server.listen, "127.0.0.1:7070");
        assert!(config.checks.is_empty());
    }

    #[test]
    fn generated_file_parses_to_the_defaults() {
        let text = default_file_text("main", &[]);
        assert_eq!(
            Config::parse(&text, "airlock.toml").unwrap(),
            Config::default()
        );
        let text = default_file_text("trunk", &[("test", "cargo test \"--all\"")]);
        let config = Config::parse(&text, "airlock.toml").unwrap();
        assert_eq!(config.target_branch, "trunk");
        assert_eq!(config.checks[0].run, "cargo test \"--all\"");
        assert_eq!(config.checks[0].timeout, Duration::from_secs(600));
    }

    #[test]
    fn commands_and_overrides() {
        let config = Config::parse(
            "[checks]\ncommands = [{name='test', run='make test', timeout='30s'}, {name='lint', run='make lint'}]\ntimeout='2m'\nsandbox='best-effort'\noutput_limit=1024\n[limits]\nmax_files=3\n",
            "x.toml",
        )
        .unwrap();
        assert_eq!(config.checks[0].timeout, Duration::from_secs(30));
        assert_eq!(config.checks[1].timeout, Duration::from_secs(120));
        assert_eq!(config.sandbox, SandboxMode::BestEffort);
        assert_eq!(config.output_limit, 1024);
        assert_eq!(config.limits.max_files, 3);
    }

    #[test]
    fn errors_name_the_key_and_what_is_accepted() {
        check_error(
            "[repository]\ntarget_brnch = 'main'\n",
            &["target_brnch", "target_branch"],
        );
        check_error(
            "[audit]\ncheckpoint_interval = '0s'\n",
            &["audit.checkpoint_interval", "positive duration"],
        );
        check_error(
            "[audit]\npayload_retention = 'forever'\n",
            &["audit.payload_retention"],
        );
        check_error(
            "[[audit.sinks]]\nname = 'siem'\nkind = 'syslog'\naddress = '127.0.0.1:514'\nprotocol = 'sctp'\n",
            &["audit.sinks[0].protocol", "udp", "tcp"],
        );
        check_error(
            "[audit]\ncheckpoint_every = '5s'\n",
            &["checkpoint_every", "checkpoint_interval"],
        );
        check_error(
            "[checks]\nsandbox = 'strict'\n",
            &["strict", "required", "best-effort", "off"],
        );
        check_error(
            "[checks]\ntimeout = '10 minutes'\n",
            &["checks.timeout", "accepted"],
        );
        check_error(
            "[checks]\ntimeout = '0s'\n",
            &["checks.timeout", "positive"],
        );
        check_error("[limits]\nmax_files = 0\n", &["limits.max_files", "1 to"]);
        check_error(
            "[limits]\nmax_change_bytes = '10 parsecs'\n",
            &["limits.max_change_bytes", "KiB"],
        );
        check_error(
            "[server]\nlisten = 'localhost'\n",
            &["server.listen", "IP:PORT"],
        );
        check_error(
            "[checks]\ncommands = [{name='a', run='x'}, {name='a', run='y'}]\n",
            &["checks.commands[1].name", "unique"],
        );
        check_error(
            "[checks]\ncommands = [{name='a b', run='x'}]\n",
            &["checks.commands[0].name"],
        );
        check_error(
            "[checks]\ncommands = [{name='a', run=' '}]\n",
            &["checks.commands[0].run", "empty"],
        );
        check_error("[checks]\npass_env = ['A-B']\n", &["checks.pass_env"]);
        check_error(
            "[repository]\ntarget_branch = '--force'\n",
            &["repository.target_branch", "branch name"],
        );
        check_error("[surprise]\n", &["surprise"]);
        check_error(
            "[scan]\nblocking = 'severe'\n",
            &["severe", "low", "medium", "high", "critical"],
        );
        check_error("not toml at all", &["line 1"]);
        check_error(
            "[review]\nsla_by_risk = { severe = '1h' }\n",
            &[
                "review.sla_by_risk",
                "severe",
                "low, medium, high, critical",
            ],
        );
        check_error("[review]\nsla = 'soon'\n", &["review.sla"]);
        check_error(
            "[review]\npolicy_timeout = '5m'\n",
            &["review.policy_timeout", "60s"],
        );
        check_error(
            "[limits]\nagent_proposals_per_hour = 0\n",
            &["limits.agent_proposals_per_hour", "1 to"],
        );
    }
}
