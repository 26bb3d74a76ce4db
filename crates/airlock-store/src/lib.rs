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

    /// Stores a new change in `queued` with its `change.proposed` event.
    fn insert_change(
        &self,
        change: &NewChange,
        event: &NewEvent,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    fn change(
        &self,
        id: &ChangeId,
    ) -> impl Future<Output = Result<Option<ChangeRecord>, StoreError>> + Send;
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

    /// Claims the oldest change that still needs Level 1 work (`queued`, or `checking`
    /// with no live lease), leases it to `worker` until `now_ms + lease_ms` and counts the
    /// attempt. None when there is nothing to do.
    fn claim_next(
        &self,
        worker: &str,
        now_ms: i64,
        lease_ms: i64,
    ) -> impl Future<Output = Result<Option<ChangeRecord>, StoreError>> + Send;
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
    /// Events in order; of one change, or all when `change` is None.
    fn events(
        &self,
        change: Option<&ChangeId>,
    ) -> impl Future<Output = Result<Vec<EventRecord>, StoreError>> + Send;
}
