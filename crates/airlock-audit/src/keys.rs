//! The log's key pair on disk: `signing.key` (private, mode 0600) and `verifier.key`
//! (public, to be copied anywhere auditors keep it). A key is created once and never
//! replaced by airlock: a new key would make every earlier checkpoint unverifiable with it.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::AuditError;
use crate::log::{io_error, sync_dir, write_atomically};
use crate::note::{SigningKey, VerifierKey};

pub fn signing_key_path(dir: &Path) -> PathBuf {
    dir.join("signing.key")
}

pub fn verifier_key_path(dir: &Path) -> PathBuf {
    dir.join("verifier.key")
}

/// Loads the signing key, creating the pair under `name` if there is none yet.
/// Returns the key and whether it was created now.
pub fn load_or_create(dir: &Path, name: &str) -> Result<(SigningKey, bool), AuditError> {
    let path = signing_key_path(dir);
    if path.exists() {
        return Ok((load_signer(dir)?, false));
    }
    std::fs::create_dir_all(dir).map_err(io_error(format!("cannot create {}", dir.display())))?;
    let key = SigningKey::generate(name)?;
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .map_err(io_error(format!("cannot create {}", path.display())))?;
    file.write_all(format!("{}\n", key.to_text()).as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(io_error(format!("cannot write {}", path.display())))?;
    write_atomically(
        &verifier_key_path(dir),
        format!("{}\n", key.verifier().to_text()).as_bytes(),
    )?;
    sync_dir(dir)?;
    Ok((key, true))
}

pub fn load_signer(dir: &Path) -> Result<SigningKey, AuditError> {
    let path = signing_key_path(dir);
    let text = std::fs::read_to_string(&path)
        .map_err(io_error(format!("cannot read {}", path.display())))?;
    Ok(SigningKey::from_text(&text)?)
}

/// Reads a verifier key from a file holding `<name>+<id>+<key>`.
pub fn load_verifier_file(path: &Path) -> Result<VerifierKey, AuditError> {
    let text = std::fs::read_to_string(path)
        .map_err(io_error(format!("cannot read {}", path.display())))?;
    Ok(VerifierKey::from_text(&text)?)
}
