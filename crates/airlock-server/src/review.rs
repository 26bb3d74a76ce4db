//! Level 2 as the service runs it: the policy stage a worker runs after Level 1, review
//! actions, break-glass, and the timer that keeps reviews from rotting (reminders,
//! escalation, expiry, overdue post-reviews). The rules themselves are pure functions in
//! `airlock_core::review`; this module gathers their inputs and records their results.

use std::sync::Arc;
use std::time::Duration;

use airlock_core::change::{ChangeState, StepRecord, Verdict, VerdictOutcome};
use airlock_core::event::{Actor, EventKind, NewEvent};
use airlock_core::review::{
    self, AgentFacts, Approval, ChangeFacts, FileFacts, FindingFacts, LineCounts, Obligations,
    PolicyInput, ReviewClock, ReviewVerdict, Reviewer, TimeFacts, TrackRecord,
};
use airlock_policy::{CodeOwners, Policy};
use airlock_store::{
    ChangeRecord, PolicyDecision, PostReviewOpen, ReviewAction, ReviewRecorded, SlaMark, Store,
    TokenRecord, Urgency,
};
use tokio::sync::Notify;

use crate::Shared;
use crate::api::file_hashes;

/// The policy the server evaluates, loaded once at start-up.
#[derive(Debug)]
pub struct LoadedPolicy {
    pub policy: Policy,
    pub sha256: String,
    /// Where it came from: the file, or "built-in default" when the file does not exist.
    pub source: String,
}

/// Loads `review.policy` (relative to the repository root). A missing file means the
/// built-in default policy; a file that does not compile stops the server.
pub fn load_policy(
    repo_root: &std::path::Path,
    config: &airlock_core::config::ReviewConfig,
) -> Result<LoadedPolicy, String> {
    let path = repo_root.join(&config.policy);
    let (name, text, source) = match std::fs::read_to_string(&path) {
        Ok(text) => (config.policy.clone(), text, path.display().to_string()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => (
            "default.rego".to_owned(),
            airlock_policy::DEFAULT_POLICY.to_owned(),
            "built-in default".to_owned(),
        ),
        Err(e) => {
            return Err(format!(
                "cannot read {} (`review.policy`): {e}",
                path.display()
            ));
        }
    };
    let policy = Policy::from_modules(&[(name.as_str(), text.as_str())])
        .map_err(|e| format!("{} (`review.policy`): {e}", path.display()))?;
    Ok(LoadedPolicy {
        sha256: policy.bundle_sha256().to_owned(),
        policy,
        source,
    })
}

/// The reviewer a token stands for.
pub(crate) fn reviewer_of(token: &TokenRecord) -> Reviewer {
    Reviewer {
        name: token.name.clone(),
        token_id: token.id.clone(),
        role: token.role,
        groups: token.groups.clone(),
    }
}

/// The owner of the agent that proposed a change, from its token.
pub(crate) async fn agent_owner<S: Store>(
    store: &S,
    change: &ChangeRecord,
) -> Result<Option<String>, airlock_store::StoreError> {
    let Some(token_id) = &change.agent.token_id else {
        return Ok(None);
    };
    Ok(store
        .list_tokens()
        .await?
        .into_iter()
        .find(|t| &t.id == token_id)
        .and_then(|t| t.owner))
}

/// CODEOWNERS of the base commit (the first of GitHub's three places that exists).
/// The change's own edits to CODEOWNERS do not decide its own review.
fn code_owners(repo: &airlock_git::Repo, base: &str) -> Result<Option<CodeOwners>, String> {
    let base: airlock_git::CommitId = base.parse().map_err(|e| format!("base commit: {e}"))?;
    let places = CodeOwners::locate();
    let found = repo
        .read_files(&base, places)
        .map_err(|e| format!("cannot read CODEOWNERS: {e}"))?;
    for (place, content) in places.iter().zip(found) {
        if let Some(bytes) = content {
            let text = String::from_utf8_lossy(&bytes);
            return CodeOwners::parse(&text)
                .map(Some)
                .map_err(|e| format!("{place} at the base commit: {e}"));
        }
    }
    Ok(None)
}

/// What the policy is told about a change beside its checks' findings: known as soon
/// as the change is, so it is looked up while the checks run (see [`Facts::prefetch`]).
pub(crate) struct Facts {
    owners: Option<CodeOwners>,
    agent_owner: Option<String>,
    track_record: TrackRecord,
}

impl Facts {
    /// Looks the facts up, the three lookups side by side.
    pub(crate) async fn gather<S: Store>(
        shared: &Arc<Shared<S>>,
        change: &ChangeRecord,
    ) -> Result<Facts, String> {
        let owners = {
            let shared = shared.clone();
            let base = change.base_commit.clone();
            async move {
                tokio::task::spawn_blocking(move || code_owners(&shared.repo, &base))
                    .await
                    .map_err(|e| e.to_string())?
            }
        };
        let (owners, agent_owner, track_record) = tokio::join!(
            owners,
            agent_owner(&shared.store, change),
            shared.store.track_record(&change.agent.name)
        );
        Ok(Facts {
            owners: owners?,
            agent_owner: agent_owner.map_err(|e| e.to_string())?,
            track_record: track_record.map_err(|e| e.to_string())?,
        })
    }

    /// Starts [`Facts::gather`] in the background; the answer waits in the handle.
    pub(crate) fn prefetch<S: Store>(
        shared: &Arc<Shared<S>>,
        change: &ChangeRecord,
    ) -> tokio::task::JoinHandle<Result<Facts, String>> {
        let (shared, change) = (shared.clone(), change.clone());
        tokio::spawn(async move { Facts::gather(&shared, &change).await })
    }

    /// The facts from a [`Facts::prefetch`] when there is one, else looked up now.
    pub(crate) async fn get<S: Store>(
        shared: &Arc<Shared<S>>,
        change: &ChangeRecord,
        prefetched: Option<tokio::task::JoinHandle<Result<Facts, String>>>,
    ) -> Result<Facts, String> {
        match prefetched {
            Some(handle) => handle.await.map_err(|e| e.to_string())?,
            None => Facts::gather(shared, change).await,
        }
    }
}

/// What the policy is told about a change.
fn policy_input<S: Store>(
    shared: &Shared<S>,
    change: &ChangeRecord,
    steps: &[StepRecord],
    facts: Facts,
) -> PolicyInput {
    let Facts {
        owners,
        agent_owner: owner,
        track_record,
    } = facts;
    let owners_of = |path: &str| -> Vec<String> {
        owners
            .as_ref()
            .map(|o| o.owners_of(path).to_vec())
            .unwrap_or_default()
    };
    let mut paths = Vec::new();
    let mut files = Vec::new();
    let mut all_owners = std::collections::BTreeSet::new();
    for file in &change.files {
        let path = file.path().to_owned();
        let mut file_owners = owners_of(&path);
        if let Some(old) = file.old_path.as_deref().filter(|old| *old != path) {
            paths.push(old.to_owned());
            for owner in owners_of(old) {
                if !file_owners.contains(&owner) {
                    file_owners.push(owner);
                }
            }
        }
        paths.push(path.clone());
        all_owners.extend(file_owners.iter().cloned());
        files.push(FileFacts {
            path,
            old_path: file.old_path.clone().filter(|old| *old != file.path()),
            op: file.op,
            lines_added: file.lines_added,
            lines_deleted: file.lines_removed,
            owners: file_owners,
        });
    }
    let findings: Vec<airlock_scan::Finding> = steps
        .iter()
        .flat_map(|step| step.findings.iter().cloned())
        .collect();
    let gate_files = paths
        .iter()
        .filter(|p| review::is_gate_file(p))
        .cloned()
        .collect();
    PolicyInput {
        change: ChangeFacts {
            id: change.id.to_string(),
            title: change.title.clone(),
            revision: change.revision,
            target_branch: change.target_branch.clone(),
            urgent: change.urgency.is_some(),
        },
        paths,
        files,
        lines: LineCounts {
            added: change.lines_added.max(0) as usize,
            deleted: change.lines_removed.max(0) as usize,
        },
        findings: FindingFacts::from_findings(&findings),
        agent: AgentFacts {
            name: change.agent.name.clone(),
            kind: match change.agent.kind {
                airlock_core::event::ActorKind::Agent => "agent",
                _ => "human",
            }
            .to_owned(),
            owner,
            track_record,
        },
        owners: all_owners.into_iter().collect(),
        gate_files,
        time: TimeFacts::at(shared.clock.now_ms()),
    }
}

/// Evaluates the policy for a change, within the configured time limit.
pub(crate) async fn evaluate<S: Store>(
    shared: &Arc<Shared<S>>,
    change: &ChangeRecord,
    steps: &[StepRecord],
    facts: Result<Facts, String>,
) -> Result<Obligations, String> {
    let input = policy_input(shared, change, steps, facts?);
    let evaluating = shared.clone();
    tokio::task::spawn_blocking(move || {
        evaluating
            .policy
            .policy
            .evaluate(&input, evaluating.config.review.policy_timeout)
            .map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| e.to_string())?
}

fn change_event(
    change: &ChangeRecord,
    at_ms: i64,
    actor: Actor,
    kind: EventKind,
    mut data: serde_json::Value,
) -> NewEvent {
    data["revision"] = change.revision.into();
    data["files"] = file_hashes(&change.files);
    NewEvent {
        change_id: Some(change.id.clone()),
        at_ms,
        actor,
        kind,
        data,
    }
}

/// The policy stage, resumed on a change left in `checks_passed` (leased to `worker`):
/// Level 1 usually writes the policy's decision with its verdict (see [`decision`]).
pub(crate) async fn decide<S: Store>(
    shared: &Arc<Shared<S>>,
    worker: &str,
    change: &ChangeRecord,
) -> Result<(), String> {
    let steps = shared
        .store
        .steps(&change.id, change.revision)
        .await
        .map_err(|e| e.to_string())?;
    let facts = Facts::gather(shared, change).await;
    let (decision, events) = decision(shared, change, &steps, facts).await;
    let settled = shared
        .store
        .settle_policy(&change.id, worker, change.revision, &decision, &events)
        .await
        .map_err(|e| e.to_string())?;
    shared.progress.send_modify(|n| *n += 1);
    if settled {
        tracing::info!(change = %change.id, state = %decision.to, "policy decided");
    }
    Ok(())
}

/// The policy stage's decision for a revision whose checks (`steps`) passed, with its
/// events: the change goes on awaiting review, approved (by rule or break-glass),
/// rejected (denied), or failed (the policy could not be evaluated: fail closed).
pub(crate) async fn decision<S: Store>(
    shared: &Arc<Shared<S>>,
    change: &ChangeRecord,
    steps: &[StepRecord],
    facts: Result<Facts, String>,
) -> (PolicyDecision, Vec<NewEvent>) {
    let now = shared.clock.now_ms();
    let sha = shared.policy.sha256.clone();
    let system = Actor::system("policy");
    match evaluate(shared, change, steps, facts).await {
        Err(reason) => {
            let summary = format!(
                "the review policy could not be evaluated, so the change is not approved: {reason}"
            );
            let event = change_event(
                change,
                now,
                system,
                EventKind::PolicyFailed,
                serde_json::json!({ "summary": summary, "policy_sha256": sha }),
            );
            (
                PolicyDecision {
                    to: ChangeState::Failed,
                    verdict: Some(Verdict::without_step(VerdictOutcome::Failed, summary)),
                    obligations: None,
                    policy_sha256: sha,
                    review: None,
                    post_review: None,
                },
                vec![event],
            )
        }
        Ok(obligations) if !obligations.deny.is_empty() => {
            let summary = format!(
                "denied by the review policy: {}",
                obligations.deny.join("; ")
            );
            let event = change_event(
                change,
                now,
                system,
                EventKind::PolicyDenied,
                serde_json::json!({ "summary": summary, "deny": obligations.deny, "risk": obligations.risk, "policy_sha256": sha }),
            );
            (
                PolicyDecision {
                    to: ChangeState::Rejected,
                    verdict: Some(Verdict::without_step(VerdictOutcome::Rejected, summary)),
                    obligations: Some(obligations),
                    policy_sha256: sha,
                    review: None,
                    post_review: None,
                },
                vec![event],
            )
        }
        Ok(obligations) => {
            if let Some(urgency) = &change.urgency {
                break_glass_approval(shared, change, obligations, sha, urgency, now)
            } else if obligations.approved_by_rule() {
                let event = change_event(
                    change,
                    now,
                    system,
                    EventKind::ChangeApproved,
                    serde_json::json!({
                        "method": "rule",
                        "summary": format!("approved by the review policy (risk {})", obligations.risk),
                        "risk": obligations.risk,
                        "obligations": obligations,
                        "policy_sha256": sha,
                    }),
                );
                (
                    PolicyDecision {
                        to: ChangeState::Approved,
                        verdict: None,
                        obligations: Some(obligations),
                        policy_sha256: sha,
                        review: None,
                        post_review: None,
                    },
                    vec![event],
                )
            } else {
                let sla = shared.config.review.sla_for(obligations.risk);
                let clock = ReviewClock::start(now, sla, shared.config.review.expire_after);
                let assessment = review::assess(&obligations, &[]);
                let event = change_event(
                    change,
                    now,
                    system,
                    EventKind::ReviewRequested,
                    serde_json::json!({
                        "summary": format!("{} (risk {}): needs {}", change.title, obligations.risk, assessment.missing.join(", ")),
                        "risk": obligations.risk,
                        "obligations": obligations,
                        "missing": assessment.missing,
                        "policy_sha256": sha,
                        "clock": clock,
                    }),
                );
                (
                    PolicyDecision {
                        to: ChangeState::AwaitingReview,
                        verdict: None,
                        obligations: Some(obligations),
                        policy_sha256: sha,
                        review: Some(clock),
                        post_review: None,
                    },
                    vec![event],
                )
            }
        }
    }
}

/// The decision for an urgent change whose checks passed: approved by break-glass, with
/// a post-deployment review due.
fn break_glass_approval(
    shared: &Shared<impl Store>,
    change: &ChangeRecord,
    obligations: Obligations,
    sha: String,
    urgency: &Urgency,
    now: i64,
) -> (PolicyDecision, Vec<NewEvent>) {
    let post = post_review_for(shared, urgency, now);
    let events = vec![
        change_event(
            change,
            now,
            urgency.by.clone(),
            EventKind::ChangeApproved,
            serde_json::json!({
                "method": "break_glass",
                "reason": urgency.reason,
                "summary": format!("approved by break-glass ({}): {}", urgency.by.name, urgency.reason),
                "risk": obligations.risk,
                "obligations": obligations,
                "policy_sha256": sha,
            }),
        ),
        post_review_event(change, &post),
    ];
    (
        PolicyDecision {
            to: ChangeState::Approved,
            verdict: None,
            obligations: Some(obligations),
            policy_sha256: sha,
            review: None,
            post_review: Some(post),
        },
        events,
    )
}

fn post_review_for(shared: &Shared<impl Store>, urgency: &Urgency, now: i64) -> PostReviewOpen {
    let sla = i64::try_from(shared.config.review.post_review_sla.as_millis()).unwrap_or(i64::MAX);
    PostReviewOpen {
        reason: urgency.reason.clone(),
        opened_by: urgency.by.clone(),
        opened_at_ms: now,
        due_at_ms: now.saturating_add(sla),
    }
}

fn post_review_event(change: &ChangeRecord, post: &PostReviewOpen) -> NewEvent {
    change_event(
        change,
        post.opened_at_ms,
        Actor::system("review"),
        EventKind::PostReviewOpened,
        serde_json::json!({
            "summary": format!("post-deployment review of a break-glass change due by {}", airlock_core::units::rfc3339_utc(post.due_at_ms)),
            "reason": post.reason,
            "due_at_ms": post.due_at_ms,
        }),
    )
}

/// Why a review or break-glass request was refused; the API maps each to a status.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReviewError {
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Internal(String),
}

impl From<airlock_store::StoreError> for ReviewError {
    fn from(error: airlock_store::StoreError) -> ReviewError {
        ReviewError::Internal(error.to_string())
    }
}

/// What a review did, for the caller.
#[derive(Debug, serde::Serialize)]
pub(crate) struct ReviewOutcome {
    pub state: ChangeState,
    pub revision: i64,
    pub approvers: Vec<String>,
    pub missing: Vec<String>,
    /// The review closed the post-deployment review of a break-glass change.
    pub post_review_completed: bool,
}

/// Records a reviewer's verdict on the current revision, enforcing separation of duties
/// and counting approvals against the obligations. Retries when another review lands
/// between reading and writing.
pub(crate) async fn review<S: Store>(
    shared: &Arc<Shared<S>>,
    token: &TokenRecord,
    id: &airlock_core::ids::ChangeId,
    verdict: ReviewVerdict,
    comment: &str,
) -> Result<ReviewOutcome, ReviewError> {
    let reviewer = reviewer_of(token);
    let actor = crate::api::actor_of(token);
    for _ in 0..8 {
        let change = current_change(&shared.store, id).await?;
        let owner = agent_owner(&shared.store, &change).await?;
        review::may_review(&reviewer, &change.agent, owner.as_deref())
            .map_err(|refusal| ReviewError::Forbidden(refusal.to_string()))?;

        // An approval of an approved break-glass change is its post-deployment review.
        if let Some(urgency) = change
            .urgency
            .as_ref()
            .filter(|_| change.state == ChangeState::Approved && verdict == ReviewVerdict::Approve)
        {
            if urgency.by.name == reviewer.name {
                return Err(ReviewError::Forbidden(format!(
                    "`{}` broke the glass for this change and may not review it afterwards",
                    reviewer.name
                )));
            }
            let now = shared.clock.now_ms();
            let event = change_event(
                &change,
                now,
                actor.clone(),
                EventKind::PostReviewCompleted,
                serde_json::json!({ "summary": format!("post-deployment review by {}", reviewer.name), "comment": comment }),
            );
            if shared
                .store
                .complete_post_review(id, &actor, comment, &event)
                .await?
            {
                return Ok(ReviewOutcome {
                    state: change.state,
                    revision: change.revision,
                    approvers: vec![reviewer.name],
                    missing: Vec::new(),
                    post_review_completed: true,
                });
            }
            return Err(ReviewError::Conflict(format!(
                "`{id}` is approved and its post-deployment review is already complete"
            )));
        }

        let from = change.state;
        let allowed = match verdict {
            ReviewVerdict::Reject => matches!(
                from,
                ChangeState::AwaitingReview | ChangeState::ChangesRequested
            ),
            _ => from == ChangeState::AwaitingReview,
        };
        if !allowed {
            return Err(ReviewError::Conflict(format!(
                "`{id}` is {from}; a review can {} only a change awaiting review",
                verdict.as_str().replace('_', " ")
            )));
        }
        let obligations = change.obligations.clone().ok_or_else(|| {
            ReviewError::Internal(format!("change {id} awaits review without obligations"))
        })?;
        let mut approvals = current_approvals(&shared.store, &change).await?;
        let seen = approvals.len();
        if verdict == ReviewVerdict::Approve
            && approvals.iter().any(|a| a.reviewer.name == reviewer.name)
        {
            return Err(ReviewError::Conflict(
                review::Refusal::AlreadyApproved(reviewer.name.clone(), change.revision)
                    .to_string(),
            ));
        }
        let now = shared.clock.now_ms();
        let action = ReviewAction {
            revision: change.revision,
            verdict,
            reviewer: reviewer.clone(),
            comment: comment.to_owned(),
            at_ms: now,
        };
        let kind = match verdict {
            ReviewVerdict::Approve => EventKind::ReviewApproved,
            ReviewVerdict::Reject => EventKind::ReviewRejected,
            ReviewVerdict::RequestChanges => EventKind::ReviewChangesRequested,
        };
        if verdict == ReviewVerdict::Approve {
            approvals.push(Approval {
                reviewer: reviewer.clone(),
                comment: comment.to_owned(),
                at_ms: now,
            });
        }
        let assessment = review::assess(&obligations, &approvals);
        let mut events = vec![change_event(
            &change,
            now,
            actor.clone(),
            kind,
            serde_json::json!({
                "summary": format!("{} by {}: {}", verdict.as_str().replace('_', " "), reviewer.name, comment),
                "comment": comment,
                "reviewer": reviewer,
                "approvers": assessment.approvers,
                "missing": assessment.missing,
            }),
        )];
        let reject_verdict;
        let to = match verdict {
            ReviewVerdict::Approve if assessment.satisfied => {
                events.push(change_event(
                    &change,
                    now,
                    actor.clone(),
                    EventKind::ChangeApproved,
                    serde_json::json!({
                        "method": "human",
                        "summary": format!("approved by {}", assessment.approvers.join(", ")),
                        "approvers": assessment.approvers,
                        "risk": obligations.risk,
                        "obligations": obligations,
                        "policy_sha256": change.policy_sha256,
                    }),
                ));
                Some((ChangeState::Approved, None))
            }
            ReviewVerdict::Approve => None,
            ReviewVerdict::Reject => {
                reject_verdict = Verdict::without_step(
                    VerdictOutcome::Rejected,
                    format!("rejected in review by {}: {comment}", reviewer.name),
                );
                Some((ChangeState::Rejected, Some(&reject_verdict)))
            }
            ReviewVerdict::RequestChanges => Some((ChangeState::ChangesRequested, None)),
        };
        let next_state = to.map_or(from, |(state, _)| state);
        match shared
            .store
            .record_review(id, from, seen, &action, to, &events)
            .await?
        {
            ReviewRecorded::Recorded => {
                shared.progress.send_modify(|n| *n += 1);
                return Ok(ReviewOutcome {
                    state: next_state,
                    revision: change.revision,
                    approvers: assessment.approvers,
                    missing: if assessment.satisfied {
                        Vec::new()
                    } else {
                        assessment.missing
                    },
                    post_review_completed: false,
                });
            }
            ReviewRecorded::Duplicate => {
                return Err(ReviewError::Conflict(
                    review::Refusal::AlreadyApproved(reviewer.name.clone(), change.revision)
                        .to_string(),
                ));
            }
            ReviewRecorded::Stale => continue,
        }
    }
    Err(ReviewError::Conflict(format!(
        "`{id}` kept changing while the review was recorded; try again"
    )))
}

/// Break-glass on an existing change: marks it urgent; a change awaiting review (or
/// with changes requested) is approved at once and its post-deployment review opens; a
/// change still in Level 1 is approved by break-glass as soon as its checks pass.
pub(crate) async fn break_glass<S: Store>(
    shared: &Arc<Shared<S>>,
    token: &TokenRecord,
    id: &airlock_core::ids::ChangeId,
    reason: &str,
) -> Result<ChangeState, ReviewError> {
    let actor = crate::api::actor_of(token);
    for _ in 0..8 {
        let change = current_change(&shared.store, id).await?;
        if change.urgency.is_some() {
            return Err(ReviewError::Conflict(format!(
                "`{id}` is already marked urgent"
            )));
        }
        if change.state.is_final() || change.state == ChangeState::Approved {
            return Err(ReviewError::Conflict(format!(
                "`{id}` is {}; break-glass applies to a change not yet approved, rejected, expired or failed",
                change.state
            )));
        }
        let now = shared.clock.now_ms();
        let urgency = Urgency {
            reason: reason.to_owned(),
            by: actor.clone(),
            at_ms: now,
        };
        let mut events = vec![change_event(
            &change,
            now,
            actor.clone(),
            EventKind::BreakGlass,
            serde_json::json!({
                "summary": format!("break-glass by {}: {reason}", actor.name),
                "reason": reason,
                "state": change.state,
            }),
        )];
        let skips_review = matches!(
            change.state,
            ChangeState::AwaitingReview | ChangeState::ChangesRequested
        );
        let (to, post) = if skips_review {
            let post = post_review_for(shared, &urgency, now);
            events.push(change_event(
                &change,
                now,
                actor.clone(),
                EventKind::ChangeApproved,
                serde_json::json!({
                    "method": "break_glass",
                    "reason": reason,
                    "summary": format!("approved by break-glass ({}): {reason}", actor.name),
                    "policy_sha256": change.policy_sha256,
                }),
            ));
            events.push(post_review_event(&change, &post));
            (Some(ChangeState::Approved), Some(post))
        } else {
            (None, None)
        };
        // ChangesRequested → Approved is not a review transition; break-glass goes
        // through awaiting_review's edge only.
        let from = change.state;
        let to = to.filter(|_| from.can_become(ChangeState::Approved));
        if skips_review && to.is_none() {
            return Err(ReviewError::Conflict(format!(
                "`{id}` has changes requested; send a new revision or break the glass on it once it is awaiting review"
            )));
        }
        if shared
            .store
            .break_glass(id, from, &urgency, to, post.as_ref(), &events)
            .await?
        {
            shared.progress.send_modify(|n| *n += 1);
            return Ok(to.unwrap_or(from));
        }
    }
    Err(ReviewError::Conflict(format!(
        "`{id}` kept changing; try again"
    )))
}

/// How often the review timer looks at deadlines.
const TIMER_PERIOD: Duration = Duration::from_millis(500);

/// Keeps reviews from rotting: reminders at half the SLA, escalation at the SLA,
/// expiry when configured, and alerts for overdue post-deployment reviews. Each is an
/// event (the notification sinks carry it to people), recorded once.
pub(crate) async fn watch<S: Store>(shared: Arc<Shared<S>>, stop: Arc<Notify>) {
    loop {
        if let Err(error) = check_deadlines(&shared).await {
            tracing::warn!(%error, "review deadlines could not be checked; retrying");
        }
        tokio::select! {
            _ = stop.notified() => return,
            _ = tokio::time::sleep(TIMER_PERIOD) => {}
        }
    }
}

/// One pass of the review timer at the clock's current time.
pub(crate) async fn check_deadlines<S: Store>(shared: &Arc<Shared<S>>) -> Result<(), String> {
    let now = shared.clock.now_ms();
    let store = &shared.store;
    let system = Actor::system("review-timer");
    let mut moved = false;
    for open in store.open_reviews().await.map_err(|e| e.to_string())? {
        let Some(change) = store
            .change(&open.change_id)
            .await
            .map_err(|e| e.to_string())?
        else {
            continue;
        };
        let approvals = current_approvals(store, &change)
            .await
            .map_err(|e| e.to_string())?;
        let missing = change
            .obligations
            .as_ref()
            .map(|o| review::assess(o, &approvals).missing)
            .unwrap_or_default();
        let waited = airlock_core::units::format_duration(Duration::from_millis(
            (now - open.clock.requested_at_ms).max(0) as u64,
        ));
        let mut marks = Vec::new();
        if open.clock.expire_at_ms.is_some_and(|at| now >= at) {
            let summary = format!("review expired after {waited} without a decision");
            marks.push((
                SlaMark::Expiry(Verdict::without_step(
                    VerdictOutcome::Rejected,
                    summary.clone(),
                )),
                EventKind::ReviewExpired,
                summary,
            ));
        } else {
            if !open.reminded && now >= open.clock.remind_at_ms {
                marks.push((
                    SlaMark::Reminder,
                    EventKind::ReviewReminder,
                    format!(
                        "{}: waiting for review for {waited}, half of its SLA",
                        change.title
                    ),
                ));
            }
            if !open.escalated && now >= open.clock.escalate_at_ms {
                marks.push((
                    SlaMark::Escalation,
                    EventKind::ReviewEscalated,
                    format!("{}: review SLA breached after {waited}", change.title),
                ));
            }
        }
        for (mark, kind, summary) in marks {
            let event = change_event(
                &change,
                now,
                system.clone(),
                kind,
                serde_json::json!({
                    "summary": summary,
                    "requested_at_ms": open.clock.requested_at_ms,
                    "missing": missing,
                }),
            );
            moved |= store
                .mark_review_deadline(&open.change_id, open.revision, &mark, &event)
                .await
                .map_err(|e| e.to_string())?;
        }
    }
    for post in store.post_reviews().await.map_err(|e| e.to_string())? {
        if post.completed_at_ms.is_some() || post.overdue_at_ms.is_some() || now < post.due_at_ms {
            continue;
        }
        let event = NewEvent {
            change_id: Some(post.change_id.clone()),
            at_ms: now,
            actor: system.clone(),
            kind: EventKind::PostReviewOverdue,
            data: serde_json::json!({
                "summary": format!("the post-deployment review of a break-glass change is overdue (due {})", airlock_core::units::rfc3339_utc(post.due_at_ms)),
                "reason": post.reason,
                "due_at_ms": post.due_at_ms,
            }),
        };
        moved |= store
            .mark_post_review_overdue(&post.change_id, &event)
            .await
            .map_err(|e| e.to_string())?;
    }
    if moved {
        shared.progress.send_modify(|n| *n += 1);
    }
    Ok(())
}

/// The review status of a change for the API: obligations and how far approvals go;
/// `None` before the policy decided.
pub(crate) async fn status<S: Store>(
    shared: &Shared<S>,
    change: &ChangeRecord,
) -> Result<Option<serde_json::Value>, airlock_store::StoreError> {
    if change.obligations.is_none() {
        return Ok(None);
    }
    let actions = shared.store.review_actions(&change.id).await?;
    Ok(status_from_actions(change, actions))
}

/// [`status`] from the change's review actions, already read.
pub(crate) fn status_from_actions(
    change: &ChangeRecord,
    actions: Vec<airlock_store::ReviewAction>,
) -> Option<serde_json::Value> {
    let obligations = change.obligations.as_ref()?;
    let approvals = approvals_of_revision(change, &actions);
    let assessment = review::assess(obligations, &approvals);
    Some(serde_json::json!({
        "obligations": obligations,
        "policy_sha256": change.policy_sha256,
        "approvers": assessment.approvers,
        "missing": assessment.missing,
        "satisfied": assessment.satisfied,
        "actions": actions,
    }))
}

async fn current_change<S: Store>(
    store: &S,
    id: &airlock_core::ids::ChangeId,
) -> Result<ChangeRecord, ReviewError> {
    store
        .change(id)
        .await?
        .ok_or_else(|| ReviewError::Conflict(format!("no change `{id}`")))
}

/// The approvals of the change's current revision.
async fn current_approvals<S: Store>(
    store: &S,
    change: &ChangeRecord,
) -> Result<Vec<Approval>, airlock_store::StoreError> {
    let actions = store.review_actions(&change.id).await?;
    Ok(approvals_of_revision(change, &actions))
}

/// The approvals among `actions` that count for the change's current revision.
fn approvals_of_revision(
    change: &ChangeRecord,
    actions: &[airlock_store::ReviewAction],
) -> Vec<Approval> {
    actions
        .iter()
        .filter(|a| a.revision == change.revision && a.verdict == ReviewVerdict::Approve)
        .map(|a| Approval {
            reviewer: a.reviewer.clone(),
            comment: a.comment.clone(),
            at_ms: a.at_ms,
        })
        .collect()
}
