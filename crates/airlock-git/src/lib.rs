//! The only crate that runs git. It reads the user's repository (revisions, base trees,
//! blobs, diffs) without ever writing to it, and keeps a pool of isolated workspaces where a
//! proposed change is applied at its base commit and checked.
//!
//! git runs as a separate process with an explicit argument vector and a controlled
//! environment (see `command`): no shell, none of the caller's `GIT_*` variables, no
//! system or global configuration, no hooks, no fsmonitor, no network. Revisions and paths
//! from agent input are validated before git starts and passed where git cannot read them
//! as options. The API is synchronous; async callers use `spawn_blocking`.

mod batch;
mod command;
mod error;
mod landing;
mod repo;
mod tree_fs;
mod validate;
mod workspace;

pub use error::GitError;
pub use landing::{CommitMessage, Landing, MergeConflict, PushOutcome, Remote};
pub use repo::{
    EntryKind, MODE_DIRECTORY, MODE_EXECUTABLE, MODE_SUBMODULE, MODE_SYMLINK, ObjectFormat, Repo,
    TreeEntry, init_repository,
};
pub use validate::CommitId;
pub use workspace::{FileMode, FileWrite, PoolStats, Workspace, WorkspacePool};
