//! `airlock canary replay`: the canary judge re-run on a recorded rollout, offline and
//! deterministically, for understanding a decision or tuning margins before using them.

use std::path::Path;

use airlock_judge::{Decision, Recording, Verdict};
use anyhow::Context;

use crate::Outcome;

/// Replays the recording in `file`. Prints every change of verdict (or, with `json`,
/// every decision); exit 1 when the judge fails the canary.
pub fn replay(file: &Path, json: bool) -> anyhow::Result<Outcome> {
    let text = std::fs::read(file)
        .with_context(|| format!("cannot read the recording {}", file.display()))?;
    let recording: Recording = serde_json::from_slice(&text).with_context(|| {
        format!(
            "{} is not a judge recording (JSON with `config` and `steps`, as the deployer writes under .airlock/deploy/recordings/)",
            file.display()
        )
    })?;
    let decisions = airlock_judge::replay(&recording)
        .with_context(|| format!("cannot replay {}", file.display()))?;
    let failed = matches!(
        decisions.last().map(|d| &d.verdict),
        Some(Verdict::Fail { .. })
    );
    if json {
        println!("{}", serde_json::to_string_pretty(&decisions)?);
    } else {
        print_changes(&decisions);
    }
    Ok(if failed {
        Outcome::Rejected
    } else {
        Outcome::Success
    })
}

/// One line per decision whose verdict differs from the one before, with each metric's
/// reasoning, and the final decision in full.
fn print_changes(decisions: &[Decision]) {
    let mut previous: Option<(&str, &Verdict)> = None;
    for decision in decisions {
        let now = (decision.step.as_str(), &decision.verdict);
        if previous == Some(now) {
            continue;
        }
        previous = Some(now);
        println!(
            "{:>9.1} s  step {:<6} {}",
            decision.at_seconds,
            decision.step,
            verdict_text(&decision.verdict)
        );
    }
    let Some(last) = decisions.last() else {
        println!("the recording holds no observation");
        return;
    };
    println!("final: {}", verdict_text(&last.verdict));
    for metric in &last.metrics {
        println!(
            "  {:<16} {:?}  canary {}/{}  reference {}/{}  ratio [{:.3}, {:.3}]  ln E {:.2} of {:.2}",
            metric.name,
            metric.verdict,
            metric.canary.events,
            metric.canary.exposure,
            metric.reference.events,
            metric.reference.exposure,
            metric.ratio_lower,
            metric.ratio_upper,
            metric.log_e_value,
            metric.log_bound,
        );
        println!("  {:<16} {}", "", metric.reasoning);
    }
}

fn verdict_text(verdict: &Verdict) -> String {
    match verdict {
        Verdict::Continue => "continue".to_owned(),
        Verdict::Pass => "pass".to_owned(),
        Verdict::InsufficientData => "insufficient data".to_owned(),
        Verdict::Fail { metric } => format!("fail ({metric})"),
        Verdict::Hold { metric } => format!("hold for a human ({metric})"),
    }
}
