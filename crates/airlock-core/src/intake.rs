//! Change intake: turns what an agent sent (a diff, a list of edits, or a commit) into a
//! validated change set, or refuses it with a reason the agent can act on.
//!
//! Everything an agent sends is hostile. The rules here stop a change from writing
//! outside the repository (`..`, absolute paths, a symlink on the way, a new symlink
//! that points out), into `.git/`, into submodules, or past the size limits; and they
//! make sure the change applies exactly to its base commit. The base tree is read
//! through [`TreeReader`], so these rules run without git and are tested without it.

use std::collections::{HashMap, HashSet};

use airlock_diff::{FileChangeKind, FilePatch};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::change::{ChangedFile, FileOp};
use crate::config::Limits;
use crate::ids::printable;

pub const MODE_FILE: u32 = 0o100644;
pub const MODE_EXECUTABLE: u32 = 0o100755;
pub const MODE_SYMLINK: u32 = 0o120000;
pub const MODE_GITLINK: u32 = 0o160000;
pub const MODE_TREE: u32 = 0o040000;

/// One entry of a commit's tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TreeEntry {
    pub path: String,
    pub mode: u32,
}

/// Read access to one commit's tree. Implemented over git by the caller.
pub trait TreeReader {
    /// Entries for each of `paths` that exists (files, directories, symlinks, submodules).
    fn entries(&self, paths: &[&str]) -> Result<Vec<TreeEntry>, String>;
    /// Blob contents; `None` where the path is absent or not a blob.
    fn read(&self, paths: &[&str]) -> Result<Vec<Option<Vec<u8>>>, String>;
}

/// A text edit as agents send it. `old_text` must occur exactly once in the file.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Edit {
    Replace {
        path: String,
        old_text: String,
        new_text: String,
    },
    Create {
        path: String,
        content: String,
    },
    Delete {
        path: String,
    },
}

impl Edit {
    pub fn path(&self) -> &str {
        match self {
            Edit::Replace { path, .. } | Edit::Create { path, .. } | Edit::Delete { path } => path,
        }
    }
}

/// A validated change: what it touches, and the normalized diff that describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChangeSet {
    /// The diff as received (diff form) or as rendered from edits.
    pub diff: Vec<u8>,
    /// What it touches, with hashes of each file before and after. The contents are
    /// not kept: `rederive` produces them again from the base commit when needed.
    pub files: Vec<ChangedFile>,
}

impl ChangeSet {
    pub fn lines_added(&self) -> usize {
        self.files.iter().map(|f| f.lines_added).sum()
    }
    pub fn lines_removed(&self) -> usize {
        self.files.iter().map(|f| f.lines_removed).sum()
    }
}

/// Why a change was refused. `code()` is stable and machine-readable; the message says
/// what was wrong and what is accepted.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IntakeError {
    #[error("{message}")]
    InvalidPath { path: String, message: String },
    #[error("`{path}` is inside `.git`; changes may not touch git's own files")]
    GitDirectory { path: String },
    #[error("`{path}`: {message}")]
    ThroughSymlink { path: String, message: String },
    #[error("`{path}`: {message}")]
    SymlinkEscapes { path: String, message: String },
    #[error(
        "`{path}` is a submodule; submodule changes are not accepted (change the submodule's own repository)"
    )]
    Submodule { path: String },
    #[error(
        "`{path}` is a binary change; binary changes are refused unless `limits.allow_binary = true` in airlock.toml"
    )]
    Binary { path: String },
    #[error("malformed diff: {message}")]
    MalformedDiff { message: String },
    #[error("the change is {size} bytes; the limit is {limit} bytes (`limits.max_change_bytes`)")]
    TooLarge { size: u64, limit: u64 },
    #[error("the change touches {count} files; the limit is {limit} (`limits.max_files`)")]
    TooManyFiles { count: usize, limit: usize },
    #[error(
        "the change is empty; accepted: a diff, edits or a commit that changes at least one file"
    )]
    Empty,
    #[error("edit {index} on `{path}`: {message}")]
    Edit {
        index: usize,
        path: String,
        message: String,
    },
    #[error("`{path}` does not apply to the base commit: {message}")]
    DoesNotApply { path: String, message: String },
    #[error(
        "`{path}`: mode {mode:o} is not accepted; accepted: 100644 (file), 100755 (executable), 120000 (symlink)"
    )]
    Mode { path: String, mode: u32 },
    #[error("could not read the base commit: {0}")]
    Base(String),
}

impl IntakeError {
    pub fn code(&self) -> &'static str {
        match self {
            IntakeError::InvalidPath { .. } => "invalid_path",
            IntakeError::GitDirectory { .. } => "path_in_git_dir",
            IntakeError::ThroughSymlink { .. } => "path_through_symlink",
            IntakeError::SymlinkEscapes { .. } => "symlink_escapes_repository",
            IntakeError::Submodule { .. } => "submodule_change",
            IntakeError::Binary { .. } => "binary_not_allowed",
            IntakeError::MalformedDiff { .. } => "malformed_diff",
            IntakeError::TooLarge { .. } => "change_too_large",
            IntakeError::TooManyFiles { .. } => "too_many_files",
            IntakeError::Empty => "empty_change",
            IntakeError::Edit { .. } => "edit_does_not_match",
            IntakeError::DoesNotApply { .. } => "patch_does_not_apply",
            IntakeError::Mode { .. } => "unsupported_mode",
            IntakeError::Base(_) => "base_unreadable",
        }
    }

    /// Whether the agent caused it (a 4xx) rather than airlock failing to read git (a 5xx).
    pub fn is_input_error(&self) -> bool {
        !matches!(self, IntakeError::Base(_))
    }
}

/// Validates a repository-relative path as sent by an agent. Accepted: `/`-separated
/// components, none empty, `.` or `..`, none named `.git` (in any case, for
/// case-insensitive file systems), no control characters, at most 4096 bytes.
pub fn validate_path(path: &str) -> Result<(), IntakeError> {
    let invalid = |message: String| IntakeError::InvalidPath {
        path: path.to_owned(),
        message,
    };
    if path.is_empty() {
        return Err(invalid(
            "empty path; accepted: a path relative to the repository root such as `src/main.rs`"
                .into(),
        ));
    }
    if path.len() > 4096 {
        return Err(invalid(format!(
            "path of {} bytes; accepted: at most 4096 bytes",
            path.len()
        )));
    }
    if path.chars().any(char::is_control) {
        return Err(invalid(format!(
            "`{}` contains a control character (NUL, newline, ...); accepted: printable characters only",
            printable(path)
        )));
    }
    if path.starts_with('/') {
        return Err(invalid(format!(
            "`{}` is absolute; accepted: a path relative to the repository root",
            printable(path)
        )));
    }
    if path.contains('\\') {
        return Err(invalid(format!(
            "`{}` contains a backslash; accepted: `/` as the only separator",
            printable(path)
        )));
    }
    for component in path.split('/') {
        match component {
            "" => {
                return Err(invalid(format!(
                    "`{}` has an empty component (`//` or a trailing `/`)",
                    printable(path)
                )));
            }
            "." | ".." => {
                return Err(invalid(format!(
                    "`{}` contains `{component}`, which could escape the repository; accepted: plain relative paths",
                    printable(path)
                )));
            }
            c if c.eq_ignore_ascii_case(".git") => {
                return Err(IntakeError::GitDirectory {
                    path: path.to_owned(),
                });
            }
            _ => {}
        }
    }
    Ok(())
}

/// Every proper ancestor directory of `path`: `a/b/c` gives `a`, `a/b`.
fn ancestors(path: &str) -> impl Iterator<Item = &str> {
    path.match_indices('/').map(move |(i, _)| &path[..i])
}

/// Lexically resolves a symlink's target from the link's directory and checks that it
/// stays inside the repository and out of `.git`.
fn check_symlink_target(link_path: &str, target: &[u8]) -> Result<(), IntakeError> {
    let escapes = |why: &str| IntakeError::SymlinkEscapes {
        path: link_path.to_owned(),
        message: why.to_owned(),
    };
    let target =
        std::str::from_utf8(target).map_err(|_| escapes("the symlink target is not UTF-8"))?;
    if target.is_empty() || target.contains('\0') {
        return Err(escapes("the symlink target is empty or contains NUL"));
    }
    if target.starts_with('/') {
        return Err(escapes(
            "a new symlink points to an absolute path, outside the repository; accepted: relative targets inside the repository",
        ));
    }
    let mut stack: Vec<&str> = link_path.split('/').collect();
    stack.pop(); // the link's own name
    for component in target.split('/') {
        match component {
            "" | "." => {}
            ".." => {
                if stack.pop().is_none() {
                    return Err(escapes(
                        "a new symlink points outside the repository; accepted: relative targets inside the repository",
                    ));
                }
            }
            c if c.eq_ignore_ascii_case(".git") => {
                return Err(escapes("a new symlink points into `.git`"));
            }
            c => stack.push(c),
        }
    }
    Ok(())
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let mut out = String::with_capacity(64);
    for b in digest {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// Validates a diff against the base tree and computes every file's new content.
///
/// `head`, when given (changes proposed as a commit), supplies the new contents instead
/// of applying hunks; this is also the only way binary changes can be materialized.
pub fn from_diff(
    diff: &[u8],
    base: &dyn TreeReader,
    head: Option<&dyn TreeReader>,
    limits: &Limits,
) -> Result<ChangeSet, IntakeError> {
    if diff.len() as u64 > limits.max_change_bytes {
        return Err(IntakeError::TooLarge {
            size: diff.len() as u64,
            limit: limits.max_change_bytes,
        });
    }
    let patch = airlock_diff::parse(diff).map_err(|e| IntakeError::MalformedDiff {
        message: e.to_string(),
    })?;
    if patch.files.is_empty() {
        return Err(IntakeError::Empty);
    }
    if patch.files.len() > limits.max_files {
        return Err(IntakeError::TooManyFiles {
            count: patch.files.len(),
            limit: limits.max_files,
        });
    }

    // Path rules that need nothing but the patch.
    let mut touched: HashSet<&str> = HashSet::new();
    for file in &patch.files {
        for path in [file.old_path.as_deref(), file.new_path.as_deref()]
            .into_iter()
            .flatten()
        {
            validate_path(path)?;
        }
        if file.old_mode == Some(MODE_GITLINK) || file.new_mode == Some(MODE_GITLINK) {
            return Err(IntakeError::Submodule {
                path: file.path().to_owned(),
            });
        }
        if let Some(mode) = file.new_mode
            && ![MODE_FILE, MODE_EXECUTABLE, MODE_SYMLINK].contains(&mode)
        {
            return Err(IntakeError::Mode {
                path: file.path().to_owned(),
                mode,
            });
        }
        if file.binary && !limits.allow_binary {
            return Err(IntakeError::Binary {
                path: file.path().to_owned(),
            });
        }
        if file.binary && head.is_none() {
            return Err(IntakeError::DoesNotApply {
                path: file.path().to_owned(),
                message: "binary patches in diff form cannot be applied yet; propose the change as a git ref".into(),
            });
        }
        // A path written twice by one change is ambiguous: which write wins depends on order.
        for path in written_paths(file) {
            if !touched.insert(path) {
                return Err(IntakeError::InvalidPath {
                    path: path.to_owned(),
                    message: format!(
                        "`{path}` appears twice in the change; accepted: each path at most once"
                    ),
                });
            }
        }
    }

    // Rules that need the base tree: nothing may go through a symlink or a submodule.
    let mut lookups: Vec<&str> = Vec::new();
    for file in &patch.files {
        for path in [file.old_path.as_deref(), file.new_path.as_deref()]
            .into_iter()
            .flatten()
        {
            lookups.push(path);
            lookups.extend(ancestors(path));
        }
    }
    lookups.sort_unstable();
    lookups.dedup();
    let base_entries: HashMap<String, u32> = base
        .entries(&lookups)
        .map_err(IntakeError::Base)?
        .into_iter()
        .map(|e| (e.path, e.mode))
        .collect();
    let new_symlinks: HashSet<&str> = patch
        .files
        .iter()
        .filter(|f| f.new_mode == Some(MODE_SYMLINK))
        .filter_map(|f| f.new_path.as_deref())
        .collect();
    for file in &patch.files {
        for path in [file.old_path.as_deref(), file.new_path.as_deref()]
            .into_iter()
            .flatten()
        {
            for ancestor in ancestors(path) {
                match base_entries.get(ancestor) {
                    Some(&MODE_SYMLINK) => {
                        return Err(IntakeError::ThroughSymlink {
                            path: path.to_owned(),
                            message: format!(
                                "`{ancestor}` is a symlink in the base commit; changes may not write through symlinks"
                            ),
                        });
                    }
                    Some(&MODE_GITLINK) => {
                        return Err(IntakeError::Submodule {
                            path: ancestor.to_owned(),
                        });
                    }
                    Some(&MODE_TREE) | None => {}
                    Some(_)
                        if written_paths(file).any(|p| p == path)
                            && is_deleted_in(&patch.files, ancestor) => {}
                    Some(_) => {
                        return Err(IntakeError::DoesNotApply {
                            path: path.to_owned(),
                            message: format!(
                                "`{ancestor}` is a file in the base commit, not a directory"
                            ),
                        });
                    }
                }
                if new_symlinks.contains(ancestor) {
                    return Err(IntakeError::ThroughSymlink {
                        path: path.to_owned(),
                        message: format!(
                            "`{ancestor}` becomes a symlink in this change; changes may not write through symlinks"
                        ),
                    });
                }
            }
            if base_entries.get(path) == Some(&MODE_GITLINK) {
                return Err(IntakeError::Submodule {
                    path: path.to_owned(),
                });
            }
        }
    }

    // Base contents, read once for every file that has an old side.
    let old_paths: Vec<&str> = patch
        .files
        .iter()
        .filter_map(|f| f.old_path.as_deref())
        .collect();
    let old_contents = base.read(&old_paths).map_err(IntakeError::Base)?;
    let mut old_by_path: HashMap<&str, Option<Vec<u8>>> =
        old_paths.iter().copied().zip(old_contents).collect();

    let head_contents = match head {
        Some(head) => {
            let new_paths: Vec<&str> = patch
                .files
                .iter()
                .filter_map(|f| f.new_path.as_deref())
                .collect();
            let contents = head.read(&new_paths).map_err(IntakeError::Base)?;
            Some(
                new_paths
                    .into_iter()
                    .zip(contents)
                    .collect::<HashMap<_, _>>(),
            )
        }
        None => None,
    };

    let mut files = Vec::with_capacity(patch.files.len());
    for file in &patch.files {
        let path = file.path().to_owned();
        let old = match file.old_path.as_deref() {
            Some(old_path) => {
                // Copies read the same source as another entry may: clone rather than take.
                let content = if file.kind == FileChangeKind::Copied {
                    old_by_path.get(old_path).cloned().flatten()
                } else {
                    old_by_path.remove(old_path).flatten()
                };
                match content {
                    Some(content) => Some(content),
                    None => {
                        return Err(IntakeError::DoesNotApply {
                            path: old_path.to_owned(),
                            message: "the file does not exist in the base commit".into(),
                        });
                    }
                }
            }
            None => {
                if let Some(new_path) = file.new_path.as_deref()
                    && base_entries.contains_key(new_path)
                    && !is_deleted_in(&patch.files, new_path)
                {
                    return Err(IntakeError::DoesNotApply {
                        path: new_path.to_owned(),
                        message: "the change creates it, but it already exists in the base commit"
                            .into(),
                    });
                }
                None
            }
        };
        let new = match &head_contents {
            Some(head_contents) => match file.new_path.as_deref() {
                Some(new_path) => match head_contents.get(new_path).cloned().flatten() {
                    Some(content) => Some(content),
                    None => {
                        return Err(IntakeError::Base(format!(
                            "`{new_path}` is missing from the proposed commit"
                        )));
                    }
                },
                None => None,
            },
            None => airlock_diff::apply(old.as_deref(), file).map_err(|e| {
                IntakeError::DoesNotApply {
                    path: path.clone(),
                    message: e.to_string(),
                }
            })?,
        };
        let old_mode = file.old_mode.or_else(|| {
            file.old_path
                .as_deref()
                .and_then(|p| base_entries.get(p).copied())
        });
        let new_mode = if file.new_path.is_some() {
            file.new_mode.or(old_mode).or(Some(MODE_FILE))
        } else {
            None
        };
        if new_mode == Some(MODE_SYMLINK) {
            let target = new.as_deref().unwrap_or_default();
            check_symlink_target(&path, target)?;
        }
        files.push(ChangedFile {
            op: match file.kind {
                FileChangeKind::Added => FileOp::Add,
                FileChangeKind::Deleted => FileOp::Delete,
                FileChangeKind::Modified => FileOp::Modify,
                FileChangeKind::Renamed => FileOp::Rename,
                FileChangeKind::Copied => FileOp::Copy,
            },
            old_path: file.old_path.clone(),
            new_path: file.new_path.clone(),
            old_mode,
            new_mode,
            old_sha256: old.as_deref().map(sha256_hex),
            new_sha256: new.as_deref().map(sha256_hex),
            lines_added: file.lines_added(),
            lines_removed: file.lines_removed(),
        });
    }
    Ok(ChangeSet {
        diff: diff.to_vec(),
        files,
    })
}

/// Paths a file patch writes or removes in the work tree.
fn written_paths(file: &FilePatch) -> impl Iterator<Item = &str> {
    let old = if file.kind == FileChangeKind::Copied {
        None
    } else {
        file.old_path.as_deref()
    };
    let new = file.new_path.as_deref().filter(|n| Some(*n) != old);
    old.into_iter().chain(new)
}

fn is_deleted_in(files: &[FilePatch], path: &str) -> bool {
    files.iter().any(|f| {
        f.old_path.as_deref() == Some(path)
            && matches!(f.kind, FileChangeKind::Deleted | FileChangeKind::Renamed)
    })
}

/// Applies edits to the base tree, renders them as a diff and validates that diff like
/// any other, so the two forms obey exactly the same rules.
pub fn from_edits(
    edits: &[Edit],
    base: &dyn TreeReader,
    limits: &Limits,
) -> Result<ChangeSet, IntakeError> {
    if edits.is_empty() {
        return Err(IntakeError::Empty);
    }
    let edit_bytes: u64 = edits
        .iter()
        .map(|e| match e {
            Edit::Replace {
                path,
                old_text,
                new_text,
            } => path.len() + old_text.len() + new_text.len(),
            Edit::Create { path, content } => path.len() + content.len(),
            Edit::Delete { path } => path.len(),
        } as u64)
        .sum();
    if edit_bytes > limits.max_change_bytes {
        return Err(IntakeError::TooLarge {
            size: edit_bytes,
            limit: limits.max_change_bytes,
        });
    }
    for edit in edits {
        validate_path(edit.path())?;
    }

    // Files in first-edit order; several edits to one file apply in sequence.
    let mut order: Vec<&str> = Vec::new();
    for edit in edits {
        if !order.contains(&edit.path()) {
            order.push(edit.path());
        }
    }
    if order.len() > limits.max_files {
        return Err(IntakeError::TooManyFiles {
            count: order.len(),
            limit: limits.max_files,
        });
    }
    let base_contents = base.read(&order).map_err(IntakeError::Base)?;
    let modes: HashMap<String, u32> = base
        .entries(&order)
        .map_err(IntakeError::Base)?
        .into_iter()
        .map(|e| (e.path, e.mode))
        .collect();

    let mut diff: Vec<u8> = Vec::new();
    for (path, original) in order.iter().zip(base_contents) {
        let mut current: Option<Vec<u8>> = original.clone();
        for (index, edit) in edits.iter().enumerate().filter(|(_, e)| e.path() == *path) {
            let fail = |message: String| IntakeError::Edit {
                index,
                path: path.to_string(),
                message,
            };
            current = match edit {
                Edit::Replace {
                    old_text, new_text, ..
                } => {
                    let Some(content) = current else {
                        return Err(fail("the file does not exist in the base commit; use {\"op\":\"create\"} to create it".into()));
                    };
                    if old_text.is_empty() {
                        return Err(fail("old_text is empty; accepted: text that occurs exactly once in the file".into()));
                    }
                    Some(
                        replace_once(&content, old_text.as_bytes(), new_text.as_bytes())
                            .map_err(fail)?,
                    )
                }
                Edit::Create { content, .. } => {
                    if current.is_some() {
                        return Err(fail("the file already exists; use a replace edit {path, old_text, new_text} to change it".into()));
                    }
                    Some(content.as_bytes().to_vec())
                }
                Edit::Delete { .. } => {
                    if current.is_none() {
                        return Err(fail("the file does not exist in the base commit".into()));
                    }
                    None
                }
            };
        }
        if original == current {
            continue;
        }
        let mode = modes.get(*path).copied().unwrap_or(MODE_FILE);
        if mode == MODE_SYMLINK || mode == MODE_GITLINK {
            return Err(IntakeError::Edit {
                index: 0,
                path: path.to_string(),
                message:
                    "text edits apply to regular files only; this path is a symlink or a submodule"
                        .into(),
            });
        }
        diff.extend(airlock_diff::render(
            path,
            path,
            original.as_deref(),
            current.as_deref(),
            mode,
            mode,
        ));
    }
    if diff.is_empty() {
        return Err(IntakeError::Empty);
    }
    from_diff(&diff, base, None, limits)
}

/// Replaces the single occurrence of `old` in `content`. Zero or several occurrences are
/// refused: a silent replace-all is exactly the corruption intake exists to stop.
fn replace_once(content: &[u8], old: &[u8], new: &[u8]) -> Result<Vec<u8>, String> {
    let mut positions = memchr::memmem::find_iter(content, old);
    let Some(first) = positions.next() else {
        return Err("old_text was not found in the file; accepted: text copied exactly from the base commit, whitespace included".into());
    };
    if let Some(second) = positions.next() {
        let line = |offset: usize| content[..offset].iter().filter(|b| **b == b'\n').count() + 1;
        return Err(format!(
            "old_text occurs more than once (lines {} and {}); include more surrounding text so it matches exactly once",
            line(first),
            line(second)
        ));
    }
    let mut out = Vec::with_capacity(content.len() - old.len() + new.len());
    out.extend_from_slice(&content[..first]);
    out.extend_from_slice(new);
    out.extend_from_slice(&content[first + old.len()..]);
    Ok(out)
}

/// Re-derives the file contents of a change accepted earlier, in the order of `recorded`,
/// and checks each against the SHA-256 recorded at intake. The rules are not evaluated
/// again (they held at intake, and a commit cannot change); this is what keeps
/// preparing a workspace cheap while still proving it holds exactly base + change.
pub fn rederive(
    diff: &[u8],
    recorded: &[ChangedFile],
    base: &dyn TreeReader,
    head: Option<&dyn TreeReader>,
) -> Result<Vec<Option<Vec<u8>>>, IntakeError> {
    let mismatch = |path: &str, what: &str| IntakeError::DoesNotApply {
        path: path.to_owned(),
        message: format!("the {what} content no longer matches the hash recorded at intake"),
    };
    let contents = match head {
        Some(head) => {
            let new_paths: Vec<&str> = recorded
                .iter()
                .filter_map(|f| f.new_path.as_deref())
                .collect();
            let mut read = head
                .read(&new_paths)
                .map_err(IntakeError::Base)?
                .into_iter();
            recorded
                .iter()
                .map(|f| {
                    if f.new_path.is_some() {
                        read.next().flatten()
                    } else {
                        None
                    }
                })
                .collect()
        }
        None => {
            let patch = airlock_diff::parse(diff).map_err(|e| IntakeError::MalformedDiff {
                message: e.to_string(),
            })?;
            if patch.files.len() != recorded.len() {
                return Err(IntakeError::MalformedDiff {
                    message: "the stored diff does not match the recorded files".into(),
                });
            }
            let old_paths: Vec<&str> = patch
                .files
                .iter()
                .filter_map(|f| f.old_path.as_deref())
                .collect();
            let mut old_contents = base
                .read(&old_paths)
                .map_err(IntakeError::Base)?
                .into_iter();
            let mut contents = Vec::with_capacity(recorded.len());
            for (file, record) in patch.files.iter().zip(recorded) {
                let old = if file.old_path.is_some() {
                    old_contents.next().flatten()
                } else {
                    None
                };
                if old.as_deref().map(sha256_hex) != record.old_sha256 {
                    return Err(mismatch(record.path(), "base"));
                }
                let new = airlock_diff::apply(old.as_deref(), file).map_err(|e| {
                    IntakeError::DoesNotApply {
                        path: record.path().to_owned(),
                        message: e.to_string(),
                    }
                })?;
                contents.push(new);
            }
            contents
        }
    };
    for (content, record) in contents.iter().zip(recorded) {
        if content.as_deref().map(sha256_hex) != record.new_sha256 {
            return Err(mismatch(record.path(), "new"));
        }
    }
    Ok(contents)
}
