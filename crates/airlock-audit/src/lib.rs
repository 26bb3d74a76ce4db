//! The tamper-evident audit log: every event of the pipeline as an entry in an RFC 6962
//! Merkle tree, stored in append-only segment files, with Ed25519-signed checkpoints in
//! the C2SP signed-note format and proofs that anyone can check offline.
//!
//! The crate knows nothing of changes or servers: an entry is canonical JSON bytes
//! ([`entry`] builds them), the log stores and proves them, [`verify`] re-derives
//! everything from the files and a public key, and [`bundle`] carries a change's entries
//! with their proofs to an auditor who has neither the server nor its database.

pub mod bundle;
pub mod canonical;
pub mod entry;
pub mod hash;
pub mod keys;
pub mod log;
pub mod merkle;
pub mod note;
pub mod payload;
pub mod segment;
pub mod verify;

use std::sync::Arc;

pub use hash::{Hash, leaf_hash, node_hash};
pub use log::{AuditLog, LogOptions, Recovery, SharedLog, SignedCheckpoint};
pub use note::{Checkpoint, NoteError, SigningKey, VerifierKey};

#[derive(Debug, Clone, thiserror::Error)]
pub enum AuditError {
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: Arc<std::io::Error>,
    },
    #[error("the audit log is damaged at index {index}: {what}")]
    Damaged { index: u64, what: String },
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Note(#[from] NoteError),
    #[error("another process is writing the audit log in {0}")]
    Locked(String),
    #[error(
        "the audit log stopped accepting entries after a failed write; restart airlock to recover it"
    )]
    Poisoned,
}
