//! Retrospective mode: a rollout's recorded observations, and their replay.

use serde::{Deserialize, Serialize};

use crate::{Decision, Judge, JudgeConfig, JudgeError, Sample};

/// Everything a judge was given during a rollout: its configuration and every accepted
/// observation, by step. [`Judge::recording`] produces it; it serialises to JSON for the
/// audit log.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Recording {
    pub config: JudgeConfig,
    pub steps: Vec<RecordedStep>,
}

/// One rollout step and the observations made during it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RecordedStep {
    pub label: String,
    pub samples: Vec<RecordedSample>,
}

/// One observation: its time and one sample per metric (None for a missing scrape).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RecordedSample {
    pub at_seconds: f64,
    pub metrics: Vec<Option<Sample>>,
}

/// Replays a recording through a fresh judge: one decision per recorded sample, in order,
/// exactly the decisions the live judge returned (the judge is deterministic and keeps
/// no clock).
///
/// A recording can also be edited to ask "what would this configuration have decided?".
/// Fails with [`JudgeError::InvalidConfig`] for a bad configuration, or
/// [`JudgeError::Replay`] naming the step and sample a judge would have refused.
pub fn replay(recording: &Recording) -> Result<Vec<Decision>, JudgeError> {
    let mut decisions = Vec::new();
    feed(recording, |decision| decisions.push(decision))?;
    Ok(decisions)
}

/// Runs a recording through a fresh judge, handing each decision to `each`, and returns
/// the judge.
pub(crate) fn feed(
    recording: &Recording,
    mut each: impl FnMut(Decision),
) -> Result<Judge, JudgeError> {
    let mut judge = Judge::new(recording.config.clone())?;
    for (step_index, step) in recording.steps.iter().enumerate() {
        judge.begin_step(&step.label);
        for (sample_index, sample) in step.samples.iter().enumerate() {
            let decision = judge
                .observe(sample.at_seconds, &sample.metrics)
                .map_err(|source| JudgeError::Replay {
                    step: step_index,
                    label: step.label.clone(),
                    sample: sample_index,
                    source: Box::new(source),
                })?;
            each(decision);
        }
    }
    Ok(judge)
}
