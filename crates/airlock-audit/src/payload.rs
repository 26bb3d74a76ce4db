//! Payloads kept outside the tree: test output, diffs, evidence too large or too
//! sensitive for an entry. The entry holds SHA-256(salt || content); the salt lives with
//! the content, so deleting both (a retention policy, a secret that leaked into test
//! output) leaves the tree intact, and the hash alone reveals nothing guessable.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::AuditError;
use crate::entry::PayloadRef;
use crate::log::{io_error, write_atomically};

const SALT_BYTES: usize = 32;

/// A directory of salted payloads, one file each, named by the salted hash.
#[derive(Debug, Clone)]
pub struct PayloadStore {
    dir: PathBuf,
}

/// What reading a payload back found.
#[derive(Debug, PartialEq, Eq)]
pub enum PayloadState {
    Present(Vec<u8>),
    /// Deleted by retention; the entry still proves it existed.
    Purged,
    /// The file does not hash to the entry's commitment.
    Altered,
}

impl PayloadStore {
    pub fn new(dir: &Path) -> PayloadStore {
        PayloadStore {
            dir: dir.to_path_buf(),
        }
    }

    fn path(&self, salted_sha256: &str) -> PathBuf {
        self.dir.join(salted_sha256)
    }

    /// Stores `content` durably under a fresh salt and returns the reference for the entry.
    pub fn put(&self, name: &str, content: &[u8]) -> Result<PayloadRef, AuditError> {
        std::fs::create_dir_all(&self.dir)
            .map_err(io_error(format!("cannot create {}", self.dir.display())))?;
        let mut salt = [0u8; SALT_BYTES];
        getrandom::fill(&mut salt)
            .map_err(|e| AuditError::Refused(format!("no randomness for a salt: {e}")))?;
        let mut file = Vec::with_capacity(SALT_BYTES + content.len());
        file.extend_from_slice(&salt);
        file.extend_from_slice(content);
        let salted_sha256 = hex::encode(Sha256::digest(&file));
        write_atomically(&self.path(&salted_sha256), &file)?;
        Ok(PayloadRef {
            name: name.to_owned(),
            salted_sha256,
            bytes: content.len() as u64,
        })
    }

    /// The salt and content of a payload, as a bundle carries them; None when purged.
    pub fn get_raw(&self, reference: &PayloadRef) -> Option<Vec<u8>> {
        if !is_hex_digest(&reference.salted_sha256) {
            return None;
        }
        std::fs::read(self.path(&reference.salted_sha256)).ok()
    }

    pub fn get(&self, reference: &PayloadRef) -> PayloadState {
        match self.get_raw(reference) {
            None => PayloadState::Purged,
            Some(raw) => check_raw(reference, &raw),
        }
    }

    /// Deletes a payload (retention). The entry that committed to it stays valid.
    pub fn purge(&self, reference: &PayloadRef) -> Result<bool, AuditError> {
        if !is_hex_digest(&reference.salted_sha256) {
            return Ok(false);
        }
        match std::fs::remove_file(self.path(&reference.salted_sha256)) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io_error(format!(
                "cannot delete payload {}",
                reference.salted_sha256
            ))(e)),
        }
    }
}

/// Checks salt-and-content bytes against a reference.
pub fn check_raw(reference: &PayloadRef, raw: &[u8]) -> PayloadState {
    if raw.len() < SALT_BYTES
        || hex::encode(Sha256::digest(raw)) != reference.salted_sha256
        || (raw.len() - SALT_BYTES) as u64 != reference.bytes
    {
        return PayloadState::Altered;
    }
    PayloadState::Present(raw[SALT_BYTES..].to_vec())
}

fn is_hex_digest(text: &str) -> bool {
    text.len() == 64
        && text
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}
