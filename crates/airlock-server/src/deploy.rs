//! Levels 3 and 4: the deployer of one target. It holds the target's deploy lease (whose
//! fencing token every provider action carries) and does one thing at a time, in this
//! order: a rollback, the deployment under way, the next change in the queue (first come,
//! first served), then staging for the oldest approved change.
//!
//! A deployment lands the change on the target branch (re-applied with a three-way merge
//! when the branch moved, and Level 1 run again on the result), then rolls it out step by
//! step beside a fresh baseline of the previous version, judged by the absolute guards.
//! Unhealthy: traffic back to stable, a revert commit, the reverted version redeployed as
//! stable. A revert that conflicts with later work stops and waits for a person. Every
//! step is recorded before the next, so a restart resumes where the last one stopped.
//! Beside the deployer, a task of its own watches the change production runs.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use airlock_core::change::{ChangeState, StepStatus, Verdict, VerdictOutcome};
use airlock_core::deploy::DeployConfig;
use airlock_core::event::{Actor, EventKind, NewEvent};
use airlock_core::pipeline::PlannedStep;
use airlock_core::review::ReviewVerdict;
use airlock_git::{CommitId, CommitMessage, Landing, MergeConflict, PushOutcome, Remote};
use airlock_judge::{MetricVerdict, Trust, Verdict as JudgeVerdict};
use airlock_rollout::{
    Environment, Fence, FenceToken, GuardVerdict, Guards, Observed, PrometheusSource, Provider,
    RolloutError, Slot, Version, Weights,
};
use airlock_store::{
    ChangeRecord, DeploymentRecord, DeploymentUpdate, FenceCheck, Pause, StableVersion,
    SteadyState, Store,
};
use tokio::sync::Notify;

use crate::canary::{self, Canary, Reading};
use crate::drift;
use crate::intervention::Interventions;
use crate::synthetic::SyntheticLoad;
use crate::watch::{Before, Look, Watch};
use crate::worker::system_event;
use crate::{Shared, now_ms};

/// The deploy lease: renewed every third of it while the deployer works.
const LEASE_MS: i64 = 30_000;
/// How often an idle deployer looks for work it was not told about.
const IDLE_POLL: Duration = Duration::from_millis(500);
/// How many times a push is retried when the branch moved between fetch and push.
const PUSH_ATTEMPTS: usize = 3;
/// The newest commits searched for a change's trailer.
const TRAILER_SEARCH_DEPTH: usize = 10_000;

/// What the deployer needs beyond the shared service state.
pub(crate) struct DeployRuntime {
    pub(crate) config: DeployConfig,
    pub(crate) provider: Arc<dyn Provider>,
    pub(crate) landing: Landing,
    pub(crate) remote: Remote,
    /// Checked-out trees of versions, one directory per commit.
    pub(crate) versions_dir: PathBuf,
    pub(crate) prometheus: Option<PrometheusSource>,
    pub(crate) guards: Guards,
    /// Where each rollout's judge recording is kept.
    pub(crate) recordings_dir: PathBuf,
    /// Wakes the deployer when a change is approved or a rollback is asked for.
    pub(crate) wake: Notify,
}

impl std::fmt::Debug for DeployRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeployRuntime")
            .field("target", &self.config.target)
            .field("provider", &self.provider.name())
            .finish_non_exhaustive()
    }
}

/// The fencing check over the store: the provider layer calls it (from a blocking
/// thread) before every action.
pub(crate) struct StoreFence<S> {
    pub(crate) shared: Weak<Shared<S>>,
    pub(crate) runtime: tokio::runtime::Handle,
}

impl<S: Store> Fence for StoreFence<S> {
    fn admit(&self, target: &str, token: FenceToken) -> Result<(), RolloutError> {
        let unavailable = |message: String| RolloutError::FenceUnavailable {
            target: target.to_owned(),
            message,
        };
        let shared = self
            .shared
            .upgrade()
            .ok_or_else(|| unavailable("the service is shutting down".into()))?;
        let check = self
            .runtime
            .block_on(shared.store.admit_fence(target, token.0 as i64))
            .map_err(|e| unavailable(e.to_string()))?;
        match check {
            FenceCheck::Admitted => Ok(()),
            FenceCheck::Stale { current } => Err(RolloutError::StaleFence {
                target: target.to_owned(),
                token: token.0,
                current: current as u64,
            }),
        }
    }
}

/// Why a deployment stopped before its end; the change's state says what comes next.
enum Stop {
    /// Recorded (a verdict, a rollback, a return to the agent): move on.
    Settled,
    /// Lost the lease, or shutting down: leave the change as recorded for whoever resumes.
    Interrupted,
}

type Outcome = Result<Stop, String>;

pub(crate) async fn run<S: Store>(shared: Arc<Shared<S>>, stop: Arc<Notify>) {
    let Some(runtime) = shared.deploy.get().cloned() else {
        return;
    };
    let holder = format!("{}-deployer", std::process::id());
    let target = runtime.config.target.clone();
    let mut stable_running = false;
    // The watch goes on while the deployer rolls out the next change.
    let watcher = tokio::spawn(watch_production(shared.clone(), runtime.clone()));
    while !shared.shutting_down.load(Ordering::SeqCst) {
        let notified = runtime.wake.notified();
        let token = match shared
            .store
            .acquire_deploy_lease(&target, &holder, now_ms(), LEASE_MS)
            .await
        {
            Ok(Some(token)) => token,
            Ok(None) => {
                tokio::time::sleep(IDLE_POLL).await;
                continue;
            }
            Err(error) => {
                tracing::error!(%error, "could not take the deploy lease");
                tokio::time::sleep(IDLE_POLL).await;
                continue;
            }
        };
        let renew = {
            let shared = shared.clone();
            let (target, holder) = (target.clone(), holder.clone());
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_millis((LEASE_MS / 3) as u64)).await;
                    let renewed = shared
                        .store
                        .renew_deploy_lease(&target, &holder, token, now_ms() + LEASE_MS)
                        .await;
                    if !matches!(renewed, Ok(true)) {
                        tracing::warn!(%target, "lost the deploy lease; provider actions will be refused");
                        return;
                    }
                }
            })
        };
        let worked = serve(
            &shared,
            &runtime,
            &holder,
            FenceToken(token as u64),
            &mut stable_running,
        )
        .await;
        renew.abort();
        if let Err(error) = shared
            .store
            .release_deploy_lease(&target, &holder, token)
            .await
        {
            tracing::warn!(%error, "could not release the deploy lease; it expires by itself");
        }
        shared.progress.send_modify(|n| *n += 1);
        match worked {
            Ok(true) => {}
            Ok(false) => {
                tokio::select! {
                    _ = notified => {}
                    _ = stop.notified() => break,
                    _ = tokio::time::sleep(IDLE_POLL) => {}
                }
            }
            Err(error) => {
                tracing::error!(%error, "deployer step failed; retrying");
                tokio::time::sleep(IDLE_POLL).await;
            }
        }
    }
    watcher.abort();
    let provider = runtime.provider.clone();
    let _ = tokio::task::spawn_blocking(move || provider.shutdown()).await;
}

/// One unit of work under the lease. Ok(false) when there was nothing to do.
async fn serve<S: Store>(
    shared: &Arc<Shared<S>>,
    runtime: &Arc<DeployRuntime>,
    holder: &str,
    token: FenceToken,
    stable_running: &mut bool,
) -> Result<bool, String> {
    if !*stable_running {
        start_stable(shared, runtime, token).await?;
        *stable_running = true;
    }
    let store = &shared.store;
    let queue = store
        .deploy_queue(&runtime.config.target)
        .await
        .map_err(|e| e.to_string())?;
    if let Some((change, deployment)) = queue.into_iter().next() {
        let paused = pause_of(store, &runtime.config.target)
            .await
            .map_err(|e| e.to_string())?
            .is_some();
        let (to, kind) = match change.state {
            ChangeState::RollingBack => (ChangeState::RollingBack, EventKind::RollbackStarted),
            ChangeState::Deploying => (ChangeState::Deploying, EventKind::DeployStarted),
            // The kill switch, or this target's pause: nothing new starts.
            ChangeState::DeployQueued if paused => return Ok(false),
            _ => (ChangeState::Deploying, EventKind::DeployStarted),
        };
        let resumed = change.state == to;
        let event = system_event(
            &change,
            kind,
            serde_json::json!({
                "target": runtime.config.target,
                "fence": token.0,
                "resumed": resumed,
                "holder": holder,
            }),
        );
        let taken = store
            .take_deployment(&change.id, change.state, to, holder, token.0 as i64, &event)
            .await
            .map_err(|e| e.to_string())?;
        if !taken {
            return Ok(true);
        }
        let driver = Driver {
            shared,
            runtime,
            holder,
            token,
        };
        let outcome = if to == ChangeState::RollingBack {
            driver.roll_back(&change, &deployment).await
        } else {
            driver.deploy(&change, deployment).await
        };
        prune_versions(shared, runtime).await;
        return match outcome {
            Ok(_) => Ok(true),
            Err(error) => {
                driver.fail(&change, to, &error).await;
                Ok(true)
            }
        };
    }
    match store
        .claim_for_staging(holder, now_ms(), LEASE_MS)
        .await
        .map_err(|e| e.to_string())?
    {
        Some(change) => {
            let driver = Driver {
                shared,
                runtime,
                holder,
                token,
            };
            if let Err(error) = driver.stage(&change).await {
                driver.fail(&change, ChangeState::Staging, &error).await;
            }
            Ok(true)
        }
        None => Ok(false),
    }
}

/// The watch of the change production runs, in a task of its own beside the deployer:
/// a rollout of the next change does not stop it (the stable slot still serves the
/// watched version, and the watch compares rates, which the split leaves alone). A
/// rollback it asks for waits in the queue, where rollbacks come first, until the
/// deployer is free.
async fn watch_production<S: Store>(shared: Arc<Shared<S>>, runtime: Arc<DeployRuntime>) {
    let mut watch: Option<Watch> = None;
    while !shared.shutting_down.load(Ordering::SeqCst) {
        match look_at_production(&shared, &runtime, &mut watch).await {
            Ok(true) => runtime.wake.notify_one(),
            Ok(false) => {}
            Err(error) => tracing::warn!(%error, "the watch could not look at production"),
        }
        tokio::time::sleep(IDLE_POLL).await;
    }
}

/// One look of the watch. True when it asked for a rollback (the deployer has work).
async fn look_at_production<S: Store>(
    shared: &Arc<Shared<S>>,
    runtime: &Arc<DeployRuntime>,
    watch: &mut Option<Watch>,
) -> Result<bool, String> {
    let config = &runtime.config.watch;
    let store = &shared.store;
    let stable = store
        .stable_version(&runtime.config.target)
        .await
        .map_err(|e| e.to_string())?;
    let Some((change_id, commit)) = stable.and_then(|s| Some((s.change_id?, s.commit))) else {
        *watch = None;
        return Ok(false);
    };
    if watch.as_ref().map(|w| &w.change) != Some(&change_id) {
        let events = store
            .events(Some(&change_id))
            .await
            .map_err(|e| e.to_string())?;
        let ended = events.iter().any(|e| {
            e.kind == EventKind::WatchRegression.as_str()
                || e.kind == EventKind::WatchCompleted.as_str()
        });
        let completed = events
            .iter()
            .rev()
            .find(|e| e.kind == EventKind::RolloutCompleted.as_str());
        // Without a recorded completion there is no baseline to compare with.
        let (at_ms, data) = completed.map_or((0, &serde_json::Value::Null), |e| (e.at_ms, &e.data));
        *watch = Some(Watch::new(
            change_id.clone(),
            commit,
            at_ms,
            data,
            config,
            ended || completed.is_none(),
        ));
    }
    let Some(watch) = watch.as_mut().filter(|w| w.active()) else {
        return Ok(false);
    };
    let production = {
        let runtime = runtime.clone();
        let commit = watch.commit.clone();
        tokio::task::spawn_blocking(move || -> Option<Observed> {
            match runtime.provider.observe(Environment::Production) {
                Ok(Some(mut slots)) => slots.remove(&Slot::Stable),
                Ok(None) => runtime
                    .prometheus
                    .as_ref()?
                    .observe(&[(Slot::Stable, commit.as_str())])
                    .ok()?
                    .remove(&Slot::Stable),
                Err(_) => None,
            }
        })
        .await
        .map_err(|e| e.to_string())?
    };
    // Missing data is no regression: the next look covers the gap.
    let Some(production) = production else {
        return Ok(false);
    };
    let event = |kind: EventKind, data: serde_json::Value| NewEvent {
        change_id: Some(change_id.clone()),
        at_ms: now_ms(),
        actor: Actor::system("watch"),
        kind,
        data,
    };
    match watch.look(&production, now_ms(), config) {
        Look::Quiet => Ok(false),
        Look::Completed { evidence } => {
            store
                .append_event(&event(
                    EventKind::WatchCompleted,
                    serde_json::json!({ "evidence": evidence, "period_s": config.period.as_secs() }),
                ))
                .await
                .map_err(|e| e.to_string())?;
            Ok(false)
        }
        Look::Regressed { reason, evidence } => {
            tracing::warn!(change = %change_id, %reason, "production regressed after the rollout");
            store
                .append_event(&event(
                    EventKind::WatchRegression,
                    serde_json::json!({
                        "summary": format!("{change_id}: {reason}"),
                        "reason": reason,
                        "evidence": evidence,
                        "rollback": config.rollback,
                    }),
                ))
                .await
                .map_err(|e| e.to_string())?;
            if !config.rollback {
                return Ok(false);
            }
            let rollback = event(
                EventKind::RollbackStarted,
                serde_json::json!({ "reason": reason, "automatic": true, "by": "watch", "summary": format!("rollback after the watch: {reason}") }),
            );
            store
                .request_rollback(
                    &change_id,
                    ChangeState::Deployed,
                    &reason,
                    &Actor::system("watch"),
                    &rollback,
                )
                .await
                .map_err(|e| e.to_string())
        }
    }
}

/// What stops new deployments to `target`: the kill switch, else the target's own pause
/// (drift's).
pub(crate) async fn pause_of<S: Store>(
    store: &S,
    target: &str,
) -> Result<Option<Pause>, airlock_store::StoreError> {
    if let Some(pause) = store.pause().await? {
        return Ok(Some(pause));
    }
    Ok(store
        .target_pauses()
        .await?
        .into_iter()
        .find(|(paused, _)| paused == target)
        .map(|(_, pause)| pause))
}

/// Makes sure the target's stable version serves: at start-up, the version recorded as
/// stable (or, the first time, the tip of the target branch) is started at 100 %.
async fn start_stable<S: Store>(
    shared: &Arc<Shared<S>>,
    runtime: &Arc<DeployRuntime>,
    token: FenceToken,
) -> Result<(), String> {
    let stable = match shared
        .store
        .stable_version(&runtime.config.target)
        .await
        .map_err(|e| e.to_string())?
    {
        Some(stable) => stable,
        None => {
            let tip = fetch_tip(runtime).await?;
            let stable = StableVersion {
                target: runtime.config.target.clone(),
                commit: tip.to_string(),
                change_id: None,
                updated_at_ms: now_ms(),
            };
            let event = NewEvent {
                change_id: None,
                at_ms: now_ms(),
                actor: Actor::system("deployer"),
                kind: EventKind::StableStarted,
                data: serde_json::json!({
                    "target": runtime.config.target,
                    "commit": stable.commit,
                    "first": true,
                }),
            };
            shared
                .store
                .init_stable_version(&stable, &event)
                .await
                .map_err(|e| e.to_string())?;
            stable
        }
    };
    let version = checkout(runtime, &stable.commit).await?;
    blocking(runtime, move |provider| {
        provider.deploy(token, Environment::Production, Slot::Stable, &version)?;
        provider.set_weights(token, Environment::Production, Weights::STABLE_ONLY)?;
        Ok(())
    })
    .await
    .map_err(|e| format!("could not start the stable version {}: {e}", stable.commit))?;
    tracing::info!(target = %runtime.config.target, commit = %stable.commit, url = ?runtime.provider.url(Environment::Production), "stable version serving");
    Ok(())
}

/// Runs a provider call on a blocking thread.
async fn blocking<T: Send + 'static>(
    runtime: &Arc<DeployRuntime>,
    call: impl FnOnce(&dyn Provider) -> Result<T, RolloutError> + Send + 'static,
) -> Result<T, RolloutError> {
    let provider = runtime.provider.clone();
    tokio::task::spawn_blocking(move || call(provider.as_ref()))
        .await
        .map_err(|e| RolloutError::FenceUnavailable {
            target: String::new(),
            message: format!("provider task: {e}"),
        })?
}

async fn git<T: Send + 'static>(
    runtime: &Arc<DeployRuntime>,
    call: impl FnOnce(&Landing, &Remote) -> Result<T, airlock_git::GitError> + Send + 'static,
) -> Result<T, String> {
    let runtime = runtime.clone();
    tokio::task::spawn_blocking(move || call(&runtime.landing, &runtime.remote))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())
}

/// Pushes `commit` to the target branch if the branch is still at `expected` (a
/// compare-and-set on the remote).
async fn push(
    runtime: &Arc<DeployRuntime>,
    commit: &CommitId,
    expected: &CommitId,
) -> Result<PushOutcome, String> {
    let (commit, expected) = (commit.clone(), expected.clone());
    let branch = runtime.config.branch.clone();
    git(runtime, move |landing, remote| {
        landing.push(remote, &commit, &branch, &expected)
    })
    .await
}

async fn fetch_tip(runtime: &Arc<DeployRuntime>) -> Result<CommitId, String> {
    let branch = runtime.config.branch.clone();
    git(runtime, move |landing, remote| {
        landing.fetch_tip(remote, &branch)
    })
    .await
}

/// How many checked-out versions are kept besides the stable one: the directory would
/// otherwise grow by a tree per deployment.
const KEPT_VERSIONS: usize = 2;

/// Between rollouts, deletes the checked-out versions but the stable one (production runs
/// it) and the [`KEPT_VERSIONS`] newest others; a version needed again is checked out again.
/// Unfinished checkouts go too. Failing to read or delete is logged, never an error.
async fn prune_versions<S: Store>(shared: &Arc<Shared<S>>, runtime: &Arc<DeployRuntime>) {
    let stable = match shared.store.stable_version(&runtime.config.target).await {
        Ok(stable) => stable.map(|stable| stable.commit),
        Err(error) => {
            tracing::warn!(%error, "cannot read the stable version; versions are not pruned");
            return;
        }
    };
    let dir = runtime.versions_dir.clone();
    let pruned = tokio::task::spawn_blocking(move || {
        let mut versions: Vec<(std::time::SystemTime, PathBuf)> = Vec::new();
        for entry in std::fs::read_dir(&dir)?.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".partial") {
                std::fs::remove_dir_all(&path)?;
            } else if stable.as_deref() != Some(name.as_str()) {
                versions.push((entry.metadata()?.modified()?, path));
            }
        }
        versions.sort_by_key(|(modified, _)| std::cmp::Reverse(*modified));
        for (_, path) in versions.iter().skip(KEPT_VERSIONS) {
            std::fs::remove_dir_all(path)?;
        }
        Ok::<usize, std::io::Error>(versions.len().saturating_sub(KEPT_VERSIONS))
    })
    .await;
    match pruned {
        Ok(Ok(0)) => {}
        Ok(Ok(count)) => tracing::info!(count, "old checked-out versions deleted"),
        Ok(Err(error)) => tracing::warn!(%error, "pruning the checked-out versions failed"),
        Err(error) => tracing::warn!(%error, "pruning the checked-out versions failed"),
    }
}

/// The files of `commit`, checked out once under the versions directory.
async fn checkout(runtime: &Arc<DeployRuntime>, commit: &str) -> Result<Version, String> {
    let id: CommitId = commit.parse().map_err(|e| format!("{e}"))?;
    let dir = runtime.versions_dir.join(id.as_str());
    if !dir.join(".airlock-complete").exists() {
        let partial = runtime.versions_dir.join(format!("{id}.partial"));
        let _ = std::fs::remove_dir_all(&partial);
        let _ = std::fs::remove_dir_all(&dir);
        let (exported, target) = (partial.clone(), dir.clone());
        git(runtime, move |landing, _| {
            landing.export(&id, &exported)?;
            std::fs::write(exported.join(".airlock-complete"), b"")
                .map_err(|e| airlock_git::GitError::io("write", &exported, e))?;
            std::fs::rename(&exported, &target)
                .map_err(|e| airlock_git::GitError::io("rename", &exported, e))
        })
        .await?;
    }
    Ok(Version {
        commit: commit.to_owned(),
        tree: dir,
    })
}

/// One poll of the rollout's measurements: per slot (the provider's own, or
/// Prometheus's for the canary and the baseline), and the custom metrics. What a source
/// could not give is missing (None), never zero: the judge waits for it.
async fn read(
    runtime: &Arc<DeployRuntime>,
    canary: &str,
    baseline: &str,
) -> (Reading, Option<String>) {
    let runtime = runtime.clone();
    let custom_count = runtime.config.judge.metrics.len();
    let (canary, baseline) = (canary.to_owned(), baseline.to_owned());
    let joined = tokio::task::spawn_blocking(move || {
        let slots = match runtime.provider.observe(Environment::Production) {
            Ok(Some(observed)) => Ok(observed),
            Ok(None) => match &runtime.prometheus {
                Some(prometheus) => prometheus
                    .observe(&[
                        (Slot::Canary, canary.as_str()),
                        (Slot::Baseline, baseline.as_str()),
                    ])
                    .map_err(|e| e.to_string()),
                None => Err(RolloutError::InvalidOption {
                    what: "metrics source",
                    value: runtime.provider.name().to_owned(),
                    accepted: "a provider that measures (local) or a [deploy.prometheus] section",
                }
                .to_string()),
            },
            Err(error) => Err(error.to_string()),
        };
        let custom = match &runtime.prometheus {
            Some(prometheus) => canary::read_custom(
                prometheus,
                &runtime.config.judge.metrics,
                &canary,
                &baseline,
            ),
            None => Vec::new(),
        };
        (slots, custom)
    })
    .await;
    match joined {
        Ok((slots, custom)) => {
            let missing = slots.as_ref().err().cloned();
            (
                Reading {
                    slots: slots.ok(),
                    custom,
                },
                missing,
            )
        }
        Err(error) => (
            Reading {
                slots: None,
                custom: vec![None; custom_count],
            },
            Some(error.to_string()),
        ),
    }
}

fn observed_json(observed: &Observed) -> serde_json::Value {
    serde_json::json!({
        "requests": observed.requests,
        "errors": observed.errors,
        "p99_ms": observed.p99.map(|d| d.as_secs_f64() * 1000.0),
    })
}

/// The deployer's hands for one change, under one fencing token.
struct Driver<'a, S> {
    shared: &'a Arc<Shared<S>>,
    runtime: &'a Arc<DeployRuntime>,
    holder: &'a str,
    token: FenceToken,
}

impl<S: Store> Driver<'_, S> {
    fn event(&self, change: &ChangeRecord, kind: EventKind, data: serde_json::Value) -> NewEvent {
        let mut event = system_event(change, kind, data);
        event.actor = Actor::system("deployer");
        event
    }

    async fn finish(
        &self,
        change: &ChangeRecord,
        from: ChangeState,
        to: ChangeState,
        verdict: Option<&Verdict>,
        stable: Option<&StableVersion>,
        event: NewEvent,
    ) -> Outcome {
        let moved = self
            .shared
            .store
            .finish_deployment(&change.id, self.holder, from, to, verdict, stable, &event)
            .await
            .map_err(|e| e.to_string())?;
        self.shared.progress.send_modify(|n| *n += 1);
        Ok(if moved {
            Stop::Settled
        } else {
            Stop::Interrupted
        })
    }

    async fn record(
        &self,
        change: &ChangeRecord,
        update: DeploymentUpdate,
        event: NewEvent,
    ) -> Result<(), String> {
        let recorded = self
            .shared
            .store
            .update_deployment(&change.id, self.holder, &update, &event)
            .await
            .map_err(|e| e.to_string())?;
        self.shared.progress.send_modify(|n| *n += 1);
        if recorded {
            Ok(())
        } else {
            Err(format!(
                "lost the deployment of {} to another holder",
                change.id
            ))
        }
    }

    /// An error airlock could not handle: the change fails with the reason (traffic on
    /// stable first, when a rollout was under way).
    async fn fail(&self, change: &ChangeRecord, state: ChangeState, error: &str) {
        tracing::error!(change = %change.id, %error, "deployment failed");
        if state == ChangeState::Deploying {
            let token = self.token;
            let _ = blocking(self.runtime, move |provider| {
                provider.set_weights(token, Environment::Production, Weights::STABLE_ONLY)?;
                provider.stop(token, Environment::Production, Slot::Canary)?;
                provider.stop(token, Environment::Production, Slot::Baseline)
            })
            .await;
        }
        let verdict = Verdict::without_step(VerdictOutcome::Failed, error.to_owned());
        let event = self.event(
            change,
            EventKind::DeployFailed,
            serde_json::json!({ "reason": error, "state": state }),
        );
        let to = ChangeState::Failed;
        if state.can_become(to) {
            let _ = self
                .finish(change, state, to, Some(&verdict), None, event)
                .await;
        } else {
            let _ = self.shared.store.append_event(&event).await;
        }
    }

    /// Level 3: the change, applied on its base, deployed to staging and tested there.
    async fn stage(&self, change: &ChangeRecord) -> Result<(), String> {
        let config = &self.runtime.config;
        let skip = if !config.staging.enabled {
            Some("staging is disabled (`deploy.staging.enabled = false`)")
        } else if config.staging.test.is_none() {
            Some("no integration tests are configured (`deploy.staging.test`)")
        } else if change.obligations.as_ref().is_some_and(|o| !o.staging) {
            Some("the review policy does not require staging for this change")
        } else {
            None
        };
        if let Some(reason) = skip {
            let event = self.event(
                change,
                EventKind::DeployQueued,
                serde_json::json!({ "target": config.target, "staging": format!("skipped: {reason}") }),
            );
            self.shared
                .store
                .enqueue_deploy(
                    &change.id,
                    self.holder,
                    change.state,
                    &config.target,
                    &event,
                )
                .await
                .map_err(|e| e.to_string())?;
            return Ok(());
        }
        if change.state == ChangeState::Approved {
            let event = self.event(
                change,
                EventKind::StagingStarted,
                serde_json::json!({ "target": config.target }),
            );
            let moved = self
                .shared
                .store
                .transition(
                    &change.id,
                    self.holder,
                    ChangeState::Approved,
                    ChangeState::Staging,
                    None,
                    &event,
                )
                .await
                .map_err(|e| e.to_string())?;
            if !moved {
                return Ok(());
            }
        }
        let base: CommitId = change.base_commit.parse().map_err(|e| format!("{e}"))?;
        let commit = self.change_commit(change, &base).await?;
        let version = checkout(self.runtime, commit.as_str()).await?;
        let token = self.token;
        let staged = version.clone();
        let deployed = blocking(self.runtime, move |provider| {
            provider.deploy(token, Environment::Staging, Slot::Canary, &staged)?;
            provider.set_weights(
                token,
                Environment::Staging,
                Weights {
                    stable: 0,
                    baseline: 0,
                    canary: 100,
                },
            )?;
            Ok(provider.url(Environment::Staging))
        })
        .await;
        let (passed, summary, output, exit_code, duration_ms) = match deployed {
            Err(error) => (
                false,
                format!("the candidate could not be deployed to staging: {error}"),
                String::new(),
                None,
                0,
            ),
            Ok(url) => {
                let outcome = self.integration_tests(change, &version, url).await;
                let _ = blocking(self.runtime, move |provider| {
                    provider.stop(token, Environment::Staging, Slot::Canary)
                })
                .await;
                outcome?
            }
        };
        if passed {
            let passed_event = self.event(
                change,
                EventKind::StagingPassed,
                serde_json::json!({ "summary": summary, "output_excerpt": output, "duration_ms": duration_ms, "commit": commit.as_str() }),
            );
            self.shared
                .store
                .append_event(&passed_event)
                .await
                .map_err(|e| e.to_string())?;
            let queued = self.event(
                change,
                EventKind::DeployQueued,
                serde_json::json!({ "target": config.target, "staging": "passed" }),
            );
            self.shared
                .store
                .enqueue_deploy(
                    &change.id,
                    self.holder,
                    ChangeState::Staging,
                    &config.target,
                    &queued,
                )
                .await
                .map_err(|e| e.to_string())?;
        } else {
            let verdict = Verdict {
                outcome: VerdictOutcome::Rejected,
                summary: summary.clone(),
                failed_step: Some("staging".to_owned()),
                exit_code,
                duration_ms: Some(duration_ms),
                output_excerpt: Some(output.clone()),
                isolation: None,
            };
            let event = self.event(
                change,
                EventKind::StagingFailed,
                serde_json::json!({ "summary": summary, "output_excerpt": output, "exit_code": exit_code }),
            );
            self.shared
                .store
                .transition(
                    &change.id,
                    self.holder,
                    ChangeState::Staging,
                    ChangeState::Rejected,
                    Some(&verdict),
                    &event,
                )
                .await
                .map_err(|e| e.to_string())?;
        }
        self.shared.progress.send_modify(|n| *n += 1);
        Ok(())
    }

    /// Runs `[deploy.staging] test` in the candidate's files with `AIRLOCK_STAGING_URL`,
    /// sandboxed like a check but with the host's network (staging listens on it).
    async fn integration_tests(
        &self,
        change: &ChangeRecord,
        version: &Version,
        url: Option<String>,
    ) -> Result<(bool, String, String, Option<i32>, u64), String> {
        let Some(url) = url else {
            return Ok((
                false,
                format!(
                    "the {} provider reports no staging URL for the integration tests",
                    self.runtime.provider.name()
                ),
                String::new(),
                None,
                0,
            ));
        };
        let shared = self.shared;
        let staging = &self.runtime.config.staging;
        let mut sandbox =
            crate::worker::sandbox_config(shared, version.tree.clone(), Some(&change.id), true);
        sandbox.env.push(("AIRLOCK_STAGING_URL".to_owned(), url));
        let spec = airlock_sandbox::CommandSpec {
            name: "staging".to_owned(),
            command: staging.test.clone().unwrap_or_default(),
            timeout: staging.timeout,
            output_limit: shared.config.output_limit,
        };
        let cancel = shared.cancel.clone();
        let outcome =
            tokio::task::spawn_blocking(move || airlock_sandbox::run(&sandbox, &spec, &cancel))
                .await
                .map_err(|e| e.to_string())?;
        Ok(match outcome {
            Err(error) => (
                false,
                format!("the integration tests could not start: {error}"),
                String::new(),
                None,
                0,
            ),
            Ok(outcome) => {
                let output = String::from_utf8_lossy(&outcome.output).into_owned();
                let duration = outcome.duration.as_millis() as u64;
                if outcome.success() {
                    (
                        true,
                        "integration tests passed against staging".to_owned(),
                        output,
                        outcome.exit_code,
                        duration,
                    )
                } else if outcome.timed_out {
                    (
                        false,
                        format!(
                            "the integration tests timed out after {}",
                            airlock_core::units::format_duration(staging.timeout)
                        ),
                        output,
                        None,
                        duration,
                    )
                } else {
                    (
                        false,
                        format!(
                            "the integration tests failed against staging (exit {})",
                            outcome
                                .exit_code
                                .map(|c| c.to_string())
                                .unwrap_or_else(|| "by signal".into())
                        ),
                        output,
                        outcome.exit_code,
                        duration,
                    )
                }
            }
        })
    }

    /// The change as a commit on `parent`, with airlock's trailers. No ref moves.
    async fn change_commit(
        &self,
        change: &ChangeRecord,
        parent: &CommitId,
    ) -> Result<CommitId, String> {
        let shared = self.shared.clone();
        let diff = crate::worker::stored_diff(self.shared, change).await?;
        let message = self.commit_message(change).await?;
        let record = change.clone();
        let parent = parent.clone();
        let runtime = self.runtime.clone();
        tokio::task::spawn_blocking(move || {
            let base: CommitId = record.base_commit.parse().map_err(|e| format!("{e}"))?;
            let writes = crate::intake::materialize(
                &shared.repo,
                &base,
                &record.source,
                &diff,
                &record.files,
            )?;
            runtime
                .landing
                .commit_files(&parent, &writes, &message)
                .map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| e.to_string())?
    }

    async fn commit_message(&self, change: &ChangeRecord) -> Result<CommitMessage, String> {
        let actions = self
            .shared
            .store
            .review_actions(&change.id)
            .await
            .map_err(|e| e.to_string())?;
        let mut approvers: Vec<String> = actions
            .iter()
            .filter(|a| a.revision == change.revision && a.verdict == ReviewVerdict::Approve)
            .map(|a| a.reviewer.name.clone())
            .collect();
        approvers.dedup();
        let approved_by = if let Some(urgency) = &change.urgency {
            format!("break-glass by {}", urgency.by.name)
        } else if approvers.is_empty() {
            "policy".to_owned()
        } else {
            approvers.join(", ")
        };
        Ok(CommitMessage {
            subject: change.title.clone(),
            body: change.description.clone(),
            trailers: vec![
                ("Airlock-Change".to_owned(), change.id.to_string()),
                ("Airlock-Agent".to_owned(), change.agent.name.clone()),
                ("Airlock-Approved-By".to_owned(), approved_by),
            ],
        })
    }

    /// Level 4 for one change, from wherever it stopped.
    async fn deploy(&self, change: &ChangeRecord, mut deployment: DeploymentRecord) -> Outcome {
        if deployment.commit_id.is_none() {
            match self.land(change).await? {
                Some(landed) => deployment = landed,
                None => return Ok(Stop::Settled),
            }
        }
        let commit = deployment.commit_id.clone().unwrap_or_default();
        let previous = deployment.previous_commit.clone().unwrap_or_default();
        let candidate = checkout(self.runtime, &commit).await?;
        let baseline = checkout(self.runtime, &previous).await?;
        // The stable version before the rollout: its p99 is what "slow" means.
        let (before, _) = read(self.runtime, &commit, &previous).await;
        // What the watch after the rollout compares production with.
        let stable_before = before
            .slots
            .as_ref()
            .and_then(|slots| slots.get(&Slot::Stable))
            .map(Before::of);
        let resumed = match deployment.step {
            -1 => None,
            _ => self.load_recording(change),
        };
        let mut canary = Canary::new(
            &self.runtime.config.judge,
            before
                .slots
                .as_ref()
                .and_then(|slots| slots.get(&Slot::Stable)),
            resumed.as_ref(),
        )?;
        let token = self.token;
        let started = blocking(self.runtime, move |provider| {
            provider.deploy(token, Environment::Production, Slot::Baseline, &baseline)?;
            provider.deploy(token, Environment::Production, Slot::Canary, &candidate)
        })
        .await;
        if let Err(error) = started {
            return self
                .abort_rollout(
                    change,
                    format!("the candidate could not start: {error}"),
                    serde_json::Value::Null,
                    None,
                )
                .await;
        }
        // The policy may prescribe the steps (for example more, smaller ones for high risk).
        let steps = change
            .obligations
            .as_ref()
            .map(|o| o.canary_steps.clone())
            .filter(|steps| !steps.is_empty())
            .unwrap_or_else(|| self.runtime.config.steps.clone());
        let first = (deployment.step + 1).max(0) as usize;
        for (index, &percent) in steps.iter().enumerate().skip(first) {
            if self.shared.shutting_down.load(Ordering::SeqCst) {
                return Ok(Stop::Interrupted);
            }
            let weights = Weights::step(percent).map_err(|e| e.to_string())?;
            // What was served under the previous split counts in the previous step.
            let (reading, _) = read(self.runtime, &commit, &previous).await;
            canary.observe(&reading)?;
            canary.begin_step(percent);
            let set = blocking(self.runtime, move |provider| {
                provider.set_weights(token, Environment::Production, weights)
            })
            .await;
            let in_force = match set {
                Ok(in_force) => in_force,
                Err(error @ RolloutError::StaleFence { .. }) => return Err(error.to_string()),
                Err(error) => {
                    return self
                        .abort_rollout(
                            change,
                            format!("traffic could not be set for the {percent} % step: {error}"),
                            serde_json::Value::Null,
                            None,
                        )
                        .await;
                }
            };
            self.shared
                .store
                .append_event(&self.event(
                    change,
                    EventKind::RolloutStep,
                    serde_json::json!({ "step": index, "percent": percent, "weights": in_force, "commit": commit }),
                ))
                .await
                .map_err(|e| e.to_string())?;
            match self
                .watch_step(change, percent, &commit, &previous, &mut canary)
                .await?
            {
                StepResult::Healthy(mut evidence) => {
                    evidence["recording"] = self.save_recording(change, &canary);
                    let event = self.event(
                        change,
                        EventKind::RolloutDecision,
                        serde_json::json!({ "step": index, "percent": percent, "decision": "pass", "evidence": evidence }),
                    );
                    self.record(
                        change,
                        DeploymentUpdate {
                            step: Some(index as i64),
                            ..Default::default()
                        },
                        event,
                    )
                    .await?;
                }
                StepResult::Unhealthy(reason, evidence) => {
                    let event = self.event(
                        change,
                        EventKind::RolloutDecision,
                        serde_json::json!({ "step": index, "percent": percent, "decision": "fail", "reason": reason, "evidence": evidence }),
                    );
                    self.shared
                        .store
                        .append_event(&event)
                        .await
                        .map_err(|e| e.to_string())?;
                    let mut evidence = evidence;
                    evidence["recording"] = self.save_recording(change, &canary);
                    return self.abort_rollout(change, reason, evidence, None).await;
                }
                StepResult::Aborted(reason, by, mut evidence) => {
                    let mut event = self.event(
                        change,
                        EventKind::RolloutDecision,
                        serde_json::json!({ "step": index, "percent": percent, "decision": "abort", "reason": reason, "evidence": evidence }),
                    );
                    event.actor = by.clone();
                    self.shared
                        .store
                        .append_event(&event)
                        .await
                        .map_err(|e| e.to_string())?;
                    evidence["recording"] = self.save_recording(change, &canary);
                    return self.abort_rollout(change, reason, evidence, Some(by)).await;
                }
                StepResult::Interrupted => return Ok(Stop::Interrupted),
            }
        }
        // The canary's figures over the rollout: the steady state drift is measured on.
        let (after, _) = read(self.runtime, &commit, &previous).await;
        let after = after
            .slots
            .and_then(|mut slots| slots.remove(&Slot::Canary));
        blocking(self.runtime, move |provider| {
            provider.promote(token, Environment::Production)
        })
        .await
        .map_err(|e| e.to_string())?;
        let stable = StableVersion {
            target: self.runtime.config.target.clone(),
            commit: commit.clone(),
            change_id: Some(change.id.clone()),
            updated_at_ms: now_ms(),
        };
        let event = self.event(
            change,
            EventKind::RolloutCompleted,
            serde_json::json!({
                "commit": commit,
                "previous_commit": previous,
                "target": self.runtime.config.target,
                "recording": self.save_recording(change, &canary),
                "before": stable_before.as_ref().map(|b| b.to_json()),
            }),
        );
        let done = self
            .finish(
                change,
                ChangeState::Deploying,
                ChangeState::Deployed,
                None,
                Some(&stable),
                event,
            )
            .await;
        tracing::info!(change = %change.id, %commit, "rolled out to 100 %");
        if done.is_ok()
            && let (Some(after), Some(before)) = (after, stable_before)
            && let Err(error) = self.track_drift(change, &after, &before).await
        {
            tracing::warn!(change = %change.id, %error, "could not measure drift");
        }
        done
    }

    /// Records the rollout's steady state and, when the target's last rollouts together
    /// degraded it beyond `[deploy.drift]`'s budget, says so and pauses this target's
    /// deployments (not the kill switch: other targets did not drift).
    async fn track_drift(
        &self,
        change: &ChangeRecord,
        after: &Observed,
        before: &Before,
    ) -> Result<(), String> {
        let config = &self.runtime.config;
        let store = &self.shared.store;
        let millis = |p: Option<Duration>| p.map(|p| p.as_secs_f64() * 1000.0);
        store
            .record_steady_state(&SteadyState {
                target: config.target.clone(),
                change_id: change.id.clone(),
                completed_ms: now_ms(),
                requests: after.requests as i64,
                errors: after.errors as i64,
                p99_ms: millis(after.p99()),
                before_requests: before.requests as i64,
                before_errors: before.errors as i64,
                before_p99_ms: millis(before.p99),
            })
            .await
            .map_err(|e| e.to_string())?;
        let states = store
            .steady_states(&config.target, config.drift.changes)
            .await
            .map_err(|e| e.to_string())?;
        let Some((reason, evidence)) = drift::exceeded(&states, &config.drift) else {
            return Ok(());
        };
        tracing::warn!(target = %config.target, %reason, "drift beyond budget; the target's deployments pause");
        store
            .append_event(&self.event(
                change,
                EventKind::DriftExceeded,
                serde_json::json!({ "summary": format!("{}: {reason}", config.target), "reason": reason, "evidence": evidence }),
            ))
            .await
            .map_err(|e| e.to_string())?;
        let pause = Pause {
            reason: format!("drift on {}: {reason}", config.target),
            by: Actor::system("drift"),
            at_ms: now_ms(),
        };
        let event = NewEvent {
            change_id: None,
            at_ms: now_ms(),
            actor: Actor::system("drift"),
            kind: EventKind::DeploymentsPaused,
            data: serde_json::json!({
                "summary": format!("deployments to {} paused: {}", config.target, pause.reason),
                "reason": pause.reason,
                "target": config.target,
            }),
        };
        store
            .set_target_pause(&config.target, Some(&pause), &event)
            .await
            .map_err(|e| e.to_string())?;
        Ok(())
    }

    /// Lands the change on the target branch: re-applied (and checked again) when the
    /// branch moved, pushed as a fast-forward. None when the change went back to the
    /// agent or was rejected.
    async fn land(&self, change: &ChangeRecord) -> Result<Option<DeploymentRecord>, String> {
        let base: CommitId = change.base_commit.parse().map_err(|e| format!("{e}"))?;
        let previous = self
            .shared
            .store
            .stable_version(&self.runtime.config.target)
            .await
            .map_err(|e| e.to_string())?
            .map(|s| s.commit)
            .ok_or("the target has no stable version")?;
        let original = self.change_commit(change, &base).await?;
        let message = self.commit_message(change).await?;
        for _ in 0..PUSH_ATTEMPTS {
            let tip = fetch_tip(self.runtime).await?;
            // A commit with this change's trailer already on the branch: a previous run
            // pushed it and stopped before recording that.
            let (search_tip, id) = (tip.clone(), change.id.to_string());
            if let Some(found) = git(self.runtime, move |landing, _| {
                landing.find_by_trailer(&search_tip, "Airlock-Change", &id, TRAILER_SEARCH_DEPTH)
            })
            .await?
            {
                return self
                    .record_landed(change, &found, &previous, &tip, false)
                    .await
                    .map(Some);
            }
            let commit = if tip == base {
                original.clone()
            } else {
                let (original, onto, message) = (original.clone(), tip.clone(), message.clone());
                match git(self.runtime, move |landing, _| {
                    landing.cherry_pick(&original, &onto, &message)
                })
                .await?
                {
                    Ok(commit) => {
                        if !self.recheck(change, &tip, &commit).await? {
                            return Ok(None);
                        }
                        commit
                    }
                    Err(conflict) => {
                        self.return_to_agent(change, &tip, &conflict).await?;
                        return Ok(None);
                    }
                }
            };
            match push(self.runtime, &commit, &tip).await? {
                PushOutcome::Updated => {
                    return self
                        .record_landed(change, &commit, &previous, &tip, tip != base)
                        .await
                        .map(Some);
                }
                PushOutcome::Rejected(reason) => {
                    let now = fetch_tip(self.runtime).await?;
                    if now == tip {
                        return Err(format!("the target branch refused the commit: {reason}"));
                    }
                    tracing::info!(change = %change.id, "the target branch moved during the push; re-applying");
                }
            }
        }
        Err(format!(
            "the target branch kept moving: {PUSH_ATTEMPTS} pushes were overtaken"
        ))
    }

    async fn record_landed(
        &self,
        change: &ChangeRecord,
        commit: &CommitId,
        previous: &str,
        tip: &CommitId,
        rebased: bool,
    ) -> Result<DeploymentRecord, String> {
        let event = self.event(
            change,
            EventKind::DeployCommitted,
            serde_json::json!({
                "commit": commit.as_str(),
                "parent": tip.as_str(),
                "branch": self.runtime.config.branch,
                "repository": match &self.runtime.remote { Remote::This => ".".to_owned(), Remote::Other(url) => url.clone() },
                "rebased": rebased,
                "previous_stable": previous,
            }),
        );
        self.record(
            change,
            DeploymentUpdate {
                commit_id: Some(commit.to_string()),
                previous_commit: Some(previous.to_owned()),
                ..Default::default()
            },
            event,
        )
        .await?;
        self.shared
            .store
            .deployment(&change.id)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("deployment of {} vanished", change.id))
    }

    async fn return_to_agent(
        &self,
        change: &ChangeRecord,
        tip: &CommitId,
        conflict: &MergeConflict,
    ) -> Result<(), String> {
        let summary = format!(
            "the change no longer applies to `{}` at {}: {conflict}; send a revision based on the new tip",
            self.runtime.config.branch,
            tip.as_str()
        );
        let verdict = Verdict::without_step(VerdictOutcome::Rejected, summary.clone());
        let event = self.event(
            change,
            EventKind::DeployConflict,
            serde_json::json!({ "tip": tip.as_str(), "paths": conflict.paths, "messages": conflict.messages, "summary": summary }),
        );
        self.finish(
            change,
            ChangeState::Deploying,
            ChangeState::ChangesRequested,
            Some(&verdict),
            None,
            event,
        )
        .await
        .map(|_| ())
    }

    /// Level 1 again on the change re-applied on `tip`: the scan of the new diff and every
    /// check command in a workspace at the new commit. False when it failed (recorded).
    async fn recheck(
        &self,
        change: &ChangeRecord,
        tip: &CommitId,
        commit: &CommitId,
    ) -> Result<bool, String> {
        let (from, to) = (tip.clone(), commit.clone());
        let diff = git(self.runtime, move |landing, _| landing.diff(&from, &to)).await?;
        let mut results = Vec::new();
        let mut failure = None;
        let mut workspace = None;
        for (index, step) in self.shared.plan.iter().enumerate() {
            let record = match step {
                PlannedStep::Scan => {
                    crate::worker::run_scan(self.shared, diff.clone(), tip.clone(), index).await?
                }
                PlannedStep::Check(check) => {
                    if workspace.is_none() {
                        let shared = self.shared.clone();
                        let at = commit.clone();
                        workspace = Some(
                            tokio::task::spawn_blocking(move || shared.workspaces.acquire(&at))
                                .await
                                .map_err(|e| e.to_string())?
                                .map_err(|e| e.to_string())?,
                        );
                    }
                    let tree = workspace
                        .as_ref()
                        .map(|w: &airlock_git::Workspace| w.tree().to_path_buf())
                        .unwrap_or_default();
                    match crate::worker::run_check(
                        self.shared,
                        self.holder,
                        change,
                        index,
                        check,
                        tree,
                        None,
                    )
                    .await?
                    {
                        Some(record) => record,
                        None => return Err("shutting down during the re-check".into()),
                    }
                }
            };
            results.push(serde_json::json!({ "step": record.name, "status": record.status, "exit_code": record.exit_code }));
            if record.status == StepStatus::Failed {
                failure = Some(record);
                break;
            }
        }
        if let Some(workspace) = workspace {
            let _ = tokio::task::spawn_blocking(move || workspace.release()).await;
        }
        let event = self.event(
            change,
            EventKind::DeployRebased,
            serde_json::json!({ "onto": tip.as_str(), "commit": commit.as_str(), "steps": results, "passed": failure.is_none() }),
        );
        match failure {
            None => {
                self.shared
                    .store
                    .append_event(&event)
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(true)
            }
            Some(step) => {
                let verdict = Verdict {
                    outcome: VerdictOutcome::Rejected,
                    summary: format!(
                        "after re-applying the change on the moved target branch, `{}` failed{}",
                        step.name,
                        step.reason
                            .as_deref()
                            .map(|r| format!(": {r}"))
                            .unwrap_or_default()
                    ),
                    failed_step: Some(step.name.clone()),
                    exit_code: step.exit_code,
                    duration_ms: Some(step.duration_ms),
                    output_excerpt: Some(step.output.clone()),
                    isolation: Some(step.isolation.clone()),
                };
                self.finish(
                    change,
                    ChangeState::Deploying,
                    ChangeState::Rejected,
                    Some(&verdict),
                    None,
                    event,
                )
                .await?;
                Ok(false)
            }
        }
    }

    /// Watches the canary for one step. The judge compares it with the baseline at every
    /// poll: its failure ends the step at once; an advisory failure holds it until a
    /// person continues the rollout past it (`rollout.continued`: the metrics it names
    /// then no longer stop the rollout) or aborts it (`rollout.aborted`, read at every
    /// poll, held or not). The absolute guards stay as a second line. The step passes
    /// once the soak time is over, the judge passes it and the guards see enough healthy
    /// traffic. Missing or thin data makes the step wait, never fail, and, when
    /// configured, start synthetic load once the soak is over. While the kill switch is
    /// on, a healthy step holds.
    async fn watch_step(
        &self,
        change: &ChangeRecord,
        percent: u32,
        commit: &str,
        previous: &str,
        canary: &mut Canary,
    ) -> Result<StepResult, String> {
        let config = &self.runtime.config;
        // The guards judge what was served since the step began.
        let mut start: Option<BTreeMap<Slot, Observed>> = None;
        let began = Instant::now();
        let (mut missing_noted, mut waiting_noted) = (false, false);
        // The metrics of the hold last announced, so that each hold is one event.
        let mut hold_noted: Option<Vec<String>> = None;
        // Requests airlock sends while the step lacks data; stopped (dropped) as soon as
        // the step is decided, whichever way this function returns.
        let mut synthetic: Option<SyntheticLoad> = None;
        loop {
            tokio::time::sleep(config.poll).await;
            if self.shared.shutting_down.load(Ordering::SeqCst) {
                return Ok(StepResult::Interrupted);
            }
            let (reading, missing) = read(self.runtime, commit, previous).await;
            if let Some(error) = missing
                && !missing_noted
            {
                missing_noted = true;
                tracing::warn!(change = %change.id, %error, "no metrics for this poll; the step waits");
            }
            let decision = canary.observe(&reading)?;
            let (window_canary, window_baseline) = match &reading.slots {
                Some(now) => {
                    let start = start.get_or_insert_with(|| now.clone());
                    let window = |slot: Slot| -> Observed {
                        match (now.get(&slot), start.get(&slot)) {
                            (Some(now), Some(start)) => now.since(start),
                            (Some(now), None) => now.clone(),
                            _ => Observed::default(),
                        }
                    };
                    (window(Slot::Canary), window(Slot::Baseline))
                }
                None => (Observed::default(), Observed::default()),
            };
            let mut evidence = serde_json::json!({
                "judge": decision,
                "canary": observed_json(&window_canary),
                "baseline": observed_json(&window_baseline),
                "guards": {
                    "max_error_rate": config.guards.max_error_rate,
                    "max_p99_ms": config.guards.max_p99.as_millis() as u64,
                    "min_requests": config.guards.min_requests,
                },
                "seconds": began.elapsed().as_secs_f64(),
            });
            if let Some(load) = &synthetic {
                evidence["synthetic_load"] = load.summary();
            }
            let people = Interventions::of(
                &self
                    .shared
                    .store
                    .events(Some(&change.id))
                    .await
                    .map_err(|e| e.to_string())?,
            );
            if let Some((reason, by)) = people.abort {
                let reason = format!("rollout aborted by {}: {reason}", by.name);
                return Ok(StepResult::Aborted(reason, by, evidence));
            }
            let judge_passes = match &decision.verdict {
                JudgeVerdict::Fail { metric } => {
                    return Ok(StepResult::Unhealthy(
                        canary::failure_reason(&decision, metric),
                        evidence,
                    ));
                }
                JudgeVerdict::Hold { .. } => {
                    let unanswered: Vec<String> = decision
                        .metrics
                        .iter()
                        .filter(|m| m.trust == Trust::Advisory && m.verdict == MetricVerdict::Fail)
                        .filter(|m| !people.acknowledged.contains(&m.name))
                        .map(|m| m.name.clone())
                        .collect();
                    if let Some(first) = unanswered.first() {
                        if hold_noted.as_ref() != Some(&unanswered) {
                            let event = self.event(
                                change,
                                EventKind::RolloutDecision,
                                serde_json::json!({
                                    "decision": "hold",
                                    "metrics": unanswered,
                                    "reason": canary::failure_reason(&decision, first),
                                    "evidence": evidence,
                                }),
                            );
                            self.shared
                                .store
                                .append_event(&event)
                                .await
                                .map_err(|e| e.to_string())?;
                            hold_noted = Some(unanswered);
                        }
                        // Advisory: a person decides (`airlock rollout continue|abort`);
                        // until then the step never advances.
                        continue;
                    }
                    // A person let every advisory failure go: the other metrics decide.
                    decision
                        .metrics
                        .iter()
                        .filter(|m| m.trust != Trust::Shadow)
                        .filter(|m| !people.acknowledged.contains(&m.name))
                        .all(|m| m.verdict == MetricVerdict::Pass)
                }
                verdict => *verdict == JudgeVerdict::Pass,
            };
            if !people.acknowledged.is_empty() {
                evidence["continued_past"] = serde_json::json!(people.acknowledged);
            }
            let soaked = began.elapsed() >= config.soak;
            let paused = pause_of(&self.shared.store, &config.target)
                .await
                .map_err(|e| e.to_string())?
                .is_some();
            match self.runtime.guards.judge(&window_canary) {
                GuardVerdict::Unhealthy { reason } => {
                    return Ok(StepResult::Unhealthy(reason, evidence));
                }
                GuardVerdict::Healthy if soaked && !paused && judge_passes => {
                    return Ok(StepResult::Healthy(evidence));
                }
                _ if soaked && !waiting_noted => {
                    waiting_noted = true;
                    tracing::info!(change = %change.id, verdict = ?decision.verdict, "the step waits for evidence; thin traffic never rolls back");
                }
                _ => {}
            }
            // Soaked and still undecided: the step lacks data. With synthetic load
            // configured, airlock makes the traffic itself (never while paused: the
            // kill switch holds the step anyway).
            if soaked
                && !paused
                && synthetic.is_none()
                && let Some(load) = &config.judge.synthetic_load
            {
                let started = SyntheticLoad::start(load);
                tracing::info!(change = %change.id, percent, address = %load.address, rate = load.rate, "the step lacks data: synthetic load starts");
                self.shared
                    .store
                    .append_event(&self.event(
                        change,
                        EventKind::SyntheticLoad,
                        serde_json::json!({
                            "percent": percent,
                            "reason": format!("the {percent} % step still lacked data after its soak of {}", airlock_core::units::format_duration(config.soak)),
                            "address": load.address.to_string(),
                            "paths": load.paths,
                            "rate": load.rate,
                            "max_duration_s": load.max_duration.as_secs(),
                        }),
                    ))
                    .await
                    .map_err(|e| e.to_string())?;
                synthetic = Some(started);
            }
        }
    }

    /// The judge's recording of `change`'s rollout, when one was saved and still reads.
    fn load_recording(&self, change: &ChangeRecord) -> Option<airlock_judge::Recording> {
        let path = self.recording_path(change);
        let bytes = std::fs::read(&path).ok()?;
        match serde_json::from_slice(&bytes) {
            Ok(recording) => Some(recording),
            Err(error) => {
                tracing::warn!(change = %change.id, %error, "the judge's recording does not read; the judge starts afresh");
                None
            }
        }
    }

    fn recording_path(&self, change: &ChangeRecord) -> PathBuf {
        self.runtime
            .recordings_dir
            .join(format!("{}.json", change.id))
    }

    /// Writes the judge's recording of this rollout where `airlock canary replay` can
    /// read it, and returns its path and SHA-256 for the event that ends the rollout (so
    /// the audit log vouches for the file).
    fn save_recording(&self, change: &ChangeRecord, canary: &Canary) -> serde_json::Value {
        let path = self.recording_path(change);
        let bytes = match serde_json::to_vec_pretty(&canary.recording()) {
            Ok(bytes) => bytes,
            Err(error) => return serde_json::json!({ "error": error.to_string() }),
        };
        let written = std::fs::create_dir_all(&self.runtime.recordings_dir)
            .and_then(|()| std::fs::write(&path, &bytes));
        match written {
            Ok(()) => serde_json::json!({
                "path": path.display().to_string(),
                "sha256": hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes)),
            }),
            Err(error) => {
                tracing::warn!(change = %change.id, %error, "could not save the judge's recording");
                serde_json::json!({ "error": error.to_string() })
            }
        }
    }

    /// Ends a rollout that went wrong (or that a person, `by`, stopped): traffic back to
    /// stable at once, then the rollback.
    async fn abort_rollout(
        &self,
        change: &ChangeRecord,
        reason: String,
        evidence: serde_json::Value,
        by: Option<Actor>,
    ) -> Outcome {
        let token = self.token;
        let restored = blocking(self.runtime, move |provider| {
            provider.set_weights(token, Environment::Production, Weights::STABLE_ONLY)
        })
        .await;
        let event = self.event(
            change,
            EventKind::RollbackStarted,
            serde_json::json!({
                "reason": reason,
                "automatic": by.is_none(),
                "by": by.as_ref().map(|b| b.name.as_str()),
                "evidence": evidence,
                "traffic_on_stable": restored.is_ok(),
            }),
        );
        if let Err(error) = restored {
            tracing::error!(change = %change.id, %error, "could not move traffic back to stable");
        }
        let moved = self
            .shared
            .store
            .finish_deployment(
                &change.id,
                self.holder,
                ChangeState::Deploying,
                ChangeState::RollingBack,
                None,
                None,
                &event,
            )
            .await
            .map_err(|e| e.to_string())?;
        if !moved {
            return Ok(Stop::Interrupted);
        }
        self.record(
            change,
            DeploymentUpdate {
                rollback_reason: Some(reason),
                rollback_by: Some(by.unwrap_or_else(|| Actor::system("deployer"))),
                ..Default::default()
            },
            self.event(
                change,
                EventKind::RollbackStarted,
                serde_json::json!({ "phase": "reverting" }),
            ),
        )
        .await?;
        let deployment = self
            .shared
            .store
            .deployment(&change.id)
            .await
            .map_err(|e| e.to_string())?
            .ok_or("deployment record vanished")?;
        self.roll_back(change, &deployment).await
    }

    /// The rollback: a revert commit of the change on the target branch (never a reset
    /// or a force push), then the reverted version deployed as stable. A revert that
    /// conflicts with later changes stops here for a person.
    async fn roll_back(&self, change: &ChangeRecord, deployment: &DeploymentRecord) -> Outcome {
        let token = self.token;
        let reason = deployment
            .rollback_reason
            .clone()
            .unwrap_or_else(|| "rollback requested".to_owned());
        let Some(commit) = deployment.commit_id.clone() else {
            // Never landed: nothing to revert.
            let _ = blocking(self.runtime, move |provider| {
                provider.set_weights(token, Environment::Production, Weights::STABLE_ONLY)?;
                provider.stop(token, Environment::Production, Slot::Canary)?;
                provider.stop(token, Environment::Production, Slot::Baseline)
            })
            .await;
            let event = self.event(
                change,
                EventKind::RollbackCompleted,
                serde_json::json!({ "reason": reason, "revert_commit": null }),
            );
            return self
                .finish(
                    change,
                    ChangeState::RollingBack,
                    ChangeState::RolledBack,
                    None,
                    None,
                    event,
                )
                .await;
        };
        let commit: CommitId = commit.parse().map_err(|e| format!("{e}"))?;
        let revert = match &deployment.revert_commit {
            Some(revert) => revert.parse().map_err(|e| format!("{e}"))?,
            None => match self.push_revert(change, &commit, &reason).await? {
                Ok(revert) => revert,
                Err(conflict) => {
                    let summary = format!(
                        "the revert of {} conflicts with later changes on `{}` ({conflict}); the branch is untouched and a person must decide",
                        commit.as_str(),
                        self.runtime.config.branch
                    );
                    let verdict = Verdict::without_step(VerdictOutcome::Failed, summary.clone());
                    let event = self.event(
                        change,
                        EventKind::RollbackEscalated,
                        serde_json::json!({ "reason": reason, "commit": commit.as_str(), "paths": conflict.paths, "summary": summary }),
                    );
                    return self
                        .finish(
                            change,
                            ChangeState::RollingBack,
                            ChangeState::RollbackEscalated,
                            Some(&verdict),
                            None,
                            event,
                        )
                        .await;
                }
            },
        };
        let version = checkout(self.runtime, revert.as_str()).await?;
        blocking(self.runtime, move |provider| {
            provider.deploy(token, Environment::Production, Slot::Stable, &version)?;
            provider.set_weights(token, Environment::Production, Weights::STABLE_ONLY)?;
            provider.stop(token, Environment::Production, Slot::Canary)?;
            provider.stop(token, Environment::Production, Slot::Baseline)
        })
        .await
        .map_err(|e| format!("the reverted version could not be deployed as stable: {e}"))?;
        let stable = StableVersion {
            target: self.runtime.config.target.clone(),
            commit: revert.to_string(),
            change_id: None,
            updated_at_ms: now_ms(),
        };
        let verdict =
            Verdict::without_step(VerdictOutcome::Rejected, format!("rolled back: {reason}"));
        let event = self.event(
            change,
            EventKind::RollbackCompleted,
            serde_json::json!({ "reason": reason, "commit": commit.as_str(), "revert_commit": revert.as_str(), "branch": self.runtime.config.branch }),
        );
        let done = self
            .finish(
                change,
                ChangeState::RollingBack,
                ChangeState::RolledBack,
                Some(&verdict),
                Some(&stable),
                event,
            )
            .await;
        tracing::warn!(change = %change.id, revert = %revert, %reason, "rolled back");
        done
    }

    async fn push_revert(
        &self,
        change: &ChangeRecord,
        commit: &CommitId,
        reason: &str,
    ) -> Result<Result<CommitId, MergeConflict>, String> {
        let message = CommitMessage {
            subject: format!("Revert \"{}\"", change.title),
            body: format!(
                "This reverts commit {}.\n\nReason: {reason}",
                commit.as_str()
            ),
            trailers: vec![("Airlock-Rollback-Of".to_owned(), change.id.to_string())],
        };
        for _ in 0..PUSH_ATTEMPTS {
            let tip = fetch_tip(self.runtime).await?;
            let (reverted, onto, text) = (commit.clone(), tip.clone(), message.clone());
            let revert = match git(self.runtime, move |landing, _| {
                landing.revert(&reverted, &onto, &text)
            })
            .await?
            {
                Ok(revert) => revert,
                Err(conflict) => return Ok(Err(conflict)),
            };
            match push(self.runtime, &revert, &tip).await? {
                PushOutcome::Updated => {
                    self.record(
                        change,
                        DeploymentUpdate { revert_commit: Some(revert.to_string()), ..Default::default() },
                        self.event(change, EventKind::RollbackStarted, serde_json::json!({ "phase": "reverted", "revert_commit": revert.as_str() })),
                    )
                    .await?;
                    return Ok(Ok(revert));
                }
                PushOutcome::Rejected(why) => {
                    if fetch_tip(self.runtime).await? == tip {
                        return Err(format!(
                            "the target branch refused the revert commit: {why}"
                        ));
                    }
                }
            }
        }
        Err(format!(
            "the target branch kept moving: {PUSH_ATTEMPTS} revert pushes were overtaken"
        ))
    }
}

enum StepResult {
    Healthy(serde_json::Value),
    Unhealthy(String, serde_json::Value),
    /// A person stopped the rollout: the reason, who, the evidence at that moment.
    Aborted(String, Actor, serde_json::Value),
    Interrupted,
}

/// Builds the deploy runtime from `[deploy]`: the provider (fenced by the store), the
/// landing for commits, the metrics source and the guards.
pub(crate) async fn build<S: Store>(
    shared: &Arc<Shared<S>>,
    config: DeployConfig,
) -> Result<DeployRuntime, String> {
    use airlock_core::deploy::ProviderKind;
    let state = shared.options.state_dir.join("deploy");
    let fence: Arc<dyn Fence> = Arc::new(StoreFence {
        shared: Arc::downgrade(shared),
        runtime: tokio::runtime::Handle::current(),
    });
    let repo_root = &shared.options.repo_root;
    let process_options = || -> Result<airlock_rollout::ProcessOptions, String> {
        let start = config
            .start
            .clone()
            .ok_or("`deploy.start` is required by this provider")?;
        let mut options = airlock_rollout::ProcessOptions::new(start, state.join("logs"));
        options.build = config.build.clone();
        options.build_timeout = config.build_timeout;
        options.ready_timeout = config.ready_timeout;
        options.health_path = config.health_path.clone();
        Ok(options)
    };
    let router: Box<dyn airlock_rollout::Router> = match config.provider {
        ProviderKind::Command => {
            let command = config
                .command
                .as_ref()
                .ok_or("`[deploy.command]` is required by the command provider")?;
            let mut options =
                airlock_rollout::CommandOptions::new(repo_root.join(&command.program));
            options.timeout = command.timeout;
            let provider =
                airlock_rollout::CommandProvider::new(options, config.target.clone(), fence)
                    .map_err(|e| e.to_string())?;
            return finish_build(shared, config, Arc::new(provider), &state);
        }
        ProviderKind::Local => {
            let listen: std::net::SocketAddr = config
                .listen
                .parse()
                .map_err(|e| format!("`deploy.listen`: {e}"))?;
            Box::new(
                airlock_rollout::BuiltinProxy::start(
                    airlock_rollout::BuiltinProxyOptions {
                        production: listen,
                        ..Default::default()
                    },
                    &tokio::runtime::Handle::current(),
                )
                .map_err(|e| e.to_string())?,
            )
        }
        ProviderKind::Haproxy => {
            let haproxy = config
                .haproxy
                .as_ref()
                .ok_or("`[deploy.haproxy]` is required by the haproxy provider")?;
            let socket = match haproxy.socket.parse::<std::net::SocketAddr>() {
                Ok(addr) => airlock_rollout::HaproxySocket::Tcp(addr),
                Err(_) => airlock_rollout::HaproxySocket::Unix(repo_root.join(&haproxy.socket)),
            };
            let mut options = airlock_rollout::HaproxyOptions::new(socket);
            let mut production = airlock_rollout::HaproxyBackend::new(haproxy.backend.clone());
            production.url = haproxy.url.clone();
            options.production = Some(production);
            options.staging = haproxy.staging_backend.as_ref().map(|backend| {
                let mut staging = airlock_rollout::HaproxyBackend::new(backend.clone());
                staging.url = haproxy.staging_url.clone();
                staging
            });
            Box::new(airlock_rollout::Haproxy::new(options).map_err(|e| e.to_string())?)
        }
    };
    let runner =
        airlock_rollout::ServiceRunner::new(process_options()?).map_err(|e| e.to_string())?;
    let provider =
        airlock_rollout::ProcessProvider::new(config.target.clone(), fence, runner, router);
    finish_build(shared, config, Arc::new(provider), &state)
}

fn finish_build<S: Store>(
    shared: &Arc<Shared<S>>,
    config: DeployConfig,
    provider: Arc<dyn Provider>,
    state: &std::path::Path,
) -> Result<DeployRuntime, String> {
    let repo_root = &shared.options.repo_root;
    let prometheus = match &config.prometheus {
        None => None,
        Some(prometheus) => {
            let queries = airlock_rollout::PrometheusQueries {
                requests: prometheus.requests.clone(),
                errors: prometheus.errors.clone(),
                latency_p99: prometheus.latency_p99.clone(),
            };
            let mut source = PrometheusSource::new(prometheus.url.clone(), queries)
                .map_err(|e| e.to_string())?;
            source.timeout = prometheus.timeout;
            Some(source)
        }
    };
    let landing = Landing::new(&shared.repo, state.join("scratch")).map_err(|e| e.to_string())?;
    let remote = match &config.repository {
        None => Remote::This,
        Some(path)
            if std::path::Path::new(path).is_relative()
                && !path.contains("://")
                && !path.contains('@') =>
        {
            Remote::Other(repo_root.join(path).display().to_string())
        }
        Some(url) => Remote::Other(url.clone()),
    };
    let guards = Guards {
        max_error_rate: config.guards.max_error_rate,
        max_p99: config.guards.max_p99,
        min_requests: config.guards.min_requests,
    };
    Ok(DeployRuntime {
        versions_dir: state.join("versions"),
        config,
        provider,
        landing,
        remote,
        prometheus,
        recordings_dir: state.join("recordings"),
        guards,
        wake: Notify::new(),
    })
}
