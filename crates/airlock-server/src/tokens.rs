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
    issuer: Actor,
    now_ms: i64,
) -> Result<IssuedToken, TokenError> {
    validate_name(name).map_err(TokenError::Invalid)?;
    if let Some(owner) = owner {
        validate_name(owner).map_err(|m| TokenError::Invalid(format!("owner: {m}")))?;
    }
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
        secret_sha256: secret_sha256(&secret),
        created_at_ms: now_ms,
        revoked_at_ms: None,
    };
    let event = NewEvent {
        change_id: None,
        at_ms: now_ms,
        actor: issuer,
        kind: EventKind::TokenCreated,
        data: serde_json::json!({ "token_id": record.id, "name": name, "role": role, "owner": owner }),
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
