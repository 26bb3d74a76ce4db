//! The Level 1 state machine as a pure function: given the configured checks and the
//! steps already recorded, what happens next. Workers call it after every durable step,
//! which is what makes a restart resume exactly where the last run stopped.

use crate::change::{StepRecord, StepStatus, Verdict, VerdictOutcome};
use crate::config::CheckCommand;

/// What a worker does next for a change in `checking`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NextStep {
    /// Run the check at this index of the configured list.
    Run(usize),
    /// Level 1 is over.
    Finish(Verdict),
}

/// Decides the next step. `done` holds the recorded steps in order; a failed step ends
/// Level 1 at once (later checks would only add noise to the feedback).
pub fn next_step(checks: &[CheckCommand], done: &[StepRecord]) -> NextStep {
    if let Some(failed) = done.iter().find(|step| step.status == StepStatus::Failed) {
        let why =
            failed
                .reason
                .clone()
                .unwrap_or_else(|| match (failed.exit_code, failed.signal) {
                    (Some(code), _) => format!("exited with status {code}"),
                    (None, Some(signal)) => format!("was killed by signal {signal}"),
                    (None, None) => "failed".to_owned(),
                });
        return NextStep::Finish(Verdict {
            outcome: VerdictOutcome::Rejected,
            summary: format!("check `{}` {why}", failed.name),
            failed_step: Some(failed.name.clone()),
            exit_code: failed.exit_code,
            duration_ms: Some(failed.duration_ms),
            output_excerpt: Some(failed.output.clone()),
            isolation: Some(failed.isolation.clone()),
        });
    }
    if done.len() < checks.len() {
        return NextStep::Run(done.len());
    }
    let isolation = done.last().map(|step| step.isolation.clone());
    let summary = match checks.len() {
        0 => "the change applies cleanly; no check commands are configured".to_owned(),
        1 => "1 check passed".to_owned(),
        n => format!("all {n} checks passed"),
    };
    NextStep::Finish(Verdict {
        outcome: VerdictOutcome::Passed,
        summary,
        failed_step: None,
        exit_code: None,
        duration_ms: Some(done.iter().map(|s| s.duration_ms).sum()),
        output_excerpt: None,
        isolation,
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn command(name: &str) -> CheckCommand {
        CheckCommand {
            name: name.into(),
            run: "true".into(),
            timeout: Duration::from_secs(1),
        }
    }

    fn step(index: usize, name: &str, status: StepStatus, exit_code: Option<i32>) -> StepRecord {
        StepRecord {
            index,
            name: name.into(),
            status,
            exit_code,
            signal: None,
            timed_out: false,
            duration_ms: 5,
            output: "out".into(),
            output_total_bytes: 3,
            isolation: "bubblewrap".into(),
            reason: None,
        }
    }

    #[test]
    fn runs_steps_in_order_then_passes() {
        let checks = [command("test"), command("lint")];
        assert_eq!(next_step(&checks, &[]), NextStep::Run(0));
        let done = [step(0, "test", StepStatus::Passed, Some(0))];
        assert_eq!(next_step(&checks, &done), NextStep::Run(1));
        let done = [
            step(0, "test", StepStatus::Passed, Some(0)),
            step(1, "lint", StepStatus::Passed, Some(0)),
        ];
        let NextStep::Finish(verdict) = next_step(&checks, &done) else {
            panic!("expected a verdict")
        };
        assert_eq!(verdict.outcome, VerdictOutcome::Passed);
        assert_eq!(verdict.summary, "all 2 checks passed");
        assert_eq!(verdict.duration_ms, Some(10));
    }

    #[test]
    fn first_failure_rejects_with_its_output() {
        let checks = [command("test"), command("lint")];
        let done = [step(0, "test", StepStatus::Failed, Some(101))];
        let NextStep::Finish(verdict) = next_step(&checks, &done) else {
            panic!("expected a verdict")
        };
        assert_eq!(verdict.outcome, VerdictOutcome::Rejected);
        assert_eq!(verdict.summary, "check `test` exited with status 101");
        assert_eq!(verdict.failed_step.as_deref(), Some("test"));
        assert_eq!(verdict.output_excerpt.as_deref(), Some("out"));
    }

    #[test]
    fn no_checks_means_the_change_only_has_to_apply() {
        let NextStep::Finish(verdict) = next_step(&[], &[]) else {
            panic!("expected a verdict")
        };
        assert_eq!(verdict.outcome, VerdictOutcome::Passed);
    }
}
