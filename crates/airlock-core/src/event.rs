//! Events: the append-only record of everything that happened to a change. Each state
//! transition produces exactly one event, written in the same transaction as the state.

use serde::{Deserialize, Serialize};

use crate::ids::{ChangeId, TokenId};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActorKind {
    /// An AI agent, identified by its token.
    Agent,
    /// A person, identified by their token or, for local commands, by the operating system user.
    Human,
    /// airlock itself (workers, timers).
    System,
}

/// Who did something. Always derived from a credential or from airlock itself, never
/// from what a request claims about itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    pub kind: ActorKind,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_id: Option<TokenId>,
}

impl Actor {
    pub fn system(component: &str) -> Actor {
        Actor {
            kind: ActorKind::System,
            name: component.to_owned(),
            token_id: None,
        }
    }
}

/// The kinds of event. The strings are stable: the audit log and its readers rely on them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventKind {
    #[serde(rename = "change.proposed")]
    ChangeProposed,
    #[serde(rename = "checks.started")]
    ChecksStarted,
    #[serde(rename = "checks.resumed")]
    ChecksResumed,
    #[serde(rename = "checks.step_finished")]
    CheckStepFinished,
    #[serde(rename = "checks.passed")]
    ChecksPassed,
    #[serde(rename = "checks.rejected")]
    ChecksRejected,
    #[serde(rename = "checks.failed")]
    ChecksFailed,
    #[serde(rename = "token.created")]
    TokenCreated,
    #[serde(rename = "token.revoked")]
    TokenRevoked,
    /// The server started with this configuration (its hash): configuration changes show
    /// up in the audit log as a new hash.
    #[serde(rename = "config.loaded")]
    ConfigLoaded,
    /// The policy asked for human review: its obligations, its hash and the review's deadlines.
    #[serde(rename = "review.requested")]
    ReviewRequested,
    /// One human approved a revision (not yet necessarily enough).
    #[serde(rename = "review.approved")]
    ReviewApproved,
    #[serde(rename = "review.rejected")]
    ReviewRejected,
    #[serde(rename = "review.changes_requested")]
    ReviewChangesRequested,
    /// Half the review SLA has passed.
    #[serde(rename = "review.reminder")]
    ReviewReminder,
    /// The review SLA was breached.
    #[serde(rename = "review.escalated")]
    ReviewEscalated,
    /// The review stayed open past its expiry: the change is rejected as expired.
    #[serde(rename = "review.expired")]
    ReviewExpired,
    /// The change met its obligations (by rule, by humans, or by break-glass).
    #[serde(rename = "change.approved")]
    ChangeApproved,
    /// The agent sent a new revision: earlier approvals no longer count, Level 1 runs again.
    #[serde(rename = "change.revised")]
    ChangeRevised,
    /// The policy denied the change.
    #[serde(rename = "policy.denied")]
    PolicyDenied,
    /// The policy could not be evaluated (error, timeout, invalid answer): the change fails closed.
    #[serde(rename = "policy.failed")]
    PolicyFailed,
    /// An operator or admin marked the change urgent: review is skipped, a post-deployment review opens.
    #[serde(rename = "change.break_glass")]
    BreakGlass,
    #[serde(rename = "post_review.opened")]
    PostReviewOpened,
    #[serde(rename = "post_review.completed")]
    PostReviewCompleted,
    #[serde(rename = "post_review.overdue")]
    PostReviewOverdue,
    /// The kill switch (or one target's pause, when `data.target` names it): no new
    /// deployment starts there until resumed.
    #[serde(rename = "deploy.paused")]
    DeploymentsPaused,
    #[serde(rename = "deploy.resumed")]
    DeploymentsResumed,
    /// A target's stable version was started (at start-up: the recorded stable version,
    /// or the first time, the tip of the target branch).
    #[serde(rename = "deploy.stable_started")]
    StableStarted,
    /// The candidate is being deployed to staging for its integration tests.
    #[serde(rename = "staging.started")]
    StagingStarted,
    /// The integration tests passed against staging (result and output excerpt).
    #[serde(rename = "staging.passed")]
    StagingPassed,
    /// The integration tests failed, or staging could not be deployed.
    #[serde(rename = "staging.failed")]
    StagingFailed,
    /// The change joined its target's serial deployment queue.
    #[serde(rename = "deploy.queued")]
    DeployQueued,
    /// The change holds its target's deploy lease (with its fencing token).
    #[serde(rename = "deploy.started")]
    DeployStarted,
    /// The target branch had moved: the change was re-applied on its tip and Level 1 ran again.
    #[serde(rename = "deploy.rebased")]
    DeployRebased,
    /// The change no longer applies to the target branch: back to the agent.
    #[serde(rename = "deploy.conflict")]
    DeployConflict,
    /// The change's commit landed on the target branch.
    #[serde(rename = "deploy.committed")]
    DeployCommitted,
    /// The deployment could not proceed (provider, build or push error).
    #[serde(rename = "deploy.failed")]
    DeployFailed,
    /// Traffic was set for a canary step and read back.
    #[serde(rename = "rollout.step")]
    RolloutStep,
    /// The health verdict of a step, with its evidence.
    #[serde(rename = "rollout.decision")]
    RolloutDecision,
    /// A person let a rollout the judge held (an advisory failure) go on: the metrics
    /// it held on no longer stop it; the guards and enforcing metrics still do.
    #[serde(rename = "rollout.continued")]
    RolloutContinued,
    /// A person stopped a rollout under way: traffic back to stable, then the rollback.
    #[serde(rename = "rollout.aborted")]
    RolloutAborted,
    /// A step still lacked data after its soak: airlock sent configured requests
    /// (`[deploy.judge.synthetic_load]`) to production until the step was decided.
    #[serde(rename = "rollout.synthetic_load")]
    SyntheticLoad,
    /// The change serves 100 % of traffic and is the stable version.
    #[serde(rename = "rollout.completed")]
    RolloutCompleted,
    /// Traffic is going back to the stable version (automatic or manual).
    #[serde(rename = "rollback.started")]
    RollbackStarted,
    /// The revert commit landed and the stable version was redeployed.
    #[serde(rename = "rollback.completed")]
    RollbackCompleted,
    /// The revert conflicts with later changes: a human must decide; the branch is untouched.
    #[serde(rename = "rollback.escalated")]
    RollbackEscalated,
    /// After the rollout, production regressed against the pre-deployment baseline.
    #[serde(rename = "watch.regression")]
    WatchRegression,
    /// The watch period ended without a regression.
    #[serde(rename = "watch.completed")]
    WatchCompleted,
    /// Changes that each passed alone have together degraded the target beyond its
    /// budget; deployments are paused.
    #[serde(rename = "drift.exceeded")]
    DriftExceeded,
    /// Kept audit payloads were deleted (retention, or a change's on request); the
    /// entries that commit to them stay.
    #[serde(rename = "audit.purged")]
    AuditPurged,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::ChangeProposed => "change.proposed",
            EventKind::ChecksStarted => "checks.started",
            EventKind::ChecksResumed => "checks.resumed",
            EventKind::CheckStepFinished => "checks.step_finished",
            EventKind::ChecksPassed => "checks.passed",
            EventKind::ChecksRejected => "checks.rejected",
            EventKind::ChecksFailed => "checks.failed",
            EventKind::TokenCreated => "token.created",
            EventKind::TokenRevoked => "token.revoked",
            EventKind::ConfigLoaded => "config.loaded",
            EventKind::ReviewRequested => "review.requested",
            EventKind::ReviewApproved => "review.approved",
            EventKind::ReviewRejected => "review.rejected",
            EventKind::ReviewChangesRequested => "review.changes_requested",
            EventKind::ReviewReminder => "review.reminder",
            EventKind::ReviewEscalated => "review.escalated",
            EventKind::ReviewExpired => "review.expired",
            EventKind::ChangeApproved => "change.approved",
            EventKind::ChangeRevised => "change.revised",
            EventKind::PolicyDenied => "policy.denied",
            EventKind::PolicyFailed => "policy.failed",
            EventKind::BreakGlass => "change.break_glass",
            EventKind::PostReviewOpened => "post_review.opened",
            EventKind::PostReviewCompleted => "post_review.completed",
            EventKind::PostReviewOverdue => "post_review.overdue",
            EventKind::DeploymentsPaused => "deploy.paused",
            EventKind::DeploymentsResumed => "deploy.resumed",
            EventKind::StableStarted => "deploy.stable_started",
            EventKind::StagingStarted => "staging.started",
            EventKind::StagingPassed => "staging.passed",
            EventKind::StagingFailed => "staging.failed",
            EventKind::DeployQueued => "deploy.queued",
            EventKind::DeployStarted => "deploy.started",
            EventKind::DeployRebased => "deploy.rebased",
            EventKind::DeployConflict => "deploy.conflict",
            EventKind::DeployCommitted => "deploy.committed",
            EventKind::DeployFailed => "deploy.failed",
            EventKind::RolloutStep => "rollout.step",
            EventKind::RolloutDecision => "rollout.decision",
            EventKind::RolloutContinued => "rollout.continued",
            EventKind::RolloutAborted => "rollout.aborted",
            EventKind::SyntheticLoad => "rollout.synthetic_load",
            EventKind::RolloutCompleted => "rollout.completed",
            EventKind::RollbackStarted => "rollback.started",
            EventKind::RollbackCompleted => "rollback.completed",
            EventKind::RollbackEscalated => "rollback.escalated",
            EventKind::WatchRegression => "watch.regression",
            EventKind::WatchCompleted => "watch.completed",
            EventKind::DriftExceeded => "drift.exceeded",
            EventKind::AuditPurged => "audit.purged",
        }
    }
}

/// An event about to be appended. `at_ms` is milliseconds since the Unix epoch,
/// supplied by the caller so that the core stays clock-free.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NewEvent {
    pub change_id: Option<ChangeId>,
    pub at_ms: i64,
    pub actor: Actor,
    pub kind: EventKind,
    pub data: serde_json::Value,
}
