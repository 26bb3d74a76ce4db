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

    /// Whether the payload's file is still there (not read).
    pub fn contains(&self, reference: &PayloadRef) -> bool {
        is_hex_digest(&reference.salted_sha256) && self.path(&reference.salted_sha256).exists()
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

/// What a retention pass did (or, dry, would do).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Purged {
    /// Entries selected that referenced at least one payload.
    pub entries: u64,
    /// Payload files deleted (or that a dry run would delete).
    pub payloads: u64,
    /// Their content bytes.
    pub bytes: u64,
    /// Payloads of selected entries that were already gone.
    pub already_purged: u64,
}

/// What a retention pass does with one entry's payloads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Select {
    Purge,
    Keep,
    /// Keep this one and stop: the entries after it are newer.
    Stop,
}

/// Deletes the payloads of the entries of `log` from index `from` on that `select` picks
/// (by age, by change), reading the entries in batches; with `dry_run`, only counts them.
/// Returns what it did and the index it stopped at. The entries stay, so the tree and
/// every proof are unchanged, and a verifier reports the payloads as purged.
pub fn purge_selected(
    log: &crate::AuditLog,
    store: &PayloadStore,
    from: u64,
    mut select: impl FnMut(&crate::entry::AuditEntry) -> Select,
    dry_run: bool,
) -> Result<(Purged, u64), AuditError> {
    let mut purged = Purged::default();
    let mut at = from;
    while at < log.len() {
        for (index, bytes) in log.read(at, 1000)? {
            let entry = crate::entry::AuditEntry::decode(&bytes)
                .map_err(|e| AuditError::Refused(format!("entry {index} does not decode: {e}")))?;
            match select(&entry) {
                Select::Stop => return Ok((purged, index)),
                Select::Keep => {}
                Select::Purge if entry.payloads.is_empty() => {}
                Select::Purge => {
                    purged.entries += 1;
                    for reference in &entry.payloads {
                        if !store.contains(reference) {
                            purged.already_purged += 1;
                        } else if dry_run || store.purge(reference)? {
                            purged.payloads += 1;
                            purged.bytes += reference.bytes;
                        }
                    }
                }
            }
            at = index + 1;
        }
    }
    Ok((purged, at))
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
