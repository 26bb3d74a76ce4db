//! Level 4's git: building the commit of an approved change, re-applying it on a branch
//! that moved (a three-way merge, as `git cherry-pick` does), reverting it with a new
//! commit, pushing to the deployment target, and finding a commit again by its trailer.
//!
//! This is the only place airlock writes to a repository. It adds objects to the user's
//! object store (commits and trees no ref names until a push lands them) and updates
//! airlock's own refs under `refs/airlock/`; a branch moves only through `git push`, which
//! refuses anything but a fast-forward. Nothing here resets, rewrites or force-pushes.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use crate::command::{Git, stderr_excerpt};
use crate::validate::{check_repository_path, check_revision};
use crate::{CommitId, FileMode, FileWrite, GitError, Repo};

/// Who commits for airlock. The agent and the approvers are named in trailers.
const COMMITTER_NAME: &str = "airlock";
const COMMITTER_EMAIL: &str = "airlock@localhost";

/// Where a deployment target's branch lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Remote {
    /// The repository airlock serves.
    This,
    /// Another repository: a local path or a URL `git push` understands (ssh, https).
    Other(String),
}

/// A commit message whose trailers airlock writes: text from agents goes into the subject
/// and body only, and cannot forge a trailer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommitMessage {
    pub subject: String,
    pub body: String,
    /// `(key, value)`, in order: the message's last paragraph, and only these.
    pub trailers: Vec<(String, String)>,
}

impl CommitMessage {
    /// The message as git stores it. The subject is one line; control characters become
    /// spaces; body lines that git could read as a trailer of airlock's (`Airlock-...:`)
    /// are indented, so that the only trailer paragraph is the last one, written here.
    pub fn render(&self) -> String {
        let clean = |text: &str| -> String {
            text.chars()
                .map(|c| if c.is_control() && c != '\n' { ' ' } else { c })
                .collect()
        };
        let subject = clean(&self.subject).replace('\n', " ");
        let subject = subject.trim();
        let mut message = if subject.is_empty() {
            "(no title)".to_owned()
        } else {
            subject.to_owned()
        };
        let body = clean(&self.body);
        let body = body.trim();
        if !body.is_empty() {
            message.push_str("\n\n");
            for (index, line) in body.lines().enumerate() {
                if index > 0 {
                    message.push('\n');
                }
                if line
                    .trim_start()
                    .to_ascii_lowercase()
                    .starts_with("airlock-")
                {
                    message.push_str("    ");
                }
                message.push_str(line);
            }
        }
        if !self.trailers.is_empty() {
            message.push_str("\n\n");
            for (key, value) in &self.trailers {
                message.push_str(&format!("{key}: {}\n", clean(value).replace('\n', " ")));
            }
        }
        if !message.ends_with('\n') {
            message.push('\n');
        }
        message
    }
}

/// A three-way merge that could not be done without a person.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MergeConflict {
    /// The files in conflict.
    pub paths: Vec<String>,
    /// git's own account, one line per message.
    pub messages: Vec<String>,
}

impl fmt::Display for MergeConflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "conflict in {}", self.paths.join(", "))?;
        if !self.messages.is_empty() {
            write!(f, " ({})", self.messages.join("; "))?;
        }
        Ok(())
    }
}

/// How a push ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PushOutcome {
    Updated,
    /// The target refused (the branch moved, a non-fast-forward, a dirty checked-out work
    /// tree, a hook): nothing changed there.
    Rejected(String),
}

/// Writes commits for one repository; cheap to create.
#[derive(Clone, Debug)]
pub struct Landing {
    git_dir: PathBuf,
    root: PathBuf,
    /// Private directory for temporary index files.
    scratch: PathBuf,
}

impl Landing {
    /// `scratch` must be a directory airlock owns (temporary index files go there).
    pub fn new(repo: &Repo, scratch: PathBuf) -> Result<Landing, GitError> {
        std::fs::create_dir_all(&scratch).map_err(|e| GitError::io("create", &scratch, e))?;
        Ok(Landing {
            git_dir: repo.git_dir().to_path_buf(),
            root: repo.root().to_path_buf(),
            scratch,
        })
    }

    fn git(&self) -> Git {
        Git::for_repository(&self.git_dir)
            .env("GIT_AUTHOR_NAME", COMMITTER_NAME)
            .env("GIT_AUTHOR_EMAIL", COMMITTER_EMAIL)
            .env("GIT_COMMITTER_NAME", COMMITTER_NAME)
            .env("GIT_COMMITTER_EMAIL", COMMITTER_EMAIL)
    }

    /// The commit of `parent`'s tree with `writes` applied (deletions where `content` is
    /// None). No ref moves.
    pub fn commit_files(
        &self,
        parent: &CommitId,
        writes: &[FileWrite],
        message: &CommitMessage,
    ) -> Result<CommitId, GitError> {
        let index = TemporaryIndex::new(&self.scratch)?;
        self.git()
            .env("GIT_INDEX_FILE", index.path())
            .args(["read-tree", "--end-of-options", parent.as_str()])
            .run()?;
        let mut info = Vec::new();
        for write in writes {
            check_repository_path(&write.path)?;
            match &write.content {
                None => {
                    info.extend_from_slice(format!("0 {}\t", zero_oid(parent)).as_bytes());
                }
                Some(content) => {
                    let blob = self
                        .git()
                        .args(["hash-object", "-w", "--stdin"])
                        .run_with_input(content)?
                        .require_success()?;
                    let blob = String::from_utf8_lossy(&blob).trim().to_owned();
                    let mode = match write.mode {
                        FileMode::Regular => "100644",
                        FileMode::Executable => "100755",
                        FileMode::Symlink => "120000",
                    };
                    info.extend_from_slice(format!("{mode} {blob}\t").as_bytes());
                }
            }
            info.extend_from_slice(write.path.as_bytes());
            info.push(0);
        }
        self.git()
            .env("GIT_INDEX_FILE", index.path())
            .args(["update-index", "-z", "--index-info"])
            .run_with_input(&info)?
            .require_success()?;
        let tree = self
            .git()
            .env("GIT_INDEX_FILE", index.path())
            .arg("write-tree")
            .run()?;
        let tree = String::from_utf8_lossy(&tree).trim().to_owned();
        self.commit_tree(&tree, parent, message)
    }

    fn commit_tree(
        &self,
        tree: &str,
        parent: &CommitId,
        message: &CommitMessage,
    ) -> Result<CommitId, GitError> {
        let out = self
            .git()
            .args(["commit-tree", tree, "-p", parent.as_str(), "-F", "-"])
            .run_with_input(message.render().as_bytes())?
            .require_success()?;
        parse_commit(&out)
    }

    /// `commit` (whose first parent is where it was made) re-applied on `onto`, as a new
    /// commit with `message`: git's three-way merge, with `commit`'s parent as the base.
    pub fn cherry_pick(
        &self,
        commit: &CommitId,
        onto: &CommitId,
        message: &CommitMessage,
    ) -> Result<Result<CommitId, MergeConflict>, GitError> {
        let base = self.parent(commit)?;
        self.merge_onto(&base, onto, commit, message)
    }

    /// A new commit on `onto` that undoes `commit`: the three-way merge of `commit`'s
    /// parent into `onto` with `commit` as the base, as `git revert` does. A later change
    /// that built on `commit` makes this a conflict, never a silent loss of its work.
    pub fn revert(
        &self,
        commit: &CommitId,
        onto: &CommitId,
        message: &CommitMessage,
    ) -> Result<Result<CommitId, MergeConflict>, GitError> {
        let parent = self.parent(commit)?;
        self.merge_onto(commit, onto, &parent, message)
    }

    fn merge_onto(
        &self,
        base: &CommitId,
        ours: &CommitId,
        theirs: &CommitId,
        message: &CommitMessage,
    ) -> Result<Result<CommitId, MergeConflict>, GitError> {
        let finished = self
            .git()
            .args([
                "merge-tree",
                "--write-tree",
                "-z",
                "--name-only",
                &format!("--merge-base={base}"),
                "--end-of-options",
                ours.as_str(),
                theirs.as_str(),
            ])
            .run_with_status()?;
        match finished.status.code() {
            Some(0) => {
                let tree = finished
                    .stdout
                    .split(|&b| b == 0)
                    .next()
                    .map(|t| String::from_utf8_lossy(t).trim().to_owned())
                    .unwrap_or_default();
                Ok(Ok(self.commit_tree(&tree, ours, message)?))
            }
            Some(1) => Ok(Err(parse_conflict(&finished.stdout))),
            _ => Err(finished.into_error()),
        }
    }

    /// The first parent of `commit`.
    pub fn parent(&self, commit: &CommitId) -> Result<CommitId, GitError> {
        let out = self
            .git()
            .args(["rev-parse", "--verify", "--end-of-options"])
            .arg(format!("{commit}^1"))
            .run()?;
        parse_commit(&out)
    }

    /// The tip of `branch` at `remote`, fetched into `refs/airlock/targets/<branch>`.
    pub fn fetch_tip(&self, remote: &Remote, branch: &str) -> Result<CommitId, GitError> {
        check_branch_name(branch)?;
        let out = match remote {
            Remote::This => self
                .git()
                .args(["rev-parse", "--verify", "--end-of-options"])
                .arg(format!("refs/heads/{branch}^{{commit}}"))
                .run()?,
            Remote::Other(url) => {
                let tracking = format!("refs/airlock/targets/{branch}");
                self.git()
                    .allow_transport()
                    .args(["fetch", "--quiet", "--no-tags", "--no-write-fetch-head"])
                    .args(["--end-of-options", url])
                    .arg(format!("+refs/heads/{branch}:{tracking}"))
                    .run()?;
                self.git()
                    .args(["rev-parse", "--verify", "--end-of-options", &tracking])
                    .run()?
            }
        };
        parse_commit(&out)
    }

    /// Moves `branch` at `remote` to `commit` if it is still at `expected`. Only a
    /// fast-forward: `commit` must descend from `expected`. When `remote` is the
    /// repository airlock serves and `branch` is checked out there, its work tree is
    /// updated too if it is clean (git's `updateInstead`); a dirty one refuses the push.
    pub fn push(
        &self,
        remote: &Remote,
        commit: &CommitId,
        branch: &str,
        expected: &CommitId,
    ) -> Result<PushOutcome, GitError> {
        check_branch_name(branch)?;
        // With the lease, the push is a compare-and-set on the branch; with this check it
        // is also a fast-forward, so it can never drop a commit.
        let ancestry = self
            .git()
            .args(["merge-base", "--is-ancestor", "--end-of-options"])
            .args([expected.as_str(), commit.as_str()])
            .run_with_status()?;
        match ancestry.status.code() {
            Some(0) => {}
            Some(1) => {
                return Ok(PushOutcome::Rejected(format!(
                    "{commit} does not descend from {expected}: not a fast-forward"
                )));
            }
            _ => return Err(ancestry.into_error()),
        }
        let destination = match remote {
            Remote::This => self.root.display().to_string(),
            Remote::Other(url) => url.clone(),
        };
        let finished = self
            .git()
            .allow_transport()
            .args([
                "push",
                "--porcelain",
                "--no-verify",
                // A constant program line: the receiving side of a local push updates a
                // clean checked-out branch instead of refusing it.
                "--receive-pack=git -c receive.denyCurrentBranch=updateInstead receive-pack",
            ])
            .arg(format!("--force-with-lease=refs/heads/{branch}:{expected}"))
            .args(["--end-of-options", &destination])
            .arg(format!("{commit}:refs/heads/{branch}"))
            .run_with_status()?;
        if finished.status.success() {
            Ok(PushOutcome::Updated)
        } else {
            let mut reason = stderr_excerpt(&finished.stderr);
            let stdout = String::from_utf8_lossy(&finished.stdout);
            if let Some(line) = stdout.lines().find(|line| line.starts_with('!')) {
                reason = format!("{} ({reason})", line.trim());
            }
            Ok(PushOutcome::Rejected(reason))
        }
    }

    /// The newest commit reachable from `tip` (looking at most `limit` commits back) whose
    /// trailer `key` is exactly `value`: how a change's commit is found again, by data git
    /// parsed, never by searching message text.
    pub fn find_by_trailer(
        &self,
        tip: &CommitId,
        key: &str,
        value: &str,
        limit: usize,
    ) -> Result<Option<CommitId>, GitError> {
        if !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return Err(GitError::InvalidChange {
                reason: format!("{key:?} is not a trailer key: letters, digits and '-' only"),
            });
        }
        let out = self
            .git()
            .args(["log", "-z", &format!("--max-count={limit}")])
            .arg(format!(
                "--format=%H%x01%(trailers:key={key},valueonly,separator=%x01)"
            ))
            .args(["--end-of-options", tip.as_str()])
            .run()?;
        for record in out.split(|&b| b == 0) {
            let mut fields = record.split(|&b| b == 1);
            let Some(commit) = fields.next() else {
                continue;
            };
            if fields.any(|found| String::from_utf8_lossy(found).trim() == value) {
                return parse_commit(commit).map(Some);
            }
        }
        Ok(None)
    }

    /// Writes the files of `commit` into `dir` (created; must not exist yet): the tree a
    /// deployment builds and runs. Nothing of git's goes there.
    pub fn export(&self, commit: &CommitId, dir: &Path) -> Result<(), GitError> {
        if dir.exists() {
            return Err(GitError::UnsafeWrite {
                path: dir.display().to_string(),
                reason: "the export directory already exists".to_owned(),
            });
        }
        std::fs::create_dir_all(dir).map_err(|e| GitError::io("create", dir, e))?;
        let index = TemporaryIndex::new(&self.scratch)?;
        self.git()
            .env("GIT_INDEX_FILE", index.path())
            .args(["read-tree", "--end-of-options", commit.as_str()])
            .run()?;
        let mut prefix = dir.as_os_str().to_owned();
        prefix.push("/");
        let mut prefix_arg = std::ffi::OsString::from("--prefix=");
        prefix_arg.push(prefix);
        self.git()
            .env("GIT_INDEX_FILE", index.path())
            .args(["checkout-index", "--all", "--force"])
            .arg(prefix_arg)
            .run()?;
        Ok(())
    }

    /// The unified diff from `base` to `head` (for scanning a re-applied change).
    pub fn diff(&self, base: &CommitId, head: &CommitId) -> Result<Vec<u8>, GitError> {
        self.git()
            .args([
                "diff",
                "--no-ext-diff",
                "--no-textconv",
                "--binary",
                "--full-index",
                "--end-of-options",
                base.as_str(),
                head.as_str(),
            ])
            .run()
    }
}

/// A branch name as `git check-ref-format --branch` would accept it, checked before git
/// runs: a branch becomes part of a refspec, where `:` or `*` would change its meaning.
fn check_branch_name(branch: &str) -> Result<(), GitError> {
    check_revision(branch)?;
    let bad = branch
        .chars()
        .any(|c| matches!(c, ':' | '~' | '^' | '?' | '*' | '[' | '\\'))
        || branch.contains("@{")
        || branch.ends_with(".lock")
        || branch.ends_with('/')
        || branch.starts_with('/')
        || branch.contains("//");
    if bad {
        return Err(GitError::InvalidRevision {
            rev: branch.chars().take(200).collect(),
            reason: "it is not a valid branch name (no ':', '~', '^', '?', '*', '[', '\\', '@{', leading or trailing '/', '.lock' suffix)",
        });
    }
    Ok(())
}

fn zero_oid(like: &CommitId) -> String {
    "0".repeat(like.as_str().len())
}

fn parse_commit(out: &[u8]) -> Result<CommitId, GitError> {
    let text = String::from_utf8_lossy(out);
    CommitId::from_str(text.trim())
}

/// `merge-tree -z --name-only` output: the tree, the conflicted paths, an empty field,
/// then for each message: the number of paths, the paths, a type and the text.
fn parse_conflict(out: &[u8]) -> MergeConflict {
    let fields: Vec<String> = out
        .split(|&b| b == 0)
        .map(|f| String::from_utf8_lossy(f).into_owned())
        .collect();
    let mut paths = Vec::new();
    let mut rest = fields.iter().skip(1);
    for field in rest.by_ref() {
        if field.is_empty() {
            break;
        }
        if !paths.contains(field) {
            paths.push(field.clone());
        }
    }
    let mut messages = Vec::new();
    let rest: Vec<&String> = rest.collect();
    let mut at = 0;
    while at < rest.len() {
        let Ok(count) = rest[at].parse::<usize>() else {
            break;
        };
        let text_at = at + 1 + count + 1;
        if let Some(text) = rest.get(text_at) {
            let text = text.trim();
            if text.starts_with("CONFLICT") {
                messages.push(text.to_owned());
            }
        }
        at = text_at + 1;
    }
    MergeConflict { paths, messages }
}

/// An index file of its own, removed on drop.
struct TemporaryIndex(PathBuf);

impl TemporaryIndex {
    fn new(scratch: &Path) -> Result<TemporaryIndex, GitError> {
        let mut name = [0u8; 8];
        unique_name(&mut name);
        let path = scratch.join(format!("index-{}", hex_name(&name)));
        Ok(TemporaryIndex(path))
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TemporaryIndex {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
        let _ = std::fs::remove_file(self.0.with_extension("lock"));
    }
}

/// A name unique among concurrent callers: process id, a counter and the time.
fn unique_name(out: &mut [u8; 8]) {
    use std::sync::atomic::{AtomicU32, Ordering};
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let count = COUNTER.fetch_add(1, Ordering::Relaxed);
    out[..4].copy_from_slice(&std::process::id().to_le_bytes());
    out[4..].copy_from_slice(&count.to_le_bytes());
}

fn hex_name(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
