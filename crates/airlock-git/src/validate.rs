//! Validated values that cross into git: commit ids, revisions and repository paths.
//! Everything that comes from agent input is checked here before any git process starts.

use std::fmt;
use std::str::FromStr;

use crate::GitError;

/// A full commit id: 40 (SHA-1) or 64 (SHA-256) lowercase hexadecimal digits.
///
/// Holding one proves the text cannot be read by git as an option, a range or a path,
/// so it is passed to git without further checks.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CommitId(String);

impl CommitId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for CommitId {
    type Err = GitError;

    /// Accepts upper or lower case and stores lower case, so equal ids compare equal.
    fn from_str(value: &str) -> Result<Self, Self::Err> {
        let well_formed =
            matches!(value.len(), 40 | 64) && value.bytes().all(|byte| byte.is_ascii_hexdigit());
        if !well_formed {
            return Err(GitError::InvalidCommitId {
                value: value.chars().take(80).collect(),
            });
        }
        Ok(CommitId(value.to_ascii_lowercase()))
    }
}

impl fmt::Display for CommitId {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.0)
    }
}

impl AsRef<str> for CommitId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// The longest revision accepted; longer text is not a name a person or agent typed.
const MAX_REVISION_BYTES: usize = 1024;

/// Refuses revisions that git could read as anything but one commit: options (leading
/// `-`), several arguments (whitespace, NUL), and ranges (`a..b`, `a...b`, `x^!`, `x^@`,
/// `x^-`).
pub(crate) fn check_revision(rev: &str) -> Result<(), GitError> {
    let reason = if rev.is_empty() {
        Some("it is empty")
    } else if rev.len() > MAX_REVISION_BYTES {
        Some("it is longer than 1024 bytes")
    } else if rev.starts_with('-') {
        Some("it starts with '-', which git would read as an option")
    } else if rev.contains('\0') {
        Some("it contains a NUL byte")
    } else if rev.chars().any(char::is_whitespace) {
        Some("it contains whitespace")
    } else if rev.chars().any(char::is_control) {
        Some("it contains a control character")
    } else if rev.contains("..") {
        Some("it is a range ('..'), not a single commit")
    } else if rev.contains("^!") || rev.contains("^@") || rev.contains("^-") {
        Some("it is a range ('^!', '^@' or '^-'), not a single commit")
    } else {
        None
    };
    match reason {
        None => Ok(()),
        Some(reason) => Err(GitError::InvalidRevision {
            rev: rev.chars().take(200).collect(),
            reason,
        }),
    }
}

/// Refuses repository paths that are not plain relative paths inside the tree, or that git
/// would refuse to track (`.git` components), or that its line-based protocols cannot carry.
pub(crate) fn check_repository_path(path: &str) -> Result<(), GitError> {
    let reason = if path.is_empty() {
        Some("it is empty")
    } else if path.starts_with('/') {
        Some("it is absolute")
    } else if path.ends_with('/') {
        Some("it ends with '/'")
    } else if path.chars().any(char::is_control) {
        Some("it contains a control character (NUL, newline, ...)")
    } else {
        path.split('/').find_map(|component| match component {
            "" => Some("it has an empty component ('//')"),
            "." => Some("it has a '.' component"),
            ".." => Some("it has a '..' component"),
            _ if component.eq_ignore_ascii_case(".git") => Some("it has a '.git' component"),
            _ => None,
        })
    };
    match reason {
        None => Ok(()),
        Some(reason) => Err(GitError::InvalidPath {
            path: path.chars().take(200).collect(),
            reason,
        }),
    }
}
