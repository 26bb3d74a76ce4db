//! The SQLite store against a real database file: claims, leases, compare-and-set
//! transitions, once-only step results, and the append-only history.

use airlock_core::change::{
    ChangeState, SourceForm, StepRecord, StepStatus, Verdict, VerdictOutcome,
};
use airlock_core::event::{Actor, ActorKind, EventKind, NewEvent};
use airlock_core::ids::{ChangeId, Role, TokenId};
use airlock_store::{ChangeRecord, FenceCheck, NewChange, SqliteStore, Store, TokenRecord};

fn event(change: Option<&ChangeId>, kind: EventKind) -> NewEvent {
    NewEvent {
        change_id: change.cloned(),
        at_ms: 1_000,
        actor: Actor::system("test"),
        kind,
        data: serde_json::json!({}),
    }
}

/// The `checks.started` event a claim writes when it starts a queued change.
fn started(change: &ChangeRecord) -> NewEvent {
    event(Some(&change.id), EventKind::ChecksStarted)
}

fn new_change(n: u8) -> NewChange {
    NewChange {
        id: ChangeId::from_bytes([n; 16]),
        title: format!("change {n}"),
        description: String::new(),
        agent: Actor {
            kind: ActorKind::Agent,
            name: "bot".into(),
            token_id: None,
        },
        base_commit: "0".repeat(40),
        target_branch: "main".into(),
        source: SourceForm::Diff,
        diff: b"diff".to_vec(),
        files: vec![],
        lines_added: 1,
        lines_removed: 0,
        created_at_ms: n as i64,
        urgency: None,
    }
}

fn step(index: usize) -> StepRecord {
    StepRecord {
        index,
        name: format!("step{index}"),
        status: StepStatus::Passed,
        exit_code: Some(0),
        signal: None,
        timed_out: false,
        duration_ms: 1,
        output: String::new(),
        output_total_bytes: 0,
        isolation: "none".into(),
        reason: None,
        findings: Vec::new(),
    }
}

async fn open() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("airlock.db"))
        .await
        .unwrap();
    (dir, store)
}

#[tokio::test]
async fn claims_oldest_first_and_respects_leases() {
    let (_dir, store) = open().await;
    for n in [1, 2] {
        let change = new_change(n);
        store
            .insert_change(
                &change,
                &[event(Some(&change.id), EventKind::ChangeProposed)],
            )
            .await
            .unwrap();
    }
    let first = store
        .claim_next("w1", 10_000, 5_000, started)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.change.id, ChangeId::from_bytes([1; 16]));
    assert_eq!(first.change.attempts, 1);
    // The claim started it: `checking`, with its event, in the same transaction.
    assert!(first.started);
    assert_eq!(first.change.state, ChangeState::Checking);
    assert_eq!(
        store.change(&first.change.id).await.unwrap().unwrap().state,
        ChangeState::Checking
    );
    let second = store
        .claim_next("w2", 10_000, 5_000, started)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(second.change.id, ChangeId::from_bytes([2; 16]));
    assert!(
        store
            .claim_next("w3", 10_000, 5_000, started)
            .await
            .unwrap()
            .is_none(),
        "both are leased"
    );
    // w1's lease expires: another worker may take its change over, and resumes it.
    let taken = store
        .claim_next("w3", 15_001, 5_000, started)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(taken.change.id, first.change.id);
    assert_eq!(taken.change.attempts, 2);
    assert!(!taken.started, "a change in `checking` resumes");
    let first = first.change;
    let kinds: Vec<String> = store
        .events(Some(&first.id))
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(kinds, ["change.proposed", "checks.started"], "started once");
    // w1 no longer holds it: its transition is refused.
    let moved = store
        .transition(
            &first.id,
            "w1",
            ChangeState::Checking,
            ChangeState::ChecksPassed,
            None,
            &event(Some(&first.id), EventKind::ChecksPassed),
        )
        .await
        .unwrap();
    assert!(!moved);
    assert!(!store.renew_lease(&first.id, "w1", 99_999).await.unwrap());
    assert!(store.renew_lease(&first.id, "w3", 99_999).await.unwrap());
    assert_eq!(store.release_all_leases().await.unwrap(), 2);
}

#[tokio::test]
async fn transitions_are_compare_and_set_and_final_states_release() {
    let (_dir, store) = open().await;
    let change = new_change(7);
    let id = change.id.clone();
    store
        .insert_change(&change, &[event(Some(&id), EventKind::ChangeProposed)])
        .await
        .unwrap();
    let claim = store
        .claim_next("w", 0, 60_000, started)
        .await
        .unwrap()
        .unwrap();
    assert!(claim.started);
    let started_event = event(Some(&id), EventKind::ChecksStarted);
    assert!(
        !store
            .transition(
                &id,
                "w",
                ChangeState::Queued,
                ChangeState::Checking,
                None,
                &started_event
            )
            .await
            .unwrap()
    );
    assert!(
        store
            .transition(
                &id,
                "w",
                ChangeState::Queued,
                ChangeState::ChecksPassed,
                None,
                &started_event
            )
            .await
            .is_err()
    );

    let record = async |worker: &str, index: usize| {
        let finished = event(Some(&id), EventKind::CheckStepFinished);
        store
            .record_step(&id, worker, 1, &step(index), &finished)
            .await
            .unwrap()
    };
    assert!(record("w", 0).await);
    assert!(!record("w", 0).await, "a step is recorded once");
    assert!(!record("other", 1).await, "only the lease holder records");
    assert_eq!(store.steps(&id, 1).await.unwrap(), vec![step(0)]);

    let verdict = Verdict {
        outcome: VerdictOutcome::Passed,
        summary: "ok".into(),
        failed_step: None,
        exit_code: None,
        duration_ms: None,
        output_excerpt: None,
        isolation: None,
    };
    let passed = event(Some(&id), EventKind::ChecksPassed);
    assert!(
        store
            .transition(
                &id,
                "w",
                ChangeState::Checking,
                ChangeState::ChecksPassed,
                Some(&verdict),
                &passed
            )
            .await
            .unwrap()
    );
    let record = store.change(&id).await.unwrap().unwrap();
    assert_eq!(record.state, ChangeState::ChecksPassed);
    assert_eq!(record.verdict, Some(verdict));
    assert!(
        store
            .claim_next("w", 0, 60_000, started)
            .await
            .unwrap()
            .is_none(),
        "final changes are never claimed"
    );

    let kinds: Vec<String> = store
        .events(Some(&id))
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(
        kinds,
        [
            "change.proposed",
            "checks.started",
            "checks.step_finished",
            "checks.passed"
        ]
    );
    assert_eq!(
        store
            .list_changes(Some(ChangeState::ChecksPassed), 10)
            .await
            .unwrap()
            .len(),
        1
    );
    assert!(
        store
            .list_changes(Some(ChangeState::Queued), 10)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn history_cannot_be_rewritten() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("airlock.db");
    let store = SqliteStore::open(&path).await.unwrap();
    let change = new_change(3);
    store
        .insert_change(
            &change,
            &[event(Some(&change.id), EventKind::ChangeProposed)],
        )
        .await
        .unwrap();
    store.close().await;

    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    for statement in ["UPDATE events SET kind = 'forged'", "DELETE FROM events"] {
        let error = sqlx::query(statement).execute(&pool).await.unwrap_err();
        assert!(
            error.to_string().contains("append-only"),
            "{statement}: {error}"
        );
    }
}

#[tokio::test]
async fn tokens_store_only_a_hash_and_revoke_once() {
    let (_dir, store) = open().await;
    let token = TokenRecord {
        id: TokenId::from_bytes([1, 2, 3, 4, 5, 6]),
        name: "bot".into(),
        role: Role::Agent,
        owner: Some("alice".into()),
        groups: vec![],
        secret_sha256: "ab".repeat(32),
        created_at_ms: 5,
        revoked_at_ms: None,
    };
    store
        .insert_token(&token, &event(None, EventKind::TokenCreated))
        .await
        .unwrap();
    assert_eq!(
        store.token_by_secret_hash(&"ab".repeat(32)).await.unwrap(),
        Some(token.clone())
    );
    assert_eq!(
        store.token_by_secret_hash(&"cd".repeat(32)).await.unwrap(),
        None
    );
    assert!(
        store
            .revoke_token(&token.id, &event(None, EventKind::TokenRevoked))
            .await
            .unwrap()
    );
    assert!(
        !store
            .revoke_token(&token.id, &event(None, EventKind::TokenRevoked))
            .await
            .unwrap()
    );
    assert_eq!(
        store.list_tokens().await.unwrap()[0].revoked_at_ms,
        Some(1_000)
    );
}

fn reviewer(name: &str) -> airlock_core::review::Reviewer {
    airlock_core::review::Reviewer {
        name: name.into(),
        token_id: TokenId::from_bytes([9; 6]),
        role: Role::Reviewer,
        groups: vec!["@payments".into()],
    }
}

/// Drives one change to `awaiting_review` as a worker would.
async fn awaiting_review(store: &SqliteStore, change: &NewChange) {
    store
        .insert_change(
            change,
            &[event(Some(&change.id), EventKind::ChangeProposed)],
        )
        .await
        .unwrap();
    store
        .claim_next("w", 0, 60_000, started)
        .await
        .unwrap()
        .unwrap();
    for (from, to) in [(ChangeState::Checking, ChangeState::ChecksPassed)] {
        assert!(
            store
                .transition(
                    &change.id,
                    "w",
                    from,
                    to,
                    None,
                    &event(Some(&change.id), EventKind::ChecksStarted)
                )
                .await
                .unwrap()
        );
    }
    let obligations = airlock_core::review::Obligations::from_policy(
        &serde_json::json!({"risk": "medium", "approvals": {"count": 2}}),
        &[],
    )
    .unwrap();
    let decision = airlock_store::PolicyDecision {
        to: ChangeState::AwaitingReview,
        verdict: None,
        obligations: Some(obligations),
        policy_sha256: "p".repeat(64),
        review: Some(airlock_core::review::ReviewClock::start(
            0,
            std::time::Duration::from_secs(3600),
            None,
        )),
        post_review: None,
    };
    // Only the lease holder settles, and only once.
    assert!(
        !store
            .settle_policy(&change.id, "other", 1, &decision, &[])
            .await
            .unwrap()
    );
    assert!(
        store
            .settle_policy(
                &change.id,
                "w",
                1,
                &decision,
                &[event(Some(&change.id), EventKind::ReviewRequested)]
            )
            .await
            .unwrap()
    );
    assert!(
        !store
            .settle_policy(&change.id, "w", 1, &decision, &[])
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn level_1_concludes_in_one_transaction_or_not_at_all() {
    let (_dir, store) = open().await;
    let change = new_change(9);
    let id = change.id.clone();
    store
        .insert_change(&change, &[event(Some(&id), EventKind::ChangeProposed)])
        .await
        .unwrap();
    store
        .claim_next("w", 0, 60_000, started)
        .await
        .unwrap()
        .unwrap();
    let kinds = async || -> Vec<String> {
        let events = store.events(Some(&id)).await.unwrap();
        events.into_iter().map(|e| e.kind).collect()
    };
    let verdict = |outcome| Verdict {
        outcome,
        summary: "summary".into(),
        failed_step: None,
        exit_code: None,
        duration_ms: None,
        output_excerpt: None,
        isolation: None,
    };
    let (passed, rejected) = (
        verdict(VerdictOutcome::Passed),
        verdict(VerdictOutcome::Rejected),
    );
    let decision = airlock_store::PolicyDecision {
        to: ChangeState::AwaitingReview,
        verdict: None,
        obligations: None,
        policy_sha256: "p".repeat(64),
        review: Some(airlock_core::review::ReviewClock::start(
            0,
            std::time::Duration::from_secs(3600),
            None,
        )),
        post_review: None,
    };
    let last = step(0);
    let step_event = event(Some(&id), EventKind::CheckStepFinished);
    let verdict_event = event(Some(&id), EventKind::ChecksPassed);
    let policy_events = [event(Some(&id), EventKind::ReviewRequested)];
    let conclusion = airlock_store::Conclusion {
        last_step: Some((&last, &step_event)),
        verdict: &passed,
        verdict_event: &verdict_event,
        policy: Some((&decision, &policy_events)),
    };
    let conclude = async |worker: &str, conclusion: &airlock_store::Conclusion<'_>| {
        store
            .conclude_checks(&id, worker, 1, ChangeState::Checking, conclusion)
            .await
    };

    // Not the lease holder: nothing is written, not even the step.
    assert!(!conclude("other", &conclusion).await.unwrap());
    // A policy decision after a rejection is refused before anything is written.
    let wrong = airlock_store::Conclusion {
        verdict: &rejected,
        ..conclusion
    };
    assert!(conclude("w", &wrong).await.is_err());
    assert_eq!(store.steps(&id, 1).await.unwrap(), vec![]);
    assert_eq!(kinds().await, ["change.proposed", "checks.started"]);
    assert_eq!(
        store.change(&id).await.unwrap().unwrap().state,
        ChangeState::Checking
    );

    // The holder: the step, the verdict and the policy stage, at once.
    assert!(conclude("w", &conclusion).await.unwrap());
    let record = store.change(&id).await.unwrap().unwrap();
    assert_eq!(record.state, ChangeState::AwaitingReview);
    assert_eq!(record.verdict.as_ref(), Some(&passed));
    assert_eq!(
        record.policy_sha256.as_deref(),
        Some("p".repeat(64).as_str())
    );
    assert_eq!(store.steps(&id, 1).await.unwrap(), vec![step(0)]);
    assert_eq!(store.open_reviews().await.unwrap().len(), 1);
    assert_eq!(
        kinds().await,
        [
            "change.proposed",
            "checks.started",
            "checks.step_finished",
            "checks.passed",
            "review.requested"
        ]
    );
    // Once only.
    assert!(!conclude("w", &conclusion).await.unwrap());
    assert_eq!(kinds().await.len(), 5);
}

#[tokio::test]
async fn reviews_are_compare_and_set_on_state_revision_and_approvals_seen() {
    let (_dir, store) = open().await;
    let change = new_change(7);
    awaiting_review(&store, &change).await;
    let record = store.change(&change.id).await.unwrap().unwrap();
    assert_eq!(record.state, ChangeState::AwaitingReview);
    assert_eq!(record.obligations.as_ref().unwrap().approvals, 2);
    assert_eq!(store.open_reviews().await.unwrap().len(), 1);

    let approve = |name: &str, revision| airlock_store::ReviewAction {
        revision,
        verdict: airlock_core::review::ReviewVerdict::Approve,
        reviewer: reviewer(name),
        comment: String::new(),
        at_ms: 10,
    };
    let ev = || [event(Some(&change.id), EventKind::ReviewApproved)];
    use airlock_store::ReviewRecorded::*;
    assert_eq!(
        store
            .record_review(
                &change.id,
                ChangeState::AwaitingReview,
                0,
                &approve("ann", 1),
                None,
                &ev()
            )
            .await
            .unwrap(),
        Recorded
    );
    // A decision made on a stale count of approvals is refused, as is a stale revision.
    assert_eq!(
        store
            .record_review(
                &change.id,
                ChangeState::AwaitingReview,
                0,
                &approve("bob", 1),
                None,
                &ev()
            )
            .await
            .unwrap(),
        Stale
    );
    assert_eq!(
        store
            .record_review(
                &change.id,
                ChangeState::AwaitingReview,
                1,
                &approve("bob", 2),
                None,
                &ev()
            )
            .await
            .unwrap(),
        Stale
    );
    // One human approves a revision once, whatever the caller counted.
    assert_eq!(
        store
            .record_review(
                &change.id,
                ChangeState::AwaitingReview,
                1,
                &approve("ann", 1),
                None,
                &ev()
            )
            .await
            .unwrap(),
        Duplicate
    );
    assert_eq!(
        store
            .record_review(
                &change.id,
                ChangeState::AwaitingReview,
                1,
                &approve("bob", 1),
                Some((ChangeState::Approved, None)),
                &ev()
            )
            .await
            .unwrap(),
        Recorded
    );
    assert_eq!(
        store.change(&change.id).await.unwrap().unwrap().state,
        ChangeState::Approved
    );
    let actions = store.review_actions(&change.id).await.unwrap();
    assert_eq!(
        actions
            .iter()
            .map(|a| a.reviewer.name.as_str())
            .collect::<Vec<_>>(),
        ["ann", "bob"]
    );
    // Four refused attempts wrote no event: proposed, started, passed, requested, 2 approvals.
    assert_eq!(store.events(Some(&change.id)).await.unwrap().len(), 6);
    assert!(store.open_reviews().await.unwrap().is_empty());

    let pool = sqlx::SqlitePool::connect(&format!(
        "sqlite://{}",
        _dir.path().join("airlock.db").display()
    ))
    .await
    .unwrap();
    let error = sqlx::query("UPDATE review_actions SET comment = 'forged'")
        .execute(&pool)
        .await
        .unwrap_err();
    assert!(error.to_string().contains("append-only"), "{error}");
}

#[tokio::test]
async fn a_revision_keeps_history_dismisses_the_review_and_deadlines_fire_once() {
    let (_dir, store) = open().await;
    let change = new_change(8);
    awaiting_review(&store, &change).await;
    use airlock_store::SlaMark;
    let reminder = event(Some(&change.id), EventKind::ReviewReminder);
    assert!(
        store
            .mark_review_deadline(&change.id, 1, &SlaMark::Reminder, &reminder)
            .await
            .unwrap()
    );
    assert!(
        !store
            .mark_review_deadline(&change.id, 1, &SlaMark::Reminder, &reminder)
            .await
            .unwrap()
    );
    assert!(store.open_reviews().await.unwrap()[0].reminded);

    let revision = airlock_store::NewRevision {
        base_commit: "1".repeat(40),
        source: SourceForm::Diff,
        diff: b"diff 2".to_vec(),
        files: vec![],
        lines_added: 3,
        lines_removed: 1,
        at_ms: 20,
    };
    let revised = event(Some(&change.id), EventKind::ChangeRevised);
    assert!(
        !store
            .revise_change(&change.id, 2, &revision, &revised)
            .await
            .unwrap(),
        "wrong revision"
    );
    assert!(
        store
            .revise_change(&change.id, 1, &revision, &revised)
            .await
            .unwrap()
    );
    let record = store.change(&change.id).await.unwrap().unwrap();
    assert_eq!(
        (record.revision, record.state, record.attempts),
        (2, ChangeState::Queued, 0)
    );
    assert!(record.obligations.is_none());
    assert_eq!(
        store.change_diff(&change.id).await.unwrap().unwrap(),
        b"diff 2"
    );
    // The old review no longer runs its clock.
    assert!(store.open_reviews().await.unwrap().is_empty());
    let expiry = SlaMark::Expiry(airlock_core::change::Verdict::without_step(
        airlock_core::change::VerdictOutcome::Rejected,
        "expired".into(),
    ));
    assert!(
        !store
            .mark_review_deadline(&change.id, 1, &expiry, &reminder)
            .await
            .unwrap()
    );
    assert!(
        !store
            .revise_change(&change.id, 2, &revision, &revised)
            .await
            .unwrap(),
        "queued changes take no revision"
    );
}

#[tokio::test]
async fn a_target_pauses_alone_beside_the_kill_switch() {
    let (_dir, store) = open().await;
    let pause = |reason: &str| airlock_store::Pause {
        reason: reason.into(),
        by: Actor::system("drift"),
        at_ms: 1,
    };
    let ev = event(None, EventKind::DeploymentsPaused);
    assert!(store.target_pauses().await.unwrap().is_empty());
    assert!(
        store
            .set_target_pause("production", Some(&pause("drift")), &ev)
            .await
            .unwrap()
    );
    assert!(
        !store
            .set_target_pause("production", Some(&pause("again")), &ev)
            .await
            .unwrap(),
        "already paused: the first reason stays"
    );
    assert!(
        store
            .set_target_pause("eu", Some(&pause("eu drift")), &ev)
            .await
            .unwrap()
    );
    // The kill switch is another thing: still off.
    assert_eq!(store.pause().await.unwrap(), None);
    assert_eq!(
        store.target_pauses().await.unwrap(),
        vec![
            ("eu".to_owned(), pause("eu drift")),
            ("production".to_owned(), pause("drift")),
        ]
    );
    assert!(store.set_target_pause("eu", None, &ev).await.unwrap());
    assert!(!store.set_target_pause("eu", None, &ev).await.unwrap());
    assert_eq!(
        store.target_pauses().await.unwrap(),
        vec![("production".to_owned(), pause("drift"))]
    );
    // Lifting the kill switch leaves a target's pause alone.
    assert!(!store.set_pause(None, &ev).await.unwrap());
    assert_eq!(store.target_pauses().await.unwrap().len(), 1);
    assert_eq!(
        store.events(None).await.unwrap().len(),
        3,
        "one event per change"
    );
}

#[tokio::test]
async fn the_kill_switch_and_agent_activity() {
    let (_dir, store) = open().await;
    let pause = airlock_store::Pause {
        reason: "incident".into(),
        by: Actor::system("test"),
        at_ms: 1,
    };
    let ev = event(None, EventKind::DeploymentsPaused);
    assert!(store.pause().await.unwrap().is_none());
    assert!(store.set_pause(Some(&pause), &ev).await.unwrap());
    assert!(
        !store.set_pause(Some(&pause), &ev).await.unwrap(),
        "already paused"
    );
    assert_eq!(store.pause().await.unwrap(), Some(pause));
    assert!(store.set_pause(None, &ev).await.unwrap());
    assert!(!store.set_pause(None, &ev).await.unwrap());
    assert_eq!(store.events(None).await.unwrap().len(), 2);

    for n in 1..=3 {
        let change = new_change(n);
        let mut proposed = event(Some(&change.id), EventKind::ChangeProposed);
        proposed.actor = change.agent.clone();
        proposed.at_ms = n as i64 * 1000;
        store.insert_change(&change, &[proposed]).await.unwrap();
    }
    let activity = store.agent_activity("bot", 2000).await.unwrap();
    assert_eq!(
        (
            activity.in_flight,
            activity.proposals,
            activity.oldest_proposal_ms
        ),
        (3, 2, Some(2000))
    );
    assert_eq!(store.agent_activity("other", 0).await.unwrap().in_flight, 0);
    assert_eq!(store.track_record("bot").await.unwrap().proposed, 3);
}

/// Inserts `change` and drives it to `approved` as a worker would.
async fn approved(store: &SqliteStore, change: &NewChange) {
    store
        .insert_change(
            change,
            &[event(Some(&change.id), EventKind::ChangeProposed)],
        )
        .await
        .unwrap();
    let claimed = store
        .claim_next("w", 10, 60_000, started)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(claimed.change.id, change.id);
    for (from, to) in [
        (ChangeState::Checking, ChangeState::ChecksPassed),
        (ChangeState::ChecksPassed, ChangeState::Approved),
    ] {
        assert!(
            store
                .transition(
                    &change.id,
                    "w",
                    from,
                    to,
                    None,
                    &event(Some(&change.id), EventKind::ChecksStarted)
                )
                .await
                .unwrap()
        );
    }
}

#[tokio::test]
async fn the_deploy_queue_is_first_come_first_served_under_a_fenced_lease() {
    let (_dir, store) = open().await;
    let (first, second) = (new_change(1), new_change(2));
    approved(&store, &first).await;
    approved(&store, &second).await;
    let queued = |c: &NewChange| event(Some(&c.id), EventKind::DeployQueued);

    // The second goes through staging; the first skips it but joins the queue later.
    let staging = store
        .claim_for_staging("stager", 100, 60_000)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(staging.id, first.id, "oldest approved first");
    let staging = store
        .claim_for_staging("stager", 100, 60_000)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(staging.id, second.id);
    assert!(
        store
            .claim_for_staging("stager", 100, 60_000)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .transition(
                &second.id,
                "stager",
                ChangeState::Approved,
                ChangeState::Staging,
                None,
                &queued(&second)
            )
            .await
            .unwrap()
    );
    assert!(
        !store
            .enqueue_deploy(
                &second.id,
                "someone-else",
                ChangeState::Staging,
                "production",
                &queued(&second)
            )
            .await
            .unwrap(),
        "only the stager that holds it"
    );
    assert!(
        store
            .enqueue_deploy(
                &second.id,
                "stager",
                ChangeState::Staging,
                "production",
                &queued(&second)
            )
            .await
            .unwrap()
    );
    assert!(
        store
            .enqueue_deploy(
                &first.id,
                "stager",
                ChangeState::Approved,
                "production",
                &queued(&first)
            )
            .await
            .unwrap()
    );
    let queue = store.deploy_queue("production").await.unwrap();
    let order: Vec<_> = queue.iter().map(|(c, _)| c.id.clone()).collect();
    assert_eq!(
        order,
        vec![second.id.clone(), first.id.clone()],
        "first come, first served"
    );
    assert!(store.deploy_queue("staging-only").await.unwrap().is_empty());

    // The lease: one holder at a time; every acquisition a higher fencing token.
    let token = store
        .acquire_deploy_lease("production", "a", 1_000, 500)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        store
            .acquire_deploy_lease("production", "b", 1_200, 500)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store.admit_fence("production", token).await.unwrap(),
        FenceCheck::Admitted
    );
    assert!(
        store
            .take_deployment(
                &second.id,
                ChangeState::DeployQueued,
                ChangeState::Deploying,
                "a",
                token,
                &queued(&second)
            )
            .await
            .unwrap()
    );
    // `a` stalls past its lease; `b` takes over with a higher token.
    let newer = store
        .acquire_deploy_lease("production", "b", 1_600, 500)
        .await
        .unwrap()
        .unwrap();
    assert!(newer > token);
    assert_eq!(
        store.admit_fence("production", token).await.unwrap(),
        FenceCheck::Stale { current: newer },
        "a stale holder is refused"
    );
    assert!(
        !store
            .renew_deploy_lease("production", "a", token, 9_999)
            .await
            .unwrap()
    );
    assert_eq!(
        store.admit_fence("production", newer).await.unwrap(),
        FenceCheck::Admitted
    );
    assert_eq!(
        store.admit_fence("production", token).await.unwrap(),
        FenceCheck::Stale { current: newer }
    );

    // The running deployment is resumed by the new holder, and only it records progress.
    let queue = store.deploy_queue("production").await.unwrap();
    assert_eq!(queue[0].0.state, ChangeState::Deploying);
    assert!(
        store
            .take_deployment(
                &second.id,
                ChangeState::Deploying,
                ChangeState::Deploying,
                "b",
                newer,
                &queued(&second)
            )
            .await
            .unwrap()
    );
    let update = airlock_store::DeploymentUpdate {
        commit_id: Some("c".repeat(40)),
        step: Some(0),
        ..Default::default()
    };
    assert!(
        !store
            .update_deployment(&second.id, "a", &update, &queued(&second))
            .await
            .unwrap()
    );
    assert!(
        store
            .update_deployment(&second.id, "b", &update, &queued(&second))
            .await
            .unwrap()
    );
    let deployment = store.deployment(&second.id).await.unwrap().unwrap();
    assert_eq!((deployment.fence, deployment.step), (Some(newer), 0));
    assert_eq!(
        deployment.commit_id.as_deref(),
        Some("c".repeat(40).as_str())
    );

    let stable = airlock_store::StableVersion {
        target: "production".into(),
        commit: "c".repeat(40),
        change_id: Some(second.id.clone()),
        updated_at_ms: 2_000,
    };
    assert!(
        store
            .finish_deployment(
                &second.id,
                "b",
                ChangeState::Deploying,
                ChangeState::Deployed,
                None,
                Some(&stable),
                &queued(&second)
            )
            .await
            .unwrap()
    );
    assert_eq!(
        store.stable_version("production").await.unwrap(),
        Some(stable.clone())
    );
    // A first stable version is recorded once only.
    assert!(
        !store
            .init_stable_version(&stable, &queued(&second))
            .await
            .unwrap()
    );

    // A person asks for a rollback: it goes to the front of the queue.
    let person = Actor {
        kind: ActorKind::Human,
        name: "ops".into(),
        token_id: None,
    };
    assert!(
        store
            .request_rollback(
                &second.id,
                ChangeState::Deployed,
                "errors in prod",
                &person,
                &queued(&second)
            )
            .await
            .unwrap()
    );
    let queue = store.deploy_queue("production").await.unwrap();
    assert_eq!(queue[0].0.id, second.id);
    assert_eq!(queue[0].0.state, ChangeState::RollingBack);
    assert_eq!(
        queue[0].1.rollback_reason.as_deref(),
        Some("errors in prod")
    );
    assert_eq!(queue[0].1.rollback_by.as_ref(), Some(&person));
    assert_eq!(queue[1].0.id, first.id);
    assert!(
        !store
            .request_rollback(
                &first.id,
                ChangeState::Deployed,
                "x",
                &person,
                &queued(&first)
            )
            .await
            .unwrap(),
        "only a deployed change"
    );
}

/// Proposals arriving together are written together (one transaction per batch): each
/// caller hears "stored" only for a change that is there with its events, the events
/// keep each proposal's order, a duplicate fails alone, and a status read returns the
/// change with its steps.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_proposals_are_all_stored_with_their_events() {
    let (_dir, store) = open().await;
    let proposals: Vec<NewChange> = (1..=60).map(new_change).collect();
    let mut tasks = Vec::new();
    for change in proposals.clone() {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let events = [
                event(Some(&change.id), EventKind::ChangeProposed),
                event(Some(&change.id), EventKind::BreakGlass),
            ];
            store.insert_change(&change, &events).await
        }));
    }
    // The same id again, beside them: refused, and it takes no other proposal with it.
    let duplicate = {
        let store = store.clone();
        let change = new_change(7);
        tokio::spawn(async move {
            tokio::task::yield_now().await;
            store.insert_change(&change, &[]).await
        })
    };
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    assert!(duplicate.await.unwrap().is_err(), "an id is stored once");
    for change in &proposals {
        let stored = store.change(&change.id).await.unwrap().unwrap();
        assert_eq!(stored.title, change.title);
        assert_eq!(
            store.change_diff(&change.id).await.unwrap().unwrap(),
            change.diff
        );
        let kinds: Vec<String> = store
            .events(Some(&change.id))
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.kind)
            .collect();
        assert_eq!(
            kinds,
            [
                EventKind::ChangeProposed.as_str(),
                EventKind::BreakGlass.as_str()
            ]
        );
    }
    assert_eq!(store.events(None).await.unwrap().len(), 120);

    // Which proposal was written first is up to the scheduler; the claim takes that one.
    let claim = store
        .claim_next("w1", 10_000, 5_000, started)
        .await
        .unwrap()
        .unwrap();
    let first = &claim.change.id;
    assert!(proposals.iter().any(|change| &change.id == first));
    assert!(
        store
            .record_step(
                first,
                "w1",
                1,
                &step(0),
                &event(Some(first), EventKind::CheckStepFinished)
            )
            .await
            .unwrap()
    );
    let detail = store.change_detail(first).await.unwrap().unwrap();
    assert_eq!(detail.change, store.change(first).await.unwrap().unwrap());
    assert_eq!(detail.steps, vec![step(0)]);
    assert!(detail.review_actions.is_empty());
    assert!(detail.deployment.is_none());
    assert!(
        store
            .change_detail(&ChangeId::from_bytes([200; 16]))
            .await
            .unwrap()
            .is_none()
    );
}
