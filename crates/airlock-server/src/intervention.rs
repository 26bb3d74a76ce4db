//! A person's decisions on a rollout under way, read back from the change's events: let
//! a rollout the judge held go on (`rollout.continued`), or stop it and roll back
//! (`rollout.aborted`).
//!
//! The decisions are events, not a column the API and the deployer share: the deployer
//! (of whichever replica holds the lease, and after a restart) reads them from the store
//! at its next poll, and the audit log records who decided, why, and on what evidence.

use std::collections::BTreeSet;

use airlock_core::event::{Actor, EventKind};
use airlock_store::EventRecord;

/// What people decided about one change's rollout, and whether the judge holds it.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Interventions {
    /// Metrics whose advisory failure a person has let the rollout go past.
    pub(crate) acknowledged: BTreeSet<String>,
    /// A person asked to stop the rollout: their reason and who they are.
    pub(crate) abort: Option<(String, Actor)>,
    /// The metrics of the latest hold no one has answered yet; None when not held.
    pub(crate) held: Option<Vec<String>>,
}

impl Interventions {
    /// Reads the decisions from `events` (one change's, in order). A change rolls out
    /// once, so every decision among them belongs to its rollout.
    pub(crate) fn of(events: &[EventRecord]) -> Interventions {
        let mut found = Interventions::default();
        for event in events {
            if event.kind == EventKind::RolloutDecision.as_str() && event.data["decision"] == "hold"
            {
                found.held = Some(held_metrics(&event.data));
            } else if event.kind == EventKind::RolloutContinued.as_str() {
                found.held = None;
                found.acknowledged.extend(held_metrics(&event.data));
            } else if event.kind == EventKind::RolloutAborted.as_str() && found.abort.is_none() {
                let reason = event.data["reason"].as_str().unwrap_or_default().to_owned();
                found.abort = Some((reason, event.actor.clone()));
            }
        }
        found
    }
}

/// The metrics a hold (or the continuation of one) names.
fn held_metrics(data: &serde_json::Value) -> Vec<String> {
    data["metrics"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m.as_str().map(str::to_owned))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use airlock_core::event::ActorKind;

    fn event(kind: EventKind, data: serde_json::Value) -> EventRecord {
        EventRecord {
            seq: 0,
            change_id: None,
            at_ms: 0,
            actor: Actor {
                kind: ActorKind::Human,
                name: "otto".to_owned(),
                token_id: None,
            },
            kind: kind.as_str().to_owned(),
            data,
        }
    }

    #[test]
    fn a_hold_is_answered_by_the_continuation_after_it() {
        let hold = |metrics: &[&str]| {
            event(
                EventKind::RolloutDecision,
                serde_json::json!({ "decision": "hold", "metrics": metrics }),
            )
        };
        let pass = event(
            EventKind::RolloutDecision,
            serde_json::json!({ "decision": "pass" }),
        );
        let go_on = |metrics: &[&str]| {
            event(
                EventKind::RolloutContinued,
                serde_json::json!({ "metrics": metrics, "reason": "known" }),
            )
        };
        assert_eq!(Interventions::of(&[]), Interventions::default());
        let held = Interventions::of(&[pass.clone(), hold(&["errors"])]);
        assert_eq!(held.held, Some(vec!["errors".to_owned()]));
        assert!(held.acknowledged.is_empty());
        let continued = Interventions::of(&[hold(&["errors"]), go_on(&["errors"]), pass]);
        assert_eq!(continued.held, None);
        assert_eq!(
            continued.acknowledged,
            BTreeSet::from(["errors".to_owned()])
        );
        // A later hold on another metric is a new question.
        let again = Interventions::of(&[
            hold(&["errors"]),
            go_on(&["errors"]),
            hold(&["slow_requests"]),
        ]);
        assert_eq!(again.held, Some(vec!["slow_requests".to_owned()]));
        let aborted = Interventions::of(&[
            hold(&["errors"]),
            event(
                EventKind::RolloutAborted,
                serde_json::json!({ "reason": "customers complain" }),
            ),
        ]);
        let (reason, by) = aborted.abort.unwrap();
        assert_eq!(
            (reason.as_str(), by.name.as_str()),
            ("customers complain", "otto")
        );
    }
}
