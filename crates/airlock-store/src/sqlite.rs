//! The embedded store: one SQLite file in WAL mode with `synchronous = FULL`, so a
//! verdict that was reported is a verdict that survives a power cut.
//!
//! SQLite serializes writers. Every write transaction here starts with its write
//! statement, so a transaction never holds a read lock while waiting to upgrade it (the
//! classic SQLITE_BUSY deadlock of deferred transactions).

use std::borrow::Cow;
use std::fmt;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use airlock_core::change::{ChangeState, StepRecord, Verdict};
use airlock_core::event::NewEvent;
use airlock_core::ids::{ChangeId, Role, TokenId};
use sqlx::migrate::{Migration, MigrationSource, MigrationType, Migrator};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use sqlx::{Row, SqlitePool};
use tokio::sync::oneshot;

use airlock_core::event::Actor;
use airlock_core::review::TrackRecord;

use crate::{
    AgentActivity, ChangeDetail, ChangeRecord, Claim, Conclusion, DeploymentRecord,
    DeploymentUpdate, EventRecord, FenceCheck, NewChange, NewRevision, OpenReview, Pause,
    PolicyDecision, PostReviewOpen, PostReviewRecord, ReviewAction, ReviewRecorded, SlaMark,
    StableVersion, SteadyState, Store, StoreError, TokenRecord, Urgency,
};

/// Migrations are compiled into the binary: a deployed airlock never depends on files
/// next to it.
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "initial",
        include_str!("../migrations/sqlite/0001_initial.sql"),
    ),
    (
        2,
        "review",
        include_str!("../migrations/sqlite/0002_review.sql"),
    ),
    (
        3,
        "deploy",
        include_str!("../migrations/sqlite/0003_deploy.sql"),
    ),
    (
        4,
        "drift",
        include_str!("../migrations/sqlite/0004_drift.sql"),
    ),
    (
        5,
        "agent indexes",
        include_str!("../migrations/sqlite/0005_agent_indexes.sql"),
    ),
];

#[derive(Debug)]
struct EmbeddedMigrations;

impl<'s> MigrationSource<'s> for EmbeddedMigrations {
    fn resolve(
        self,
    ) -> Pin<
        Box<
            dyn Future<Output = Result<Vec<Migration>, Box<dyn std::error::Error + Send + Sync>>>
                + Send
                + 's,
        >,
    > {
        let migrations = MIGRATIONS
            .iter()
            .map(|(version, name, sql)| {
                Migration::new(
                    *version,
                    Cow::Borrowed(*name),
                    MigrationType::Simple,
                    Cow::Borrowed(*sql),
                    false,
                )
            })
            .collect();
        Box::pin(async move { Ok(migrations) })
    }
}

/// Two pools on one file: reads never wait for a writer (WAL), and writes queue here, in
/// order, for the one connection that writes.
///
/// SQLite admits one writer at a time. With writers on several connections, the losers
/// of each race got `SQLITE_BUSY` and slept in SQLite's busy handler (1, 2, 5, 10 ms...)
/// however soon the lock was free again: intake latency in the hundreds of milliseconds
/// under load. Queuing for a single writing connection makes each write wait only for
/// the transactions ahead of it. The busy timeout still covers other processes (the CLI).
#[derive(Clone)]
pub struct SqliteStore {
    /// Reads only (autocommit `SELECT`s).
    reader: SqlitePool,
    /// Every statement that writes, and every transaction; one connection.
    writer: SqlitePool,
    /// Proposals waiting to be written together.
    intake: Arc<IntakeQueue>,
}

impl fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteStore").finish_non_exhaustive()
    }
}

/// Connections for reads: enough that status reads do not queue behind one another on a
/// few cores; each is a thread of its own.
const READ_CONNECTIONS: u32 = 4;

const CHANGE_COLUMNS: &str = "id, seq, revision, state, title, description, agent, base_commit, target_branch, \
     source, files, lines_added, lines_removed, verdict, attempts, created_at_ms, updated_at_ms, \
     urgency, obligations, policy_sha256";

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and applies pending migrations.
    pub async fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        // A connection to a local file does not go stale: the ping sqlx sends before
        // handing one out by default would be one more round trip to the connection's
        // thread for every query.
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .test_before_acquire(false)
            .connect_with(options.clone())
            .await?;
        Migrator::new(EmbeddedMigrations)
            .await?
            .run(&writer)
            .await?;
        let reader = SqlitePoolOptions::new()
            .max_connections(READ_CONNECTIONS)
            .test_before_acquire(false)
            .connect_with(options)
            .await?;
        Ok(SqliteStore {
            reader,
            writer,
            intake: Arc::default(),
        })
    }

    pub async fn close(&self) {
        self.reader.close().await;
        self.writer.close().await;
    }

    /// Leases the oldest change in one of `states` (an SQL list of constants) that no
    /// live lease holds, applying `also` (constant SQL assignments) in the same update.
    /// Sets (when not set yet) or lifts the pause in the `controls` row `name`, with its
    /// event; false when nothing changed.
    async fn set_control_pause(
        &self,
        name: &str,
        pause: Option<&Pause>,
        event: &NewEvent,
    ) -> Result<bool, StoreError> {
        let mut tx = self.writer.begin().await?;
        let changed = match pause {
            Some(pause) => {
                sqlx::query("INSERT OR IGNORE INTO controls (name, value) VALUES (?, ?)")
                    .bind(name)
                    .bind(to_json(pause))
                    .execute(&mut *tx)
                    .await?
                    .rows_affected()
            }
            None => sqlx::query("DELETE FROM controls WHERE name = ?")
                .bind(name)
                .execute(&mut *tx)
                .await?
                .rows_affected(),
        } == 1;
        if changed {
            insert_event(&mut tx, event).await?;
            tx.commit().await?;
        }
        Ok(changed)
    }

    async fn claim_oldest(
        &self,
        states: &'static str,
        also: &'static str,
        worker: &str,
        now_ms: i64,
        lease_ms: i64,
    ) -> Result<Option<ChangeRecord>, StoreError> {
        let mut conn = self.writer.acquire().await?;
        claim_oldest(&mut conn, states, also, worker, now_ms, lease_ms).await
    }
}

async fn claim_oldest(
    conn: &mut sqlx::SqliteConnection,
    states: &'static str,
    also: &'static str,
    worker: &str,
    now_ms: i64,
    lease_ms: i64,
) -> Result<Option<ChangeRecord>, StoreError> {
    {
        let row = sqlx::query(&format!(
            "UPDATE changes SET lease_owner = ?1, lease_expires_ms = ?2, {also}updated_at_ms = ?3 \
             WHERE seq = (SELECT seq FROM changes WHERE state IN {states} \
                          AND (lease_expires_ms IS NULL OR lease_expires_ms < ?3) ORDER BY seq LIMIT 1) \
             RETURNING {CHANGE_COLUMNS}"
        ))
        .bind(worker)
        .bind(now_ms.saturating_add(lease_ms))
        .bind(now_ms)
        .fetch_optional(conn)
        .await?;
        row.as_ref().map(change_from_row).transpose()
    }
}

fn corrupt(what: &'static str) -> impl Fn(String) -> StoreError {
    move |detail| StoreError::Corrupt { what, detail }
}

fn json<T: serde::de::DeserializeOwned>(text: &str, what: &'static str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt {
        what,
        detail: e.to_string(),
    })
}

fn to_json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("airlock's own types always serialize")
}

fn token_from_row(row: &SqliteRow) -> Result<TokenRecord, StoreError> {
    Ok(TokenRecord {
        id: row
            .try_get::<String, _>("id")?
            .parse()
            .map_err(corrupt("token id"))?,
        name: row.try_get("name")?,
        role: Role::from_str(&row.try_get::<String, _>("role")?).map_err(corrupt("token role"))?,
        owner: row.try_get("owner")?,
        groups: json(&row.try_get::<String, _>("groups")?, "token groups")?,
        secret_sha256: row.try_get("secret_sha256")?,
        created_at_ms: row.try_get("created_at_ms")?,
        revoked_at_ms: row.try_get("revoked_at_ms")?,
    })
}

fn change_from_row(row: &SqliteRow) -> Result<ChangeRecord, StoreError> {
    let verdict: Option<String> = row.try_get("verdict")?;
    let urgency: Option<String> = row.try_get("urgency")?;
    let obligations: Option<String> = row.try_get("obligations")?;
    Ok(ChangeRecord {
        id: row
            .try_get::<String, _>("id")?
            .parse()
            .map_err(corrupt("change id"))?,
        seq: row.try_get("seq")?,
        revision: row.try_get("revision")?,
        state: row
            .try_get::<String, _>("state")?
            .parse()
            .map_err(corrupt("change state"))?,
        title: row.try_get("title")?,
        description: row.try_get("description")?,
        agent: json(&row.try_get::<String, _>("agent")?, "change agent")?,
        base_commit: row.try_get("base_commit")?,
        target_branch: row.try_get("target_branch")?,
        source: json(&row.try_get::<String, _>("source")?, "change source")?,
        files: json(&row.try_get::<String, _>("files")?, "change files")?,
        lines_added: row.try_get("lines_added")?,
        lines_removed: row.try_get("lines_removed")?,
        verdict: verdict.map(|v| json(&v, "verdict")).transpose()?,
        attempts: row.try_get("attempts")?,
        created_at_ms: row.try_get("created_at_ms")?,
        updated_at_ms: row.try_get("updated_at_ms")?,
        urgency: urgency.map(|u| json(&u, "urgency")).transpose()?,
        obligations: obligations.map(|o| json(&o, "obligations")).transpose()?,
        policy_sha256: row.try_get("policy_sha256")?,
    })
}

const DEPLOYMENT_COLUMNS: &str = "d.change_id, d.target, c.deploy_seq, d.fence, d.previous_commit, \
     d.commit_id, d.step, d.revert_commit, d.rollback_reason, d.rollback_by, d.updated_at_ms";

fn deployment_from_row(row: &SqliteRow) -> Result<DeploymentRecord, StoreError> {
    let rollback_by: Option<String> = row.try_get("rollback_by")?;
    Ok(DeploymentRecord {
        change_id: row
            .try_get::<String, _>("change_id")?
            .parse()
            .map_err(corrupt("change id"))?,
        target: row.try_get("target")?,
        deploy_seq: row.try_get("deploy_seq")?,
        fence: row.try_get("fence")?,
        previous_commit: row.try_get("previous_commit")?,
        commit_id: row.try_get("commit_id")?,
        step: row.try_get("step")?,
        revert_commit: row.try_get("revert_commit")?,
        rollback_reason: row.try_get("rollback_reason")?,
        rollback_by: rollback_by
            .map(|a| json::<Actor>(&a, "rollback actor"))
            .transpose()?,
        updated_at_ms: row.try_get("updated_at_ms")?,
    })
}

/// Moves a change from `from` to `to` if it is still there and leased to `holder`,
/// writing `verdict` when given. Leaving the leased states also drops the lease.
async fn move_leased(
    conn: &mut sqlx::SqliteConnection,
    id: &ChangeId,
    holder: &str,
    from: ChangeState,
    to: ChangeState,
    verdict: Option<&Verdict>,
    at_ms: i64,
) -> Result<bool, StoreError> {
    let release = !to.is_leased();
    let moved = sqlx::query(
        "UPDATE changes SET state = ?, verdict = COALESCE(?, verdict), updated_at_ms = ?, \
         lease_owner = CASE WHEN ? THEN NULL ELSE lease_owner END, \
         lease_expires_ms = CASE WHEN ? THEN NULL ELSE lease_expires_ms END \
         WHERE id = ? AND state = ? AND lease_owner = ?",
    )
    .bind(to.as_str())
    .bind(verdict.map(to_json))
    .bind(at_ms)
    .bind(release)
    .bind(release)
    .bind(id.as_str())
    .bind(from.as_str())
    .bind(holder)
    .execute(&mut *conn)
    .await?
    .rows_affected()
        == 1;
    Ok(moved)
}

async fn upsert_stable(
    conn: &mut sqlx::SqliteConnection,
    stable: &StableVersion,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO targets (target, stable_commit, stable_change, updated_at_ms) VALUES (?1, ?2, ?3, ?4) \
         ON CONFLICT (target) DO UPDATE SET stable_commit = ?2, stable_change = ?3, updated_at_ms = ?4",
    )
    .bind(&stable.target)
    .bind(&stable.commit)
    .bind(stable.change_id.as_ref().map(|c| c.as_str().to_owned()))
    .bind(stable.updated_at_ms)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

async fn insert_events(
    conn: &mut sqlx::SqliteConnection,
    events: &[NewEvent],
) -> Result<(), StoreError> {
    for event in events {
        insert_event(&mut *conn, event).await?;
    }
    Ok(())
}

async fn open_post_review(
    conn: &mut sqlx::SqliteConnection,
    id: &ChangeId,
    post: &PostReviewOpen,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO post_reviews (change_id, reason, opened_by, opened_at_ms, due_at_ms) VALUES (?, ?, ?, ?, ?)",
    )
    .bind(id.as_str())
    .bind(&post.reason)
    .bind(to_json(&post.opened_by))
    .bind(post.opened_at_ms)
    .bind(post.due_at_ms)
    .execute(conn)
    .await?;
    Ok(())
}

fn post_review_from_row(row: &SqliteRow) -> Result<PostReviewRecord, StoreError> {
    let completed_by: Option<String> = row.try_get("completed_by")?;
    Ok(PostReviewRecord {
        change_id: row
            .try_get::<String, _>("change_id")?
            .parse()
            .map_err(corrupt("post-review change id"))?,
        reason: row.try_get("reason")?,
        opened_by: json(
            &row.try_get::<String, _>("opened_by")?,
            "post-review opener",
        )?,
        opened_at_ms: row.try_get("opened_at_ms")?,
        due_at_ms: row.try_get("due_at_ms")?,
        overdue_at_ms: row.try_get("overdue_at_ms")?,
        completed_by: completed_by
            .map(|a| json::<Actor>(&a, "post-review completer"))
            .transpose()?,
        completed_at_ms: row.try_get("completed_at_ms")?,
        comment: row.try_get("comment")?,
    })
}

/// The `controls` rows of targets paused on their own are named this and the target.
const TARGET_PAUSE_PREFIX: &str = "pause:";

/// Changes of an agent in these states are in flight (counted against its limit).
const IN_FLIGHT: &str =
    "('queued', 'checking', 'checks_passed', 'awaiting_review', 'changes_requested')";

async fn insert_event(
    conn: &mut sqlx::SqliteConnection,
    event: &NewEvent,
) -> Result<(), StoreError> {
    sqlx::query("INSERT INTO events (change_id, at_ms, actor, kind, data) VALUES (?, ?, ?, ?, ?)")
        .bind(event.change_id.as_ref().map(|id| id.as_str()))
        .bind(event.at_ms)
        .bind(to_json(&event.actor))
        .bind(event.kind.as_str())
        .bind(to_json(&event.data))
        .execute(conn)
        .await?;
    Ok(())
}

/// Settles the policy stage on a change `worker` holds in `checks_passed` (see
/// [`Store::settle_policy`]); false, writing nothing, when it is no longer there.
async fn settle_policy(
    conn: &mut sqlx::SqliteConnection,
    id: &ChangeId,
    worker: &str,
    revision: i64,
    decision: &PolicyDecision,
    events: &[NewEvent],
) -> Result<bool, StoreError> {
    let at_ms = events.first().map_or(0, |e| e.at_ms);
    {
        let moved = sqlx::query(

            "UPDATE changes SET state = ?, verdict = COALESCE(?, verdict), obligations = ?, policy_sha256 = ?, \
             updated_at_ms = ?, lease_owner = NULL, lease_expires_ms = NULL \
             WHERE id = ? AND state = 'checks_passed' AND lease_owner = ? AND revision = ?",
        )
        .bind(decision.to.as_str())
        .bind(decision.verdict.as_ref().map(to_json))
        .bind(decision.obligations.as_ref().map(to_json))
        .bind(&decision.policy_sha256)
        .bind(at_ms)
        .bind(id.as_str())
        .bind(worker)
        .bind(revision)
        .execute(&mut *conn)
        .await?
        .rows_affected()
            == 1;
        if !moved {
            return Ok(false);
        }
        if let Some(clock) = &decision.review {
            sqlx::query(
                "INSERT INTO reviews (change_id, revision, requested_at_ms, remind_at_ms, escalate_at_ms, expire_at_ms) \
                 VALUES (?, ?, ?, ?, ?, ?)",
            )
            .bind(id.as_str())
            .bind(revision)
            .bind(clock.requested_at_ms)
            .bind(clock.remind_at_ms)
            .bind(clock.escalate_at_ms)
            .bind(clock.expire_at_ms)
            .execute(&mut *conn)
            .await?;
        }
        if let Some(post) = &decision.post_review {
            open_post_review(&mut *conn, id, post).await?;
        }
        insert_events(conn, events).await?;
        Ok(true)
    }
}

fn check_policy_move(from: ChangeState, decision: &PolicyDecision) -> Result<(), StoreError> {
    if from.can_become(decision.to) {
        Ok(())
    } else {
        Err(StoreError::Conflict(format!(
            "the policy cannot move a change to {}",
            decision.to
        )))
    }
}

/// Records a finished step if `worker` still holds the change in `checking` and the step
/// is not recorded yet; its event goes with it. The lease check and the insert are one
/// statement: a worker whose lease expired cannot record a result another worker may
/// already be producing.
async fn insert_step(
    conn: &mut sqlx::SqliteConnection,
    id: &ChangeId,
    worker: &str,
    revision: i64,
    step: &StepRecord,
    event: &NewEvent,
) -> Result<bool, StoreError> {
    let inserted = sqlx::query(
        "INSERT OR IGNORE INTO steps (change_id, revision, idx, record) \
         SELECT id, ?, ?, ? FROM changes WHERE id = ? AND lease_owner = ? AND state = 'checking'",
    )
    .bind(revision)
    .bind(step.index as i64)
    .bind(to_json(step))
    .bind(id.as_str())
    .bind(worker)
    .execute(&mut *conn)
    .await?
    .rows_affected()
        == 1;
    if inserted {
        insert_event(conn, event).await?;
    }
    Ok(inserted)
}

/// Proposals waiting for the writing connection. See [`SqliteStore::insert_change`]
/// (through the [`Store`] trait) and [`write_proposals`].
///
/// Group commit: a proposal is answered only once its transaction committed with
/// `synchronous = FULL`, and an fsync costs far more than the rows. Written one
/// transaction each, concurrent proposals queued behind one another's fsyncs (about 600
/// per second at best, and 32 waiting clients saw 50 ms each); written together, N
/// waiting proposals cost one fsync, and nothing is answered before it is durable.
#[derive(Default)]
struct IntakeQueue {
    waiting: Mutex<Vec<PendingInsert>>,
    next_ticket: AtomicU64,
}

/// Most proposals written in one transaction, so that one batch never holds the
/// writing connection long.
const MAX_PROPOSALS_PER_COMMIT: usize = 256;

impl IntakeQueue {
    fn waiting(&self) -> std::sync::MutexGuard<'_, Vec<PendingInsert>> {
        // Each update is one push, drain or retain: consistent after any panic.
        self.waiting.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The oldest waiting proposals, at most [`MAX_PROPOSALS_PER_COMMIT`]. The others'
    /// callers are still queued for the connection and take them later.
    fn take_batch(&self) -> Vec<PendingInsert> {
        let mut waiting = self.waiting();
        let count = waiting.len().min(MAX_PROPOSALS_PER_COMMIT);
        waiting.drain(..count).collect()
    }
}

/// A proposal waiting to be written, and where its caller waits for the outcome.
struct PendingInsert {
    ticket: u64,
    change: NewChange,
    events: Vec<NewEvent>,
    done: oneshot::Sender<Result<(), StoreError>>,
}

fn answered(
    answer: Result<Result<(), StoreError>, oneshot::error::RecvError>,
) -> Result<(), StoreError> {
    answer.unwrap_or_else(|_| {
        Err(StoreError::Conflict(
            "the transaction writing the proposal was abandoned (airlock is stopping?)".to_owned(),
        ))
    })
}

/// Writes a batch of proposals in one transaction and answers each caller once it
/// committed. A caller that has gone away is skipped, as if it had never asked. When
/// the transaction fails, each proposal is tried again alone, so that one bad proposal
/// fails by itself and no caller is told "stored" about a row that is not.
async fn write_proposals(
    mut connection: sqlx::pool::PoolConnection<sqlx::Sqlite>,
    batch: Vec<PendingInsert>,
) {
    let batch: Vec<PendingInsert> = batch.into_iter().filter(|p| !p.done.is_closed()).collect();
    if batch.is_empty() {
        return;
    }
    let together = async {
        let mut tx = sqlx::Connection::begin(&mut *connection).await?;
        insert_proposals(&mut tx, &batch).await?;
        tx.commit().await?;
        Ok::<(), StoreError>(())
    }
    .await;
    match together {
        Ok(()) => {
            for proposal in batch {
                let _ = proposal.done.send(Ok(()));
            }
        }
        Err(error) if batch.len() == 1 => {
            if let Some(proposal) = batch.into_iter().next() {
                let _ = proposal.done.send(Err(error));
            }
        }
        Err(_) => {
            for proposal in batch {
                let alone = async {
                    let mut tx = sqlx::Connection::begin(&mut *connection).await?;
                    insert_proposals(&mut tx, std::slice::from_ref(&proposal)).await?;
                    tx.commit().await?;
                    Ok::<(), StoreError>(())
                }
                .await;
                let _ = proposal.done.send(alone);
            }
        }
    }
}

/// Rows per multi-row `INSERT` when a batch of proposals is written. Each statement is a
/// round trip to the connection's thread, which under load costs more than the rows
/// (a batch of six took 2.4 ms before its commit, one statement per row); a bounded
/// number of rows keeps the distinct statement texts, each prepared once, few.
const ROWS_PER_INSERT: usize = 16;

/// The rows of proposals: their changes, then their events in order.
async fn insert_proposals(
    conn: &mut sqlx::SqliteConnection,
    proposals: &[PendingInsert],
) -> Result<(), StoreError> {
    for chunk in proposals.chunks(ROWS_PER_INSERT) {
        let rows = vec!["(?, 1, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"; chunk.len()].join(", ");
        let sql = format!(
            "INSERT INTO changes (id, revision, state, title, description, agent, base_commit, target_branch, source, \
             diff, files, lines_added, lines_removed, created_at_ms, updated_at_ms, urgency) VALUES {rows}"
        );
        let mut query = sqlx::query(&sql);
        for PendingInsert { change, .. } in chunk {
            query = query
                .bind(change.id.as_str())
                .bind(ChangeState::Queued.as_str())
                .bind(&change.title)
                .bind(&change.description)
                .bind(to_json(&change.agent))
                .bind(&change.base_commit)
                .bind(&change.target_branch)
                .bind(to_json(&change.source))
                .bind(&change.diff)
                .bind(to_json(&change.files))
                .bind(change.lines_added as i64)
                .bind(change.lines_removed as i64)
                .bind(change.created_at_ms)
                .bind(change.created_at_ms)
                .bind(change.urgency.as_ref().map(to_json));
        }
        query.execute(&mut *conn).await?;
    }
    let events: Vec<&NewEvent> = proposals.iter().flat_map(|p| &p.events).collect();
    for chunk in events.chunks(ROWS_PER_INSERT) {
        let rows = vec!["(?, ?, ?, ?, ?)"; chunk.len()].join(", ");
        let sql = format!("INSERT INTO events (change_id, at_ms, actor, kind, data) VALUES {rows}");
        let mut query = sqlx::query(&sql);
        for event in chunk {
            query = query
                .bind(event.change_id.as_ref().map(|id| id.as_str()))
                .bind(event.at_ms)
                .bind(to_json(&event.actor))
                .bind(event.kind.as_str())
                .bind(to_json(&event.data));
        }
        query.execute(&mut *conn).await?;
    }
    Ok(())
}

impl Store for SqliteStore {
    async fn insert_token(&self, token: &TokenRecord, event: &NewEvent) -> Result<(), StoreError> {
        let mut tx = self.writer.begin().await?;
        sqlx::query(
            "INSERT INTO tokens (id, name, role, owner, groups, secret_sha256, created_at_ms, revoked_at_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(token.id.as_str())
        .bind(&token.name)
        .bind(token.role.as_str())
        .bind(&token.owner)
        .bind(to_json(&token.groups))
        .bind(&token.secret_sha256)
        .bind(token.created_at_ms)
        .bind(token.revoked_at_ms)
        .execute(&mut *tx)
        .await?;
        insert_event(&mut tx, event).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn token_by_secret_hash(
        &self,
        secret_sha256: &str,
    ) -> Result<Option<TokenRecord>, StoreError> {
        let row = sqlx::query("SELECT * FROM tokens WHERE secret_sha256 = ?")
            .bind(secret_sha256)
            .fetch_optional(&self.reader)
            .await?;
        row.as_ref().map(token_from_row).transpose()
    }

    async fn list_tokens(&self) -> Result<Vec<TokenRecord>, StoreError> {
        let rows = sqlx::query("SELECT * FROM tokens ORDER BY created_at_ms, id")
            .fetch_all(&self.reader)
            .await?;
        rows.iter().map(token_from_row).collect()
    }

    async fn revoke_token(&self, id: &TokenId, event: &NewEvent) -> Result<bool, StoreError> {
        let mut tx = self.writer.begin().await?;
        let done = sqlx::query(
            "UPDATE tokens SET revoked_at_ms = ? WHERE id = ? AND revoked_at_ms IS NULL",
        )
        .bind(event.at_ms)
        .bind(id.as_str())
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if done {
            insert_event(&mut tx, event).await?;
        }
        tx.commit().await?;
        Ok(done)
    }

    async fn insert_change(
        &self,
        change: &NewChange,
        events: &[NewEvent],
    ) -> Result<(), StoreError> {
        let ticket = self.intake.next_ticket.fetch_add(1, Ordering::Relaxed);
        let (done, mut answer) = oneshot::channel();
        self.intake.waiting().push(PendingInsert {
            ticket,
            change: change.clone(),
            events: events.to_vec(),
            done,
        });
        // Whoever holds the writing connection next writes every proposal waiting by
        // then; the queue for it is fair, so that is this call or one queued before it.
        let connection = tokio::select! {
            answer = &mut answer => return answered(answer),
            connection = self.writer.acquire() => connection,
        };
        let connection = match connection {
            Ok(connection) => connection,
            Err(error) => {
                // Nobody else may write it once this call has said it failed.
                self.intake.waiting().retain(|p| p.ticket != ticket);
                return Err(error.into());
            }
        };
        let batch = self.intake.take_batch();
        if batch.is_empty() {
            // Written by an earlier holder, which answered before letting go.
            drop(connection);
        } else {
            // On a task of its own, so that a caller that goes away (its client hung up)
            // cannot cut short the batch of the others.
            tokio::spawn(write_proposals(connection, batch));
        }
        answered(answer.await)
    }

    async fn change(&self, id: &ChangeId) -> Result<Option<ChangeRecord>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {CHANGE_COLUMNS} FROM changes WHERE id = ?"
        ))
        .bind(id.as_str())
        .fetch_optional(&self.reader)
        .await?;
        row.as_ref().map(change_from_row).transpose()
    }

    async fn change_detail(&self, id: &ChangeId) -> Result<Option<ChangeDetail>, StoreError> {
        // The steps and review actions come as JSON arrays built by SQLite: one round
        // trip to the connection's thread instead of one per table.
        let row = sqlx::query(&format!(
            "SELECT {CHANGE_COLUMNS}, \
             (SELECT json_group_array(json(record) ORDER BY idx) FROM steps \
              WHERE change_id = changes.id AND revision = changes.revision) AS step_records, \
             (SELECT json_group_array(json_object('revision', revision, 'verdict', verdict, \
              'reviewer', json(reviewer), 'comment', comment, 'at_ms', at_ms) ORDER BY seq) \
              FROM review_actions WHERE change_id = changes.id) AS review_action_records, \
             EXISTS (SELECT 1 FROM deployments WHERE change_id = changes.id) AS deployed \
             FROM changes WHERE id = ?"
        ))
        .bind(id.as_str())
        .fetch_optional(&self.reader)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let change = change_from_row(&row)?;
        let steps = json(&row.try_get::<String, _>("step_records")?, "step records")?;
        let review_actions = json(
            &row.try_get::<String, _>("review_action_records")?,
            "review actions",
        )?;
        // Rare (only changes that reached the deployment queue), so asked only then.
        let deployment = if row.try_get::<bool, _>("deployed")? {
            self.deployment(id).await?
        } else {
            None
        };
        Ok(Some(ChangeDetail {
            change,
            steps,
            review_actions,
            deployment,
        }))
    }

    async fn change_diff(&self, id: &ChangeId) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(sqlx::query_scalar("SELECT diff FROM changes WHERE id = ?")
            .bind(id.as_str())
            .fetch_optional(&self.reader)
            .await?)
    }

    async fn list_changes(
        &self,
        state: Option<ChangeState>,
        limit: u32,
    ) -> Result<Vec<ChangeRecord>, StoreError> {
        let rows =
            match state {
                Some(state) => sqlx::query(&format!(
                    "SELECT {CHANGE_COLUMNS} FROM changes WHERE state = ? ORDER BY seq DESC LIMIT ?"
                ))
                .bind(state.as_str())
                .bind(limit)
                .fetch_all(&self.reader)
                .await?,
                None => {
                    sqlx::query(&format!(
                        "SELECT {CHANGE_COLUMNS} FROM changes ORDER BY seq DESC LIMIT ?"
                    ))
                    .bind(limit)
                    .fetch_all(&self.reader)
                    .await?
                }
            };
        rows.iter().map(change_from_row).collect()
    }

    async fn claim_next(
        &self,
        worker: &str,
        now_ms: i64,
        lease_ms: i64,
        started: impl FnOnce(&ChangeRecord) -> NewEvent + Send,
    ) -> Result<Option<Claim>, StoreError> {
        let mut tx = self.writer.begin().await?;
        // Level 1 counts attempts: a change that keeps crashing a worker ends as failed.
        let Some(mut change) = claim_oldest(
            &mut tx,
            "('queued', 'checking', 'checks_passed')",
            "attempts = attempts + 1, ",
            worker,
            now_ms,
            lease_ms,
        )
        .await?
        else {
            return Ok(None);
        };
        let start = change.state == ChangeState::Queued;
        if start {
            let event = started(&change);
            let (from, to) = (ChangeState::Queued, ChangeState::Checking);
            if !move_leased(&mut tx, &change.id, worker, from, to, None, event.at_ms).await? {
                return Err(StoreError::Conflict(format!(
                    "{} moved while it was being claimed",
                    change.id
                )));
            }
            insert_event(&mut tx, &event).await?;
            change.state = to;
            change.updated_at_ms = event.at_ms;
        }
        tx.commit().await?;
        Ok(Some(Claim {
            change,
            started: start,
        }))
    }

    async fn renew_lease(
        &self,
        id: &ChangeId,
        worker: &str,
        expires_at_ms: i64,
    ) -> Result<bool, StoreError> {
        let result =
            sqlx::query("UPDATE changes SET lease_expires_ms = ? WHERE id = ? AND lease_owner = ?")
                .bind(expires_at_ms)
                .bind(id.as_str())
                .bind(worker)
                .execute(&self.writer)
                .await?;
        Ok(result.rows_affected() == 1)
    }

    async fn release_all_leases(&self) -> Result<u64, StoreError> {
        let result = sqlx::query("UPDATE changes SET lease_owner = NULL, lease_expires_ms = NULL WHERE lease_owner IS NOT NULL")
            .execute(&self.writer)
            .await?;
        // Fencing tokens and the admitted high-water mark stay: the next holder's token
        // is still higher than any used before.
        sqlx::query("UPDATE deploy_leases SET holder = NULL, expires_ms = NULL")
            .execute(&self.writer)
            .await?;
        Ok(result.rows_affected())
    }

    async fn transition(
        &self,
        id: &ChangeId,
        worker: &str,
        from: ChangeState,
        to: ChangeState,
        verdict: Option<&Verdict>,
        event: &NewEvent,
    ) -> Result<bool, StoreError> {
        if !from.can_become(to) {
            return Err(StoreError::Conflict(format!(
                "a change cannot go from {from} to {to}"
            )));
        }
        let mut tx = self.writer.begin().await?;
        let moved = move_leased(&mut tx, id, worker, from, to, verdict, event.at_ms).await?;
        if moved {
            insert_event(&mut tx, event).await?;
        }
        tx.commit().await?;
        Ok(moved)
    }

    async fn record_step(
        &self,
        id: &ChangeId,
        worker: &str,
        revision: i64,
        step: &StepRecord,
        event: &NewEvent,
    ) -> Result<bool, StoreError> {
        let mut tx = self.writer.begin().await?;
        let inserted = insert_step(&mut tx, id, worker, revision, step, event).await?;
        tx.commit().await?;
        Ok(inserted)
    }

    async fn steps(&self, id: &ChangeId, revision: i64) -> Result<Vec<StepRecord>, StoreError> {
        let rows: Vec<String> = sqlx::query_scalar(
            "SELECT record FROM steps WHERE change_id = ? AND revision = ? ORDER BY idx",
        )
        .bind(id.as_str())
        .bind(revision)
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(|r| json(r, "step record")).collect()
    }

    async fn append_event(&self, event: &NewEvent) -> Result<(), StoreError> {
        let mut conn = self.writer.acquire().await?;
        insert_event(&mut conn, event).await
    }

    async fn conclude_checks(
        &self,
        id: &ChangeId,
        worker: &str,
        revision: i64,
        from: ChangeState,
        conclusion: &Conclusion<'_>,
    ) -> Result<bool, StoreError> {
        let to = conclusion.verdict.state();
        if !from.can_become(to) {
            return Err(StoreError::Conflict(format!(
                "a change cannot go from {from} to {to}"
            )));
        }
        if let Some((decision, _)) = conclusion.policy {
            check_policy_move(to, decision)?;
        }
        let mut tx = self.writer.begin().await?;
        if let Some((step, event)) = conclusion.last_step {
            // Already recorded (by an earlier attempt that lost its verdict) is fine.
            insert_step(&mut tx, id, worker, revision, step, event).await?;
        }
        let event = conclusion.verdict_event;
        let verdict = Some(conclusion.verdict);
        if !move_leased(&mut tx, id, worker, from, to, verdict, event.at_ms).await? {
            return Ok(false);
        }
        insert_event(&mut tx, event).await?;
        if let Some((decision, events)) = conclusion.policy
            && !settle_policy(&mut tx, id, worker, revision, decision, events).await?
        {
            return Ok(false);
        }
        tx.commit().await?;
        Ok(true)
    }

    async fn settle_policy(
        &self,
        id: &ChangeId,
        worker: &str,
        revision: i64,
        decision: &PolicyDecision,
        events: &[NewEvent],
    ) -> Result<bool, StoreError> {
        check_policy_move(ChangeState::ChecksPassed, decision)?;
        let mut tx = self.writer.begin().await?;
        let settled = settle_policy(&mut tx, id, worker, revision, decision, events).await?;
        if settled {
            tx.commit().await?;
        }
        Ok(settled)
    }

    async fn record_review(
        &self,
        id: &ChangeId,
        from: ChangeState,
        approvals_seen: usize,
        action: &ReviewAction,
        to: Option<(ChangeState, Option<&Verdict>)>,
        events: &[NewEvent],
    ) -> Result<ReviewRecorded, StoreError> {
        if let Some((to, _)) = to
            && !from.can_become(to)
        {
            return Err(StoreError::Conflict(format!(
                "a review cannot move a change from {from} to {to}"
            )));
        }
        let (to_state, verdict) = match to {
            Some((state, verdict)) => (state, verdict),
            None => (from, None),
        };
        let mut tx = self.writer.begin().await?;
        // The compare-and-set: same state, same revision, and the approvals the caller
        // counted are all there is. Two concurrent approvals cannot both miss each other.
        let current = sqlx::query(
            "UPDATE changes SET state = ?, verdict = COALESCE(?, verdict), updated_at_ms = ? \
             WHERE id = ? AND state = ? AND revision = ? \
             AND (SELECT count(*) FROM review_actions r WHERE r.change_id = changes.id \
                  AND r.revision = changes.revision AND r.verdict = 'approve') = ?",
        )
        .bind(to_state.as_str())
        .bind(verdict.map(to_json))
        .bind(action.at_ms)
        .bind(id.as_str())
        .bind(from.as_str())
        .bind(action.revision)
        .bind(approvals_seen as i64)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if !current {
            return Ok(ReviewRecorded::Stale);
        }
        let inserted = sqlx::query(
            "INSERT OR IGNORE INTO review_actions (change_id, revision, verdict, reviewer_name, reviewer, comment, at_ms) \
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(id.as_str())
        .bind(action.revision)
        .bind(action.verdict.as_str())
        .bind(&action.reviewer.name)
        .bind(to_json(&action.reviewer))
        .bind(&action.comment)
        .bind(action.at_ms)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if !inserted {
            return Ok(ReviewRecorded::Duplicate); // The transaction rolls back on drop.
        }
        insert_events(&mut tx, events).await?;
        tx.commit().await?;
        Ok(ReviewRecorded::Recorded)
    }

    async fn review_actions(&self, id: &ChangeId) -> Result<Vec<ReviewAction>, StoreError> {
        let rows = sqlx::query(
            "SELECT revision, verdict, reviewer, comment, at_ms FROM review_actions WHERE change_id = ? ORDER BY seq",
        )
        .bind(id.as_str())
        .fetch_all(&self.reader)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(ReviewAction {
                    revision: row.try_get("revision")?,
                    verdict: json(
                        &format!("\"{}\"", row.try_get::<String, _>("verdict")?),
                        "review verdict",
                    )?,
                    reviewer: json(&row.try_get::<String, _>("reviewer")?, "reviewer")?,
                    comment: row.try_get("comment")?,
                    at_ms: row.try_get("at_ms")?,
                })
            })
            .collect()
    }

    async fn revise_change(
        &self,
        id: &ChangeId,
        expected_revision: i64,
        revision: &NewRevision,
        event: &NewEvent,
    ) -> Result<bool, StoreError> {
        let mut tx = self.writer.begin().await?;
        let kept = sqlx::query(
            "INSERT INTO revisions (change_id, revision, base_commit, source, diff, files, lines_added, lines_removed, replaced_at_ms) \
             SELECT id, revision, base_commit, source, diff, files, lines_added, lines_removed, ? FROM changes \
             WHERE id = ? AND revision = ? AND state IN ('awaiting_review', 'changes_requested')",
        )
        .bind(revision.at_ms)
        .bind(id.as_str())
        .bind(expected_revision)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if !kept {
            return Ok(false);
        }
        sqlx::query(
            "UPDATE changes SET revision = revision + 1, state = 'queued', base_commit = ?, source = ?, diff = ?, \
             files = ?, lines_added = ?, lines_removed = ?, verdict = NULL, obligations = NULL, policy_sha256 = NULL, \
             attempts = 0, lease_owner = NULL, lease_expires_ms = NULL, updated_at_ms = ? WHERE id = ?",
        )
        .bind(&revision.base_commit)
        .bind(to_json(&revision.source))
        .bind(&revision.diff)
        .bind(to_json(&revision.files))
        .bind(revision.lines_added as i64)
        .bind(revision.lines_removed as i64)
        .bind(revision.at_ms)
        .bind(id.as_str())
        .execute(&mut *tx)
        .await?;
        insert_event(&mut tx, event).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn break_glass(
        &self,
        id: &ChangeId,
        from: ChangeState,
        urgency: &Urgency,
        to: Option<ChangeState>,
        post_review: Option<&PostReviewOpen>,
        events: &[NewEvent],
    ) -> Result<bool, StoreError> {
        let to = to.unwrap_or(from);
        if to != from && !from.can_become(to) {
            return Err(StoreError::Conflict(format!(
                "break-glass cannot move a change from {from} to {to}"
            )));
        }
        let mut tx = self.writer.begin().await?;
        let marked = sqlx::query(
            "UPDATE changes SET urgency = ?, state = ?, updated_at_ms = ? \
             WHERE id = ? AND state = ? AND urgency IS NULL",
        )
        .bind(to_json(urgency))
        .bind(to.as_str())
        .bind(urgency.at_ms)
        .bind(id.as_str())
        .bind(from.as_str())
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if !marked {
            return Ok(false);
        }
        if let Some(post) = post_review {
            open_post_review(&mut tx, id, post).await?;
        }
        insert_events(&mut tx, events).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn open_reviews(&self) -> Result<Vec<OpenReview>, StoreError> {
        let rows = sqlx::query(
            "SELECT r.* FROM reviews r JOIN changes c ON c.id = r.change_id AND c.revision = r.revision \
             WHERE c.state = 'awaiting_review' ORDER BY r.requested_at_ms",
        )
        .fetch_all(&self.reader)
        .await?;
        rows.iter()
            .map(|row| {
                let reminded: Option<i64> = row.try_get("reminded_at_ms")?;
                let escalated: Option<i64> = row.try_get("escalated_at_ms")?;
                Ok(OpenReview {
                    change_id: row
                        .try_get::<String, _>("change_id")?
                        .parse()
                        .map_err(corrupt("review change id"))?,
                    revision: row.try_get("revision")?,
                    clock: airlock_core::review::ReviewClock {
                        requested_at_ms: row.try_get("requested_at_ms")?,
                        remind_at_ms: row.try_get("remind_at_ms")?,
                        escalate_at_ms: row.try_get("escalate_at_ms")?,
                        expire_at_ms: row.try_get("expire_at_ms")?,
                    },
                    reminded: reminded.is_some(),
                    escalated: escalated.is_some(),
                })
            })
            .collect()
    }

    async fn mark_review_deadline(
        &self,
        id: &ChangeId,
        revision: i64,
        mark: &SlaMark,
        event: &NewEvent,
    ) -> Result<bool, StoreError> {
        let mut tx = self.writer.begin().await?;
        let still_open = "EXISTS (SELECT 1 FROM changes c WHERE c.id = reviews.change_id \
             AND c.revision = reviews.revision AND c.state = 'awaiting_review')";
        let done = match mark {
            SlaMark::Reminder | SlaMark::Escalation => {
                let column = if *mark == SlaMark::Reminder {
                    "reminded_at_ms"
                } else {
                    "escalated_at_ms"
                };
                sqlx::query(&format!(
                    "UPDATE reviews SET {column} = ? WHERE change_id = ? AND revision = ? \
                     AND {column} IS NULL AND {still_open}"
                ))
                .bind(event.at_ms)
                .bind(id.as_str())
                .bind(revision)
                .execute(&mut *tx)
                .await?
                .rows_affected()
                    == 1
            }
            SlaMark::Expiry(verdict) => {
                sqlx::query(
                    "UPDATE changes SET state = 'expired', verdict = ?, updated_at_ms = ? \
                     WHERE id = ? AND revision = ? AND state = 'awaiting_review'",
                )
                .bind(to_json(verdict))
                .bind(event.at_ms)
                .bind(id.as_str())
                .bind(revision)
                .execute(&mut *tx)
                .await?
                .rows_affected()
                    == 1
            }
        };
        if done {
            insert_event(&mut tx, event).await?;
            tx.commit().await?;
        }
        Ok(done)
    }

    async fn post_reviews(&self) -> Result<Vec<PostReviewRecord>, StoreError> {
        let rows = sqlx::query("SELECT * FROM post_reviews ORDER BY due_at_ms, change_id")
            .fetch_all(&self.reader)
            .await?;
        rows.iter().map(post_review_from_row).collect()
    }

    async fn complete_post_review(
        &self,
        id: &ChangeId,
        by: &Actor,
        comment: &str,
        event: &NewEvent,
    ) -> Result<bool, StoreError> {
        let mut tx = self.writer.begin().await?;
        let done = sqlx::query(
            "UPDATE post_reviews SET completed_by = ?, completed_at_ms = ?, comment = ? \
             WHERE change_id = ? AND completed_at_ms IS NULL",
        )
        .bind(to_json(by))
        .bind(event.at_ms)
        .bind(comment)
        .bind(id.as_str())
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if done {
            insert_event(&mut tx, event).await?;
            tx.commit().await?;
        }
        Ok(done)
    }

    async fn mark_post_review_overdue(
        &self,
        id: &ChangeId,
        event: &NewEvent,
    ) -> Result<bool, StoreError> {
        let mut tx = self.writer.begin().await?;
        let done = sqlx::query(
            "UPDATE post_reviews SET overdue_at_ms = ? \
             WHERE change_id = ? AND completed_at_ms IS NULL AND overdue_at_ms IS NULL",
        )
        .bind(event.at_ms)
        .bind(id.as_str())
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if done {
            insert_event(&mut tx, event).await?;
            tx.commit().await?;
        }
        Ok(done)
    }

    async fn set_pause(&self, pause: Option<&Pause>, event: &NewEvent) -> Result<bool, StoreError> {
        self.set_control_pause("pause", pause, event).await
    }

    async fn pause(&self) -> Result<Option<Pause>, StoreError> {
        let value: Option<String> =
            sqlx::query_scalar("SELECT value FROM controls WHERE name = 'pause'")
                .fetch_optional(&self.reader)
                .await?;
        value.map(|v| json(&v, "pause")).transpose()
    }

    async fn set_target_pause(
        &self,
        target: &str,
        pause: Option<&Pause>,
        event: &NewEvent,
    ) -> Result<bool, StoreError> {
        // Beside the kill switch's row: 'pause' is global, 'pause:TARGET' one target's.
        let name = format!("{TARGET_PAUSE_PREFIX}{target}");
        self.set_control_pause(&name, pause, event).await
    }

    async fn target_pauses(&self) -> Result<Vec<(String, Pause)>, StoreError> {
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT name, value FROM controls WHERE substr(name, 1, length(?1)) = ?1 ORDER BY name",
        )
        .bind(TARGET_PAUSE_PREFIX)
        .fetch_all(&self.reader)
        .await?;
        rows.into_iter()
            .map(|(name, value)| {
                let target = name[TARGET_PAUSE_PREFIX.len()..].to_owned();
                Ok((target, json(&value, "pause")?))
            })
            .collect()
    }

    async fn agent_activity(
        &self,
        agent: &str,
        since_ms: i64,
    ) -> Result<AgentActivity, StoreError> {
        // One statement: intake runs this for every proposal, and each round trip to the
        // connection's thread costs more than these index lookups.
        let row = sqlx::query(&format!(
            "SELECT \
             (SELECT count(*) FROM changes WHERE state IN {IN_FLIGHT} \
              AND json_extract(agent, '$.name') = ?1) AS in_flight, \
             (SELECT count(*) FROM events WHERE kind IN ('change.proposed', 'change.revised') \
              AND at_ms >= ?2 AND json_extract(actor, '$.name') = ?1) AS proposals, \
             (SELECT min(at_ms) FROM events WHERE kind IN ('change.proposed', 'change.revised') \
              AND at_ms >= ?2 AND json_extract(actor, '$.name') = ?1) AS oldest"
        ))
        .bind(agent)
        .bind(since_ms)
        .fetch_one(&self.reader)
        .await?;
        Ok(AgentActivity {
            in_flight: row.try_get::<i64, _>("in_flight")? as u64,
            proposals: row.try_get::<i64, _>("proposals")? as u64,
            oldest_proposal_ms: row.try_get("oldest")?,
        })
    }

    async fn track_record(&self, agent: &str) -> Result<TrackRecord, StoreError> {
        let rows = sqlx::query(
            "SELECT state, count(*) AS n FROM changes WHERE json_extract(agent, '$.name') = ? GROUP BY state",
        )
        .bind(agent)
        .fetch_all(&self.reader)
        .await?;
        let mut record = TrackRecord::default();
        for row in &rows {
            let n = row.try_get::<i64, _>("n")? as u64;
            record.proposed += n;
            match row.try_get::<String, _>("state")?.as_str() {
                "approved" | "staging" | "deploy_queued" | "deploying" | "deployed"
                | "rolling_back" | "rollback_escalated" => record.approved += n,
                "rolled_back" => {
                    record.approved += n;
                    record.rolled_back += n;
                }
                "rejected" => record.rejected += n,
                "failed" => record.failed += n,
                "expired" => record.expired += n,
                _ => {}
            }
        }
        Ok(record)
    }

    async fn claim_for_staging(
        &self,
        worker: &str,
        now_ms: i64,
        lease_ms: i64,
    ) -> Result<Option<ChangeRecord>, StoreError> {
        self.claim_oldest("('approved', 'staging')", "", worker, now_ms, lease_ms)
            .await
    }

    async fn enqueue_deploy(
        &self,
        id: &ChangeId,
        worker: &str,
        from: ChangeState,
        target: &str,
        event: &NewEvent,
    ) -> Result<bool, StoreError> {
        if !from.can_become(ChangeState::DeployQueued) {
            return Err(StoreError::Conflict(format!(
                "a change cannot go from {from} to deploy_queued"
            )));
        }
        let mut tx = self.writer.begin().await?;
        let moved = sqlx::query(
            "UPDATE changes SET state = 'deploy_queued', updated_at_ms = ?1, lease_owner = NULL, lease_expires_ms = NULL, \
             deploy_seq = (SELECT COALESCE(MAX(deploy_seq), 0) + 1 FROM changes) \
             WHERE id = ?2 AND state = ?3 AND (?3 = 'approved' OR lease_owner = ?4)",
        )
        .bind(event.at_ms)
        .bind(id.as_str())
        .bind(from.as_str())
        .bind(worker)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if moved {
            sqlx::query(
                "INSERT INTO deployments (change_id, target, updated_at_ms) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (change_id) DO UPDATE SET target = ?2, fence = NULL, previous_commit = NULL, \
                 commit_id = NULL, step = -1, revert_commit = NULL, rollback_reason = NULL, \
                 rollback_by = NULL, updated_at_ms = ?3",
            )
            .bind(id.as_str())
            .bind(target)
            .bind(event.at_ms)
            .execute(&mut *tx)
            .await?;
            insert_event(&mut tx, event).await?;
            tx.commit().await?;
        }
        Ok(moved)
    }

    async fn acquire_deploy_lease(
        &self,
        target: &str,
        holder: &str,
        now_ms: i64,
        lease_ms: i64,
    ) -> Result<Option<i64>, StoreError> {
        let mut tx = self.writer.begin().await?;
        sqlx::query("INSERT OR IGNORE INTO deploy_leases (target) VALUES (?)")
            .bind(target)
            .execute(&mut *tx)
            .await?;
        let token: Option<i64> = sqlx::query_scalar(
            "UPDATE deploy_leases SET holder = ?1, token = token + 1, expires_ms = ?2 \
             WHERE target = ?3 AND (holder IS NULL OR expires_ms IS NULL OR expires_ms < ?4) \
             RETURNING token",
        )
        .bind(holder)
        .bind(now_ms.saturating_add(lease_ms))
        .bind(target)
        .bind(now_ms)
        .fetch_optional(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(token)
    }

    async fn renew_deploy_lease(
        &self,
        target: &str,
        holder: &str,
        token: i64,
        expires_at_ms: i64,
    ) -> Result<bool, StoreError> {
        let result = sqlx::query(
            "UPDATE deploy_leases SET expires_ms = ? WHERE target = ? AND holder = ? AND token = ?",
        )
        .bind(expires_at_ms)
        .bind(target)
        .bind(holder)
        .bind(token)
        .execute(&self.writer)
        .await?;
        Ok(result.rows_affected() == 1)
    }

    async fn release_deploy_lease(
        &self,
        target: &str,
        holder: &str,
        token: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE deploy_leases SET holder = NULL, expires_ms = NULL WHERE target = ? AND holder = ? AND token = ?",
        )
        .bind(target)
        .bind(holder)
        .bind(token)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn admit_fence(&self, target: &str, token: i64) -> Result<FenceCheck, StoreError> {
        let result = sqlx::query(
            "UPDATE deploy_leases SET admitted = ?1 WHERE target = ?2 AND token = ?1 AND admitted <= ?1",
        )
        .bind(token)
        .bind(target)
        .execute(&self.writer)
        .await?;
        if result.rows_affected() == 1 {
            return Ok(FenceCheck::Admitted);
        }
        let current: Option<i64> =
            sqlx::query_scalar("SELECT token FROM deploy_leases WHERE target = ?")
                .bind(target)
                .fetch_optional(&self.reader)
                .await?;
        Ok(FenceCheck::Stale {
            current: current.unwrap_or(0),
        })
    }

    async fn deploy_queue(
        &self,
        target: &str,
    ) -> Result<Vec<(ChangeRecord, DeploymentRecord)>, StoreError> {
        let change_columns: String = CHANGE_COLUMNS
            .split(", ")
            .map(|column| format!("c.{column}"))
            .collect::<Vec<_>>()
            .join(", ");
        let rows = sqlx::query(&format!(
            "SELECT {change_columns}, {DEPLOYMENT_COLUMNS} FROM changes c JOIN deployments d ON d.change_id = c.id \
             WHERE d.target = ? AND c.state IN ('rolling_back', 'deploying', 'deploy_queued') \
             ORDER BY CASE c.state WHEN 'rolling_back' THEN 0 WHEN 'deploying' THEN 1 ELSE 2 END, c.deploy_seq"
        ))
        .bind(target)
        .fetch_all(&self.reader)
        .await?;
        rows.iter()
            .map(|row| Ok((change_from_row(row)?, deployment_from_row(row)?)))
            .collect()
    }

    async fn take_deployment(
        &self,
        id: &ChangeId,
        from: ChangeState,
        to: ChangeState,
        holder: &str,
        token: i64,
        event: &NewEvent,
    ) -> Result<bool, StoreError> {
        if from != to && !from.can_become(to) {
            return Err(StoreError::Conflict(format!(
                "a change cannot go from {from} to {to}"
            )));
        }
        let mut tx = self.writer.begin().await?;
        let moved = sqlx::query(
            "UPDATE changes SET state = ?1, lease_owner = ?2, lease_expires_ms = NULL, updated_at_ms = ?3 \
             WHERE id = ?4 AND state = ?5",
        )
        .bind(to.as_str())
        .bind(holder)
        .bind(event.at_ms)
        .bind(id.as_str())
        .bind(from.as_str())
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if moved {
            sqlx::query("UPDATE deployments SET fence = ?, updated_at_ms = ? WHERE change_id = ?")
                .bind(token)
                .bind(event.at_ms)
                .bind(id.as_str())
                .execute(&mut *tx)
                .await?;
            insert_event(&mut tx, event).await?;
            tx.commit().await?;
        }
        Ok(moved)
    }

    async fn update_deployment(
        &self,
        id: &ChangeId,
        holder: &str,
        update: &DeploymentUpdate,
        event: &NewEvent,
    ) -> Result<bool, StoreError> {
        let mut tx = self.writer.begin().await?;
        let updated = sqlx::query(
            "UPDATE deployments SET previous_commit = COALESCE(?1, previous_commit), \
             commit_id = COALESCE(?2, commit_id), step = COALESCE(?3, step), \
             revert_commit = COALESCE(?4, revert_commit), rollback_reason = COALESCE(?5, rollback_reason), \
             rollback_by = COALESCE(?6, rollback_by), updated_at_ms = ?7 \
             WHERE change_id = ?8 AND EXISTS (SELECT 1 FROM changes WHERE id = ?8 AND lease_owner = ?9 \
                                              AND state IN ('deploying', 'rolling_back'))",
        )
        .bind(&update.previous_commit)
        .bind(&update.commit_id)
        .bind(update.step)
        .bind(&update.revert_commit)
        .bind(&update.rollback_reason)
        .bind(update.rollback_by.as_ref().map(to_json))
        .bind(event.at_ms)
        .bind(id.as_str())
        .bind(holder)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if updated {
            insert_event(&mut tx, event).await?;
            tx.commit().await?;
        }
        Ok(updated)
    }

    async fn deployment(&self, id: &ChangeId) -> Result<Option<DeploymentRecord>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {DEPLOYMENT_COLUMNS} FROM deployments d JOIN changes c ON c.id = d.change_id WHERE d.change_id = ?"
        ))
        .bind(id.as_str())
        .fetch_optional(&self.reader)
        .await?;
        row.as_ref().map(deployment_from_row).transpose()
    }

    async fn finish_deployment(
        &self,
        id: &ChangeId,
        holder: &str,
        from: ChangeState,
        to: ChangeState,
        verdict: Option<&Verdict>,
        stable: Option<&StableVersion>,
        event: &NewEvent,
    ) -> Result<bool, StoreError> {
        if !from.can_become(to) {
            return Err(StoreError::Conflict(format!(
                "a change cannot go from {from} to {to}"
            )));
        }
        let mut tx = self.writer.begin().await?;
        let moved = move_leased(&mut tx, id, holder, from, to, verdict, event.at_ms).await?;
        if moved {
            if let Some(stable) = stable {
                upsert_stable(&mut tx, stable).await?;
            }
            insert_event(&mut tx, event).await?;
            tx.commit().await?;
        }
        Ok(moved)
    }

    async fn record_steady_state(&self, state: &SteadyState) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO steady_states (target, change_id, completed_ms, requests, errors, p99_ms, \
             before_requests, before_errors, before_p99_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&state.target)
        .bind(state.change_id.as_str())
        .bind(state.completed_ms)
        .bind(state.requests)
        .bind(state.errors)
        .bind(state.p99_ms)
        .bind(state.before_requests)
        .bind(state.before_errors)
        .bind(state.before_p99_ms)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn steady_states(
        &self,
        target: &str,
        limit: u32,
    ) -> Result<Vec<SteadyState>, StoreError> {
        let rows = sqlx::query(
            "SELECT target, change_id, completed_ms, requests, errors, p99_ms, before_requests, \
             before_errors, before_p99_ms FROM steady_states WHERE target = ? ORDER BY seq DESC LIMIT ?",
        )
        .bind(target)
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
        .await?;
        rows.iter()
            .map(|row| {
                let change: String = row.try_get("change_id")?;
                Ok(SteadyState {
                    target: row.try_get("target")?,
                    change_id: change.parse().map_err(corrupt("change id"))?,
                    completed_ms: row.try_get("completed_ms")?,
                    requests: row.try_get("requests")?,
                    errors: row.try_get("errors")?,
                    p99_ms: row.try_get("p99_ms")?,
                    before_requests: row.try_get("before_requests")?,
                    before_errors: row.try_get("before_errors")?,
                    before_p99_ms: row.try_get("before_p99_ms")?,
                })
            })
            .collect()
    }

    async fn stable_version(&self, target: &str) -> Result<Option<StableVersion>, StoreError> {
        let row = sqlx::query(
            "SELECT target, stable_commit, stable_change, updated_at_ms FROM targets WHERE target = ?",
        )
        .bind(target)
        .fetch_optional(&self.reader)
        .await?;
        row.map(|row| {
            let change: Option<String> = row.try_get("stable_change")?;
            Ok(StableVersion {
                target: row.try_get("target")?,
                commit: row.try_get("stable_commit")?,
                change_id: change
                    .map(|c| c.parse().map_err(corrupt("change id")))
                    .transpose()?,
                updated_at_ms: row.try_get("updated_at_ms")?,
            })
        })
        .transpose()
    }

    async fn init_stable_version(
        &self,
        stable: &StableVersion,
        event: &NewEvent,
    ) -> Result<bool, StoreError> {
        let mut tx = self.writer.begin().await?;
        let inserted = sqlx::query(
            "INSERT OR IGNORE INTO targets (target, stable_commit, stable_change, updated_at_ms) VALUES (?, ?, ?, ?)",
        )
        .bind(&stable.target)
        .bind(&stable.commit)
        .bind(stable.change_id.as_ref().map(|c| c.as_str().to_owned()))
        .bind(stable.updated_at_ms)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if inserted {
            insert_event(&mut tx, event).await?;
            tx.commit().await?;
        }
        Ok(inserted)
    }

    async fn request_rollback(
        &self,
        id: &ChangeId,
        from: ChangeState,
        reason: &str,
        by: &Actor,
        event: &NewEvent,
    ) -> Result<bool, StoreError> {
        if !from.can_become(ChangeState::RollingBack) {
            return Err(StoreError::Conflict(format!(
                "a change cannot go from {from} to rolling_back"
            )));
        }
        let mut tx = self.writer.begin().await?;
        let moved = sqlx::query(
            "UPDATE changes SET state = 'rolling_back', lease_owner = NULL, lease_expires_ms = NULL, updated_at_ms = ? \
             WHERE id = ? AND state = ?",
        )
        .bind(event.at_ms)
        .bind(id.as_str())
        .bind(from.as_str())
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if moved {
            sqlx::query(
                "UPDATE deployments SET rollback_reason = ?, rollback_by = ?, updated_at_ms = ? WHERE change_id = ?",
            )
            .bind(reason)
            .bind(to_json(by))
            .bind(event.at_ms)
            .bind(id.as_str())
            .execute(&mut *tx)
            .await?;
            insert_event(&mut tx, event).await?;
            tx.commit().await?;
        }
        Ok(moved)
    }

    async fn events(&self, change: Option<&ChangeId>) -> Result<Vec<EventRecord>, StoreError> {
        let rows = match change {
            Some(id) => {
                sqlx::query("SELECT * FROM events WHERE change_id = ? ORDER BY seq")
                    .bind(id.as_str())
                    .fetch_all(&self.reader)
                    .await?
            }
            None => {
                sqlx::query("SELECT * FROM events ORDER BY seq")
                    .fetch_all(&self.reader)
                    .await?
            }
        };
        rows.iter().map(event_record).collect()
    }

    async fn events_after(&self, seq: i64, limit: u32) -> Result<Vec<EventRecord>, StoreError> {
        let rows = sqlx::query("SELECT * FROM events WHERE seq > ? ORDER BY seq LIMIT ?")
            .bind(seq)
            .bind(i64::from(limit))
            .fetch_all(&self.reader)
            .await?;
        rows.iter().map(event_record).collect()
    }
}

fn event_record(row: &sqlx::sqlite::SqliteRow) -> Result<EventRecord, StoreError> {
    let change_id: Option<String> = row.try_get("change_id")?;
    Ok(EventRecord {
        seq: row.try_get("seq")?,
        change_id: change_id
            .map(|id| id.parse())
            .transpose()
            .map_err(corrupt("event change id"))?,
        at_ms: row.try_get("at_ms")?,
        actor: json(&row.try_get::<String, _>("actor")?, "event actor")?,
        kind: row.try_get("kind")?,
        data: json(&row.try_get::<String, _>("data")?, "event data")?,
    })
}
