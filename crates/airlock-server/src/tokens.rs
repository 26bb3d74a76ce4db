//! API tokens: 256 random bits shown once, stored only as a SHA-256, looked up by hash.

use airlock_core::event::{Actor, EventKind, NewEvent};
use airlock_core::ids::{Role, TokenId, validate_name};
use airlock_store::{Store, StoreError, TokenRecord};
use sha2::{Digest, Sha256};

/// Every token starts with this, so secret scanners (ours included) can recognize one.
pub const TOKEN_PREFIX: &str = "alk_";

/// A new token: the record to store and the secret to show once.
#[derive(Debug)]
pub struct IssuedToken {
    pub record: TokenRecord,
    pub secret: String,
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("{0}")]
    Invalid(String),
    #[error("the operating system's random source failed: {0}")]
    Random(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub fn secret_sha256(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Creates a token for `name` with `role` and stores its hash. `issuer` is who asked
/// (for the event).
pub async fn issue<S: Store>(
    store: &S,
    name: &str,
    role: Role,
    owner: Option<&str>,
    groups: &[String],
    issuer: Actor,
    now_ms: i64,
) -> Result<IssuedToken, TokenError> {
    validate_name(name).map_err(TokenError::Invalid)?;
    if let Some(owner) = owner {
        validate_name(owner).map_err(|m| TokenError::Invalid(format!("owner: {m}")))?;
        if role != Role::Agent {
            return Err(TokenError::Invalid(format!(
                "only agent tokens have an owner; `{name}` is a {role}"
            )));
        }
        if owner == name {
            return Err(TokenError::Invalid(format!(
                "an agent cannot own itself; the owner of `{name}` is the human responsible for it"
            )));
        }
    }
    if role == Role::Agent && !groups.is_empty() {
        return Err(TokenError::Invalid(
            "agent tokens belong to no review group; groups are for humans who approve".to_owned(),
        ));
    }
    let mut sorted_groups = Vec::with_capacity(groups.len());
    for group in groups {
        airlock_core::review::validate_group(group).map_err(TokenError::Invalid)?;
        if !sorted_groups.contains(group) {
            sorted_groups.push(group.clone());
        }
    }
    sorted_groups.sort();
    let mut id_bytes = [0u8; 6];
    let mut secret_bytes = [0u8; 32];
    getrandom::fill(&mut id_bytes).map_err(|e| TokenError::Random(e.to_string()))?;
    getrandom::fill(&mut secret_bytes).map_err(|e| TokenError::Random(e.to_string()))?;
    let secret = format!("{TOKEN_PREFIX}{}", hex::encode(secret_bytes));
    let record = TokenRecord {
        id: TokenId::from_bytes(id_bytes),
        name: name.to_owned(),
        role,
        owner: owner.map(str::to_owned),
        groups: sorted_groups,
        secret_sha256: secret_sha256(&secret),
        created_at_ms: now_ms,
        revoked_at_ms: None,
    };
    let event = NewEvent {
        change_id: None,
        at_ms: now_ms,
        actor: issuer,
        kind: EventKind::TokenCreated,
        data: serde_json::json!({ "token_id": record.id, "name": name, "role": role, "owner": owner, "groups": record.groups }),
    };
    store.insert_token(&record, &event).await?;
    Ok(IssuedToken { record, secret })
}

/// The active token with this secret, if any. Revoked tokens authenticate nobody.
pub async fn authenticate<S: Store>(
    store: &S,
    secret: &str,
) -> Result<Option<TokenRecord>, StoreError> {
    if !secret.starts_with(TOKEN_PREFIX) || secret.len() != TOKEN_PREFIX.len() + 64 {
        return Ok(None);
    }
    let token = store.token_by_secret_hash(&secret_sha256(secret)).await?;
    Ok(token.filter(|t| t.revoked_at_ms.is_none()))
}

/// Revokes an active token; false when there is none with this id.
pub async fn revoke<S: Store>(
    store: &S,
    id: &TokenId,
    issuer: Actor,
    now_ms: i64,
) -> Result<bool, StoreError> {
    let event = NewEvent {
        change_id: None,
        at_ms: now_ms,
        actor: issuer,
        kind: EventKind::TokenRevoked,
        data: serde_json::json!({ "token_id": id }),
    };
    store.revoke_token(id, &event).await
}
