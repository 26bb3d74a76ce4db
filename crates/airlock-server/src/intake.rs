//! Intake over git: resolves the base commit, reads the base tree for the rules in
//! `airlock_core::intake`, and turns a validated change set back into file writes for a
//! workspace. Runs on blocking threads (every call here may start git).

use airlock_core::change::{ChangedFile, FileOp, SourceForm};
use airlock_core::config::Limits;
use airlock_core::intake::{
    self, ChangeSet, Edit, IntakeError, MODE_EXECUTABLE, MODE_SYMLINK, TreeEntry, TreeReader,
};
use airlock_git::{CommitId, FileMode, FileWrite, GitError, Repo};

/// One commit's tree, read through git.
#[derive(Debug, Clone, Copy)]
pub struct GitTree<'a> {
    pub repo: &'a Repo,
    pub commit: &'a CommitId,
}

impl TreeReader for GitTree<'_> {
    fn entries(&self, paths: &[&str]) -> Result<Vec<TreeEntry>, String> {
        let entries = self
            .repo
            .tree_entries(self.commit, paths)
            .map_err(|e| e.to_string())?;
        Ok(entries
            .into_iter()
            .map(|e| TreeEntry {
                path: e.path,
                mode: e.mode,
            })
            .collect())
    }

    fn read(&self, paths: &[&str]) -> Result<Vec<Option<Vec<u8>>>, String> {
        self.repo
            .read_files(self.commit, paths)
            .map_err(|e| e.to_string())
    }
}

/// The base tree as the scanner reads it. A tree git cannot list or read gives the
/// scanner nothing, as a scan without a base tree has (it then judges the diff alone).
impl airlock_scan::BaseTree for GitTree<'_> {
    fn paths(&self) -> Vec<String> {
        self.repo.list_files(self.commit).unwrap_or_else(|error| {
            tracing::warn!(commit = %self.commit, %error, "cannot list the base tree for the scan");
            Vec::new()
        })
    }

    fn read(&self, paths: &[&str]) -> Vec<Option<Vec<u8>>> {
        self.repo
            .read_files(self.commit, paths)
            .unwrap_or_else(|error| {
                tracing::warn!(commit = %self.commit, %error, "cannot read the base tree for the scan");
                vec![None; paths.len()]
            })
    }
}

/// The three forms a proposal may take.
#[derive(Debug)]
pub enum ProposalBody {
    Diff(String),
    Edits(Vec<Edit>),
    Ref(String),
}

/// What intake produced: the validated change and where it came from.
#[derive(Debug)]
pub struct Accepted {
    pub base: CommitId,
    pub source: SourceForm,
    pub change_set: ChangeSet,
}

#[derive(Debug, thiserror::Error)]
pub enum AcceptError {
    #[error(transparent)]
    Intake(#[from] IntakeError),
    #[error("{0}")]
    UnknownRevision(String),
    #[error(transparent)]
    Git(GitError),
}

fn revision_error(what: &str, error: GitError) -> AcceptError {
    match error {
        GitError::UnknownRevision { .. } | GitError::InvalidRevision { .. } => {
            AcceptError::UnknownRevision(format!("{what}: {error}"))
        }
        other => AcceptError::Git(other),
    }
}

/// Validates a proposal against the repository. Writes nothing anywhere.
pub fn accept(
    repo: &Repo,
    target_branch: &str,
    base: Option<&str>,
    body: &ProposalBody,
    limits: &Limits,
) -> Result<Accepted, AcceptError> {
    let target_tip = || {
        repo.resolve_commit(target_branch)
            .map_err(|e| revision_error("target branch", e))
    };
    // The base the agent named, else a default that depends on the form.
    let base_or = |default: &dyn Fn() -> Result<CommitId, AcceptError>| match base {
        Some(rev) => repo
            .resolve_commit(rev)
            .map_err(|e| revision_error("base", e)),
        None => default(),
    };
    match body {
        ProposalBody::Diff(diff) => {
            let base = base_or(&target_tip)?;
            let change_set = intake::from_diff(
                diff.as_bytes(),
                &GitTree {
                    repo,
                    commit: &base,
                },
                None,
                limits,
            )?;
            Ok(Accepted {
                base,
                source: SourceForm::Diff,
                change_set,
            })
        }
        ProposalBody::Edits(edits) => {
            let base = base_or(&target_tip)?;
            let change_set = intake::from_edits(
                edits,
                &GitTree {
                    repo,
                    commit: &base,
                },
                limits,
            )?;
            Ok(Accepted {
                base,
                source: SourceForm::Edits,
                change_set,
            })
        }
        ProposalBody::Ref(name) => {
            let head = repo
                .resolve_commit(name)
                .map_err(|e| revision_error("ref", e))?;
            // A branch an agent pushed: the change is what it adds since it forked.
            let base = base_or(&|| {
                repo.merge_base(&target_tip()?, &head)
                    .map_err(AcceptError::Git)?
                    .ok_or_else(|| {
                        AcceptError::UnknownRevision(format!(
                            "ref `{name}` shares no history with `{target_branch}`"
                        ))
                    })
            })?;
            let diff = repo.diff(&base, &head).map_err(AcceptError::Git)?;
            let base_tree = GitTree {
                repo,
                commit: &base,
            };
            let head_tree = GitTree {
                repo,
                commit: &head,
            };
            let change_set = intake::from_diff(&diff, &base_tree, Some(&head_tree), limits)?;
            let source = SourceForm::Ref {
                name: name.clone(),
                head: head.to_string(),
            };
            Ok(Accepted {
                base,
                source,
                change_set,
            })
        }
    }
}

/// Re-derives a stored change's file contents from its base commit and diff, checks them
/// against the hashes recorded at intake, and returns the writes that turn the base tree
/// into base + change.
pub fn materialize(
    repo: &Repo,
    base: &CommitId,
    source: &SourceForm,
    diff: &[u8],
    recorded: &[ChangedFile],
) -> Result<Vec<FileWrite>, String> {
    let base_tree = GitTree { repo, commit: base };
    let contents = match source {
        SourceForm::Ref { head, .. } => {
            let head: CommitId = head
                .parse()
                .map_err(|e| format!("stored head commit: {e}"))?;
            let head_tree = GitTree {
                repo,
                commit: &head,
            };
            intake::rederive(diff, recorded, &base_tree, Some(&head_tree))
        }
        SourceForm::Diff | SourceForm::Edits => intake::rederive(diff, recorded, &base_tree, None),
    }
    .map_err(|e| format!("the stored change no longer applies: {e}"))?;
    Ok(file_writes(recorded, &contents))
}

/// Removals first, then writes: a rename from `a` to `a/b`, or a file replaced by a
/// directory, needs the old path gone before the new one is written.
fn file_writes(files: &[ChangedFile], contents: &[Option<Vec<u8>>]) -> Vec<FileWrite> {
    let mut writes = Vec::new();
    for file in files {
        if matches!(file.op, FileOp::Delete | FileOp::Rename)
            && let Some(old) = &file.old_path
        {
            writes.push(FileWrite {
                path: old.clone(),
                content: None,
                mode: FileMode::Regular,
            });
        }
    }
    for (file, content) in files.iter().zip(contents) {
        if let (Some(path), Some(content)) = (&file.new_path, content) {
            let mode = match file.new_mode {
                Some(MODE_SYMLINK) => FileMode::Symlink,
                Some(MODE_EXECUTABLE) => FileMode::Executable,
                _ => FileMode::Regular,
            };
            writes.push(FileWrite {
                path: path.clone(),
                content: Some(content.clone()),
                mode,
            });
        }
    }
    writes
}
