//! The audit entry, version 1: what happened, to which change, who did it and how it was
//! approved, with digests of everything too large or too sensitive to keep in the tree.
//!
//! An entry is stored as its RFC 8785 canonical JSON, so anyone can re-derive its leaf
//! hash from the JSON alone, in any language, and a PostgreSQL mirror can store the same
//! bytes (as `bytea`, or `jsonb` plus the canonical text) and prove the same tree.
//! Fields never change meaning within a version; a new field that old readers must not
//! ignore means a new version.

use serde::{Deserialize, Serialize};

use crate::canonical;

pub const VERSION: u32 = 1;

/// Who acted: taken from a credential or from airlock itself, never from a request body.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntryActor {
    /// `agent`, `human` or `system`.
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_id: Option<String>,
}

/// How a decision was approved, where one was.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Approval {
    /// `rule` (the policy allowed it), `human` (a reviewer) or `break_glass`.
    pub method: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// One file of a change: its content digest before and after (None: absent on that side).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileDigest {
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old_path: Option<String>,
    pub op: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before_sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_sha256: Option<String>,
}

/// A decision and the digest of the evidence it was made on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Decision {
    pub outcome: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    /// SHA-256 of the canonical JSON of the evidence (step results, findings, metrics).
    pub evidence_sha256: String,
}

/// A payload kept outside the tree (test output, a diff), committed to by a salted hash
/// so it can be purged without breaking the tree, and cannot be guessed from the hash.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PayloadRef {
    pub name: String,
    /// SHA-256 of (32-byte salt || content), hex.
    pub salted_sha256: String,
    pub bytes: u64,
}

/// An audit entry. Optional fields are left out of the JSON when absent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditEntry {
    /// The entry format version, [`VERSION`].
    pub v: u32,
    /// The event kind, e.g. `change.proposed`, `checks.rejected`, `token.created`.
    pub kind: String,
    /// RFC 3339 UTC time of the event, with milliseconds.
    pub time: String,
    pub actor: EntryActor,
    /// The position of the event in airlock's store: lets the log resume after a crash
    /// without losing or repeating an event.
    pub event_seq: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub change_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_commit: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result_commit: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diff_sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<FileDigest>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<Approval>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<Decision>,
    /// SHA-256 of the policy bundle that decided, when a policy did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub payloads: Vec<PayloadRef>,
    /// Small kind-specific facts (a step's name and exit code, a token's role...).
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub details: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryError {
    #[error("the entry has no canonical form: {0}")]
    Canonical(#[from] canonical::CanonicalError),
    #[error("the entry is not version {VERSION} JSON: {0}")]
    Schema(String),
    #[error("the entry's bytes are not in RFC 8785 canonical form")]
    NotCanonical,
}

impl AuditEntry {
    /// The canonical bytes that go into the log.
    pub fn encode(&self) -> Result<Vec<u8>, EntryError> {
        let value = serde_json::to_value(self).map_err(|e| EntryError::Schema(e.to_string()))?;
        Ok(canonical::to_vec(&value)?)
    }

    /// Reads an entry back, refusing bytes that are not exactly its canonical form.
    pub fn decode(bytes: &[u8]) -> Result<AuditEntry, EntryError> {
        let value: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| EntryError::Schema(e.to_string()))?;
        if canonical::to_vec(&value)? != bytes {
            return Err(EntryError::NotCanonical);
        }
        let entry: AuditEntry =
            serde_json::from_value(value).map_err(|e| EntryError::Schema(e.to_string()))?;
        if entry.v != VERSION {
            return Err(EntryError::Schema(format!(
                "version {}; this airlock reads version {VERSION}",
                entry.v
            )));
        }
        Ok(entry)
    }
}

/// SHA-256 (hex) of the canonical JSON of `evidence`: what a decision commits to.
pub fn evidence_digest(evidence: &serde_json::Value) -> Result<String, EntryError> {
    Ok(crate::hash::sha256_hex(&canonical::to_vec(evidence)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_through_their_canonical_bytes() {
        let entry = AuditEntry {
            v: VERSION,
            kind: "checks.rejected".into(),
            time: "2026-11-24T10:00:00.123Z".into(),
            actor: EntryActor {
                kind: "system".into(),
                name: "worker".into(),
                token_id: None,
            },
            event_seq: 7,
            change_id: Some("chg_01".into()),
            repository: None,
            base_commit: Some("abc".into()),
            result_commit: None,
            diff_sha256: Some("00".repeat(32)),
            files: vec![],
            approval: None,
            decision: Some(Decision {
                outcome: "rejected".into(),
                summary: Some("tests failed".into()),
                evidence_sha256: evidence_digest(&serde_json::json!({"exit": 1})).unwrap(),
            }),
            policy_sha256: None,
            payloads: vec![],
            details: serde_json::json!({"step": "test"}),
        };
        let bytes = entry.encode().unwrap();
        assert!(
            bytes.starts_with(
                b"{\"actor\":{\"name\":\"worker\",\"type\":\"system\"},\"base_commit\""
            )
        );
        assert_eq!(AuditEntry::decode(&bytes).unwrap(), entry);
        let mut spaced = b" ".to_vec();
        spaced.extend_from_slice(&bytes);
        assert_eq!(AuditEntry::decode(&spaced), Err(EntryError::NotCanonical));
    }
}
