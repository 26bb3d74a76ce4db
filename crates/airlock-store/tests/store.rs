//! The SQLite store against a real database file: claims, leases, compare-and-set
//! transitions, once-only step results, and the append-only history.

use airlock_core::change::{
    ChangeState, SourceForm, StepRecord, StepStatus, Verdict, VerdictOutcome,
};
use airlock_core::event::{Actor, ActorKind, EventKind, NewEvent};
use airlock_core::ids::{ChangeId, Role, TokenId};
use airlock_store::{NewChange, SqliteStore, Store, TokenRecord};

fn event(change: Option<&ChangeId>, kind: EventKind) -> NewEvent {
    NewEvent {
        change_id: change.cloned(),
        at_ms: 1_000,
        actor: Actor::system("test"),
        kind,
        data: serde_json::json!({}),
    }
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
            .insert_change(&change, &event(Some(&change.id), EventKind::ChangeProposed))
            .await
            .unwrap();
    }
    let first = store
        .claim_next("w1", 10_000, 5_000)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.id, ChangeId::from_bytes([1; 16]));
    assert_eq!(first.attempts, 1);
    let second = store
        .claim_next("w2", 10_000, 5_000)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(second.id, ChangeId::from_bytes([2; 16]));
    assert!(
        store
            .claim_next("w3", 10_000, 5_000)
            .await
            .unwrap()
            .is_none(),
        "both are leased"
    );
    // w1's lease expires: another worker may take its change over.
    let taken = store
        .claim_next("w3", 15_001, 5_000)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(taken.id, first.id);
    assert_eq!(taken.attempts, 2);
    // w1 no longer holds it: its transition is refused.
    let moved = store
        .transition(
            &first.id,
            "w1",
            ChangeState::Queued,
            ChangeState::Checking,
            None,
            &event(Some(&first.id), EventKind::ChecksStarted),
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
        .insert_change(&change, &event(Some(&id), EventKind::ChangeProposed))
        .await
        .unwrap();
    store.claim_next("w", 0, 60_000).await.unwrap().unwrap();
    let started = event(Some(&id), EventKind::ChecksStarted);
    assert!(
        store
            .transition(
                &id,
                "w",
                ChangeState::Queued,
                ChangeState::Checking,
                None,
                &started
            )
            .await
            .unwrap()
    );
    assert!(
        !store
            .transition(
                &id,
                "w",
                ChangeState::Queued,
                ChangeState::Checking,
                None,
                &started
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
                &started
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
        store.claim_next("w", 0, 60_000).await.unwrap().is_none(),
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
        .insert_change(&change, &event(Some(&change.id), EventKind::ChangeProposed))
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
