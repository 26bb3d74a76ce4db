//! Durable state behind one trait: tokens, changes, step results and events.
//!
//! The embedded implementation is SQLite; a PostgreSQL implementation (for several
//! `airlock serve` replicas) implements the same trait with its own migrations. Callers
//! are generic over [`Store`], so choosing one is a start-up decision. Every method that
//! changes a state also appends its event in the same transaction: there is no state
//! without its history, and no history without its state.

mod sqlite;

use std::future::Future;

use airlock_core::change::{ChangeState, ChangedFile, SourceForm, StepRecord, Verdict};
use airlock_core::event::{Actor, NewEvent};
use airlock_core::ids::{ChangeId, Role, TokenId};
use airlock_core::review::{Obligations, ReviewClock, ReviewVerdict, Reviewer, TrackRecord};
use serde::{Deserialize, Serialize};

pub use sqlite::SqliteStore;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("database migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    #[error("stored data is corrupt ({what}): {detail}")]
    Corrupt { what: &'static str, detail: String },
    #[error("{0}")]
    Conflict(String),
}

/// An API token as stored: never the secret, only its SHA-256.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TokenRecord {
    pub id: TokenId,
    pub name: String,
    pub role: Role,
    /// For agent tokens, the human responsible for the agent.
    pub owner: Option<String>,
    /// Groups the human belongs to (`@payments`), for group approvals.
    pub groups: Vec<String>,
    #[serde(skip)]
    pub secret_sha256: String,
    pub created_at_ms: i64,
    pub revoked_at_ms: Option<i64>,
}

/// A change as accepted at intake.
#[derive(Clone, Debug)]
pub struct NewChange {
    pub id: ChangeId,
    pub title: String,
    pub description: String,
    pub agent: Actor,
    pub base_commit: String,
    pub target_branch: String,
    pub source: SourceForm,
    pub diff: Vec<u8>,
    pub files: Vec<ChangedFile>,
    pub lines_added: usize,
    pub lines_removed: usize,
    pub created_at_ms: i64,
    /// Break-glass at proposal time.
    pub urgency: Option<Urgency>,
}

/// A change and what its status shows: see [`Store::change_detail`].
#[derive(Clone, Debug, PartialEq)]
pub struct ChangeDetail {
    pub change: ChangeRecord,
    /// The steps recorded for the change's current revision, in order.
    pub steps: Vec<StepRecord>,
    /// Every review action on the change, oldest first (all revisions).
    pub review_actions: Vec<ReviewAction>,
    /// Its deployment record, once it entered the deployment queue.
    pub deployment: Option<DeploymentRecord>,
}

/// A change as stored, without its diff (see [`Store::change_diff`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChangeRecord {
    pub id: ChangeId,
    pub seq: i64,
    pub revision: i64,
    pub state: ChangeState,
    pub title: String,
    pub description: String,
    pub agent: Actor,
    pub base_commit: String,
    pub target_branch: String,
    pub source: SourceForm,
    pub files: Vec<ChangedFile>,
    pub lines_added: i64,
    pub lines_removed: i64,
    pub verdict: Option<Verdict>,
    pub attempts: i64,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    /// Set when an operator or admin broke the glass for this change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub urgency: Option<Urgency>,
    /// The policy's obligations for the current revision, once evaluated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub obligations: Option<Obligations>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_sha256: Option<String>,
}

/// Break-glass: who marked a change urgent, when, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Urgency {
    pub reason: String,
    pub by: Actor,
    pub at_ms: i64,
}

/// A change just claimed by [`Store::claim_next`].
#[derive(Clone, Debug)]
pub struct Claim {
    pub change: ChangeRecord,
    /// The claim moved it from `queued` to `checking` (otherwise Level 1 resumes).
    pub started: bool,
}

/// The end of Level 1, written at once by [`Store::conclude_checks`].
#[derive(Clone, Copy, Debug)]
pub struct Conclusion<'a> {
    /// The last step, when it ran now and is not recorded yet, with its event.
    pub last_step: Option<(&'a StepRecord, &'a NewEvent)>,
    pub verdict: &'a Verdict,
    pub verdict_event: &'a NewEvent,
    /// The policy stage's decision and events, when the checks passed.
    pub policy: Option<(&'a PolicyDecision, &'a [NewEvent])>,
}

/// What the policy concluded for one revision, written with the state it leads to.
#[derive(Clone, Debug, PartialEq)]
pub struct PolicyDecision {
    /// `awaiting_review`, `approved`, `rejected` (denied) or `failed` (not evaluable).
    pub to: ChangeState,
    pub verdict: Option<Verdict>,
    pub obligations: Option<Obligations>,
    pub policy_sha256: String,
    /// Opens a review request with these deadlines (for `awaiting_review`).
    pub review: Option<ReviewClock>,
    /// Opens the mandatory post-deployment review (break-glass approval).
    pub post_review: Option<PostReviewOpen>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PostReviewOpen {
    pub reason: String,
    pub opened_by: Actor,
    pub opened_at_ms: i64,
    pub due_at_ms: i64,
}

/// What one reviewer said about one revision.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReviewAction {
    pub revision: i64,
    pub verdict: ReviewVerdict,
    pub reviewer: Reviewer,
    pub comment: String,
    pub at_ms: i64,
}

/// The outcome of [`Store::record_review`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReviewRecorded {
    Recorded,
    /// The change moved on, or another review landed first: re-read and decide again.
    Stale,
    /// This human already approved this revision.
    Duplicate,
}

/// A review request still waiting for its decision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenReview {
    pub change_id: ChangeId,
    pub revision: i64,
    pub clock: ReviewClock,
    pub reminded: bool,
    pub escalated: bool,
}

/// A deadline of a review that has passed.
#[derive(Clone, Debug, PartialEq)]
pub enum SlaMark {
    Reminder,
    Escalation,
    /// Rejects the change as expired with this verdict.
    Expiry(Verdict),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PostReviewRecord {
    pub change_id: ChangeId,
    pub reason: String,
    pub opened_by: Actor,
    pub opened_at_ms: i64,
    pub due_at_ms: i64,
    pub overdue_at_ms: Option<i64>,
    pub completed_by: Option<Actor>,
    pub completed_at_ms: Option<i64>,
    pub comment: Option<String>,
}

/// The kill switch, while it is on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pause {
    pub reason: String,
    pub by: Actor,
    pub at_ms: i64,
}

/// A new revision of a change, replacing the current one.
#[derive(Clone, Debug)]
pub struct NewRevision {
    pub base_commit: String,
    pub source: SourceForm,
    pub diff: Vec<u8>,
    pub files: Vec<ChangedFile>,
    pub lines_added: usize,
    pub lines_removed: usize,
    pub at_ms: i64,
}

/// What one agent has under way, for its rate limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AgentActivity {
    /// Changes not yet approved, rejected, expired or failed.
    pub in_flight: u64,
    /// Proposals and revisions since the window's start.
    pub proposals: u64,
    /// When the oldest proposal in the window was made.
    pub oldest_proposal_ms: Option<i64>,
}

/// An event as stored, with its position in the log.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EventRecord {
    pub seq: i64,
    pub change_id: Option<ChangeId>,
    pub at_ms: i64,
    pub actor: Actor,
    pub kind: String,
    pub data: serde_json::Value,
}

/// A claim on a change: while the lease has not expired, no other worker takes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    pub owner: String,
    pub expires_at_ms: i64,
}

/// A change's deployment, as recorded step by step.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeploymentRecord {
    pub change_id: ChangeId,
    pub target: String,
    /// Position in the target's queue.
    pub deploy_seq: Option<i64>,
    /// The fencing token of the lease it last ran under.
    pub fence: Option<i64>,
    /// The stable version when the deployment started.
    pub previous_commit: Option<String>,
    /// The change's commit on the target branch, once pushed.
    pub commit_id: Option<String>,
    /// Index of the last rollout step that completed; -1 before the first.
    pub step: i64,
    pub revert_commit: Option<String>,
    pub rollback_reason: Option<String>,
    pub rollback_by: Option<Actor>,
    pub updated_at_ms: i64,
}

/// Fields of a deployment to set; `None` leaves one as it is.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeploymentUpdate {
    pub previous_commit: Option<String>,
    pub commit_id: Option<String>,
    pub step: Option<i64>,
    pub revert_commit: Option<String>,
    pub rollback_reason: Option<String>,
    pub rollback_by: Option<Actor>,
}

/// A rollout's steady state: production's figures after the change reached 100 % and
/// the stable version's before it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SteadyState {
    pub target: String,
    pub change_id: ChangeId,
    pub completed_ms: i64,
    pub requests: i64,
    pub errors: i64,
    pub p99_ms: Option<f64>,
    pub before_requests: i64,
    pub before_errors: i64,
    pub before_p99_ms: Option<f64>,
}

/// The version serving a target's traffic.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StableVersion {
    pub target: String,
    pub commit: String,
    pub change_id: Option<ChangeId>,
    pub updated_at_ms: i64,
}

/// The answer of [`Store::admit_fence`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FenceCheck {
    Admitted,
    /// The token is not the lease's: `current` is the token the lease is at (0 when the
    /// target never had a lease).
    Stale {
        current: i64,
    },
}

/// The storage operations airlock needs. Implementations must make each method atomic.
pub trait Store: Send + Sync + 'static {
    fn insert_token(
        &self,
        token: &TokenRecord,
        event: &NewEvent,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// The token with this secret hash, revoked or not (the caller decides).
    fn token_by_secret_hash(
        &self,
        secret_sha256: &str,
    ) -> impl Future<Output = Result<Option<TokenRecord>, StoreError>> + Send;
    fn list_tokens(&self) -> impl Future<Output = Result<Vec<TokenRecord>, StoreError>> + Send;
    /// Marks a token revoked; false when there is no such active token.
    fn revoke_token(
        &self,
        id: &TokenId,
        event: &NewEvent,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Stores a new change in `queued` with its events (`change.proposed`, and
    /// `change.break_glass` for an urgent one).
    fn insert_change(
        &self,
        change: &NewChange,
        events: &[NewEvent],
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    fn change(
        &self,
        id: &ChangeId,
    ) -> impl Future<Output = Result<Option<ChangeRecord>, StoreError>> + Send;
    /// A change with what a status read shows beside it, read at once (one statement
    /// for SQLite: status reads are the API's most frequent call).
    fn change_detail(
        &self,
        id: &ChangeId,
    ) -> impl Future<Output = Result<Option<ChangeDetail>, StoreError>> + Send;
    fn change_diff(
        &self,
        id: &ChangeId,
    ) -> impl Future<Output = Result<Option<Vec<u8>>, StoreError>> + Send;
    /// Newest first; `state` filters.
    fn list_changes(
        &self,
        state: Option<ChangeState>,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<ChangeRecord>, StoreError>> + Send;

    /// Claims the oldest change that still needs Level 1 work (`queued`, or `checking` or
    /// `checks_passed` with no live lease), leases it to `worker` until
    /// `now_ms + lease_ms` and counts the attempt. A `queued` change starts in the same
    /// transaction: it moves to `checking` with the event `started` makes for it. The
    /// record returned is the claimed change as it now is; `started` tells whether this
    /// claim started it. None when there is nothing to do.
    fn claim_next(
        &self,
        worker: &str,
        now_ms: i64,
        lease_ms: i64,
        started: impl FnOnce(&ChangeRecord) -> NewEvent + Send,
    ) -> impl Future<Output = Result<Option<Claim>, StoreError>> + Send;
    /// Extends a lease; false if the worker no longer holds it.
    fn renew_lease(
        &self,
        id: &ChangeId,
        worker: &str,
        expires_at_ms: i64,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// Drops every lease. Only for a store that one process owns (SQLite), at start-up:
    /// a lease left behind by a killed process must not delay its work.
    fn release_all_leases(&self) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Moves a change from `from` to `to` if it is still in `from` and still leased to
    /// `worker`, writing `verdict` when given and appending `event`. False when the change
    /// moved on meanwhile (another worker, a stale lease).
    fn transition(
        &self,
        id: &ChangeId,
        worker: &str,
        from: ChangeState,
        to: ChangeState,
        verdict: Option<&Verdict>,
        event: &NewEvent,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// Records a finished step with its event, if the worker still holds the lease and the
    /// step is not recorded yet. False otherwise (it is never recorded twice).
    fn record_step(
        &self,
        id: &ChangeId,
        worker: &str,
        revision: i64,
        step: &StepRecord,
        event: &NewEvent,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
    fn steps(
        &self,
        id: &ChangeId,
        revision: i64,
    ) -> impl Future<Output = Result<Vec<StepRecord>, StoreError>> + Send;
    /// Appends an event that goes with no state change (a resumed run, a note).
    fn append_event(&self, event: &NewEvent)
    -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Up to `limit` events with a sequence number above `seq`, in order: how the audit
    /// log follows the store. In SQLite, sequence numbers are assigned in commit order, so
    /// an event never appears behind one already read. (A PostgreSQL store must keep that
    /// promise too: a sequence alone does not, as transactions commit out of order.)
    fn events_after(
        &self,
        seq: i64,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<EventRecord>, StoreError>> + Send;
    /// Ends Level 1 on a change `worker` holds in `from`, in one transaction: records the
    /// step that ran last (unless it is recorded already), writes the verdict with its
    /// event, and when the checks passed and the policy was evaluated, settles the policy
    /// stage as [`Store::settle_policy`] does. Nothing is written when the lease or the
    /// state moved on (false).
    fn conclude_checks(
        &self,
        id: &ChangeId,
        worker: &str,
        revision: i64,
        from: ChangeState,
        conclusion: &Conclusion<'_>,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// Ends Level 2's policy stage of `revision`: moves the change from `checks_passed`
    /// to `decision.to` if `worker` still holds it, writes the obligations, opens the
    /// review or post-review, appends `events`. False when the change moved on.
    fn settle_policy(
        &self,
        id: &ChangeId,
        worker: &str,
        revision: i64,
        decision: &PolicyDecision,
        events: &[NewEvent],
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// Records a review action on the current revision, if the change is still in
    /// `from` and exactly `approvals_seen` approvals of that revision are recorded (the
    /// caller's decision was made on them), moving it to `to` when given.
    fn record_review(
        &self,
        id: &ChangeId,
        from: ChangeState,
        approvals_seen: usize,
        action: &ReviewAction,
        to: Option<(ChangeState, Option<&Verdict>)>,
        events: &[NewEvent],
    ) -> impl Future<Output = Result<ReviewRecorded, StoreError>> + Send;
    /// Every review action on a change, oldest first (all revisions).
    fn review_actions(
        &self,
        id: &ChangeId,
    ) -> impl Future<Output = Result<Vec<ReviewAction>, StoreError>> + Send;
    /// Replaces the change's current revision (kept in history) with `revision`, back to
    /// `queued`, if it is still at `expected_revision` in a state that accepts one.
    fn revise_change(
        &self,
        id: &ChangeId,
        expected_revision: i64,
        revision: &NewRevision,
        event: &NewEvent,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// Break-glass: marks the change urgent (once) while it is in `from`, moving it to
    /// `to` and opening `post_review` when given. False when it moved on or was already
    /// urgent.
    fn break_glass(
        &self,
        id: &ChangeId,
        from: ChangeState,
        urgency: &Urgency,
        to: Option<ChangeState>,
        post_review: Option<&PostReviewOpen>,
        events: &[NewEvent],
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// Reviews of changes still `awaiting_review`, for the SLA timer.
    fn open_reviews(&self) -> impl Future<Output = Result<Vec<OpenReview>, StoreError>> + Send;
    /// Records that a deadline of the review of `revision` passed: once each, and only
    /// while the change still awaits that review.
    fn mark_review_deadline(
        &self,
        id: &ChangeId,
        revision: i64,
        mark: &SlaMark,
        event: &NewEvent,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
    fn post_reviews(
        &self,
    ) -> impl Future<Output = Result<Vec<PostReviewRecord>, StoreError>> + Send;
    /// Closes an open post-review; false when there is none open.
    fn complete_post_review(
        &self,
        id: &ChangeId,
        by: &Actor,
        comment: &str,
        event: &NewEvent,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// Records the overdue alert of an open post-review, once.
    fn mark_post_review_overdue(
        &self,
        id: &ChangeId,
        event: &NewEvent,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// Turns the kill switch on (`Some`) or off; false when it already was.
    fn set_pause(
        &self,
        pause: Option<&Pause>,
        event: &NewEvent,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
    fn pause(&self) -> impl Future<Output = Result<Option<Pause>, StoreError>> + Send;
    /// Pauses one target's deployments (`Some`) or lifts that pause, beside the kill
    /// switch, which it leaves as it is; false when it already was.
    fn set_target_pause(
        &self,
        target: &str,
        pause: Option<&Pause>,
        event: &NewEvent,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// The targets paused on their own, ordered by name.
    fn target_pauses(
        &self,
    ) -> impl Future<Output = Result<Vec<(String, Pause)>, StoreError>> + Send;
    /// What the agent named `agent` has in flight and has proposed since `since_ms`.
    fn agent_activity(
        &self,
        agent: &str,
        since_ms: i64,
    ) -> impl Future<Output = Result<AgentActivity, StoreError>> + Send;
    /// How the changes proposed by `agent` ended.
    fn track_record(
        &self,
        agent: &str,
    ) -> impl Future<Output = Result<TrackRecord, StoreError>> + Send;
    /// Claims the oldest change waiting for staging (`approved`, or `staging` with no live
    /// lease), leasing it to `worker`.
    fn claim_for_staging(
        &self,
        worker: &str,
        now_ms: i64,
        lease_ms: i64,
    ) -> impl Future<Output = Result<Option<ChangeRecord>, StoreError>> + Send;
    /// Puts a change at the end of `target`'s deployment queue, from `approved` or from
    /// `staging` (then only while `worker` holds it), creating its deployment record.
    fn enqueue_deploy(
        &self,
        id: &ChangeId,
        worker: &str,
        from: ChangeState,
        target: &str,
        event: &NewEvent,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// Takes `target`'s deploy lease if it is free or expired, returning the new fencing
    /// token (one more than any before).
    fn acquire_deploy_lease(
        &self,
        target: &str,
        holder: &str,
        now_ms: i64,
        lease_ms: i64,
    ) -> impl Future<Output = Result<Option<i64>, StoreError>> + Send;
    /// Extends the lease; false when `holder` no longer holds it under `token`.
    fn renew_deploy_lease(
        &self,
        target: &str,
        holder: &str,
        token: i64,
        expires_at_ms: i64,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
    fn release_deploy_lease(
        &self,
        target: &str,
        holder: &str,
        token: i64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// The fencing check: admitted when `token` is the target's current lease token and
    /// no higher token was admitted before (it becomes the high-water mark); otherwise
    /// stale, with the token the lease is at.
    fn admit_fence(
        &self,
        target: &str,
        token: i64,
    ) -> impl Future<Output = Result<FenceCheck, StoreError>> + Send;
    /// The target's queue in the order the deployer serves it: rollbacks first, then the
    /// deployment under way, then the waiting changes first come first served.
    fn deploy_queue(
        &self,
        target: &str,
    ) -> impl Future<Output = Result<Vec<(ChangeRecord, DeploymentRecord)>, StoreError>> + Send;
    /// The deployer takes a change under its lease (`from` → `to`; the same state when it
    /// resumes one), recording the fencing token.
    fn take_deployment(
        &self,
        id: &ChangeId,
        from: ChangeState,
        to: ChangeState,
        holder: &str,
        token: i64,
        event: &NewEvent,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// Records progress of a deployment `holder` drives, with its event.
    fn update_deployment(
        &self,
        id: &ChangeId,
        holder: &str,
        update: &DeploymentUpdate,
        event: &NewEvent,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
    fn deployment(
        &self,
        id: &ChangeId,
    ) -> impl Future<Output = Result<Option<DeploymentRecord>, StoreError>> + Send;
    /// Ends a deployment step of the state machine like [`Store::transition`], and when
    /// `stable` is given makes that commit the target's stable version, atomically.
    #[allow(clippy::too_many_arguments)]
    fn finish_deployment(
        &self,
        id: &ChangeId,
        holder: &str,
        from: ChangeState,
        to: ChangeState,
        verdict: Option<&Verdict>,
        stable: Option<&StableVersion>,
        event: &NewEvent,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
    fn stable_version(
        &self,
        target: &str,
    ) -> impl Future<Output = Result<Option<StableVersion>, StoreError>> + Send;
    fn record_steady_state(
        &self,
        state: &SteadyState,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// The target's last `limit` steady states, newest first.
    fn steady_states(
        &self,
        target: &str,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<SteadyState>, StoreError>> + Send;
    /// Records a target's stable version when it has none yet (first start).
    fn init_stable_version(
        &self,
        stable: &StableVersion,
        event: &NewEvent,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// A person asks to roll back a change in `from` (`deployed`, `rollback_escalated`).
    fn request_rollback(
        &self,
        id: &ChangeId,
        from: ChangeState,
        reason: &str,
        by: &Actor,
        event: &NewEvent,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// Events in order; of one change, or all when `change` is None.
    fn events(
        &self,
        change: Option<&ChangeId>,
    ) -> impl Future<Output = Result<Vec<EventRecord>, StoreError>> + Send;
}
