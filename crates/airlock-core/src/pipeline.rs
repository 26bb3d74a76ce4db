//! The Level 1 state machine as a pure function: given the planned steps and the steps
//! already recorded, what happens next. Workers call it after every durable step, which
//! is what makes a restart resume exactly where the last run stopped.

use crate::change::{StepRecord, StepStatus, Verdict, VerdictOutcome};
use crate::config::{CheckCommand, Config};

/// One step of Level 1.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PlannedStep {
    /// The dangerous-change scan of the diff. Runs first: it is cheap, and a change that
    /// leaks a secret should not reach a test command that could print it.
    Scan,
    /// A configured check command.
    Check(CheckCommand),
}

impl PlannedStep {
    pub const SCAN_NAME: &'static str = "scan";

    pub fn name(&self) -> &str {
        match self {
            PlannedStep::Scan => Self::SCAN_NAME,
            PlannedStep::Check(check) => &check.name,
        }
    }
}

/// The steps Level 1 runs for this configuration, in order.
pub fn plan(config: &Config) -> Vec<PlannedStep> {
    let scan = config.scan.enabled.then_some(PlannedStep::Scan);
    scan.into_iter()
        .chain(config.checks.iter().cloned().map(PlannedStep::Check))
        .collect()
}

/// What a worker does next for a change in `checking`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NextStep {
    /// Run the step at this index of the plan.
    Run(usize),
    /// Level 1 is over.
    Finish(Verdict),
}

/// Decides the next step. `done` holds the recorded steps in order; a failed step ends
/// Level 1 at once (later steps would only add noise to the feedback).
pub fn next_step(plan: &[PlannedStep], done: &[StepRecord]) -> NextStep {
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
            summary: format!("`{}` {why}", failed.name),
            failed_step: Some(failed.name.clone()),
            exit_code: failed.exit_code,
            duration_ms: Some(failed.duration_ms),
            output_excerpt: Some(failed.output.clone()),
            isolation: Some(failed.isolation.clone()),
        });
    }
    if done.len() < plan.len() {
        return NextStep::Run(done.len());
    }
    let isolation = done
        .iter()
        .rev()
        .map(|step| step.isolation.clone())
        .find(|i| !i.is_empty());
    let summary = if plan.is_empty() {
        "the change applies cleanly; no scan or check commands are configured".to_owned()
    } else {
        let names: Vec<&str> = plan.iter().map(PlannedStep::name).collect();
        format!("passed: {}", names.join(", "))
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

    fn command(name: &str) -> PlannedStep {
        PlannedStep::Check(CheckCommand {
            name: name.into(),
            run: "true".into(),
            timeout: Duration::from_secs(1),
        })
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
            findings: Vec::new(),
        }
    }

    #[test]
    fn the_plan_scans_first_unless_disabled() {
        let mut config = Config::parse(
            "[checks]\ncommands = [{ name = 'test', run = 'true' }]\n",
            "airlock.toml",
        )
        .unwrap();
        let names = |config: &Config| {
            plan(config)
                .iter()
                .map(|s| s.name().to_owned())
                .collect::<Vec<_>>()
        };
        assert_eq!(names(&config), ["scan", "test"]);
        config.scan.enabled = false;
        assert_eq!(names(&config), ["test"]);
    }

    #[test]
    fn runs_steps_in_order_then_passes() {
        let plan = [PlannedStep::Scan, command("test")];
        assert_eq!(next_step(&plan, &[]), NextStep::Run(0));
        let done = [step(0, "scan", StepStatus::Passed, None)];
        assert_eq!(next_step(&plan, &done), NextStep::Run(1));
        let done = [
            step(0, "scan", StepStatus::Passed, None),
            step(1, "test", StepStatus::Passed, Some(0)),
        ];
        let NextStep::Finish(verdict) = next_step(&plan, &done) else {
            panic!("expected a verdict")
        };
        assert_eq!(verdict.outcome, VerdictOutcome::Passed);
        assert_eq!(verdict.summary, "passed: scan, test");
        assert_eq!(verdict.duration_ms, Some(10));
    }

    #[test]
    fn first_failure_rejects_with_its_output() {
        let plan = [command("test"), command("lint")];
        let done = [step(0, "test", StepStatus::Failed, Some(101))];
        let NextStep::Finish(verdict) = next_step(&plan, &done) else {
            panic!("expected a verdict")
        };
        assert_eq!(verdict.outcome, VerdictOutcome::Rejected);
        assert_eq!(verdict.summary, "`test` exited with status 101");
        assert_eq!(verdict.failed_step.as_deref(), Some("test"));
        assert_eq!(verdict.output_excerpt.as_deref(), Some("out"));
    }

    #[test]
    fn an_empty_plan_means_the_change_only_has_to_apply() {
        let NextStep::Finish(verdict) = next_step(&[], &[]) else {
            panic!("expected a verdict")
        };
        assert_eq!(verdict.outcome, VerdictOutcome::Passed);
    }
}
