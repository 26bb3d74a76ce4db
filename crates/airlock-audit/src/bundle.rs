//! Offline evidence bundles: a change's entries, an inclusion proof for each, the signed
//! checkpoint they are proven against, the public key, and the payloads still kept. An
//! auditor checks one with `airlock audit verify-bundle` and nothing else: no server, no
//! database, no log. Pinning the key (`--key`) makes the check independent of the bundle
//! itself; without it, the bundle proves only that it is consistent with its own key.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};

use crate::AuditError;
use crate::canonical;
use crate::entry::AuditEntry;
use crate::hash::leaf_hash;
use crate::log::AuditLog;
use crate::merkle::verify_inclusion;
use crate::note::{Checkpoint, VerifierKey};
use crate::payload::{PayloadState, PayloadStore, check_raw};

pub const FORMAT: &str = "airlock-audit-bundle/1";
/// Bundles larger than this are refused before parsing.
pub const MAX_BUNDLE_BYTES: usize = 256 << 20;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bundle {
    pub format: String,
    pub verifier_key: String,
    pub checkpoint: String,
    pub entries: Vec<BundleEntry>,
    #[serde(default)]
    pub payloads: Vec<BundlePayload>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleEntry {
    pub index: u64,
    /// The entry as JSON; its RFC 8785 canonical form is the leaf.
    pub entry: serde_json::Value,
    /// Base64 hashes, leaf side first.
    pub inclusion_proof: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundlePayload {
    pub salted_sha256: String,
    /// Base64 of salt || content.
    pub salted_content: String,
}

/// What a valid bundle showed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleReport {
    pub checkpoint: Checkpoint,
    pub entries: usize,
    pub payloads_present: usize,
    pub payloads_purged: usize,
    /// True when the key was given by the auditor, not taken from the bundle.
    pub key_pinned: bool,
}

/// Builds a bundle of the entries at `indices`, proven against the log's latest
/// checkpoint, which must already cover them.
pub fn export(
    log: &AuditLog,
    payloads: &PayloadStore,
    indices: &[u64],
) -> Result<Bundle, AuditError> {
    let latest = log
        .latest_checkpoint()
        .ok_or_else(|| AuditError::Refused("the log has no signed checkpoint yet".into()))?;
    let size = latest.checkpoint.size;
    let mut bundle = Bundle {
        format: FORMAT.into(),
        verifier_key: log.verifier().to_text(),
        checkpoint: latest.note.clone(),
        entries: Vec::with_capacity(indices.len()),
        payloads: Vec::new(),
    };
    for &index in indices {
        if index >= size {
            return Err(AuditError::Refused(format!(
                "entry {index} is not covered by the latest checkpoint (size {size}); publish a checkpoint first"
            )));
        }
        let bytes = log.entry(index)?;
        let entry: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| AuditError::Damaged {
                index,
                what: format!("not JSON: {e}"),
            })?;
        if let Ok(decoded) = AuditEntry::decode(&bytes) {
            for reference in &decoded.payloads {
                if let Some(raw) = payloads.get_raw(reference)
                    && matches!(check_raw(reference, &raw), PayloadState::Present(_))
                {
                    bundle.payloads.push(BundlePayload {
                        salted_sha256: reference.salted_sha256.clone(),
                        salted_content: BASE64.encode(raw),
                    });
                }
            }
        }
        let proof = log.inclusion_proof(index, size)?;
        bundle.entries.push(BundleEntry {
            index,
            entry,
            inclusion_proof: proof.iter().map(|h| h.to_base64()).collect(),
        });
    }
    Ok(bundle)
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BundleError {
    #[error("not an evidence bundle: {0}")]
    Malformed(String),
    #[error("the bundle's key {bundle} is not the pinned key {pinned}")]
    WrongKey { bundle: String, pinned: String },
    #[error("the checkpoint does not verify: {0}")]
    Checkpoint(String),
    #[error("entry {index}: {what}")]
    Entry { index: u64, what: String },
}

/// Checks a bundle completely: the key, the checkpoint signature, every entry's
/// canonical form and inclusion proof, every payload present against its commitment.
pub fn verify_bundle(
    text: &[u8],
    pinned: Option<&VerifierKey>,
) -> Result<BundleReport, BundleError> {
    if text.len() > MAX_BUNDLE_BYTES {
        return Err(BundleError::Malformed(format!(
            "{} bytes; bundles are at most {MAX_BUNDLE_BYTES}",
            text.len()
        )));
    }
    let bundle: Bundle =
        serde_json::from_slice(text).map_err(|e| BundleError::Malformed(e.to_string()))?;
    if bundle.format != FORMAT {
        return Err(BundleError::Malformed(format!(
            "format {:?}; this airlock reads {FORMAT:?}",
            bundle.format
        )));
    }
    let key = VerifierKey::from_text(&bundle.verifier_key)
        .map_err(|e| BundleError::Malformed(format!("verifier_key: {e}")))?;
    if let Some(pinned) = pinned
        && *pinned != key
    {
        return Err(BundleError::WrongKey {
            bundle: key.to_text(),
            pinned: pinned.to_text(),
        });
    }
    let checkpoint = Checkpoint::open(&bundle.checkpoint, &key)
        .map_err(|e| BundleError::Checkpoint(e.to_string()))?;
    if checkpoint.origin != key.name() {
        return Err(BundleError::Checkpoint(format!(
            "the checkpoint is for log {:?}, the key for {:?}",
            checkpoint.origin,
            key.name()
        )));
    }
    let mut report = BundleReport {
        checkpoint: checkpoint.clone(),
        entries: 0,
        payloads_present: 0,
        payloads_purged: 0,
        key_pinned: pinned.is_some(),
    };
    for item in &bundle.entries {
        let bad = |what: String| BundleError::Entry {
            index: item.index,
            what,
        };
        let bytes = canonical::to_vec(&item.entry).map_err(|e| bad(e.to_string()))?;
        let entry = AuditEntry::decode(&bytes).map_err(|e| bad(e.to_string()))?;
        let proof: Vec<Vec<u8>> = item
            .inclusion_proof
            .iter()
            .map(|h| {
                BASE64
                    .decode(h)
                    .map_err(|_| bad(format!("proof hash {h:?} is not base64")))
            })
            .collect::<Result<_, _>>()?;
        verify_inclusion(
            item.index,
            checkpoint.size,
            &leaf_hash(&bytes).0,
            &proof,
            &checkpoint.root.0,
        )
        .map_err(|e| bad(format!("not in the signed tree: {e}")))?;
        for reference in &entry.payloads {
            match bundle
                .payloads
                .iter()
                .find(|p| p.salted_sha256 == reference.salted_sha256)
            {
                None => report.payloads_purged += 1,
                Some(payload) => {
                    let raw = BASE64
                        .decode(&payload.salted_content)
                        .map_err(|_| bad(format!("payload {} is not base64", reference.name)))?;
                    match check_raw(reference, &raw) {
                        PayloadState::Present(_) => report.payloads_present += 1,
                        _ => {
                            return Err(bad(format!(
                                "payload {} does not match its salted hash",
                                reference.name
                            )));
                        }
                    }
                }
            }
        }
        report.entries += 1;
    }
    Ok(report)
}
