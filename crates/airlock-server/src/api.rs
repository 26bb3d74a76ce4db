//! The HTTP API. One error type maps every failure to a status and a stable JSON body
//! `{"error":{"code","message"}}`; internal details go to the log, never to the client.

use std::sync::Arc;

use airlock_core::change::{ChangeState, ChangedFile, StepRecord};
use airlock_core::event::{Actor, ActorKind, EventKind, NewEvent};
use airlock_core::ids::{ChangeId, Role};
use airlock_core::intake::Edit;
use airlock_core::review::ReviewVerdict;
use airlock_store::{ChangeRecord, EventRecord, NewChange, Store, TokenRecord};
use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};

use crate::Shared;
use crate::intake::{AcceptError, ProposalBody, accept};
use crate::intervention::Interventions;

pub(crate) fn router<S: Store>(shared: Arc<Shared<S>>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/v1/changes", get(list_changes::<S>).post(propose::<S>))
        .route("/v1/changes/{id}", get(get_change::<S>))
        .route("/v1/changes/{id}/events", get(change_events::<S>))
        .route("/v1/changes/{id}/revisions", post(revise::<S>))
        .route("/v1/changes/{id}/reviews", post(review_change::<S>))
        .route("/v1/changes/{id}/break-glass", post(break_glass::<S>))
        .route("/v1/changes/{id}/rollback", post(rollback::<S>))
        .route("/v1/changes/{id}/rollout", post(decide_rollout::<S>))
        .route("/v1/queue", get(deploy_queue::<S>))
        .route("/v1/reviews", get(review_queue::<S>))
        .route("/v1/post-reviews", get(post_reviews::<S>))
        .route("/v1/tokens", get(list_tokens::<S>).post(create_token::<S>))
        .route("/v1/tokens/{id}", axum::routing::delete(revoke_token::<S>))
        .route(
            "/v1/pause",
            get(pause_state::<S>).post(pause::<S>).delete(resume::<S>),
        )
        .route(
            "/v1/audit/checkpoint",
            get(audit_checkpoint::<S>).post(publish_checkpoint::<S>),
        )
        .fallback(not_found)
        .with_state(shared)
}

/// Every authenticated endpoint. Its roles are the whole authorization policy of the
/// API: each handler names its endpoint, and nothing else grants access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    ListChanges,
    GetChange,
    ChangeEvents,
    Propose,
    Revise,
    Review,
    BreakGlass,
    ReviewQueue,
    PostReviews,
    ListTokens,
    CreateToken,
    RevokeToken,
    PauseState,
    Pause,
    Resume,
    AuditCheckpoint,
    PublishCheckpoint,
    DeployQueue,
    Rollback,
    DecideRollout,
}

impl Endpoint {
    pub const ALL: [Endpoint; 20] = [
        Endpoint::ListChanges,
        Endpoint::GetChange,
        Endpoint::ChangeEvents,
        Endpoint::Propose,
        Endpoint::Revise,
        Endpoint::Review,
        Endpoint::BreakGlass,
        Endpoint::ReviewQueue,
        Endpoint::PostReviews,
        Endpoint::ListTokens,
        Endpoint::CreateToken,
        Endpoint::RevokeToken,
        Endpoint::PauseState,
        Endpoint::Pause,
        Endpoint::Resume,
        Endpoint::AuditCheckpoint,
        Endpoint::PublishCheckpoint,
        Endpoint::DeployQueue,
        Endpoint::Rollback,
        Endpoint::DecideRollout,
    ];

    /// The roles that may call the endpoint.
    pub fn roles(self) -> &'static [Role] {
        use Role::*;
        match self {
            Endpoint::ListChanges
            | Endpoint::GetChange
            | Endpoint::ChangeEvents
            | Endpoint::PauseState
            | Endpoint::DeployQueue
            | Endpoint::AuditCheckpoint => &[Agent, Reviewer, Operator, Admin],
            Endpoint::Propose | Endpoint::Revise => &[Agent, Operator, Admin],
            Endpoint::Review | Endpoint::ReviewQueue | Endpoint::PostReviews => {
                &[Reviewer, Operator, Admin]
            }
            Endpoint::BreakGlass
            | Endpoint::Pause
            | Endpoint::Resume
            | Endpoint::Rollback
            | Endpoint::DecideRollout
            | Endpoint::PublishCheckpoint => &[Operator, Admin],
            Endpoint::ListTokens | Endpoint::CreateToken | Endpoint::RevokeToken => &[Admin],
        }
    }

    /// The method and the path pattern of the endpoint.
    pub fn route(self) -> (&'static str, &'static str) {
        match self {
            Endpoint::ListChanges => ("GET", "/v1/changes"),
            Endpoint::GetChange => ("GET", "/v1/changes/{id}"),
            Endpoint::ChangeEvents => ("GET", "/v1/changes/{id}/events"),
            Endpoint::Propose => ("POST", "/v1/changes"),
            Endpoint::Revise => ("POST", "/v1/changes/{id}/revisions"),
            Endpoint::Review => ("POST", "/v1/changes/{id}/reviews"),
            Endpoint::BreakGlass => ("POST", "/v1/changes/{id}/break-glass"),
            Endpoint::ReviewQueue => ("GET", "/v1/reviews"),
            Endpoint::PostReviews => ("GET", "/v1/post-reviews"),
            Endpoint::ListTokens => ("GET", "/v1/tokens"),
            Endpoint::CreateToken => ("POST", "/v1/tokens"),
            Endpoint::RevokeToken => ("DELETE", "/v1/tokens/{id}"),
            Endpoint::PauseState => ("GET", "/v1/pause"),
            Endpoint::Pause => ("POST", "/v1/pause"),
            Endpoint::Resume => ("DELETE", "/v1/pause"),
            Endpoint::AuditCheckpoint => ("GET", "/v1/audit/checkpoint"),
            Endpoint::PublishCheckpoint => ("POST", "/v1/audit/checkpoint"),
            Endpoint::DeployQueue => ("GET", "/v1/queue"),
            Endpoint::Rollback => ("POST", "/v1/changes/{id}/rollback"),
            Endpoint::DecideRollout => ("POST", "/v1/changes/{id}/rollout"),
        }
    }

    /// What the endpoint does, in the words of a refusal.
    fn action(self) -> &'static str {
        match self {
            Endpoint::ListChanges => "list changes",
            Endpoint::GetChange => "read changes",
            Endpoint::ChangeEvents => "read change events",
            Endpoint::Propose => "propose changes",
            Endpoint::Revise => "revise changes",
            Endpoint::Review => "review changes",
            Endpoint::BreakGlass => "break the glass",
            Endpoint::ReviewQueue => "read the review queue",
            Endpoint::PostReviews => "read post-deployment reviews",
            Endpoint::ListTokens => "list tokens",
            Endpoint::CreateToken => "create tokens",
            Endpoint::RevokeToken => "revoke tokens",
            Endpoint::PauseState => "read the kill switch",
            Endpoint::Pause => "pause deployments",
            Endpoint::Resume => "resume deployments",
            Endpoint::AuditCheckpoint => "read audit checkpoints",
            Endpoint::PublishCheckpoint => "publish audit checkpoints",
            Endpoint::DeployQueue => "read the deployment queue",
            Endpoint::Rollback => "roll back deployments",
            Endpoint::DecideRollout => "continue or abort rollouts",
        }
    }
}

/// Authenticates the caller and checks that its role may call `endpoint`.
async fn authorize<S: Store>(
    shared: &Shared<S>,
    headers: &HeaderMap,
    endpoint: Endpoint,
) -> Result<TokenRecord, ApiError> {
    let token = authenticate(shared, headers).await?;
    require_role(&token, endpoint.roles(), endpoint.action())?;
    Ok(token)
}

/// An API error: status, stable code, and a message for the caller.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    /// Seconds, for 429 answers.
    retry_after: Option<u64>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after: None,
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
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from(seconds));
        }
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
    authorize(&shared, &headers, Endpoint::AuditCheckpoint).await?;
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
    authorize(&shared, &headers, Endpoint::PublishCheckpoint).await?;
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

pub(crate) fn actor_of(token: &TokenRecord) -> Actor {
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
    /// Break-glass at proposal time (operator and admin tokens only).
    urgent: Option<UrgentRequest>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UrgentRequest {
    reason: String,
}

/// The body of `POST /v1/changes/{id}/revisions`: the new content of the change.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReviseRequest {
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
    revision: i64,
    base_commit: String,
    files: usize,
    lines_added: usize,
    lines_removed: usize,
}

const MAX_TITLE_CHARS: usize = 200;
const MAX_DESCRIPTION_BYTES: usize = 64 << 10;
/// Comments and break-glass reasons.
const MAX_COMMENT_BYTES: usize = 10 << 10;

/// Reads a JSON body of at most what a change may be (JSON escaping can double a
/// diff's size; room is left for that and the other fields).
async fn read_json<S: Store, T: serde::de::DeserializeOwned>(
    shared: &Shared<S>,
    body: Body,
    accepted: &str,
) -> Result<T, ApiError> {
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
    serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::bad_request(
            "invalid_request",
            format!("the body is not valid: {e}; accepted: {accepted}"),
        )
    })
}

/// A comment or reason: one to `MAX_COMMENT_BYTES` bytes, no control characters but
/// newlines and tabs.
fn check_text(text: &str, what: &str, required: bool) -> Result<String, ApiError> {
    let text = text.trim();
    if (required && text.is_empty())
        || text.len() > MAX_COMMENT_BYTES
        || text
            .chars()
            .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        return Err(ApiError::bad_request(
            "invalid_text",
            format!(
                "the {what} must be {} to {MAX_COMMENT_BYTES} bytes of text without control characters",
                if required { 1 } else { 0 }
            ),
        ));
    }
    Ok(text.to_owned())
}

fn proposal_body(
    diff: Option<String>,
    edits: Option<Vec<Edit>>,
    git_ref: Option<String>,
) -> Result<ProposalBody, ApiError> {
    match (diff, edits, git_ref) {
        (Some(diff), None, None) => Ok(ProposalBody::Diff(diff)),
        (None, Some(edits), None) => Ok(ProposalBody::Edits(edits)),
        (None, None, Some(git_ref)) => Ok(ProposalBody::Ref(git_ref)),
        _ => Err(ApiError::bad_request(
            "invalid_request",
            "exactly one of `diff`, `edits` and `ref` is required",
        )),
    }
}

/// The agent's limits, then its proposal's content: a proposal over the limits is
/// answered 429 whatever its content. Both only read, so they run side by side.
async fn limits_then_intake<S: Store>(
    shared: &Arc<Shared<S>>,
    token: &TokenRecord,
    new_change: bool,
    base: Option<String>,
    body: ProposalBody,
) -> Result<crate::intake::Accepted, ApiError> {
    let (limits, accepted) = tokio::join!(
        check_agent_limits(shared, token, new_change),
        run_intake(shared, base, body)
    );
    limits?;
    accepted
}

/// Validates a proposal's content against the repository (on a blocking thread: git).
async fn run_intake<S: Store>(
    shared: &Arc<Shared<S>>,
    base: Option<String>,
    body: ProposalBody,
) -> Result<crate::intake::Accepted, ApiError> {
    let accepted = {
        let shared = shared.clone();
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
    accepted.map_err(|error| match error {
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
    })
}

const HOUR_MS: i64 = 3_600_000;

/// Per-agent limits: changes in flight (for a new change) and proposals per hour (new
/// changes and revisions). Beyond them: 429 with `Retry-After`. Humans are not limited.
async fn check_agent_limits<S: Store>(
    shared: &Shared<S>,
    token: &TokenRecord,
    new_change: bool,
) -> Result<(), ApiError> {
    if token.role != Role::Agent {
        return Ok(());
    }
    let limits = &shared.config.limits;
    let now = shared.clock.now_ms();
    let activity = shared
        .store
        .agent_activity(&token.name, now - HOUR_MS)
        .await?;
    let too_many = |message: String, seconds: u64| {
        let mut error = ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", message);
        error.retry_after = Some(seconds.max(1));
        error
    };
    if activity.proposals >= limits.agent_proposals_per_hour as u64 {
        let oldest = activity.oldest_proposal_ms.unwrap_or(now);
        let seconds = ((oldest + HOUR_MS - now).max(0) as u64).div_ceil(1000);
        return Err(too_many(
            format!(
                "agent `{}` made {} proposals in the last hour; the limit is {} (`limits.agent_proposals_per_hour`)",
                token.name, activity.proposals, limits.agent_proposals_per_hour
            ),
            seconds,
        ));
    }
    if new_change && activity.in_flight >= limits.agent_changes_in_flight as u64 {
        return Err(too_many(
            format!(
                "agent `{}` has {} changes in flight; the limit is {} (`limits.agent_changes_in_flight`); wait for some to be decided",
                token.name, activity.in_flight, limits.agent_changes_in_flight
            ),
            60,
        ));
    }
    Ok(())
}

async fn propose<S: Store>(
    State(shared): State<Arc<Shared<S>>>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<ProposeResponse>), ApiError> {
    let token = authorize(&shared, &headers, Endpoint::Propose).await?;
    let request: ProposeRequest = read_json(
        &shared,
        body,
        "{\"title\", \"description\", \"base\"?, one of \"diff\", \"edits\", \"ref\", and \"urgent\": {\"reason\"}?}",
    )
    .await?;

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
    let urgent = match &request.urgent {
        None => None,
        Some(urgent) => {
            require_role(
                &token,
                Endpoint::BreakGlass.roles(),
                Endpoint::BreakGlass.action(),
            )?;
            Some(check_text(&urgent.reason, "break-glass reason", true)?)
        }
    };
    let body = proposal_body(request.diff, request.edits, request.git_ref)?;
    let accepted = limits_then_intake(&shared, &token, true, request.base, body).await?;

    let mut id_bytes = [0u8; 16];
    id_bytes.copy_from_slice(uuid::Uuid::now_v7().as_bytes());
    let id = ChangeId::from_bytes(id_bytes);
    let now = shared.clock.now_ms();
    let change_set = accepted.change_set;
    let agent = actor_of(&token);
    let urgency = urgent.map(|reason| airlock_store::Urgency {
        reason,
        by: agent.clone(),
        at_ms: now,
    });
    let change = NewChange {
        id: id.clone(),
        title: title.to_owned(),
        description: request.description,
        agent,
        base_commit: accepted.base.to_string(),
        target_branch: shared.config.target_branch.clone(),
        source: accepted.source,
        diff: change_set.diff.clone(),
        files: change_set.files.clone(),
        lines_added: change_set.lines_added(),
        lines_removed: change_set.lines_removed(),
        created_at_ms: now,
        urgency: urgency.clone(),
    };
    let mut events = vec![NewEvent {
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
    }];
    if let Some(urgency) = &urgency {
        events.push(NewEvent {
            change_id: Some(id.clone()),
            at_ms: now,
            actor: urgency.by.clone(),
            kind: EventKind::BreakGlass,
            data: serde_json::json!({
                "summary": format!("break-glass by {}: {}", urgency.by.name, urgency.reason),
                "reason": urgency.reason,
                "state": ChangeState::Queued,
                "files": file_hashes(&change.files),
            }),
        });
    }
    shared.store.insert_change(&change, &events).await?;
    shared.work_available.notify_one();
    tracing::info!(change = %id, agent = %token.name, files = change.files.len(), "change proposed");
    Ok((
        StatusCode::CREATED,
        Json(ProposeResponse {
            id,
            state: ChangeState::Queued,
            revision: 1,
            base_commit: change.base_commit,
            files: change.files.len(),
            lines_added: change.lines_added,
            lines_removed: change.lines_removed,
        }),
    ))
}

/// A new revision from the agent (after "request changes", or while awaiting review):
/// earlier approvals no longer count and Level 1 runs again.
async fn revise<S: Store>(
    State(shared): State<Arc<Shared<S>>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Body,
) -> Result<(StatusCode, Json<ProposeResponse>), ApiError> {
    let token = authorize(&shared, &headers, Endpoint::Revise).await?;
    let id = parse_change_id(&id)?;
    let request: ReviseRequest = read_json(
        &shared,
        body,
        "{\"base\"?, and one of \"diff\", \"edits\", \"ref\"}",
    )
    .await?;
    let change = find_change(&shared, &id).await?;
    if token.role == Role::Agent && token.name != change.agent.name {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "`{id}` was proposed by `{}`; an agent may revise only its own changes",
                change.agent.name
            ),
        ));
    }
    if !change.state.accepts_revision() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_revisable",
            format!(
                "`{id}` is {}; a new revision is accepted while it awaits review or has changes requested",
                change.state
            ),
        ));
    }
    let body = proposal_body(request.diff, request.edits, request.git_ref)?;
    let accepted = limits_then_intake(&shared, &token, false, request.base, body).await?;
    let now = shared.clock.now_ms();
    let change_set = accepted.change_set;
    let revision = airlock_store::NewRevision {
        base_commit: accepted.base.to_string(),
        source: accepted.source,
        diff: change_set.diff.clone(),
        files: change_set.files.clone(),
        lines_added: change_set.lines_added(),
        lines_removed: change_set.lines_removed(),
        at_ms: now,
    };
    let event = NewEvent {
        change_id: Some(id.clone()),
        at_ms: now,
        actor: actor_of(&token),
        kind: EventKind::ChangeRevised,
        data: serde_json::json!({
            "summary": format!("revision {} by {}; earlier approvals no longer count", change.revision + 1, token.name),
            "revision": change.revision + 1,
            "base_commit": revision.base_commit,
            "source": revision.source,
            "diff_sha256": airlock_core::intake::sha256_hex(&revision.diff),
            "files": file_hashes(&revision.files),
        }),
    };
    if !shared
        .store
        .revise_change(&id, change.revision, &revision, &event)
        .await?
    {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_revisable",
            format!("`{id}` changed while the revision was checked; read it and try again"),
        ));
    }
    shared.work_available.notify_one();
    shared.progress.send_modify(|n| *n += 1);
    Ok((
        StatusCode::CREATED,
        Json(ProposeResponse {
            id,
            state: ChangeState::Queued,
            revision: change.revision + 1,
            base_commit: revision.base_commit,
            files: revision.files.len(),
            lines_added: revision.lines_added,
            lines_removed: revision.lines_removed,
        }),
    ))
}

async fn find_change<S: Store>(
    shared: &Shared<S>,
    id: &ChangeId,
) -> Result<ChangeRecord, ApiError> {
    shared.store.change(id).await?.ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "change_not_found",
            format!("no change `{id}`"),
        )
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReviewRequest {
    verdict: ReviewVerdict,
    #[serde(default)]
    comment: String,
}

async fn review_change<S: Store>(
    State(shared): State<Arc<Shared<S>>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Body,
) -> Result<Json<crate::review::ReviewOutcome>, ApiError> {
    let token = authorize(&shared, &headers, Endpoint::Review).await?;
    let id = parse_change_id(&id)?;
    let request: ReviewRequest = read_json(
        &shared,
        body,
        "{\"verdict\": \"approve\" | \"reject\" | \"request_changes\", \"comment\"} (a comment is required to reject or request changes)",
    )
    .await?;
    let comment = check_text(
        &request.comment,
        "comment",
        request.verdict != ReviewVerdict::Approve,
    )?;
    find_change(&shared, &id).await?;
    crate::review::review(&shared, &token, &id, request.verdict, &comment)
        .await
        .map(Json)
        .map_err(review_error)
}

fn review_error(error: crate::review::ReviewError) -> ApiError {
    use crate::review::ReviewError;
    match error {
        ReviewError::Forbidden(message) => {
            ApiError::new(StatusCode::FORBIDDEN, "separation_of_duties", message)
        }
        ReviewError::Conflict(message) => ApiError::new(StatusCode::CONFLICT, "conflict", message),
        ReviewError::Internal(message) => ApiError::internal(message),
    }
}

async fn break_glass<S: Store>(
    State(shared): State<Arc<Shared<S>>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Body,
) -> Result<Json<serde_json::Value>, ApiError> {
    let token = authorize(&shared, &headers, Endpoint::BreakGlass).await?;
    let id = parse_change_id(&id)?;
    let request: UrgentRequest = read_json(&shared, body, "{\"reason\"}").await?;
    let reason = check_text(&request.reason, "break-glass reason", true)?;
    find_change(&shared, &id).await?;
    let state = crate::review::break_glass(&shared, &token, &id, &reason)
        .await
        .map_err(review_error)?;
    Ok(Json(
        serde_json::json!({ "id": id, "state": state, "urgent": true }),
    ))
}

/// Rolls back a deployed change: a revert commit, the reverted version deployed. Also
/// retries a rollback that was escalated, once a person has resolved what blocked it.
async fn rollback<S: Store>(
    State(shared): State<Arc<Shared<S>>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Body,
) -> Result<Json<serde_json::Value>, ApiError> {
    let token = authorize(&shared, &headers, Endpoint::Rollback).await?;
    let id = parse_change_id(&id)?;
    let request: UrgentRequest = read_json(&shared, body, "{\"reason\"}").await?;
    let reason = check_text(&request.reason, "rollback reason", true)?;
    let change = find_change(&shared, &id).await?;
    let Some(runtime) = shared.deploy.get() else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "deploy_not_configured",
            "this airlock has no [deploy] section, so it deploys nothing and has nothing to roll back",
        ));
    };
    if !matches!(
        change.state,
        ChangeState::Deployed | ChangeState::RollbackEscalated
    ) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "invalid_state",
            format!(
                "change {id} is {}; only a deployed change (or one whose rollback was escalated) can be rolled back",
                change.state
            ),
        ));
    }
    let event = NewEvent {
        change_id: Some(id.clone()),
        at_ms: shared.clock.now_ms(),
        actor: actor_of(&token),
        kind: EventKind::RollbackStarted,
        data: serde_json::json!({ "reason": reason, "automatic": false, "summary": format!("rollback requested by {}: {reason}", token.name) }),
    };
    let moved = shared
        .store
        .request_rollback(&id, change.state, &reason, &actor_of(&token), &event)
        .await?;
    if !moved {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            format!("change {id} moved on meanwhile; read it again"),
        ));
    }
    runtime.wake.notify_one();
    shared.progress.send_modify(|n| *n += 1);
    Ok(Json(
        serde_json::json!({ "id": id, "state": ChangeState::RollingBack }),
    ))
}

/// The body of `POST /v1/changes/{id}/rollout`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RolloutRequest {
    action: String,
    reason: String,
}

/// A person's decision on a rollout under way: `continue` one the judge holds (an
/// advisory failure: the metrics it held on no longer stop it), or `abort` one (traffic
/// back to stable, then the rollback). Recorded as an event with the person and the
/// reason; the deployer acts on it at its next poll.
async fn decide_rollout<S: Store>(
    State(shared): State<Arc<Shared<S>>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Body,
) -> Result<Json<serde_json::Value>, ApiError> {
    let token = authorize(&shared, &headers, Endpoint::DecideRollout).await?;
    let id = parse_change_id(&id)?;
    let request: RolloutRequest = read_json(
        &shared,
        body,
        "{\"action\": \"continue\" or \"abort\", \"reason\"}",
    )
    .await?;
    let kind = match request.action.as_str() {
        "continue" => EventKind::RolloutContinued,
        "abort" => EventKind::RolloutAborted,
        other => {
            return Err(ApiError::bad_request(
                "invalid_action",
                format!(
                    "`{}` is not a decision on a rollout; accepted: \"continue\" (a rollout the judge holds) or \"abort\"",
                    airlock_core::ids::printable(other)
                ),
            ));
        }
    };
    let reason = check_text(&request.reason, "reason", true)?;
    let change = find_change(&shared, &id).await?;
    if shared.deploy.get().is_none() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "deploy_not_configured",
            "this airlock has no [deploy] section, so it rolls nothing out",
        ));
    }
    if change.state != ChangeState::Deploying {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "invalid_state",
            format!(
                "change {id} is {}; only a change whose rollout is under way (deploying) can be continued or aborted (a deployed change is rolled back with `airlock rollback`)",
                change.state
            ),
        ));
    }
    let interventions = Interventions::of(&shared.store.events(Some(&id)).await?);
    if interventions.abort.is_some() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "already_aborted",
            format!("the rollout of {id} is already being aborted"),
        ));
    }
    let data = match kind {
        EventKind::RolloutContinued => {
            let Some(metrics) = interventions.held else {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "not_held",
                    format!(
                        "the rollout of {id} is not held by the judge, so there is nothing to continue; it goes on by itself while its metrics pass"
                    ),
                ));
            };
            serde_json::json!({
                "reason": reason,
                "metrics": metrics,
                "summary": format!("{} let the rollout go on past the judge's hold on {}: {reason}", token.name, metrics.join(", ")),
            })
        }
        _ => serde_json::json!({
            "reason": reason,
            "summary": format!("rollout aborted by {}: {reason}", token.name),
        }),
    };
    shared
        .store
        .append_event(&NewEvent {
            change_id: Some(id.clone()),
            at_ms: shared.clock.now_ms(),
            actor: actor_of(&token),
            kind,
            data,
        })
        .await?;
    shared.progress.send_modify(|n| *n += 1);
    Ok(Json(serde_json::json!({
        "id": id,
        "state": change.state,
        "action": request.action,
    })))
}

/// The target's deployment queue in the order the deployer serves it, its stable
/// version and the kill switch.
async fn deploy_queue<S: Store>(
    State(shared): State<Arc<Shared<S>>>,
    headers: HeaderMap,
) -> Result<Json<serde_json::Value>, ApiError> {
    authorize(&shared, &headers, Endpoint::DeployQueue).await?;
    let Some(runtime) = shared.deploy.get() else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "deploy_not_configured",
            "this airlock has no [deploy] section: approved changes are not deployed",
        ));
    };
    let target = &runtime.config.target;
    let queue = shared.store.deploy_queue(target).await?;
    let entries: Vec<serde_json::Value> = queue
        .iter()
        .enumerate()
        .map(|(position, (change, deployment))| {
            serde_json::json!({
                "position": position + 1,
                "id": change.id,
                "title": change.title,
                "agent": change.agent.name,
                "state": change.state,
                "deployment": deployment,
            })
        })
        .collect();
    let staging = shared
        .store
        .list_changes(Some(ChangeState::Staging), 100)
        .await?;
    Ok(Json(serde_json::json!({
        "target": target,
        "provider": runtime.provider.name(),
        "stable": shared.store.stable_version(target).await?,
        "paused": crate::deploy::pause_of(&shared.store, target).await?,
        "staging": staging.iter().map(|c| serde_json::json!({"id": c.id, "title": c.title})).collect::<Vec<_>>(),
        "queue": entries,
    })))
}

/// Changes waiting for review, oldest first, with what each still needs.
async fn review_queue<S: Store>(
    State(shared): State<Arc<Shared<S>>>,
    headers: HeaderMap,
) -> Result<Json<Vec<serde_json::Value>>, ApiError> {
    authorize(&shared, &headers, Endpoint::ReviewQueue).await?;
    let mut changes = shared
        .store
        .list_changes(Some(ChangeState::AwaitingReview), 1000)
        .await?;
    changes.reverse();
    let mut queue = Vec::with_capacity(changes.len());
    for change in changes {
        let review = crate::review::status(&shared, &change).await?;
        queue.push(serde_json::json!({
            "id": change.id,
            "title": change.title,
            "agent": change.agent,
            "revision": change.revision,
            "updated_at_ms": change.updated_at_ms,
            "review": review,
        }));
    }
    Ok(Json(queue))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PostReviewQuery {
    /// Only open post-reviews past their due time.
    #[serde(default)]
    overdue: bool,
}

async fn post_reviews<S: Store>(
    State(shared): State<Arc<Shared<S>>>,
    headers: HeaderMap,
    query: Result<Query<PostReviewQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Vec<airlock_store::PostReviewRecord>>, ApiError> {
    authorize(&shared, &headers, Endpoint::PostReviews).await?;
    let Query(query) = query.map_err(|e| {
        ApiError::bad_request(
            "invalid_query",
            format!("{e}; accepted parameters: overdue (true or false)"),
        )
    })?;
    let now = shared.clock.now_ms();
    let mut records = shared.store.post_reviews().await?;
    if query.overdue {
        records.retain(|p| p.completed_at_ms.is_none() && p.due_at_ms <= now);
    }
    Ok(Json(records))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateTokenRequest {
    name: String,
    role: Role,
    owner: Option<String>,
    #[serde(default)]
    groups: Vec<String>,
}

async fn list_tokens<S: Store>(
    State(shared): State<Arc<Shared<S>>>,
    headers: HeaderMap,
) -> Result<Json<Vec<TokenRecord>>, ApiError> {
    authorize(&shared, &headers, Endpoint::ListTokens).await?;
    Ok(Json(shared.store.list_tokens().await?))
}

async fn create_token<S: Store>(
    State(shared): State<Arc<Shared<S>>>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let token = authorize(&shared, &headers, Endpoint::CreateToken).await?;
    let request: CreateTokenRequest = read_json(
        &shared,
        body,
        "{\"name\", \"role\": \"agent\" | \"reviewer\" | \"operator\" | \"admin\", \"owner\"?, \"groups\"?: [\"@team\"]}",
    )
    .await?;
    let issued = crate::tokens::issue(
        &shared.store,
        &request.name,
        request.role,
        request.owner.as_deref(),
        &request.groups,
        actor_of(&token),
        shared.clock.now_ms(),
    )
    .await
    .map_err(|e| match e {
        crate::tokens::TokenError::Invalid(message) => {
            ApiError::bad_request("invalid_token_request", message)
        }
        other => ApiError::internal(other),
    })?;
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({ "token": issued.record, "secret": issued.secret })),
    ))
}

async fn revoke_token<S: Store>(
    State(shared): State<Arc<Shared<S>>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let token = authorize(&shared, &headers, Endpoint::RevokeToken).await?;
    let id: airlock_core::ids::TokenId = id
        .parse()
        .map_err(|m: String| ApiError::bad_request("invalid_token_id", m))?;
    let revoked =
        crate::tokens::revoke(&shared.store, &id, actor_of(&token), shared.clock.now_ms()).await?;
    if !revoked {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "token_not_found",
            format!("no active token `{id}`"),
        ));
    }
    Ok(Json(serde_json::json!({ "id": id, "revoked": true })))
}

async fn pause_state<S: Store>(
    State(shared): State<Arc<Shared<S>>>,
    headers: HeaderMap,
) -> Result<Json<serde_json::Value>, ApiError> {
    authorize(&shared, &headers, Endpoint::PauseState).await?;
    let pause = shared.store.pause().await?;
    let targets: serde_json::Map<String, serde_json::Value> = shared
        .store
        .target_pauses()
        .await?
        .into_iter()
        .map(|(target, pause)| (target, serde_json::json!(pause)))
        .collect();
    Ok(Json(serde_json::json!({
        "paused": pause.is_some(),
        "pause": pause,
        "targets": targets,
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ResumeQuery {
    /// Lift only this target's pause; without it, the kill switch and every target's.
    target: Option<String>,
}

async fn pause<S: Store>(
    State(shared): State<Arc<Shared<S>>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<serde_json::Value>, ApiError> {
    let token = authorize(&shared, &headers, Endpoint::Pause).await?;
    let request: UrgentRequest = read_json(&shared, body, "{\"reason\"}").await?;
    let reason = check_text(&request.reason, "reason", true)?;
    let now = shared.clock.now_ms();
    let pause = airlock_store::Pause {
        reason: reason.clone(),
        by: actor_of(&token),
        at_ms: now,
    };
    let event = NewEvent {
        change_id: None,
        at_ms: now,
        actor: actor_of(&token),
        kind: EventKind::DeploymentsPaused,
        data: serde_json::json!({ "summary": format!("deployments paused by {}: {reason}", token.name), "reason": reason }),
    };
    let changed = shared.store.set_pause(Some(&pause), &event).await?;
    let current = shared.store.pause().await?;
    Ok(Json(
        serde_json::json!({ "paused": true, "changed": changed, "pause": current }),
    ))
}

/// Lifts the kill switch and every target's own pause, or (`?target=NAME`) one target's.
async fn resume<S: Store>(
    State(shared): State<Arc<Shared<S>>>,
    headers: HeaderMap,
    query: Result<Query<ResumeQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let token = authorize(&shared, &headers, Endpoint::Resume).await?;
    let Query(query) = query.map_err(|e| {
        ApiError::bad_request(
            "invalid_query",
            format!("{e}; accepted parameters: target (a target's name)"),
        )
    })?;
    let now = shared.clock.now_ms();
    let paused_targets = shared.store.target_pauses().await?;
    let targets: Vec<String> = match &query.target {
        None => paused_targets
            .into_iter()
            .map(|(target, _)| target)
            .collect(),
        Some(target) => {
            let known = paused_targets.iter().any(|(paused, _)| paused == target)
                || shared
                    .deploy
                    .get()
                    .is_some_and(|runtime| &runtime.config.target == target);
            if !known {
                let mut accepted: Vec<String> = paused_targets
                    .into_iter()
                    .map(|(target, _)| target)
                    .collect();
                if let Some(runtime) = shared.deploy.get() {
                    accepted.push(runtime.config.target.clone());
                }
                accepted.dedup();
                return Err(ApiError::bad_request(
                    "unknown_target",
                    format!(
                        "no target `{}` is deployed here or paused; accepted: {}",
                        airlock_core::ids::printable(target),
                        if accepted.is_empty() {
                            "none (nothing is paused)".to_owned()
                        } else {
                            accepted.join(", ")
                        }
                    ),
                ));
            }
            vec![target.clone()]
        }
    };
    let mut changed = false;
    if query.target.is_none() {
        let event = NewEvent {
            change_id: None,
            at_ms: now,
            actor: actor_of(&token),
            kind: EventKind::DeploymentsResumed,
            data: serde_json::json!({ "summary": format!("deployments resumed by {}", token.name) }),
        };
        changed |= shared.store.set_pause(None, &event).await?;
    }
    let mut resumed = Vec::new();
    for target in targets {
        let event = NewEvent {
            change_id: None,
            at_ms: now,
            actor: actor_of(&token),
            kind: EventKind::DeploymentsResumed,
            data: serde_json::json!({
                "summary": format!("deployments to {target} resumed by {}", token.name),
                "target": target,
            }),
        };
        if shared.store.set_target_pause(&target, None, &event).await? {
            changed = true;
            resumed.push(target);
        }
    }
    if let Some(runtime) = shared.deploy.get() {
        runtime.wake.notify_one();
    }
    Ok(Json(serde_json::json!({
        "paused": shared.store.pause().await?.is_some(),
        "changed": changed,
        "targets_resumed": resumed,
    })))
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
    /// For a single change: its obligations, approvals and what is missing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub review: Option<serde_json::Value>,
    /// For a single change that entered the deployment queue: its deployment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment: Option<airlock_store::DeploymentRecord>,
    /// For a single change in or past its rollout: the last rollout decision (the step,
    /// the decision, and the evidence: the judge's per-metric counts, statistic, bound,
    /// α and margins; the guards' windows).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<serde_json::Value>,
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
    authorize(&shared, &headers, Endpoint::GetChange).await?;
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
        // Everything shown, in one read: this is the API's most frequent call.
        let detail = shared.store.change_detail(&id).await?.ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "change_not_found",
                format!("no change `{id}`"),
            )
        })?;
        let record = &detail.change;
        let progressed = (record.state.needs_worker()
            || (shared.deploy.get().is_some() && record.state.needs_deployer()))
            && matches!(
                tokio::time::timeout_at(deadline, progress.changed()).await,
                Ok(Ok(()))
            );
        if !progressed {
            let airlock_store::ChangeDetail {
                change: record,
                steps,
                review_actions,
                deployment,
            } = detail;
            let review = crate::review::status_from_actions(&record, review_actions);
            let canary = match deployment {
                Some(_) => shared
                    .store
                    .events(Some(&id))
                    .await?
                    .into_iter()
                    .rev()
                    .find(|event| event.kind == EventKind::RolloutDecision.as_str())
                    .map(|event| event.data),
                None => None,
            };
            return Ok(Json(ChangeView {
                change: record,
                steps,
                review,
                deployment,
                canary,
            }));
        }
    }
}

async fn change_events<S: Store>(
    State(shared): State<Arc<Shared<S>>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Vec<EventRecord>>, ApiError> {
    authorize(&shared, &headers, Endpoint::ChangeEvents).await?;
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
    authorize(&shared, &headers, Endpoint::ListChanges).await?;
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
                review: None,
                deployment: None,
                canary: None,
            })
            .collect(),
    ))
}
