//! The service's audit trail: every event the store records becomes an entry of the
//! tamper-evident log, in the order the store committed them, and checkpoints are signed
//! at a steady cadence.
//!
//! The store is the outbox: an event is written with its state change in one database
//! transaction, and this follower copies events into the log afterwards. Each entry
//! carries its event's sequence number, so after a crash the follower resumes after the
//! last entry on disk: no event is lost (it is still in the store) and none is logged
//! twice. There is no two-phase commit between the database and the log to get wrong.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use airlock_audit::entry::{
    Approval, AuditEntry, Decision, EntryActor, FileDigest, PayloadRef, evidence_digest,
};
use airlock_audit::payload::PayloadStore;
use airlock_audit::{AuditError, AuditLog, LogOptions, Recovery, SharedLog};
use airlock_core::change::StepRecord;
use airlock_core::event::{Actor, ActorKind, EventKind, NewEvent};
use airlock_store::{EventRecord, Store};

use crate::Shared;

/// Events copied per batch: one log append (one fsync) each.
const BATCH: u32 = 500;
/// How long the follower waits, once woken, for more events to batch with the first.
const GATHER: Duration = Duration::from_millis(20);
/// How often the follower looks for events written by other processes (the CLI's token
/// commands) when nothing in this process woke it.
const POLL: Duration = Duration::from_millis(500);

/// Where the log's payloads (outside the tree) are kept.
pub fn payload_dir(audit_dir: &Path) -> PathBuf {
    audit_dir.join("payloads")
}

/// The audit log directory inside a state directory.
pub fn audit_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("audit")
}

/// The log's name (the checkpoint origin and key name): stable for a repository, and
/// free of the characters signed notes forbid.
pub fn log_name(repo_root: &Path) -> String {
    let base: String = repo_root
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect();
    format!(
        "airlock.local/{}",
        if base.is_empty() { "repository" } else { &base }
    )
}

/// Opens the log for writing, creating its key pair on first use.
pub fn open_log(
    state_dir: &Path,
    repo_root: &Path,
) -> Result<(AuditLog, Recovery, bool), AuditError> {
    let dir = audit_dir(state_dir);
    let (signer, created) = airlock_audit::keys::load_or_create(&dir, &log_name(repo_root))?;
    let options = LogOptions::new(signer.verifier(), Some(signer));
    let (log, recovery) = AuditLog::open(&dir, options)?;
    Ok((log, recovery, created))
}

/// The log as the service holds it.
#[derive(Debug)]
pub(crate) struct AuditTrail {
    pub log: Arc<SharedLog>,
    /// Wakes the sinks after each durable append.
    pub appended: airlock_sinks::AppendSignal,
    pub payloads: PayloadStore,
    repository: String,
    /// SHA-256 of the airlock.toml that decides Level 1 (recorded with its decisions).
    config_sha256: String,
}

impl AuditTrail {
    pub fn new(
        log: AuditLog,
        state_dir: &Path,
        repo_root: &Path,
        config_sha256: String,
    ) -> AuditTrail {
        AuditTrail {
            log: Arc::new(SharedLog::new(log)),
            appended: airlock_sinks::AppendSignal::new(),
            payloads: PayloadStore::new(&payload_dir(&audit_dir(state_dir))),
            repository: repo_root.display().to_string(),
            config_sha256,
        }
    }

    /// The store sequence number of the last event already in the log.
    fn last_event_seq(&self) -> Result<i64, String> {
        self.log.with(|log| {
            if log.is_empty() {
                return Ok(0);
            }
            let bytes = log.entry(log.len() - 1).map_err(|e| e.to_string())?;
            let entry = AuditEntry::decode(&bytes)
                .map_err(|e| format!("the last audit entry is unreadable: {e}"))?;
            Ok(entry.event_seq as i64)
        })
    }

    /// Signs a checkpoint if the log grew since the last one.
    pub fn checkpoint(&self) -> Result<airlock_audit::SignedCheckpoint, AuditError> {
        self.log.with(|log| log.publish_checkpoint())
    }
}

/// Follows the store until `stop` fires, then copies what is left and signs a final
/// checkpoint. Errors are logged and retried: the store keeps every event meanwhile.
pub(crate) async fn follow<S: Store>(
    shared: Arc<Shared<S>>,
    stop: Arc<tokio::sync::Notify>,
    checkpoint_every: Duration,
) {
    let trail = shared.audit.clone();
    let store = &shared.store;
    let mut wake = shared.progress.subscribe();
    let mut next = tokio::time::Instant::now() + checkpoint_every;
    let mut stopping = false;
    let mut after = None;
    // Entries before this index have no payload left to purge by age.
    let mut retention_cursor = 0;
    loop {
        match copy_new_events(store, &trail, &mut after).await {
            Ok(copied) if copied >= BATCH as usize => continue,
            Ok(_) => {}
            Err(error) => tracing::error!(%error, "could not extend the audit log; retrying"),
        }
        if stopping || tokio::time::Instant::now() >= next {
            if let Some(retention) = shared.config.audit.payload_retention
                && !stopping
            {
                retention_cursor = apply_retention(&shared, retention, retention_cursor).await;
            }
            let trail = trail.clone();
            match tokio::task::spawn_blocking(move || trail.checkpoint()).await {
                Ok(Ok(signed)) => {
                    tracing::debug!(size = signed.checkpoint.size, "audit checkpoint")
                }
                Ok(Err(error)) => tracing::error!(%error, "could not sign an audit checkpoint"),
                Err(error) => tracing::error!(%error, "audit checkpoint task failed"),
            }
            next = tokio::time::Instant::now() + checkpoint_every;
        }
        if stopping {
            return;
        }
        tokio::select! {
            _ = stop.notified() => stopping = true,
            _ = wake.changed() => {
                // Let the burst of events one change makes (a step, its verdict, the
                // policy's decision) gather into one batch and one fsync, appended after
                // the change's verdict rather than competing with it.
                tokio::select! {
                    _ = stop.notified() => stopping = true,
                    _ = tokio::time::sleep(GATHER) => {}
                }
            }
            _ = tokio::time::sleep(POLL) => {}
            _ = tokio::time::sleep_until(next) => {}
        }
    }
}

/// Deletes the payloads of entries older than `retention`, from `cursor` on (entries are
/// in time order, so the pass stops at the first one still young), records what it
/// purged as an event, and returns where the next pass starts.
async fn apply_retention<S: Store>(
    shared: &Arc<Shared<S>>,
    retention: Duration,
    cursor: u64,
) -> u64 {
    let retention_ms = i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
    let before = rfc3339(shared.clock.now_ms().saturating_sub(retention_ms));
    let trail = shared.audit.clone();
    let cutoff = before.clone();
    let pass = tokio::task::spawn_blocking(move || {
        trail.log.with(|log| {
            airlock_audit::payload::purge_selected(
                log,
                &trail.payloads,
                cursor,
                |entry| {
                    if entry.time < cutoff {
                        airlock_audit::payload::Select::Purge
                    } else {
                        airlock_audit::payload::Select::Stop
                    }
                },
                false,
            )
        })
    })
    .await;
    let (purged, next) = match pass {
        Ok(Ok(done)) => done,
        Ok(Err(error)) => {
            tracing::error!(%error, "could not apply the payload retention; retrying");
            return cursor;
        }
        Err(error) => {
            tracing::error!(%error, "the payload retention task failed; retrying");
            return cursor;
        }
    };
    if purged.payloads > 0 {
        let event = NewEvent {
            change_id: None,
            at_ms: shared.clock.now_ms(),
            actor: Actor::system("retention"),
            kind: EventKind::AuditPurged,
            data: serde_json::json!({
                "retention": airlock_core::units::format_duration(retention),
                "before": before,
                "entries": purged.entries,
                "payloads": purged.payloads,
                "bytes": purged.bytes,
            }),
        };
        if let Err(error) = shared.store.append_event(&event).await {
            tracing::error!(%error, "could not record the payload retention pass");
        }
    }
    next
}

/// Copies the next batch of events after `after` (the last event already in the log,
/// read from the log itself when None) into the log; returns how many, and moves `after`.
async fn copy_new_events<S: Store>(
    store: &S,
    trail: &Arc<AuditTrail>,
    after: &mut Option<i64>,
) -> Result<usize, String> {
    let from = match *after {
        Some(seq) => seq,
        None => {
            let trail = trail.clone();
            tokio::task::spawn_blocking(move || trail.last_event_seq())
                .await
                .map_err(|e| e.to_string())??
        }
    };
    let events = store
        .events_after(from, BATCH)
        .await
        .map_err(|e| e.to_string())?;
    let Some(last) = events.last().map(|e| e.seq) else {
        *after = Some(from);
        return Ok(0);
    };
    let mut steps = Vec::with_capacity(events.len());
    for event in &events {
        steps.push(step_of(store, event).await?);
    }
    let count = events.len();
    let trail = trail.clone();
    let appended = tokio::task::spawn_blocking(move || -> Result<(), String> {
        let entries = events
            .iter()
            .zip(&steps)
            .map(|(event, step)| trail.entry_for(event, step.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        let appended = trail.log.append(entries);
        trail.appended.notify();
        appended.map(drop).map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| e.to_string())?;
    // After a failure, the log itself says where it stands.
    *after = appended.is_ok().then_some(last);
    appended?;
    Ok(count)
}

/// The step record a `checks.step_finished` event is about: its output and findings are
/// evidence the event itself only summarises.
async fn step_of<S: Store>(store: &S, event: &EventRecord) -> Result<Option<StepRecord>, String> {
    if event.kind != airlock_core::event::EventKind::CheckStepFinished.as_str() {
        return Ok(None);
    }
    let (Some(change), Some(index)) = (&event.change_id, event.data["index"].as_u64()) else {
        return Ok(None);
    };
    let revision = event.data["revision"].as_i64().unwrap_or(1);
    let steps = store
        .steps(change, revision)
        .await
        .map_err(|e| e.to_string())?;
    Ok(steps.into_iter().find(|s| s.index as u64 == index))
}

impl AuditTrail {
    /// The audit entry for one stored event. Test output goes to the payload store, and
    /// the entry keeps only its salted hash.
    fn entry_for(&self, event: &EventRecord, step: Option<&StepRecord>) -> Result<Vec<u8>, String> {
        let data = &event.data;
        let text = |key: &str| data[key].as_str().map(str::to_owned);
        let files = data["files"]
            .as_array()
            .map(|files| {
                files
                    .iter()
                    .map(|f| FileDigest {
                        path: f["path"].as_str().unwrap_or_default().to_owned(),
                        old_path: f["old_path"].as_str().map(str::to_owned),
                        op: f["op"].as_str().unwrap_or_default().to_owned(),
                        before_sha256: f["old_sha256"].as_str().map(str::to_owned),
                        after_sha256: f["new_sha256"].as_str().map(str::to_owned),
                    })
                    .collect()
            })
            .unwrap_or_default();
        let mut details = data.clone();
        if let Some(object) = details.as_object_mut() {
            for key in ["files", "base_commit", "diff_sha256"] {
                object.remove(key);
            }
        }
        let mut payloads: Vec<PayloadRef> = Vec::new();
        let mut decision = None;
        let digest = |value: &serde_json::Value| evidence_digest(value).map_err(|e| e.to_string());
        if let Some(step) = step {
            if !step.output.is_empty() {
                payloads.push(
                    self.payloads
                        .put("output", step.output.as_bytes())
                        .map_err(|e| e.to_string())?,
                );
            }
            let evidence = serde_json::to_value(step).map_err(|e| e.to_string())?;
            decision = Some(Decision {
                outcome: serde_json::to_value(step.status)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default(),
                summary: step.reason.clone(),
                evidence_sha256: digest(&evidence)?,
            });
            if !step.findings.is_empty() {
                details["findings"] = findings_summary(&step.findings);
            }
        }
        if let Some(outcome) = event.kind.strip_prefix("checks.")
            && matches!(outcome, "passed" | "rejected" | "failed")
        {
            decision = Some(Decision {
                outcome: outcome.to_owned(),
                summary: text("summary"),
                evidence_sha256: digest(data)?,
            });
        }
        // Level 2: the policy's and the reviewers' decisions, with the policy's hash.
        let review_outcome = match event.kind.as_str() {
            "review.requested" => Some("review_required"),
            "review.approved" => Some("approve"),
            "review.rejected" => Some("reject"),
            "review.changes_requested" => Some("request_changes"),
            "review.expired" => Some("expired"),
            "change.approved" => Some("approved"),
            "policy.denied" => Some("denied"),
            "policy.failed" => Some("failed"),
            _ => None,
        };
        if let Some(outcome) = review_outcome {
            decision = Some(Decision {
                outcome: outcome.to_owned(),
                summary: text("summary"),
                evidence_sha256: digest(data)?,
            });
        }
        let approval = (event.kind == "change.approved").then(|| Approval {
            method: text("method").unwrap_or_default(),
            reason: text("reason"),
        });
        if decision.is_some()
            && let Some(object) = details.as_object_mut()
        {
            object.remove("summary");
        }
        let policy_sha256 = match text("policy_sha256") {
            Some(policy) => Some(policy),
            None => decision.as_ref().map(|_| self.config_sha256.clone()),
        };
        let entry = AuditEntry {
            v: airlock_audit::entry::VERSION,
            kind: event.kind.clone(),
            time: rfc3339(event.at_ms),
            actor: EntryActor {
                kind: match event.actor.kind {
                    ActorKind::Agent => "agent",
                    ActorKind::Human => "human",
                    ActorKind::System => "system",
                }
                .to_owned(),
                name: event.actor.name.clone(),
                token_id: event.actor.token_id.as_ref().map(|t| t.to_string()),
            },
            event_seq: event.seq as u64,
            change_id: event.change_id.as_ref().map(|c| c.to_string()),
            repository: Some(self.repository.clone()),
            base_commit: text("base_commit"),
            result_commit: None,
            diff_sha256: text("diff_sha256"),
            files,
            approval,
            policy_sha256,
            decision,
            payloads,
            details: if details.as_object().is_some_and(|o| o.is_empty()) {
                serde_json::Value::Null
            } else {
                details
            },
        };
        entry.encode().map_err(|e| e.to_string())
    }
}

/// Counts by category and severity, and the rules that fired: enough to audit a decision
/// without copying findings (whose previews are already masked) into the tree.
fn findings_summary(findings: &[airlock_scan::Finding]) -> serde_json::Value {
    use std::collections::BTreeMap;
    fn name<T: serde::Serialize>(value: T) -> String {
        serde_json::to_value(value)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default()
    }
    let mut by_category: BTreeMap<String, u64> = BTreeMap::new();
    let mut by_severity: BTreeMap<String, u64> = BTreeMap::new();
    let mut rules: Vec<&str> = Vec::new();
    for finding in findings {
        *by_category.entry(name(finding.category)).or_default() += 1;
        *by_severity.entry(name(finding.severity)).or_default() += 1;
        if !rules.contains(&finding.rule.as_str()) {
            rules.push(&finding.rule);
        }
    }
    serde_json::json!({
        "total": findings.len(),
        "allowed": findings.iter().filter(|f| f.allowed.is_some()).count(),
        "by_category": by_category,
        "by_severity": by_severity,
        "rules": rules,
        "fingerprints": findings.iter().map(|f| f.fingerprint.as_str()).collect::<Vec<_>>(),
    })
}

/// RFC 3339 UTC with milliseconds: the time of every audit entry, fixed-width, so that
/// text order is time order.
pub fn rfc3339(at_ms: i64) -> String {
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(at_ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&format).ok())
        .unwrap_or_else(|| at_ms.to_string())
}

/// The log as the sinks read it: durable entries only (the log's length moves after the
/// sync), each with its leaf hash.
#[derive(Debug)]
pub(crate) struct LogSource(pub Arc<SharedLog>);

impl airlock_sinks::EntrySource for LogSource {
    fn read(&self, from_index: u64, max: usize) -> std::io::Result<Vec<airlock_sinks::SinkRecord>> {
        let entries = self
            .0
            .with(|log| log.read(from_index, max))
            .map_err(std::io::Error::other)?;
        Ok(entries
            .into_iter()
            .map(|(index, entry)| airlock_sinks::SinkRecord {
                index,
                leaf_hash: airlock_audit::leaf_hash(&entry).0,
                entry: entry.into(),
            })
            .collect())
    }

    fn len(&self) -> u64 {
        self.0.with(|log| log.len())
    }
}

/// Starts one runner per configured sink. Relative JSONL paths are relative to the
/// repository root, like every other path in airlock.toml.
pub(crate) fn start_sinks(
    trail: &AuditTrail,
    specs: &[airlock_sinks::SinkSpec],
    state_dir: &Path,
    repo_root: &Path,
) -> Result<Vec<airlock_sinks::SinkRunner>, String> {
    let source: Arc<dyn airlock_sinks::EntrySource> = Arc::new(LogSource(trail.log.clone()));
    let cursors = audit_dir(state_dir).join("sinks");
    specs
        .iter()
        .map(|spec| {
            let mut spec = spec.clone();
            if let airlock_sinks::SinkTarget::Jsonl { path } = &mut spec.target
                && path.is_relative()
            {
                *path = repo_root.join(&*path);
            }
            spec.start(source.clone(), trail.appended.clone(), &cursors)
                .map_err(|e| e.to_string())
        })
        .collect()
}
