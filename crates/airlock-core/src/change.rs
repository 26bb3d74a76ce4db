//! A change request and what Level 1 concluded about it: states, the files it touches,
//! the result of each check step and the verdict.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Where a change is in the pipeline. The strings are part of the API (`?state=`).
///
/// ```text
/// queued → checking → checks_passed → awaiting_review → approved
///             │             │               │  ├→ changes_requested → (revision) → queued
///             │             │               │  ├→ rejected
///             │             │               │  └→ expired
///             │             └→ approved (by rule, or break-glass) / rejected (denied)
///             └→ rejected / failed
///
/// approved → staging → deploy_queued → deploying → deployed → (manual) rolling_back
///               │                          ├→ rolling_back → rolled_back / rollback_escalated
///               │                          ├→ changes_requested (no longer applies)
///               └→ rejected / failed       └→ rejected (Level 1 failed after rebase) / failed
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeState {
    /// Accepted at intake, waiting for a worker.
    Queued,
    /// Level 1 is running (or will resume after a restart).
    Checking,
    /// Every Level 1 step passed; the policy has not been evaluated yet.
    ChecksPassed,
    /// Waiting for the approvals the policy requires.
    AwaitingReview,
    /// A reviewer asked the agent for a new revision.
    ChangesRequested,
    /// Every obligation is met (or break-glass): ready for deployment.
    Approved,
    /// Level 3: deployed to staging, its integration tests running.
    Staging,
    /// Waiting in its target's serial deployment queue.
    DeployQueued,
    /// Holds its target's deploy lease: re-applied if the branch moved, committed, rolled
    /// out step by step.
    Deploying,
    /// Serves all traffic; its commit is on the target branch.
    Deployed,
    /// Traffic is back on the previous version; the revert is being committed and deployed.
    RollingBack,
    /// Reverted with a new commit; the previous version serves.
    RolledBack,
    /// The revert conflicts with later changes: a human decides. The branch is untouched.
    RollbackEscalated,
    /// Level 1 failed, the policy denied it, or a reviewer rejected it; the verdict says why.
    Rejected,
    /// Its review stayed open past the configured expiry.
    Expired,
    /// airlock could not judge the change (an internal error, repeated; a policy that
    /// could not be evaluated).
    Failed,
}

impl ChangeState {
    pub const ALL: [ChangeState; 16] = [
        ChangeState::Queued,
        ChangeState::Checking,
        ChangeState::ChecksPassed,
        ChangeState::AwaitingReview,
        ChangeState::ChangesRequested,
        ChangeState::Approved,
        ChangeState::Staging,
        ChangeState::DeployQueued,
        ChangeState::Deploying,
        ChangeState::Deployed,
        ChangeState::RollingBack,
        ChangeState::RolledBack,
        ChangeState::RollbackEscalated,
        ChangeState::Rejected,
        ChangeState::Expired,
        ChangeState::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ChangeState::Queued => "queued",
            ChangeState::Checking => "checking",
            ChangeState::ChecksPassed => "checks_passed",
            ChangeState::AwaitingReview => "awaiting_review",
            ChangeState::ChangesRequested => "changes_requested",
            ChangeState::Approved => "approved",
            ChangeState::Staging => "staging",
            ChangeState::DeployQueued => "deploy_queued",
            ChangeState::Deploying => "deploying",
            ChangeState::Deployed => "deployed",
            ChangeState::RollingBack => "rolling_back",
            ChangeState::RolledBack => "rolled_back",
            ChangeState::RollbackEscalated => "rollback_escalated",
            ChangeState::Rejected => "rejected",
            ChangeState::Expired => "expired",
            ChangeState::Failed => "failed",
        }
    }

    /// Nothing will happen to a change in a final state again.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            ChangeState::Rejected
                | ChangeState::Expired
                | ChangeState::Failed
                | ChangeState::RolledBack
        )
    }

    /// The deployer owns the next move, when a `[deploy]` section is configured.
    pub fn needs_deployer(self) -> bool {
        matches!(
            self,
            ChangeState::Approved
                | ChangeState::Staging
                | ChangeState::DeployQueued
                | ChangeState::Deploying
                | ChangeState::RollingBack
        )
    }

    /// Driven by whoever holds the change's lease, which survives the transition.
    pub fn is_leased(self) -> bool {
        matches!(
            self,
            ChangeState::Checking
                | ChangeState::ChecksPassed
                | ChangeState::Staging
                | ChangeState::Deploying
                | ChangeState::RollingBack
        )
    }

    /// A worker owns the next move (Level 1, then the policy); in every other state the
    /// change waits for a person or is done.
    pub fn needs_worker(self) -> bool {
        matches!(
            self,
            ChangeState::Queued | ChangeState::Checking | ChangeState::ChecksPassed
        )
    }

    /// An agent may send a new revision (which dismisses earlier approvals and runs
    /// Level 1 again).
    pub fn accepts_revision(self) -> bool {
        matches!(
            self,
            ChangeState::AwaitingReview | ChangeState::ChangesRequested
        )
    }

    /// The transitions airlock may make. Stores enforce them with compare-and-set, so two
    /// workers or two reviewers can never both move one change.
    pub fn can_become(self, next: ChangeState) -> bool {
        use ChangeState::*;
        matches!(
            (self, next),
            (Queued, Checking)
                | (Queued, Failed)
                | (Checking, ChecksPassed)
                | (Checking, Rejected)
                | (Checking, Failed)
                | (ChecksPassed, AwaitingReview)
                | (ChecksPassed, Approved)
                | (ChecksPassed, Rejected)
                | (ChecksPassed, Failed)
                | (AwaitingReview, Approved)
                | (AwaitingReview, Rejected)
                | (AwaitingReview, ChangesRequested)
                | (AwaitingReview, Expired)
                | (AwaitingReview, Queued)
                | (ChangesRequested, Queued)
                | (ChangesRequested, Rejected)
                | (ChangesRequested, Expired)
                | (Approved, Staging)
                | (Approved, DeployQueued)
                | (Staging, DeployQueued)
                | (Staging, Rejected)
                | (Staging, Failed)
                | (DeployQueued, Deploying)
                | (Deploying, DeployQueued)
                | (Deploying, Deployed)
                | (Deploying, RollingBack)
                | (Deploying, ChangesRequested)
                | (Deploying, Rejected)
                | (Deploying, Failed)
                | (Deployed, RollingBack)
                | (RollingBack, RolledBack)
                | (RollingBack, RollbackEscalated)
                | (RollbackEscalated, RollingBack)
        )
    }
}

impl FromStr for ChangeState {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        ChangeState::ALL
            .into_iter()
            .find(|s| s.as_str() == text)
            .ok_or_else(|| {
                let accepted: Vec<_> = ChangeState::ALL.iter().map(|s| s.as_str()).collect();
                format!(
                    "unknown state `{}`; accepted: {}",
                    crate::ids::printable(text),
                    accepted.join(", ")
                )
            })
    }
}

impl fmt::Display for ChangeState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How the agent expressed the change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "form", rename_all = "snake_case")]
pub enum SourceForm {
    Diff,
    Edits,
    /// A commit of the repository; `head` is the resolved commit.
    Ref {
        name: String,
        head: String,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileOp {
    Add,
    Modify,
    Delete,
    Rename,
    Copy,
}

/// One file a change touches, with hashes of its content before and after. The new
/// content itself is not kept here: it is re-derived from the base commit and the patch,
/// and checked against `new_sha256`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangedFile {
    pub op: FileOp,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub old_path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new_path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub old_mode: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new_mode: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub old_sha256: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new_sha256: Option<String>,
    pub lines_added: usize,
    pub lines_removed: usize,
}

impl ChangedFile {
    /// The path after the change, or the deleted path.
    pub fn path(&self) -> &str {
        self.new_path
            .as_deref()
            .or(self.old_path.as_deref())
            .unwrap_or_default()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    Passed,
    Failed,
    /// Not run: a break-glass change whose policy allows skipping check commands.
    Skipped,
}

/// The durable result of one Level 1 step. Once recorded, the step is never run again
/// for this revision of the change, even across restarts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepRecord {
    pub index: usize,
    pub name: String,
    pub status: StepStatus,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub timed_out: bool,
    pub duration_ms: u64,
    /// The tail of the combined output, lossily decoded as UTF-8.
    pub output: String,
    pub output_total_bytes: u64,
    /// The isolation actually used, in words.
    pub isolation: String,
    /// Why the step failed when it is not the command's own exit status (timeout,
    /// missing sandbox, workspace error).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// What the scan step found (empty for check commands).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub findings: Vec<airlock_scan::Finding>,
}

impl StepRecord {
    /// A step whose command never ran (skipped, or it could not start): no output, no
    /// exit status, `reason` says why.
    pub fn not_run(
        index: usize,
        name: String,
        status: StepStatus,
        isolation: &str,
        reason: String,
    ) -> StepRecord {
        StepRecord {
            index,
            name,
            status,
            exit_code: None,
            signal: None,
            timed_out: false,
            duration_ms: 0,
            output: String::new(),
            output_total_bytes: 0,
            isolation: isolation.to_owned(),
            reason: Some(reason),
            findings: Vec::new(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VerdictOutcome {
    Passed,
    Rejected,
    Failed,
}

/// The conclusion of Level 1, written once.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    pub outcome: VerdictOutcome,
    pub summary: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failed_step: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    /// The failing step's output tail, for the agent to act on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_excerpt: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub isolation: Option<String>,
}

impl Verdict {
    /// A verdict that no single step produced (the change stopped applying, airlock gave
    /// up after repeated internal errors).
    pub fn without_step(outcome: VerdictOutcome, summary: String) -> Verdict {
        Verdict {
            outcome,
            summary,
            failed_step: None,
            exit_code: None,
            duration_ms: None,
            output_excerpt: None,
            isolation: None,
        }
    }

    /// The state a change with this verdict ends in.
    pub fn state(&self) -> ChangeState {
        match self.outcome {
            VerdictOutcome::Passed => ChangeState::ChecksPassed,
            VerdictOutcome::Rejected => ChangeState::Rejected,
            VerdictOutcome::Failed => ChangeState::Failed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_parse_and_print() {
        for state in ChangeState::ALL {
            assert_eq!(state.as_str().parse::<ChangeState>().unwrap(), state);
            assert_eq!(
                serde_json::to_string(&state).unwrap(),
                format!("\"{state}\"")
            );
        }
        let error = "done".parse::<ChangeState>().unwrap_err();
        assert!(
            error.contains("queued, checking, checks_passed, awaiting_review, changes_requested, approved, staging, deploy_queued, deploying, deployed, rolling_back, rolled_back, rollback_escalated, rejected, expired, failed"),
            "{error}"
        );
    }

    #[test]
    fn final_states_have_no_way_out() {
        for from in ChangeState::ALL.into_iter().filter(|s| s.is_final()) {
            assert!(
                ChangeState::ALL.iter().all(|to| !from.can_become(*to)),
                "{from}"
            );
        }
        assert!(ChangeState::Queued.can_become(ChangeState::Checking));
        assert!(!ChangeState::Queued.can_become(ChangeState::ChecksPassed));
        // Only a human decision or the policy leaves review; nothing skips it.
        assert!(!ChangeState::Checking.can_become(ChangeState::Approved));
        assert!(!ChangeState::ChangesRequested.can_become(ChangeState::Approved));
        for state in ChangeState::ALL {
            assert_eq!(
                state.accepts_revision(),
                state.can_become(ChangeState::Queued),
                "{state}"
            );
        }
    }
}
