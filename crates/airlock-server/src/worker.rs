//! Workers: each claims one change at a time, runs its Level 1 steps, and records every
//! finished step before starting the next. A restart therefore resumes at the first
//! unrecorded step; a step interrupted by a crash never completed, so it runs again,
//! and no recorded step ever does.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::task::JoinHandle;

use airlock_core::change::{ChangeState, StepRecord, StepStatus, Verdict, VerdictOutcome};
use airlock_core::config::CheckCommand;
use airlock_core::config::SandboxMode;
use airlock_core::event::{Actor, EventKind, NewEvent};
use airlock_core::ids::ChangeId;
use airlock_core::pipeline::{NextStep, PlannedStep, next_step};
use airlock_git::{CommitId, Workspace};
use airlock_sandbox::{CommandSpec, SandboxConfig};
use airlock_store::{ChangeRecord, Claim, Conclusion, Store};

use crate::api::file_hashes;
use crate::review::Facts;
use crate::standby::{self, PreparedCheck};
use crate::{Shared, now_ms};

/// A change that could not be checked this many times ends as `failed` instead of
/// being retried forever (a change that crashes airlock must not crash it in a loop).
const MAX_ATTEMPTS: i64 = 3;
const LEASE_MS: i64 = 60_000;
/// How long an idle worker sleeps before looking for work it was not told about.
const IDLE_POLL: Duration = Duration::from_secs(2);
/// Niceness of background work: workspace resets and the standby (0 is normal, 19 the
/// lowest priority).
const RESET_NICENESS: libc::c_int = 10;

pub(crate) async fn run<S: Store>(shared: Arc<Shared<S>>, worker: String) {
    while !shared.shutting_down.load(Ordering::SeqCst) {
        // Register interest before looking, so a notification between the look and the
        // wait is not lost.
        let notified = shared.work_available.notified();
        let started = |change: &ChangeRecord| {
            let data = serde_json::json!({ "worker": worker });
            system_event(change, EventKind::ChecksStarted, data)
        };
        match shared
            .store
            .claim_next(&worker, now_ms(), LEASE_MS, started)
            .await
        {
            Ok(Some(claim)) => {
                let id = claim.change.id.clone();
                if let Err(error) = check_change(&shared, &worker, claim).await {
                    tracing::error!(change = %id, %error, "Level 1 could not run; it will be retried");
                }
            }
            Ok(None) => {
                let _ = tokio::time::timeout(IDLE_POLL, notified).await;
            }
            Err(error) => {
                tracing::error!(%error, "could not claim work");
                tokio::time::sleep(IDLE_POLL).await;
            }
        }
    }
}

pub(crate) fn system_event(
    change: &ChangeRecord,
    kind: EventKind,
    mut data: serde_json::Value,
) -> NewEvent {
    data["files"] = file_hashes(&change.files);
    NewEvent {
        change_id: Some(change.id.clone()),
        at_ms: now_ms(),
        actor: Actor::system("worker"),
        kind,
        data,
    }
}

/// Runs Level 1 for one claimed change, from wherever it stopped.
async fn check_change<S: Store>(
    shared: &Arc<Shared<S>>,
    worker: &str,
    claim: Claim,
) -> Result<(), String> {
    let change = claim.change;
    if change.attempts > MAX_ATTEMPTS {
        let verdict = Verdict::without_step(
            VerdictOutcome::Failed,
            format!(
                "airlock could not complete Level 1 after {MAX_ATTEMPTS} attempts; see the server log"
            ),
        );
        return finish(shared, worker, &change, verdict, &[], None, None).await;
    }
    if change.state == ChangeState::ChecksPassed {
        // Level 1 is done; the policy stage was interrupted.
        return crate::review::decide(shared, worker, &change).await;
    }
    shared.progress.send_modify(|n| *n += 1);
    // Every way into `queued` starts a new revision, so a change the claim started has
    // no steps yet; one that resumes may have some.
    let done = if claim.started {
        Vec::new()
    } else {
        let done = shared
            .store
            .steps(&change.id, change.revision)
            .await
            .map_err(|e| e.to_string())?;
        let event = system_event(
            &change,
            EventKind::ChecksResumed,
            serde_json::json!({ "worker": worker, "attempt": change.attempts, "steps_already_done": done.len() }),
        );
        shared
            .store
            .append_event(&event)
            .await
            .map_err(|e| e.to_string())?;
        done
    };

    let mut tree = Tree::Unneeded;
    let result = run_steps(shared, worker, &change, done, &mut tree).await;
    tree.release();
    // A standby taken by this change is rebuilt now that its verdict is recorded, not
    // while the change still competes for the CPU.
    shared.standby_wanted.notify_one();
    result
}

/// The change's workspace, holding exactly its base and its files, with the first check
/// when it was already prepared there (the standby); or why the change no longer
/// materializes (a verdict, not a retry).
type Materialized = Result<(Workspace, Option<PreparedCheck>), String>;

/// The change's workspace, for its check commands.
enum Tree {
    Unneeded,
    /// Being prepared while the scan runs (see [`prepare_workspace`]).
    Preparing(JoinHandle<Result<Materialized, String>>),
    Ready(Workspace),
}

impl Tree {
    /// Starts preparing the workspace when a check will need it after the scan that
    /// runs next: the two then overlap. Not for an urgent change, whose checks the policy
    /// may skip.
    fn prepare_early<S: Store>(
        shared: &Arc<Shared<S>>,
        change: &ChangeRecord,
        done: &[StepRecord],
    ) -> Tree {
        let plan = &shared.plan[done.len().min(shared.plan.len())..];
        let scan_then_check = matches!(plan, [PlannedStep::Scan, PlannedStep::Check(_), ..]);
        if !scan_then_check || change.urgency.is_some() {
            return Tree::Unneeded;
        }
        let (shared, change) = (shared.clone(), change.clone());
        Tree::Preparing(tokio::spawn(async move {
            prepare_workspace(&shared, &change).await
        }))
    }

    /// Returns the workspace to the pool, once ready if it is still being prepared.
    fn release(self) {
        match self {
            Tree::Unneeded => {}
            Tree::Ready(workspace) => release_in_background(workspace),
            Tree::Preparing(preparing) => {
                tokio::spawn(async move {
                    if let Ok(Ok(Ok((workspace, _)))) = preparing.await {
                        release_in_background(workspace);
                    }
                });
            }
        }
    }
}

/// Returns a workspace to the pool without waiting for it.
///
/// Resetting a workspace (O(repository): it must find whatever the checks wrote) runs
/// detached, so the worker takes the next change at once, and at a lower CPU priority
/// (see [`in_background`]). The pool bounds how many workspaces exist; a reset cut short
/// by an exit leaves the workspace marked dirty, and the next acquire resets it.
pub(crate) fn release_in_background(workspace: Workspace) {
    in_background("workspace-reset", move || {
        if let Err(error) = workspace.release() {
            tracing::warn!(%error, "workspace reset failed; it will be rebuilt");
        }
    });
}

/// Runs `work` detached, at a lower CPU priority, so that it does not slow the verdicts
/// and intakes running beside it. A thread of its own: niceness is per thread on Linux,
/// inherited by the git processes it starts, and must not stick to a pooled thread.
pub(crate) fn in_background(name: &str, work: impl FnOnce() + Send + 'static) {
    let spawned = std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            // SAFETY: setpriority(2) on the calling thread; raising niceness needs no privilege.
            unsafe {
                libc::setpriority(libc::PRIO_PROCESS, 0, RESET_NICENESS);
            }
            work();
        });
    if let Err(error) = spawned {
        tracing::warn!(%error, "could not start a background thread ({name}); its work waits for the next use");
    }
}

/// Runs the steps after `done`, recording each before the next starts. The last one is
/// recorded with the verdict instead (see [`finish`]).
async fn run_steps<S: Store>(
    shared: &Arc<Shared<S>>,
    worker: &str,
    change: &ChangeRecord,
    mut done: Vec<StepRecord>,
    tree: &mut Tree,
) -> Result<(), String> {
    *tree = Tree::prepare_early(shared, change, &done);
    // The policy's facts beside the findings, looked up while the steps run.
    let mut facts = Some(Facts::prefetch(shared, change));
    // Break-glass: whether the policy lets this urgent change skip its check commands.
    let mut skip_checks: Option<bool> = None;
    // The first check, already prepared by the standby this change's workspace came from.
    let mut prepared: Option<PreparedCheck> = None;
    loop {
        if shared.shutting_down.load(Ordering::SeqCst) {
            return Ok(());
        }
        let index = match next_step(&shared.plan, &done) {
            NextStep::Finish(verdict) => {
                return finish(shared, worker, change, verdict, &done, None, facts).await;
            }
            NextStep::Run(index) => index,
        };
        let step = match &shared.plan[index] {
            PlannedStep::Scan => {
                let base: CommitId = change
                    .base_commit
                    .parse()
                    .map_err(|e| format!("stored base commit: {e}"))?;
                run_scan(shared, stored_diff(shared, change).await?, base, index).await?
            }
            PlannedStep::Check(check)
                if change.urgency.is_some()
                    && *match &mut skip_checks {
                        Some(known) => known,
                        None => skip_checks.insert(
                            crate::review::evaluate(
                                shared,
                                change,
                                &done,
                                Facts::get(shared, change, facts.take()).await,
                            )
                            .await
                            .is_ok_and(|o| o.break_glass_skips_checks),
                        ),
                    } =>
            {
                StepRecord::not_run(
                    index,
                    check.name.clone(),
                    StepStatus::Skipped,
                    "none: not run",
                    "skipped: the change is urgent (break-glass) and the review policy allows skipping check commands".to_owned(),
                )
            }
            PlannedStep::Check(check) => {
                let ready = match std::mem::replace(tree, Tree::Unneeded) {
                    Tree::Ready(ready) => Ok((ready, None)),
                    Tree::Preparing(preparing) => preparing.await.map_err(|e| e.to_string())??,
                    Tree::Unneeded => prepare_workspace(shared, change).await?,
                };
                let path = match ready {
                    Ok((ready, first_check)) => {
                        prepared = prepared.or(first_check);
                        let path = ready.tree().to_path_buf();
                        *tree = Tree::Ready(ready);
                        path
                    }
                    Err(reason) => {
                        // The change no longer materializes: a verdict, not a retry.
                        let verdict = Verdict::without_step(VerdictOutcome::Rejected, reason);
                        return finish(shared, worker, change, verdict, &done, None, facts).await;
                    }
                };
                let prepared = prepared.take();
                match run_check(shared, worker, change, index, check, path, prepared).await? {
                    Some(step) => step,
                    None => return Ok(()), // Cancelled by shutdown: unrecorded, so it runs again.
                }
            }
        };
        let event = system_event(
            change,
            EventKind::CheckStepFinished,
            serde_json::json!({
                "step": step.name,
                "index": step.index,
                "revision": change.revision,
                "status": step.status,
                "exit_code": step.exit_code,
                "duration_ms": step.duration_ms,
                "isolation": step.isolation,
            }),
        );
        done.push(step);
        if let NextStep::Finish(verdict) = next_step(&shared.plan, &done) {
            // The last step: recorded with the verdict, in one transaction.
            return finish(shared, worker, change, verdict, &done, Some(&event), facts).await;
        }
        let step = done.last().expect("just pushed");
        let recorded = shared
            .store
            .record_step(&change.id, worker, change.revision, step, &event)
            .await;
        shared.progress.send_modify(|n| *n += 1);
        if !recorded.map_err(|e| e.to_string())? {
            return Err(format!(
                "lost the lease on {} while running `{}`",
                change.id, step.name
            ));
        }
    }
}

pub(crate) async fn stored_diff<S: Store>(
    shared: &Shared<S>,
    change: &ChangeRecord,
) -> Result<Vec<u8>, String> {
    shared
        .store
        .change_diff(&change.id)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("change {} has no stored diff", change.id))
}

/// Prepares the change's workspace (see [`Materialized`]). The error is airlock's
/// (retry).
async fn prepare_workspace<S: Store>(
    shared: &Arc<Shared<S>>,
    change: &ChangeRecord,
) -> Result<Materialized, String> {
    let diff = stored_diff(shared, change).await?;
    let shared = shared.clone();
    let change = change.clone();
    tokio::task::spawn_blocking(move || {
        let base: CommitId = change
            .base_commit
            .parse()
            .map_err(|e| format!("stored base commit: {e}"))?;
        let writes = match crate::intake::materialize(
            &shared.repo,
            &base,
            &change.source,
            &diff,
            &change.files,
        ) {
            Ok(writes) => writes,
            Err(reason) => return Ok(Err(reason)),
        };
        let (mut workspace, first_check) = match standby::take(&shared, &base) {
            Some(standby) => standby,
            None => (
                shared
                    .workspaces
                    .acquire(&base)
                    .map_err(|e| e.to_string())?,
                None,
            ),
        };
        workspace.apply(&writes).map_err(|e| e.to_string())?;
        Ok(Ok((workspace, first_check)))
    })
    .await
    .map_err(|e| e.to_string())?
}

/// Scans the change's diff, with the tree at `base` (the commit the diff applies to) for
/// the rules that read it. Findings at or above the configured severity fail the step;
/// all findings are kept with it, and the output lists them for the agent.
pub(crate) async fn run_scan<S: Store>(
    shared: &Arc<Shared<S>>,
    diff: Vec<u8>,
    base: CommitId,
    index: usize,
) -> Result<StepRecord, String> {
    let scanning = shared.clone();
    let started = std::time::Instant::now();
    let report = tokio::task::spawn_blocking(move || {
        let tree = crate::intake::GitTree {
            repo: &scanning.repo,
            commit: &base,
        };
        scanning
            .scanner
            .scan_in(&diff, &scanning.scan_options, Some(&tree))
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| format!("the scan could not read the stored diff: {e}"))?;
    let blocking = shared.config.scan.blocking;
    let blockers: Vec<&airlock_scan::Finding> = report.blocking(blocking).collect();
    // Name the most severe finding: the agent reads the summary first.
    let worst = blockers.iter().rev().max_by_key(|finding| finding.severity);
    let reason = worst.map(|first| {
        format!(
            "found {} blocking finding(s) (severity {blocking} or above), the most severe: {} at {}:{}",
            blockers.len(),
            first.rule,
            first.path,
            first.line
        )
    });
    let mut output = String::new();
    for finding in &report.findings {
        let verdict = match (&finding.allowed, finding.blocks(blocking)) {
            (Some(why), _) => format!("allowed: {why}"),
            (None, true) => "blocking".to_owned(),
            (None, false) => "not blocking".to_owned(),
        };
        output.push_str(&format!(
            "{}:{}: {} {} [{}] ({verdict})\n    why: {}\n    fix: {}\n",
            finding.path,
            finding.line,
            finding.severity,
            finding.rule,
            finding.category,
            finding.message,
            finding.remediation
        ));
    }
    Ok(StepRecord {
        index,
        name: PlannedStep::SCAN_NAME.to_owned(),
        status: if reason.is_some() {
            StepStatus::Failed
        } else {
            StepStatus::Passed
        },
        exit_code: None,
        signal: None,
        timed_out: false,
        duration_ms: started.elapsed().as_millis() as u64,
        output_total_bytes: output.len() as u64,
        output,
        isolation: "in-process: the diff is read, nothing runs".to_owned(),
        reason,
        findings: report.findings,
    })
}

/// Runs one configured check. None when shutdown cancelled it.
pub(crate) async fn run_check<S: Store>(
    shared: &Arc<Shared<S>>,
    worker: &str,
    change: &ChangeRecord,
    index: usize,
    check: &CheckCommand,
    tree: PathBuf,
    prepared: Option<PreparedCheck>,
) -> Result<Option<StepRecord>, String> {
    let check = check.clone();
    let spec = check_spec(shared, &check);
    let prepared = prepared
        .filter(|prepared| prepared.is_for(index, &spec, &tree))
        .map(|prepared| prepared.prepared);
    let sandbox = sandbox_config(shared, tree, Some(&change.id), false);
    // Keep the lease alive while the command runs; it may take up to its timeout.
    let renew = {
        let shared = shared.clone();
        let id = change.id.clone();
        let worker = worker.to_owned();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis((LEASE_MS / 3) as u64)).await;
                if !shared
                    .store
                    .renew_lease(&id, &worker, now_ms() + LEASE_MS)
                    .await
                    .unwrap_or(false)
                {
                    return;
                }
            }
        })
    };
    let cancel = shared.cancel.clone();
    let change_id = change.id.to_string();
    let built_in_advance = prepared.is_some();
    let outcome = tokio::task::spawn_blocking(move || match prepared {
        Some(prepared) => prepared.run(&[(CHANGE_ID_VARIABLE, &change_id)], &cancel),
        None => airlock_sandbox::run(&sandbox, &spec, &cancel),
    })
    .await;
    renew.abort();
    let outcome = outcome.map_err(|e| e.to_string())?;

    let step = match outcome {
        Ok(outcome) if outcome.cancelled => return Ok(None),
        Ok(outcome) => {
            let reason = if outcome.timed_out {
                Some(format!(
                    "timed out after {}",
                    airlock_core::units::format_duration(check.timeout)
                ))
            } else {
                None
            };
            StepRecord {
                index,
                name: check.name,
                status: if outcome.success() {
                    StepStatus::Passed
                } else {
                    StepStatus::Failed
                },
                exit_code: outcome.exit_code,
                signal: outcome.signal,
                timed_out: outcome.timed_out,
                duration_ms: outcome.duration.as_millis() as u64,
                output: String::from_utf8_lossy(&outcome.output).into_owned(),
                output_total_bytes: outcome.output_total_bytes,
                isolation: if built_in_advance && outcome.isolation.is_sandboxed() {
                    format!("{}; {BUILT_IN_ADVANCE}", outcome.isolation)
                } else {
                    outcome.isolation.to_string()
                },
                reason,
                findings: Vec::new(),
            }
        }
        // The sandbox could not start the command (bwrap missing under "required", ...):
        // the change cannot pass, and the reason is what the operator must fix.
        Err(error) => StepRecord::not_run(
            index,
            check.name,
            StepStatus::Failed,
            "none: the command did not start",
            error.to_string(),
        ),
    };
    Ok(Some(step))
}

/// Ends Level 1 on a change this worker holds (compare-and-set: nothing is written if
/// the change is no longer in the state it was claimed in). When the checks passed, the
/// policy stage runs first, on `facts` when they were prefetched, so that the last step
/// (`last_step`: the event of `steps`' last, when it ran now), the verdict and the
/// policy's decision are written at once.
async fn finish<S: Store>(
    shared: &Arc<Shared<S>>,
    worker: &str,
    change: &ChangeRecord,
    verdict: Verdict,
    steps: &[StepRecord],
    last_step: Option<&NewEvent>,
    facts: Option<JoinHandle<Result<Facts, String>>>,
) -> Result<(), String> {
    let kind = match verdict.outcome {
        VerdictOutcome::Passed => EventKind::ChecksPassed,
        VerdictOutcome::Rejected => EventKind::ChecksRejected,
        VerdictOutcome::Failed => EventKind::ChecksFailed,
    };
    let event = system_event(
        change,
        kind,
        serde_json::json!({
            "summary": verdict.summary,
            "failed_step": verdict.failed_step,
            "exit_code": verdict.exit_code,
            "isolation": verdict.isolation,
        }),
    );
    let policy = match verdict.outcome {
        VerdictOutcome::Passed => {
            let facts = Facts::get(shared, change, facts).await;
            Some(crate::review::decision(shared, change, steps, facts).await)
        }
        VerdictOutcome::Rejected | VerdictOutcome::Failed => None,
    };
    let conclusion = Conclusion {
        last_step: last_step.and_then(|event| Some((steps.last()?, event))),
        verdict: &verdict,
        verdict_event: &event,
        policy: policy
            .as_ref()
            .map(|(decision, events)| (decision, events.as_slice())),
    };
    let concluded = shared
        .store
        .conclude_checks(
            &change.id,
            worker,
            change.revision,
            change.state,
            &conclusion,
        )
        .await;
    shared.progress.send_modify(|n| *n += 1);
    if concluded.map_err(|e| e.to_string())? {
        let state = match &policy {
            Some((decision, _)) => decision.to,
            None => verdict.state(),
        };
        tracing::info!(change = %change.id, %state, summary = %verdict.summary, "Level 1 finished");
    }
    Ok(())
}

/// Said of a check whose sandbox the standby built before the change arrived.
const BUILT_IN_ADVANCE: &str = "sandbox built before the change arrived";

/// How a configured check command runs.
pub(crate) fn check_spec<S>(shared: &Shared<S>, check: &CheckCommand) -> CommandSpec {
    CommandSpec {
        name: check.name.clone(),
        command: check.run.clone(),
        timeout: check.timeout,
        output_limit: shared.config.output_limit,
    }
}

/// Where and how a command runs for a change in `tree`: the configured sandbox mode, the
/// hidden paths and the check environment. Without `change_id` the environment lacks
/// `AIRLOCK_CHANGE_ID`, which a prepared command receives when it starts.
pub(crate) fn sandbox_config<S>(
    shared: &Shared<S>,
    tree: PathBuf,
    change_id: Option<&ChangeId>,
    share_network: bool,
) -> SandboxConfig {
    SandboxConfig {
        mode: match shared.config.sandbox {
            SandboxMode::Required => airlock_sandbox::SandboxMode::Required,
            SandboxMode::BestEffort => airlock_sandbox::SandboxMode::BestEffort,
            SandboxMode::Off => airlock_sandbox::SandboxMode::Off,
        },
        hidden_paths: hidden_paths(
            &shared.options.state_dir,
            &shared.options.repo_root,
            &shared.config.server.database,
        ),
        env: check_environment(&shared.config.pass_env, change_id, &tree),
        workspace: tree,
        bwrap_path: shared.options.bwrap_path.clone(),
        share_network,
    }
}

/// What check commands must not see: airlock's state (database, tokens, workspaces'
/// git dirs), the database wherever it is, and the usual credential stores in $HOME.
pub(crate) fn hidden_paths(
    state_dir: &std::path::Path,
    repo_root: &std::path::Path,
    database: &str,
) -> Vec<PathBuf> {
    let mut paths = vec![state_dir.to_path_buf()];
    let database = repo_root.join(database);
    if let Some(dir) = database.parent()
        && !dir.starts_with(state_dir)
    {
        paths.push(database.clone());
        paths.push(database.with_extension("db-wal"));
        paths.push(database.with_extension("db-shm"));
    }
    if let Some(home) = std::env::var_os("HOME").map(PathBuf::from) {
        for secret in [
            ".ssh",
            ".aws",
            ".gnupg",
            ".config/gcloud",
            ".azure",
            ".docker",
            ".kube",
            ".netrc",
            ".git-credentials",
            ".pgpass",
            ".airlock",
        ] {
            paths.push(home.join(secret));
        }
    }
    paths
}

/// The variable naming the change a check runs for.
pub(crate) const CHANGE_ID_VARIABLE: &str = "AIRLOCK_CHANGE_ID";

/// The complete environment of a check: a fixed, minimal set plus what `pass_env` names,
/// and the change's id when given. Nothing else of the server's environment (tokens,
/// cloud credentials) gets through, and `pass_env` cannot override the change's id.
pub(crate) fn check_environment(
    pass_env: &[String],
    change_id: Option<&ChangeId>,
    tree: &std::path::Path,
) -> Vec<(String, String)> {
    // The workspace lives inside the user's checkout (.airlock/workspaces/...): without a
    // ceiling, `git` run by a check would walk up and find the user's repository.
    let ceiling = tree.parent().unwrap_or(tree).display().to_string();
    let mut env = vec![
        ("GIT_CEILING_DIRECTORIES".to_owned(), ceiling),
        (
            "PATH".to_owned(),
            std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".to_owned()),
        ),
        (
            "HOME".to_owned(),
            std::env::var("HOME").unwrap_or_else(|_| "/nonexistent".to_owned()),
        ),
        ("LANG".to_owned(), "C.UTF-8".to_owned()),
        ("TMPDIR".to_owned(), "/tmp".to_owned()),
        ("CI".to_owned(), "true".to_owned()),
    ];
    for name in pass_env.iter().filter(|name| *name != CHANGE_ID_VARIABLE) {
        if let Ok(value) = std::env::var(name) {
            env.retain(|(existing, _)| existing != name);
            env.push((name.clone(), value));
        }
    }
    if let Some(id) = change_id {
        env.push((CHANGE_ID_VARIABLE.to_owned(), id.to_string()));
    }
    env
}
