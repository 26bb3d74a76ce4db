//! The one error type of this crate: what went wrong, with the git arguments and a bounded
//! excerpt of git's own message, never the environment.

use std::io;
use std::path::PathBuf;

use crate::CommitId;

/// Why a git operation or a workspace operation could not be done.
///
/// Input errors (`InvalidRevision`, `InvalidPath`, `InvalidCommitId`, `InvalidChange`,
/// `UnsafeWrite` raised before any write) say what was wrong and what is accepted, and are
/// raised before anything runs or changes.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GitError {
    /// The directory given is not inside a git repository (or does not exist).
    #[error("{path} is not a git repository: {detail}")]
    NotARepository { path: PathBuf, detail: String },

    /// A revision was refused before git was run, because git could read it as something
    /// other than one commit (an option, a range, several arguments).
    #[error(
        "revision {rev:?} is not accepted: {reason}; expected one branch, tag or commit id \
         naming a single commit"
    )]
    InvalidRevision { rev: String, reason: &'static str },

    /// A new repository was asked for where one already exists.
    #[error("{path} already holds a git repository; choose an empty or new directory")]
    AlreadyARepository { path: PathBuf },

    /// A well-formed revision that names no commit in the repository (absent, ambiguous,
    /// or naming a tree or blob).
    #[error("revision {rev:?} does not name a commit in this repository")]
    UnknownRevision { rev: String },

    /// Text that is not a full commit id.
    #[error("{value:?} is not a commit id: expected 40 (SHA-1) or 64 (SHA-256) hexadecimal digits")]
    InvalidCommitId { value: String },

    /// A repository path that could escape the tree or that git would not track.
    #[error(
        "path {path:?} is not accepted: {reason}; expected a relative path with '/' separators \
         and no empty, '.', '..' or '.git' components"
    )]
    InvalidPath { path: String, reason: &'static str },

    /// A change that cannot be written as a whole (for example two writes to one path).
    #[error("change is not accepted: {reason}")]
    InvalidChange { reason: String },

    /// A write that would go through a symbolic link or replace a directory.
    #[error("refusing to write {path:?}: {reason}")]
    UnsafeWrite { path: String, reason: String },

    /// The workspace pool was configured with no room for a workspace.
    #[error("workspace pool capacity must be at least 1, got {capacity}")]
    InvalidCapacity { capacity: usize },

    /// git could not be started at all.
    #[error("could not run git {args}: {source} (is git installed and on PATH?)")]
    Spawn {
        args: String,
        #[source]
        source: io::Error,
    },

    /// git ran and failed.
    #[error("git {args} failed ({status}): {stderr}")]
    Command {
        args: String,
        status: String,
        stderr: String,
    },

    /// git succeeded but printed something this crate does not understand.
    #[error("git {args} printed output airlock cannot read: {detail}")]
    UnexpectedOutput { args: String, detail: String },

    /// A file system operation on a workspace or the pool's state directory failed.
    #[error("could not {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// After a reset, the workspace still differs from its base commit.
    #[error("workspace {path} still differs from {base} after reset: {paths:?}")]
    NotClean {
        path: PathBuf,
        base: CommitId,
        paths: Vec<String>,
    },
}

impl GitError {
    pub fn io(action: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        GitError::Io {
            action,
            path: path.into(),
            source,
        }
    }
}
