//! The HTTP API. One error type maps every failure to a status and a stable JSON body
//! `{"error":{"code","message"}}`; internal details go to the log, never to the client.

use std::sync::Arc;

use airlock_core::change::{ChangeState, ChangedFile, StepRecord};
use airlock_core::event::{Actor, ActorKind, EventKind, NewEvent};
use airlock_core::ids::{ChangeId, Role};
use airlock_core::intake::Edit;
use airlock_store::{ChangeRecord, EventRecord, NewChange, Store, TokenRecord};
use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::{Deserialize, Serialize};

use crate::intake::{AcceptError, ProposalBody, accept};
use crate::{Shared, now_ms};

pub(crate) fn router<S: Store>(shared: Arc<Shared<S>>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/v1/changes", get(list_changes::<S>).post(propose::<S>))
        .route("/v1/changes/{id}", get(get_change::<S>))
        .route("/v1/changes/{id}/events", get(change_events::<S>))
        .route(
            "/v1/audit/checkpoint",
            get(audit_checkpoint::<S>).post(publish_checkpoint::<S>),
        )
        .fallback(not_found)
        .with_state(shared)
}

/// An API error: status, stable code, and a message for the caller.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    fn bad_request(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// Logs the cause and tells the client only that something failed on our side.
    fn internal(cause: impl std::fmt::Display) -> ApiError {
        tracing::error!(%cause, "request failed");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "airlock failed to handle the request; see the server log",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": { "code": self.code, "message": self.message } });
        let mut response = (self.status, Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

impl From<airlock_store::StoreError> for ApiError {
    fn from(error: airlock_store::StoreError) -> ApiError {
        ApiError::internal(error)
    }
}

/// The latest signed checkpoint of the audit log, as a C2SP signed note.
async fn audit_checkpoint<S: Store>(
    State(shared): State<Arc<Shared<S>>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authenticate(&shared, &headers).await?;
    let latest = shared
        .audit
        .log
        .with(|log| log.latest_checkpoint().map(|c| c.note.clone()));
    match latest {
        Some(note) => Ok(signed_note(note)),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no_checkpoint",
            "the audit log has no signed checkpoint yet; POST here to publish one",
        )),
    }
}

/// Publishes a checkpoint now (if the log grew) and returns it as JSON.
async fn publish_checkpoint<S: Store>(
    State(shared): State<Arc<Shared<S>>>,
    headers: HeaderMap,
) -> Result<Json<serde_json::Value>, ApiError> {
    let token = authenticate(&shared, &headers).await?;
    require_role(
        &token,
        &[Role::Operator, Role::Admin],
        "publish audit checkpoints",
    )?;
    let audit = shared.audit.clone();
    let signed = tokio::task::spawn_blocking(move || audit.checkpoint())
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?;
    Ok(Json(serde_json::json!({
        "origin": signed.checkpoint.origin,
        "size": signed.checkpoint.size,
        "root": signed.checkpoint.root.to_base64(),
        "note": signed.note,
    })))
}

fn signed_note(note: String) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], note).into_response()
}

async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

async fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        "no such endpoint; see /v1/changes and /healthz",
    )
}

/// The caller's identity, from the `Authorization: Bearer` header and nothing else.
async fn authenticate<S: Store>(
    shared: &Shared<S>,
    headers: &HeaderMap,
) -> Result<TokenRecord, ApiError> {
    let unauthorized =
        |message: &str| ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message);
    let value = headers
        .get(header::AUTHORIZATION)
        .ok_or_else(|| unauthorized("missing `Authorization: Bearer TOKEN` header; create a token with `airlock token create`"))?;
    let secret = value
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| unauthorized("the Authorization header must be `Bearer TOKEN`"))?;
    crate::tokens::authenticate(&shared.store, secret.trim())
        .await?
        .ok_or_else(|| unauthorized("the token is unknown or revoked"))
}

fn require_role(token: &TokenRecord, allowed: &[Role], action: &str) -> Result<(), ApiError> {
    if allowed.contains(&token.role) {
        return Ok(());
    }
    let allowed: Vec<&str> = allowed.iter().map(|r| r.as_str()).collect();
    Err(ApiError::new(
        StatusCode::FORBIDDEN,
        "forbidden",
        format!(
            "role `{}` may not {action}; allowed roles: {}",
            token.role,
            allowed.join(", ")
        ),
    ))
}

fn actor_of(token: &TokenRecord) -> Actor {
    let kind = if token.role == Role::Agent {
        ActorKind::Agent
    } else {
        ActorKind::Human
    };
    Actor {
        kind,
        name: token.name.clone(),
        token_id: Some(token.id.clone()),
    }
}

/// The body of `POST /v1/changes`. Exactly one of `diff`, `edits` and `ref`. There is
/// deliberately no field naming the agent: that comes from the token.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProposeRequest {
    title: String,
    #[serde(default)]
    description: String,
    base: Option<String>,
    diff: Option<String>,
    edits: Option<Vec<Edit>>,
    #[serde(rename = "ref")]
    git_ref: Option<String>,
}

#[derive(Serialize)]
struct ProposeResponse {
    id: ChangeId,
    state: ChangeState,
    base_commit: String,
    files: usize,
    lines_added: usize,
    lines_removed: usize,
}

const MAX_TITLE_CHARS: usize = 200;
const MAX_DESCRIPTION_BYTES: usize = 64 << 10;

async fn propose<S: Store>(
    State(shared): State<Arc<Shared<S>>>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<ProposeResponse>), ApiError> {
    let token = authenticate(&shared, &headers).await?;
    require_role(
        &token,
        &[Role::Agent, Role::Operator, Role::Admin],
        "propose changes",
    )?;

    // JSON escaping can double a diff's size; leave room for that and the other fields.
    let limit = (shared.config.limits.max_change_bytes as usize)
        .saturating_mul(2)
        .saturating_add(MAX_DESCRIPTION_BYTES + 4096);
    let bytes = axum::body::to_bytes(body, limit).await.map_err(|_| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "change_too_large",
            format!(
                "the request body exceeds {limit} bytes; the change limit is {} bytes (`limits.max_change_bytes`)",
                shared.config.limits.max_change_bytes
            ),
        )
    })?;
    let request: ProposeRequest = serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::bad_request(
            "invalid_request",
            format!("the body is not a valid proposal: {e}; accepted: {{\"title\", \"description\", \"base\"?, and one of \"diff\", \"edits\", \"ref\"}}"),
        )
    })?;

    let title = request.title.trim();
    if title.is_empty()
        || title.chars().count() > MAX_TITLE_CHARS
        || title.chars().any(char::is_control)
    {
        return Err(ApiError::bad_request(
            "invalid_title",
            format!("the title must be 1 to {MAX_TITLE_CHARS} characters on one line"),
        ));
    }
    if request.description.len() > MAX_DESCRIPTION_BYTES {
        return Err(ApiError::bad_request(
            "invalid_description",
            format!(
                "the description is {} bytes; accepted: at most {MAX_DESCRIPTION_BYTES}",
                request.description.len()
            ),
        ));
    }
    let body = match (request.diff, request.edits, request.git_ref) {
        (Some(diff), None, None) => ProposalBody::Diff(diff),
        (None, Some(edits), None) => ProposalBody::Edits(edits),
        (None, None, Some(git_ref)) => ProposalBody::Ref(git_ref),
        _ => {
            return Err(ApiError::bad_request(
                "invalid_request",
                "exactly one of `diff`, `edits` and `ref` is required",
            ));
        }
    };

    let accepted = {
        let shared = shared.clone();
        let base = request.base.clone();
        tokio::task::spawn_blocking(move || {
            accept(
                &shared.repo,
                &shared.config.target_branch,
                base.as_deref(),
                &body,
                &shared.config.limits,
            )
        })
        .await
        .map_err(ApiError::internal)?
    };
    let accepted = accepted.map_err(|error| match error {
        AcceptError::Intake(e) if e.is_input_error() => {
            let status = match e {
                airlock_core::intake::IntakeError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
                airlock_core::intake::IntakeError::DoesNotApply { .. } => StatusCode::CONFLICT,
                _ => StatusCode::UNPROCESSABLE_ENTITY,
            };
            ApiError::new(status, e.code(), e.to_string())
        }
        AcceptError::UnknownRevision(message) => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_revision",
            message,
        ),
        other => ApiError::internal(other),
    })?;

    let mut id_bytes = [0u8; 16];
    id_bytes.copy_from_slice(uuid::Uuid::now_v7().as_bytes());
    let id = ChangeId::from_bytes(id_bytes);
    let now = now_ms();
    let change_set = accepted.change_set;
    let change = NewChange {
        id: id.clone(),
        title: title.to_owned(),
        description: request.description,
        agent: actor_of(&token),
        base_commit: accepted.base.to_string(),
        target_branch: shared.config.target_branch.clone(),
        source: accepted.source,
        diff: change_set.diff.clone(),
        files: change_set.files.clone(),
        lines_added: change_set.lines_added(),
        lines_removed: change_set.lines_removed(),
        created_at_ms: now,
    };
    let event = NewEvent {
        change_id: Some(id.clone()),
        at_ms: now,
        actor: change.agent.clone(),
        kind: EventKind::ChangeProposed,
        data: serde_json::json!({
            "title": change.title,
            "base_commit": change.base_commit,
            "target_branch": change.target_branch,
            "source": change.source,
            "diff_sha256": airlock_core::intake::sha256_hex(&change.diff),
            "files": file_hashes(&change.files),
        }),
    };
    shared.store.insert_change(&change, &event).await?;
    shared.work_available.notify_one();
    tracing::info!(change = %id, agent = %token.name, files = change.files.len(), "change proposed");
    Ok((
        StatusCode::CREATED,
        Json(ProposeResponse {
            id,
            state: ChangeState::Queued,
            base_commit: change.base_commit,
            files: change.files.len(),
            lines_added: change.lines_added,
            lines_removed: change.lines_removed,
        }),
    ))
}

/// The per-file hashes every event of a change carries.
pub(crate) fn file_hashes(files: &[ChangedFile]) -> serde_json::Value {
    serde_json::Value::Array(
        files
            .iter()
            .map(|f| {
                serde_json::json!({
                    "path": f.path(),
                    "old_path": f.old_path,
                    "op": f.op,
                    "old_sha256": f.old_sha256,
                    "new_sha256": f.new_sha256,
                })
            })
            .collect(),
    )
}

/// A change as the API shows it: the stored record and, for a single change, its steps.
#[derive(Debug, Serialize, Deserialize)]
pub struct ChangeView {
    #[serde(flatten)]
    pub change: ChangeRecord,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<StepRecord>,
}

impl std::ops::Deref for ChangeView {
    type Target = ChangeRecord;
    fn deref(&self) -> &ChangeRecord {
        &self.change
    }
}

fn parse_change_id(text: &str) -> Result<ChangeId, ApiError> {
    text.parse()
        .map_err(|m: String| ApiError::bad_request("invalid_change_id", m))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GetQuery {
    /// Seconds to wait for a final state before answering (long poll), at most 60.
    wait: Option<u64>,
}

const MAX_WAIT_SECONDS: u64 = 60;

async fn get_change<S: Store>(
    State(shared): State<Arc<Shared<S>>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    query: Result<Query<GetQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<ChangeView>, ApiError> {
    authenticate(&shared, &headers).await?;
    let id = parse_change_id(&id)?;
    let Query(query) = query.map_err(|e| {
        ApiError::bad_request(
            "invalid_query",
            format!("{e}; accepted parameters: wait (seconds, 0 to {MAX_WAIT_SECONDS})"),
        )
    })?;
    let wait = query.wait.unwrap_or(0);
    if wait > MAX_WAIT_SECONDS {
        return Err(ApiError::bad_request(
            "invalid_query",
            format!("wait={wait} is too long; accepted: 0 to {MAX_WAIT_SECONDS} seconds"),
        ));
    }
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(wait);
    // Subscribe before reading, so progress between the read and the wait wakes us.
    let mut progress = shared.progress.subscribe();
    loop {
        let record = shared.store.change(&id).await?.ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "change_not_found",
                format!("no change `{id}`"),
            )
        })?;
        let progressed = !record.state.is_final()
            && matches!(
                tokio::time::timeout_at(deadline, progress.changed()).await,
                Ok(Ok(()))
            );
        if !progressed {
            let steps = shared.store.steps(&id, record.revision).await?;
            return Ok(Json(ChangeView {
                change: record,
                steps,
            }));
        }
    }
}

async fn change_events<S: Store>(
    State(shared): State<Arc<Shared<S>>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Vec<EventRecord>>, ApiError> {
    authenticate(&shared, &headers).await?;
    let id = parse_change_id(&id)?;
    if shared.store.change(&id).await?.is_none() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "change_not_found",
            format!("no change `{id}`"),
        ));
    }
    Ok(Json(shared.store.events(Some(&id)).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    state: Option<String>,
    limit: Option<u32>,
}

async fn list_changes<S: Store>(
    State(shared): State<Arc<Shared<S>>>,
    headers: HeaderMap,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Vec<ChangeView>>, ApiError> {
    authenticate(&shared, &headers).await?;
    let Query(query) = query.map_err(|e| {
        ApiError::bad_request(
            "invalid_query",
            format!("{e}; accepted parameters: state, limit (1 to 1000)"),
        )
    })?;
    let state = query
        .state
        .as_deref()
        .map(|s| s.parse::<ChangeState>())
        .transpose()
        .map_err(|m| ApiError::bad_request("invalid_state", m))?;
    let limit = query.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::bad_request(
            "invalid_query",
            format!("limit {limit} is out of range; accepted: 1 to 1000"),
        ));
    }
    let records = shared.store.list_changes(state, limit).await?;
    Ok(Json(
        records
            .into_iter()
            .map(|change| ChangeView {
                change,
                steps: Vec::new(),
            })
            .collect(),
    ))
}
