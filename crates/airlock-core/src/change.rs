//! A change request and what Level 1 concluded about it: states, the files it touches,
//! the result of each check step and the verdict.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Where a change is in the pipeline. The strings are part of the API (`?state=`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeState {
    /// Accepted at intake, waiting for a worker.
    Queued,
    /// Level 1 is running (or will resume after a restart).
    Checking,
    /// Every Level 1 step passed.
    ChecksPassed,
    /// A Level 1 step failed: the change is bad, and the verdict says why.
    Rejected,
    /// airlock could not run Level 1 (an internal error, repeated). The change is not judged.
    Failed,
}

impl ChangeState {
    pub const ALL: [ChangeState; 5] = [
        ChangeState::Queued,
        ChangeState::Checking,
        ChangeState::ChecksPassed,
        ChangeState::Rejected,
        ChangeState::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ChangeState::Queued => "queued",
            ChangeState::Checking => "checking",
            ChangeState::ChecksPassed => "checks_passed",
            ChangeState::Rejected => "rejected",
            ChangeState::Failed => "failed",
        }
    }

    /// No worker will touch a change in a final state again.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            ChangeState::ChecksPassed | ChangeState::Rejected | ChangeState::Failed
        )
    }

    /// The transitions Level 1 may make. Stores enforce them with compare-and-set, so two
    /// workers can never both finish one change.
    pub fn can_become(self, next: ChangeState) -> bool {
        use ChangeState::*;
        matches!(
            (self, next),
            (Queued, Checking)
                | (Checking, ChecksPassed)
                | (Checking, Rejected)
                | (Checking, Failed)
                | (Queued, Failed)
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
            error.contains("queued, checking, checks_passed, rejected, failed"),
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
    }
}
